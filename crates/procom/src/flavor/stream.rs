//! The byte-stream flavor: pipes, FIFOs, standard input and output, connected `unix:` and
//! `tcp:` sockets, and any byte-stream descriptor. Messages are framed on the stream
//! ([`Framing`]): a length prefix, lines, or raw bytes. A sender whose deadline passes part-way
//! through a message is poisoned (the stream can no longer be framed); a receiver lends each
//! message from its own buffer.

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use crate::cleanup::Cleanup;
use crate::error::{Error, ErrorKind};
use crate::fifo::Fifo;
use crate::flavor::{RecvFlavor, SendFlavor, Wait};
use crate::framing::{self, Frame, Framing};
use crate::stream::{FdKind, StreamReader, StreamWriter};

#[derive(Debug)]
pub(crate) struct StreamSender {
    pub(crate) w: StreamWriter,
    pub(crate) framing: Framing,
    pub(crate) max: usize,
    /// Set when a send stopped part-way through a message: the stream can no longer be framed.
    pub(crate) poisoned: bool,
    /// The rest of a frame that [`SendFlavor::start`] began and the stream had no room for:
    /// written before anything else, by the next send or [`SendFlavor::flush`].
    pub(crate) unsent: Vec<u8>,
    pub(crate) owner: Option<Fifo>,
}

impl StreamSender {
    /// Sends over `fd`, framed as `framing` says, messages of at most `max` bytes.
    pub(crate) fn new(fd: OwnedFd, framing: Framing, max: usize) -> StreamSender {
        StreamSender {
            w: StreamWriter::new(fd),
            framing,
            max,
            poisoned: false,
            unsent: Vec::new(),
            owner: None,
        }
    }

    /// Writes what is left of a started frame, waiting as `wait` says; `Full` (never) or
    /// `Timeout` when some is still left (kept for the next call).
    pub(crate) fn finish_unsent(&mut self, wait: Wait) -> Result<(), Error> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let result = self.w.write_all(&[&self.unsent], wait.deadline());
        let (written, error) = match result {
            Ok(()) => (self.unsent.len(), None),
            Err(stop) => (stop.written, Some(stop.error)),
        };
        self.unsent.drain(..written);
        match error {
            None => Ok(()),
            Some(Some(e)) => Err(Error::os("write to it", e)),
            Some(None) if wait.is_try() => Err(Error::new(ErrorKind::Full)),
            Some(None) => Err(Error::new(ErrorKind::Timeout).detail(format!(
                "the deadline passed with {} bytes of an earlier message still to write (they are written first by the next send)",
                self.unsent.len()
            ))),
        }
    }

    /// The frame of `payload`: header, payload and trailer.
    fn frame<'a>(&self, payload: &'a [u8], header: &'a [u8]) -> [&'a [u8]; 3] {
        [header, payload, framing::trailer(self.framing)]
    }

    pub(crate) fn send_framed(&mut self, payload: &[u8], wait: Wait) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::new(ErrorKind::Io).detail(
                "an earlier send stopped part-way through a message, so this stream can no longer carry whole messages; open it again",
            ));
        }
        framing::check_payload(payload, self.framing)?;
        // The rest of a frame started earlier goes first; it counts against the same wait.
        self.finish_unsent(wait)?;
        let header = framing::header(payload.len(), self.framing, self.max)?;
        let parts = self.frame(payload, &header[..framing::header_len(self.framing)]);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let deadline = self.frame_deadline(total, wait)?;
        match self.w.write_all(&parts, deadline) {
            Ok(()) => Ok(()),
            Err(stop) => {
                if stop.written > 0 && stop.written < total {
                    self.poisoned = true;
                }
                Err(write_stopped(
                    stop.error,
                    stop.written,
                    total,
                    wait.is_try(),
                ))
            }
        }
    }

    /// Readies the stream for a frame of `total` bytes and says by when to write it: `wait`'s
    /// deadline, except that a try on a pipe starts only a frame it can finish (`Full` if
    /// the pipe has no room for it now) and, for a frame larger than the pipe, once started
    /// finishes it without a deadline, so that no half frame is left behind.
    pub(crate) fn frame_deadline(
        &mut self,
        total: usize,
        wait: Wait,
    ) -> Result<Option<std::time::Instant>, Error> {
        self.w.fit_pipe(total);
        if wait.is_try()
            && self.w.kind() == FdKind::Pipe
            && let Some((free, cap)) = self.w.pipe_space()
        {
            if free < total.min(cap) {
                return Err(Error::new(ErrorKind::Full));
            }
            if total > cap {
                return Ok(None);
            }
        }
        Ok(wait.deadline())
    }
}

