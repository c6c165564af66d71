//! POSIX message queues across real processes: priorities, kernel lifetime, 100,000 messages
//! exactly once and in order, limits, full/empty/deadline errors, removal under a waiting
//! receiver or sender, polling the descriptor, permissions, and a C peer using the standard
//! calls. Every test ends by checking that its queues are gone.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use procom::mq::Queue;
use procom::{ErrorKind, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, role, trials,
    unique_name, wait_pid,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "mq::fill_and_exit",
        run: fill_and_exit,
    },
    Role {
        name: "mq::stream",
        run: stream,
    },
    Role {
        name: "mq::wait_for_removal",
        run: wait_for_removal,
    },
    Role {
        name: "mq::send_until_removed",
        run: send_until_removed,
    },
    Role {
        name: "mq::tiny_rlimit",
        run: tiny_rlimit,
    },
    Role {
        name: "mq::denied",
        run: denied,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "mq":
            priorities_highest_first,
            kernel_lifetime_outlives_the_creator,
            hundred_thousand_exactly_once_in_order,
            limits_full_empty_deadline,
            removed_under_a_waiting_receiver,
            removed_under_a_waiting_sender,
            descriptor_is_pollable,
            rlimit_msgqueue_is_named,
            other_users_are_denied [needs::root()],
            interoperates_with_c,
            recv_meta_gives_each_priority,
            binds_create_with_the_options_mode_and_group [needs::root()];
    ]
}

fn mq_name() -> String {
    format!("/{}", unique_name("procom-q"))
}

/// The leak check: the queue `name` no longer exists.
fn gone(name: &str) -> Outcome {
    let e = Queue::open(name).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::NotFound), "queue {name} leaked: {e:?}");
    Ok(())
}

fn priorities_highest_first() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(10), Some(64)));
    // Sent by another process: priorities 1, 5, 1, 9, 5.
    Proc::spawn("sender", &mut role("mq::fill_and_exit", &[&name, "prio"]))?.success(STEP)?;
    let mut got = Vec::new();
    for _ in 0..5 {
        let (m, p) = check!(q.recv_timeout(STEP));
        got.push((String::from_utf8_lossy(&m).into_owned(), p));
    }
    let want = [("d", 9), ("b", 5), ("e", 5), ("a", 1), ("c", 1)];
    ensure!(
        got.iter().map(|(m, p)| (m.as_str(), *p)).eq(want),
        "order {got:?}"
    );
    check!(q.remove());
    gone(&name)
}

/// Fills the queue per `what`, then exits.
fn fill_and_exit(args: &[String]) -> Outcome {
    let [name, what] = args else {
        return Err("args".into());
    };
    match what.as_str() {
        "prio" => {
            let q = check!(Queue::open(name));
            for (m, p) in [("a", 1), ("b", 5), ("c", 1), ("d", 9), ("e", 5)] {
                check!(q.send(m.as_bytes(), p));
            }
        }
        "one" => check!(check!(Queue::open(name)).send(b"a", 0)),
        "create-and-fill" => {
            let q = check!(Queue::create(name, Some(10), Some(128))).keep();
            for m in ["kept", "by the", "kernel"] {
                check!(q.send(m.as_bytes(), 0));
            }
        }
        other => return Err(format!("what {other}")),
    }
    Ok(())
}

fn kernel_lifetime_outlives_the_creator() -> Outcome {
    let name = mq_name();
    let mut creator = role("mq::fill_and_exit", &[&name, "create-and-fill"]);
    Proc::spawn("creator", &mut creator)?.success(STEP)?;
    // The creator has exited; the queue and its messages are still in the kernel.
    let q = check!(Queue::open(&name));
    ensure!(check!(q.attributes()).count == 3, "count");
    for want in ["kept", "by the", "kernel"] {
        ensure!(check!(q.recv_timeout(STEP)).0 == want.as_bytes(), "{want}");
    }
    // An opener never removes: the queue is still there after `q` is dropped.
    drop(q);
    check!(procom::mq::remove(&name));
    gone(&name)
}

const MANY: u32 = 100_000;
const PRIORITIES: u32 = 4;

/// Sends MANY numbered messages, the priority cycling through 0..PRIORITIES.
fn stream(args: &[String]) -> Outcome {
    let q = check!(Queue::open(&args[0]));
    for i in 0..MANY {
        check!(q.send(&i.to_le_bytes(), i % PRIORITIES));
    }
    Ok(())
}

