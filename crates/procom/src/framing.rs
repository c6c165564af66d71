//! Message boundaries over byte streams: the one place the wire format is defined.
//!
//! Pipes, FIFOs, Unix stream sockets and TCP carry bytes, not messages. procom puts nothing on
//! such a stream but the user's bytes and, when message semantics are wanted, one of these
//! framings:
//!
//! - [`Framing::Length`] (the library's default): every message is a 4-byte **big-endian**
//!   unsigned length `N`, followed by exactly `N` bytes of payload. No magic, no checksum, no
//!   padding. `N = 0` is a valid empty message. A reader refuses a prefix above its maximum
//!   message size ([`DEFAULT_MAX_MESSAGE`], 64 MiB, unless configured) with
//!   [`ErrorKind::TooLarge`] *before* allocating anything, and a stream that ends inside a
//!   frame is [`ErrorKind::Malformed`]: a partial message is never delivered as if whole.
//!   A writer refuses a message above its maximum in the same way, and messages above
//!   `u32::MAX` bytes cannot be framed at all. In Python, a frame is
//!   `struct.pack(">I", len(m)) + m`.
//! - [`Framing::Lines`] (the CLI's default, for `cat`, `echo` and friends): every message is
//!   followed by `\n`; a message may not contain `\n`. A stream that ends after bytes with no
//!   `\n` ended inside a line (its writer may have been cut off): that is
//!   [`ErrorKind::Malformed`], never a message, and the error hands the bytes back
//!   ([`Error::fragment`]). A line longer than the maximum is `TooLarge`.
//! - [`Framing::Raw`]: no boundaries at all; a receive returns whatever bytes are available.
//!
//! Writes of a whole frame go out in one `writev`-style call, so on a pipe or FIFO a frame of
//! at most `PIPE_BUF` (4096) bytes, header included, is atomic even with several writers.
//!
//! [`ErrorKind::TooLarge`]: crate::ErrorKind::TooLarge
//! [`ErrorKind::Malformed`]: crate::ErrorKind::Malformed

use crate::error::{Error, ErrorKind};

/// The default maximum message size: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;
/// Bytes in a [`Framing::Length`] header.
pub const HEADER_LEN: usize = 4;

/// How messages are delimited on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Framing {
    /// A 4-byte big-endian length, then the payload.
    #[default]
    Length,
    /// Each message followed by a newline. A stream that ends inside a line (bytes after the
    /// last newline: a writer cut off, or `printf abc` without one) yields no message for
    /// them: the receive fails with [`ErrorKind::Malformed`], and [`Error::fragment`] hands
    /// the bytes back.
    Lines,
    /// No boundaries.
    Raw,
}

/// Where the next message stands in a buffer, as far as the buffer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: its payload is `buf[start..end]`, and `consumed` bytes (framing
    /// included) can be dropped from the front of the buffer.
    Complete {
        /// First byte of the payload.
        start: usize,
        /// One past the last byte of the payload.
        end: usize,
        /// Bytes the frame occupies, framing included.
        consumed: usize,
    },
    /// The buffer holds only part of a message; when the whole frame's length is known it is
    /// given, so the reader can size its buffer exactly.
    Incomplete {
        /// Total bytes of the frame, framing included, once the header has been seen.
        frame_len: Option<usize>,
    },
}