/// The error for a frame of `total` bytes whose writing stopped after `written` of them: an
/// OS error, or a deadline (`error` is `None`) that passed before anything was written (for a
/// try, `Full`) or part-way (the sender can no longer be used).
pub(crate) fn write_stopped(
    error: Option<std::io::Error>,
    written: usize,
    total: usize,
    is_try: bool,
) -> Error {
    match error {
        Some(e) => Error::os("write to it", e),
        None if written == 0 && is_try => Error::new(ErrorKind::Full),
        None if written == 0 => Error::new(ErrorKind::Timeout)
            .detail("the deadline passed before the peer made room for the message"),
        None => Error::new(ErrorKind::Timeout).detail(format!(
            "the deadline passed after {written} of the message's {total} bytes were written; this sender can no longer be used"
        )),
    }
}

impl SendFlavor for StreamSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_framed(msg, wait)
    }

    /// Writes what the stream takes now and keeps the rest of the frame in `unsent`: a frame
    /// is never left half-written, whoever stops waiting for it.
    #[cfg(feature = "tokio")]
    fn start(&mut self, msg: &[u8]) -> Result<(), Error> {
        if self.poisoned {
            return self.send_framed(msg, Wait::Never); // says why it cannot
        }
        framing::check_payload(msg, self.framing)?;
        self.finish_unsent(Wait::Never)?;
        let header = framing::header(msg.len(), self.framing, self.max)?;
        let parts = self.frame(msg, &header[..framing::header_len(self.framing)]);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.w.fit_pipe(total);
        match self.w.write_all(&parts, Some(std::time::Instant::now())) {
            Ok(()) => Ok(()),
            Err(crate::stream::WriteStop {
                written,
                error: Some(e),
            }) => {
                self.poisoned = written > 0;
                Err(Error::os("write to it", e))
            }
            Err(crate::stream::WriteStop { written: 0, .. }) => Err(Error::new(ErrorKind::Full)),
            Err(crate::stream::WriteStop { mut written, .. }) => {
                for p in parts {
                    let skip = written.min(p.len());
                    self.unsent.extend_from_slice(&p[skip..]);
                    written -= skip;
                }
                Ok(())
            }
        }
    }

    #[cfg(feature = "tokio")]
    fn flush(&mut self, wait: Wait) -> Result<(), Error> {
        self.finish_unsent(wait)
    }

    #[cfg(feature = "tokio")]
    fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.w.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        if let Some(owner) = self.owner {
            owner.keep();
        }
        Some(self.w.into_fd())
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
    }
}

#[derive(Debug)]
pub(crate) struct StreamReceiver {
    pub(crate) r: StreamReader,
    pub(crate) framing: Framing,
    pub(crate) max: usize,
    /// Set after a framing error: what was wrong, repeated to every later call.
    pub(crate) broken: Option<String>,
    pub(crate) owner: Option<Fifo>,
    /// Bytes at the front of the reader's buffer that hold a message lent by
    /// [`RecvFlavor::recv_lent`] on a budgeted reader: consumed by the next receive, so the
    /// view stays in memory the budget is charged for.
    lent: usize,
}

impl StreamReceiver {
    /// Receives from `fd`, framed as `framing` says, messages of at most `max` bytes, charging
    /// what it buffers to `budget` if there is one.
    pub(crate) fn new(
        fd: OwnedFd,
        framing: Framing,
        max: usize,
        budget: Option<crate::Budget>,
    ) -> StreamReceiver {
        StreamReceiver {
            r: StreamReader::new(fd).with_budget(budget),
            framing,
            max,
            broken: None,
            owner: None,
            lent: 0,
        }
    }

