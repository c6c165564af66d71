//! The POSIX message-queue flavor (`mq:`): one message per `mq_send`, the sender's priority
//! from its endpoint's `?priority=`, highest priority received first.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::Error;
use crate::flavor::{MessageMeta, RecvFlavor, SendFlavor, Wait, check_received};
use crate::mq::Queue;

/// Sends to a queue with one priority.
#[derive(Debug)]
pub(crate) struct MqSender {
    pub(crate) q: Queue,
    pub(crate) prio: u32,
}

impl SendFlavor for MqSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.q.send_inner(msg, self.prio, wait)
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.q.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        self.q.into_fd()
    }
}

/// Receives from a queue, refusing a message over its limit.
#[derive(Debug)]
pub(crate) struct MqReceiver {
    pub(crate) q: Queue,
    pub(crate) max: usize,
}

impl RecvFlavor for MqReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        *buf = self.recv(wait)?;
        Ok(buf.len())
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_meta(wait).map(|(m, _)| m)
    }

    fn recv_meta(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        let (m, priority) = self.q.recv_inner(wait)?;
        check_received(m.len(), self.max)?;
        let meta = MessageMeta {
            priority: Some(priority),
            ..MessageMeta::default()
        };
        Ok((m, meta))
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.q.as_fd())
    }

    fn into_fd(self) -> Option<OwnedFd> {
        self.q.into_fd()
    }
}
