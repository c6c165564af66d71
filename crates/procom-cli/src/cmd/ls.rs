//! `procom ls`: every IPC object on this machine in one table (or `--json`), and
//! `procom ls --limits`: the kernel limits on each mechanism.
//!
//! Sources, each read on its own: /dev/mqueue (POSIX queues), /dev/shm (POSIX segments, and
//! named semaphores as `sem.NAME`), /proc/sysvipc/{msg,shm,sem} (System V), /proc/net/unix
//! (Unix sockets, their owning process found through /proc/*/fd) and the directories given
//! with `--fifos` (FIFOs and socket files). A source that cannot be read is one line on
//! standard error; the others are still listed.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::interrupt::warn;

mod limits;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only objects of this kind (repeatable): mq, shm, sem (POSIX queues, segments and named
    /// semaphores), msg, shmid, semid (System V queues, segments and semaphore sets), unix
    /// (Unix sockets), fifo (FIFOs in the --fifos directories).
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Vec<Kind>,
    /// Only objects this user owns (a user name or a uid).
    #[arg(long, value_name = "USER|UID")]
    pub owner: Option<String>,
    /// Print a JSON array of objects (fields: kind, name, key, id, owner, uid, mode, size,
    /// count, alive, abandoned, pid, endpoint, ...; null where they do not apply).
    #[arg(long)]
    pub json: bool,
    /// Also list the FIFOs and socket files in DIR (not in its subdirectories); repeatable.
    /// A socket file nothing is bound to is listed as abandoned.
    #[arg(long, visible_alias = "dir", value_name = "DIR")]
    pub fifos: Vec<PathBuf>,
    /// List the kernel limits on each mechanism instead: their values, their use where the
    /// kernel reports it, and the sysctl or rlimit that raises them.
    #[arg(long, conflicts_with_all = ["kind", "owner", "fifos"])]
    pub limits: bool,
}

/// The kinds of object, as `--kind` and the KIND column name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Kind {
    /// POSIX message queue.
    Mq,
    /// POSIX shared-memory segment (procom channels included).
    Shm,
    /// POSIX named semaphore.
    Sem,
    /// System V message queue.
    Msg,
    /// System V shared-memory segment.
    Shmid,
    /// System V semaphore set.
    Semid,
    /// Unix socket.
    Unix,
    /// FIFO (named pipe).
    Fifo,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Mq => "mq",
            Kind::Shm => "shm",
            Kind::Sem => "sem",
            Kind::Msg => "msg",
            Kind::Shmid => "shmid",
            Kind::Semid => "semid",
            Kind::Unix => "unix",
            Kind::Fifo => "fifo",
        }
    }
}

/// One IPC object. `None` is "does not apply" or "cannot be known".
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: Kind,
    /// A POSIX name (`/jobs`), a path, or `@name` (abstract socket).
    pub name: Option<String>,
    /// A System V key.
    pub key: Option<i32>,
    /// A System V id.
    pub id: Option<i32>,
    pub uid: Option<u32>,
    pub mode: Option<u32>,
    pub size: Option<u64>,
    pub count: Option<u64>,
    /// Whether the process that keeps it (its creator, receiver, server) is alive.
    pub alive: Option<bool>,
    /// The creator's or owning process's pid.
    pub pid: Option<u32>,
    /// The last pid that used it (System V segments: last attach; queues: last send).
    pub lpid: Option<u32>,
    /// System V queues: the last receiver.
    pub lrpid: Option<u32>,
    /// System V segments: processes attached.
    pub attached: Option<u64>,
    /// POSIX segments: whether it is a procom channel.
    pub channel: Option<bool>,
    /// Unix sockets: stream, dgram or seqpacket.
    pub socket_type: Option<&'static str>,
    /// Unix sockets: whether it listens (stream and seqpacket).
    pub listening: Option<bool>,
}

impl Object {
    fn new(kind: Kind) -> Object {
        Object {
            kind,
            name: None,
            key: None,
            id: None,
            uid: None,
            mode: None,
            size: None,
            count: None,
            alive: None,
            pid: None,
            lpid: None,
            lrpid: None,
            attached: None,
            channel: None,
            socket_type: None,
            listening: None,
        }
    }

    /// Provably left behind: its keeper is known to be gone.
    pub fn abandoned(&self) -> bool {
        self.alive == Some(false)
    }

