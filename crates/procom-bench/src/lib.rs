//! procom's benchmark scenarios, shared by `procom bench` (and, later, the peers comparison).
//!
//! Every scenario runs process to process: the parent spawns the `procom` executable as a peer
//! (its hidden `__bench-peer` subcommand calls [`peer`]), and every payload is really written
//! and read on both sides.
//!
//! - **Ping-pong latency**: the parent sends a message, the peer echoes it, the parent records
//!   half the round trip (one-way latency) in an HdrHistogram; p50, p99 and p99.9 are reported.
//! - **Streaming throughput**: the parent sends N messages back to back; the peer receives
//!   them all and acknowledges; msgs/s and MB/s follow from the elapsed time.
//! - **The machine's limits**, measured in the same run: a cache-line ping-pong between two
//!   processes over shared memory (one-way ns) and memcpy bandwidth, so results can be read as
//!   ratios that move less between machines and runs than raw numbers.
//!
//! Blocking mode (the receiver sleeps in the kernel) and spin mode (the receiver busy-polls)
//! are separate rows, never mixed. Only the shared-memory channel has a spin mode: every other
//! mechanism waits in a system call either way.

#![forbid(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use procom::{Error, ErrorKind, Options, Receiver, Sender};
use serde::Serialize;

#[cfg(feature = "peers")]
pub mod peers;

/// The message sizes every mechanism is measured at, where it allows them.
pub const SIZES: [usize; 4] = [64, 4096, 64 << 10, 1 << 20];

/// A mechanism the benchmark can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Anonymous pipes, one each way.
    Pipe,
    /// Two FIFOs.
    Fifo,
    /// Two shared-memory ring channels.
    Shm,
    /// A Unix stream socket pair.
    Unix,
    /// A Unix stream socket pair carrying typed messages (`procom::typed`, postcard): the
    /// payload as one byte string, encoded and decoded on every hop.
    UnixTyped,
    /// Two Unix datagram sockets.
    UnixGram,
    /// Two TCP connections on loopback.
    Tcp,
    /// Two UDP sockets on loopback.
    Udp,
    /// Two POSIX message queues.
    Mq,
    /// Two System V message queues.
    Msg,
    /// Two named semaphores handing a turn back and forth (no payload).
    Sem,
    /// Real-time signals queued back and forth with sigqueue (a 4-byte value, no payload).
    Signal,
}

impl Mechanism {
    /// Every mechanism, in table order.
    pub const ALL: [Mechanism; 12] = [
        Mechanism::Shm,
        Mechanism::Unix,
        Mechanism::UnixTyped,
        Mechanism::UnixGram,
        Mechanism::Pipe,
        Mechanism::Fifo,
        Mechanism::Tcp,
        Mechanism::Udp,
        Mechanism::Mq,
        Mechanism::Msg,
        Mechanism::Sem,
        Mechanism::Signal,
    ];

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::Shm => "shm",
            Mechanism::Unix => "unix",
            Mechanism::UnixTyped => "unix-typed",
            Mechanism::UnixGram => "unixgram",
            Mechanism::Tcp => "tcp",
            Mechanism::Udp => "udp",
            Mechanism::Mq => "mq",
            Mechanism::Msg => "msg",
            Mechanism::Sem => "sem",
            Mechanism::Signal => "signal",
        }
    }

    /// Whether the mechanism carries `size`-byte messages, and why not.
    pub fn supports(self, size: usize) -> Result<(), &'static str> {
        match self {
            Mechanism::Udp if size > 4096 => {
                Err("over one UDP datagram (65,507 bytes, less procom's 16-byte header)")
            }
            Mechanism::UnixGram if size > 64 << 10 => Err("over a Unix datagram socket's buffer"),
            Mechanism::Mq if size as i64 > procom::mq::limits().msgsize_max => {
                Err("over fs.mqueue.msgsize_max on this machine")
            }
            Mechanism::Mq if size > 64 << 10 => {
                Err("two such queues exceed RLIMIT_MSGQUEUE (800 KiB per user by default)")
            }
            Mechanism::Msg if size as i64 > procom::msg::limits().msgmax => {
                Err("over kernel.msgmax on this machine")
            }
            Mechanism::Sem | Mechanism::Signal if size != SIZES[0] => {
                Err("carries no payload: one row, at the smallest size")
            }
            _ => Ok(()),
        }
    }

    /// Whether the peer binds its own receiving end (named kernel objects and sockets).
    fn peer_binds(self) -> bool {
        !matches!(
            self,
            Mechanism::Pipe
                | Mechanism::Unix
                | Mechanism::UnixTyped
                | Mechanism::Fifo
                | Mechanism::Sem
                | Mechanism::Signal
        )
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The modes the mechanism has.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Mechanism::Shm => &[Mode::Block, Mode::Spin],
            _ => &[Mode::Block],
        }
    }
}

/// How a receiver waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sleeps in the kernel until woken.
    Block,
    /// Busy-polls.
    Spin,
}

impl Mode {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Spin => "spin",
        }
    }
}

/// How many samples a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A few seconds in all.
    Quick,
    /// Well within a minute on two cores.
    Default,
    /// Several times the default's samples, for steadier tails.
    Full,
}

/// One measurement to take.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// What to measure.
    pub mechanism: Mechanism,
    /// How receivers wait.
    pub mode: Mode,
    /// Payload bytes per message.
    pub size: usize,
    /// Round trips timed (after a warm-up of a tenth as many).
    pub iterations: usize,
    /// Messages streamed for the throughput figure.
    pub stream: usize,
}

