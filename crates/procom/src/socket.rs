//! Sockets: the one mechanism that crosses machines, and the local Unix-domain ones.
//!
//! - Stream sockets (`tcp:HOST:PORT`, `unix:PATH`, `unix:@NAME`): [`Listener`] binds and
//!   accepts; each accepted [`Connection`] is its own [`Sender`]/[`Receiver`] pair with the
//!   peer's credentials (SO_PEERCRED) on Unix sockets; [`connect`] is the client side. TCP has
//!   TCP_NODELAY on. Messages use the channel's framing (length-prefixed by default; lines or
//!   raw bytes for `nc`/`socat`).
//! - Datagram sockets (`udp:HOST:PORT`, `unixgram:PATH`): one datagram is one message, through
//!   the ordinary [`Sender::connect`] / [`Receiver::bind`]. UDP may lose and reorder: with
//!   length framing (the library's default) every datagram starts with an 8-byte big-endian
//!   sequence number, and the receiver counts what it never saw and what came late
//!   ([`Receiver::datagram_stats`]) rather than hiding it. With lines or raw framing datagrams
//!   are carried as they are, for `nc -u`.
//! - Unix socket files are created 0600 whatever the umask (the socket's own mode is set before
//!   `bind`), a stale file left by a killed server (connection refused) is replaced, a live
//!   server's socket is never taken, and a path that is not a socket is never removed. The
//!   listener removes its file on drop if it is still its own. A path over 107 bytes is refused
//!   when the endpoint is parsed. `@NAME` uses Linux's abstract namespace (no file at all).
//! - [`pair`] makes a connected Unix stream pair (`socketpair`).
//!
//! # References
//! - [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! - [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)
//! - [`udp(7)`](https://man7.org/linux/man-pages/man7/udp.7.html)

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

use crate::channel::{Options, Receiver, Sender};
use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::{Error, ErrorKind};
use crate::stream::{deadline_after, wait};

fn io_err(what: &str, e: std::io::Error, object: &impl std::fmt::Display) -> Error {
    let kind = e.kind();
    let detail = match kind {
        std::io::ErrorKind::ConnectionRefused => {
            "the connection was refused: nothing is listening there".to_string()
        }
        std::io::ErrorKind::AddrInUse => {
            "the address is already in use by another socket".to_string()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address does not belong to this machine".to_string()
        }
        std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
            format!("the host cannot be reached: {e}")
        }
        std::io::ErrorKind::TimedOut => "the connection attempt timed out".to_string(),
        _ => return Error::os(what, e).object(object),
    };
    let k = match kind {
        std::io::ErrorKind::ConnectionRefused => ErrorKind::NotFound,
        std::io::ErrorKind::AddrInUse => ErrorKind::AlreadyExists,
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Io,
    };
    Error::new(k).detail(detail).object(object)
}

/// Resolves `host:port` to socket addresses.
fn resolve(host: &str, port: u16, object: &Endpoint) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::new(ErrorKind::NotFound)
                .detail(format!("cannot resolve host `{host}`: {e}"))
                .object(object)
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(ErrorKind::NotFound)
            .detail(format!("host `{host}` has no address"))
            .object(object));
    }
    Ok(addrs)
}

fn unix_addr(addr: &UnixAddr, object: &Endpoint) -> Result<SocketAddrUnix, Error> {
    match addr {
        UnixAddr::Path(p) => SocketAddrUnix::new(p.as_path()),
        UnixAddr::Abstract(n) => SocketAddrUnix::new_abstract_name(n.as_bytes()),
    }
    .map_err(|e| Error::os("form the socket address", e.into()).object(object))
}

/// A Unix socket file this process created: removed on drop if still the same file.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            use std::os::unix::fs::MetadataExt;
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Makes way for binding a Unix socket at `path`: nothing there is fine; a stale socket (its
/// server is gone: connection refused) is removed; a live socket or any other file is refused.
fn clear_stale(path: &Path, stream: bool, object: &Endpoint) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::os("look at the socket path", e).object(object)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(ErrorKind::WrongType)
            .detail("exists and is not a socket; procom never removes it")
            .object(object));
    }
    let live = if stream {
        UnixStream::connect(path).is_ok()
    } else {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    };
    if live {
        return Err(Error::new(ErrorKind::AlreadyExists)
            .detail("a live server is listening on it; procom does not take its socket")
            .object(object));
    }
    std::fs::remove_file(path)
        .map_err(|e| Error::os("remove the stale socket file", e).object(object))
}

