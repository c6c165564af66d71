//! Shared memory across real processes: POSIX, memfd and System V segments, typed regions,
//! headers that refuse foreign segments, and the shm: channel against dying, returning and
//! hostile peers.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use procom::endpoint::SysvKey;
use procom::shm::{Header, Kind, Segment, TypedRegion};
use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, as_nobody, check, copies_of_open_files,
    ensure, needs, plant, role, trials, unique_name,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "shm::write_posix",
        run: write_posix,
    },
    Role {
        name: "shm::read_fd0",
        run: read_fd0,
    },
    Role {
        name: "shm::sysv_writer",
        run: sysv_writer,
    },
    Role {
        name: "shm::open_denied",
        run: open_denied,
    },
    Role {
        name: "shm::sender",
        run: sender,
    },
    Role {
        name: "shm::receiver",
        run: receiver,
    },
    Role {
        name: "shm::scribbler",
        run: scribbler,
    },
    Role {
        name: "shm::wrap_receiver",
        run: wrap_receiver,
    },
    Role {
        name: "shm::wrap_sender",
        run: wrap_sender,
    },
    Role {
        name: "shm::header_scribbler",
        run: header_scribbler,
    },
    Role {
        name: "shm::sender_outlived",
        run: sender_outlived,
    },
    Role {
        name: "shm::sender_again",
        run: sender_again,
    },
    Role {
        name: "shm::burst",
        run: burst,
    },
    Role {
        name: "shm::waiting_flipper",
        run: waiting_flipper,
    },
    Role {
        name: "shm::mixed_sender",
        run: mixed_sender,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "shm":
            posix_segment_is_shared,
            a_sender_that_finds_the_channel_mid_setup_waits_for_it,
            memfd_passed_to_a_child_is_sealed,
            sysv_segment_by_key,
            creation_is_exclusive_and_private,
            another_user_cannot_open_a_segment [needs::root()],
            foreign_segment_is_refused,
            channel_sender_killed_then_replaced,
            channel_receiver_killed_is_stale_and_reclaimed,
            channel_receiver_killed_is_gone_though_its_pid_lives_on,
            channel_sender_killed_is_gone_though_its_pid_lives_on,
            channel_one_sender_at_a_time,
            channel_a_closed_senders_open_file_held_elsewhere_is_named_then_replaced,
            channel_senders_of_one_process_follow_each_other,
            channel_locks_planted_by_another_open_file_are_named_never_peer_gone,
            channel_hostile_scribbler,
            channel_a_peer_flipping_the_waiting_word_loses_and_breaks_nothing,
            channel_truncated_under_the_receiver,
            channel_zero_copy_paths,
            channel_full_ring,
            channel_a_receiver_away_after_catching_up_leaves_the_sender_the_whole_ring,
            channel_a_receiver_whose_handler_panicked_leaves_the_sender_the_whole_ring,
            channel_one_thread_sends_a_batch_then_receives_it_through_the_whole_ring,
            channel_receiver_marked_closed_keeps_its_name,
            channel_closing_receiver_never_removes_a_successor,
            channel_wrapping_sends_never_wait_for_the_liveness_tick,
            a_spin_too_long_to_represent_still_times_out,
            channel_wrapping_spinning_sends_never_wait_for_the_liveness_tick,
            planted_link_fifo_or_directory_is_never_used,
            empty_segment_is_refused,
            channel_header_scribbled_is_corrupted_on_both_sides;
    ]
}

fn shm_name() -> String {
    format!("/{}", unique_name("procom-it"))
}

fn dev_shm(name: &str) -> std::path::PathBuf {
    format!("/dev/shm{name}").into()
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Frame {
    seq: u64,
    width: u32,
    height: u32,
    checksum: u64,
}

/// Opens a POSIX segment by name and stores a Frame in it.
fn write_posix(args: &[String]) -> Outcome {
    let seg = check!(Segment::open(&args[0]));
    let map = check!(seg.map());
    let region = check!(TypedRegion::<Frame>::new(&map, 64));
    check!(region.store(&Frame {
        seq: 7,
        width: 640,
        height: 480,
        checksum: 0xfeed
    }));
    Ok(())
}

fn posix_segment_is_shared() -> Outcome {
    let name = shm_name();
    let seg = check!(Segment::create(&name, 4096));
    let info = check!(seg.info());
    ensure!(
        info.size == 4096 && info.mode == 0o600 && info.kind == Kind::Posix,
        "info {info:?}"
    );
    let map = check!(seg.map());
    Proc::spawn("writer", &mut role("shm::write_posix", &[&name]))?.success(STEP)?;
    let got = check!(check!(TypedRegion::<Frame>::new(&map, 64)).load());
    ensure!(
        got == Frame {
            seq: 7,
            width: 640,
            height: 480,
            checksum: 0xfeed
        },
        "read {got:?}"
    );
    drop(map);
    drop(seg);
    ensure!(
        !dev_shm(&name).exists(),
        "the creator did not remove its segment"
    );
    Ok(())
}

/// Maps the memfd it inherited as standard input, checks the text, tries to shrink it.
fn read_fd0(_: &[String]) -> Outcome {
    let fd = check!(std::io::stdin().lock().as_fd_owned());
    let seg = Segment::from_fd(fd, true);
    let map = check!(seg.map());
    let mut buf = [0u8; 5];
    check!(map.read(100, &mut buf));
    ensure!(&buf == b"hello", "read {buf:?}");
    let shrink = rustix::fs::ftruncate(seg.fd().ok_or("fd")?, 10);
    ensure!(shrink.is_err(), "a sealed memfd could be shrunk");
    check!(map.write(200, b"world"));
    Ok(())
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}
impl AsFdOwned for std::io::StdinLock<'_> {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        std::os::fd::AsFd::as_fd(self).try_clone_to_owned()
    }
}

fn memfd_passed_to_a_child_is_sealed() -> Outcome {
    let seg = check!(Segment::memfd("procom-test", 4096, true));
    ensure!(check!(seg.info()).sealed == Some(true), "not sealed");
    let map = check!(seg.map());
    check!(map.write(100, b"hello"));
    let fd = check!(seg.fd().ok_or("fd")?.try_clone_to_owned());
    let mut cmd = role("shm::read_fd0", &[]);
    cmd.stdin(Stdio::from(fd));
    Proc::spawn("child", &mut cmd)?.success(STEP)?;
    let mut buf = [0u8; 5];
    check!(map.read(200, &mut buf));
    ensure!(
        &buf == b"world",
        "the child's write is not visible: {buf:?}"
    );
    Ok(())
}

