//! A catcher's waiting thread takes its signals from the kernel while it sleeps; these check
//! the deliveries that reach it another way: a signal the kernel hands to a different thread
//! (whose handler must wake the waiter), a burst queued faster than it is read, and two
//! catchers of the same signal in two threads (each must receive every delivery).

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use procom::ErrorKind;
use procom::signal::{self, Signal, Signals};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

#[rustfmt::skip]
pub const ROLES: &[Role] = &[
    Role { name: "signal_wait::burst", run: burst },
    Role { name: "signal_wait::waiter_thread", run: waiter_thread },
    Role { name: "signal_wait::blocked_here", run: blocked_here },
    Role { name: "signal_wait::no_queue_room", run: no_queue_room },
    Role { name: "signal_wait::cont_first", run: cont_first },
    Role { name: "signal_wait::pairs_without_room", run: pairs_without_room },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "signal_wait":
            a_burst_of_queued_signals_arrives_once_each,
            a_signal_taken_by_another_thread_wakes_the_waiter,
            two_waiting_catchers_each_receive_every_delivery,
            a_wait_leaves_a_signal_its_thread_blocks_pending,
            a_wake_up_without_queue_room_is_not_a_delivery,
            a_real_time_signal_without_queue_room_still_wakes_the_waiter,
            a_wake_up_never_discards_a_pending_stop_signal,
            a_wake_up_reaching_a_withdrawing_waiter_is_not_a_delivery;
    ]
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// The real-time signal these roles catch.
fn sig() -> Result<Signal, String> {
    Ok(check!(Signal::rtmin_plus(5)))
}

const BURST: i32 = 1000;

/// Catches RTMIN+5 in its only thread and reports each of `BURST` values as it arrives.
fn burst(_: &[String]) -> Outcome {
    let mut caught = check!(Signals::catch([sig()?]));
    say("ready");
    let mut values = Vec::new();
    for _ in 0..BURST {
        let d = check!(caught.wait_timeout(STEP));
        ensure!(d.signal == sig()?, "got {d:?}");
        values.push(d.value.ok_or("no value")?);
    }
    // Each exactly once and in the kernel's order: one thread takes them all (the harness's
    // watchdog thread blocks every signal).
    ensure!(
        values == (0..BURST).collect::<Vec<_>>(),
        "values arrived as {values:?}"
    );
    ensure!(caught.lost() == 0, "lost {}", caught.lost());
    say("all");
    Ok(())
}

fn a_burst_of_queued_signals_arrives_once_each() -> Outcome {
    let mut child = Proc::spawn("burst", &mut role("signal_wait::burst", &[]))?;
    child.expect_line("ready")?;
    let pid = child.pid() as i32;
    for v in 0..BURST {
        check!(signal::queue(pid, sig()?, v));
    }
    child.expect_line("all")?;
    child.success(STEP)?;
    Ok(())
}

/// Runs each of `waiters` in a thread of its own while the main thread, which catches nothing
/// and blocks nothing, is parked (an interruptible sleep, restarted after each handler) until
/// one of them ends, so the kernel hands the main thread the signals it prefers to give it and
/// its handler must wake the waiters; then joins them all. Says `ready` once they run.
fn with_parked_main(waiters: Vec<Box<dyn FnOnce() -> Outcome + Send>>) -> Outcome {
    let done = Arc::new(AtomicBool::new(false));
    let main = std::thread::current();
    let threads: Vec<_> = waiters
        .into_iter()
        .map(|wait| {
            let (done, main) = (done.clone(), main.clone());
            std::thread::spawn(move || -> Outcome {
                // Set on the way out, a panic included, so the main thread never parks on.
                let _done = Done(done, main);
                wait()
            })
        })
        .collect();
    say("ready");
    while !done.load(Ordering::SeqCst) {
        std::thread::park();
    }
    for t in threads {
        t.join().map_err(|_| "a waiter panicked")??;
    }
    Ok(())
}

/// Tells the parked main thread, when dropped, that a waiter has ended.
struct Done(Arc<AtomicBool>, std::thread::Thread);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.unpark();
    }
}

/// `args[0]` threads each catch RTMIN+5 and wait, printing `T VALUE` per delivery, until the
/// value -1; the main thread, which catches nothing and blocks nothing, sleeps meanwhile, so
/// the kernel hands it each signal (it prefers the main thread) and its handler must wake the
/// waiters.
fn waiter_thread(args: &[String]) -> Outcome {
    let n: usize = check!(args.first().ok_or("no thread count")?.parse());
    let rt = sig()?;
    let mut waiters: Vec<Box<dyn FnOnce() -> Outcome + Send>> = Vec::new();
    for t in 0..n {
        let mut caught = check!(Signals::catch([rt]));
        waiters.push(Box::new(move || {
            loop {
                let d = check!(caught.wait_timeout(STEP));
                match d.value {
                    Some(-1) => return Ok(()),
                    Some(v) => say(&format!("{t} {v}")),
                    None => return Err(format!("no value in {d:?}")),
                }
            }
        }));
    }
    with_parked_main(waiters)?;
    say("ended");
    Ok(())
}

