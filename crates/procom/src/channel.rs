//! [`Sender`] and [`Receiver`]: one pair of types for every mechanism, dispatching statically
//! over a private flavor enum (crossbeam-channel's design).
//!
//! Every blocking operation has a `try_` form (never waits), a `_timeout` form and a
//! `_deadline` form; all four are one internal function taking an optional deadline.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::cleanup::Cleanup;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, SendError};
use crate::fifo::{self, Fifo};
use crate::framing::{self, DEFAULT_MAX_MESSAGE, Frame, Framing};
use crate::mq::Queue;
use crate::msg::MsgQueue;
use crate::shmchan::{ShmReceiver, ShmSender};
use crate::socket::{DatagramStats, DgramReceiver, DgramSender, Listener};
use crate::stream::{FdKind, StreamReader, StreamWriter, deadline_after};

/// How a channel is opened and framed.
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
    /// How long an empty shared-memory receiver busy-polls before it sleeps (lowest latency,
    /// at the price of a busy core); zero by default.
    pub spin: Duration,
    /// The priority a POSIX message-queue sender gives its messages (higher first); 0 by
    /// default. (A System V sender stamps the type from its endpoint's `?type=`.)
    pub priority: u32,
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
            spin: Duration::ZERO,
            priority: 0,
            budget: None,
        }
    }
}

impl Options {
    /// Sets the priority of messages sent to a POSIX message queue.
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Options {
        self.priority = priority;
        self
    }

    /// Sets how long a shared-memory endpoint busy-polls before it sleeps: an empty receiver
    /// waiting for a message, and a sender waiting for room in a full ring.
    #[must_use]
    pub fn spin(mut self, spin: Duration) -> Options {
        self.spin = spin;
        self
    }

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
        .map_err(|e| Error::os("duplicate the standard descriptor", e).object(ep))
}

// ---------------------------------------------------------------------------------------------
// Sender

/// The sending side of a channel.
#[derive(Debug)]
pub struct Sender {
    endpoint: String,
    flavor: SenderFlavor,
}

#[derive(Debug)]
enum SenderFlavor {
    Stream(StreamSender),
    Shm(ShmSender),
    Mq { q: Queue, prio: u32, max: usize },
    Msg { q: MsgQueue, mtype: i64, max: usize },
    Dgram { s: DgramSender, max: usize },
}

#[derive(Debug)]
struct StreamSender {
    w: StreamWriter,
    framing: Framing,
    max: usize,
    /// Set when a send stopped part-way through a message: the stream can no longer be framed.
    poisoned: bool,
    _owner: Option<Fifo>,
}

