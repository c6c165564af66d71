//! Typed messages: any `serde` type, encoded with postcard, over any endpoint.
//!
//! The wire format is postcard's, inside the channel's usual framing. A message that does not
//! decode as `T` is [`ErrorKind::Malformed`]; it never panics.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Job { id: u32, name: String }
//!
//! let (tx, rx) = procom::pipe::channel()?;
//! let mut tx = procom::typed::Sender::<Job>::from_untyped(tx);
//! let mut rx = procom::typed::Receiver::<Job>::from_untyped(rx);
//! tx.send(Job { id: 7, name: "build".into() }).map_err(|e| e.into_error())?;
//! assert_eq!(rx.recv()?, Job { id: 7, name: "build".into() });
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{self, Options, ToEndpoint};
use crate::error::{Error, ErrorKind, SendError};
use crate::wait::Wait;

#[cfg(feature = "tokio")]
pub use crate::aio::typed::{AsyncReceiver, AsyncSender};

/// Sends values of `T`.
#[derive(Debug)]
pub struct Sender<T> {
    inner: channel::Sender,
    buf: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

/// Receives values of `T`.
#[derive(Debug)]
pub struct Receiver<T> {
    inner: channel::Receiver,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize> Sender<T> {
    /// See [`channel::Sender::connect`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Sender<T>, Error> {
        channel::Sender::connect(endpoint).map(Sender::from_untyped)
    }

    /// See [`channel::Sender::connect_with`].
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender<T>, Error> {
        channel::Sender::connect_with(endpoint, opts).map(Sender::from_untyped)
    }

    /// See [`channel::Sender::bind_with`] (with default options).
    pub fn bind(endpoint: impl ToEndpoint) -> Result<Sender<T>, Error> {
        Sender::bind_with(endpoint, &Options::default())
    }

    /// See [`channel::Sender::bind_with`].
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender<T>, Error> {
        channel::Sender::bind_with(endpoint, opts).map(Sender::from_untyped)
    }

    /// Wraps a byte sender.
    pub fn from_untyped(inner: channel::Sender) -> Sender<T> {
        Sender {
            inner,
            buf: Vec::new(),
            _t: PhantomData,
        }
    }

    /// The byte sender underneath.
    pub fn into_untyped(self) -> channel::Sender {
        self.inner
    }

    fn send_with(
        &mut self,
        value: T,
        op: impl for<'a> FnOnce(&mut channel::Sender, &'a [u8]) -> Result<(), SendError<&'a [u8]>>,
    ) -> Result<(), SendError<T>> {
        // Encoded into the buffer kept from the last send: no allocation (and, for large
        // values, no fresh pages to fault in) per message.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let bytes = match postcard::to_extend(&value, buf) {
            Ok(b) => b,
            Err(e) => {
                let err = Error::new(ErrorKind::InvalidInput)
                    .detail(format!("could not encode the value: {e}"))
                    .object(self.inner.endpoint());
                return Err(SendError::new(value, err));
            }
        };
        let sent = op(&mut self.inner, &bytes).map_err(|e| e.into_error());
        // Kept for the next send, unless one rare huge value would pin its memory.
        if bytes.capacity() <= 4 << 20 {
            self.buf = bytes;
        }
        sent.map_err(|e| SendError::new(value, e))
    }

    /// Sends a value, waiting for room.
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send_with(value, |s, b| s.send(b))
    }

    /// Sends a value if there is room now.
    pub fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send_with(value, |s, b| s.try_send(b))
    }

    /// Sends a value, waiting at most `timeout`.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_with(value, |s, b| s.send_timeout(b, timeout))
    }

    /// Sends a value, waiting until `deadline` at most.
    pub fn send_deadline(&mut self, value: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.send_with(value, |s, b| s.send_deadline(b, deadline))
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// See [`channel::Receiver::bind`].
    pub fn bind(endpoint: impl ToEndpoint) -> Result<Receiver<T>, Error> {
        channel::Receiver::bind(endpoint).map(Receiver::from_untyped)
    }

    /// See [`channel::Receiver::bind_with`].
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Receiver<T>, Error> {
        channel::Receiver::bind_with(endpoint, opts).map(Receiver::from_untyped)
    }

    /// See [`channel::Receiver::connect`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Receiver<T>, Error> {
        channel::Receiver::connect(endpoint).map(Receiver::from_untyped)
    }

    /// See [`channel::Receiver::connect_with`].
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Receiver<T>, Error> {
        channel::Receiver::connect_with(endpoint, opts).map(Receiver::from_untyped)
    }

    /// Wraps a byte receiver.
    pub fn from_untyped(inner: channel::Receiver) -> Receiver<T> {
        Receiver {
            inner,
            _t: PhantomData,
        }
    }

    /// The byte receiver underneath.
    pub fn into_untyped(self) -> channel::Receiver {
        self.inner
    }

    /// Receives one message and decodes it where it lies (no copy on byte streams).
    fn recv_decoded(&mut self, wait: Wait) -> Result<T, Error> {
        let decoded = self.inner.recv_bytes(wait, |bytes| {
            postcard::from_bytes::<T>(bytes).map_err(|e| (bytes.len(), e))
        })?;
        decoded.map_err(|(len, e)| {
            Error::new(ErrorKind::Malformed)
                .detail(format!(
                    "a {len}-byte message does not decode as {}: {e}",
                    std::any::type_name::<T>()
                ))
                .object(self.inner.endpoint())
        })
    }

    /// Receives a value, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<T, Error> {
        self.recv_decoded(Wait::Forever)
    }

    /// Receives a value if one is waiting.
    pub fn try_recv(&mut self) -> Result<T, Error> {
        self.recv_decoded(Wait::Never)
    }

    /// Receives a value, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        self.recv_decoded(Wait::until(crate::stream::deadline_after(timeout)))
    }

    /// Receives a value, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<T, Error> {
        self.recv_decoded(Wait::Until(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed receiver has the deadline form every blocking call has.
    #[test]
    fn recv_deadline_times_out_then_receives() {
        let (tx, rx) = crate::pipe::channel().unwrap();
        let (mut tx, mut rx) = (
            Sender::<u32>::from_untyped(tx),
            Receiver::<u32>::from_untyped(rx),
        );
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(
            rx.recv_deadline(soon).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        tx.send(7).unwrap();
        assert_eq!(
            rx.recv_deadline(Instant::now() + Duration::from_secs(5))
                .unwrap(),
            7
        );
    }
}