/// Finds the first message in `buf`, checking every length against `max` before the caller
/// allocates for it. Pure: no I/O, so it can be fuzzed.
pub fn decode(buf: &[u8], framing: Framing, max: usize) -> Result<Frame, Error> {
    match framing {
        Framing::Length => {
            let Some(header) = buf.get(..HEADER_LEN) else {
                return Ok(Frame::Incomplete { frame_len: None });
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > max {
                return Err(Error::too_large(len as u64, max as u64).detail(format!(
                    "a length prefix announces a {len}-byte message, over the {max}-byte limit (is the peer sending length-framed messages?)"
                )));
            }
            let frame_len = HEADER_LEN + len;
            if buf.len() >= frame_len {
                Ok(Frame::Complete {
                    start: HEADER_LEN,
                    end: frame_len,
                    consumed: frame_len,
                })
            } else {
                Ok(Frame::Incomplete {
                    frame_len: Some(frame_len),
                })
            }
        }
        Framing::Lines => match buf.iter().position(|b| *b == b'\n') {
            Some(nl) if nl > max => Err(Error::too_large(nl as u64, max as u64)
                .detail(format!("a {nl}-byte line is over the {max}-byte limit"))),
            Some(nl) => Ok(Frame::Complete {
                start: 0,
                end: nl,
                consumed: nl + 1,
            }),
            None if buf.len() > max => Err(Error::too_large(buf.len() as u64, max as u64)
                .detail(format!("a line of more than {max} bytes is over the limit"))),
            None => Ok(Frame::Incomplete { frame_len: None }),
        },
        Framing::Raw if buf.is_empty() => Ok(Frame::Incomplete { frame_len: None }),
        Framing::Raw if max == 0 => Err(Error::too_large(buf.len() as u64, 0)),
        Framing::Raw => {
            let end = buf.len().min(max);
            Ok(Frame::Complete {
                start: 0,
                end,
                consumed: end,
            })
        }
    }
}

/// What a stream that ended with `leftover` bytes of an unfinished frame yields.
pub fn at_end_of_stream(
    leftover: &[u8],
    framing: Framing,
) -> Result<Option<(usize, usize)>, Error> {
    match framing {
        _ if leftover.is_empty() => Ok(None),
        Framing::Raw => Ok(Some((0, leftover.len()))),
        Framing::Lines => Err(Error::new(ErrorKind::Malformed)
            .detail(format!(
                "the stream ended inside a line, {} bytes after the last newline (the writer may have been cut off); the partial line is not a message",
                leftover.len()
            ))
            .with_fragment(leftover)),
        Framing::Length => {
            let what = match decode(leftover, framing, usize::MAX) {
                Ok(Frame::Incomplete {
                    frame_len: Some(total),
                }) => format!(
                    "the stream ended {} bytes into a {}-byte message; the partial message was discarded",
                    leftover.len() - HEADER_LEN,
                    total - HEADER_LEN
                ),
                _ => format!(
                    "the stream ended inside a {}-byte length prefix ({} bytes of it arrived)",
                    HEADER_LEN,
                    leftover.len()
                ),
            };
            Err(Error::new(ErrorKind::Malformed).detail(what))
        }
    }
}

/// The framing a writer puts before `len` payload bytes (empty for lines and raw), after
/// checking the size against `max`.
pub fn header(len: usize, framing: Framing, max: usize) -> Result<[u8; HEADER_LEN], Error> {
    if len > max {
        return Err(Error::too_large(len as u64, max as u64));
    }
    match framing {
        Framing::Length => {
            let n =
                u32::try_from(len).map_err(|_| Error::too_large(len as u64, u32::MAX as u64))?;
            Ok(n.to_be_bytes())
        }
        Framing::Lines | Framing::Raw => Ok([0; HEADER_LEN]),
    }
}

/// Bytes of framing before the payload.
pub fn header_len(framing: Framing) -> usize {
    match framing {
        Framing::Length => HEADER_LEN,
        Framing::Lines | Framing::Raw => 0,
    }
}

/// Bytes of framing after the payload.
pub fn trailer(framing: Framing) -> &'static [u8] {
    match framing {
        Framing::Lines => b"\n",
        Framing::Length | Framing::Raw => b"",
    }
}

/// Checks that `payload` can be framed: lines may not contain a newline.
pub fn check_payload(payload: &[u8], framing: Framing) -> Result<(), Error> {
    if framing == Framing::Lines && payload.contains(&b'\n') {
        return Err(Error::new(ErrorKind::InvalidInput).detail(
            "the message contains a newline, so it cannot be sent as one line; use length framing (--framed) to send it whole",
        ));
    }
    Ok(())
}