fn sysv_writer(args: &[String]) -> Outcome {
    let key: i32 = check!(args[0].parse::<i32>());
    let seg = check!(Segment::open_sysv(&SysvKey::Key(key)));
    let map = check!(seg.map());
    check!(map.write(0, b"from a child"));
    let info = check!(seg.info());
    // The parent and this child at least. A process that another test of the parent forks at
    // this moment inherits the parent's attachment until it execs, so 3 is possible too.
    ensure!(
        info.attached.is_some_and(|n| n >= 2),
        "attach count {:?}",
        info.attached
    );
    Ok(())
}

fn sysv_segment_by_key() -> Outcome {
    let key = (std::process::id() as i32 & 0xffff) | 0x5100_0000;
    let seg = check!(Segment::create_sysv(&SysvKey::Key(key), 8192));
    let info = check!(seg.info());
    ensure!(
        info.kind == Kind::SysV && info.size == 8192 && info.mode == 0o600,
        "info {info:?}"
    );
    let map = check!(seg.map());
    Proc::spawn("child", &mut role("shm::sysv_writer", &[&key.to_string()]))?.success(STEP)?;
    let mut buf = [0u8; 12];
    check!(map.read(0, &mut buf));
    ensure!(&buf == b"from a child", "read {buf:?}");
    let again = Segment::create_sysv(&SysvKey::Key(key), 8192)
        .err()
        .map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::AlreadyExists),
        "second create: {again:?}"
    );
    drop(map);
    check!(seg.remove());
    let gone = Segment::open_sysv(&SysvKey::Key(key))
        .err()
        .map(|e| e.kind());
    ensure!(gone == Some(ErrorKind::NotFound), "after removal: {gone:?}");
    Ok(())
}

/// As uid 65534: a root-owned 0600 segment cannot be opened.
fn open_denied(args: &[String]) -> Outcome {
    let e = Segment::open(&args[0])
        .err()
        .ok_or("opened a 0600 segment as another user")?;
    ensure!(e.kind() == ErrorKind::PermissionDenied, "got {e}");
    let e = Sender::connect(format!("shm:{}", args[0]))
        .err()
        .ok_or("connected to a 0600 channel as another user")?;
    ensure!(e.kind() == ErrorKind::PermissionDenied, "got {e}");
    Ok(())
}

fn creation_is_exclusive_and_private() -> Outcome {
    let name = shm_name();
    let seg = check!(Segment::create(&name, 1024));
    let e = Segment::create(&name, 1024).err().ok_or("created twice")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("does not adopt"),
        "got {e}"
    );
    let bad = Segment::create("no-slash", 10).err().map(|e| e.kind());
    ensure!(
        bad == Some(ErrorKind::InvalidInput),
        "bad name gave {bad:?}"
    );
    drop(seg);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// A segment is created 0600: another (unprivileged) user can open it neither as a segment
/// nor as a channel.
fn another_user_cannot_open_a_segment() -> Outcome {
    let name = shm_name();
    let seg = check!(Segment::create(&name, 1024));
    let mut cmd = role("shm::open_denied", &[&name]);
    Proc::spawn("nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
    drop(seg);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn foreign_segment_is_refused() -> Outcome {
    let name = shm_name();
    // Another program's segment: the right size for a channel, but not our header.
    let seg = check!(Segment::create(&name, 256 + 4096));
    let map = check!(seg.map());
    check!(map.write(0, b"NOTOURS!garbage-garbage"));
    let e = Sender::connect(format!("shm:{name}"))
        .err()
        .ok_or("attached to a foreign segment")?;
    ensure!(e.kind() == ErrorKind::Corrupted, "got {e}");
    let e = Receiver::bind(format!("shm:{name}"))
        .err()
        .ok_or("a receiver adopted a foreign segment")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("not a procom channel"),
        "got {e}"
    );
    // A procom header of another version (1: the ring whose consumer polled the shared tail;
    // 2: ends watched by pid, whose peers would take today's for dead), and one whose size
    // does not match, are refused.
    for version in [1u32, 2, 9] {
        let header = Header {
            magic: *b"PROCOMCH",
            version,
            flags: 0,
            layout_size: 256 + 4096,
        };
        check!(map.write(0, bytemuck::bytes_of(&header)));
        check!(map.write(8, &version.to_le_bytes()));
        let e = Sender::connect(format!("shm:{name}"))
            .err()
            .ok_or_else(|| format!("accepted version {version}"))?;
        ensure!(
            e.to_string()
                .contains(&format!("layout version is {version}")),
            "got {e}"
        );
    }
    let header = Header {
        magic: *b"PROCOMCH",
        version: 3,
        flags: 0,
        layout_size: 999,
    };
    check!(map.write(0, bytemuck::bytes_of(&header)));
    let e = Sender::connect(format!("shm:{name}"))
        .err()
        .ok_or("accepted a wrong size")?;
    ensure!(e.to_string().contains("truncated or resized"), "got {e}");
    drop(map);
    check!(seg.remove());
    Ok(())
}

/// Attaches to the channel and sends numbered messages; `forever` keeps sending 64 KiB ones.
fn sender(args: &[String]) -> Outcome {
    let [ep, mode] = args else {
        return Err("args".into());
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    match mode.as_str() {
        "three" => {
            for m in ["a", "b", "c"] {
                check!(tx.send(m).map_err(|e| e.into_error()));
            }
            Ok(())
        }
        "forever" => {
            check!(tx.send("first").map_err(|e| e.into_error()));
            println!("sent");
            let big = vec![0x42u8; 64 << 10];
            loop {
                check!(tx.send(&big).map_err(|e| e.into_error()));
            }
        }
        other => Err(format!("mode {other}")),
    }
}

fn is_whole_big(m: &[u8]) -> bool {
    m.len() == 64 << 10 && m.iter().all(|b| *b == 0x42)
}

fn channel_sender_killed_then_replaced() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=256KiB");
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = Proc::spawn("sender", &mut role("shm::sender", &[&ep, "forever"]))?;
    tx.expect_line("sent")?;
    ensure!(check!(rx.recv_timeout(STEP)) == b"first", "first message");
    check!(tx.child().kill());
    tx.finish(STEP)?;
    whole_then_gone_then_replaced(rx, &ep, is_whole_big)?;
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// After a `shm::sender forever` child was killed: everything it committed arrives whole
/// (`whole` says so of each message), then PeerGone, never a torn message; then a new sender
/// attaches to the same endpoint `ep` and is heard. Drops `rx`.
fn whole_then_gone_then_replaced(
    mut rx: Receiver,
    ep: &str,
    whole: impl Fn(&[u8]) -> bool,
) -> Outcome {
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) => ensure!(
                whole(&m),
                "a partial {}-byte message was delivered",
                m.len()
            ),
            Err(e) if e.kind() == ErrorKind::PeerGone => break,
            Err(e) => return Err(format!("after the kill: {e}")),
        }
    }
    a_new_sender_is_heard(&mut rx, ep)
}

