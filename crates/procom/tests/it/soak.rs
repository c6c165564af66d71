//! Soak: every channel flavor at once, for a bounded time, between two processes.
//!
//! A `soak::receivers` child binds one receiver per flavor (the flavors of chaos.rs: a pipe,
//! `fifo:`, `unix:`, typed over `unix:`, `tcp:`, `udp:`, `unixgram:`, `mq:`, `msg:`, `shm:`
//! blocking and spinning) and a `soak::senders` child connects one sender per flavor; each
//! side runs a thread per flavor. Every sender sends paced, mixed traffic (mostly small
//! messages, every fourth up to 16 KiB, 8 KiB for the queues) of numbered, checksummed
//! messages (traffic.rs) until the run's time is up, then an end message that carries how
//! many it sent. The receivers check every message as it arrives and, at the end, that the
//! count is the sender's:
//!
//! - on every reliable flavor, 0 lost, 0 duplicated, 0 reordered, none torn or altered;
//! - on UDP, what arrives is intact and in order, and the loss is counted and printed (it is
//!   not asserted to be zero: UDP may drop).
//!
//! While the traffic runs, this process samples both children's resident memory (`VmRSS` in
//! `/proc/PID/status`), threads (`Threads`) and open descriptors (`/proc/PID/fd`) every 250 ms.
//! A window after the warm-up (from 25 % to 45 % of the run) is compared with the last 20 %:
//! descriptors and threads may not grow at all, resident memory by at most 4 MiB plus 10 %
//! (the allocator's arenas settle; a leak of a few bytes per message does not fit).
//! Nothing here is a timing assertion: the run's length only decides how much traffic is
//! checked.
//!
//! The run lasts `PROCOM_SOAK_SECS` seconds (default 20, which `cargo test` runs); set it
//! higher for a longer soak: the watchdogs of the test and its children grow with it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use procom::{ErrorKind, Receiver};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, fds_of, role_within};

use crate::flavors::{self, Flavor, Mech, Rx, Tx};
use crate::traffic::{self, Order, Rng};

pub const ROLES: &[Role] = &[
    Role {
        name: "soak::receivers",
        run: receivers,
    },
    Role {
        name: "soak::senders",
        run: senders,
    },
];

pub fn trials() -> Vec<Trial> {
    vec![procom_testkit::test_within(
        "soak::every_flavor_at_once",
        limit(),
        Vec::new(),
        every_flavor_at_once,
    )]
}

/// The run's length.
fn secs() -> u64 {
    std::env::var("PROCOM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(4)
}

/// What the test and its children may take: the run, plus set-up and the final drain.
fn limit() -> Duration {
    Duration::from_secs(secs() + 40)
}

/// A sender's pace: a batch of messages, then a pause (the soak checks volume and time, it
/// does not load the machine: the rest of the suite runs beside it).
const BATCH: u64 = 4;
const PAUSE: Duration = Duration::from_millis(5);
/// The largest message of the soak's traffic.
const MAX: usize = 16 << 10;
/// An end message's stream: the flavor's, with this bit.
const END: u32 = 1 << 31;

fn max_of(f: &Flavor) -> usize {
    f.max.min(MAX)
}

// --- the parent: starts both sides, samples them, checks the counts and the trends ------------

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32, at: Duration) -> Result<Sample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or(format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Sample {
        at,
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds: fds_of(pid)?.len() as u64,
    })
}

/// The largest value of `f` over the samples taken between `from` and `to` of the run.
fn window_max(samples: &[Sample], from: f64, to: f64, f: impl Fn(&Sample) -> u64) -> Option<u64> {
    let run = samples.last()?.at.as_secs_f64();
    samples
        .iter()
        .filter(|s| {
            let x = s.at.as_secs_f64() / run;
            x >= from && x <= to
        })
        .map(f)
        .max()
}

/// Descriptors and threads do not grow from the window after warm-up to the last one;
/// resident memory grows by at most 4 MiB + 10 %.
fn flat(who: &str, samples: &[Sample]) -> Result<String, String> {
    let early = |f: fn(&Sample) -> u64| window_max(samples, 0.25, 0.45, f);
    let late = |f: fn(&Sample) -> u64| window_max(samples, 0.80, 1.0, f);
    let (Some(rss0), Some(rss1)) = (early(|s| s.rss_kib), late(|s| s.rss_kib)) else {
        return Err(format!("too few samples of the {who}: {}", samples.len()));
    };
    let (fd0, fd1) = (early(|s| s.fds).unwrap_or(0), late(|s| s.fds).unwrap_or(0));
    let (th0, th1) = (
        early(|s| s.threads).unwrap_or(0),
        late(|s| s.threads).unwrap_or(0),
    );
    ensure!(
        fd1 <= fd0,
        "the {who}'s descriptors grew from {fd0} to {fd1}"
    );
    ensure!(th1 <= th0, "the {who}'s threads grew from {th0} to {th1}");
    let allowed = rss0 + 4096 + rss0 / 10;
    ensure!(
        rss1 <= allowed,
        "the {who}'s resident memory grew from {rss0} KiB to {rss1} KiB (allowed {allowed} KiB)"
    );
    Ok(format!(
        "{who}: RSS {rss0} -> {rss1} KiB, descriptors {fd0} -> {fd1}, threads {th0} -> {th1}"
    ))
}

