//! Signals across real processes. Every test that changes signal dispositions or masks does so
//! in a child role (its own process), so the test harness's own signal state is never touched
//! and tests cannot interfere with each other; the only process-wide state here is the one
//! lock below, held by tests that install catchers in this process.

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procom::ErrorKind;
use procom::signal::{self, Disposition, Process, Signal, Signals};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Trial, as_nobody, check, ensure, needs, role, trials,
};

/// Held by any test that changes this process's signal state (tests of other modules that do
/// take it as `crate::signal::SIGNAL_STATE`).
pub static SIGNAL_STATE: Mutex<()> = Mutex::new(());

#[rustfmt::skip]
pub const ROLES: &[Role] = &[
    Role { name: "signal::coalesce_and_queue", run: coalesce_and_queue },
    Role { name: "signal::graceful", run: graceful },
    Role { name: "signal::wait_stdin", run: wait_stdin },
    Role { name: "signal::ignore_usr1", run: ignore_usr1 },
    Role { name: "signal::catch_all_then_wait", run: catch_all_then_wait },
    Role { name: "signal::threads", run: threads },
    Role { name: "signal::send_denied", run: send_denied },
    Role { name: "signal::catch_one", run: catch_one },
    Role { name: "signal::queue_to", run: queue_to },
    Role { name: "signal::async_catcher", run: async_catcher },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "signal":
            names_match_kill_l,
            standard_coalesce_realtime_queue,
            sigint_lets_a_catcher_shut_down_cleanly,
            tstp_stops_and_cont_resumes,
            ignored_then_default_again,
            sigkill_cannot_be_caught,
            delivery_reaches_a_catcher_from_any_thread,
            pidfd_never_hits_a_reused_pid,
            errors_say_missing,
            errors_say_not_ours [needs::root()],
            catcher_in_this_process_restores_disposition,
            group_send_reaches_every_member,
            sender_uid_is_the_senders [needs::root()],
            #[cfg(feature = "tokio")]
            async_stream_across_processes;
    ]
}

fn stdin_line() -> Result<String, String> {
    let mut line = String::new();
    check!(std::io::stdin().lock().read_line(&mut line));
    Ok(line.trim().to_string())
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn names_match_kill_l() -> Outcome {
    // bash's `kill -l` prints "N) SIGNAME" pairs for every signal.
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", "kill -l"]);
    let fin = Proc::spawn("bash kill -l", &mut cmd)?.success(STEP)?;
    let mut listed = Vec::new();
    for line in &fin.stdout {
        for item in line.split('\t').map(str::trim).filter(|s| !s.is_empty()) {
            let (n, name) = item
                .split_once(") ")
                .ok_or(format!("unexpected {item:?}"))?;
            listed.push((check!(n.trim().parse::<i32>()), name.to_string()));
        }
    }
    let ours: Vec<(i32, String)> = Signal::all().map(|s| (s.number(), s.to_string())).collect();
    ensure!(listed == ours, "kill -l: {listed:?}\nprocom: {ours:?}");
    Ok(())
}

const RT_COUNT: i32 = 20;

/// Blocks USR1 and RTMIN+1 while the parent sends; then unblocks and reports what arrived.
fn coalesce_and_queue(_: &[String]) -> Outcome {
    let rt = check!(Signal::rtmin_plus(1));
    let marker = check!(Signal::rtmin_plus(2));
    let mut catcher = check!(Signals::catch([Signal::USR1, rt, marker]));
    let held = check!(signal::block(&[Signal::USR1, rt, marker]));
    ready();
    ensure!(stdin_line()? == "sent", "no go-ahead");
    drop(held); // everything pending is delivered now
    let me = std::process::id() as i32;
    check!(signal::queue(me, marker, -1)); // after the others: RT signals arrive in number order
    let mut usr1 = 0;
    let mut values = Vec::new();
    loop {
        let d = check!(catcher.wait_timeout(STEP));
        if d.signal == marker {
            break;
        } else if d.signal == Signal::USR1 {
            usr1 += 1;
        } else {
            ensure!(d.signal == rt, "unexpected {d:?}");
            ensure!(
                d.sender_pid == std::os::unix::process::parent_id() as i32,
                "sender pid {}",
                d.sender_pid
            );
            values.push(d.value.ok_or("no value")?);
        }
    }
    ensure!(
        usr1 == 1,
        "5 SIGUSR1 sent while blocked arrived {usr1} times (standard signals coalesce)"
    );
    ensure!(
        values == (0..RT_COUNT).collect::<Vec<_>>(),
        "real-time values arrived as {values:?}"
    );
    ensure!(catcher.lost() == 0, "lost {}", catcher.lost());
    println!("usr1=1 rt={}", values.len());
    Ok(())
}

fn standard_coalesce_realtime_queue() -> Outcome {
    let mut cmd = role("signal::coalesce_and_queue", &[]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("catcher", &mut cmd)?;
    child.expect_line("ready")?;
    let pid = child.pid() as i32;
    for _ in 0..5 {
        check!(signal::send(pid, Signal::USR1));
    }
    let rt = check!(Signal::rtmin_plus(1));
    for v in 0..RT_COUNT {
        check!(signal::queue(pid, rt, v));
    }
    let mut stdin = child.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "sent"));
    child.expect_line(&format!("usr1=1 rt={RT_COUNT}"))?;
    child.success(STEP)?;
    Ok(())
}

