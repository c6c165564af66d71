//! [`Sender`] and [`Receiver`]: one pair of types for every mechanism, dispatching statically
//! over a private flavor enum (crossbeam-channel's design) to the flavors in `flavor/`.
//!
//! Every blocking operation has a `try_` form (never waits), a `_timeout` form and a
//! `_deadline` form; all four are one internal call with a [`Wait`] value.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::cleanup::Cleanup;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, ObjectKind, SendError};
use crate::fifo::{self, Fifo};
use crate::flavor::dgram::{DatagramStats, DgramReceiver, DgramSender, bind_dgram, connect_dgram};
use crate::flavor::listen::ListenReceiver;
use crate::flavor::mq::{MqReceiver, MqSender};
use crate::flavor::msg::{MsgReceiver, MsgSender};
use crate::flavor::shm::{ShmReceiver, ShmSender};
use crate::flavor::stream::{StreamReceiver, StreamSender};
use crate::flavor::{RecvFlavor, SendFlavor, Wait};
use crate::framing::{DEFAULT_MAX_MESSAGE, Framing};
use crate::kind::kind_of;
use crate::mq::Queue;
use crate::msg::MsgQueue;
use crate::net::{StreamListener, connect_stream};
use crate::stream::deadline_after;

/// How a channel is opened and framed.
///
/// Which options each endpoint honours (the others are ignored there):
///
/// | option | honoured by |
/// |---|---|
/// | `framing` | byte streams (`-`, `fifo:`, `unix:`, `tcp:`, descriptors); `udp:` and `unixgram:` (see [`Framing`]) |
/// | `max_message` | every endpoint, on both sides |
/// | `open_timeout` | `fifo:` senders (waiting for a reader), `tcp:`/`unix:` connects, and binding senders waiting for their client |
/// | `budget` | byte-stream receivers (a server's connections) |
///
/// What concerns one mechanism alone is a parameter of its endpoint instead: a POSIX queue
/// sender's `mq:/NAME?priority=P`, a shared-memory endpoint's `shm:/NAME?spin=DURATION`, a
/// System V queue's `msg:KEY?type=T` (see [`crate::endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How messages are delimited on byte-stream endpoints (ignored by message-based ones).
    pub framing: Framing,
    /// The largest message sent or accepted, in bytes; checked before any allocation.
    pub max_message: usize,
    /// How long opening may wait for the other side (a FIFO writer waits for a reader);
    /// `None` waits as long as it takes, `Some(Duration::ZERO)` does not wait at all.
    pub open_timeout: Option<Duration>,
    /// The memory allowance byte-stream receivers share for partly received messages (a
    /// server gives one to all its connections); `None` by default: each is bounded by
    /// `max_message` alone.
    pub budget: Option<Budget>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            framing: Framing::Length,
            max_message: DEFAULT_MAX_MESSAGE,
            open_timeout: None,
            budget: None,
        }
    }
}

impl Options {
    /// Sets the framing.
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Options {
        self.framing = framing;
        self
    }

    /// Sets the maximum message size.
    #[must_use]
    pub fn max_message(mut self, bytes: usize) -> Options {
        self.max_message = bytes;
        self
    }

    /// Shares `budget` among the byte-stream receivers opened with these options (see
    /// [`Budget`]).
    #[must_use]
    pub fn budget(mut self, budget: Budget) -> Options {
        self.budget = Some(budget);
        self
    }

    /// Sets how long opening may wait for the other side.
    #[must_use]
    pub fn open_timeout(mut self, timeout: Option<Duration>) -> Options {
        self.open_timeout = timeout;
        self
    }
}

/// Anything that names an endpoint: a string in the grammar, or a parsed [`Endpoint`].
pub trait ToEndpoint {
    /// Parses or clones into an [`Endpoint`].
    fn to_endpoint(&self) -> Result<Endpoint, Error>;
}

impl ToEndpoint for str {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Endpoint::parse(self)
    }
}
impl ToEndpoint for String {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Endpoint::parse(self)
    }
}
impl ToEndpoint for Endpoint {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Ok(self.clone())
    }
}
impl<T: ToEndpoint + ?Sized> ToEndpoint for &T {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        (**self).to_endpoint()
    }
}

fn stdio_fd(fd: BorrowedFd<'_>, ep: &Endpoint) -> Result<OwnedFd, Error> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::os("duplicate the standard descriptor", e).object_of(kind_of(ep), ep))
}