fn every_flavor_at_once() -> Outcome {
    let (mut rng, _) = Rng::fresh();
    let mut places = Vec::new();
    for f in flavors::FLAVORS {
        let mut p = flavors::place(f, &mut rng)?;
        if matches!(f.mech, Mech::Tcp | Mech::Udp) {
            // Bound once, so the kernel may pick the port.
            p.ep =
                p.ep.rsplit_once(':')
                    .map(|(h, _)| format!("{h}:0"))
                    .unwrap_or_default();
        }
        places.push((f, p));
    }
    let specs: Vec<String> = places
        .iter()
        .map(|(f, p)| format!("{}={}", f.name, p.ep))
        .collect();
    let args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let (r, w) = check!(procom::pipe::pipe());
    let mut rx_cmd = role_within("soak::receivers", &args, limit());
    rx_cmd.stdin(r);
    let mut rx = Proc::spawn("receivers", &mut rx_cmd)?;
    drop(rx_cmd);
    // The real ports, then ready.
    let mut bound = BTreeMap::new();
    loop {
        let line = rx.line(STEP)?;
        if line == "ready" {
            break;
        }
        let (name, ep) = line
            .strip_prefix("bound ")
            .and_then(|l| l.split_once(' '))
            .ok_or(format!("the receivers said {line:?}"))?;
        bound.insert(name.to_string(), ep.to_string());
    }
    let specs: Vec<String> = places
        .iter()
        .map(|(f, p)| {
            let ep = bound.get(f.name).unwrap_or(&p.ep);
            format!("{}={ep}", f.name)
        })
        .collect();
    let args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let mut tx_cmd = role_within("soak::senders", &args, limit());
    tx_cmd.stdout(w).stdin(Stdio::piped());
    let mut tx = Proc::spawn_keep_stdout("senders", &mut tx_cmd)?;
    drop(tx_cmd);

    let (mut rx_samples, mut tx_samples) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let run = Duration::from_secs(secs());
    while started.elapsed() < run {
        std::thread::sleep(Duration::from_millis(250)); // the sampling period
        let at = started.elapsed();
        // A side that ended early (a failed check) says why, not only that it is gone.
        if rx.exits_within(Duration::ZERO)?.is_some() || tx.exits_within(Duration::ZERO)?.is_some()
        {
            return Err(format!(
                "a side ended during the run; receivers: {}; senders: {}",
                rx.finish(STEP)?.stderr.trim(),
                tx.finish(STEP)?.stderr.trim()
            ));
        }
        rx_samples.push(sample(rx.pid(), at)?);
        tx_samples.push(sample(tx.pid(), at)?);
    }
    drop(tx.child().stdin.take()); // time is up: the senders finish
    let sent = tx.success(STEP)?;
    let got = rx.success(STEP)?;

    let mut sent_by = BTreeMap::new();
    for l in sent.stderr.lines() {
        if let Some((name, n)) = l.strip_prefix("sent ").and_then(|l| l.split_once(' ')) {
            sent_by.insert(name.to_string(), check!(n.parse::<u64>()));
        }
    }
    let mut total = 0;
    for f in flavors::FLAVORS {
        let line = got
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix(&format!("done {} ", f.name)))
            .ok_or(format!("the receivers did not report {}", f.name))?;
        let (count, lost) = line
            .split_once(' ')
            .ok_or(format!("the receivers said {line:?}"))?;
        let (count, lost): (u64, u64) = (check!(count.parse()), check!(lost.parse()));
        let n = *sent_by
            .get(f.name)
            .ok_or(format!("the senders did not report {}", f.name))?;
        if f.mech == Mech::Udp {
            ensure!(
                count + lost == n,
                "udp: {count} received + {lost} lost != {n} sent"
            );
            println!(
                "soak: udp: {n} sent, {count} received intact and in order, {lost} lost ({:.3} %)",
                lost as f64 * 100.0 / n.max(1) as f64
            );
        } else {
            ensure!(
                count == n && lost == 0,
                "{}: {n} sent, {count} received, {lost} missing",
                f.name
            );
        }
        total += count;
    }
    let rx_trend = flat("receiving process", &rx_samples)?;
    let tx_trend = flat("sending process", &tx_samples)?;
    println!(
        "soak: {} s, {} flavors at once, {total} messages checked (0 lost, duplicated or reordered on the reliable ones); {rx_trend}; {tx_trend}",
        run.as_secs(),
        flavors::FLAVORS.len()
    );
    for (_, p) in places {
        p.finish(false)?;
    }
    Ok(())
}

