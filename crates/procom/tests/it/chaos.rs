//! Chaos: for every channel flavor, a peer SIGKILLed at random moments over many rounds.
//!
//! Two trials per flavor. In `sender_killed` this process receives while a child (this binary
//! re-executed as `chaos::send`) sends numbered, checksummed messages (traffic.rs) as fast as
//! it can, large ones included, and is killed after a random number of them: the byte streams
//! and the ring are killed in the middle of messages. In `receiver_killed` this process sends
//! while a child (`chaos::recv`) receives, checks every message and is killed after a random
//! number of sends. In both the survivor must:
//!
//! - never deliver a torn, altered, duplicated or reordered message (and, but for UDP, none
//!   may be missing among those that reach a receiver: a receiver that joins late checks the
//!   order from its first message on);
//! - report `PeerGone` once the peer is dead, where the mechanism can know (the table below);
//!   the time from the kill to it is measured and printed, never asserted (the watchdog bounds
//!   the wait);
//! - let a fresh peer take over the same name: the next round's peer uses the endpoint the
//!   killed one used (the same path, port, queue or segment name), and after the last kill a
//!   last receiver takes over and exits cleanly;
//! - leave nothing behind: the scratch directory empty, no /dev/shm entry, no queue.
//!
//! | flavor | sender killed: the receiver | receiver killed: the sender | the name after a kill |
//! |---|---|---|---|
//! | `-` (a pipe) | `PeerGone` (end of file) | `PeerGone` (`EPIPE`) | none: each round has a new pipe |
//! | `fifo:` | `PeerGone` | `PeerGone` (`EPIPE`) | a killed receiver's FIFO stays (no process is left to remove it, and no lock says it is abandoned): it is removed as `procom rm` would, and the next receiver creates it again at the same path |
//! | `unix:`, typed over `unix:` | `PeerGone` | `PeerGone` | a stale socket file is removed by the next receiver's bind |
//! | `tcp:` | `PeerGone` | `PeerGone` (`ECONNRESET`/`EPIPE`) | the port is bound again (one outside the ephemeral range, so nobody is handed it in between) |
//! | `udp:` | nothing: a datagram receiver has no peer to lose | `PeerGone` (the port's refusal comes back on a connected socket) | the port is bound again (as for `tcp:`) |
//! | `unixgram:` | nothing: no peer | `PeerGone` (`ECONNREFUSED` on a connected socket) | the stale socket file is removed by the next bind |
//! | `mq:`, `msg:` | nothing: a kernel queue has no peer; what was sent is all there, then silence | nothing: the queue fills (`Full`) | the queue outlives every process: the next receiver opens it, the test removes it |
//! | `shm:` (blocking and `?spin=`) | `PeerGone` (the sender's pidfd) | `PeerGone` (the receiver's pidfd) | a dead sender's slot is taken over; the dead receiver's segment is reclaimed by the next receiver (its owner lock is free) |
//!
//! A FIFO is not opened again after its reader was killed: if any other process still has it
//! open (another writer, or a child being spawned that has not yet closed its inherited
//! descriptors), the pipe outlives the reader with the head of the message its writer was cut
//! off in, and a new reader would take that for the start of its stream and misframe what
//! follows. A byte stream cannot be resynchronised; this is a known limit of FIFOs shared over
//! time by several readers.
//!
//! A byte-stream receiver whose sender died in the middle of a message first reports that
//! message as `Malformed` ("the stream ended N bytes into a M-byte message; the partial
//! message was discarded"), then `PeerGone`: both are accepted here, nothing else is, and the
//! kills that landed mid-message are counted. In `sender_killed` the ring, the queues and the
//! datagram sockets keep one receiver, which the next sender joins; the stream sockets keep one
//! `socket::Listener`, and each round's receiver is the connection of that round's sender
//! (a `Receiver::bind` serves one connection; it is what the children of `receiver_killed`
//! use); a FIFO's receiver, which latches the end of its stream, is bound again at the same
//! path. (Closing a listening port and binding it again from this multi-threaded process is
//! not reliable: a child another test is spawning may hold a copy of the socket until it
//! executes its program.)
//!
//! Rounds: `PROCOM_CHAOS_ROUNDS` per trial (default 10); a run prints its random start, and
//! `PROCOM_CHAOS_START` replays one.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role};

