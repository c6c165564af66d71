//! `procom shm create|info|rm|write|read NAME`: POSIX segments (`/frame`) or System V ones
//! (a numeric key such as `0x5100` or `4242`).

use std::io::Read;

use anyhow::{Context, bail};
use procom::endpoint::MsgKey;
use procom::shm::{Kind, Segment};

use crate::cli::ShmCommand;

/// A POSIX name (`/frame`) or a System V key (decimal or 0x-hex).
enum Name {
    Posix(String),
    SysV(MsgKey),
}

fn parse(name: &str) -> anyhow::Result<Name> {
    if name.starts_with('/') {
        return Ok(Name::Posix(name.to_string()));
    }
    let key = if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok().map(|k| k as i32)
    } else {
        name.parse::<i32>().ok()
    };
    match key {
        Some(0) => {
            bail!("shm key 0 is IPC_PRIVATE, which no other process can open; choose another key")
        }
        Some(k) => Ok(Name::SysV(MsgKey::Key(k))),
        None => bail!(
            "`{name}` is neither a POSIX shared-memory name (like /frame) nor a System V key (like 0x5100)"
        ),
    }
}

fn open(name: &str, writable: bool) -> anyhow::Result<Segment> {
    Ok(match parse(name)? {
        Name::Posix(n) if writable => Segment::open(&n)?,
        Name::Posix(n) => Segment::open_read_only(&n)?,
        Name::SysV(k) => Segment::open_sysv(&k)?,
    })
}

pub fn run(cmd: ShmCommand) -> anyhow::Result<()> {
    match cmd {
        ShmCommand::Create { name, size } => {
            let size = size as usize;
            match parse(&name)? {
                Name::Posix(n) => Segment::create(&n, size as u64)?.keep(),
                Name::SysV(k) => Segment::create_sysv(&k, size)?.keep(),
            }
        }
        ShmCommand::Info { name } => {
            let info = open(&name, false)?.info()?;
            let kind = match info.kind {
                Kind::Posix => "posix",
                Kind::Memfd => "memfd",
                Kind::SysV => "sysv",
            };
            println!("kind: {kind}");
            println!("size: {}", info.size);
            println!("mode: {:o}", info.mode);
            println!("uid: {}", info.uid);
            println!("gid: {}", info.gid);
            if let Some(n) = info.attached {
                println!("attached: {n}");
            }
        }
        ShmCommand::Rm { name } => match parse(&name)? {
            Name::Posix(n) => procom::shm::remove(&n)?,
            Name::SysV(k) => procom::shm::remove_sysv(&k)?,
        },
        ShmCommand::Write { name, offset, data } => {
            let bytes = if data == "-" {
                let mut v = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut v)
                    .context("could not read standard input")?;
                v
            } else {
                data.into_bytes()
            };
            let seg = open(&name, true)?;
            let map = seg.map()?;
            map.write(offset as usize, &bytes)
                .with_context(|| format!("shm {name}: cannot write"))?;
            if map.faulted() {
                bail!("shm {name}: the segment was truncated during the write");
            }
        }
        ShmCommand::Read { name, offset, len } => {
            let seg = open(&name, false)?;
            let map = seg.map_read_only()?;
            let offset = offset as usize;
            let len = len
                .map(|l| l as usize)
                .unwrap_or_else(|| map.len().saturating_sub(offset));
            let mut buf = vec![0u8; len];
            map.read(offset, &mut buf)
                .with_context(|| format!("shm {name}: cannot read"))?;
            if map.faulted() {
                bail!("shm {name}: the segment was truncated during the read");
            }
            super::write_stdout(&[&buf])?;
        }
    }
    Ok(())
}
