//! The System V message-queue flavor (`msg:`): a sender stamps its endpoint's `?type=`, a
//! receiver picks with it as a selector. System V queues have no descriptor.

use crate::error::Error;
use crate::flavor::{MessageMeta, RecvFlavor, SendFlavor, Wait, check_received};
use crate::msg::MsgQueue;

/// Sends messages of one type.
#[derive(Debug)]
pub(crate) struct MsgSender {
    pub(crate) q: MsgQueue,
    pub(crate) mtype: i64,
}

impl SendFlavor for MsgSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.q.send_inner(msg, self.mtype, wait)
    }
}

/// Receives the messages a selector picks, refusing one over its limit.
#[derive(Debug)]
pub(crate) struct MsgReceiver {
    pub(crate) q: MsgQueue,
    pub(crate) selector: i64,
    pub(crate) max: usize,
}

impl RecvFlavor for MsgReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        *buf = self.recv(wait)?;
        Ok(buf.len())
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_meta(wait).map(|(m, _)| m)
    }

    fn recv_meta(&mut self, wait: Wait) -> Result<(Vec<u8>, MessageMeta), Error> {
        let (m, mtype) = self.q.recv_inner(self.selector, wait)?;
        check_received(m.len(), self.max)?;
        let meta = MessageMeta {
            mtype: Some(mtype),
            ..MessageMeta::default()
        };
        Ok((m, meta))
    }
}
