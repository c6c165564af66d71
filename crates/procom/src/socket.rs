//! Sockets: the one mechanism that crosses machines, and the local Unix-domain ones.
//!
//! - Stream sockets (`tcp:HOST:PORT`, `unix:PATH`, `unix:@NAME`): [`Listener`] binds and
//!   accepts; each accepted [`Connection`] is its own [`Sender`]/[`Receiver`] pair with the
//!   peer's credentials (SO_PEERCRED) on Unix sockets; [`connect`] is the client side. TCP has
//!   TCP_NODELAY on. Messages use the channel's framing (length-prefixed by default; lines or
//!   raw bytes for `nc`/`socat`).
//! - Sequenced-packet sockets (`unixpacket:PATH`, `unixpacket:@NAME`, `SOCK_SEQPACKET`): connected
//!   like `unix:` ([`Listener`], [`connect`], [`packet_pair`], the peer's credentials and the
//!   uid allow-list alike), but the kernel keeps each message whole, so nothing is added on
//!   the wire and no framing applies. A message travels in one kernel buffer: at most the
//!   sender's socket buffer less 32 bytes, which the sender grows to fit
//!   [`Options::max_message`] where the kernel lets it (twice `net.core.wmem_max` for an
//!   unprivileged process, [`packet_limit`] here) and never over 4 MiB; a larger message is
//!   refused with [`ErrorKind::TooLarge`] naming the limit. An empty message cannot be told
//!   from the peer leaving, so it is refused ([`ErrorKind::InvalidInput`]) and a receiver
//!   reads an empty packet as [`ErrorKind::PeerGone`]. A packet over the receiver's limit is
//!   discarded and reported, never delivered cut short.
//! - Datagram sockets (`udp:HOST:PORT`, `unixgram:PATH`): one datagram is one message, through
//!   the ordinary [`Sender::connect`] / [`Receiver::bind`]. UDP may lose and reorder: with
//!   length framing (the library's default) every datagram starts with procom's 16-byte
//!   header ([`UDP_HEADER_LEN`]: the magic `ff 50 43 55`, version 1, three zero bytes, an
//!   8-byte big-endian sequence number), and the receiver counts, per sender, what it never
//!   saw, what came late and what came twice ([`Receiver::datagram_stats`],
//!   [`DatagramStats`]) rather than hiding it. A datagram without that header is refused
//!   whole (`Malformed`), never delivered with its first bytes cut off. A Unix datagram
//!   carries the message alone under length framing (nothing is added: the kernel keeps it
//!   whole and in order). With raw framing datagrams are carried as they are; with lines (the CLI's
//!   default, for `nc -u` and `socat`) each datagram is one line: a sender ends it with `\n`
//!   and a receiver drops one final `\n`. A datagram a receiver cannot deliver (over its size
//!   limit, or missing procom's header) fails only the receive that met it, and is counted
//!   ([`DatagramStats::refused`]): anyone can send a receiver a bad datagram, and that must
//!   not stop it.
//! - Unix socket files are created 0600 whatever the umask (the socket's own mode is set before
//!   `bind`). A socket file already at the path is probed with a non-blocking connect: only
//!   "connection refused" (no server bound to it: one was killed) makes it stale, and it is
//!   removed if it is still the same file; a live server (even one whose backlog is full) is
//!   never taken, nor a socket this user may not connect to (it cannot be checked), and a
//!   path that is not a socket is never removed. (Between the last check that the file is
//!   the stale one and its removal lie a few microseconds: two servers replacing the same
//!   stale file in that very instant can still race; a later one sees a live server or
//!   "address in use".) The listener removes its file on drop if it is still its own. A path
//!   over 107 bytes is refused, never truncated. `@NAME` uses Linux's abstract namespace (no
//!   file at all).
//! - [`pair`] makes a connected Unix stream pair (`socketpair`).
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use procom::socket::{Listener, connect};
//! use procom::{Endpoint, Options};
//! let listener = Listener::bind(&Endpoint::parse("tcp:127.0.0.1:0")?, &Options::default())?;
//! let server = listener.local_endpoint(); // the real port
//! let client = std::thread::spawn(move || -> Result<Vec<u8>, procom::Error> {
//!     let (mut tx, mut rx) = connect(&server, &Options::default())?;
//!     tx.send(b"ping").map_err(|e| e.into_error())?;
//!     rx.recv()
//! });
//! let mut conn = listener.accept()?;
//! let ping = conn.receiver.recv()?;
//! conn.sender.send(ping).map_err(|e| e.into_error())?; // echo
//! assert_eq!(client.join().unwrap()?, b"ping");
//! # Ok(()) }
//! ```
//!
//! # References
//! - [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! - [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)
//! - [`udp(7)`](https://man7.org/linux/man-pages/man7/udp.7.html)

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::channel::{Options, Receiver, Sender};
use crate::cleanup::Cleanup;
use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::{Error, ErrorKind};
use crate::net::StreamListener;
use crate::stream::deadline_after;