fn specs(args: &[String]) -> Result<Vec<(&'static Flavor, String)>, String> {
    args.iter()
        .map(|a| {
            let (name, ep) = a.split_once('=').ok_or(format!("bad spec {a:?}"))?;
            Ok((flavors::find(name)?, ep.to_string()))
        })
        .collect()
}

// --- the receivers' process ---------------------------------------------------------------------

/// Binds every flavor's receiver, then checks each one's traffic in a thread of its own until
/// its end message; says `done NAME COUNT LOST` for each.
fn receivers(args: &[String]) -> Outcome {
    let mut out = std::io::stdout();
    let mut opened = Vec::new();
    for (i, (f, ep)) in specs(args)?.into_iter().enumerate() {
        let r = if ep == "-" {
            check!(Receiver::connect("-"))
        } else {
            check!(Receiver::bind(ep.as_str()))
        };
        if ep.ends_with(":0") {
            check!(writeln!(out, "bound {} {}", f.name, r.endpoint()));
        }
        opened.push((i as u32, f, Rx::new(f, r)));
    }
    check!(writeln!(out, "ready"));
    let threads: Vec<_> = opened
        .into_iter()
        .map(|(i, f, rx)| std::thread::spawn(move || receive(i, f, rx)))
        .collect();
    let mut reports = Vec::new();
    for t in threads {
        reports.push(t.join().map_err(|_| "a receiving thread panicked")??);
    }
    for r in reports {
        check!(writeln!(out, "{r}"));
    }
    Ok(())
}

fn receive(stream: u32, f: &'static Flavor, mut rx: Rx) -> Result<String, String> {
    let mut order = Order::default();
    loop {
        let m = rx
            .recv(Some(STEP))
            .map_err(|e| format!("{}: after {} messages: {e}", f.name, order.count))?;
        let seen = traffic::check(&m).map_err(|e| format!("{}: {e}", f.name))?;
        if seen.stream == stream | END {
            let sent = seen.seq;
            // UDP: the messages after the last one seen were lost too.
            let lost = sent.saturating_sub(order.count);
            ensure!(
                f.mech == Mech::Udp || lost == 0,
                "{}: {sent} sent, {} received",
                f.name,
                order.count
            );
            return Ok(format!("done {} {} {lost}", f.name, order.count));
        }
        ensure!(
            seen.stream == stream,
            "{}: a message of stream {} arrived",
            f.name,
            seen.stream
        );
        if f.mech == Mech::Udp {
            order.lossy(seen.seq)
        } else {
            order.reliable(seen.seq)
        }
        .map_err(|e| format!("{}: {e}", f.name))?;
    }
}

// --- the senders' process -----------------------------------------------------------------------

/// Connects every flavor's sender and sends paced traffic from a thread each until standard
/// input closes; then each sends its end message and says `sent NAME N` on standard error
/// (standard output is the pipe flavor's channel).
fn senders(args: &[String]) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, (f, ep)) in specs(args)?.into_iter().enumerate() {
        let tx = check!(Tx::connect(f, &ep));
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || send(i as u32, f, tx, &stop)));
    }
    let mut sink = Vec::new();
    check!(std::io::stdin().read_to_end(&mut sink));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let (name, n) = t.join().map_err(|_| "a sending thread panicked")??;
        eprintln!("sent {name} {n}");
    }
    Ok(())
}

fn send(
    stream: u32,
    f: &'static Flavor,
    mut tx: Tx,
    stop: &AtomicBool,
) -> Result<(&'static str, u64), String> {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            let m = traffic::message(stream, seq, traffic::size_of(seq, max_of(f)));
            tx.send(m, Some(STEP))
                .map_err(|e| format!("{}: message {seq}: {e}", f.name))?;
            seq += 1;
        }
        std::thread::sleep(PAUSE); // pacing, not synchronisation
    }
    // The end, which carries the count. A datagram may be lost, so UDP says it a few times,
    // a moment apart (the receiver stops at the first).
    let copies = if f.mech == Mech::Udp { 8 } else { 1 };
    for _ in 0..copies {
        let end = traffic::message(stream | END, seq, traffic::HEADER);
        match tx.send(end, Some(STEP)) {
            Ok(()) => {}
            // The receiver already has one end and left: refusals may come back.
            Err(e) if f.mech == Mech::Udp && e.kind() == ErrorKind::PeerGone => break,
            Err(e) => return Err(format!("{}: the end message: {e}", f.name)),
        }
        if copies > 1 {
            std::thread::sleep(Duration::from_millis(2)); // spacing the copies
        }
    }
    Ok((f.name, seq))
}