/// A `shm::sender three` child attaches to `ep`: its three messages arrive in order.
fn a_new_sender_is_heard(rx: &mut Receiver, ep: &str) -> Outcome {
    Proc::spawn("sender", &mut role("shm::sender", &[ep, "three"]))?.success(STEP)?;
    for want in [&b"a"[..], b"b", b"c"] {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(m == want, "got {m:?}");
    }
    Ok(())
}

/// Binds the channel, says ready, then waits (to be killed, or until standard input closes).
/// With `spin-max`, it binds with a spin too long to represent and first checks that an empty
/// receive still times out.
fn receiver(args: &[String]) -> Outcome {
    let _rx = if args.get(1).is_some_and(|a| a == "spin-max") {
        let mut rx = check!(Receiver::bind(with_spin(&args[0], SPIN_MAX)));
        let e = rx
            .recv_timeout(Duration::from_millis(30))
            .err()
            .map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::Timeout),
            "the empty receive gave {e:?}"
        );
        rx
    } else {
        check!(Receiver::bind(args[0].as_str()))
    };
    println!("ready");
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn channel_receiver_killed_is_stale_and_reclaimed() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut owner = receiver_child(&ep, &[])?;
    // While it lives, nobody else may take the name.
    let e = Receiver::bind(&ep)
        .err()
        .ok_or("took a live channel's name")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("live channel"),
        "got {e}"
    );
    let mut tx = check!(Sender::connect(&ep));
    check!(owner.child().kill());
    owner.finish(STEP)?;
    ensure!(
        dev_shm(&name).exists(),
        "the killed receiver's segment vanished by itself"
    );
    // The sender learns its receiver is gone: a send that finds room may still go into the
    // ring (liveness is re-checked every few milliseconds, not per message), but sends do not
    // succeed for long: the next check, or a full ring, reports PeerGone.
    let mut sent = 0u32;
    let e = loop {
        match tx.send_timeout(b"anyone?", STEP) {
            Ok(()) => sent += 1,
            Err(e) => break e.kind(),
        }
        ensure!(sent < 1_000_000, "a million sends went to a dead receiver");
    };
    ensure!(
        e == ErrorKind::PeerGone,
        "send to a dead receiver gave {e:?}"
    );
    drop(tx);
    // The next receiver detects the stale segment and reclaims the name.
    let rx = check!(Receiver::bind(&ep));
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// The header's pid slots: the receiver's, then the sender's.
const RECEIVER_SLOT: usize = 32;
const SENDER_SLOT: usize = 36;

/// A process that lives until the test ends (killed when dropped), to stand for one the
/// kernel gave a dead end's pid to: pids are reused once the kernel has gone round its pid
/// space (`kernel.pid_max`, 32768 on many machines), so a killed end's pid may belong to any
/// process later.
fn unrelated_process() -> Result<Proc, String> {
    Proc::spawn(
        "an unrelated process",
        std::process::Command::new("sleep").arg("600"),
    )
}

