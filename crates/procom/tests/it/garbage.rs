//! Liveness after garbage: every server-like role — the framed `socket::Listener` (`unix:`,
//! `tcp:`), the datagram receiver (`udp:`, `unixgram:`), the ring receiver (`shm:`) — meets
//! garbage from other processes (random bytes, huge length prefixes, truncated frames, a peer
//! killed halfway through a frame, a segment scribbled on), reports it as an error, and still
//! serves a good client afterwards. The garbage is random; the generator's starting value is
//! in every failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use procom::socket::{self, Listener};
use procom::{Endpoint, ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role, tcp_listening, trials,
    udp_bound, unique_name, unix_listening,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "garbage::stream_server",
        run: stream_server,
    },
    Role {
        name: "garbage::stream_spray",
        run: stream_spray,
    },
    Role {
        name: "garbage::half_frame",
        run: half_frame,
    },
    Role {
        name: "garbage::dgram_receiver",
        run: dgram_receiver,
    },
    Role {
        name: "garbage::dgram_spray",
        run: dgram_spray,
    },
    Role {
        name: "garbage::shm_receiver",
        run: shm_receiver,
    },
    Role {
        name: "garbage::shm_scribble",
        run: shm_scribble,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "garbage":
            unix_listener_serves_after_garbage,
            tcp_listener_serves_after_garbage,
            udp_receiver_serves_after_garbage,
            unixgram_receiver_serves_after_garbage,
            ring_receiver_reports_scribbles_and_serves_again;
    ]
}

/// The largest message the servers here accept.
const MAX: usize = 1024;

/// xorshift64*: reproducible garbage from a starting value printed on failure.
struct Rng(u64);

