//! Message queues across real processes, both families: priorities and types, kernel
//! lifetime, 100,000 messages exactly once and in order, limits, full/empty/deadline errors,
//! removal under a waiting receiver, permissions, and a C peer using the standard calls.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use procom::endpoint::MsgKey;
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::{ErrorKind, Options, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, role, test, unique_name, wait_pid};

pub const ROLES: &[Role] = &[
    Role { name: "queue::mq_fill_and_exit", run: mq_fill_and_exit },
    Role { name: "queue::msg_fill_and_exit", run: msg_fill_and_exit },
    Role { name: "queue::mq_stream", run: mq_stream },
    Role { name: "queue::msg_stream", run: msg_stream },
    Role { name: "queue::msg_wait", run: msg_wait },
    Role { name: "queue::mq_tiny_rlimit", run: mq_tiny_rlimit },
    Role { name: "queue::denied", run: denied },
];

pub fn trials() -> Vec<Trial> {
    vec![
        test("queue::mq_priorities_highest_first", mq_priorities_highest_first),
        test("queue::msg_type_selectors", msg_type_selectors),
        test("queue::kernel_lifetime_outlives_the_creator", kernel_lifetime_outlives_the_creator),
        test("queue::mq_hundred_thousand_in_order", mq_hundred_thousand_in_order),
        test("queue::msg_hundred_thousand_in_order", msg_hundred_thousand_in_order),
        test("queue::mq_limits_full_empty_deadline", mq_limits_full_empty_deadline),
        test("queue::msg_stat_limits_full_empty", msg_stat_limits_full_empty),
        test("queue::msg_removed_under_a_waiting_receiver", msg_removed_under_a_waiting_receiver),
        test("queue::rlimit_msgqueue_is_named", rlimit_msgqueue_is_named),
        test("queue::other_users_are_denied", other_users_are_denied),
        test("queue::interoperates_with_c", interoperates_with_c),
    ]
}

fn mq_name() -> String {
    format!("/{}", unique_name("procom-q"))
}

fn msg_key() -> MsgKey {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    MsgKey::Key((0x5100_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)) as i32)
}

fn key_arg(k: &MsgKey) -> String {
    match k {
        MsgKey::Key(k) => k.to_string(),
        MsgKey::Path(p) => p.display().to_string(),
    }
}

fn parse_key(s: &str) -> Result<MsgKey, String> {
    Ok(MsgKey::Key(check!(s.parse::<i32>())))
}

fn mq_priorities_highest_first() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(10), Some(64)));
    // Sent by another process: priorities 1, 5, 1, 9, 5.
    let mut cmd = role("queue::mq_fill_and_exit", &[&name, "prio"]);
    Proc::spawn("sender", &mut cmd)?.success(STEP)?;
    let mut got = Vec::new();
    for _ in 0..5 {
        let (m, p) = check!(q.recv_timeout(STEP));
        got.push((String::from_utf8_lossy(&m).into_owned(), p));
    }
    let want = [("d", 9), ("b", 5), ("e", 5), ("a", 1), ("c", 1)];
    ensure!(got.iter().map(|(m, p)| (m.as_str(), *p)).eq(want), "order {got:?}");
    check!(q.remove());
    Ok(())
}

/// Creates nothing: opens the queue, fills it per `what`, exits.
fn mq_fill_and_exit(args: &[String]) -> Outcome {
    let [name, what] = args else { return Err("args".into()) };
    match what.as_str() {
        "prio" => {
            let q = check!(Queue::open(name));
            for (m, p) in [("a", 1), ("b", 5), ("c", 1), ("d", 9), ("e", 5)] {
                check!(q.send(m.as_bytes(), p));
            }
        }
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

fn msg_fill_and_exit(args: &[String]) -> Outcome {
    let [key, what] = args else { return Err("args".into()) };
    let key = parse_key(key)?;
    match what.as_str() {
        "types" => {
            let q = check!(MsgQueue::open(&key));
            for (t, m) in [(3, "three"), (1, "one-a"), (2, "two"), (1, "one-b"), (5, "five")] {
                check!(q.send(t, m.as_bytes()));
            }
        }
        "create-and-fill" => {
            let q = check!(MsgQueue::create(&key)).keep();
            for m in ["kept", "by the", "kernel"] {
                check!(q.send(1, m.as_bytes()));
            }
        }
        other => return Err(format!("what {other}")),
    }
    Ok(())
}

fn msg_type_selectors() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    Proc::spawn("sender", &mut role("queue::msg_fill_and_exit", &[&key_arg(&key), "types"]))?.success(STEP)?;
    let take = |sel: i64| -> Result<(i64, String), String> {
        let (t, m) = check!(q.recv_timeout(sel, STEP));
        Ok((t, String::from_utf8_lossy(&m).into_owned()))
    };
    ensure!(take(1)? == (1, "one-a".into()), "selector 1");
    ensure!(take(-2)? == (1, "one-b".into()), "selector -2 takes the lowest type <= 2");
    ensure!(take(-2)? == (2, "two".into()), "selector -2 again");
    ensure!(take(0)? == (3, "three".into()), "selector 0 takes the first");
    let e = q.try_recv(4).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "no type 4: {e:?}");
    ensure!(take(0)? == (5, "five".into()), "last");
    check!(q.remove());
    Ok(())
}

