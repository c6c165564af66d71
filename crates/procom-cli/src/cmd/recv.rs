//! `procom recv ENDPOINT [--count N] [--timeout SECS]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use procom::socket::DatagramStats;
use procom::{Endpoint, ErrorKind, Receiver};

use crate::cli::RecvArgs;
use crate::interrupt;

pub fn run(args: RecvArgs) -> anyhow::Result<()> {
    let mut ep = Endpoint::parse(&args.endpoint)?;
    super::apply_type(&mut ep, args.mtype)?;
    let opts = super::options(&args.stream, false)?;
    interrupt::set_activity(format!("receiving from {ep}"));
    // Declared before the owner, so dropped after it: the owner removes what it created
    // while the hook still covers an early end.
    let _remove_on_exit;
    let creating = interrupt::creating();
    let mut rx = Receiver::connect_with(&ep, &opts)?;
    _remove_on_exit = rx.cleanup().map(|c| {
        interrupt::on_exit(move || {
            c.remove();
        })
    });
    drop(creating);
    // A datagram receiver says what it counted (loss, reordering, duplicates, datagrams it
    // could not deliver) however it ends: normally, on an error, or interrupted (the hook
    // reads the copy the loop keeps current).
    let summary = rx.datagram_stats().map(|_| {
        Arc::new(Summary {
            ep: ep.to_string(),
            numbered: matches!(ep, Endpoint::Udp { .. }) && args.stream.framed,
            stats: Mutex::new(DatagramStats::default()),
            reported: AtomicBool::new(false),
        })
    });
    let _hook = summary
        .clone()
        .map(|s| interrupt::on_exit(move || s.report()));
    let result = receive(&args, &ep, &mut rx, summary.as_deref());
    if let Some(s) = &summary {
        let _whole = interrupt::output_lock();
        s.report();
    }
    result
}

fn receive(
    args: &RecvArgs,
    ep: &Endpoint,
    rx: &mut Receiver,
    summary: Option<&Summary>,
) -> anyhow::Result<()> {
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        let msg = match args.timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv(),
        };
        if let (Some(s), Some(stats)) = (summary, rx.datagram_stats()) {
            *s.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        }
        let msg = match msg {
            Ok(m) => m,
            // A kernel queue has no peer to close it: its removal ends the wait, and says so.
            Err(e)
                if e.kind() == ErrorKind::PeerGone
                    && matches!(ep, Endpoint::Mq { .. } | Endpoint::Msg { .. }) =>
            {
                anyhow::bail!("{e} ({received} received)")
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => match args.count {
                None => return Ok(()),
                Some(n) => {
                    anyhow::bail!("{ep}: the sender closed after {received} of {n} messages")
                }
            },
            // One bad datagram concerns only itself: the library discarded and counted it.
            // Any local process can send one, so it is reported (a flood only a few times)
            // and the receiver goes on.
            Err(e)
                if summary.is_some()
                    && matches!(e.kind(), ErrorKind::TooLarge | ErrorKind::Malformed) =>
            {
                let refused = rx.datagram_stats().map_or(0, |s| s.refused);
                if refused <= REPORTED_REFUSALS {
                    interrupt::warn(format_args!("{e}"));
                }
                if refused == REPORTED_REFUSALS {
                    interrupt::warn(format_args!(
                        "{ep}: further datagrams that cannot be delivered are only counted (the count is given when recv ends)"
                    ));
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let t = args.timeout.unwrap_or_default();
                anyhow::bail!("{ep}: no whole message arrived within {t:?} ({received} received)");
            }
            // A stream that ended inside a line: its last bytes are shown as they came (no
            // newline is added, so they do not pass for a line), and the run fails.
            Err(e) if e.fragment().is_some() => {
                super::write_stdout(&[e.fragment().unwrap_or_default()])?;
                anyhow::bail!("{e}; its bytes were printed as they came, with no newline")
            }
            Err(e) => return Err(e.into()),
        };
        super::write_stdout(&[&msg, b"\n"])?;
        received += 1;
    }
    Ok(())
}

/// How many undeliverable datagrams a receiver reports one by one before it only counts them.
const REPORTED_REFUSALS: u64 = 10;

/// What a datagram receiver counted, shared with the exit hook.
struct Summary {
    ep: String,
    /// UDP with length framing: senders number their datagrams, so loss is counted.
    numbered: bool,
    stats: Mutex<DatagramStats>,
    reported: AtomicBool,
}

impl Summary {
    /// Says, once, on standard error what went wrong with the datagrams, if anything did.
    /// Takes no output lock: an exit hook runs under the one the interrupt holds.
    fn report(&self) {
        if self.reported.swap(true, Ordering::AcqRel) {
            return;
        }
        let s = *self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if s.lost == 0 && s.reordered == 0 && s.duplicated == 0 && s.refused == 0 {
            return;
        }
        let ep = &self.ep;
        if self.numbered {
            interrupt::warn(format_args!(
                "{ep}: datagrams: {} delivered, {} lost, {} reordered, {} duplicated, {} refused (could not be delivered)",
                s.received, s.lost, s.reordered, s.duplicated, s.refused
            ));
        } else {
            interrupt::warn(format_args!(
                "{ep}: datagrams: {} delivered, {} refused (could not be delivered){}",
                s.received,
                s.refused,
                if ep.starts_with("udp:") {
                    "; loss is counted only with --framed"
                } else {
                    ""
                }
            ));
        }
    }
}
