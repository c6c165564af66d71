//! [`AsyncReceiver`]: a [`Receiver`] whose waits are futures.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::Interest;

use super::wake::{Handoff, Registered, Sleeping, Waiter, until};
use crate::channel::{Options, Readiness, Receiver, ToEndpoint};
use crate::error::{Error, ErrorKind};
use crate::flavor::MessageMeta;
use crate::stream::deadline_after;

/// What a waiter thread received from a System V queue, and the receiver it used.
type Received = (Receiver, Result<(Vec<u8>, MessageMeta), Error>);

/// The receiving side of a channel, for tokio: the same endpoints, errors and messages as
/// [`Receiver`], with `async` waits.
///
/// Every receive is cancellation safe: a future dropped before it completes (in
/// `tokio::select!`, under a timeout) has taken no message, and part of a message that had
/// arrived stays buffered for the next call. See [the module](crate::aio) for how each
/// mechanism is waited on.
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
/// # rt.block_on(async {
/// let name = format!("mq:/procom-doc-async-{}", std::process::id());
/// let mut rx = procom::AsyncReceiver::bind(&name)?;
/// let mut tx = procom::AsyncSender::connect(&name)?;
/// tx.send(b"job 1").await.map_err(|e| e.into_error())?;
/// assert_eq!(rx.recv().await?, b"job 1");
/// # Ok(()) })
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncReceiver {
    rx: Receiver,
    fd: Registered,
    waiter: Waiter,
    /// Shared memory: the futex sleep running on the waiter thread.
    sleeping: Option<Sleeping>,
    /// System V: the receive running on the waiter thread (with the receiver it uses).
    receiving: Option<Arc<Handoff<Received>>>,
    /// System V: the waiter thread's receiver, between receives.
    spare: Option<Receiver>,
}

impl AsyncReceiver {
    /// Makes `rx` async. Must be called inside a tokio runtime with I/O enabled once it first
    /// waits (a descriptor is registered then).
    pub fn new(rx: Receiver) -> AsyncReceiver {
        AsyncReceiver {
            rx,
            fd: Registered::new(Interest::READABLE),
            waiter: Waiter::default(),
            sleeping: None,
            receiving: None,
            spare: None,
        }
    }

    /// [`Receiver::bind`], async.
    pub fn bind(endpoint: impl ToEndpoint) -> Result<AsyncReceiver, Error> {
        Receiver::bind(endpoint).map(AsyncReceiver::new)
    }

