//! The byte-stream engine under every fd-based flavor: waiting with a deadline, writing
//! without blocking past it, and never dying of SIGPIPE.
//!
//! One internal function per direction takes an `Option<Instant>` deadline; blocking, `try_`
//! and `_timeout` forms are that function with no deadline, a deadline of now, and a deadline
//! of now + timeout. `EINTR` is retried against the original deadline.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::FileType;
use rustix::io::{Errno, ReadWriteFlags};

use crate::budget::{Budget, Charge, FREE_BYTES};
use crate::error::Error;

mod direct;

pub(crate) use direct::{MID_PAGE_SLACK, no_room, place, resize_zeroed};

/// What kind of file a descriptor is, which decides how it can be written without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// An anonymous pipe or a FIFO.
    Pipe,
    /// A socket.
    Socket,
    /// A terminal, a regular file or anything else: written with plain blocking writes.
    Other,
}

pub(crate) fn fd_kind(fd: BorrowedFd<'_>) -> FdKind {
    match rustix::fs::fstat(fd) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Fifo => FdKind::Pipe,
            FileType::Socket => FdKind::Socket,
            _ => FdKind::Other,
        },
        Err(_) => FdKind::Other,
    }
}

/// Whether a pipe is anonymous (made by `pipe(2)`, on the kernel's pipe file system), not a
/// FIFO with a name.
fn anonymous_pipe(fd: BorrowedFd<'_>) -> bool {
    /// `PIPEFS_MAGIC`: the file system of anonymous pipes.
    const PIPEFS: i64 = 0x5049_5045;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(fd).is_ok_and(|fs| fs.f_type as i64 == PIPEFS)
}

/// A second open file of the FIFO open at `fd`, in blocking mode, reached through
/// `/proc/self/fd` (the same FIFO whatever its name refers to now). Opened without waiting,
/// then made blocking; `None` if either step fails (no `/proc`, no descriptor left, the FIFO's
/// mode no longer lets us read it).
fn blocking_twin(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let twin = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // Still the same FIFO (a descriptor number is ours alone, but check what was opened).
    let (a, b) = (rustix::fs::fstat(fd).ok()?, rustix::fs::fstat(&twin).ok()?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return None;
    }
    let flags = rustix::fs::fcntl_getfl(&twin).ok()?;
    rustix::fs::fcntl_setfl(&twin, flags - OFlags::NONBLOCK).ok()?;
    Some(twin)
}

/// Whether reads on `fd` block (its open file is not `O_NONBLOCK`).
fn blocking(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd).is_ok_and(|f| !f.contains(rustix::fs::OFlags::NONBLOCK))
}

/// The deadline `timeout` from now; a timeout too large to represent means no deadline.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Waits until `fd` reports one of `events` (or an error/hang-up), or the deadline passes.
/// Returns whether it became ready. A passed deadline still checks readiness once.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let mut fds = [PollFd::new(&fd, events)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The write half: an fd, how to write it without blocking, and whether SIGPIPE needs guarding.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    fd: OwnedFd,
    kind: FdKind,
    /// SIGPIPE was ignored when this writer was made, so a plain write cannot kill us.
    sigpipe_ignored: bool,
    /// `RWF_NOWAIT` was refused once (an old kernel); fall back to poll + blocking write.
    no_nowait: bool,
    /// A pipe's buffer size as last set or read (`None`: not known yet, or not a pipe).
    pipe_size: Option<usize>,
    /// Growing the pipe's buffer was refused (a quota, or over `fs.pipe-max-size`).
    pipe_fixed: bool,
}

/// The largest pipe buffer procom asks for: the default `fs.pipe-max-size`, which an
/// unprivileged process may set.
const PIPE_MAX: usize = 1 << 20;

/// The outcome of a write that stopped early.
#[derive(Debug)]
pub(crate) struct WriteStop {
    /// Bytes that did go out before it stopped.
    pub written: usize,
    /// Why it stopped: a deadline (`None`) or an OS error.
    pub error: Option<io::Error>,
}

impl StreamWriter {
    pub(crate) fn new(fd: OwnedFd) -> StreamWriter {
        let kind = fd_kind(fd.as_fd());
        StreamWriter {
            fd,
            kind,
            sigpipe_ignored: procom_sys::sigpipe::sigpipe_ignored().unwrap_or(false),
            no_nowait: false,
            pipe_size: None,
            pipe_fixed: false,
        }
    }