fn hundred_thousand_exactly_once_in_order() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(10), Some(16)));
    let sender = Proc::spawn("sender", &mut role("mq::stream", &[&name]))?;
    // Priorities reorder what waits in the queue together, so the check is: every number
    // exactly once, each with the priority it was sent with, and in order within a priority.
    let mut seen = vec![false; MANY as usize];
    let mut last: [Option<u32>; PRIORITIES as usize] = [None; PRIORITIES as usize];
    for _ in 0..MANY {
        let (m, p) = check!(q.recv_timeout(STEP));
        let i = u32::from_le_bytes(check!(<[u8; 4]>::try_from(&m[..])));
        ensure!(
            i < MANY && !seen[i as usize],
            "message {i} arrived twice or is unknown"
        );
        ensure!(p == i % PRIORITIES, "message {i} came with priority {p}");
        ensure!(
            last[p as usize].is_none_or(|l| l < i),
            "message {i} of priority {p} came after {:?}",
            last[p as usize]
        );
        seen[i as usize] = true;
        last[p as usize] = Some(i);
    }
    sender.success(STEP)?;
    ensure!(seen.iter().all(|s| *s), "a message is missing");
    let e = q.try_recv().err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Empty),
        "more than {MANY} messages: {e:?}"
    );
    drop(q);
    gone(&name)
}

fn limits_full_empty_deadline() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(2), Some(32)));
    let a = check!(q.attributes());
    ensure!(
        a.max_messages == 2 && a.msgsize == 32 && a.count == 0 && !a.nonblocking,
        "attributes {a:?}"
    );
    let e = q.try_recv().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "empty: {e:?}");
    let e = q
        .recv_timeout(Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "deadline: {e:?}");
    let e = q
        .send(&[0; 33], 0)
        .err()
        .ok_or("a 33-byte message fit a 32-byte queue")?;
    ensure!(
        e.kind() == ErrorKind::TooLarge
            && e.limit() == Some(32)
            && e.to_string().contains("fs.mqueue.msgsize_max"),
        "oversize: {e}"
    );
    let e = q
        .send(b"x", procom::mq::PRIORITY_MAX + 1)
        .err()
        .ok_or("priority 32768")?;
    ensure!(
        e.kind() == ErrorKind::InvalidInput && e.to_string().contains("0 to 32767"),
        "{e}"
    );
    let ep = format!("mq:{name}");
    let bad = Sender::connect(format!("{ep}?priority=40000")).err();
    ensure!(
        bad.as_ref().map(|e| e.kind()) == Some(ErrorKind::InvalidEndpoint)
            && bad.is_some_and(|e| e.to_string().contains("0 to 32767")),
        "priority 40000 accepted"
    );
    let mut tx = check!(Sender::connect(format!("{ep}?priority=3")));
    check!(tx.try_send(b"1").map_err(|e| e.into_error()));
    check!(tx.try_send(b"2").map_err(|e| e.into_error()));
    let full = tx
        .try_send(b"3".to_vec())
        .err()
        .ok_or("a full queue took a third message")?;
    ensure!(
        full.kind() == ErrorKind::Full && full.into_message() == b"3",
        "full: handed back"
    );
    let e = tx.send_timeout(b"3", Duration::from_millis(20)).err();
    ensure!(
        e.as_ref().map(|e| e.kind()) == Some(ErrorKind::Timeout),
        "send deadline: {e:?}"
    );
    // A sender's descriptor is write-only.
    let e = tx.as_fd().ok_or("no descriptor")?;
    ensure!(
        check!(rustix::fs::fcntl_getfl(e)).contains(rustix::fs::OFlags::WRONLY),
        "mode"
    );
    // Non-blocking mode: blocking calls answer at once, Full and Empty.
    check!(q.set_nonblocking(true));
    ensure!(check!(q.attributes()).nonblocking, "mode not set");
    let e = q.send(b"x", 0).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Full), "non-blocking full: {e:?}");
    ensure!(
        check!(q.recv()) == (b"1".to_vec(), 3),
        "priority from Options"
    );
    check!(q.recv());
    let e = q.recv().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "non-blocking empty: {e:?}");
    check!(q.set_nonblocking(false));
    // Names, sizes, existence.
    for bad in ["jobs", "/a/b", "/", "/.", "/.."] {
        let e = Queue::create(bad, None, None).err();
        ensure!(
            e.as_ref().map(|e| e.kind()) == Some(ErrorKind::InvalidInput)
                && e.as_ref()
                    .is_some_and(|e| e.to_string().contains("not a valid message queue name")),
            "name {bad:?}: {e:?}"
        );
    }
    let e = Queue::create(&format!("{name}-0"), Some(0), None)
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::InvalidInput), "capacity 0: {e:?}");
    let e = Queue::create(&format!("{name}-big"), Some(1 << 20), None).err();
    let e = e.ok_or("a capacity of a million messages was accepted")?;
    ensure!(
        e.kind() == ErrorKind::LimitReached
            && (e.to_string().contains("fs.mqueue.msg_max")
                || e.to_string().contains("hard limits")),
        "over the limit: {e}"
    );
    let missing = Queue::open("/procom-no-such-queue").err().map(|e| e.kind());
    ensure!(missing == Some(ErrorKind::NotFound), "missing: {missing:?}");
    let again = Queue::create(&name, None, None).err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::AlreadyExists),
        "exclusive: {again:?}"
    );
    drop(tx);
    check!(q.remove());
    gone(&format!("{name}-0"))?;
    gone(&format!("{name}-big"))?;
    gone(&name)
}

