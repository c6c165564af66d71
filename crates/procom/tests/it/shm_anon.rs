//! Anonymous shared-memory channels (`procom::shm::channel`, `procom::typed::shm_pair`) across
//! real processes: ends handed to a child as descriptors carry messages both ways, from empty
//! to 1 MiB, and keep what was already in the ring; an end handed to a child that is killed,
//! before or after it took the end up, is reported gone (and every message it sent before is
//! delivered whole); an end whose taker was killed is taken up again from a copy of its
//! descriptor, whoever has the taker's pid by then, and a receiving end taken up so after its
//! taker was killed waiting for a message leaves the sender the whole ring; a descriptor that
//! is not the end asked for, an end taken up twice and an end that was closed are refused.

use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;

use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Trial, check, copies_of_open_files, ensure, role, trials,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "shm_anon::echo",
        run: echo,
    },
    Role {
        name: "shm_anon::holder",
        run: holder,
    },
    Role {
        name: "shm_anon::retaker",
        run: retaker,
    },
    Role {
        name: "shm_anon::streamer",
        run: streamer,
    },
    Role {
        name: "shm_anon::waiter",
        run: waiter,
    },
    Role {
        name: "shm_anon::typed_echo",
        run: typed_echo,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "shm::anonymous":
            ends_handed_to_a_child_carry_messages_both_ways,
            a_typed_pair_crosses_into_a_child,
            an_end_whose_child_is_killed_before_taking_it_up_is_gone,
            a_receiving_end_whose_child_is_killed_is_gone_for_the_sender,
            a_child_killed_mid_stream_leaves_only_whole_messages,
            an_end_whose_taker_was_killed_is_taken_up_again_from_a_kept_copy,
            a_receiving_end_taken_up_after_its_taker_was_killed_waiting_leaves_the_sender_the_whole_ring,
            an_end_handed_over_while_its_use_lock_is_held_elsewhere_is_named_then_taken,
            descriptors_that_are_not_the_end_are_refused,
            zero_copy_sends_and_receives_cross_into_a_child;
    ]
}

/// The ring capacity of every channel here.
const CAPACITY: u64 = 4 << 20;

/// Message `i` of `len` bytes: different for every message and position.
fn msg(i: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u32).wrapping_mul(131).wrapping_add(i.wrapping_mul(7)) as u8)
        .collect()
}

/// A duplicate of this process's descriptor `fd` (standard input or output), owned.
fn taken(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, String> {
    Ok(check!(fd.try_clone_to_owned()))
}

/// The ends handed to this role: the receiving end on standard input, the sending end on
/// standard output.
fn handed_ends() -> Result<(Receiver, Sender), String> {
    let opts = Options::default();
    let rx = check!(Receiver::from_shm_fd(
        taken(std::io::stdin().as_fd())?,
        &opts
    ));
    let tx = check!(Sender::from_shm_fd(
        taken(std::io::stdout().as_fd())?,
        &opts
    ));
    Ok((rx, tx))
}

/// Sends back every message until the sender is gone.
fn echo(_: &[String]) -> Outcome {
    let (mut rx, mut tx) = handed_ends()?;
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) => check!(tx.send(m).map_err(|e| e.into_error())),
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(format!("echo: {e}")),
        }
    }
}

/// Holds the end handed on standard input without taking it up, until killed (or ended by
/// the role's time limit).
fn holder(_: &[String]) -> Outcome {
    println!("holding");
    loop {
        std::thread::park();
    }
}

/// Takes up the sending end handed on standard input and sends numbered 1000-byte messages
/// until killed.
fn streamer(_: &[String]) -> Outcome {
    let mut tx = check!(Sender::from_shm_fd(
        taken(std::io::stdin().as_fd())?,
        &Options::default()
    ));
    for i in 0u32.. {
        check!(tx.send(msg(i, 1000)).map_err(|e| e.into_error()));
    }
    Ok(())
}

