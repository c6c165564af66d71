//! `procom shm create|info|rm|write|read NAME`: POSIX segments (`/frame`) or System V ones
//! (a numeric key such as `0x5100` or `4242`).

use std::io::Read;
use std::os::fd::BorrowedFd;

use anyhow::{Context, bail};
use procom::endpoint::SysvKey;
use procom::shm::{Kind, Mapping, Segment};

use crate::cli::ShmCommand;

/// A POSIX name (`/frame`) or a System V key (decimal or 0x-hex).
pub(super) enum Name {
    Posix(String),
    SysV(SysvKey),
}

fn parse(name: &str) -> anyhow::Result<Name> {
    parse_name(
        name,
        "shm",
        "a POSIX shared-memory name (like /frame)",
        "0x5100",
    )
}

/// A POSIX name or a System V key for `what` (`shm`, `sem`); `posix` and `example` describe
/// the two forms in the error for anything else.
pub(super) fn parse_name(
    name: &str,
    what: &str,
    posix: &str,
    example: &str,
) -> anyhow::Result<Name> {
    if name.starts_with('/') {
        return Ok(Name::Posix(name.to_string()));
    }
    let key = if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok().map(|k| k as i32)
    } else {
        name.parse::<i32>().ok()
    };
    match key {
        Some(0) => Err(super::usage!(
            "{what} key 0 is IPC_PRIVATE, which no other process can open; choose another key"
        )),
        Some(k) => Ok(Name::SysV(SysvKey::Key(k))),
        None => Err(super::usage!(
            "`{name}` is neither {posix} nor a System V key (like {example})"
        )),
    }
}

fn open(name: &str, writable: bool) -> anyhow::Result<Segment> {
    Ok(match parse(name)? {
        Name::Posix(n) if writable => Segment::open(&n)?,
        Name::Posix(n) => Segment::open_read_only(&n)?,
        Name::SysV(k) => Segment::open_sysv(&k)?,
    })
}

/// How many bytes `shm read` copies out of the segment at a time: a huge segment is streamed
/// through one buffer of this size, never read into memory whole.
const CHUNK: usize = 1 << 20;

/// The byte range `shm read` was asked for, checked against the segment's `size` before
/// anything is allocated (the numbers come from the command line, so they may be anything).
fn read_range(name: &str, size: u64, offset: u64, len: Option<u64>) -> anyhow::Result<(u64, u64)> {
    let Some(left) = size.checked_sub(offset) else {
        bail!("shm {name}: offset {offset} is past the end of the {size}-byte segment");
    };
    let len = len.unwrap_or(left);
    if len > left {
        bail!(
            "shm {name}: {len} bytes at offset {offset} reach past the end of the {size}-byte segment ({left} bytes are left from there)"
        );
    }
    Ok((offset, len))
}

/// Copies `len` bytes of the segment from `offset` to standard output, a chunk at a time. A
/// chunk found cut short by a truncation is not written: what came before stays written, and
/// the command fails.
///
/// A segment with a descriptor (POSIX) is read with `pread`: the holes of a sparse segment
/// read as zeros without being allocated (a mapping would fault a page into /dev/shm for
/// each), and a truncation is an early end of file. A System V segment is read through a
/// mapping, where a truncation would be a fault (`Mapping::faulted`).
fn stream_to_stdout(name: &str, seg: &Segment, offset: u64, len: u64) -> anyhow::Result<()> {
    let source = match seg.fd() {
        Some(fd) => Source::File(fd),
        None => Source::Map(seg.map_read_only()?),
    };
    let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let chunk = &mut buf[..(len - done).min(CHUNK as u64) as usize];
        if !source
            .fill(offset + done, chunk)
            .with_context(|| format!("shm {name}: cannot read"))?
        {
            bail!(
                "shm {name}: the segment was truncated during the read; {done} of the {len} bytes asked for were written before it"
            );
        }
        super::write_stdout(&[chunk])?;
        done += chunk.len() as u64;
    }
    Ok(())
}

