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
    /// Streaming messages per second, as delivered (UDP: those the receiver got); `None` where
    /// nothing was streamed.
    pub msgs_per_s: Option<f64>,
    /// Streaming megabytes (10^6 bytes) per second, as delivered; `None` where nothing was
    /// streamed or the messages carry no payload.
    pub mb_per_s: Option<f64>,
    /// The fraction of streamed messages that never arrived, on a link that drops them (UDP);
    /// `None` on the others, which deliver every message or fail.
    pub loss: Option<f64>,
    /// The same ping-pong as a plain loop of the mechanism's system calls with no procom layer,
    /// measured in the same run: every kernel mechanism, shared memory (two mailboxes in one
    /// mapping, spun on or slept on with a futex, see `RawShm`), semaphores (`sem_post` and
    /// `sem_wait`) and signals (`sigqueue` and `sigtimedwait`).
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
    /// Messages streamed, and those the peer says it received (a link that drops messages).
    sent: usize,
    delivered: Option<usize>,
}

impl Tally {
    fn new() -> Result<Tally, Error> {
        Ok(Tally {
            hist: histogram()?,
            stream_secs: 0.0,
            sent: 0,
            delivered: None,
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

    /// Batch `batch`: `n` messages back to back and the peer's acknowledgement that it
    /// received them (or how many it received, on a link that drops them).
    fn stream(
        &mut self,
        link: &mut dyn Link,
        msg: &[u8],
        n: usize,
        batch: usize,
    ) -> Result<(), Error> {
        let t0 = Instant::now();
        for _ in 0..n {
            link.send(msg)?;
        }
        let got = link.end_batch(batch)?;
        self.stream_secs += t0.elapsed().as_secs_f64();
        self.sent += n;
        if let Some(got) = got {
            self.delivered = Some(self.delivered.unwrap_or(0) + got.min(n));
        }
        Ok(())
    }

    fn result(&self, name: &str, s: &Scenario, baseline_p50_ns: Option<f64>) -> Measurement {
        let delivered = self.delivered.unwrap_or(self.sent);
        let per_s = |n: usize| (self.stream_secs > 0.0).then(|| n as f64 / self.stream_secs);
        Measurement {
            mechanism: name.to_string(),
            mode: s.mode.name(),
            size: s.size,
            p50_ns: self.hist.value_at_quantile(0.5) as f64,
            p99_ns: self.hist.value_at_quantile(0.99) as f64,
            p999_ns: self.hist.value_at_quantile(0.999) as f64,
            msgs_per_s: per_s(delivered),
            mb_per_s: per_s(delivered * s.size)
                .filter(|_| s.size > 0)
                .map(|b| b / 1e6),
            loss: self
                .delivered
                .filter(|_| self.sent > 0)
                .map(|d| 1.0 - d as f64 / self.sent as f64),
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
            ours.stream(link, &msg, n, b)?;
            if let Some((p, _)) = peer.as_mut() {
                theirs.stream(*p, &msg, n, b)?;
            }
        }
        // A peer that answers dropped questions again is told it can stop.
        if ours.delivered.is_some() {
            link.send(b"done")?;
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
        link.take_batch(size, batch_len(stream, b), b)?;
    }
    link.end_stream()
}