/// Creates, fchmods (0600 before bind, so the file is never more open), binds.
fn bind_unix(
    addr: &UnixAddr,
    ty: SocketType,
    object: &Endpoint,
) -> Result<(OwnedFd, Option<SocketFile>), Error> {
    if let UnixAddr::Path(p) = addr {
        clear_stale(p, ty == SocketType::STREAM, object)?;
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("create a socket", e.into()).object(object))?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| Error::os("set the socket's mode", e.into()).object(object))?;
    let sa = unix_addr(addr, object)?;
    rustix::net::bind(&fd, &sa).map_err(|e| io_err("bind", e.into(), object))?;
    let file = match addr {
        UnixAddr::Path(p) => {
            use std::os::unix::fs::MetadataExt;
            // The umask can only have removed bits; set exactly 0600.
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| Error::os("set the socket file's mode", e).object(object))?;
            let m = std::fs::symlink_metadata(p)
                .map_err(|e| Error::os("look at the socket file", e).object(object))?;
            Some(SocketFile {
                path: p.clone(),
                id: (m.dev(), m.ino()),
            })
        }
        UnixAddr::Abstract(_) => None,
    };
    Ok((fd, file))
}

/// Who is at the other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address, as text (`127.0.0.1:40312`; empty for an unnamed Unix socket).
    pub addr: String,
    /// Its pid (Unix sockets, SO_PEERCRED).
    pub pid: Option<i32>,
    /// Its uid (Unix sockets).
    pub uid: Option<u32>,
    /// Its gid (Unix sockets).
    pub gid: Option<u32>,
}

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

#[derive(Debug)]
enum ListenerKind {
    Tcp(TcpListener),
    /// The socket file, kept so it is removed when the listener goes.
    Unix(UnixListener, #[allow(dead_code)] Option<SocketFile>),
}

/// A listening stream socket (`tcp:` or `unix:`).
#[derive(Debug)]
pub struct Listener {
    kind: ListenerKind,
    endpoint: Endpoint,
    opts: Options,
    allowed_uids: Option<Vec<u32>>,
}

impl Listener {
    /// Binds and listens on a `tcp:` or `unix:` endpoint.
    pub fn bind(endpoint: &Endpoint, opts: &Options) -> Result<Listener, Error> {
        let kind = match endpoint {
            Endpoint::Tcp { host, port } => {
                let addrs = resolve(host, *port, endpoint)?;
                ListenerKind::Tcp(
                    TcpListener::bind(&addrs[..]).map_err(|e| io_err("bind", e, endpoint))?,
                )
            }
            Endpoint::Unix { addr } => {
                let (fd, file) = bind_unix(addr, SocketType::STREAM, endpoint)?;
                rustix::net::listen(&fd, 128)
                    .map_err(|e| Error::os("listen", e.into()).object(endpoint))?;
                ListenerKind::Unix(UnixListener::from(fd), file)
            }
            other => {
                return Err(Error::new(ErrorKind::InvalidInput)
                    .detail("only tcp: and unix: endpoints can listen for connections")
                    .object(other));
            }
        };
        Ok(Listener {
            kind,
            endpoint: endpoint.clone(),
            opts: opts.clone(),
            allowed_uids: None,
        })
    }

    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub fn local_endpoint(&self) -> Endpoint {
        match &self.kind {
            ListenerKind::Tcp(l) => match l.local_addr() {
                Ok(a) => Endpoint::Tcp {
                    host: a.ip().to_string(),
                    port: a.port(),
                },
                Err(_) => self.endpoint.clone(),
            },
            ListenerKind::Unix(..) => self.endpoint.clone(),
        }
    }

    /// Admits only peers with these uids (Unix sockets: others are closed at once; TCP peers,
    /// whose uid is unknown, are all refused).
    pub fn allow_uids(&mut self, uids: impl IntoIterator<Item = u32>) {
        self.allowed_uids = Some(uids.into_iter().collect());
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            ListenerKind::Tcp(l) => l.as_fd(),
            ListenerKind::Unix(l, _) => l.as_fd(),
        }
    }