impl Rng {
    fn new(start: u64) -> Rng {
        Rng(start | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// `min` to `min + spread - 1` random bytes.
    fn some(&mut self, min: usize, spread: u64) -> Vec<u8> {
        let len = min + self.below(spread) as usize;
        self.bytes(len)
    }
}

fn garbage_start() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    t.map(|d| d.as_nanos() as u64).unwrap_or(1) ^ u64::from(std::process::id())
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// `a=1 b=2` → a map (the summaries the server roles print).
fn tally(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A `socket::Listener` serving clients until one sends `stop`: echoes every message, and
/// prints how each connection ended (`PeerGone=3 Malformed=5 ...`).
fn stream_server(args: &[String]) -> Outcome {
    let [ep] = args else {
        return Err("args".into());
    };
    let listener = check!(Listener::bind(
        &check!(Endpoint::parse(ep)),
        &Options::default().max_message(MAX)
    ));
    println!("ready");
    flush();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut conn = match listener.accept_timeout(Duration::from_millis(100)) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Timeout => continue,
            Err(e) => return Err(format!("accept: {e}")),
        };
        let stop = Arc::clone(&stop);
        workers.push(std::thread::spawn(move || {
            loop {
                match conn.receiver.recv_timeout(STEP) {
                    Ok(m) if m == b"stop" => {
                        stop.store(true, Ordering::SeqCst);
                        return "stop".to_string();
                    }
                    // A garbage client may be gone already: its echo may fail, the next
                    // receive says how the connection ended.
                    Ok(m) => drop(conn.sender.send(&m)),
                    Err(e) => return format!("{:?}", e.kind()),
                }
            }
        }));
    }
    let mut ends = BTreeMap::<String, u64>::new();
    for w in workers {
        *ends
            .entry(w.join().unwrap_or_else(|_| "panicked".into()))
            .or_default() += 1;
    }
    let line: Vec<String> = ends.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    Ok(())
}

/// Connects `n` times to a framed stream server and sends garbage each time; prints how many
/// of each kind it sent.
fn stream_spray(args: &[String]) -> Outcome {
    let [ep, start, n] = args else {
        return Err("args".into());
    };
    let ep = check!(Endpoint::parse(ep));
    let mut rng = Rng::new(check!(start.parse::<u64>()));
    let mut sent = BTreeMap::<&str, u64>::new();
    for _ in 0..check!(n.parse::<u32>()) {
        let mut bytes = Vec::new();
        let kind = match rng.below(5) {
            0 => {
                let len = rng.below(3 * MAX as u64) as usize;
                bytes = rng.bytes(len);
                "random"
            }
            1 => {
                let len = MAX as u64 + 1 + rng.below(u64::from(u32::MAX) - MAX as u64);
                bytes.extend_from_slice(&(len as u32).to_be_bytes());
                bytes.extend(rng.some(0, 64));
                "huge"
            }
            2 => {
                let len = 1 + rng.below(MAX as u64) as usize;
                let mut f = frame(&rng.bytes(len));
                f.truncate(4 + rng.below(len as u64) as usize);
                bytes = f;
                "truncated"
            }
            3 => {
                for _ in 0..1 + rng.below(3) {
                    bytes.extend(frame(&rng.some(0, 64)));
                }
                bytes.extend(rng.some(1, 3)); // part of a length prefix
                "cut_prefix"
            }
            _ => "empty",
        };
        *sent.entry(kind).or_default() += 1;
        match &ep {
            Endpoint::Unix { .. } => {
                let Endpoint::Unix {
                    addr: procom::endpoint::UnixAddr::Path(p),
                } = &ep
                else {
                    return Err("only unix:PATH".into());
                };
                let mut s = check!(std::os::unix::net::UnixStream::connect(p));
                check!(s.write_all(&bytes));
            }
            Endpoint::Tcp { host, port } => {
                let mut s = check!(std::net::TcpStream::connect((host.as_str(), *port)));
                check!(s.write_all(&bytes));
            }
            other => return Err(format!("not a stream endpoint: {other}")),
        }
    }
    let line: Vec<String> = sent.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    Ok(())
}

/// Sends the first half of a frame, says so, and waits to be killed.
fn half_frame(args: &[String]) -> Outcome {
    let [ep] = args else {
        return Err("args".into());
    };
    let half = &frame(b"this message never ends")[..10];
    let mut conn: Box<dyn Write> = match check!(Endpoint::parse(ep)) {
        Endpoint::Unix {
            addr: procom::endpoint::UnixAddr::Path(p),
        } => Box::new(check!(std::os::unix::net::UnixStream::connect(p))),
        Endpoint::Tcp { host, port } => {
            Box::new(check!(std::net::TcpStream::connect((host.as_str(), port))))
        }
        other => return Err(format!("not a stream endpoint: {other}")),
    };
    check!(conn.write_all(half));
    println!("sent");
    flush();
    std::thread::sleep(STEP); // killed long before: a stand-in for a peer that hangs, then dies
    Err("was not killed".into())
}

/// One round trip of a good client.
fn round_trip(tx: &mut Sender, rx: &mut Receiver, m: &str, start: u64) -> Outcome {
    check!(tx.send(m).map_err(|e| e.into_error()));
    let got = rx
        .recv_timeout(STEP)
        .map_err(|e| format!("garbage from {start}: the good client's {m:?} got no echo: {e}"))?;
    ensure!(
        got == m.as_bytes(),
        "garbage from {start}: echo of {m:?} was {got:?}"
    );
    Ok(())
}

/// Garbage from other processes on a framed listener, while a good client is served; then a
/// new good client is served too, and every garbage connection ended in an error.
fn framed_listener_serves_after_garbage(listen: &str, dir: Scratch) -> Outcome {
    let start = garbage_start();
    let mut server = Proc::spawn("server", &mut role("garbage::stream_server", &[listen]))?;
    server.expect_line("ready")?;
    let ep = match check!(Endpoint::parse(listen)) {
        Endpoint::Tcp { .. } => format!("tcp:{}", tcp_listening(server.pid())?),
        Endpoint::Unix {
            addr: procom::endpoint::UnixAddr::Path(p),
        } => {
            unix_listening(server.pid(), &p)?;
            listen.to_string()
        }
        other => return Err(format!("not a stream endpoint: {other}")),
    };
    let parsed = check!(Endpoint::parse(&ep));
    let (mut tx, mut rx) = check!(socket::connect(&parsed, &Options::default()));
    round_trip(&mut tx, &mut rx, "good before", start)?;
    let spray = Proc::spawn(
        "spray",
        &mut role("garbage::stream_spray", &[&ep, &start.to_string(), "300"]),
    )?;
    let mut half = Proc::spawn("half frame", &mut role("garbage::half_frame", &[&ep]))?;
    half.expect_line("sent")?;
    drop(half); // SIGKILL, halfway through its frame
    for i in 0..50 {
        round_trip(&mut tx, &mut rx, &format!("good {i}"), start)?;
    }
    let sent = tally(&spray.success(STEP)?.stdout.join(" "));
    round_trip(&mut tx, &mut rx, "good after", start)?;
    drop((tx, rx));
    // A client that comes after all of it is served too.
    let (mut tx, mut rx) = check!(socket::connect(&parsed, &Options::default()));
    round_trip(&mut tx, &mut rx, "new client", start)?;
    check!(tx.send("stop").map_err(|e| e.into_error()));
    let fin = server.success(STEP)?;
    drop((tx, rx));
    let ends = tally(fin.stdout.last().map(String::as_str).unwrap_or(""));
    let n = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let total: u64 = ends.values().sum();
    // Every connection: the spray's, the half frame, the two good clients.
    ensure!(
        total == sent.values().sum::<u64>() + 3 && n(&ends, "stop") == 1,
        "garbage from {start}: sent {sent:?}, connections ended {ends:?}"
    );
    // A cut frame is Malformed. A client that closes with our echo unread (after the whole
    // frames before its cut prefix) resets the connection, over TCP and Unix sockets alike,
    // and the reset may be all the server learns (PeerGone); the truncated frames and the
    // half frame are echoed nothing, so they always end Malformed.
    let (malformed, gone) = (n(&ends, "Malformed"), n(&ends, "PeerGone"));
    ensure!(
        n(&ends, "TooLarge") >= n(&sent, "huge")
            && malformed > n(&sent, "truncated")
            && malformed + gone > n(&sent, "truncated") + n(&sent, "cut_prefix")
            && ends
                .keys()
                .all(|k| { ["stop", "PeerGone", "Malformed", "TooLarge"].contains(&k.as_str()) }),
        "garbage from {start}: sent {sent:?}, connections ended {ends:?}"
    );
    dir.finish()
}

fn unix_listener_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-garbage")?;
    let ep = format!("unix:{}", dir.join("srv").display());
    framed_listener_serves_after_garbage(&ep, dir)
}

