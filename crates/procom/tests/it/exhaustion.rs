//! Exhaustion: each kernel or per-user limit, reached, gives `LimitReached` in one sentence
//! that names the limit and the remedy, and a creation refused halfway leaves nothing behind.
//! The limits are lowered in IPC and mount namespaces of the child's own (`unshare`), never on
//! the machine: `fs.mqueue.queues_max`, `kernel.msgmni`, `kernel.shmmni`, `kernel.sem`'s
//! SEMMNI and a small tmpfs over /dev/shm; RLIMIT_NOFILE and RLIMIT_AS are the child's own.
//! RLIMIT_MSGQUEUE is `mq::rlimit_msgqueue_is_named`. A message whose announced length finds no
//! memory is `LimitReached` too, and stays in the stream for when there is room.

use std::os::fd::OwnedFd;

use procom::endpoint::SysvKey;
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::sem::{SemSet, Semaphore};
use procom::shm::Segment;
use procom::socket::Listener;
use procom::{Endpoint, Error, ErrorKind, Options, Receiver};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, address_space, as_nobody, check, ensure, needs,
    role, role_unshared, trials, unique_name,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "exhaustion::queues_max",
        run: queues_max,
    },
    Role {
        name: "exhaustion::sysv_ids",
        run: sysv_ids,
    },
    Role {
        name: "exhaustion::small_dev_shm",
        run: small_dev_shm,
    },
    Role {
        name: "exhaustion::nofile",
        run: nofile,
    },
    Role {
        name: "exhaustion::nofile_shm_ends",
        run: nofile_shm_ends,
    },
    Role {
        name: "exhaustion::group_refused",
        run: group_refused,
    },
    Role {
        name: "exhaustion::no_address_space",
        run: no_address_space,
    },
    Role {
        name: "exhaustion::message_without_memory",
        run: message_without_memory,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "exhaustion":
            posix_queues_max_is_named [needs::ipc_mount_ns()],
            sysv_id_exhaustion_is_named [needs::ipc_mount_ns()],
            a_full_dev_shm_is_named_and_leaves_nothing [needs::ipc_mount_ns()],
            rlimit_nofile_is_named_and_leaves_nothing,
            rlimit_nofile_at_shm_connect_and_take_up_claims_nothing,
            a_channel_that_cannot_be_mapped_leaves_no_segment,
            a_message_without_memory_is_named_and_kept,
            a_refused_group_leaves_no_object [needs::root()];
    ]
}

/// The error is `LimitReached`, one line, naming every one of `words`.
pub(crate) fn is_limit(e: Option<Error>, what: &str, words: &[&str]) -> Outcome {
    let e = e.ok_or_else(|| format!("{what} succeeded past the limit"))?;
    let text = e.to_string();
    ensure!(
        e.kind() == ErrorKind::LimitReached
            && !text.contains('\n')
            && words.iter().all(|w| text.contains(w)),
        "{what}: {:?}: {text}",
        e.kind()
    );
    Ok(())
}

fn sysctl(name: &str, value: &str) -> Outcome {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    check!(std::fs::write(&path, value));
    let now = check!(std::fs::read_to_string(&path));
    ensure!(
        now.split_whitespace().eq(value.split_whitespace()),
        "{path} is {now:?}"
    );
    Ok(())
}

/// Keys for System V objects, unique to this process.
fn key(i: i32) -> SysvKey {
    SysvKey::Key(0x5c00_0000 | ((std::process::id() as i32 & 0xffff) << 8) | i)
}

