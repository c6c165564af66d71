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
//! [`shm_pair`] goes faster still over shared memory, with no system call for a message that
//! finds its receiver awake.
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

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::Options;
use crate::error::{Error, ErrorKind};

mod receiver;
mod sender;

pub use receiver::Receiver;
pub use sender::Sender;
#[cfg(feature = "tokio")]
pub(crate) use sender::encode_error;

#[cfg(feature = "tokio")]
pub use crate::aio::typed::{AsyncReceiver, AsyncSender};

/// One end of a typed connection: sends `A`, receives `B`.
pub type End<A, B> = (Sender<A>, Receiver<B>);

/// The two ends of a typed connection made by [`pair`].
pub type Ends<A, B> = (End<A, B>, End<B, A>);

/// A connected pair of local typed channels (`socketpair`): the first end sends `A` and
/// receives `B`, the second the reverse; hand one end's descriptors
/// ([`Sender::into_fd`](crate::Sender::into_fd)) to a child, or use the ends in two threads. The pair is a
/// Unix sequenced-packet pair (`unixpacket:`, see [`crate::socket`]) when the kernel lets one
/// packet hold a whole message of `opts.max_message` bytes (1 MiB, say, but not the default
/// 64 MiB: a packet holds at most twice `net.core.wmem_max` and 4 MiB) and neither type is
/// zero-sized, and a Unix stream pair otherwise; [`Receiver::endpoint`](crate::Receiver::endpoint) says which
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
    let packets = if empty {
        None
    } else {
        crate::socket::packet_pair_holding(opts)?
    };
    let ((tx_a, rx_a), (tx_b, rx_b)) = match packets {
        Some(ends) => ends,
        None => crate::socket::pair(opts)?,
    };
    Ok((
        (Sender::from_untyped(tx_a), Receiver::from_untyped(rx_a)),
        (Sender::from_untyped(tx_b), Receiver::from_untyped(rx_b)),
    ))
}

/// A connected pair of local typed channels over shared memory: two anonymous channels
/// ([`crate::shm::channel`]), one each way, each a ring of `capacity` bytes (a message encodes
/// to at most 16 bytes less). The first end sends `A` and receives `B`, the second the
/// reverse. Between two processes of one machine this streams the most messages a second of
/// any typed channel here, four to eleven times a sequenced-packet pair's at 64 bytes on the
/// reference machine (see the benchmark's `shm-typed` rows), because a message that finds its receiver awake costs
/// no system call; an empty receiver sleeps on a futex. What it costs: the memory of two rings
/// (allocated at creation, up to 16 MiB each), no descriptor to poll ([`crate::Receiver::as_fd`] is `None`; the async
/// forms work), and a peer that dies is noticed within 50 ms rather than at once.
///
/// Hand one end to a child as descriptors: [`Sender::into_untyped`] then
/// [`crate::Sender::into_fd`] (and the same for the receiver); the child takes them up with
/// [`crate::Sender::from_shm_fd`] and [`crate::Receiver::from_shm_fd`], then
/// [`Sender::from_untyped`]. Either side sees the other gone ([`ErrorKind::PeerGone`]) when
/// the process holding it exits or is killed, even before it took its end up, once no other
/// process holds a copy of its descriptors (close the parent's copies; see
/// [`crate::shm::channel`] for what else keeps an end alive).
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// let opts = procom::Options::default();
/// let ((mut tx, _), (_, mut rx)) = procom::typed::shm_pair::<String, u64>(1 << 20, &opts)?;
/// tx.send_view("over shared memory")?;
/// assert_eq!(rx.recv()?, "over shared memory");
/// # Ok(()) }
/// ```
pub fn shm_pair<A, B>(capacity: u64, opts: &Options) -> Result<Ends<A, B>, Error>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
{
    let (tx_a, rx_b) = crate::shm::channel(capacity, opts)?;
    let (tx_b, rx_a) = crate::shm::channel(capacity, opts)?;
    Ok((
        (Sender::from_untyped(tx_a), Receiver::from_untyped(rx_a)),
        (Sender::from_untyped(tx_b), Receiver::from_untyped(rx_b)),
    ))
}

/// Decodes one message as `T`: anything that is not a `T` is `Malformed`, never a panic, and
/// what is allocated is bounded by the message's size.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decode_view::<T>(bytes)
}

/// Decodes one message as a view `V` borrowing from it: anything that is not a `V` is
/// `Malformed`, never a panic.
pub(crate) fn decode_view<'a, V: Deserialize<'a>>(bytes: &'a [u8]) -> Result<V, Error> {
    postcard::from_bytes::<V>(bytes).map_err(|e| {
        Error::new(ErrorKind::Malformed).detail(format!(
            "a {}-byte message does not decode as {}: {e}",
            bytes.len(),
            std::any::type_name::<V>()
        ))
    })
}

