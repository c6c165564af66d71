//! The shared channel contract: one generic test per semantic property, instantiated for every
//! flavor by the `contract!` macro at the bottom.
//!
//! Each test runs the property's receiver and sender as two separate child processes (this
//! binary re-executed as the roles `contract::recv` and `contract::send`), wired to one
//! endpoint by the flavor's entry in [`wire`]. The receiver prints `ready` once its end is
//! open; the sender starts only then. A TCP or UDP receiver binds port 0 and first prints
//! `bound ENDPOINT` with the port the kernel gave it, which the sender is then told. Each role checks it leaked no descriptor; the parent
//! checks both outcomes and that no named object was left behind.
//!
//! Documented exceptions:
//! - `pipe` (the `-` endpoint, standard input/output): dropping a `Sender` on `-` closes only
//!   its duplicate of standard output, so in `disconnect_on_drop` the receiver sees the
//!   disconnect when the sending process exits, not when the sender is dropped.
//! - `mq` and `msg` (kernel message queues): a queue has no peer, it outlives every process
//!   (the classic tour's point), so "disconnect" and "peer death" cannot be seen: in
//!   `disconnect_on_drop` and `peer_death` the receiver instead checks that every message
//!   sent before the sender left (or was killed) is still delivered whole, and that then
//!   nothing more arrives (`Timeout`, not `PeerGone`). `boundaries` uses only the sizes a
//!   queue can carry (at most its message size, 8 KiB here).
//! - `udp` and `unixgram` (datagrams) are connectionless too, with the same exceptions, and
//!   `boundaries` stops at the largest datagram. UDP may also lose datagrams: in `order` the
//!   receiver checks that whatever arrives is intact and in order and that every gap is
//!   counted as lost (`Receiver::datagram_stats`), not hidden.
//! - `unixpacket` (sequenced packets): a packet of no bytes cannot be told from the peer
//!   leaving, so the flavor refuses empty messages and `boundaries` starts at 1 byte; a packet
//!   lives in one kernel buffer, so `boundaries` stops at the largest packet here
//!   (`socket::packet_limit`), and `peer_death` streams 1 MiB packets (or 8 KiB ones where
//!   the limit is lower) instead of 48 MiB messages.

use std::process::{Command, Stdio};

use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role};

/// One semantic property: what the sender does, what the receiver checks, and what the
/// parent does between them.
pub struct Property {
    pub name: &'static str,
    pub send: fn(&str) -> Outcome,
    pub recv: fn(&str, &str) -> Outcome,
    pub parent: fn(&mut Proc, &mut Proc) -> Outcome,
    /// Whether the sender is expected to exit 0 (not when the parent kills it).
    pub sender_survives: bool,
}

const PROPERTIES: &[Property] = &[
    Property {
        name: "order",
        send: order_send,
        recv: order_recv,
        parent: no_step,
        sender_survives: true,
    },
    Property {
        name: "boundaries",
        send: boundaries_send,
        recv: boundaries_recv,
        parent: no_step,
        sender_survives: true,
    },
    Property {
        name: "try_recv_empty",
        send: try_recv_send,
        recv: try_recv_recv,
        parent: no_step,
        sender_survives: true,
    },
    Property {
        name: "disconnect_on_drop",
        send: disconnect_send,
        recv: disconnect_recv,
        parent: disconnect_parent,
        sender_survives: true,
    },
    Property {
        name: "oversize_rejected",
        send: oversize_send,
        recv: oversize_recv,
        parent: no_step,
        sender_survives: true,
    },
    Property {
        name: "peer_death",
        send: death_send,
        recv: death_recv,
        parent: death_parent,
        sender_survives: false,
    },
    Property {
        name: "typed",
        send: typed_send,
        recv: typed_recv,
        parent: no_step,
        sender_survives: true,
    },
];

pub const ROLES: &[Role] = &[
    Role {
        name: "contract::recv",
        run: recv_role,
    },
    Role {
        name: "contract::send",
        run: send_role,
    },
];

