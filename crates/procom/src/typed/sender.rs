//! [`Sender`]: encodes values (owned, borrowed, or a view that encodes as one) and sends them,
//! a large one piece by piece over a byte stream or into a shared-memory ring.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::channel::{self, Options, ToEndpoint};
use crate::error::{Error, ErrorKind, SendError};
use crate::flavor::streamed::Pieces;
use crate::wait::Wait;

/// Sends values of `T`.
///
/// Besides an owned value ([`Sender::send`]), a sender takes a reference ([`Sender::send_ref`])
/// or a view: a borrowed value of another type that encodes exactly as a `T` does
/// ([`Sender::send_view`]), such as `&str` for a `String`, `&[T]` for a `Vec<T>`, or
/// `&serde_bytes::Bytes` for a `serde_bytes::ByteBuf`. (Nothing checks that a view encodes as
/// a `T`: one that does not reaches the receiver as a message that does not decode,
/// [`ErrorKind::Malformed`], or decodes as another value.)
///
/// How a value travels: encoded into a buffer the sender keeps and sent in one call; or, when
/// it encodes to at least 32 KiB, measured first and then encoded piece by piece where it
/// goes. Over a byte stream with length framing (`unix:`, `tcp:`, pipes, FIFOs) the frame's
/// header and small pieces are gathered, and each large piece (a byte string or string of 4
/// KiB or more) goes to the stream from where it lies, with what was gathered before it, in
/// one `writev`. Over shared memory (`shm:`) every piece is copied straight to its place in
/// the ring. A large payload is then copied once, by the kernel or into the ring.
///
/// A value is encoded twice on that path, so its `Serialize` must give the same bytes both
/// times (every derived and standard implementation does). One whose second encoding differs
/// in length fails with [`ErrorKind::InvalidInput`]: in a shared-memory ring nothing of it is
/// ever published, and the sender stays usable; on a byte stream, if the difference shows
/// before anything was written, nothing was, and the sender stays usable; otherwise it is left
/// unusable, as after a deadline that passed mid-message (every later send fails with
/// [`ErrorKind::Io`]), and its receiver reports the unfinished message as
/// [`ErrorKind::Malformed`] once the sender is closed (or, where the frame was completed
/// with the start of a longer encoding, when it fails to decode).
#[derive(Debug)]
pub struct Sender<T> {
    pub(super) inner: channel::Sender,
    buf: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

/// A value encoding to at least this many bytes goes piece by piece (see [`Sender`]).
const STREAMED_MIN: usize = 32 << 10;

/// The largest encoding buffer a sender keeps between sends (one rare huge value must not pin
/// its memory).
const KEPT: usize = 4 << 20;

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

