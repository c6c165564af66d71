//! Sockets as kernel objects: addresses, Unix socket files, listening and connecting stream
//! sockets. The channel layer builds on this (`socket` hands out channels, the datagram flavor
//! sends and receives); nothing here knows of channels.
//!
//! Unix socket files are created 0600 whatever the umask. A socket file already at the path is
//! probed with a non-blocking connect: only "connection refused" (no server bound to it: one
//! was killed) makes it stale, and it is removed if it is still the same file; a live server
//! (even one whose backlog is full) is never taken, nor a socket this user may not connect to
//! (it cannot be checked), nor another user's socket file, and a path that is not a socket is
//! never removed.
//!
//! # References
//! - [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! - [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

use crate::access::Access;
use crate::cleanup::{Cleanup, DirEntry};
use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::stream::wait;

pub(crate) fn io_err(what: &str, e: std::io::Error, object: &impl std::fmt::Display) -> Error {
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

/// Why binding `port` failed: a privileged port refused to an unprivileged process is said as
/// such (the kernel's EACCES), anything else as [`io_err`] says it.
pub(crate) fn bind_err(e: std::io::Error, port: u16, object: &Endpoint) -> Error {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    if e.kind() == std::io::ErrorKind::PermissionDenied && port != 0 && u32::from(port) < start {
        return Error::new(ErrorKind::PermissionDenied)
            .detail(format!(
                "port {port} is privileged: ports below {start} (net.ipv4.ip_unprivileged_port_start) may be bound only by root or with CAP_NET_BIND_SERVICE; use a port from {start} up"
            ))
            .object_of(crate::kind::kind_of(object), object);
    }
    io_err("bind", e, object)
}

/// Resolves `host:port` to socket addresses.
pub(crate) fn resolve(host: &str, port: u16, object: &Endpoint) -> Result<Vec<SocketAddr>, Error> {
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

pub(crate) fn unix_addr(addr: &UnixAddr, object: &Endpoint) -> Result<SocketAddrUnix, Error> {
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
    pub(crate) fn keep(mut self) {
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
/// this process may not connect to (so cannot check), and any other file are refused. With
/// `own_only` (a server about to bind), so is another user's socket file, stale or not: what
/// someone else left at the name is theirs, never removed to make room.
fn clear_stale(
    path: &Path,
    ty: SocketType,
    object: &Endpoint,
    own_only: bool,
) -> Result<(), Error> {
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
    // A socket file of another type (stream, datagram, sequenced packet) answers EPROTOTYPE:
    // ask it in its own.
    let mut answer = probe(&sa, ty);
    for other in [SocketType::STREAM, SocketType::DGRAM, SocketType::SEQPACKET] {
        if other != ty && answer == Err(rustix::io::Errno::PROTOTYPE) {
            answer = probe(&sa, other);
        }
    }
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
    if own_only && meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::new(ErrorKind::AlreadyExists)
            .detail(format!(
                "is a stale socket file of uid {}; procom never removes another user's socket file to bind",
                meta.uid()
            ))
            .object(object));
    }
    // Remove it only if it is still the file found stale (not one a new server just bound),
    // checked and removed through one descriptor of its directory (see `DirEntry`).
    let entry = DirEntry::of(path)
        .map_err(|e| Error::os("look at the socket path", e.into()).object(object))?;
    match entry.stat() {
        Ok(now) if (now.st_dev, now.st_ino) == (meta.dev(), meta.ino()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        _ => {
            return Err(Error::new(ErrorKind::AlreadyExists)
                .detail("another socket replaced the stale one while procom checked it")
                .object(object));
        }
    }
    match entry.unlink() {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::os("remove the stale socket file", e.into()).object(object)),
    }
}

/// Removes the Unix socket file at `path`: only a socket, never a symbolic link or any other
/// file at that path ([`ErrorKind::WrongType`], left in place). A server still bound to it
/// keeps running, unreachable by that name.
pub fn remove(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let object = socket_object(path);
    let fail = |e: rustix::io::Errno| match e {
        rustix::io::Errno::ISDIR => {
            not_a_socket(rustix::fs::FileType::Directory).object_of(ObjectKind::UnixSocket, &object)
        }
        e => Error::os("look it up", e.into()).object_of(ObjectKind::UnixSocket, &object),
    };
    // Checked and removed through one descriptor of its directory (see `DirEntry`).
    let entry = DirEntry::of(path).map_err(fail)?;
    let st = entry.stat().map_err(fail)?;
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if ft != rustix::fs::FileType::Socket {
        return Err(not_a_socket(ft).object_of(ObjectKind::UnixSocket, &object));
    }
    // Only the owner of what is at the name could swap it between the check and the removal
    // (in a sticky directory), and the removal never follows a link.
    entry
        .unlink()
        .map_err(|e| Error::os("remove it", e.into()).object_of(ObjectKind::UnixSocket, &object))
}

/// Removes the Unix socket file at `path` only if nothing is bound to it any more, by the test
/// a new server makes before it takes the path ([`clear_stale`]); a missing file is
/// `NotFound`.
pub(crate) fn remove_stale(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let object = Endpoint::Unix {
        addr: UnixAddr::Path(path.to_path_buf()),
    };
    if let Err(e) = std::fs::symlink_metadata(path) {
        return Err(Error::os("look it up", e).object_of(ObjectKind::UnixSocket, &object));
    }
    clear_stale(path, SocketType::STREAM, &object, false)
}

fn socket_object(path: &Path) -> String {
    format!("unix:{}", path.display())
}

fn not_a_socket(ft: rustix::fs::FileType) -> Error {
    use rustix::fs::FileType as F;
    let what = match ft {
        F::Symlink => "a symbolic link (procom never follows one to remove what it points to)",
        F::Fifo => "a FIFO",
        F::Directory => "a directory",
        F::RegularFile => "a regular file",
        F::CharacterDevice | F::BlockDevice => "a device",
        _ => "not a socket",
    };
    Error::new(ErrorKind::WrongType).detail(format!(
        "is {what}, not a Unix socket; procom leaves it alone"
    ))
}

/// Creates, fchmods (to at most 0600 before bind, so the file is never more open than
/// asked), binds, then sets the socket file's mode to exactly `access.mode` and its group.
pub(crate) fn bind_unix(
    addr: &UnixAddr,
    ty: SocketType,
    object: &Endpoint,
    access: Access,
) -> Result<(OwnedFd, Option<SocketFile>), Error> {
    if let UnixAddr::Path(p) = addr {
        clear_stale(p, ty, object, true)?;
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("create a socket", e.into()).object(object))?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(access.mode & 0o600))
        .map_err(|e| Error::os("set the socket's mode", e.into()).object(object))?;
    let sa = unix_addr(addr, object)?;
    // The directory, opened before the file is made: with no descriptor to spare nothing is
    // bound, and a file whose descriptor below cannot be opened is removed through it.
    let entry = match addr {
        UnixAddr::Path(p) => match crate::cleanup::DirEntry::of(p) {
            Ok(entry) => Some(entry),
            Err(e @ (rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => {
                return Err(Error::os("bind", e.into()).object(object));
            }
            Err(_) => None, // no last name: bind says what is wrong with the path
        },
        UnixAddr::Abstract(_) => None,
    };
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
            .map_err(|e| {
                // Ours, unless someone who may write the directory swapped it already: removed
                // only if it is still a socket of this user.
                if let Some(entry) = &entry
                    && entry.stat().is_ok_and(|st| {
                        FileType::from_raw_mode(st.st_mode) == FileType::Socket
                            && st.st_uid == rustix::process::geteuid().as_raw()
                    })
                {
                    let _ = entry.unlink();
                }
                Error::os("look at the socket file", e.into()).object(object)
            })?;
            drop(entry);
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
            if let Some(gid) = access.group {
                crate::access::chown_fd(&file, gid).map_err(|e| e.object(object))?;
            }
            // The umask may have removed bits, and the mode asked for may open it up: set it
            // exactly (after the group, so the group's bits never apply to another group).
            if st.st_mode & 0o7777 != access.mode {
                let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::chmod(by_fd.as_str(), Mode::from_raw_mode(access.mode)).map_err(
                    |e| Error::os("set the socket file's mode", e.into()).object(object),
                )?;
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

impl Peer {
    /// How errors name a connection to this peer on `endpoint`: the endpoint and the peer,
    /// by address (TCP, a bound Unix socket) or else by pid (`unix:/run/app.sock (peer pid
    /// 42)`), so that the one name says whom a message concerns.
    pub(crate) fn connection_name(&self, endpoint: &Endpoint) -> String {
        match (self.addr.is_empty(), self.pid) {
            (false, _) => format!("{endpoint} (peer {})", self.addr),
            (true, Some(pid)) => format!("{endpoint} (peer pid {pid})"),
            (true, None) => endpoint.to_string(),
        }
    }
}

#[derive(Debug)]
enum ListenerKind {
    Tcp(TcpListener),
    /// The socket file, kept so it is removed when the listener goes.
    Unix(UnixListener, Option<SocketFile>),
}

/// A listening connection-oriented socket (`tcp:`, `unix:` or `unixpacket:`) that accepts
/// connected sockets; the channel layer's `socket::Listener` turns them into channels.
#[derive(Debug)]
pub(crate) struct StreamListener {
    kind: ListenerKind,
    endpoint: Endpoint,
    allowed_uids: Option<Vec<u32>>,
}

impl StreamListener {
    /// Binds and listens on a `tcp:`, `unix:` or `unixpacket:` endpoint (a path's socket file
    /// with `access`).
    pub(crate) fn bind(endpoint: &Endpoint, access: Access) -> Result<StreamListener, Error> {
        let kind = match endpoint {
            Endpoint::Tcp { host, port } => {
                let addrs = resolve(host, *port, endpoint)?;
                let l = TcpListener::bind(&addrs[..]).map_err(|e| bind_err(e, *port, endpoint))?;
                // Accepting waits in poll; the socket itself never blocks, so a client that
                // vanishes between poll and accept (or another thread taking it) cannot hold
                // `accept_deadline` past its deadline. Accepted sockets do not inherit this.
                l.set_nonblocking(true)
                    .map_err(|e| Error::os("make the socket non-blocking", e).object(endpoint))?;
                ListenerKind::Tcp(l)
            }
            Endpoint::Unix { addr } | Endpoint::UnixPacket { addr } => {
                let ty = match endpoint {
                    Endpoint::UnixPacket { .. } => SocketType::SEQPACKET,
                    _ => SocketType::STREAM,
                };
                let (fd, file) = bind_unix(addr, ty, endpoint, access)?;
                rustix::net::listen(&fd, 128)
                    .map_err(|e| Error::os("listen", e.into()).object(endpoint))?;
                let l = UnixListener::from(fd);
                l.set_nonblocking(true)
                    .map_err(|e| Error::os("make the socket non-blocking", e).object(endpoint))?;
                ListenerKind::Unix(l, file)
            }
            other => {
                return Err(Error::new(ErrorKind::InvalidInput)
                    .detail("only tcp:, unix: and unixpacket: endpoints can listen for connections")
                    .object(other));
            }
        };
        Ok(StreamListener {
            kind,
            endpoint: endpoint.clone(),
            allowed_uids: None,
        })
    }

    /// The socket file this listener created (see [`Cleanup`]).
    pub(crate) fn cleanup(&self) -> Option<Cleanup> {
        match &self.kind {
            ListenerKind::Unix(_, Some(file)) => file.cleanup(),
            _ => None,
        }
    }

    /// The endpoint as it was asked for (port 0 stays 0).
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub(crate) fn local_endpoint(&self) -> Endpoint {
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
    pub(crate) fn allow_uids(&mut self, uids: impl IntoIterator<Item = u32>) {
        self.allowed_uids = Some(uids.into_iter().collect());
    }

    /// The listening socket (readable when a client is waiting).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            ListenerKind::Tcp(l) => l.as_fd(),
            ListenerKind::Unix(l, _) => l.as_fd(),
        }
    }

    /// Waits until `deadline` for the next admitted client: its connected socket and who it is.
    pub(crate) fn accept_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(OwnedFd, Peer), Error> {
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
            return Ok((fd, peer));
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

/// Connects to a `tcp:`, `unix:` or `unixpacket:` endpoint and returns the connected socket
/// itself (for byte streaming, `procom connect`); `timeout` bounds a TCP connection attempt.
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
        Endpoint::Unix { addr } | Endpoint::UnixPacket { addr } => {
            let ty = match endpoint {
                Endpoint::UnixPacket { .. } => SocketType::SEQPACKET,
                _ => SocketType::STREAM,
            };
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                ty,
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
