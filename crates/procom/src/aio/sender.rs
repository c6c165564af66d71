//! [`AsyncSender`]: a [`Sender`] whose waits are futures.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::Interest;

use super::wake::{Handoff, Registered, Sleeping, Waiter, until};
use crate::channel::{Options, Readiness, Sender, ToEndpoint};
use crate::error::{Error, ErrorKind, SendError};
use crate::stream::deadline_after;

/// What a waiter thread's send to a System V queue came to, and the sender it used.
type Sent = (Sender, Result<(), Error>);

/// The sending side of a channel, for tokio: the same endpoints, errors and messages as
/// [`Sender`], with `async` waits.
///
/// A send completes when the channel has taken the message. If its future is dropped before
/// that, the message was not sent (it is dropped with the future; keep a copy, or pass a
/// reference, to send it again). Once taken, a message is delivered whole even if the future
/// ends early: on a byte stream whose buffer took only part of a frame, the sender keeps the
/// rest and writes it before anything else (the next send, or [`AsyncSender::flush`]); on a
/// full System V queue, the waiter thread sends it. Call [`AsyncSender::flush`] before
/// dropping a sender whose last message must arrive: a frame still partly held when the
/// sender is dropped is cut short, and the receiver reports it (never delivers it).
#[derive(Debug)]
pub struct AsyncSender {
    tx: Sender,
    fd: Registered,
    waiter: Waiter,
    /// Shared memory: the futex sleep running on the waiter thread.
    sleeping: Option<Sleeping>,
    /// System V: the send running on the waiter thread (with the sender it uses).
    sending: Option<Arc<Handoff<Sent>>>,
    /// System V: the waiter thread's sender, between sends.
    spare: Option<Sender>,
}

impl AsyncSender {
    /// Makes `tx` async. Must be used inside a tokio runtime with I/O enabled once it first
    /// waits (a descriptor is registered then).
    pub fn new(tx: Sender) -> AsyncSender {
        AsyncSender {
            tx,
            fd: Registered::new(Interest::WRITABLE),
            waiter: Waiter::default(),
            sleeping: None,
            sending: None,
            spare: None,
        }
    }

    /// [`Sender::connect`], async.
    pub fn connect(endpoint: impl ToEndpoint) -> Result<AsyncSender, Error> {
        Sender::connect(endpoint).map(AsyncSender::new)
    }

    /// [`Sender::connect_with`], async. (Opening itself may wait as the blocking form does,
    /// for `open_timeout` at most: a FIFO's reader, a socket's connect.)
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<AsyncSender, Error> {
        Sender::connect_with(endpoint, opts).map(AsyncSender::new)
    }