/// Catches SIGINT, then shuts down cleanly: finishes its work and says so.
fn graceful(_: &[String]) -> Outcome {
    let mut catcher = check!(Signals::catch([Signal::INT, Signal::TERM]));
    ready();
    let d = check!(catcher.wait_timeout(STEP));
    ensure!(d.signal == Signal::INT, "got {d:?}");
    println!("clean shutdown after {}", d.signal);
    Ok(())
}

fn sigint_lets_a_catcher_shut_down_cleanly() -> Outcome {
    let mut child = Proc::spawn("graceful", &mut role("signal::graceful", &[]))?;
    child.expect_line("ready")?;
    check!(signal::send(child.pid() as i32, Signal::INT));
    child.expect_line("clean shutdown after SIGINT")?;
    let fin = child.success(STEP)?;
    ensure!(fin.status.code() == Some(0), "exit {}", fin.status);
    Ok(())
}

/// Waits for a line on standard input (signals keep their default actions).
fn wait_stdin(_: &[String]) -> Outcome {
    ready();
    let line = stdin_line()?;
    println!("got {line}");
    Ok(())
}

fn state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .unwrap_or('?')
}

fn wait_state(pid: u32, want: impl Fn(char) -> bool, what: &str) -> Outcome {
    let deadline = Instant::now() + STEP;
    while !want(state(pid)) {
        ensure!(
            Instant::now() < deadline,
            "process {pid} never became {what} (state {})",
            state(pid)
        );
        std::thread::sleep(Duration::from_millis(1)); // polling the kernel's view of the child
    }
    Ok(())
}

fn tstp_stops_and_cont_resumes() -> Outcome {
    let mut cmd = role("signal::wait_stdin", &[]);
    cmd.stdin(Stdio::piped());
    // The kernel discards SIGTSTP sent to an orphaned process group (POSIX job control), as
    // ours may be when the tests run without a terminal: give the child its own group, whose
    // parent (this process) is outside it in the same session, so the group is not orphaned.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = Proc::spawn("sleeper", &mut cmd)?;
    child.expect_line("ready")?;
    let pid = child.pid();
    check!(signal::send(pid as i32, Signal::TSTP));
    wait_state(pid, |s| s == 'T', "stopped")?;
    let mut stdin = child.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "while stopped"));
    // Stopped: the line waits in the pipe, nothing is printed.
    ensure!(
        child.line(Duration::from_millis(50)).is_err(),
        "a stopped process ran"
    );
    check!(signal::send(pid as i32, Signal::CONT));
    wait_state(pid, |s| s != 'T', "running")?;
    child.expect_line("got while stopped")?;
    child.success(STEP)?;
    Ok(())
}