    /// Sends a value, waiting for room.
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send_owned(value, Wait::Forever)
    }

    /// Sends a value if there is room now.
    pub fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send_owned(value, Wait::Never)
    }

    /// Sends a value, waiting at most `timeout`.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_owned(value, Wait::until(crate::stream::deadline_after(timeout)))
    }

    /// Sends a value, waiting until `deadline` at most.
    pub fn send_deadline(&mut self, value: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.send_owned(value, Wait::Until(deadline))
    }

    /// Sends a value the caller keeps, waiting for room.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// let (tx, rx) = procom::pipe::channel()?;
    /// let mut tx = procom::typed::Sender::<Vec<u32>>::from_untyped(tx);
    /// let mut rx = procom::typed::Receiver::<Vec<u32>>::from_untyped(rx);
    /// let readings = vec![3, 1, 4];
    /// tx.send_ref(&readings)?;
    /// assert_eq!(rx.recv()?, readings);
    /// # Ok(()) }
    /// ```
    pub fn send_ref(&mut self, value: &T) -> Result<(), Error> {
        self.send_encoded(value, Wait::Forever)
    }

    /// Sends a value the caller keeps if there is room now.
    pub fn try_send_ref(&mut self, value: &T) -> Result<(), Error> {
        self.send_encoded(value, Wait::Never)
    }

    /// Sends a value the caller keeps, waiting at most `timeout`.
    pub fn send_ref_timeout(&mut self, value: &T, timeout: Duration) -> Result<(), Error> {
        self.send_encoded(value, Wait::until(crate::stream::deadline_after(timeout)))
    }

    /// Sends a value the caller keeps, waiting until `deadline` at most.
    pub fn send_ref_deadline(&mut self, value: &T, deadline: Instant) -> Result<(), Error> {
        self.send_encoded(value, Wait::Until(deadline))
    }

    /// Sends a view: a value of another type that must encode exactly as a `T` does (`&str`
    /// for a `String`, `&[T]` for a `Vec<T>`, `&serde_bytes::Bytes` for a
    /// `serde_bytes::ByteBuf`, a struct of borrowed fields for one of owned fields), so that
    /// borrowed data is sent without first being made into a `T`. Waits for room.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Job { id: u32, name: String }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct JobView<'a> { id: u32, name: &'a str }
    ///
    /// let (tx, rx) = procom::pipe::channel()?;
    /// let mut tx = procom::typed::Sender::<Job>::from_untyped(tx);
    /// let mut rx = procom::typed::Receiver::<Job>::from_untyped(rx);
    /// let name = String::from("build");
    /// tx.send_view(&JobView { id: 7, name: &name })?;
    /// assert_eq!(rx.recv()?, Job { id: 7, name });
    /// # Ok(()) }
    /// ```
    pub fn send_view<V: Serialize + ?Sized>(&mut self, view: &V) -> Result<(), Error> {
        self.send_encoded(view, Wait::Forever)
    }

    /// Sends a view (see [`Sender::send_view`]) if there is room now.
    pub fn try_send_view<V: Serialize + ?Sized>(&mut self, view: &V) -> Result<(), Error> {
        self.send_encoded(view, Wait::Never)
    }

    /// Sends a view (see [`Sender::send_view`]), waiting at most `timeout`.
    pub fn send_view_timeout<V: Serialize + ?Sized>(
        &mut self,
        view: &V,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.send_encoded(view, Wait::until(crate::stream::deadline_after(timeout)))
    }

    /// Sends a view (see [`Sender::send_view`]), waiting until `deadline` at most.
    pub fn send_view_deadline<V: Serialize + ?Sized>(
        &mut self,
        view: &V,
        deadline: Instant,
    ) -> Result<(), Error> {
        self.send_encoded(view, Wait::Until(deadline))
    }

    fn send_owned(&mut self, value: T, wait: Wait) -> Result<(), SendError<T>> {
        self.send_encoded(&value, wait)
            .map_err(|e| SendError::new(value, e))
    }
}

impl<T> Sender<T> {
    /// Encodes `value` and sends it as `wait` says: piece by piece where it goes when it
    /// is large, else from the kept buffer in one call.
    fn send_encoded<V: Serialize + ?Sized>(&mut self, value: &V, wait: Wait) -> Result<(), Error> {
        if self.inner.streams() {
            let len =
                postcard::experimental::serialized_size(value).map_err(|e| self.encode_error(e))?;
            if len >= STREAMED_MIN {
                return self.send_streamed(value, len, wait);
            }
        }
        // Encoded into the buffer kept from the last send: no allocation (and, for large
        // values, no fresh pages to fault in) per message.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let bytes = postcard::to_extend(value, buf).map_err(|e| self.encode_error(e))?;
        let sent = self.inner.send_bytes(&bytes, wait);
        if bytes.capacity() <= KEPT {
            self.buf = bytes;
        }
        sent
    }

    /// Encodes `value` (`len` bytes, as measured) straight onto the byte stream.
    fn send_streamed<V: Serialize + ?Sized>(
        &mut self,
        value: &V,
        len: usize,
        wait: Wait,
    ) -> Result<(), Error> {
        self.inner.send_streamed(len, wait, &mut |out| {
            let mut failed = None;
            let encoded = postcard::serialize_with_flavor::<V, _, ()>(
                value,
                ToStream {
                    out,
                    failed: &mut failed,
                },
            );
            match (failed, encoded) {
                (Some(e), _) => Err(e),
                (None, Err(e)) => Err(encode_error(e)),
                (None, Ok(())) => Ok(()),
            }
        })
    }

    fn encode_error(&self, e: postcard::Error) -> Error {
        encode_error(e).object(self.inner.endpoint())
    }
}

/// The error for a value postcard could not encode (the async typed sender's too).
pub(crate) fn encode_error(e: postcard::Error) -> Error {
    Error::new(ErrorKind::InvalidInput).detail(format!("could not encode the value: {e}"))
}

/// postcard's output piece by piece: every piece goes to [`Pieces::put`]; the first error
/// is kept for the caller (postcard's own errors cannot carry it).
struct ToStream<'a, 's> {
    out: &'a mut (dyn Pieces + 's),
    failed: &'a mut Option<Error>,
}

impl postcard::ser_flavors::Flavor for ToStream<'_, '_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.out.put(data).map_err(|e| {
            *self.failed = Some(e);
            postcard::Error::SerializeBufferFull
        })
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