    /// [`Sender::bind_with`], async.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<AsyncSender, Error> {
        Sender::bind_with(endpoint, opts).map(AsyncSender::new)
    }

    /// The blocking sender underneath.
    pub fn get_ref(&self) -> &Sender {
        &self.tx
    }

    /// The endpoint this sender talks to, as text.
    pub fn endpoint(&self) -> &str {
        self.tx.endpoint()
    }

    /// Sends a message, waiting for room as long as it takes. Cancellation safe in the sense
    /// above: dropped before it completes, it sent nothing.
    pub async fn send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        match std::future::poll_fn(|cx| self.poll_send(cx, msg.as_ref())).await {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(msg, e)),
        }
    }

    /// Sends a message if there is room now; otherwise [`ErrorKind::Full`]. Never waits (a
    /// byte stream that takes part of the frame keeps the rest, as [`AsyncSender::send`]
    /// does).
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        let r = self
            .owed_now()
            .and_then(|()| self.tx.start_send(msg.as_ref()));
        r.map_err(|e| SendError::new(msg, e))
    }

    /// Sends a message, waiting at most `timeout` for room; then [`ErrorKind::Timeout`].
    /// Cancellation safe.
    pub async fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendError<M>> {
        self.send_until(msg, deadline_after(timeout)).await
    }

    /// Sends a message, waiting until `deadline` at most. Cancellation safe.
    pub async fn send_deadline<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        deadline: Instant,
    ) -> Result<(), SendError<M>> {
        self.send_until(msg, Some(deadline)).await
    }

    async fn send_until<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        deadline: Option<Instant>,
    ) -> Result<(), SendError<M>> {
        let r = until(
            deadline,
            "the deadline passed before the channel took the message",
            |cx| self.poll_send(cx, msg.as_ref()),
        )
        .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let e = self.tx.named(e);
                Err(SendError::new(msg, e))
            }
            Err(e) => Err(SendError::new(msg, e)),
        }
    }

    /// Waits until every message taken so far has gone out whole: the rest of a byte-stream
    /// frame, a System V send running on the waiter thread. Cancellation safe (what is left
    /// stays with the sender).
    pub async fn flush(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Polls [`AsyncSender::flush`].
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if let Some(h) = &self.sending {
                let (spare, r) = std::task::ready!(h.poll_take(cx));
                self.sending = None;
                self.spare = Some(spare);
                if let Err(e) = r {
                    return Poll::Ready(Err(e));
                }
            }
            if !self.tx.has_unsent() {
                return Poll::Ready(Ok(()));
            }
            match self.tx.flush_unsent() {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == ErrorKind::Full => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            std::task::ready!(self.poll_room(cx, 1))?;
        }
    }

    /// What is owed from earlier sends, settled without waiting (`Full` if it cannot be).
    fn owed_now(&mut self) -> Result<(), Error> {
        if let Some(h) = &self.sending {
            match h.try_take() {
                Some((spare, r)) => {
                    self.sending = None;
                    self.spare = Some(spare);
                    r?;
                }
                None => return Err(self.tx.named(Error::new(ErrorKind::Full))),
            }
        }
        self.tx.flush_unsent()
    }

    /// Polls sending `msg`: what is owed first, then the message, waiting for room as the
    /// mechanism allows.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<(), Error>> {
        std::task::ready!(self.poll_flush(cx))?;
        loop {
            match self.tx.start_send(msg) {
                Err(e) if e.kind() == ErrorKind::Full => {}
                r => return Poll::Ready(r),
            }
            if self.tx.readiness() == Readiness::Thread {
                // No way to wait for room but to block in the call: the waiter thread does,
                // and the message counts as taken.
                let Some(mut spare) = self.spare.take().or_else(|| self.tx.blocking_clone()) else {
                    return Poll::Ready(Err(self.tx.named(Error::new(ErrorKind::Io))));
                };
                let h = Handoff::new();
                let put = Arc::clone(&h);
                let owned = msg.to_vec();
                self.waiter
                    .run(Box::new(move || {
                        let r = spare.send(&owned).map_err(|e| e.into_error());
                        put.put((spare, r));
                    }))
                    .map_err(|e| self.tx.named(e))?;
                self.sending = Some(h);
                return Poll::Ready(Ok(()));
            }
            std::task::ready!(self.poll_room(cx, msg.len()))?;
        }
    }

    /// Waits until there may be room for `len` bytes (then the caller tries again).
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<(), Error>> {
        match self.tx.readiness() {
            Readiness::Descriptor => {
                let Some(fd) = self.tx.as_fd() else {
                    return Poll::Ready(Err(self.tx.named(Error::new(ErrorKind::Io))));
                };
                match std::task::ready!(self.fd.poll_ready(cx, fd)) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(self.tx.named(Error::os("wait for room", e)))),
                }
            }
            Readiness::Futex => {
                if self.sleeping.is_none() {
                    match self.tx.arm(len) {
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(None) => {
                            self.tx.disarm();
                            return Poll::Ready(Ok(()));
                        }
                        Ok(Some(sleep)) => match Sleeping::start(&mut self.waiter, sleep) {
                            Ok(s) => self.sleeping = Some(s),
                            Err(e) => {
                                self.tx.disarm();
                                return Poll::Ready(Err(self.tx.named(e)));
                            }
                        },
                    }
                }
                if let Some(s) = &self.sleeping {
                    std::task::ready!(s.poll_done(cx));
                }
                self.sleeping = None;
                self.tx.disarm();
                Poll::Ready(Ok(()))
            }
            Readiness::Thread => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for AsyncSender {
    /// Ends a futex sleep at once and writes what it can of a partly sent frame without
    /// waiting. A System V send still running on the waiter thread finishes there.
    fn drop(&mut self) {
        self.sleeping = None;
        if let Some(h) = &self.sending {
            h.abandon();
            self.waiter.detach();
        }
        let _ = self.tx.flush_unsent();
    }
}