fn kernel_lifetime_outlives_the_creator() -> Outcome {
    let name = mq_name();
    Proc::spawn("mq creator", &mut role("queue::mq_fill_and_exit", &[&name, "create-and-fill"]))?.success(STEP)?;
    let key = msg_key();
    Proc::spawn("msg creator", &mut role("queue::msg_fill_and_exit", &[&key_arg(&key), "create-and-fill"]))?.success(STEP)?;
    // Both creators have exited; the queues and their messages are still in the kernel.
    let q = check!(Queue::open(&name));
    ensure!(check!(q.attributes()).count == 3, "mq count");
    let m = check!(MsgQueue::open(&key));
    ensure!(check!(m.stat()).count == 3, "msg count");
    for want in ["kept", "by the", "kernel"] {
        ensure!(check!(q.recv_timeout(STEP)).0 == want.as_bytes(), "mq {want}");
        ensure!(check!(m.recv_timeout(0, STEP)).1 == want.as_bytes(), "msg {want}");
    }
    check!(q.remove());
    check!(m.remove());
    Ok(())
}

const MANY: u32 = 100_000;

/// Sends MANY numbered messages; for mq the priority cycles so order is still checkable.
fn mq_stream(args: &[String]) -> Outcome {
    let q = check!(Queue::open(&args[0]));
    for i in 0..MANY {
        check!(q.send(&i.to_le_bytes(), 0));
    }
    Ok(())
}

fn msg_stream(args: &[String]) -> Outcome {
    let q = check!(MsgQueue::open(&parse_key(&args[0])?));
    for i in 0..MANY {
        check!(q.send(1 + i64::from(i % 3), &i.to_le_bytes()));
    }
    Ok(())
}

fn mq_hundred_thousand_in_order() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(10), Some(16)));
    let sender = Proc::spawn("sender", &mut role("queue::mq_stream", &[&name]))?;
    for i in 0..MANY {
        let (m, _) = check!(q.recv_timeout(STEP));
        ensure!(m == i.to_le_bytes(), "message {i} arrived as {m:?}");
    }
    sender.success(STEP)?;
    ensure!(q.try_recv().is_err(), "more than {MANY} messages");
    check!(q.remove());
    Ok(())
}

fn msg_hundred_thousand_in_order() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let sender = Proc::spawn("sender", &mut role("queue::msg_stream", &[&key_arg(&key)]))?;
    for i in 0..MANY {
        let (t, m) = check!(q.recv_timeout(0, STEP));
        ensure!(m == i.to_le_bytes() && t == 1 + i64::from(i % 3), "message {i} arrived as {m:?} type {t}");
    }
    sender.success(STEP)?;
    ensure!(q.try_recv(0).is_err(), "more than {MANY} messages");
    check!(q.remove());
    Ok(())
}

