//! Sockets: the one mechanism that crosses machines, and the local Unix-domain ones.
//!
//! - Stream sockets (`tcp:HOST:PORT`, `unix:PATH`, `unix:@NAME`): [`Listener`] binds and
//!   accepts; each accepted [`Connection`] is its own [`Sender`]/[`Receiver`] pair with the
//!   peer's credentials (SO_PEERCRED) on Unix sockets; [`connect`] is the client side. TCP has
//!   TCP_NODELAY on. Messages use the channel's framing (length-prefixed by default; lines or
//!   raw bytes for `nc`/`socat`).
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
//! # References
//! - [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! - [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)
//! - [`udp(7)`](https://man7.org/linux/man-pages/man7/udp.7.html)

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

use crate::channel::{Options, Receiver, Sender};
use crate::cleanup::Cleanup;
use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::{Error, ErrorKind};
use crate::framing::Framing;
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
        // bind(2) creates the socket file; what is missing is the directory it goes in.
        std::io::ErrorKind::NotFound if what == "bind" => {
            "the directory it would go in does not exist".to_string()
        }
        _ => return Error::os(what, e).object(object),
    };
    let k = match kind {
        std::io::ErrorKind::ConnectionRefused => ErrorKind::NotFound,
        std::io::ErrorKind::AddrInUse => ErrorKind::AlreadyExists,
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
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
    let len = match addr {
        UnixAddr::Path(p) => p.as_os_str().len(),
        UnixAddr::Abstract(n) => n.len(),
    };
    if len > crate::endpoint::UNIX_PATH_MAX {
        // `Endpoint::parse` refuses these already; an `Endpoint` built by hand is checked here,
        // so a long address is never silently cut short.
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail(format!(
                "the address is {len} bytes, over the {}-byte limit of a Unix socket address",
                crate::endpoint::UNIX_PATH_MAX
            ))
            .object(object));
    }
    match addr {
        UnixAddr::Path(p) => SocketAddrUnix::new(p.as_path()),
        UnixAddr::Abstract(n) => SocketAddrUnix::new_abstract_name(n.as_bytes()),
    }
    .map_err(|e| Error::os("form the socket address", e.into()).object(object))
}

/// A Unix socket file this process created: removed on drop if still the same file.
#[derive(Debug)]
pub(crate) struct SocketFile(Option<Cleanup>);

impl SocketFile {
    /// Gives up the file: it stays where it is.
    fn keep(mut self) {
        self.0 = None;
    }

    /// Its name, for removal from another thread.
    pub(crate) fn cleanup(&self) -> Option<Cleanup> {
        self.0.clone()
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.remove();
        }
    }
}

/// Tries to connect to the Unix socket at `path` without blocking: `Ok` or `EAGAIN` (a live
/// server whose backlog is full) mean someone is there; `ECONNREFUSED` means nobody is.
fn probe(sa: &SocketAddrUnix, ty: SocketType) -> Result<(), rustix::io::Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )?;
    loop {
        match rustix::net::connect(&fd, sa) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INPROGRESS) => return Ok(()),
            other => return other,
        }
    }
}

/// Makes way for binding a Unix socket at `path`: nothing there is fine; a stale socket (its
/// server is gone: the kernel refuses connections to it) is removed; a live socket, a socket
/// this process may not connect to (so cannot check), and any other file are refused.
fn clear_stale(path: &Path, ty: SocketType, object: &Endpoint) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
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
    let sa = SocketAddrUnix::new(path)
        .map_err(|e| Error::os("form the socket address", e.into()).object(object))?;
    // A socket file of the other type (stream/datagram) answers EPROTOTYPE: ask it in its own.
    let other = if ty == SocketType::STREAM {
        SocketType::DGRAM
    } else {
        SocketType::STREAM
    };
    let answer = match probe(&sa, ty) {
        Err(rustix::io::Errno::PROTOTYPE) => probe(&sa, other),
        r => r,
    };
    match answer {
        Err(rustix::io::Errno::CONNREFUSED) => {} // stale: nobody is bound to it any more
        Err(rustix::io::Errno::NOENT) => return Ok(()), // removed meanwhile
        Ok(()) => {
            return Err(Error::new(ErrorKind::AlreadyExists)
                .detail("a live server is listening on it; procom does not take its socket")
                .object(object));
        }
        Err(rustix::io::Errno::ACCESS) | Err(rustix::io::Errno::PERM) => {
            return Err(Error::new(ErrorKind::PermissionDenied)
                .detail("a socket file this user may not connect to is in the way, so procom cannot tell whether its server is alive and leaves it alone")
                .object(object));
        }
        Err(e) => {
            return Err(
                Error::os("check whether the socket's server is alive", e.into()).object(object),
            );
        }
    }
    // Remove it only if it is still the file found stale (not one a new server just bound).
    match std::fs::symlink_metadata(path) {
        Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        _ => {
            return Err(Error::new(ErrorKind::AlreadyExists)
                .detail("another socket replaced the stale one while procom checked it")
                .object(object));
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::os("remove the stale socket file", e).object(object)),
    }
}