/// Writes `pid` into the pid slot at `off` of the channel `name`'s header, as if the process
/// that left it there had died and the kernel had handed its pid to `pid`.
fn reuse_pid(name: &str, off: usize, pid: u32) -> Outcome {
    let seg = check!(Segment::open(name));
    let map = check!(seg.map());
    map.atomic_u32(off)
        .ok_or("no pid slot")?
        .store(pid, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

fn channel_receiver_killed_is_gone_though_its_pid_lives_on() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut owner = receiver_child(&ep, &[])?;
    check!(owner.child().kill());
    owner.finish(STEP)?;
    let other = unrelated_process()?;
    reuse_pid(&name, RECEIVER_SLOT, other.pid())?;
    let e = Sender::connect(&ep).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "connecting to a killed receiver whose pid another process has: {e:?}"
    );
    // A new receiver takes the name over, and is heard.
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = check!(Sender::connect(&ep));
    check!(tx.send(b"to the new one").map_err(|e| e.into_error()));
    ensure!(
        check!(rx.recv_timeout(STEP)) == b"to the new one",
        "message"
    );
    drop((tx, rx));
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn channel_sender_killed_is_gone_though_its_pid_lives_on() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=256KiB");
    let rx = check!(Receiver::bind(&ep));
    let mut tx = Proc::spawn("sender", &mut role("shm::sender", &[&ep, "forever"]))?;
    tx.expect_line("sent")?;
    check!(tx.child().kill());
    tx.finish(STEP)?;
    let other = unrelated_process()?;
    reuse_pid(&name, SENDER_SLOT, other.pid())?;
    // Not a wait for a sender that is not there; and a new sender takes its place.
    whole_then_gone_then_replaced(rx, &ep, |m| m == b"first" || is_whole_big(m))?;
    drop(other);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// Connects a sender and says "attached"; once told (a line on standard input) that another
/// process holds copies of its open file, drops it and connects again, printing what that
/// gave ("refused: ERROR" or "connected"); once told the copies are gone, connects a third
/// time and sends "after".
fn sender_outlived(args: &[String]) -> Outcome {
    let [ep] = args else {
        return Err("args".into());
    };
    let mut stdin = std::io::stdin().lines();
    let mut next_line = || -> Outcome {
        match stdin.next() {
            Some(Ok(_)) => Ok(()),
            other => Err(format!("standard input: {other:?}")),
        }
    };
    let tx = check!(Sender::connect(ep.as_str()));
    println!("attached");
    next_line()?;
    drop(tx);
    match Sender::connect(ep.as_str()) {
        Ok(_) => println!("connected"),
        Err(e) => println!("refused: {e}"),
    }
    next_line()?;
    let mut tx = check!(Sender::connect(ep.as_str()));
    check!(tx.send(b"after").map_err(|e| e.into_error()));
    Ok(())
}

/// A sender that closed while another process still holds its open file (a child its process
/// forked, before that child executes a program) still holds the sender lock: the next sender
/// is refused with that said, not with a sender "pid 0" that does not exist, and attaches once
/// the copy is gone.
fn channel_a_closed_senders_open_file_held_elsewhere_is_named_then_replaced() -> Outcome {
    use std::io::Write;
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut rx = check!(Receiver::bind(&ep));
    let mut cmd = role("shm::sender_outlived", &[&ep]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("sender", &mut cmd)?;
    child.expect_line("attached")?;
    // Copies of the sender's open file, in this process (as a forked child would hold them).
    let segment = check!(std::fs::metadata(dev_shm(&name)));
    let copies = copies_of_open_files(child.pid(), (segment.dev(), segment.ino()))?;
    ensure!(!copies.is_empty(), "the sender has no descriptor of {name}");
    let mut stdin = child.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "held"));
    let line = child.line(STEP)?;
    ensure!(
        line.starts_with("refused: ")
            && line.contains("its last sender closed")
            && !line.contains("pid 0"),
        "a sender while the closed one's open file is held elsewhere: {line:?}"
    );
    drop(copies);
    check!(writeln!(stdin, "released"));
    drop(stdin);
    child.success(STEP)?;
    // The closed sender's end, then the third sender's message.
    let e = rx.recv_timeout(STEP);
    let m = match e {
        Err(e) if e.kind() == ErrorKind::PeerGone => check!(rx.recv_timeout(STEP)),
        other => check!(other),
    };
    ensure!(m == b"after", "got {m:?}");
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// Connects, sends its round's number and drops the sender, `rounds` times over: senders of
/// one process (one pid) following each other.
fn sender_again(args: &[String]) -> Outcome {
    let [ep, rounds] = args else {
        return Err("args".into());
    };
    let rounds: u32 = check!(rounds.parse());
    for i in 0..rounds {
        let mut tx = check!(Sender::connect(ep.as_str()));
        check!(tx.send(i.to_le_bytes()).map_err(|e| e.into_error()));
    }
    Ok(())
}

/// A process with the segment open that locks the bytes whose locks stand for the ends (0:
/// the receiver's, 1: the sender's, 2 and 3: an anonymous channel's use bytes): it cannot take
/// a live end's; one it takes while no sender is attached keeps senders out with that said,
/// and the receiver goes on waiting for a sender, never told it is gone.
fn channel_locks_planted_by_another_open_file_are_named_never_peer_gone() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut rx = check!(Receiver::bind(&ep));
    let planter = check!(Segment::open(&name));
    let fd = planter.fd().ok_or("no descriptor")?;
    let planted: Vec<bool> = (0..4)
        .map(|b| procom_sys::ofd_lock::lock_byte(fd, b))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("lock: {e}"))?;
    ensure!(
        planted == [false, true, true, true],
        "took the live receiver's lock, or not the others: {planted:?}"
    );
    let fin = Proc::spawn("sender", &mut role("shm::sender", &[&ep, "three"]))?.finish(STEP)?;
    ensure!(
        !fin.status.success()
            && fin.stderr.contains("holds its sender lock")
            && !fin.stderr.contains("pid 0"),
        "a sender while another open file holds the sender lock: {fin:?}"
    );
    let e = rx
        .recv_timeout(Duration::from_millis(100))
        .err()
        .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Timeout),
        "the receiver while no sender is attached: {e:?}"
    );
    // Its locks go with its open file: the next sender attaches and is heard.
    drop(planter);
    a_new_sender_is_heard(&mut rx, &ep)?;
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// Senders of one process, one after the other: each is heard, the end of one is not taken
/// for the end of the next (the same pid in the slot), and the last one's close ends it all.
fn channel_senders_of_one_process_follow_each_other() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut rx = check!(Receiver::bind(&ep));
    let rounds = 200u32;
    let child = Proc::spawn(
        "senders",
        &mut role("shm::sender_again", &[&ep, &rounds.to_string()]),
    )?;
    let mut next = 0u32;
    while next < rounds {
        match rx.recv_timeout(STEP) {
            Ok(m) => {
                ensure!(m == next.to_le_bytes(), "message {next}: got {m:?}");
                next += 1;
            }
            // One sender closed; the next may not have attached yet.
            Err(e) if e.kind() == ErrorKind::PeerGone => {}
            Err(e) => return Err(format!("after {next} messages: {e}")),
        }
    }
    child.success(STEP)?;
    let end = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        end == Some(ErrorKind::PeerGone),
        "after the last sender: {end:?}"
    );
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn channel_one_sender_at_a_time() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = check!(Sender::connect(&ep));
    let mut cmd = role("shm::sender", &[&ep, "three"]);
    let fin = Proc::spawn("second sender", &mut cmd)?.finish(STEP)?;
    ensure!(
        !fin.status.success() && fin.stderr.contains("already has a sender"),
        "second sender: {fin:?}"
    );
    check!(tx.send(b"x").map_err(|e| e.into_error()));
    ensure!(check!(rx.recv_timeout(STEP)) == b"x", "message");
    let e = Sender::bind_with(&ep, &Options::default())
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::InvalidInput), "bind as sender: {e:?}");
    Ok(())
}

/// Scribbles garbage over the channel's ring control words in a loop until killed.
fn scribbler(args: &[String]) -> Outcome {
    let seg = check!(Segment::open(&args[0]));
    let map = check!(seg.map());
    println!("scribbling");
    let mut rng = crate::traffic::Rng::new(0x9e37_79b9_7f4a_7c15);
    loop {
        let x = rng.next();
        // The channel header's control words (pids, sequence numbers, state) and the ring's.
        for off in [32usize, 40, 48, 56, 128, 192, 256, 264] {
            if let Some(w) = map.atomic_u64(off) {
                w.store(
                    x.rotate_left(off as u32),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }
}

fn channel_hostile_scribbler() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=64KiB");
    let mut rx = check!(Receiver::bind(&ep));
    let mut hostile = Proc::spawn("scribbler", &mut role("shm::scribbler", &[&name]))?;
    hostile.expect_line("scribbling")?;
    // The receiver never crashes, hangs or reads out of bounds: it reports Corrupted (or
    // sees nothing yet) and, once corrupted, stays detached.
    let mut corrupted = false;
    for _ in 0..200 {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Err(e) if e.kind() == ErrorKind::Corrupted => {
                corrupted = true;
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::PeerGone) => {}
            Err(e) => return Err(format!("unexpected {e}")),
            Ok(m) => ensure!(m.len() <= 64 << 10, "delivered {} bytes", m.len()),
        }
    }
    check!(hostile.child().kill());
    hostile.finish(STEP)?;
    ensure!(
        corrupted,
        "garbage control words were never reported as Corrupted"
    );
    let again = rx.try_recv().err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::Corrupted),
        "after corruption: {again:?}"
    );
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// Writes the ring's consumer-waiting word over and over (all ones, 0, 1, the top bit alone,
/// pseudo-random values) until killed.
fn waiting_flipper(args: &[String]) -> Outcome {
    let seg = check!(Segment::open(&args[0]));
    let map = check!(seg.map());
    let word = map
        .atomic_u64(RING_WAITING)
        .ok_or("no ring in the segment")?;
    println!("flipping");
    let mut rng = crate::traffic::Rng::new(0x2545_f491_4f6c_dd1d);
    loop {
        for v in [u64::MAX, 0, 1, 1 << 63, rng.next(), 0] {
            word.store(v, std::sync::atomic::Ordering::Relaxed);
        }
        std::thread::yield_now();
    }
}

/// The sizes `mixed_message` cycles through: inside the hot window and past it, empty, from
/// `STREAM_MIN` to `STREAM_MAX` (never started over for) and above.
const MIXED_SIZES: [usize; 11] = [64, 0, 300, 64, 5000, 64, 20_000, 8, 100_000, 64, 300_000];
const MIXED_MESSAGES: u32 = 440;

