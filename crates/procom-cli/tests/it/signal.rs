//! `procom signal list|send|wait` as real processes.

use std::process::Command;
use std::time::{Duration, Instant};

use procom_testkit::{Outcome, Proc, Role, STEP, Trial, as_nobody, check, ensure, test};

use crate::common::{procom, run};

/// Polls the kernel's view of `pid` until it catches every signal in `signos`.
fn until_catching(pid: u32, signos: &[u32]) -> Outcome {
    let deadline = Instant::now() + STEP;
    while !signos.iter().all(|s| catching(pid, *s)) {
        ensure!(
            Instant::now() < deadline,
            "pid {pid} never installed its catcher for {signos:?}"
        );
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view of the waiter
    }
    Ok(())
}

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    vec![
        test("cli::signal::list_matches_kill_l", list_matches_kill_l),
        test(
            "cli::signal::wait_prints_each_delivery",
            wait_prints_each_delivery,
        ),
        test("cli::signal::send_errors", send_errors),
        test(
            "cli::signal::not_ours_as_unprivileged_user",
            not_ours_as_unprivileged_user,
        ),
        test(
            "cli::signal::wait_catches_int_and_term",
            wait_catches_int_and_term,
        ),
        test(
            "cli::signal::send_group_reaches_every_member",
            send_group_reaches_every_member,
        ),
        test(
            "cli::signal::sender_uid_as_unprivileged_user",
            sender_uid_as_unprivileged_user,
        ),
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
        .flat_map(|l| {
            l.split('\t')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
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
    ensure!(
        text.stdout.len() == expected.len(),
        "{} text lines for {} signals",
        text.stdout.len(),
        expected.len()
    );
    for (line, item) in text.stdout.iter().zip(&expected) {
        let (n, name) = item
            .split_once(") ")
            .ok_or(format!("kill -l item {item:?}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            words.len() >= 4 && words[0] == n && words[1] == name,
            "line {line:?} for {item:?}"
        );
        ensure!(
            ["terminate", "core", "ignore", "stop", "continue"].contains(&words[2]),
            "action in {line:?}"
        );
    }
    let line_of = |name: &str| {
        text.stdout
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .cloned()
            .unwrap_or_default()
    };
    // (signal, how its line must end, or a part it must contain)
    let expected: [(&str, bool, &str); 5] = [
        ("SIGKILL", true, "terminate Killed; cannot be caught or ignored"),
        ("SIGINT", true, "terminate Interrupt (Ctrl+C)"),
        ("SIGTSTP", true, "stop      Stopped (Ctrl+Z)"),
        ("SIGCHLD", false, " ignore "),
        ("SIGRTMIN+3", true, "terminate Real-time signal 3"),
    ];
    for (name, at_end, text) in expected {
        let line = line_of(name);
        let ok = if at_end {
            line.ends_with(text)
        } else {
            line.contains(text)
        };
        ensure!(ok, "{line}");
    }
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
    let waiter = Proc::spawn(
        "wait",
        &mut procom(&[
            "signal", "wait", "USR1", "RTMIN+2", "--count", "3", "--json",
        ]),
    )?;
    let pid = waiter.pid();
    until_catching(pid, &[10, 36])?;
    let p = pid.to_string();
    for args in [
        vec!["signal", "send", &p, "USR1"],
        vec!["signal", "send", &p, "RTMIN+2", "--value", "7"],
        vec!["signal", "send", &p, "36", "--value", "8"],
    ] {
        let fin = run(&args)?;
        ensure!(fin.status.success(), "{args:?}: {}", fin.stderr);
    }
    let fin = waiter.success(STEP)?;
    ensure!(fin.stdout.len() == 3, "printed {:?}", fin.stdout);
    let rows: Vec<serde_json::Value> = fin
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    ensure!(
        rows[0]["signal"] == "SIGUSR1" && rows[0]["value"].is_null(),
        "{}",
        rows[0]
    );
    ensure!(
        rows[1]["signal"] == "SIGRTMIN+2" && rows[1]["value"] == 7,
        "{}",
        rows[1]
    );
    ensure!(rows[2]["value"] == 8, "{}", rows[2]);
    for r in &rows {
        ensure!(
            r["sender_uid"] == 0 || r["sender_uid"].as_u64().is_some(),
            "{r}"
        );
        ensure!(r["sender_pid"].as_i64().is_some_and(|p| p > 0), "{r}");
    }
    let timeout = run(&["signal", "wait", "USR2", "--timeout", "0.1"])?;
    ensure!(
        timeout.code() == Some(1)
            && timeout
                .stderr
                .contains("no SIGUSR2 arrived within 0.1 s (0 received)"),
        "{timeout:?}"
    );
    Ok(())
}

fn send_errors() -> Outcome {
    for (args, words) in [
        (vec!["signal", "send", "0", "TERM"], "add --force"),
        (
            vec!["signal", "send", "-1", "TERM"],
            "every process you may signal",
        ),
        (vec!["signal", "send", "1", "NOPE"], "is not a signal"),
        (vec!["signal", "send", "4194304999", "TERM"], ""),
        (
            vec!["signal", "send", "-7", "TERM"],
            "every process of group 7",
        ),
        (
            vec!["signal", "send", "0", "TERM", "--group"],
            "--group needs a positive process group id",
        ),
        (
            vec!["signal", "send", "0", "USR1", "--value", "1", "--force"],
            "--value queues the signal for one process",
        ),
        (
            vec!["signal", "send", "1", "SIGRTMIN+99"],
            "is not a signal",
        ),
        (vec!["signal", "send", "1", "0"], "0 is not a signal number"),
        (
            vec!["signal", "wait", "KILL"],
            "can be neither caught nor ignored",
        ),
        (
            vec!["signal", "wait", "USR1", "stop"],
            "can be neither caught nor ignored",
        ),
        (vec!["signal", "wait", "SEGV"], "fault of this process"),
        (vec!["signal", "send", "TERM"], ""), // the pid is missing
        (vec!["signal", "send"], ""),
        (vec!["signal", "wait"], ""),
    ] {
        let fin = run(&args)?;
        let code = fin.code();
        if words.is_empty() {
            ensure!(code == Some(2), "{args:?}: exit {}", fin.status); // a usage error
            continue;
        }
        ensure!(code == Some(1), "{args:?}: exit {}", fin.status);
        ensure!(
            fin.stderr.lines().count() == 1 && fin.stderr.contains(words),
            "{args:?}: {:?}",
            fin.stderr
        );
    }
    let pid_max = check!(std::fs::read_to_string("/proc/sys/kernel/pid_max"));
    let beyond = (check!(pid_max.trim().parse::<i64>()) + 1).to_string();
    let fin = run(&["signal", "send", &beyond, "TERM"])?;
    ensure!(
        fin.code() == Some(1) && fin.stderr.contains("no such process"),
        "{:?}",
        fin.stderr
    );
    Ok(())
}

fn not_ours_as_unprivileged_user() -> Outcome {
    // A root-owned process that waits (it catches USR1, so nothing can kill it by accident).
    let target = Proc::spawn(
        "target",
        &mut procom(&["signal", "wait", "USR1", "--timeout", "20"]),
    )?;
    let pid = target.pid().to_string();
    let mut cmd = procom(&["signal", "send", &pid, "TERM"]);
    match as_nobody(&mut cmd) {
        Ok(cmd) => {
            let fin = Proc::spawn("procom as nobody", cmd)?.finish(STEP)?;
            ensure!(fin.code() == Some(1), "exit {}", fin.status);
            ensure!(
                fin.stderr.lines().count() == 1
                    && fin.stderr.contains(&format!("pid {pid}: it is not ours")),
                "stderr {:?}",
                fin.stderr
            );
        }
        Err(reason) => println!("skipped: {reason}"),
    }
    drop(target); // killed and reaped
    Ok(())
}

/// `procom signal wait INT TERM` catches both itself (the CLI's own Ctrl-C handling stays out
/// of its way) and reports who sent them.
fn wait_catches_int_and_term() -> Outcome {
    let waiter = Proc::spawn(
        "wait",
        &mut procom(&["signal", "wait", "INT", "TERM", "--count", "2"]),
    )?;
    until_catching(waiter.pid(), &[2, 15])?;
    let p = waiter.pid().to_string();
    let mut senders = Vec::new();
    for sig in ["INT", "TERM"] {
        let sender = Proc::spawn("send", &mut procom(&["signal", "send", &p, sig]))?;
        senders.push(sender.pid());
        let fin = sender.finish(STEP)?;
        ensure!(
            fin.status.success() && fin.stderr.is_empty(),
            "send {sig}: {fin:?}"
        );
    }
    let fin = waiter.success(STEP)?;
    let uid = rustix::process::getuid().as_raw();
    let expected = vec![
        format!("SIGINT pid={} uid={uid} value=-", senders[0]),
        format!("SIGTERM pid={} uid={uid} value=-", senders[1]),
    ];
    ensure!(
        fin.stdout == expected,
        "printed {:?}, expected {expected:?}",
        fin.stdout
    );
    ensure!(fin.stderr.is_empty(), "stderr {:?}", fin.stderr);
    Ok(())
}

fn send_group_reaches_every_member() -> Outcome {
    let mut first = procom(&["signal", "wait", "USR2", "--count", "1"]);
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let leader = Proc::spawn("leader", &mut first)?;
    let pgid = leader.pid();
    let mut second = procom(&["signal", "wait", "USR2", "--count", "1"]);
    std::os::unix::process::CommandExt::process_group(&mut second, pgid as i32);
    let member = Proc::spawn("member", &mut second)?;
    until_catching(leader.pid(), &[12])?;
    until_catching(member.pid(), &[12])?;
    let fin = run(&["signal", "send", &pgid.to_string(), "USR2", "--group"])?;
    ensure!(fin.status.success(), "send --group: {}", fin.stderr);
    for p in [leader, member] {
        let fin = p.success(STEP)?;
        ensure!(
            fin.stdout.len() == 1 && fin.stdout[0].starts_with("SIGUSR2 pid="),
            "{:?}",
            fin.stdout
        );
    }
    Ok(())
}

/// Both sides unprivileged: the delivery carries the sender's uid 65534, its pid and value.
fn sender_uid_as_unprivileged_user() -> Outcome {
    let mut wait = procom(&["signal", "wait", "RTMIN+1", "--count", "1", "--json"]);
    let wait = match as_nobody(&mut wait) {
        Ok(cmd) => cmd,
        Err(reason) => {
            println!("skipped: {reason}");
            return Ok(());
        }
    };
    let waiter = Proc::spawn("wait as nobody", wait)?;
    until_catching(waiter.pid(), &[35])?;
    let p = waiter.pid().to_string();
    let mut send = procom(&["signal", "send", &p, "RTMIN+1", "--value", "-3"]);
    let sender = Proc::spawn("send as nobody", check!(as_nobody(&mut send)))?;
    let sender_pid = sender.pid();
    let fin = sender.finish(STEP)?;
    ensure!(fin.status.success(), "send: {}", fin.stderr);
    let fin = waiter.success(STEP)?;
    let row: serde_json::Value = check!(serde_json::from_str(
        fin.stdout.first().map_or("", String::as_str)
    ));
    ensure!(
        row["signal"] == "SIGRTMIN+1"
            && row["sender_uid"] == 65534
            && row["sender_pid"] == sender_pid
            && row["value"] == -3,
        "{row}"
    );
    Ok(())
}