use crate::traffic::{self, Order, Rng};

pub const ROLES: &[Role] = &[
    Role {
        name: "chaos::send",
        run: send_role,
    },
    Role {
        name: "chaos::recv",
        run: recv_role,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mech {
    Pipe,
    Fifo,
    Unix,
    Typed,
    Tcp,
    Udp,
    UnixGram,
    Mq,
    Msg,
    Shm,
    ShmSpin,
}

/// One flavor: what it carries, and what each side can know of the other's death.
pub(crate) struct Flavor {
    pub(crate) name: &'static str,
    pub(crate) mech: Mech,
    /// The largest message of its traffic.
    pub(crate) max: usize,
    /// Whether a receiver learns that its sender died (`PeerGone`).
    receiver_learns: bool,
    /// Whether a sender learns that its receiver died (`PeerGone`).
    sender_learns: bool,
}

pub(crate) const FLAVORS: &[Flavor] = &[
    flavor("pipe", Mech::Pipe, 256 << 10, true, true),
    flavor("fifo", Mech::Fifo, 256 << 10, true, true),
    flavor("unix", Mech::Unix, 256 << 10, true, true),
    flavor("typed_unix", Mech::Typed, 64 << 10, true, true),
    flavor("tcp", Mech::Tcp, 256 << 10, true, true),
    flavor("udp", Mech::Udp, 16 << 10, false, true),
    flavor("unixgram", Mech::UnixGram, 16 << 10, false, true),
    flavor("mq", Mech::Mq, 8192, false, false),
    flavor("msg", Mech::Msg, 8192, false, false),
    flavor("shm", Mech::Shm, 256 << 10, true, true),
    flavor("shm_spin", Mech::ShmSpin, 256 << 10, true, true),
];

const fn flavor(
    name: &'static str,
    mech: Mech,
    max: usize,
    receiver_learns: bool,
    sender_learns: bool,
) -> Flavor {
    Flavor {
        name,
        mech,
        max,
        receiver_learns,
        sender_learns,
    }
}

impl Flavor {
    /// A byte stream: a kill can cut a message in two.
    fn is_stream(&self) -> bool {
        matches!(
            self.mech,
            Mech::Pipe | Mech::Fifo | Mech::Unix | Mech::Typed | Mech::Tcp
        )
    }

    /// Whether a receiver keeps hearing new senders after one died (otherwise it is bound
    /// again on the same name each round).
    fn receiver_outlives_senders(&self) -> bool {
        matches!(
            self.mech,
            Mech::Udp | Mech::UnixGram | Mech::Mq | Mech::Msg | Mech::Shm | Mech::ShmSpin
        )
    }

    /// A stream socket: the receiving side accepts each sender's connection.
    fn accepts(&self) -> bool {
        matches!(self.mech, Mech::Unix | Mech::Typed | Mech::Tcp)
    }

    /// Whether a killed receiver's object stays at its name, for the next one to open.
    fn leaves_object(&self) -> bool {
        matches!(self.mech, Mech::Mq | Mech::Msg)
    }
}

pub fn trials() -> Vec<Trial> {
    let mut trials = vec![procom_testkit::test(
        "chaos::the_checks_catch_torn_duplicated_and_lost_messages",
        the_checks_catch_torn_duplicated_and_lost_messages,
    )];
    for f in FLAVORS {
        trials.push(procom_testkit::test(
            format!("chaos::{}::sender_killed", f.name),
            move || sender_killed(f),
        ));
        trials.push(procom_testkit::test(
            format!("chaos::{}::receiver_killed", f.name),
            move || receiver_killed(f),
        ));
    }
    trials
}

pub(crate) fn find(name: &str) -> Result<&'static Flavor, String> {
    FLAVORS
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("no flavor {name}"))
}

