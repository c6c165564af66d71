//! `procom ls`: every kind of object it lists, made by real processes, with its owner, mode
//! and liveness; `--json`, `--kind`, unreadable sources, abandoned channels; `--limits`.

use std::process::{Command, Stdio};

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, trials,
    unique_name, unix_listening,
};
use serde_json::Value;

use crate::common::{ok, procom, run, until};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::ls":
            lists_every_kind_with_owner_and_mode,
            posix_queues_are_listed_where_mqueue_is_mounted [needs::root(), needs::tool("unshare")],
            kind_filters_and_unknown_kinds_exit_2,
            an_unreadable_source_is_reported_and_the_rest_listed [needs::root()],
            a_killed_receiver_is_abandoned_and_rm_stale_removes_only_it,
            limits_name_their_settings;
    ]
}

/// The fields every object of `ls --json` has, whatever its kind.
pub const FIELDS: [&str; 13] = [
    "kind",
    "name",
    "key",
    "id",
    "owner",
    "uid",
    "mode",
    "size",
    "count",
    "alive",
    "abandoned",
    "pid",
    "endpoint",
];

/// A System V key no other test or run uses.
pub fn sysv_key() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:#x}",
        0x5300_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)
    )
}

/// `procom ls ARGS --json`, parsed; checks every object has [`FIELDS`].
pub fn ls_json(args: &[&str]) -> Result<Vec<Value>, String> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = ok(&all)?;
    let v: Value = check!(serde_json::from_str(&out.join("\n")));
    let objects = v.as_array().ok_or("not an array")?.clone();
    for o in &objects {
        for f in FIELDS {
            ensure!(o.get(f).is_some(), "no field {f} in {o}");
        }
    }
    Ok(objects)
}

/// The object of `kind` named `name` (or with key `name`), if listed.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && (o["name"] == name || o["key"] == name))
}

/// Ends a `procom` child with SIGTERM, so it removes what it created, and reaps it.
pub fn stop(p: Proc) -> Outcome {
    let pid = rustix::process::Pid::from_raw(p.pid() as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::TERM
    ));
    p.finish(STEP).map(drop)
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks kind, owner and mode of the listed object.
fn listed(objects: &[Value], kind: &str, name: &str, mode: &str) -> Result<Value, String> {
    let o = find(objects, kind, name).ok_or(format!("{kind} {name} is not listed"))?;
    ensure!(
        o["uid"] == me() && o["mode"] == mode && o["owner"].is_string(),
        "{kind} {name}: {o}"
    );
    Ok(o.clone())
}

fn lists_every_kind_with_owner_and_mode() -> Outcome {
    let scratch = Scratch::new("ls-kinds")?;
    let shm = format!("/{}", unique_name("procom-ls"));
    let sem = format!("/{}", unique_name("procom-ls"));
    let (msg_key, shm_key) = (sysv_key(), sysv_key());
    let fifo = scratch.join("f");
    let sock = scratch.join("s");
    ok(&["shm", "create", &shm, "--size", "4096"])?;
    ok(&["sem", "create", &sem, "2"])?;
    ok(&["msg", "create", &msg_key])?;
    ok(&["shm", "create", &shm_key, "--size", "100"])?;
    let fifo_s = fifo.display().to_string();
    ok(&["fifo", "create", &fifo_s, "--mode", "640"])?;
    let ep = format!("unix:{}", sock.display());
    let listener = Proc::spawn("listen", &mut procom(&["listen", &ep]))?;
    unix_listening(listener.pid(), &sock)?;
    let dir = scratch.path().display().to_string();
    let result = (|| -> Outcome {
        let all = ls_json(&["--fifos", &dir])?;
        let o = listed(&all, "shm", &shm, "0600")?;
        ensure!(o["size"] == 4096 && o["channel"] == false, "shm: {o}");
        let o = listed(&all, "sem", &sem, "0600")?;
        ensure!(
            o["count"] == 2 && o["endpoint"] == format!("sem:{sem}"),
            "sem: {o}"
        );
        let o = listed(&all, "msg", &msg_key, "0600")?;
        ensure!(
            o["id"].is_i64() && o["count"] == 0 && o["endpoint"] == format!("msgid:{}", o["id"]),
            "msg: {o}"
        );
        let o = listed(&all, "shmid", &shm_key, "0600")?;
        // Made by a `procom shm create` that has exited: nobody attached, its creator gone.
        ensure!(
            o["size"] == 100 && o["attached"] == 0 && o["abandoned"] == true,
            "shmid: {o}"
        );
        listed(&all, "fifo", &fifo_s, "0640")?;
        let o = listed(&all, "unix", &sock.display().to_string(), "0600")?;
        ensure!(
            o["listening"] == true
                && o["alive"] == true
                && o["abandoned"] == false
                && o["pid"] == listener.pid(),
            "unix: {o}"
        );
        // The table shows the same objects, one per line.
        let table = ok(&["ls", "--fifos", &dir])?;
        ensure!(
            table[0].split_whitespace().collect::<Vec<_>>()
                == [
                    "KIND",
                    "NAME/KEY",
                    "ID",
                    "OWNER",
                    "MODE",
                    "SIZE/COUNT",
                    "ALIVE",
                    "PID",
                    "NOTE"
                ],
            "header {:?}",
            table[0]
        );
        for (kind, name) in [
            ("shm", shm.as_str()),
            ("sem", sem.as_str()),
            ("msg", msg_key.as_str()),
            ("shmid", shm_key.as_str()),
            ("fifo", fifo_s.as_str()),
        ] {
            ensure!(
                table.iter().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 2 && f[0] == kind && f[1] == name
                }),
                "no {kind} {name} line in {table:?}"
            );
        }
        Ok(())
    })();
    stop(listener)?;
    ok(&["shm", "rm", &shm])?;
    ok(&["sem", "rm", &sem])?;
    ok(&["msg", "rm", &msg_key])?;
    ok(&["shm", "rm", &shm_key])?;
    ok(&["fifo", "rm", &fifo_s])?;
    until("the listener's socket file to go", || !sock.exists())?;
    result?;
    scratch.finish()
}

