//! `procom bench` runs real scenarios and reports them in the documented JSON shape. (Speed is
//! never asserted here: only that every number was measured and is sane.)

use std::process::{Command, Stdio};

use procom_testkit::{Finished, Outcome, Proc, Role, STEP, Trial, check, ensure, trials};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    // Each build checks what it has: the peers run, or the error naming the feature.
    trials![
        "cli::bench":
            json_shape,
            svg_chart,
            every_mechanism_has_a_raw_baseline,
            packet_rows_have_a_raw_baseline,
            unmeasured_is_null_and_udp_reports_its_loss,
            async_rows_beside_the_blocking_ones,
            empty_and_large_messages_are_measured,
            a_size_over_the_limit_is_a_usage_error,
            an_interrupted_run_leaves_no_object_and_no_peer,
            a_killed_peer_fails_the_run_and_leaves_nothing,
            #[cfg(feature = "peers")]
            peers_do_the_same_work,
            #[cfg(not(feature = "peers"))]
            peers_need_the_feature;
    ]
}

fn bench_json(args: &[&str]) -> Result<serde_json::Value, String> {
    bench_json_sized(&["--size", "64"], args)
}

/// `procom bench --quick --json` with these `--size` arguments and then `args`.
fn bench_json_sized(sizes: &[&str], args: &[&str]) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args(["bench", "--quick", "--json"])
        .args(sizes)
        .args(args)
        .stdin(Stdio::null());
    let fin = Proc::spawn("procom bench", &mut cmd)?.success(STEP)?;
    Ok(check!(serde_json::from_str(&fin.stdout.join("\n"))))
}

/// Every row carries the raw loop of the same run: each kernel mechanism's system calls, the
/// mailboxes for shared memory (spun on, or slept on with a futex; typed too), sem_post/sem_wait
/// for semaphores and sigqueue/sigtimedwait for signals.
fn every_mechanism_has_a_raw_baseline() -> Outcome {
    let names = [
        "tcp",
        "udp",
        "unixgram",
        "mq",
        "msg",
        "unix-typed",
        "shm",
        "shm-typed",
        "sem",
        "signal",
    ];
    let mut args = Vec::new();
    for n in names {
        args.extend(["--mechanism", n]);
    }
    let v = bench_json(&args)?;
    let results = v["results"].as_array().ok_or("no results")?;
    // shm has two rows: spin and block.
    ensure!(results.len() == names.len() + 1, "{} rows", results.len());
    for r in results {
        ensure!(
            r["baseline_p50_ns"].as_f64().is_some_and(|x| x > 0.0),
            "raw baseline in {r}"
        );
    }
    Ok(())
}

/// The sequenced-packet rows (bytes and typed) carry the raw send/recv loop over a packet pair.
fn packet_rows_have_a_raw_baseline() -> Outcome {
    let v = bench_json(&[
        "--mechanism",
        "unixpacket",
        "--mechanism",
        "unixpacket-typed",
    ])?;
    let results = v["results"].as_array().ok_or("no results")?;
    ensure!(results.len() == 2, "{} rows", results.len());
    for r in results {
        ensure!(
            r["baseline_p50_ns"].as_f64().is_some_and(|x| x > 0.0),
            "raw baseline in {r}"
        );
    }
    Ok(())
}