fn rounds() -> u32 {
    std::env::var("PROCOM_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn rng() -> (Rng, u64) {
    match std::env::var("PROCOM_CHAOS_START")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
    {
        Some(start) => (Rng::new(start), start),
        None => Rng::fresh(),
    }
}

// --- the messages' two forms: bytes, or a typed value carrying them ---------------------------

/// The typed flavor's message: the same checked bytes inside a serde value.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub(crate) struct Wire {
    bytes: Vec<u8>,
}

pub(crate) enum Tx {
    Bytes(Sender),
    Typed(procom::typed::Sender<Wire>),
}

impl Tx {
    pub(crate) fn connect(f: &Flavor, ep: &str) -> Result<Tx, procom::Error> {
        Ok(match f.mech {
            Mech::Typed => Tx::Typed(procom::typed::Sender::connect(ep)?),
            _ => Tx::Bytes(Sender::connect(ep)?),
        })
    }

    /// Sends, waiting at most `wait` (`None`: only if there is room now).
    pub(crate) fn send(&mut self, m: Vec<u8>, wait: Option<Duration>) -> Result<(), procom::Error> {
        match (self, wait) {
            (Tx::Bytes(s), Some(w)) => s.send_timeout(m, w).map_err(|e| e.into_error()),
            (Tx::Bytes(s), None) => s.try_send(m).map_err(|e| e.into_error()),
            (Tx::Typed(s), Some(w)) => s
                .send_timeout(Wire { bytes: m }, w)
                .map_err(|e| e.into_error()),
            (Tx::Typed(s), None) => s.try_send(Wire { bytes: m }).map_err(|e| e.into_error()),
        }
    }
}

pub(crate) enum Rx {
    Bytes(Receiver),
    Typed(procom::typed::Receiver<Wire>),
}

impl Rx {
    pub(crate) fn new(f: &Flavor, rx: Receiver) -> Rx {
        match f.mech {
            Mech::Typed => Rx::Typed(procom::typed::Receiver::from_untyped(rx)),
            _ => Rx::Bytes(rx),
        }
    }

    fn open(f: &Flavor, ep: &str, bind: bool) -> Result<Rx, procom::Error> {
        let rx = if bind {
            Receiver::bind(ep)?
        } else {
            Receiver::connect(ep)?
        };
        Ok(Rx::new(f, rx))
    }

    /// Receives, waiting at most `wait` (`None`: only what is there now).
    pub(crate) fn recv(&mut self, wait: Option<Duration>) -> Result<Vec<u8>, procom::Error> {
        match (self, wait) {
            (Rx::Bytes(r), Some(w)) => r.recv_timeout(w),
            (Rx::Bytes(r), None) => r.try_recv(),
            (Rx::Typed(r), Some(w)) => r.recv_timeout(w).map(|m| m.bytes),
            (Rx::Typed(r), None) => r.try_recv().map(|m| m.bytes),
        }
    }
}

// --- where a flavor's channel lives, and the leak check ---------------------------------------

pub(crate) struct Place {
    /// The endpoint.
    pub(crate) ep: String,
    scratch: Option<Scratch>,
    shm: Option<std::path::PathBuf>,
    mq: Option<String>,
    msg: Option<u32>,
}