/// A typed echo: takes up the typed ends, receives strings and answers each with its length.
fn typed_echo(_: &[String]) -> Outcome {
    let (rx, tx) = handed_ends()?;
    let mut rx = procom::typed::Receiver::<String>::from_untyped(rx);
    let mut tx = procom::typed::Sender::<u64>::from_untyped(tx);
    loop {
        match rx.recv_view_timeout::<&str>(STEP) {
            Ok(s) => {
                let n = s.len() as u64;
                check!(tx.send(n).map_err(|e| e.into_error()));
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(format!("typed echo: {e}")),
        }
    }
}

/// `role` with `rx` on its standard input and `tx` (if any) on its standard output, started;
/// this process's copies of the handed descriptors are closed once it runs.
fn hand_over(name: &str, rx: OwnedFd, tx: Option<OwnedFd>) -> Result<Proc, String> {
    let mut cmd: Command = role(name, &[]);
    cmd.stdin(rx);
    let p = match tx {
        Some(tx) => {
            cmd.stdout(tx);
            Proc::spawn_keep_stdout(name, &mut cmd)?
        }
        None => Proc::spawn(name, &mut cmd)?,
    };
    drop(cmd);
    Ok(p)
}

fn fd_of(end: Option<OwnedFd>) -> Result<OwnedFd, String> {
    end.ok_or_else(|| "an anonymous end gave no descriptor".to_string())
}

fn ends_handed_to_a_child_carry_messages_both_ways() -> Outcome {
    let opts = Options::default();
    let (mut to_child, child_rx) = check!(procom::shm::channel(CAPACITY, &opts));
    let (child_tx, mut from_child) = check!(procom::shm::channel(CAPACITY, &opts));
    ensure!(
        to_child.endpoint() == procom::shm::ANONYMOUS,
        "{}",
        to_child.endpoint()
    );
    // A message in the ring before the hand-over stays there for the child.
    check!(to_child.send(msg(0, 100)).map_err(|e| e.into_error()));
    let child = hand_over(
        "shm_anon::echo",
        fd_of(child_rx.into_fd())?,
        Some(fd_of(child_tx.into_fd())?),
    )?;
    let first = check!(from_child.recv_timeout(STEP));
    ensure!(
        first == msg(0, 100),
        "the message sent before the hand-over"
    );
    for (i, len) in [0usize, 1, 64, 4096, 100_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let m = msg(i as u32 + 1, len);
        check!(to_child.send(&m).map_err(|e| e.into_error()));
        let back = check!(from_child.recv_timeout(STEP));
        ensure!(
            back == m,
            "message of {len} bytes came back as {} bytes",
            back.len()
        );
    }
    // Closing our sending end ends the child, whose end then closes ours.
    drop(to_child);
    child.success(STEP)?;
    let end = from_child.recv_timeout(STEP);
    ensure!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::PeerGone),
        "after the child's exit: {end:?}"
    );
    Ok(())
}

fn a_typed_pair_crosses_into_a_child() -> Outcome {
    let opts = Options::default();
    let ((mut tx, mut rx), (child_tx, child_rx)) =
        check!(procom::typed::shm_pair::<String, u64>(CAPACITY, &opts));
    let child = hand_over(
        "shm_anon::typed_echo",
        fd_of(child_rx.into_untyped().into_fd())?,
        Some(fd_of(child_tx.into_untyped().into_fd())?),
    )?;
    for len in [0usize, 10, 100_000, 1 << 20] {
        let s = "x".repeat(len);
        check!(tx.send_view(s.as_str()));
        let n = check!(rx.recv_timeout(STEP));
        ensure!(n == len as u64, "a {len}-byte string came back as {n}");
    }
    drop(tx);
    child.success(STEP)?;
    Ok(())
}

fn an_end_whose_child_is_killed_before_taking_it_up_is_gone() -> Outcome {
    let (tx, mut rx) = check!(procom::shm::channel(64 << 10, &Options::default()));
    let mut child = hand_over("shm_anon::holder", fd_of(tx.into_fd())?, None)?;
    child.expect_line("holding")?;
    // Alive and holding the end: nothing arrives, and the end is not reported gone.
    let e = rx
        .try_recv()
        .err()
        .ok_or("a message arrived from a child that never sent")?;
    ensure!(
        e.kind() == ErrorKind::Empty,
        "while the child holds it: {e}"
    );
    check!(child.child().kill());
    let _ = child.child().wait();
    let e = rx
        .recv_timeout(STEP)
        .err()
        .ok_or("a message arrived from a killed child")?;
    ensure!(e.kind() == ErrorKind::PeerGone, "after the kill: {e}");
    Ok(())
}