/// UDP streams too, and says what it delivered and what it lost; what is not measured is null,
/// never 0: no loss figure on a link that cannot lose, no bytes per second without a payload.
fn unmeasured_is_null_and_udp_reports_its_loss() -> Outcome {
    let v = bench_json(&[
        "--mechanism",
        "udp",
        "--mechanism",
        "pipe",
        "--mechanism",
        "sem",
    ])?;
    let results = v["results"].as_array().ok_or("no results")?;
    ensure!(results.len() == 3, "{} rows", results.len());
    for r in results {
        let mech = r["mechanism"].as_str().ok_or("no mechanism")?;
        ensure!(
            r["msgs_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "msgs/s in {r}"
        );
        match mech {
            "udp" => {
                ensure!(
                    r["loss"].as_f64().is_some_and(|l| (0.0..1.0).contains(&l)),
                    "loss in {r}"
                );
                ensure!(
                    r["mb_per_s"].as_f64().is_some_and(|x| x > 0.0),
                    "MB/s in {r}"
                );
            }
            "pipe" => {
                ensure!(r["loss"].is_null(), "loss in {r}");
                ensure!(
                    r["mb_per_s"].as_f64().is_some_and(|x| x > 0.0),
                    "MB/s in {r}"
                );
            }
            "sem" => {
                ensure!(r["loss"].is_null() && r["mb_per_s"].is_null(), "row {r}");
            }
            other => return Err(format!("unexpected row {other}")),
        }
    }
    Ok(())
}

/// Sizes beyond the default four are measured too: empty messages (shared memory's raw
/// mailboxes and procom's frames cross; a byte stream's raw loop would move nothing, so its
/// baseline is null, not a ratio to no work), messages over procom's 2 MiB default limit (the
/// benchmark's endpoints and rings are sized for them), and semaphores at the smallest size
/// asked for.
fn empty_and_large_messages_are_measured() -> Outcome {
    let v = bench_json_sized(
        &["--size", "0", "--size", "3MiB", "--size", "0"],
        &[
            "--mechanism",
            "shm",
            "--mechanism",
            "unix",
            "--mechanism",
            "sem",
        ],
    )?;
    let results = v["results"].as_array().ok_or("no results")?;
    let rows: Vec<(&str, &str, u64)> = results
        .iter()
        .map(|r| {
            (
                r["mechanism"].as_str().unwrap_or("?"),
                r["mode"].as_str().unwrap_or("?"),
                r["size"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let three = 3 << 20;
    for want in [
        ("shm", "spin", 0),
        ("shm", "block", 0),
        ("shm", "spin", three),
        ("shm", "block", three),
        ("unix", "block", 0),
        ("unix", "block", three),
        ("sem", "block", 0),
    ] {
        ensure!(
            rows.iter().filter(|r| **r == want).count() == 1,
            "one row {want:?} in {rows:?}"
        );
    }
    ensure!(rows.len() == 7, "rows {rows:?}");
    for r in results {
        ensure!(
            r["msgs_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "msgs/s in {r}"
        );
        let raw = &r["baseline_p50_ns"];
        if r["mechanism"] == "unix" && r["size"] == 0 {
            ensure!(
                raw.is_null(),
                "raw baseline of an empty stream message in {r}"
            );
        } else {
            ensure!(raw.as_f64().is_some_and(|x| x > 0.0), "raw baseline in {r}");
        }
    }
    Ok(())
}

/// A size the benchmark cannot hold is refused before anything runs, as a usage error.
fn a_size_over_the_limit_is_a_usage_error() -> Outcome {
    for size in ["65MiB", "5GiB", "18446744073709551615"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
        cmd.args(["bench", "--quick", "--mechanism", "shm", "--size", size])
            .stdin(Stdio::null());
        let fin = Proc::spawn("procom bench --size", &mut cmd)?.finish(STEP)?;
        ensure!(
            fin.status.code() == Some(2),
            "--size {size}: {:?}",
            fin.status
        );
        ensure!(
            fin.stderr.contains("at most 64 MiB") && fin.stdout.is_empty(),
            "--size {size}: stderr {:?}, stdout {:?}",
            fin.stderr,
            fin.stdout
        );
    }
    Ok(())
}

/// What a run with pid `bench` has left: its shared-memory segments and POSIX semaphores
/// (named with its pid), the POSIX queues it names (`/procom-bench-*` and `/procom-raw-*`,
/// probed by name), its System V queues (its key range, and private queues it owns), and
/// processes it started (they carry its pid in `PROCOM_BENCH_PARENT`).
fn left_by(bench: u32) -> Result<Vec<String>, String> {
    let mut left = Vec::new();
    let mark = format!("-{bench}-");
    for e in check!(std::fs::read_dir("/dev/shm")) {
        let name = check!(e).file_name().to_string_lossy().into_owned();
        if name.contains("procom-") && name.contains(&mark) {
            left.push(format!("/dev/shm/{name}"));
        }
    }
    for prefix in [
        "/procom-bench-a2b",
        "/procom-bench-b2a",
        "/procom-raw-a2b",
        "/procom-raw-b2a",
    ] {
        for n in 0..64 {
            let name = format!("{prefix}{mark}{n}");
            if procom::mq::Queue::open(&name).is_ok() {
                left.push(format!("mq {name}"));
            }
        }
    }
    // key, msqid, perms, cbytes, qnum, lspid, lrpid, uid, ...: the bench's keys are
    // 0x42000000 | (pid & 0xfff) << 12 | n, and its raw loop's queues are private ones the
    // bench or its peer last touched.
    let keys = 0x4200_0000 | ((bench & 0xfff) << 12);
    let queues = check!(std::fs::read_to_string("/proc/sysvipc/msg"));
    for line in queues.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(key), Some(id)) = (f.first(), f.get(1)) else {
            continue;
        };
        let key: i64 = key.parse().unwrap_or(-1);
        if key >= 0 && (key as u32) & !0xfff == keys {
            left.push(format!("System V queue {id} (key {key:#x})"));
        }
    }
    for e in check!(std::fs::read_dir("/proc")) {
        let path = check!(e).path();
        let Ok(env) = std::fs::read(path.join("environ")) else {
            continue;
        };
        let mine = format!("PROCOM_BENCH_PARENT={bench}");
        if env.split(|b| *b == 0).any(|v| v == mine.as_bytes()) {
            left.push(format!("peer {}", path.display()));
        }
    }
    Ok(left)
}

/// Whether the run with this pid holds a scenario's named objects now.
type Holds = fn(u32) -> Result<bool, String>;

/// A run ended by SIGTERM or Ctrl-C while a scenario holds named kernel objects (a shared-memory
/// channel, a semaphore pair, System V queues, POSIX queues) kills its peers and removes every
/// one of them before it exits with status 1.
fn an_interrupted_run_leaves_no_object_and_no_peer() -> Outcome {
    use rustix::process::Signal;
    // (mechanism, signal, a name that shows the scenario holds its objects)
    let cases: [(&str, Signal, Holds); 4] = [
        ("shm", Signal::TERM, |pid| {
            Ok(check!(std::fs::read_dir("/dev/shm")).flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("procom-bench-b2a-{pid}-"))
            }))
        }),
        ("sem", Signal::INT, |pid| {
            Ok(check!(std::fs::read_dir("/dev/shm")).flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("sem.procom-bench-raw-pong-{pid}-"))
            }))
        }),
        ("msg", Signal::TERM, |pid| {
            let keys = 0x4200_0000 | ((pid & 0xfff) << 12);
            let queues = check!(std::fs::read_to_string("/proc/sysvipc/msg"));
            Ok(queues.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|k| k.parse::<i64>().ok())
                    .is_some_and(|k| k >= 0 && (k as u32) & !0xfff == keys)
            }))
        }),
        ("mq", Signal::INT, |pid| {
            Ok((0..8)
                .any(|n| procom::mq::Queue::open(&format!("/procom-bench-b2a-{pid}-{n}")).is_ok()))
        }),
    ];
    for (mech, sig, holds) in cases {
        let (p, pid, ()) = bench_once(mech, "it held its objects", |pid| {
            Ok(holds(pid)?.then_some(()))
        })?;
        let target = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
        check!(rustix::process::kill_process(target, sig));
        let fin = failed_leaving_nothing(p, pid, mech)?;
        ensure!(
            fin.stderr.contains("interrupted by"),
            "{mech}: stderr {}",
            fin.stderr
        );
    }
    Ok(())
}