pub(crate) fn place(f: &Flavor, rng: &mut Rng) -> Result<Place, String> {
    let mut p = Place {
        ep: String::new(),
        scratch: None,
        shm: None,
        mq: None,
        msg: None,
    };
    let unique = || procom_testkit::unique_name("procom-chaos");
    p.ep = match f.mech {
        Mech::Pipe => "-".into(),
        Mech::Fifo | Mech::Unix | Mech::Typed | Mech::UnixGram => {
            let s = Scratch::new("procom-chaos")?;
            let scheme = match f.mech {
                Mech::Fifo => "fifo",
                Mech::UnixGram => "unixgram",
                _ => "unix",
            };
            let ep = format!("{scheme}:{}", s.join("ch").display());
            p.scratch = Some(s);
            ep
        }
        Mech::Tcp | Mech::Udp => port_endpoint(f, rng),
        Mech::Mq => {
            let name = format!("/{}", unique());
            p.mq = Some(name.clone());
            format!("mq:{name}?capacity=10&msgsize=8192")
        }
        Mech::Msg => {
            let key = unique_key();
            p.msg = Some(key);
            format!("msg:{key:#x}")
        }
        Mech::Shm | Mech::ShmSpin => {
            let name = format!("/{}", unique());
            p.shm = Some(format!("/dev/shm{name}").into());
            let spin = if f.mech == Mech::ShmSpin {
                "&spin=200us"
            } else {
                ""
            };
            format!("shm:{name}?capacity=1MiB{spin}")
        }
    };
    Ok(p)
}

/// A `tcp:` or `udp:` endpoint on a port outside the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): the port is bound again after each kill, and in between
/// no process that binds port 0 or connects anywhere can be handed it. (Someone may have bound
/// it on purpose: then the first round picks another, see [`taken`].)
fn port_endpoint(f: &Flavor, rng: &mut Rng) -> String {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768)
        .clamp(2050, 65535);
    let port = rng.between(low / 2, low - 1);
    let scheme = if f.mech == Mech::Tcp { "tcp" } else { "udp" };
    format!("{scheme}:127.0.0.1:{port}")
}

/// Whether an error says the first round's port was already taken by someone else.
fn taken(round: u32, e: &str) -> bool {
    round == 0 && e.contains("already in use")
}

/// A System V key no other test or run uses.
fn unique_key() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    0x4700_0000
        | ((std::process::id() & 0xfff) << 12)
        | (N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xfff)
}

impl Place {
    fn remove_fifo(&self) -> Outcome {
        if let Some(s) = &self.scratch {
            check!(procom::fifo::remove(s.join("ch")));
        }
        Ok(())
    }

    /// Removes what a killed receiver left at the name when nobody can (a FIFO, a queue),
    /// then checks that nothing is left.
    pub(crate) fn finish(self, left_behind: bool) -> Outcome {
        if left_behind {
            if let Some(name) = &self.mq {
                check!(procom::mq::remove(name));
            }
            if let Some(key) = self.msg {
                check!(procom::msg::remove(&procom::endpoint::SysvKey::Key(
                    key as i32
                )));
            }
        }
        if let Some(path) = &self.shm {
            ensure!(!path.exists(), "leaked {}", path.display());
        }
        if let Some(name) = &self.mq {
            let e = procom::mq::Queue::open(name).err().map(|e| e.kind());
            ensure!(e == Some(ErrorKind::NotFound), "queue {name} leaked: {e:?}");
        }
        if let Some(key) = self.msg {
            let k = procom::endpoint::SysvKey::Key(key as i32);
            let e = procom::msg::MsgQueue::open(&k).err().map(|e| e.kind());
            ensure!(
                e == Some(ErrorKind::NotFound),
                "System V queue {key:#x} leaked: {e:?}"
            );
        }
        match self.scratch {
            Some(s) => s.finish(),
            None => Ok(()),
        }
    }
}

/// The figures of one trial, printed at its end.
#[derive(Default)]
struct Figures {
    rounds: u32,
    checked: u64,
    lost: u64,
    mid_message: u32,
    to_gone: Vec<Duration>,
}

impl Figures {
    fn print(&self, trial: &str, start: u64, learns: bool) {
        let gone = if learns {
            format!("kill to PeerGone {}", traffic::spread(&self.to_gone))
        } else {
            "no PeerGone (no peer to lose)".into()
        };
        let lost = if self.lost > 0 {
            format!(", {} lost (UDP)", self.lost)
        } else {
            String::new()
        };
        let mid = if self.mid_message > 0 {
            format!(", {} killed mid-message", self.mid_message)
        } else {
            String::new()
        };
        println!(
            "{trial}: {} rounds survived, {} messages checked{lost}{mid}; {gone} (random start {start:#x})",
            self.rounds, self.checked
        );
    }
}

