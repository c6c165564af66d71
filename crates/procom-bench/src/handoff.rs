//! The payload-free hand-offs: named semaphores and real-time signals passing a turn back and
//! forth, through procom and, in alternating batches, through the bare system calls.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use procom::Error;

use crate::leftovers::Registry;
use crate::measure::Measurement;
use crate::process::{peer_command, spawn};
use crate::scenario::{BATCHES, Mechanism, Scenario, batch_len, bench_error, unique};

/// How long one side waits for the other's turn before the run fails.
const TURN: Duration = Duration::from_secs(10);

/// One side of a hand-off: passes the turn to the peer and waits for it to come back.
trait Turn {
    /// Round trip number `i`.
    fn round(&mut self, i: i32) -> Result<(), Error>;
}

/// procom's semaphores: `Semaphore::post` and `Semaphore::wait`.
struct ProcomSem(procom::sem::Semaphore, procom::sem::Semaphore);

impl Turn for ProcomSem {
    fn round(&mut self, _: i32) -> Result<(), Error> {
        self.0.post()?;
        self.1.wait()
    }
}

/// procom's signals: `signal::queue`, caught by procom's handler.
struct ProcomSignal {
    peer: i32,
    sig: procom::signal::Signal,
    caught: procom::signal::Signals,
}

impl Turn for ProcomSignal {
    fn round(&mut self, i: i32) -> Result<(), Error> {
        procom::signal::queue(self.peer, self.sig, i)?;
        let d = self.caught.wait_timeout(TURN)?;
        if d.value != Some(i) {
            return Err(bench_error(format!(
                "the peer answered {:?} to {i}",
                d.value
            )));
        }
        Ok(())
    }
}

/// The raw semaphores: `sem_post(3)` and `sem_wait(3)` on two named POSIX semaphores.
struct RawSem {
    ping: procom_sys::sem::NamedSemaphore,
    pong: procom_sys::sem::NamedSemaphore,
    names: [String; 2],
}

impl Turn for RawSem {
    fn round(&mut self, _: i32) -> Result<(), Error> {
        self.ping.post().map_err(raw_error)?;
        raw_sem_wait(&self.pong, None)
    }
}

impl Drop for RawSem {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = procom_sys::sem::sem_unlink(name);
        }
    }
}

/// The raw signals: `sigqueue(3)` and `sigtimedwait(2)` with the signal blocked, no handler.
struct RawSignal {
    peer: i32,
    sig: i32,
    _blocked: procom_sys::signal::MaskGuard,
}

impl Turn for RawSignal {
    fn round(&mut self, i: i32) -> Result<(), Error> {
        procom_sys::signal::queue(self.peer, self.sig, i).map_err(raw_error)?;
        match raw_signal_wait(self.sig)?.value {
            v if v == i => Ok(()),
            v => Err(bench_error(format!("the raw peer answered {v} to {i}"))),
        }
    }
}

/// `sem_wait`, or `sem_timedwait` with a `timeout`; a timeout is an error.
fn raw_sem_wait(
    sem: &procom_sys::sem::NamedSemaphore,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    match sem.wait(timeout).map_err(raw_error)? {
        procom_sys::sem::Waited::Acquired => Ok(()),
        procom_sys::sem::Waited::WouldBlock => Err(bench_error("the raw peer did not answer")),
    }
}

fn raw_error(e: std::io::Error) -> Error {
    Error::os("run the raw baseline", e).object("bench baseline")
}

/// The real-time signal the raw loop uses: not procom's (`SIGRTMIN+1`), which has a handler.
fn raw_signal() -> i32 {
    procom_sys::signal::sigrtmin() + 2
}

/// Blocks the raw loop's signal in the calling thread and every thread it starts later, for
/// as long as the guard lives. A process-directed signal goes to any thread that does not
/// block it, so the benchmark's process takes this before starting any thread (an interrupt
/// watcher, say): then only `sigtimedwait` ever receives it.
pub fn block_raw_signal() -> Result<procom_sys::signal::MaskGuard, Error> {
    procom_sys::signal::block(&[raw_signal()]).map_err(raw_error)
}

