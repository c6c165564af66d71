//! [`Sender`]: the sending side, dispatching over its flavors with `dispatch_send!`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use super::{Options, ToEndpoint, stdio_fd};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, ObjectKind, SendError};
use crate::fifo::{self, Fifo};
use crate::flavor::dgram::{DgramSender, connect_dgram};
use crate::flavor::mq::MqSender;
use crate::flavor::msg::MsgSender;
use crate::flavor::packet::{PacketSender, is_packet_socket};
use crate::flavor::shm::ShmSender;
use crate::flavor::stream::StreamSender;
use crate::flavor::streamed::Pieces;
use crate::flavor::{SendFlavor, Wait};
use crate::kind::kind_of;
use crate::mq::Queue;
use crate::msg::MsgQueue;
use crate::net::{StreamListener, connect_stream};
use crate::stream::deadline_after;

/// The sending side of a channel.
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// // A receiver creates the endpoint, a sender connects to it (here a POSIX queue).
/// let name = format!("mq:/procom-doc-sender-{}", std::process::id());
/// let mut rx = procom::Receiver::bind(&name)?;
/// let mut tx = procom::Sender::connect(&name)?;
/// tx.send(b"job 1").map_err(|e| e.into_error())?;
/// assert_eq!(rx.recv()?, b"job 1");
/// assert_eq!(rx.try_recv().unwrap_err().kind(), procom::ErrorKind::Empty);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sender {
    endpoint: String,
    /// What kind of object `endpoint` is, for errors.
    kind: ObjectKind,
    /// The largest message sent: checked here, for every flavor, before anything is sent.
    max: usize,
    flavor: SenderFlavor,
}

#[derive(Debug)]
enum SenderFlavor {
    Stream(StreamSender),
    Shm(ShmSender),
    Mq(MqSender),
    Msg(MsgSender),
    Dgram(DgramSender),
    Packet(PacketSender),
}

impl Sender {
    fn new(ep: &Endpoint, opts: &Options, flavor: SenderFlavor) -> Sender {
        Sender::with_flavor(ep.to_string(), kind_of(ep), opts, flavor)
    }

    /// A sender over `flavor` for the object `endpoint` of `kind`.
    fn with_flavor(
        endpoint: String,
        kind: ObjectKind,
        opts: &Options,
        flavor: SenderFlavor,
    ) -> Sender {
        Sender {
            endpoint,
            kind,
            max: opts.max_message,
            flavor,
        }
    }

    /// The sending end of an anonymous shared-memory channel (see [`crate::shm::channel`]).
    pub(crate) fn shm_anonymous(tx: ShmSender, opts: &Options) -> Sender {
        Sender::with_flavor(
            crate::shm::ANONYMOUS.to_string(),
            ObjectKind::ShmChannel,
            opts,
            SenderFlavor::Shm(tx),
        )
    }

    /// Attaches the sending end of an anonymous shared-memory channel that was handed over
    /// as `fd` (the descriptor [`Sender::into_fd`] gave in another process, or this one; see
    /// [`crate::shm::channel`]). [`ErrorKind::WrongType`] if `fd` is not that end (the
    /// receiving end's descriptor, say); [`ErrorKind::AlreadyExists`] if a live process uses
    /// the end already; [`ErrorKind::PeerGone`] if the end was closed.
    /// Using the end takes a descriptor of its own (a private open file of the memfd, whose
    /// lock says which process uses the end): [`ErrorKind::LimitReached`] if the process has
    /// none left, with nothing taken. An end whose last user's private open file outlives it
    /// for a moment (a child that user's process was forking, until the child executes its
    /// program) is asked for again for up to a second before `AlreadyExists` says so.
    /// [`ErrorKind::Corrupted`] if its header holds what no procom process writes.
    ///
    /// Only a memfd sealed as [`crate::shm::channel`] seals it is taken up (anything else is
    /// [`ErrorKind::WrongType`]), so no process can shrink it under this end. `fd` is
    /// consumed, also on failure. The process that handed it over is trusted as any peer of
    /// a channel is: a header it forged is caught, messages it writes are delivered as
    /// written.
    pub fn from_shm_fd(fd: impl Into<OwnedFd>, opts: &Options) -> Result<Sender, Error> {
        ShmSender::from_fd(fd.into(), opts.max_message, Duration::ZERO)
            .map(|tx| Sender::shm_anonymous(tx, opts))
            .map_err(|e| e.object_of(ObjectKind::ShmChannel, crate::shm::ANONYMOUS))
    }

