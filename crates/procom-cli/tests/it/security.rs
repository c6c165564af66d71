//! The security matrix from the command line: every command that creates or opens a named
//! object ([`CREATORS`], [`OPENERS`], and for each Unix socket kind in [`SOCKETS`]), for every
//! kind of object.
//!
//! - A creator gives exactly the mode asked (0600 by default, and `--mode 640`) under the
//!   umasks 000, 022 and 077, and a long-running one removes what it made on SIGTERM.
//! - An opener run as uid 65534 on root's object fails with status 1 and one sentence that
//!   says permission was denied.
//! - An object, a file, a symbolic link (dangling too) or a hard link planted at the name by
//!   another user, world-writable and with content, makes a creator fail with one sentence and
//!   is left exactly as it was (inode, type, mode, owner, content; so is a link's target).
//! - `listen --allow-uid` turns another user away before reading anything.
//!
//! No command can be added without a row: `every_command_has_a_row` walks `procom --help` and
//! fails on a command that is neither in the matrix nor in [`OPEN_NOTHING`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use procom::endpoint::SysvKey;
use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Seen, Sysv, Trial, as_nobody, check, ensure, needs,
    path_seen, plant, queue_seen, sysv_seen, trials, unique_name, unix_listening,
};

use crate::common::{procom, run, until};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::security":
            every_command_has_a_row,
            modes_are_exact_under_every_umask,
            another_user_is_denied [needs::root()],
            planted_objects_are_refused_and_untouched [needs::root()],
            the_allow_list_rejects_before_any_payload [needs::root()];
    ]
}

/// A kind of named object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fifo,
    PosixQueue,
    SysvQueue,
    ShmChannel,
    PosixShm,
    SysvSegment,
    NamedSem,
    SemSet,
    Socket(&'static str),
}

/// Commands that create an object: the command (`{}` is the name), the kind, whether it runs
/// until stopped (and removes what it made), and the command that removes what stays.
const CREATORS: &[(&str, Kind, bool, &str)] = &[
    ("fifo create {}", Kind::Fifo, false, "fifo rm {}"),
    ("mq create {}", Kind::PosixQueue, false, "mq rm {}"),
    ("msg create {}", Kind::SysvQueue, false, "msg rm {}"),
    (
        "shm create {} --size 4096",
        Kind::PosixShm,
        false,
        "shm rm {}",
    ),
    (
        "shm create {} --size 4096",
        Kind::SysvSegment,
        false,
        "shm rm {}",
    ),
    ("sem create {} 1", Kind::NamedSem, false, "sem rm {}"),
    ("sem create {} 1", Kind::SemSet, false, "sem rm {}"),
    ("recv shm:{}", Kind::ShmChannel, true, ""),
];

/// The Unix socket kinds: the endpoint scheme, and whether it is connection-oriented (served
/// by `listen` and `relay --listen`, joined by `connect`, received from by connecting) or
/// datagrams (received by binding). One line per kind: [`socket_rows`] makes their rows.
const SOCKETS: &[(&str, bool)] = &[("unix", true), ("unixgram", false), ("unixpacket", true)];

