//! Reading large messages from a Unix or TCP stream socket straight into a buffer outside the
//! reader's own (the caller's, or the one a typed view is lent from), and where in it they go.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use rustix::event::PollFlags;
use rustix::io::Errno;

use super::{StreamReader, wait};

impl StreamReader {
    /// Whether a message of `len` more bytes may be read straight into the caller's buffer
    /// by [`read_exact_into`](Self::read_exact_into): a Unix or TCP socket read without a
    /// deadline or a budget, and a message large enough that the copy out of our buffer would cost more than
    /// the extra system call.
    pub(crate) fn can_read_direct(&self, len: usize, deadline: Option<Instant>) -> bool {
        self.large_direct && deadline.is_none() && self.budget.is_none() && len >= DIRECT_MIN
    }

    /// Whether reading ahead for a frame's header with one blocking read is what the usual
    /// path would do anyway, on a reader that reads large messages straight into the caller's
    /// buffer: a Unix or TCP socket read without a deadline or a budget.
    pub(crate) fn blocks_plainly(&self, deadline: Option<Instant>) -> bool {
        self.large_direct && deadline.is_none() && self.budget.is_none() && !self.eof
    }

    /// Moves the bytes that come next in the stream into `out[at..]` (which [`place`] sized
    /// for them): first those already buffered here, then the rest read from the socket
    /// straight into `out`, never past them (the next message's bytes stay in the stream).
    /// Blocks until they are all there. `Ok(false)`: the stream ended first (what was read is
    /// gone with it).
    pub(crate) fn read_exact_into(&mut self, out: &mut [u8], at: usize) -> io::Result<bool> {
        let have = self.pending().len().min(out.len() - at);
        out[at..at + have].copy_from_slice(&self.pending()[..have]);
        self.consume(have);
        self.read_rest(out, at, at + have)
    }

    /// Whether the message to be read into `out[at..]` must not be read there with one copy
    /// by the kernel: a TCP socket, and a destination that lies 1 to 63 bytes past where the
    /// message's bytes lie within the kernel's pages. The kernel's copy (`rep movsb`) ran a
    /// third to half again as long for such a destination on the project's reference machine
    /// (AMD EPYC): a caller's buffer from the allocator, 16 bytes into a page, against a
    /// payload 4 bytes into one (after its length prefix, the frame starting on a page as it
    /// does in a ping-pong, where the sender's page is free again when it writes the next).
    /// Those messages go through a bounce buffer ([`Self::read_rest`]).
    pub(crate) fn skewed(&self, out: &[u8], at: usize) -> bool {
        if !self.tcp {
            return false;
        }
        let skew = (out.as_ptr() as usize)
            .wrapping_add(at)
            .wrapping_sub(crate::framing::HEADER_LEN)
            % PAGE_SPAN;
        (1..64).contains(&skew)
    }

    /// With nothing buffered here, one blocking read (`readv`) of a frame's header into `head`
    /// and, in the same system call, of the bytes after it straight into `out[at..]` (which
    /// [`place`] sized for the message expected): a message of the size expected arrives
    /// without passing through our buffer and without a read of its own for the header.
    /// Returns how many bytes went into `out[at..]`; `None` when the header did not arrive
    /// whole (the bytes that did are buffered here, as [`fill`](Self::fill) would have left
    /// them) or the stream ended.
    pub(crate) fn read_split(
        &mut self,
        head: &mut [u8],
        out: &mut [u8],
        at: usize,
    ) -> io::Result<Option<usize>> {
        let room = out.len() - at;
        let n = blocking_read(self.fd.as_fd(), || {
            let mut bufs = [IoSliceMut::new(head), IoSliceMut::new(&mut out[at..])];
            rustix::io::readv(self.fd.as_fd(), &mut bufs)
        })?;
        self.drained = n < head.len() + room;
        if n == 0 {
            self.eof = true;
            return Ok(None);
        }
        if n < head.len() {
            self.buf.extend_from_slice(&head[..n]);
            return Ok(None);
        }
        Ok(Some(n - head.len()))
    }

