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
//! | `unix:`, `unixpacket:`, typed over `unix:` | `PeerGone` | `PeerGone` | a stale socket file is removed by the next receiver's bind |
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
//! Rounds: `PROCOM_CHAOS_ROUNDS` per trial (default 20); a run prints its random start, and
//! `PROCOM_CHAOS_START` replays one.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role};

use crate::flavors::{FLAVORS, Flavor, Mech, Rx, Tx, find, place, port_endpoint, taken};
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

fn rounds() -> u32 {
    std::env::var("PROCOM_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
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

/// The figures of one trial, printed at its end.
#[derive(Default)]
struct Figures {
    rounds: u32,
    checked: u64,
    lost: u64,
    mid_message: u32,
    to_gone: Vec<Duration>,
    /// From the last message received (or the kill, if later) to `PeerGone`: the part of
    /// `to_gone` that is not spent receiving what the peer sent before it died.
    idle_to_gone: Vec<Duration>,
}

impl Figures {
    fn print(&self, trial: &str, start: u64, learns: bool) {
        let gone = if learns {
            let idle = if self.idle_to_gone.is_empty() {
                String::new()
            } else {
                format!(
                    "; after the last message {}",
                    traffic::spread(&self.idle_to_gone)
                )
            };
            format!("kill to PeerGone {}{idle}", traffic::spread(&self.to_gone))
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
        let mut order = Order::starting_at(0);
        let mut killed: Option<Instant> = None;
        let mut last = Instant::now();
        let mut cut = false;
        let what = |e: &dyn std::fmt::Display| format!("{} round {round}: {e}", f.name);
        loop {
            match rx.recv(Some(STEP)) {
                Ok(m) => {
                    last = Instant::now();
                    if !accept(f, round, &mut order, &m).map_err(|e| what(&e))? {
                        continue;
                    }
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
                    fig.idle_to_gone.push(last.max(at).elapsed());
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
                        accept(f, round, &mut order, &m).map_err(|e| what(&e))?;
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

/// Checks a message received in round `round`: intact, in order, and from this round's
/// sender. Over UDP a datagram of an earlier round's sender may still come late (the kernel
/// may deliver loopback traffic after its sender is gone): it is checked, not counted
/// (`Ok(false)`).
fn accept(f: &Flavor, round: u32, order: &mut Order, m: &[u8]) -> Result<bool, String> {
    let seen = traffic::check(m)?;
    if f.mech == Mech::Udp && seen.stream < round {
        return Ok(false);
    }
    ensure!(
        seen.stream == round,
        "a message of sender {} arrived",
        seen.stream
    );
    if f.mech == Mech::Udp {
        order.lossy(seen.seq)?;
    } else {
        order.reliable(seen.seq)?;
    }
    Ok(true)
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
        // What a new receiver must see first: the next message sent, except from a queue,
        // which may still hold what the killed receiver left.
        let first = if f.leaves_object() {
            "-".to_string()
        } else {
            seq.to_string()
        };
        let until = if last {
            (seq + LAST - 1).to_string()
        } else {
            "-".into()
        };
        let (mut child, pipe_tx) = loop {
            match spawn_receiver(f, &place.ep, left_behind, &first, &until) {
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
    first: &str,
    until: &str,
) -> Result<(Proc, Option<procom::pipe::PipeWriter>), String> {
    let mode = if left_behind { "connect" } else { "bind" };
    let mut cmd = role("chaos::recv", &[f.name, ep, mode, first, until]);
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

/// Receives and checks the flavor's traffic (from message `first`, when it is known) until
/// killed, or, given a last sequence number, until it has seen it; says `ok N` after each message and `bad WHY` at the first fault.
fn recv_role(args: &[String]) -> Outcome {
    use std::io::Write;
    let [name, ep, mode, first, until] = args else {
        return Err(format!("bad arguments {args:?}"));
    };
    let f = find(name)?;
    let until: Option<u64> = until.parse().ok();
    let mut order = first
        .parse()
        .map_or_else(|_| Order::default(), Order::starting_at);
    let mut rx = if ep == "-" {
        Rx::new(f, check!(Receiver::connect("-")))
    } else {
        check!(Rx::open(f, ep, mode == "bind"))
    };
    println!("ready");
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
        let _ = writeln!(out, "ok {}", order.count);
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
    ensure!(
        Order::starting_at(0).reliable(1).is_err(),
        "a lost first message passed"
    );
    let mut l = Order::default();
    check!(l.lossy(1));
    check!(l.lossy(4));
    ensure!(l.lost == 2, "two lost datagrams counted as {}", l.lost);
    ensure!(l.lossy(4).is_err(), "a duplicate datagram passed");
    Ok(())
}

const HEADER_END: usize = traffic::HEADER;
