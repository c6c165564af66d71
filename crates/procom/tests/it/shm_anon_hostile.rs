//! Anonymous shared-memory channels under attack: an end handed over and taken up again in one
//! process (twice, and through a duplicate of its descriptor) keeps its messages; descriptors
//! that are not an end (a socket, a regular file or an unsealed memfd holding a genuine
//! channel's bytes, a named channel's segment, a memfd of garbage or of a crafted header, an
//! empty or huge memfd, the other end's descriptor even once that end died) are refused with
//! a clear error; an end handed to a grandchild lives
//! while the grandchild holds it and is reported gone once it is killed; a copy of the
//! descriptor kept by the parent keeps the end alive, as documented; making and dropping many
//! channels leaves no descriptor and no mapping behind.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;

use procom::signal::Signal;
use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[
    Role {
        name: "shm_anon_hostile::relay",
        run: relay,
    },
    Role {
        name: "shm_anon_hostile::churn",
        run: churn,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "shm::anonymous::hostile":
            an_end_handed_over_and_back_twice_keeps_its_messages,
            crafted_descriptors_are_refused,
            an_end_held_by_a_grandchild_lives_until_it_is_killed,
            a_copy_kept_by_the_parent_keeps_the_end_alive,
            many_channels_leave_no_descriptor_or_mapping,
            the_other_ends_descriptor_is_refused_after_its_end_died;
    ]
}

/// The ring capacity of every channel here.
const CAPACITY: u64 = 64 << 10;

/// Header offsets of a channel's segment (see the segment layout in the shm module's docs).
const OFF_FLAGS: u64 = 12;
const OFF_CAPACITY: u64 = 24;
const OFF_RECEIVER: u64 = 32;
const OFF_SENDER: u64 = 36;
const OFF_STATE: u64 = 56;

fn fd_of(end: Option<OwnedFd>) -> Result<OwnedFd, String> {
    end.ok_or_else(|| "an anonymous end gave no descriptor".to_string())
}

fn rkind(r: Result<Receiver, procom::Error>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn skind(r: Result<Sender, procom::Error>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn an_end_handed_over_and_back_twice_keeps_its_messages() -> Outcome {
    let opts = Options::default();
    let (mut tx, mut rx) = check!(procom::shm::channel(CAPACITY, &opts));
    for round in 0u8..2 {
        check!(tx.send([round; 10]).map_err(|e| e.into_error()));
        rx = check!(Receiver::from_shm_fd(fd_of(rx.into_fd())?, &opts));
        tx = check!(Sender::from_shm_fd(fd_of(tx.into_fd())?, &opts));
        check!(tx.send([round + 10; 10]).map_err(|e| e.into_error()));
        for want in [round, round + 10] {
            let got = check!(rx.recv_timeout(STEP));
            ensure!(
                got == [want; 10],
                "round {round}: {got:?} instead of {want}"
            );
        }
    }
    // Through a duplicate: the same open file, so the same end; one taker at a time.
    let fd = fd_of(rx.into_fd())?;
    let dup = check!(fd.try_clone());
    let mut rx = check!(Receiver::from_shm_fd(dup, &opts));
    let got = rkind(Receiver::from_shm_fd(check!(fd.try_clone()), &opts));
    ensure!(
        got == Some(ErrorKind::AlreadyExists),
        "a duplicate taken up beside it: {got:?}"
    );
    check!(tx.send(b"after the dup").map_err(|e| e.into_error()));
    let got = check!(rx.recv_timeout(STEP));
    ensure!(got == b"after the dup", "{got:?}");
    // Handed over again, the original descriptor takes it up.
    drop(rx.into_fd());
    let mut rx = check!(Receiver::from_shm_fd(fd, &opts));
    check!(tx.send(b"last").map_err(|e| e.into_error()));
    drop(tx);
    let got = check!(rx.recv_timeout(STEP));
    ensure!(got == b"last", "{got:?}");
    let end = rx.recv_timeout(STEP);
    ensure!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::PeerGone),
        "after the sender's close: {end:?}"
    );
    Ok(())
}

/// Words written over a genuine header: (offset, value).
type Patches = Vec<(u64, u32)>;

