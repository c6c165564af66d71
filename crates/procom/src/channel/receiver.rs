//! [`Receiver`]: the receiving side, dispatching over its flavors with `dispatch_recv!`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use super::{Options, ToEndpoint, stdio_fd};
use crate::access::Access;
use crate::cleanup::Cleanup;
use crate::endpoint::{Endpoint, SysvKey};
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::fifo::{self, Fifo};
use crate::flavor::dgram::{DatagramStats, DgramReceiver, bind_dgram};
use crate::flavor::listen::{ListenReceiver, accept_packet, accept_stream};
use crate::flavor::mq::MqReceiver;
use crate::flavor::msg::MsgReceiver;
use crate::flavor::packet::{PacketReceiver, is_packet_socket};
use crate::flavor::shm::ShmReceiver;
use crate::flavor::stream::StreamReceiver;
use crate::flavor::{MessageMeta, RecvFlavor, Wait};
use crate::kind::kind_of;
use crate::mq::Queue;
use crate::msg::MsgQueue;
use crate::net::{StreamListener, connect_stream};
use crate::stream::deadline_after;

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
    Listen(ListenReceiver<StreamReceiver>),
    Shm(ShmReceiver),
    Mq(MqReceiver),
    Msg(MsgReceiver),
    Dgram(DgramReceiver),
    /// A connected sequenced-packet socket.
    Packet(PacketReceiver),
    /// A listening sequenced-packet socket that accepts its one peer on the first receive.
    ListenPacket(ListenReceiver<PacketReceiver>),
}