    /// On a pipe or FIFO whose buffer is smaller than a `total`-byte frame, asks the kernel for
    /// a buffer that holds it (up to [`PIPE_MAX`]), so the frame goes out in one write instead
    /// of a part, a wait for the reader to drain it, and the rest: a 64 KiB message plus its
    /// 4-byte header is one byte too many for the default 64 KiB pipe. Best effort; a refusal
    /// is remembered and the frame is written in parts as before.
    pub(crate) fn fit_pipe(&mut self, total: usize) {
        if self.kind != FdKind::Pipe || self.pipe_fixed {
            return;
        }
        let size = match self.pipe_size {
            Some(n) => n,
            None => match rustix::pipe::fcntl_getpipe_size(&self.fd) {
                Ok(n) => *self.pipe_size.insert(n),
                Err(_) => {
                    self.pipe_fixed = true;
                    return;
                }
            },
        };
        let want = total
            .checked_next_power_of_two()
            .unwrap_or(PIPE_MAX)
            .min(PIPE_MAX);
        if total <= size || want <= size {
            return;
        }
        match rustix::pipe::fcntl_setpipe_size(&self.fd, want) {
            Ok(n) => self.pipe_size = Some(n),
            Err(_) => self.pipe_fixed = true,
        }
    }

    pub(crate) fn kind(&self) -> FdKind {
        self.kind
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// One write attempt. `nowait` asks the kernel not to block (pipes and sockets only).
    fn write_once(&mut self, bufs: &[IoSlice<'_>], nowait: bool) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        let use_nowait = nowait && !self.no_nowait && self.kind != FdKind::Other;
        if self.kind == FdKind::Socket {
            // Sockets have MSG_NOSIGNAL: no signal-mask dance, a dead peer is just EPIPE.
            let mut flags = rustix::net::SendFlags::NOSIGNAL;
            if nowait {
                flags |= rustix::net::SendFlags::DONTWAIT;
            }
            return rustix::net::sendmsg(
                fd,
                bufs,
                &mut rustix::net::SendAncillaryBuffer::default(),
                flags,
            )
            .map_err(Into::into);
        }
        let attempt = || -> io::Result<usize> {
            if use_nowait {
                rustix::io::pwritev2(fd, bufs, u64::MAX, ReadWriteFlags::NOWAIT).map_err(Into::into)
            } else {
                rustix::io::writev(fd, bufs).map_err(Into::into)
            }
        };
        let result = if self.sigpipe_ignored {
            attempt()
        } else {
            procom_sys::sigpipe::without_sigpipe(attempt)
        };
        if use_nowait
            && matches!(&result, Err(e) if e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error()))
        {
            self.no_nowait = true;
        }
        result
    }

    /// A pipe's free bytes and buffer size, read now, when the descriptor is a pipe.
    pub(crate) fn pipe_space(&mut self) -> Option<(usize, usize)> {
        if self.kind != FdKind::Pipe {
            return None;
        }
        let cap = *self
            .pipe_size
            .insert(rustix::pipe::fcntl_getpipe_size(self.fd.as_fd()).ok()?);
        let used = rustix::io::ioctl_fionread(self.fd.as_fd()).ok()? as usize;
        Some((cap.saturating_sub(used), cap))
    }

    /// Writes all of `parts` (in order) or stops at the deadline or an error.
    pub(crate) fn write_all(
        &mut self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), WriteStop> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        // With no deadline, a socket or pipe blocks in the kernel's own write: one system call
        // per message while the peer keeps up, where "would block, poll, retry" made three
        // whenever the buffer was full (measured on sockets: a fifth fewer messages per second
        // streaming 4 KiB; on pipes, a 1 MiB message took sixteen writes and sixteen polls).
        let nowait = deadline.is_some();
        let mut written = 0usize;
        while written < total {
            let mut skip = written;
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len());
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                slices.push(IoSlice::new(&p[skip..]));
                skip = 0;
            }
            match self.write_once(&slices, nowait) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || (self.no_nowait
                            && e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error())) =>
                {
                    match wait(self.fd.as_fd(), PollFlags::OUT, deadline) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(WriteStop {
                                written,
                                error: None,
                            });
                        }
                        Err(e) => {
                            return Err(WriteStop {
                                written,
                                error: Some(e),
                            });
                        }
                    }
                }
                Err(e) => {
                    return Err(WriteStop {
                        written,
                        error: Some(e),
                    });
                }
            }
        }
        Ok(())
    }
}

