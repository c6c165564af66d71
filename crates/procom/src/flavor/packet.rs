//! The sequenced-packet flavor: connected `unixpacket:` sockets (`SOCK_SEQPACKET`). The kernel
//! keeps each message whole and in order, so nothing is added on the wire: one `send` is one
//! message, one `recv` takes one.
//!
//! What the kernel allows, and how it is kept honest:
//! - A message travels in one kernel buffer charged to the sender's socket: the kernel refuses
//!   one over the send buffer less 32 bytes (`EMSGSIZE`), and cannot allocate the contiguous
//!   part of one much over 4 MiB (`ENOBUFS`). The sender grows its send buffer to fit the
//!   channel's limit (the kernel caps it at twice `net.core.wmem_max` unless the process may
//!   force it) and refuses a larger message itself, with [`ErrorKind::TooLarge`] and the
//!   limit it found: see [`room`].
//! - A receive is asked with `MSG_TRUNC`, so it returns the message's real length: one longer
//!   than the receiver's limit was cut short by the kernel and consumed; it is reported
//!   ([`ErrorKind::TooLarge`]) and never delivered. The receiver stays usable.
//! - A message of no bytes and the peer leaving look the same to a receiver (both receive 0
//!   bytes), so a sender refuses an empty message ([`ErrorKind::InvalidInput`]) and a receiver
//!   reads 0 bytes as [`ErrorKind::PeerGone`].
//! - With lines framing (the CLI's default, for `socat`) a packet is one line, as a Unix
//!   datagram is: the sender ends it with `\n` (so an empty line is a one-byte packet), the
//!   receiver drops one final `\n`. Other framings carry the message alone.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use rustix::event::PollFlags;
use rustix::net::{RecvFlags, SendFlags};

use crate::error::{Error, ErrorKind};
use crate::flavor::{RecvFlavor, SendFlavor, Wait};
use crate::framing::Framing;
use crate::stream::wait as poll_until;

/// The most a sequenced packet carries whatever the send buffer: the kernel allocates a
/// packet's bytes, less a few pages, in one piece, and its largest contiguous allocation is
/// 4 MiB (with 4 KiB pages).
pub(crate) const PACKET_CEILING: usize = 4 << 20;

/// The kernel's reserve in a send buffer: a packet may be at most the buffer less this.
const SNDBUF_RESERVE: usize = 32;

/// The largest message a `unixpacket:` sender on `fd` can send: its send buffer, grown first
/// to fit `max` where the kernel lets it, less the kernel's reserve, and at most
/// [`PACKET_CEILING`].
pub(crate) fn room(fd: BorrowedFd<'_>, max: usize) -> usize {
    use rustix::net::sockopt;
    let want = max.min(PACKET_CEILING).saturating_add(SNDBUF_RESERVE);
    let have = |fd| sockopt::socket_send_buffer_size(fd).unwrap_or(0);
    if have(fd) < want {
        // The kernel doubles what it is given (for its own bookkeeping) and caps it at twice
        // net.core.wmem_max; a process with CAP_NET_ADMIN may force it past that.
        let _ = sockopt::set_socket_send_buffer_size(fd, want.div_ceil(2));
        if have(fd) < want {
            let _ = sockopt::set_socket_send_buffer_size_force(fd, want.div_ceil(2));
        }
    }
    have(fd).saturating_sub(SNDBUF_RESERVE).min(PACKET_CEILING)
}

/// The largest message a `unixpacket:` socket carries here for a process that may not force
/// its send buffer: twice `net.core.wmem_max` less the kernel's 32-byte reserve, at most
/// 4 MiB (see [`crate::socket`]).
pub fn packet_limit() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(212_992);
    wmem_max
        .saturating_mul(2)
        .saturating_sub(SNDBUF_RESERVE)
        .min(PACKET_CEILING)
}

#[derive(Debug)]
pub(crate) struct PacketSender {
    fd: OwnedFd,
    /// The channel's limit, which `room` was fitted to.
    max: usize,
    /// The largest packet the socket takes (see [`room`]).
    room: usize,
    /// Lines framing: every packet ends with `\n`.
    newline: bool,
}

impl PacketSender {
    /// Sends over the connected sequenced-packet socket `fd` messages of at most `max` bytes
    /// (less where the kernel allows less: see [`room`]).
    pub(crate) fn new(fd: OwnedFd, framing: Framing, max: usize) -> PacketSender {
        let newline = framing == Framing::Lines;
        let room = room(fd.as_fd(), max.saturating_add(usize::from(newline)));
        PacketSender {
            fd,
            max,
            room,
            newline,
        }
    }