/// In an IPC namespace of its own: `fs.mqueue.queues_max = 2`; without CAP_SYS_RESOURCE (which
/// goes past it), the third queue is refused, by name and through a channel, and leaves no
/// queue.
fn queues_max(_: &[String]) -> Outcome {
    sysctl("fs.mqueue.queues_max", "2")?;
    // Credentials are per thread: this one, which creates the queues, gives up the capability.
    let mut caps = check!(rustix::thread::capabilities(None));
    caps.effective
        .remove(rustix::thread::CapabilitySet::SYS_RESOURCE);
    check!(rustix::thread::set_capabilities(None, caps));
    let names: Vec<String> = (0..3)
        .map(|_| format!("/{}", unique_name("procom-exh")))
        .collect();
    let held = [
        check!(Queue::create(&names[0], Some(1), Some(64))),
        check!(Queue::create(&names[1], Some(1), Some(64))),
    ];
    let remedy = [
        "fs.mqueue.queues_max = 2",
        "sysctl -w fs.mqueue.queues_max=N",
    ];
    is_limit(
        Queue::create(&names[2], Some(1), Some(64)).err(),
        "a third queue",
        &remedy,
    )?;
    is_limit(
        Receiver::bind(format!("mq:{}", names[2]).as_str()).err(),
        "a third queue as a channel",
        &remedy,
    )?;
    let e = Queue::open(&names[2]).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::NotFound), "the refused queue: {e:?}");
    drop(held);
    // Room again once the others are gone.
    drop(check!(Queue::create(&names[2], Some(1), Some(64))));
    Ok(())
}

fn posix_queues_max_is_named() -> Outcome {
    Proc::spawn(
        "queues_max",
        &mut role_unshared(&["--ipc"], "exhaustion::queues_max", &[]),
    )?
    .success(STEP)?;
    Ok(())
}

/// In an IPC namespace of its own, with room for two of each: the third System V queue,
/// segment and semaphore set are refused, naming the sysctl and the remedy.
fn sysv_ids(_: &[String]) -> Outcome {
    sysctl("kernel.msgmni", "2")?;
    sysctl("kernel.shmmni", "2")?;
    sysctl("kernel.sem", "32000 1024000000 500 2")?;
    let queues = [
        check!(MsgQueue::create(&key(1))),
        check!(MsgQueue::create(&key(2))),
    ];
    is_limit(
        MsgQueue::create(&key(3)).err(),
        "a third System V queue",
        &["kernel.msgmni = 2", "sysctl -w kernel.msgmni=N"],
    )?;
    let segments = [
        check!(Segment::create_sysv(&key(1), 4096)),
        check!(Segment::create_sysv(&key(2), 4096)),
    ];
    is_limit(
        Segment::create_sysv(&key(3), 4096).err(),
        "a third System V segment",
        &["kernel.shmmni allows (2)", "sysctl -w kernel.shmmni=N"],
    )?;
    let sets = [
        check!(SemSet::create(&key(1), &[1])),
        check!(SemSet::create(&key(2), &[1])),
    ];
    is_limit(
        SemSet::create(&key(3), &[1]).err(),
        "a third semaphore set",
        &["SEMMNI", "sysctl -w kernel.sem="],
    )?;
    // Nothing of the refused ones exists, and each kind has room again once one is gone.
    ensure!(MsgQueue::open(&key(3)).is_err(), "the refused queue exists");
    ensure!(
        Segment::open_sysv(&key(3)).is_err(),
        "the refused segment exists"
    );
    ensure!(SemSet::open(&key(3), 1).is_err(), "the refused set exists");
    drop((queues, segments, sets));
    drop(check!(MsgQueue::create(&key(3))));
    drop(check!(Segment::create_sysv(&key(3), 4096)));
    drop(check!(SemSet::create(&key(3), &[1])));
    Ok(())
}

fn sysv_id_exhaustion_is_named() -> Outcome {
    Proc::spawn(
        "sysv_ids",
        &mut role_unshared(&["--ipc"], "exhaustion::sysv_ids", &[]),
    )?
    .success(STEP)?;
    Ok(())
}

