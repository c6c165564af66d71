//! `procom bench`: every mechanism measured on this machine, process to process, with the
//! machine's own limits measured in the same run.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use procom_bench::{Limits, MAX_SIZE, Measurement, Mechanism, Mode, Profile, SIZES, Scenario};
use serde::Serialize;

use crate::cli::BenchArgs;

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    pinning: String,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    limits: Limits,
    results: Vec<Measurement>,
    peers: Vec<Measurement>,
}

fn machine(pinned: Option<(usize, usize)>, cores: usize) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpu,
        cores,
        kernel,
        pinning: match pinned {
            Some((a, b)) => format!("this process on CPU {a}, every peer on CPU {b}"),
            None => "none (fewer than two CPUs available; processes float)".to_string(),
        },
    }
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

fn size(v: usize) -> String {
    match v {
        v if v >= 1 << 20 => format!("{} MiB", v >> 20),
        v if v >= 1 << 10 => format!("{} KiB", v >> 10),
        v => format!("{v} B"),
    }
}

use std::os::unix::fs::DirBuilderExt;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .context("could not find the procom executable to run as the peer")?;
    // A fresh directory only this user may enter, created exclusively (a name planted in
    // the shared temporary directory is an error, never adopted), removed however the bench
    // ends: an interrupt's exit hook (which also kills the peers and removes the named objects
    // of the scenario in progress), or the return.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("procom-bench-{}-{nanos}", std::process::id()));
    let creating = crate::interrupt::creating();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    let _remove_on_exit = {
        let scratch = scratch.clone();
        crate::interrupt::on_exit(move || {
            procom_bench::abandon();
            let _ = std::fs::remove_dir_all(&scratch);
        })
    };
    drop(creating);
    // A peer killed in the middle of its work may leave this process waiting where nothing
    // will wake it: the run ends there, with one line, through the exit hook above.
    procom_bench::on_peer_killed(|reason| {
        let _whole = crate::interrupt::output_lock();
        if let Some(why) = reason() {
            crate::interrupt::warn(format_args!("{why}"));
            crate::interrupt::exit(1);
        }
    });
    let result = bench(&args, &exe, &scratch);
    procom_bench::tidy();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The peer libraries this build can measure (feature `peers`).
#[cfg(feature = "peers")]
type Peer = procom_bench::peers::Peer;
#[cfg(feature = "peers")]
const PEERS: &[Peer] = &Peer::ALL;

/// Without the `peers` feature there is nothing to measure beside procom.
#[cfg(not(feature = "peers"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {}
#[cfg(not(feature = "peers"))]
const PEERS: &[Peer] = &[];
#[cfg(not(feature = "peers"))]
impl Peer {
    fn name(self) -> &'static str {
        match self {}
    }
    fn counterpart(self) -> (&'static str, Mode) {
        match self {}
    }
}

/// procom's scenario `s` with `peer` measured in turns beside it (feature `peers`).
#[cfg(feature = "peers")]
fn run_beside(
    exe: &std::path::Path,
    scratch: &std::path::Path,
    peer: Peer,
    s: &Scenario,
) -> anyhow::Result<(Measurement, Measurement)> {
    procom_bench::peers::run_beside(exe, scratch, peer, s)
        .with_context(|| format!("the {} peer at {}", peer.name(), size(s.size)))
}

#[cfg(not(feature = "peers"))]
fn run_beside(
    _: &std::path::Path,
    _: &std::path::Path,
    peer: Peer,
    _: &Scenario,
) -> anyhow::Result<(Measurement, Measurement)> {
    match peer {}
}

/// Whether scenario `s` is `peer`'s procom counterpart.
fn is_counterpart(peer: Peer, s: &Scenario) -> bool {
    let (mech, mode) = peer.counterpart();
    mech == s.mechanism.name() && mode == s.mode
}

/// Whether scenario `s` runs with its async row beside it (then a peer counterpart runs on
/// its own).
fn measures_async(args: &BenchArgs, s: &Scenario) -> bool {
    args.with_async && s.mode == Mode::Block && procom_bench::has_async(s.mechanism)
}

