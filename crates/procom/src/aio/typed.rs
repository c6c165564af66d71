//! Typed async channels: [`AsyncSender<T>`] and [`AsyncReceiver<T>`], postcard over any
//! endpoint (the wire format of [`crate::typed`]).

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{self, Options, ToEndpoint};
use crate::error::{Error, ErrorKind, SendError};

/// Sends values of `T`, async. Cancellation as [`crate::AsyncSender::send`]: a send dropped
/// before it completes sent nothing.
#[derive(Debug)]
pub struct AsyncSender<T> {
    inner: crate::AsyncSender,
    buf: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

/// Receives values of `T`, async. Every receive is cancellation safe.
#[derive(Debug)]
pub struct AsyncReceiver<T> {
    inner: crate::AsyncReceiver,
    /// The last message's buffer, kept for the next.
    buf: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize> AsyncSender<T> {
    /// See [`channel::Sender::connect`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<AsyncSender<T>, Error> {
        channel::Sender::connect(endpoint).map(AsyncSender::from_untyped)
    }

    /// See [`channel::Sender::connect_with`].
    pub fn connect_with(
        endpoint: impl ToEndpoint,
        opts: &Options,
    ) -> Result<AsyncSender<T>, Error> {
        channel::Sender::connect_with(endpoint, opts).map(AsyncSender::from_untyped)
    }

    /// Wraps a byte sender.
    pub fn from_untyped(inner: channel::Sender) -> AsyncSender<T> {
        AsyncSender {
            inner: crate::AsyncSender::new(inner),
            buf: Vec::new(),
            _t: PhantomData,
        }
    }

    /// Sends a value, waiting for room. Cancellation safe: dropped before it completes, it
    /// sent nothing (and the value is dropped with it).
    pub async fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.buf.clear();
        let bytes = match postcard::to_extend(&value, std::mem::take(&mut self.buf)) {
            Ok(b) => b,
            Err(e) => {
                let err = crate::typed::encode_error(e).object(self.inner.endpoint());
                return Err(SendError::new(value, err));
            }
        };
        let sent = self
            .inner
            .send(&bytes[..])
            .await
            .map_err(|e| e.into_error());
        self.buf = bytes;
        sent.map_err(|e| SendError::new(value, e))
    }

    /// Waits until every value taken so far has gone out whole (see
    /// [`crate::AsyncSender::flush`]). Cancellation safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().await
    }
}

impl<T: DeserializeOwned> AsyncReceiver<T> {
    /// See [`channel::Receiver::bind`].
    pub fn bind(endpoint: impl ToEndpoint) -> Result<AsyncReceiver<T>, Error> {
        channel::Receiver::bind(endpoint).map(AsyncReceiver::from_untyped)
    }

    /// See [`channel::Receiver::connect`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<AsyncReceiver<T>, Error> {
        channel::Receiver::connect(endpoint).map(AsyncReceiver::from_untyped)
    }

    /// Wraps a byte receiver.
    pub fn from_untyped(inner: channel::Receiver) -> AsyncReceiver<T> {
        AsyncReceiver {
            inner: crate::AsyncReceiver::new(inner),
            buf: Vec::new(),
            _t: PhantomData,
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, Error> {
        crate::typed::decode(bytes).map_err(|e| e.object(self.inner.endpoint()))
    }

    /// Receives a value (into a buffer kept from one message to the next). Cancellation safe.
    pub async fn recv(&mut self) -> Result<T, Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.inner.recv_into(&mut buf).await;
        let value = got.and_then(|_| self.decode(&buf));
        self.buf = buf;
        value
    }

    /// Receives a value if one is waiting; otherwise [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<T, Error> {
        let m = self.inner.try_recv()?;
        self.decode(&m)
    }

    /// Receives a value, waiting at most `timeout`. Cancellation safe.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        let m = self.inner.recv_timeout(timeout).await?;
        self.decode(&m)
    }
}

/// Values until the sender has gone (see the byte receiver's `Stream`).
impl<T: DeserializeOwned> futures_core::Stream for AsyncReceiver<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) if e.kind() == ErrorKind::PeerGone => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(m)) => Poll::Ready(Some(this.decode(&m))),
        }
    }
}
