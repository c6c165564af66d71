//! A `tcp:`/`unix:`/`unixpacket:` receiver made with `Receiver::bind`: it listens at once,
//! accepts its one peer on the first receive, then reads that connection (as a byte stream, or
//! packet by packet) until the peer leaves. (A server with many clients uses
//! `socket::Listener`.)

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use crate::budget::Budget;
use crate::cleanup::Cleanup;
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::flavor::packet::PacketReceiver;
use crate::flavor::stream::StreamReceiver;
use crate::flavor::{RecvFlavor, Wait};
use crate::framing::Framing;
use crate::kind::kind_of;
use crate::net::StreamListener;

/// How an accepted connection becomes a receiver: a byte stream, or sequenced packets.
pub(crate) type Accept<R> = fn(OwnedFd, Framing, usize, Option<Budget>) -> R;

/// A byte-stream receiver over an accepted connection.
pub(crate) fn accept_stream(
    fd: OwnedFd,
    framing: Framing,
    max: usize,
    budget: Option<Budget>,
) -> StreamReceiver {
    StreamReceiver::new(fd, framing, max, budget)
}

/// A sequenced-packet receiver over an accepted connection: nothing is ever partly
/// received, so there is nothing to charge; with a budget it makes room only for what arrives
/// and keeps no large buffer.
pub(crate) fn accept_packet(
    fd: OwnedFd,
    framing: Framing,
    max: usize,
    budget: Option<Budget>,
) -> PacketReceiver {
    PacketReceiver::new(fd, framing, max).shrinking(budget.is_some())
}

/// Listens, then receives from the first client.
#[derive(Debug)]
pub(crate) struct ListenReceiver<R> {
    listener: StreamListener,
    framing: Framing,
    max: usize,
    budget: Option<Budget>,
    accept: Accept<R>,
    /// The accepted client, and how errors name it.
    conn: Option<(R, String)>,
    /// What kind of object the listener is, for errors.
    kind: ObjectKind,
}

impl<R: RecvFlavor> ListenReceiver<R> {
    pub(crate) fn new(
        listener: StreamListener,
        framing: Framing,
        max: usize,
        budget: Option<Budget>,
        accept: Accept<R>,
    ) -> ListenReceiver<R> {
        ListenReceiver {
            kind: kind_of(listener.endpoint()),
            listener,
            framing,
            max,
            budget,
            accept,
            conn: None,
        }
    }

    /// The connection, accepted first if need be.
    fn conn(&mut self, wait: Wait) -> Result<&mut (R, String), Error> {
        if self.conn.is_none() {
            let (fd, peer) = match self.listener.accept_deadline(wait.deadline()) {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Timeout && wait.is_try() => {
                    return Err(Error::new(ErrorKind::Empty).detail("no client has connected yet"));
                }
                Err(e) => return Err(e),
            };
            let name = peer.connection_name(self.listener.endpoint());
            let r = (self.accept)(fd, self.framing, self.max, self.budget.clone());
            self.conn = Some((r, name));
        }
        self.conn.as_mut().ok_or_else(|| Error::new(ErrorKind::Io))
    }
}

impl<R: RecvFlavor> RecvFlavor for ListenReceiver<R> {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let kind = self.kind;
        let (r, name) = self.conn(wait)?;
        r.recv_into(wait, buf)
            .map_err(|e| e.object_of(kind, &*name))
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        let kind = self.kind;
        let (r, name) = self.conn(wait)?;
        r.recv(wait).map_err(|e| e.object_of(kind, &*name))
    }

    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        let kind = self.kind;
        let (r, name) = self.conn(wait)?;
        r.recv_with(wait, f).map_err(|e| e.object_of(kind, &*name))
    }

    fn recv_bytes<T>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> T) -> Result<T, Error> {
        let kind = self.kind;
        let (r, name) = self.conn(wait)?;
        r.recv_bytes(wait, f).map_err(|e| e.object_of(kind, &*name))
    }

    fn recv_lent<'a>(&'a mut self, wait: Wait, spare: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
        let kind = self.kind;
        let (r, name) = self.conn(wait)?;
        r.recv_lent(wait, spare)
            .map_err(|e| e.object_of(kind, &*name))
    }

    /// The connection's descriptor once a client is accepted; before, the listening socket's
    /// (readable when a client is waiting, which is what the first receive waits for).
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.conn {
            Some((r, _)) => r.as_fd(),
            None => Some(self.listener.fd()),
        }
    }

    #[cfg(feature = "tokio")]
    fn has_buffered(&self) -> bool {
        self.conn.as_ref().is_some_and(|(r, _)| r.has_buffered())
    }

    #[cfg(feature = "tokio")]
    fn drained(&self) -> bool {
        self.conn.as_ref().is_some_and(|(r, _)| r.drained())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        self.conn.and_then(|(r, _)| r.into_fd())
    }

    fn cleanup(&self) -> Option<Cleanup> {
        self.listener.cleanup()
    }
}
