//! `procom signal list|send|wait` as real processes.

use std::process::Command;

use procom_testkit::{Outcome, Proc, Role, STEP, Trial, as_nobody, check, ensure, needs, trials};

use crate::common::{procom, run, until_catching};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::signal":
            list_matches_kill_l,
            wait_prints_each_delivery,
            send_errors,
            not_ours_as_unprivileged_user [needs::root()],
            wait_catches_int_and_term,
            send_group_reaches_every_member,
            sender_uid_as_unprivileged_user [needs::root()],
            group_one_needs_force_in_a_pid_namespace [needs::pidns()],
            signal_zero_checks_existence,
            signal_zero_as_another_user [needs::root()];
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
        (
            "SIGKILL",
            true,
            "terminate Killed; cannot be caught or ignored",
        ),
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
                .contains("no SIGUSR2 arrived within 100 ms (0 received)"),
        "{timeout:?}"
    );
    Ok(())
}

fn send_errors() -> Outcome {
    // (arguments, exit status, words of the one-line error; none for clap's own usage errors)
    for (args, want, words) in [
        (vec!["signal", "send", "0", "TERM"], 2, "add --force"),
        (
            vec!["signal", "send", "-1", "TERM"],
            2,
            "every process we may signal",
        ),
        (vec!["signal", "send", "1", "NOPE"], 2, "is not a signal"),
        (vec!["signal", "send", "4194304999", "TERM"], 2, ""),
        (
            vec!["signal", "send", "-7", "TERM"],
            2,
            "every process of group 7",
        ),
        (
            vec!["signal", "send", "0", "TERM", "--group"],
            2,
            "--group 0 would signal our process group",
        ),
        (
            vec!["signal", "send", "1", "TERM", "--group"],
            2,
            "--group 1 would signal every process we may signal",
        ),
        (
            vec!["signal", "send", "-3", "TERM", "--group"],
            2,
            "--group needs a process group id",
        ),
        (
            vec!["signal", "send", "0", "USR1", "--value", "1", "--force"],
            2,
            "--value queues the signal for one process",
        ),
        (
            vec!["signal", "send", "1", "SIGRTMIN+99"],
            2,
            "is not a signal",
        ),
        (
            vec!["signal", "send", "1", "0", "--group"],
            2,
            "signal 0 checks whether one process exists",
        ),
        (
            vec!["signal", "wait", "KILL"],
            2,
            "can be neither caught nor ignored",
        ),
        (
            vec!["signal", "wait", "USR1", "stop"],
            2,
            "can be neither caught nor ignored",
        ),
        (vec!["signal", "wait", "SEGV"], 2, "fault of this process"),
        // -2147483648 would be group 2147483648, which no pid_t can hold: never another group.
        (
            vec!["signal", "send", "--force", "--", "-2147483648", "TERM"],
            2,
            "names no process group",
        ),
        (vec!["signal", "send", "TERM"], 2, ""), // the pid is missing
        (vec!["signal", "send"], 2, ""),
        (vec!["signal", "wait"], 2, ""),
    ] {
        let fin = run(&args)?;
        ensure!(fin.code() == Some(want), "{args:?}: exit {}", fin.status);
        ensure!(
            words.is_empty() || (fin.stderr.lines().count() == 1 && fin.stderr.contains(words)),
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
    let fin = Proc::spawn("procom as nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
    ensure!(fin.code() == Some(1), "exit {}", fin.status);
    ensure!(
        fin.stderr.lines().count() == 1
            && fin.stderr.contains(&format!("pid {pid}: it is not ours"))
            && !fin.stderr.contains("ls -l"),
        "stderr {:?}",
        fin.stderr
    );
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
    let waiter = Proc::spawn("wait as nobody", as_nobody(&mut wait)?)?;
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

/// `--group 1` is killpg(1), which the kernel reads as kill(-1): every process. Run where that
/// cannot hurt — a PID namespace of its own, whose init is a shell — it must be refused without
/// `--force` (a process in its own session survives) and reach that process with it.
fn group_one_needs_force_in_a_pid_namespace() -> Outcome {
    // A fatal signal's fate is sealed when kill(2) returns, so the victim's status tells who
    // ended it: 143 (SIGTERM) if procom reached it, 137 (our SIGKILL) if not.
    let script = r#"
        setsid sleep 300 & victim=$!
        "$PROCOM" signal send 1 TERM --group $FORCE; rc=$?
        kill -KILL "$victim" 2>/dev/null; wait "$victim"
        echo "victim=$? rc=$rc"
    "#;
    for (force, expected) in [("", "victim=137 rc=2"), ("--force", "victim=143 rc=0")] {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "sh", "-c", script])
            .env("PROCOM", env!("CARGO_BIN_EXE_procom"))
            .env("FORCE", force)
            .stdin(std::process::Stdio::null());
        let fin = Proc::spawn("unshare --pid", &mut cmd)?.finish(STEP)?;
        ensure!(
            fin.stdout == [expected],
            "--group 1 {force}: {:?} (stderr {:?})",
            fin.stdout,
            fin.stderr
        );
        if force.is_empty() {
            ensure!(
                fin.stderr
                    .contains("would signal every process we may signal")
                    && fin.stderr.contains("--force"),
                "{:?}",
                fin.stderr
            );
        }
    }
    Ok(())
}

/// `signal send PID 0` is kill -0: it says whether the process exists and may be signalled.
fn signal_zero_checks_existence() -> Outcome {
    let target = Proc::spawn(
        "target",
        &mut procom(&["signal", "wait", "USR1", "--timeout", "20"]),
    )?;
    let pid = target.pid().to_string();
    let fin = run(&["signal", "send", &pid, "0"])?;
    ensure!(
        fin.status.success() && fin.stdout == [format!("pid {pid} exists and may be signalled")],
        "{fin:?}"
    );
    drop(target); // killed and reaped: its pid names no process now
    let fin = run(&["signal", "send", &pid, "0"])?;
    ensure!(
        fin.code() == Some(1) && fin.stderr.contains("no such process") && fin.stdout.is_empty(),
        "{fin:?}"
    );
    Ok(())
}

/// `signal send PID 0` from another user: the process exists, but belongs to someone else.
fn signal_zero_as_another_user() -> Outcome {
    let target = Proc::spawn(
        "target",
        &mut procom(&["signal", "wait", "USR1", "--timeout", "20"]),
    )?;
    let pid = target.pid().to_string();
    let mut as_other = procom(&["signal", "send", &pid, "0"]);
    let fin = Proc::spawn("kill -0 as nobody", as_nobody(&mut as_other)?)?.finish(STEP)?;
    ensure!(
        fin.code() == Some(1) && fin.stderr.contains("belongs to another user"),
        "{fin:?}"
    );
    drop(target); // killed and reaped
    Ok(())
}