    /// A byte-stream sender over `fd` for an object of `kind`.
    pub(crate) fn stream(
        fd: OwnedFd,
        name: impl Into<String>,
        kind: ObjectKind,
        opts: &Options,
    ) -> Sender {
        let flavor = SenderFlavor::Stream(StreamSender::new(fd, opts.framing, opts.max_message));
        Sender::with_flavor(name.into(), kind, opts, flavor)
    }

    /// A sequenced-packet sender over the connected socket `fd` for an object of `kind`.
    pub(crate) fn packet(
        fd: OwnedFd,
        name: impl Into<String>,
        kind: ObjectKind,
        opts: &Options,
    ) -> Sender {
        let flavor = SenderFlavor::Packet(PacketSender::new(fd, opts.framing, opts.max_message));
        Sender::with_flavor(name.into(), kind, opts, flavor)
    }

    /// A sender over a descriptor: packet by packet on a sequenced-packet socket, framed on
    /// anything else.
    fn any_fd(fd: OwnedFd, name: String, kind: ObjectKind, opts: &Options) -> Sender {
        if is_packet_socket(fd.as_fd()) {
            Sender::packet(fd, name, kind, opts)
        } else {
            Sender::stream(fd, name, kind, opts)
        }
    }

    /// Opens an existing endpoint for sending, with default [`Options`].
    ///
    /// For `fifo:` this waits, as a FIFO writer always does, until a reader opens the FIFO; set
    /// [`Options::open_timeout`] to bound the wait. `-` is standard output.
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Sender, Error> {
        Sender::connect_with(endpoint, &Options::default())
    }