/// Message `i` of the mixed stream: its size from `MIXED_SIZES`, bytes that differ with `i`.
fn mixed_message(i: u32) -> Vec<u8> {
    let len = MIXED_SIZES[i as usize % MIXED_SIZES.len()];
    (0..len)
        .map(|k| {
            (k as u32)
                .wrapping_mul(197)
                .wrapping_add(i.wrapping_mul(13)) as u8
        })
        .collect()
}

/// Sends the mixed stream with blocking sends, then exits.
fn mixed_sender(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::connect(args[0].as_str()));
    for i in 0..MIXED_MESSAGES {
        check!(tx.send(mixed_message(i)).map_err(|e| e.into_error()));
    }
    Ok(())
}

/// A peer that writes the ring's consumer-waiting word with any value, all the time, decides
/// at most where the sender puts its messages: a spinning receiver (which says it waits) and
/// a sender streaming messages of every size lose, duplicate, tear or reorder none, see no
/// corruption and no peer gone until the sender has closed.
fn channel_a_peer_flipping_the_waiting_word_loses_and_breaks_nothing() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=1MiB");
    let mut rx = check!(Receiver::bind(with_spin(&ep, "50us")));
    let mut hostile = Proc::spawn("flipper", &mut role("shm::waiting_flipper", &[&name]))?;
    hostile.expect_line("flipping")?;
    let tx = Proc::spawn("sender", &mut role("shm::mixed_sender", &[&ep]))?;
    let mut buf = Vec::new();
    for i in 0..MIXED_MESSAGES {
        let want = mixed_message(i);
        let ok = match i % 3 {
            0 => check!(rx.recv_timeout(STEP)) == want,
            1 => {
                check!(rx.recv_into(&mut buf));
                buf == want
            }
            _ => check!(rx.recv_with(|m| {
                m.len() == want.len()
                    && m.iter()
                        .zip(&want)
                        .all(|(a, b)| a.load(std::sync::atomic::Ordering::Relaxed) == *b)
            })),
        };
        ensure!(ok, "message {i} arrived wrong");
    }
    tx.success(STEP)?;
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "after the stream: {e:?}");
    check!(hostile.child().kill());
    hostile.finish(STEP)?;
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn channel_truncated_under_the_receiver() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=64KiB");
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = check!(Sender::connect(&ep));
    check!(tx.send(b"before").map_err(|e| e.into_error()));
    ensure!(check!(rx.recv_timeout(STEP)) == b"before", "first message");
    check!(tx.send(b"after").map_err(|e| e.into_error()));
    // A hostile peer shrinks the segment to nothing: touching it would be SIGBUS.
    let seg = check!(Segment::open(&name));
    check!(rustix::fs::ftruncate(seg.fd().ok_or("fd")?, 0));
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Corrupted),
        "receiving from a truncated segment gave {e:?}"
    );
    let e = tx.send(b"more").err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Corrupted),
        "sending into a truncated segment gave {e:?}"
    );
    drop((rx, tx, seg));
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn channel_zero_copy_paths() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = check!(Sender::connect(&ep));
    check!(tx.send_with(11, |buf| {
        for (b, v) in buf.iter().zip(b"in-place!!!") {
            b.store(*v, std::sync::atomic::Ordering::Relaxed);
        }
    }));
    let got = check!(rx.recv_with(|bytes| {
        bytes
            .iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .collect::<Vec<u8>>()
    }));
    ensure!(got == b"in-place!!!", "read in place {got:?}");
    let n = got.len();
    ensure!(n == 11, "len {n}");
    Ok(())
}

/// The ring's consumer-waiting word in a channel segment: the ring starts 128 bytes in, and
/// the word lies 8 bytes into it (`procom_ring::WAITING_OFFSET`).
const RING_WAITING: usize = 128 + 8;

/// Sends four 64-byte messages, each once standard input says the last was taken; given a
/// segment name as well, then waits until the receiver says in the ring that it waits for the
/// next message, and sends a fifth, once more until it is taken. Then sends as many as fit
/// without waiting, and prints how many.
fn burst(args: &[String]) -> Outcome {
    let (ep, waited) = match args {
        [ep] => (ep, None),
        [ep, name] => (ep, Some(name)),
        _ => return Err("args".into()),
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    let mut lines = std::io::stdin().lines();
    let mut taken = || match lines.next() {
        Some(Ok(l)) if l == "taken" => Ok(()),
        other => Err(format!("standard input: {other:?}")),
    };
    for i in 0..4u8 {
        check!(tx.send([i; 64]).map_err(|e| e.into_error()));
        taken()?;
    }
    if let Some(name) = waited {
        let map = check!(check!(Segment::open_read_only(name)).map_read_only());
        let deadline = std::time::Instant::now() + STEP;
        while map.load_u64(RING_WAITING, std::sync::atomic::Ordering::Relaxed) == Some(0) {
            ensure!(
                std::time::Instant::now() < deadline,
                "the receiver never said it waits"
            );
            std::thread::yield_now();
        }
        check!(tx.send([4u8; 64]).map_err(|e| e.into_error()));
        taken()?;
    }
    let mut n = 0usize;
    loop {
        match tx.try_send([9u8; 64]) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == ErrorKind::Full => break,
            Err(e) => return Err(e.to_string()),
        }
        ensure!(n <= 1 << 20, "a 64 KiB ring took {n} messages");
    }
    println!("{n}");
    Ok(())
}

/// A receiver that took every message (past the ring's hot window) and then stops receiving
/// leaves the sender the whole ring: the sender does not start over at the front for it, which
/// would leave only the few bytes before the padding until the receiver looked again.
fn channel_a_receiver_away_after_catching_up_leaves_the_sender_the_whole_ring() -> Outcome {
    away_after_catching_up(false)
}

/// The same when the receiver's last receive waited for its message and the closure it gave
/// `recv_with` panicked on it: the panic goes through the receive, which still unsays its
/// wait in the ring, and the message counts as taken.
fn channel_a_receiver_whose_handler_panicked_leaves_the_sender_the_whole_ring() -> Outcome {
    away_after_catching_up(true)
}

