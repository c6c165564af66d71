//! Typed messages: any `serde` type, encoded with postcard, over any endpoint.
//!
//! The wire format is postcard's, inside the channel's usual framing. A message that does not
//! decode as `T` is [`ErrorKind::Malformed`]; it never panics. A value is encoded straight into
//! a buffer the sender keeps (no allocation per message) and sent from there; a received one
//! is decoded where it lies, in the receiver's own buffer.
//!
//! For two local processes, [`pair`] picks the fastest kernel channel that carries every
//! message the options allow: a Unix sequenced-packet pair (one system call per message, no
//! framing) when a whole message fits in one packet here, else a Unix stream pair.
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

/// One end of a typed connection: sends `A`, receives `B`.
pub type End<A, B> = (Sender<A>, Receiver<B>);

/// The two ends of a typed connection made by [`pair`].
pub type Ends<A, B> = (End<A, B>, End<B, A>);

/// A connected pair of local typed channels (`socketpair`): the first end sends `A` and
/// receives `B`, the second the reverse; hand one end's descriptors
/// ([`channel::Sender::into_fd`]) to a child, or use the ends in two threads. The pair is a
/// Unix sequenced-packet pair (`unixpacket:`, see [`crate::socket`]) when the kernel lets one
/// packet hold a whole message of `opts.max_message` bytes (1 MiB, say, but not the default
/// 64 MiB: a packet holds at most twice `net.core.wmem_max` and 4 MiB) and neither type is
/// zero-sized, and a Unix stream pair otherwise; [`channel::Receiver::endpoint`] says which
/// (`unixpacket:@socketpair` or `unix:@socketpair`). (A value that encodes to no bytes
/// cannot travel as a sequenced packet: over a `unixpacket:` endpoint it is refused with
/// [`ErrorKind::InvalidInput`]; a type that is not zero-sized yet may encode to nothing,
/// such as a struct whose fields are all skipped, should not be sent over one.)
#[doc(alias = "socketpair")]
pub fn pair<A, B>(opts: &Options) -> Result<Ends<A, B>, Error>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
{
    // A zero-sized type (`()`, a unit struct) encodes to no bytes, which no sequenced packet
    // can carry (its receiver would take it for the peer leaving).
    let empty = std::mem::size_of::<A>() == 0 || std::mem::size_of::<B>() == 0;
    let ((tx_a, rx_a), (tx_b, rx_b)) = if !empty && packets_fit(opts.max_message) {
        crate::socket::packet_pair(opts)?
    } else {
        crate::socket::pair(opts)?
    };
    Ok((
        (Sender::from_untyped(tx_a), Receiver::from_untyped(rx_a)),
        (Sender::from_untyped(tx_b), Receiver::from_untyped(rx_b)),
    ))
}

/// Whether a sequenced packet here holds a message of `max` bytes (asked of a socket whose
/// send buffer is grown as a packet sender's is).
fn packets_fit(max: usize) -> bool {
    crate::socket::packet_socketpair()
        .is_ok_and(|(a, _)| crate::flavor::packet::room(std::os::fd::AsFd::as_fd(&a), max) >= max)
}

/// Decodes one message as `T`: anything that is not a `T` is `Malformed`, never a panic, and
/// what is allocated is bounded by the message's size.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes::<T>(bytes).map_err(|e| {
        Error::new(ErrorKind::Malformed).detail(format!(
            "a {}-byte message does not decode as {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}

/// The typed decoder's invariants on arbitrary bytes, for the fuzz target
/// (`fuzz/fuzz_targets/typed_decode.rs`) and the corpus replay in `cargo test`: decoding as
/// each of a range of types gives a value or `Malformed`, and a value encodes and decodes
/// back to itself.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_decoder(data: &[u8]) {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Shape {
        Unit,
        Point(i32, i32),
        Named { name: String, tags: Vec<String> },
        Nested(Box<Option<Shape>>),
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        name: String,
        payload: Vec<u8>,
        weights: Vec<f64>,
        shape: Shape,
        env: BTreeMap<String, i64>,
        when: Option<(u8, char, bool)>,
    }

    fn one<T: DeserializeOwned + Serialize + Debug + PartialEq>(data: &[u8]) {
        match decode::<T>(data) {
            Ok(v) => {
                let bytes = postcard::to_allocvec(&v).expect("a decoded value encodes");
                let back = decode::<T>(&bytes).expect("an encoded value decodes");
                // NaN is not equal to itself: compare the encodings, which are canonical.
                if back != v {
                    assert_eq!(postcard::to_allocvec(&back).unwrap(), bytes, "{v:?}");
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "{e}"),
        }
    }

    one::<Job>(data);
    one::<Vec<Job>>(data);
    one::<Shape>(data);
    one::<String>(data);
    one::<Vec<u8>>(data);
    one::<Vec<String>>(data);
    one::<Vec<Vec<u64>>>(data);
    one::<BTreeMap<u32, Vec<u8>>>(data);
    one::<(u128, i16, Option<String>)>(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pair` takes sequenced packets when a whole message fits in one, a stream otherwise,
    /// and carries values both ways either way.
    #[test]
    fn pair_picks_packets_where_a_message_fits() {
        for (max, packets) in [
            (64 << 10, true),
            (crate::framing::DEFAULT_MAX_MESSAGE, false),
        ] {
            let opts = Options::default().max_message(max);
            let ((mut tx, mut rx), (mut tx2, mut rx2)) = pair::<String, u64>(&opts).unwrap();
            let scheme = if packets { "unixpacket:" } else { "unix:" };
            assert!(
                rx.inner.endpoint().starts_with(scheme),
                "{}",
                rx.inner.endpoint()
            );
            tx.send("job".to_string()).unwrap();
            assert_eq!(rx2.recv().unwrap(), "job");
            tx2.send(7).unwrap();
            assert_eq!(rx.recv().unwrap(), 7);
        }
    }

    /// A type whose values encode to no bytes (`()`, a unit struct) travels over the pair
    /// whatever the options: a sequenced packet cannot carry an empty message.
    #[test]
    fn pair_carries_values_that_encode_to_nothing() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Tick;
        let opts = Options::default().max_message(64 << 10);
        let ((mut tx, mut rx), (mut tx2, mut rx2)) = pair::<(), Tick>(&opts).unwrap();
        tx.send(()).unwrap();
        rx2.recv().unwrap();
        tx2.send(Tick).unwrap();
        assert_eq!(rx.recv().unwrap(), Tick);
        // A type with bytes to send still gets packets.
        let ((_, rx), _) = pair::<u8, u8>(&opts).unwrap();
        assert!(rx.inner.endpoint().starts_with("unixpacket:"));
    }

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