impl AsFd for StreamWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The read half: an fd and the bytes read from it that no message has claimed yet.
#[derive(Debug)]
pub(crate) struct StreamReader {
    fd: OwnedFd,
    /// A socket, an anonymous pipe in blocking mode, or a FIFO once it has its [`Self::twin`]
    /// may be read with one blocking call when there is no deadline: poll + read would cost
    /// two system calls per message. (Not a FIFO before that: read returns end-of-file on a
    /// FIFO no writer has opened yet, which only poll tells apart; and procom's own FIFO ends
    /// are non-blocking. An anonymous pipe had its writer from the start, so end-of-file is
    /// the end.)
    direct: bool,
    /// A socket: a read with a deadline first asks without waiting (`MSG_DONTWAIT`).
    socket: bool,
    /// A FIFO with a name, read through a non-blocking open file: once a writer has been seen
    /// (bytes arrived), a second, blocking open file of the same FIFO ([`Self::twin`]) serves
    /// the reads without a deadline, one system call each instead of poll + read.
    fifo: bool,
    /// That blocking open file, once made (`None` before, or if it could not be): the reads
    /// without a deadline go to it.
    twin: Option<OwnedFd>,
    /// A Unix or TCP stream socket (`SOCK_STREAM`): a large message is read straight into the
    /// caller's buffer (see [`StreamReader::read_exact_into`]).
    large_direct: bool,
    /// A TCP socket, whose kernel buffers hold a frame starting on a page: a large message
    /// read straight into a buffer that lies a few bytes past that alignment goes through a
    /// bounce buffer instead (see [`StreamReader::read_rest`]).
    tcp: bool,
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) eof: bool,
    /// The last read from the descriptor returned less than it had room for, or found
    /// nothing: the kernel held no more bytes then (a stream hands over all it has, up to the
    /// room given). The async face then waits for the next readiness edge instead of making a
    /// read that finds nothing.
    pub(crate) drained: bool,
    /// The length of the last large message read straight into a caller's buffer, or 0: the
    /// size the next one is expected to be (see [`read_split`](Self::read_split)).
    pub(crate) expect: usize,
    /// Where the buffer's growth beyond `FREE_BYTES` is charged, if anywhere.
    budget: Option<Budget>,
    charge: Option<Charge>,
}

/// How much a read asks for when the frame size is unknown: 64 KiB and room for a frame
/// header, so a 64 KiB message and its length prefix come in one read when they are there.
const READ_CHUNK: usize = 64 * 1024 + 64;

impl StreamReader {
    pub(crate) fn new(fd: OwnedFd) -> StreamReader {
        let kind = fd_kind(fd.as_fd());
        let named_fifo = kind == FdKind::Pipe && !anonymous_pipe(fd.as_fd());
        let direct = match kind {
            FdKind::Socket => true,
            FdKind::Pipe => !named_fifo && blocking(fd.as_fd()),
            FdKind::Other => false,
        };
        // A byte stream's family: a datagram socket handed over as a stream keeps its reads
        // through our buffer, where a datagram larger than the read asked is never cut short.
        let family = match kind {
            FdKind::Socket
                if rustix::net::sockopt::socket_type(&fd)
                    .is_ok_and(|t| t == rustix::net::SocketType::STREAM) =>
            {
                rustix::net::getsockname(&fd)
                    .ok()
                    .map(|a| a.address_family())
            }
            _ => None,
        };
        let tcp = matches!(
            family,
            Some(rustix::net::AddressFamily::INET | rustix::net::AddressFamily::INET6)
        );
        let large_direct = tcp || family == Some(rustix::net::AddressFamily::UNIX);
        StreamReader {
            direct,
            socket: kind == FdKind::Socket,
            fifo: named_fifo,
            twin: None,
            large_direct,
            tcp,
            fd,
            buf: Vec::new(),
            start: 0,
            eof: false,
            drained: false,
            expect: 0,
            budget: None,
            charge: None,
        }
    }

