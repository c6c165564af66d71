//! Waiting for processes asynchronously (feature `tokio`): `child::wait_async` returns the
//! status the blocking wait returns, a dropped wait leaves the child reapable, and
//! `signal::Process::exited` sees another process end.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::pin::pin;
use std::process::Stdio;
use std::task::{Context, Poll, Waker};

use procom::signal::Process;
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[Role {
    name: "child_async::exit_when_told",
    run: exit_when_told,
}];

pub fn trials() -> Vec<Trial> {
    trials![
        "child_async":
            wait_async_returns_the_exit_status,
            wait_async_reports_death_by_signal,
            a_dropped_wait_leaves_the_child_reapable,
            process_exited_sees_another_process_end;
    ]
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Says "ready", then exits with the code read from standard input (or 0 at its end).
fn exit_when_told(_: &[String]) -> Outcome {
    println!("ready");
    let mut line = String::new();
    check!(std::io::stdin().read_line(&mut line));
    let code: i32 = line.trim().parse().unwrap_or(0);
    std::process::exit(code);
}

fn spawn() -> Result<Proc, String> {
    let mut cmd = role("child_async::exit_when_told", &[]);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn("child", &mut cmd)?;
    p.expect_line("ready")?;
    Ok(p)
}

fn tell(p: &mut Proc, code: i32) -> Outcome {
    let mut stdin = p.child().stdin.take().ok_or("no stdin")?;
    check!(writeln!(stdin, "{code}"));
    Ok(())
}

/// Whether `fut` is still pending after one poll.
fn pending<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> bool {
    matches!(
        fut.poll(&mut Context::from_waker(Waker::noop())),
        Poll::Pending
    )
}

/// Polls an async wait of the running child once (it must be pending) and drops it, ends the
/// child with `end`, then returns what a second async wait says.
fn status_after(
    p: &mut Proc,
    end: impl FnOnce(&mut Proc) -> Outcome,
) -> Result<std::process::ExitStatus, String> {
    let rt = runtime()?;
    let status = rt.block_on(async {
        {
            let mut fut = pin!(procom::child::wait_async(p.child()));
            ensure!(pending(fut.as_mut()), "a running child's wait completed");
        } // dropped
        end(p)?;
        Ok(check!(
            tokio::time::timeout(STEP, procom::child::wait_async(p.child())).await
        ))
    })?;
    Ok(check!(status))
}

fn wait_async_returns_the_exit_status() -> Outcome {
    let mut p = spawn()?;
    let status = status_after(&mut p, |p| tell(p, 7))?;
    ensure!(status.code() == Some(7), "status {status}");
    // Reaped: the blocking form returns the same status std kept.
    let again = check!(procom::child::wait_timeout(p.child(), STEP));
    ensure!(again == Some(status), "a second wait returned {again:?}");
    Ok(())
}

fn wait_async_reports_death_by_signal() -> Outcome {
    let mut p = spawn()?;
    let status = status_after(&mut p, |p| {
        check!(p.child().kill());
        Ok(())
    })?;
    ensure!(
        status.signal() == Some(9) && status.code().is_none(),
        "status {status}"
    );
    Ok(())
}

/// A wait dropped while the child runs reaps nothing: after the child exits, the blocking
/// wait gets its status.
fn a_dropped_wait_leaves_the_child_reapable() -> Outcome {
    let mut p = spawn()?;
    let pid = p.pid() as i32;
    let rt = runtime()?;
    rt.block_on(async {
        for _ in 0..3 {
            let fut = procom::child::wait_async(p.child());
            let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), fut).await;
            ensure!(timed_out.is_err(), "a running child's wait completed");
        }
        // And one dropped after the child exited, before it was polled again.
        let exited = check!(Process::open(pid));
        {
            let mut fut = pin!(procom::child::wait_async(p.child()));
            ensure!(pending(fut.as_mut()), "a running child's wait completed");
        } // dropped
        tell(&mut p, 5)?;
        check!(check!(tokio::time::timeout(STEP, exited.exited()).await));
        Ok(())
    })?;
    // Still a zombie, waiting for us: the blocking wait reaps it with its status.
    let status = check!(procom::child::wait_timeout(p.child(), STEP));
    ensure!(
        status.and_then(|s| s.code()) == Some(5),
        "the dropped waits lost the status: {status:?}"
    );
    Ok(())
}

/// `Process::exited` resolves when the process ends, and reaps nothing (its parent does).
fn process_exited_sees_another_process_end() -> Outcome {
    let mut p = spawn()?;
    let process = check!(Process::open(p.pid() as i32));
    let rt = runtime()?;
    rt.block_on(async {
        let mut fut = pin!(process.exited());
        ensure!(
            pending(fut.as_mut()),
            "a running process's exited() completed"
        );
        tell(&mut p, 0)?;
        check!(check!(tokio::time::timeout(STEP, fut).await));
        // Several watchers, and after the fact: it stays exited.
        check!(check!(tokio::time::timeout(STEP, process.exited()).await));
        Ok(())
    })?;
    p.success(STEP)?;
    Ok(())
}