    /// Waits for the next admitted client.
    pub fn accept(&self) -> Result<Connection, Error> {
        self.accept_deadline(None)
    }

    /// Waits at most `timeout` for the next admitted client.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, Error> {
        self.accept_deadline(deadline_after(timeout).or(Some(Instant::now())))
    }

    /// Waits until `deadline` for the next admitted client.
    pub fn accept_deadline(&self, deadline: Option<Instant>) -> Result<Connection, Error> {
        loop {
            if !wait(self.fd(), PollFlags::IN, deadline)
                .map_err(|e| Error::os("wait for a client", e).object(&self.endpoint))?
            {
                return Err(Error::new(ErrorKind::Timeout)
                    .detail("no client connected before the deadline")
                    .object(&self.endpoint));
            }
            let (fd, addr): (OwnedFd, String) = match &self.kind {
                ListenerKind::Tcp(l) => match l.accept() {
                    Ok((s, a)) => {
                        let _ = s.set_nodelay(true);
                        (s.into(), a.to_string())
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                                | std::io::ErrorKind::ConnectionAborted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::os("accept a connection", e).object(&self.endpoint));
                    }
                },
                ListenerKind::Unix(l, _) => match l.accept() {
                    Ok((s, a)) => (
                        s.into(),
                        a.as_pathname()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    ),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                                | std::io::ErrorKind::ConnectionAborted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::os("accept a connection", e).object(&self.endpoint));
                    }
                },
            };
            let cred = rustix::net::sockopt::socket_peercred(&fd)
                .ok()
                .filter(|_| matches!(self.kind, ListenerKind::Unix(..)));
            let peer = Peer {
                addr,
                pid: cred.as_ref().map(|c| c.pid.as_raw_nonzero().get()),
                uid: cred.as_ref().map(|c| c.uid.as_raw()),
                gid: cred.as_ref().map(|c| c.gid.as_raw()),
            };
            if let Some(allowed) = &self.allowed_uids
                && !peer.uid.is_some_and(|u| allowed.contains(&u))
            {
                continue; // dropped: the client sees the connection closed
            }
            return connection(fd, &self.endpoint, &self.opts, peer);
        }
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
    let name = if peer.addr.is_empty() {
        endpoint.to_string()
    } else {
        format!("{endpoint} (peer {})", peer.addr)
    };
    Ok(Connection {
        sender: Sender::from_fd(dup, name.clone(), opts),
        receiver: Receiver::from_fd(fd, name, opts),
        peer,
    })
}

/// Connects to a `tcp:` or `unix:` endpoint and returns the connected socket itself, for byte
/// streaming (`procom connect`); `timeout` bounds a TCP connection attempt.
pub fn connect_stream(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<OwnedFd, Error> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let mut last = None;
            for a in resolve(host, *port, endpoint)? {
                let r = match timeout {
                    Some(t) if !t.is_zero() => TcpStream::connect_timeout(&a, t),
                    _ => TcpStream::connect(a),
                };
                match r {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s.into());
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(io_err(
                "connect",
                last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
                endpoint,
            ))
        }
        Endpoint::Unix { addr } => {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| Error::os("create a socket", e.into()).object(endpoint))?;
            let sa = unix_addr(addr, endpoint)?;
            loop {
                match rustix::net::connect(&fd, &sa) {
                    Ok(()) => return Ok(fd),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::NOENT) => {
                        return Err(Error::new(ErrorKind::NotFound)
                            .detail("no socket exists there; start the server first")
                            .object(endpoint));
                    }
                    Err(e) => return Err(io_err("connect", e.into(), endpoint)),
                }
            }
        }
        other => Err(Error::new(ErrorKind::InvalidInput)
            .detail("not a stream socket endpoint")
            .object(other)),
    }
}

