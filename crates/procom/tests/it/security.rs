//! The security matrix: every named object kind × every library constructor that creates or
//! opens it ([`ways`]), under every condition procom promises.
//!
//! - A creator gives exactly the mode asked (0600 by default) under the umasks 000, 022 and
//!   077 (`modes_are_exact_under_every_umask`, one process per row: the umask is per process).
//! - An opener run as uid 65534 is refused root's object with `PermissionDenied`
//!   (`another_user_is_denied`).
//! - An object, a file, a symbolic link (dangling too) or a hard link planted at the name by
//!   another user, world-writable and with content, makes a creator fail and is left exactly
//!   as it was: inode, type, mode, owner and content; so is what a link points to
//!   (`planted_objects_are_refused_and_untouched`). A path opener does not follow a link.
//! - A listener's uid allow-list turns another user away before reading anything
//!   (`the_allow_list_rejects_before_any_payload`).
//!
//! A new object kind cannot come without rows: `every_object_kind_has_rows` goes through
//! [`ObjectKind::ALL`] and fails on a kind that is neither in the matrix nor declared to name
//! nothing. A new socket kind is one line in [`SOCKETS`].

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use procom::endpoint::{Endpoint, SysvKey};
use procom::fifo::{self, Fifo};
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::sem::{SemSet, Semaphore};
use procom::shm::Segment;
use procom::socket::Listener;
use procom::{Error, ErrorKind, ObjectKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Seen, Sysv, Trial, as_nobody, check, ensure, needs,
    path_seen, queue_seen, role, sysv_seen, trials, unique_name,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "security::modes",
        run: modes,
    },
    Role {
        name: "security::denied",
        run: denied,
    },
    Role {
        name: "security::plant",
        run: plant,
    },
    Role {
        name: "security::client",
        run: client,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "security":
            every_object_kind_has_rows,
            modes_are_exact_under_every_umask,
            another_user_is_denied [needs::root()],
            planted_objects_are_refused_and_untouched [needs::root()],
            the_allow_list_rejects_before_any_payload [needs::root()];
    ]
}

/// The Unix socket kinds: the error's object kind, the endpoint scheme, and whether it is
/// connection-oriented (a `Listener` and `socket::connect` take it). One line per kind.
const SOCKETS: &[(ObjectKind, &str, bool)] = &[
    (ObjectKind::UnixSocket, "unix", true),
    (ObjectKind::UnixDatagram, "unixgram", false),
];

/// A kind of named object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
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
fn rows_of(kind: ObjectKind) -> Result<Option<Vec<Named>>, String> {
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
                "ObjectKind::{other:?} has no row in the security matrix (tests/it/security.rs)"
            ));
        }
    })
}