/// Sends values one at a time, each after every waiter reported the one before, so that each
/// signal arrives while the waiters sleep; then -1 to end.
fn waiters_hear_every_value(threads: usize) -> Outcome {
    let count = threads.to_string();
    let mut child = Proc::spawn(
        "waiter threads",
        &mut role("signal_wait::waiter_thread", &[&count]),
    )?;
    child.expect_line("ready")?;
    let pid = child.pid() as i32;
    for v in 0..20 {
        check!(signal::queue(pid, sig()?, v));
        let mut heard: Vec<String> = (0..threads)
            .map(|_| child.line(STEP))
            .collect::<Result<_, _>>()?;
        heard.sort();
        let want: Vec<String> = (0..threads).map(|t| format!("{t} {v}")).collect();
        ensure!(heard == want, "after {v}: {heard:?}");
    }
    check!(signal::queue(pid, sig()?, -1));
    child.expect_line("ended")?;
    child.success(STEP)?;
    Ok(())
}

fn a_signal_taken_by_another_thread_wakes_the_waiter() -> Outcome {
    waiters_hear_every_value(1)
}

fn two_waiting_catchers_each_receive_every_delivery() -> Outcome {
    waiters_hear_every_value(2)
}

/// Blocks RTMIN+5 (in its only thread that takes signals) and waits while one is pending: the
/// wait must leave it pending, as the mask asks, and receive it once the block is dropped.
fn blocked_here(_: &[String]) -> Outcome {
    let rt = sig()?;
    let mut caught = check!(Signals::catch([rt]));
    let held = check!(signal::block(&[rt]));
    say("ready");
    let mut line = String::new();
    check!(std::io::stdin().lock().read_line(&mut line));
    ensure!(line.trim() == "sent", "no go-ahead: {line:?}");
    let early = caught.wait_timeout(Duration::from_millis(100));
    ensure!(
        early.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::Timeout),
        "a wait took a signal its thread blocks: {early:?}"
    );
    drop(held);
    let d = check!(caught.wait_timeout(STEP));
    ensure!((d.signal, d.value) == (rt, Some(7)), "got {d:?}");
    say("held, then delivered");
    Ok(())
}

fn a_wait_leaves_a_signal_its_thread_blocks_pending() -> Outcome {
    let mut cmd = role("signal_wait::blocked_here", &[]);
    cmd.stdin(Stdio::piped());
    let mut child = Proc::spawn("blocked catcher", &mut cmd)?;
    child.expect_line("ready")?;
    check!(signal::queue(child.pid() as i32, sig()?, 7));
    let mut stdin = child.child().stdin.take().ok_or("stdin")?;
    check!(writeln!(stdin, "sent"));
    child.expect_line("held, then delivered")?;
    child.success(STEP)?;
    Ok(())
}

/// With RLIMIT_SIGPENDING at 0 (no siginfo can be queued but that of a standard signal sent
/// with `kill`), a thread catches `args[0]` and waits while the main thread, which catches
/// nothing and blocks nothing, takes each signal (the kernel prefers it) and its handler wakes
/// the waiter: the kernel queues a standard wake-up without its siginfo, which must not be
/// taken for a second delivery, and refuses a real-time one, which must not leave the waiter
/// asleep. Prints the sender's pid per delivery; ends after `args[1]`.
fn no_queue_room(args: &[String]) -> Outcome {
    let [caught_sig, rounds] = args else {
        return Err("args: SIGNAL ROUNDS".into());
    };
    let caught_sig: Signal = check!(caught_sig.parse());
    let rounds: usize = check!(rounds.parse());
    no_siginfo_room()?;
    let mut caught = check!(Signals::catch([caught_sig]));
    with_parked_main(vec![Box::new(move || {
        for _ in 0..rounds {
            let d = check!(caught.wait_timeout(STEP));
            say(&format!("{}", d.sender_pid));
        }
        Ok(())
    })])
}

/// Sets RLIMIT_SIGPENDING to 0: no siginfo can be queued but that of a standard signal sent
/// with `kill`.
fn no_siginfo_room() -> Outcome {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Sigpending);
    check!(rustix::process::setrlimit(
        rustix::process::Resource::Sigpending,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: limit.maximum,
        }
    ));
    Ok(())
}

fn a_wake_up_without_queue_room_is_not_a_delivery() -> Outcome {
    let me = std::process::id().to_string();
    wake_ups_without_queue_room(Signal::USR1, &me, 20)
}

/// A real-time signal sent with `kill` past the limit arrives without its siginfo (as from
/// pid 0), and so would the wake-up, which the kernel refuses instead: the waiter must wake
/// all the same (a second later at most, so few rounds).
fn a_real_time_signal_without_queue_room_still_wakes_the_waiter() -> Outcome {
    wake_ups_without_queue_room(sig()?, "0", 3)
}