    /// Opens an existing endpoint for sending.
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender, Error> {
        let ep = endpoint.to_endpoint()?;
        let flavor = match &ep {
            Endpoint::Stdio => {
                return Ok(Sender::any_fd(
                    stdio_fd(std::io::stdout().as_fd(), &ep)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::Fifo { path } => {
                let w = match opts.open_timeout {
                    None => fifo::open_write(path)?,
                    Some(t) if t.is_zero() => fifo::try_open_write(path)?,
                    // A timeout too long to represent waits as long as it takes.
                    Some(t) => fifo::open_write_deadline(path, deadline_after(t))?,
                };
                return Ok(Sender::stream(w.into(), ep.to_string(), kind_of(&ep), opts));
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                return Ok(Sender::stream(
                    connect_stream(&ep, opts.open_timeout)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::UnixPacket { .. } => {
                return Ok(Sender::packet(
                    connect_stream(&ep, opts.open_timeout)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::Mq { name, priority, .. } => SenderFlavor::Mq(MqSender {
                q: Queue::open_with(name, false, true)?,
                prio: crate::mq::check_priority(priority.unwrap_or(0))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
            }),
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                SenderFlavor::Dgram(connect_dgram(&ep, opts.framing)?)
            }
            Endpoint::Msg { key, mtype } => SenderFlavor::Msg(MsgSender {
                q: MsgQueue::open_with(key, false, true)?,
                mtype: crate::msg::check_type(mtype.unwrap_or(1))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
            }),
            Endpoint::Shm { name, spin, .. } => SenderFlavor::Shm(
                ShmSender::connect(name, opts.max_message, spin.unwrap_or_default())
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
            ),
        };
        Ok(Sender::new(&ep, opts, flavor))
    }

    /// Creates the endpoint's object, owning it (it is removed when the sender is dropped),
    /// then opens it for sending. For `fifo:` the open waits for a reader as in
    /// [`Sender::connect_with`]. For `tcp:`, `unix:` and `unixpacket:` it listens and waits (at most
    /// [`Options::open_timeout`]) for one client, then sends to it; `udp:` and `unixgram:` have
    /// nothing to create and connect as [`Sender::connect_with`] does.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender, Error> {
        let ep = endpoint.to_endpoint()?;
        let access = opts.access(&ep)?;
        let flavor = match &ep {
            Endpoint::Stdio | Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                return Sender::connect_with(ep, opts);
            }
            Endpoint::Fifo { path } => {
                let fifo = Fifo::create_with_mode(path, access.mode)?;
                if let Some(gid) = access.group {
                    fifo.set_group(gid)?;
                }
                let mut sender = Sender::connect_with(&ep, opts)?;
                if let SenderFlavor::Stream(s) = &mut sender.flavor {
                    s.owner = Some(fifo);
                }
                return Ok(sender);
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } | Endpoint::UnixPacket { .. } => {
                // Listen, and send to the first client that connects.
                let listener = StreamListener::bind(&ep, access)?;
                let deadline = opts.open_timeout.and_then(deadline_after);
                let (fd, peer) = listener.accept_deadline(deadline)?;
                let name = peer.connection_name(&ep);
                return Ok(match ep {
                    Endpoint::UnixPacket { .. } => Sender::packet(fd, name, kind_of(&ep), opts),
                    _ => Sender::stream(fd, name, kind_of(&ep), opts),
                });
            }
            Endpoint::Mq {
                name,
                max_messages,
                msgsize,
                priority,
            } => SenderFlavor::Mq(MqSender {
                prio: crate::mq::check_priority(priority.unwrap_or(0))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
                q: super::receiver::created_queue(name, *max_messages, *msgsize, access)?,
            }),
            Endpoint::Msg { key, mtype } => SenderFlavor::Msg(MsgSender {
                mtype: crate::msg::check_type(mtype.unwrap_or(1))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
                q: super::receiver::created_msg_queue(key, access)?,
            }),
            Endpoint::Shm { .. } => {
                return Err(Error::new(ErrorKind::InvalidInput)
                    .detail("the receiver creates and owns a shared-memory channel; connect the sender to it instead")
                    .object_of(kind_of(&ep), &ep));
            }
        };
        Ok(Sender::new(&ep, opts, flavor))
    }

    /// Sends over any byte-stream descriptor (a pipe end, a FIFO, a connected socket),
    /// framed as `opts` says. `name` is how errors refer to it. A connected sequenced-packet
    /// socket (`SOCK_SEQPACKET`) carries one message per packet instead, unframed.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Sender {
        Sender::any_fd(fd.into(), name.into(), ObjectKind::Descriptor, opts)
    }

    /// Changes the largest message this sender accepts (it starts as [`Options::max_message`]).
    pub fn set_max_message(&mut self, bytes: usize) {
        self.max = bytes;
        dispatch_send!(&mut self.flavor, f => f.set_max(bytes));
    }

    /// The endpoint this sender talks to, as text.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Gives up the sender and returns its descriptor (for example to hand it to a child);
    /// `None` for mechanisms without one (a named shared-memory channel). An object the sender
    /// owned is kept, no longer removed on drop. The end of an anonymous shared-memory channel
    /// ([`crate::shm::channel`]) is handed over whole: another process (or this one) takes it
    /// up with [`Sender::from_shm_fd`]. Every copy of that descriptor keeps the end alive for
    /// its receiver; once the last is closed, taken up or not, the receiver finds it gone
    /// (after the messages already sent).
    pub fn into_fd(self) -> Option<OwnedFd> {
        dispatch_send!(self.flavor, f => f.into_fd())
    }

    /// The descriptor to poll for writability, where the mechanism has one.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        dispatch_send!(&self.flavor, f => f.as_fd())
    }

    /// Sends a `len`-byte message that `fill` writes in place: on shared memory straight into
    /// the ring (the zero-copy path); elsewhere into a buffer that is then sent. The bytes are
    /// atomic because another process can reach shared memory: a `&mut [u8]` there would let a
    /// misbehaving peer break Rust's aliasing rules. Relaxed stores compile to plain writes.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&[AtomicU8])) -> Result<(), Error> {
        self.check_size(len)
            .map_err(|e| e.object_of(self.kind, &self.endpoint))?;
        let mut fill = Some(fill);
        let mut call = |b: &[AtomicU8]| {
            if let Some(f) = fill.take() {
                f(b);
            }
        };
        dispatch_send!(&mut self.flavor, f => f.send_with(len, &mut call))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    /// Sends a message, waiting as long as it takes for room.
    pub fn send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        self.send_waiting(msg, Wait::Forever)
    }

    /// Sends a message if there is room now; otherwise fails with [`ErrorKind::Full`] and
    /// hands the message back.
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        self.send_waiting(msg, Wait::Never)
    }

    /// Sends a message, waiting at most `timeout`; then fails with [`ErrorKind::Timeout`].
    pub fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendError<M>> {
        self.send_waiting(msg, Wait::until(deadline_after(timeout)))
    }

    /// Sends a message, waiting until `deadline` at most.
    pub fn send_deadline<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        deadline: Instant,
    ) -> Result<(), SendError<M>> {
        self.send_waiting(msg, Wait::Until(deadline))
    }

    /// The size check every flavor shares.
    /// How the async face waits for this sender.
    #[cfg(feature = "tokio")]
    pub(crate) fn readiness(&self) -> super::Readiness {
        match self.flavor {
            SenderFlavor::Shm(_) => super::Readiness::Futex,
            SenderFlavor::Msg(_) => super::Readiness::Thread,
            _ => super::Readiness::Descriptor,
        }
    }

    /// Starts a message without waiting: taken whole (`Ok`), or not at all (`Full`); a byte
    /// stream keeps what it could not write of the frame (see [`Sender::has_unsent`]).
    #[cfg(feature = "tokio")]
    pub(crate) fn start_send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.check_size(msg.len())
            .and_then(|()| dispatch_send!(&mut self.flavor, f => f.start(msg)))
            .map_err(|e| self.named(e))
    }

