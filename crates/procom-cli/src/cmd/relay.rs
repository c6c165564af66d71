//! `procom relay A B [--listen] [--framed] [--max-size SIZE] [--idle SECS]`: moves messages
//! between two endpoints, both ways where both sides can carry both directions.
//!
//! The directions are decided from the endpoints alone, before anything is opened:
//! - Two connected sockets (`unix:`, `unixpacket:`, `tcp:`) carry both: A → B and B → A, one thread
//!   each. When one direction reaches its end of stream, the other side's write half is
//!   shut down (its peer sees end of file) and the other direction goes on to its own end.
//! - Anything else carries one direction: A → B, or B → A when A can only be written or B
//!   only read (a `tcp:`/`udp:` port 0 can only be bound, never reached; `mq:…?priority=` is
//!   what a sender gives). When neither way can work, or A and B are one object, it is a
//!   usage error.
//! - `--listen` listens on B (`tcp:`, `unix:`, `unixpacket:`) and serves many clients: a connected A is
//!   connected once per client and relayed both ways on that client's two threads; any other
//!   A is opened once, and every client's messages go into it, whole.
//!
//! Each side is opened as `procom recv` (the side read) and `procom send` (the side written)
//! open it: a shared-memory or datagram receiver creates or binds its object, queues and
//! FIFOs must exist. Boundaries are kept where both sides have them; a byte-stream side is
//! framed as everywhere in the CLI (lines, or length prefixes with `--framed`), except that
//! two byte streams without `--framed` are copied as they are, like socat.
//!
//! Every wait lasts at most [`SLICE`], so a thread notices within that time that the relay,
//! or its connection, is ending. A send blocks (a deadline part-way through a message would
//! cut it); a send stuck on a dead stream peer is woken by shutting the socket down.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError};
use std::time::{Duration, Instant};

use procom::socket::{Connection, Listener, Peer};
use procom::{Endpoint, ErrorKind, ObjectKind, Options, Receiver, Sender};

use crate::cli::RelayArgs;
use crate::interrupt;

/// The longest a receive or accept waits before the thread looks whether it should stop.
const SLICE: Duration = Duration::from_millis(100);
/// Memory for the partly received messages of all clients together, as `procom listen`.
const CLIENT_MEMORY: usize = 256 << 20;
/// How many messages that cannot be relayed are reported one by one, per direction.
const REPORTED: u64 = 10;

pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    let a = Endpoint::parse(&args.a)?;
    let b = Endpoint::parse(&args.b)?;
    let plan = plan(&a, &b, args.listen)?;
    // Two byte streams are copied as they are; many clients going into one A keep their
    // messages whole, so they are framed even then.
    let raw = a.is_byte_stream()
        && b.is_byte_stream()
        && !args.stream.framed
        && !matches!(plan, Plan::ServeInto { .. });
    let opts = super::options(&args.stream, raw)?;
    let idle = args.idle.filter(|d| !d.is_zero());
    match plan {
        Plan::Both => both(&a, &b, &opts, raw, idle),
        Plan::OneWay { src, dst, note } => one_way(&src, &dst, &opts, raw, idle, note),
        Plan::ServeBoth => serve(&a, &b, &opts, raw, idle, None),
        Plan::ServeInto { note } => serve(&a, &b, &opts, raw, idle, Some(note)),
    }
}

/// What a relay between two endpoints does.
#[derive(Debug)]
enum Plan {
    /// Two connected stream sockets: both ways.
    Both,
    /// One way, from `src` into `dst` (A → B, or B → A), and what to say about it.
    OneWay {
        src: Endpoint,
        dst: Endpoint,
        note: Option<String>,
    },
    /// `--listen` with a stream A: each client to its own connection to A, both ways.
    ServeBoth,
    /// `--listen` with a one-way A: every client's messages into A.
    ServeInto { note: String },
}

/// A connected socket: the one kind of side that carries both directions.
fn two_way(ep: &Endpoint) -> bool {
    matches!(
        ep,
        Endpoint::Tcp { .. } | Endpoint::Unix { .. } | Endpoint::UnixPacket { .. }
    )
}