fn all_kinds() -> Result<Vec<Named>, String> {
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
type Held = Box<dyn std::any::Any>;

/// One way procom creates or opens an object of a kind.
#[derive(Clone, Copy)]
enum Act {
    /// Creates the object (`Some(mode)`: with that mode, `None`: the default).
    Create(fn(Named, &str, Option<u32>) -> Result<Held, Error>),
    /// Creates the object, then waits for a peer (with no wait allowed, it fails after
    /// creating): checked against what is planted only.
    Waits(fn(Named, &str) -> Result<Held, Error>),
    /// Opens (or removes) an existing object.
    Open(fn(Named, &str) -> Result<Held, Error>),
}

#[derive(Clone, Copy)]
struct Way {
    name: &'static str,
    kind: Named,
    act: Act,
}

impl Way {
    fn label(&self) -> String {
        format!("{} on {}", self.name, self.kind.label())
    }
}

fn held<T: 'static>(r: Result<T, Error>) -> Result<Held, Error> {
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

fn key(target: &str) -> SysvKey {
    SysvKey::Key(target.parse().unwrap_or(0))
}

/// Every way, for every kind the matrix has.
fn ways() -> Result<Vec<Way>, String> {
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
    fn label(self) -> String {
        match self {
            Named::Socket(scheme, _) => format!("{scheme}: socket"),
            other => format!("{other:?}"),
        }
    }

    fn scheme(self) -> &'static str {
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
    fn fresh(self, dir: &Path) -> String {
        match self {
            Named::Fifo | Named::Socket(..) => dir.join(unique_name("sec")).display().to_string(),
            Named::SysvQueue | Named::SysvSegment | Named::SemSet => fresh_key().to_string(),
            _ => format!("/{}", unique_name("procom-sec")),
        }
    }

    /// The file that is the object, where it is one.
    fn path(self, target: &str) -> Option<PathBuf> {
        match self {
            Named::Fifo | Named::Socket(..) => Some(target.into()),
            Named::PosixShm | Named::ShmChannel => Some(format!("/dev/shm{target}").into()),
            Named::Semaphore => Some(format!("/dev/shm/sem.{}", &target[1..]).into()),
            _ => None,
        }
    }

    /// The object as the kernel shows it.
    fn seen(self, target: &str) -> Option<Seen> {
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
    fn remove(self, target: &str) {
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
    fn same_kind(self, what: &str, removal: bool) -> bool {
        let file = matches!(what, "file" | "hardlink");
        what == "same"
            || (self == Named::PosixShm && file)
            || (self == Named::Semaphore && file && removal)
    }

    /// What a hostile user can plant at the name: another object of the kind, and for a file
    /// a regular file, symbolic links (to a file, to nothing) and a hard link.
    fn plants(self) -> &'static [&'static str] {
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
fn victim(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".victim");
    s.into()
}

fn find(label: &str) -> Result<Way, String> {
    ways()?
        .into_iter()
        .find(|w| w.label() == label)
        .ok_or_else(|| format!("no way labelled {label}"))
}

fn every_object_kind_has_rows() -> Outcome {
    let ways = ways()?;
    for kind in all_kinds()? {
        let creators = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Create(_)))
            .count();
        let openers = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Open(_)))
            .count();
        ensure!(
            creators > 0 && openers > 0,
            "{}: {creators} creators, {openers} openers",
            kind.label()
        );
    }
    Ok(())
}

/// Role: each creation of one way under each umask, with the default and an explicit mode;
/// the kernel shows exactly the mode asked, owned by this user; dropping removes it.
fn modes(args: &[String]) -> Outcome {
    let [label, dir] = args else {
        return Err("args: LABEL DIR".into());
    };
    let way = find(label)?;
    let Act::Create(create) = way.act else {
        return Err(format!("{label} creates nothing"));
    };
    let me = rustix::process::geteuid().as_raw();
    for mask in [0o000, 0o022, 0o077] {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        for (asked, expected) in [(None, 0o600), (Some(0o640), 0o640), (Some(0o666), 0o666)] {
            let target = way.kind.fresh(Path::new(dir));
            let made = check!(create(way.kind, &target, asked));
            let seen = way.kind.seen(&target).ok_or("nothing to see")?;
            ensure!(
                seen.perms() == expected && seen.uid == me,
                "{label} under umask {mask:03o}, mode {asked:?}: {:o}, uid {}",
                seen.perms(),
                seen.uid
            );
            drop(made);
            ensure!(
                way.kind.seen(&target).is_none(),
                "{label}: {target} is left after the drop"
            );
        }
    }
    Ok(())
}

fn modes_are_exact_under_every_umask() -> Outcome {
    let scratch = Scratch::new("sec-modes")?;
    let dir = scratch.path().display().to_string();
    for way in ways()? {
        if let Act::Create(_) = way.act {
            let mut cmd = role("security::modes", &[&way.label(), &dir]);
            Proc::spawn(&way.label(), &mut cmd)?.success(STEP)?;
        }
    }
    scratch.finish()
}