impl Sender {
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
        match &ep {
            Endpoint::Stdio => Ok(Sender::from_fd(
                stdio_fd(std::io::stdout().as_fd(), &ep)?,
                ep.to_string(),
                opts,
            )),
            Endpoint::Fifo { path } => {
                let deadline = opts.open_timeout.and_then(deadline_after);
                let w = match opts.open_timeout {
                    None => fifo::open_write(path)?,
                    Some(t) if t.is_zero() => fifo::try_open_write(path)?,
                    Some(_) => fifo::open_write_deadline(path, deadline.or(Some(Instant::now())))?,
                };
                Ok(Sender::from_fd(w, ep.to_string(), opts))
            }
            Endpoint::Mq { name, .. } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Mq {
                    q: Queue::open_with(name, false, true)?,
                    prio: crate::mq::check_priority(opts.priority).map_err(|e| e.object(&ep))?,
                    max: opts.max_message,
                },
            }),
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => Ok(Sender::from_fd(
                crate::socket::connect_stream(&ep, opts.open_timeout)?,
                ep.to_string(),
                opts,
            )),
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Dgram {
                    s: crate::socket::connect_dgram(&ep, opts.framing)?,
                    max: opts.max_message,
                },
            }),
            Endpoint::Msg { key, mtype } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Msg {
                    q: MsgQueue::open_with(key, false, true)?,
                    mtype: crate::msg::check_type(mtype.unwrap_or(1)).map_err(|e| e.object(&ep))?,
                    max: opts.max_message,
                },
            }),
            Endpoint::Shm { name, .. } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Shm(
                    ShmSender::connect(name, opts.max_message, opts.spin)
                        .map_err(|e| e.object(&ep))?,
                ),
            }),
        }
    }

    /// Creates the endpoint's object, owning it (it is removed when the sender is dropped),
    /// then opens it for sending. For `fifo:` the open waits for a reader as in
    /// [`Sender::connect_with`]. For `tcp:` and `unix:` it listens and waits (at most
    /// [`Options::open_timeout`]) for one client, then sends to it; `udp:` and `unixgram:` have
    /// nothing to create and connect as [`Sender::connect_with`] does.
    pub fn bind_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Sender, Error> {
        let ep = endpoint.to_endpoint()?;
        match &ep {
            Endpoint::Stdio => Sender::connect_with(ep, opts),
            Endpoint::Fifo { .. } => {
                let Endpoint::Fifo { path } = &ep else {
                    unreachable!()
                };
                let fifo = Fifo::create(path)?;
                let mut sender = Sender::connect_with(&ep, opts)?;
                if let SenderFlavor::Stream(s) = &mut sender.flavor {
                    s._owner = Some(fifo);
                }
                Ok(sender)
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                // Listen, and send to the first client that connects.
                let listener = Listener::bind(&ep, opts)?;
                let conn = match opts.open_timeout {
                    Some(t) => listener.accept_timeout(t)?,
                    None => listener.accept()?,
                };
                Ok(conn.sender)
            }
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => Sender::connect_with(ep, opts),
            Endpoint::Mq { name, capacity, msgsize } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Mq { prio: crate::mq::check_priority(opts.priority).map_err(|e| e.object(&ep))?, q: Queue::create(name, *capacity, *msgsize)?, max: opts.max_message },
            }),
            Endpoint::Msg { key, mtype } => Ok(Sender {
                endpoint: ep.to_string(),
                flavor: SenderFlavor::Msg { mtype: crate::msg::check_type(mtype.unwrap_or(1)).map_err(|e| e.object(&ep))?, q: MsgQueue::create(key)?, max: opts.max_message },
            }),
            Endpoint::Shm { .. } => Err(Error::new(ErrorKind::InvalidInput)
                .detail("the receiver creates and owns a shared-memory channel; connect the sender to it instead")
                .object(&ep)),
        }
    }

    /// Sends over any byte-stream descriptor (a pipe end, a FIFO, a connected socket),
    /// framed as `opts` says. `name` is how errors refer to it.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Sender {
        Sender {
            endpoint: name.into(),
            flavor: SenderFlavor::Stream(StreamSender {
                w: StreamWriter::new(fd.into()),
                framing: opts.framing,
                max: opts.max_message,
                poisoned: false,
                _owner: None,
            }),
        }
    }

    /// Changes the largest message this sender accepts (it starts as [`Options::max_message`]).
    pub fn set_max_message(&mut self, bytes: usize) {
        match &mut self.flavor {
            SenderFlavor::Stream(s) => s.max = bytes,
            SenderFlavor::Shm(s) => s.set_max(bytes),
            SenderFlavor::Mq { max, .. }
            | SenderFlavor::Msg { max, .. }
            | SenderFlavor::Dgram { max, .. } => *max = bytes,
        }
    }

    /// The endpoint this sender talks to, as text.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Gives up the sender and returns its descriptor (for example to hand it to a child);
    /// `None` for mechanisms without one (shared memory). An object the sender owned is kept,
    /// no longer removed on drop.
    pub fn into_fd(self) -> Option<OwnedFd> {
        match self.flavor {
            SenderFlavor::Stream(s) => {
                if let Some(owner) = s._owner {
                    owner.keep();
                }
                Some(s.w.into_fd())
            }
            SenderFlavor::Mq { q, .. } => q.into_fd(),
            SenderFlavor::Dgram { s, .. } => s.as_fd().try_clone_to_owned().ok(),
            SenderFlavor::Shm(_) | SenderFlavor::Msg { .. } => None,
        }
    }

    /// The descriptor to poll for writability, where the mechanism has one.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.flavor {
            SenderFlavor::Stream(s) => Some(s.w.as_fd()),
            SenderFlavor::Mq { q, .. } => Some(q.as_fd()),
            SenderFlavor::Dgram { s, .. } => Some(s.as_fd()),
            SenderFlavor::Shm(_) | SenderFlavor::Msg { .. } => None,
        }
    }

    /// Sends a `len`-byte message that `fill` writes in place: on shared memory straight into
    /// the ring (the zero-copy path); elsewhere into a buffer that is then sent. The bytes are
    /// atomic because another process can reach shared memory: a `&mut [u8]` there would let a
    /// misbehaving peer break Rust's aliasing rules. Relaxed stores compile to plain writes.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&[AtomicU8])) -> Result<(), Error> {
        let staged = |fill: &mut dyn FnMut(&[AtomicU8])| -> Vec<u8> {
            let mut buf = vec![0u8; len];
            fill(procom_sys::mapping::atomic_bytes(&mut buf));
            buf
        };
        let mut fill = Some(fill);
        let mut call = |b: &[AtomicU8]| {
            if let Some(f) = fill.take() {
                f(b);
            }
        };
        let result = match &mut self.flavor {
            SenderFlavor::Shm(s) => {
                s.send_with(len, None, false, |slot| call(slot.as_atomic_bytes()))
            }
            SenderFlavor::Mq { .. } | SenderFlavor::Msg { .. } | SenderFlavor::Dgram { .. } => {
                let buf = staged(&mut call);
                return self.send(buf).map_err(SendError::into_error);
            }
            SenderFlavor::Stream(s) => {
                let buf = staged(&mut call);
                s.send(&buf, None, false)
            }
        };
        result.map_err(|e| e.object(&self.endpoint))
    }

    /// Sends a message, waiting as long as it takes for room.
    pub fn send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        self.send_inner(msg, None, false)
    }

    /// Sends a message if there is room now; otherwise fails with [`ErrorKind::Full`] and
    /// hands the message back.
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        self.send_inner(msg, Some(Instant::now()), true)
    }

    /// Sends a message, waiting at most `timeout`; then fails with [`ErrorKind::Timeout`].
    pub fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendError<M>> {
        self.send_inner(msg, deadline_after(timeout), false)
    }

    /// Sends a message, waiting until `deadline` at most.
    pub fn send_deadline<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        deadline: Instant,
    ) -> Result<(), SendError<M>> {
        self.send_inner(msg, Some(deadline), false)
    }

    fn send_inner<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), SendError<M>> {
        let result = match &mut self.flavor {
            SenderFlavor::Stream(s) => s.send(msg.as_ref(), deadline, is_try),
            SenderFlavor::Shm(s) => s.send(msg.as_ref(), deadline, is_try),
            SenderFlavor::Mq { q, prio, max } => match msg.as_ref().len() {
                n if n > *max => Err(Error::too_large(n as u64, *max as u64)),
                _ => q.send_inner(msg.as_ref(), *prio, deadline, is_try),
            },
            SenderFlavor::Msg { q, mtype, max } => match msg.as_ref().len() {
                n if n > *max => Err(Error::too_large(n as u64, *max as u64)),
                _ => q.send_inner(*mtype, msg.as_ref(), deadline, is_try),
            },
            SenderFlavor::Dgram { s, max } => match msg.as_ref().len() {
                n if n > *max => Err(Error::too_large(n as u64, *max as u64)),
                _ => s.send(msg.as_ref(), deadline, is_try),
            },
        };
        result.map_err(|e| SendError::new(msg, e.object(&self.endpoint)))
    }
}