impl Scenario {
    /// A scenario sized for the profile: each part takes a fraction of a second by default,
    /// less with `Quick`, several times longer with `Full`.
    pub fn sized(mechanism: Mechanism, mode: Mode, size: usize, profile: Profile) -> Scenario {
        let (budget, cap): (usize, usize) = match profile {
            Profile::Quick => (16 << 20, 5_000),
            Profile::Default => (128 << 20, 20_000),
            Profile::Full => (1 << 30, 100_000),
        };
        Scenario {
            mechanism,
            mode,
            size,
            iterations: (budget / 4 / size.max(1)).clamp(100, cap),
            // UDP's throughput is not measured: a sender outrunning its receiver loses
            // datagrams, so the figure would measure the loss, not the speed.
            stream: if mechanism == Mechanism::Udp {
                0
            } else {
                (budget / size.max(1)).clamp(200, cap * 5)
            },
        }
    }
}

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

/// The machine's own limits, measured in the same run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// One-way latency of a cache line bouncing between two processes.
    pub cacheline_one_way_ns: f64,
    /// memcpy bandwidth of one core, in GB/s (10^9 bytes).
    pub memcpy_gb_per_s: f64,
}

fn bench_error(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Io)
        .detail(what.into())
        .object("bench")
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn options(mode: Mode) -> Options {
    let o = Options::default().max_message(2 << 20);
    match mode {
        Mode::Block => o,
        // Long enough that a receiver never sleeps while its peer keeps sending; short enough
        // that a side waiting out another side's batch stops spinning and leaves it the CPU.
        Mode::Spin => o.spin(SPIN),
    }
}

/// One side's two directions as the benchmark driver sees them, so that procom and every peer
/// library run exactly the same loop (see [`drive`] and [`serve`]).
pub(crate) trait Link {
    /// Sends `msg`: the payload is written into the transport.
    fn send(&mut self, msg: &[u8]) -> Result<(), Error>;
    /// Receives one message and returns its length (the payload is received, not copied out).
    fn recv_len(&mut self) -> Result<usize, Error>;
    /// Receives one message into an owned buffer and sends that buffer back (the echo side).
    fn echo(&mut self) -> Result<(), Error>;
    /// Receives a short control message (ready, acknowledgement) within `timeout`.
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error>;
}

/// procom's byte channels.
struct ProcomLink {
    tx: Sender,
    rx: Receiver,
    /// A datagram can be lost, so UDP waits with a deadline; the others block in the kernel
    /// (System V queues have no timed receive, and a deadline would make them poll).
    udp: bool,
    /// The echo side's buffer, reused for every message (as the peers' links do).
    buf: Vec<u8>,
}

impl ProcomLink {
    fn new(tx: Sender, rx: Receiver) -> ProcomLink {
        ProcomLink {
            udp: rx.endpoint().starts_with("udp:"),
            tx,
            rx,
            buf: Vec::new(),
        }
    }
}

impl Link for ProcomLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.tx.send(msg).map_err(|e| e.into_error())
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        if self.udp {
            Ok(self.rx.recv_timeout(Duration::from_secs(10))?.len())
        } else {
            self.rx.recv_with(|b| b.len())
        }
    }
    fn echo(&mut self) -> Result<(), Error> {
        self.rx.recv_into(&mut self.buf)?;
        self.tx.send(&self.buf).map_err(|e| e.into_error())
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        self.rx.recv_timeout(timeout)
    }
}

/// procom's typed channel (postcard) carrying the payload as one byte string: the same work
/// ipc-channel's typed channel does.
struct TypedLink {
    tx: procom::typed::Sender<serde_bytes::ByteBuf>,
    rx: procom::typed::Receiver<serde_bytes::ByteBuf>,
}

impl Link for TypedLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let value = serde_bytes::ByteBuf::from(msg.to_vec());
        self.tx.send(value).map_err(|e| e.into_error())
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        Ok(self.rx.recv()?.len())
    }
    fn echo(&mut self) -> Result<(), Error> {
        let m = self.rx.recv()?;
        self.tx.send(m).map_err(|e| e.into_error())
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        Ok(self.rx.recv_timeout(timeout)?.into_vec())
    }
}

/// The parent's ends and the peer process for one scenario.
struct Wired {
    link: ProcomLink,
    child: Child,
    _cleanup: Option<procom::fifo::Fifo>,
    _cleanup2: Option<procom::fifo::Fifo>,
}

/// `__bench-peer MECH MODE SIZE ITERATIONS STREAM A2B B2A`.
fn peer_args(s: &Scenario, mech: &str, a2b: &str, b2a: &str) -> Vec<String> {
    vec![
        "__bench-peer".to_string(),
        mech.to_string(),
        s.mode.name().to_string(),
        s.size.to_string(),
        s.iterations.to_string(),
        s.stream.to_string(),
        a2b.to_string(),
        b2a.to_string(),
    ]
}

fn peer_command(exe: &Path, s: &Scenario, a2b: &str, b2a: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(peer_args(s, s.mechanism.name(), a2b, b2a))
        .stderr(Stdio::inherit());
    cmd
}

fn spawn(mut cmd: Command) -> Result<Child, Error> {
    let child = cmd
        .spawn()
        .map_err(|e| Error::os("start the benchmark peer", e).object("bench"))?;
    if let (Some((_, peer_cpu)), Some(pid)) = (
        PINNED.get().copied().flatten(),
        rustix::process::Pid::from_raw(child.id() as i32),
    ) {
        let mut set = rustix::thread::CpuSet::new();
        set.set(peer_cpu);
        let _ = rustix::thread::sched_setaffinity(Some(pid), &set);
    }
    Ok(child)
}

static PINNED: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();