/// Starts `procom bench --mechanism MECH` and asks `now` about it (given its pid) until it
/// answers, within the step, the run still going: returns the run, its pid and the answer.
fn bench_once<T>(
    mech: &str,
    what: &str,
    mut now: impl FnMut(u32) -> Result<Option<T>, String>,
) -> Result<(Proc, u32, T), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args(["bench", "--mechanism", mech])
        .stdin(Stdio::null());
    let mut p = Proc::spawn("procom bench", &mut cmd)?;
    let pid = p.pid();
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if let Some(answer) = now(pid)? {
            return Ok((p, pid, answer));
        }
        ensure!(std::time::Instant::now() < deadline, "{mech}: never {what}");
        if p.exits_within(std::time::Duration::from_millis(1))?
            .is_some()
        {
            return Err(format!("{mech}: the run ended before {what}"));
        }
    }
}

/// Waits for run `p` (pid `pid`) to end: with status 1, and nothing of it left (see
/// [`left_by`]). Returns how it ended.
fn failed_leaving_nothing(p: Proc, pid: u32, mech: &str) -> Result<Finished, String> {
    let fin = p.finish(STEP)?;
    ensure!(fin.status.code() == Some(1), "{mech}: {:?}", fin.status);
    let left = left_by(pid)?;
    ensure!(left.is_empty(), "{mech}: left behind: {left:?}");
    Ok(fin)
}

/// The peers of the run with pid `bench` (started by it, not yet reaped) that serve `mech`'s
/// scenario (`__bench-peer MECH ...`; not the one that measures the machine's cache line).
fn peers_of(bench: u32, mech: &str) -> Result<Vec<u32>, String> {
    let mine = format!("PROCOM_BENCH_PARENT={bench}");
    let mut peers = Vec::new();
    for e in check!(std::fs::read_dir("/proc")) {
        let path = check!(e).path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(path.join("environ")) else {
            continue;
        };
        let args = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
        if env.split(|b| *b == 0).any(|v| v == mine.as_bytes())
            && args.get(2) == Some(&mech.as_bytes())
        {
            peers.push(pid);
        }
    }
    Ok(peers)
}