/// Checks a child the test killed was ended by the kill, not by a failure of its own.
fn killed_by_us(what: &str, fin: &procom_testkit::Finished) -> Outcome {
    ensure!(
        fin.status.signal() == Some(9),
        "the {what} ended before the kill: {}; stderr: {}",
        fin.status,
        fin.stderr.trim()
    );
    Ok(())
}

// --- sender killed: this process receives ------------------------------------------------------

fn sender_killed(f: &'static Flavor) -> Outcome {
    let (mut rng, start) = rng();
    let mut place = place(f, &mut rng)?;
    let mut fig = Figures::default();
    let mut kept: Option<Rx> = None;
    let listener = if f.accepts() {
        Some(loop {
            let ep = check!(procom::endpoint::Endpoint::parse(&place.ep));
            match procom::socket::Listener::bind(&ep, &Options::default()) {
                Ok(l) => break l,
                Err(e) if taken(0, &e.to_string()) => place.ep = port_endpoint(f, &mut rng),
                Err(e) => return Err(format!("{}: {e}", place.ep)),
            }
        })
    } else {
        None
    };
    for round in 0..rounds() {
        // The survivor: a receiver kept across rounds where it hears new senders; for stream
        // sockets a listener kept across rounds, whose next connection is the next sender's;
        // otherwise bound again on the same name (a FIFO's stream is over for good).
        let mut send_cmd = role("chaos::send", &[f.name, &place.ep, &round.to_string()]);
        let kept_rx = kept.is_some();
        let mut rx = match kept.take() {
            Some(rx) => Some(rx),
            None if f.mech == Mech::Pipe => {
                let (r, w) = check!(procom::pipe::pipe());
                send_cmd.stdout(w);
                Some(Rx::new(f, Receiver::from_fd(r, "-", &Options::default())))
            }
            None if listener.is_some() => None,
            None => Some(check!(Rx::open(f, &place.ep, true))),
        };
        send_cmd.stdin(Stdio::null());
        let mut tx = if f.mech == Mech::Pipe {
            Proc::spawn_keep_stdout("sender", &mut send_cmd)?
        } else {
            Proc::spawn("sender", &mut send_cmd)?
        };
        drop(send_cmd); // our copy of the pipe's write end
        if kept_rx {
            // A kept ring still names the killed sender until the new one attaches, and says
            // PeerGone until then: receive once the new one says it is there.
            tx.expect_line("connected")?;
        }
        let mut rx = match (rx.take(), &listener) {
            (Some(rx), _) => rx,
            (None, Some(l)) => Rx::new(f, check!(l.accept_timeout(STEP)).receiver),
            (None, None) => return Err("no receiver".into()),
        };
        let kill_after = rng.between(1, 40);
        let mut order = Order::default();
        let mut killed: Option<Instant> = None;
        let mut cut = false;
        let what = |e: &dyn std::fmt::Display| format!("{} round {round}: {e}", f.name);
        loop {
            match rx.recv(Some(STEP)) {
                Ok(m) => {
                    let seen = traffic::check(&m).map_err(|e| what(&e))?;
                    ensure!(
                        seen.stream == round,
                        "{}",
                        what(&format!("a message of sender {} arrived", seen.stream))
                    );
                    if f.mech == Mech::Udp {
                        order.lossy(seen.seq)
                    } else {
                        order.reliable(seen.seq)
                    }
                    .map_err(|e| what(&e))?;
                    if order.count == kill_after {
                        killed = Some(Instant::now());
                        check!(tx.child().kill());
                        if !f.receiver_learns {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::PeerGone && f.receiver_learns => {
                    let Some(at) = killed else {
                        let fin = tx.finish(STEP)?;
                        return Err(what(&format!(
                            "PeerGone before the kill; sender: {}, {}",
                            fin.status,
                            fin.stderr.trim()
                        )));
                    };
                    fig.to_gone.push(at.elapsed());
                    break;
                }
                // A stream cut in the middle of a message: that message is refused whole,
                // once ("the stream ended N bytes into ..."), and then the end is PeerGone.
                Err(e)
                    if e.kind() == ErrorKind::Malformed
                        && f.is_stream()
                        && killed.is_some()
                        && !cut
                        && e.to_string().contains("the stream ended") =>
                {
                    cut = true;
                }
                Err(e) => return Err(what(&e)),
            }
        }
        let fin = tx.finish(STEP)?;
        killed_by_us("sender", &fin)?;
        if !f.receiver_learns {
            // No peer to lose: once the sender is reaped, all it sent is there; it must be
            // whole and in order, and then nothing more comes.
            loop {
                match rx.recv(None) {
                    Ok(m) => {
                        let seen = traffic::check(&m).map_err(|e| what(&e))?;
                        ensure!(seen.stream == round, "{}", what(&"a stranger's message"));
                        if f.mech == Mech::Udp {
                            order.lossy(seen.seq)
                        } else {
                            order.reliable(seen.seq)
                        }
                        .map_err(|e| what(&e))?;
                    }
                    Err(e) if e.kind() == ErrorKind::Empty => break,
                    Err(e) => return Err(what(&e)),
                }
            }
        }
        fig.rounds += 1;
        fig.checked += order.count;
        fig.lost += order.lost;
        fig.mid_message += u32::from(cut);
        if f.receiver_outlives_senders() {
            kept = Some(rx);
        }
    }
    drop(kept);
    drop(listener);
    fig.print(
        &format!("chaos::{}::sender_killed", f.name),
        start,
        f.receiver_learns,
    );
    place.finish(false)
}

/// Sends the flavor's traffic to the endpoint as fast as it can until killed.
fn send_role(args: &[String]) -> Outcome {
    let [name, ep, stream] = args else {
        return Err(format!("bad arguments {args:?}"));
    };
    let f = find(name)?;
    let stream: u32 = check!(stream.parse());
    let mut tx = check!(Tx::connect(f, ep));
    if ep != "-" {
        println!("connected"); // (on a pipe, standard output is the channel)
    }
    for seq in 0u64.. {
        let m = traffic::message(stream, seq, traffic::size_of(seq, f.max));
        check!(tx.send(m, Some(STEP)));
    }
    Ok(())
}

// --- receiver killed: this process sends -------------------------------------------------------

/// Messages the last receiver, the one that takes over after the last kill, checks.
const LAST: u64 = 20;

fn receiver_killed(f: &'static Flavor) -> Outcome {
    let (mut rng, start) = rng();
    let mut place = place(f, &mut rng)?;
    let mut fig = Figures::default();
    let mut left_behind = false;
    let mut seq = 0u64;
    let rounds = rounds();
    for round in 0..=rounds {
        let last = round == rounds;
        let what = |e: &dyn std::fmt::Display| format!("{} round {round}: {e}", f.name);
        let until = if last {
            (seq + LAST - 1).to_string()
        } else {
            "-".into()
        };
        let (mut child, pipe_tx) = loop {
            match spawn_receiver(f, &place.ep, left_behind, &until) {
                Err(e) if taken(round, &e) => place.ep = port_endpoint(f, &mut rng),
                r => break r.map_err(|e| what(&e))?,
            }
        };
        let mut tx = match pipe_tx {
            Some(w) => Tx::Bytes(Sender::from_fd(w, "-", &Options::default())),
            None => check!(Tx::connect(f, &place.ep)),
        };
        if last {
            finish_last(f, &mut tx, &mut seq, child, &mut fig).map_err(|e| what(&e))?;
            break;
        }
        let kill_after = rng.between(1, 40);
        let mut sent = 0u64;
        let mut killed: Option<Instant> = None;
        loop {
            let m = traffic::message(u32::MAX, seq, traffic::size_of(seq, f.max));
            // Once a queue's receiver is dead, fill the queue and stop: nothing else happens.
            let wait = if killed.is_some() && !f.sender_learns {
                None
            } else {
                Some(STEP)
            };
            match tx.send(m, wait) {
                Ok(()) => {
                    seq += 1;
                    sent += 1;
                    if sent == kill_after {
                        killed = Some(Instant::now());
                        check!(child.child().kill());
                    }
                }
                Err(e) if e.kind() == ErrorKind::PeerGone && f.sender_learns => {
                    let Some(at) = killed else {
                        let fin = child.finish(STEP)?;
                        return Err(what(&format!(
                            "PeerGone before the kill; receiver: {}, {}",
                            fin.status,
                            fin.stderr.trim()
                        )));
                    };
                    fig.to_gone.push(at.elapsed());
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Full && killed.is_some() && !f.sender_learns => {
                    break;
                }
                Err(e) => return Err(what(&e)),
            }
        }
        drop(tx);
        let fin = child.finish(STEP)?;
        killed_by_us("receiver", &fin)?;
        fig.checked += receiver_report(&fin.stdout).map_err(|e| what(&e))?;
        fig.rounds += 1;
        left_behind |= f.leaves_object();
        if f.mech == Mech::Fifo {
            // What a killed reader leaves: its FIFO, which may hold the head of a message its
            // writer was cut off in (see the module docs). Removed as `procom rm` would; the
            // next receiver creates it again at the same path.
            place.remove_fifo()?;
        }
    }
    fig.print(
        &format!("chaos::{}::receiver_killed", f.name),
        start,
        f.sender_learns,
    );
    place.finish(left_behind)
}

/// Starts a receiver child on `ep` (opening the object a killed one left there, or binding)
/// and waits until it is ready. On a pipe, the write end comes back with it.
fn spawn_receiver(
    f: &Flavor,
    ep: &str,
    left_behind: bool,
    until: &str,
) -> Result<(Proc, Option<procom::pipe::PipeWriter>), String> {
    let mode = if left_behind { "connect" } else { "bind" };
    let mut cmd = role("chaos::recv", &[f.name, ep, mode, until]);
    let mut pipe_tx = None;
    if f.mech == Mech::Pipe {
        let (r, w) = check!(procom::pipe::pipe());
        cmd.stdin(r);
        pipe_tx = Some(w);
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = Proc::spawn("receiver", &mut cmd)?;
    drop(cmd); // our copy of the pipe's read end
    if child.expect_line("ready").is_err() {
        let fin = child.finish(STEP)?;
        return Err(format!(
            "the receiver did not start: {}; {}",
            fin.status,
            fin.stderr.trim()
        ));
    }
    Ok((child, pipe_tx))
}

/// The last round: the receiver that took over the name checks [`LAST`] messages and exits
/// cleanly, removing what it created.
fn finish_last(
    f: &Flavor,
    tx: &mut Tx,
    seq: &mut u64,
    mut child: Proc,
    fig: &mut Figures,
) -> Outcome {
    for _ in 0..LAST {
        let m = traffic::message(u32::MAX, *seq, traffic::size_of(*seq, f.max));
        check!(tx.send(m, Some(STEP)));
        *seq += 1;
    }
    if f.mech == Mech::Udp {
        // Datagrams may be lost: more follow until the receiver has seen its last number.
        while child.exits_within(Duration::from_millis(5))?.is_none() {
            let m = traffic::message(u32::MAX, *seq, traffic::size_of(*seq, f.max));
            match tx.send(m, Some(STEP)) {
                Ok(()) => *seq += 1,
                Err(e) if e.kind() == ErrorKind::PeerGone => break, // it just left
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let fin = child.success(STEP)?;
    let n = receiver_report(&fin.stdout)?;
    ensure!(
        fin.stdout.iter().any(|l| l.starts_with("checked ")),
        "the last receiver did not finish: {:?}",
        fin.stdout
    );
    fig.checked += n;
    Ok(())
}

/// How many messages a receiver child checked (its last `ok N` or `checked N` line); fails on a
/// `bad` line.
fn receiver_report(lines: &[String]) -> Result<u64, String> {
    let mut n = 0;
    for l in lines {
        if let Some(bad) = l.strip_prefix("bad ") {
            return Err(format!("the receiver found {bad}"));
        }
        if let Some(k) = l.strip_prefix("ok ").or(l.strip_prefix("checked ")) {
            n = k.parse().map_err(|_| format!("the receiver said {l:?}"))?;
        }
    }
    Ok(n)
}

/// Receives and checks the flavor's traffic until killed, or, given a last sequence number,
/// until it has seen it; says `ok N` every 16 messages and `bad WHY` at the first fault.
fn recv_role(args: &[String]) -> Outcome {
    use std::io::Write;
    let [name, ep, mode, until] = args else {
        return Err(format!("bad arguments {args:?}"));
    };
    let f = find(name)?;
    let until: Option<u64> = until.parse().ok();
    let mut rx = if ep == "-" {
        Rx::new(f, check!(Receiver::connect("-")))
    } else {
        check!(Rx::open(f, ep, mode == "bind"))
    };
    println!("ready");
    let mut order = Order::default();
    let mut out = std::io::stdout();
    loop {
        let m = check!(rx.recv(Some(STEP)));
        let seen = traffic::check(&m).and_then(|s| {
            if f.mech == Mech::Udp {
                order.lossy(s.seq)
            } else {
                order.reliable(s.seq)
            }
            .map(|()| s)
        });
        let seen = match seen {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(out, "bad {e}");
                return Err(e);
            }
        };
        if until.is_some_and(|u| seen.seq >= u) {
            let _ = writeln!(out, "checked {}", order.count);
            return Ok(());
        }
        if order.count % 16 == 0 {
            let _ = writeln!(out, "ok {}", order.count);
        }
    }
}

// --- the checks themselves can fail ----------------------------------------------------------

/// The checks this file relies on catch what they must: a message cut short, one with a
/// changed byte, two glued together, one repeated, one missing, one out of order.
fn the_checks_catch_torn_duplicated_and_lost_messages() -> Outcome {
    let a = traffic::message(3, 7, 1000);
    let b = traffic::message(3, 8, 40);
    ensure!(
        traffic::check(&a) == Ok(traffic::Seen { stream: 3, seq: 7 }),
        "a good message was refused"
    );
    ensure!(traffic::check(&a[..999]).is_err(), "a cut message passed");
    let mut changed = a.clone();
    changed[500] ^= 1;
    ensure!(traffic::check(&changed).is_err(), "a changed byte passed");
    let glued = [&a[..], &b[..]].concat();
    ensure!(traffic::check(&glued).is_err(), "two glued messages passed");
    let mut spliced = a.clone();
    spliced[HEADER_END..].copy_from_slice(&traffic::message(3, 9, 1000)[HEADER_END..]);
    ensure!(
        traffic::check(&spliced).is_err(),
        "a spliced message passed"
    );
    let mut o = Order::default();
    check!(o.reliable(7));
    ensure!(o.reliable(7).is_err(), "a duplicate passed");
    ensure!(o.reliable(9).is_err(), "a gap passed");
    ensure!(o.reliable(6).is_err(), "a reordered message passed");
    let mut l = Order::default();
    check!(l.lossy(1));
    check!(l.lossy(4));
    ensure!(l.lost == 2, "two lost datagrams counted as {}", l.lost);
    ensure!(l.lossy(4).is_err(), "a duplicate datagram passed");
    Ok(())
}

const HEADER_END: usize = traffic::HEADER;
