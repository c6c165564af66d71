//! `procom rm ENDPOINT...`: removes IPC objects named like endpoints, through the library's
//! removal functions (which refuse a planted object of another kind); `procom rm --stale`:
//! removes what procom can prove abandoned.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clap::Args;
use procom::endpoint::{SysvKey, UnixAddr};
use procom::{Endpoint, ErrorKind};

use super::ls::{Users, proc_net_unix, served, sysvipc, why};
use crate::interrupt::warn;

#[derive(Debug, Args)]
pub struct RmArgs {
    /// What to remove: mq:/NAME, msg:KEY (or msg:PATH), shm:/NAME (a segment or a procom
    /// channel), sem:/NAME (a named semaphore), unix:PATH, fifo:PATH, or a System V object by
    /// the id `procom ls` and ipcs show: msgid:ID, shmid:ID, semid:ID.
    #[arg(value_name = "ENDPOINT", required_unless_present = "stale")]
    pub endpoints: Vec<String>,
    /// Remove what procom can prove abandoned instead: procom channel segments whose receiver
    /// is gone (its owner lock is free), and socket files in the --dir directories that nothing
    /// is bound to; only this user's (root: everyone's). Prints what it removed.
    #[arg(long, conflicts_with = "endpoints")]
    pub stale: bool,
    /// With --stale: also look for abandoned socket files in DIR (not in its
    /// subdirectories); repeatable.
    #[arg(long, value_name = "DIR", requires = "stale")]
    pub dir: Vec<PathBuf>,
    /// Do not ask before removing (procom asks only when standard input is a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// An object to remove, as named on the command line.
#[derive(Debug)]
enum Target {
    Mq(String),
    Msg(SysvKey),
    Shm(String),
    Sem(String),
    Socket(PathBuf),
    Fifo(PathBuf),
    MsgId(i32),
    ShmId(i32),
    SemId(i32),
}

const TAKES: &str = "procom rm takes mq:/NAME, msg:KEY, shm:/NAME, sem:/NAME, unix:PATH (or unixgram:, unixpacket:), fifo:PATH, msgid:ID, shmid:ID or semid:ID";

fn parse(text: &str) -> anyhow::Result<Target> {
    for (scheme, make) in [
        ("msgid:", Target::MsgId as fn(i32) -> Target),
        ("shmid:", Target::ShmId),
        ("semid:", Target::SemId),
    ] {
        if let Some(id) = text.strip_prefix(scheme) {
            return id
                .parse::<i32>()
                .ok()
                .filter(|i| *i >= 0)
                .map(make)
                .ok_or_else(|| {
                    super::usage!(
                        "`{text}`: an id is a number of 0 or more (procom ls or ipcs shows it)"
                    )
                });
        }
    }
    if let Some(name) = text.strip_prefix("sem:") {
        if !name.starts_with('/') || name.len() < 2 || name[1..].contains('/') {
            return Err(super::usage!(
                "`{text}`: a semaphore name starts with '/' and has no other '/' (like sem:/lock)"
            ));
        }
        return Ok(Target::Sem(name.to_string()));
    }
    Ok(match Endpoint::parse(text)? {
        Endpoint::Mq { name, .. } => Target::Mq(name),
        Endpoint::Msg { key, .. } => Target::Msg(key),
        Endpoint::Shm { name, .. } => Target::Shm(name),
        Endpoint::Fifo { path } => Target::Fifo(path),
        Endpoint::Unix { addr } | Endpoint::UnixGram { addr } | Endpoint::UnixPacket { addr } => {
            match addr {
                UnixAddr::Path(p) => Target::Socket(p),
                UnixAddr::Abstract(_) => {
                    return Err(super::usage!(
                        "`{text}` is an abstract socket: it has no file to remove, and goes when the process that holds it closes it"
                    ));
                }
            }
        }
        _ => {
            return Err(super::usage!(
                "`{text}` names nothing that stays behind to remove; {TAKES}"
            ));
        }
    })
}

/// The uid that owns what `target` names, where it can be looked up.
fn owner_of(target: &Target) -> Option<u32> {
    let file = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.uid());
    let sysv = |file: &str, col: &str, want: i64| {
        sysvipc(file).ok()?.into_iter().find_map(|r| {
            (r.get(col) == Some(&want))
                .then(|| r.get("uid").map(|u| *u as u32))
                .flatten()
        })
    };
    match target {
        Target::Mq(name) => file(Path::new(&format!("/dev/mqueue{name}"))),
        Target::Shm(name) => file(Path::new(&format!("/dev/shm{name}"))),
        Target::Sem(name) => file(Path::new(&format!("/dev/shm/sem.{}", &name[1..]))),
        Target::Socket(p) | Target::Fifo(p) => file(p),
        Target::Msg(SysvKey::Key(k)) => sysv("msg", "key", i64::from(*k)),
        Target::Msg(SysvKey::Path(_)) => None,
        Target::MsgId(id) => sysv("msg", "msqid", i64::from(*id)),
        Target::ShmId(id) => sysv("shm", "shmid", i64::from(*id)),
        Target::SemId(id) => sysv("sem", "semid", i64::from(*id)),
    }
}