/// The decoder's invariants, checked on arbitrary input: shared by the fuzz target
/// (`fuzz/fuzz_targets/framing_decode.rs`) and the corpus replay in `cargo test`.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn check_decoder(data: &[u8]) {
    for framing in [Framing::Length, Framing::Lines, Framing::Raw] {
        for max in [0usize, 7, 4096, DEFAULT_MAX_MESSAGE] {
            let mut rest = data;
            // Decode frame after frame, as a receiver does, until the input runs out.
            loop {
                match decode(rest, framing, max) {
                    Ok(Frame::Complete {
                        start,
                        end,
                        consumed,
                    }) => {
                        assert!(start <= end && end <= consumed && consumed <= rest.len());
                        assert!(end - start <= max, "a message over the limit was accepted");
                        assert!(
                            consumed > 0,
                            "a frame that consumes nothing would repeat forever"
                        );
                        if framing == Framing::Length {
                            let h = header(end - start, framing, usize::MAX)
                                .expect("a decoded length re-encodes");
                            assert_eq!(&rest[..HEADER_LEN], &h[..]);
                        }
                        rest = &rest[consumed..];
                    }
                    Ok(Frame::Incomplete { frame_len }) => {
                        if let Some(total) = frame_len {
                            assert!(total > rest.len() && total - HEADER_LEN <= max);
                        }
                        let _ = at_end_of_stream(rest, framing);
                        break;
                    }
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::TooLarge));
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = header(payload.len(), Framing::Length, DEFAULT_MAX_MESSAGE)
            .unwrap()
            .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn length_frames_decode_exactly() {
        let mut buf = frame(b"hello");
        buf.extend(frame(b""));
        let Frame::Complete {
            start,
            end,
            consumed,
        } = decode(&buf, Framing::Length, 100).unwrap()
        else {
            panic!()
        };
        assert_eq!(&buf[start..end], b"hello");
        let rest = &buf[consumed..];
        assert_eq!(
            decode(rest, Framing::Length, 100).unwrap(),
            Frame::Complete {
                start: 4,
                end: 4,
                consumed: 4
            }
        );
        assert_eq!(
            decode(&buf[..6], Framing::Length, 100).unwrap(),
            Frame::Incomplete { frame_len: Some(9) }
        );
        assert_eq!(
            decode(&buf[..3], Framing::Length, 100).unwrap(),
            Frame::Incomplete { frame_len: None }
        );
    }

    #[test]
    fn oversize_prefix_is_refused_before_allocation() {
        let e = decode(
            &[0xff, 0xff, 0xff, 0xff],
            Framing::Length,
            DEFAULT_MAX_MESSAGE,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(e.size(), Some(u32::MAX as u64));
        // Text sent to a framed reader reads as an absurd length, not as a message.
        assert_eq!(
            decode(b"hello\n", Framing::Length, DEFAULT_MAX_MESSAGE)
                .unwrap_err()
                .kind(),
            ErrorKind::TooLarge
        );
        assert_eq!(
            header(11, Framing::Length, 10).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn truncated_frames_are_malformed_not_delivered() {
        let buf = frame(b"hello");
        let e = at_end_of_stream(&buf[..7], Framing::Length).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert!(
            e.to_string().contains("3 bytes into a 5-byte message"),
            "{e}"
        );
        assert_eq!(
            at_end_of_stream(&buf[..2], Framing::Length)
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );
        assert_eq!(at_end_of_stream(b"", Framing::Length).unwrap(), None);
        // A line the stream ended inside is not a message either; its bytes come back.
        let e = at_end_of_stream(b"tail", Framing::Lines).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert_eq!(e.fragment(), Some(&b"tail"[..]));
        assert!(
            e.to_string().contains("4 bytes after the last newline"),
            "{e}"
        );
        assert_eq!(at_end_of_stream(b"", Framing::Lines).unwrap(), None);
        assert_eq!(
            at_end_of_stream(b"tail", Framing::Raw).unwrap(),
            Some((0, 4))
        );
    }

    #[test]
    fn lines() {
        assert_eq!(
            decode(b"ab\ncd", Framing::Lines, 10).unwrap(),
            Frame::Complete {
                start: 0,
                end: 2,
                consumed: 3
            }
        );
        assert_eq!(
            decode(b"abcd", Framing::Lines, 10).unwrap(),
            Frame::Incomplete { frame_len: None }
        );
        assert_eq!(
            decode(b"abcdefghijk", Framing::Lines, 10)
                .unwrap_err()
                .kind(),
            ErrorKind::TooLarge
        );
        assert!(check_payload(b"a\nb", Framing::Lines).is_err());
        assert!(check_payload(b"a\nb", Framing::Length).is_ok());
    }
}
