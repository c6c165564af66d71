//! `procom mq create|info|rm NAME` (POSIX) and `procom msg create|info|rm KEY|PATH` (System V).

use procom::endpoint::MsgKey;
use procom::mq::Queue;
use procom::msg::MsgQueue;

use crate::cli::{MqCommand, MsgCommand};

pub fn run_mq(cmd: MqCommand) -> anyhow::Result<()> {
    match cmd {
        MqCommand::Create {
            name,
            capacity,
            msgsize,
        } => {
            Queue::create(&name, capacity, msgsize)?.keep();
        }
        MqCommand::Info { name } => {
            let q = Queue::open_with(&name, true, false)
                .or_else(|_| Queue::open_with(&name, false, true))?;
            let a = q.attributes()?;
            let l = procom::mq::limits();
            println!("messages: {}", a.count);
            println!("capacity: {}", a.capacity);
            println!("msgsize: {}", a.msgsize);
            println!(
                "limits: msg_max={} msgsize_max={} queues_max={}",
                l.msg_max, l.msgsize_max, l.queues_max
            );
        }
        MqCommand::Rm { name } => procom::mq::remove(&name)?,
    }
    Ok(())
}

/// A key as `ipcs` shows it (decimal or 0x-hex) or a path for ftok.
pub fn parse_key(text: &str) -> anyhow::Result<MsgKey> {
    match procom::Endpoint::parse(&format!("msg:{text}"))? {
        procom::Endpoint::Msg { key, .. } => Ok(key),
        _ => anyhow::bail!("`{text}` is not a System V key"),
    }
}

pub fn run_msg(cmd: MsgCommand) -> anyhow::Result<()> {
    match cmd {
        MsgCommand::Create { key } => {
            MsgQueue::create(&parse_key(&key)?)?.keep();
        }
        MsgCommand::Info { key } => {
            let q = MsgQueue::open(&parse_key(&key)?)?;
            let s = q.stat()?;
            let l = procom::msg::limits();
            println!("id: {}", q.id());
            println!("messages: {}", s.count);
            println!("bytes: {}", s.bytes);
            println!("max_bytes: {}", s.max_bytes);
            println!("last_sender: {}", s.last_sender);
            println!("last_receiver: {}", s.last_receiver);
            println!("send_time: {}", s.send_time);
            println!("receive_time: {}", s.receive_time);
            println!("mode: {:o}", s.mode);
            println!("uid: {}", s.uid);
            println!(
                "limits: msgmax={} msgmnb={} msgmni={}",
                l.msgmax, l.msgmnb, l.msgmni
            );
        }
        MsgCommand::Rm { key } => MsgQueue::open(&parse_key(&key)?)?.remove()?,
    }
    Ok(())
}