/// The typed decoder's invariants on arbitrary bytes, for the fuzz target
/// (`fuzz/fuzz_targets/typed_decode.rs`) and the corpus replay in `cargo test`: decoding as
/// each of a range of types gives a value or `Malformed`, a value encodes and decodes back to
/// itself, and a view (borrowing from the bytes) decodes exactly when its owned type does.
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

    /// A view and the owned type it stands for agree: both decode, to values that encode
    /// alike, or neither does (`Malformed`).
    fn view<'a, V, T>(data: &'a [u8])
    where
        V: Deserialize<'a> + Serialize + Debug,
        T: DeserializeOwned + Serialize + Debug,
    {
        match (decode_view::<V>(data), decode::<T>(data)) {
            (Ok(v), Ok(t)) => assert_eq!(
                postcard::to_allocvec(&v).expect("a decoded view encodes"),
                postcard::to_allocvec(&t).expect("a decoded value encodes"),
                "{v:?} against {t:?}"
            ),
            (Err(a), Err(b)) => {
                assert_eq!(a.kind(), ErrorKind::Malformed, "{a}");
                assert_eq!(b.kind(), ErrorKind::Malformed, "{b}");
            }
            (v, t) => panic!("a view and its owned type disagree: {v:?} against {t:?}"),
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
    view::<&str, String>(data);
    view::<&[u8], Vec<u8>>(data);
    view::<(u32, &str, Option<&[u8]>), (u32, String, Option<Vec<u8>>)>(data);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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

    /// A value large enough to be streamed crosses a stream intact whichever way it is sent
    /// and received, and so do values just below and at the size where streaming starts.
    #[test]
    fn large_values_cross_a_stream_as_views_and_values() {
        let ((mut tx, _), (_, mut rx)) =
            pair::<serde_bytes::ByteBuf, serde_bytes::ByteBuf>(&Options::default()).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                for len in [(32 << 10) - 4, (32 << 10) - 3, 1 << 20, 5] {
                    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                    tx.send_view(serde_bytes::Bytes::new(&data)).unwrap();
                    tx.send_ref(&serde_bytes::ByteBuf::from(data)).unwrap();
                }
            });
            for len in [(32 << 10) - 4, (32 << 10) - 3, 1 << 20, 5] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let v: &serde_bytes::Bytes = rx.recv_view().unwrap();
                assert_eq!(v.as_ref(), &data[..]);
                assert_eq!(rx.recv().unwrap().into_vec(), data);
            }
        });
    }

    /// On a pipe holding a 40 KiB message, a `try_` send of a second string of `len` bytes
    /// starts only if the pipe has room for all of it: otherwise `Full`, with nothing written,
    /// and the same send succeeds once the reader made room.
    fn try_send_on_a_full_pipe_writes_nothing(len: usize) {
        let (tx, rx) = crate::pipe::channel().unwrap();
        let (mut tx, mut rx) = (
            Sender::<String>::from_untyped(tx),
            Receiver::<String>::from_untyped(rx),
        );
        let (a, b) = ("a".repeat(40 << 10), "b".repeat(len));
        tx.try_send_view(a.as_str()).unwrap();
        let e = tx.try_send_view(b.as_str()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Full, "{e}");
        assert_eq!(rx.recv_view::<&str>().unwrap(), a);
        tx.try_send_view(b.as_str()).unwrap();
        assert_eq!(rx.recv_view::<&str>().unwrap(), b);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::Empty);
    }

    /// A value large enough to be streamed (40 KiB).
    #[test]
    fn a_streamed_try_send_on_a_full_pipe_writes_nothing() {
        try_send_on_a_full_pipe_writes_nothing(40 << 10);
    }

    /// A value sent whole (30 KiB), as a streamed one: only if its whole frame fits.
    #[test]
    fn a_whole_try_send_on_a_full_pipe_writes_nothing() {
        try_send_on_a_full_pipe_writes_nothing(30 << 10);
    }

    /// An encoder that ignores a failed write and goes on puts nothing more on the stream:
    /// the send fails as such, and the sender, which had begun the frame, is poisoned.
    #[test]
    fn a_streamed_send_takes_nothing_after_a_failed_write() {
        /// Two large byte strings; the error of the first is ignored.
        struct Careless;
        impl Serialize for Careless {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeTuple;
                let mut t = s.serialize_tuple(2)?;
                let _ = t.serialize_element(serde_bytes::Bytes::new(&[1; 4 << 20]));
                t.serialize_element(serde_bytes::Bytes::new(&[2; 64 << 10]))?;
                t.end()
            }
        }
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let opts = Options::default().max_message(8 << 20);
        let mut tx = Sender::<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>::from_untyped(
            crate::channel::Sender::from_fd(a, "unix:pair", &opts),
        );
        // Nobody reads `b`: the first string fills the socket and its write times out.
        let e = tx
            .send_view_timeout(&Careless, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("failed earlier"), "{e}");
        let e = tx.send_ref(&Default::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        drop(b);
    }

    /// A view that does not decode is `Malformed`, and the next message is received.
    #[test]
    fn a_view_that_does_not_decode_is_malformed() {
        let (tx, rx) = crate::pipe::channel().unwrap();
        let (mut tx, mut rx) = (
            Sender::<Vec<u8>>::from_untyped(tx),
            Receiver::<Vec<u8>>::from_untyped(rx),
        );
        tx.send(vec![0xff, 0xfe]).unwrap();
        tx.send(b"ok".to_vec()).unwrap();
        let e = rx.recv_view::<&str>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
        assert_eq!(rx.recv_view::<&str>().unwrap(), "ok");
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