    /// Charges the buffer's growth to `budget` (see [`Budget`]).
    pub(crate) fn with_budget(mut self, budget: Option<Budget>) -> StreamReader {
        self.budget = budget;
        self
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The unclaimed bytes.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    /// Drops `n` bytes from the front of the unclaimed bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.charge.take().is_some() {
                self.buf = Vec::new(); // the charged memory goes back with the charge
            }
        }
    }

    /// With a budget, charges what the next [`fill`](Self::fill) for `want` bytes will add to
    /// the buffer beyond the free allowance: a known size waits for room until `deadline`,
    /// growth of unknown size is refused at once when there is none. Without one, nothing.
    pub(crate) fn make_room(
        &mut self,
        want: usize,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        // Bytes already consumed (the end of the last message) are not part of the need: the
        // next message must not wait for the room this receiver's own finished one still holds.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let need = self.buf.len() + self.ask(want);
        let charged = self.charge.as_ref().map_or(0, Charge::bytes);
        let extra = need.saturating_sub(FREE_BYTES).saturating_sub(charged);
        if extra > 0 {
            let more = budget.take(extra, charged, want > 0, deadline)?;
            match &mut self.charge {
                Some(c) => c.absorb(more),
                None => self.charge = Some(more),
            }
        }
        Ok(())
    }

    /// How much a read makes room for: the rest of a large frame at once, so it is read in
    /// few calls, and at least a chunk.
    fn ask(&self, want: usize) -> usize {
        let have = self.buf.len() - self.start;
        if want > have {
            (want - have).max(READ_CHUNK)
        } else {
            READ_CHUNK
        }
    }

    /// Reads more bytes, waiting until the deadline. `want` is how many unclaimed bytes the
    /// caller needs in total (0 if unknown). Returns `Ok(false)` if the deadline passed with
    /// nothing new; end of stream sets `self.eof`.
    pub(crate) fn fill(&mut self, want: usize, deadline: Option<Instant>) -> io::Result<bool> {
        if self.start > 0
            && (self.start >= self.buf.len() / 2
                || self.buf.capacity() - self.buf.len() < READ_CHUNK)
        {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let ask = self.ask(want);
        // A peer's length prefix decides `ask`: a refused allocation is an error, not an abort.
        let refused = |_| no_room(want.max(ask));
        let len = self.buf.len();
        if self.budget.is_some() {
            // What `make_room` charged, not a doubling.
            self.buf.try_reserve_exact(ask).map_err(refused)?;
        } else if want > len - self.start {
            // The rest of a frame whose length is known: grown as `reserve` would (doubling),
            // but never past the frame's end and a chunk. A doubling near the end of a large
            // frame asked for twice its size.
            if self.buf.capacity() - len < ask {
                let end = (self.start + want).saturating_add(READ_CHUNK);
                let target = (len + ask).max(self.buf.capacity().saturating_mul(2).min(end));
                self.buf.try_reserve_exact(target - len).map_err(refused)?;
            }
        } else {
            self.buf.try_reserve(ask).map_err(refused)?;
        }
        let mut direct = self.direct && deadline.is_none();
        // A socket with a deadline is first read without waiting (MSG_DONTWAIT): bytes that are
        // there cost one system call instead of poll + read, and so does a try on an empty
        // socket (the async face reads this way after every wake-up).
        if self.socket && deadline.is_some() {
            loop {
                let room = self.buf.capacity() - self.buf.len();
                match rustix::net::recv(
                    self.fd.as_fd(),
                    rustix::buffer::spare_capacity(&mut self.buf),
                    rustix::net::RecvFlags::DONTWAIT,
                ) {
                    Ok((0, _)) => {
                        self.eof = true;
                        return Ok(true);
                    }
                    Ok((n, _)) => {
                        self.drained = n < room;
                        return Ok(true);
                    }
                    Err(Errno::INTR) => continue,
                    Err(Errno::AGAIN) => {
                        self.drained = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
        loop {
            if !direct && !wait(self.fd.as_fd(), PollFlags::IN, deadline)? {
                return Ok(false);
            }
            let room = self.buf.capacity() - self.buf.len();
            let from = match &self.twin {
                Some(twin) if direct => twin.as_fd(),
                _ => self.fd.as_fd(),
            };
            match rustix::io::read(from, rustix::buffer::spare_capacity(&mut self.buf)) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.drained = n < room;
                    if self.fifo {
                        self.fifo = false; // asked once
                        self.twin = blocking_twin(self.fd.as_fd());
                        self.direct = self.twin.is_some();
                    }
                    return Ok(true);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => direct = false, // a non-blocking socket: wait in poll
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for StreamReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last bytes of a large frame, fewer than a read chunk, are read into the room
    /// the frame's reservation left and a chunk past it, not into a buffer twice the frame's
    /// size (amortised growth doubled it: 8 MiB of address space for a 4 MiB message).
    #[test]
    fn the_end_of_a_large_frame_does_not_double_the_buffer() {
        use std::io::Write;
        const WANT: usize = 4 << 20;
        let (mut w, r) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut r = StreamReader::new(OwnedFd::from(r));
        let (go, tail) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            w.write_all(&vec![1; WANT - 100]).unwrap();
            tail.recv().unwrap();
            w.write_all(&[2; 100]).unwrap();
        });
        while r.pending().len() < WANT - 100 {
            assert!(r.fill(WANT, None).unwrap());
        }
        go.send(()).unwrap();
        while r.pending().len() < WANT {
            assert!(r.fill(WANT, None).unwrap());
        }
        writer.join().unwrap();
        assert!(
            r.buf.capacity() <= WANT + READ_CHUNK,
            "{} bytes of buffer for a {WANT}-byte frame",
            r.buf.capacity()
        );
    }
}
