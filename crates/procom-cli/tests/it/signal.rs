//! `procom signal list|send|wait` as real processes.

use std::process::Command;
use std::time::{Duration, Instant};

use procom_testkit::{Outcome, Proc, Role, STEP, Trial, as_nobody, check, ensure, test};

use crate::common::{procom, run};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    vec![
        test("cli::signal::list_matches_kill_l", list_matches_kill_l),
        test("cli::signal::wait_prints_each_delivery", wait_prints_each_delivery),
        test("cli::signal::send_errors", send_errors),
        test("cli::signal::not_ours_as_unprivileged_user", not_ours_as_unprivileged_user),
    ]
}



fn list_matches_kill_l() -> Outcome {
    let fin = run(&["signal", "list", "--json"])?;
    ensure!(fin.status.success(), "{}", fin.stderr);
    let mut bash = Command::new("bash");
    bash.args(["-c", "kill -l"]);
    let kill_l = Proc::spawn("kill -l", &mut bash)?.success(STEP)?;
    let expected: Vec<String> = kill_l
        .stdout
        .iter()
        .flat_map(|l| l.split('\t').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>())
        .collect();
    let ours: Vec<String> = fin
        .stdout
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            format!("{}) {}", v["number"], v["name"].as_str().unwrap_or(""))
        })
        .collect();
    ensure!(ours == expected, "procom: {ours:?}\nkill -l: {expected:?}");
    let text = run(&["signal", "list"])?;
    ensure!(text.stdout.iter().any(|l| l.contains("SIGKILL") && l.contains("cannot be caught")), "{:?}", text.stdout);
    Ok(())
}

/// The catch mask of `pid` as /proc shows it (SigCgt), to know the catcher is installed.
fn catching(pid: u32, signo: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (signo - 1)) != 0)
}

fn wait_prints_each_delivery() -> Outcome {
    let waiter = Proc::spawn("wait", &mut procom(&["signal", "wait", "USR1", "RTMIN+2", "--count", "3", "--json"]))?;
    let pid = waiter.pid();
    let deadline = Instant::now() + STEP;
    while !(catching(pid, 10) && catching(pid, 36)) {
        ensure!(Instant::now() < deadline, "procom signal wait never installed its catcher");
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view of the waiter
    }
    let p = pid.to_string();
    for args in [vec!["signal", "send", &p, "USR1"], vec!["signal", "send", &p, "RTMIN+2", "--value", "7"], vec!["signal", "send", &p, "36", "--value", "8"]] {
        let fin = run(&args)?;
        ensure!(fin.status.success(), "{args:?}: {}", fin.stderr);
    }
    let fin = waiter.success(STEP)?;
    ensure!(fin.stdout.len() == 3, "printed {:?}", fin.stdout);
    let rows: Vec<serde_json::Value> = fin.stdout.iter().map(|l| serde_json::from_str(l)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    ensure!(rows[0]["signal"] == "SIGUSR1" && rows[0]["value"].is_null(), "{}", rows[0]);
    ensure!(rows[1]["signal"] == "SIGRTMIN+2" && rows[1]["value"] == 7, "{}", rows[1]);
    ensure!(rows[2]["value"] == 8, "{}", rows[2]);
    for r in &rows {
        ensure!(r["sender_uid"] == 0 || r["sender_uid"].as_u64().is_some(), "{r}");
        ensure!(r["sender_pid"].as_i64().is_some_and(|p| p > 0), "{r}");
    }
    let timeout = run(&["signal", "wait", "USR2", "--timeout", "0.1"])?;
    ensure!(timeout.code() == Some(1) && timeout.stderr.contains("no USR2 arrived within"), "{timeout:?}");
    Ok(())
}

fn send_errors() -> Outcome {
    for (args, words) in [
        (vec!["signal", "send", "0", "TERM"], "add --force"),
        (vec!["signal", "send", "-1", "TERM"], "every process you may signal"),
        (vec!["signal", "send", "1", "NOPE"], "is not a signal"),
        (vec!["signal", "send", "4194304999", "TERM"], ""),
        (vec!["signal", "wait", "KILL"], "can be neither caught nor ignored"),
    ] {
        let fin = run(&args)?;
        let code = fin.code();
        if words.is_empty() {
            ensure!(code == Some(2), "{args:?}: exit {}", fin.status); // not a pid at all
            continue;
        }
        ensure!(code == Some(1), "{args:?}: exit {}", fin.status);
        ensure!(fin.stderr.lines().count() == 1 && fin.stderr.contains(words), "{args:?}: {:?}", fin.stderr);
    }
    let pid_max = check!(std::fs::read_to_string("/proc/sys/kernel/pid_max"));
    let beyond = (check!(pid_max.trim().parse::<i64>()) + 1).to_string();
    let fin = run(&["signal", "send", &beyond, "TERM"])?;
    ensure!(fin.code() == Some(1) && fin.stderr.contains("no such process"), "{:?}", fin.stderr);
    Ok(())
}

fn not_ours_as_unprivileged_user() -> Outcome {
    // A root-owned process that waits (it catches USR1, so nothing can kill it by accident).
    let target = Proc::spawn("target", &mut procom(&["signal", "wait", "USR1", "--timeout", "20"]))?;
    let pid = target.pid().to_string();
    let mut cmd = procom(&["signal", "send", &pid, "TERM"]);
    match as_nobody(&mut cmd) {
        Ok(cmd) => {
            let fin = Proc::spawn("procom as nobody", cmd)?.finish(STEP)?;
            ensure!(fin.code() == Some(1), "exit {}", fin.status);
            ensure!(
                fin.stderr.lines().count() == 1 && fin.stderr.contains(&format!("pid {pid}: it is not ours")),
                "stderr {:?}",
                fin.stderr
            );
        }
        Err(reason) => println!("skipped: {reason}"),
    }
    drop(target); // killed and reaped
    Ok(())
}