    /// Writes what is left of a started frame without waiting (`Full` if some is left).
    #[cfg(feature = "tokio")]
    pub(crate) fn flush_unsent(&mut self) -> Result<(), Error> {
        dispatch_send!(&mut self.flavor, f => f.flush(Wait::Never)).map_err(|e| self.named(e))
    }

    /// Whether part of a started frame is still to be written.
    #[cfg(feature = "tokio")]
    pub(crate) fn has_unsent(&self) -> bool {
        dispatch_send!(&self.flavor, f => f.has_unsent())
    }

    /// Shared memory: announces a wait for room for `len` bytes (see `ShmSender::arm`).
    #[cfg(feature = "tokio")]
    pub(crate) fn arm(&mut self, len: usize) -> Result<Option<crate::flavor::shm::Sleep>, Error> {
        match &mut self.flavor {
            SenderFlavor::Shm(f) => f.arm(len).map_err(|e| self.named(e)),
            _ => Ok(None),
        }
    }

    /// Shared memory: withdraws the announcement of [`Sender::arm`].
    #[cfg(feature = "tokio")]
    pub(crate) fn disarm(&self) {
        if let SenderFlavor::Shm(f) = &self.flavor {
            f.disarm();
        }
    }

    /// A second sender on the same System V queue that owns nothing, for a waiter thread to
    /// block in.
    #[cfg(feature = "tokio")]
    pub(crate) fn blocking_clone(&self) -> Option<Sender> {
        match &self.flavor {
            SenderFlavor::Msg(f) => Some(Sender {
                endpoint: self.endpoint.clone(),
                kind: self.kind,
                max: self.max,
                flavor: SenderFlavor::Msg(MsgSender {
                    q: f.q.handle(),
                    mtype: f.mtype,
                }),
            }),
            _ => None,
        }
    }

    /// `e`, naming this sender's endpoint.
    #[cfg(feature = "tokio")]
    pub(crate) fn named(&self, e: Error) -> Error {
        e.object_of(self.kind, &self.endpoint)
    }

    /// Sends `msg` waiting as `wait` says; the error names the endpoint (typed channels).
    pub(crate) fn send_bytes(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_waiting(msg, wait).map_err(|e| e.into_error())
    }

    /// Whether [`Sender::send_streamed`] carries this channel's messages: a byte stream with
    /// a length prefix, or a shared-memory ring.
    pub(crate) fn streams(&self) -> bool {
        match &self.flavor {
            SenderFlavor::Stream(f) => f.streams(),
            SenderFlavor::Shm(_) => true,
            _ => false,
        }
    }

    /// Sends a `len`-byte message that `encode` hands over piece by piece: a large piece
    /// goes to the stream from where it lies (see `StreamSender::send_streamed`), every piece
    /// straight to its place in a shared-memory ring (`ShmSender::send_streamed`); only where
    /// [`Sender::streams`], [`ErrorKind::InvalidInput`] elsewhere.
    pub(crate) fn send_streamed(
        &mut self,
        len: usize,
        wait: Wait,
        encode: &mut dyn FnMut(&mut dyn Pieces) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.check_size(len)
            .and_then(|()| match &mut self.flavor {
                SenderFlavor::Stream(f) => f.send_streamed(len, wait, &mut |out| encode(out)),
                SenderFlavor::Shm(f) => f.send_streamed(len, wait, encode),
                _ => Err(crate::flavor::streamed::not_streamed()),
            })
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    fn check_size(&self, len: usize) -> Result<(), Error> {
        if len > self.max {
            return Err(Error::too_large(len as u64, self.max as u64));
        }
        Ok(())
    }

    fn send_waiting<M: AsRef<[u8]>>(&mut self, msg: M, wait: Wait) -> Result<(), SendError<M>> {
        let bytes = msg.as_ref();
        let result = self
            .check_size(bytes.len())
            .and_then(|()| dispatch_send!(&mut self.flavor, f => f.send(bytes, wait)));
        result.map_err(|e| SendError::new(msg, e.object_of(self.kind, &self.endpoint)))
    }
}