/// Sends `caught` `rounds` times to a `no_queue_room` child, each once the one before was
/// reported (so most find the waiter asleep) from the sender pid `from`.
fn wake_ups_without_queue_room(caught: Signal, from: &str, rounds: usize) -> Outcome {
    let name = caught.to_string();
    let count = rounds.to_string();
    let mut child = Proc::spawn(
        "catcher without queue room",
        &mut role("signal_wait::no_queue_room", &[&name, &count]),
    )?;
    child.expect_line("ready")?;
    for _ in 0..rounds {
        check!(signal::send(child.pid() as i32, caught));
        let line = child.line(STEP)?;
        ensure!(line == from, "a delivery from pid {line}, not from {from}");
    }
    child.success(STEP)?;
    Ok(())
}

/// Blocks SIGTSTP in every thread, catches SIGCONT and SIGUSR1 in a waiting thread while the
/// main thread, which catches nothing else, takes SIGUSR1 (the kernel prefers it) and wakes
/// the waiter. A SIGTSTP sent before must still be pending once the waiter has its SIGUSR1:
/// sending SIGCONT discards every pending stop signal, so a wake-up must not be one.
fn cont_first(_: &[String]) -> Outcome {
    let held = check!(signal::block(&[Signal::TSTP]));
    let mut caught = check!(Signals::catch([Signal::CONT, Signal::USR1]));
    with_parked_main(vec![Box::new(move || {
        let d = check!(caught.wait_timeout(STEP));
        ensure!(d.signal == Signal::USR1, "got {d:?}");
        Ok(())
    })])?;
    // Unblocked, a pending SIGTSTP reaches this catcher's handler at once.
    let mut stop = check!(Signals::catch([Signal::TSTP]));
    drop(held);
    let d = stop.try_wait();
    ensure!(
        d.as_ref().map(|d| d.signal).ok() == Some(Signal::TSTP),
        "the SIGTSTP sent before is no longer pending: {d:?}"
    );
    say("still pending");
    Ok(())
}

fn a_wake_up_never_discards_a_pending_stop_signal() -> Outcome {
    let mut child = Proc::spawn(
        "catcher of SIGCONT",
        &mut role("signal_wait::cont_first", &[]),
    )?;
    child.expect_line("ready")?;
    let pid = child.pid() as i32;
    check!(signal::send(pid, Signal::TSTP));
    check!(signal::send(pid, Signal::USR1));
    child.expect_line("still pending")?;
    child.success(STEP)?;
    Ok(())
}

/// With RLIMIT_SIGPENDING at 0, a thread catches SIGUSR1 and SIGUSR2 and waits while the main
/// thread, which catches nothing and blocks nothing, takes each signal (the kernel prefers it)
/// and its handler wakes the waiter. Prints the sender's pid per SIGUSR1, `end` at SIGUSR2.
fn pairs_without_room(_: &[String]) -> Outcome {
    no_siginfo_room()?;
    let mut caught = check!(Signals::catch([Signal::USR1, Signal::USR2]));
    with_parked_main(vec![Box::new(move || {
        loop {
            let d = check!(caught.wait_timeout(STEP));
            if d.signal == Signal::USR2 {
                say("end");
                return Ok(());
            }
            say(&format!("{}", d.sender_pid));
        }
    })])
}

/// SIGUSR1 sent twice in a row, many times, to a `pairs_without_room` child: the second often
/// reaches the main thread's handler while the waiter, woken by the first, is withdrawing, so
/// its wake-up (queued without its siginfo, as from pid 0) reaches the handler of the waiting
/// thread itself. It must not arrive as a delivery from pid 0.
fn a_wake_up_reaching_a_withdrawing_waiter_is_not_a_delivery() -> Outcome {
    let mut child = Proc::spawn(
        "catcher of pairs without queue room",
        &mut role("signal_wait::pairs_without_room", &[]),
    )?;
    child.expect_line("ready")?;
    let pid = child.pid() as i32;
    let me = std::process::id().to_string();
    let mut heard = Vec::new();
    for _ in 0..10_000 {
        check!(signal::send(pid, Signal::USR1));
        check!(signal::send(pid, Signal::USR1));
        // Each pair is delivered at least once (standard signals merge): a line per pair
        // keeps the pairs coming as fast as the waiter takes them.
        heard.push(child.line(STEP)?);
    }
    check!(signal::send(pid, Signal::USR2));
    loop {
        match child.line(STEP)? {
            l if l == "end" => break,
            l => heard.push(l),
        }
    }
    child.success(STEP)?;
    let strangers = heard.iter().filter(|l| **l != me).count();
    ensure!(
        strangers == 0,
        "{strangers} of {} deliveries not from pid {me}: {:?}",
        heard.len(),
        heard
            .iter()
            .filter(|l| **l != me)
            .take(5)
            .collect::<Vec<_>>()
    );
    Ok(())
}