fn tcp_listener_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-garbage")?;
    framed_listener_serves_after_garbage("tcp:127.0.0.1:0", dir)
}

/// A datagram receiver (length framing, the library's default) that prints each good message
/// (`got good N`) and, after `stop`, what it refused (`Malformed=3 TooLarge=2 refused=5`).
fn dgram_receiver(args: &[String]) -> Outcome {
    let [ep] = args else {
        return Err("args".into());
    };
    let mut rx = check!(Receiver::bind_with(
        ep.as_str(),
        &Options::default().max_message(MAX)
    ));
    println!("ready");
    flush();
    let mut seen = BTreeMap::<String, u64>::new();
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) if m == b"stop" => break,
            Ok(m) if m.starts_with(b"good ") => {
                println!("got {}", String::from_utf8_lossy(&m));
                flush();
            }
            Ok(_) => *seen.entry("other".into()).or_default() += 1,
            Err(e) if matches!(e.kind(), ErrorKind::Malformed | ErrorKind::TooLarge) => {
                *seen.entry(format!("{:?}", e.kind())).or_default() += 1;
            }
            Err(e) => return Err(format!("the receiver stopped: {e}")),
        }
    }
    let stats = rx.datagram_stats().ok_or("no datagram statistics")?;
    let mut line: Vec<String> = seen.iter().map(|(k, v)| format!("{k}={v}")).collect();
    line.push(format!("refused={}", stats.refused));
    println!("{}", line.join(" "));
    Ok(())
}

/// Sends one datagram.
type SendDatagram = dyn Fn(&[u8]) -> std::io::Result<usize>;