/// Every property: these, the typed views and the async ones.
fn all_properties() -> impl Iterator<Item = &'static Property> {
    PROPERTIES
        .iter()
        .chain(crate::typed::PROPERTIES)
        .chain(crate::async_contract::PROPERTIES)
}

/// How a flavor's two roles reach each other.
struct Wiring {
    recv_cmd: Command,
    send_cmd: Command,
    /// Whether the sender's standard output is the channel (so it must not be captured).
    send_stdout_is_channel: bool,
    /// Whether the receiver binds port 0 and says `bound ENDPOINT`: the sender gets that.
    learns_port: bool,
    scratch: Option<Scratch>,
    /// A path that must not exist once the test is over (a named kernel object).
    gone_after: Option<std::path::PathBuf>,
    /// Checks that a named kernel object without a path is gone (message queues).
    gone_check: Option<Box<dyn FnOnce() -> Outcome>>,
}

/// The per-flavor setup: an endpoint for each side and the commands that play `property`.
/// The usual wiring: the receiver binds `ep`, the sender connects to it.
fn named(property: &str, ep: &str) -> Wiring {
    let mut recv_cmd = role("contract::recv", &[property, ep, "bind"]);
    recv_cmd.stdin(Stdio::null());
    Wiring {
        recv_cmd,
        send_cmd: role("contract::send", &[property, ep]),
        send_stdout_is_channel: false,
        learns_port: false,
        scratch: None,
        gone_after: None,
        gone_check: None,
    }
}

fn wire(flavor: &str, property: &str) -> Result<Wiring, String> {
    match flavor {
        "pipe" => {
            let (r, w) = check!(procom::pipe::pipe());
            let mut recv_cmd = role("contract::recv", &[property, "-", "connect"]);
            recv_cmd.stdin(r);
            let mut send_cmd = role("contract::send", &[property, "-"]);
            send_cmd.stdout(w);
            Ok(Wiring {
                recv_cmd,
                send_cmd,
                send_stdout_is_channel: true,
                ..named(property, "-")
            })
        }
        "fifo" | "unix" | "unixgram" | "unixpacket" => {
            let scratch = Scratch::new("procom-ct")?;
            let ep = format!("{flavor}:{}", scratch.join("ch").display());
            Ok(Wiring {
                scratch: Some(scratch),
                ..named(property, &ep)
            })
        }
        "shm" => {
            let name = format!("/{}", procom_testkit::unique_name("procom-ct"));
            let w = named(property, &format!("shm:{name}?capacity=4MiB"));
            Ok(Wiring {
                gone_after: Some(format!("/dev/shm{name}").into()),
                ..w
            })
        }
        "tcp" | "udp" => Ok(Wiring {
            learns_port: true,
            ..named(property, &format!("{flavor}:127.0.0.1:0"))
        }),
        "mq" => {
            let name = format!("/{}", procom_testkit::unique_name("procom-ct"));
            let w = named(property, &format!("mq:{name}?capacity=10&msgsize=8192"));
            let gone_check: Box<dyn FnOnce() -> Outcome> = Box::new(move || {
                let e = procom::mq::Queue::open(&name).err().map(|e| e.kind());
                ensure!(e == Some(ErrorKind::NotFound), "queue {name} leaked: {e:?}");
                Ok(())
            });
            Ok(Wiring {
                gone_check: Some(gone_check),
                ..w
            })
        }
        "msg" => {
            let key = unique_key();
            let w = named(property, &format!("msg:{key:#x}"));
            let gone_check: Box<dyn FnOnce() -> Outcome> = Box::new(move || {
                let k = procom::endpoint::SysvKey::Key(key as i32);
                let e = procom::msg::MsgQueue::open(&k).err().map(|e| e.kind());
                ensure!(
                    e == Some(ErrorKind::NotFound),
                    "System V queue {key:#x} leaked: {e:?}"
                );
                Ok(())
            });
            Ok(Wiring {
                gone_check: Some(gone_check),
                ..w
            })
        }
        other => Err(format!("no wiring for flavor {other}")),
    }
}

