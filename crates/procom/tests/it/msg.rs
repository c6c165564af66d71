//! System V message queues across real processes: the three type selectors, kernel lifetime
//! with a path key (ftok), 100,000 messages exactly once and in order, stat and the byte
//! limit, full/empty/deadline/oversize errors, removal under a waiting receiver or sender,
//! permissions, and a C peer using the standard calls. Every test ends by checking in
//! /proc/sysvipc/msg that its queues are gone.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use procom::endpoint::SysvKey;
use procom::msg::MsgQueue;
use procom::{ErrorKind, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, role, trials,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "msg::fill_and_exit",
        run: fill_and_exit,
    },
    Role {
        name: "msg::stream",
        run: stream,
    },
    Role {
        name: "msg::wait_for_removal",
        run: wait_for_removal,
    },
    Role {
        name: "msg::send_until_removed",
        run: send_until_removed,
    },
    Role {
        name: "msg::denied",
        run: denied,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "msg":
            type_selectors,
            kernel_lifetime_with_a_path_key,
            hundred_thousand_exactly_once_in_order,
            stat_limits_full_empty,
            removed_under_a_waiting_receiver,
            removed_under_a_waiting_sender,
            other_users_are_denied [needs::root()],
            interoperates_with_c;
    ]
}

/// A key no other test or run uses: this process's pid and a counter.
fn msg_key() -> SysvKey {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SysvKey::Key((0x5100_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)) as i32)
}

fn key_arg(k: &SysvKey) -> String {
    match k {
        SysvKey::Key(k) => k.to_string(),
        SysvKey::Path(p) => p.display().to_string(),
    }
}

fn parse_key(s: &str) -> Result<SysvKey, String> {
    Ok(match s.parse::<i32>() {
        Ok(k) => SysvKey::Key(k),
        Err(_) => SysvKey::Path(s.into()),
    })
}

/// The leak check: no queue with `key` in the kernel's list.
fn gone(key: i32) -> Outcome {
    let list = check!(std::fs::read_to_string("/proc/sysvipc/msg"));
    let leaked = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
        .any(|k| k == key);
    ensure!(!leaked, "System V queue {key:#x} leaked");
    Ok(())
}

fn gone_key(key: &SysvKey) -> Outcome {
    match key {
        SysvKey::Key(k) => gone(*k),
        SysvKey::Path(_) => Err("a path key".into()),
    }
}

/// Fills the queue per `what`, then exits.
fn fill_and_exit(args: &[String]) -> Outcome {
    let [key, what] = args else {
        return Err("args".into());
    };
    let key = parse_key(key)?;
    match what.as_str() {
        "types" => {
            let q = check!(MsgQueue::open(&key));
            for (t, m) in [
                (3, "three"),
                (1, "one-a"),
                (2, "two"),
                (1, "one-b"),
                (5, "five"),
            ] {
                check!(q.send(m.as_bytes(), t));
            }
        }
        "create-and-fill" => {
            let q = check!(MsgQueue::create(&key)).keep();
            for m in ["kept", "by the", "kernel"] {
                check!(q.send(m.as_bytes(), 1));
            }
        }
        other => return Err(format!("what {other}")),
    }
    Ok(())
}

fn type_selectors() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let mut sender = role("msg::fill_and_exit", &[&key_arg(&key), "types"]);
    Proc::spawn("sender", &mut sender)?.success(STEP)?;
    let take = |sel: i64| -> Result<(i64, String), String> {
        let (m, t) = check!(q.recv_timeout(sel, STEP));
        Ok((t, String::from_utf8_lossy(&m).into_owned()))
    };
    ensure!(take(1)? == (1, "one-a".into()), "selector 1");
    ensure!(
        take(-2)? == (1, "one-b".into()),
        "selector -2 takes the lowest type <= 2"
    );
    ensure!(take(-2)? == (2, "two".into()), "selector -2 again");
    ensure!(
        take(0)? == (3, "three".into()),
        "selector 0 takes the first"
    );
    let e = q.try_recv(4).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "no type 4: {e:?}");
    let e = q.try_recv(-4).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "no type <= 4: {e:?}");
    ensure!(take(0)? == (5, "five".into()), "last");
    drop(q);
    gone_key(&key)
}