/// Pins this process to the first CPU it may use and every peer to the second, when it may use
/// two or more; returns the two CPUs, or `None` (then nothing is pinned). Call once, first.
pub fn pin() -> Option<(usize, usize)> {
    *PINNED.get_or_init(|| {
        let allowed = rustix::thread::sched_getaffinity(None).ok()?;
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|c| allowed.is_set(*c))
            .take(2)
            .collect();
        let [mine, peer] = cpus[..] else { return None };
        let mut set = rustix::thread::CpuSet::new();
        set.set(mine);
        rustix::thread::sched_setaffinity(None, &set).ok()?;
        Some((mine, peer))
    })
}

/// Starts `cmd` as a peer reading one pipe on its standard input and writing another on its
/// standard output; returns our write end, our read end and the peer.
fn pipe_peer(mut cmd: Command) -> Result<(OwnedFd, OwnedFd, Child), Error> {
    let (r1, w1) = procom::pipe::pipe().map_err(|e| Error::os("create a pipe", e))?;
    let (r2, w2) = procom::pipe::pipe().map_err(|e| Error::os("create a pipe", e))?;
    cmd.stdin(r1).stdout(w2);
    let child = spawn(cmd)?;
    Ok((w1.into(), r2.into(), child))
}

/// Starts `cmd` as a peer with one end of a Unix socket pair on its standard input and output;
/// returns our end twice (to write, to read) and the peer.
fn socketpair_peer(mut cmd: Command) -> Result<(OwnedFd, OwnedFd, Child), Error> {
    let dup = |s: &UnixStream| {
        s.try_clone()
            .map(OwnedFd::from)
            .map_err(|e| Error::os("duplicate a socket", e))
    };
    let (a, b) = UnixStream::pair().map_err(|e| Error::os("create a socket pair", e))?;
    cmd.stdin(dup(&b)?).stdout(OwnedFd::from(b));
    let a2 = dup(&a)?;
    let child = spawn(cmd)?;
    Ok((a.into(), a2, child))
}