impl Receiver {
    /// Creates the endpoint's object and receives from it, with default [`Options`]. The
    /// receiver owns the object and removes it when dropped. `-` is standard input.
    ///
    /// For `fifo:` the FIFO is created (mode 0600) and opened at once; receiving waits for a
    /// writer to arrive, and reports [`ErrorKind::PeerGone`] once the last writer has closed.
    ///
    /// For `tcp:`, `unix:` and `unixpacket:` the receiver listens at once and accepts its one peer on the
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
        let access = opts.access(&ep)?;
        let (name, flavor) = match &ep {
            Endpoint::Stdio => return Receiver::connect_with(ep, opts),
            Endpoint::Fifo { path } => {
                let mut fifo = Fifo::create_inner(path, access.mode)?;
                if let Some(gid) = access.group {
                    fifo.set_group(gid)?;
                }
                let fd = fifo
                    .take_reader()
                    .ok_or_else(|| Error::new(ErrorKind::Io).object_of(kind_of(&ep), &ep))?;
                let mut r = Receiver::stream(fd, ep.to_string(), kind_of(&ep), opts);
                if let ReceiverFlavor::Stream(s) = &mut r.flavor {
                    s.owner = Some(fifo);
                }
                return Ok(r);
            }
            Endpoint::Tcp { .. } | Endpoint::Unix { .. } | Endpoint::UnixPacket { .. } => {
                let listener = StreamListener::bind(&ep, access)?;
                let name = listener.local_endpoint().to_string();
                let (framing, max, budget) = (opts.framing, opts.max_message, opts.budget.clone());
                let flavor = if matches!(ep, Endpoint::UnixPacket { .. }) {
                    let l = ListenReceiver::new(listener, framing, max, budget, accept_packet);
                    ReceiverFlavor::ListenPacket(l)
                } else {
                    let l = ListenReceiver::new(listener, framing, max, budget, accept_stream);
                    ReceiverFlavor::Listen(l)
                };
                (name, flavor)
            }
            Endpoint::Udp { .. } | Endpoint::UnixGram { .. } => {
                let r = bind_dgram(&ep, opts.framing, opts.max_message, access)?;
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
                    q: created_queue(name, *max_messages, *msgsize, access)?,
                    max: opts.max_message,
                }),
            ),
            Endpoint::Msg { key, mtype } => (
                ep.to_string(),
                ReceiverFlavor::Msg(MsgReceiver {
                    q: created_msg_queue(key, access)?,
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
                        access,
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
                return Ok(Receiver::any_fd(
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
            Endpoint::UnixPacket { .. } => {
                return Ok(Receiver::packet(
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
    /// refer to it. A connected sequenced-packet socket (`SOCK_SEQPACKET`) carries one
    /// message per packet instead, unframed.
    pub fn from_fd(fd: impl Into<OwnedFd>, name: impl Into<String>, opts: &Options) -> Receiver {
        Receiver::any_fd(fd.into(), name.into(), ObjectKind::Descriptor, opts)
    }

    /// The receiving end of an anonymous shared-memory channel (see [`crate::shm::channel`]).
    pub(crate) fn shm_anonymous(rx: ShmReceiver) -> Receiver {
        Receiver {
            endpoint: crate::shm::ANONYMOUS.to_string(),
            kind: ObjectKind::ShmChannel,
            flavor: ReceiverFlavor::Shm(rx),
        }
    }

    /// Attaches the receiving end of an anonymous shared-memory channel that was handed over
    /// as `fd` (the descriptor [`Receiver::into_fd`] gave in another process, or this one; see
    /// [`crate::shm::channel`]). [`ErrorKind::WrongType`] if `fd` is not that end (the sending
    /// end's descriptor, say); [`ErrorKind::AlreadyExists`] if a live process uses the end
    /// already; [`ErrorKind::PeerGone`] if the end was closed.
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
    pub fn from_shm_fd(fd: impl Into<OwnedFd>, opts: &Options) -> Result<Receiver, Error> {
        ShmReceiver::from_fd(fd.into(), opts.max_message, Duration::ZERO)
            .map(Receiver::shm_anonymous)
            .map_err(|e| e.object_of(ObjectKind::ShmChannel, crate::shm::ANONYMOUS))
    }

    /// A sequenced-packet receiver over the connected socket `fd` for an object of `kind`.
    pub(crate) fn packet(
        fd: OwnedFd,
        name: impl Into<String>,
        kind: ObjectKind,
        opts: &Options,
    ) -> Receiver {
        Receiver {
            endpoint: name.into(),
            kind,
            flavor: ReceiverFlavor::Packet(
                PacketReceiver::new(fd, opts.framing, opts.max_message)
                    .shrinking(opts.budget.is_some()),
            ),
        }
    }

    /// A receiver over a descriptor: packet by packet on a sequenced-packet socket, framed
    /// on anything else.
    fn any_fd(fd: OwnedFd, name: String, kind: ObjectKind, opts: &Options) -> Receiver {
        if is_packet_socket(fd.as_fd()) {
            Receiver::packet(fd, name, kind, opts)
        } else {
            Receiver::stream(fd, name, kind, opts)
        }
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
    /// delivered are lost; an object it owned is kept, no longer removed on drop. `None` for
    /// mechanisms without one (a named shared-memory channel). The end of an anonymous
    /// shared-memory channel ([`crate::shm::channel`]) is handed over whole, its messages
    /// staying in the ring: another process (or this one) takes it up with
    /// [`Receiver::from_shm_fd`]. Every copy of that descriptor keeps the end alive for its
    /// sender; once the last is closed, taken up or not, the sender finds it gone.
    pub fn into_fd(self) -> Option<OwnedFd> {
        dispatch_recv!(self.flavor, f => f.into_fd())
    }

    /// The name of the object this receiver created, for removal from another thread (see
    /// [`Cleanup`]): the socket file of a `unix:` or `unixgram:` path, a `shm:` channel's
    /// segment, a `fifo:` it created. `None` when it created nothing named.
    pub fn cleanup(&self) -> Option<Cleanup> {
        dispatch_recv!(&self.flavor, f => f.cleanup())
    }

    /// The descriptor to poll for readability, where the mechanism has one (a `tcp:`/`unix:`
    /// receiver made by `bind`: its listening socket until its client is accepted, then the
    /// connection's). A datagram
    /// receiver's socket may carry a receive timeout procom set for a deadline (`SO_RCVTIMEO`;
    /// [`Receiver::into_fd`] clears it): read it through the receiver, not directly.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        dispatch_recv!(&self.flavor, f => f.as_fd())
    }

    /// Receives a message and hands it to `f` in place: on shared memory the bytes are read
    /// straight from the ring (the zero-copy path) and released when `f` returns. They are
    /// atomic for the reason given at [`Sender::send_with`](super::Sender::send_with).
    pub fn recv_with<T>(&mut self, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_with(Wait::Forever, f))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    /// Receives a message into `buf`, replacing what it held and reusing its allocation;
    /// returns the message's length. A loop that receives into one buffer allocates nothing
    /// per message (on shared memory and byte streams; queues and datagrams still receive
    /// into a fresh buffer first).
    ///
    /// On a Unix stream socket a large message is read straight into `buf`, at its start, so
    /// where `buf` lies matters: the kernel's copy out of the socket's pages ran 20–40%
    /// slower on an AMD EPYC machine when the destination lay 1–15 bytes past the source's
    /// offset within a 4 KiB page. A typed view ([`typed::Receiver::recv_view`]) lies in a
    /// buffer procom places half a page in, clear of that window.
    ///
    /// [`typed::Receiver::recv_view`]: crate::typed::Receiver::recv_view
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

    /// Receives a message with what its mechanism carries beside it ([`MessageMeta`]): a POSIX
    /// queue's priority, a System V queue's type, a datagram's sender and (UDP with length
    /// framing) its sequence number and the gap before it. Where there is nothing of the
    /// kind, the fields are `None`; the bytes are those [`Receiver::recv`] would return.
    pub fn recv_meta(&mut self) -> Result<(Vec<u8>, MessageMeta), Error> {
        self.recv_meta_waiting(Wait::Forever)
    }

    /// [`Receiver::recv_meta`] if a message is waiting; otherwise [`ErrorKind::Empty`].
    pub fn try_recv_meta(&mut self) -> Result<(Vec<u8>, MessageMeta), Error> {
        self.recv_meta_waiting(Wait::Never)
    }

    /// [`Receiver::recv_meta`], waiting at most `timeout`; then [`ErrorKind::Timeout`].
    pub fn recv_meta_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(Vec<u8>, MessageMeta), Error> {
        self.recv_meta_waiting(Wait::until(deadline_after(timeout)))
    }

    /// [`Receiver::recv_meta`], waiting until `deadline` at most.
    pub fn recv_meta_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<(Vec<u8>, MessageMeta), Error> {
        self.recv_meta_waiting(Wait::Until(deadline))
    }

    fn recv_meta_waiting(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_meta(wait))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
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

    /// How the async face waits for this receiver.
    #[cfg(feature = "tokio")]
    pub(crate) fn readiness(&self) -> super::Readiness {
        match self.flavor {
            ReceiverFlavor::Shm(_) => super::Readiness::Futex,
            ReceiverFlavor::Msg(_) => super::Readiness::Thread,
            _ => super::Readiness::Descriptor,
        }
    }

    /// Whether received bytes wait in the receiver (a byte stream's buffer).
    #[cfg(feature = "tokio")]
    pub(crate) fn has_buffered(&self) -> bool {
        dispatch_recv!(&self.flavor, f => f.has_buffered())
    }

    /// Whether the last receive emptied what the kernel held (see `RecvFlavor::drained`).
    #[cfg(feature = "tokio")]
    pub(crate) fn drained(&self) -> bool {
        dispatch_recv!(&self.flavor, f => f.drained())
    }

    /// Shared memory: announces a wait for a message (see `ShmReceiver::arm`).
    #[cfg(feature = "tokio")]
    pub(crate) fn arm(&mut self) -> Result<Option<crate::flavor::shm::Sleep>, Error> {
        match &mut self.flavor {
            ReceiverFlavor::Shm(f) => f.arm().map_err(|e| e.object_of(self.kind, &self.endpoint)),
            _ => Ok(None),
        }
    }

    /// Shared memory: withdraws the announcement of [`Receiver::arm`].
    #[cfg(feature = "tokio")]
    pub(crate) fn disarm(&self) {
        if let ReceiverFlavor::Shm(f) = &self.flavor {
            f.disarm();
        }
    }

    /// A second receiver on the same System V queue that owns nothing, for a waiter thread
    /// to block in.
    #[cfg(feature = "tokio")]
    pub(crate) fn blocking_clone(&self) -> Option<Receiver> {
        match &self.flavor {
            ReceiverFlavor::Msg(f) => Some(Receiver {
                endpoint: self.endpoint.clone(),
                kind: self.kind,
                flavor: ReceiverFlavor::Msg(MsgReceiver {
                    q: f.q.handle(),
                    selector: f.selector,
                    max: f.max,
                }),
            }),
            _ => None,
        }
    }

    /// System V queues: puts a message a waiter thread received for no one back on the queue
    /// (at its end, with its type), waiting for room if the queue filled up meanwhile (the
    /// waiter thread is its own; it ends when the message is back or the queue is removed).
    /// Whether it went back.
    #[cfg(feature = "tokio")]
    pub(crate) fn put_back(&self, msg: &[u8], meta: &MessageMeta) -> bool {
        match (&self.flavor, meta.mtype) {
            (ReceiverFlavor::Msg(f), Some(mtype)) => {
                f.q.send_inner(msg, mtype, Wait::Forever).is_ok()
            }
            _ => false,
        }
    }

    /// Receives the next message and hands it to `decode`, lent until the next receive: from
    /// the flavor's own buffer where the message stays there (sequenced packets), else
    /// received into `spare` (which a Unix stream fills straight from the socket for a large
    /// message). For decoders whose value borrows from the message (typed views).
    pub(crate) fn recv_lent<'a, V>(
        &'a mut self,
        wait: Wait,
        spare: &'a mut Vec<u8>,
        decode: impl FnOnce(&'a [u8]) -> Result<V, Error>,
    ) -> Result<V, Error> {
        let (kind, endpoint) = (self.kind, &self.endpoint);
        dispatch_recv!(&mut self.flavor, r => r.recv_lent(wait, spare))
            .and_then(decode)
            .map_err(|e| e.object_of(kind, endpoint))
    }

    /// [`Receiver::recv_into`] if a message is waiting; otherwise `Empty`.
    #[cfg(feature = "tokio")]
    pub(crate) fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv_into(Wait::Never, buf))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }

    /// `e`, naming this receiver's endpoint.
    #[cfg(feature = "tokio")]
    pub(crate) fn named(&self, e: Error) -> Error {
        e.object_of(self.kind, &self.endpoint)
    }

    fn recv_waiting(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        dispatch_recv!(&mut self.flavor, r => r.recv(wait))
            .map_err(|e| e.object_of(self.kind, &self.endpoint))
    }
}

/// A POSIX queue created with `access` (its owner removes it again if giving it to the group
/// fails).
pub(super) fn created_queue(
    name: &str,
    max_messages: Option<u64>,
    msgsize: Option<u64>,
    access: Access,
) -> Result<Queue, Error> {
    let q = Queue::create_with_mode(name, max_messages, msgsize, access.mode)?;
    if let Some(gid) = access.group {
        q.set_group(gid)?;
    }
    Ok(q)
}

/// A System V queue created with `access` (removed again if giving it to the group fails).
pub(super) fn created_msg_queue(key: &SysvKey, access: Access) -> Result<MsgQueue, Error> {
    let q = MsgQueue::create_with_mode(key, access.mode)?;
    if let Some(gid) = access.group {
        q.set_group(gid)?;
    }
    Ok(q)
}