/// The state letter of process `pid` in /proc/PID/stat (after the parenthesised name).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A peer killed (SIGKILL) in the middle of a run, while the bench waits for it in a kernel
/// queue or on a semaphore that no peer will ever touch again: the run fails at once with
/// status 1 and one line naming the peer and the signal, kills its other peers and removes
/// every named object.
fn a_killed_peer_fails_the_run_and_leaves_nothing() -> Outcome {
    use rustix::process::{Pid, Signal, kill_process};
    for mech in ["mq", "msg", "sem"] {
        let deadline = std::time::Instant::now() + STEP;
        // A peer stopped while it is still running cannot end on its own: the SIGKILL that
        // follows is what ends it, in the middle of its work.
        let (p, pid, victim) =
            bench_once(mech, "a peer of the scenario was caught running", |pid| {
                Ok(peers_of(pid, mech)?.into_iter().find(|&peer| {
                    let Some(target) = Pid::from_raw(peer as i32) else {
                        return false;
                    };
                    if kill_process(target, Signal::STOP).is_err() {
                        return false;
                    }
                    // The kernel's view of the peer: stopped, or ended before the stop took.
                    loop {
                        match state(peer) {
                            Some('T') => return true,
                            Some('Z' | 'X') | None => return false,
                            Some(_) if std::time::Instant::now() < deadline => {}
                            Some(_) => return false,
                        }
                    }
                }))
            })?;
        let target = Pid::from_raw(victim as i32).ok_or("pid 0")?;
        check!(kill_process(target, Signal::KILL));
        let fin = failed_leaving_nothing(p, pid, mech)?;
        ensure!(
            fin.stderr.lines().count() == 1
                && fin.stderr.contains(&format!("peer (pid {victim})"))
                && fin.stderr.contains("SIGKILL"),
            "{mech}: stderr {:?}",
            fin.stderr
        );
    }
    Ok(())
}

/// `--async` adds an async row beside each channel's blocking one, for every way the async API
/// waits: a descriptor (pipe, unixpacket), a lossy link's batches (udp), a waiter thread on a
/// futex (shm) and on a System V queue (msg); the typed and hand-off rows have none.
fn async_rows_beside_the_blocking_ones() -> Outcome {
    let names = [
        "pipe",
        "unixpacket",
        "unixpacket-typed",
        "udp",
        "shm",
        "msg",
        "sem",
    ];
    let mut args = vec!["--async"];
    for n in names {
        args.extend(["--mechanism", n]);
    }
    let v = bench_json(&args)?;
    let results = v["results"].as_array().ok_or("no results")?;
    let row = |mech: &str, mode: &str| {
        results
            .iter()
            .find(|r| r["mechanism"] == mech && r["mode"] == mode)
    };
    for mech in ["pipe", "unixpacket", "udp", "shm", "msg"] {
        let r = row(mech, "async").ok_or(format!("no async row for {mech}"))?;
        ensure!(
            r["p50_ns"].as_f64().is_some_and(|x| x > 0.0)
                && r["msgs_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "async row {r}"
        );
        ensure!(row(mech, "block").is_some(), "no blocking row for {mech}");
    }
    ensure!(
        row("udp", "async").is_some_and(|r| r["loss"].as_f64().is_some()),
        "the async UDP row has no loss figure"
    );
    for mech in ["unixpacket-typed", "sem"] {
        ensure!(row(mech, "async").is_none(), "an async row for {mech}");
    }
    Ok(())
}

/// Asking for a peer library from a build without it is a usage error that says how to get it.
#[cfg(not(feature = "peers"))]
fn peers_need_the_feature() -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args(["bench", "--quick", "--mechanism", "iceoryx2"])
        .stdin(Stdio::null());
    let fin = Proc::spawn("procom bench --mechanism iceoryx2", &mut cmd)?.finish(STEP)?;
    ensure!(!fin.status.success(), "succeeded without the peers feature");
    let err = &fin.stderr;
    ensure!(err.contains("--features peers"), "stderr: {err}");
    Ok(())
}

