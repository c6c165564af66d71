//! The receiving side of the datagram flavor: one system call per datagram where it can,
//! receive timeouts for deadlines, and the per-sender counts.

use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::SocketType;

use super::{DatagramStats, MAX_SENDERS, SeqWindow, UDP_HEADER_LEN, parse_udp_header};
use crate::access::Access;
use crate::cleanup::Cleanup;
use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::{Error, ErrorKind};
use crate::flavor::{MessageMeta, RecvFlavor, Wait};
use crate::framing::Framing;
use crate::net::{SocketFile, bind_err, bind_unix, resolve};
use crate::stream::wait as poll_until;

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
    /// The largest message delivered; a larger datagram is refused and counted.
    max: usize,
    /// The receive buffer, kept between receives when the limit allows (see `recv`).
    rbuf: Vec<u8>,
    /// The receive timeout procom last set on the socket (`None`: none, it blocks for ever).
    rcvtimeo: Option<Duration>,
    /// Receives wait in poll only: the socket is non-blocking, or refused a timeout.
    nonblocking: bool,
    _file: Option<SocketFile>,
}

/// Binds a datagram receiver (`udp:` or `unixgram:`).
pub(crate) fn bind_dgram(
    endpoint: &Endpoint,
    framing: Framing,
    max: usize,
    access: Access,
) -> Result<DgramReceiver, Error> {
    let mut local = endpoint.clone();
    let (fd, file) = match endpoint {
        Endpoint::Udp { host, port } => {
            let addrs = resolve(host, *port, endpoint)?;
            let s = UdpSocket::bind(&addrs[..]).map_err(|e| bind_err(e, *port, endpoint))?;
            if let Ok(a) = s.local_addr() {
                local = Endpoint::Udp {
                    host: a.ip().to_string(),
                    port: a.port(),
                };
            }
            (s.into(), None)
        }
        Endpoint::UnixGram { addr } => bind_unix(addr, SocketType::DGRAM, endpoint, access)?,
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
        max,
        rbuf: Vec::new(),
        rcvtimeo: None,
        nonblocking: false,
        _file: file,
    })
}

impl DgramReceiver {
    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub(crate) fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    fn recv_datagram(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        let (max, deadline, is_try) = (self.max, wait.deadline(), wait.is_try());
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
            // A try receives at once without waiting (one system call, empty or not).
            if !blocking
                && !is_try
                && !poll_until(self.fd.as_fd(), PollFlags::IN, deadline)
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
                Err(rustix::io::Errno::AGAIN) if is_try => return Err(no_datagram(true)),
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
            let meta = MessageMeta {
                from: from.and_then(|a| sender_endpoint(a, &self.local)),
                ..MessageMeta::default()
            };
            return Ok((buf, meta));
        }
        let seq = match parse_udp_header(&buf) {
            Ok(seq) => seq,
            Err(e) => return Err(self.refuse(e)),
        };
        let mut meta = MessageMeta {
            seq: Some(seq),
            ..MessageMeta::default()
        };
        match from {
            Some(from) => {
                let mut window = self.senders.get(&from).copied();
                meta.gap = window.map(|w| seq.saturating_sub(w.next));
                meta.from = sender_endpoint(from.clone(), &self.local);
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
        Ok((buf, meta))
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
    fn give_up_fd(mut self) -> OwnedFd {
        if self.rcvtimeo.is_some() {
            let _ = self.wait_in_recv(None);
        }
        if let Some(file) = self._file.take() {
            file.keep();
        }
        self.fd
    }

    /// The bound socket file, for removal from another thread.
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
}

impl RecvFlavor for DgramReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        *buf = self.recv_datagram(wait)?.0;
        Ok(buf.len())
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_datagram(wait).map(|(m, _)| m)
    }

    fn recv_meta(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        self.recv_datagram(wait)
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    /// Without the receive timeout procom set on it, and with its socket file (a bound
    /// `unixgram:` path) kept, as `Receiver::into_fd` promises.
    fn into_fd(self) -> Option<OwnedFd> {
        Some(self.give_up_fd())
    }

    fn cleanup(&self) -> Option<Cleanup> {
        self._file.as_ref().and_then(SocketFile::cleanup)
    }

    fn datagram_stats(&self) -> Option<DatagramStats> {
        Some(self.stats)
    }
}

/// A datagram's source address as an endpoint of the receiver's kind (`None` for an unnamed
/// Unix socket, which cannot be answered).
fn sender_endpoint(from: rustix::net::SocketAddrAny, local: &Endpoint) -> Option<Endpoint> {
    match local {
        Endpoint::Udp { .. } => std::net::SocketAddr::try_from(from)
            .ok()
            .map(|a| Endpoint::Udp {
                host: a.ip().to_string(),
                port: a.port(),
            }),
        _ => {
            let unix = rustix::net::SocketAddrUnix::try_from(from).ok()?;
            let addr = if let Some(name) = unix.abstract_name() {
                UnixAddr::Abstract(String::from_utf8_lossy(name).into_owned())
            } else {
                use std::os::unix::ffi::OsStrExt;
                let path = unix.path_bytes().filter(|p| !p.is_empty())?;
                UnixAddr::Path(std::ffi::OsStr::from_bytes(path).into())
            };
            Some(Endpoint::UnixGram { addr })
        }
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