fn a_receiving_end_whose_child_is_killed_is_gone_for_the_sender() -> Outcome {
    let (mut tx, rx) = check!(procom::shm::channel(64 << 10, &Options::default()));
    let mut child = hand_over("shm_anon::holder", fd_of(rx.into_fd())?, None)?;
    child.expect_line("holding")?;
    check!(child.child().kill());
    let _ = child.child().wait();
    // The ring fills (nobody reads it), then the sender finds its receiver gone.
    for i in 0u32..100_000 {
        match tx.send_timeout(msg(i, 64), STEP) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(format!("send {i}: {}", e.into_error())),
        }
    }
    Err("100,000 sends went to a receiver whose child was killed".into())
}

fn a_child_killed_mid_stream_leaves_only_whole_messages() -> Outcome {
    let (tx, mut rx) = check!(procom::shm::channel(64 << 10, &Options::default()));
    let mut child = hand_over("shm_anon::streamer", fd_of(tx.into_fd())?, None)?;
    let mut i = 0u32;
    while i < 100 {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(
            m == msg(i, 1000),
            "message {i} arrived torn or out of order"
        );
        i += 1;
    }
    check!(child.child().kill());
    let _ = child.child().wait();
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) => {
                ensure!(
                    m == msg(i, 1000),
                    "message {i} arrived torn or out of order"
                );
                i += 1;
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(format!("after {i} messages: {e}")),
        }
    }
}

/// The header's sender pid slot.
const SENDER_SLOT: u64 = 36;

fn an_end_whose_taker_was_killed_is_taken_up_again_from_a_kept_copy() -> Outcome {
    use std::os::unix::fs::FileExt;
    let opts = Options::default();
    let (tx, mut rx) = check!(procom::shm::channel(64 << 10, &opts));
    let fd = fd_of(tx.into_fd())?;
    let kept = check!(fd.try_clone());
    let mut child = hand_over("shm_anon::streamer", fd, None)?;
    ensure!(
        check!(rx.recv_timeout(STEP)) == msg(0, 1000),
        "the child's first message"
    );
    // The child took the end up: this process's copy does not take it up beside it.
    let got = Sender::from_shm_fd(check!(kept.try_clone()), &opts)
        .err()
        .map(|e| e.kind());
    ensure!(
        got == Some(ErrorKind::AlreadyExists),
        "taken up beside the child: {got:?}"
    );
    check!(child.child().kill());
    let _ = child.child().wait();
    // Its pid may belong to any process by now (pids are reused): here, a live one is written
    // in the slot the child left.
    let other = Proc::spawn("an unrelated process", Command::new("sleep").arg("600"))?;
    let file = std::fs::File::from(check!(kept.try_clone()));
    check!(file.write_all_at(&other.pid().to_ne_bytes(), SENDER_SLOT));
    let mut tx = check!(Sender::from_shm_fd(kept, &opts));
    check!(tx.send(b"again").map_err(|e| e.into_error()));
    drop(tx);
    let mut i = 1u32;
    loop {
        let m = check!(rx.recv_timeout(STEP));
        if m == b"again" {
            break;
        }
        ensure!(
            m == msg(i, 1000),
            "message {i} arrived torn or out of order"
        );
        i += 1;
    }
    let end = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        end == Some(ErrorKind::PeerGone),
        "after the second sender closed: {end:?}"
    );
    drop(other);
    Ok(())
}

/// The ring's consumer-waiting word in a channel segment: the ring starts 128 bytes in, and
/// the word lies 8 bytes into it (`procom_ring::WAITING_OFFSET`).
const RING_WAITING: u64 = 128 + 8;

/// Takes up the receiving end handed on standard input, receives the four 64-byte messages
/// already in the ring, then waits for a fifth until killed (or ended by the role's time
/// limit).
fn waiter(_: &[String]) -> Outcome {
    let mut rx = check!(Receiver::from_shm_fd(
        taken(std::io::stdin().as_fd())?,
        &Options::default()
    ));
    for i in 0..4u8 {
        ensure!(check!(rx.recv_timeout(STEP)) == [i; 64], "message {i}");
    }
    let m = check!(rx.recv());
    Err(format!("a fifth message arrived: {} bytes", m.len()))
}

