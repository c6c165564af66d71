//! The datagram flavor (`udp:`, `unixgram:`): one datagram is one message. UDP with length
//! framing carries procom's 16-byte header so loss, reordering and duplicates are counted per
//! sender; a datagram a receiver cannot deliver fails only the receive that met it, and is
//! counted.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::SocketType;

use crate::cleanup::Cleanup;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind};
use crate::flavor::{RecvFlavor, SendFlavor, Wait};
use crate::framing::Framing;
use crate::net::{SocketFile, bind_unix, io_err, resolve, unix_addr};
use crate::stream::wait as poll_until;

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
) -> Result<DgramReceiver, Error> {
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
        max,
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

impl DgramReceiver {
    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub(crate) fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    fn recv_datagram(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
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
            if !blocking
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

impl RecvFlavor for DgramReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        *buf = self.recv_datagram(wait)?;
        Ok(buf.len())
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
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
