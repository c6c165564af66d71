//! `procom recv ENDPOINT [--count N] [--timeout SECS]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use procom::endpoint::UnixAddr;
use procom::socket::DatagramStats;
use procom::{Endpoint, ErrorKind, MessageMeta, Receiver};

use crate::cli::RecvArgs;
use crate::interrupt;

pub fn run(args: RecvArgs) -> anyhow::Result<()> {
    let mut ep = Endpoint::parse(&args.endpoint)?;
    super::apply_type(&mut ep, args.mtype)?;
    let mut opts = super::options(&args.stream, false)?;
    if super::sharing(&args.share) {
        match &ep {
            Endpoint::Shm { .. }
            | Endpoint::UnixGram {
                addr: UnixAddr::Path(_),
            } => {}
            Endpoint::UnixGram { .. } => {
                return Err(super::usage!(
                    "{ep}: --mode and --group apply to a socket file, and an abstract socket has none"
                ));
            }
            _ => {
                return Err(super::usage!(
                    "{ep}: --mode and --group apply to what recv creates, a shm: channel or a unixgram: socket file (create queues and FIFOs with procom mq|msg|fifo create --mode; recv connects to a unix: or unixpacket: server, whose socket file procom listen --mode makes)"
                ));
            }
        }
        let (mode, group) = super::share(&args.share)?;
        opts = opts.mode(mode);
        if let Some(gid) = group {
            opts = opts.group(gid);
        }
    }
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
            Some(t) => rx.recv_meta_timeout(t),
            None => rx.recv_meta(),
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
                let t = super::duration(args.timeout.unwrap_or_default());
                anyhow::bail!("{ep}: no whole message arrived within {t} ({received} received)");
            }
            // A stream that ended inside a line: its last bytes are shown as they came (no
            // newline is added, so they do not pass for a line), and the run fails.
            Err(e) if e.fragment().is_some() => {
                let fragment = e.fragment().unwrap_or_default();
                if args.json {
                    let mut o = json_message(fragment, &MessageMeta::default());
                    o.insert("incomplete".into(), true.into());
                    super::json_line(&o.into())?;
                    anyhow::bail!("{e}; its bytes were printed as an object marked incomplete")
                }
                super::write_stdout(&[fragment])?;
                anyhow::bail!("{e}; its bytes were printed as they came, with no newline")
            }
            Err(e) => return Err(e.into()),
        };
        let (msg, meta) = msg;
        if args.json {
            super::json_line(&json_message(&msg, &meta).into())?;
        } else {
            super::write_stdout(&[&msg, b"\n"])?;
        }
        received += 1;
    }
    Ok(())
}

/// A message as `recv --json` prints it: its text (or `null` and its bytes in base64 when it
/// is not UTF-8), its length, and what its mechanism carried with it.
fn json_message(msg: &[u8], meta: &MessageMeta) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut o = serde_json::Map::new();
    match std::str::from_utf8(msg) {
        Ok(text) => {
            o.insert("bytes".into(), text.into());
        }
        Err(_) => {
            o.insert("bytes".into(), Value::Null);
            let b64 = base64::engine::general_purpose::STANDARD.encode(msg);
            o.insert("base64".into(), b64.into());
        }
    }
    o.insert("len".into(), msg.len().into());
    if let Some(p) = meta.priority {
        o.insert("priority".into(), p.into());
    }
    if let Some(t) = meta.mtype {
        o.insert("type".into(), t.into());
    }
    if let Some(from) = &meta.from {
        o.insert("from".into(), from.to_string().into());
    }
    if let Some(seq) = meta.seq {
        o.insert("seq".into(), seq.into());
    }
    if let Some(gap) = meta.gap {
        o.insert("gap".into(), gap.into());
    }
    o
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