fn kernel_lifetime_with_a_path_key() -> Outcome {
    let dir = Scratch::new("procom-msg-path")?;
    let file = dir.join("key");
    check!(std::fs::write(&file, b""));
    let key = SysvKey::Path(file.clone());
    let path = file.display().to_string();
    let creator = Proc::spawn(
        "creator",
        &mut role("msg::fill_and_exit", &[&path, "create-and-fill"]),
    )?;
    let pid = creator.pid() as i32;
    creator.success(STEP)?;
    // The creator has exited; the queue and its messages are still in the kernel, found
    // again through the same path.
    let q = check!(MsgQueue::open(&key));
    let st = check!(q.stat());
    ensure!(
        st.count == 3 && st.bytes == 16 && st.last_sender == pid && st.send_time > 0,
        "stat {st:?}"
    );
    for want in ["kept", "by the", "kernel"] {
        ensure!(
            check!(q.recv_timeout(0, STEP)).0 == want.as_bytes(),
            "{want}"
        );
    }
    let numeric = check!(procom_sys::mapping::ftok(
        &file,
        procom_sys::msg::FTOK_PROJECT
    ));
    drop(q); // an opener never removes
    check!(procom::msg::remove(&key));
    gone(numeric)?;
    check!(std::fs::remove_file(&file));
    dir.finish()
}

const MANY: u32 = 100_000;

/// Sends MANY numbered messages, the type cycling through 1, 2, 3.
fn stream(args: &[String]) -> Outcome {
    let q = check!(MsgQueue::open(&parse_key(&args[0])?));
    for i in 0..MANY {
        check!(q.send(&i.to_le_bytes(), 1 + i64::from(i % 3)));
    }
    Ok(())
}

fn hundred_thousand_exactly_once_in_order() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let sender = Proc::spawn("sender", &mut role("msg::stream", &[&key_arg(&key)]))?;
    // Selector 0 takes the queue in order, whatever the types: every number exactly once,
    // in order, with the type it was sent with.
    for i in 0..MANY {
        let (m, t) = check!(q.recv_timeout(0, STEP));
        ensure!(
            m == i.to_le_bytes() && t == 1 + i64::from(i % 3),
            "message {i} arrived as {m:?} of type {t}"
        );
    }
    sender.success(STEP)?;
    let e = q.try_recv(0).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Empty),
        "more than {MANY} messages: {e:?}"
    );
    drop(q);
    gone_key(&key)
}