/// Creates, fchmods (0600 before bind, so the file is never more open), binds.
fn bind_unix(
    addr: &UnixAddr,
    ty: SocketType,
    object: &Endpoint,
) -> Result<(OwnedFd, Option<SocketFile>), Error> {
    if let UnixAddr::Path(p) = addr {
        clear_stale(p, ty, object)?;
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
            use rustix::fs::{FileType, Mode, OFlags};
            use std::os::fd::AsRawFd;
            // Whoever may write the directory can swap the new file for a symlink: the file
            // is looked at through a descriptor that never follows one, and its mode is set
            // through that descriptor, so no other file's mode is ever changed.
            let file = rustix::fs::open(
                p,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::os("look at the socket file", e.into()).object(object))?;
            let st = rustix::fs::fstat(&file)
                .map_err(|e| Error::os("look at the socket file", e.into()).object(object))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
                return Err(Error::new(ErrorKind::WrongType)
                    .detail(
                        "the socket file was replaced by something else right after it was bound",
                    )
                    .object(object));
            }
            // Ours from here on: a failure below removes it.
            let ours = SocketFile(Some(Cleanup::new(p.clone(), (st.st_dev, st.st_ino))));
            // The umask can only have removed bits; set exactly 0600.
            if st.st_mode & 0o7777 != 0o600 {
                let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::chmod(by_fd.as_str(), Mode::from_raw_mode(0o600)).map_err(|e| {
                    Error::os("set the socket file's mode", e.into()).object(object)
                })?;
            }
            Some(ours)
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
    /// Its pid (Unix sockets, SO_PEERCRED; `None` on TCP, and for a peer in a PID namespace
    /// this process cannot see).
    pub pid: Option<i32>,
    /// Its effective uid when it connected (Unix sockets; `None` on TCP).
    pub uid: Option<u32>,
    /// Its effective gid when it connected (Unix sockets; `None` on TCP).
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
    Unix(UnixListener, Option<SocketFile>),
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
                let l = TcpListener::bind(&addrs[..]).map_err(|e| io_err("bind", e, endpoint))?;
                // Accepting waits in poll; the socket itself never blocks, so a client that
                // vanishes between poll and accept (or another thread taking it) cannot hold
                // `accept_deadline` past its deadline. Accepted sockets do not inherit this.
                l.set_nonblocking(true)
                    .map_err(|e| Error::os("make the socket non-blocking", e).object(endpoint))?;
                ListenerKind::Tcp(l)
            }
            Endpoint::Unix { addr } => {
                let (fd, file) = bind_unix(addr, SocketType::STREAM, endpoint)?;
                rustix::net::listen(&fd, 128)
                    .map_err(|e| Error::os("listen", e.into()).object(endpoint))?;
                let l = UnixListener::from(fd);
                l.set_nonblocking(true)
                    .map_err(|e| Error::os("make the socket non-blocking", e).object(endpoint))?;
                ListenerKind::Unix(l, file)
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

    /// The socket file this listener created, for removal from another thread (see
    /// [`Cleanup`]); `None` for TCP and abstract Unix sockets, which leave nothing behind.
    pub fn cleanup(&self) -> Option<Cleanup> {
        match &self.kind {
            ListenerKind::Unix(_, Some(file)) => file.cleanup(),
            _ => None,
        }
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
                    Err(e) if accept_again(&e) => continue,
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
                    Err(e) if accept_again(&e) => continue,
                    Err(e) => {
                        return Err(Error::os("accept a connection", e).object(&self.endpoint));
                    }
                },
            };
            // SO_PEERCRED exists only on Unix sockets (procom-sys reads it: rustix's type
            // cannot hold the pid 0 the kernel gives for a peer in another PID namespace).
            let cred = match self.kind {
                ListenerKind::Unix(..) => procom_sys::peercred::peer_cred(&fd).ok(),
                ListenerKind::Tcp(_) => None,
            };
            let peer = Peer {
                addr,
                pid: cred.and_then(|c| c.pid),
                uid: cred.map(|c| c.uid),
                gid: cred.map(|c| c.gid),
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

/// Whether an `accept` failure concerns only the one connection (or none), so the listener
/// goes on: a client that left before it was accepted, a non-blocking retry, and the network
/// errors accept(2) says to treat like `EAGAIN`.
fn accept_again(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error().is_some_and(|code| {
        [
            Errno::PROTO,
            Errno::NOPROTOOPT,
            Errno::NETDOWN,
            Errno::NETUNREACH,
            Errno::HOSTDOWN,
            Errno::HOSTUNREACH,
            Errno::NONET,
            Errno::OPNOTSUPP,
        ]
        .iter()
        .any(|x| x.raw_os_error() == code)
    })
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

/// The first bytes of procom's UDP header: `ff 50 43 55` (`\xffPCU`; no text starts with
/// `ff`, and no length prefix a datagram could carry does).
pub const UDP_MAGIC: [u8; 4] = [0xff, b'P', b'C', b'U'];
/// The header version this library writes and reads.
pub const UDP_VERSION: u8 = 1;
/// Bytes of procom's UDP header (length framing only), before the payload: [`UDP_MAGIC`],
/// [`UDP_VERSION`], three zero bytes (reserved), then the sender's sequence number (8 bytes,
/// big-endian, from 0). In Python: `b"\xffPCU\x01\0\0\0" + struct.pack(">Q", seq) + payload`.
pub const UDP_HEADER_LEN: usize = 16;

/// procom's UDP header for datagram number `seq`.
fn udp_header(seq: u64) -> [u8; UDP_HEADER_LEN] {
    let mut h = [0u8; UDP_HEADER_LEN];
    h[..4].copy_from_slice(&UDP_MAGIC);
    h[4] = UDP_VERSION;
    h[8..].copy_from_slice(&seq.to_be_bytes());
    h
}

/// The sequence number in a datagram that starts with procom's UDP header; anything else is
/// `Malformed` (and is never delivered, whole or in part). Pure, for tests and fuzzing.
fn parse_udp_header(datagram: &[u8]) -> Result<u64, Error> {
    let refused = |why: String| {
        Error::new(ErrorKind::Malformed).detail(format!(
            "a {}-byte datagram {why}, so it was discarded; plain datagrams are received with raw or lines framing (procom recv without --framed)",
            datagram.len()
        ))
    };
    let Some(header) = datagram.first_chunk::<UDP_HEADER_LEN>() else {
        return Err(refused(format!(
            "does not carry procom's {UDP_HEADER_LEN}-byte UDP header (it is shorter than that)"
        )));
    };
    if header[..4] != UDP_MAGIC {
        return Err(refused(format!(
            "does not carry procom's {UDP_HEADER_LEN}-byte UDP header (it starts {:02x?}, not {UDP_MAGIC:02x?})",
            &header[..4]
        )));
    }
    if header[4..8] != [UDP_VERSION, 0, 0, 0] {
        return Err(refused(format!(
            "carries procom's magic but not procom's {UDP_HEADER_LEN}-byte UDP header version {UDP_VERSION} (its version and reserved bytes are {:02x?})",
            &header[4..8]
        )));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&header[8..]);
    Ok(u64::from_be_bytes(seq))
}

/// What a datagram receiver has seen of its senders' sequence numbers (UDP with length
/// framing; otherwise only `received` counts).
///
/// Each sender (source address) numbers its datagrams from 0, and the receiver follows each
/// one separately, starting from the first datagram it hears from it. A skipped number counts
/// as lost until it arrives late, when it moves to `reordered`; a number heard twice is
/// delivered again and counted in `duplicated` (within the last 64 numbers of that sender;
/// an older straggler counts as late). At most 1024 senders are followed at once: past that,
/// the bookkeeping of an arbitrary one is dropped and it starts afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramStats {
    /// Datagrams delivered.
    pub received: u64,
    /// Sequence numbers skipped (datagrams presumed lost, unless they come late).
    pub lost: u64,
    /// Datagrams that arrived after a later one from the same sender.
    pub reordered: u64,
    /// Datagrams whose sequence number had already been delivered (the network duplicated
    /// them, or a sender resent them).
    pub duplicated: u64,
    /// Datagrams received but not delivered: over the size limit, or (UDP with length
    /// framing) not carrying procom's header. Each was reported by the receive that met it
    /// ([`ErrorKind::TooLarge`], [`ErrorKind::Malformed`]), and the receiver went on. Their
    /// sequence numbers are not read, so a refused procom datagram also leaves a gap that
    /// counts as lost.
    pub refused: u64,
}

/// One sender's sequence numbers as seen so far: the next expected number, and which of the
/// 64 before it arrived (bit `i` is `next - 1 - i`).
#[derive(Debug, Clone, Copy)]
struct SeqWindow {
    next: u64,
    seen: u64,
}

/// How many senders a UDP receiver follows at once.
const MAX_SENDERS: usize = 1024;

impl DatagramStats {
    /// Counts datagram `seq` against its sender's window (`None`: the sender's first).
    fn count(&mut self, window: &mut Option<SeqWindow>, seq: u64) {
        self.received += 1;
        let Some(w) = window else {
            *window = Some(SeqWindow {
                next: seq.saturating_add(1),
                seen: 1,
            });
            return;
        };
        if seq >= w.next {
            let gap = seq - w.next;
            self.lost = self.lost.saturating_add(gap);
            w.seen = w.seen.checked_shl((gap + 1).min(64) as u32).unwrap_or(0) | 1;
            w.next = seq.saturating_add(1);
            return;
        }
        let age = w.next - 1 - seq;
        if age < 64 && w.seen & (1 << age) != 0 {
            self.duplicated += 1;
            return;
        }
        if age < 64 {
            w.seen |= 1 << age;
        }
        // It was counted lost when a later one overtook it: it is late, not lost.
        self.reordered += 1;
        self.lost = self.lost.saturating_sub(1);
    }
}

/// The sending side of a datagram flavor.
#[derive(Debug)]
pub(crate) struct DgramSender {
    fd: OwnedFd,
    seq: Option<u64>,
    /// Lines framing: every datagram ends with `\n`.
    newline: bool,
}

/// The receiving side of a datagram flavor.
#[derive(Debug)]
pub(crate) struct DgramReceiver {
    fd: OwnedFd,
    /// The endpoint actually bound (the real port when 0 was asked for).
    local: Endpoint,
    sequenced: bool,
    /// Lines framing: one final `\n` of a datagram is dropped.
    lines: bool,
    senders: std::collections::HashMap<rustix::net::SocketAddrAny, SeqWindow>,
    pub(crate) stats: DatagramStats,
    /// The receive buffer, kept between receives when the limit allows (see `recv`).
    rbuf: Vec<u8>,
    /// The receive timeout procom last set on the socket (`None`: none, it blocks for ever).
    rcvtimeo: Option<Duration>,
    /// Receives wait in poll only: the socket is non-blocking, or refused a timeout.
    nonblocking: bool,
    _file: Option<SocketFile>,
}

/// Binds a datagram receiver (`udp:` or `unixgram:`).
pub(crate) fn bind_dgram(endpoint: &Endpoint, framing: Framing) -> Result<DgramReceiver, Error> {
    let mut local = endpoint.clone();
    let (fd, file) = match endpoint {
        Endpoint::Udp { host, port } => {
            let addrs = resolve(host, *port, endpoint)?;
            let s = UdpSocket::bind(&addrs[..]).map_err(|e| io_err("bind", e, endpoint))?;
            if let Ok(a) = s.local_addr() {
                local = Endpoint::Udp {
                    host: a.ip().to_string(),
                    port: a.port(),
                };
            }
            (s.into(), None)
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
        local,
        sequenced: framing == Framing::Length && matches!(endpoint, Endpoint::Udp { .. }),
        lines: framing == Framing::Lines,
        senders: std::collections::HashMap::new(),
        stats: DatagramStats::default(),
        rbuf: Vec::new(),
        rcvtimeo: None,
        nonblocking: false,
        _file: file,
    })
}

/// Connects a datagram sender (`udp:` or `unixgram:`).
pub(crate) fn connect_dgram(endpoint: &Endpoint, framing: Framing) -> Result<DgramSender, Error> {
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
        seq: (framing == Framing::Length && matches!(endpoint, Endpoint::Udp { .. })).then_some(0),
        newline: framing == Framing::Lines,
    })
}