    fn put(&self, msg: &[u8], flags: SendFlags) -> rustix::io::Result<usize> {
        if self.newline {
            let iov = [std::io::IoSlice::new(msg), std::io::IoSlice::new(b"\n")];
            rustix::net::sendmsg(
                &self.fd,
                &iov,
                &mut rustix::net::SendAncillaryBuffer::default(),
                flags,
            )
        } else {
            rustix::net::send(&self.fd, msg, flags)
        }
    }
}

impl SendFlavor for PacketSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        if msg.is_empty() && !self.newline {
            return Err(Error::new(ErrorKind::InvalidInput).detail(
                "a unixpacket socket cannot carry an empty message: its receiver could not tell it from the sender leaving",
            ));
        }
        let newline = usize::from(self.newline);
        if msg.len() + newline > self.room {
            return Err(too_big(msg.len(), self.room.saturating_sub(newline)));
        }
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        let mut flags = SendFlags::NOSIGNAL;
        if deadline.is_some() {
            flags |= SendFlags::DONTWAIT;
        }
        loop {
            match self.put(msg, flags) {
                // A sequenced packet goes whole or not at all.
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    // Waiting for room (or a socket made non-blocking behind our back).
                    flags |= SendFlags::DONTWAIT;
                    let ready = poll_until(self.fd.as_fd(), PollFlags::OUT, deadline)
                        .map_err(|e| Error::os("wait for room", e))?;
                    if !ready {
                        return Err(if is_try {
                            Error::new(ErrorKind::Full)
                        } else {
                            Error::new(ErrorKind::Timeout).detail(
                                "the deadline passed before the peer made room for the message",
                            )
                        });
                    }
                }
                Err(rustix::io::Errno::MSGSIZE) => {
                    // The send buffer was shrunk behind our back (through `as_fd`).
                    self.room = room(self.fd.as_fd(), self.max.saturating_add(newline));
                    let limit = self.room.saturating_sub(newline);
                    return Err(too_big(msg.len(), limit.min(msg.len().saturating_sub(1))));
                }
                Err(rustix::io::Errno::NOBUFS) => {
                    return Err(Error::os("send to it", rustix::io::Errno::NOBUFS.into())
                        .detail(format!(
                            "the kernel could not allocate a {}-byte packet in one piece; send smaller messages",
                            msg.len()
                        )));
                }
                Err(e) => return Err(Error::os("send to it", e.into())),
            }
        }
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        Some(self.fd)
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.room = room(
            self.fd.as_fd(),
            max.saturating_add(usize::from(self.newline)),
        );
    }
}

fn too_big(len: usize, room: usize) -> Error {
    Error::too_large(len as u64, room as u64).detail(format!(
        "a {len}-byte message is over the {room} bytes a unixpacket message can hold here: the kernel keeps a whole packet in the sender's socket buffer (bounded by net.core.wmem_max, and 4 MiB at most); use unix: or shm: for larger messages"
    ))
}

#[derive(Debug)]
pub(crate) struct PacketReceiver {
    fd: OwnedFd,
    max: usize,
    /// Lines framing: one final `\n` of a packet is dropped.
    lines: bool,
    /// Room for the largest message the receiver accepts, allocated on the first receive and
    /// kept (the kernel writes only what arrives, so untouched pages cost no memory, only
    /// address space); with `shrink`, room for the largest message received so far.
    buf: Vec<u8>,
    /// Give the buffer back after a message over [`KEPT`] (a server's connections, which
    /// share a memory budget: many idle clients must not each pin their largest message).
    shrink: bool,
    /// A large message was lent from `buf` ([`RecvFlavor::recv_lent`]) with `shrink` on: the
    /// buffer is given back by the next receive, once the view is gone.
    give_back: bool,
}

/// The most of a large message's pages a receiver with a budget keeps between messages.
const KEPT: usize = 128 << 10;

/// From this size a message received into a caller's buffer makes that buffer room for the
/// largest message, so the next ones are received straight into it (see
/// [`RecvFlavor::recv_into`] for [`PacketReceiver`]): below it, the copy out of the kept
/// buffer costs less than the room a caller's buffer would hold.
const DIRECT_FROM: usize = 64 << 10;