fn remove(target: &Target) -> Result<(), procom::Error> {
    match target {
        Target::Mq(name) => procom::mq::remove(name),
        Target::Msg(key) => procom::msg::remove(key),
        Target::Shm(name) => {
            // A named semaphore lives in /dev/shm too, as sem.NAME: not a segment.
            if let Some(sem) = name.strip_prefix("/sem.")
                && Path::new(&format!("/dev/shm{name}")).exists()
            {
                return Err(procom::Error::new(ErrorKind::WrongType)
                    .detail(format!(
                        "is the named semaphore /{sem}, not a shared-memory segment; remove it as sem:/{sem}"
                    ))
                    .object(format!("shm:{name}")));
            }
            procom::shm::remove(name)
        }
        Target::Sem(name) => procom::sem::remove(name),
        Target::Socket(path) => procom::socket::remove(path),
        Target::Fifo(path) => procom::fifo::remove(path),
        Target::MsgId(id) => procom::msg::remove_id(*id),
        Target::ShmId(id) => procom::shm::remove_sysv_id(*id),
        Target::SemId(id) => procom::sem::remove_set_id(*id),
    }
}

/// A refused removal as one sentence: another user's object names its owner.
fn refusal(text: &str, target: &Target, e: procom::Error, users: &Users) -> anyhow::Error {
    if e.kind() == ErrorKind::PermissionDenied {
        let me = rustix::process::geteuid().as_raw();
        match owner_of(target) {
            Some(uid) if uid != me => {
                return anyhow::anyhow!(
                    "{text}: not removed: it belongs to {}, and only its owner or root may remove it",
                    users.name(uid)
                );
            }
            Some(_) => {
                return anyhow::anyhow!(
                    "{text}: not removed: it is yours, but the directory it is in does not let you remove it"
                );
            }
            None => {}
        }
    }
    anyhow::Error::new(e)
}

/// Asks "QUESTION [y/N]" on a terminal; `true` without asking when `yes` or when standard
/// input is not a terminal (a script is never prompted).
fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if yes || !stdin.is_terminal() {
        return Ok(true);
    }
    {
        let _whole = crate::interrupt::output_lock();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "procom: {question} [y/N] ");
        let _ = err.flush();
    }
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
    if !yes {
        warn(format_args!("nothing removed"));
    }
    Ok(yes)
}

pub fn run(args: RmArgs) -> anyhow::Result<()> {
    if args.stale {
        return stale(&args.dir, args.yes);
    }
    // Every name is checked before anything is removed: a typo removes nothing.
    let targets = args
        .endpoints
        .iter()
        .map(|t| parse(t).map(|target| (t.as_str(), target)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let list: Vec<&str> = targets.iter().map(|(t, _)| *t).collect();
    if !confirm(&format!("remove {}?", list.join(", ")), args.yes)? {
        return Ok(());
    }
    let users = Users::load();
    let mut failed: Option<anyhow::Error> = None;
    for (text, target) in &targets {
        if let Err(e) = remove(target) {
            if let Some(earlier) = failed.take() {
                warn(format_args!("{earlier}"));
            }
            failed = Some(refusal(text, target, e, &users));
        }
    }
    // The last failure is the program's error (exit 1); earlier ones were printed already.
    failed.map_or(Ok(()), Err)
}

/// An object `--stale` found abandoned.
enum Stale {
    Channel(String),
    Socket(PathBuf),
}

impl Stale {
    fn endpoint(&self) -> String {
        match self {
            Stale::Channel(name) => format!("shm:{name}"),
            Stale::Socket(path) => format!("unix:{}", path.display()),
        }
    }
}

fn stale(dirs: &[PathBuf], yes: bool) -> anyhow::Result<()> {
    let me = rustix::process::geteuid();
    let mine = |uid: u32| me.is_root() || uid == me.as_raw();
    let mut found = Vec::new();
    match std::fs::read_dir("/dev/shm") {
        Ok(entries) => {
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let file = entry.file_name().to_string_lossy().into_owned();
                if !meta.file_type().is_file() || file.starts_with("sem.") || !mine(meta.uid()) {
                    continue;
                }
                let name = format!("/{file}");
                if let Ok(Some(c)) = procom::stale::shm_channel(&name)
                    && !c.alive
                {
                    found.push(Stale::Channel(name));
                }
            }
        }
        Err(e) => warn(format_args!(
            "/dev/shm: {}; its channels were not checked",
            why(&e)
        )),
    }
    if !dirs.is_empty() {
        let sockets = match proc_net_unix() {
            Ok(s) => s,
            Err(e) => {
                warn(format_args!(
                    "/proc/net/unix: {}; socket files were not checked",
                    why(&e)
                ));
                return remove_stale(found, yes);
            }
        };
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(d) => d,
                Err(e) => {
                    warn(format_args!(
                        "{}: {}; its socket files were not checked",
                        dir.display(),
                        why(&e)
                    ));
                    continue;
                }
            };
            let base = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let path = base.join(entry.file_name());
                if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())
                    && mine(meta.uid())
                    && served(&path, &sockets) == Some(false)
                {
                    found.push(Stale::Socket(path));
                }
            }
        }
    }
    remove_stale(found, yes)
}

fn remove_stale(found: Vec<Stale>, yes: bool) -> anyhow::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(Stale::endpoint).collect();
    if !confirm(
        &format!("remove these abandoned objects: {}?", list.join(", ")),
        yes,
    )? {
        return Ok(());
    }
    let mut failed = None;
    for s in &found {
        // Checked again as it is removed: it may have come back to life, or gone, since.
        let r = match s {
            Stale::Channel(name) => procom::stale::remove_shm_channel(name).map(|pid| {
                format!(
                    "removed {} (its receiver, pid {pid}, is gone)",
                    s.endpoint()
                )
            }),
            Stale::Socket(path) => procom::stale::remove_unix_socket(path)
                .map(|()| format!("removed {} (nothing is bound to it)", s.endpoint())),
        };
        match r {
            Ok(line) => super::outln!("{line}")?,
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => {
                warn(format_args!("{e}; left alone"));
            }
            Err(e) => {
                if let Some(earlier) = failed.replace(anyhow::Error::new(e)) {
                    warn(format_args!("{earlier}"));
                }
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