    /// Puts bytes read past a message back in front of whatever comes next: they are the
    /// start of the next frames. Only after [`read_split`](Self::read_split), which reads
    /// with nothing buffered.
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads from the socket into `out[got..]` until it is full, the message having begun at
    /// `out[at]`; blocks until it is. A message [`skewed`](Self::skewed) there goes through a
    /// bounce buffer, a chunk at a time. `Ok(false)`: the stream ended first.
    pub(crate) fn read_rest(&mut self, out: &mut [u8], at: usize, got: usize) -> io::Result<bool> {
        if got < out.len() && self.skewed(out, at) {
            return self.read_bounced(out, got);
        }
        self.read_straight(out, got)
    }

    /// [`read_rest`](Self::read_rest) with the kernel copying straight into `out`.
    fn read_straight(&mut self, out: &mut [u8], mut got: usize) -> io::Result<bool> {
        while got < out.len() {
            let n = blocking_read(self.fd.as_fd(), || {
                rustix::io::read(self.fd.as_fd(), &mut out[got..])
            })?;
            if !self.took(n) {
                return Ok(false);
            }
            got += n;
        }
        Ok(true)
    }

    /// Notes a read of `n` bytes made on the way to a message's end: `false` (and the stream
    /// ended) for none. It read exactly what was asked, so more may be there.
    fn took(&mut self, n: usize) -> bool {
        if n == 0 {
            self.eof = true;
            return false;
        }
        self.drained = false;
        true
    }

    /// [`read_rest`](Self::read_rest) through the reader's own buffer: each read of up to
    /// [`BOUNCE_CHUNK`] bytes lands half a page from where it is then copied to in `out`, and
    /// is copied there while it is still in the cache. Straight into `out` instead when that
    /// buffer holds bytes (the message's went first; any left are the next frames') or no
    /// memory can be found for it: `out` has room for the message either way.
    fn read_bounced(&mut self, out: &mut [u8], mut got: usize) -> io::Result<bool> {
        let need = BOUNCE_CHUNK + PAGE_SPAN;
        if !self.buf.is_empty() {
            return self.read_straight(out, got);
        }
        if self.buf.capacity() < need {
            let mut bounce = Vec::new();
            if bounce.try_reserve_exact(need).is_err() {
                return self.read_straight(out, got);
            }
            self.buf = bounce;
        }
        while got < out.len() {
            let dest = &mut out[got..];
            let ask = dest.len().min(BOUNCE_CHUNK);
            let off = (dest.as_ptr() as usize + PAGE_SPAN / 2)
                .wrapping_sub(self.buf.as_ptr() as usize)
                % PAGE_SPAN;
            let bounce = &mut self.buf.spare_capacity_mut()[off..off + ask];
            let n = blocking_read(self.fd.as_fd(), || {
                let (read, _) = rustix::io::read(self.fd.as_fd(), &mut *bounce)?;
                dest[..read.len()].copy_from_slice(read);
                Ok(read.len())
            })?;
            if !self.took(n) {
                return Ok(false);
            }
            got += n;
        }
        Ok(true)
    }
}