impl PacketReceiver {
    /// Receives from the connected sequenced-packet socket `fd` messages of at most `max`
    /// bytes.
    pub(crate) fn new(fd: OwnedFd, framing: Framing, max: usize) -> PacketReceiver {
        PacketReceiver {
            fd,
            max,
            lines: framing == Framing::Lines,
            buf: Vec::new(),
            shrink: false,
            give_back: false,
        }
    }

    /// Keeps room only for the messages that arrive (learning each one's length first), and
    /// gives it back after every message over 128 KiB (for receivers that share a
    /// [`Budget`](crate::Budget)).
    pub(crate) fn shrinking(mut self, shrink: bool) -> PacketReceiver {
        self.shrink = shrink;
        self
    }

    /// Hands the `n` bytes received to `f`, then gives a large buffer back if asked to.
    fn lend<T>(&mut self, n: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        let out = f(&mut self.buf[..n]);
        if self.shrink && n > KEPT {
            self.buf = Vec::new();
        }
        out
    }

    /// Room for the largest message this receiver accepts (a line with its newline), as far
    /// as a packet can be that large.
    fn room(&self) -> usize {
        self.max
            .saturating_add(usize::from(self.lines))
            .min(PACKET_CEILING.saturating_mul(2))
    }

    /// Receives the next message into the kept buffer; returns its length.
    fn recv_packet(&mut self, wait: Wait) -> Result<usize, Error> {
        self.recv_packet_to(wait, None)
    }

    /// Receives the next message into the kept buffer, or, with `caller` (a buffer with
    /// [`room`](Self::room) spare, on a receiver without a budget), straight into that
    /// buffer's spare room, which then holds the message; returns its length.
    fn recv_packet_to(
        &mut self,
        wait: Wait,
        mut caller: Option<&mut Vec<u8>>,
    ) -> Result<usize, Error> {
        if std::mem::take(&mut self.give_back) {
            self.buf = Vec::new();
        }
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        // A line may come with its newline.
        let limit = self.max.saturating_add(usize::from(self.lines));
        let room = self.room();
        // A receiver with a budget (one of a server's many connections) learns each packet's
        // length first and keeps room only for what arrives: room for the limit, reserved by
        // every connection, would exhaust the address space (or, under strict overcommit,
        // the memory) with clients that each send one byte. Others keep room for the limit
        // and take a message in one system call.
        if !self.shrink && self.buf.len() != room && caller.is_none() {
            self.buf = vec![0; room];
        }
        let mut flags = RecvFlags::TRUNC;
        if deadline.is_some() {
            flags |= RecvFlags::DONTWAIT;
        }
        loop {
            let got = if self.shrink {
                match rustix::net::recv(&self.fd, &mut [0u8; 0][..], flags | RecvFlags::PEEK) {
                    Ok((_, n)) => {
                        // Room for it unless it is refused anyway (then it is only discarded).
                        let want = if n > limit { 0 } else { n.min(room) };
                        if self.buf.len() < want {
                            self.buf = vec![0; want];
                        }
                        rustix::net::recv(&self.fd, &mut self.buf[..], flags)
                    }
                    Err(e) => Err(e),
                }
            } else if let Some(out) = caller.as_deref_mut() {
                out.clear();
                // The kernel writes what arrives into the spare room, nothing else.
                rustix::net::recv(&self.fd, rustix::buffer::spare_capacity(out), flags)
            } else {
                rustix::net::recv(&self.fd, &mut self.buf[..], flags)
            };
            // Where the packet landed: the bytes made ready for it there.
            let landed: &[u8] = caller.as_deref().map_or(&self.buf, Vec::as_slice);
            let held = landed.len();
            match got {
                Ok((_, 0)) => {
                    return Err(Error::new(ErrorKind::PeerGone).detail("the peer left"));
                }
                Ok((_, n)) if n > limit => {
                    return Err(Error::too_large(n as u64, self.max as u64).detail(format!(
                        "a {n}-byte message is over the {}-byte message limit; it was discarded",
                        self.max
                    )));
                }
                Ok((_, n)) if n > held => {
                    return Err(Error::new(ErrorKind::Malformed).detail(format!(
                        "a {n}-byte packet is larger than the {held} bytes made ready for it (larger than any the kernel is known to carry, or it changed after its length was read); it was cut short and discarded"
                    )));
                }
                Ok((_, n)) if self.lines && landed.get(n - 1) == Some(&b'\n') => return Ok(n - 1),
                Ok((_, n)) if n > self.max => {
                    // A line of `max + 1` bytes without its newline.
                    return Err(Error::too_large(n as u64, self.max as u64).detail(format!(
                        "a {n}-byte message is over the {}-byte message limit; it was discarded",
                        self.max
                    )));
                }
                Ok((_, n)) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    flags |= RecvFlags::DONTWAIT;
                    let ready = poll_until(self.fd.as_fd(), PollFlags::IN, deadline)
                        .map_err(|e| Error::os("wait for a message", e))?;
                    if !ready {
                        return Err(if is_try {
                            Error::new(ErrorKind::Empty)
                        } else {
                            Error::new(ErrorKind::Timeout)
                                .detail("no message arrived before the deadline")
                        });
                    }
                }
                Err(e) => return Err(Error::os("receive from it", e.into())),
            }
        }
    }
}