fn stat_limits_full_empty() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let limits = procom::msg::limits();
    let st = check!(q.stat());
    ensure!(
        st.mode == 0o600 && st.count == 0 && st.max_bytes == limits.msgmnb as u64,
        "stat {st:?}"
    );
    ensure!(
        st.uid == rustix::process::geteuid().as_raw(),
        "owner {st:?}"
    );
    check!(q.send(b"hello", 7));
    let st = check!(q.stat());
    ensure!(
        st.count == 1 && st.bytes == 5 && st.last_sender == std::process::id() as i32,
        "after send {st:?}"
    );
    check!(q.set_max_bytes(10));
    ensure!(check!(q.stat()).max_bytes == 10, "byte limit not set");
    let e = q.try_send(b"world!", 7).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Full), "full: {e:?}");
    let e = q
        .send_timeout(b"world!", 7, Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "deadline: {e:?}");
    // Larger than the queue's byte limit: refused, not a wait forever.
    let e = q
        .send(&[0; 11], 7)
        .err()
        .ok_or("an 11-byte message went into a 10-byte queue")?;
    ensure!(
        e.kind() == ErrorKind::TooLarge
            && e.limit() == Some(10)
            && e.to_string().contains("MSGMNB"),
        "over the byte limit: {e}"
    );
    let big = vec![0u8; limits.msgmax as usize + 1];
    let e = q
        .send(&big, 1)
        .err()
        .ok_or("a message over msgmax was sent")?;
    ensure!(
        e.kind() == ErrorKind::TooLarge && e.to_string().contains("sysctl -w kernel.msgmax"),
        "oversize: {e}"
    );
    let e = q.send(b"x", 0).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::InvalidInput), "type 0: {e:?}");
    // Above kernel.msgmnb takes CAP_SYS_RESOURCE: allowed or refused with the reason.
    match q.set_max_bytes(limits.msgmnb as u64 + 1) {
        Ok(()) => {}
        Err(e) => ensure!(
            e.kind() == ErrorKind::LimitReached
                && e.to_string().contains("sysctl -w kernel.msgmnb"),
            "{e}"
        ),
    }
    // A byte limit of 0 would leave a queue nothing can use.
    let e = q.set_max_bytes(0).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::InvalidInput), "max bytes 0: {e:?}");
    ensure!(check!(q.recv(0)) == (b"hello".to_vec(), 7), "first");
    ensure!(
        check!(q.stat()).last_receiver == std::process::id() as i32,
        "last receiver"
    );
    let e = q.try_recv(0).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "empty: {e:?}");
    let e = q
        .recv_timeout(0, Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "receive deadline: {e:?}");
    let again = MsgQueue::create(&key).err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::AlreadyExists),
        "exclusive: {again:?}"
    );
    // Through the channel layer: a sender's type must be 1 or more.
    let bad = Sender::connect(format!("msg:{}?type=-1", key_arg(&key)))
        .err()
        .map(|e| e.kind());
    ensure!(
        bad == Some(ErrorKind::InvalidInput),
        "sender type -1: {bad:?}"
    );
    let missing = MsgQueue::open(&SysvKey::Key(0x5eff_fff1))
        .err()
        .map(|e| e.kind());
    ensure!(missing == Some(ErrorKind::NotFound), "missing: {missing:?}");
    check!(q.remove());
    gone_key(&key)
}

/// Waits (without a deadline) until the queue is removed.
fn wait_for_removal(args: &[String]) -> Outcome {
    let mut rx = check!(Receiver::connect(format!("msg:{}", args[0])));
    println!("waiting");
    let _ = std::io::stdout().flush();
    let e = rx.recv().err().ok_or("a message arrived")?;
    ensure!(
        e.kind() == ErrorKind::PeerGone && e.to_string().contains("removed"),
        "got {e}"
    );
    println!("gone");
    Ok(())
}

fn removed_under_a_waiting_receiver() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let mut waiter = Proc::spawn(
        "waiter",
        &mut role("msg::wait_for_removal", &[&key_arg(&key)]),
    )?;
    waiter.expect_line("waiting")?;
    check!(q.remove());
    waiter.expect_line("gone")?;
    waiter.success(STEP)?;
    gone_key(&key)
}

/// Sends into a full queue through a channel Sender until the queue is removed.
fn send_until_removed(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::connect(format!("msg:{}?type=4", args[0])));
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
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    check!(q.set_max_bytes(8));
    check!(q.send(b"fills it", 1));
    let mut waiter = Proc::spawn(
        "sender",
        &mut role("msg::send_until_removed", &[&key_arg(&key)]),
    )?;
    waiter.expect_line("waiting")?;
    check!(q.remove());
    waiter.expect_line("gone")?;
    waiter.success(STEP)?;
    gone_key(&key)
}

/// As uid 65534: root's 0600 queue can be neither read, written, changed nor removed.
fn denied(args: &[String]) -> Outcome {
    let key = parse_key(&args[0])?;
    let label = format!(
        "msg:{:#x}",
        key_arg(&key).parse::<i32>().unwrap_or(0) as u32
    );
    for (read, write) in [(true, false), (false, true)] {
        let e = MsgQueue::open_with(&key, read, write)
            .err()
            .ok_or("opened root's 0600 queue")?;
        ensure!(
            e.kind() == ErrorKind::PermissionDenied
                && e.to_string()
                    .starts_with(&format!("{label}: permission denied")),
            "{e}"
        );
    }
    let e = Receiver::connect(&label).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PermissionDenied), "channel: {e:?}");
    let e = procom::msg::remove(&key).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PermissionDenied),
        "removed root's queue: {e:?}"
    );
    let q = check!(MsgQueue::open_with(&key, false, false));
    let e = q.set_max_bytes(1).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PermissionDenied),
        "changed root's queue: {e:?}"
    );
    Ok(())
}