/// POSIX queues are listed from /dev/mqueue: here in a private mount namespace with mqueue
/// mounted (so this machine's mounts are left as they are), the queue made outside it.
fn posix_queues_are_listed_where_mqueue_is_mounted() -> Outcome {
    let name = format!("/{}", unique_name("procom-ls"));
    ok(&["mq", "create", &name, "--capacity", "3"])?;
    ok(&["send", &format!("mq:{name}"), "hello"])?;
    let mut sh = Command::new("unshare");
    sh.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        // Where /dev has no mqueue directory, a tmpfs over /dev (in the namespace only)
        // gives it one.
        "{ [ -d /dev/mqueue ] || { mount -t tmpfs none /dev && mkdir /dev/mqueue; }; } \
         && mount -t mqueue none /dev/mqueue && exec \"$P\" ls --kind mq --json",
    ])
    .env("P", env!("CARGO_BIN_EXE_procom"))
    .stdin(Stdio::null());
    let fin = Proc::spawn("unshare ls", &mut sh)?.finish(STEP);
    ok(&["mq", "rm", &name])?;
    let fin = fin?;
    ensure!(fin.status.success(), "ls in a namespace: {}", fin.stderr);
    let v: Value = check!(serde_json::from_str(&fin.stdout.join("\n")));
    let all = v.as_array().ok_or("not an array")?;
    let o = listed(all, "mq", &name, "0600")?;
    ensure!(o["count"] == 1 && o["size"] == 5, "mq: {o}");
    // Without the mount (as on this machine, perhaps), the source is reported, not fatal.
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/dev/mqueue"));
    if !mounted {
        let fin = run(&["ls", "--kind", "mq"])?;
        ensure!(
            fin.status.success()
                && fin.stderr.lines().count() == 1
                && fin.stderr.contains("/dev/mqueue"),
            "ls without mqueue mounted: {fin:?}"
        );
    }
    Ok(())
}

fn kind_filters_and_unknown_kinds_exit_2() -> Outcome {
    let scratch = Scratch::new("ls-filter")?;
    let fifo = scratch.join("f");
    let fifo_s = fifo.display().to_string();
    ok(&["fifo", "create", &fifo_s])?;
    let dir = scratch.path().display().to_string();
    let result = (|| -> Outcome {
        let only = ls_json(&["--kind", "fifo", "--fifos", &dir])?;
        ensure!(
            only.len() == 1 && only[0]["name"] == fifo_s,
            "--kind fifo: {only:?}"
        );
        let none = ls_json(&["--kind", "msg", "--kind", "semid", "--fifos", &dir])?;
        ensure!(
            none.iter()
                .all(|o| o["kind"] == "msg" || o["kind"] == "semid"),
            "--kind msg --kind semid: {none:?}"
        );
        // Another owner's objects only: not this FIFO.
        let nobody = ls_json(&["--owner", "65534", "--kind", "fifo", "--fifos", &dir])?;
        ensure!(nobody.is_empty(), "--owner 65534: {nobody:?}");
        let mine = ls_json(&["--owner", &me().to_string(), "--fifos", &dir])?;
        ensure!(
            find(&mine, "fifo", &fifo_s).is_some(),
            "--owner me: {mine:?}"
        );
        for args in [
            &["ls", "--kind", "pipe"][..],
            &["ls", "--owner", "no-such-user-procom"],
            &["ls", "--limits", "--kind", "mq"],
        ] {
            let fin = run(args)?;
            ensure!(
                fin.code() == Some(2) && !fin.stderr.is_empty() && !fin.stderr.contains("panicked"),
                "{args:?}: {fin:?}"
            );
        }
        Ok(())
    })();
    ok(&["fifo", "rm", &fifo_s])?;
    result?;
    scratch.finish()
}

