//! The byte-stream flavor: pipes, FIFOs, standard input and output, connected `unix:` and
//! `tcp:` sockets, and any byte-stream descriptor. Messages are framed on the stream
//! ([`Framing`]): a length prefix, lines, or raw bytes. A sender whose deadline passes part-way
//! through a message is poisoned (the stream can no longer be framed); a receiver lends each
//! message from its own buffer.

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
            owner: None,
        }
    }

    fn send_framed(&mut self, payload: &[u8], wait: Wait) -> Result<(), Error> {
        let (mut deadline, is_try) = (wait.deadline(), wait.is_try());
        if self.poisoned {
            return Err(Error::new(ErrorKind::Io).detail(
                "an earlier send stopped part-way through a message, so this stream can no longer carry whole messages; open it again",
            ));
        }
        framing::check_payload(payload, self.framing)?;
        let header = framing::header(payload.len(), self.framing, self.max)?;
        let parts: [&[u8]; 3] = [
            &header[..framing::header_len(self.framing)],
            payload,
            framing::trailer(self.framing),
        ];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.w.fit_pipe(total);
        if is_try && self.w.kind() == FdKind::Pipe {
            // Only start a message that can be finished: never leave half a frame behind.
            if let Some((free, cap)) = self.w.pipe_space() {
                if total <= cap {
                    if free < total {
                        return Err(Error::new(ErrorKind::Full));
                    }
                } else if free < cap {
                    return Err(Error::new(ErrorKind::Full));
                } else {
                    deadline = None; // larger than the pipe: once started, finish it
                }
            }
        }
        match self.w.write_all(&parts, deadline) {
            Ok(()) => Ok(()),
            Err(stop) => {
                if stop.written > 0 && stop.written < total {
                    self.poisoned = true;
                }
                match stop.error {
                    Some(e) => Err(Error::os("write to it", e)),
                    None if stop.written == 0 && is_try => Err(Error::new(ErrorKind::Full)),
                    None if stop.written == 0 => Err(Error::new(ErrorKind::Timeout).detail("the deadline passed before the peer made room for the message")),
                    None => Err(Error::new(ErrorKind::Timeout).detail(format!(
                        "the deadline passed after {} of the message's {total} bytes were written; this sender can no longer be used",
                        stop.written
                    ))),
                }
            }
        }
    }
}

impl SendFlavor for StreamSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_framed(msg, wait)
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
        }
    }

    /// Hands the next message to `f` in the reader's own buffer (no allocation, no copy).
    fn recv_in_place<T>(&mut self, wait: Wait, f: impl FnOnce(&mut [u8]) -> T) -> Result<T, Error> {
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
                }) => {
                    let out = f(&mut self.r.pending_mut()[start..end]);
                    self.r.consume(consumed);
                    return Ok(out);
                }
                Ok(Frame::Incomplete { frame_len }) => {
                    if self.r.eof {
                        let pending = self.r.pending().len();
                        let last = framing::at_end_of_stream(self.r.pending(), self.framing);
                        let out = match last {
                            Ok(Some((start, end))) => Ok(f(&mut self.r.pending_mut()[start..end])),
                            Ok(None) => Err(Error::new(ErrorKind::PeerGone)),
                            Err(e) => Err(e),
                        };
                        self.r.consume(pending);
                        return out;
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
    /// straight into `buf` instead of through the reader's buffer: one copy fewer. `None`
    /// when the next message is not such a one (the caller takes the usual path).
    fn recv_large_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<Option<usize>, Error> {
        if self.broken.is_some() || self.framing != Framing::Length || wait.is_try() {
            return Ok(None);
        }
        let header = framing::header_len(self.framing);
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
        self.r.consume(header);
        match self.r.read_exact_into(buf, len) {
            Ok(true) => Ok(Some(len)),
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
}

impl RecvFlavor for StreamReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        if let Some(n) = self.recv_large_into(wait, buf)? {
            return Ok(n);
        }
        self.recv_in_place(wait, |m| {
            buf.clear();
            buf.extend_from_slice(m);
            m.len()
        })
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_in_place(wait, |m| m.to_vec())
    }

    /// Lent from the reader's buffer: no allocation and no copy per message.
    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        self.recv_in_place(wait, |m| f(procom_sys::mapping::atomic_bytes(m)))
    }

    fn recv_bytes<T>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> T) -> Result<T, Error> {
        self.recv_in_place(wait, |m| f(m))
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.r.as_fd())
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