/// `dispatch!(flavor_enum_value, f => expression using f)`: the one place each flavor is listed
/// per direction.
macro_rules! dispatch_send {
    ($value:expr, $f:ident => $body:expr) => {
        match $value {
            SenderFlavor::Stream($f) => $body,
            SenderFlavor::Shm($f) => $body,
            SenderFlavor::Mq($f) => $body,
            SenderFlavor::Msg($f) => $body,
            SenderFlavor::Dgram($f) => $body,
        }
    };
}

macro_rules! dispatch_recv {
    ($value:expr, $f:ident => $body:expr) => {
        match $value {
            ReceiverFlavor::Stream($f) => $body,
            ReceiverFlavor::Listen($f) => $body,
            ReceiverFlavor::Shm($f) => $body,
            ReceiverFlavor::Mq($f) => $body,
            ReceiverFlavor::Msg($f) => $body,
            ReceiverFlavor::Dgram($f) => $body,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Sender

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
}

impl Sender {
    fn new(ep: &Endpoint, opts: &Options, flavor: SenderFlavor) -> Sender {
        Sender {
            endpoint: ep.to_string(),
            kind: kind_of(ep),
            max: opts.max_message,
            flavor,
        }
    }

    /// A byte-stream sender over `fd` for an object of `kind`.
    pub(crate) fn stream(
        fd: OwnedFd,
        name: impl Into<String>,
        kind: ObjectKind,
        opts: &Options,
    ) -> Sender {
        Sender {
            endpoint: name.into(),
            kind,
            max: opts.max_message,
            flavor: SenderFlavor::Stream(StreamSender::new(fd, opts.framing, opts.max_message)),
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
                return Ok(Sender::stream(
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
    /// [`Sender::connect_with`]. For `tcp:` and `unix:` it listens and waits (at most
    /// [`Options::open_timeout`]) for one client, then sends to it; `udp:` and `unixgram:` have
    /// nothing to create and connect as [`Sender::connect_with`] does.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender, Error> {
        let ep = endpoint.to_endpoint()?;
        let flavor = match &ep {
            Endpoint::Stdio | Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                return Sender::connect_with(ep, opts);
            }
            Endpoint::Fifo { path } => {
                let fifo = Fifo::create(path)?;
                let mut sender = Sender::connect_with(&ep, opts)?;
                if let SenderFlavor::Stream(s) = &mut sender.flavor {
                    s.owner = Some(fifo);
                }
                return Ok(sender);
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                // Listen, and send to the first client that connects.
                let listener = StreamListener::bind(&ep)?;
                let deadline = opts.open_timeout.and_then(deadline_after);
                let (fd, peer) = listener.accept_deadline(deadline)?;
                return Ok(Sender::stream(
                    fd,
                    peer.connection_name(&ep),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::Mq {
                name,
                max_messages,
                msgsize,
                priority,
            } => SenderFlavor::Mq(MqSender {
                prio: crate::mq::check_priority(priority.unwrap_or(0))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
                q: Queue::create(name, *max_messages, *msgsize)?,
            }),
            Endpoint::Msg { key, mtype } => SenderFlavor::Msg(MsgSender {
                mtype: crate::msg::check_type(mtype.unwrap_or(1))
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
                q: MsgQueue::create(key)?,
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
    /// framed as `opts` says. `name` is how errors refer to it.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Sender {
        Sender::stream(fd.into(), name, ObjectKind::Descriptor, opts)
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
    /// `None` for mechanisms without one (shared memory). An object the sender owned is kept,
    /// no longer removed on drop.
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

// ---------------------------------------------------------------------------------------------
// Receiver

/// The receiving side of a channel.
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// use std::time::Duration;
/// // A shared-memory ring: the receiver owns the segment and removes it when dropped.
/// let name = format!("shm:/procom-doc-receiver-{}", std::process::id());
/// let mut rx = procom::Receiver::bind(&name)?;
/// let mut tx = procom::Sender::connect(&name)?;
/// tx.send(b"frame").map_err(|e| e.into_error())?;
/// let mut buf = Vec::new();
/// assert_eq!(rx.recv_into(&mut buf)?, 5); // into a reused buffer
/// let e = rx.recv_timeout(Duration::from_millis(10)).unwrap_err();
/// assert_eq!(e.kind(), procom::ErrorKind::Timeout);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Receiver {
    endpoint: String,
    /// What kind of object `endpoint` is, for errors.
    kind: ObjectKind,
    flavor: ReceiverFlavor,
}

#[derive(Debug)]
enum ReceiverFlavor {
    Stream(StreamReceiver),
    /// A listening stream socket that accepts its one peer on the first receive.
    Listen(ListenReceiver),
    Shm(ShmReceiver),
    Mq(MqReceiver),
    Msg(MsgReceiver),
    Dgram(DgramReceiver),
}

impl Receiver {
    /// Creates the endpoint's object and receives from it, with default [`Options`]. The
    /// receiver owns the object and removes it when dropped. `-` is standard input.
    ///
    /// For `fifo:` the FIFO is created (mode 0600) and opened at once; receiving waits for a
    /// writer to arrive, and reports [`ErrorKind::PeerGone`] once the last writer has closed.
    ///
    /// For `tcp:` and `unix:` the receiver listens at once and accepts its one peer on the
    /// first receive; it then reads that connection until [`ErrorKind::PeerGone`] and accepts
    /// no other (a server with many clients uses [`crate::socket::Listener`]). For `udp:` and
    /// `unixgram:` it binds and takes datagrams from anyone. A Unix socket file is created
    /// 0600 and removed on drop. [`Receiver::endpoint`] names what was bound, with the real
    /// port when port 0 was asked for.
    pub fn bind(endpoint: impl ToEndpoint) -> Result<Receiver, Error> {
        Receiver::bind_with(endpoint, &Options::default())
    }

    /// Creates the endpoint's object and receives from it.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Receiver, Error> {
        let ep = endpoint.to_endpoint()?;
        let (name, flavor) = match &ep {
            Endpoint::Stdio => return Receiver::connect_with(ep, opts),
            Endpoint::Fifo { path } => {
                let mut fifo = Fifo::create_inner(path, fifo::DEFAULT_MODE)?;
                let fd = fifo
                    .take_reader()
                    .ok_or_else(|| Error::new(ErrorKind::Io).object_of(kind_of(&ep), &ep))?;
                let mut r = Receiver::stream(fd, ep.to_string(), kind_of(&ep), opts);
                if let ReceiverFlavor::Stream(s) = &mut r.flavor {
                    s.owner = Some(fifo);
                }
                return Ok(r);
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                let listener = StreamListener::bind(&ep)?;
                (
                    listener.local_endpoint().to_string(),
                    ReceiverFlavor::Listen(ListenReceiver::new(
                        listener,
                        opts.framing,
                        opts.max_message,
                        opts.budget.clone(),
                    )),
                )
            }
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                let r = bind_dgram(&ep, opts.framing, opts.max_message)?;
                (r.local_endpoint().to_string(), ReceiverFlavor::Dgram(r))
            }
            Endpoint::Mq {
                name,
                max_messages,
                msgsize,
                ..
            } => (
                ep.to_string(),
                ReceiverFlavor::Mq(MqReceiver {
                    q: Queue::create(name, *max_messages, *msgsize)?,
                    max: opts.max_message,
                }),
            ),
            Endpoint::Msg { key, mtype } => (
                ep.to_string(),
                ReceiverFlavor::Msg(MsgReceiver {
                    q: MsgQueue::create(key)?,
                    selector: mtype.unwrap_or(0),
                    max: opts.max_message,
                }),
            ),
            Endpoint::Shm {
                name,
                ring_bytes,
                spin,
            } => (
                ep.to_string(),
                ReceiverFlavor::Shm(
                    ShmReceiver::bind(
                        name,
                        *ring_bytes,
                        spin.unwrap_or_default(),
                        opts.max_message,
                    )
                    .map_err(|e| e.object_of(kind_of(&ep), &ep))?,
                ),
            ),
        };
        Ok(Receiver {
            endpoint: name,
            kind: kind_of(&ep),
            flavor,
        })
    }

    /// Receives from an existing endpoint, with default [`Options`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Receiver, Error> {
        Receiver::connect_with(endpoint, &Options::default())
    }

    /// Receives from an existing endpoint. Opening does not wait for a writer.
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Receiver, Error> {
        let ep = endpoint.to_endpoint()?;
        let flavor = match &ep {
            Endpoint::Stdio => {
                return Ok(Receiver::stream(
                    stdio_fd(std::io::stdin().as_fd(), &ep)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::Fifo { path } => {
                return Ok(Receiver::stream(
                    fifo::open_read_now(path)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            // A shared-memory channel always belongs to its receiver: connecting creates it.
            // A datagram receiver is always the one that binds.
            Endpoint::Shm { .. } | Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                return Receiver::bind_with(ep, opts);
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                return Ok(Receiver::stream(
                    connect_stream(&ep, opts.open_timeout)?,
                    ep.to_string(),
                    kind_of(&ep),
                    opts,
                ));
            }
            Endpoint::Mq { name, .. } => ReceiverFlavor::Mq(MqReceiver {
                q: Queue::open_with(name, true, false)?,
                max: opts.max_message,
            }),
            Endpoint::Msg { key, mtype } => ReceiverFlavor::Msg(MsgReceiver {
                q: MsgQueue::open_with(key, true, false)?,
                selector: mtype.unwrap_or(0),
                max: opts.max_message,
            }),
        };
        Ok(Receiver {
            endpoint: ep.to_string(),
            kind: kind_of(&ep),
            flavor,
        })
    }

    /// Receives from any byte-stream descriptor, framed as `opts` says. `name` is how errors
    /// refer to it.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Receiver {
        Receiver::stream(fd.into(), name, ObjectKind::Descriptor, opts)
    }

    /// A byte-stream receiver over `fd` for an object of `kind`.
    pub(crate) fn stream(
        fd: OwnedFd,
        name: impl Into<String>,
        kind: ObjectKind,
        opts: &Options,
    ) -> Receiver {
        Receiver {
            endpoint: name.into(),
            kind,
            flavor: ReceiverFlavor::Stream(StreamReceiver::new(
                fd,
                opts.framing,
                opts.max_message,
                opts.budget.clone(),
            )),
        }
    }

    /// The endpoint this receiver listens on, as text.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Gives up the receiver and returns its descriptor. Bytes it had read but not yet
    /// delivered are lost; an object it owned is kept, no longer removed on drop.
    pub fn into_fd(self) -> Option<OwnedFd> {
        dispatch_recv!(self.flavor, f => f.into_fd())
    }

    /// The name of the object this receiver created, for removal from another thread (see
    /// [`Cleanup`]): the socket file of a `unix:` or `unixgram:` path, a `shm:` channel's
    /// segment, a `fifo:` it created. `None` when it created nothing named.
    pub fn cleanup(&self) -> Option<Cleanup> {
        dispatch_recv!(&self.flavor, f => f.cleanup())
    }

    /// The descriptor to poll for readability, where the mechanism has one. A datagram
    /// receiver's socket may carry a receive timeout procom set for a deadline (`SO_RCVTIMEO`;
    /// [`Receiver::into_fd`] clears it): read it through the receiver, not directly.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        dispatch_recv!(&self.flavor, f => f.as_fd())
    }

    /// Receives a message and hands it to `f` in place: on shared memory the bytes are read
    /// straight from the ring (the zero-copy path) and released when `f` returns. They are
    /// atomic for the reason given at [`Sender::send_with`].
    pub fn recv_with<T>(&mut self, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_with(Wait::Forever, f))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    /// Receives a message into `buf`, replacing what it held and reusing its allocation;
    /// returns the message's length. A loop that receives into one buffer allocates nothing
    /// per message (on shared memory and byte streams; queues and datagrams still receive
    /// into a fresh buffer first).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_into(Wait::Forever, buf))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    /// For datagram endpoints: how many datagrams arrived, and (UDP with length framing) how
    /// many sequence numbers were skipped or came late.
    pub fn datagram_stats(&self) -> Option<DatagramStats> {
        dispatch_recv!(&self.flavor, f => f.datagram_stats())
    }

    /// Receives a message, waiting as long as it takes.
    ///
    /// On `udp:` and `unixgram:` endpoints, [`ErrorKind::TooLarge`] and
    /// [`ErrorKind::Malformed`] concern one datagram, which is discarded and counted
    /// ([`DatagramStats::refused`]): the receiver stays usable, and the next receive gets the
    /// next datagram. (On byte streams those errors end the stream: its framing is lost.)
    pub fn recv(&mut self) -> Result<Vec<u8>, Error> {
        self.recv_waiting(Wait::Forever)
    }

    /// Receives a message if one is waiting; otherwise fails with [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Vec<u8>, Error> {
        self.recv_waiting(Wait::Never)
    }

    /// Receives a message, waiting at most `timeout`; then fails with [`ErrorKind::Timeout`].
    /// Part of a message that arrived in time is kept for the next call.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        self.recv_waiting(Wait::until(deadline_after(timeout)))
    }

    /// Receives a message, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.recv_waiting(Wait::Until(deadline))
    }

    /// Hands the next message's bytes to `f`: straight from the reader's buffer on byte
    /// streams (no allocation), from a received copy elsewhere. For decoders (typed channels).
    pub(crate) fn recv_bytes<T>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_bytes(wait, f))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    fn recv_waiting(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv(wait))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }
}

/// `Sender` and `Receiver` move between threads and can be shared by reference (every
/// operation that changes them takes `&mut self`).
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Sender>();
    send_and_sync::<Receiver>();
};