/// Why `ep` can never be read (connected to, or received from), if so.
fn unreadable(ep: &Endpoint) -> Option<String> {
    match ep {
        Endpoint::Tcp { port: 0, .. } => Some(format!(
            "{ep} can only be listened on (the kernel picks port 0 when binding; nothing can connect to it)"
        )),
        Endpoint::Mq {
            priority: Some(_), ..
        } => Some(format!(
            "{ep} can only be sent to (?priority= is what a sender gives its messages)"
        )),
        _ => None,
    }
}

/// Why `ep` can never be written (connected or sent to), if so.
fn unwritable(ep: &Endpoint) -> Option<String> {
    match ep {
        Endpoint::Tcp { port: 0, .. } => unreadable(ep),
        Endpoint::Udp { port: 0, .. } => Some(format!(
            "{ep} can only be received from (the kernel picks port 0 when binding; nothing can send to it)"
        )),
        _ => None,
    }
}

/// Whether `a` and `b` name one object (a relay from it into itself would loop).
fn same_object(a: &Endpoint, b: &Endpoint) -> bool {
    use Endpoint as E;
    match (a, b) {
        (E::Fifo { path: p }, E::Fifo { path: q }) => p == q,
        (E::Mq { name: n, .. }, E::Mq { name: m, .. }) => n == m,
        (E::Shm { name: n, .. }, E::Shm { name: m, .. }) => n == m,
        (E::Msg { key: k, .. }, E::Msg { key: l, .. }) => k == l,
        (E::Unix { addr: x }, E::Unix { addr: y }) => x == y,
        (E::UnixGram { addr: x }, E::UnixGram { addr: y }) => x == y,
        (E::UnixPacket { addr: x }, E::UnixPacket { addr: y }) => x == y,
        (E::Tcp { host: h, port: p }, E::Tcp { host: g, port: q })
        | (E::Udp { host: h, port: p }, E::Udp { host: g, port: q }) => h == g && p == q && *p != 0,
        _ => false,
    }
}

/// Decides the directions (see the module's documentation); a combination that cannot work
/// is a usage error.
fn plan(a: &Endpoint, b: &Endpoint, listen: bool) -> anyhow::Result<Plan> {
    if same_object(a, b) {
        return Err(super::usage!(
            "{a} and {b} are one object: a relay from it into itself would loop"
        ));
    }
    if listen {
        if !two_way(b) {
            return Err(super::usage!(
                "{b} cannot be listened on: --listen serves clients on B, a tcp:, unix: or unixpacket: endpoint"
            ));
        }
        if two_way(a) {
            if let Some(why) = unreadable(a) {
                return Err(super::usage!(
                    "{why}, and with --listen each client is relayed to its own connection to A"
                ));
            }
            return Ok(Plan::ServeBoth);
        }
        if let Some(why) = unwritable(a) {
            return Err(super::usage!(
                "{why}, and with --listen the clients' messages go into A"
            ));
        }
        return Ok(Plan::ServeInto {
            note: format!("the clients' messages go into {a} ({a} carries messages one way)"),
        });
    }
    if two_way(a) && two_way(b) {
        if let Some(why) = unreadable(a).or_else(|| unreadable(b)) {
            return Err(super::usage!(
                "{why}: give it as B with --listen, or give a real port"
            ));
        }
        return Ok(Plan::Both);
    }
    let one_way_side = if two_way(a) { b } else { a };
    match unreadable(a).or_else(|| unwritable(b)) {
        None => Ok(Plan::OneWay {
            src: a.clone(),
            dst: b.clone(),
            note: (two_way(a) || two_way(b)).then(|| {
                format!(
                    "relaying {a} -> {b} only: {one_way_side} carries messages one way, so nothing goes back"
                )
            }),
        }),
        Some(forward) => match unreadable(b).or_else(|| unwritable(a)) {
            None => Ok(Plan::OneWay {
                src: b.clone(),
                dst: a.clone(),
                note: Some(format!("relaying {b} -> {a}: {forward}")),
            }),
            Some(back) => {
                let why = if back == forward {
                    forward
                } else {
                    format!("{forward}; {back}")
                };
                let listen = [a, b]
                    .iter()
                    .any(|e| matches!(e, Endpoint::Tcp { port: 0, .. }));
                Err(super::usage!(
                    "no direction can work between {a} and {b}: {why}{}",
                    if listen {
                        "; to listen on it, give it as B with --listen"
                    } else {
                        ""
                    }
                ))
            }
        },
    }
}