fn mq_limits_full_empty_deadline() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(2), Some(32)));
    let a = check!(q.attributes());
    ensure!(a.capacity == 2 && a.msgsize == 32 && a.count == 0 && !a.nonblocking, "attributes {a:?}");
    let e = q.try_recv().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "empty: {e:?}");
    let e = q.recv_timeout(Duration::from_millis(20)).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "deadline: {e:?}");
    let e = q.send(&[0; 33], 0).err().ok_or("a 33-byte message fit a 32-byte queue")?;
    ensure!(e.kind() == ErrorKind::TooLarge && e.limit() == Some(32), "oversize: {e}");
    let ep = format!("mq:{name}");
    let mut tx = check!(Sender::connect_with(&ep, &Options::default().priority(3)));
    check!(tx.try_send(b"1").map_err(|e| e.into_error()));
    check!(tx.try_send(b"2").map_err(|e| e.into_error()));
    let full = tx.try_send(b"3".to_vec()).err().ok_or("a full queue took a third message")?;
    ensure!(full.kind() == ErrorKind::Full && full.into_message() == b"3", "full: handed back");
    let e = tx.send_timeout(b"3", Duration::from_millis(20)).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "send deadline: {e:?}");
    check!(q.set_nonblocking(true));
    ensure!(check!(q.attributes()).nonblocking, "mode not set");
    ensure!(check!(q.recv()).1 == 3, "priority from Options");
    check!(q.recv());
    let e = q.recv().err().map(|e| e.kind()); // non-blocking: a blocking call returns at once
    ensure!(e == Some(ErrorKind::Timeout) || e == Some(ErrorKind::Empty), "non-blocking empty: {e:?}");
    let bad = Queue::create("jobs", None, None).err().map(|e| e.kind());
    ensure!(bad == Some(ErrorKind::InvalidInput), "name without '/': {bad:?}");
    let missing = Queue::open("/procom-no-such-queue").err().map(|e| e.kind());
    ensure!(missing == Some(ErrorKind::NotFound), "missing: {missing:?}");
    let again = Queue::create(&name, None, None).err().map(|e| e.kind());
    ensure!(again == Some(ErrorKind::AlreadyExists), "exclusive: {again:?}");
    drop(tx);
    check!(q.remove());
    Ok(())
}

fn msg_stat_limits_full_empty() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let limits = procom::msg::limits();
    let st = check!(q.stat());
    ensure!(st.mode == 0o600 && st.count == 0 && st.max_bytes == limits.msgmnb as u64, "stat {st:?}");
    check!(q.send(7, b"hello"));
    let st = check!(q.stat());
    ensure!(st.count == 1 && st.bytes == 5 && st.last_sender == std::process::id() as i32, "after send {st:?}");
    check!(q.set_max_bytes(10));
    ensure!(check!(q.stat()).max_bytes == 10, "byte limit not set");
    let e = q.try_send(7, b"world!").err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Full), "full: {e:?}");
    let e = q.send_timeout(7, b"world!", Duration::from_millis(20)).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "deadline: {e:?}");
    let big = vec![0u8; limits.msgmax as usize + 1];
    let e = q.send(1, &big).err().ok_or("a message over msgmax was sent")?;
    ensure!(e.kind() == ErrorKind::TooLarge && e.to_string().contains("kernel.msgmax"), "oversize: {e}");
    let e = q.send(0, b"x").err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::InvalidInput), "type 0: {e:?}");
    check!(q.recv(0));
    ensure!(check!(q.stat()).last_receiver == std::process::id() as i32, "last receiver");
    let e = q.try_recv(0).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "empty: {e:?}");
    let again = MsgQueue::create(&key).err().map(|e| e.kind());
    ensure!(again == Some(ErrorKind::AlreadyExists), "exclusive: {again:?}");
    check!(q.remove());
    Ok(())
}

/// Blocks receiving; reports PeerGone when the queue is removed under it.
fn msg_wait(args: &[String]) -> Outcome {
    let q = check!(MsgQueue::open(&parse_key(&args[0])?));
    println!("waiting");
    let _ = std::io::stdout().flush();
    let e = q.recv(0).err().ok_or("a message arrived")?;
    ensure!(e.kind() == ErrorKind::PeerGone && e.to_string().contains("removed"), "got {e}");
    println!("gone");
    Ok(())
}

fn msg_removed_under_a_waiting_receiver() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let mut waiter = Proc::spawn("waiter", &mut role("queue::msg_wait", &[&key_arg(&key)]))?;
    waiter.expect_line("waiting")?;
    check!(q.remove());
    waiter.expect_line("gone")?;
    waiter.success(STEP)?;
    Ok(())
}

/// With RLIMIT_MSGQUEUE lowered to 1000 bytes, creating a default queue fails clearly.
fn mq_tiny_rlimit(args: &[String]) -> Outcome {
    check!(rustix::process::setrlimit(
        rustix::process::Resource::Msgqueue,
        rustix::process::Rlimit { current: Some(1000), maximum: Some(1000) }
    ));
    let e = Queue::create(&args[0], Some(10), Some(1024)).err().ok_or("the queue was created over RLIMIT_MSGQUEUE")?;
    ensure!(e.to_string().contains("RLIMIT_MSGQUEUE") && e.to_string().contains("ulimit -q"), "got {e}");
    Ok(())
}