/// The names in /dev/shm.
fn dev_shm() -> Result<Vec<String>, String> {
    let mut v: Vec<String> = check!(std::fs::read_dir("/dev/shm"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// In a mount namespace of its own, with a 256 KiB tmpfs over /dev/shm: a channel larger than
/// the room left is refused at creation (not faulted on later), a named semaphore on a full
/// /dev/shm is refused, and neither leaves a file behind.
fn small_dev_shm(_: &[String]) -> Outcome {
    let mount = check!(
        std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=256k,mode=1777",
                "tmpfs",
                "/dev/shm"
            ])
            .status()
    );
    ensure!(mount.success(), "mount: {mount}");
    ensure!(dev_shm()?.is_empty(), "the new /dev/shm is not empty");
    let remedy = ["/dev/shm", "?capacity="];
    is_limit(
        Receiver::bind("shm:/procom-big?capacity=1MiB").err(),
        "a 1 MiB channel on a 256 KiB /dev/shm",
        &remedy,
    )?;
    ensure!(dev_shm()?.is_empty(), "left behind: {:?}", dev_shm()?);
    // One that fits, then one that no longer does.
    let rx = check!(Receiver::bind("shm:/procom-fits?capacity=128KiB"));
    is_limit(
        Receiver::bind("shm:/procom-more?capacity=128KiB").err(),
        "a second 128 KiB channel",
        &remedy,
    )?;
    ensure!(
        dev_shm()? == ["procom-fits"],
        "left behind: {:?}",
        dev_shm()?
    );
    // Fill what is left; a named semaphore then has no room for its file.
    let fill = std::path::Path::new("/dev/shm/procom-fill");
    let mut file = check!(std::fs::File::create(fill));
    let chunk = vec![1u8; 4096];
    let full = loop {
        if let Err(e) = std::io::Write::write_all(&mut file, &chunk) {
            break e;
        }
    };
    ensure!(full.raw_os_error() == Some(28), "filling /dev/shm: {full}");
    is_limit(
        Semaphore::create("/procom-sem", 1).err(),
        "a named semaphore on a full /dev/shm",
        &["no space is left", "remove what is no longer used"],
    )?;
    drop(file);
    check!(std::fs::remove_file(fill));
    drop(rx);
    ensure!(dev_shm()?.is_empty(), "left behind: {:?}", dev_shm()?);
    // A tmpfs without a size limit reports no blocks at all: that is no limit, not no room.
    let mount = check!(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=0,mode=1777", "tmpfs", "/dev/shm"])
            .status()
    );
    ensure!(mount.success(), "mount: {mount}");
    drop(check!(Receiver::bind(
        "shm:/procom-unlimited?capacity=1MiB"
    )));
    Ok(())
}

fn a_full_dev_shm_is_named_and_leaves_nothing() -> Outcome {
    Proc::spawn(
        "small /dev/shm",
        &mut role_unshared(
            &["--mount", "--propagation", "private"],
            "exhaustion::small_dev_shm",
            &[],
        ),
    )?
    .success(STEP)?;
    Ok(())
}

/// With RLIMIT_NOFILE at 64 and 0 to 3 descriptors left, every creation either works or is
/// refused naming the limit and the remedy, and a refused one leaves no object.
fn nofile(args: &[String]) -> Outcome {
    let [dir] = args else {
        return Err("args".into());
    };
    let dir = std::path::Path::new(dir);
    check!(rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(64),
            maximum: Some(64)
        }
    ));
    let mut outcomes = Vec::new();
    for left in 0..4 {
        let fill = fill_descriptors(left)?;
        let tag = unique_name("procom-exh");
        let endpoints = [
            format!("fifo:{}", dir.join(format!("{tag}.fifo")).display()),
            format!("unix:{}", dir.join(format!("{tag}.sock")).display()),
            format!("unixgram:{}", dir.join(format!("{tag}.dgram")).display()),
            format!("mq:/{tag}"),
            format!("shm:/{tag}?capacity=4KiB"),
            "udp:127.0.0.1:0".to_string(),
        ];
        for ep in &endpoints {
            let made = if ep.starts_with("unix:") {
                Listener::bind(&check!(Endpoint::parse(ep)), &Options::default()).map(drop)
            } else {
                Receiver::bind(ep.as_str()).map(drop)
            };
            match made {
                Ok(()) => outcomes.push(format!("{left}:{ep}:ok")),
                Err(e) => {
                    is_limit(
                        Some(e),
                        &format!("{ep} with {left} descriptors left"),
                        &["RLIMIT_NOFILE allows (64)", "ulimit -n"],
                    )?;
                    outcomes.push(format!("{left}:{ep}:refused"));
                }
            }
        }
        let made = Semaphore::create(&format!("/{tag}"), 0).map(drop);
        if let Err(e) = made {
            is_limit(
                Some(e),
                "a named semaphore",
                &["RLIMIT_NOFILE allows (64)", "ulimit -n"],
            )?;
        }
        // Whatever was made was dropped, and whatever was refused left nothing.
        drop(fill);
        let left_behind: Vec<_> = check!(std::fs::read_dir(dir))
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        ensure!(
            left_behind.is_empty(),
            "left in the directory with {left} descriptors left: {left_behind:?}"
        );
        for name in [format!("/dev/shm/{tag}"), format!("/dev/shm/sem.{tag}")] {
            ensure!(
                !std::path::Path::new(&name).exists(),
                "{name} was left behind"
            );
        }
        let e = Queue::open(&format!("/{tag}")).err().map(|e| e.kind());
        ensure!(e == Some(ErrorKind::NotFound), "mq:/{tag} was left: {e:?}");
    }
    println!("{}", outcomes.join(" "));
    Ok(())
}

