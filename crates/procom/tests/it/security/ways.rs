//! The matrix's rows: the kinds of named object ([`Named`], one per [`ObjectKind`] that names
//! one), and every way the library creates or opens each ([`ways`]), with what the kernel shows
//! of an object and what a hostile user can plant at its name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use procom::endpoint::{Endpoint, SysvKey};
use procom::fifo::{self, Fifo};
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::sem::{SemSet, Semaphore};
use procom::shm::Segment;
use procom::socket::Listener;
use procom::{Error, ObjectKind, Options, Receiver, Sender};
use procom_testkit::{Seen, Sysv, path_seen, queue_seen, sysv_seen, unique_name};

/// The Unix socket kinds: the error's object kind, the endpoint scheme, and whether it is
/// connection-oriented (a `Listener` and `socket::connect` take it). One line per kind.
pub const SOCKETS: &[(ObjectKind, &str, bool)] = &[
    (ObjectKind::UnixSocket, "unix", true),
    (ObjectKind::UnixDatagram, "unixgram", false),
    (ObjectKind::UnixPacket, "unixpacket", true),
];

/// A kind of named object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Fifo,
    PosixQueue,
    SysvQueue,
    SysvSegment,
    SemSet,
    PosixShm,
    ShmChannel,
    Semaphore,
    /// A Unix socket file: its scheme, and whether it is connection-oriented.
    Socket(&'static str, bool),
}

/// What each kind of object an error may concern is in the matrix: `Some(kinds)` for those
/// that name an object, `None` for those that name none. A kind this does not know fails.
pub fn rows_of(kind: ObjectKind) -> Result<Option<Vec<Named>>, String> {
    if let Some((_, scheme, conn)) = SOCKETS.iter().find(|(k, ..)| *k == kind) {
        return Ok(Some(vec![Named::Socket(scheme, *conn)]));
    }
    Ok(match kind {
        ObjectKind::Fifo => Some(vec![Named::Fifo]),
        ObjectKind::PosixQueue => Some(vec![Named::PosixQueue]),
        ObjectKind::SysvQueue => Some(vec![Named::SysvQueue]),
        // The segments and semaphores are not channels; their errors carry no object kind.
        ObjectKind::ShmChannel => Some(vec![
            Named::ShmChannel,
            Named::PosixShm,
            Named::SysvSegment,
            Named::SemSet,
            Named::Semaphore,
        ]),
        // Nothing procom creates or names: descriptors it is handed, the network, processes,
        // and the user's own file a System V key is derived from.
        ObjectKind::Stdio
        | ObjectKind::Descriptor
        | ObjectKind::Tcp
        | ObjectKind::Udp
        | ObjectKind::Process
        | ObjectKind::KeyFile => None,
        other => {
            return Err(format!(
                "ObjectKind::{other:?} has no row in the security matrix (tests/it/security/ways.rs)"
            ));
        }
    })
}

pub fn all_kinds() -> Result<Vec<Named>, String> {
    let mut kinds = Vec::new();
    for k in ObjectKind::ALL {
        for n in rows_of(*k)?.unwrap_or_default() {
            if !kinds.contains(&n) {
                kinds.push(n);
            }
        }
    }
    Ok(kinds)
}

/// What a constructor handed back, kept until the check is done.
pub type Held = Box<dyn std::any::Any>;

/// One way procom creates or opens an object of a kind.
#[derive(Clone, Copy)]
pub enum Act {
    /// Creates the object (`Some(mode)`: with that mode, `None`: the default).
    Create(fn(Named, &str, Option<u32>) -> Result<Held, Error>),
    /// Creates the object, then waits for a peer (with no wait allowed, it fails after
    /// creating): checked against what is planted only.
    Waits(fn(Named, &str) -> Result<Held, Error>),
    /// Opens (or removes) an existing object.
    Open(fn(Named, &str) -> Result<Held, Error>),
}

#[derive(Clone, Copy)]
pub struct Way {
    pub name: &'static str,
    pub kind: Named,
    pub act: Act,
}

impl Way {
    pub fn label(&self) -> String {
        format!("{} on {}", self.name, self.kind.label())
    }
}

pub fn held<T: 'static>(r: Result<T, Error>) -> Result<Held, Error> {
    r.map(|t| Box::new(t) as Held)
}

fn ep(kind: Named, target: &str) -> String {
    format!("{}:{target}", kind.scheme())
}