/// The burst role's run against a receiver here that takes four messages and (`panicking`)
/// a fifth it waited for, in a `recv_with` whose closure panics; then looks away while the
/// sender fills the ring.
fn away_after_catching_up(panicking: bool) -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=64KiB");
    let mut rx = check!(Receiver::bind(&ep));
    let args: &[&str] = if panicking { &[&ep, &name] } else { &[&ep] };
    let mut cmd = role("shm::burst", args);
    cmd.stdin(Stdio::piped());
    let mut tx = Proc::spawn("burst", &mut cmd)?;
    let mut stdin = tx.child().stdin.take().ok_or("no standard input")?;
    for i in 0..4u8 {
        ensure!(check!(rx.recv_timeout(STEP)) == [i; 64], "message {i}");
        check!(std::io::Write::write_all(&mut stdin, b"taken\n"));
    }
    if panicking {
        // The sender sends once it sees this receive waiting. `resume_unwind` unwinds without
        // the panic hook's report.
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.recv_with(|m| {
                let first = m
                    .first()
                    .map(|b| b.load(std::sync::atomic::Ordering::Relaxed));
                std::panic::resume_unwind(Box::new((m.len(), first)))
            })
        }));
        let payload = match got {
            Err(p) => p.downcast::<(usize, Option<u8>)>().ok().map(|b| *b),
            Ok(r) => return Err(format!("the closure returned: {r:?}")),
        };
        ensure!(
            payload == Some((64, Some(4))),
            "the closure panicked on {payload:?}"
        );
        check!(std::io::Write::write_all(&mut stdin, b"taken\n"));
    }
    let line = tx.line(STEP)?;
    let n: usize = line.parse().map_err(|e| format!("{line:?}: {e}"))?;
    // 72-byte records (64 bytes and the header) in 64 KiB, less the 8 bytes kept for the end
    // mark and the padding at the end of the ring.
    let whole = (64 << 10) / 72;
    ensure!(
        n + 2 >= whole,
        "{n} messages fit in the 64 KiB ring, not {whole}"
    );
    for i in 0..n {
        ensure!(
            check!(rx.recv_timeout(STEP)) == [9; 64],
            "burst message {i}"
        );
    }
    tx.success(STEP)?;
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "after the burst: {e:?}");
    Ok(())
}

/// One thread sends a batch with blocking sends, then receives it with blocking receives,
/// round after round, the ring left empty part of the way through (past its hot window):
/// every batch that fits in the ring is sent without waiting (a wait would never end: nobody
/// else receives), and after each batch the ring takes as many messages as its whole capacity
/// holds before `Full`. Between rounds, an empty `try_recv` and an empty timed receive (which
/// waits, and says so in the ring).
fn channel_one_thread_sends_a_batch_then_receives_it_through_the_whole_ring() -> Outcome {
    // (capacity, message size, batch sent with blocking sends)
    for (cap, len, batch) in [
        (64usize << 10, 64usize, 500usize),
        (64 << 10, 1000, 40),
        (1 << 20, 300_000, 2),
    ] {
        let name = shm_name();
        let ep = format!("shm:{name}?capacity={cap}");
        let mut rx = check!(Receiver::bind(&ep));
        let mut tx = check!(Sender::connect(&ep));
        // Records of the message and its 8-byte header, in the ring less the 8 bytes kept for
        // the end mark; one fewer where the padding at the end of the ring takes its room.
        let record = 8 + len.div_ceil(8) * 8;
        let whole = (cap - 8) / record;
        let what = |round: u8| format!("{cap}-byte ring, {len}-byte messages, round {round}");
        for round in 0..4u8 {
            for i in 0..batch {
                check!(
                    tx.send(vec![round ^ i as u8; len])
                        .map_err(|e| e.into_error())
                );
            }
            for i in 0..batch {
                ensure!(
                    check!(rx.recv()) == vec![round ^ i as u8; len],
                    "{}: message {i}",
                    what(round)
                );
            }
            let mut n = 0;
            loop {
                match tx.try_send(vec![!round ^ n as u8; len]) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == ErrorKind::Full => break,
                    Err(e) => return Err(format!("{}: {e}", what(round))),
                }
                ensure!(n <= whole, "{}: {n} messages, not {whole}", what(round));
            }
            ensure!(
                n + 1 >= whole,
                "{}: Full after {n} messages, not {whole}",
                what(round)
            );
            for i in 0..n {
                ensure!(
                    check!(rx.recv()) == vec![!round ^ i as u8; len],
                    "{}: filling message {i}",
                    what(round)
                );
            }
            let e = rx.try_recv().err().map(|e| e.kind());
            ensure!(e == Some(ErrorKind::Empty), "{}: {e:?}", what(round));
            let e = rx
                .recv_timeout(Duration::from_millis(1))
                .err()
                .map(|e| e.kind());
            ensure!(e == Some(ErrorKind::Timeout), "{}: {e:?}", what(round));
        }
        drop((tx, rx));
        ensure!(!dev_shm(&name).exists(), "leaked {name}");
    }
    Ok(())
}

fn channel_full_ring() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=4KiB");
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = check!(Sender::connect(&ep));
    let msg = vec![1u8; 1000];
    let mut sent = 0;
    let full = loop {
        match tx.try_send(msg.clone()) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        ensure!(sent < 100, "a 4 KiB ring took {sent} KiB");
    };
    ensure!(
        full.kind() == ErrorKind::Full && sent == 4,
        "after {sent} messages: {full}"
    );
    ensure!(
        full.into_message() == msg,
        "the message was not handed back"
    );
    let e = tx
        .send_timeout(&msg, Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Timeout),
        "send_timeout on a full ring: {e:?}"
    );
    let too_big = tx.send(vec![0u8; 5000]).err().map(|e| e.kind());
    ensure!(
        too_big == Some(ErrorKind::TooLarge),
        "a message larger than the ring: {too_big:?}"
    );
    ensure!(check!(rx.recv_timeout(STEP)) == msg, "first message");
    // Room again: the first message's place, less the 8 bytes the ring keeps for its end
    // mark (the fifth record starts over at the front, after padding).
    let smaller = &msg[..990];
    check!(tx.try_send(smaller).map_err(|e| e.into_error()));
    for i in 0..4 {
        let want: &[u8] = if i == 3 { smaller } else { &msg };
        ensure!(check!(rx.recv_timeout(STEP)) == want, "queued message {i}");
    }
    Ok(())
}

/// Message sizes for the wrap-around test, in a 4 KiB ring: records of 1536, 3072, 2056, 512,
/// 3592 and 1024 bytes, so nearly every message either needs a padding record first or waits
/// for one to be skipped, whichever side is ahead.
const WRAP_SIZES: [usize; 6] = [1528, 3064, 2048, 504, 3584, 1016];
const WRAP_MESSAGES: usize = 3000;
/// Far longer than any scheduling hiccup: a sleep that lasts this long was never woken.
const WRAP_LIVENESS: Duration = Duration::from_secs(5);

fn wrap_message(i: usize) -> Vec<u8> {
    vec![i as u8; WRAP_SIZES[i % WRAP_SIZES.len()]]
}

/// The wrap-around test's endpoint: spinning for `args[1]` microseconds before sleeping.
fn wrap_endpoint(args: &[String]) -> Result<String, String> {
    let us: u64 = args
        .get(1)
        .ok_or("no spin given")?
        .parse()
        .map_err(|e| format!("spin: {e}"))?;
    Ok(with_spin(&args[0], &format!("{us}us")))
}