/// One creating command: the command (`{}` is the name), the kind, whether it runs until
/// stopped (and removes what it made), the command that removes what stays, and whether it
/// takes --mode.
type Creator = (String, Kind, bool, &'static str, bool);

/// Every creating and every opening command.
fn rows() -> (Vec<Creator>, Vec<(String, Kind)>) {
    let mut creators: Vec<Creator> = CREATORS
        .iter()
        .map(|(c, k, long, rm)| (c.to_string(), *k, *long, *rm, true))
        .collect();
    let mut openers: Vec<(String, Kind)> =
        OPENERS.iter().map(|(c, k)| (c.to_string(), *k)).collect();
    for (scheme, conn) in SOCKETS {
        socket_rows(scheme, *conn, &mut creators, &mut openers);
    }
    (creators, openers)
}

fn socket_rows(
    scheme: &'static str,
    conn: bool,
    creators: &mut Vec<Creator>,
    openers: &mut Vec<(String, Kind)>,
) {
    let kind = Kind::Socket(scheme);
    let ep = format!("{scheme}:{{}}");
    openers.push((format!("send {ep} x"), kind));
    if conn {
        creators.push((format!("listen {ep}"), kind, true, "", true));
        // No --mode: always 0600.
        creators.push((format!("relay --listen - {ep}"), kind, true, "", false));
        openers.push((format!("connect {ep}"), kind));
        openers.push((format!("recv {ep}"), kind));
        openers.push((format!("relay {ep} -"), kind));
    } else {
        creators.push((format!("recv {ep}"), kind, true, "", true));
    }
}

/// Commands that open an existing object (`{}` is its name).
const OPENERS: &[(&str, Kind)] = &[
    ("send fifo:{} x --timeout 0", Kind::Fifo),
    ("recv fifo:{} --timeout 0", Kind::Fifo),
    ("fifo rm {}", Kind::Fifo),
    ("rm fifo:{}", Kind::Fifo),
    ("send mq:{} x", Kind::PosixQueue),
    ("recv mq:{} --timeout 0", Kind::PosixQueue),
    ("relay mq:{} -", Kind::PosixQueue),
    ("mq info {}", Kind::PosixQueue),
    ("mq rm {}", Kind::PosixQueue),
    ("rm mq:{}", Kind::PosixQueue),
    ("send msg:{} x", Kind::SysvQueue),
    ("recv msg:{} --timeout 0", Kind::SysvQueue),
    ("msg info {}", Kind::SysvQueue),
    ("msg rm {}", Kind::SysvQueue),
    ("rm msg:{}", Kind::SysvQueue),
    ("send shm:{} x", Kind::ShmChannel),
    ("shm info {}", Kind::PosixShm),
    ("shm read {}", Kind::PosixShm),
    ("shm write {} x", Kind::PosixShm),
    ("shm rm {}", Kind::PosixShm),
    ("rm shm:{}", Kind::PosixShm),
    ("shm info {}", Kind::SysvSegment),
    ("shm read {}", Kind::SysvSegment),
    ("shm write {} x", Kind::SysvSegment),
    ("shm rm {}", Kind::SysvSegment),
    ("sem post {}", Kind::NamedSem),
    ("sem wait {} --timeout 0", Kind::NamedSem),
    ("sem get {}", Kind::NamedSem),
    ("sem rm {}", Kind::NamedSem),
    ("rm sem:{}", Kind::NamedSem),
    ("sem post {}", Kind::SemSet),
    ("sem wait {} --timeout 0", Kind::SemSet),
    ("sem get {}", Kind::SemSet),
    ("sem rm {}", Kind::SemSet),
    ("rm unix:{}", Kind::Socket("unix")),
];

/// Commands that create or open no object by a name they are given.
const OPEN_NOTHING: &[&str] = &[
    "bench",
    "signal list",
    "signal send",
    "signal wait",
    "ls",
    "tour",
    "help",
];

fn args(template: &str, name: &str) -> Vec<String> {
    template
        .split_whitespace()
        .map(|w| w.replace("{}", name))
        .collect()
}

fn command_of(template: &str) -> String {
    let words: Vec<&str> = template.split_whitespace().collect();
    match words.as_slice() {
        [
            group @ ("fifo" | "mq" | "msg" | "shm" | "sem" | "signal"),
            sub,
            ..,
        ] => {
            format!("{group} {sub}")
        }
        [cmd, ..] => cmd.to_string(),
        [] => String::new(),
    }
}

impl Kind {
    fn fresh(self, dir: &Path) -> String {
        match self {
            Kind::Fifo | Kind::Socket(_) => dir.join(unique_name("sec")).display().to_string(),
            Kind::SysvQueue | Kind::SysvSegment | Kind::SemSet => fresh_key().to_string(),
            _ => format!("/{}", unique_name("procom-clisec")),
        }
    }

    fn path(self, name: &str) -> Option<PathBuf> {
        match self {
            Kind::Fifo | Kind::Socket(_) => Some(name.into()),
            Kind::PosixShm | Kind::ShmChannel => Some(format!("/dev/shm{name}").into()),
            Kind::NamedSem => Some(format!("/dev/shm/sem.{}", &name[1..]).into()),
            _ => None,
        }
    }

    fn seen(self, name: &str) -> Option<Seen> {
        let key = || name.parse().unwrap_or(0);
        match self {
            Kind::PosixQueue => queue_seen(name),
            Kind::SysvQueue => sysv_seen(Sysv::Msg, key()),
            Kind::SysvSegment => sysv_seen(Sysv::Shm, key()),
            Kind::SemSet => sysv_seen(Sysv::Sem, key()),
            other => path_seen(&other.path(name)?),
        }
    }

    /// Root's object of this kind at `name`, mode 0600, removed when the value is dropped.
    fn make(self, name: &str) -> Result<Box<dyn std::any::Any>, String> {
        let key = || SysvKey::Key(name.parse().unwrap_or(0));
        Ok(match self {
            Kind::Fifo => Box::new(check!(procom::fifo::Fifo::create(name))),
            Kind::PosixQueue => Box::new(check!(procom::mq::Queue::create(name, None, None))),
            Kind::SysvQueue => Box::new(check!(procom::msg::MsgQueue::create(&key()))),
            Kind::PosixShm => Box::new(check!(procom::shm::Segment::create(name, 4096))),
            Kind::SysvSegment => Box::new(check!(procom::shm::Segment::create_sysv(&key(), 4096))),
            Kind::NamedSem => Box::new(check!(procom::sem::Semaphore::create(name, 1))),
            Kind::SemSet => Box::new(check!(procom::sem::SemSet::create(&key(), &[1]))),
            Kind::ShmChannel | Kind::Socket(_) => {
                let ep = format!("{}:{name}", self.scheme());
                Box::new(check!(procom::Receiver::bind(ep.as_str())))
            }
        })
    }

    fn scheme(self) -> &'static str {
        match self {
            Kind::ShmChannel => "shm",
            Kind::Socket(s) => s,
            _ => "",
        }
    }

    /// Plants, as uid 65534, an object of this kind at `name`, world-writable, with content.
    fn plant_same(self, name: &str) -> Outcome {
        let nobody = |args: &[&str]| -> Outcome {
            let mut cmd = procom(args);
            Proc::spawn("planting", as_nobody(&mut cmd)?)?
                .success(STEP)
                .map(drop)
        };
        match self {
            Kind::Fifo => nobody(&["fifo", "create", name, "--mode", "666"]),
            Kind::PosixQueue => {
                nobody(&["mq", "create", name, "--mode", "666"])?;
                nobody(&["send", &format!("mq:{name}"), "planted"])
            }
            Kind::SysvQueue => {
                nobody(&["msg", "create", name, "--mode", "666"])?;
                nobody(&["send", &format!("msg:{name}"), "planted"])
            }
            Kind::PosixShm | Kind::SysvSegment => {
                nobody(&["shm", "create", name, "--size", "64", "--mode", "666"])?;
                nobody(&["shm", "write", name, "planted"])
            }
            Kind::NamedSem | Kind::SemSet => nobody(&["sem", "create", name, "3", "--mode", "666"]),
            // A stale socket file: its server gone.
            Kind::ShmChannel | Kind::Socket(_) => {
                std::mem::forget(plant(&self.path(name).ok_or("path")?, Plant::Socket)?);
                Ok(())
            }
        }
    }

    fn remove(self, name: &str) {
        let key = || SysvKey::Key(name.parse().unwrap_or(0));
        let _ = match self {
            Kind::PosixQueue => procom::mq::remove(name),
            Kind::SysvQueue => procom::msg::remove(&key()),
            Kind::SysvSegment => procom::shm::remove_sysv(&key()),
            Kind::SemSet => procom::sem::SemSet::open_all(&key()).and_then(|s| s.remove()),
            other => {
                if let Some(p) = other.path(name) {
                    let _ = std::fs::remove_file(&p);
                    let _ = std::fs::remove_file(victim(&p));
                }
                Ok(())
            }
        };
    }
}