pub use crate::flavor::dgram::{DatagramStats, UDP_HEADER_LEN, UDP_MAGIC, UDP_VERSION};
pub use crate::flavor::packet::packet_limit;
pub use crate::net::{Peer, connect_stream, remove};

/// One accepted connection: its own sender, receiver and peer.
#[derive(Debug)]
pub struct Connection {
    /// Sends to this client.
    pub sender: Sender,
    /// Receives from this client.
    pub receiver: Receiver,
    /// Who the client is.
    pub peer: Peer,
}

/// A listening connection-oriented socket (`tcp:`, `unix:` or `unixpacket:`): each accepted
/// client is a [`Connection`].
#[derive(Debug)]
pub struct Listener {
    inner: StreamListener,
    opts: Options,
}

impl Listener {
    /// Binds and listens on a `tcp:`, `unix:` or `unixpacket:` endpoint; stream connections
    /// are framed as `opts` says. A path's socket file gets [`Options::mode`] and
    /// [`Options::group`] (clients need write permission on it to connect).
    pub fn bind(endpoint: &Endpoint, opts: &Options) -> Result<Listener, Error> {
        Ok(Listener {
            inner: StreamListener::bind(endpoint, opts.access(endpoint)?)?,
            opts: opts.clone(),
        })
    }

    /// The socket file this listener created, for removal from another thread (see
    /// [`Cleanup`]); `None` for TCP and abstract Unix sockets, which leave nothing behind.
    pub fn cleanup(&self) -> Option<Cleanup> {
        self.inner.cleanup()
    }

    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub fn local_endpoint(&self) -> Endpoint {
        self.inner.local_endpoint()
    }

    /// Admits only peers with these uids (Unix sockets: others are closed at once; TCP peers,
    /// whose uid is unknown, are all refused).
    pub fn allow_uids(&mut self, uids: impl IntoIterator<Item = u32>) {
        self.inner.allow_uids(uids);
    }

    /// The listening socket (readable when a client is waiting).
    #[cfg(feature = "tokio")]
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.fd()
    }

    /// Waits for the next admitted client.
    pub fn accept(&self) -> Result<Connection, Error> {
        self.accept_deadline(None)
    }

    /// The next admitted client if one is waiting; otherwise [`ErrorKind::Empty`].
    pub fn try_accept(&self) -> Result<Connection, Error> {
        self.accept_deadline(Some(Instant::now()))
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => Error::new(ErrorKind::Empty)
                    .detail("no client is waiting")
                    .object(self.local_endpoint()),
                _ => e,
            })
    }

    /// Waits at most `timeout` for the next admitted client (a timeout too long to represent
    /// waits as long as it takes).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, Error> {
        self.accept_deadline(deadline_after(timeout))
    }

    /// Waits until `deadline` for the next admitted client.
    pub fn accept_deadline(&self, deadline: Option<Instant>) -> Result<Connection, Error> {
        let (fd, peer) = self.inner.accept_deadline(deadline)?;
        connection(fd, self.inner.endpoint(), &self.opts, peer)
    }
}

fn connection(
    fd: OwnedFd,
    endpoint: &Endpoint,
    opts: &Options,
    peer: Peer,
) -> Result<Connection, Error> {
    let dup = fd
        .try_clone()
        .map_err(|e| Error::os("duplicate the connection", e).object(endpoint))?;
    let name = peer.connection_name(endpoint);
    let kind = crate::kind::kind_of(endpoint);
    let (sender, receiver) = match endpoint {
        Endpoint::UnixPacket { .. } => (
            Sender::packet(dup, name.clone(), kind, opts),
            Receiver::packet(fd, name, kind, opts),
        ),
        _ => (
            Sender::stream(dup, name.clone(), kind, opts),
            Receiver::stream(fd, name, kind, opts),
        ),
    };
    Ok(Connection {
        sender,
        receiver,
        peer,
    })
}

/// Connects to a `tcp:`, `unix:` or `unixpacket:` endpoint and returns a sender and a receiver
/// on the same connection.
pub fn connect(endpoint: &Endpoint, opts: &Options) -> Result<(Sender, Receiver), Error> {
    let fd = crate::net::connect_stream(endpoint, opts.open_timeout)?;
    let c = connection(fd, endpoint, opts, unknown_peer())?;
    Ok((c.sender, c.receiver))
}

/// The peer of a connection this process made itself (connected, or one of a pair): none of
/// it is asked.
fn unknown_peer() -> Peer {
    Peer {
        addr: String::new(),
        pid: None,
        uid: None,
        gid: None,
    }
}

/// Both ends of a socket pair, each as channels in both directions, named by `ep`.
fn duplex_pair(
    a: OwnedFd,
    b: OwnedFd,
    ep: &Endpoint,
    opts: &Options,
) -> Result<(Duplex, Duplex), Error> {
    let ca = connection(a, ep, opts, unknown_peer())?;
    let cb = connection(b, ep, opts, unknown_peer())?;
    Ok(((ca.sender, ca.receiver), (cb.sender, cb.receiver)))
}