/// Ignores USR1 until asked, then gives it back its default action (which ends the process).
fn ignore_usr1(_: &[String]) -> Outcome {
    check!(signal::ignore(Signal::USR1));
    ensure!(
        check!(signal::disposition(Signal::USR1)) == Disposition::Ignore,
        "not ignored"
    );
    ready();
    ensure!(stdin_line()? == "still there?", "no question");
    println!("alive");
    check!(signal::restore_default(Signal::USR1));
    ensure!(
        check!(signal::disposition(Signal::USR1)) == Disposition::Default,
        "not default"
    );
    println!("default again");
    let _ = std::io::stdout().flush();
    let _ = stdin_line(); // the next USR1 ends the process before any line comes
    Err("SIGUSR1 did not end the process after its default action was restored".into())
}

fn ignored_then_default_again() -> Outcome {
    let mut cmd = role("signal::ignore_usr1", &[]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("ignorer", &mut cmd)?;
    child.expect_line("ready")?;
    for _ in 0..3 {
        check!(signal::send(child.pid() as i32, Signal::USR1)); // default action would kill it
    }
    let mut stdin = child.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "still there?"));
    child.expect_line("alive")?;
    child.expect_line("default again")?;
    check!(signal::send(child.pid() as i32, Signal::USR1));
    let fin = child.finish(STEP)?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&fin.status) == Some(10),
        "ended with {}",
        fin.status
    );
    drop(stdin);
    Ok(())
}

/// Catches every catchable signal, then waits; SIGKILL still ends it.
fn catch_all_then_wait(_: &[String]) -> Outcome {
    let catchable: Vec<Signal> = Signal::all()
        .filter(|s| s.can_be_caught() && !s.is_realtime() && ![4, 7, 8, 11].contains(&s.number()))
        .collect();
    let e = Signals::catch([Signal::KILL])
        .err()
        .ok_or("SIGKILL was accepted")?;
    ensure!(
        e.to_string().contains("neither caught nor ignored"),
        "message: {e}"
    );
    let _catcher = check!(Signals::catch(catchable));
    ready();
    let _ = stdin_line();
    Ok(())
}

fn sigkill_cannot_be_caught() -> Outcome {
    let mut cmd = role("signal::catch_all_then_wait", &[]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("catch-all", &mut cmd)?;
    child.expect_line("ready")?;
    check!(signal::send(child.pid() as i32, Signal::TERM)); // caught: it lives on
    check!(signal::send(child.pid() as i32, Signal::KILL));
    let fin = child.finish(STEP)?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&fin.status) == Some(9),
        "ended with {}",
        fin.status
    );
    Ok(())
}

/// Catches USR2 in the main thread while other threads run without blocking anything.
fn threads(_: &[String]) -> Outcome {
    let mut catcher = check!(Signals::catch([Signal::USR2]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    ready();
    for _ in 0..10 {
        let d = check!(catcher.wait_timeout(STEP));
        ensure!(d.signal == Signal::USR2, "got {d:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| "worker panicked")?;
    }
    println!("ten");
    Ok(())
}

fn delivery_reaches_a_catcher_from_any_thread() -> Outcome {
    let mut child = Proc::spawn("threads", &mut role("signal::threads", &[]))?;
    child.expect_line("ready")?;
    for _ in 0..10 {
        check!(signal::send(child.pid() as i32, Signal::USR2));
        // USR2 is standard: wait until this one is taken before the next, so none coalesce.
        let deadline = Instant::now() + STEP;
        while sig_pending(child.pid(), Signal::USR2) {
            ensure!(Instant::now() < deadline, "USR2 stayed pending");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    child.expect_line("ten")?;
    child.success(STEP)?;
    Ok(())
}

/// Whether `sig` is pending for the process (its ShdPnd mask in /proc).
fn sig_pending(pid: u32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig.number() - 1)) != 0)
}

fn pidfd_never_hits_a_reused_pid() -> Outcome {
    let mut cmd = role("signal::wait_stdin", &[]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("target", &mut cmd)?;
    child.expect_line("ready")?;
    let handle = check!(Process::open(child.pid() as i32));
    check!(handle.send(Signal::TERM));
    let fin = child.finish(STEP)?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&fin.status) == Some(15),
        "ended with {}",
        fin.status
    );
    // The process is gone and reaped; whoever gets its pid next, the pidfd still means it.
    let e = handle.send(Signal::TERM).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::NotFound),
        "signal through a dead pidfd gave {e:?}"
    );
    Ok(())
}