impl StreamSender {
    fn send(
        &mut self,
        payload: &[u8],
        mut deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), Error> {
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

// ---------------------------------------------------------------------------------------------
// Receiver

/// The receiving side of a channel.
#[derive(Debug)]
pub struct Receiver {
    endpoint: String,
    flavor: ReceiverFlavor,
}

#[derive(Debug)]
enum ReceiverFlavor {
    Stream(StreamReceiver),
    Shm(ShmReceiver),
    Mq {
        q: Queue,
        max: usize,
    },
    Msg {
        q: MsgQueue,
        selector: i64,
        max: usize,
    },
    /// A listening stream socket that accepts its one peer on the first receive.
    Listen {
        listener: Listener,
        conn: Option<Box<Receiver>>,
    },
    Dgram {
        r: DgramReceiver,
        max: usize,
    },
}

#[derive(Debug)]
struct StreamReceiver {
    r: StreamReader,
    framing: Framing,
    max: usize,
    /// Set after a framing error: what was wrong, repeated to every later call.
    broken: Option<String>,
    _owner: Option<Fifo>,
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
        match &ep {
            Endpoint::Stdio => Receiver::connect_with(ep, opts),
            Endpoint::Fifo { path } => {
                let mut fifo = Fifo::create_inner(path, fifo::DEFAULT_MODE)?;
                let fd = fifo
                    .take_reader()
                    .ok_or_else(|| Error::new(ErrorKind::Io).object(&ep))?;
                let mut r = Receiver::from_fd(fd, ep.to_string(), opts);
                if let ReceiverFlavor::Stream(s) = &mut r.flavor {
                    s._owner = Some(fifo);
                }
                Ok(r)
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => {
                let listener = Listener::bind(&ep, opts)?;
                Ok(Receiver {
                    endpoint: listener.local_endpoint().to_string(),
                    flavor: ReceiverFlavor::Listen {
                        listener,
                        conn: None,
                    },
                })
            }
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                let r = crate::socket::bind_dgram(&ep, opts.framing)?;
                Ok(Receiver {
                    endpoint: r.local_endpoint().to_string(),
                    flavor: ReceiverFlavor::Dgram {
                        r,
                        max: opts.max_message,
                    },
                })
            }
            Endpoint::Mq {
                name,
                capacity,
                msgsize,
            } => Ok(Receiver {
                endpoint: ep.to_string(),
                flavor: ReceiverFlavor::Mq {
                    q: Queue::create(name, *capacity, *msgsize)?,
                    max: opts.max_message,
                },
            }),
            Endpoint::Msg { key, mtype } => Ok(Receiver {
                endpoint: ep.to_string(),
                flavor: ReceiverFlavor::Msg {
                    q: MsgQueue::create(key)?,
                    selector: mtype.unwrap_or(0),
                    max: opts.max_message,
                },
            }),
            Endpoint::Shm { name, capacity } => Ok(Receiver {
                endpoint: ep.to_string(),
                flavor: ReceiverFlavor::Shm(
                    ShmReceiver::bind(name, *capacity, opts.spin, opts.max_message)
                        .map_err(|e| e.object(&ep))?,
                ),
            }),
        }
    }

    /// Receives from an existing endpoint, with default [`Options`].
    pub fn connect(endpoint: impl ToEndpoint) -> Result<Receiver, Error> {
        Receiver::connect_with(endpoint, &Options::default())
    }

    /// Receives from an existing endpoint. Opening does not wait for a writer.
    pub fn connect_with(endpoint: impl ToEndpoint, opts: &Options) -> Result<Receiver, Error> {
        let ep = endpoint.to_endpoint()?;
        match &ep {
            Endpoint::Stdio => Ok(Receiver::from_fd(
                stdio_fd(std::io::stdin().as_fd(), &ep)?,
                ep.to_string(),
                opts,
            )),
            Endpoint::Fifo { path } => Ok(Receiver::from_fd(
                fifo::open_read_now(path)?,
                ep.to_string(),
                opts,
            )),
            // A shared-memory channel always belongs to its receiver: connecting creates it.
            Endpoint::Shm { .. } => Receiver::bind_with(ep, opts),
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } => Ok(Receiver::from_fd(
                crate::socket::connect_stream(&ep, opts.open_timeout)?,
                ep.to_string(),
                opts,
            )),
            // A datagram receiver is always the one that binds.
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => Receiver::bind_with(ep, opts),
            Endpoint::Mq { name, .. } => Ok(Receiver {
                endpoint: ep.to_string(),
                flavor: ReceiverFlavor::Mq {
                    q: Queue::open_with(name, true, false)?,
                    max: opts.max_message,
                },
            }),
            Endpoint::Msg { key, mtype } => Ok(Receiver {
                endpoint: ep.to_string(),
                flavor: ReceiverFlavor::Msg {
                    q: MsgQueue::open_with(key, true, false)?,
                    selector: mtype.unwrap_or(0),
                    max: opts.max_message,
                },
            }),
        }
    }