/// A new memfd holding `bytes` with the 32-bit words `patches` written over them (at their
/// offsets), its size sealed if `sealed` (as a channel's is).
fn crafted(bytes: &[u8], patches: &[(u64, u32)], sealed: bool) -> Result<OwnedFd, String> {
    let seg = check!(procom::shm::Segment::memfd(
        "procom-it-crafted",
        bytes.len() as u64,
        sealed
    ));
    let fd = check!(seg.fd().ok_or("no descriptor")?.try_clone_to_owned());
    let file = File::from(fd);
    check!(file.write_all_at(bytes, 0));
    for &(off, word) in patches {
        check!(file.write_all_at(&word.to_ne_bytes(), off));
    }
    Ok(OwnedFd::from(file))
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> Result<u32, String> {
    let mut child = check!(Command::new("true").spawn());
    let pid = child.id();
    check!(child.wait());
    Ok(pid)
}

fn crafted_descriptors_are_refused() -> Outcome {
    let opts = Options::default();
    // A genuine channel's bytes, both ends free (handed over), none closed.
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &opts));
    let (tx_fd, rx_fd) = (fd_of(tx.into_fd())?, fd_of(rx.into_fd())?);
    let genuine = {
        let file = File::from(check!(rx_fd.try_clone()));
        let len = check!(file.metadata()).len();
        let mut bytes = vec![0u8; len as usize];
        check!(file.read_exact_at(&mut bytes, 0));
        bytes
    };
    drop((tx_fd, rx_fd));
    let free = [(OFF_RECEIVER, 0), (OFF_SENDER, 0)];
    // The crafted copy itself is an end no one holds: taken up, its sender is gone.
    let mut copy = check!(Receiver::from_shm_fd(
        crafted(&genuine, &free, true)?,
        &opts
    ));
    let got = copy.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(got == Some(ErrorKind::PeerGone), "a copy's sender: {got:?}");
    drop(copy);

    let mut holder = Proc::spawn("holder", &mut role("shm_anon::holder", &[]))?;
    holder.expect_line("holding")?;
    let live = holder.pid();
    let dead = dead_pid()?;
    let cases: Vec<(&str, Patches, Option<ErrorKind>)> = vec![
        (
            "a named channel's flags",
            vec![(OFF_FLAGS, 0)],
            Some(ErrorKind::WrongType),
        ),
        (
            "unknown flags",
            vec![(OFF_FLAGS, 3)],
            Some(ErrorKind::WrongType),
        ),
        (
            "a huge capacity",
            vec![(OFF_CAPACITY, 0), (OFF_CAPACITY + 4, 1 << 8)],
            Some(ErrorKind::WrongType),
        ),
        (
            "a receiver pid that is no pid",
            vec![(OFF_RECEIVER, u32::MAX)],
            Some(ErrorKind::Corrupted),
        ),
        (
            "a state word no procom process writes",
            vec![(OFF_STATE, 0x40)],
            Some(ErrorKind::Corrupted),
        ),
        (
            "a closed receiver",
            vec![(OFF_STATE, 1)],
            Some(ErrorKind::PeerGone),
        ),
        // The slot only says who took the end up last: a live process that holds no lock
        // of it (as one the kernel gave a dead holder's pid to) does not hold the end.
        (
            "a live process in the receiver slot",
            vec![(OFF_RECEIVER, live)],
            None,
        ),
        (
            "a dead process in the receiver slot",
            vec![(OFF_RECEIVER, dead)],
            None,
        ),
    ];
    for (what, patches, want) in cases {
        let all: Vec<(u64, u32)> = free.iter().copied().chain(patches).collect();
        let got = rkind(Receiver::from_shm_fd(crafted(&genuine, &all, true)?, &opts));
        ensure!(got == want, "{what}: {got:?}, not {want:?}");
    }
    check!(holder.child().kill());
    let _ = holder.child().wait();

    // Not sealed: another holder could shrink it under the mapping. A regular file likewise.
    let unsealed = crafted(&genuine, &free, false)?;
    let got = skind(Sender::from_shm_fd(check!(unsealed.try_clone()), &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "an unsealed memfd: {got:?}"
    );
    check!(File::from(unsealed).set_len(0));
    let scratch = Scratch::new("procom-it-anon")?;
    let path = scratch.join("channel");
    check!(std::fs::write(&path, &genuine));
    let file = check!(File::options().read(true).write(true).open(&path));
    let got = rkind(Receiver::from_shm_fd(file, &opts));
    ensure!(got == Some(ErrorKind::WrongType), "a regular file: {got:?}");
    check!(std::fs::remove_file(&path));
    // A socket, garbage, an empty memfd, a huge one (sparse, not mapped) and one of a
    // channel's size plus a page.
    let (a, _b) = check!(std::os::unix::net::UnixStream::pair());
    let got = rkind(Receiver::from_shm_fd(a, &opts));
    ensure!(got == Some(ErrorKind::WrongType), "a socket: {got:?}");
    let garbage: Vec<u8> = (0..genuine.len()).map(|i| (i * 7 + 3) as u8).collect();
    let got = rkind(Receiver::from_shm_fd(crafted(&garbage, &[], true)?, &opts));
    ensure!(got == Some(ErrorKind::WrongType), "garbage: {got:?}");
    let empty = check!(procom::shm::Segment::memfd("procom-it-empty", 0, true));
    let got = rkind(Receiver::from_shm_fd(
        check!(empty.fd().ok_or("no descriptor")?.try_clone_to_owned()),
        &opts,
    ));
    ensure!(got == Some(ErrorKind::WrongType), "an empty memfd: {got:?}");
    let huge = check!(procom::shm::Segment::memfd("procom-it-huge", 1 << 40, true));
    let got = rkind(Receiver::from_shm_fd(
        check!(huge.fd().ok_or("no descriptor")?.try_clone_to_owned()),
        &opts,
    ));
    ensure!(got == Some(ErrorKind::WrongType), "a 1 TiB memfd: {got:?}");
    let longer = [genuine.as_slice(), &[0u8; 4096]].concat();
    let got = rkind(Receiver::from_shm_fd(crafted(&longer, &free, true)?, &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "a page too long: {got:?}"
    );
    // A named channel's segment, opened by its path.
    let name = procom_testkit::unique_name("procom-it-anon");
    let named = check!(Receiver::bind(format!("shm:/{name}")));
    let seg = check!(
        File::options()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{name}"))
    );
    let got = skind(Sender::from_shm_fd(seg, &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "a named segment: {got:?}"
    );
    drop(named);
    scratch.finish()
}

/// Spawns a `shm_anon::holder` grandchild holding the end on standard input (from the moment
/// it starts), prints its pid and exits, leaving it running (its own time limit ends it if the
/// test does not).
fn relay(_: &[String]) -> Outcome {
    let fd = check!(std::io::stdin().as_fd().try_clone_to_owned());
    let mut cmd = role("shm_anon::holder", &[]);
    cmd.stdin(fd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let grandchild = check!(cmd.spawn());
    drop(cmd);
    println!("{}", grandchild.id());
    Ok(())
}

fn an_end_held_by_a_grandchild_lives_until_it_is_killed() -> Outcome {
    let (tx, mut rx) = check!(procom::shm::channel(CAPACITY, &Options::default()));
    let mut cmd = role("shm_anon_hostile::relay", &[]);
    cmd.stdin(fd_of(tx.into_fd())?);
    let mut relay = Proc::spawn("relay", &mut cmd)?;
    drop(cmd);
    let line = relay.line(STEP)?;
    let grandchild: i32 = line
        .trim()
        .parse()
        .map_err(|e| format!("grandchild pid {line:?}: {e}"))?;
    relay.success(STEP)?;
    // The relay is gone; the grandchild holds the end: alive, with nothing sent.
    let e = rx.recv_timeout(Duration::from_millis(200)).err();
    ensure!(
        e.as_ref().map(|e| e.kind()) == Some(ErrorKind::Timeout),
        "while the grandchild holds the end: {e:?}"
    );
    check!(procom::signal::send(grandchild, Signal::KILL));
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "after the kill: {e:?}");
    Ok(())
}

fn a_copy_kept_by_the_parent_keeps_the_end_alive() -> Outcome {
    let (tx, mut rx) = check!(procom::shm::channel(CAPACITY, &Options::default()));
    let fd = fd_of(tx.into_fd())?;
    let kept = check!(fd.try_clone());
    let mut cmd = role("shm_anon::holder", &[]);
    cmd.stdin(fd);
    let mut child = Proc::spawn("holder", &mut cmd)?;
    drop(cmd);
    child.expect_line("holding")?;
    check!(child.child().kill());
    let _ = child.child().wait();
    // Four liveness periods: the end lives on in our copy.
    let e = rx.recv_timeout(Duration::from_millis(200)).err();
    ensure!(
        e.as_ref().map(|e| e.kind()) == Some(ErrorKind::Timeout),
        "while this process keeps a copy: {e:?}"
    );
    drop(kept);
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "after the copy is closed: {e:?}"
    );
    Ok(())
}

/// The mappings of anonymous channels in this process (their memfd's name in
/// /proc/self/maps).
fn channel_mappings() -> Result<usize, String> {
    let maps = check!(std::fs::read_to_string("/proc/self/maps"));
    Ok(maps
        .lines()
        .filter(|l| l.contains("memfd:procom-channel"))
        .count())
}

/// Makes, uses, hands over and drops many channels and typed pairs; fails if a mapping is
/// left (the harness fails it if a descriptor is).
fn churn(_: &[String]) -> Outcome {
    let opts = Options::default();
    // An end handed over keeps no mapping here: its descriptor alone holds its open file
    // (and so its lock), and closing it ends the end.
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &opts));
    ensure!(channel_mappings()? == 2, "{} mappings", channel_mappings()?);
    let rx_fd = fd_of(rx.into_fd())?;
    ensure!(
        channel_mappings()? == 1,
        "{} mappings after one into_fd",
        channel_mappings()?
    );
    let tx_fd = fd_of(tx.into_fd())?;
    ensure!(
        channel_mappings()? == 0,
        "{} mappings after both",
        channel_mappings()?
    );
    drop((tx_fd, rx_fd));
    for i in 0u32..100 {
        let (tx, rx) = check!(procom::shm::channel(CAPACITY, &opts));
        let (mut tx, mut rx) = if i % 2 == 0 {
            (
                check!(Sender::from_shm_fd(fd_of(tx.into_fd())?, &opts)),
                check!(Receiver::from_shm_fd(fd_of(rx.into_fd())?, &opts)),
            )
        } else {
            (tx, rx)
        };
        check!(tx.send(i.to_ne_bytes()).map_err(|e| e.into_error()));
        ensure!(
            check!(rx.recv_timeout(STEP)) == i.to_ne_bytes(),
            "message {i}"
        );
        if i % 3 == 0 {
            // Refused take-ups leave nothing behind either.
            let fd = fd_of(rx.into_fd())?;
            ensure!(
                skind(Sender::from_shm_fd(check!(fd.try_clone()), &opts)).is_some(),
                "a receiving end taken up as a sender"
            );
            drop(fd);
        }
    }
    for _ in 0..20 {
        let ((mut a, _), (_, mut b)) = check!(procom::typed::shm_pair::<u32, u32>(CAPACITY, &opts));
        check!(a.send(7));
        ensure!(check!(b.recv_timeout(STEP)) == 7, "a typed message");
    }
    let left = channel_mappings()?;
    ensure!(left == 0, "{left} mappings of dropped channels are left");
    Ok(())
}

