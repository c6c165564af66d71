//! [`Sender`] and [`Receiver`]: one pair of types for every mechanism, dispatching statically
//! over a private flavor enum (crossbeam-channel's design) to the flavors in `flavor/`.
//!
//! Every blocking operation has a `try_` form (never waits), a `_timeout` form and a
//! `_deadline` form; all four are one internal call with a [`Wait`](crate::flavor::Wait) value.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::budget::Budget;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::framing::{DEFAULT_MAX_MESSAGE, Framing};
use crate::kind::kind_of;

/// How a channel is opened and framed.
///
/// Which options each endpoint honours (the others are ignored there):
///
/// | option | honoured by |
/// |---|---|
/// | `framing` | byte streams (`-`, `fifo:`, `unix:`, `tcp:`, descriptors); `udp:` and `unixgram:` (see [`Framing`]) |
/// | `max_message` | every endpoint, on both sides |
/// | `open_timeout` | `fifo:` senders (waiting for a reader), `tcp:`/`unix:`/`unixpacket:` connects, and binding senders waiting for their client |
/// | `budget` | byte-stream receivers (a server's connections); a `unixpacket:` receiver with one makes room only for the messages that arrive (learning each one's length first) and keeps none over 128 KiB between messages |
/// | `mode`, `group` | what a `bind` creates: a `fifo:`, `mq:`, `msg:` or `shm:` object, a `unix:`/`unixgram:`/`unixpacket:` socket file (and a [`Listener`](crate::socket::Listener)'s) |
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
    /// The permission bits of the named object a `bind` creates (a FIFO, a queue, a
    /// shared-memory segment, a Unix socket file), applied exactly whatever the umask; 0o600
    /// by default. A socket file must be writable by whoever connects or sends to it.
    pub mode: u32,
    /// The group that object is given to (`None`: the creator's). See [`crate::access`]:
    /// an unprivileged creator may name only a group it belongs to.
    pub group: Option<u32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            framing: Framing::Length,
            max_message: DEFAULT_MAX_MESSAGE,
            open_timeout: None,
            budget: None,
            mode: crate::access::Access::PRIVATE.mode,
            group: None,
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

    /// Sets the permission bits of what a `bind` creates (like 0o660; see [`Options::mode`]).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode;
        self
    }

    /// Gives what a `bind` creates to group `gid` (see [`Options::group`]).
    #[must_use]
    pub fn group(mut self, gid: u32) -> Options {
        self.group = Some(gid);
        self
    }

    /// The mode and group of what a `bind` creates, the mode checked.
    pub(crate) fn access(&self, ep: &Endpoint) -> Result<crate::access::Access, Error> {
        Ok(crate::access::Access {
            mode: crate::access::check_mode(self.mode).map_err(|e| e.object_of(kind_of(ep), ep))?,
            group: self.group,
        })
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
            SenderFlavor::Packet($f) => $body,
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
            ReceiverFlavor::Packet($f) => $body,
            ReceiverFlavor::ListenPacket($f) => $body,
        }
    };
}

/// How the async face of a channel waits for it (see [`crate::aio`]).
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// On the flavor's descriptor, through the reactor.
    Descriptor,
    /// On the shared-memory ring's futex, slept on by a waiter thread.
    Futex,
    /// No descriptor and no futex (System V queues): the blocking call itself runs on a
    /// waiter thread.
    Thread,
}

// Declared after the dispatch macros, which they use.
mod receiver;
mod sender;

pub use receiver::Receiver;
pub use sender::Sender;

/// `Sender` and `Receiver` move between threads and can be shared by reference (every
/// operation that changes them takes `&mut self`).
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Sender>();
    send_and_sync::<Receiver>();
};
