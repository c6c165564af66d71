//! `procom ls --limits`: every kernel limit that bounds a mechanism, its use where the kernel
//! reports it, and the sysctl, rlimit or mount option that raises it.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{MQUEUE_MAGIC, print_table, sysvipc};
use crate::interrupt::warn;

/// One kernel limit.
struct Limit {
    mechanism: &'static str,
    limit: &'static str,
    /// The sysctl, rlimit or mount option that sets it.
    setting: &'static str,
    /// `None`: could not be read.
    value: Option<Value>,
    used: Option<u64>,
    raise: String,
}

/// The limits that are one sysctl each: mechanism, what it bounds, the sysctl.
const SYSCTLS: &[(&str, &str, &str)] = &[
    (
        "System V queues",
        "MSGMAX: largest message (bytes)",
        "kernel.msgmax",
    ),
    (
        "System V queues",
        "MSGMNB: bytes a new queue holds",
        "kernel.msgmnb",
    ),
    ("System V queues", "MSGMNI: queues", "kernel.msgmni"),
    (
        "POSIX queues",
        "queues on the system",
        "fs.mqueue.queues_max",
    ),
    (
        "POSIX queues",
        "largest capacity (messages)",
        "fs.mqueue.msg_max",
    ),
    (
        "POSIX queues",
        "largest message (bytes)",
        "fs.mqueue.msgsize_max",
    ),
    (
        "POSIX queues",
        "default capacity (messages)",
        "fs.mqueue.msg_default",
    ),
    (
        "POSIX queues",
        "default message size (bytes)",
        "fs.mqueue.msgsize_default",
    ),
    (
        "System V shared memory",
        "SHMMAX: largest segment (bytes)",
        "kernel.shmmax",
    ),
    (
        "System V shared memory",
        "SHMALL: pages of all segments",
        "kernel.shmall",
    ),
    (
        "System V shared memory",
        "SHMMNI: segments",
        "kernel.shmmni",
    ),
    (
        "Pipes and FIFOs",
        "largest buffer an unprivileged process may set (bytes)",
        "fs.pipe-max-size",
    ),
    (
        "Pipes and FIFOs",
        "pages of pipe buffers per user before new pipes get one page",
        "fs.pipe-user-pages-soft",
    ),
    (
        "Sockets",
        "largest receive buffer (bytes)",
        "net.core.rmem_max",
    ),
    (
        "Sockets",
        "largest send buffer (bytes)",
        "net.core.wmem_max",
    ),
    (
        "Sockets",
        "SOMAXCONN: longest listen backlog",
        "net.core.somaxconn",
    ),
];

/// The four fields of `kernel.sem`, in order.
const SEM_FIELDS: [&str; 4] = [
    "SEMMSL: semaphores per set",
    "SEMMNS: semaphores on the system",
    "SEMOPM: operations per semop call",
    "SEMMNI: semaphore sets",
];

fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).ok()
}

/// The kernel's page size (SHMALL counts pages), from this process's first mapping.
fn page_size() -> u64 {
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("KernelPageSize:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024)
}

/// What the kernel reports in use against each limit that it reports it for.
fn usage() -> HashMap<&'static str, u64> {
    type Rows = Vec<HashMap<String, i64>>;
    let count = |rows: &Rows| rows.len() as u64;
    let sum = |rows: &Rows, col: &str, f: &dyn Fn(u64) -> u64| {
        rows.iter()
            .filter_map(|r| r.get(col).and_then(|v| u64::try_from(*v).ok()))
            .map(f)
            .sum::<u64>()
    };
    let mut used = HashMap::new();
    if let Ok(msg) = sysvipc("msg") {
        used.insert("kernel.msgmni", count(&msg));
    }
    if let Ok(shm) = sysvipc("shm") {
        let page = page_size();
        used.insert("kernel.shmmni", count(&shm));
        used.insert("kernel.shmall", sum(&shm, "size", &|s| s.div_ceil(page)));
    }
    if let Ok(sem) = sysvipc("sem") {
        used.insert(SEM_FIELDS[1], sum(&sem, "nsems", &|n| n));
        used.insert(SEM_FIELDS[3], count(&sem));
    }
    if rustix::fs::statfs("/dev/mqueue").is_ok_and(|s| s.f_type as u64 == MQUEUE_MAGIC)
        && let Ok(dir) = std::fs::read_dir("/dev/mqueue")
    {
        used.insert("fs.mqueue.queues_max", dir.count() as u64);
    }
    used
}