/// Sends `n` garbage datagrams to a receiver; prints how many of each kind.
fn dgram_spray(args: &[String]) -> Outcome {
    let [ep, start, n] = args else {
        return Err("args".into());
    };
    let mut rng = Rng::new(check!(start.parse::<u64>()));
    let send: Box<SendDatagram> = match check!(Endpoint::parse(ep)) {
        Endpoint::Udp { host, port } => {
            let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
            check!(s.connect((host.as_str(), port)));
            Box::new(move |b| s.send(b))
        }
        Endpoint::UnixGram {
            addr: procom::endpoint::UnixAddr::Path(p),
        } => {
            let s = check!(std::os::unix::net::UnixDatagram::unbound());
            Box::new(move |b| s.send_to(b, &p))
        }
        other => return Err(format!("not a datagram endpoint: {other}")),
    };
    let header = |version: u8, seq: u64| {
        let mut h = vec![0xff, b'P', b'C', b'U', version, 0, 0, 0];
        h.extend_from_slice(&seq.to_be_bytes());
        h
    };
    let mut sent = BTreeMap::<&str, u64>::new();
    for _ in 0..check!(n.parse::<u32>()) {
        let (kind, bytes) = match rng.below(5) {
            0 => ("random", rng.some(0, 512)),
            1 => ("empty", Vec::new()),
            2 => {
                // Any version but procom's own (1), which would make a valid datagram.
                let v = (1 + rng.below(255)) as u8;
                let mut h = header(if v == 1 { 0 } else { v }, rng.next());
                h.extend(rng.some(0, 64));
                ("version", h)
            }
            3 => {
                let mut h = header(1, rng.next());
                h.truncate(rng.below(16) as usize);
                ("short", h)
            }
            _ => {
                let mut h = header(1, rng.next());
                h.extend(rng.some(MAX + 1, 400));
                ("oversize", h)
            }
        };
        check!(send(&bytes));
        *sent.entry(kind).or_default() += 1;
    }
    let line: Vec<String> = sent.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    Ok(())
}

/// Bursts of garbage datagrams from another process, each followed by a good message that
/// must arrive; the receiver counts what it refused and its statistics agree.
fn datagram_receiver_serves_after_garbage(bind: &str, udp: bool) -> Outcome {
    let start = garbage_start();
    let mut server = Proc::spawn("receiver", &mut role("garbage::dgram_receiver", &[bind]))?;
    server.expect_line("ready")?;
    let ep = if udp {
        format!("udp:{}", udp_bound(server.pid())?)
    } else {
        bind.to_string()
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    let mut sent = BTreeMap::<String, u64>::new();
    for burst in 0..10 {
        // A burst small enough for the receiver's socket buffer: UDP drops what overflows
        // it, garbage and good alike.
        let spray = Proc::spawn(
            "spray",
            &mut role(
                "garbage::dgram_spray",
                &[&ep, &(start + burst).to_string(), "40"],
            ),
        )?;
        for (k, v) in tally(&spray.success(STEP)?.stdout.join(" ")) {
            *sent.entry(k).or_default() += v;
        }
        let m = format!("good {burst}");
        check!(tx.send(&m).map_err(|e| e.into_error()));
        server
            .expect_line(&format!("got {m}"))
            .map_err(|e| format!("garbage from {start}: {e}"))?;
    }
    check!(tx.send("stop").map_err(|e| e.into_error()));
    let fin = server.success(STEP)?;
    let got = tally(fin.stdout.last().map(String::as_str).unwrap_or(""));
    let n = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let refused = n(&got, "Malformed") + n(&got, "TooLarge");
    ensure!(
        n(&got, "refused") == refused && n(&got, "TooLarge") > 0,
        "garbage from {start}: sent {sent:?}, the receiver saw {got:?}"
    );
    if udp {
        // Without procom's header nothing is delivered: every garbage datagram that arrived
        // was refused (loopback may drop some under load, never deliver them).
        ensure!(
            n(&got, "other") == 0
                && refused <= sent.values().sum::<u64>()
                && n(&got, "Malformed") > 0,
            "garbage from {start}: sent {sent:?}, the receiver saw {got:?}"
        );
    } else {
        // Unix datagrams carry no header and lose nothing: each is delivered or too large.
        ensure!(
            n(&got, "TooLarge") == n(&sent, "oversize")
                && n(&got, "other") + n(&got, "TooLarge") == sent.values().sum::<u64>()
                && n(&got, "Malformed") == 0,
            "garbage from {start}: sent {sent:?}, the receiver saw {got:?}"
        );
    }
    Ok(())
}

fn udp_receiver_serves_after_garbage() -> Outcome {
    datagram_receiver_serves_after_garbage("udp:127.0.0.1:0", true)
}

fn unixgram_receiver_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-garbage")?;
    let ep = format!("unixgram:{}", dir.join("rx").display());
    datagram_receiver_serves_after_garbage(&ep, false)?;
    dir.finish()
}

