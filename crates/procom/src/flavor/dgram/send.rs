//! The sending side of the datagram flavor: one datagram per message, numbered under UDP
//! length framing.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use rustix::event::PollFlags;

use super::{UDP_HEADER_LEN, udp_header};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind};
use crate::flavor::{SendFlavor, Wait};
use crate::framing::Framing;
use crate::net::{io_err, resolve, unix_addr};
use crate::stream::wait as poll_until;

/// The sending side of a datagram flavor.
#[derive(Debug)]
pub(crate) struct DgramSender {
    fd: OwnedFd,
    seq: Option<u64>,
    /// Lines framing: every datagram ends with `\n`.
    newline: bool,
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
    fn send_datagram(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
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
                    if !poll_until(self.fd.as_fd(), PollFlags::OUT, deadline)
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
}

impl SendFlavor for DgramSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_datagram(msg, wait)
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        self.fd.try_clone().ok()
    }
}