fn raw_signal_wait(sig: i32) -> Result<procom_sys::signal::Record, Error> {
    procom_sys::signal::timed_wait(&[sig], TURN)
        .map_err(raw_error)?
        .ok_or_else(|| bench_error("the raw peer did not answer the signal"))
}

/// A peer process, killed and reaped if the run ends early.
struct Peer(Option<Child>);

impl Peer {
    fn finish(mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            crate::leftovers::end_peer(&mut c);
        }
    }
}

/// Ping-pong without a payload: two named semaphores, or real-time signals with sigqueue, each
/// through procom and through the bare calls in alternating batches. The peer gets our pid
/// (signals) or the semaphore names as its two endpoints.
pub(crate) fn handoff(exe: &Path, s: &Scenario) -> Result<Measurement, Error> {
    let peer = |a: &str, b: &str, raw: Option<&str>| -> Result<Peer, Error> {
        let mut cmd = peer_command(exe, s, a, b);
        if let Some(raw) = raw {
            cmd.arg(raw);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        Ok(Peer(Some(spawn(cmd)?)))
    };
    let me = std::process::id().to_string();
    let (mut ours, mut raw): (Box<dyn Turn>, Box<dyn Turn>);
    let (ours_peer, raw_peer);
    if s.mechanism == Mechanism::Sem {
        use procom::sem::Semaphore;
        let mut registry = Registry::hold();
        let ping = registry.sem(unique("/procom-bench-ping"));
        let pong = registry.sem(unique("/procom-bench-pong"));
        let a = Semaphore::create(&ping, 0)?;
        let b = Semaphore::create(&pong, 0)?;
        drop(registry);
        ours_peer = peer(&ping, &pong, None)?;
        b.wait()?; // the peer is ready
        ours = Box::new(ProcomSem(a, b));
        let mut registry = Registry::hold();
        let names = [
            registry.sem(unique("/procom-bench-raw-ping")),
            registry.sem(unique("/procom-bench-raw-pong")),
        ];
        let create = |n: &str| procom_sys::sem::NamedSemaphore::create(n, 0o600, 0);
        let sems = create(&names[0]).and_then(|p| Ok((p, create(&names[1])?)));
        // Whatever happens next, the names go with `RawSem`'s drop.
        let (ping, pong) = match sems {
            Ok(p) => p,
            Err(e) => {
                let _ = procom_sys::sem::sem_unlink(&names[0]);
                return Err(raw_error(e));
            }
        };
        drop(registry);
        let r = RawSem { ping, pong, names };
        raw_peer = peer(&r.names[0], &r.names[1], Some("raw-sem"))?;
        raw_sem_wait(&r.pong, Some(TURN))?; // ready
        raw = Box::new(r);
    } else {
        use procom::signal::{Signal, Signals};
        let sig = Signal::rtmin_plus(1)?;
        let mut caught = Signals::catch([sig])?;
        ours_peer = peer(&me, "-", None)?;
        let pid = caught.wait_timeout(TURN)?.sender_pid; // the peer's hello
        ours = Box::new(ProcomSignal {
            peer: pid,
            sig,
            caught,
        });
        // Blocked before the peer can send it: a real-time signal's default action ends us.
        let blocked = procom_sys::signal::block(&[raw_signal()]).map_err(raw_error)?;
        raw_peer = peer(&me, "-", Some("raw-signal"))?;
        let hello = raw_signal_wait(raw_signal())?;
        raw = Box::new(RawSignal {
            peer: hello.pid,
            sig: raw_signal(),
            _blocked: blocked,
        });
    }
    let mut hist = histogram()?;
    let mut bare = histogram()?;
    let mut secs = 0.0;
    let warmup = s.iterations / 10;
    let mut i = 0i32;
    // The warm-up, then the batches, each side in turn.
    for (n, record) in std::iter::once((warmup, false))
        .chain((0..BATCHES).map(|b| (batch_len(s.iterations, b), true)))
    {
        for procom in [true, false] {
            let (turn, h) = if procom {
                (&mut ours, &mut hist)
            } else {
                (&mut raw, &mut bare)
            };
            let started = Instant::now();
            for k in 0..n {
                let t0 = Instant::now();
                turn.round(i.wrapping_add(k as i32))?;
                if record {
                    let _ = h.record((t0.elapsed().as_nanos() as u64 / 2).max(1));
                }
            }
            if procom {
                secs += started.elapsed().as_secs_f64();
            }
        }
        i = i.wrapping_add(n as i32);
    }
    drop((ours, raw));
    ours_peer.finish();
    raw_peer.finish();
    let total = s.iterations / 10 + s.iterations;
    Ok(Measurement {
        mechanism: s.mechanism.name().to_string(),
        mode: s.mode.name(),
        size: 0,
        p50_ns: hist.value_at_quantile(0.5) as f64,
        p99_ns: hist.value_at_quantile(0.99) as f64,
        p999_ns: hist.value_at_quantile(0.999) as f64,
        // Hand-offs per second, one each way per round trip.
        msgs_per_s: Some(2.0 * total as f64 / secs),
        // No payload: no bytes per second to speak of.
        mb_per_s: None,
        loss: None,
        baseline_p50_ns: Some(bare.value_at_quantile(0.5) as f64),
    })
}

fn histogram() -> Result<hdrhistogram::Histogram<u64>, Error> {
    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| bench_error(format!("histogram: {e}")))
}