    /// Receives from any byte-stream descriptor, framed as `opts` says. `name` is how errors
    /// refer to it.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Receiver {
        Receiver {
            endpoint: name.into(),
            flavor: ReceiverFlavor::Stream(StreamReceiver {
                r: StreamReader::new(fd.into()).with_budget(opts.budget.clone()),
                framing: opts.framing,
                max: opts.max_message,
                broken: None,
                _owner: None,
            }),
        }
    }

    /// The endpoint this receiver listens on, as text.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Gives up the receiver and returns its descriptor. Bytes it had read but not yet
    /// delivered are lost; an object it owned is kept, no longer removed on drop.
    pub fn into_fd(self) -> Option<OwnedFd> {
        match self.flavor {
            ReceiverFlavor::Stream(s) => {
                if let Some(owner) = s._owner {
                    owner.keep();
                }
                Some(s.r.into_fd())
            }
            ReceiverFlavor::Mq { q, .. } => q.into_fd(),
            ReceiverFlavor::Dgram { r, .. } => Some(r.into_fd()),
            ReceiverFlavor::Listen { conn, .. } => conn.and_then(|c| c.into_fd()),
            ReceiverFlavor::Shm(_) | ReceiverFlavor::Msg { .. } => None,
        }
    }

    /// The name of the object this receiver created, for removal from another thread (see
    /// [`Cleanup`]): the socket file of a `unix:` or `unixgram:` path, a `shm:` channel's
    /// segment, a `fifo:` it created. `None` when it created nothing named.
    pub fn cleanup(&self) -> Option<Cleanup> {
        match &self.flavor {
            ReceiverFlavor::Stream(s) => s._owner.as_ref().and_then(Fifo::cleanup),
            ReceiverFlavor::Dgram { r, .. } => r.cleanup(),
            ReceiverFlavor::Listen { listener, .. } => listener.cleanup(),
            ReceiverFlavor::Shm(r) => r.cleanup(),
            ReceiverFlavor::Mq { .. } | ReceiverFlavor::Msg { .. } => None,
        }
    }

    /// The descriptor to poll for readability, where the mechanism has one. A datagram
    /// receiver's socket may carry a receive timeout procom set for a deadline (`SO_RCVTIMEO`;
    /// [`Receiver::into_fd`] clears it): read it through the receiver, not directly.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.flavor {
            ReceiverFlavor::Stream(s) => Some(s.r.as_fd()),
            ReceiverFlavor::Mq { q, .. } => Some(q.as_fd()),
            ReceiverFlavor::Dgram { r, .. } => Some(r.as_fd()),
            ReceiverFlavor::Listen { conn, .. } => conn.as_ref().and_then(|c| c.as_fd()),
            ReceiverFlavor::Shm(_) | ReceiverFlavor::Msg { .. } => None,
        }
    }

    /// Receives a message and hands it to `f` in place: on shared memory the bytes are read
    /// straight from the ring (the zero-copy path) and released when `f` returns. They are
    /// atomic for the reason given at [`Sender::send_with`].
    pub fn recv_with<T>(&mut self, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        let atomic = procom_sys::mapping::atomic_bytes;
        let result = match &mut self.flavor {
            ReceiverFlavor::Shm(s) => s.recv_with(None, false, |m| f(m.as_atomic_bytes())),
            ReceiverFlavor::Mq { .. }
            | ReceiverFlavor::Msg { .. }
            | ReceiverFlavor::Dgram { .. }
            | ReceiverFlavor::Listen { .. } => {
                return self.recv().map(|mut m| f(atomic(&mut m)));
            }
            // Lent from the reader's buffer: no allocation and no copy per message.
            ReceiverFlavor::Stream(s) => s.recv_map(None, false, |m| f(atomic(m))),
        };
        result.map_err(|e| e.object(&self.endpoint))
    }

    /// Receives a message into `buf`, replacing what it held and reusing its allocation;
    /// returns the message's length. A loop that receives into one buffer allocates nothing
    /// per message (on shared memory and byte streams; queues and datagrams still receive
    /// into a fresh buffer first).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let result = match &mut self.flavor {
            ReceiverFlavor::Shm(s) => s.recv_with(None, false, |m| {
                // Only bytes beyond the old length are zeroed before the copy overwrites them.
                buf.resize(m.len(), 0);
                m.copy_to(buf);
                m.len()
            }),
            ReceiverFlavor::Stream(s) => s.recv_map(None, false, |m| {
                buf.clear();
                buf.extend_from_slice(m);
                m.len()
            }),
            _ => {
                *buf = self.recv()?;
                return Ok(buf.len());
            }
        };
        result.map_err(|e| e.object(&self.endpoint))
    }

    /// For datagram endpoints: how many datagrams arrived, and (UDP with length framing) how
    /// many sequence numbers were skipped or came late.
    pub fn datagram_stats(&self) -> Option<DatagramStats> {
        match &self.flavor {
            ReceiverFlavor::Dgram { r, .. } => Some(r.stats),
            _ => None,
        }
    }

    /// Receives a message, waiting as long as it takes.
    ///
    /// On `udp:` and `unixgram:` endpoints, [`ErrorKind::TooLarge`] and
    /// [`ErrorKind::Malformed`] concern one datagram, which is discarded and counted
    /// ([`DatagramStats::refused`]): the receiver stays usable, and the next receive gets the
    /// next datagram. (On byte streams those errors end the stream: its framing is lost.)
    pub fn recv(&mut self) -> Result<Vec<u8>, Error> {
        self.recv_inner(None, false)
    }

    /// Receives a message if one is waiting; otherwise fails with [`ErrorKind::Empty`].
    pub fn try_recv(&mut self) -> Result<Vec<u8>, Error> {
        self.recv_inner(Some(Instant::now()), true)
    }

    /// Receives a message, waiting at most `timeout`; then fails with [`ErrorKind::Timeout`].
    /// Part of a message that arrived in time is kept for the next call.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        self.recv_inner(deadline_after(timeout), false)
    }

    /// Receives a message, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.recv_inner(Some(deadline), false)
    }

    /// Hands the next message's bytes to `f`: straight from the reader's buffer on byte
    /// streams (no allocation), from a received copy elsewhere. For decoders (typed channels).
    pub(crate) fn recv_map<T>(
        &mut self,
        deadline: Option<Instant>,
        is_try: bool,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, Error> {
        match &mut self.flavor {
            ReceiverFlavor::Stream(s) => s
                .recv_map(deadline, is_try, |m| f(m))
                .map_err(|e| e.object(&self.endpoint)),
            _ => self.recv_inner(deadline, is_try).map(|m| f(&m)),
        }
    }

    fn recv_inner(&mut self, deadline: Option<Instant>, is_try: bool) -> Result<Vec<u8>, Error> {
        let result = match &mut self.flavor {
            ReceiverFlavor::Stream(s) => s.recv(deadline, is_try),
            ReceiverFlavor::Shm(s) => s.recv(deadline, is_try),
            ReceiverFlavor::Mq { q, max } => q
                .recv_inner(deadline, is_try)
                .and_then(|(m, _)| check_max(m, *max)),
            ReceiverFlavor::Msg { q, selector, max } => q
                .recv_inner(*selector, deadline, is_try)
                .and_then(|(_, m)| check_max(m, *max)),
            ReceiverFlavor::Dgram { r, max } => r.recv(*max, deadline, is_try),
            ReceiverFlavor::Listen { listener, conn } => {
                if conn.is_none() {
                    match listener.accept_deadline(deadline) {
                        Ok(c) => *conn = Some(Box::new(c.receiver)),
                        Err(e) if e.kind() == ErrorKind::Timeout && is_try => {
                            return Err(Error::new(ErrorKind::Empty)
                                .detail("no client has connected yet")
                                .object(&self.endpoint));
                        }
                        Err(e) => return Err(e),
                    }
                }
                match conn {
                    Some(c) => return c.recv_inner(deadline, is_try),
                    None => Err(Error::new(ErrorKind::Io)),
                }
            }
        };
        result.map_err(|e| e.object(&self.endpoint))
    }
}

impl StreamReceiver {
    fn recv(&mut self, deadline: Option<Instant>, is_try: bool) -> Result<Vec<u8>, Error> {
        self.recv_map(deadline, is_try, |m| m.to_vec())
    }

    /// Hands the next message to `f` in the reader's own buffer (no allocation, no copy).
    fn recv_map<T>(
        &mut self,
        deadline: Option<Instant>,
        is_try: bool,
        f: impl FnOnce(&mut [u8]) -> T,
    ) -> Result<T, Error> {
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

/// A message a queue delivered that is over the receiver's limit: it is consumed (the kernel
/// already handed it over) and reported, never returned.
fn check_max(m: Vec<u8>, max: usize) -> Result<Vec<u8>, Error> {
    if m.len() > max {
        return Err(Error::too_large(m.len() as u64, max as u64));
    }
    Ok(m)
}
