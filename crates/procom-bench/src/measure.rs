//! Measurement: the batched ping-pong and streaming loops (`measure`, `drive`, `serve`), their
//! tallies and histograms, and the `Measurement` row.

use std::time::{Duration, Instant};

use procom::Error;
use serde::Serialize;

use crate::link::Link;
use crate::raw::RawSide;
use crate::scenario::{BATCHES, LEAD, Scenario, batch_len, bench_error, round_trips};

/// One row of results.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The mechanism's name.
    pub mechanism: String,
    /// `block` or `spin`.
    pub mode: &'static str,
    /// Payload bytes.
    pub size: usize,
    /// Median one-way latency.
    pub p50_ns: f64,
    /// 99th percentile one-way latency.
    pub p99_ns: f64,
    /// 99.9th percentile one-way latency.
    pub p999_ns: f64,
    /// Streaming messages per second.
    pub msgs_per_s: f64,
    /// Streaming megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// The same ping-pong as a plain loop of the mechanism's system calls with no procom layer,
    /// measured in the same run: every kernel mechanism in blocking mode, and shared memory
    /// spinning (two mailboxes in one mapping, see `RawShm`); none for blocking shared memory
    /// nor for the payload-free hand-offs.
    pub baseline_p50_ns: Option<f64>,
}

/// The measurement loop every link runs, procom's and the peers' alike: `iterations` timed
/// round trips after a tenth as many to warm up, then `stream` messages back to back, each part
/// in [`BATCHES`] batches.
// Only a peer whose procom counterpart is not part of the run is measured on its own.
#[cfg_attr(not(feature = "peers"), expect(dead_code))]
pub(crate) fn drive(link: &mut dyn Link, s: &Scenario, name: &str) -> Result<Measurement, Error> {
    let (m, _) = measure(link, s, name, None, None)?;
    Ok(m)
}

fn histogram() -> Result<hdrhistogram::Histogram<u64>, Error> {
    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| bench_error(format!("histogram: {e}")))
}

/// A peer library's loop measured beside procom's: its link and its name.
pub(crate) type Beside<'a> = Option<(&'a mut dyn Link, &'a str)>;

/// One link's round trips and stream, as they accumulate over the batches.
struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    stream_secs: f64,
}

impl Tally {
    fn new() -> Result<Tally, Error> {
        Ok(Tally {
            hist: histogram()?,
            stream_secs: 0.0,
        })
    }

    /// `lead` unrecorded round trips, then `n` recorded ones; `round` makes one and returns
    /// its one-way time.
    fn rounds(
        &mut self,
        lead: usize,
        n: usize,
        mut round: impl FnMut() -> Result<Duration, Error>,
    ) -> Result<(), Error> {
        for i in 0..lead + n {
            let one_way = round()?;
            if i >= lead {
                let _ = self.hist.record((one_way.as_nanos() as u64).max(1));
            }
        }
        Ok(())
    }

    /// `n` messages back to back and the peer's acknowledgement that it received them all.
    fn stream(&mut self, link: &mut dyn Link, msg: &[u8], n: usize) -> Result<(), Error> {
        let t0 = Instant::now();
        for _ in 0..n {
            link.send(msg)?;
        }
        let ack = link.recv_control(Duration::from_secs(60))?;
        self.stream_secs += t0.elapsed().as_secs_f64();
        if ack != b"k" {
            return Err(bench_error("the peer did not acknowledge the stream"));
        }
        Ok(())
    }

    fn result(&self, name: &str, s: &Scenario, baseline_p50_ns: Option<f64>) -> Measurement {
        let per_s = |n: usize| {
            if self.stream_secs > 0.0 {
                n as f64 / self.stream_secs
            } else {
                0.0
            }
        };
        Measurement {
            mechanism: name.to_string(),
            mode: s.mode.name(),
            size: s.size,
            p50_ns: self.hist.value_at_quantile(0.5) as f64,
            p99_ns: self.hist.value_at_quantile(0.99) as f64,
            p999_ns: self.hist.value_at_quantile(0.999) as f64,
            msgs_per_s: per_s(s.stream),
            mb_per_s: per_s(s.stream * s.size) / 1e6,
            baseline_p50_ns,
        }
    }
}

/// One round trip of `msg` over `link`; its one-way time.
fn link_round(link: &mut dyn Link, msg: &[u8]) -> Result<Duration, Error> {
    let t0 = Instant::now();
    link.send(msg)?;
    let back = link.recv_len()?;
    let one_way = t0.elapsed() / 2;
    if back != msg.len() {
        return Err(bench_error(format!(
            "the peer echoed {back} bytes instead of {}",
            msg.len()
        )));
    }
    Ok(one_way)
}

/// Measures `link`, with the raw loop's round trips and a peer library's link (when given)
/// taking turns with it batch by batch; returns procom's row and the peer's.
pub(crate) fn measure(
    link: &mut dyn Link,
    s: &Scenario,
    name: &str,
    mut raw: Option<&mut RawSide>,
    mut peer: Beside<'_>,
) -> Result<(Measurement, Option<Measurement>), Error> {
    let msg = vec![0xa5u8; s.size];
    let mut ours = Tally::new()?;
    let mut theirs = Tally::new()?;
    let mut bare = Tally::new()?;
    let warmup = s.iterations / 10;
    // Every side runs the same rounds: the warm-up, then in each batch its lead and its share.
    for (lead, n) in
        std::iter::once((warmup, 0)).chain((0..BATCHES).map(|b| (LEAD, batch_len(s.iterations, b))))
    {
        ours.rounds(lead, n, || link_round(link, &msg))?;
        if let Some(r) = raw.as_deref_mut() {
            bare.rounds(lead, n, || r.round(&msg))?;
        }
        if let Some((p, _)) = peer.as_mut() {
            theirs.rounds(lead, n, || link_round(*p, &msg))?;
        }
    }
    if s.stream > 0 {
        for b in 0..BATCHES {
            let n = batch_len(s.stream, b);
            ours.stream(link, &msg, n)?;
            if let Some((p, _)) = peer.as_mut() {
                theirs.stream(*p, &msg, n)?;
            }
        }
    }
    let baseline = raw.map(|_| bare.hist.value_at_quantile(0.5) as f64);
    Ok((
        ours.result(name, s, baseline),
        peer.map(|(_, pname)| theirs.result(pname, s, None)),
    ))
}

/// The peer's loop, matching [`measure`]: ready, echo every round trip, then take the stream
/// batch by batch, acknowledging each batch.
pub(crate) fn serve(
    link: &mut dyn Link,
    size: usize,
    iterations: usize,
    stream: usize,
) -> Result<(), Error> {
    link.send(b"ready")?;
    for _ in 0..round_trips(iterations) {
        link.echo()?;
    }
    if stream == 0 {
        return Ok(());
    }
    for b in 0..BATCHES {
        for _ in 0..batch_len(stream, b) {
            let n = link.recv_len()?;
            if n != size {
                return Err(bench_error(format!("received {n} bytes instead of {size}")));
            }
        }
        link.send(b"k")?;
    }
    Ok(())
}