    /// Drops the message lent by the last receive, if it is still in the reader's buffer.
    fn settle(&mut self) {
        let lent = std::mem::take(&mut self.lent);
        if lent > 0 {
            self.r.consume(lent);
        }
    }

    /// Hands the next message to `f` in the reader's own buffer (no allocation, no copy).
    fn recv_in_place<T>(&mut self, wait: Wait, f: impl FnOnce(&mut [u8]) -> T) -> Result<T, Error> {
        self.recv_copied(wait, |m| Ok(f(m)))
    }

    /// Hands the next message to `f` in the reader's own buffer, as
    /// [`recv_in_place`](Self::recv_in_place); a message `f` fails on (no memory for its
    /// copy) stays there, whole, for the next receive.
    fn recv_copied<T>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&mut [u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (start, end, consumed) = self.next_frame(wait)?;
        let out = f(&mut self.r.pending_mut()[start..end])?;
        self.r.consume(consumed);
        Ok(out)
    }

    /// Reads until the reader's buffer holds the next whole message: its payload's range in
    /// [`StreamReader::pending`] and the bytes of the buffer it takes (for the caller to
    /// consume).
    fn next_frame(&mut self, wait: Wait) -> Result<(usize, usize, usize), Error> {
        self.settle();
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        if let Some(why) = &self.broken {
            return Err(Error::new(ErrorKind::Malformed)
                .detail(format!("the stream is no longer usable: {why}")));
        }
        loop {
            match framing::decode(self.r.pending(), self.framing, self.max) {
                Err(e) => {
                    self.broken = Some(e.to_string());
                    return Err(e);
                }
                Ok(Frame::Complete {
                    start,
                    end,
                    consumed,
                }) => return Ok((start, end, consumed)),
                Ok(Frame::Incomplete { frame_len }) => {
                    if self.r.eof {
                        let pending = self.r.pending().len();
                        match framing::at_end_of_stream(self.r.pending(), self.framing) {
                            Ok(Some((start, end))) => return Ok((start, end, pending)),
                            Ok(None) => {
                                self.r.consume(pending);
                                return Err(Error::new(ErrorKind::PeerGone));
                            }
                            Err(e) => {
                                self.r.consume(pending);
                                return Err(e);
                            }
                        }
                    }
                    let want = frame_len.unwrap_or(0);
                    self.r.make_room(want, deadline)?;
                    match self.r.fill(want, deadline) {
                        Ok(true) => {}
                        Ok(false) if is_try => return Err(Error::new(ErrorKind::Empty)),
                        Ok(false) => {
                            return Err(Error::new(ErrorKind::Timeout)
                                .detail("no whole message arrived before the deadline"));
                        }
                        Err(e) => return Err(Error::os("read from it", e)),
                    }
                }
            }
        }
    }
}

impl StreamReceiver {
    /// A large length-prefixed message, waited for without a deadline, read from the socket
    /// straight into `buf` instead of through the reader's buffer: one copy fewer. Where in
    /// `buf` it lies: from 0, or with `mid_page` where [`crate::stream::place`] puts it. `None`
    /// when the next message is not such a one (the caller takes the usual path).
    fn recv_large_into(
        &mut self,
        wait: Wait,
        buf: &mut Vec<u8>,
        mid_page: bool,
    ) -> Result<Option<Range<usize>>, Error> {
        if self.broken.is_some() || self.framing != Framing::Length || wait.is_try() {
            return Ok(None);
        }
        let header = framing::header_len(self.framing);
        if let Some(at) = self.recv_expected_into(wait, buf, mid_page)? {
            return Ok(Some(at..buf.len()));
        }
        let mut frame = framing::decode(self.r.pending(), self.framing, self.max);
        if matches!(frame, Ok(Frame::Incomplete { frame_len: None }))
            && self.r.blocks_plainly(wait.deadline())
        {
            // Not even the header yet: one read, as the usual path would make, brings it (and
            // whatever follows it that has arrived).
            match self.r.fill(header, None) {
                Ok(_) => frame = framing::decode(self.r.pending(), self.framing, self.max),
                Err(e) => return Err(Error::os("read from it", e)),
            }
        }
        let len = match frame {
            Ok(Frame::Incomplete {
                frame_len: Some(total),
            }) => total - header,
            _ => return Ok(None),
        };
        if !self.r.can_read_direct(len, wait.deadline()) {
            return Ok(None);
        }
        // Room first: a message no memory can be found for stays in the stream, whole.
        let at =
            crate::stream::place(buf, len, mid_page).map_err(|e| Error::os("read from it", e))?;
        self.r.consume(header);
        let read = self.r.read_exact_into(buf, at);
        self.end_of_message(read)?;
        self.r.expect = len;
        Ok(Some(at..at + len))
    }

