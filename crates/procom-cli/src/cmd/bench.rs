//! `procom bench`: every mechanism measured on this machine, process to process, with the
//! machine's own limits measured in the same run.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use procom_bench::{Limits, Measurement, Mechanism, Mode, SIZES, Scenario};
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

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .context("could not find the procom executable to run as the peer")?;
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("procom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    let result = bench(&args, &exe, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench(args: &BenchArgs, exe: &std::path::Path, scratch: &std::path::Path) -> anyhow::Result<()> {
    let mechanisms: Vec<Mechanism> = if args.mechanism.is_empty() {
        Mechanism::ALL.to_vec()
    } else {
        args.mechanism
            .iter()
            .map(|m| {
                Mechanism::parse(m).ok_or_else(|| {
                    anyhow::anyhow!(
                        "`{m}` is not a mechanism the benchmark knows (shm, unix, unixgram, pipe, fifo, tcp, udp, mq, msg)"
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let sizes: Vec<usize> = if args.size.is_empty() {
        SIZES.to_vec()
    } else {
        args.size.iter().map(|s| *s as usize).collect()
    };
    // Counted before pinning, which narrows what this process may use to one CPU.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinned = procom_bench::pin();
    let progress = std::io::stderr().is_terminal();
    let limits = procom_bench::limits(exe, args.quick)?;
    let mut scenarios = Vec::new();
    let mut skipped = Vec::new();
    for m in &mechanisms {
        for mode in m.modes() {
            for s in &sizes {
                match m.supports(*s) {
                    Ok(()) => scenarios.push(Scenario::sized(*m, *mode, *s, args.quick)),
                    Err(why) if *mode == Mode::Block => {
                        skipped.push(format!("{} at {}: {why}", m.name(), size(*s)))
                    }
                    Err(_) => {}
                }
            }
        }
    }
    let mut results = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        if progress {
            eprint!(
                "\r\x1b[2K[{}/{}] {} {} {}",
                i + 1,
                scenarios.len(),
                s.mechanism.name(),
                s.mode.name(),
                size(s.size)
            );
        }
        results.push(procom_bench::run(exe, scratch, s)?);
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    results.sort_by(|a, b| a.p50_ns.total_cmp(&b.p50_ns));
    let report = Report {
        machine: machine(pinned, cores),
        limits,
        results,
        peers: Vec::new(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let m = &report.machine;
    println!(
        "procom bench — {} ({} cores), Linux {}; CPU pinning: {}",
        m.cpu, m.cores, m.kernel, m.pinning
    );
    println!(
        "machine limits, this run: cache line one-way {} between two processes; memcpy {:.1} GB/s",
        ns(limits.cacheline_one_way_ns),
        limits.memcpy_gb_per_s
    );
    println!(
        "one-way latency = round trip / 2; throughput = messages streamed back to back; peers: not run (no peer feature in this build)\n"
    );
    println!(
        "{:<8} {:<5} {:>7} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9} {:>10} {:>8}",
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
        "vs raw"
    );
    for r in &report.results {
        let (raw, vs) = match r.baseline_p50_ns {
            Some(b) => (ns(b), format!("{:+.0}%", (r.p50_ns / b - 1.0) * 100.0)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{:<8} {:<5} {:>7} {:>10} {:>10} {:>10} {:>12} {:>10} {:>8.1}x {:>10} {:>8}",
            r.mechanism,
            r.mode,
            size(r.size),
            ns(r.p50_ns),
            ns(r.p99_ns),
            ns(r.p999_ns),
            if r.msgs_per_s > 0.0 {
                format!("{:.0}", r.msgs_per_s)
            } else {
                "-".into()
            },
            if r.msgs_per_s > 0.0 {
                format!("{:.1}", r.mb_per_s)
            } else {
                "-".into()
            },
            r.p50_ns / limits.cacheline_one_way_ns,
            raw,
            vs
        );
    }
    println!(
        "\nraw p50: the same ping-pong as a plain write/read loop with no procom layer (pipe, fifo, unix)."
    );
    println!(
        "udp msgs/s: not measured (a sender outrunning its receiver loses datagrams: that measures loss, not speed)."
    );
    for s in &skipped {
        println!("not measured: {s}");
    }
    Ok(())
}
