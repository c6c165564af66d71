//! `procom mq create|info|rm NAME`: POSIX message queues (names like `/jobs`).

use procom::mq::Queue;
use serde_json::json;

use crate::cli::MqCommand;

pub fn run(cmd: MqCommand) -> anyhow::Result<()> {
    match cmd {
        MqCommand::Create {
            name,
            capacity,
            msgsize,
            share,
        } => {
            let (mode, group) = super::share(&share)?;
            let q = Queue::create_with_mode(&name, capacity, msgsize, mode)?;
            if let Some(gid) = group {
                q.set_group(gid)?; // on failure `q` is dropped, which removes it
            }
            // Kept: the queue lives in the kernel until `procom mq rm` (or a reboot).
            let _ = q.keep();
        }
        MqCommand::Info { name, json } => {
            // Reading the attributes needs the queue open in either direction.
            let q = Queue::open_with(&name, true, false)
                .or_else(|_| Queue::open_with(&name, false, true))?;
            let a = q.attributes()?;
            let st = rustix::fs::fstat(&q).map_err(|e| {
                procom::Error::os("read its owner", e.into()).object(format!("mq:{name}"))
            })?;
            let l = procom::mq::limits();
            let rlimit = procom::mq::rlimit_msgqueue();
            if json {
                return super::json_line(&json!({
                    "name": name,
                    "messages": a.count,
                    "capacity": a.max_messages,
                    "msgsize": a.msgsize,
                    "mode": format!("{:04o}", st.st_mode & 0o777),
                    "uid": st.st_uid,
                    "gid": st.st_gid,
                    "limits": {
                        "msg_max": l.msg_max,
                        "msgsize_max": l.msgsize_max,
                        "queues_max": l.queues_max,
                        "rlimit_msgqueue": rlimit,
                    },
                }));
            }
            let rlimit = rlimit.map_or("unlimited".to_string(), |b| format!("{b} bytes"));
            crate::cmd::write_stdout(&[format!(
                "messages: {}\ncapacity: {}\nmsgsize: {}\n\
                 limits: msg_max={} msgsize_max={} queues_max={} (fs.mqueue); RLIMIT_MSGQUEUE {rlimit}\n\
                 mode: {:o}\nuid: {}\ngid: {}\n",
                a.count,
                a.max_messages,
                a.msgsize,
                l.msg_max,
                l.msgsize_max,
                l.queues_max,
                st.st_mode & 0o777,
                st.st_uid,
                st.st_gid
            )
            .as_bytes()])?;
        }
        MqCommand::Rm { name } => procom::mq::remove(&name)?,
    }
    Ok(())
}