/// A ring receiver, bound afresh for each of `rounds` rounds: prints every message
/// (`got M`) and how each round ended (`ended Corrupted`); after the rounds, receives `last`.
fn shm_receiver(args: &[String]) -> Outcome {
    let [ep, rounds] = args else {
        return Err("args".into());
    };
    for round in 0..=check!(rounds.parse::<u32>()) {
        let mut rx = check!(Receiver::bind(ep.as_str()));
        println!("ready {round}");
        flush();
        loop {
            match rx.recv_timeout(STEP) {
                Ok(m) if m == b"last" => return Ok(()),
                Ok(m) => println!("got {}", String::from_utf8_lossy(&m)),
                Err(e) => {
                    println!("ended {:?}: {e}", e.kind());
                    break;
                }
            }
            flush();
        }
        flush();
    }
    Err("no last message".into())
}

/// What a hostile process with write access does to a channel's segment (`/dev/shm/NAME`).
fn shm_scribble(args: &[String]) -> Outcome {
    let [name, how, start] = args else {
        return Err("args".into());
    };
    let file = check!(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(format!("/dev/shm{name}"))
    );
    const RING: u64 = 128; // the ring's offset in the segment; its data is 128 bytes further
    let mut tail = [0u8; 8];
    check!(file.read_exact_at(&mut tail, RING + 64));
    let tail = u64::from_le_bytes(tail);
    let capacity = check!(file.metadata()).len() - 2 * RING;
    match how.as_str() {
        "magic" => check!(file.write_all_at(b"GARBAGE!", 0)),
        "length" => {
            // A message header at the receiver's position (the word it polls) announcing more
            // bytes than the ring holds.
            let header = (u64::from(u32::from_le_bytes(*b"MSG1")) << 32) | 0xffff_ff00;
            check!(file.write_all_at(&header.to_le_bytes(), 2 * RING + tail % capacity));
        }
        "record" => {
            // A record with an unknown tag, published as if the sender had written it.
            let mut rec = 8u32.to_le_bytes().to_vec();
            rec.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
            rec.extend_from_slice(b"garbage!");
            check!(file.write_all_at(&rec, 2 * RING + tail % capacity));
            check!(file.write_all_at(&(tail + 16).to_le_bytes(), RING + 64));
        }
        "random" => {
            let mut rng = Rng::new(check!(start.parse::<u64>()));
            check!(file.write_all_at(&rng.bytes(2 * RING as usize), 0));
        }
        other => return Err(format!("no scribble {other}")),
    }
    Ok(())
}

/// A process scribbles on a live channel's segment in four ways; each time the receiver
/// reports `Corrupted` (never a panic, never garbage delivered), and binding the same name
/// again gives a channel that serves a good sender.
fn ring_receiver_reports_scribbles_and_serves_again() -> Outcome {
    let start = garbage_start();
    let name = format!("/{}", unique_name("procom-garbage"));
    let ep = format!("shm:{name}?capacity=4096");
    let hows = ["magic", "length", "record", "random"];
    let mut rx = Proc::spawn(
        "receiver",
        &mut role("garbage::shm_receiver", &[&ep, &hows.len().to_string()]),
    )?;
    for (round, how) in hows.iter().enumerate() {
        rx.expect_line(&format!("ready {round}"))?;
        let mut tx = check!(Sender::connect(format!("shm:{name}").as_str()));
        check!(
            tx.send(format!("hello {round}"))
                .map_err(|e| e.into_error())
        );
        rx.expect_line(&format!("got hello {round}"))?;
        Proc::spawn(
            "scribbler",
            &mut role("garbage::shm_scribble", &[&name, how, &start.to_string()]),
        )?
        .success(STEP)?;
        let line = rx.line(STEP)?;
        ensure!(
            line.starts_with("ended Corrupted"),
            "garbage from {start}: after the {how} scribble the receiver said {line:?}"
        );
        drop(tx);
    }
    rx.expect_line(&format!("ready {}", hows.len()))?;
    let mut tx = check!(Sender::connect(format!("shm:{name}").as_str()));
    check!(tx.send("last").map_err(|e| e.into_error()));
    rx.success(STEP)?;
    drop(tx);
    ensure!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "the channel's segment was left behind"
    );
    Ok(())
}