/// Run as uid 65534 with a root-owned target pid: the send is "not ours".
fn send_denied(args: &[String]) -> Outcome {
    let pid: i32 = check!(args[0].parse::<i32>());
    let e = signal::send(pid, Signal::TERM)
        .err()
        .ok_or("an unprivileged user signalled root's process")?;
    ensure!(
        e.kind() == ErrorKind::PermissionDenied && e.to_string().contains("not ours"),
        "got {e}"
    );
    Ok(())
}

fn errors_say_missing() -> Outcome {
    let pid_max: i32 = check!(
        check!(std::fs::read_to_string("/proc/sys/kernel/pid_max"))
            .trim()
            .parse::<i32>()
    );
    let e = signal::send(pid_max + 1, Signal::TERM)
        .err()
        .ok_or("signalled a pid beyond pid_max")?;
    ensure!(
        e.kind() == ErrorKind::NotFound && e.to_string().contains("no such process"),
        "got {e}"
    );
    Ok(())
}

/// Another user's process exists but is not ours: an unprivileged sender is told so.
fn errors_say_not_ours() -> Outcome {
    let mut cmd = role("signal::wait_stdin", &[]);
    cmd.stdin(Stdio::piped());
    let mut target = Proc::spawn("root target", &mut cmd)?;
    target.expect_line("ready")?;
    let mut denied = role("signal::send_denied", &[&target.pid().to_string()]);
    Proc::spawn("nobody", as_nobody(&mut denied)?)?.success(STEP)?;
    let mut stdin = target.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "bye"));
    target.success(STEP)?;
    Ok(())
}

fn catcher_in_this_process_restores_disposition() -> Outcome {
    let _lock = SIGNAL_STATE.lock().unwrap_or_else(|p| p.into_inner());
    let before = check!(signal::disposition(Signal::WINCH));
    {
        let mut catcher = check!(Signals::catch([Signal::WINCH]));
        ensure!(
            check!(signal::disposition(Signal::WINCH)) == Disposition::Caught,
            "no handler installed"
        );
        check!(signal::send(std::process::id() as i32, Signal::WINCH));
        let d = check!(catcher.wait_timeout(STEP));
        ensure!(
            d.signal == Signal::WINCH && d.sender_pid == std::process::id() as i32,
            "got {d:?}"
        );
        let e = catcher.try_wait().err().map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::Empty),
            "try_wait with nothing pending: {e:?}"
        );
        let e = catcher
            .wait_timeout(Duration::from_millis(1))
            .err()
            .map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::Timeout),
            "wait_timeout with nothing pending: {e:?}"
        );
    }
    let after = check!(signal::disposition(Signal::WINCH));
    ensure!(
        after == before,
        "disposition {after:?} not restored to {before:?}"
    );
    Ok(())
}

/// Catches the signal named by `args[0]`, says ready, and prints the first delivery as
/// `SIGNAL pid=P uid=U value=V`.
fn catch_one(args: &[String]) -> Outcome {
    let sig: Signal = check!(args.first().ok_or("no signal named")?.parse::<Signal>());
    let mut catcher = check!(Signals::catch([sig]));
    ready();
    let d = check!(catcher.wait_timeout(STEP));
    let value = d.value.map_or("-".to_string(), |v| v.to_string());
    println!(
        "{} pid={} uid={} value={value}",
        d.signal, d.sender_pid, d.sender_uid
    );
    Ok(())
}