fn victim(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".victim");
    s.into()
}

/// A System V key no other test or run uses.
fn fresh_key() -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0x5ec1_0000 | ((std::process::id() & 0xff) << 8) | (n & 0xff)) as i32
}

/// The commands `procom --help` lists, with their subcommands (`mq create`), less `help`.
fn listed_commands(prefix: &[&str]) -> Result<Vec<String>, String> {
    let mut a = prefix.to_vec();
    a.push("--help");
    let fin = run(&a)?;
    ensure!(fin.status.success(), "{a:?}: {fin:?}");
    let mut found = Vec::new();
    let mut in_list = false;
    for line in &fin.stdout {
        if line == "Commands:" {
            in_list = true;
        } else if in_list && line.starts_with("  ") {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name == "help" {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(name);
            let subs = listed_commands(&path)?;
            if subs.is_empty() {
                found.push(path.join(" "));
            } else {
                found.extend(subs);
            }
        } else {
            in_list = false;
        }
    }
    Ok(found)
}

fn every_command_has_a_row() -> Outcome {
    let (creators, openers) = rows();
    let mut covered: Vec<String> = creators
        .iter()
        .map(|c| command_of(&c.0))
        .chain(openers.iter().map(|o| command_of(&o.0)))
        .chain(OPEN_NOTHING.iter().map(|s| s.to_string()))
        .collect();
    covered.sort();
    covered.dedup();
    let listed = listed_commands(&[])?;
    let missing: Vec<&String> = listed.iter().filter(|c| !covered.contains(c)).collect();
    ensure!(
        missing.is_empty(),
        "commands with no row in the security matrix (tests/it/security.rs): {missing:?}"
    );
    let stale: Vec<&String> = covered
        .iter()
        .filter(|c| !listed.contains(c) && *c != "help")
        .collect();
    ensure!(
        stale.is_empty(),
        "rows for commands procom does not have: {stale:?}"
    );
    Ok(())
}

/// Runs `procom ARGS` through a shell that sets the umask first.
fn with_umask(mask: u32, args: &[String]) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_procom"))
        .args(args)
        .stdin(std::process::Stdio::null());
    sh
}