fn many_channels_leave_no_descriptor_or_mapping() -> Outcome {
    Proc::spawn("churn", &mut role("shm_anon_hostile::churn", &[]))?.success(STEP)?;
    Ok(())
}

/// The receiving end's descriptor taken up as a sender once the sending end's process was
/// killed (its lock gone, so the lock does not refuse it): refused all the same, and the
/// receiving end taken up from it then finds its sender gone.
fn the_other_ends_descriptor_is_refused_after_its_end_died() -> Outcome {
    let opts = Options::default();
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &opts));
    let rx_fd = fd_of(rx.into_fd())?;
    let mut cmd = role("shm_anon::holder", &[]);
    cmd.stdin(fd_of(tx.into_fd())?);
    let mut child = Proc::spawn("holder", &mut cmd)?;
    drop(cmd);
    child.expect_line("holding")?;
    check!(child.child().kill());
    let _ = child.child().wait();
    let got = skind(Sender::from_shm_fd(check!(rx_fd.try_clone()), &opts));
    ensure!(
        got == Some(ErrorKind::WrongType),
        "the receiving end's descriptor as a sender: {got:?}"
    );
    let mut rx = check!(Receiver::from_shm_fd(rx_fd, &opts));
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "the receiver: {e:?}");
    Ok(())
}