impl RecvFlavor for PacketReceiver {
    /// Straight into `buf` when it has room for the largest message (a buffer reused from
    /// the last large message does): no copy out of the kept buffer. Otherwise through the
    /// kept buffer, and `buf` is given that room after a message of [`DIRECT_FROM`] bytes or
    /// more, so the next ones go straight in. Not with a budget, whose receivers keep room
    /// only for what arrives.
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let room = self.room();
        // A try (the async receiver's, again and again) leaves `buf` as it was when nothing
        // is there: it goes through the kept buffer.
        if !self.shrink && !wait.is_try() && buf.capacity() >= room {
            let got = self.recv_packet_to(wait, Some(buf));
            match got {
                Ok(n) => buf.truncate(n),
                Err(_) => buf.clear(),
            }
            return got;
        }
        let n = self.recv_packet(wait)?;
        let shrink = self.shrink;
        self.lend(n, |m| {
            buf.clear();
            if n >= DIRECT_FROM && !shrink {
                // Best effort: without it the message is copied as before.
                let _ = buf.try_reserve_exact(room);
            }
            buf.extend_from_slice(m);
        });
        Ok(n)
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        let n = self.recv_packet(wait)?;
        Ok(self.lend(n, |m| m.to_vec()))
    }

    /// Lent from the kept buffer: no allocation and no copy per message.
    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        let n = self.recv_packet(wait)?;
        Ok(self.lend(n, |m| f(procom_sys::mapping::atomic_bytes(m))))
    }

    fn recv_bytes<T>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> T) -> Result<T, Error> {
        let n = self.recv_packet(wait)?;
        Ok(self.lend(n, |m| f(m)))
    }

    /// Lent from the kept buffer until the next receive (which gives a large one back, when
    /// the receiver shares a budget).
    fn recv_lent<'a>(&'a mut self, wait: Wait, _spare: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let n = self.recv_packet(wait)?;
        self.give_back = self.shrink && n > KEPT;
        Ok(&self.buf[..n])
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        Some(self.fd)
    }
}