fn rlimit_nofile_is_named_and_leaves_nothing() -> Outcome {
    let dir = Scratch::new("procom-exh")?;
    let fin = Proc::spawn(
        "nofile",
        &mut role("exhaustion::nofile", &[&dir.path().display().to_string()]),
    )?
    .success(STEP)?;
    // With no descriptor left, nothing can be made: every endpoint was refused then.
    none_done_with_no_descriptor_left(&fin.stdout)?;
    dir.finish()
}

/// Opens /dev/null until RLIMIT_NOFILE refuses, then closes `left` of them again.
fn fill_descriptors(left: usize) -> Result<Vec<OwnedFd>, String> {
    let mut fill: Vec<OwnedFd> = Vec::new();
    loop {
        match rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => fill.push(fd),
            Err(rustix::io::Errno::MFILE) => break,
            Err(e) => return Err(format!("open: {e}")),
        }
    }
    fill.truncate(fill.len().saturating_sub(left));
    Ok(fill)
}

/// With RLIMIT_NOFILE at 64 and 0 to 8 descriptors left: a sender connecting to a named
/// channel, an anonymous channel made, and an anonymous end taken up from a descriptor either
/// work or are refused naming the limit (and nothing else: not /proc); a refused connect or take-up claims nothing (with
/// descriptors again, the next one works and is heard), and a refused channel leaves nothing.
fn nofile_shm_ends(_: &[String]) -> Outcome {
    check!(rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(64),
            maximum: Some(64)
        }
    ));
    let words = ["RLIMIT_NOFILE allows (64)", "ulimit -n"];
    let opts = Options::default();
    let mut outcomes = Vec::new();
    for left in 0..9 {
        let name = format!("/{}", unique_name("procom-exh"));
        let ep = format!("shm:{name}?capacity=4KiB");
        let mut rx = check!(Receiver::bind(ep.as_str()));
        let (anon_tx, mut anon_rx) = check!(procom::shm::channel(4096, &opts));
        let handed = anon_tx.into_fd().ok_or("no descriptor")?;
        let kept = check!(handed.try_clone());
        let fill = fill_descriptors(left)?;
        let connected = procom::Sender::connect(ep.as_str());
        let taken = procom::Sender::from_shm_fd(handed, &opts);
        let made = procom::shm::channel(4096, &opts).map(drop);
        for (what, r) in [
            ("connect", connected.as_ref().map(drop).err()),
            ("take-up", taken.as_ref().map(drop).err()),
            ("channel", made.err().as_ref()),
        ] {
            match r {
                None => outcomes.push(format!("{left}:{what}:ok")),
                Some(e) => {
                    let text = e.to_string();
                    ensure!(
                        e.kind() == ErrorKind::LimitReached
                            && !text.contains('\n')
                            && !text.contains("mounted")
                            && words.iter().all(|w| text.contains(w)),
                        "{what} with {left} descriptors left: {:?}: {text}",
                        e.kind()
                    );
                    outcomes.push(format!("{left}:{what}:refused"));
                }
            }
        }
        drop(fill);
        // A sender refused for want of descriptors holds nothing: the next one attaches.
        let mut tx = match connected {
            Ok(tx) => tx,
            Err(_) => check!(procom::Sender::connect(ep.as_str())),
        };
        check!(tx.send(b"named").map_err(|e| e.into_error()));
        ensure!(check!(rx.recv_timeout(STEP)) == b"named", "named message");
        // An end refused for want of descriptors is not held: a copy takes it up.
        let mut anon_tx = match taken {
            Ok(tx) => {
                drop(kept);
                tx
            }
            Err(_) => check!(procom::Sender::from_shm_fd(kept, &opts)),
        };
        check!(anon_tx.send(b"anonymous").map_err(|e| e.into_error()));
        ensure!(
            check!(anon_rx.recv_timeout(STEP)) == b"anonymous",
            "anonymous message"
        );
        drop((tx, rx));
        ensure!(
            !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
            "{name} was left behind"
        );
    }
    println!("{}", outcomes.join(" "));
    Ok(())
}