fn opts(mode: Option<u32>) -> Options {
    let o = Options::default().open_timeout(Some(Duration::ZERO));
    match mode {
        Some(m) => o.mode(m),
        None => o,
    }
}

pub fn key(target: &str) -> SysvKey {
    SysvKey::Key(target.parse().unwrap_or(0))
}

/// Every way, for every kind the matrix has.
pub fn ways() -> Result<Vec<Way>, String> {
    let mut ways = Vec::new();
    let mut add = |name, kind, act| ways.push(Way { name, kind, act });
    for kind in all_kinds()? {
        // Channels: a binding receiver creates, connecting senders and receivers open.
        let bind = Act::Create(|k, t, m| held(Receiver::bind_with(ep(k, t), &opts(m))));
        let send = Act::Open(|k, t| held(Sender::connect_with(ep(k, t), &opts(None))));
        let recv = Act::Open(|k, t| held(Receiver::connect_with(ep(k, t), &opts(None))));
        let typed = Act::Create(|k, t, m| {
            held(procom::typed::Receiver::<u32>::bind_with(
                ep(k, t),
                &opts(m),
            ))
        });
        match kind {
            Named::Fifo => {
                add(
                    "Fifo::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(Fifo::create_with_mode(t, m)),
                        None => held(Fifo::create(t)),
                    }),
                );
                add("Receiver::bind", kind, bind);
                add("typed::Receiver::bind", kind, typed);
                add(
                    "fifo::open_read",
                    kind,
                    Act::Open(|_, t| held(fifo::open_read(t))),
                );
                add(
                    "fifo::open_write",
                    kind,
                    Act::Open(|_, t| held(fifo::open_write(t))),
                );
                add("Sender::connect", kind, send);
                add("Receiver::connect", kind, recv);
            }
            Named::PosixQueue => {
                add(
                    "Queue::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(Queue::create_with_mode(t, Some(4), Some(64), m)),
                        None => held(Queue::create(t, Some(4), Some(64))),
                    }),
                );
                add("Receiver::bind", kind, bind);
                add("typed::Receiver::bind", kind, typed);
                add(
                    "Sender::bind",
                    kind,
                    Act::Create(|k, t, m| held(Sender::bind_with(ep(k, t), &opts(m)))),
                );
                add("Queue::open", kind, Act::Open(|_, t| held(Queue::open(t))));
                add(
                    "Queue::open_with(read)",
                    kind,
                    Act::Open(|_, t| held(Queue::open_with(t, true, false))),
                );
                add("Sender::connect", kind, send);
                add("Receiver::connect", kind, recv);
            }
            Named::SysvQueue => {
                add(
                    "MsgQueue::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(MsgQueue::create_with_mode(&key(t), m)),
                        None => held(MsgQueue::create(&key(t))),
                    }),
                );
                add("Receiver::bind", kind, bind);
                add("typed::Receiver::bind", kind, typed);
                add(
                    "Sender::bind",
                    kind,
                    Act::Create(|k, t, m| held(Sender::bind_with(ep(k, t), &opts(m)))),
                );
                add(
                    "MsgQueue::open",
                    kind,
                    Act::Open(|_, t| held(MsgQueue::open(&key(t)))),
                );
                add("Sender::connect", kind, send);
                add("Receiver::connect", kind, recv);
            }
            Named::SysvSegment => {
                add(
                    "Segment::create_sysv",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(Segment::create_sysv_with_mode(&key(t), 4096, m)),
                        None => held(Segment::create_sysv(&key(t), 4096)),
                    }),
                );
                add(
                    "Segment::open_sysv",
                    kind,
                    Act::Open(|_, t| held(Segment::open_sysv(&key(t)))),
                );
            }
            Named::SemSet => {
                add(
                    "SemSet::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(SemSet::create_with_mode(&key(t), &[1], m)),
                        None => held(SemSet::create(&key(t), &[1])),
                    }),
                );
                add(
                    "SemSet::open_all",
                    kind,
                    Act::Open(|_, t| held(SemSet::open_all(&key(t)))),
                );
                add(
                    "SemSet::open",
                    kind,
                    Act::Open(|_, t| held(SemSet::open(&key(t), 1))),
                );
            }
            Named::PosixShm => {
                add(
                    "Segment::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(Segment::create_with_mode(t, 4096, m)),
                        None => held(Segment::create(t, 4096)),
                    }),
                );
                add(
                    "Segment::open",
                    kind,
                    Act::Open(|_, t| held(Segment::open(t))),
                );
                add(
                    "Segment::open_read_only",
                    kind,
                    Act::Open(|_, t| held(Segment::open_read_only(t))),
                );
            }
            Named::ShmChannel => {
                add("Receiver::bind", kind, bind);
                add("typed::Receiver::bind", kind, typed);
                add("Sender::connect", kind, send);
            }
            Named::Semaphore => {
                add(
                    "Semaphore::create",
                    kind,
                    Act::Create(|_, t, m| match m {
                        Some(m) => held(Semaphore::create_with_mode(t, 1, m)),
                        None => held(Semaphore::create(t, 1)),
                    }),
                );
                add(
                    "Semaphore::open",
                    kind,
                    Act::Open(|_, t| held(Semaphore::open(t))),
                );
            }
            Named::Socket(_, conn) => {
                add("Receiver::bind", kind, bind);
                add("typed::Receiver::bind", kind, typed);
                add("Sender::connect", kind, send);
                if conn {
                    add(
                        "Listener::bind",
                        kind,
                        Act::Create(|k, t, m| {
                            let e = Endpoint::parse(&ep(k, t))?;
                            held(Listener::bind(&e, &opts(m)))
                        }),
                    );
                    add(
                        "socket::connect",
                        kind,
                        Act::Open(|k, t| {
                            let e = Endpoint::parse(&ep(k, t))?;
                            held(procom::socket::connect(&e, &opts(None)))
                        }),
                    );
                    add("Receiver::connect", kind, recv);
                }
            }
        }
        // Typed channels, binding senders, and the removals by name.
        let typed_send = Act::Open(|k, t| {
            held(procom::typed::Sender::<u32>::connect_with(
                ep(k, t),
                &opts(None),
            ))
        });
        let typed_recv = Act::Open(|k, t| {
            held(procom::typed::Receiver::<u32>::connect_with(
                ep(k, t),
                &opts(None),
            ))
        });
        let typed_sender_bind = Act::Create(|k, t, m| {
            held(procom::typed::Sender::<u32>::bind_with(ep(k, t), &opts(m)))
        });
        let sender_bind_waits = Act::Waits(|k, t| held(Sender::bind_with(ep(k, t), &opts(None))));
        let typed_sender_bind_waits = Act::Waits(|k, t| {
            held(procom::typed::Sender::<u32>::bind_with(
                ep(k, t),
                &opts(None),
            ))
        });
        let more: Vec<(&'static str, Act)> = match kind {
            Named::Fifo => vec![
                ("Sender::bind", sender_bind_waits),
                ("typed::Sender::bind", typed_sender_bind_waits),
                (
                    "fifo::try_open_write",
                    Act::Open(|_, t| held(fifo::try_open_write(t))),
                ),
                (
                    "fifo::open_write_timeout",
                    Act::Open(|_, t| held(fifo::open_write_timeout(t, Duration::ZERO))),
                ),
                ("fifo::remove", Act::Open(|_, t| held(fifo::remove(t)))),
                ("typed::Sender::connect", typed_send),
                ("typed::Receiver::connect", typed_recv),
            ],
            Named::PosixQueue => vec![
                ("typed::Sender::bind", typed_sender_bind),
                ("mq::remove", Act::Open(|_, t| held(procom::mq::remove(t)))),
                ("typed::Sender::connect", typed_send),
                ("typed::Receiver::connect", typed_recv),
            ],
            Named::SysvQueue => vec![
                ("typed::Sender::bind", typed_sender_bind),
                (
                    "msg::remove",
                    Act::Open(|_, t| held(procom::msg::remove(&key(t)))),
                ),
                ("typed::Sender::connect", typed_send),
                ("typed::Receiver::connect", typed_recv),
            ],
            Named::SysvSegment => vec![(
                "shm::remove_sysv",
                Act::Open(|_, t| held(procom::shm::remove_sysv(&key(t)))),
            )],
            Named::PosixShm => vec![(
                "shm::remove",
                Act::Open(|_, t| held(procom::shm::remove(t))),
            )],
            Named::ShmChannel => vec![("typed::Sender::connect", typed_send)],
            Named::Semaphore => vec![(
                "sem::remove",
                Act::Open(|_, t| held(procom::sem::remove(t))),
            )],
            Named::SemSet => vec![],
            Named::Socket(_, conn) => {
                let mut v = vec![("typed::Sender::connect", typed_send)];
                if conn {
                    v.push(("Sender::bind", sender_bind_waits));
                    v.push(("typed::Sender::bind", typed_sender_bind_waits));
                    v.push(("typed::Receiver::connect", typed_recv));
                }
                v
            }
        };
        for (name, act) in more {
            add(name, kind, act);
        }
    }
    Ok(ways)
}

