//! The payload-free hand-offs: named semaphores and real-time signals passing a turn back and
//! forth.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procom::Error;

use crate::measure::Measurement;
use crate::process::{peer_command, spawn};
use crate::scenario::{Mechanism, Scenario, bench_error, unique};

/// Ping-pong without a payload: two named semaphores, or real-time signals with sigqueue. The
/// peer gets our pid (signals) or the semaphore names as its two endpoints.
pub(crate) fn handoff(exe: &Path, s: &Scenario) -> Result<Measurement, Error> {
    use procom::sem::Semaphore;
    use procom::signal::{Signal, Signals};
    let total = s.iterations / 10 + s.iterations;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| bench_error(format!("histogram: {e}")))?;
    let warmup = s.iterations / 10;
    let mut child;
    let started;
    if s.mechanism == Mechanism::Sem {
        let (ping, pong) = (unique("/procom-bench-ping"), unique("/procom-bench-pong"));
        let a = Semaphore::create(&ping, 0)?;
        let b = Semaphore::create(&pong, 0)?;
        let mut cmd = peer_command(exe, s, &ping, &pong);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        child = spawn(cmd)?;
        b.wait()?; // the peer is ready
        started = Instant::now();
        for i in 0..total {
            let t0 = Instant::now();
            a.post()?;
            b.wait()?;
            if i >= warmup {
                let _ = hist.record((t0.elapsed().as_nanos() as u64 / 2).max(1));
            }
        }
    } else {
        let sig = Signal::rtmin_plus(1)?;
        let mut caught = Signals::catch([sig])?;
        let me = std::process::id().to_string();
        let mut cmd = peer_command(exe, s, &me, "-");
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        child = spawn(cmd)?;
        let peer = caught.wait_timeout(Duration::from_secs(10))?.sender_pid; // the peer's hello
        started = Instant::now();
        for i in 0..total {
            let t0 = Instant::now();
            procom::signal::queue(peer, sig, i as i32)?;
            let d = caught.wait_timeout(Duration::from_secs(10))?;
            if d.value != Some(i as i32) {
                return Err(bench_error(format!(
                    "the peer answered {:?} to {i}",
                    d.value
                )));
            }
            if i >= warmup {
                let _ = hist.record((t0.elapsed().as_nanos() as u64 / 2).max(1));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = child.wait();
    Ok(Measurement {
        mechanism: s.mechanism.name().to_string(),
        mode: s.mode.name(),
        size: 0,
        p50_ns: hist.value_at_quantile(0.5) as f64,
        p99_ns: hist.value_at_quantile(0.99) as f64,
        p999_ns: hist.value_at_quantile(0.999) as f64,
        // Hand-offs per second, one each way per round trip.
        msgs_per_s: 2.0 * total as f64 / secs,
        mb_per_s: 0.0,
        baseline_p50_ns: None,
    })
}

pub(crate) fn handoff_peer(mech: &str, iterations: usize, a: &str, b: &str) -> Result<(), Error> {
    let total = iterations / 10 + iterations;
    if mech == "sem" {
        let ping = procom::sem::Semaphore::open(a)?;
        let pong = procom::sem::Semaphore::open(b)?;
        pong.post()?; // ready
        for _ in 0..total {
            ping.wait()?;
            pong.post()?;
        }
        return Ok(());
    }
    let sig = procom::signal::Signal::rtmin_plus(1)?;
    let mut caught = procom::signal::Signals::catch([sig])?;
    let parent: i32 = a.parse().map_err(|_| bench_error("bad parent pid"))?;
    procom::signal::queue(parent, sig, -1)?; // hello
    for _ in 0..total {
        let d = caught.wait_timeout(Duration::from_secs(10))?;
        procom::signal::queue(parent, sig, d.value.unwrap_or(-2))?;
    }
    Ok(())
}