fn wire(exe: &Path, scratch: &Path, s: &Scenario) -> Result<Wired, Error> {
    let opts = options(s.mode);
    let mut w = match s.mechanism {
        Mechanism::Sem | Mechanism::Signal | Mechanism::UnixTyped => {
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
            let (e1, e2) = bound_endpoints(s, scratch)?;
            let mut rx = Receiver::bind_with(&e2, &opts)?;
            let mut cmd = peer_command(exe, s, &e1, &e2);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let mut child = spawn(cmd)?;
            // The peer binds its receiver, then says ready over ours.
            let tx = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(m) if m == b"ready" => Sender::connect_with(&e1, &opts),
                Ok(_) => Err(bench_error("the peer did not say ready")),
                Err(e) => Err(e),
            };
            let tx = match tx {
                Ok(tx) => tx,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
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
        let _ = w.child.kill();
        return Err(bench_error("the peer did not say ready"));
    }
    Ok(w)
}

/// The two endpoints (peer's receiver, ours) for a mechanism whose receivers bind.
fn bound_endpoints(s: &Scenario, scratch: &Path) -> Result<(String, String), Error> {
    let port = |udp: bool| -> Result<u16, Error> {
        let r = if udp {
            std::net::UdpSocket::bind("127.0.0.1:0").and_then(|x| x.local_addr())
        } else {
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|x| x.local_addr())
        };
        r.map(|a| a.port())
            .map_err(|e| Error::os("find a free port", e))
    };
    let key = || 0x4200_0000 | ((std::process::id() & 0xfff) << 12) as i32;
    Ok(match s.mechanism {
        Mechanism::Shm => (
            format!("shm:{}?capacity=4MiB", unique("/procom-bench-a2b")),
            format!("shm:{}?capacity=4MiB", unique("/procom-bench-b2a")),
        ),
        Mechanism::UnixGram => (
            format!("unixgram:{}", scratch.join(unique("a2b")).display()),
            format!("unixgram:{}", scratch.join(unique("b2a")).display()),
        ),
        Mechanism::Tcp => (
            format!("tcp:127.0.0.1:{}", port(false)?),
            format!("tcp:127.0.0.1:{}", port(false)?),
        ),
        Mechanism::Udp => (
            format!("udp:127.0.0.1:{}", port(true)?),
            format!("udp:127.0.0.1:{}", port(true)?),
        ),
        Mechanism::Mq => {
            let cap = if s.size > 8192 { 4 } else { 10 };
            let size = s.size.max(64);
            (
                format!(
                    "mq:{}?capacity={cap}&msgsize={size}",
                    unique("/procom-bench-a2b")
                ),
                format!(
                    "mq:{}?capacity={cap}&msgsize={size}",
                    unique("/procom-bench-b2a")
                ),
            )
        }
        Mechanism::Msg => {
            static N: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
            let n = N.fetch_add(2, Ordering::Relaxed) & 0xffe;
            (
                format!("msg:{:#x}", key() | n),
                format!("msg:{:#x}", key() | (n + 1)),
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
    // The raw loop of the same mechanism (kernel mechanisms, blocking), alive beside procom's.
    let mut raw = if (s.mechanism == Mechanism::Shm) == (s.mode == Mode::Spin) {
        Some(raw_setup(exe, scratch, s)?)
    } else {
        None
    };
    let m = if s.mechanism == Mechanism::UnixTyped {
        unix_typed(exe, s, raw.as_mut(), peer)?
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

/// One side of a raw baseline: plain system calls with no framing and no procom layer.
trait RawIo {
    /// Writes one message.
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()>;
    /// Reads one message of `buf.len()` bytes (a stream reads exactly that many).
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
}

/// Two descriptors, one each way: `write(2)` and `read(2)` (pipes, FIFOs, a Unix stream socket
/// pair, two TCP connections).
struct RawFds {
    tx: OwnedFd,
    rx: OwnedFd,
}

impl RawIo for RawFds {
    fn put(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            match rustix::io::write(&self.tx, buf) {
                Ok(n) => buf = &buf[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match rustix::io::read(&self.rx, &mut buf[got..]) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(got)
    }
}

/// A connected datagram socket: `send(2)` and `recv(2)` (UDP, Unix datagrams).
struct RawDgram(OwnedFd);

impl RawIo for RawDgram {
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()> {
        rustix::net::send(&self.0, msg, rustix::net::SendFlags::empty())?;
        Ok(())
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (n, _) = rustix::net::recv(&self.0, buf, rustix::net::RecvFlags::empty())?;
        Ok(n)
    }
}

/// Two POSIX message queues: `mq_send(3)` and `mq_receive(3)`.
struct RawMq {
    tx: OwnedFd,
    rx: OwnedFd,
    buf: Vec<u8>,
}

impl RawMq {
    /// `mq_receive` needs room for the queue's message size: the buffer is sized once.
    fn new(tx: OwnedFd, rx: OwnedFd) -> std::io::Result<RawMq> {
        let size = procom_sys::mq::getattr(rx.as_fd())?.msgsize.max(1) as usize;
        Ok(RawMq {
            tx,
            rx,
            buf: vec![0; size],
        })
    }
}

impl RawIo for RawMq {
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()> {
        procom_sys::mq::send(self.tx.as_fd(), msg, 0, None).map(|_| ())
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match procom_sys::mq::receive(self.rx.as_fd(), &mut self.buf, None)? {
            procom_sys::mq::Outcome::Done((n, _)) => {
                let n = n.min(buf.len());
                buf[..n].copy_from_slice(&self.buf[..n]);
                Ok(n)
            }
            _ => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Two System V message queues: `msgsnd(2)` and `msgrcv(2)`.
struct RawMsg {
    tx: i32,
    rx: i32,
    buf: procom_sys::msg::RecvBuf,
}

impl RawIo for RawMsg {
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()> {
        procom_sys::msg::send(self.tx, 1, msg, false)
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (_, m) = procom_sys::msg::receive(self.rx, &mut self.buf, buf.len().max(1), 0, false)?;
        let n = m.len().min(buf.len());
        buf[..n].copy_from_slice(&m[..n]);
        Ok(n)
    }
}

/// Two mailboxes in one shared mapping, one each way: the plainest shared-memory ping-pong.
/// The sender copies the payload in, stores its length and then a sequence number (Release);
/// the receiver spins on the number (Acquire) and copies the payload out. No ring, no
/// positions, no liveness: the floor under procom's `shm spin`.
struct RawShm {
    map: procom::shm::Mapping,
    /// Offsets of our outgoing and incoming mailboxes.
    out: usize,
    inbox: usize,
    sent: u64,
    seen: u64,
}

/// A mailbox: its sequence number and length in one cache line, then the payload.
const MAILBOX_HEAD: usize = 64;

/// Bytes of one mailbox for payloads of `size` bytes.
fn mailbox(size: usize) -> usize {
    MAILBOX_HEAD + size.div_ceil(64) * 64
}

impl RawShm {
    fn word(&self, off: usize) -> std::io::Result<&AtomicU64> {
        self.map
            .atomic_u64(off)
            .ok_or_else(|| std::io::Error::other("a mailbox word is outside the mapping"))
    }
}

impl RawIo for RawShm {
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()> {
        self.map.write(self.out + MAILBOX_HEAD, msg)?;
        self.word(self.out + 8)?
            .store(msg.len() as u64, Ordering::Relaxed);
        self.sent += 1;
        self.word(self.out)?.store(self.sent, Ordering::Release);
        Ok(())
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let seq = self.word(self.inbox)?;
        let want = self.seen + 1;
        let arrived = poll_politely(Duration::from_secs(10), || {
            Ok::<_, std::io::Error>((seq.load(Ordering::Acquire) == want).then_some(()))
        })?;
        if arrived.is_none() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.seen = want;
        let len = self.word(self.inbox + 8)?.load(Ordering::Relaxed);
        let n = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
        self.map.read(self.inbox + MAILBOX_HEAD, &mut buf[..n])?;
        Ok(n)
    }
}

fn raw_error(e: std::io::Error) -> Error {
    Error::os("run the raw baseline", e).object("bench baseline")
}

/// Removes the baseline's named objects however the run ends.
#[derive(Default)]
struct RawCleanup {
    mq: Vec<String>,
    msg: Vec<i32>,
}

impl Drop for RawCleanup {
    fn drop(&mut self) {
        for name in &self.mq {
            let _ = procom_sys::mq::unlink(name);
        }
        for id in &self.msg {
            let _ = procom_sys::msg::remove(*id);
        }
    }
}

fn loopback_listener() -> Result<(std::net::TcpListener, String), Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::os("listen on loopback", e))?;
    let port = l
        .local_addr()
        .map_err(|e| Error::os("read a port", e))?
        .port();
    Ok((l, port.to_string()))
}

fn accept_nodelay(l: &std::net::TcpListener) -> Result<OwnedFd, Error> {
    let (c, _) = l.accept().map_err(|e| Error::os("accept the peer", e))?;
    c.set_nodelay(true)
        .map_err(|e| Error::os("set TCP_NODELAY", e))?;
    Ok(c.into())
}

/// The raw ping-pong for a kernel mechanism: the payload sent and read back with the plain
/// system calls, in the same topology as procom's channel (one object each way), nothing else.
fn raw_setup(exe: &Path, scratch: &Path, s: &Scenario) -> Result<RawSide, Error> {
    // The typed channel runs over a Unix socket pair: its raw baseline is that pair's.
    let mech = match s.mechanism {
        Mechanism::UnixTyped => Mechanism::Unix,
        m => m,
    };
    let raw = format!("raw-{}", mech.name());
    let mut peer = Scenario {
        mechanism: mech,
        ..*s
    };
    peer.stream = 0;
    let mut cleanup = RawCleanup::default();
    let command = |a2b: &str, b2a: &str| {
        let mut cmd = peer_command(exe, &peer, a2b, b2a);
        cmd.arg(&raw);
        cmd
    };
    // Whatever fails after the peer started, the guard kills and reaps it.
    let mut peer_proc = PeerGuard(None);
    let mut io: Box<dyn RawIo> = match mech {
        Mechanism::Pipe | Mechanism::Unix => {
            let start = if mech == Mechanism::Pipe {
                pipe_peer
            } else {
                socketpair_peer
            };
            let (tx, rx, child) = start(command("-", "-"))?;
            peer_proc.0 = Some(child);
            Box::new(RawFds { tx, rx })
        }
        Mechanism::Fifo => {
            let a2b = scratch.join(unique("raw-a2b"));
            let b2a = scratch.join(unique("raw-b2a"));
            let f1 = procom::fifo::Fifo::create(&a2b)?;
            let f2 = procom::fifo::Fifo::create(&b2a)?;
            let mut cmd = command(&a2b.display().to_string(), &b2a.display().to_string());
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            let tx: OwnedFd =
                procom::fifo::open_write_timeout(&a2b, Duration::from_secs(10))?.into();
            let rx: OwnedFd = procom::fifo::open_read(&b2a)?.into();
            drop((f1, f2)); // both ends are open: the names can go
            Box::new(RawFds { tx, rx })
        }
        Mechanism::Tcp => {
            let (l1, p1) = loopback_listener()?;
            let (l2, p2) = loopback_listener()?;
            let mut cmd = command(&p1, &p2);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            let tx = accept_nodelay(&l1)?;
            let rx = accept_nodelay(&l2)?;
            Box::new(RawFds { tx, rx })
        }
        Mechanism::Udp => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")
                .map_err(|e| Error::os("bind a UDP socket", e))?;
            let port = sock
                .local_addr()
                .map_err(|e| Error::os("read a port", e))?
                .port();
            let mut cmd = command(&port.to_string(), "-");
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| Error::os("set a timeout", e))?;
            // Peeked, not taken: the hello is read again as every baseline's first message.
            let mut hello = [0u8; 1];
            let (_, from) = sock
                .peek_from(&mut hello)
                .map_err(|e| Error::os("hear from the peer", e))?;
            sock.connect(from)
                .map_err(|e| Error::os("connect a UDP socket", e))?;
            Box::new(RawDgram(sock.into()))
        }
        Mechanism::UnixGram => {
            let mine = scratch.join(unique("raw-dgram-a"));
            let theirs = scratch.join(unique("raw-dgram-b"));
            let sock = std::os::unix::net::UnixDatagram::bind(&mine)
                .map_err(|e| Error::os("bind a Unix datagram socket", e))?;
            let mut cmd = command(&mine.display().to_string(), &theirs.display().to_string());
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| Error::os("set a timeout", e))?;
            // Peeked, not taken: the hello is read again as every baseline's first message.
            let mut hello = [0u8; 1];
            rustix::net::recv(&sock, &mut hello, rustix::net::RecvFlags::PEEK)
                .map_err(|e| Error::os("hear from the peer", e.into()))?;
            sock.connect(&theirs)
                .map_err(|e| Error::os("connect a Unix datagram socket", e))?;
            let _ = std::fs::remove_file(&mine);
            let _ = std::fs::remove_file(&theirs);
            Box::new(RawDgram(sock.into()))
        }
        Mechanism::Mq => {
            let (a2b, b2a) = (unique("/procom-raw-a2b"), unique("/procom-raw-b2a"));
            let size = s.size.max(64) as i64;
            let tx = procom_sys::mq::create(&a2b, 10, size, 0o600)
                .map_err(|e| Error::os("create a POSIX queue", e))?;
            cleanup.mq.push(a2b.clone());
            let rx = procom_sys::mq::create(&b2a, 10, size, 0o600)
                .map_err(|e| Error::os("create a POSIX queue", e))?;
            cleanup.mq.push(b2a.clone());
            let mut cmd = command(&a2b, &b2a);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            Box::new(RawMq::new(tx, rx).map_err(raw_error)?)
        }
        Mechanism::Msg => {
            let tx = procom_sys::msg::create(0, 0o600)
                .map_err(|e| Error::os("create a System V queue", e))?;
            cleanup.msg.push(tx);
            let rx = procom_sys::msg::create(0, 0o600)
                .map_err(|e| Error::os("create a System V queue", e))?;
            cleanup.msg.push(rx);
            let mut cmd = command(&tx.to_string(), &rx.to_string());
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            Box::new(RawMsg {
                tx,
                rx,
                buf: Default::default(),
            })
        }
        Mechanism::Shm => {
            let seg =
                procom::shm::Segment::memfd("procom-bench-raw", 2 * mailbox(s.size) as u64, true)?;
            let map = seg.map()?;
            let _ = map.populate();
            let fd = seg
                .fd()
                .ok_or_else(|| bench_error("a memfd without a descriptor"))?
                .try_clone_to_owned()
                .map_err(|e| Error::os("duplicate the shared memory", e))?;
            let mut cmd = command("-", "-");
            cmd.stdin(fd).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            Box::new(RawShm {
                map,
                out: 0,
                inbox: mailbox(s.size),
                sent: 0,
                seen: 0,
            })
        }
        _ => return Err(bench_error("no raw baseline for this mechanism")),
    };
    let mut hello = [0u8; 1];
    io.get(&mut hello).map_err(raw_error)?;
    Ok(RawSide {
        io,
        peer: peer_proc,
        _cleanup: cleanup,
        back: vec![0u8; s.size],
    })
}

/// The raw loop's side of a scenario, alive beside procom's so the two are measured in
/// alternating batches under the same conditions.
struct RawSide {
    io: Box<dyn RawIo>,
    peer: PeerGuard,
    _cleanup: RawCleanup,
    back: Vec<u8>,
}

impl RawSide {
    /// One round trip; its one-way time.
    fn round(&mut self, msg: &[u8]) -> Result<Duration, Error> {
        let t0 = Instant::now();
        self.io.put(msg).map_err(raw_error)?;
        let n = self.io.get(&mut self.back).map_err(raw_error)?;
        let rtt = t0.elapsed();
        if n != msg.len() {
            return Err(bench_error(format!("the raw peer echoed {n} bytes")));
        }
        Ok(rtt / 2)
    }

    /// Lets the peer finish (it has echoed every round) and reaps it.
    fn finish(mut self) {
        drop(self.io);
        if let Some(mut child) = self.peer.0.take() {
            let _ = child.wait();
        }
    }
}

/// The peer process of a baseline: killed and reaped if the run ends early.
struct PeerGuard(Option<Child>);

impl Drop for PeerGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The raw peer: echoes `size`-byte payloads with the plain system calls.
fn raw_peer(mech: &str, size: usize, iterations: usize, a2b: &str, b2a: &str) -> Result<(), Error> {
    let stdio = || -> Result<Box<dyn RawIo>, Error> {
        let rx = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os("duplicate stdin", e))?;
        let tx = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os("duplicate stdout", e))?;
        Ok(Box::new(RawFds { tx, rx }))
    };
    let mut io: Box<dyn RawIo> = match mech {
        "raw-pipe" | "raw-unix" => stdio()?,
        "raw-shm" => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::os("take the shared memory", e))?;
            let map = procom::shm::Segment::from_fd(fd, true).map()?;
            let _ = map.populate();
            Box::new(RawShm {
                map,
                out: mailbox(size),
                inbox: 0,
                sent: 0,
                seen: 0,
            })
        }
        "raw-fifo" => {
            let rx: OwnedFd = procom::fifo::open_read(a2b)?.into();
            let tx: OwnedFd = procom::fifo::open_write(b2a)?.into();
            Box::new(RawFds { tx, rx })
        }
        "raw-tcp" => {
            let connect = |port: &str| -> Result<OwnedFd, Error> {
                let c = std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                    .map_err(|e| Error::os("connect on loopback", e))?;
                c.set_nodelay(true)
                    .map_err(|e| Error::os("set TCP_NODELAY", e))?;
                Ok(c.into())
            };
            let rx = connect(a2b)?;
            let tx = connect(b2a)?;
            Box::new(RawFds { tx, rx })
        }
        "raw-udp" => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")
                .map_err(|e| Error::os("bind a UDP socket", e))?;
            sock.connect(format!("127.0.0.1:{a2b}"))
                .map_err(|e| Error::os("connect a UDP socket", e))?;
            Box::new(RawDgram(sock.into()))
        }
        "raw-unixgram" => {
            let sock = std::os::unix::net::UnixDatagram::bind(b2a)
                .map_err(|e| Error::os("bind a Unix datagram socket", e))?;
            sock.connect(a2b)
                .map_err(|e| Error::os("connect a Unix datagram socket", e))?;
            Box::new(RawDgram(sock.into()))
        }
        "raw-mq" => {
            let rx = procom_sys::mq::open(a2b, true, false)
                .map_err(|e| Error::os("open a POSIX queue", e))?;
            let tx = procom_sys::mq::open(b2a, false, true)
                .map_err(|e| Error::os("open a POSIX queue", e))?;
            Box::new(RawMq::new(tx, rx).map_err(raw_error)?)
        }
        "raw-msg" => {
            let id = |s: &str| {
                s.parse::<i32>()
                    .map_err(|_| bench_error(format!("`{s}` is not a queue id")))
            };
            Box::new(RawMsg {
                rx: id(a2b)?,
                tx: id(b2a)?,
                buf: Default::default(),
            })
        }
        _ => return Err(bench_error(format!("`{mech}` has no raw peer"))),
    };
    io.put(b"r").map_err(raw_error)?;
    let mut buf = vec![0u8; size];
    for _ in 0..round_trips(iterations) {
        let n = io.get(&mut buf).map_err(raw_error)?;
        io.put(&buf[..n]).map_err(raw_error)?;
    }
    Ok(())
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

/// How long a spin-mode receiver busy-polls before it sleeps (procom's and the peers').
pub(crate) const SPIN: Duration = Duration::from_millis(10);

/// How long the iceoryx2 peer and the raw shared-memory loop busy-poll before they offer the
/// CPU to other threads between bursts: the same as procom's spin mode.
pub(crate) const SPIN_ALONE: Duration = Duration::from_micros(50);

/// Busy-polls `poll` until it gives a value, the way procom's spin mode waits: alone for
/// [`SPIN_ALONE`], then offering the CPU to other threads between bursts, then napping between
/// polls after [`SPIN`], so a side waiting out another side's batch leaves the CPU to it.
/// `None` once `timeout` has passed. (The raw shared-memory loop and the iceoryx2 peer.)
pub(crate) fn poll_politely<R, E>(
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Option<R>, E>,
) -> Result<Option<R>, E> {
    let start = Instant::now();
    let mut polls = 0u32;
    let mut idle = false;
    loop {
        if let Some(r) = poll()? {
            return Ok(Some(r));
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(128) {
            let waited = start.elapsed();
            if waited > timeout {
                return Ok(None);
            }
            idle = waited > SPIN;
            if !idle && waited > SPIN_ALONE {
                std::thread::yield_now();
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Loops measured side by side take turns in this many batches, for the round trips and again
/// for the stream: on a virtual machine, two separate runs of the same loop differ by more than
/// the 10% being looked for, while batches taken in turn see the same machine.
const BATCHES: usize = 10;

/// Round trips at the start of each batch that are not recorded: a side that slept (or
/// stopped spinning) while another side ran its batch wakes up in these, not in the histogram.
const LEAD: usize = 2;

/// The part of `total` that batch `b` takes.
fn batch_len(total: usize, b: usize) -> usize {
    total / BATCHES + usize::from(b < total % BATCHES)
}

/// Round trips a peer echoes for a scenario of `iterations` timed ones (warm-up and batch
/// leads included).
fn round_trips(iterations: usize) -> usize {
    iterations / 10 + iterations + BATCHES * LEAD
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
fn measure(
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

/// The typed Unix-socket channel: a socket pair, the peer on its standard input and output.
fn unix_typed(
    exe: &Path,
    s: &Scenario,
    raw: Option<&mut RawSide>,
    peer: Beside<'_>,
) -> Result<(Measurement, Option<Measurement>), Error> {
    let opts = options(s.mode);
    let (tx, rx, mut child) = socketpair_peer(peer_command(exe, s, "-", "-"))?;
    let mut link = TypedLink {
        tx: procom::typed::Sender::from_untyped(Sender::from_fd(tx, "unix socketpair", &opts)),
        rx: procom::typed::Receiver::from_untyped(Receiver::from_fd(rx, "unix socketpair", &opts)),
    };
    let result = match link.recv_control(Duration::from_secs(10)) {
        Ok(m) if m == b"ready" => measure(&mut link, s, s.mechanism.name(), raw, peer),
        Ok(_) => Err(bench_error("the peer did not say ready")),
        Err(e) => Err(e),
    };
    drop(link);
    finish(child_result(&mut child, result.is_err()), result)
}

/// Waits for the peer; kills it first when the run failed (it may be waiting for ever).
fn child_result(child: &mut Child, failed: bool) -> Result<(), Error> {
    if failed {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::os("wait for the benchmark peer", e))?;
    if !failed && !status.success() {
        return Err(bench_error(format!("the benchmark peer failed ({status})")));
    }
    Ok(())
}

/// The run's own error first, then the peer's.
fn finish<T>(peer: Result<(), Error>, run: Result<T, Error>) -> Result<T, Error> {
    let m = run?;
    peer?;
    Ok(m)
}

/// The peer side, run by `procom __bench-peer MECH MODE SIZE ITERATIONS STREAM A2B B2A`.
pub fn peer(args: &[String]) -> Result<(), Error> {
    let (args, raw) = match args {
        [rest @ .., last] if last.starts_with("raw-") => (rest, Some(last.as_str())),
        _ => (args, None),
    };
    let [mech, mode, size, iterations, stream, a2b, b2a] = args else {
        return Err(bench_error("the peer needs 7 arguments"));
    };
    let _ = (mode, stream);
    if let Some(raw) = raw {
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| bench_error(format!("`{s}` is not a number")))
        };
        let _ = mech;
        return raw_peer(raw, num(size)?, num(iterations)?, a2b, b2a);
    }
    let num = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| bench_error(format!("`{s}` is not a number")))
    };
    if let Some(name) = mech.strip_prefix("peer:") {
        #[cfg(feature = "peers")]
        return peers::peer_main(name, num(size)?, num(iterations)?, num(stream)?, a2b, b2a);
        #[cfg(not(feature = "peers"))]
        return Err(bench_error(format!(
            "`{name}`: this procom was built without the `peers` feature"
        )));
    }
    if mech == "cacheline" {
        return cacheline_peer(num(iterations)?);
    }
    if mech == "sem" || mech == "signal" {
        return handoff_peer(mech, num(iterations)?, a2b, b2a);
    }
    let mode = if mode == "spin" {
        Mode::Spin
    } else {
        Mode::Block
    };
    let opts = options(mode);
    let (size, iterations, stream) = (num(size)?, num(iterations)?, num(stream)?);
    let bound = Mechanism::parse(mech).is_some_and(Mechanism::peer_binds);
    let (rx, tx) = if bound {
        let rx = Receiver::bind_with(a2b.as_str(), &opts)?;
        let tx = Sender::connect_with(b2a.as_str(), &opts)?;
        (rx, tx)
    } else {
        let rx = Receiver::connect_with(a2b.as_str(), &opts)?;
        let tx = Sender::connect_with(b2a.as_str(), &opts)?;
        (rx, tx)
    };
    if mech == "unix-typed" {
        let mut link = TypedLink {
            tx: procom::typed::Sender::from_untyped(tx),
            rx: procom::typed::Receiver::from_untyped(rx),
        };
        return serve(&mut link, size, iterations, stream);
    }
    let mut link = ProcomLink::new(tx, rx);
    serve(&mut link, size, iterations, stream)
}

fn cacheline_peer(iterations: usize) -> Result<(), Error> {
    let fd = std::os::fd::AsFd::as_fd(&std::io::stdin())
        .try_clone_to_owned()
        .map_err(|e| Error::os("take the shared memory", e))?;
    let seg = procom::shm::Segment::from_fd(fd, true);
    let map = seg.map()?;
    let word = map.atomic_u64(0).ok_or_else(|| bench_error("no word"))?;
    for i in 0..iterations as u64 {
        while word.load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        word.store(2 * i + 2, Ordering::Release);
    }
    Ok(())
}

/// Measures the machine's limits: a cache line bounced between this process and a peer, and
/// memcpy bandwidth.
pub fn limits(exe: &Path, profile: Profile) -> Result<Limits, Error> {
    let quick = profile == Profile::Quick;
    let iterations: usize = if quick { 50_000 } else { 200_000 };
    let seg = procom::shm::Segment::memfd("procom-bench-cacheline", 4096, true)?;
    let map = seg.map()?;
    let word = map.atomic_u64(0).ok_or_else(|| bench_error("no word"))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "__bench-peer",
        "cacheline",
        "spin",
        "8",
        &iterations.to_string(),
        "0",
        "-",
        "-",
    ]);
    let fd = seg
        .fd()
        .ok_or_else(|| bench_error("no fd"))?
        .try_clone_to_owned()
        .map_err(|e| Error::os("duplicate", e))?;
    cmd.stdin(fd);
    let mut child = spawn(cmd)?;
    let warm = iterations / 10;
    let mut t0 = Instant::now();
    for i in 0..iterations as u64 {
        if i == warm as u64 {
            t0 = Instant::now();
        }
        word.store(2 * i + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let one_way = t0.elapsed().as_nanos() as f64 / (iterations - warm) as f64 / 2.0;
    let _ = child.wait();

    let len = 64 << 20;
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src); // fault the pages in before timing
    let rounds = if quick { 4 } else { 16 };
    let t0 = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let gbps = (len * rounds) as f64 / t0.elapsed().as_secs_f64() / 1e9;
    Ok(Limits {
        cacheline_one_way_ns: one_way,
        memcpy_gb_per_s: gbps,
    })
}

/// Ping-pong without a payload: two named semaphores, or real-time signals with sigqueue. The
/// peer gets our pid (signals) or the semaphore names as its two endpoints.
fn handoff(exe: &Path, s: &Scenario) -> Result<Measurement, Error> {
    use procom::sem::Semaphore;
    use procom::signal::{Signal, Signals};
    let total = s.iterations / 10 + s.iterations;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| bench_error(format!("histogram: {e}")))?;
    let warmup = s.iterations / 10;
    let mut child;
    let started;
    if s.mechanism == Mechanism::Sem {
        let (ping, pong) = (unique("/procom-bench-ping"), unique("/procom-bench-pong"));
        let a = Semaphore::create(&ping, 0)?;
        let b = Semaphore::create(&pong, 0)?;
        let mut cmd = peer_command(exe, s, &ping, &pong);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        child = spawn(cmd)?;
        b.wait()?; // the peer is ready
        started = Instant::now();
        for i in 0..total {
            let t0 = Instant::now();
            a.post()?;
            b.wait()?;
            if i >= warmup {
                let _ = hist.record((t0.elapsed().as_nanos() as u64 / 2).max(1));
            }
        }
    } else {
        let sig = Signal::rtmin_plus(1)?;
        let mut caught = Signals::catch([sig])?;
        let me = std::process::id().to_string();
        let mut cmd = peer_command(exe, s, &me, "-");
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        child = spawn(cmd)?;
        let peer = caught.wait_timeout(Duration::from_secs(10))?.sender_pid; // the peer's hello
        started = Instant::now();
        for i in 0..total {
            let t0 = Instant::now();
            procom::signal::queue(peer, sig, i as i32)?;
            let d = caught.wait_timeout(Duration::from_secs(10))?;
            if d.value != Some(i as i32) {
                return Err(bench_error(format!(
                    "the peer answered {:?} to {i}",
                    d.value
                )));
            }
            if i >= warmup {
                let _ = hist.record((t0.elapsed().as_nanos() as u64 / 2).max(1));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = child.wait();
    Ok(Measurement {
        mechanism: s.mechanism.name().to_string(),
        mode: s.mode.name(),
        size: 0,
        p50_ns: hist.value_at_quantile(0.5) as f64,
        p99_ns: hist.value_at_quantile(0.99) as f64,
        p999_ns: hist.value_at_quantile(0.999) as f64,
        // Hand-offs per second, one each way per round trip.
        msgs_per_s: 2.0 * total as f64 / secs,
        mb_per_s: 0.0,
        baseline_p50_ns: None,
    })
}

fn handoff_peer(mech: &str, iterations: usize, a: &str, b: &str) -> Result<(), Error> {
    let total = iterations / 10 + iterations;
    if mech == "sem" {
        let ping = procom::sem::Semaphore::open(a)?;
        let pong = procom::sem::Semaphore::open(b)?;
        pong.post()?; // ready
        for _ in 0..total {
            ping.wait()?;
            pong.post()?;
        }
        return Ok(());
    }
    let sig = procom::signal::Signal::rtmin_plus(1)?;
    let mut caught = procom::signal::Signals::catch([sig])?;
    let parent: i32 = a.parse().map_err(|_| bench_error("bad parent pid"))?;
    procom::signal::queue(parent, sig, -1)?; // hello
    for _ in 0..total {
        let d = caught.wait_timeout(Duration::from_secs(10))?;
        procom::signal::queue(parent, sig, d.value.unwrap_or(-2))?;
    }
    Ok(())
}
