//! The machine's own limits: a cache line bounced between two processes, and memcpy bandwidth.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use procom::Error;
use serde::Serialize;

use crate::process::spawn;
use crate::scenario::{Profile, bench_error};

/// The machine's own limits, measured in the same run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// One-way latency of a cache line bouncing between two processes.
    pub cacheline_one_way_ns: f64,
    /// memcpy bandwidth of one core, in GB/s (10^9 bytes).
    pub memcpy_gb_per_s: f64,
}

pub(crate) fn cacheline_peer(iterations: usize) -> Result<(), Error> {
    let fd = std::os::fd::AsFd::as_fd(&std::io::stdin())
        .try_clone_to_owned()
        .map_err(|e| Error::os("take the shared memory", e))?;
    let seg = procom::shm::Segment::from_fd(fd, true);
    let map = seg.map()?;
    let word = map.atomic_u64(0).ok_or_else(|| bench_error("no word"))?;
    for i in 0..iterations as u64 {
        while word.load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        word.store(2 * i + 2, Ordering::Release);
    }
    Ok(())
}

/// Measures the machine's limits: a cache line bounced between this process and a peer, and
/// memcpy bandwidth.
pub fn limits(exe: &Path, profile: Profile) -> Result<Limits, Error> {
    let quick = profile == Profile::Quick;
    let iterations: usize = if quick { 50_000 } else { 200_000 };
    let seg = procom::shm::Segment::memfd("procom-bench-cacheline", 4096, true)?;
    let map = seg.map()?;
    let word = map.atomic_u64(0).ok_or_else(|| bench_error("no word"))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "__bench-peer",
        "cacheline",
        "spin",
        "8",
        &iterations.to_string(),
        "0",
        "-",
        "-",
    ]);
    let fd = seg
        .fd()
        .ok_or_else(|| bench_error("no fd"))?
        .try_clone_to_owned()
        .map_err(|e| Error::os("duplicate", e))?;
    cmd.stdin(fd);
    let mut child = spawn(cmd)?;
    let warm = iterations / 10;
    let mut t0 = Instant::now();
    for i in 0..iterations as u64 {
        if i == warm as u64 {
            t0 = Instant::now();
        }
        word.store(2 * i + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let one_way = t0.elapsed().as_nanos() as f64 / (iterations - warm) as f64 / 2.0;
    let _ = child.wait();

    let len = 64 << 20;
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src); // fault the pages in before timing
    let rounds = if quick { 4 } else { 16 };
    let t0 = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let gbps = (len * rounds) as f64 / t0.elapsed().as_secs_f64() / 1e9;
    Ok(Limits {
        cacheline_one_way_ns: one_way,
        memcpy_gb_per_s: gbps,
    })
}