/// Queues `args[1]` with the value `args[2]` for pid `args[0]`, and prints its own pid.
fn queue_to(args: &[String]) -> Outcome {
    let [pid, sig, value] = args else {
        return Err(format!("arguments {args:?}"));
    };
    check!(signal::queue(
        check!(pid.parse::<i32>()),
        check!(sig.parse::<Signal>()),
        check!(value.parse::<i32>())
    ));
    println!("sent from {}", std::process::id());
    Ok(())
}

fn group_send_reaches_every_member() -> Outcome {
    // A group of its own, with its leader's parent (this process) outside it.
    let mut first = role("signal::catch_one", &["USR2"]);
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let mut leader = Proc::spawn("group leader", &mut first)?;
    leader.expect_line("ready")?;
    let pgid = leader.pid() as i32;
    let mut second = role("signal::catch_one", &["USR2"]);
    std::os::unix::process::CommandExt::process_group(&mut second, pgid);
    let mut member = Proc::spawn("group member", &mut second)?;
    member.expect_line("ready")?;
    check!(signal::send_group(pgid, Signal::USR2));
    let me = std::process::id();
    let uid = rustix::process::getuid().as_raw();
    for p in [&mut leader, &mut member] {
        p.expect_line(&format!("SIGUSR2 pid={me} uid={uid} value=-"))?;
    }
    leader.success(STEP)?;
    member.success(STEP)?;
    let gone = signal::send_group(pgid, Signal::USR2)
        .err()
        .map(|e| e.kind());
    ensure!(
        gone == Some(ErrorKind::NotFound),
        "an empty group gave {gone:?}"
    );
    Ok(())
}

/// The uid in a delivery is the sender's: an unprivileged catcher hears from an unprivileged
/// sender (root could not show the difference).
fn sender_uid_is_the_senders() -> Outcome {
    let mut catcher_cmd = role("signal::catch_one", &["RTMIN+6"]);
    let mut catcher = Proc::spawn("catcher as nobody", as_nobody(&mut catcher_cmd)?)?;
    catcher.expect_line("ready")?;
    let pid = catcher.pid().to_string();
    let mut sender_cmd = role("signal::queue_to", &[&pid, "RTMIN+6", "-7"]);
    let mut sender = Proc::spawn("sender as nobody", check!(as_nobody(&mut sender_cmd)))?;
    let sent = sender.line(STEP)?;
    let sender_pid = sent
        .strip_prefix("sent from ")
        .ok_or(format!("sender said {sent:?}"))?
        .to_string();
    sender.success(STEP)?;
    let rt = check!("RTMIN+6".parse::<Signal>());
    catcher.expect_line(&format!("{rt} pid={sender_pid} uid=65534 value=-7"))?;
    catcher.success(STEP)?;
    Ok(())
}

/// Receives five RTMIN+3 deliveries through the tokio `Stream` and prints their values.
fn async_catcher(_: &[String]) -> Outcome {
    #[cfg(feature = "tokio")]
    {
        use futures_core::Stream;
        use std::pin::Pin;
        let rt = check!(
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
        );
        rt.block_on(async {
            let sig = check!(Signal::rtmin_plus(3));
            let mut stream = check!(signal::AsyncSignals::catch([sig]));
            ready();
            let mut values = Vec::new();
            while values.len() < 5 {
                let next = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await;
                let d = next.ok_or("the stream ended")?;
                ensure!(d.signal == sig, "got {d:?}");
                values.push(d.value.ok_or("no value")?.to_string());
            }
            println!("async {}", values.join(" "));
            Ok(())
        })
    }
    #[cfg(not(feature = "tokio"))]
    Err("built without the tokio feature".into())
}

#[cfg(feature = "tokio")]
fn async_stream_across_processes() -> Outcome {
    let mut child = Proc::spawn("async catcher", &mut role("signal::async_catcher", &[]))?;
    child.expect_line("ready")?;
    let sig = check!(Signal::rtmin_plus(3));
    for v in 0..5 {
        check!(signal::queue(child.pid() as i32, sig, v * 10));
    }
    child.expect_line("async 0 10 20 30 40")?;
    child.success(STEP)?;
    Ok(())
}
