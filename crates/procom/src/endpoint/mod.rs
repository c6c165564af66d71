//! The endpoint grammar: one string names every channel, in the library and on the command
//! line.
//!
//! | endpoint | mechanism | unit |
//! |---|---|---|
//! | `-` | standard input / standard output | bytes |
//! | `fifo:PATH` | named pipe | bytes |
//! | `mq:/NAME[?capacity=N&msgsize=SIZE&priority=P]` | POSIX message queue | message + priority |
//! | `msg:KEY` or `msg:PATH[?type=N]` | System V message queue | message + type |
//! | `shm:/NAME[?capacity=SIZE&spin=DURATION]` | shared-memory ring channel | message |
//! | `unix:PATH`, `unix:@NAME` | Unix stream socket (`@`: abstract namespace) | bytes |
//! | `unixgram:PATH`, `unixgram:@NAME` | Unix datagram socket | message |
//! | `unixpacket:PATH`, `unixpacket:@NAME` | Unix sequenced-packet socket (`SOCK_SEQPACKET`) | message |
//! | `tcp:HOST:PORT` | TCP | bytes |
//! | `udp:HOST:PORT` | UDP | message |
//!
//! Paths (`fifo:`, `unix:`, `unixgram:`, `unixpacket:`, `msg:`) are taken literally after the colon and may be
//! relative. Names (`mq:`, `shm:`) start with `/` and contain no other `/`. Parameters after
//! `?` are accepted only where the table shows them; unknown ones are an error. Sizes accept
//! `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (powers of 1024) and `KB`/`MB`/`GB` (powers of 1000).
//! IPv6 hosts go in brackets: `tcp:[::1]:7000`. Durations take a unit: `ns`, `us`, `ms`, `s`.
//!
//! What each parameter means: `capacity` is the most messages a new queue holds (`mq:`) or the
//! ring's size in bytes (`shm:`); `msgsize` the largest message of a new queue; `priority`
//! (0 to 32767) what a sender gives its messages (higher first; receivers take no priority);
//! `type` the type a System V sender stamps or the selector its receiver uses; `spin` how long
//! a shared-memory endpoint busy-polls before it sleeps (lowest latency, at the price of a
//! busy core; it yields the CPU after 50 µs of nothing).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod check;
mod parse;

pub use parse::{format_duration, parse_duration, parse_seconds, parse_size};

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with the final NUL).
pub const UNIX_PATH_MAX: usize = 107;
/// The longest POSIX IPC name, the leading `/` included (`NAME_MAX`).
pub const IPC_NAME_MAX: usize = 255;

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `-`: standard output for a sender, standard input for a receiver.
    Stdio,
    /// `fifo:PATH`: a named pipe.
    Fifo {
        /// Where the FIFO lives.
        path: PathBuf,
    },
    /// `mq:/NAME`: a POSIX message queue.
    Mq {
        /// The queue name, with its leading `/`.
        name: String,
        /// Maximum number of messages the queue holds, when creating (`?capacity=N`).
        max_messages: Option<u64>,
        /// Maximum message size in bytes, when creating.
        msgsize: Option<u64>,
        /// The priority a sender gives its messages (`?priority=P`; 0 when not given).
        priority: Option<u32>,
    },
    /// `msg:KEY` or `msg:PATH`: a System V message queue.
    Msg {
        /// The key, or the path `ftok` turns into one.
        key: SysvKey,
        /// The message type: what a sender stamps, or the selector a receiver uses.
        mtype: Option<i64>,
    },
    /// `shm:/NAME`: the shared-memory ring channel.
    Shm {
        /// The segment name, with its leading `/`.
        name: String,
        /// The ring's size in bytes, when creating (`?capacity=SIZE`).
        ring_bytes: Option<u64>,
        /// How long an endpoint busy-polls before it sleeps (`?spin=DURATION`; not at all when
        /// not given).
        spin: Option<Duration>,
    },
    /// `unix:PATH` or `unix:@NAME`: a Unix stream socket.
    Unix {
        /// Where it is bound.
        addr: UnixAddr,
    },
    /// `unixgram:PATH` or `unixgram:@NAME`: a Unix datagram socket.
    UnixGram {
        /// Where it is bound.
        addr: UnixAddr,
    },
    /// `unixpacket:PATH` or `unixpacket:@NAME`: a Unix sequenced-packet socket
    /// (`SOCK_SEQPACKET`): connected like `unix:`, with message boundaries kept by the kernel.
    UnixPacket {
        /// Where it is bound.
        addr: UnixAddr,
    },
    /// `tcp:HOST:PORT`.
    Tcp {
        /// Host name or address (without brackets).
        host: String,
        /// Port number.
        port: u16,
    },
    /// `udp:HOST:PORT`.
    Udp {
        /// Host name or address (without brackets).
        host: String,
        /// Port number.
        port: u16,
    },
}