    /// How `procom rm` names it.
    pub fn endpoint(&self) -> Option<String> {
        let name = self.name.as_deref();
        Some(match self.kind {
            Kind::Mq | Kind::Shm | Kind::Sem | Kind::Fifo => {
                format!("{}:{}", self.kind.as_str(), name?)
            }
            Kind::Unix => {
                let scheme = match self.socket_type {
                    Some("dgram") => "unixgram",
                    Some("seqpacket") => "unixpacket",
                    _ => "unix",
                };
                format!("{scheme}:{}", name?)
            }
            Kind::Msg | Kind::Shmid | Kind::Semid => {
                let scheme = match self.kind {
                    Kind::Msg => "msgid",
                    Kind::Shmid => "shmid",
                    _ => "semid",
                };
                format!("{scheme}:{}", self.id?)
            }
        })
    }

    fn key_text(&self) -> Option<String> {
        self.key.map(|k| format!("{:#x}", k as u32))
    }

    fn to_json(&self, users: &Users) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "name": self.name,
            "key": self.key_text(),
            "id": self.id,
            "owner": self.uid.map(|u| users.name(u)),
            "uid": self.uid,
            "mode": self.mode.map(|m| format!("{m:04o}")),
            "size": self.size,
            "count": self.count,
            "alive": self.alive,
            "abandoned": self.abandoned(),
            "pid": self.pid,
            "lpid": self.lpid,
            "lrpid": self.lrpid,
            "attached": self.attached,
            "channel": self.channel,
            "type": self.socket_type,
            "listening": self.listening,
            "endpoint": self.endpoint(),
        })
    }

    fn size_or_count(&self) -> String {
        let bytes = |n: u64| format!("{n} B");
        match self.kind {
            Kind::Mq | Kind::Msg => match (self.count, self.size) {
                (Some(c), Some(s)) => format!("{c} msgs, {}", bytes(s)),
                (Some(c), None) => format!("{c} msgs"),
                (None, Some(s)) => bytes(s),
                (None, None) => String::new(),
            },
            Kind::Shm | Kind::Shmid => self.size.map(bytes).unwrap_or_default(),
            Kind::Sem => self.count.map(|v| format!("value {v}")).unwrap_or_default(),
            Kind::Semid => self.count.map(|n| format!("{n} sems")).unwrap_or_default(),
            Kind::Unix | Kind::Fifo => String::new(),
        }
    }

    fn note(&self) -> String {
        let mut parts = Vec::new();
        if self.channel == Some(true) {
            parts.push("procom channel".to_string());
        }
        if let Some(n) = self.attached {
            parts.push(format!("{n} attached"));
        }
        if let Some(t) = self.socket_type {
            parts.push(t.to_string());
        }
        match self.listening {
            Some(true) => parts.push("listening".into()),
            Some(false) if self.socket_type != Some("dgram") => parts.push("not listening".into()),
            _ => {}
        }
        parts.join(", ")
    }
}

/// User names from /etc/passwd (a uid without one is shown as its number).
pub struct Users(HashMap<u32, String>);

impl Users {
    pub fn load() -> Users {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Users(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let uid = f.nth(1)?.parse().ok()?;
                    Some((uid, name.to_string()))
                })
                .collect(),
        )
    }

    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    /// A user name or uid as given to `--owner`.
    fn uid_of(&self, who: &str) -> Option<u32> {
        who.parse()
            .ok()
            .or_else(|| self.0.iter().find(|(_, n)| *n == who).map(|(u, _)| *u))
    }
}

/// Reports a source that could not be read, and goes on.
fn unreadable(source: &str, why: impl std::fmt::Display) {
    warn(format_args!("{source}: {why}; not listed"));
}

pub fn why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "does not exist".into(),
        _ => e.to_string(),
    }
}