/// Waits (without a deadline) until the queue is removed; what was sent before still arrives.
fn wait_for_removal(args: &[String]) -> Outcome {
    let q = check!(Queue::open(&args[0]));
    println!("waiting");
    let _ = std::io::stdout().flush();
    // Duration::MAX means no deadline at all, not "now".
    let (m, _) = check!(q.recv_timeout(Duration::MAX));
    ensure!(m == b"last words", "got {m:?}");
    let e = q
        .recv_timeout(Duration::MAX)
        .err()
        .ok_or("a message arrived")?;
    ensure!(
        e.kind() == ErrorKind::PeerGone && e.to_string().contains("removed"),
        "got {e}"
    );
    println!("gone");
    Ok(())
}

fn removed_under_a_waiting_receiver() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(4), Some(64)));
    let mut waiter = Proc::spawn("waiter", &mut role("mq::wait_for_removal", &[&name]))?;
    waiter.expect_line("waiting")?;
    check!(q.send(b"last words", 0));
    check!(q.remove());
    waiter.expect_line("gone")?;
    waiter.success(STEP)?;
    gone(&name)
}

/// Sends into a full queue through a channel Sender until the queue is removed.
fn send_until_removed(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::connect(format!("mq:{}", args[0])));
    println!("waiting");
    let _ = std::io::stdout().flush();
    let e = tx
        .send(b"no room".to_vec())
        .err()
        .ok_or("a full queue took the message")?;
    ensure!(e.kind() == ErrorKind::PeerGone, "got {e}");
    ensure!(
        e.into_message() == b"no room",
        "the message was not handed back"
    );
    println!("gone");
    Ok(())
}

fn removed_under_a_waiting_sender() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(1), Some(64)));
    check!(q.send(b"fills it", 0));
    let mut waiter = Proc::spawn("sender", &mut role("mq::send_until_removed", &[&name]))?;
    waiter.expect_line("waiting")?;
    check!(q.remove());
    waiter.expect_line("gone")?;
    waiter.success(STEP)?;
    gone(&name)
}

fn descriptor_is_pollable() -> Outcome {
    use rustix::event::{PollFd, PollFlags, poll};
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(1), Some(64)));
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let step = rustix::time::Timespec {
        tv_sec: STEP.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(&q, PollFlags::IN)];
    ensure!(
        check!(poll(&mut fds, Some(&zero))) == 0,
        "readable while empty"
    );
    Proc::spawn("sender", &mut role("mq::fill_and_exit", &[&name, "one"]))?.success(STEP)?;
    let mut fds = [PollFd::new(&q, PollFlags::IN | PollFlags::OUT)];
    ensure!(check!(poll(&mut fds, Some(&step))) == 1, "not readable");
    let ready = fds[0].revents();
    ensure!(
        ready.contains(PollFlags::IN) && !ready.contains(PollFlags::OUT),
        "full queue: {ready:?}"
    );
    ensure!(check!(q.try_recv()).0 == b"a", "first message");
    drop(q);
    gone(&name)
}