/// Role (as uid 65534): opening root's object one way is `PermissionDenied`, said so.
fn denied(args: &[String]) -> Outcome {
    let [label, target] = args else {
        return Err("args: LABEL TARGET".into());
    };
    let way = find(label)?;
    let r = match way.act {
        Act::Open(open) => open(way.kind, target),
        Act::Create(create) => create(way.kind, target, None),
        Act::Waits(create) => create(way.kind, target),
    };
    let e = r
        .err()
        .ok_or_else(|| format!("{label}: opened root's object"))?;
    ensure!(
        e.kind() == ErrorKind::PermissionDenied && e.to_string().contains("permission denied"),
        "{label}: {:?}: {e}",
        e.kind()
    );
    Ok(())
}

fn another_user_is_denied() -> Outcome {
    let scratch = Scratch::new("sec-denied")?;
    let ways = ways()?;
    for kind in all_kinds()? {
        let target = kind.fresh(scratch.path());
        let creator = ways
            .iter()
            .find_map(|w| match w.act {
                Act::Create(c) if w.kind == kind => Some(c),
                _ => None,
            })
            .ok_or("no creator")?;
        let made = check!(creator(kind, &target, None));
        let result = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Open(_)))
            .try_for_each(|w| {
                let mut cmd = role("security::denied", &[&w.label(), &target]);
                Proc::spawn(&w.label(), as_nobody(&mut cmd)?)?
                    .success(STEP)
                    .map(drop)
            });
        drop(made);
        result?;
    }
    scratch.finish()
}

/// Role (as another user): plants `what` at `target`, world-writable, with content.
fn plant(args: &[String]) -> Outcome {
    let [kind, what, target] = args else {
        return Err("args: KIND WHAT TARGET".into());
    };
    rustix::process::umask(rustix::fs::Mode::empty());
    let kind = all_kinds()?
        .into_iter()
        .find(|k| k.label() == *kind)
        .ok_or("kind")?;
    let content = b"planted by another user";
    let file = |p: &Path| -> Outcome {
        check!(std::fs::write(p, content));
        check!(std::fs::set_permissions(
            p,
            std::fs::Permissions::from_mode(0o666)
        ));
        Ok(())
    };
    let path = kind.path(target);
    match (kind, what.as_str()) {
        (Named::PosixQueue, "same") => {
            let q = check!(Queue::create_with_mode(target, Some(4), Some(64), 0o666));
            check!(q.send(content, 1));
            q.keep();
        }
        (Named::SysvQueue, "same") => {
            let q = check!(MsgQueue::create_with_mode(&key(target), 0o666));
            check!(q.send(content, 1));
            q.keep();
        }
        (Named::SysvSegment, "same") => {
            check!(Segment::create_sysv_with_mode(&key(target), 4096, 0o666)).keep();
        }
        (Named::SemSet, "same") => {
            check!(SemSet::create_with_mode(&key(target), &[3], 0o666)).keep();
        }
        (Named::Fifo, "same") | (_, "fifo") => {
            let p = path.ok_or("path")?;
            check!(Fifo::create_with_mode(&p, 0o666)).keep();
        }
        (Named::Socket(..), "same") => {
            let p = path.ok_or("path")?;
            drop(check!(std::os::unix::net::UnixListener::bind(&p)));
            check!(std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(0o777)
            ));
        }
        (_, "file") => file(&path.ok_or("path")?)?,
        (_, "symlink") => {
            let p = path.ok_or("path")?;
            file(&victim(&p))?;
            check!(std::os::unix::fs::symlink(victim(&p), &p));
        }
        (_, "dangling") => {
            let p = path.ok_or("path")?;
            check!(std::os::unix::fs::symlink(victim(&p), &p));
        }
        (_, "hardlink") => {
            let p = path.ok_or("path")?;
            file(&victim(&p))?;
            check!(std::fs::hard_link(victim(&p), &p));
        }
        (k, w) => return Err(format!("nothing to plant for {w} on {k:?}")),
    }
    Ok(())
}