impl DgramSender {
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), Error> {
        let header = self.seq.map(udp_header);
        let mut parts: Vec<&[u8]> = match &header {
            Some(h) => vec![h, msg],
            None => vec![msg],
        };
        if self.newline {
            parts.push(b"\n");
        }
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
                        *s = s.wrapping_add(1);
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
                    let header = if self.seq.is_some() {
                        UDP_HEADER_LEN
                    } else {
                        0
                    };
                    return Err(Error::too_large(msg.len() as u64, (65507 - header) as u64).detail(format!(
                        "a {}-byte message does not fit in one datagram (UDP carries at most 65,507 bytes, procom's {UDP_HEADER_LEN}-byte header included under length framing; a Unix datagram at most the socket buffer)",
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
    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub(crate) fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    pub(crate) fn recv(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<Vec<u8>, Error> {
        let header = if self.sequenced { UDP_HEADER_LEN } else { 0 };
        let newline = usize::from(self.lines);
        let limit = max.saturating_add(header).saturating_add(newline);
        // Every datagram that can reach a UDP socket fits in one kept buffer, and so does any
        // datagram within a small enough limit: then one `recvfrom` (MSG_TRUNC tells the real
        // size, so one over the limit is still recognised) replaces a peek at the size and a
        // receive into a fresh buffer.
        let kept = if matches!(self.local, Endpoint::Udp { .. }) {
            Some(limit.min(UDP_MAX).saturating_add(1))
        } else {
            (limit < KEPT_DGRAM).then(|| limit.saturating_add(1))
        };
        // The largest datagram returned whole: the limit, or less where the kept buffer is
        // smaller (over UDP, a datagram beyond 64 KiB is an IPv6 jumbogram, possible only on
        // links with a larger MTU, and is reported like any datagram over the limit).
        let limit = kept.map_or(limit, |room| room - 1);
        let (mut buf, from) = loop {
            // The receive itself waits whenever it can: one system call per datagram, and the
            // kernel's wake-up goes straight to it. A deadline becomes the socket's receive
            // timeout (see `wait_in_recv`); poll waits only for a try, for the last few
            // milliseconds of a deadline, or on a socket someone made non-blocking.
            let blocking = !is_try && !self.nonblocking && self.wait_in_recv(deadline);
            if !blocking
                && !wait(self.fd.as_fd(), PollFlags::IN, deadline)
                    .map_err(|e| Error::os("wait for a datagram", e))?
            {
                return Err(no_datagram(is_try));
            }
            let flags = rustix::net::RecvFlags::TRUNC
                | if blocking {
                    rustix::net::RecvFlags::empty()
                } else {
                    rustix::net::RecvFlags::DONTWAIT
                };
            let got = match kept {
                Some(room) => {
                    self.rbuf.resize(room, 0);
                    rustix::net::recvfrom(&self.fd, &mut self.rbuf[..], flags)
                        .map(|(_, n, from)| (n, from))
                }
                None => self.recv_unkept(limit, flags),
            };
            match got {
                Ok((n, _)) if n > limit => {
                    // Consumed (truncated) by the receive: over the limit, it is reported by
                    // its real size and never returned.
                    let beside = if self.sequenced {
                        format!(" ({limit} bytes with procom's {header}-byte UDP header)")
                    } else if self.lines {
                        format!(" ({limit} bytes with a final newline)")
                    } else {
                        String::new()
                    };
                    return Err(self.refuse(Error::too_large(
                        n as u64,
                        limit.saturating_sub(header + newline) as u64,
                    ))
                    .detail(format!(
                        "a {n}-byte datagram is over the {}-byte message limit{beside}; it was discarded",
                        limit.saturating_sub(header + newline)
                    )));
                }
                // `n <= limit < room`: the kept buffer holds it whole.
                Ok((n, from)) => match kept {
                    Some(_) => break (self.rbuf[..n].to_vec(), from),
                    None => break (std::mem::take(&mut self.rbuf), from),
                },
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) if blocking => {
                    match (self.rcvtimeo, deadline) {
                        // The receive timeout ran out: go round (the deadline decides).
                        (Some(_), Some(d)) if Instant::now() >= d => {
                            return Err(no_datagram(false));
                        }
                        // The timeout ran out early, or the socket was made non-blocking
                        // behind our back (through `as_fd`): the rare case, so it is asked.
                        (Some(_), _) => {
                            if rustix::fs::fcntl_getfl(&self.fd)
                                .is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK))
                            {
                                self.nonblocking = true;
                            }
                        }
                        // No timeout, yet it would block: someone made the socket
                        // non-blocking; wait in poll from now on.
                        (None, _) => self.nonblocking = true,
                    }
                }
                Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(Error::os("receive a datagram", e.into())),
            }
        };
        if !self.sequenced {
            let n = buf.len();
            if self.lines && buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.len() > max {
                // A line of `max + 1` bytes without its newline.
                return Err(self
                    .refuse(Error::too_large(n as u64, max as u64))
                    .detail(format!(
                        "a {n}-byte datagram is over the {max}-byte message limit; it was discarded"
                    )));
            }
            self.stats.received += 1;
            return Ok(buf);
        }
        let seq = match parse_udp_header(&buf) {
            Ok(seq) => seq,
            Err(e) => return Err(self.refuse(e)),
        };
        match from {
            Some(from) => {
                let mut window = self.senders.get(&from).copied();
                self.stats.count(&mut window, seq);
                if !self.senders.contains_key(&from)
                    && self.senders.len() >= MAX_SENDERS
                    && let Some(evict) = self.senders.keys().next().cloned()
                {
                    self.senders.remove(&evict);
                }
                if let Some(w) = window {
                    self.senders.insert(from, w);
                }
            }
            None => self.stats.count(&mut None, seq),
        }
        buf.drain(..UDP_HEADER_LEN);
        Ok(buf)
    }

    /// Counts a datagram that was received and is not delivered; returns `e` to report it.
    fn refuse(&mut self, e: Error) -> Error {
        self.stats.refused = self.stats.refused.saturating_add(1);
        e
    }

    /// Prepares a receive that waits in the kernel until `deadline` (none: for ever), by
    /// setting the socket's receive timeout; false when poll must wait instead (the last
    /// [`TIMED_MIN`] of a deadline, where a timeout's tick granularity would overshoot it, or a
    /// socket that refused the option).
    ///
    /// The timeout is a power of two of milliseconds at most half the time left, and is set
    /// again only when it leaves that range: a loop of `recv_timeout(10 s)` sets it once, not
    /// once per datagram. A receive that times out early just goes round.
    fn wait_in_recv(&mut self, deadline: Option<Instant>) -> bool {
        let want = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left < TIMED_MIN {
                    return false;
                }
                let keep = self.rcvtimeo.filter(|t| *t <= left / 2 && *t >= left / 8);
                Some(keep.unwrap_or_else(|| {
                    let ms = u64::try_from((left / 2).as_millis()).unwrap_or(u64::MAX);
                    Duration::from_millis(1 << (63 - ms.max(1).leading_zeros()))
                }))
            }
        };
        if want == self.rcvtimeo {
            return true;
        }
        match rustix::net::sockopt::set_socket_timeout(
            &self.fd,
            rustix::net::sockopt::Timeout::Recv,
            want,
        ) {
            Ok(()) => {
                self.rcvtimeo = want;
                true
            }
            Err(_) => {
                self.nonblocking = true; // poll from now on
                false
            }
        }
    }

    /// The descriptor handed out for good: without the receive timeout procom set on it, and
    /// with its socket file (a bound `unixgram:` path) kept, as `Receiver::into_fd` promises.
    pub(crate) fn into_fd(mut self) -> OwnedFd {
        if self.rcvtimeo.is_some() {
            let _ = self.wait_in_recv(None);
        }
        if let Some(file) = self._file.take() {
            file.keep();
        }
        self.fd
    }

    /// The bound socket file, for removal from another thread.
    pub(crate) fn cleanup(&self) -> Option<Cleanup> {
        self._file.as_ref().and_then(SocketFile::cleanup)
    }

    /// A receive for a limit too large to keep a buffer for (a Unix datagram may be as large
    /// as a raised socket buffer): the size is peeked at first, so nothing over the limit is
    /// allocated. The datagram is left in `self.rbuf`; its real size is returned.
    fn recv_unkept(
        &mut self,
        limit: usize,
        flags: rustix::net::RecvFlags,
    ) -> rustix::io::Result<(usize, Option<rustix::net::SocketAddrAny>)> {
        let mut probe = [0u8; 1];
        let (_, size) =
            rustix::net::recv(&self.fd, &mut probe, flags | rustix::net::RecvFlags::PEEK)?;
        if size > limit {
            let _ = rustix::net::recv(&self.fd, &mut probe, rustix::net::RecvFlags::DONTWAIT); // discard it
            return Ok((size, None));
        }
        let mut buf = vec![0u8; size.max(1)];
        let (_, n, from) = rustix::net::recvfrom(
            &self.fd,
            &mut buf[..],
            rustix::net::RecvFlags::DONTWAIT | rustix::net::RecvFlags::TRUNC,
        )?;
        if n > buf.len() {
            // Another reader of this socket took the peeked datagram, and this one was cut.
            return Err(rustix::io::Errno::MSGSIZE);
        }
        buf.truncate(n);
        self.rbuf = buf;
        Ok((n, from))
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The error for a receive that found nothing: `Empty` for a try, else `Timeout`.
fn no_datagram(is_try: bool) -> Error {
    if is_try {
        Error::new(ErrorKind::Empty).detail("no datagram is waiting")
    } else {
        Error::new(ErrorKind::Timeout).detail("no datagram arrived before the deadline")
    }
}

/// Below this much time left before a deadline, a datagram receive waits in poll (precise to
/// the microsecond) rather than in a receive timeout (precise to the kernel's tick).
const TIMED_MIN: Duration = Duration::from_millis(20);

/// The largest UDP datagram (its length field is 16 bits).
const UDP_MAX: usize = 65_535;

/// Below this limit, a Unix datagram receiver keeps one buffer for every receive.
const KEPT_DGRAM: usize = 256 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(seqs: &[u64]) -> DatagramStats {
        let mut stats = DatagramStats::default();
        let mut window = None;
        for &s in seqs {
            stats.count(&mut window, s);
        }
        stats
    }

    fn stats(received: u64, lost: u64, reordered: u64, duplicated: u64) -> DatagramStats {
        DatagramStats {
            received,
            lost,
            reordered,
            duplicated,
            refused: 0,
        }
    }

    #[test]
    fn sequence_numbers_count_loss_late_arrivals_and_duplicates() {
        assert_eq!(counted(&[0, 1, 2, 3]), stats(4, 0, 0, 0));
        // Counting starts at the first datagram heard, whatever its number.
        assert_eq!(counted(&[7, 8]), stats(2, 0, 0, 0));
        assert_eq!(counted(&[0, 3]), stats(2, 2, 0, 0));
        assert_eq!(counted(&[0, 2, 1, 3]), stats(4, 0, 1, 0));
        assert_eq!(counted(&[0, 1, 1, 2]), stats(4, 0, 0, 1));
        // A late datagram heard twice is late once, then a duplicate.
        assert_eq!(counted(&[0, 2, 1, 1]), stats(4, 0, 1, 1));
        // Older than the 64-number window: late, and no longer checked for duplicates.
        assert_eq!(counted(&[0, 100, 1]), stats(3, 98, 1, 0));
    }

    #[test]
    fn udp_header_round_trips_and_nothing_else_passes_for_it() {
        for seq in [0, 1, 0x0102_0304_0506_0708, u64::MAX] {
            let mut d = udp_header(seq).to_vec();
            assert_eq!(parse_udp_header(&d).unwrap(), seq);
            d.extend_from_slice(b"payload");
            assert_eq!(parse_udp_header(&d).unwrap(), seq);
        }
        let mut framed = 5u32.to_be_bytes().to_vec();
        framed.extend_from_slice(b"hello");
        let long = [b'x'; 65_535];
        let mut version = udp_header(0);
        version[4] = 2;
        let mut reserved = udp_header(0);
        reserved[6] = 0x80;
        for bad in [
            &b""[..],
            b"raw no frame",
            &framed,
            &long,
            &udp_header(7)[..UDP_HEADER_LEN - 1],
            &version,
            &reserved,
        ] {
            let e = parse_udp_header(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed);
            assert!(
                e.to_string()
                    .contains(&format!("a {}-byte datagram", bad.len())),
                "{e}"
            );
            assert!(e.to_string().contains("without --framed"), "{e}");
        }
    }

    #[test]
    fn hostile_sequence_numbers_do_not_overflow() {
        let s = counted(&[0, u64::MAX, u64::MAX, 5, u64::MAX - 1]);
        assert_eq!(s.received, 5);
        assert_eq!(s.duplicated, 1);
        let s = counted(&[u64::MAX, 0, u64::MAX]);
        assert_eq!(s.received, 3);
    }
}