/// The peer of a hand-off: procom's (`raw` is `None`) or the bare calls' (`raw-sem`,
/// `raw-signal`). Answers every round trip of the warm-up and the batches.
pub(crate) fn handoff_peer(
    mech: &str,
    raw: Option<&str>,
    iterations: usize,
    a: &str,
    b: &str,
) -> Result<(), Error> {
    let total = iterations / 10 + iterations;
    match (mech, raw) {
        ("sem", None) => {
            let ping = procom::sem::Semaphore::open(a)?;
            let pong = procom::sem::Semaphore::open(b)?;
            pong.post()?; // ready
            for _ in 0..total {
                ping.wait()?;
                pong.post()?;
            }
        }
        ("sem", Some(_)) => {
            let open = |n: &str| procom_sys::sem::NamedSemaphore::open(n).map_err(raw_error);
            let (ping, pong) = (open(a)?, open(b)?);
            pong.post().map_err(raw_error)?; // ready
            for _ in 0..total {
                raw_sem_wait(&ping, Some(TURN))?;
                pong.post().map_err(raw_error)?;
            }
        }
        (_, None) => {
            let sig = procom::signal::Signal::rtmin_plus(1)?;
            let mut caught = procom::signal::Signals::catch([sig])?;
            let parent: i32 = a.parse().map_err(|_| bench_error("bad parent pid"))?;
            procom::signal::queue(parent, sig, -1)?; // hello
            for _ in 0..total {
                let d = caught.wait_timeout(TURN)?;
                procom::signal::queue(parent, sig, d.value.unwrap_or(-2))?;
            }
        }
        (_, Some(_)) => {
            let sig = raw_signal();
            let _blocked = procom_sys::signal::block(&[sig]).map_err(raw_error)?;
            let parent: i32 = a.parse().map_err(|_| bench_error("bad parent pid"))?;
            procom_sys::signal::queue(parent, sig, -1).map_err(raw_error)?; // hello
            for _ in 0..total {
                let r = raw_signal_wait(sig)?;
                procom_sys::signal::queue(parent, sig, r.value).map_err(raw_error)?;
            }
        }
    }
    Ok(())
}