fn rlimit_nofile_at_shm_connect_and_take_up_claims_nothing() -> Outcome {
    let fin =
        Proc::spawn("nofile", &mut role("exhaustion::nofile_shm_ends", &[]))?.success(STEP)?;
    // With no descriptor left, none of them can be done.
    none_done_with_no_descriptor_left(&fin.stdout)
}

/// A descriptor-exhaustion role's outcomes (`LEFT:WHAT:ok|refused`, printed on `stdout`):
/// everything tried with no descriptor left was refused.
fn none_done_with_no_descriptor_left(stdout: &[String]) -> Outcome {
    let outcomes = stdout.join(" ");
    ensure!(
        outcomes
            .split_whitespace()
            .filter(|o| o.starts_with("0:"))
            .all(|o| o.ends_with(":refused")),
        "{outcomes}"
    );
    Ok(())
}

/// As uid 65534: each object made for a group it is not in (root's, 0) is refused after it was
/// created, and is removed again.
fn group_refused(args: &[String]) -> Outcome {
    let [dir] = args else {
        return Err("args".into());
    };
    let dir = std::path::Path::new(dir);
    let tag = unique_name("procom-exh");
    let opts = Options::default().mode(0o660).group(0);
    for ep in [
        format!("mq:/{tag}"),
        format!("shm:/{tag}"),
        format!("fifo:{}", dir.join("fifo").display()),
        format!("unixgram:{}", dir.join("dgram").display()),
    ] {
        let e = Receiver::bind_with(ep.as_str(), &opts).err();
        let e = e.ok_or_else(|| format!("{ep}: given to a group uid 65534 is not in"))?;
        ensure!(e.kind() == ErrorKind::PermissionDenied, "{ep}: {e}");
    }
    let e = Listener::bind(
        &check!(Endpoint::parse(&format!(
            "unix:{}",
            dir.join("sock").display()
        ))),
        &opts,
    )
    .err()
    .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PermissionDenied),
        "unix listener: {e:?}"
    );
    ensure!(
        check!(std::fs::read_dir(dir)).next().is_none(),
        "left in the directory"
    );
    ensure!(
        !std::path::Path::new(&format!("/dev/shm/{tag}")).exists(),
        "the channel's segment was left"
    );
    let e = Queue::open(&format!("/{tag}")).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::NotFound), "the queue was left: {e:?}");
    Ok(())
}

fn a_refused_group_leaves_no_object() -> Outcome {
    let dir = Scratch::new("procom-exh")?;
    check!(std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777)
    ));
    let mut cmd = role(
        "exhaustion::group_refused",
        &[&dir.path().display().to_string()],
    );
    Proc::spawn("group", as_nobody(&mut cmd)?)?.success(STEP)?;
    dir.finish()
}

/// Sets RLIMIT_AS's soft limit (and, with `hard`, its hard one) to `room` bytes more than
/// this process's address space now; `None` lifts it.
pub(crate) fn limit_address_space(room: Option<u64>, hard: bool) -> Outcome {
    let limit = match room {
        Some(room) => Some(address_space(std::process::id())? + room),
        None => None,
    };
    let now = rustix::process::getrlimit(rustix::process::Resource::As);
    check!(rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: limit,
            maximum: if hard { limit } else { now.maximum },
        }
    ));
    Ok(())
}

/// With RLIMIT_AS leaving no room for the ring's mapping, a channel's segment is created,
/// sized and locked, and then cannot be mapped: the error says so, and the segment is gone.
fn no_address_space(_: &[String]) -> Outcome {
    limit_address_space(Some(32 << 20), true)?;
    let name = format!("/{}", unique_name("procom-exh"));
    let e = Receiver::bind(format!("shm:{name}?capacity=64MiB").as_str()).err();
    is_limit(
        e,
        "a 64 MiB ring in 32 MiB of address space",
        &["could not map", "RLIMIT_AS", "ulimit -v"],
    )?;
    ensure!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "the segment of the channel that could not be mapped was left behind"
    );
    Ok(())
}

