//! `procom msg create|info|rm KEY|PATH`: System V message queues.

use procom::endpoint::SysvKey;
use procom::msg::MsgQueue;

use crate::cli::MsgCommand;

/// A key as `ipcs` shows it (decimal or 0x-hex) or a path for ftok, as in `msg:` endpoints.
pub fn parse_key(text: &str) -> anyhow::Result<SysvKey> {
    match procom::Endpoint::parse(&format!("msg:{text}"))? {
        procom::Endpoint::Msg { key, mtype: None } => Ok(key),
        _ => Err(super::usage!("`{text}` is not a System V key or path")),
    }
}

pub fn run(cmd: MsgCommand) -> anyhow::Result<()> {
    match cmd {
        MsgCommand::Create { key, max_bytes } => {
            let q = MsgQueue::create(&parse_key(&key)?)?;
            if let Some(bytes) = max_bytes {
                q.set_max_bytes(bytes)?; // on failure `q` is dropped, which removes it
            }
            // Kept: the queue lives in the kernel until `procom msg rm` (or a reboot).
            let _ = q.keep();
        }
        MsgCommand::Info { key } => {
            let q = MsgQueue::open_with(&parse_key(&key)?, true, false)?;
            let s = q.stat()?;
            let l = procom::msg::limits();
            crate::cmd::write_stdout(&[format!(
                "id: {}\nmessages: {}\nbytes: {}\nmax_bytes: {}\nlast_sender: {}\n\
                 last_receiver: {}\nsend_time: {}\nreceive_time: {}\nchange_time: {}\n\
                 mode: {:o}\nuid: {}\ngid: {}\n\
                 limits: msgmax={} msgmnb={} msgmni={} (kernel)\n",
                q.id(),
                s.count,
                s.bytes,
                s.max_bytes,
                s.last_sender,
                s.last_receiver,
                s.send_time,
                s.receive_time,
                s.change_time,
                s.mode,
                s.uid,
                s.gid,
                l.msgmax,
                l.msgmnb,
                l.msgmni
            )
            .as_bytes()])?;
        }
        MsgCommand::Rm { key } => procom::msg::remove(&parse_key(&key)?)?,
    }
    Ok(())
}
