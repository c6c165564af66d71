//! `procom mq create|info|rm NAME`: POSIX message queues (names like `/jobs`).

use procom::mq::Queue;

use crate::cli::MqCommand;

pub fn run(cmd: MqCommand) -> anyhow::Result<()> {
    match cmd {
        MqCommand::Create {
            name,
            capacity,
            msgsize,
        } => {
            // Kept: the queue lives in the kernel until `procom mq rm` (or a reboot).
            let _ = Queue::create(&name, capacity, msgsize)?.keep();
        }
        MqCommand::Info { name } => {
            // Reading the attributes needs the queue open in either direction.
            let q = Queue::open_with(&name, true, false)
                .or_else(|_| Queue::open_with(&name, false, true))?;
            let a = q.attributes()?;
            let l = procom::mq::limits();
            let rlimit = procom::mq::rlimit_msgqueue()
                .map_or("unlimited".to_string(), |b| format!("{b} bytes"));
            crate::cmd::write_stdout(&[format!(
                "messages: {}\ncapacity: {}\nmsgsize: {}\n\
                 limits: msg_max={} msgsize_max={} queues_max={} (fs.mqueue); RLIMIT_MSGQUEUE {rlimit}\n",
                a.count, a.max_messages, a.msgsize, l.msg_max, l.msgsize_max, l.queues_max
            )
            .as_bytes()])?;
        }
        MqCommand::Rm { name } => procom::mq::remove(&name)?,
    }
    Ok(())
}