fn alive_pid(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The mqueue file system's magic number (`statfs(2)`).
pub(super) const MQUEUE_MAGIC: u64 = 0x1980_0202;

fn posix_queues(out: &mut Vec<Object>) {
    let source = "POSIX message queues (/dev/mqueue)";
    match rustix::fs::statfs("/dev/mqueue") {
        Ok(st) if st.f_type as u64 == MQUEUE_MAGIC => {}
        _ => {
            return unreadable(
                source,
                "no mqueue file system is mounted there (mount -t mqueue none /dev/mqueue)",
            );
        }
    }
    let dir = match std::fs::read_dir("/dev/mqueue") {
        Ok(d) => d,
        Err(e) => return unreadable(source, why(&e)),
    };
    for entry in dir.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let name = format!("/{}", entry.file_name().to_string_lossy());
        // "QSIZE:N NOTIFY:..." — the bytes waiting in the queue.
        let size = std::fs::read_to_string(entry.path()).ok().and_then(|t| {
            t.split_whitespace()
                .find_map(|f| f.strip_prefix("QSIZE:"))
                .and_then(|n| n.parse().ok())
        });
        let count = procom::mq::Queue::open_with(&name, true, false)
            .and_then(|q| q.attributes())
            .ok()
            .map(|a| a.count);
        out.push(Object {
            name: Some(name),
            uid: Some(meta.uid()),
            mode: Some(meta.mode() & 0o7777),
            size,
            count,
            ..Object::new(Kind::Mq)
        });
    }
}

/// The regular files of /dev/shm: segments and (`sem.NAME`) named semaphores.
fn dev_shm(kinds: &HashSet<Kind>, out: &mut Vec<Object>) {
    let dir = match std::fs::read_dir("/dev/shm") {
        Ok(d) => d,
        Err(e) => return unreadable("POSIX shared memory and semaphores (/dev/shm)", why(&e)),
    };
    for entry in dir.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.file_type().is_file() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        let (kind, name) = match file.strip_prefix("sem.") {
            Some(sem) => (Kind::Sem, format!("/{sem}")),
            None => (Kind::Shm, format!("/{file}")),
        };
        if !kinds.contains(&kind) {
            continue;
        }
        let mut o = Object {
            name: Some(name.clone()),
            uid: Some(meta.uid()),
            mode: Some(meta.mode() & 0o7777),
            ..Object::new(kind)
        };
        if kind == Kind::Sem {
            o.count = procom::sem::Semaphore::open(&name)
                .and_then(|s| s.value())
                .ok()
                .and_then(|v| u64::try_from(v).ok());
        } else {
            o.size = Some(meta.size());
            match procom::stale::shm_channel(&name) {
                Ok(Some(c)) => {
                    o.channel = Some(true);
                    o.alive = Some(c.alive);
                    o.pid = Some(c.receiver);
                }
                Ok(None) => o.channel = Some(false),
                Err(_) => {} // not readable by this user: it cannot tell
            }
        }
        out.push(o);
    }
}

/// /proc/sysvipc/`file` as rows of named columns (the first line names them).
pub fn sysvipc(file: &str) -> std::io::Result<Vec<HashMap<String, i64>>> {
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{file}"))?;
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    Ok(lines
        .map(|l| {
            names
                .iter()
                .zip(l.split_whitespace())
                .filter_map(|(n, v)| {
                    // perms is printed in octal.
                    let v = if *n == "perms" {
                        i64::from_str_radix(v, 8).ok()?
                    } else {
                        v.parse().ok()?
                    };
                    Some((n.to_string(), v))
                })
                .collect()
        })
        .collect())
}

fn sysv(kind: Kind, out: &mut Vec<Object>) {
    let (file, id_col, what) = match kind {
        Kind::Msg => ("msg", "msqid", "System V message queues"),
        Kind::Shmid => ("shm", "shmid", "System V shared memory"),
        _ => ("sem", "semid", "System V semaphore sets"),
    };
    let rows = match sysvipc(file) {
        Ok(rows) => rows,
        Err(e) => return unreadable(&format!("{what} (/proc/sysvipc/{file})"), why(&e)),
    };
    let pid = |v: Option<&i64>| v.and_then(|p| u32::try_from(*p).ok()).filter(|p| *p != 0);
    for r in rows {
        let u = |c: &str| r.get(c).and_then(|v| u64::try_from(*v).ok());
        let mut o = Object {
            key: r.get("key").map(|k| *k as i32),
            id: r.get(id_col).map(|i| *i as i32),
            uid: r.get("uid").map(|u| *u as u32),
            mode: r.get("perms").map(|m| (*m as u32) & 0o7777),
            ..Object::new(kind)
        };
        match kind {
            Kind::Msg => {
                o.size = u("cbytes");
                o.count = u("qnum");
                o.lpid = pid(r.get("lspid"));
                o.lrpid = pid(r.get("lrpid"));
            }
            Kind::Shmid => {
                o.size = u("size");
                o.attached = u("nattch");
                o.pid = pid(r.get("cpid"));
                o.lpid = pid(r.get("lpid"));
                // Abandoned: nobody attached and its creator gone.
                o.alive = match (o.attached, o.pid) {
                    (Some(n), _) if n > 0 => Some(true),
                    (Some(0), Some(p)) => Some(alive_pid(p)),
                    (Some(0), None) => Some(false),
                    _ => None,
                };
            }
            _ => o.count = u("nsems"),
        }
        out.push(o);
    }
}

