//! Wake-up latency of a semaphore wait across two processes: the blocking `wait` against the
//! async `wait_async` (its waiter thread, then the task's runtime thread).
//!
//! This process posts `ping` and waits for `pong`; a second process (this program again) waits
//! for `ping` with the blocking call and posts `pong`. Each round trip is timed; the two modes
//! alternate in blocks so that both see the same machine. Only the waiting of this process
//! changes between the modes, so the difference of the round trips is what the async path
//! costs on one wake-up.
//!
//! ```text
//! cargo run --release -p procom --features tokio --example sem_wakeup [ROUNDS]
//! ```

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use procom::sem::Semaphore;

const BLOCKS: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("peer") {
        peer(&args[2..])
    } else {
        measure(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20_000))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sem_wakeup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The second process: P(ping), V(pong), `rounds` times.
fn peer(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [ping, pong, rounds] = args else {
        return Err("usage: peer PING PONG ROUNDS".into());
    };
    let (ping, pong) = (Semaphore::open(ping)?, Semaphore::open(pong)?);
    for _ in 0..rounds.parse::<usize>()? {
        ping.wait_timeout(Duration::from_secs(10))?;
        pong.post()?;
    }
    Ok(())
}

fn measure(rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let per_block = rounds / BLOCKS / 2;
    let base = format!("/procom-sem-wakeup-{}", std::process::id());
    let (ping_name, pong_name) = (format!("{base}-ping"), format!("{base}-pong"));
    let ping = Semaphore::create(&ping_name, 0)?;
    let pong = Semaphore::create(&pong_name, 0)?;
    let total = per_block * BLOCKS * 2;
    let mut peer = Command::new(std::env::current_exe()?)
        .args(["peer", &ping_name, &pong_name, &total.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut blocking, mut asynchronous) = (Vec::new(), Vec::new());
    let limit = Duration::from_secs(10);
    for _ in 0..BLOCKS {
        for _ in 0..per_block {
            let t = Instant::now();
            ping.post()?;
            pong.wait_timeout(limit)?;
            blocking.push(t.elapsed());
        }
        rt.block_on(async {
            for _ in 0..per_block {
                let t = Instant::now();
                ping.post()?;
                pong.wait_async_timeout(limit).await?;
                asynchronous.push(t.elapsed());
            }
            Ok::<(), procom::Error>(())
        })?;
    }
    let status = peer.wait()?;
    if !status.success() {
        return Err(format!("the peer failed: {status}").into());
    }
    let b = quantiles(&mut blocking);
    let a = quantiles(&mut asynchronous);
    println!(
        "round trip over two processes, {} rounds each:",
        blocking.len()
    );
    println!(
        "  blocking wait:  p50 {:>7.1} us   p99 {:>7.1} us",
        b.0, b.1
    );
    println!(
        "  async wait:     p50 {:>7.1} us   p99 {:>7.1} us",
        a.0, a.1
    );
    println!(
        "  one blocking wake-up ~ {:.1} us (half a blocking round trip); one async wake-up ~ {:.1} us; ratio {:.2}",
        b.0 / 2.0,
        a.0 - b.0 / 2.0,
        (a.0 - b.0 / 2.0) / (b.0 / 2.0)
    );
    Ok(())
}

/// p50 and p99 in microseconds.
fn quantiles(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}
