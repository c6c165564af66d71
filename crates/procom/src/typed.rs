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

/// Sends values of `T`.
#[derive(Debug)]
pub struct Sender<T> {
    inner: channel::Sender,
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

    /// Wraps a byte sender.
    pub fn from_untyped(inner: channel::Sender) -> Sender<T> {
        Sender {
            inner,
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
        op: impl FnOnce(&mut channel::Sender, Vec<u8>) -> Result<(), SendError<Vec<u8>>>,
    ) -> Result<(), SendError<T>> {
        let bytes = match postcard::to_stdvec(&value) {
            Ok(b) => b,
            Err(e) => {
                let err = Error::new(ErrorKind::InvalidInput)
                    .detail(format!("could not encode the value: {e}"))
                    .object(self.inner.endpoint());
                return Err(SendError::new(value, err));
            }
        };
        op(&mut self.inner, bytes).map_err(|e| SendError::new(value, e.into_error()))
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

    /// See [`channel::Receiver::connect`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Receiver<T>, Error> {
        channel::Receiver::connect(endpoint).map(Receiver::from_untyped)
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

    fn decode(&self, bytes: Result<Vec<u8>, Error>) -> Result<T, Error> {
        let bytes = bytes?;
        postcard::from_bytes(&bytes).map_err(|e| {
            Error::new(ErrorKind::Malformed)
                .detail(format!(
                    "a {}-byte message does not decode as {}: {e}",
                    bytes.len(),
                    std::any::type_name::<T>()
                ))
                .object(self.inner.endpoint())
        })
    }

    /// Receives a value, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<T, Error> {
        let b = self.inner.recv();
        self.decode(b)
    }

    /// Receives a value if one is waiting.
    pub fn try_recv(&mut self) -> Result<T, Error> {
        let b = self.inner.try_recv();
        self.decode(b)
    }

    /// Receives a value, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        let b = self.inner.recv_timeout(timeout);
        self.decode(b)
    }
}
