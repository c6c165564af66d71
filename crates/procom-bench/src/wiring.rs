//! Process wiring: the peer process started for a scenario, the channels between it and this
//! one, and the runs over them (`run`, `run_beside`).

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use procom::{Error, Receiver, Sender};

use crate::handoff::handoff;
use crate::leftovers::Registry;
use crate::link::{Link, ProcomLink, TypedLink, options, spin_param};
use crate::measure::{Beside, Measurement, measure};
use crate::process::{
    child_result, finish, packet_pair_peer, peer_command, pipe_peer, shm_capacity, shm_pair_peer,
    socketpair_peer, spawn,
};
use crate::raw::{RawSide, raw_setup};
use crate::scenario::{Mechanism, Scenario, bench_error, unique};

/// The parent's ends and the peer process for one scenario.
pub(crate) struct Wired {
    pub(crate) link: ProcomLink,
    pub(crate) child: Child,
    pub(crate) _cleanup: Option<procom::fifo::Fifo>,
    pub(crate) _cleanup2: Option<procom::fifo::Fifo>,
}

pub(crate) fn wire(exe: &Path, scratch: &Path, s: &Scenario) -> Result<Wired, Error> {
    let opts = options(s.size);
    let mut w = match s.mechanism {
        Mechanism::Sem
        | Mechanism::Signal
        | Mechanism::ShmTyped
        | Mechanism::UnixTyped
        | Mechanism::UnixPacketTyped => {
            return Err(bench_error("not wired here"));
        }
        Mechanism::Pipe => {
            let (tx, rx, child) = pipe_peer(peer_command(exe, s, "-", "-"))?;
            Wired {
                link: ProcomLink::new(
                    Sender::from_fd(tx, "pipe", &opts),
                    Receiver::from_fd(rx, "pipe", &opts),
                ),
                child,
                _cleanup: None,
                _cleanup2: None,
            }
        }
        Mechanism::Unix => {
            let (tx, rx, child) = socketpair_peer(peer_command(exe, s, "-", "-"))?;
            Wired {
                link: ProcomLink::new(
                    Sender::from_fd(tx, "unix socketpair", &opts),
                    Receiver::from_fd(rx, "unix socketpair", &opts),
                ),
                child,
                _cleanup: None,
                _cleanup2: None,
            }
        }
        Mechanism::UnixPacket => {
            let (tx, rx, child) = packet_pair_peer(peer_command(exe, s, "-", "-"))?;
            Wired {
                link: ProcomLink::new(
                    Sender::from_fd(tx, "unix packet pair", &opts),
                    Receiver::from_fd(rx, "unix packet pair", &opts),
                ),
                child,
                _cleanup: None,
                _cleanup2: None,
            }
        }
        Mechanism::Fifo => {
            let a2b = scratch.join(unique("a2b"));
            let b2a = scratch.join(unique("b2a"));
            let f1 = procom::fifo::Fifo::create(&a2b)?;
            let f2 = procom::fifo::Fifo::create(&b2a)?;
            let (e1, e2) = (
                format!("fifo:{}", a2b.display()),
                format!("fifo:{}", b2a.display()),
            );
            let mut cmd = peer_command(exe, s, &e1, &e2);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let child = spawn(cmd)?;
            let rx = Receiver::connect_with(&e2, &opts)?;
            let tx = Sender::connect_with(
                &e1,
                &opts.clone().open_timeout(Some(Duration::from_secs(10))),
            )?;
            Wired {
                link: ProcomLink::new(tx, rx),
                child,
                _cleanup: Some(f1),
                _cleanup2: Some(f2),
            }
        }
        Mechanism::Shm
        | Mechanism::UnixGram
        | Mechanism::Tcp
        | Mechanism::Udp
        | Mechanism::Mq
        | Mechanism::Msg => {
            // Port 0 (TCP, UDP): each side binds its own receiver and learns its port there,
            // so no port is chosen by binding and releasing it first.
            let mut registry = Registry::hold();
            let (e1, e2) = bound_endpoints(&mut registry, s, scratch)?;
            let mut rx = Receiver::bind_with(&e2, &opts)?;
            drop(registry);
            let e2 = rx.endpoint().to_string();
            let mut cmd = peer_command(exe, s, &e1, &e2);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let mut child = spawn(cmd)?;
            // The peer binds its receiver and says where (`at ENDPOINT`) over ours, then ready.
            let wait = Duration::from_secs(10);
            let tx = match rx.recv_timeout(wait) {
                Ok(m) => match std::str::from_utf8(&m)
                    .ok()
                    .and_then(|m| m.strip_prefix("at "))
                {
                    Some(at) => Sender::connect_with(at, &opts),
                    None => Err(bench_error("the peer did not say where it listens")),
                },
                Err(e) => Err(e),
            }
            .and_then(|tx| match rx.recv_timeout(wait) {
                Ok(m) if m == b"ready" => Ok(tx),
                Ok(_) => Err(bench_error("the peer did not say ready")),
                Err(e) => Err(e),
            });
            let tx = match tx {
                Ok(tx) => tx,
                Err(e) => {
                    crate::leftovers::end_peer(&mut child);
                    return Err(e);
                }
            };
            return Ok(Wired {
                link: ProcomLink::new(tx, rx),
                child,
                _cleanup: None,
                _cleanup2: None,
            });
        }
    };
    let ready = w.link.recv_control(Duration::from_secs(10))?;
    if ready != b"ready" {
        crate::leftovers::end_peer(&mut w.child);
        return Err(bench_error("the peer did not say ready"));
    }
    Ok(w)
}