/// A spin too long to represent (`Duration::MAX` and beyond).
const SPIN_MAX: &str = "18446744073709551615s";

/// `ep` with its `?spin=` parameter set to `spin`.
fn with_spin(ep: &str, spin: &str) -> String {
    let sep = if ep.contains('?') { '&' } else { '?' };
    format!("{ep}{sep}spin={spin}")
}

/// Receives the wrap-around stream with blocking receives (spinning first for `args[1]`
/// microseconds); fails as soon as a sleep ends by the liveness tick instead of a wake-up.
fn wrap_receiver(args: &[String]) -> Outcome {
    procom::test_hooks::set_liveness_period(WRAP_LIVENESS);
    let mut rx = check!(Receiver::bind(wrap_endpoint(args)?));
    println!("ready");
    // Waiting for the sender process to start may legitimately take a while: count from the
    // first message on.
    ensure!(check!(rx.recv()) == wrap_message(0), "message 0");
    let ticks = procom::test_hooks::liveness_ticks();
    for i in 1..WRAP_MESSAGES {
        let m = check!(rx.recv());
        ensure!(
            procom::test_hooks::liveness_ticks() == ticks,
            "receiving message {i} waited for the liveness tick: the sender never woke the receiver (lost wake-up)"
        );
        ensure!(m == wrap_message(i), "message {i}: {} bytes", m.len());
    }
    Ok(())
}

/// Sends the wrap-around stream with blocking sends (spinning first for `args[1]`
/// microseconds when the ring is full); fails as soon as a sleep ends by the liveness tick
/// instead of a wake-up.
fn wrap_sender(args: &[String]) -> Outcome {
    procom::test_hooks::set_liveness_period(WRAP_LIVENESS);
    let mut tx = check!(Sender::connect(wrap_endpoint(args)?));
    for i in 0..WRAP_MESSAGES {
        check!(tx.send(wrap_message(i)).map_err(|e| e.into_error()));
        ensure!(
            procom::test_hooks::liveness_ticks() == 0,
            "sending message {i} waited for the liveness tick: the receiver never woke the sender (lost wake-up)"
        );
    }
    Ok(())
}

fn channel_wrapping_sends_never_wait_for_the_liveness_tick() -> Outcome {
    wrapping_sends(0)
}

/// The same with both ends spinning for 20 µs first: a spin that ends finds the ring as it
/// is, some waits end while spinning and some go on to sleep, and none may be lost.
fn channel_wrapping_spinning_sends_never_wait_for_the_liveness_tick() -> Outcome {
    wrapping_sends(20)
}

/// Receives from an empty channel (in a child) and sends into a full one (here) with
/// a spin too long to represent and a short timeout: both time out (no overflow, no panic).
fn a_spin_too_long_to_represent_still_times_out() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=4KiB");
    let rx = receiver_child(&ep, &["spin-max"])?;
    let mut tx = check!(Sender::connect(with_spin(&ep, SPIN_MAX)));
    let msg = vec![1u8; 1000];
    loop {
        match tx.try_send(&msg) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Full => break,
            Err(e) => return Err(format!("filling the ring: {}", e.into_error())),
        }
    }
    let e = tx
        .send_timeout(&msg, Duration::from_millis(30))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "the full send gave {e:?}");
    close_receiver_child(rx)?;
    drop(tx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn wrapping_sends(spin_us: u32) -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}?capacity=4KiB");
    let spin = spin_us.to_string();
    let mut rx = Proc::spawn("receiver", &mut role("shm::wrap_receiver", &[&ep, &spin]))?;
    rx.expect_line("ready")?;
    let tx = Proc::spawn("sender", &mut role("shm::wrap_sender", &[&ep, &spin]))?;
    tx.success(STEP)?;
    rx.success(STEP)?;
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// Starts a receiver in a child that holds the channel until its standard input closes.
fn receiver_child(ep: &str, extra: &[&str]) -> Result<Proc, String> {
    let args: Vec<&str> = std::iter::once(ep).chain(extra.iter().copied()).collect();
    let mut cmd = role("shm::receiver", &args);
    cmd.stdin(Stdio::piped());
    let mut owner = Proc::spawn("receiver", &mut cmd)?;
    owner.expect_line("ready")?;
    Ok(owner)
}

/// Closes a `receiver_child` cleanly (its receiver is dropped, not killed).
fn close_receiver_child(mut owner: Proc) -> Outcome {
    drop(owner.child().stdin.take());
    owner.success(STEP).map(drop)
}

fn channel_receiver_marked_closed_keeps_its_name() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let owner = receiver_child(&ep, &[])?;
    // The state word says "receiver closed" while the receiver still holds the name: the
    // moment a closing receiver passes through (or a peer's scribble). A new receiver must not
    // reclaim the segment then: the old one would go on to remove the new one's name.
    {
        let seg = check!(Segment::open(&name));
        let map = check!(seg.map());
        map.atomic_u32(56)
            .ok_or("no state word")?
            .fetch_or(1, std::sync::atomic::Ordering::SeqCst);
    }
    let e = Receiver::bind(&ep)
        .err()
        .ok_or("reclaimed the name of a receiver that still holds it")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("live channel"),
        "got {e}"
    );
    close_receiver_child(owner)?;
    ensure!(
        !dev_shm(&name).exists(),
        "the receiver did not remove its name"
    );
    // Once it has gone, the name is free again.
    let rx = check!(Receiver::bind(&ep));
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

fn channel_closing_receiver_never_removes_a_successor() -> Outcome {
    let name = shm_name();
    let ep = format!("shm:{name}");
    let owner = receiver_child(&ep, &[])?;
    // Someone removes the name (`procom shm rm`) and a new receiver creates the channel again
    // while the first one still runs: when the first one closes, the name is not its own.
    check!(procom::shm::remove(&name));
    let mut rx = check!(Receiver::bind(&ep));
    close_receiver_child(owner)?;
    ensure!(
        dev_shm(&name).exists(),
        "the old receiver removed the name of the segment that replaced its own"
    );
    a_new_sender_is_heard(&mut rx, &ep)?;
    drop(rx);
    ensure!(!dev_shm(&name).exists(), "leaked {name}");
    Ok(())
}

/// The hostile objects a local user can plant at a /dev/shm name, and the words that must
/// name each in the refusal.
fn plants(victim: &std::path::Path) -> [(Plant<'_>, &'static str); 3] {
    [
        (Plant::Symlink(victim), "is a symbolic link"),
        (Plant::Fifo, "is a FIFO"),
        (Plant::Dir, "is a directory"),
    ]
}