fn run(flavor: &str, property: &'static Property) -> Outcome {
    let Wiring {
        mut recv_cmd,
        mut send_cmd,
        send_stdout_is_channel,
        learns_port,
        scratch,
        gone_after,
        gone_check,
    } = wire(flavor, property.name)?;
    let mut rx = Proc::spawn("receiver", &mut recv_cmd)?;
    drop(recv_cmd); // closes this process's copy of the receiver's end
    if learns_port {
        let line = rx.line(STEP)?;
        let ep = line
            .strip_prefix("bound ")
            .ok_or(format!("the receiver said {line:?}"))?;
        send_cmd = role("contract::send", &[property.name, ep]);
    }
    rx.expect_line("ready")?;
    send_cmd.stdin(Stdio::piped());
    let mut tx = if send_stdout_is_channel {
        Proc::spawn_keep_stdout("sender", &mut send_cmd)?
    } else {
        Proc::spawn("sender", &mut send_cmd)?
    };
    drop(send_cmd);
    (property.parent)(&mut rx, &mut tx)?;
    let rx_done = rx.success(STEP);
    drop(tx.child().stdin.take());
    let tx_done = tx.finish(STEP)?;
    rx_done?;
    if property.sender_survives {
        ensure!(
            tx_done.status.success(),
            "sender failed: {}; stderr: {}",
            tx_done.status,
            tx_done.stderr.trim()
        );
    }
    if let Some(check) = gone_check {
        check()?;
    }
    if let Some(path) = gone_after {
        ensure!(!path.exists(), "leaked {}", path.display());
    }
    match scratch {
        Some(s) => s.finish(),
        None => Ok(()),
    }
}

fn find(name: &str) -> Result<&'static Property, String> {
    all_properties()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("no property {name}"))
}

fn recv_role(args: &[String]) -> Outcome {
    let [property, ep, mode] = args else {
        return Err(format!("bad arguments {args:?}"));
    };
    (find(property)?.recv)(ep, mode)
}

fn send_role(args: &[String]) -> Outcome {
    let [property, ep] = args else {
        return Err(format!("bad arguments {args:?}"));
    };
    (find(property)?.send)(ep)
}

/// Opens the receiver's end; one that bound port 0 says which port it got (`bound ENDPOINT`).
pub fn open_rx(ep: &str, mode: &str, opts: &Options) -> Result<Receiver, String> {
    if mode != "bind" {
        return Ok(check!(Receiver::connect_with(ep, opts)));
    }
    let rx = check!(Receiver::bind_with(ep, opts));
    if ep.ends_with(":0") {
        use std::io::Write;
        println!("bound {}", rx.endpoint());
        let _ = std::io::stdout().flush();
    }
    Ok(rx)
}

pub fn ready() {
    use std::io::Write;
    println!("ready");
    let _ = std::io::stdout().flush();
}

/// A System V key no other test or run uses.
pub fn unique_key() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    0x4300_0000
        | ((std::process::id() & 0xfff) << 12)
        | (N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xfff)
}

/// Whether the endpoint has no connection to lose: a kernel message queue or a datagram
/// socket (see the module's exceptions).
pub fn is_queue(ep: &str) -> bool {
    ["mq:", "msg:", "udp:", "unixgram:"]
        .iter()
        .any(|p| ep.starts_with(p))
}

/// The smallest message the flavor carries.
fn flavor_min(ep: &str) -> usize {
    usize::from(ep.starts_with("unixpacket:"))
}

/// The largest message the flavor carries.
pub fn flavor_max(ep: &str) -> usize {
    if ep.starts_with("udp:") {
        65507 - procom::socket::UDP_HEADER_LEN
    } else if ep.starts_with("unixgram:") {
        65537
    } else if ep.starts_with("unixpacket:") {
        procom::socket::packet_limit()
    } else if is_queue(ep) {
        8192
    } else {
        usize::MAX
    }
}