    /// The outcome of reading the rest of a message that was begun: the stream is broken when
    /// it ended or failed part-way.
    fn end_of_message(&mut self, read: std::io::Result<bool>) -> Result<(), Error> {
        match read {
            Ok(true) => Ok(()),
            Ok(false) => {
                let why = "the stream ended in the middle of a message";
                self.broken = Some(why.to_string());
                Err(Error::new(ErrorKind::Malformed).detail(why))
            }
            Err(e) => {
                self.broken = Some(format!("a read failed in the middle of a message: {e}"));
                Err(Error::os("read from it", e))
            }
        }
    }

    /// After a large message read straight into the caller's buffer, the next one expected the
    /// same size: its header and payload come in one `readv`, the header into a small array
    /// and the payload straight into `buf` (placed as [`crate::stream::place`] says); bytes
    /// read past it (the next frames) are put back in front of the stream. Where the message
    /// starts in `buf` (it ends at `buf.len()`), or `None` (nothing consumed) when that cannot
    /// be done: nothing expected, bytes already buffered, a deadline or a budget, a header that
    /// did not come whole, no memory for a buffer of the size expected, a buffer whose place
    /// the kernel copies into slowly ([`StreamReader::skewed`]), or a frame the usual
    /// path must judge (an empty message, a bad length).
    fn recv_expected_into(
        &mut self,
        wait: Wait,
        buf: &mut Vec<u8>,
        mid_page: bool,
    ) -> Result<Option<usize>, Error> {
        let expect = self.r.expect;
        if expect == 0
            || !self.r.pending().is_empty()
            || !self.r.blocks_plainly(wait.deadline())
            || !self.r.can_read_direct(expect, wait.deadline())
        {
            return Ok(None);
        }
        let mut head = [0u8; framing::HEADER_LEN];
        let Ok(at) = crate::stream::place(buf, expect, mid_page) else {
            // No memory for the size only guessed: the usual path allocates for the length
            // the next message announces, whatever it is.
            self.r.expect = 0;
            return Ok(None);
        };
        if self.r.skewed(buf, at) {
            // Not straight into `buf`: the usual path bounces it.
            return Ok(None);
        }
        let got = match self.r.read_split(&mut head, buf, at) {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Error::os("read from it", e)),
        };
        let len = match framing::decode(&head, self.framing, self.max) {
            Ok(Frame::Incomplete {
                frame_len: Some(total),
            }) => total - head.len(),
            _ => {
                // The usual path decides, from the same bytes in the same order.
                self.put_back(&head, buf, at..at + got);
                return Ok(None);
            }
        };
        if got >= len {
            self.r.unread(&buf[at + len..at + got]);
            buf.truncate(at + len);
        } else {
            if crate::stream::resize_zeroed(buf, at + len).is_err() {
                // A larger message than expected, and no memory for it.
                self.put_back(&head, buf, at..at + got);
                return Err(Error::os("read from it", crate::stream::no_room(len)));
            }
            let read = self.r.read_rest(buf, at, at + got);
            self.end_of_message(read)?;
        }
        self.r.expect = if self.r.can_read_direct(len, None) {
            len
        } else {
            0
        };
        Ok(Some(at))
    }

    /// Puts a frame's `head` and the bytes of it read into `buf[body]` back in front of the
    /// stream, as they came, and expects nothing: the usual path takes them next.
    fn put_back(&mut self, head: &[u8], buf: &mut Vec<u8>, body: Range<usize>) {
        self.r.unread(head);
        self.r.unread(&buf[body]);
        buf.clear();
        self.r.expect = 0;
    }
}