    /// [`Receiver::bind_with`], async.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<AsyncReceiver, Error> {
        Receiver::bind_with(endpoint, opts).map(AsyncReceiver::new)
    }

    /// [`Receiver::connect`], async.
    pub fn connect(endpoint: impl ToEndpoint) -> Result<AsyncReceiver, Error> {
        Receiver::connect(endpoint).map(AsyncReceiver::new)
    }

    /// [`Receiver::connect_with`], async.
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<AsyncReceiver, Error> {
        Receiver::connect_with(endpoint, opts).map(AsyncReceiver::new)
    }

    /// The blocking receiver underneath (for [`Receiver::endpoint`], `cleanup`, stats).
    pub fn get_ref(&self) -> &Receiver {
        &self.rx
    }

    /// The endpoint this receiver listens on, as text.
    pub fn endpoint(&self) -> &str {
        self.rx.endpoint()
    }

    /// Receives a message, waiting as long as it takes. Cancellation safe.
    pub async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives a message with what its mechanism carries beside it (see
    /// [`Receiver::recv_meta`]). Cancellation safe.
    pub async fn recv_meta(&mut self) -> Result<(Vec<u8>, MessageMeta), Error> {
        std::future::poll_fn(|cx| self.poll_op(cx, |r| r.try_recv_meta(), |m| m)).await
    }

    /// Receives a message into `buf`, replacing what it held and reusing its allocation;
    /// returns its length. Cancellation safe (`buf` is untouched until a message is there).
    pub async fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let got = std::future::poll_fn(|cx| {
            self.poll_op(cx, |r| r.try_recv_into(buf).map(Ok), |(m, _)| Err(m))
        })
        .await?;
        Ok(got.unwrap_or_else(|m| {
            buf.clear();
            buf.extend_from_slice(&m);
            m.len()
        }))
    }

    /// Receives a message if one is waiting; otherwise [`ErrorKind::Empty`]. Never waits.
    pub fn try_recv(&mut self) -> Result<Vec<u8>, Error> {
        if let Some(h) = &self.receiving {
            return match h.try_take() {
                Some((spare, r)) => {
                    self.receiving = None;
                    self.spare = Some(spare);
                    r.map(|(m, _)| m)
                }
                None => Err(self.rx.named(Error::new(ErrorKind::Empty))),
            };
        }
        self.rx.try_recv()
    }

    /// Receives a message, waiting at most `timeout`; then [`ErrorKind::Timeout`].
    /// Cancellation safe.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        self.recv_until(deadline_after(timeout)).await
    }

    /// Receives a message, waiting until `deadline` at most. Cancellation safe.
    pub async fn recv_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.recv_until(Some(deadline)).await
    }

    async fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, Error> {
        let r = until(deadline, "no message arrived before the deadline", |cx| {
            self.poll_recv(cx)
        })
        .await;
        r.map_err(|e| match e.kind() {
            ErrorKind::Timeout => self.rx.named(e),
            _ => e,
        })
    }

    /// Polls for the next message: the building block of [`AsyncReceiver::recv`] and of the
    /// `Stream` implementation.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>, Error>> {
        self.poll_op(cx, |r| r.try_recv(), |(m, _)| m)
    }

    /// The one receive loop: `op` without waiting, then a wait as the mechanism allows, then
    /// `op` again. `from` turns what a waiter thread received (System V) into `T`.
    fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut Receiver) -> Result<T, Error>,
        from: impl Fn((Vec<u8>, MessageMeta)) -> T,
    ) -> Poll<Result<T, Error>> {
        loop {
            // A receive already running on the waiter thread: its message is the next one.
            if let Some(h) = &self.receiving {
                let (spare, r) = std::task::ready!(h.poll_take(cx));
                self.receiving = None;
                self.spare = Some(spare);
                return Poll::Ready(r.map(&from));
            }
            let readiness = self.rx.readiness();
            // A descriptor the reactor watches is read only once it reports it ready (no
            // system call for nothing), unless the receiver holds bytes already or the
            // descriptor is not registered yet (a first wait; a bound stream socket's new
            // connection; a regular file, always ready, is never registered).
            let registered = self.rx.as_fd().is_some_and(|fd| self.fd.is(fd.as_raw_fd()));
            if readiness != Readiness::Descriptor || !registered || self.rx.has_buffered() {
                match op(&mut self.rx) {
                    Err(e) if e.kind() == ErrorKind::Empty => {}
                    r => return Poll::Ready(r),
                }
            }
            match readiness {
                Readiness::Descriptor => {
                    let Some(fd) = self.rx.as_fd() else {
                        return Poll::Ready(Err(self.rx.named(Error::new(ErrorKind::Io))));
                    };
                    if let Err(e) = self.fd.ensure(fd) {
                        return Poll::Ready(Err(self.rx.named(Error::os("wait for it", e))));
                    }
                    let raw = fd.as_raw_fd();
                    let rx = &mut self.rx;
                    let attempt = || {
                        let r = op(rx);
                        // Only the registered descriptor's readiness is cleared: a bound
                        // socket's first receive accepts, and reads another descriptor.
                        let drained =
                            rx.drained() && rx.as_fd().is_some_and(|f| f.as_raw_fd() == raw);
                        (r, drained)
                    };
                    match std::task::ready!(self.fd.poll_op(cx, attempt)) {
                        Ok(Some(r)) => return Poll::Ready(r),
                        Ok(None) => {}
                        Err(e) => {
                            return Poll::Ready(Err(self.rx.named(Error::os("wait for it", e))));
                        }
                    }
                }
                Readiness::Futex => {
                    if self.sleeping.is_none() {
                        match self.rx.arm() {
                            Err(e) => return Poll::Ready(Err(e)),
                            Ok(None) => {
                                self.rx.disarm();
                                continue;
                            }
                            Ok(Some(sleep)) => match Sleeping::start(&mut self.waiter, sleep) {
                                Ok(s) => self.sleeping = Some(s),
                                Err(e) => {
                                    self.rx.disarm();
                                    return Poll::Ready(Err(self.rx.named(e)));
                                }
                            },
                        }
                    }
                    if let Some(s) = &self.sleeping {
                        std::task::ready!(s.poll_done(cx));
                    }
                    self.sleeping = None;
                    self.rx.disarm();
                }
                Readiness::Thread => {
                    let Some(mut spare) = self.spare.take().or_else(|| self.rx.blocking_clone())
                    else {
                        return Poll::Ready(Err(self.rx.named(Error::new(ErrorKind::Io))));
                    };
                    let h = Handoff::new();
                    let put = Arc::clone(&h);
                    self.waiter
                        .run(Box::new(move || {
                            let r = spare.recv_meta();
                            put.put((spare, r));
                        }))
                        .map_err(|e| self.rx.named(e))?;
                    self.receiving = Some(h);
                }
            }
        }
    }
}

impl Drop for AsyncReceiver {
    /// Ends a futex sleep at once. A System V receive still running on the waiter thread has
    /// no one to hand its message to: the thread puts it back on the queue (at its end) when
    /// it arrives, then ends.
    fn drop(&mut self) {
        self.sleeping = None;
        if let Some(h) = self.receiving.take() {
            h.abandon();
            self.waiter.detach();
            // The waiter thread runs jobs in order: this one runs once the receive ended.
            let _ = self.waiter.run(Box::new(move || {
                if let Some((spare, Ok((m, meta)))) = h.try_take() {
                    spare.put_back(&m, &meta);
                }
            }));
        }
    }
}

/// Messages until the sender has gone ([`ErrorKind::PeerGone`] ends the stream); other
/// errors are items.
impl futures_core::Stream for AsyncReceiver {
    type Item = Result<Vec<u8>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) if e.kind() == ErrorKind::PeerGone => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
        }
    }
}