/// The end of the conversation: PeerGone, or for a queue, silence.
fn expect_gone_or_silence(rx: &mut Receiver, ep: &str) -> Outcome {
    if !is_queue(ep) {
        return expect_gone(rx);
    }
    match rx.recv_timeout(std::time::Duration::from_millis(200)) {
        Err(e) if e.kind() == ErrorKind::Timeout => Ok(()),
        Err(e) => Err(format!("expected nothing more from the queue, got {e}")),
        Ok(m) => Err(format!(
            "expected nothing more from the queue, got a {}-byte message",
            m.len()
        )),
    }
}

fn expect_gone(rx: &mut Receiver) -> Outcome {
    match rx.recv_timeout(STEP) {
        Err(e) if e.kind() == ErrorKind::PeerGone => Ok(()),
        Err(e) => Err(format!("expected PeerGone, got {e}")),
        Ok(m) => Err(format!("expected PeerGone, got a {}-byte message", m.len())),
    }
}

pub fn no_step(_rx: &mut Proc, _tx: &mut Proc) -> Outcome {
    Ok(())
}

fn send_all(tx: &mut Sender, msg: &[u8]) -> Outcome {
    tx.send(msg).map_err(|e| e.to_string())
}

// --- order: many messages arrive exactly once, in order ---------------------------------------

const ORDER_N: usize = 5000;

fn numbered(i: usize) -> Vec<u8> {
    let mut m = format!("{i:06}:").into_bytes();
    m.resize(m.len() + i % 257, b'x');
    m
}

fn order_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect(ep));
    for i in 0..ORDER_N {
        send_all(&mut tx, &numbered(i))?;
    }
    Ok(())
}

fn order_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default())?;
    ready();
    if ep.starts_with("udp:") {
        return order_recv_lossy(&mut rx);
    }
    for i in 0..ORDER_N {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(
            m == numbered(i),
            "message {i} arrived as {:?}",
            String::from_utf8_lossy(&m[..m.len().min(20)])
        );
    }
    expect_gone_or_silence(&mut rx, ep)
}

/// UDP: what arrives is intact and in order; every gap is counted.
fn order_recv_lossy(rx: &mut Receiver) -> Outcome {
    let mut last: Option<usize> = None;
    loop {
        let m = match rx.recv_timeout(std::time::Duration::from_millis(if last.is_none() {
            20_000
        } else {
            500
        })) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::Timeout && last.is_some() => break,
            Err(e) => return Err(e.to_string()),
        };
        let i: usize = check!(check!(std::str::from_utf8(&m[..6])).parse::<usize>());
        ensure!(m == numbered(i), "datagram {i} was altered");
        ensure!(
            last.is_none_or(|l| i > l),
            "datagram {i} came after {last:?}"
        );
        last = Some(i);
    }
    let stats = rx.datagram_stats().ok_or("no datagram statistics")?;
    let last = last.unwrap_or(0) as u64;
    ensure!(
        stats.received + stats.lost == last + 1,
        "received {} + lost {} != {} sent up to the last seen",
        stats.received,
        stats.lost,
        last + 1
    );
    println!(
        "udp: {} of {ORDER_N} arrived, {} counted lost",
        stats.received, stats.lost
    );
    Ok(())
}

// --- boundaries: every size survives whole, none merged or split ------------------------------

const SIZES: &[usize] = &[
    0,
    1,
    2,
    4091,
    4092,
    4095,
    4096,
    4097,
    65535,
    65536,
    65537,
    1 << 20,
    (3 << 20) + 5,
];

fn pattern(size: usize, k: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ k.wrapping_mul(7) ^ size) as u8)
        .collect()
}

fn boundaries_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect(ep));
    for (k, size) in SIZES
        .iter()
        .enumerate()
        .filter(|(_, s)| (flavor_min(ep)..=flavor_max(ep)).contains(*s))
    {
        send_all(&mut tx, &pattern(*size, k))?;
    }
    Ok(())
}