/// Connects to a `tcp:` or `unix:` endpoint and returns a sender and a receiver on the same
/// connection.
pub fn connect(endpoint: &Endpoint, opts: &Options) -> Result<(Sender, Receiver), Error> {
    let fd = connect_stream(endpoint, opts.open_timeout)?;
    let c = connection(
        fd,
        endpoint,
        opts,
        Peer {
            addr: String::new(),
            pid: None,
            uid: None,
            gid: None,
        },
    )?;
    Ok((c.sender, c.receiver))
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
    let none = || Peer {
        addr: String::new(),
        pid: None,
        uid: None,
        gid: None,
    };
    let ca = connection(a.into(), &ep, opts, none())?;
    let cb = connection(b.into(), &ep, opts, none())?;
    Ok(((ca.sender, ca.receiver), (cb.sender, cb.receiver)))
}

// ---------------------------------------------------------------------------------------------
// Datagrams

/// Bytes of the UDP sequence header (length framing only).
pub const SEQ_LEN: usize = 8;

/// What a datagram receiver has seen of a sender's sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Datagrams delivered.
    pub received: u64,
    /// Sequence numbers skipped (datagrams presumed lost, unless they come late).
    pub lost: u64,
    /// Datagrams that arrived after a later one.
    pub reordered: u64,
}

/// The sending side of a datagram flavor.
#[derive(Debug)]
pub(crate) struct DgramSender {
    fd: OwnedFd,
    seq: Option<u64>,
}

/// The receiving side of a datagram flavor.
#[derive(Debug)]
pub(crate) struct DgramReceiver {
    fd: OwnedFd,
    sequenced: bool,
    next: Option<u64>,
    pub(crate) stats: DatagramStats,
    _file: Option<SocketFile>,
}

/// Binds a datagram receiver (`udp:` or `unixgram:`).
pub(crate) fn bind_dgram(endpoint: &Endpoint, sequenced: bool) -> Result<DgramReceiver, Error> {
    let (fd, file) = match endpoint {
        Endpoint::Udp { host, port } => {
            let addrs = resolve(host, *port, endpoint)?;
            (
                UdpSocket::bind(&addrs[..])
                    .map_err(|e| io_err("bind", e, endpoint))?
                    .into(),
                None,
            )
        }
        Endpoint::UnixGram { addr } => bind_unix(addr, SocketType::DGRAM, endpoint)?,
        other => {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("not a datagram endpoint")
                .object(other));
        }
    };
    Ok(DgramReceiver {
        fd,
        sequenced: sequenced && matches!(endpoint, Endpoint::Udp { .. }),
        next: None,
        stats: DatagramStats::default(),
        _file: file,
    })
}

/// Connects a datagram sender (`udp:` or `unixgram:`).
pub(crate) fn connect_dgram(endpoint: &Endpoint, sequenced: bool) -> Result<DgramSender, Error> {
    let fd: OwnedFd = match endpoint {
        Endpoint::Udp { host, port } => {
            let addrs = resolve(host, *port, endpoint)?;
            let local: SocketAddr = if addrs[0].is_ipv6() {
                "[::]:0".parse().unwrap_or(addrs[0])
            } else {
                "0.0.0.0:0".parse().unwrap_or(addrs[0])
            };
            let s = UdpSocket::bind(local).map_err(|e| io_err("bind a local port", e, endpoint))?;
            s.connect(&addrs[..])
                .map_err(|e| io_err("connect", e, endpoint))?;
            s.into()
        }
        Endpoint::UnixGram { addr } => {
            let s = UnixDatagram::unbound()
                .map_err(|e| Error::os("create a socket", e).object(endpoint))?;
            let fd: OwnedFd = s.into();
            let sa = unix_addr(addr, endpoint)?;
            rustix::net::connect(&fd, &sa).map_err(|e| match e {
                rustix::io::Errno::NOENT => Error::new(ErrorKind::NotFound)
                    .detail("no socket exists there; start the receiver first")
                    .object(endpoint),
                e => io_err("connect", e.into(), endpoint),
            })?;
            fd
        }
        other => {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("not a datagram endpoint")
                .object(other));
        }
    };
    Ok(DgramSender {
        fd,
        seq: (sequenced && matches!(endpoint, Endpoint::Udp { .. })).then_some(0),
    })
}

