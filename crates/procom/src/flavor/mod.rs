//! Flavors: how each mechanism carries a channel's messages, behind one internal interface.
//!
//! [`Sender`](crate::Sender) and [`Receiver`](crate::Receiver) only dispatch: every send and
//! receive goes to a flavor through [`SendFlavor`] and [`RecvFlavor`], with one [`Wait`] value
//! for the blocking, `try_`, `_timeout` and `_deadline` forms alike. A flavor adapts a mechanism
//! (the kernel object, in its own module: `mq`, `msg`, `shm`, `net`, ...) to the channel; the
//! mechanism modules know nothing of channels.
//!
//! | flavor | endpoints |
//! |---|---|
//! | [`stream`] | `-`, `fifo:`, `unix:`, `tcp:` and any byte-stream descriptor |
//! | [`listen`] | a `tcp:`/`unix:`/`unixpacket:` receiver that accepts its one peer on the first receive |
//! | [`packet`] | `unixpacket:` (connected sequenced-packet sockets) |
//! | [`dgram`] | `udp:`, `unixgram:` |
//! | [`mq`] | `mq:` (POSIX queues) |
//! | [`msg`] | `msg:` (System V queues) |
//! | [`shm`] | `shm:` (the ring in shared memory) |
//!
//! Adding a flavor: one file here implementing [`SendFlavor`] and/or [`RecvFlavor`] (only
//! `send`, `recv_into` and the descriptor are required; the in-place forms have defaults),
//! one variant in `SenderFlavor`/`ReceiverFlavor` in `channel.rs` and one line in its
//! `dispatch!`, and the endpoint's arm in the constructors.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use crate::cleanup::Cleanup;
use crate::error::Error;
use crate::flavor::dgram::DatagramStats;
pub(crate) use crate::wait::Wait;

pub(crate) mod dgram;
pub(crate) mod listen;
pub(crate) mod mq;
pub(crate) mod msg;
pub(crate) mod packet;
pub(crate) mod shm;
pub(crate) mod stream;
pub(crate) mod streamed;

/// What a mechanism carries with a message besides its bytes, for
/// [`Receiver::recv_meta`](crate::Receiver::recv_meta). A field is `None` where the
/// mechanism has no such thing or does not know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageMeta {
    /// The message's priority (`mq:`, POSIX queues).
    pub priority: Option<u32>,
    /// The message's type (`msg:`, System V queues).
    pub mtype: Option<i64>,
    /// Who sent the datagram (`udp:`; `unixgram:` when the sender's socket has an address —
    /// procom's senders do not bind one), as an endpoint to send a reply to.
    pub from: Option<crate::endpoint::Endpoint>,
    /// The sequence number in procom's UDP header (`udp:` with length framing).
    pub seq: Option<u64>,
    /// With `seq`: how many of this sender's sequence numbers were skipped just before this
    /// datagram (0 when none; `None` for a sender's first datagram, whose predecessors this
    /// receiver never knew). A late or repeated datagram skips none.
    pub gap: Option<u64>,
}

/// The sending half of a flavor. The channel has checked the message against its size limit.
pub(crate) trait SendFlavor {
    /// Sends one whole message, or nothing.
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error>;

    /// Sends a `len`-byte message that `fill` writes; by default into a buffer that is then
    /// sent (a flavor that can write in place overrides it).
    fn send_with(&mut self, len: usize, fill: &mut dyn FnMut(&[AtomicU8])) -> Result<(), Error> {
        let mut buf = vec![0u8; len];
        fill(procom_sys::mapping::atomic_bytes(&mut buf));
        self.send(&buf, Wait::Forever)
    }

    /// Starts sending one message without waiting (the async face): `Ok` once the channel
    /// has taken all of it, `Full` if it took none. A byte stream that takes only part of the
    /// frame keeps the rest and writes it before anything else ([`SendFlavor::flush`]).
    #[cfg(feature = "tokio")]
    fn start(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.send(msg, Wait::Never)
    }

    /// Writes what is left of a frame [`SendFlavor::start`] began, waiting as `wait` says.
    #[cfg(feature = "tokio")]
    fn flush(&mut self, _wait: Wait) -> Result<(), Error> {
        Ok(())
    }

    /// Whether part of a started frame is still to be written.
    #[cfg(feature = "tokio")]
    fn has_unsent(&self) -> bool {
        false
    }

    /// The descriptor to poll for room, where the mechanism has one.
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Gives the flavor up for its descriptor, keeping any object it owned.
    fn into_fd(self) -> Option<OwnedFd>
    where
        Self: Sized,
    {
        None
    }

    /// Follows a change of the channel's size limit, where the flavor applies it too.
    fn set_max(&mut self, _max: usize) {}
}

/// The receiving half of a flavor.
pub(crate) trait RecvFlavor {
    /// Receives one whole message into `buf`, replacing what it held; returns its length.
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error>;

    /// Receives one whole message into a new buffer.
    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        self.recv_into(wait, &mut buf)?;
        Ok(buf)
    }

    /// Receives one whole message with what the mechanism carries beside it (by default
    /// nothing).
    fn recv_meta(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        Ok((self.recv(wait)?, MessageMeta::default()))
    }

    /// Hands the next message to `f` as atomic bytes: in place where the flavor can lend them
    /// (shared memory, a stream's buffer), from a received copy otherwise.
    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        let mut m = self.recv(wait)?;
        Ok(f(procom_sys::mapping::atomic_bytes(&mut m)))
    }

    /// Hands the next message to `f` as plain bytes (decoders): in place where the flavor owns
    /// the buffer, from a received copy otherwise.
    fn recv_bytes<T>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> T) -> Result<T, Error> {
        let m = self.recv(wait)?;
        Ok(f(&m))
    }

    /// Receives the next message and lends it until the next receive: by default received
    /// into `spare`; a flavor that keeps the whole message in its own buffer lends it from
    /// there.
    fn recv_lent<'a>(&'a mut self, wait: Wait, spare: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let n = self.recv_into(wait, spare)?;
        Ok(&spare[..n])
    }

    /// The descriptor to poll for messages, where the mechanism has one.
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Whether the flavor holds received bytes no message has claimed yet (then a receive
    /// may succeed without the descriptor becoming readable).
    #[cfg(feature = "tokio")]
    fn has_buffered(&self) -> bool {
        false
    }

    /// Whether the last receive emptied what the kernel held for this receiver (a stream's
    /// short read): its readiness may be cleared without another read that finds nothing.
    #[cfg(feature = "tokio")]
    fn drained(&self) -> bool {
        false
    }

    /// Gives the flavor up for its descriptor, keeping any object it owned.
    fn into_fd(self) -> Option<OwnedFd>
    where
        Self: Sized,
    {
        None
    }

    /// The name of what the flavor created, for removal from another thread.
    fn cleanup(&self) -> Option<Cleanup> {
        None
    }

    /// What a datagram flavor counted.
    fn datagram_stats(&self) -> Option<DatagramStats> {
        None
    }
}

/// A message a flavor received whole that is over the receiver's limit: it is consumed (the
/// kernel already handed it over) and reported, never returned.
pub(crate) fn check_received(len: usize, max: usize) -> Result<(), Error> {
    if len > max {
        return Err(Error::too_large(len as u64, max as u64));
    }
    Ok(())
}