/// The two endpoints (peer's receiver, ours) for a mechanism whose receivers bind.
fn bound_endpoints(
    registry: &mut Registry,
    s: &Scenario,
    scratch: &Path,
) -> Result<(String, String), Error> {
    let key = || 0x4200_0000 | ((std::process::id() & 0xfff) << 12) as i32;
    Ok(match s.mechanism {
        Mechanism::Shm => (
            format!(
                "shm:{}?capacity={}{}",
                registry.shm(unique("/procom-bench-a2b")),
                shm_capacity(s.size),
                spin_param(s.mode)
            ),
            format!(
                "shm:{}?capacity={}{}",
                registry.shm(unique("/procom-bench-b2a")),
                shm_capacity(s.size),
                spin_param(s.mode)
            ),
        ),
        Mechanism::UnixGram => (
            format!("unixgram:{}", scratch.join(unique("a2b")).display()),
            format!("unixgram:{}", scratch.join(unique("b2a")).display()),
        ),
        Mechanism::Tcp => ("tcp:127.0.0.1:0".to_string(), "tcp:127.0.0.1:0".to_string()),
        Mechanism::Udp => ("udp:127.0.0.1:0".to_string(), "udp:127.0.0.1:0".to_string()),
        Mechanism::Mq => {
            let cap = if s.size > 8192 { 4 } else { 10 };
            let size = s.size.max(64);
            (
                format!(
                    "mq:{}?capacity={cap}&msgsize={size}",
                    registry.mq(unique("/procom-bench-a2b"))
                ),
                format!(
                    "mq:{}?capacity={cap}&msgsize={size}",
                    registry.mq(unique("/procom-bench-b2a"))
                ),
            )
        }
        Mechanism::Msg => {
            static N: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
            let n = N.fetch_add(2, Ordering::Relaxed) & 0xffe;
            (
                format!("msg:{:#x}", registry.msg_key(key() | n)),
                format!("msg:{:#x}", registry.msg_key(key() | (n + 1))),
            )
        }
        _ => return Err(bench_error("not a bound mechanism")),
    })
}

/// Runs one scenario: ping-pong, then streaming, against a fresh peer process; then, for a
/// kernel mechanism, the same ping-pong as a plain loop of system calls (the baseline).
pub fn run(exe: &Path, scratch: &Path, s: &Scenario) -> Result<Measurement, Error> {
    if matches!(s.mechanism, Mechanism::Sem | Mechanism::Signal) {
        return handoff(exe, s);
    }
    run_beside(exe, scratch, s, None).map(|(m, _)| m)
}

/// [`run`], with a peer library's link (when given) measured in turns beside procom's.
pub(crate) fn run_beside(
    exe: &Path,
    scratch: &Path,
    s: &Scenario,
    peer: Beside<'_>,
) -> Result<(Measurement, Option<Measurement>), Error> {
    // The raw loop of the same mechanism, alive beside procom's.
    let mut raw = if s.mechanism.has_raw(s.size) {
        Some(raw_setup(exe, scratch, s)?)
    } else {
        None
    };
    let m = if s.mechanism.is_typed() {
        typed(exe, s, raw.as_mut(), peer)?
    } else {
        let mut w = wire(exe, scratch, s)?;
        let result = measure(&mut w.link, s, s.mechanism.name(), raw.as_mut(), peer);
        drop(w.link);
        // On failure the peer is killed: a datagram peer would otherwise wait for ever.
        finish(child_result(&mut w.child, result.is_err()), result)?
    };
    if let Some(r) = raw {
        r.finish();
    }
    Ok(m)
}

/// The typed channel between two local processes: a Unix socket pair (stream, or sequenced
/// packets), or two anonymous shared-memory channels, the peer's ends on its standard input
/// and output.
fn typed(
    exe: &Path,
    s: &Scenario,
    raw: Option<&mut RawSide>,
    peer: Beside<'_>,
) -> Result<(Measurement, Option<Measurement>), Error> {
    let opts = options(s.size);
    let cmd = peer_command(exe, s, "-", "-");
    let (tx, rx, mut child) = match s.mechanism {
        Mechanism::ShmTyped => shm_pair_peer(cmd, shm_capacity(s.size), &opts)?,
        m => {
            let start = if m == Mechanism::UnixPacketTyped {
                packet_pair_peer
            } else {
                socketpair_peer
            };
            let (tx, rx, child) = start(cmd)?;
            (
                Sender::from_fd(tx, "unix socketpair", &opts),
                Receiver::from_fd(rx, "unix socketpair", &opts),
                child,
            )
        }
    };
    let mut link = TypedLink {
        tx: procom::typed::Sender::from_untyped(tx),
        rx: procom::typed::Receiver::from_untyped(rx),
    };
    let result = match link.recv_control(Duration::from_secs(10)) {
        Ok(m) if m == b"ready" => measure(&mut link, s, s.mechanism.name(), raw, peer),
        Ok(_) => Err(bench_error("the peer did not say ready")),
        Err(e) => Err(e),
    };
    drop(link);
    finish(child_result(&mut child, result.is_err()), result)
}