impl StreamReceiver {
    /// The next message into `buf`: where it lies there (read straight into it, placed as
    /// `recv_large_into` says for `mid_page`, or copied to its start).
    fn recv_placed(
        &mut self,
        wait: Wait,
        buf: &mut Vec<u8>,
        mid_page: bool,
    ) -> Result<Range<usize>, Error> {
        self.settle();
        if let Some(m) = self.recv_large_into(wait, buf, mid_page)? {
            return Ok(m);
        }
        let n = self.recv_copied(wait, |m| {
            buf.clear();
            copy_out(buf, m, false)?;
            Ok(m.len())
        })?;
        // A large message that came whole through the buffer (sent before it was asked for)
        // keeps the expectation: the next one may be read straight into `buf`.
        self.r.expect = if self.r.can_read_direct(n, None) {
            n
        } else {
            0
        };
        Ok(0..n)
    }
}

/// Appends `m` to `out` (growing it exactly with `exact`, as `to_vec` does, or as
/// `extend_from_slice` does otherwise): `LimitReached` when no memory can be found for the
/// message's copy, whose size a peer chose, instead of an abort.
fn copy_out(out: &mut Vec<u8>, m: &[u8], exact: bool) -> Result<(), Error> {
    let grown = if exact {
        out.try_reserve_exact(m.len())
    } else {
        out.try_reserve(m.len())
    };
    grown.map_err(|_| Error::os("read from it", crate::stream::no_room(m.len())))?;
    out.extend_from_slice(m);
    Ok(())
}

impl RecvFlavor for StreamReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        self.recv_placed(wait, buf, false).map(|m| m.len())
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_copied(wait, |m| {
            let mut v = Vec::new();
            copy_out(&mut v, m, true)?;
            Ok(v)
        })
    }

    /// Lent from the reader's buffer: no allocation and no copy per message.
    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        self.recv_in_place(wait, |m| f(procom_sys::mapping::atomic_bytes(m)))
    }

    fn recv_bytes<T>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> T) -> Result<T, Error> {
        self.recv_in_place(wait, |m| f(m))
    }

    /// With a budget, lent where it lies in the reader's own buffer (charged to the budget)
    /// and consumed by the next receive. Without one, a large message is read straight into
    /// `spare`, half a page from a page boundary ([`crate::stream::place`]); one that is all
    /// the reader holds is lent by handing the reader's buffer over for `spare`'s (nothing
    /// copied); otherwise copied into `spare`.
    fn recv_lent<'a>(&'a mut self, wait: Wait, spare: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        self.settle();
        if !self.r.unbudgeted() {
            let (start, end, consumed) = self.next_frame(wait)?;
            self.lent = consumed;
            return Ok(&self.r.pending()[start..end]);
        }
        if let Some(m) = self.recv_large_into(wait, spare, true)? {
            return Ok(&spare[m]);
        }
        if self.broken.is_none() {
            let pending = self.r.pending();
            if let Ok(Frame::Complete {
                start,
                end,
                consumed,
            }) = framing::decode(pending, self.framing, self.max)
                && consumed == pending.len()
            {
                let at = self.r.start;
                std::mem::swap(&mut self.r.buf, spare);
                self.r.buf.clear();
                self.r.start = 0;
                return Ok(&spare[at + start..at + end]);
            }
        }
        let m = self.recv_placed(wait, spare, true)?;
        Ok(&spare[m])
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.r.as_fd())
    }

    #[cfg(feature = "tokio")]
    fn has_buffered(&self) -> bool {
        self.r.pending().len() > self.lent || self.r.eof
    }

    #[cfg(feature = "tokio")]
    fn drained(&self) -> bool {
        self.r.drained
    }

    fn into_fd(self) -> Option<OwnedFd> {
        if let Some(owner) = self.owner {
            owner.keep();
        }
        Some(self.r.into_fd())
    }

    fn cleanup(&self) -> Option<Cleanup> {
        self.owner.as_ref().and_then(Fifo::cleanup)
    }
}
