//! The piece-by-piece send ([`Pieces`]): a message whose encoder hands its bytes over as it
//! makes them. On a length-prefixed byte stream ([`StreamSender::send_streamed`]) small pieces
//! are gathered and large ones written to the stream from where they lie; in a shared-memory
//! ring each piece is copied straight to its place in the reserved record. Either way a large
//! payload is copied once, by the kernel or into the ring. (Typed channels send large values
//! this way.)

use crate::error::{Error, ErrorKind};
use crate::flavor::Wait;
use crate::flavor::stream::{StreamSender, write_stopped};
use crate::framing::{self, Framing};

/// A piece of a streamed message at least this large goes to the stream where it lies (with
/// the bytes gathered before it, in one `writev`); smaller ones are gathered.
const STREAMED_PIECE: usize = 4096;

/// The most bytes a streamed message gathers before it writes them.
const STREAMED_GATHER: usize = 64 << 10;

/// Where a piece-by-piece send's encoder puts a message's bytes, in order.
pub(crate) trait Pieces {
    /// Adds the next bytes of the message. Fails, taking nothing of `bytes`, when they would
    /// run past the announced length.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error>;
}

/// Where [`StreamSender::send_streamed`]'s encoder puts a message's bytes, in order
/// ([`Streamer::put`]).
pub(crate) struct Streamer<'s> {
    sender: &'s mut StreamSender,
    deadline: Option<std::time::Instant>,
    is_try: bool,
    /// The payload's length, announced in the frame's header.
    len: usize,
    /// Payload bytes put so far.
    put: usize,
    /// Bytes of the frame (header included) written to the stream so far.
    written: usize,
    /// A write failed: nothing more of the message is taken, even from an encoder that
    /// ignored the error and went on.
    failed: bool,
}

impl Pieces for Streamer<'_> {
    /// Adds the next bytes of the message: a large piece is written at once, straight from
    /// `bytes`, with what was gathered before it; a small one is gathered. Fails, writing
    /// nothing of `bytes`, when they would run past the announced length.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.failed {
            return Err(Error::new(ErrorKind::Io)
                .detail("a write of this message failed earlier; nothing more of it is sent"));
        }
        let after = self.put.saturating_add(bytes.len());
        if after > self.len {
            return Err(self.mismatch(after));
        }
        self.put = after;
        if bytes.len() >= STREAMED_PIECE {
            return self.write_gathered_and(bytes);
        }
        self.sender.unsent.extend_from_slice(bytes);
        if self.sender.unsent.len() >= STREAMED_GATHER {
            return self.write_gathered_and(&[]);
        }
        Ok(())
    }
}

impl Streamer<'_> {
    /// Writes the bytes gathered so far and then `piece`, the next bytes of the frame, in one
    /// `writev`, as the sender's wait says; the gathering buffer is left empty (and kept).
    /// (A failure is turned into the sender being poisoned by
    /// [`StreamSender::send_streamed`], once `written` shows part of the frame went out.)
    fn write_gathered_and(&mut self, piece: &[u8]) -> Result<(), Error> {
        let mut gathered = std::mem::take(&mut self.sender.unsent);
        let result = self.sender.w.write_all(&[&gathered, piece], self.deadline);
        let len = gathered.len() + piece.len();
        gathered.clear();
        self.sender.unsent = gathered;
        let total = self.len + framing::header_len(Framing::Length);
        match result {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(stop) => {
                self.written += stop.written;
                self.failed = true;
                Err(write_stopped(stop.error, self.written, total, self.is_try))
            }
        }
    }

    /// The error for an encoding that came out at `got` bytes instead of the announced
    /// length; the stream can no longer be framed once any of the message went out (the
    /// sender is poisoned by [`StreamSender::send_streamed`]).
    fn mismatch(&self, got: usize) -> Error {
        let mut why = mismatch_why(self.len, got);
        if self.written > 0 {
            why.push_str(
                "; part of the message was already written, so this sender can no longer be used and its receiver reports the message as malformed",
            );
        }
        Error::new(ErrorKind::InvalidInput).detail(why)
    }
}

/// Why a value that measured `len` bytes and encoded to `got` when sent was refused.
pub(crate) fn mismatch_why(len: usize, got: usize) -> String {
    format!(
        "the value encoded to {len} bytes when measured and to {}{got} bytes when sent (its Serialize is not deterministic)",
        if got > len { "at least " } else { "" },
    )
}

/// The refusal of a message piece by piece where the framing cannot carry one.
pub(crate) fn not_streamed() -> Error {
    Error::new(ErrorKind::InvalidInput).detail(
        "only a length-prefixed stream or a shared-memory ring carries a message piece by piece",
    )
}

impl StreamSender {
    /// Whether [`StreamSender::send_streamed`] can carry messages: a length prefix is the one
    /// framing whose header a sender can write before it has the payload.
    pub(crate) fn streams(&self) -> bool {
        self.framing == Framing::Length
    }

    /// Sends one length-prefixed message of `len` bytes that `encode` hands over piece by
    /// piece ([`Streamer::put`]), so that a large payload goes from where it lies to the
    /// stream without being copied into a buffer first. Waits, partial writes, a deadline
    /// passing mid-message (the sender is then poisoned) and the rest of a started frame are
    /// as for a whole message. `encode` must put exactly `len` bytes: if it puts another
    /// number, the send fails with [`ErrorKind::InvalidInput`]; nothing was written if the
    /// difference showed before the first write, otherwise the frame stays unfinished or
    /// holds a prefix of the bytes put, and the sender is poisoned.
    pub(crate) fn send_streamed(
        &mut self,
        len: usize,
        wait: Wait,
        encode: &mut dyn FnMut(&mut Streamer<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.poisoned {
            return self.send_framed(&[], wait); // says why it cannot
        }
        if !self.streams() {
            return Err(not_streamed());
        }
        self.finish_unsent(wait)?;
        let header = framing::header(len, self.framing, self.max)?;
        let deadline = self.frame_deadline(len + framing::header_len(self.framing), wait)?;
        // The rest of any started frame is written: its buffer gathers this frame's small
        // pieces, and is left empty again whatever happens.
        self.unsent.clear();
        self.unsent
            .extend_from_slice(&header[..framing::header_len(self.framing)]);
        let mut out = Streamer {
            sender: self,
            deadline,
            is_try: wait.is_try(),
            len,
            put: 0,
            written: 0,
            failed: false,
        };
        let result = encode(&mut out).and_then(|()| {
            if out.failed {
                return Err(Error::new(ErrorKind::Io).detail(
                    "a write of this message failed, and its encoder went on as if it had not",
                ));
            }
            if out.put != len {
                return Err(out.mismatch(out.put));
            }
            out.write_gathered_and(&[])
        });
        // However the encoder failed, a frame begun on the stream cannot be finished.
        if result.is_err() && out.written > 0 {
            self.poisoned = true;
        }
        self.unsent.clear();
        result
    }
}