/// With RLIMIT_MSGQUEUE lowered to 1000 bytes, creating a queue fails clearly.
fn tiny_rlimit(args: &[String]) -> Outcome {
    check!(rustix::process::setrlimit(
        rustix::process::Resource::Msgqueue,
        rustix::process::Rlimit {
            current: Some(1000),
            maximum: Some(1000)
        }
    ));
    let e = Queue::create(&args[0], Some(10), Some(1024)).err();
    let e = e.ok_or("the queue was created over RLIMIT_MSGQUEUE")?;
    let text = e.to_string();
    ensure!(
        e.kind() == ErrorKind::LimitReached
            && text.contains("RLIMIT_MSGQUEUE")
            && text.contains("ulimit -q")
            && !text.contains('\n'),
        "got {e}"
    );
    Ok(())
}

fn rlimit_msgqueue_is_named() -> Outcome {
    let name = mq_name();
    Proc::spawn("limited", &mut role("mq::tiny_rlimit", &[&name]))?.success(STEP)?;
    gone(&name)
}

/// As uid 65534: root's 0600 queue cannot be opened, and limits above the sysctls are named.
fn denied(args: &[String]) -> Outcome {
    let [name] = args else {
        return Err("args".into());
    };
    for (read, write) in [(true, false), (false, true)] {
        let e = Queue::open_with(name, read, write)
            .err()
            .ok_or("opened root's 0600 queue")?;
        ensure!(
            e.kind() == ErrorKind::PermissionDenied
                && e.to_string()
                    .starts_with(&format!("mq:{name}: permission denied")),
            "{e}"
        );
    }
    let e = Sender::connect(format!("mq:{name}"))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PermissionDenied), "channel: {e:?}");
    let limits = procom::mq::limits();
    let own = format!("{name}-nobody");
    let e = Queue::create(&own, Some(limits.msg_max as u64 + 1), Some(16)).err();
    let e = e.ok_or("a capacity over msg_max was accepted")?;
    ensure!(
        e.to_string().contains("fs.mqueue.msg_max") && e.to_string().contains("sysctl -w"),
        "limit: {e}"
    );
    Ok(())
}

fn other_users_are_denied() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, None, None));
    let mut cmd = role("mq::denied", &[&name]);
    Proc::spawn("nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
    drop(q);
    gone(&name)?;
    gone(&format!("{name}-nobody"))
}

const C_PEER: &str = r#"
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
/* argv[1]: a queue procom created. Receive everything waiting (highest priority first, as
   the standard says), print each with its priority, then answer with three priorities. */
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    mqd_t q = mq_open(argv[1], O_RDWR);
    if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
    struct mq_attr a;
    if (mq_getattr(q, &a) != 0) { perror("mq_getattr"); return 1; }
    char buf[8193]; unsigned prio;
    for (long i = 0, n = a.mq_curmsgs; i < n; i++) {
        ssize_t len = mq_receive(q, buf, 8192, &prio);
        if (len < 0) { perror("mq_receive"); return 1; }
        buf[len] = 0;
        printf("%s prio %u\n", buf, prio);
    }
    if (mq_send(q, "low from C", 10, 1) != 0) { perror("mq_send"); return 1; }
    if (mq_send(q, "high from C", 11, 30000) != 0) { perror("mq_send"); return 1; }
    if (mq_send(q, "mid from C", 10, 7) != 0) { perror("mq_send"); return 1; }
    fflush(stdout);
    return mq_close(q);
}
"#;

/// Compiles `source` with the system C compiler into `dir`; returns the program.
pub fn compile_c(dir: &Scratch, source: &str, libs: &[&str]) -> Result<std::path::PathBuf, String> {
    let (src, exe) = (dir.join("peer.c"), dir.join("peer"));
    check!(std::fs::write(&src, source));
    let mut cc = check!(
        Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .args(libs)
            .stderr(Stdio::piped())
            .spawn()
    );
    let status = check!(wait_pid(&mut cc, STEP));
    ensure!(
        status.is_some_and(|s| s.success()),
        "compiling the C peer failed"
    );
    check!(std::fs::remove_file(&src));
    Ok(exe)
}