/// One direction's counts, shared by the threads that carry it.
#[derive(Debug)]
struct Flow {
    /// `A -> B`, as the summary names it.
    label: String,
    /// Bytes copied as they are (no messages to count).
    raw: bool,
    /// The destination is a byte stream, whose reader's departure shows as a hang-up.
    watch_dst: bool,
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Messages received that the destination cannot carry (a newline in a line, too large).
    refused: AtomicU64,
    /// Datagrams the source could not deliver (too large, malformed), skipped as recv does.
    skipped: AtomicU64,
}

impl Flow {
    fn new(label: String, raw: bool, dst: &Endpoint) -> Flow {
        Flow {
            label,
            raw,
            watch_dst: dst.is_byte_stream(),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// The summary line: `A -> B: 3 messages, 42 bytes`.
    fn line(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut line = if self.raw {
            format!("{}: {}", self.label, count(n(&self.bytes), "byte"))
        } else {
            format!(
                "{}: {}, {}",
                self.label,
                count(n(&self.messages), "message"),
                count(n(&self.bytes), "byte")
            )
        };
        if n(&self.refused) > 0 {
            line.push_str(&format!(
                ", {} not relayed (the destination cannot carry them)",
                n(&self.refused)
            ));
        }
        if n(&self.skipped) > 0 {
            line.push_str(&format!(
                ", {} refused at the source",
                count(n(&self.skipped), "datagram")
            ));
        }
        line
    }
}

fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What every thread of one relay shares: its directions, whether it is ending, and the
/// gate that lets an interrupt wait for the messages being sent.
#[derive(Debug)]
struct Relay {
    flows: Vec<Flow>,
    /// With --listen: where clients connect, and how many came.
    clients: Option<(Endpoint, AtomicU64)>,
    idle: Option<Duration>,
    /// The whole relay is ending (set with `failure`, or when A went away).
    stop: AtomicBool,
    /// The first reason the relay as a whole failed (exit status 1).
    failure: Mutex<Option<String>>,
    /// Held (shared) while a message is being sent; an interrupt takes it exclusively.
    gate: RwLock<()>,
    /// The program is ending through an interrupt: no new message is started.
    closing: AtomicBool,
    reported: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Relay {
    fn new(flows: Vec<Flow>, clients: Option<Endpoint>, idle: Option<Duration>) -> Arc<Relay> {
        Arc::new(Relay {
            flows,
            clients: clients.map(|ep| (ep, AtomicU64::new(0))),
            idle,
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            gate: RwLock::new(()),
            closing: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        })
    }

    /// An interrupt's exit runs this: it waits (up to a second) for the messages being sent,
    /// so none is cut off, then prints the summary.
    fn on_interrupt(self: &Arc<Relay>) -> interrupt::ExitHook {
        let relay = Arc::clone(self);
        interrupt::on_exit(move || {
            relay.close_gate();
            relay.report();
        })
    }

    /// Lets one message through unless the program is ending; then this thread waits for
    /// the exit (the interrupt's thread ends the process).
    fn enter(&self) -> RwLockReadGuard<'_, ()> {
        let pass = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if self.closing.load(Ordering::SeqCst) {
            drop(pass);
            loop {
                std::thread::park(); // the process is exiting
            }
        }
        pass
    }

    fn close_gate(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(1);
        loop {
            match self.gate.try_write() {
                Ok(_) | Err(TryLockError::Poisoned(_)) => return,
                Err(TryLockError::WouldBlock) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5)); // waiting out a send
                }
                Err(TryLockError::WouldBlock) => {
                    interrupt::warn(format_args!(
                        "a message being relayed was still being sent, and its receiver may see it cut off"
                    ));
                    return;
                }
            }
        }
    }

    /// Ends the whole relay with status 1 for `why` (the first reason given is kept).
    fn fail(&self, why: String) {
        lock(&self.failure).get_or_insert(why);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Says, once, on standard error what went each way. Takes no output lock: an exit hook
    /// runs under the one the interrupt holds.
    fn report(&self) {
        if self.reported.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some((ep, n)) = &self.clients {
            interrupt::warn(format_args!(
                "{} served on {ep}",
                count(n.load(Ordering::Relaxed), "client")
            ));
        }
        for flow in &self.flows {
            interrupt::warn(format_args!("{}", flow.line()));
        }
    }

    /// The summary on a normal end, then the status: 1 if the relay failed or left messages
    /// behind, 0 otherwise.
    fn finish(&self) -> anyhow::Result<()> {
        {
            let _whole = interrupt::output_lock();
            self.report();
        }
        if let Some(why) = lock(&self.failure).take() {
            return Err(anyhow::anyhow!(why));
        }
        let refused: u64 = self
            .flows
            .iter()
            .map(|f| f.refused.load(Ordering::Relaxed))
            .sum();
        if refused > 0 {
            anyhow::bail!(
                "{} could not be relayed (each was reported above)",
                count(refused, "message")
            );
        }
        Ok(())
    }
}