/// The byte at `i` of the large message.
pub(crate) fn pattern_at(i: usize) -> u8 {
    (i % 251) as u8
}

/// Whether `got` is the first `len` bytes of [`pattern_at`]'s pattern.
pub(crate) fn is_pattern(got: &[u8], len: usize) -> bool {
    got.len() == len && got.iter().enumerate().all(|(i, b)| *b == pattern_at(i))
}

/// Writes `bytes` on `w` from another thread while `receive` runs (a message larger than the
/// socket holds); returns what it received, and `w`.
pub(crate) fn while_writing<T>(
    mut w: std::os::unix::net::UnixStream,
    bytes: Vec<u8>,
    receive: impl FnOnce() -> Result<T, Error>,
) -> Result<(T, std::os::unix::net::UnixStream), String> {
    use std::io::Write;
    let writer = std::thread::spawn(move || w.write_all(&bytes).map(|()| w));
    let got = check!(receive());
    let w = check!(writer.join().map_err(|_| "the writer panicked")?);
    Ok((got, w))
}

/// A 64 MiB message announced on a Unix stream while the address space has room for 16 MiB
/// more: every way of receiving it (read straight into the caller's buffer, twice; through
/// the reader's buffer, with a deadline; as a typed view) is `LimitReached`, naming the limit
/// and `max_message`, and nothing of it is consumed: once the limit is lifted, the same
/// message arrives whole.
fn message_without_memory(_: &[String]) -> Outcome {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    const LEN: usize = 64 << 20;
    let opts = Options::default().max_message(1 << 30);
    let announce = |w: &mut UnixStream| -> Outcome {
        check!(w.write_all(&(LEN as u32).to_be_bytes()));
        check!(w.write_all(&(0..10).map(pattern_at).collect::<Vec<u8>>()));
        Ok(())
    };
    let (mut w, r) = check!(UnixStream::pair());
    announce(&mut w)?;
    let mut rx = Receiver::from_fd(OwnedFd::from(r), "unix socketpair", &opts);
    let (mut tw, tr) = check!(UnixStream::pair());
    announce(&mut tw)?;
    let mut typed = procom::typed::Receiver::<Vec<u8>>::from_untyped(Receiver::from_fd(
        OwnedFd::from(tr),
        "unix socketpair",
        &opts,
    ));
    // The message's 64 MiB, or its frame's 4 bytes more.
    let words = [
        "no memory for the 671088",
        "RLIMIT_AS",
        "ulimit -v",
        "max_message",
    ];
    let mut buf = Vec::new();
    limit_address_space(Some(16 << 20), false)?;
    let straight = [rx.recv_into(&mut buf).err(), rx.recv_into(&mut buf).err()];
    let buffered = rx.recv_timeout(STEP).err();
    let view = typed.recv_view::<&[u8]>().err();
    limit_address_space(None, false)?;
    for (e, how) in straight
        .into_iter()
        .map(|e| (e, "straight into the buffer"))
    {
        is_limit(e, how, &words)?;
    }
    is_limit(buffered, "through the reader's buffer", &words)?;
    is_limit(view, "as a typed view", &words)?;
    let rest = (10..LEN).map(pattern_at).collect();
    let (n, _w) = while_writing(w, rest, || rx.recv_into(&mut buf))?;
    ensure!(
        n == LEN && is_pattern(&buf, LEN),
        "after the limit was lifted, {n} bytes arrived, not the {LEN} announced intact"
    );
    drop(tw);
    Ok(())
}

fn a_message_without_memory_is_named_and_kept() -> Outcome {
    Proc::spawn(
        "no memory for a message",
        // One malloc arena: the watchdog thread's, made by its first allocation, would take
        // 64 MiB of address space, and could come after the limit is measured (as in
        // `memory.rs`).
        role("exhaustion::message_without_memory", &[]).env("MALLOC_ARENA_MAX", "1"),
    )?
    .success(STEP)?;
    Ok(())
}

fn a_channel_that_cannot_be_mapped_leaves_no_segment() -> Outcome {
    Proc::spawn(
        "no address space",
        &mut role("exhaustion::no_address_space", &[]),
    )?
    .success(STEP)?;
    Ok(())
}
