//! A `tcp:`/`unix:` receiver made with `Receiver::bind`: it listens at once, accepts its one
//! peer on the first receive, then reads that connection as a byte stream until the peer
//! leaves. (A server with many clients uses `socket::Listener`.)

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use crate::budget::Budget;
use crate::cleanup::Cleanup;
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::flavor::stream::StreamReceiver;
use crate::flavor::{RecvFlavor, Wait};
use crate::framing::Framing;
use crate::kind::kind_of;
use crate::net::StreamListener;

/// Listens, then receives from the first client.
#[derive(Debug)]
pub(crate) struct ListenReceiver {
    listener: StreamListener,
    framing: Framing,
    max: usize,
    budget: Option<Budget>,
    /// The accepted client, and how errors name it.
    conn: Option<(StreamReceiver, String)>,
    /// What kind of object the listener is, for errors.
    kind: ObjectKind,
}

impl ListenReceiver {
    pub(crate) fn new(
        listener: StreamListener,
        framing: Framing,
        max: usize,
        budget: Option<Budget>,
    ) -> ListenReceiver {
        ListenReceiver {
            kind: kind_of(listener.endpoint()),
            listener,
            framing,
            max,
            budget,
            conn: None,
        }
    }

    /// The connection, accepted first if need be.
    fn conn(&mut self, wait: Wait) -> Result<&mut (StreamReceiver, String), Error> {
        if self.conn.is_none() {
            let (fd, peer) = match self.listener.accept_deadline(wait.deadline()) {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Timeout && wait.is_try() => {
                    return Err(Error::new(ErrorKind::Empty).detail("no client has connected yet"));
                }
                Err(e) => return Err(e),
            };
            let name = peer.connection_name(self.listener.endpoint());
            let r = StreamReceiver::new(fd, self.framing, self.max, self.budget.clone());
            self.conn = Some((r, name));
        }
        self.conn.as_mut().ok_or_else(|| Error::new(ErrorKind::Io))
    }
}

impl RecvFlavor for ListenReceiver {
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

    fn into_fd(self) -> Option<OwnedFd> {
        self.conn.and_then(|(r, _)| r.into_fd())
    }

    fn cleanup(&self) -> Option<Cleanup> {
        self.listener.cleanup()
    }
}