fn an_unreadable_source_is_reported_and_the_rest_listed() -> Outcome {
    let scratch = Scratch::new("ls-unreadable")?;
    let private = scratch.join("private");
    check!(std::fs::create_dir(&private));
    check!(std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700)
    ));
    let hidden = private.join("hidden");
    let shown = scratch.join("shown");
    for f in [&hidden, &shown] {
        ok(&["fifo", "create", &f.display().to_string(), "--mode", "644"])?;
    }
    let (p, s) = (
        private.display().to_string(),
        scratch.path().display().to_string(),
    );
    let mut cmd = procom(&[
        "ls", "--json", "--kind", "fifo", "--fifos", &p, "--fifos", &s,
    ]);
    let fin = Proc::spawn("ls as nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
    let result = (|| -> Outcome {
        ensure!(fin.status.success(), "ls as nobody: {fin:?}");
        ensure!(
            fin.stderr.lines().count() == 1
                && fin.stderr.contains(&p)
                && fin.stderr.contains("permission denied"),
            "stderr: {:?}",
            fin.stderr
        );
        let v: Value = check!(serde_json::from_str(&fin.stdout.join("\n")));
        let all = v.as_array().ok_or("not an array")?;
        ensure!(
            find(all, "fifo", &shown.display().to_string()).is_some()
                && find(all, "fifo", &hidden.display().to_string()).is_none(),
            "listed {all:?}"
        );
        Ok(())
    })();
    check!(std::fs::remove_file(&hidden));
    check!(std::fs::remove_dir(&private));
    check!(std::fs::remove_file(&shown));
    result?;
    scratch.finish()
}

/// Starts `procom recv shm:NAME` and waits for its segment.
fn receiver(name: &str) -> Result<Proc, String> {
    let mut cmd = procom(&["recv", &format!("shm:{name}")]);
    let p = Proc::spawn("recv shm", &mut cmd)?;
    let file = format!("/dev/shm{name}");
    until(&format!("{file} exists"), || {
        std::path::Path::new(&file).exists()
    })?;
    // Complete: listed as a channel (its header is written after the file appears).
    until(&format!("{file} is a channel"), || {
        ls_json(&["--kind", "shm"])
            .is_ok_and(|all| find(&all, "shm", name).is_some_and(|o| o["channel"] == true))
    })?;
    Ok(p)
}

fn a_killed_receiver_is_abandoned_and_rm_stale_removes_only_it() -> Outcome {
    let dead = format!("/{}", unique_name("procom-ls-dead"));
    let live = format!("/{}", unique_name("procom-ls-live"));
    let mut killed = receiver(&dead)?;
    let kept = receiver(&live)?;
    let (dead_pid, live_pid) = (killed.pid(), kept.pid());
    check!(killed.child().kill());
    let _ = killed.finish(STEP)?;
    let all = ls_json(&["--kind", "shm"])?;
    let d = find(&all, "shm", &dead).ok_or("the dead channel is not listed")?;
    let l = find(&all, "shm", &live).ok_or("the live channel is not listed")?;
    let result = (|| -> Outcome {
        ensure!(
            d["abandoned"] == true && d["alive"] == false && d["pid"] == dead_pid,
            "dead: {d}"
        );
        ensure!(
            l["abandoned"] == false && l["alive"] == true && l["pid"] == live_pid,
            "live: {l}"
        );
        let out = ok(&["rm", "--stale"])?;
        ensure!(
            out.iter()
                .any(|l| l.contains(&format!("removed shm:{dead}"))),
            "rm --stale said {out:?}"
        );
        ensure!(
            !out.iter().any(|l| l.contains(&live)),
            "rm --stale said {out:?}"
        );
        ensure!(
            !std::path::Path::new(&format!("/dev/shm{dead}")).exists(),
            "the abandoned channel is still there"
        );
        ensure!(
            std::path::Path::new(&format!("/dev/shm{live}")).exists(),
            "the live channel was removed"
        );
        Ok(())
    })();
    let _ = std::fs::remove_file(format!("/dev/shm{dead}"));
    stop(kept)?;
    result
}

fn limits_name_their_settings() -> Outcome {
    let table = ok(&["ls", "--limits"])?.join("\n");
    for name in [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "fs.mqueue.queues_max",
        "fs.mqueue.msg_max",
        "fs.mqueue.msgsize_max",
        "ulimit -q",
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.sem",
        "fs.pipe-max-size",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.somaxconn",
    ] {
        ensure!(table.contains(name), "{name} is not in\n{table}");
    }
    let out = ok(&["ls", "--limits", "--json"])?;
    let v: Value = check!(serde_json::from_str(&out.join("\n")));
    let all = v.as_array().ok_or("not an array")?;
    for l in all {
        for f in ["mechanism", "limit", "setting", "value", "used", "raise"] {
            ensure!(l.get(f).is_some(), "no field {f} in {l}");
        }
    }
    let by = |s: &str| all.iter().find(|l| l["setting"] == s);
    let msgmni = by("kernel.msgmni").ok_or("no kernel.msgmni")?;
    ensure!(
        msgmni["value"].is_u64() && msgmni["used"].is_u64(),
        "kernel.msgmni: {msgmni}"
    );
    ensure!(by("RLIMIT_MSGQUEUE").is_some(), "no RLIMIT_MSGQUEUE");
    Ok(())
}