/// A symlink to root's file, a FIFO and a directory, each planted at a /dev/shm name by uid
/// 65534: no open of the name follows, blocks on or uses it, no create adopts it, no removal
/// removes it, and the linked file is never written.
fn planted_link_fifo_or_directory_is_never_used() -> Outcome {
    let scratch = Scratch::new("procom-it-shm")?;
    let victim = scratch.join("victim");
    let original = b"root's file: never written through a link in /dev/shm\n".repeat(80);
    check!(std::fs::write(&victim, &original));
    for (what, words) in plants(&victim) {
        let name = shm_name();
        let planted = plant(&dev_shm(&name), what)?;
        let refused = |op: &str, r: Result<(), procom::Error>| -> Outcome {
            let e = r.err().ok_or(format!("{op} used the planted {what:?}"))?;
            ensure!(
                e.kind() == ErrorKind::WrongType && e.to_string().contains(words),
                "{op} on the planted {what:?}: {e:?}"
            );
            Ok(())
        };
        refused("Segment::open", Segment::open(&name).map(drop))?;
        refused(
            "Segment::open_read_only",
            Segment::open_read_only(&name).map(drop),
        )?;
        refused(
            "Sender::connect",
            Sender::connect(format!("shm:{name}")).map(drop),
        )?;
        refused(
            "Receiver::bind",
            Receiver::bind(format!("shm:{name}")).map(drop),
        )?;
        refused("shm::remove", procom::shm::remove(&name))?;
        let e = Segment::create(&name, 4096).err().map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::AlreadyExists),
            "Segment::create over the planted {what:?}: {e:?}"
        );
        ensure!(
            planted.intact(),
            "the planted {what:?} was changed or removed"
        );
        planted.remove()?;
        ensure!(
            check!(std::fs::read(&victim)) == original,
            "the file behind the planted {what:?} was written"
        );
    }
    check!(std::fs::remove_file(&victim));
    scratch.finish()
}

/// A segment of 0 bytes could be neither mapped nor used: creating one is InvalidInput, and
/// nothing is created.
fn empty_segment_is_refused() -> Outcome {
    let name = shm_name();
    let e = Segment::create(&name, 0)
        .err()
        .ok_or("created a 0-byte segment")?;
    ensure!(
        e.kind() == ErrorKind::InvalidInput && e.to_string().contains("0 bytes"),
        "got {e:?}"
    );
    ensure!(!dev_shm(&name).exists(), "a 0-byte segment {name} was left");
    let key = SysvKey::Key((std::process::id() as i32 & 0xffff) | 0x5300_0000);
    let e = Segment::create_sysv(&key, 0)
        .err()
        .ok_or("created a 0-byte System V segment")?;
    ensure!(
        e.kind() == ErrorKind::InvalidInput
            && e.to_string().contains("a segment needs at least 1 byte"),
        "got {e:?}"
    );
    let gone = Segment::open_sysv(&key).err().map(|e| e.kind());
    ensure!(
        gone == Some(ErrorKind::NotFound),
        "after the refusal: {gone:?}"
    );
    Ok(())
}

/// Overwrites a channel's header through its file in /dev/shm, once: `garbage` fills its
/// first 64 bytes (magic, version, sizes, pids, sequence words, state) with 0xAB; `magic`
/// changes only the magic, so every word the channel reads while it runs still looks sane.
fn header_scribbler(args: &[String]) -> Outcome {
    let [name, mode] = args else {
        return Err("args".into());
    };
    let file = check!(std::fs::OpenOptions::new().write(true).open(dev_shm(name)));
    let bytes: &[u8] = match mode.as_str() {
        "garbage" => &[0xab; 64],
        "magic" => b"NOTOURS!",
        other => return Err(format!("mode {other}")),
    };
    check!(std::os::unix::fs::FileExt::write_all_at(&file, bytes, 0));
    Ok(())
}

/// Another process overwrites the header of a live channel: the receiver and the sender both
/// report Corrupted (not PeerGone, which would end the receiving side as a clean close), and
/// stay so.
fn channel_header_scribbled_is_corrupted_on_both_sides() -> Outcome {
    for mode in ["garbage", "magic"] {
        let name = shm_name();
        let ep = format!("shm:{name}");
        let mut rx = check!(Receiver::bind(&ep));
        let mut tx = check!(Sender::connect(&ep));
        check!(tx.send(b"before").map_err(|e| e.into_error()));
        ensure!(check!(rx.recv_timeout(STEP)) == b"before", "first message");
        Proc::spawn(
            "scribbler",
            &mut role("shm::header_scribbler", &[&name, mode]),
        )?
        .success(STEP)?;
        let e = rx.recv_timeout(Duration::from_secs(2)).err();
        ensure!(
            e.as_ref().map(|e| e.kind()) == Some(ErrorKind::Corrupted),
            "{mode}: the receiver got {e:?}"
        );
        // Past the sender's liveness cache, so a sender with room in the ring checks too.
        std::thread::sleep(Duration::from_millis(20));
        let e = tx.send(b"after").err().map(|e| e.into_error());
        ensure!(
            e.as_ref().map(|e| e.kind()) == Some(ErrorKind::Corrupted),
            "{mode}: the sender got {e:?}"
        );
        let again = (
            rx.try_recv().err().map(|e| e.kind()),
            tx.try_send(b"x").err().map(|e| e.kind()),
        );
        ensure!(
            again == (Some(ErrorKind::Corrupted), Some(ErrorKind::Corrupted)),
            "{mode}: afterwards {again:?}"
        );
        drop((rx, tx));
        ensure!(!dev_shm(&name).exists(), "leaked {name}");
    }
    Ok(())
}

/// A sender that comes while the receiver is still setting the channel up (its name exists,
/// its header is not published yet) waits for it instead of calling it corrupted: the sender
/// starts trying before the receiver binds, and its first attempt that finds the name must
/// succeed. Repeated, since the set-up takes only milliseconds.
fn a_sender_that_finds_the_channel_mid_setup_waits_for_it() -> Outcome {
    for _ in 0..30 {
        let name = format!("shm:/{}", unique_name("procom-it-setup"));
        let sender = {
            let name = name.clone();
            let give_up = std::time::Instant::now() + STEP;
            std::thread::spawn(move || {
                loop {
                    match Sender::connect(name.as_str()) {
                        Err(e)
                            if e.kind() == ErrorKind::NotFound
                                && std::time::Instant::now() < give_up =>
                        {
                            std::thread::yield_now(); // trying again until the name appears
                        }
                        other => return other,
                    }
                }
            })
        };
        let mut rx = check!(Receiver::bind(name.as_str()));
        let mut tx = sender
            .join()
            .map_err(|_| "the sender thread panicked")?
            .map_err(|e| format!("the sender found the channel mid-setup and said: {e}"))?;
        check!(tx.send(b"ready").map_err(|e| e.into_error()));
        ensure!(check!(rx.recv_timeout(STEP)) == b"ready", "wrong message");
    }
    Ok(())
}