fn known_names() -> String {
    Mechanism::ALL
        .iter()
        .map(|m| m.name())
        .chain(PEERS.iter().map(|p| p.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench(args: &BenchArgs, exe: &std::path::Path, scratch: &std::path::Path) -> anyhow::Result<()> {
    let mut mechanisms: Vec<Mechanism> = Vec::new();
    let mut peers: Vec<Peer> = Vec::new();
    if args.mechanism.is_empty() {
        mechanisms = Mechanism::ALL.to_vec();
        peers = PEERS.to_vec();
    }
    for m in &args.mechanism {
        if let Some(mech) = Mechanism::parse(m) {
            mechanisms.push(mech);
        } else if let Some(p) = PEERS.iter().find(|p| p.name() == m) {
            peers.push(*p);
        } else if matches!(
            m.as_str(),
            "iceoryx2" | "iceoryx2-block" | "ipc-channel" | "interprocess"
        ) {
            return Err(super::usage!(
                "`{m}` is a peer library, measured only by a procom built with `--features peers`"
            ));
        } else {
            return Err(super::usage!(
                "`{m}` is not a mechanism the benchmark knows ({})",
                known_names()
            ));
        }
    }
    let mut sizes: Vec<usize> = Vec::new();
    for &s in &args.size {
        let s = usize::try_from(s)
            .ok()
            .filter(|s| *s <= MAX_SIZE)
            .ok_or_else(|| {
                super::usage!(
                    "--size {s}: the benchmark measures messages of at most {}",
                    size(MAX_SIZE)
                )
            })?;
        if !sizes.contains(&s) {
            sizes.push(s);
        }
    }
    if sizes.is_empty() {
        sizes = SIZES.to_vec();
    }
    let smallest = sizes.iter().copied().min().unwrap_or(SIZES[0]);
    // Counted before pinning, which narrows what this process may use to one CPU.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinned = procom_bench::pin();
    let progress = std::io::stderr().is_terminal();
    let profile = if args.quick {
        Profile::Quick
    } else if args.full {
        Profile::Full
    } else {
        Profile::Default
    };
    let limits = procom_bench::limits(exe, profile)?;
    let mut scenarios = Vec::new();
    // (mechanism, reason, sizes): one line per mechanism and reason.
    let mut skipped: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for m in &mechanisms {
        for mode in m.modes() {
            for s in &sizes {
                match m.supports(*s, smallest) {
                    Ok(()) => scenarios.push(Scenario::sized(*m, *mode, *s, profile)),
                    Err(why) if *mode == Mode::Block => {
                        match skipped
                            .iter_mut()
                            .find(|(n, w, _)| *n == m.name() && *w == why)
                        {
                            Some((_, _, sizes)) => sizes.push(size(*s)),
                            None => skipped.push((m.name(), why, vec![size(*s)])),
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }
    // A peer runs beside its procom counterpart's scenario, in turns with it; on its own only
    // when that scenario is not part of the run.
    let alone: Vec<(Peer, usize)> = peers
        .iter()
        .flat_map(|p| sizes.iter().map(move |s| (*p, *s)))
        .filter(|(p, size)| {
            !scenarios
                .iter()
                .any(|s| s.size == *size && is_counterpart(*p, s) && !measures_async(args, s))
        })
        .collect();
    // A progress bar on a terminal; nothing when standard error is a file or a pipe.
    let bar = if progress {
        indicatif::ProgressBar::new((scenarios.len() + alone.len()) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    let mut peer_results = Vec::new();
    for s in &scenarios {
        bar.set_message(format!(
            "{} {} {}",
            s.mechanism.name(),
            s.mode.name(),
            size(s.size)
        ));
        if measures_async(args, s) {
            let (blocking, async_row) = procom_bench::run_async(exe, scratch, s)
                .with_context(|| format!("{} async at {}", s.mechanism.name(), size(s.size)))?;
            results.push(blocking);
            results.push(async_row);
        } else {
            match peers.iter().copied().find(|p| is_counterpart(*p, s)) {
                Some(p) => {
                    let (ours, theirs) = run_beside(exe, scratch, p, s)?;
                    results.push(ours);
                    peer_results.push(theirs);
                }
                None => results.push(procom_bench::run(exe, scratch, s)?),
            }
        }
        // The scenario's peers are reaped and its objects removed by their owners: this only
        // forgets them (a failed scenario's are removed by the `tidy` after `bench` returns).
        procom_bench::tidy();
        bar.inc(1);
    }
    peer_results.extend(run_peers(&alone, profile, exe, scratch, &bar)?);
    peer_results.sort_by(|a, b| a.p50_ns.total_cmp(&b.p50_ns));
    bar.finish_and_clear();
    results.sort_by(|a, b| a.p50_ns.total_cmp(&b.p50_ns));
    let report = Report {
        machine: machine(pinned, cores),
        limits,
        results,
        peers: peer_results,
    };
    if let Some(path) = &args.svg {
        svg(&report, path).with_context(|| format!("could not draw {}", path.display()))?;
    }
    if args.json {
        super::outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let m = &report.machine;
    super::outln!(
        "procom bench — {} ({} cores), Linux {}; CPU pinning: {}",
        m.cpu,
        m.cores,
        m.kernel,
        m.pinning
    )?;
    super::outln!(
        "machine limits, this run: cache line one-way {} between two processes; memcpy {:.1} GB/s",
        ns(limits.cacheline_one_way_ns),
        limits.memcpy_gb_per_s
    )?;
    super::outln!(
        "one-way latency = round trip / 2; throughput = messages streamed back to back; {}\n",
        if cfg!(feature = "peers") {
            "peers: iceoryx2 (spinning and blocking), ipc-channel, interprocess, doing the same work in turns with their procom counterpart"
        } else {
            "peers: not run (build with `--features peers` to measure iceoryx2, ipc-channel and interprocess)"
        }
    )?;
    table(&report.results, &limits)?;
    async_ratios(&report.results)?;
    super::outln!(
        "\nraw p50: the same ping-pong as a plain loop of the mechanism's system calls (write/read, send/recv, mq_send/mq_receive, msgsnd/msgrcv) with no procom layer, in the same run; unix-typed is compared with the raw Unix socket pair, unixpacket-typed with the raw sequenced-packet pair (send/recv), shm-typed with shm's raw loop; shm with two mailboxes in one shared mapping (copy in, publish a sequence number; spin on it, or sleep on it with futex wait and wake, copy out); sem with sem_post/sem_wait on two POSIX semaphores; signal with sigqueue/sigtimedwait (the signal blocked, no handler); procom grows a pipe's or FIFO's buffer to hold a whole message (up to 1 MiB), where the raw loop keeps the default 64 KiB."
    )?;
    super::outln!(
        "typed rows: the payload travels as a serde_bytes::ByteBuf through procom's borrowing forms (the sender sends a view of its buffer, the echo side receives a view and sends it back, the initiator receives a view and reads its length); ipc-channel's API takes and gives only owned values, so its link makes a ByteBuf of the payload and receives one."
    )?;
    super::outln!(
        "udp msgs/s, MB/s: datagrams delivered while the sender streams as fast as it can; lost: the share of those sent that never arrived (a receiver that falls behind loses them)."
    )?;
    let no_raw: Vec<&str> = report
        .results
        .iter()
        .filter(|r| {
            r.mode == "block" && Mechanism::parse(&r.mechanism).is_some_and(|m| !m.has_raw(r.size))
        })
        .map(|r| r.mechanism.as_str())
        .collect();
    if !no_raw.is_empty() {
        super::outln!(
            "raw p50 at 0 B: not measured for {}: a byte stream carries no empty message, so the raw loop would move nothing (procom's empty message is its frame header)",
            no_raw.join(", ")
        )?;
    }
    for (mech, why, sizes) in &skipped {
        super::outln!("not measured: {mech} at {}: {why}", sizes.join(", "))?;
    }
    if !report.peers.is_empty() {
        super::outln!(
            "\npeers, same run, same work (payload written and read, process to process), in alternating batches with the procom row they are compared with (ipc-channel's rows are compared with shm-typed's too, from the same run but not in turns):"
        )?;
        table(&report.peers, &limits)?;
        compare(&report)?;
    }
    Ok(())
}

fn table(rows: &[Measurement], limits: &Limits) -> anyhow::Result<()> {
    super::outln!(
        "{:<12} {:<5} {:>7} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9} {:>10} {:>8} {:>6}",
        "mech",
        "mode",
        "size",
        "p50",
        "p99",
        "p99.9",
        "msgs/s",
        "MB/s",
        "p50/line",
        "raw p50",
        "vs raw",
        "lost"
    )?;
    for r in rows {
        let (raw, vs) = match r.baseline_p50_ns {
            Some(b) => (ns(b), format!("{:+.0}%", (r.p50_ns / b - 1.0) * 100.0)),
            None => ("-".to_string(), "-".to_string()),
        };
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        super::outln!(
            "{:<12} {:<5} {:>7} {:>10} {:>10} {:>10} {:>12} {:>10} {:>8.1}x {:>10} {:>8} {:>6}",
            r.mechanism,
            r.mode,
            size(r.size),
            ns(r.p50_ns),
            ns(r.p99_ns),
            ns(r.p999_ns),
            or_dash(r.msgs_per_s.map(|v| format!("{v:.0}"))),
            or_dash(r.mb_per_s.map(|v| format!("{v:.1}"))),
            r.p50_ns / limits.cacheline_one_way_ns,
            raw,
            vs,
            or_dash(r.loss.map(|l| format!("{:.1}%", l * 100.0)))
        )?;
    }
    Ok(())
}

/// Each async row beside the blocking row it ran in turns with: the p50 and msgs/s ratios
/// (async ÷ blocking: p50 above 1 is the async API's cost in latency).
fn async_ratios(rows: &[Measurement]) -> anyhow::Result<()> {
    let asyncs: Vec<&Measurement> = rows.iter().filter(|r| r.mode == "async").collect();
    if asyncs.is_empty() {
        return Ok(());
    }
    super::outln!(
        "\nasync vs blocking, same run, in turns batch by batch (async ÷ blocking; p50 above 1 is what the async API costs):"
    )?;
    let mut pairs: Vec<(&Measurement, &Measurement)> = asyncs
        .iter()
        .filter_map(|a| {
            rows.iter()
                .find(|b| b.mode == "block" && b.mechanism == a.mechanism && b.size == a.size)
                .map(|b| (*a, b))
        })
        .collect();
    pairs.sort_by(|x, y| (&x.0.mechanism, x.0.size).cmp(&(&y.0.mechanism, y.0.size)));
    for (a, b) in pairs {
        let tput = match (a.msgs_per_s, b.msgs_per_s) {
            (Some(x), Some(y)) if x > 0.0 && y > 0.0 => format!("{:.2}", x / y),
            _ => "-".into(),
        };
        super::outln!(
            "{:<12} {:>7}  p50 {:>10} vs {:>10} = {:.2}   msgs/s ratio {}",
            a.mechanism,
            size(a.size),
            ns(a.p50_ns),
            ns(b.p50_ns),
            a.p50_ns / b.p50_ns,
            tput
        )?;
    }
    Ok(())
}

/// Each peer beside the procom row it is compared with, at every size both have: the p50
/// ratio and the msgs/s ratio (procom ÷ peer: below 1 is faster latency, above 1 is more
/// messages per second).
fn compare(report: &Report) -> anyhow::Result<()> {
    super::outln!(
        "\nprocom vs peers (procom ÷ peer; p50 below 1 and msgs/s above 1 favour procom):"
    )?;
    // The rows measured in turns first, then those compared from the same run.
    for also in [false, true] {
        for p in &report.peers {
            let Some((mech, mode)) = compared_with(&p.mechanism, also) else {
                continue;
            };
            let Some(r) = report
                .results
                .iter()
                .find(|r| r.mechanism == mech && r.mode == mode && r.size == p.size)
            else {
                continue;
            };
            let (Some(ours), Some(theirs)) = (r.msgs_per_s, p.msgs_per_s) else {
                continue;
            };
            super::outln!(
                "  {mech} {mode} vs {} {} at {}: p50 {} vs {} ({:.2}x), msgs/s {:.0} vs {:.0} ({:.2}x)",
                p.mechanism,
                p.mode,
                size(p.size),
                ns(r.p50_ns),
                ns(p.p50_ns),
                r.p50_ns / p.p50_ns,
                ours,
                theirs,
                ours / theirs
            )?;
        }
    }
    Ok(())
}

/// The procom row the peer `name` is compared with: its counterpart, or (`also`) the row it
/// is compared with from the same run, not in turns.
#[cfg(feature = "peers")]
fn compared_with(name: &str, also: bool) -> Option<(&'static str, &'static str)> {
    let peer = Peer::parse(name)?;
    let (m, mode) = if also {
        peer.also_compared()?
    } else {
        peer.counterpart()
    };
    Some((m, mode.name()))
}

#[cfg(not(feature = "peers"))]
fn compared_with(_: &str, _: bool) -> Option<(&'static str, &'static str)> {
    None
}

/// The peers whose procom counterpart is not part of the run, each sized exactly like that
/// counterpart's row would be.
#[cfg(feature = "peers")]
fn run_peers(
    alone: &[(Peer, usize)],
    profile: Profile,
    exe: &std::path::Path,
    scratch: &std::path::Path,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Measurement>> {
    let mut rows = Vec::new();
    for (p, s) in alone {
        let (mech, mode) = p.counterpart();
        let mech = Mechanism::parse(mech).unwrap_or(Mechanism::Unix);
        bar.set_message(format!("{} {}", p.name(), size(*s)));
        let scenario = Scenario::sized(mech, mode, *s, profile);
        rows.push(
            procom_bench::peers::run(exe, scratch, *p, &scenario)
                .with_context(|| format!("the {} peer at {}", p.name(), size(*s)))?,
        );
        bar.inc(1);
    }
    Ok(rows)
}

#[cfg(not(feature = "peers"))]
fn run_peers(
    alone: &[(Peer, usize)],
    _: Profile,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Measurement>> {
    match alone.first() {
        Some((p, _)) => match *p {},
        None => Ok(Vec::new()),
    }
}

/// Draws p50 latency and throughput against message size, one line per mechanism and mode.
fn svg(report: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let mut series: Vec<(String, Vec<&Measurement>)> = Vec::new();
    for r in &report.results {
        let name = format!("{} {}", r.mechanism, r.mode);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(r),
            None => series.push((name, vec![r])),
        }
    }
    for (_, v) in &mut series {
        v.sort_by_key(|r| r.size);
    }
    let sizes = (32f64..2_000_000f64).log_scale();
    let max_lat = report.results.iter().map(|r| r.p50_ns).fold(1.0, f64::max) * 2.0;
    let max_tp = report
        .results
        .iter()
        .filter_map(|r| r.mb_per_s)
        .fold(1.0, f64::max)
        * 2.0;
    let mut lat = ChartBuilder::on(&left)
        .caption("one-way latency p50 (ns)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(sizes.clone(), (10f64..max_lat).log_scale())?;
    lat.configure_mesh().x_desc("message size (bytes)").draw()?;
    let mut tp = ChartBuilder::on(&right)
        .caption("throughput (MB/s)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(sizes, (0.1f64..max_tp).log_scale())?;
    tp.configure_mesh().x_desc("message size (bytes)").draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let lat_points: Vec<(f64, f64)> = points
            .iter()
            .map(|r| (r.size as f64, r.p50_ns.max(10.0)))
            .collect();
        lat.draw_series(LineSeries::new(lat_points, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        let tp_points: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|r| r.mb_per_s.map(|v| (r.size as f64, v)))
            .collect();
        tp.draw_series(LineSeries::new(tp_points, color.stroke_width(2)))?;
    }
    lat.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