impl DgramSender {
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), Error> {
        let header = self.seq.map(u64::to_be_bytes);
        let parts: Vec<&[u8]> = match &header {
            Some(h) => vec![h, msg],
            None => vec![msg],
        };
        let iov: Vec<std::io::IoSlice<'_>> =
            parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
        loop {
            let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
            match rustix::net::sendmsg(
                &self.fd,
                &iov,
                &mut rustix::net::SendAncillaryBuffer::default(),
                flags,
            ) {
                Ok(_) => {
                    if let Some(s) = &mut self.seq {
                        *s += 1;
                    }
                    return Ok(());
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    if !wait(self.fd.as_fd(), PollFlags::OUT, deadline)
                        .map_err(|e| Error::os("wait to send", e))?
                    {
                        return Err(Error::new(if is_try {
                            ErrorKind::Full
                        } else {
                            ErrorKind::Timeout
                        })
                        .detail("the socket's send buffer stayed full"));
                    }
                }
                Err(rustix::io::Errno::MSGSIZE) => {
                    return Err(Error::too_large(msg.len() as u64, 65507).detail(format!(
                        "a {}-byte message does not fit in one datagram (UDP carries at most 65,507 bytes; a Unix datagram at most the socket buffer)",
                        msg.len()
                    )));
                }
                Err(rustix::io::Errno::CONNREFUSED) | Err(rustix::io::Errno::NOTCONN) => {
                    return Err(Error::new(ErrorKind::PeerGone)
                        .detail("nothing is receiving there (connection refused)"));
                }
                Err(e) => return Err(Error::os("send a datagram", e.into())),
            }
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DgramReceiver {
    pub(crate) fn recv(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<Vec<u8>, Error> {
        loop {
            // Learn the datagram's real size first (MSG_TRUNC), so no datagram is ever cut short
            // and nothing over the limit is allocated.
            let mut probe = [0u8; 1];
            let peek = rustix::net::recv(
                &self.fd,
                &mut probe,
                rustix::net::RecvFlags::PEEK
                    | rustix::net::RecvFlags::TRUNC
                    | rustix::net::RecvFlags::DONTWAIT,
            );
            let size = match peek {
                Ok((_, n)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    if !wait(self.fd.as_fd(), PollFlags::IN, deadline)
                        .map_err(|e| Error::os("wait for a datagram", e))?
                    {
                        return Err(if is_try {
                            Error::new(ErrorKind::Empty).detail("no datagram is waiting")
                        } else {
                            Error::new(ErrorKind::Timeout)
                                .detail("no datagram arrived before the deadline")
                        });
                    }
                    continue;
                }
                Err(e) => return Err(Error::os("receive a datagram", e.into())),
            };
            let header = if self.sequenced { SEQ_LEN } else { 0 };
            if size > max + header {
                let _ = rustix::net::recv(&self.fd, &mut probe, rustix::net::RecvFlags::DONTWAIT); // discard it
                return Err(Error::too_large(
                    (size - header.min(size)) as u64,
                    max as u64,
                ));
            }
            let mut buf = vec![0u8; size.max(1)];
            let (_, n) =
                match rustix::net::recv(&self.fd, &mut buf[..], rustix::net::RecvFlags::DONTWAIT) {
                    Ok(r) => r,
                    Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
                    Err(e) => return Err(Error::os("receive a datagram", e.into())),
                };
            buf.truncate(n);
            if !self.sequenced {
                self.stats.received += 1;
                return Ok(buf);
            }
            if buf.len() < SEQ_LEN {
                return Err(Error::new(ErrorKind::Malformed).detail(format!(
                    "a {}-byte datagram is too short for procom's 8-byte sequence header (is the sender using --framed?)",
                    buf.len()
                )));
            }
            let seq = u64::from_be_bytes(buf[..SEQ_LEN].try_into().unwrap_or([0; 8]));
            match self.next {
                Some(next) if seq < next => {
                    // It was counted lost when a later one overtook it: it is late, not lost.
                    self.stats.reordered += 1;
                    self.stats.lost = self.stats.lost.saturating_sub(1);
                }
                Some(next) => {
                    self.stats.lost += seq - next;
                    self.next = Some(seq + 1);
                }
                None => self.next = Some(seq + 1),
            }
            self.stats.received += 1;
            buf.drain(..SEQ_LEN);
            return Ok(buf);
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