/// Whether `fd` is a sequenced-packet socket (what [`Sender::from_fd`](crate::Sender::from_fd)
/// and standard input/output are checked for).
pub(crate) fn is_packet_socket(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_type(fd).is_ok_and(|t| t == rustix::net::SocketType::SEQPACKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver with a budget gives a large message's buffer back once it is delivered, and
    /// keeps a small one's; one without keeps both.
    #[test]
    fn a_budgeted_receiver_keeps_no_large_buffer() {
        for shrink in [true, false] {
            let (a, b) = crate::socket::packet_socketpair().unwrap();
            let mut tx = PacketSender::new(a, Framing::Length, 1 << 20);
            let mut rx = PacketReceiver::new(b, Framing::Length, 1 << 20).shrinking(shrink);
            tx.send(&[1; 4096], Wait::Forever).unwrap();
            assert_eq!(rx.recv(Wait::Forever).unwrap(), vec![1; 4096]);
            assert!(!rx.buf.is_empty());
            tx.send(&[2; 512 << 10], Wait::Forever).unwrap();
            let n = rx.recv_bytes(Wait::Forever, |m| m.len()).unwrap();
            assert_eq!(n, 512 << 10);
            assert_eq!(rx.buf.is_empty(), shrink);
        }
    }

    /// A large message lent with a budget stays where it lies until the next receive, which
    /// gives its buffer back; without a budget the buffer is kept.
    #[test]
    fn a_budgeted_receiver_gives_a_lent_large_buffer_back_on_the_next_receive() {
        for shrink in [true, false] {
            let (a, b) = crate::socket::packet_socketpair().unwrap();
            let mut tx = PacketSender::new(a, Framing::Length, 1 << 20);
            let mut rx = PacketReceiver::new(b, Framing::Length, 1 << 20).shrinking(shrink);
            let mut spare = Vec::new();
            tx.send(&[2; 512 << 10], Wait::Forever).unwrap();
            tx.send(&[3; 16], Wait::Forever).unwrap();
            let m = rx.recv_lent(Wait::Forever, &mut spare).unwrap();
            assert!(m.len() == 512 << 10 && m.iter().all(|&x| x == 2));
            assert!(spare.is_empty(), "a view was copied");
            assert_eq!(rx.recv(Wait::Forever).unwrap(), vec![3; 16]);
            assert_eq!(rx.buf.len() < 512 << 10, shrink);
        }
    }

    /// A large message gives the caller's buffer room for the largest message; the next ones
    /// are received straight into it (the kept buffer is never made), whole, with a line's
    /// newline dropped, and one over the limit leaves the buffer empty.
    #[test]
    fn a_reused_buffer_with_room_receives_straight_into_it() {
        for framing in [Framing::Length, Framing::Lines] {
            let (a, b) = crate::socket::packet_socketpair().unwrap();
            let mut tx = PacketSender::new(a, Framing::Length, 1 << 20);
            let mut rx = PacketReceiver::new(b, framing, 256 << 10);
            let mut buf = Vec::new();
            let msg =
                |k: usize, len: usize| (0..len).map(|i| (i * 7 + k) as u8).collect::<Vec<_>>();
            tx.send(&msg(0, 100 << 10), Wait::Forever).unwrap();
            assert_eq!(rx.recv_into(Wait::Forever, &mut buf).unwrap(), 100 << 10);
            assert_eq!(buf, msg(0, 100 << 10));
            assert!(buf.capacity() >= rx.room(), "{}", buf.capacity());
            rx.buf = Vec::new();
            for (k, len) in [(1, 200 << 10), (2, 5), (3, 100 << 10)] {
                tx.send(&msg(k, len), Wait::Forever).unwrap();
                assert_eq!(rx.recv_into(Wait::Forever, &mut buf).unwrap(), len);
                assert_eq!(buf, msg(k, len), "message {k}");
                assert!(
                    rx.buf.is_empty(),
                    "message {k} went through the kept buffer"
                );
            }
            if framing == Framing::Lines {
                tx.send(b"a line\n", Wait::Forever).unwrap();
                assert_eq!(rx.recv_into(Wait::Forever, &mut buf).unwrap(), 6);
                assert_eq!(buf, b"a line");
            }
            tx.send(&msg(4, 300 << 10), Wait::Forever).unwrap();
            let e = rx.recv_into(Wait::Forever, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TooLarge);
            assert!(buf.is_empty());
            tx.send(&msg(5, 7), Wait::Forever).unwrap();
            assert_eq!(rx.recv_into(Wait::Forever, &mut buf).unwrap(), 7);
            assert_eq!(buf, msg(5, 7));
        }
    }

    /// A receiver with a budget sizes its buffer to what arrives: a packet over its limit is
    /// discarded without room being made for it, and the next one arrives whole.
    #[test]
    fn a_budgeted_receiver_makes_room_for_what_arrives() {
        let (a, b) = crate::socket::packet_socketpair().unwrap();
        let mut tx = PacketSender::new(a, Framing::Length, 1 << 20);
        let mut rx = PacketReceiver::new(b, Framing::Length, 1024).shrinking(true);
        tx.send(&[1; 10], Wait::Forever).unwrap();
        assert_eq!(rx.recv(Wait::Forever).unwrap(), vec![1; 10]);
        assert_eq!(rx.buf.len(), 10);
        tx.send(&[2; 4096], Wait::Forever).unwrap();
        let e = rx.recv(Wait::Forever).unwrap_err();
        assert_eq!((e.kind(), e.size()), (ErrorKind::TooLarge, Some(4096)));
        assert_eq!(rx.buf.len(), 10);
        tx.send(&[3; 1000], Wait::Forever).unwrap();
        assert_eq!(rx.recv(Wait::Forever).unwrap(), vec![3; 1000]);
        let e = rx.recv(Wait::Never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
    }
}