/// How a System V object — a message queue, a shared-memory segment, a semaphore set — is
/// named: a numeric key, or a path `ftok` turns into one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SysvKey {
    /// A numeric key, as `ipcs` shows it.
    Key(i32),
    /// A path that `ftok` turns into a key (with a project byte each kind of object has).
    Path(PathBuf),
}

impl SysvKey {
    /// The numeric key: as given, or `ftok(path, project)` (the path must exist). The one
    /// place a key is resolved, for every kind of System V object; the caller names the object
    /// in the error.
    ///
    /// # References
    /// - [`ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)
    #[doc(alias = "ftok")]
    pub fn resolve(&self, project: u8) -> Result<i32, Error> {
        match self {
            SysvKey::Key(k) => Ok(*k),
            SysvKey::Path(p) => procom_sys::mapping::ftok(p, project).map_err(|e| {
                let e = Error::os("derive a key from it with ftok", e);
                match e.kind() {
                    ErrorKind::NotFound => e.detail(
                        "the path does not exist (ftok derives the key from an existing file)",
                    ),
                    _ => e,
                }
            }),
        }
    }
}

impl fmt::Display for SysvKey {
    /// A key as `ipcs` shows it (`0x00005100`-style hex without padding: `0x5100`), or the path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysvKey::Key(k) => write!(f, "{:#x}", *k as u32),
            SysvKey::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A Unix socket address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A socket file on the filesystem.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (written `@NAME`).
    Abstract(String),
}

impl Endpoint {
    /// Parses an endpoint; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Endpoint, Error> {
        text.parse()
    }

    /// The mechanism's scheme as written in the grammar (`"-"` for standard I/O).
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Stdio => "-",
            Endpoint::Fifo { .. } => "fifo",
            Endpoint::Mq { .. } => "mq",
            Endpoint::Msg { .. } => "msg",
            Endpoint::Shm { .. } => "shm",
            Endpoint::Unix { .. } => "unix",
            Endpoint::UnixGram { .. } => "unixgram",
            Endpoint::UnixPacket { .. } => "unixpacket",
            Endpoint::Tcp { .. } => "tcp",
            Endpoint::Udp { .. } => "udp",
        }
    }

    /// Whether the transport is a byte stream (framing applies) rather than message-based.
    pub fn is_byte_stream(&self) -> bool {
        matches!(
            self,
            Endpoint::Stdio | Endpoint::Fifo { .. } | Endpoint::Unix { .. } | Endpoint::Tcp { .. }
        )
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(p) => write!(f, "{}", p.display()),
            UnixAddr::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Stdio => f.write_str("-"),
            Endpoint::Fifo { path } => write!(f, "fifo:{}", path.display()),
            Endpoint::Mq {
                name,
                max_messages,
                msgsize,
                priority,
            } => {
                write!(f, "mq:{name}")?;
                let mut sep = '?';
                if let Some(c) = max_messages {
                    write!(f, "{sep}capacity={c}")?;
                    sep = '&';
                }
                if let Some(m) = msgsize {
                    write!(f, "{sep}msgsize={m}")?;
                    sep = '&';
                }
                if let Some(p) = priority {
                    write!(f, "{sep}priority={p}")?;
                }
                Ok(())
            }
            Endpoint::Msg { key, mtype } => {
                write!(f, "msg:{key}")?;
                if let Some(t) = mtype {
                    write!(f, "?type={t}")?;
                }
                Ok(())
            }
            Endpoint::Shm {
                name,
                ring_bytes,
                spin,
            } => {
                write!(f, "shm:{name}")?;
                let mut sep = '?';
                if let Some(c) = ring_bytes {
                    write!(f, "{sep}capacity={c}")?;
                    sep = '&';
                }
                if let Some(d) = spin {
                    write!(f, "{sep}spin={}ns", d.as_nanos())?;
                }
                Ok(())
            }
            Endpoint::Unix { addr } => write!(f, "unix:{addr}"),
            Endpoint::UnixGram { addr } => write!(f, "unixgram:{addr}"),
            Endpoint::UnixPacket { addr } => write!(f, "unixpacket:{addr}"),
            Endpoint::Tcp { host, port } => {
                f.write_str("tcp:")?;
                write_host(f, host, *port)
            }
            Endpoint::Udp { host, port } => {
                f.write_str("udp:")?;
                write_host(f, host, *port)
            }
        }
    }
}