/// One line of /proc/net/unix that names a socket.
#[derive(Debug, Clone)]
pub struct UnixSocket {
    pub path: String,
    pub inode: u64,
    pub listening: bool,
    pub socket_type: &'static str,
    /// A server's accepted connection (it shows its listener's path).
    pub accepted: bool,
}

impl UnixSocket {
    /// Whether it is what keeps a socket file in use: a listener, or a bound datagram socket.
    pub fn serves(&self) -> bool {
        self.listening || self.socket_type == "dgram"
    }
}

/// The named sockets of /proc/net/unix (this network namespace).
pub fn proc_net_unix() -> std::io::Result<Vec<UnixSocket>> {
    let text = std::fs::read_to_string("/proc/net/unix")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path (the path may hold spaces).
            let mut rest = line;
            let mut fields = Vec::with_capacity(7);
            for _ in 0..7 {
                rest = rest.trim_start_matches(' ');
                let end = rest.find(' ').unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let path = rest.strip_prefix(' ')?.to_string();
            if path.is_empty() {
                return None;
            }
            let flags = u32::from_str_radix(fields[3], 16).ok()?;
            let ty = u32::from_str_radix(fields[4], 16).ok()?;
            let state = u32::from_str_radix(fields[5], 16).ok()?;
            let socket_type = match ty {
                1 => "stream",
                2 => "dgram",
                5 => "seqpacket",
                _ => "other",
            };
            Some(UnixSocket {
                path,
                inode: fields[6].parse().ok()?,
                listening: flags & 0x10000 != 0, // __SO_ACCEPTCON
                socket_type,
                accepted: ty != 2 && state == 3, // SS_CONNECTED
            })
        })
        .collect())
}

/// Which process holds each of `inodes` (a socket), where this user may look into /proc.
fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

fn unix_sockets(sockets: &[UnixSocket], out: &mut Vec<Object>) {
    let shown: Vec<&UnixSocket> = sockets.iter().filter(|s| !s.accepted).collect();
    let inodes = shown.iter().map(|s| s.inode).collect();
    let owners = socket_owners(&inodes);
    let mut seen = HashSet::new();
    for s in shown {
        if !seen.insert(s.inode) {
            continue;
        }
        let pid = owners.get(&s.inode).copied();
        let mut o = Object {
            name: Some(s.path.clone()),
            alive: Some(true),
            pid,
            socket_type: Some(s.socket_type),
            listening: Some(s.listening),
            ..Object::new(Kind::Unix)
        };
        if s.path.starts_with('/')
            && let Ok(meta) = std::fs::symlink_metadata(&s.path)
            && meta.file_type().is_socket()
        {
            o.uid = Some(meta.uid());
            o.mode = Some(meta.mode() & 0o7777);
        } else if let Some(pid) = pid {
            o.uid = std::fs::metadata(format!("/proc/{pid}"))
                .ok()
                .map(|m| m.uid());
        }
        out.push(o);
    }
}

/// Whether something serves the socket file at `path`: `Some(true)` if a listener or bound
/// datagram socket has that path, `None` if one bound with a relative path might be it.
pub fn served(path: &Path, sockets: &[UnixSocket]) -> Option<bool> {
    let mut maybe = false;
    for s in sockets.iter().filter(|s| s.serves()) {
        if Path::new(&s.path) == path {
            return Some(true);
        }
        if !s.path.starts_with('/')
            && !s.path.starts_with('@')
            && path.ends_with(Path::new(&s.path))
        {
            maybe = true;
        }
    }
    (!maybe).then_some(false)
}

