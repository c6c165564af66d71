//! The async rows (`procom bench --async`): the same ping-pong and streaming through procom's
//! async API ([`procom::AsyncSender`], [`procom::AsyncReceiver`]) on a current-thread tokio
//! runtime in both processes, measured in turns with the blocking row of the same scenario
//! (batch by batch, like a peer library), so their ratio is read from one run.

use std::path::Path;
use std::time::Duration;

use procom::{AsyncReceiver, AsyncSender, Error, Receiver, Sender};

use crate::link::{Link, udp};
use crate::measure::Measurement;
use crate::process::{child_result, finish};
use crate::scenario::{Mechanism, Mode, Scenario, bench_error};
use crate::wiring::{run_beside, wire};

/// procom's byte channels through the async API: every call is one `block_on` of the async
/// call on a current-thread runtime, which parks in epoll (or is woken by a waiter thread)
/// exactly as an async server's runtime thread would.
pub(crate) struct AsyncLink {
    rt: tokio::runtime::Runtime,
    tx: AsyncSender,
    rx: AsyncReceiver,
    /// The echo side's buffer, reused for every message.
    buf: Vec<u8>,
    /// A datagram can be lost: UDP receives with a deadline, and ends its batches as
    /// [`udp`](crate::link::udp) says (`Some`).
    udp: Option<udp::Batches>,
}

impl AsyncLink {
    pub(crate) fn new(tx: Sender, rx: Receiver) -> Result<AsyncLink, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::os("start a tokio runtime", e).object("bench"))?;
        Ok(AsyncLink {
            udp: udp::Batches::for_endpoint(rx.endpoint()),
            rt,
            tx: AsyncSender::new(tx),
            rx: AsyncReceiver::new(rx),
            buf: Vec::new(),
        })
    }
}

impl Link for AsyncLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let AsyncLink { rt, tx, .. } = self;
        rt.block_on(async {
            tx.send(msg).await.map_err(|e| e.into_error())?;
            // The payload is in the transport when `send` returns, as for every link.
            tx.flush().await
        })
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        let AsyncLink {
            rt, rx, buf, udp, ..
        } = self;
        if udp.is_some() {
            return Ok(rt.block_on(rx.recv_timeout(Duration::from_secs(10)))?.len());
        }
        rt.block_on(rx.recv_into(buf))
    }
    fn echo(&mut self) -> Result<(), Error> {
        let AsyncLink {
            rt, tx, rx, buf, ..
        } = self;
        rt.block_on(async {
            rx.recv_into(buf).await?;
            tx.send(&buf[..]).await.map_err(|e| e.into_error())?;
            tx.flush().await
        })
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        let AsyncLink { rt, rx, .. } = self;
        rt.block_on(rx.recv_timeout(timeout))
    }
    fn udp_batches(&mut self) -> Option<&mut udp::Batches> {
        self.udp.as_mut()
    }
}

/// Whether `--async` measures `m` (every channel; not the hand-offs, nor the typed rows).
pub fn has_async(m: Mechanism) -> bool {
    !m.is_typed() && !matches!(m, Mechanism::Sem | Mechanism::Signal)
}

/// Runs blocking scenario `s` with its async counterpart in turns beside it: a second peer
/// process serves the async link with the async API too. Returns the blocking row (with its
/// raw baseline) and the async row (mode `async`).
pub fn run_async(
    exe: &Path,
    scratch: &Path,
    s: &Scenario,
) -> Result<(Measurement, Measurement), Error> {
    if s.mode != Mode::Block || !has_async(s.mechanism) {
        return Err(bench_error(
            "only blocking channel scenarios have an async row",
        ));
    }
    let mut a = *s;
    a.mode = Mode::Async;
    let mut w = wire(exe, scratch, &a)?;
    let (tx, rx) = w.link.into_parts();
    let mut link = match AsyncLink::new(tx, rx) {
        Ok(l) => l,
        Err(e) => {
            crate::leftovers::end_peer(&mut w.child);
            return Err(e);
        }
    };
    let result = run_beside(exe, scratch, s, Some((&mut link, s.mechanism.name())));
    drop(link);
    let (blocking, async_row) = finish(child_result(&mut w.child, result.is_err()), result)?;
    let mut async_row = async_row.ok_or_else(|| bench_error("no async row"))?;
    async_row.mode = Mode::Async.name();
    Ok((blocking, async_row))
}