/// A receiving end whose taker was killed while it waited for a message (having taken
/// everything up to past the ring's hot window) is taken up again from a kept copy of its
/// descriptor: the new receiver, which does not wait, leaves the sender the whole ring, and
/// every message arrives.
fn a_receiving_end_taken_up_after_its_taker_was_killed_waiting_leaves_the_sender_the_whole_ring()
-> Outcome {
    use std::os::unix::fs::FileExt;
    let opts = Options::default();
    let (mut tx, rx) = check!(procom::shm::channel(64 << 10, &opts));
    for i in 0..4u8 {
        check!(tx.send([i; 64]).map_err(|e| e.into_error()));
    }
    let fd = fd_of(rx.into_fd())?;
    let kept = check!(fd.try_clone());
    let file = std::fs::File::from(check!(kept.try_clone()));
    let mut child = hand_over("shm_anon::waiter", fd, None)?;
    // The child says it waits in the ring once it has taken the four messages and found the
    // ring empty.
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let mut word = [0u8; 8];
        check!(file.read_exact_at(&mut word, RING_WAITING));
        if word != [0; 8] {
            break;
        }
        if let Some(status) = child.exits_within(std::time::Duration::ZERO)? {
            return Err(format!("the child ended before it waited: {status}"));
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the child never said it waits"
        );
        std::thread::yield_now();
    }
    check!(child.child().kill());
    let _ = child.child().wait();
    let mut rx = check!(Receiver::from_shm_fd(kept, &opts));
    let mut n = 0usize;
    loop {
        match tx.try_send([9u8; 64]) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == ErrorKind::Full => break,
            Err(e) => return Err(e.into_error().to_string()),
        }
        ensure!(n <= 1 << 20, "a 64 KiB ring took {n} messages");
    }
    // 72-byte records (64 bytes and the header) in 64 KiB, less the 8 bytes kept for the end
    // mark and the padding at the end of the ring.
    let whole = (64 << 10) / 72;
    ensure!(
        n + 2 >= whole,
        "{n} messages fit in the 64 KiB ring, not {whole}"
    );
    for i in 0..n {
        ensure!(check!(rx.try_recv()) == [9; 64], "message {i}");
    }
    drop(tx);
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "after the sender closed: {e:?}"
    );
    Ok(())
}

/// Copies, in this very process, of every descriptor here of the memfd behind `fd` (the same
/// open files, as a child this process forked would hold them until it executes a program).
fn copies_of_open_files_of(fd: &OwnedFd) -> Result<Vec<OwnedFd>, String> {
    let st = check!(rustix::fs::fstat(fd));
    copies_of_open_files(std::process::id(), (st.st_dev, st.st_ino))
}

/// Takes up the receiving end handed on standard input and receives "first"; then, while
/// copies of its open files are held in this process (see `copies_of_open_files_of`), hands it
/// over and takes it up again from a kept copy of its descriptor, printing what that gave
/// ("refused: ERROR" or "taken"); then, with the copies gone, takes it up once more and prints
/// the next message.
fn retaker(_: &[String]) -> Outcome {
    let opts = Options::default();
    let fd = taken(std::io::stdin().as_fd())?;
    let kept = check!(fd.try_clone());
    let mut rx = check!(Receiver::from_shm_fd(fd, &opts));
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"first", "got {m:?}");
    let copies = copies_of_open_files_of(&kept)?;
    let handed = fd_of(rx.into_fd())?;
    match Receiver::from_shm_fd(check!(kept.try_clone()), &opts) {
        Ok(_) => println!("taken"),
        Err(e) => println!("refused: {e}"),
    }
    drop((copies, handed));
    let mut rx = check!(Receiver::from_shm_fd(kept, &opts));
    let m = check!(rx.recv_timeout(STEP));
    println!("{}", String::from_utf8_lossy(&m));
    Ok(())
}