/// With the `peers` feature, iceoryx2 (spinning and blocking), ipc-channel and interprocess run
/// in the same run as procom, each row measured (every payload echoed at the right size, or
/// the run fails): on their own, and in turns beside the procom rows they are compared with.
#[cfg(feature = "peers")]
fn peers_do_the_same_work() -> Outcome {
    let peer_args = [
        "--mechanism",
        "iceoryx2",
        "--mechanism",
        "iceoryx2-block",
        "--mechanism",
        "ipc-channel",
        "--mechanism",
        "interprocess",
    ];
    let counterparts = [
        "--mechanism",
        "shm",
        "--mechanism",
        "unixpacket-typed",
        "--mechanism",
        "unix",
    ];
    let beside: Vec<&str> = peer_args.iter().chain(&counterparts).copied().collect();
    for args in [&peer_args[..], &beside[..]] {
        let v = bench_json(args)?;
        let peers = v["peers"].as_array().ok_or("no peers")?;
        let mut names: Vec<&str> = peers
            .iter()
            .filter_map(|p| p["mechanism"].as_str())
            .collect();
        names.sort_unstable();
        ensure!(
            names == ["iceoryx2", "iceoryx2-block", "interprocess", "ipc-channel"],
            "peers with {args:?}: {names:?}"
        );
        let results = v["results"].as_array().ok_or("no results")?;
        let rows = peers.iter().chain(results);
        for p in rows {
            for key in ["p50_ns", "p99_ns", "msgs_per_s", "mb_per_s"] {
                ensure!(p[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {p}");
            }
        }
        for p in peers {
            let spin = p["mechanism"] == "iceoryx2";
            ensure!(
                p["mode"] == if spin { "spin" } else { "block" },
                "mode in {p}"
            );
        }
        if args.len() > peer_args.len() {
            for (mech, mode) in [
                ("shm", "spin"),
                ("shm", "block"),
                ("unixpacket-typed", "block"),
                ("unix", "block"),
            ] {
                ensure!(
                    results
                        .iter()
                        .any(|r| r["mechanism"] == mech && r["mode"] == mode),
                    "no {mech} {mode} row beside its peer: {results:?}"
                );
            }
        }
    }
    Ok(())
}

fn json_shape() -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args([
        "bench",
        "--quick",
        "--json",
        "--mechanism",
        "shm",
        "--mechanism",
        "pipe",
        "--size",
        "64",
    ])
    .stdin(Stdio::null());
    let fin = Proc::spawn("procom bench", &mut cmd)?.success(STEP)?;
    let v: serde_json::Value = check!(serde_json::from_str(&fin.stdout.join("\n")));
    ensure!(
        v["machine"]["cores"].as_u64().is_some_and(|c| c >= 1),
        "machine: {}",
        v["machine"]
    );
    ensure!(
        v["machine"]["kernel"].is_string() && v["machine"]["cpu"].is_string(),
        "machine: {}",
        v["machine"]
    );
    ensure!(
        v["limits"]["cacheline_one_way_ns"]
            .as_f64()
            .is_some_and(|x| x > 0.0),
        "limits: {}",
        v["limits"]
    );
    ensure!(
        v["limits"]["memcpy_gb_per_s"]
            .as_f64()
            .is_some_and(|x| x > 0.0),
        "limits: {}",
        v["limits"]
    );
    let results = v["results"].as_array().ok_or("no results")?;
    // shm block + shm spin + pipe block, at 64 bytes.
    ensure!(results.len() == 3, "{} rows", results.len());
    for r in results {
        for key in ["p50_ns", "p99_ns", "p999_ns", "msgs_per_s", "mb_per_s"] {
            ensure!(r[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {r}");
        }
        ensure!(
            r["p50_ns"].as_f64() <= r["p99_ns"].as_f64(),
            "percentiles out of order in {r}"
        );
        ensure!(
            r["size"] == 64 && matches!(r["mode"].as_str(), Some("block" | "spin")),
            "row {r}"
        );
        // Every row has its raw loop beside it, blocking shared memory's futex loop included.
        ensure!(
            r["baseline_p50_ns"].as_f64().is_some_and(|x| x > 0.0),
            "baseline in {r}"
        );
        ensure!(r["loss"].is_null(), "loss in {r}");
    }
    ensure!(v["peers"].as_array().is_some(), "no peers array");
    Ok(())
}

fn svg_chart() -> Outcome {
    let dir = procom_testkit::Scratch::new("procom-bench-svg")?;
    let file = dir.join("bench.svg");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args([
        "bench",
        "--quick",
        "--mechanism",
        "pipe",
        "--size",
        "64",
        "--size",
        "4096",
        "--svg",
    ])
    .arg(&file)
    .stdin(Stdio::null());
    Proc::spawn("procom bench --svg", &mut cmd)?.success(STEP)?;
    let svg = check!(std::fs::read_to_string(&file));
    ensure!(
        svg.starts_with("<svg")
            && svg.contains("one-way latency p50")
            && svg.contains("pipe block"),
        "not the chart: {}",
        &svg[..svg.len().min(200)]
    );
    check!(std::fs::remove_file(&file));
    dir.finish()
}