fn other_users_are_denied() -> Outcome {
    let key = msg_key();
    let q = check!(MsgQueue::create(&key));
    let mut cmd = role("msg::denied", &[&key_arg(&key)]);
    Proc::spawn("nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
    ensure!(check!(q.stat()).max_bytes > 1, "the byte limit changed");
    drop(q);
    gone_key(&key)
}

const C_PEER: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
struct message { long mtype; char text[8192]; };
/* argv[1]: a path; the queue is ftok(path, 'M'), as procom derives it. Take type 2 first
   (a selector), then every other message in order; answer with types 5, 3, 4. */
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    key_t key = ftok(argv[1], 'M');
    int id = msgget(key, 0);
    if (id < 0) { perror("msgget"); return 1; }
    static struct message m;
    ssize_t n = msgrcv(id, &m, sizeof m.text - 1, 2, IPC_NOWAIT);
    if (n < 0) { perror("msgrcv 2"); return 1; }
    m.text[n] = 0;
    printf("%s type %ld\n", m.text, m.mtype);
    while ((n = msgrcv(id, &m, sizeof m.text - 1, 0, IPC_NOWAIT)) >= 0) {
        m.text[n] = 0;
        printf("%s type %ld\n", m.text, m.mtype);
    }
    long types[] = { 5, 3, 4 };
    for (int i = 0; i < 3; i++) {
        m.mtype = types[i];
        n = sprintf(m.text, "type %ld from C", types[i]);
        if (msgsnd(id, &m, n, 0) != 0) { perror("msgsnd"); return 1; }
    }
    fflush(stdout);
    return 0;
}
"#;

fn interoperates_with_c() -> Outcome {
    let dir = Scratch::new("procom-msg-c")?;
    let exe = super::mq::compile_c(&dir, C_PEER, &[])?;
    let file = dir.join("key");
    check!(std::fs::write(&file, b""));
    let key = SysvKey::Path(file.clone());
    let q = check!(MsgQueue::create(&key));
    check!(q.send(b"first from procom", 1));
    // Through the channel layer, stamped with the endpoint's type.
    let mut tx = check!(Sender::connect(format!("msg:{}?type=2", file.display())));
    check!(tx.send(b"typed from procom").map_err(|e| e.into_error()));
    drop(tx);
    check!(q.send(b"last from procom", 7));
    let mut cmd = Command::new(&exe);
    cmd.arg(&file);
    let fin = Proc::spawn("C peer", &mut cmd)?.success(STEP)?;
    ensure!(
        fin.stdout
            == [
                "typed from procom type 2",
                "first from procom type 1",
                "last from procom type 7"
            ],
        "the C peer saw {:?}",
        fin.stdout
    );
    // The lowest type at most 4 first, then the first in the queue.
    ensure!(
        check!(q.recv_timeout(-4, STEP)) == (b"type 3 from C".to_vec(), 3),
        "-4"
    );
    ensure!(
        check!(q.recv_timeout(-4, STEP)) == (b"type 4 from C".to_vec(), 4),
        "-4 again"
    );
    ensure!(
        check!(q.recv_timeout(0, STEP)) == (b"type 5 from C".to_vec(), 5),
        "0"
    );
    let numeric = check!(procom_sys::mapping::ftok(
        &file,
        procom_sys::msg::FTOK_PROJECT
    ));
    check!(q.remove());
    gone(numeric)?;
    check!(std::fs::remove_file(&file));
    check!(std::fs::remove_file(&exe));
    dir.finish()
}