fn modes_are_exact_under_every_umask() -> Outcome {
    let scratch = Scratch::new("clisec-modes")?;
    let me = rustix::process::geteuid().as_raw();
    for (template, kind, long, rm, has_mode) in rows().0 {
        let template = template.as_str();
        for mask in [0o000, 0o022, 0o077] {
            let modes: &[(Option<&str>, u32)] = if has_mode {
                &[(None, 0o600), (Some("640"), 0o640)]
            } else {
                &[(None, 0o600)]
            };
            for (asked, expected) in modes {
                let name = kind.fresh(scratch.path());
                let mut a = args(template, &name);
                if let Some(m) = asked {
                    a.extend(["--mode".to_string(), m.to_string()]);
                }
                let what = format!("procom {} under umask {mask:03o}", a.join(" "));
                let mut cmd = with_umask(mask, &a);
                let p = Proc::spawn(&what, &mut cmd)?;
                let seen = if long {
                    // A socket file is made, then given its mode: never more open than
                    // asked on the way, and the mode asked in the end.
                    let mut wider = None;
                    until(
                        &format!("{what} made its object with mode {expected:o}"),
                        || {
                            let now = kind.seen(&name);
                            if let Some(s) = &now
                                && s.perms() & !*expected != 0
                            {
                                wider = Some(s.perms());
                            }
                            now.is_some_and(|s| s.perms() == *expected)
                        },
                    )?;
                    ensure!(
                        wider.is_none(),
                        "{what}: was {wider:?} (octal {:o}) on the way",
                        wider.unwrap_or(0)
                    );
                    let seen = kind.seen(&name);
                    let pid = rustix::process::Pid::from_raw(p.pid() as i32).ok_or("pid")?;
                    crate::common::until_catching(p.pid(), &[15])?;
                    check!(rustix::process::kill_process(
                        pid,
                        rustix::process::Signal::TERM
                    ));
                    p.finish(STEP)?;
                    seen
                } else {
                    p.success(STEP)?;
                    let seen = kind.seen(&name);
                    let rm_args = args(rm, &name);
                    let rm_args: Vec<&str> = rm_args.iter().map(String::as_str).collect();
                    let removed = run(&rm_args)?;
                    ensure!(removed.status.success(), "{rm}: {removed:?}");
                    seen
                };
                let seen = seen.ok_or_else(|| format!("{what}: nothing made"))?;
                ensure!(
                    seen.perms() == *expected && seen.uid == me,
                    "{what}: mode {:o}, uid {}",
                    seen.perms(),
                    seen.uid
                );
                ensure!(kind.seen(&name).is_none(), "{what}: left {name}");
            }
        }
    }
    scratch.finish()
}

