//! The raw baselines: each kernel mechanism's plain system-call ping-pong (`RawIo`), with no
//! procom layer.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use procom::Error;
use rustix::thread::futex;

use crate::leftovers::Registry;
use crate::link::poll_politely;
use crate::process::{packet_pair_peer, peer_command, pipe_peer, socketpair_peer, spawn};
use crate::scenario::{Mechanism, Mode, Scenario, bench_error, round_trips, unique};

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

/// A connected datagram or sequenced-packet socket: `send(2)` and `recv(2)` (UDP, Unix
/// datagrams, a Unix sequenced-packet pair).
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

/// Gives a sequenced-packet socket the send buffer procom's sender asks for with the
/// benchmark's limit (a packet must fit in it whole): what any program sending packets that
/// large must do.
fn packet_send_buffer(fd: &OwnedFd, size: usize) -> Result<(), Error> {
    let want = crate::link::max_message(size) + 32;
    rustix::net::sockopt::set_socket_send_buffer_size(fd, want.div_ceil(2))
        .map_err(|e| Error::os("size a socket's send buffer", e.into()))
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
/// positions, no liveness: the floor under procom's `shm spin`. With `block`, the receiver
/// sleeps on the number with `futex(FUTEX_WAIT)` instead and the sender wakes it with
/// `futex(FUTEX_WAKE)` after every message: the floor under `shm block`.
struct RawShm {
    map: procom::shm::Mapping,
    /// Offsets of our outgoing and incoming mailboxes.
    out: usize,
    inbox: usize,
    sent: u32,
    seen: u32,
    block: bool,
}

/// A mailbox: its sequence number and length in one cache line, then the payload.
const MAILBOX_HEAD: usize = 64;

/// Bytes of one mailbox for payloads of `size` bytes (and for the peer's 1-byte hello).
fn mailbox(size: usize) -> usize {
    MAILBOX_HEAD + size.max(1).div_ceil(64) * 64
}

impl RawShm {
    fn word(&self, off: usize) -> std::io::Result<&AtomicU64> {
        self.map
            .atomic_u64(off)
            .ok_or_else(|| std::io::Error::other("a mailbox word is outside the mapping"))
    }
    /// The mailbox's sequence number (a futex word: 32 bits).
    fn seq(&self, off: usize) -> std::io::Result<&AtomicU32> {
        self.map
            .atomic_u32(off)
            .ok_or_else(|| std::io::Error::other("a mailbox word is outside the mapping"))
    }
}

impl RawIo for RawShm {
    fn put(&mut self, msg: &[u8]) -> std::io::Result<()> {
        self.map.write(self.out + MAILBOX_HEAD, msg)?;
        self.word(self.out + 8)?
            .store(msg.len() as u64, Ordering::Relaxed);
        self.sent = self.sent.wrapping_add(1);
        let seq = self.seq(self.out)?;
        seq.store(self.sent, Ordering::Release);
        if self.block {
            futex::wake(seq, futex::Flags::empty(), 1)?;
        }
        Ok(())
    }
    fn get(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let seq = self.seq(self.inbox)?;
        let want = self.seen.wrapping_add(1);
        if self.block {
            let ts = rustix::time::Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            loop {
                let now = seq.load(Ordering::Acquire);
                if now == want {
                    break;
                }
                match futex::wait(seq, futex::Flags::empty(), now, Some(&ts)) {
                    Ok(()) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        } else {
            let arrived = poll_politely(Duration::from_secs(10), || {
                Ok::<_, std::io::Error>((seq.load(Ordering::Acquire) == want).then_some(()))
            })?;
            if arrived.is_none() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
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
pub(crate) fn raw_setup(exe: &Path, scratch: &Path, s: &Scenario) -> Result<RawSide, Error> {
    // A typed channel's raw baseline is its carrier's.
    let mech = s.mechanism.carrier();
    let raw = match (mech, s.mode) {
        (Mechanism::Shm, Mode::Block) => "raw-shm-block".to_string(),
        _ => format!("raw-{}", mech.name()),
    };
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
        Mechanism::UnixPacket => {
            let (tx, _, child) = packet_pair_peer(command("-", "-"))?;
            peer_proc.0 = Some(child);
            packet_send_buffer(&tx, s.size)?;
            Box::new(RawDgram(tx))
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
            let mut registry = Registry::hold();
            let a2b = registry.mq(unique("/procom-raw-a2b"));
            let b2a = registry.mq(unique("/procom-raw-b2a"));
            let size = s.size.max(64) as i64;
            let tx = procom_sys::mq::create(&a2b, 10, size, 0o600)
                .map_err(|e| Error::os("create a POSIX queue", e))?;
            cleanup.mq.push(a2b.clone());
            let rx = procom_sys::mq::create(&b2a, 10, size, 0o600)
                .map_err(|e| Error::os("create a POSIX queue", e))?;
            cleanup.mq.push(b2a.clone());
            drop(registry);
            let mut cmd = command(&a2b, &b2a);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            peer_proc.0 = Some(spawn(cmd)?);
            Box::new(RawMq::new(tx, rx).map_err(raw_error)?)
        }
        Mechanism::Msg => {
            let mut registry = Registry::hold();
            let tx = procom_sys::msg::create(0, 0o600)
                .map_err(|e| Error::os("create a System V queue", e))?;
            cleanup.msg.push(registry.msg_id(tx));
            let rx = procom_sys::msg::create(0, 0o600)
                .map_err(|e| Error::os("create a System V queue", e))?;
            cleanup.msg.push(registry.msg_id(rx));
            drop(registry);
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
                block: s.mode == Mode::Block,
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
pub(crate) struct RawSide {
    io: Box<dyn RawIo>,
    peer: PeerGuard,
    _cleanup: RawCleanup,
    back: Vec<u8>,
}

impl RawSide {
    /// One round trip; its one-way time.
    pub(crate) fn round(&mut self, msg: &[u8]) -> Result<Duration, Error> {
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
    pub(crate) fn finish(mut self) {
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
            crate::leftovers::end_peer(&mut child);
        }
    }
}

/// The raw peer: echoes `size`-byte payloads with the plain system calls.
pub(crate) fn raw_peer(
    mech: &str,
    size: usize,
    iterations: usize,
    a2b: &str,
    b2a: &str,
) -> Result<(), Error> {
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
        "raw-unixpacket" => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::os("duplicate stdin", e))?;
            packet_send_buffer(&fd, size)?;
            Box::new(RawDgram(fd))
        }
        "raw-shm" | "raw-shm-block" => {
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
                block: mech == "raw-shm-block",
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