fn rlimit_msgqueue_is_named() -> Outcome {
    let name = mq_name();
    Proc::spawn("limited", &mut role("queue::mq_tiny_rlimit", &[&name]))?.success(STEP)?;
    let e = Queue::open(&name).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::NotFound), "a queue was left: {e:?}");
    Ok(())
}

/// As uid 65534: root's 0600 queues cannot be opened, and limits above the sysctls are named.
fn denied(args: &[String]) -> Outcome {
    let [name, key] = args else { return Err("args".into()) };
    let e = Queue::open(name).err().ok_or("opened root's 0600 queue")?;
    ensure!(e.kind() == ErrorKind::PermissionDenied, "mq: {e}");
    let e = MsgQueue::open(&parse_key(key)?).err().ok_or("opened root's 0600 System V queue")?;
    ensure!(e.kind() == ErrorKind::PermissionDenied, "msg: {e}");
    let limits = procom::mq::limits();
    let own = format!("{name}-nobody");
    let e = Queue::create(&own, Some(limits.msg_max as u64 + 1), Some(16)).err().ok_or("capacity over msg_max was accepted")?;
    ensure!(e.to_string().contains("fs.mqueue.msg_max") && e.to_string().contains("sysctl"), "limit: {e}");
    Ok(())
}

fn other_users_are_denied() -> Outcome {
    let name = mq_name();
    let q = check!(Queue::create(&name, None, None));
    let key = msg_key();
    let m = check!(MsgQueue::create(&key));
    let mut cmd = role("queue::denied", &[&name, &key_arg(&key)]);
    match as_nobody(&mut cmd) {
        Ok(cmd) => {
            Proc::spawn("nobody", cmd)?.success(STEP)?;
        }
        Err(reason) => println!("skipped: {reason}"),
    }
    check!(q.remove());
    check!(m.remove());
    Ok(())
}

const C_PEER: &str = r#"
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/msg.h>
struct msgbuf_t { long mtype; char text[64]; };
int main(int argc, char **argv) {
    /* argv[1]: POSIX queue, argv[2]: System V key. Receive one of each, answer each. */
    mqd_t q = mq_open(argv[1], O_RDWR);
    if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
    char buf[8192]; unsigned prio;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
    if (n < 0) { perror("mq_receive"); return 1; }
    buf[n] = 0;
    printf("mq: %s prio %u\n", buf, prio);
    if (mq_send(q, "from C", 6, 7) != 0) { perror("mq_send"); return 1; }
    int id = msgget(atoi(argv[2]), 0);
    if (id < 0) { perror("msgget"); return 1; }
    struct msgbuf_t m;
    n = msgrcv(id, &m, sizeof m.text, 2, 0);
    if (n < 0) { perror("msgrcv"); return 1; }
    m.text[n] = 0;
    printf("msg: %s type %ld\n", m.text, m.mtype);
    struct msgbuf_t r = { 9, "from C" };
    if (msgsnd(id, &r, 6, 0) != 0) { perror("msgsnd"); return 1; }
    fflush(stdout);
    return 0;
}
"#;

fn interoperates_with_c() -> Outcome {
    let dir = Scratch::new("procom-q-c")?;
    let (src, exe) = (dir.join("peer.c"), dir.join("peer"));
    check!(std::fs::write(&src, C_PEER.replace("#include <string.h>", "#include <string.h>\n#include <stdlib.h>")));
    let mut cc = check!(Command::new("cc").arg("-o").arg(&exe).arg(&src).arg("-lrt").stderr(Stdio::piped()).spawn());
    ensure!(check!(wait_pid(&mut cc, STEP)).is_some_and(|s| s.success()), "compiling the C peer failed");
    let name = mq_name();
    let q = check!(Queue::create(&name, Some(4), Some(8192)));
    let key = msg_key();
    let m = check!(MsgQueue::create(&key));
    check!(q.send(b"from procom", 4));
    check!(m.send(2, b"from procom"));
    let mut cmd = Command::new(&exe);
    cmd.arg(&name).arg(key_arg(&key));
    let fin = Proc::spawn("C peer", &mut cmd)?.success(STEP)?;
    ensure!(fin.stdout == ["mq: from procom prio 4", "msg: from procom type 2"], "C peer saw {:?}", fin.stdout);
    ensure!(check!(q.recv_timeout(STEP)) == (b"from C".to_vec(), 7), "mq answer");
    ensure!(check!(m.recv_timeout(0, STEP)) == (9, b"from C".to_vec()), "msg answer");
    check!(q.remove());
    check!(m.remove());
    check!(std::fs::remove_file(&src));
    check!(std::fs::remove_file(&exe));
    dir.finish()
}