fn another_user_is_denied() -> Outcome {
    let scratch = Scratch::new("clisec-denied")?;
    let mut failures = Vec::new();
    let openers = rows().1;
    for (template, kind) in &openers {
        let template = template.as_str();
        let name = kind.fresh(scratch.path());
        let made = kind.make(&name)?;
        let before = kind.seen(&name);
        let a = args(template, &name);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut cmd = procom(&a);
        let fin = Proc::spawn(template, as_nobody(&mut cmd)?)?.finish(STEP)?;
        // Every line one of procom's sentences (relay says first what it does), the last
        // saying why it was refused.
        let last = fin.stderr.lines().last().unwrap_or_default();
        if !(fin.code() == Some(1)
            && fin.stderr.lines().all(|l| l.starts_with("procom: "))
            && (last.contains("permission denied")
                || last.contains("only its owner or root may remove it")))
        {
            failures.push(format!(
                "{template} on {kind:?}: {}: {:?}",
                fin.status, fin.stderr
            ));
        } else if kind.seen(&name) != before {
            failures.push(format!("{template} on {kind:?} changed it"));
        }
        drop(made);
    }
    ensure!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        openers.len(),
        failures.join("\n")
    );
    scratch.finish()
}

/// What can be planted at a name of `kind` (besides another object of the kind).
fn plants(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::PosixQueue | Kind::SysvQueue | Kind::SysvSegment | Kind::SemSet => &["same"],
        Kind::PosixShm | Kind::ShmChannel | Kind::NamedSem => {
            &["same", "fifo", "symlink", "dangling", "hardlink"]
        }
        Kind::Fifo | Kind::Socket(_) => &["same", "file", "symlink", "dangling", "hardlink"],
    }
}

fn plant_at(kind: Kind, what: &str, name: &str) -> Outcome {
    let path = || kind.path(name).ok_or("no path");
    let keep = |p: procom_testkit::Planted| std::mem::forget(p);
    match what {
        "same" => kind.plant_same(name)?,
        "file" => keep(plant(&path()?, Plant::File)?),
        "fifo" => keep(plant(&path()?, Plant::Fifo)?),
        "symlink" => {
            keep(plant(&victim(&path()?), Plant::File)?);
            keep(plant(&path()?, Plant::Symlink(&victim(&path()?)))?);
        }
        "dangling" => keep(plant(&path()?, Plant::Symlink(&victim(&path()?)))?),
        "hardlink" => {
            keep(plant(&victim(&path()?), Plant::File)?);
            keep(plant(&path()?, Plant::HardLink(&victim(&path()?)))?);
        }
        _ => return Err(format!("no plant {what}")),
    }
    Ok(())
}