fn boundaries_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default())?;
    ready();
    // Every other message goes through `recv_into` with one reused buffer, which still holds
    // the previous (larger or smaller) message: nothing of it may show through.
    let mut reused = vec![0xeeu8; 3];
    for (k, size) in SIZES
        .iter()
        .enumerate()
        .filter(|(_, s)| (flavor_min(ep)..=flavor_max(ep)).contains(*s))
    {
        let m = if k % 2 == 1 {
            let n = check!(rx.recv_into(&mut reused));
            ensure!(
                n == reused.len(),
                "recv_into returned {n} for {} bytes",
                reused.len()
            );
            reused.clone()
        } else {
            check!(rx.recv_timeout(STEP))
        };
        ensure!(
            m.len() == *size,
            "message {k}: expected {size} bytes, got {}",
            m.len()
        );
        ensure!(
            m == pattern(*size, k),
            "message {k} ({size} bytes) has the wrong contents"
        );
    }
    expect_gone_or_silence(&mut rx, ep)
}

// --- try_recv_empty: nothing waiting is Empty, a deadline is Timeout, then a message arrives --

fn try_recv_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect(ep));
    send_all(&mut tx, b"late")
}

fn try_recv_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default())?;
    let e = rx.try_recv().err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Empty),
        "try_recv on an empty channel gave {e:?}"
    );
    let e = rx
        .recv_timeout(std::time::Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Timeout),
        "recv_timeout on an empty channel gave {e:?}"
    );
    ready();
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"late", "got {m:?}");
    expect_gone_or_silence(&mut rx, ep)
}

// --- disconnect_on_drop: the receiver sees PeerGone once the sender is dropped ----------------

fn disconnect_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect(ep));
    for m in [&b"a"[..], b"b", b"c"] {
        send_all(&mut tx, m)?;
    }
    drop(tx);
    if ep == "-" {
        return Ok(()); // the documented exception: the disconnect comes with our exit
    }
    // Stay alive until the parent closes our standard input, so the receiver's PeerGone can
    // only come from the drop.
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn disconnect_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default())?;
    ready();
    for want in [&b"a"[..], b"b", b"c"] {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(m == want, "got {m:?}, wanted {want:?}");
    }
    expect_gone_or_silence(&mut rx, ep)?;
    let again = rx.try_recv().err().map(|e| e.kind());
    let want = if is_queue(ep) {
        ErrorKind::Empty
    } else {
        ErrorKind::PeerGone
    };
    ensure!(
        again == Some(want),
        "a second receive after disconnect gave {again:?}"
    );
    Ok(())
}

fn disconnect_parent(rx: &mut Proc, tx: &mut Proc) -> Outcome {
    // The receiver finishes (having seen PeerGone) while the sender is still running (except
    // for `-`, whose sender exits right after the drop).
    let _ = tx;
    let st = rx.exits_within(STEP)?;
    ensure!(
        st.is_some_and(|s| s.success()),
        "receiver did not finish cleanly while the sender was alive: {st:?}"
    );
    Ok(())
}

// --- oversize_rejected: a sender refuses and hands back; a receiver refuses before allocating --

fn oversize_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect_with(
        ep,
        &Options::default().max_message(1024)
    ));
    let big = vec![7u8; 2048];
    match tx.send(big) {
        Ok(()) => return Err("a 2048-byte message passed a 1024-byte limit".into()),
        Err(e) => {
            ensure!(e.kind() == ErrorKind::TooLarge, "wrong error {e}");
            ensure!(
                e.error().limit() == Some(1024),
                "limit {:?}",
                e.error().limit()
            );
            ensure!(
                e.into_message() == vec![7u8; 2048],
                "the message was not handed back intact"
            );
        }
    }
    send_all(&mut tx, b"fits")?;
    // One sender (a shared-memory channel admits one at a time) with its limit lifted.
    tx.set_max_message(Options::default().max_message);
    send_all(&mut tx, &[9u8; 2048])
}

