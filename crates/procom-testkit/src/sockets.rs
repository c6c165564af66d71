//! Readiness from the kernel's socket tables (`/proc/PID/net/*`): which sockets a process
//! holds, without binding or connecting to anything; and a TCP port that refuses connections.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Outcome, STEP};

/// A socket as the kernel lists it in a network namespace's tables
/// (`/proc/PID/net/{tcp,tcp6,udp,udp6,unix}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socket {
    /// A TCP socket: its local address, and whether it listens.
    Tcp {
        /// The address it is bound to.
        local: SocketAddr,
        /// Whether it is in the LISTEN state.
        listening: bool,
    },
    /// A UDP socket bound to this address.
    Udp {
        /// The address it is bound to.
        local: SocketAddr,
    },
    /// A Unix socket.
    Unix {
        /// The path it is bound to (`@name` in the abstract namespace), if any.
        path: Option<String>,
        /// Whether it listens (a stream or seqpacket socket after `listen`).
        listening: bool,
    },
}

/// The sockets process `pid` holds (its descriptors matched by inode against the tables of
/// its own network namespace). Reading them never touches a socket.
pub fn sockets_of(pid: u32) -> Result<Vec<Socket>, String> {
    // A process that is gone or exiting has no descriptors to show: no sockets.
    let inodes: BTreeSet<u64> = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    let table = |name: &str| match std::fs::read_to_string(format!("/proc/{pid}/net/{name}")) {
        Ok(text) => Ok(text),
        // No IPv6 in this kernel, or the process is gone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("/proc/{pid}/net/{name}: {e}")),
    };
    let mut found = Vec::new();
    for (name, tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in table(name)?.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            if !inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                continue;
            }
            let Some(local) = table_addr(local) else {
                continue;
            };
            found.push(if tcp {
                Socket::Tcp {
                    local,
                    listening: *state == "0A",
                }
            } else {
                Socket::Udp { local }
            });
        }
    }
    // Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is __SO_ACCEPTCON.
    for line in table("unix")?.lines().skip(1) {
        let mut rest = line;
        let mut f = Vec::new();
        for _ in 0..7 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            f.push(&rest[..end]);
            rest = &rest[end..];
        }
        if !f[6].parse().is_ok_and(|i: u64| inodes.contains(&i)) {
            continue;
        }
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        let path = rest.strip_prefix(' ').filter(|p| !p.is_empty());
        found.push(Socket::Unix {
            path: path.map(str::to_string),
            listening: flags & 0x10000 != 0,
        });
    }
    Ok(found)
}

/// An address as the socket tables print it: the address's bytes in memory order, each
/// 32-bit word as the kernel's native integer in hex, then `:` and the port in hex.
fn table_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::new();
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether process `pid` still runs (not gone, not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

/// Polls the kernel's view of process `pid` until it holds a socket that `pick` accepts, and
/// returns what `pick` made of it: how a test learns that a server is ready, and on which
/// port, without binding or connecting to anything itself. Fails as soon as the process has
/// ended, and after [`STEP`] otherwise.
pub fn wait_for_socket<T>(
    pid: u32,
    what: &str,
    mut pick: impl FnMut(&Socket) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(t) = sockets_of(pid)?.iter().find_map(&mut pick) {
            return Ok(t);
        }
        if !running(pid) {
            return Err(format!("process {pid} ended before it had {what}"));
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} had no {what} after {STEP:?}"));
        }
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view
    }
}

/// Waits until process `pid` listens on TCP, and returns the address (the real port when it
/// asked for port 0).
pub fn tcp_listening(pid: u32) -> Result<SocketAddr, String> {
    wait_for_socket(pid, "a listening TCP socket", |s| match s {
        Socket::Tcp {
            local,
            listening: true,
        } => Some(*local),
        _ => None,
    })
}

/// Waits until process `pid` has a bound UDP socket, and returns its address (the real port
/// when it asked for port 0).
pub fn udp_bound(pid: u32) -> Result<SocketAddr, String> {
    wait_for_socket(pid, "a bound UDP socket", |s| match s {
        Socket::Udp { local } if local.port() != 0 => Some(*local),
        _ => None,
    })
}

/// Waits until process `pid` listens on the Unix socket at `path` (its file appears at
/// `bind`, a moment before `listen`: a connection in between would be refused).
pub fn unix_listening(pid: u32, path: &Path) -> Outcome {
    let want = path.display().to_string();
    wait_for_socket(pid, &format!("a Unix socket listening at {want}"), |s| {
        matches!(s, Socket::Unix { path: Some(p), listening: true } if *p == want).then_some(())
    })
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket is
/// held: bound, so no other process can take the port, but not listening.
pub fn refusing_tcp_port() -> Result<(std::os::fd::OwnedFd, u16), String> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    rustix::net::bind(&fd, &any).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let bound = rustix::net::getsockname(&fd).map_err(|e| format!("getsockname: {e}"))?;
    let bound = std::net::SocketAddrV4::try_from(bound).map_err(|e| format!("getsockname: {e}"))?;
    Ok((fd, bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_table_addresses() {
        // As /proc/net/tcp and tcp6 print 127.0.0.1:8080 and [::1]:8080 on this machine.
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(
            table_addr(&format!("{v4:08X}:1F90")),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            table_addr(&format!("000000000000000000000000{one:08X}:1F90")),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(table_addr("0100007F"), None);
    }

    #[test]
    fn a_listening_socket_is_seen_without_touching_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        assert_eq!(tcp_listening(me).unwrap(), l.local_addr().unwrap());
        assert_eq!(udp_bound(me).unwrap(), u.local_addr().unwrap());
        let (_fd, port) = refusing_tcp_port().unwrap();
        let e = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
