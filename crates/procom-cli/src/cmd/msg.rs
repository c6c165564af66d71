//! `procom msg create|info|rm KEY|PATH`: System V message queues.

use procom::endpoint::SysvKey;
use procom::msg::MsgQueue;
use serde_json::json;

use crate::cli::MsgCommand;

/// A key as `ipcs` shows it (decimal or 0x-hex) or a path for ftok, as in `msg:` endpoints.
pub fn parse_key(text: &str) -> anyhow::Result<SysvKey> {
    match procom::Endpoint::parse(&format!("msg:{text}"))? {
        procom::Endpoint::Msg { key, mtype: None } => Ok(key),
        _ => Err(super::usage!("`{text}` is not a System V key or path")),
    }
}

/// A time from `msgctl` (seconds since the epoch, 0 for never) in ISO 8601 UTC.
pub fn utc(secs: i64) -> Option<String> {
    let secs = u64::try_from(secs).ok().filter(|s| *s > 0)?;
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// A raw time with its readable form: `1700000000 (2023-11-14T22:13:20Z)`, `0 (never)`.
fn time_line(secs: i64) -> String {
    format!("{secs} ({})", utc(secs).unwrap_or_else(|| "never".into()))
}

pub fn run(cmd: MsgCommand) -> anyhow::Result<()> {
    match cmd {
        MsgCommand::Create {
            key,
            max_bytes,
            share,
        } => {
            let (mode, group) = super::share(&share)?;
            let q = MsgQueue::create_with_mode(&parse_key(&key)?, mode)?;
            // On failure below `q` is dropped, which removes it.
            if let Some(bytes) = max_bytes {
                q.set_max_bytes(bytes)?;
            }
            if let Some(gid) = group {
                q.set_group(gid)?;
            }
            // Kept: the queue lives in the kernel until `procom msg rm` (or a reboot).
            let _ = q.keep();
        }
        MsgCommand::Info { key, json } => {
            let q = MsgQueue::open_with(&parse_key(&key)?, true, false)?;
            let s = q.stat()?;
            let l = procom::msg::limits();
            let shown_key = SysvKey::Key(s.key).to_string();
            if json {
                return super::json_line(&json!({
                    "key": shown_key,
                    "id": q.id(),
                    "messages": s.count,
                    "bytes": s.bytes,
                    "max_bytes": s.max_bytes,
                    "last_sender": s.last_sender,
                    "last_receiver": s.last_receiver,
                    "send_time": s.send_time,
                    "send_time_utc": utc(s.send_time),
                    "receive_time": s.receive_time,
                    "receive_time_utc": utc(s.receive_time),
                    "change_time": s.change_time,
                    "change_time_utc": utc(s.change_time),
                    "mode": format!("{:04o}", s.mode),
                    "uid": s.uid,
                    "gid": s.gid,
                    "limits": {"msgmax": l.msgmax, "msgmnb": l.msgmnb, "msgmni": l.msgmni},
                }));
            }
            crate::cmd::write_stdout(&[format!(
                "key: {shown_key}\nid: {}\nmessages: {}\nbytes: {}\nmax_bytes: {}\nlast_sender: {}\n\
                 last_receiver: {}\nsend_time: {}\nreceive_time: {}\nchange_time: {}\n\
                 mode: {:o}\nuid: {}\ngid: {}\n\
                 limits: msgmax={} msgmnb={} msgmni={} (kernel)\n",
                q.id(),
                s.count,
                s.bytes,
                s.max_bytes,
                s.last_sender,
                s.last_receiver,
                time_line(s.send_time),
                time_line(s.receive_time),
                time_line(s.change_time),
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