/// Both directions of one connection.
pub type Duplex = (Sender, Receiver);

/// A connected pair of Unix stream sockets (`socketpair`), as channels in both directions.
#[doc(alias = "socketpair")]
pub fn pair(opts: &Options) -> Result<(Duplex, Duplex), Error> {
    let (a, b) = UnixStream::pair()
        .map_err(|e| Error::os("create a socket pair", e).object("socketpair"))?;
    let ep = Endpoint::Unix {
        addr: UnixAddr::Abstract("socketpair".into()),
    };
    duplex_pair(a.into(), b.into(), &ep, opts)
}

/// A connected pair of Unix sequenced-packet sockets (`socketpair` with `SOCK_SEQPACKET`), as
/// channels in both directions: one message per packet, no framing (see the module's notes on
/// `unixpacket:` for the largest message).
#[doc(alias = "socketpair")]
pub fn packet_pair(opts: &Options) -> Result<(Duplex, Duplex), Error> {
    let (a, b) = packet_socketpair()?;
    let ep = Endpoint::UnixPacket {
        addr: UnixAddr::Abstract("socketpair".into()),
    };
    duplex_pair(a, b, &ep, opts)
}

/// A [`packet_pair`] if one packet here holds a whole message of `opts.max_message` bytes
/// (asked of the pair's own socket, its send buffer grown as a packet sender's is); `None` if
/// not, or if no sequenced-packet pair can be made.
pub(crate) fn packet_pair_holding(opts: &Options) -> Result<Option<(Duplex, Duplex)>, Error> {
    let Ok((a, b)) = packet_socketpair() else {
        return Ok(None);
    };
    let max = opts.max_message;
    if crate::flavor::packet::room(a.as_fd(), max) < max {
        return Ok(None);
    }
    let ep = Endpoint::UnixPacket {
        addr: UnixAddr::Abstract("socketpair".into()),
    };
    duplex_pair(a, b, &ep, opts).map(Some)
}

/// Two connected sequenced-packet sockets, close-on-exec.
pub(crate) fn packet_socketpair() -> Result<(OwnedFd, OwnedFd), Error> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("create a socket pair", e.into()).object("socketpair"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nobody waiting, `try_accept` is `Empty` at once.
    #[test]
    fn try_accept_is_empty_without_a_client() {
        let l = Listener::bind(
            &Endpoint::parse("tcp:127.0.0.1:0").unwrap(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(l.try_accept().unwrap_err().kind(), ErrorKind::Empty);
    }

    /// A packet pair keeps every boundary, refuses an empty message, and a 1 MiB message
    /// either arrives whole or is refused by the sender with the limit it found.
    #[test]
    fn packet_pair_boundaries_empty_and_a_mebibyte() {
        let ((mut tx, _), (_, mut rx)) = packet_pair(&Options::default()).unwrap();
        for size in [1usize, 2, 4095, 4096, 65537] {
            tx.send(vec![size as u8; size]).unwrap();
        }
        for size in [1usize, 2, 4095, 4096, 65537] {
            assert_eq!(rx.recv().unwrap(), vec![size as u8; size]);
        }
        let e = tx.send(Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let big: Vec<u8> = (0..1 << 20).map(|i: usize| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            let r = tx.send(big.clone()).map_err(|e| e.into_error());
            (r, big)
        });
        let (sent, big) = t.join().unwrap();
        match sent {
            Ok(()) => assert_eq!(rx.recv().unwrap(), big),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
                assert!(e.limit().is_some_and(|l| l < 1 << 20), "{e}");
                assert!(e.to_string().contains("wmem_max"), "{e}");
                assert!(packet_limit() < 1 << 20);
            }
        }
    }

    /// A packet over the receiver's limit is consumed and reported, never delivered cut short;
    /// the next one arrives whole.
    #[test]
    fn packet_over_the_receivers_limit_is_discarded() {
        let ((mut tx2, _), (_, mut rx2)) =
            packet_pair(&Options::default().max_message(1024)).unwrap();
        tx2.set_max_message(4096);
        tx2.send(vec![1u8; 2048]).unwrap();
        tx2.send(b"next".to_vec()).unwrap();
        let e = rx2.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!((e.size(), e.limit()), (Some(2048), Some(1024)));
        assert_eq!(rx2.recv().unwrap(), b"next");
        assert_eq!(rx2.try_recv().unwrap_err().kind(), ErrorKind::Empty);
    }

    /// A timeout too long to represent waits for the client instead of timing out at once.
    #[test]
    fn accept_timeout_beyond_representable_waits() {
        let l = Listener::bind(
            &Endpoint::parse("tcp:127.0.0.1:0").unwrap(),
            &Options::default(),
        )
        .unwrap();
        let ep = l.local_endpoint();
        let client = std::thread::spawn(move || connect(&ep, &Options::default()).map(drop));
        let conn = l.accept_timeout(Duration::MAX);
        assert!(conn.is_ok(), "{conn:?}");
        client.join().unwrap().unwrap();
    }
}