/// One connection's worth of relaying (the whole relay without --listen, one client with
/// it): when it was last busy, whether it is ending, and its sockets (shut down to wake
/// threads blocked on them).
#[derive(Debug)]
struct Link<'r> {
    relay: &'r Relay,
    start: Instant,
    /// Milliseconds from `start` to the last message either way.
    last: AtomicU64,
    done: AtomicBool,
    sockets: Vec<OwnedFd>,
}

impl<'r> Link<'r> {
    fn new(relay: &'r Relay, sockets: Vec<OwnedFd>) -> Link<'r> {
        Link {
            relay,
            start: Instant::now(),
            last: AtomicU64::new(0),
            done: AtomicBool::new(false),
            sockets,
        }
    }

    fn ending(&self) -> bool {
        self.done.load(Ordering::SeqCst) || self.relay.stop.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle, unless a message passes before.
    fn idle_deadline(&self) -> Option<Instant> {
        let idle = self.relay.idle?;
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.checked_add(last)?.checked_add(idle)
    }

    /// Ends both directions: the other thread wakes (its socket reads end, a blocked write
    /// fails) or notices within a slice.
    fn end(&self) {
        self.done.store(true, Ordering::SeqCst);
        for fd in &self.sockets {
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
        }
    }
}

/// Where a direction's messages go: a sender of its own, or one all clients share.
#[derive(Debug)]
enum Dest<'a> {
    Own(&'a mut Sender),
    Shared(&'a Mutex<Sender>),
}

impl Dest<'_> {
    /// Whether the destination's reader has gone (a hang-up or error on its descriptor): a
    /// peer that closed a Unix stream, a FIFO or pipe whose reader left. (A TCP peer that
    /// closed is found at the next message.)
    fn hung_up(&mut self) -> bool {
        match self {
            Dest::Own(tx) => tx.as_fd().is_some_and(hung_up),
            Dest::Shared(m) => match m.try_lock() {
                Ok(tx) => tx.as_fd().is_some_and(hung_up),
                Err(_) => false, // busy sending: the send will say
            },
        }
    }

    fn send(&mut self, msg: &[u8], relay: &Relay) -> Result<(), procom::Error> {
        let mut shared;
        let tx: &mut Sender = match self {
            Dest::Own(tx) => tx,
            Dest::Shared(m) => {
                shared = lock(m);
                &mut shared
            }
        };
        let _pass = relay.enter();
        tx.send(msg).map_err(|e| e.into_error())
    }

    /// Shuts down the destination's write half, if it is a socket: its peer sees end of file
    /// while the other direction goes on.
    fn half_close(&mut self) {
        if let Dest::Own(tx) = self
            && let Some(fd) = tx.as_fd()
        {
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
        }
    }
}

fn hung_up(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok()
        && fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

/// Why a direction stopped.
#[derive(Debug)]
enum End {
    /// The source reached its end of stream.
    Eof,
    /// No message either way for the idle time.
    Idle,
    /// Told to stop: the other direction or the whole relay ended.
    Stopped,
    /// The destination's reader went away, with no message in hand.
    DestGone,
    /// The source failed (a stream cut inside a message, a removed queue, …).
    SourceFailed(String),
    /// The destination failed with a message in hand, which was not delivered.
    DestFailed(String),
}

/// Moves messages from `rx` to `dst` until the source ends, the destination fails, or the
/// link ends.
fn pump(rx: &mut Receiver, dst: &mut Dest<'_>, flow: &Flow, link: &Link<'_>) -> End {
    loop {
        if link.ending() {
            return End::Stopped;
        }
        let now = Instant::now();
        let mut until = now + SLICE;
        if let Some(idle_at) = link.idle_deadline() {
            if idle_at <= now {
                return End::Idle;
            }
            until = until.min(idle_at);
        }
        let msg = match rx.recv_deadline(until) {
            Ok(msg) => msg,
            Err(e) => match e.kind() {
                ErrorKind::Timeout => {
                    if flow.watch_dst && dst.hung_up() {
                        return End::DestGone;
                    }
                    continue;
                }
                // A kernel queue has no writer to close it: it ends only when removed.
                ErrorKind::PeerGone
                    if matches!(
                        e.object_kind(),
                        Some(ObjectKind::PosixQueue | ObjectKind::SysvQueue)
                    ) =>
                {
                    return End::SourceFailed(e.to_string());
                }
                ErrorKind::PeerGone => return End::Eof,
                // One bad datagram concerns only itself (the library counted it): reported,
                // a flood only a few times, and skipped, as recv does.
                ErrorKind::TooLarge | ErrorKind::Malformed if rx.datagram_stats().is_some() => {
                    let n = flow.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n <= REPORTED {
                        interrupt::warn(format_args!("{e}; skipped"));
                    }
                    continue;
                }
                _ => {
                    return End::SourceFailed(match e.fragment() {
                        Some(bytes) => format!(
                            "{e}; its last {} were not relayed",
                            count(bytes.len() as u64, "byte")
                        ),
                        None => e.to_string(),
                    });
                }
            },
        };
        link.touch();
        match dst.send(&msg, link.relay) {
            Ok(()) => {
                flow.messages.fetch_add(1, Ordering::Relaxed);
                flow.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
            }
            // This message cannot be carried there (a newline in a line, over a size limit);
            // the next one may be.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::TooLarge) => {
                let n = flow.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= REPORTED {
                    interrupt::warn(format_args!("{e}; that message was not relayed"));
                }
            }
            // Standard output's reader left: a quiet end, as for recv.
            Err(e)
                if e.kind() == ErrorKind::PeerGone
                    && e.object_kind() == Some(ObjectKind::Stdio) =>
            {
                return End::DestGone;
            }
            Err(e) => return End::DestFailed(e.to_string()),
        }
    }
}

/// After a direction stopped: at its end of stream its destination sees end of file and the
/// other direction goes on; anything else ends the link.
fn after(end: &End, dst: &mut Dest<'_>, link: &Link<'_>) {
    match end {
        End::Eof => dst.half_close(),
        _ => link.end(),
    }
}

/// What ended a direction, for the user: `None` for the ends that need no word.
fn explain(end: &End, flow: &Flow, dst: &Endpoint, idle: Option<Duration>) -> Option<String> {
    match end {
        End::Eof | End::Stopped => None,
        End::Idle => Some(format!(
            "nothing relayed either way for {}",
            secs(idle.unwrap_or_default())
        )),
        End::DestGone => Some(format!("{dst}: its reader went away")),
        End::SourceFailed(why) => Some(why.clone()),
        End::DestFailed(why) => Some(format!(
            "{why}; a message ({}) was not delivered",
            flow.label
        )),
    }
}

/// Whether `end` makes the relay's status 1.
fn failed(end: &End) -> bool {
    matches!(end, End::SourceFailed(_) | End::DestFailed(_))
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Two connected stream sockets, both ways.
fn both(
    a: &Endpoint,
    b: &Endpoint,
    opts: &Options,
    raw: bool,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    interrupt::set_activity(format!("relaying {a} <-> {b}"));
    let relay = Relay::new(
        vec![
            Flow::new(format!("{a} -> {b}"), raw, b),
            Flow::new(format!("{b} -> {a}"), raw, a),
        ],
        None,
        idle,
    );
    let _summary = relay.on_interrupt();
    let (mut a_tx, mut a_rx) = procom::socket::connect(a, opts)?;
    let (mut b_tx, mut b_rx) = procom::socket::connect(b, opts)?;
    let link = Link::new(&relay, sockets(&[&a_tx, &b_tx])?);
    let (fwd, back) = std::thread::scope(|s| {
        let fwd = s.spawn(|| carry(&mut a_rx, &mut b_tx, &relay.flows[0], &link));
        let back = carry(&mut b_rx, &mut a_tx, &relay.flows[1], &link);
        (fwd.join().unwrap_or(End::Stopped), back)
    });
    conclude(
        &relay,
        &[(fwd, &relay.flows[0], b), (back, &relay.flows[1], a)],
    )
}

/// One direction of a two-way link: pumps, then half-closes or ends the link.
fn carry(rx: &mut Receiver, tx: &mut Sender, flow: &Flow, link: &Link<'_>) -> End {
    let mut dst = Dest::Own(tx);
    let end = pump(rx, &mut dst, flow, link);
    after(&end, &mut dst, link);
    end
}

/// Duplicates of the senders' sockets, to shut down when a link ends.
fn sockets(senders: &[&Sender]) -> anyhow::Result<Vec<OwnedFd>> {
    senders
        .iter()
        .filter_map(|s| s.as_fd())
        .map(|fd| {
            fd.try_clone_to_owned()
                .map_err(|e| anyhow::Error::new(e).context("could not duplicate a socket"))
        })
        .collect()
}

/// Says what ended each direction of a single relay and returns its status.
fn conclude(relay: &Relay, ends: &[(End, &Flow, &Endpoint)]) -> anyhow::Result<()> {
    let mut said = Vec::new();
    for (end, flow, dst) in ends {
        if let Some(why) = explain(end, flow, dst, relay.idle) {
            if failed(end) {
                relay.fail(why);
            } else if !said.contains(&why) {
                interrupt::warn(format_args!("{why}; relay ended"));
                said.push(why);
            }
        }
    }
    relay.finish()
}

/// One direction: `src` read, `dst` written.
fn one_way(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &Options,
    raw: bool,
    idle: Option<Duration>,
    note: Option<String>,
) -> anyhow::Result<()> {
    interrupt::set_activity(format!("relaying {src} -> {dst}"));
    if let Some(note) = note {
        interrupt::warn(format_args!("{note}"));
    }
    let relay = Relay::new(
        vec![Flow::new(format!("{src} -> {dst}"), raw, dst)],
        None,
        idle,
    );
    let _summary = relay.on_interrupt();
    // Declared before the owner, so dropped after it: the owner removes what it created
    // while the hook still covers an early end.
    let _remove_on_exit;
    let creating = interrupt::creating();
    let mut rx = Receiver::connect_with(src, opts)?;
    _remove_on_exit = rx.cleanup().map(|c| {
        interrupt::on_exit(move || {
            c.remove();
        })
    });
    drop(creating);
    let mut tx = Sender::connect_with(dst, opts)?;
    let link = Link::new(&relay, Vec::new());
    let end = pump(&mut rx, &mut Dest::Own(&mut tx), &relay.flows[0], &link);
    conclude(&relay, &[(end, &relay.flows[0], dst)])
}

/// `--listen`: clients on B, each relayed to its own connection to A (`into` is `None`), or
/// all into A (`into` says so).
fn serve(
    a: &Endpoint,
    b: &Endpoint,
    opts: &Options,
    raw: bool,
    idle: Option<Duration>,
    into: Option<String>,
) -> anyhow::Result<()> {
    // A one-way A is opened first: clients are not accepted by a relay that cannot deliver.
    let sink = match &into {
        Some(_) => {
            interrupt::set_activity(format!("opening {a}"));
            Some(Mutex::new(Sender::connect_with(a, opts)?))
        }
        None => None,
    };
    let client_opts = opts.clone().budget(procom::Budget::new(CLIENT_MEMORY));
    // Declared before the owner, so dropped after it (as in `procom listen`).
    let _remove_on_exit;
    let creating = interrupt::creating();
    let listener = Listener::bind(b, &client_opts)?;
    _remove_on_exit = listener.cleanup().map(|c| {
        interrupt::on_exit(move || {
            c.remove();
        })
    });
    drop(creating);
    let bound = listener.local_endpoint();
    let clients = format!("clients of {bound}");
    let mut flows = Vec::new();
    if into.is_none() {
        flows.push(Flow::new(format!("{a} -> {clients}"), raw, b));
    }
    flows.push(Flow::new(format!("{clients} -> {a}"), raw, a));
    let relay = Relay::new(flows, Some(bound.clone()), idle);
    let _summary = relay.on_interrupt();
    interrupt::set_activity(format!("relaying {a} and the {clients}"));
    interrupt::warn(format_args!(
        "listening on {bound}; {}",
        into.unwrap_or_else(|| format!("each client is relayed to its own connection to {a}"))
    ));
    let served = relay.clients.as_ref().map(|(_, n)| n);
    let accepted = std::thread::scope(|s| -> anyhow::Result<()> {
        while !relay.stop.load(Ordering::SeqCst) {
            let conn = match listener.accept_timeout(SLICE) {
                Ok(conn) => conn,
                Err(e) if e.kind() == ErrorKind::Timeout => continue,
                // Out of descriptors or memory for now: the clients being served go on, and
                // the next connection is tried again shortly (as `procom listen` does).
                Err(e) if super::out_of_resources(&e) => {
                    interrupt::warn(format_args!("{e}; still listening"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) => {
                    relay.stop.store(true, Ordering::SeqCst);
                    return Err(e.into());
                }
            };
            if let Some(n) = served {
                n.fetch_add(1, Ordering::Relaxed);
            }
            let (relay, sink) = (&*relay, sink.as_ref());
            let who = client_name(&conn.peer);
            // No thread to be had: this client is turned away (its connection closes with
            // the dropped closure), the others go on.
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || match sink {
                Some(sink) => client_into(conn, sink, a, relay),
                None => client_both(conn, a, opts, relay),
            });
            if let Err(e) = spawned {
                interrupt::warn(format_args!(
                    "{who}: could not start a thread to relay it ({e}); connection closed"
                ));
            }
        }
        Ok(())
    });
    accepted?;
    relay.finish()
}

/// How a client is named in what is said about it.
fn client_name(peer: &Peer) -> String {
    if peer.addr.is_empty() {
        match peer.pid {
            Some(pid) => format!("client pid {pid}"),
            None => "client".to_string(),
        }
    } else {
        format!("client {}", peer.addr)
    }
}

/// One client relayed both ways to its own connection to A.
fn client_both(conn: Connection, a: &Endpoint, opts: &Options, relay: &Relay) {
    let who = client_name(&conn.peer);
    let (mut a_tx, mut a_rx) = match procom::socket::connect(a, opts) {
        Ok(pair) => pair,
        Err(e) => {
            interrupt::warn(format_args!("{who}: {e}; connection closed"));
            return;
        }
    };
    let Connection {
        sender: mut c_tx,
        receiver: mut c_rx,
        ..
    } = conn;
    let fds = match sockets(&[&a_tx, &c_tx]) {
        Ok(fds) => fds,
        Err(e) => {
            interrupt::warn(format_args!("{who}: {e:#}; connection closed"));
            return;
        }
    };
    let link = Link::new(relay, fds);
    let both = std::thread::scope(|s| {
        let to_client = std::thread::Builder::new()
            .spawn_scoped(s, || carry(&mut a_rx, &mut c_tx, &relay.flows[0], &link))?;
        let to_a = carry(&mut c_rx, &mut a_tx, &relay.flows[1], &link);
        Ok::<_, std::io::Error>((to_client.join().unwrap_or(End::Stopped), to_a))
    });
    let (to_client, to_a) = match both {
        Ok(ends) => ends,
        Err(e) => {
            interrupt::warn(format_args!(
                "{who}: could not start a thread to relay it ({e}); connection closed"
            ));
            return;
        }
    };
    // The client leaving needs no word; anything else ending its connection does.
    let to_client = match to_client {
        End::DestGone => None,
        end => explain(&end, &relay.flows[0], a, relay.idle),
    };
    let to_a = explain(&to_a, &relay.flows[1], a, relay.idle);
    let mut said = Vec::new();
    for why in [to_client, to_a] {
        if let Some(why) = why
            && !said.contains(&why)
        {
            interrupt::warn(format_args!("{who}: {why}; connection closed"));
            said.push(why);
        }
    }
}

/// One client whose messages go into the shared A: A failing ends the whole relay, the
/// client failing ends its connection.
fn client_into(conn: Connection, sink: &Mutex<Sender>, a: &Endpoint, relay: &Relay) {
    let who = client_name(&conn.peer);
    let Connection {
        receiver: mut c_rx, ..
    } = conn;
    let link = Link::new(relay, Vec::new());
    let flow = &relay.flows[0];
    let end = pump(&mut c_rx, &mut Dest::Shared(sink), flow, &link);
    match &end {
        End::Eof | End::Stopped => {}
        End::DestFailed(_) => {
            if let Some(why) = explain(&end, flow, a, relay.idle) {
                relay.fail(why);
            }
        }
        End::DestGone => {
            if let Some(why) = explain(&end, flow, a, relay.idle)
                && lock(&relay.failure).is_none()
                && !relay.stop.swap(true, Ordering::SeqCst)
            {
                interrupt::warn(format_args!("{why}; relay ended"));
            }
        }
        End::Idle | End::SourceFailed(_) => {
            if let Some(why) = explain(&end, flow, a, relay.idle) {
                interrupt::warn(format_args!("{who}: {why}; connection closed"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s).unwrap()
    }

    fn planned(a: &str, b: &str, listen: bool) -> Result<Plan, String> {
        plan(&ep(a), &ep(b), listen).map_err(|e| e.to_string())
    }

    #[test]
    fn directions() {
        assert!(matches!(
            planned("unix:/a", "tcp:127.0.0.1:7000", false),
            Ok(Plan::Both)
        ));
        let Ok(Plan::OneWay { src, note, .. }) = planned("mq:/jobs", "tcp:10.0.0.2:7000", false)
        else {
            panic!("mq to tcp is one way")
        };
        assert_eq!(src, ep("mq:/jobs"));
        assert!(note.is_some_and(|n| n.contains("only")));
        // B can only be received from: the relay goes B -> A, and says so.
        let Ok(Plan::OneWay { src, dst, note }) = planned("mq:/jobs", "udp:127.0.0.1:0", false)
        else {
            panic!("udp port 0 is read")
        };
        assert_eq!((src, dst), (ep("udp:127.0.0.1:0"), ep("mq:/jobs")));
        assert!(note.is_some());
        assert!(matches!(
            planned("fifo:/tmp/in", "shm:/frames", false),
            Ok(Plan::OneWay { note: None, .. })
        ));
        assert!(matches!(
            planned("unix:/a", "tcp:0.0.0.0:7000", true),
            Ok(Plan::ServeBoth)
        ));
        assert!(matches!(
            planned("mq:/jobs", "tcp:0.0.0.0:0", true),
            Ok(Plan::ServeInto { .. })
        ));
    }

    #[test]
    fn impossible_directions_are_refused() {
        for (a, b, listen, words) in [
            ("udp:127.0.0.1:0", "udp:127.0.0.1:0", false, "no direction"),
            ("mq:/q?priority=1", "tcp:127.0.0.1:0", false, "no direction"),
            ("mq:/q", "mq:/q", false, "one object"),
            ("fifo:x", "fifo:x", false, "one object"),
            ("unix:/s", "unix:/s", true, "one object"),
            ("mq:/q", "udp:127.0.0.1:9", true, "cannot be listened on"),
            (
                "tcp:127.0.0.1:0",
                "unix:/s",
                true,
                "can only be listened on",
            ),
            ("udp:127.0.0.1:0", "tcp:127.0.0.1:0", true, "go into A"),
            (
                "unix:/a",
                "tcp:127.0.0.1:0",
                false,
                "give it as B with --listen",
            ),
        ] {
            let e = planned(a, b, listen).unwrap_err();
            assert!(e.contains(words), "{a} {b}: {e}");
        }
    }
}