/// Runs `read` on `fd` until it is neither interrupted nor finds a non-blocking socket empty,
/// which it waits for (these reads have no deadline).
fn blocking_read<T>(
    fd: BorrowedFd<'_>,
    mut read: impl FnMut() -> rustix::io::Result<T>,
) -> io::Result<T> {
    loop {
        match read() {
            Ok(v) => return Ok(v),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                wait(fd, PollFlags::IN, None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The span within which the CPU's copy compares source and destination addresses: the low 12
/// bits, 4 KiB (x86-64's page size too), whatever the system's page size.
const PAGE_SPAN: usize = 4096;

/// The most a bounced read asks for: it stays in the cache until it is copied out.
const BOUNCE_CHUNK: usize = 256 * 1024;

impl StreamReader {
    /// Whether the buffer may leave the reader (see `StreamReceiver::recv_lent`): it is
    /// charged to no budget.
    pub(crate) fn unbudgeted(&self) -> bool {
        self.budget.is_none()
    }
}

/// Where in `out` a message of `len` bytes read straight from a socket starts, with `out`
/// sized to hold it there (its bytes are then the read's to write): at 0, or with `mid_page`
/// wherever puts it half a page away from a page boundary.
///
/// The kernel copies a large Unix-stream message out of page-sized buffers, and the CPU's copy
/// (`rep movsb`) ran 20–40% slower on the project's reference machine (AMD EPYC) when the
/// destination lay 1–15 bytes past the source's offset within a page: a receive buffer that
/// happened to start at such an offset made every large message slow for the life of the
/// buffer. Those pages begin near the frame's own header, so a message that starts half a
/// page from a page boundary keeps clear of that window. Used where the message is lent out
/// of our own buffer; a caller's buffer takes the message at 0.
///
/// A buffer the allocator refuses is an `OutOfMemory` error naming the bytes ([`no_room`]),
/// never an abort: `len` is a length a peer announced.
pub(crate) fn place(out: &mut Vec<u8>, len: usize, mid_page: bool) -> io::Result<usize> {
    // The span within which the copy compares addresses: the low 12 bits, 4 KiB (x86-64's
    // page size too), whatever the system's page size.
    let page = MID_PAGE_SLACK + 1;
    let need = if mid_page {
        len.saturating_add(MID_PAGE_SLACK)
    } else {
        len
    };
    if out.capacity() < need {
        // Its bytes are not wanted: do not copy them into the new buffer.
        out.clear();
        resize_zeroed(out, need).map_err(|_| no_room(len))?;
    }
    let at = if mid_page {
        (page + page / 2 - out.as_ptr() as usize % page) % page
    } else {
        0
    };
    resize_zeroed(out, at + len).map_err(|_| no_room(len))?;
    Ok(at)
}

/// The error for the `bytes` a message needs (its frame's, or its own) when no buffer could
/// be allocated for them.
pub(crate) fn no_room(bytes: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "no memory for the {bytes} bytes of a message: this process's address space (RLIMIT_AS, ulimit -v) or the system's memory has no room for them; raise the limit, or lower the receiver's max_message"
        ),
    )
}

/// How many bytes more than the message [`place`] may ask of a buffer to put it half a page
/// in: a buffer kept for messages up to some size must allow for them.
pub(crate) const MID_PAGE_SLACK: usize = 4096 - 1;

/// Sets `out`'s length to `len`, keeping its bytes, for reads to fill the rest. A buffer
/// too small is replaced by freshly zeroed memory (`calloc`, whose large blocks are pages
/// mapped on first touch) rather than grown and written with zeros: the pages are then
/// touched only as bytes arrive, so a length prefix alone, from a peer that sends nothing
/// after it, costs address space and not memory, as on the buffered path. A reused buffer
/// large enough has only the bytes past its old length zeroed. `OutOfMemory` (and `out`
/// unchanged) when the allocator refuses the new buffer.
pub(crate) fn resize_zeroed(out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    if out.capacity() < len {
        let mut fresh = procom_sys::zeroed::try_zeroed(len)?;
        let keep = out.len().min(len);
        fresh[..keep].copy_from_slice(&out[..keep]);
        *out = fresh;
    } else {
        out.resize(len, 0);
    }
    Ok(())
}

/// The smallest message read straight into the caller's buffer (see
/// [`StreamReader::read_exact_into`]): below it, one read into our buffer and a copy out
/// is cheaper than a second system call.
const DIRECT_MIN: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;

    /// Half a page in: the message starts 2 KiB past a 4 KiB boundary, stays there while the
    /// buffer is reused for messages of the same size or smaller, and a buffer that must grow
    /// is replaced, with the message placed again.
    #[test]
    fn place_puts_a_lent_message_half_a_page_in() {
        let mut buf = Vec::new();
        for len in [40_000, 40_000, 1000, 1 << 20] {
            let at = place(&mut buf, len, true).unwrap();
            assert_eq!(buf.len(), at + len);
            assert_eq!(
                (buf.as_ptr() as usize + at) % 4096,
                2048,
                "{len} bytes at {at}"
            );
        }
    }

    /// A TCP connection over loopback: the writing end, and a reader of the other.
    fn tcp_reader() -> (std::net::TcpStream, StreamReader) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let w = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let r = StreamReader::new(OwnedFd::from(listener.accept().unwrap().0));
        (w, r)
    }

    /// Where in a buffer at address `base` a message lies `skew` bytes past the alignment a
    /// TCP payload has in the kernel's pages.
    fn skewed_by(base: usize, skew: usize) -> usize {
        (crate::framing::HEADER_LEN + skew + PAGE_SPAN - base % PAGE_SPAN) % PAGE_SPAN
    }

    /// Over TCP, a message whose destination lies a few bytes past the alignment its bytes
    /// have in the kernel's pages goes through the bounce buffer, a chunk at a time, and one
    /// that keeps that alignment is read straight: both arrive whole, and the bytes after them
    /// stay in the stream. A Unix socket is never bounced.
    #[test]
    fn tcp_bounces_a_skewed_destination_and_reads_others_straight() {
        use std::io::Write;
        const LEN: usize = BOUNCE_CHUNK * 2 + 12_345;
        let msg: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4099) as u8).collect();
        let (mut w, mut r) = tcp_reader();
        let sent = msg.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.write_all(&sent).unwrap();
            w.write_all(b"next").unwrap();
        });
        let mut out = vec![0u8; LEN + PAGE_SPAN];
        let base = out.as_ptr() as usize;
        for skew in [12, 0] {
            let at = skewed_by(base, skew);
            let out = &mut out[..at + LEN];
            assert_eq!(r.skewed(out, at), skew != 0, "{skew} bytes past");
            out.fill(0);
            assert!(r.read_rest(out, at, at).unwrap());
            assert!(out[at..] == msg[..], "{skew} bytes past: wrong bytes");
        }
        writer.join().unwrap();
        while r.pending().len() < 4 {
            assert!(r.fill(4, None).unwrap());
        }
        assert_eq!(r.pending(), b"next");

        let (_w, u) = std::os::unix::net::UnixStream::pair().unwrap();
        let u = StreamReader::new(OwnedFd::from(u));
        assert!(!u.skewed(&out, skewed_by(base, 12)));
    }

    /// A message already in the reader's buffer whole, with the next frame's bytes after it,
    /// is copied out to a skewed destination and the next frame's bytes stay.
    #[test]
    fn a_buffered_message_leaves_the_next_frames_bytes_however_skewed() {
        use std::io::Write;
        const LEN: usize = 40_000;
        let msg: Vec<u8> = (0..LEN).map(|i| (i * 13 + i / 4099) as u8).collect();
        let (mut w, mut r) = tcp_reader();
        w.write_all(&[&msg[..], b"tail"].concat()).unwrap();
        while r.pending().len() < LEN + 4 {
            assert!(r.fill(LEN + 4, None).unwrap());
        }
        let mut out = vec![0u8; LEN + PAGE_SPAN];
        let at = skewed_by(out.as_ptr() as usize, 12);
        let out = &mut out[..at + LEN];
        assert!(r.skewed(out, at));
        assert!(r.read_exact_into(out, at).unwrap());
        assert!(out[at..] == msg[..], "wrong bytes");
        assert_eq!(r.pending(), b"tail");
    }

    /// A caller's buffer takes the message at 0, sized to it, keeping nothing it must not.
    #[test]
    fn place_puts_a_callers_message_at_the_start() {
        let mut buf = vec![7u8; 10];
        assert_eq!(place(&mut buf, 100, false).unwrap(), 0);
        assert_eq!(buf.len(), 100);
        assert_eq!(place(&mut buf, 5, false).unwrap(), 0);
        assert_eq!(buf.len(), 5);
    }
}