/// Where `shm read` copies from.
enum Source<'a> {
    File(BorrowedFd<'a>),
    Map(Mapping),
}

impl Source<'_> {
    /// Fills `buf` from offset `at`; `false` if the segment turned out truncated meanwhile.
    fn fill(&self, at: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        match self {
            Source::File(fd) => {
                let mut got = 0;
                while got < buf.len() {
                    match rustix::io::pread(fd, &mut buf[got..], at + got as u64) {
                        Ok(0) => return Ok(false),
                        Ok(n) => got += n,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(true)
            }
            Source::Map(map) => {
                let at = usize::try_from(at).map_err(std::io::Error::other)?;
                map.read(at, buf)?;
                Ok(!map.faulted())
            }
        }
    }
}

pub fn run(cmd: ShmCommand) -> anyhow::Result<()> {
    match cmd {
        ShmCommand::Create { name, size, share } => {
            let (mode, group) = super::share(&share)?;
            let seg = match parse(&name)? {
                Name::Posix(n) => Segment::create_with_mode(&n, size, mode)?,
                Name::SysV(k) => Segment::create_sysv_with_mode(&k, size as usize, mode)?,
            };
            if let Some(gid) = group {
                seg.set_group(gid)?; // on failure `seg` is dropped, which removes it
            }
            drop(seg.keep());
        }
        ShmCommand::Info { name, json } => {
            let info = open(&name, false)?.info()?;
            let kind = match info.kind {
                Kind::Posix => "posix",
                Kind::Memfd => "memfd",
                Kind::SysV => "sysv",
            };
            if json {
                return super::json_line(&serde_json::json!({
                    "name": name,
                    "kind": kind,
                    "size": info.size,
                    "mode": format!("{:04o}", info.mode),
                    "uid": info.uid,
                    "gid": info.gid,
                    "attached": info.attached,
                }));
            }
            super::outln!("kind: {kind}")?;
            super::outln!("size: {}", info.size)?;
            super::outln!("mode: {:o}", info.mode)?;
            super::outln!("uid: {}", info.uid)?;
            super::outln!("gid: {}", info.gid)?;
            if let Some(n) = info.attached {
                super::outln!("attached: {n}")?;
            }
        }
        ShmCommand::Rm { name } => match parse(&name)? {
            Name::Posix(n) => procom::shm::remove(&n)?,
            Name::SysV(k) => procom::shm::remove_sysv(&k)?,
        },
        ShmCommand::Write { name, offset, data } => {
            // The segment first: its size bounds how much input is worth reading.
            let seg = open(&name, true)?;
            let map = seg.map()?;
            let size = map.len() as u64;
            let Some(room) = size.checked_sub(offset) else {
                bail!("shm {name}: offset {offset} is past the end of the {size}-byte segment");
            };
            let bytes = if data == "-" {
                // One byte more than fits tells that the input does not fit, without reading
                // (and holding) the rest of it.
                let mut v = Vec::new();
                std::io::stdin()
                    .lock()
                    .take(room.saturating_add(1))
                    .read_to_end(&mut v)
                    .context("could not read standard input")?;
                if v.len() as u64 > room {
                    bail!(
                        "standard input holds more than the {room} bytes that fit at offset {offset} of shm {name}; nothing was written"
                    );
                }
                v
            } else {
                data.into_bytes()
            };
            map.write(offset as usize, &bytes)
                .with_context(|| format!("shm {name}: cannot write"))?;
            if map.faulted() {
                bail!("shm {name}: the segment was truncated during the write");
            }
        }
        ShmCommand::Read { name, offset, len } => {
            let seg = open(&name, false)?;
            let (offset, len) = read_range(&name, seg.info()?.size, offset, len)?;
            stream_to_stdout(&name, &seg, offset, len)?;
        }
    }
    Ok(())
}