/// The object and what a link there points to, as the kernel shows them.
fn snapshot(kind: Named, target: &str) -> (Option<Seen>, Option<Seen>) {
    let victim = kind.path(target).and_then(|p| path_seen(&victim(&p)));
    (kind.seen(target), victim)
}

fn planted_objects_are_refused_and_untouched() -> Outcome {
    let scratch = Scratch::new("sec-planted")?;
    // Another user may write the directory (not sticky: the kernel's protections for sticky
    // directories would hide a follow).
    check!(std::fs::set_permissions(
        scratch.path(),
        std::fs::Permissions::from_mode(0o777)
    ));
    let mut failures = Vec::new();
    let mut tried = 0;
    for way in ways()? {
        for what in way.kind.plants() {
            let target = way.kind.fresh(scratch.path());
            let label = way.kind.label();
            let mut cmd = role("security::plant", &[&label, what, &target]);
            let planted = Proc::spawn("plant", as_nobody(&mut cmd)?)?.success(STEP);
            let result = planted.and_then(|_| {
                let before = snapshot(way.kind, &target);
                ensure!(before.0.is_some(), "nothing was planted at {target}");
                let r = match way.act {
                    Act::Create(create) => create(way.kind, &target, None).map(drop),
                    Act::Waits(create) => create(way.kind, &target).map(drop),
                    // An opener meets the planted object: it may open another user's object
                    // of its kind, never a link nor anything else.
                    Act::Open(open) if !way.kind.same_kind(what, way.name.ends_with("remove")) => {
                        open(way.kind, &target).map(drop)
                    }
                    Act::Open(_) => return Ok(()),
                };
                let after = snapshot(way.kind, &target);
                ensure!(
                    r.is_err(),
                    "{} with {what} planted: not refused",
                    way.label()
                );
                ensure!(
                    before == after,
                    "{} with {what} planted: changed from {before:?} to {after:?}",
                    way.label()
                );
                Ok(())
            });
            tried += 1;
            way.kind.remove(&target);
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {tried} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    scratch.finish()
}

/// Role: connects to a Unix stream socket, sends `payload` unless it is empty, and waits for
/// the server to close the connection (end of file or a reset).
fn client(args: &[String]) -> Outcome {
    let [path, payload] = args else {
        return Err("args: PATH PAYLOAD".into());
    };
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let mut s = check!(std::os::unix::net::UnixStream::connect(path));
    if !payload.is_empty() {
        // Already turned away, the write finds the connection closed.
        match s.write_all(payload.as_bytes()) {
            Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset) => return Ok(()),
            r => check!(r),
        }
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ConnectionReset => Ok(()),
        other => Err(format!("expected to be turned away, got {other:?}")),
    }
}

fn the_allow_list_rejects_before_any_payload() -> Outcome {
    let scratch = Scratch::new("sec-allow")?;
    for (_, scheme, conn) in SOCKETS {
        if !conn {
            continue;
        }
        let path = scratch.join("s");
        let e = check!(Endpoint::parse(&format!("{scheme}:{}", path.display())));
        let mut listener = check!(Listener::bind(&e, &Options::default().mode(0o666)));
        listener.allow_uids([rustix::process::geteuid().as_raw()]);
        let server = std::thread::spawn(move || -> Result<Vec<u8>, String> {
            let mut conn = check!(listener.accept_timeout(STEP));
            let msg = check!(conn.receiver.recv_timeout(STEP));
            Ok(msg)
        });
        let p = path.display().to_string();
        // Turned away both silent (before it sends anything) and with a payload.
        for payload in ["", "from nobody"] {
            let mut cmd = role("security::client", &[&p, payload]);
            Proc::spawn("nobody's client", as_nobody(&mut cmd)?)?.success(STEP)?;
        }
        let mut s = check!(std::os::unix::net::UnixStream::connect(&path));
        check!(s.write_all(b"\0\0\0\x09from root"));
        let got = server.join().map_err(|_| "server panicked")??;
        ensure!(got == b"from root", "the first message served: {got:?}");
    }
    scratch.finish()
}