/// The FIFOs (and socket files, for `unix`) directly in `dir`.
fn in_dir(
    dir: &Path,
    kinds: &HashSet<Kind>,
    sockets: Option<&[UnixSocket]>,
    out: &mut Vec<Object>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) => {
            return unreadable(&format!("FIFOs and sockets in {}", dir.display()), why(&e));
        }
    };
    let base = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let ft = meta.file_type();
        let path = base.join(entry.file_name());
        let found = |kind| Object {
            name: Some(path.display().to_string()),
            uid: Some(meta.uid()),
            mode: Some(meta.mode() & 0o7777),
            ..Object::new(kind)
        };
        if ft.is_fifo() && kinds.contains(&Kind::Fifo) {
            out.push(found(Kind::Fifo));
        } else if ft.is_socket()
            && kinds.contains(&Kind::Unix)
            && let Some(sockets) = sockets
        {
            let served = served(&path, sockets);
            if served == Some(true) {
                continue; // listed from /proc/net/unix
            }
            out.push(Object {
                alive: served,
                listening: Some(false),
                ..found(Kind::Unix)
            });
        }
    }
}

/// Every object of `kinds` (all when empty), with the `--fifos` directories.
pub fn collect(kinds: &[Kind], dirs: &[PathBuf]) -> Vec<Object> {
    let kinds: HashSet<Kind> = if kinds.is_empty() {
        Kind::value_variants().iter().copied().collect()
    } else {
        kinds.iter().copied().collect()
    };
    let mut out = Vec::new();
    if kinds.contains(&Kind::Mq) {
        posix_queues(&mut out);
    }
    if kinds.contains(&Kind::Shm) || kinds.contains(&Kind::Sem) {
        dev_shm(&kinds, &mut out);
    }
    for k in [Kind::Msg, Kind::Shmid, Kind::Semid] {
        if kinds.contains(&k) {
            sysv(k, &mut out);
        }
    }
    let sockets = if kinds.contains(&Kind::Unix) {
        match proc_net_unix() {
            Ok(s) => {
                unix_sockets(&s, &mut out);
                Some(s)
            }
            Err(e) => {
                unreadable("Unix sockets (/proc/net/unix)", why(&e));
                None
            }
        }
    } else {
        None
    };
    if kinds.contains(&Kind::Fifo) || kinds.contains(&Kind::Unix) {
        for dir in dirs {
            in_dir(dir, &kinds, sockets.as_deref(), &mut out);
        }
    }
    out.sort_by(|a, b| (a.kind, &a.name, a.key, a.id).cmp(&(b.kind, &b.name, b.key, b.id)));
    out
}

pub fn run(args: LsArgs) -> anyhow::Result<()> {
    if args.limits {
        return limits::run(args.json);
    }
    let users = Users::load();
    let owner =
        match &args.owner {
            Some(who) => Some(users.uid_of(who).ok_or_else(|| {
                super::usage!("--owner {who}: no such user (give a name or a uid)")
            })?),
            None => None,
        };
    let objects: Vec<Object> = collect(&args.kind, &args.fifos)
        .into_iter()
        .filter(|o| owner.is_none() || o.uid == owner)
        .collect();
    if args.json {
        let all: Vec<Value> = objects.iter().map(|o| o.to_json(&users)).collect();
        return super::outln!("{}", serde_json::to_string_pretty(&all)?);
    }
    let rows = objects.iter().map(|o| {
        vec![
            o.kind.as_str().to_string(),
            o.name.clone().or_else(|| o.key_text()).unwrap_or_default(),
            o.id.map(|i| i.to_string()).unwrap_or_default(),
            o.uid.map(|u| users.name(u)).unwrap_or_default(),
            o.mode.map(|m| format!("{m:04o}")).unwrap_or_default(),
            o.size_or_count(),
            match o.alive {
                Some(true) => "yes".into(),
                Some(false) => "no (abandoned)".into(),
                None => "-".into(),
            },
            o.pid.map(|p| p.to_string()).unwrap_or_default(),
            o.note(),
        ]
    });
    print_table(
        &[
            "KIND",
            "NAME/KEY",
            "ID",
            "OWNER",
            "MODE",
            "SIZE/COUNT",
            "ALIVE",
            "PID",
            "NOTE",
        ],
        rows,
    )
}

/// A plain table (no borders, columns two spaces apart, nothing wrapped) on standard output.
pub(super) fn print_table(
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> anyhow::Result<()> {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let text: Vec<String> = table.lines().map(|l| l.trim_end().to_string()).collect();
    super::write_stdout(&[text.join("\n").as_bytes(), b"\n"])
}