fn all() -> Vec<Limit> {
    let used = usage();
    let mut all: Vec<Limit> = SYSCTLS
        .iter()
        .map(|&(mechanism, limit, setting)| Limit {
            mechanism,
            limit,
            setting,
            value: sysctl(setting).and_then(|v| v.trim().parse::<u64>().ok().map(Value::from)),
            used: used.get(setting).copied(),
            raise: format!("sysctl -w {setting}=N"),
        })
        .collect();
    let rl = rustix::process::getrlimit(rustix::process::Resource::Msgqueue);
    all.push(Limit {
        mechanism: "POSIX queues",
        limit: "bytes of all of a user's queues",
        setting: "RLIMIT_MSGQUEUE",
        value: Some(rl.current.map_or(json!("unlimited"), Value::from)),
        used: None,
        raise: match rl.maximum {
            Some(max) => format!(
                "ulimit -q N (up to the hard limit, {max}; above it: msgqueue in /etc/security/limits.conf)"
            ),
            None => "ulimit -q N".to_string(),
        },
    });
    let sem: Vec<Option<u64>> = sysctl("kernel.sem")
        .map(|t| t.split_whitespace().map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    for (i, limit) in SEM_FIELDS.into_iter().enumerate() {
        all.push(Limit {
            mechanism: "System V semaphores",
            limit,
            setting: "kernel.sem",
            value: sem.get(i).copied().flatten().map(Value::from),
            used: used.get(limit).copied(),
            raise: "sysctl -w kernel.sem=\"SEMMSL SEMMNS SEMOPM SEMMNI\"".to_string(),
        });
    }
    let shm_fs = rustix::fs::statvfs("/dev/shm").ok();
    all.push(Limit {
        mechanism: "POSIX shared memory and semaphores",
        limit: "size of /dev/shm (bytes)",
        setting: "/dev/shm size= (tmpfs)",
        value: shm_fs
            .as_ref()
            .map(|s| Value::from(s.f_blocks * s.f_frsize)),
        used: shm_fs
            .as_ref()
            .map(|s| s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize),
        raise: "mount -o remount,size=SIZE /dev/shm".to_string(),
    });
    // Grouped by mechanism, in the order the table lists them (a stable sort).
    all.sort_by_key(|l| ORDER.iter().position(|m| *m == l.mechanism));
    all
}

/// The order of mechanisms in the table.
const ORDER: [&str; 7] = [
    "System V queues",
    "POSIX queues",
    "System V shared memory",
    "POSIX shared memory and semaphores",
    "System V semaphores",
    "Pipes and FIFOs",
    "Sockets",
];

pub fn run(json: bool) -> anyhow::Result<()> {
    let all = all();
    for l in all.iter().filter(|l| l.value.is_none()) {
        warn(format_args!("{}: could not be read", l.setting));
    }
    if json {
        let rows: Vec<Value> = all
            .iter()
            .map(|l| {
                json!({
                    "mechanism": l.mechanism,
                    "limit": l.limit,
                    "setting": l.setting,
                    "value": l.value,
                    "used": l.used,
                    "raise": l.raise,
                })
            })
            .collect();
        return super::super::outln!("{}", serde_json::to_string_pretty(&rows)?);
    }
    let text = |v: &Option<Value>| match v {
        None => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    print_table(
        &["MECHANISM", "LIMIT", "VALUE", "USED", "RAISE WITH"],
        all.iter().map(|l| {
            vec![
                l.mechanism.to_string(),
                l.limit.to_string(),
                text(&l.value),
                l.used.map(|u| u.to_string()).unwrap_or_default(),
                l.raise.clone(),
            ]
        }),
    )
}
