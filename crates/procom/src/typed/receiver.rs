//! [`Receiver`]: receives values, owned or as views that borrow from the receiver's buffer.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::channel::{self, Options, ToEndpoint};
use crate::error::Error;
use crate::wait::Wait;

use super::{decode, decode_view};

/// Receives values of `T`.
///
/// Besides an owned value ([`Receiver::recv`]), a receiver hands out a view of the next message
/// ([`Receiver::recv_view`]): a value of another type, decoded as a `T` would be, that borrows
/// its strings and byte strings from the receiver's own buffer instead of copying them (`&str`
/// for a `String`, `&serde_bytes::Bytes` for a `serde_bytes::ByteBuf`, a struct of borrowed
/// fields for one of owned fields). A message that does not decode as the view is
/// [`ErrorKind::Malformed`](crate::ErrorKind::Malformed), never a panic.
#[derive(Debug)]
pub struct Receiver<T> {
    pub(super) inner: channel::Receiver,
    /// Where a message a view borrows from is received, when the flavor does not keep it in
    /// its own buffer.
    buf: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

/// The largest receive buffer kept for views between messages.
const KEPT: usize = 4 << 20;

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
            buf: Vec::new(),
            _t: PhantomData,
        }
    }

    /// The byte receiver underneath.
    pub fn into_untyped(self) -> channel::Receiver {
        self.inner
    }

    /// Receives one message and decodes it where it lies (no copy on byte streams).
    fn recv_decoded(&mut self, wait: Wait) -> Result<T, Error> {
        self.inner
            .recv_bytes(wait, decode::<T>)?
            .map_err(|e| e.object(self.inner.endpoint()))
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

impl<T> Receiver<T> {
    /// Receives the next message as a view `V`, waiting as long as it takes. `V` must decode
    /// as a `T` does, borrowing what it can from the message, which stays in the receiver's
    /// buffer until the view is dropped: on sequenced packets in the buffer the packet was
    /// received into; on a byte stream with a memory budget ([`Options::budget`]) in the
    /// reader's own buffer, charged to the budget until the next receive; on a Unix stream
    /// in a buffer the receiver keeps, into which a large message is read straight from the
    /// socket (or which the reader hands over); elsewhere copied once into that buffer.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// let (tx, rx) = procom::pipe::channel()?;
    /// let mut tx = procom::typed::Sender::<String>::from_untyped(tx);
    /// let mut rx = procom::typed::Receiver::<String>::from_untyped(rx);
    /// tx.send_view("a long line")?;
    /// let line: &str = rx.recv_view()?;
    /// assert_eq!(line, "a long line");
    /// # Ok(()) }
    /// ```
    pub fn recv_view<'a, V: Deserialize<'a>>(&'a mut self) -> Result<V, Error> {
        self.recv_view_waiting(Wait::Forever)
    }

    /// Receives the next message as a view (see [`Receiver::recv_view`]) if one is waiting.
    pub fn try_recv_view<'a, V: Deserialize<'a>>(&'a mut self) -> Result<V, Error> {
        self.recv_view_waiting(Wait::Never)
    }

    /// Receives the next message as a view (see [`Receiver::recv_view`]), waiting at most
    /// `timeout`.
    pub fn recv_view_timeout<'a, V: Deserialize<'a>>(
        &'a mut self,
        timeout: Duration,
    ) -> Result<V, Error> {
        self.recv_view_waiting(Wait::until(crate::stream::deadline_after(timeout)))
    }

    /// Receives the next message as a view (see [`Receiver::recv_view`]), waiting until
    /// `deadline` at most.
    pub fn recv_view_deadline<'a, V: Deserialize<'a>>(
        &'a mut self,
        deadline: Instant,
    ) -> Result<V, Error> {
        self.recv_view_waiting(Wait::Until(deadline))
    }

    fn recv_view_waiting<'a, V: Deserialize<'a>>(&'a mut self, wait: Wait) -> Result<V, Error> {
        // A message of up to KEPT bytes may have been placed half a page in (see
        // `crate::stream::place`): its buffer is kept too.
        if self.buf.capacity() > KEPT + crate::stream::MID_PAGE_SLACK {
            self.buf = Vec::new(); // one rare huge message must not pin its memory
        }
        self.inner.recv_lent(wait, &mut self.buf, decode_view::<V>)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A message of [`KEPT`] bytes, lent from the receiver's buffer where a Unix stream read
    /// it straight in (half a page in, `crate::stream::place`), leaves a buffer the next view
    /// reuses: the bytes before the message are still the ones left there, not fresh zeros.
    #[test]
    fn a_view_of_the_largest_kept_size_keeps_its_buffer() {
        let (mine, theirs) = UnixStream::pair().unwrap();
        // The typed encoding of a byte string of `KEPT - 4` bytes (a 4-byte varint length
        // first), framed with its 4-byte length prefix: each message is KEPT bytes.
        let payload = KEPT - 4;
        let mut frame = (KEPT as u32).to_be_bytes().to_vec();
        let mut n = payload;
        while n >= 0x80 {
            frame.push(n as u8 | 0x80);
            n >>= 7;
        }
        frame.push(n as u8);
        assert_eq!(frame.len(), 8, "a 4-byte varint");
        frame.resize(4 + KEPT, 7);
        let writer = std::thread::spawn(move || {
            let mut s = theirs;
            for _ in 0..3 {
                s.write_all(&frame).unwrap();
            }
        });
        let mut rx = Receiver::<serde_bytes::ByteBuf>::from_untyped(channel::Receiver::from_fd(
            OwnedFd::from(mine),
            "unix socketpair",
            &Options::default(),
        ));
        let mut marked = None;
        for i in 0..3 {
            let v: &serde_bytes::Bytes = rx.recv_view().unwrap();
            assert!(
                v.len() == payload && v.iter().all(|&b| b == 7),
                "message {i}"
            );
            let at = v.as_ptr() as usize - 4 - rx.buf.as_ptr() as usize;
            if let Some((ptr, at_before)) = marked {
                assert_eq!(
                    (rx.buf.as_ptr(), at),
                    (ptr, at_before),
                    "message {i}: moved"
                );
                if at > 0 {
                    assert_eq!(rx.buf[at - 1], 0xa5, "message {i}: a fresh buffer");
                }
            }
            if at > 0 {
                rx.buf[at - 1] = 0xa5;
            }
            marked = Some((rx.buf.as_ptr(), at));
        }
        writer.join().unwrap();
    }
}
