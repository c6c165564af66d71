//! A catcher's waiting thread takes its signals from the kernel while it sleeps; these check
//! the deliveries that reach it another way: a signal the kernel hands to a different thread
//! (whose handler must wake the waiter), a burst queued faster than it is read, and two
//! catchers of the same signal in two threads (each must receive every delivery).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use procom::signal::{self, Signal, Signals};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

#[rustfmt::skip]
pub const ROLES: &[Role] = &[
    Role { name: "signal_wait::burst", run: burst },
    Role { name: "signal_wait::waiter_thread", run: waiter_thread },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "signal_wait":
            a_burst_of_queued_signals_arrives_once_each,
            a_signal_taken_by_another_thread_wakes_the_waiter,
            two_waiting_catchers_each_receive_every_delivery;
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

const BURST: i32 = 300;

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
    // Each exactly once; in order only where one thread takes them all, and a helper thread
    // of the test harness may take one while this one is between two waits.
    values.sort();
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

/// `args[0]` threads each catch RTMIN+5 and wait, printing `T VALUE` per delivery, until the
/// value -1; the main thread, which catches nothing and blocks nothing, sleeps meanwhile, so
/// the kernel hands it each signal (it prefers the main thread) and its handler must wake the
/// waiters.
fn waiter_thread(args: &[String]) -> Outcome {
    let n: usize = check!(args.first().ok_or("no thread count")?.parse());
    let rt = sig()?;
    let done = Arc::new(AtomicBool::new(false));
    let main = std::thread::current();
    let mut waiters = Vec::new();
    for t in 0..n {
        let mut caught = check!(Signals::catch([rt]));
        let (done, main) = (done.clone(), main.clone());
        waiters.push(std::thread::spawn(move || -> Outcome {
            let result = (|| loop {
                let d = check!(caught.wait_timeout(STEP));
                match d.value {
                    Some(-1) => return Ok(()),
                    Some(v) => say(&format!("{t} {v}")),
                    None => return Err(format!("no value in {d:?}")),
                }
            })();
            done.store(true, Ordering::SeqCst);
            main.unpark();
            result
        }));
    }
    say("ready");
    // Parked (an interruptible sleep, restarted after each handler) until a waiter ends.
    while !done.load(Ordering::SeqCst) {
        std::thread::park();
    }
    for w in waiters {
        w.join().map_err(|_| "a waiter panicked")??;
    }
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