fn interoperates_with_c() -> Outcome {
    let dir = Scratch::new("procom-mq-c")?;
    let exe = compile_c(&dir, C_PEER, &["-lrt"])?;
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(4), Some(8192)));
    check!(q.send(b"routine from procom", 2));
    check!(q.send(b"urgent from procom", 9));
    // And through the channel layer, with the priority its endpoint gives.
    let mut tx = check!(Sender::connect(format!("mq:{name}?priority=5")));
    check!(tx.send(b"channel from procom").map_err(|e| e.into_error()));
    drop(tx);
    let mut cmd = Command::new(&exe);
    cmd.arg(&name);
    let fin = Proc::spawn("C peer", &mut cmd)?.success(STEP)?;
    ensure!(
        fin.stdout
            == [
                "urgent from procom prio 9",
                "channel from procom prio 5",
                "routine from procom prio 2"
            ],
        "the C peer saw {:?}",
        fin.stdout
    );
    for want in [("high from C", 30000), ("mid from C", 7), ("low from C", 1)] {
        let (m, p) = check!(q.recv_timeout(STEP));
        ensure!(
            (m.as_slice(), p) == (want.0.as_bytes(), want.1),
            "from C: {:?} prio {p}",
            String::from_utf8_lossy(&m)
        );
    }
    check!(q.remove());
    gone(&name)?;
    check!(std::fs::remove_file(&exe));
    dir.finish()
}

/// `Receiver::recv_meta` hands each message's priority over, which `recv` drops; the
/// messages come from another process.
fn recv_meta_gives_each_priority() -> Outcome {
    let name = mq_name();
    let ep = format!("mq:{name}");
    let mut rx = check!(procom::Receiver::bind(&ep));
    // Sent by another process: priorities 1, 5, 1, 9, 5.
    Proc::spawn("sender", &mut role("mq::fill_and_exit", &[&name, "prio"]))?.success(STEP)?;
    let mut got = Vec::new();
    for _ in 0..5 {
        let (m, meta) = check!(rx.recv_meta_timeout(STEP));
        ensure!(meta.mtype.is_none() && meta.from.is_none(), "{meta:?}");
        got.push((String::from_utf8_lossy(&m).into_owned(), meta.priority));
    }
    let want = [("d", 9), ("b", 5), ("e", 5), ("a", 1), ("c", 1)];
    ensure!(
        got.iter()
            .map(|(m, p)| (m.as_str(), *p))
            .eq(want.map(|(m, p)| (m, Some(p)))),
        "{got:?}"
    );
    Ok(())
}

/// `Options::mode` and `Options::group` apply to what every binding receiver creates: a
/// queue (POSIX and System V), a FIFO, a shared-memory channel, a Unix socket file.
fn binds_create_with_the_options_mode_and_group() -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let dir = Scratch::new("procom-bind-mode")?;
    let opts = procom::Options::default().mode(0o640).group(65534);
    let fifo = dir.join("f");
    let sock = dir.join("g");
    let shm = format!("/{}", unique_name("procom-shm"));
    let key = 0x6d00_0000 | (std::process::id() as i32 & 0xffff);
    let mq = mq_name();
    let cases = [
        (format!("fifo:{}", fifo.display()), Some(fifo.clone())),
        (format!("unixgram:{}", sock.display()), Some(sock.clone())),
        (format!("shm:{shm}"), Some(format!("/dev/shm{shm}").into())),
        (format!("mq:{mq}"), None),
        (format!("msg:{key:#x}"), None),
    ];
    for (ep, path) in cases {
        let rx = check!(procom::Receiver::bind_with(&ep, &opts));
        let (mode, gid) = match (&path, ep.split(':').next()) {
            (Some(p), _) => {
                let m = check!(std::fs::symlink_metadata(p));
                (m.mode() & 0o777, m.gid())
            }
            (None, Some("mq")) => {
                let q = check!(Queue::open(&mq));
                let st = check!(rustix::fs::fstat(&q));
                (st.st_mode & 0o777, st.st_gid)
            }
            _ => {
                let q = check!(procom::msg::MsgQueue::open(
                    &procom::endpoint::SysvKey::Key(key)
                ));
                let st = check!(q.stat());
                (st.mode, st.gid)
            }
        };
        ensure!(
            mode == 0o640 && gid == 65534,
            "{ep}: mode {mode:o}, gid {gid}"
        );
        drop(rx);
    }
    dir.finish()
}