/// An end handed over while another process still holds the private open file through which
/// it was used (a child its process was forking): taking it up again waits for that a moment,
/// then says so, not that a receiver with pid 0 has it; once that copy is gone it is taken up.
fn an_end_handed_over_while_its_use_lock_is_held_elsewhere_is_named_then_taken() -> Outcome {
    let opts = Options::default();
    let (mut tx, rx) = check!(procom::shm::channel(64 << 10, &opts));
    check!(tx.send(b"first").map_err(|e| e.into_error()));
    let mut child = hand_over("shm_anon::retaker", fd_of(rx.into_fd())?, None)?;
    let line = child.line(STEP)?;
    ensure!(
        line.starts_with("refused: ")
            && line.contains("still holds the receiver end's use lock")
            && !line.contains("pid 0"),
        "taken up again while its use lock is held elsewhere: {line:?}"
    );
    check!(tx.send(b"second").map_err(|e| e.into_error()));
    child.expect_line("second")?;
    child.success(STEP)?;
    Ok(())
}

fn descriptors_that_are_not_the_end_are_refused() -> Outcome {
    let opts = Options::default();
    let kind = |r: Result<Sender, procom::Error>| r.err().map(|e| e.kind());
    let rkind = |r: Result<Receiver, procom::Error>| r.err().map(|e| e.kind());
    let (tx, rx) = check!(procom::shm::channel(64 << 10, &opts));
    let rx_fd = fd_of(rx.into_fd())?;
    // The receiving end's descriptor, as a sender (the sending end is alive: here).
    let got = kind(Sender::from_shm_fd(check!(rx_fd.try_clone()), &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "the other end's: {got:?}"
    );
    // A pipe, and a memfd that holds no channel.
    let (r, _w) = check!(procom::pipe::pipe());
    let got = rkind(Receiver::from_shm_fd(OwnedFd::from(r), &opts));
    ensure!(got == Some(ErrorKind::WrongType), "a pipe: {got:?}");
    let junk = check!(procom::shm::Segment::memfd("junk", 1 << 16, false));
    let junk_fd = check!(junk.fd().ok_or("no descriptor")?.try_clone_to_owned());
    let got = rkind(Receiver::from_shm_fd(junk_fd, &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "a memfd of zeros: {got:?}"
    );
    // Taken up once: a second take-up of the same end is refused while the first lives.
    let again = check!(rx_fd.try_clone());
    let first = check!(Receiver::from_shm_fd(rx_fd, &opts));
    let got = rkind(Receiver::from_shm_fd(check!(again.try_clone()), &opts));
    ensure!(
        got == Some(ErrorKind::AlreadyExists),
        "taken up twice: {got:?}"
    );
    // Closed: not taken up again, even from a descriptor still open.
    drop(first);
    let got = rkind(Receiver::from_shm_fd(again, &opts));
    ensure!(got == Some(ErrorKind::PeerGone), "a closed end: {got:?}");
    drop(tx);
    Ok(())
}

/// `send_with` writes straight into the ring of an end handed over, `recv_with` reads straight
/// from the other; a child echoes between them.
fn zero_copy_sends_and_receives_cross_into_a_child() -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let opts = Options::default();
    let (mut to_child, child_rx) = check!(procom::shm::channel(CAPACITY, &opts));
    let (child_tx, mut from_child) = check!(procom::shm::channel(CAPACITY, &opts));
    let child = hand_over(
        "shm_anon::echo",
        fd_of(child_rx.into_fd())?,
        Some(fd_of(child_tx.into_fd())?),
    )?;
    for (i, len) in [0usize, 7, 4096, 1 << 20].into_iter().enumerate() {
        let m = msg(i as u32, len);
        check!(to_child.send_with(len, |buf| {
            for (b, v) in buf.iter().zip(&m) {
                b.store(*v, Relaxed);
            }
        }));
        let same = check!(from_child.recv_with(|buf| {
            buf.len() == len && buf.iter().zip(&m).all(|(b, v)| b.load(Relaxed) == *v)
        }));
        ensure!(same, "a {len}-byte message came back changed");
    }
    drop(to_child);
    child.success(STEP)?;
    let end = from_child.recv_with(|buf| buf.len());
    ensure!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::PeerGone),
        "after the child's exit: {end:?}"
    );
    Ok(())
}