fn oversize_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default().max_message(1024))?;
    ready();
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"fits", "got {m:?}");
    match rx.recv_timeout(STEP) {
        Err(e) if e.kind() == ErrorKind::TooLarge => {
            ensure!(e.limit() == Some(1024), "limit {:?}", e.limit());
            Ok(())
        }
        other => Err(format!(
            "a 2048-byte message to a 1024-byte receiver gave {other:?}"
        )),
    }
}

// --- peer_death: a SIGKILLed sender never yields a partial message ----------------------------

/// Big enough that a byte stream is killed mid-message; a shared-memory ring (4 MiB here)
/// takes a stream of 1 MiB messages instead, and is killed while writing one of them.
/// (A queue carries 8 KiB messages.)
const DEATH_SIZES: [usize; 3] = [48 << 20, 1 << 20, 8192];

fn death_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::connect(ep));
    send_all(&mut tx, b"one")?;
    let size = if ep.starts_with("shm:") {
        DEATH_SIZES[1]
    } else if ep.starts_with("unixpacket:") {
        *DEATH_SIZES
            .iter()
            .find(|s| **s <= flavor_max(ep))
            .unwrap_or(&DEATH_SIZES[2])
    } else if is_queue(ep) {
        DEATH_SIZES[2]
    } else {
        DEATH_SIZES[0]
    };
    let big = vec![0x5a; size];
    loop {
        send_all(&mut tx, &big)?; // killed while this is under way
    }
}

fn death_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = open_rx(ep, mode, &Options::default())?;
    ready();
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"one", "got {m:?}");
    println!("got-one");
    let wait = if is_queue(ep) {
        std::time::Duration::from_millis(300)
    } else {
        STEP
    };
    loop {
        match rx.recv_timeout(wait) {
            Err(e) if is_queue(ep) && e.kind() == ErrorKind::Timeout => return Ok(()),
            // The sender may have finished before the kill landed: then it must be whole.
            Ok(m) => ensure!(
                DEATH_SIZES.contains(&m.len()) && m.iter().all(|b| *b == 0x5a),
                "a partial or corrupt {}-byte message was delivered",
                m.len()
            ),
            Err(e) if matches!(e.kind(), ErrorKind::PeerGone | ErrorKind::Malformed) => {
                return Ok(());
            }
            Err(e) => return Err(format!("after the sender was killed: {e}")),
        }
    }
}

fn death_parent(rx: &mut Proc, tx: &mut Proc) -> Outcome {
    rx.expect_line("got-one")?;
    check!(tx.child().kill());
    Ok(())
}

// --- typed: serde values cross intact -------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Job {
    id: u32,
    name: String,
    tags: Vec<String>,
    weight: f64,
}

fn job(i: u32) -> Job {
    Job {
        id: i,
        name: format!("job-{i}"),
        tags: (0..i % 5).map(|t| format!("t{t}")).collect(),
        weight: f64::from(i) / 3.0,
    }
}

fn typed_send(ep: &str) -> Outcome {
    let mut tx = check!(procom::typed::Sender::<Job>::connect(ep));
    for i in 0..200 {
        tx.send(job(i)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn typed_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx =
        procom::typed::Receiver::<Job>::from_untyped(open_rx(ep, mode, &Options::default())?);
    ready();
    for i in 0..200 {
        let j = check!(rx.recv_timeout(STEP));
        ensure!(j == job(i), "got {j:?}");
    }
    Ok(())
}

/// Instantiates every property for every listed flavor.
macro_rules! contract {
    ($($flavor:literal),* $(,)?) => {
        pub fn trials() -> Vec<Trial> {
            let mut trials = Vec::new();
            $(
                for property in all_properties() {
                    trials.push(procom_testkit::test(
                        format!("contract::{}::{}", $flavor, property.name),
                        move || run($flavor, property),
                    ));
                }
            )*
            trials
        }
    };
}

contract![
    "pipe",
    "fifo",
    "shm",
    "mq",
    "msg",
    "tcp",
    "unix",
    "udp",
    "unixgram",
    "unixpacket"
];