impl Named {
    pub fn label(self) -> String {
        match self {
            Named::Socket(scheme, _) => format!("{scheme}: socket"),
            other => format!("{other:?}"),
        }
    }

    pub fn scheme(self) -> &'static str {
        match self {
            Named::Fifo => "fifo",
            Named::PosixQueue => "mq",
            Named::SysvQueue => "msg",
            Named::ShmChannel | Named::PosixShm => "shm",
            Named::SysvSegment | Named::SemSet | Named::Semaphore => "none",
            Named::Socket(scheme, _) => scheme,
        }
    }

    /// A fresh name for an object of this kind: a path in `dir`, a `/NAME` or a key.
    pub fn fresh(self, dir: &Path) -> String {
        match self {
            Named::Fifo | Named::Socket(..) => dir.join(unique_name("sec")).display().to_string(),
            Named::SysvQueue | Named::SysvSegment | Named::SemSet => fresh_key().to_string(),
            _ => format!("/{}", unique_name("procom-sec")),
        }
    }

    /// The file that is the object, where it is one.
    pub fn path(self, target: &str) -> Option<PathBuf> {
        match self {
            Named::Fifo | Named::Socket(..) => Some(target.into()),
            Named::PosixShm | Named::ShmChannel => Some(format!("/dev/shm{target}").into()),
            Named::Semaphore => Some(format!("/dev/shm/sem.{}", &target[1..]).into()),
            _ => None,
        }
    }

    /// The object as the kernel shows it.
    pub fn seen(self, target: &str) -> Option<Seen> {
        let key = || target.parse().unwrap_or(0);
        match self {
            Named::PosixQueue => queue_seen(target),
            Named::SysvQueue => sysv_seen(Sysv::Msg, key()),
            Named::SysvSegment => sysv_seen(Sysv::Shm, key()),
            Named::SemSet => sysv_seen(Sysv::Sem, key()),
            other => path_seen(&other.path(target)?),
        }
    }

    /// Removes what another user planted at `target` (as root).
    pub fn remove(self, target: &str) {
        let _ = match self {
            Named::PosixQueue => procom::mq::remove(target),
            Named::SysvQueue => procom::msg::remove(&key(target)),
            Named::SysvSegment => procom::shm::remove_sysv(&key(target)),
            Named::SemSet => SemSet::open_all(&key(target)).and_then(SemSet::remove),
            other => {
                if let Some(p) = other.path(target) {
                    let _ = std::fs::remove_file(&p);
                    let _ = std::fs::remove_file(victim(&p));
                }
                Ok(())
            }
        };
    }

    /// Whether the plant `what` may be another user's object of this kind, which an opener
    /// may open: a segment is a file in /dev/shm, however many names it has; a semaphore's
    /// file is checked when opened, but a removal by name cannot tell it from a real one.
    pub fn same_kind(self, what: &str, removal: bool) -> bool {
        let file = matches!(what, "file" | "hardlink");
        what == "same"
            || (self == Named::PosixShm && file)
            || (self == Named::Semaphore && file && removal)
    }

    /// What a hostile user can plant at the name: another object of the kind, and for a file
    /// a regular file, symbolic links (to a file, to nothing) and a hard link.
    pub fn plants(self) -> &'static [&'static str] {
        match self {
            Named::PosixQueue | Named::SysvQueue | Named::SysvSegment | Named::SemSet => &["same"],
            Named::PosixShm | Named::ShmChannel | Named::Semaphore => {
                &["file", "fifo", "symlink", "dangling", "hardlink"]
            }
            Named::Fifo | Named::Socket(..) => &["same", "file", "symlink", "dangling", "hardlink"],
        }
    }
}

/// A System V key no other test or run uses.
fn fresh_key() -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0x5ec0_0000 | ((std::process::id() & 0xfff) << 8) | (n & 0xff)) as i32
}

/// Where a planted link points.
pub fn victim(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".victim");
    s.into()
}

pub fn find(label: &str) -> Result<Way, String> {
    ways()?
        .into_iter()
        .find(|w| w.label() == label)
        .ok_or_else(|| format!("no way labelled {label}"))
}
