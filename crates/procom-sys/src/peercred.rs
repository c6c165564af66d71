//! The credentials of the process at the other end of a connected Unix socket (SO_PEERCRED).
//!
//! rustix has `sockopt::socket_peercred`, but its `UCred` holds the pid as a `Pid`, which is
//! never zero, while the kernel does report pid 0: for a socket that has no peer credentials
//! (TCP) and for a peer whose pid is not visible from this process's PID namespace (a client
//! in another container). Reading 0 into a non-zero type is undefined behaviour, so the call
//! lives here, over plain integers, and a pid of 0 becomes `None`.
//!
//! # References
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html) (`SO_PEERCRED`)
//! - [`getsockopt(2)`](https://man7.org/linux/man-pages/man2/getsockopt.2.html)

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use crate::cvt;

/// Who is at the other end of a socket, as the kernel recorded it at `connect`/`socketpair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// The peer's pid; `None` when the kernel has none to give (0: no peer process recorded,
    /// or one outside this PID namespace).
    pub pid: Option<i32>,
    /// The peer's effective uid (the overflow uid, usually 65534, when it has no mapping here).
    pub uid: u32,
    /// The peer's effective gid.
    pub gid: u32,
}

/// Reads `SO_PEERCRED` from a connected socket.
#[doc(alias = "SO_PEERCRED")]
#[doc(alias = "getsockopt")]
pub fn peer_cred(socket: impl AsFd) -> io::Result<PeerCred> {
    let mut cred = MaybeUninit::<libc::ucred>::zeroed();
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` points to writable memory of `len` bytes, the size getsockopt is told;
    // the descriptor is borrowed for the duration of the call.
    cvt(unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned an unexpected size",
        ));
    }
    // SAFETY: the memory was zeroed (a valid `ucred`: plain integers) and getsockopt filled it.
    let cred = unsafe { cred.assume_init() };
    Ok(PeerCred {
        pid: (cred.pid > 0).then_some(cred.pid),
        uid: cred.uid,
        gid: cred.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socketpair_reports_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid, Some(std::process::id() as i32));
        assert_eq!(c.uid, rustix::process::geteuid().as_raw());
        assert_eq!(c.gid, rustix::process::getegid().as_raw());
    }

    #[test]
    fn a_tcp_socket_has_no_peer_pid() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // The kernel answers pid 0 here, which is exactly what must not become a `Pid`.
        assert_eq!(peer_cred(&c).unwrap().pid, None);
    }
}