fn planted_objects_are_refused_and_untouched() -> Outcome {
    let scratch = Scratch::new("clisec-planted")?;
    check!(std::fs::set_permissions(
        scratch.path(),
        std::fs::Permissions::from_mode(0o777)
    ));
    // Creators meet every plant; openers all but another user's object of their kind, which
    // they may open (a segment is a file in /dev/shm, however many names it has) or, as root,
    // remove (a semaphore's file cannot be told from a real one by its name).
    let (creators, openers) = rows();
    let all = creators
        .iter()
        .map(|c| (c.0.as_str(), c.1, true))
        .chain(openers.iter().map(|o| (o.0.as_str(), o.1, false)));
    let mut failures = Vec::new();
    let mut tried = 0;
    for (template, kind, creates) in all {
        for what in plants(kind) {
            let file = matches!(*what, "file" | "hardlink");
            let removal = template.starts_with("rm ") || template.contains(" rm ");
            let same = *what == "same"
                || (kind == Kind::PosixShm && file)
                || (kind == Kind::NamedSem && file && removal);
            if same && !creates {
                continue;
            }
            tried += 1;
            let name = kind.fresh(scratch.path());
            let result = (|| -> Outcome {
                plant_at(kind, what, &name)?;
                let snapshot = || {
                    let v = kind.path(&name).and_then(|p| path_seen(&victim(&p)));
                    (kind.seen(&name), v)
                };
                let before = snapshot();
                ensure!(before.0.is_some(), "nothing planted");
                let a = args(template, &name);
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let mut p = Proc::spawn(template, &mut procom(&a))?;
                // It ends (refused), or it took the name: no need to wait for the rest.
                let mut ended = false;
                until("the command ends or touches the planted object", || {
                    ended = matches!(p.exits_within(std::time::Duration::ZERO), Ok(Some(_)));
                    ended || snapshot() != before
                })?;
                let after = snapshot();
                if !ended {
                    let _ = p.child().kill();
                    let _ = p.child().wait();
                }
                ensure!(ended, "took the name: {before:?} became {after:?}");
                let fin = p.finish(STEP)?;
                // One sentence (relay says first what it does), status 1.
                ensure!(
                    fin.code() == Some(1)
                        && fin.stderr.lines().all(|l| l.starts_with("procom: "))
                        && (creates || fin.stderr.lines().count() <= 2)
                        && (!creates || fin.stderr.lines().count() == 1),
                    "not refused in one sentence: {}: {:?}",
                    fin.status,
                    fin.stderr
                );
                ensure!(before == after, "changed from {before:?} to {after:?}");
                Ok(())
            })();
            kind.remove(&name);
            if let Err(e) = result {
                failures.push(format!("{template} with {what} planted: {e}"));
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    scratch.finish()
}

fn the_allow_list_rejects_before_any_payload() -> Outcome {
    let scratch = Scratch::new("clisec-allow")?;
    let path = scratch.join("s");
    let ep = format!("unix:{}", path.display());
    let me = rustix::process::geteuid().as_raw().to_string();
    let server = Proc::spawn(
        "listen",
        &mut procom(&["listen", &ep, "--mode", "666", "--allow-uid", &me]),
    )?;
    unix_listening(server.pid(), &path)?;
    // Turned away: its message is never printed (its send may or may not see the close).
    let mut cmd = procom(&["send", &ep, "from nobody"]);
    Proc::spawn("nobody's send", as_nobody(&mut cmd)?)?.finish(STEP)?;
    let sent = run(&["send", &ep, "from root"])?;
    ensure!(sent.status.success(), "{sent:?}");
    let mut server = server;
    let line = server.line(STEP)?;
    ensure!(line == "from root", "the first line served: {line:?}");
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).ok_or("pid")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::TERM
    ));
    let fin = server.finish(STEP)?;
    ensure!(!fin.stdout.iter().any(|l| l.contains("nobody")), "{fin:?}");
    scratch.finish()
}
