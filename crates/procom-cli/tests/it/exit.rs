//! How `procom` ends: on a signal, with standard output or error gone, and on usage errors —
//! always with the documented status, one sentence, and nothing left behind.

use std::process::{Command, Stdio};

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, trials, unique_name, wait_pid,
};

use crate::common::{fails, procom, run, until, until_catching};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::exit":
            stderr_full_or_closed_never_panics,
            usage_errors_exit_2_wherever_found,
            interrupted_send_to_a_full_queue_says_it_was_not_sent,
            control_characters_are_escaped_in_errors,
            an_interrupted_tour_leaves_no_child,
            hints_follow_the_kind_of_object,
            permission_hints_follow_the_kind_of_object [procom_testkit::needs::root()],
            every_argument_and_option_is_described,
            durations_are_said_one_way,
            a_privileged_port_says_so [procom_testkit::needs::root()];
    ]
}

/// INT, TERM and HUP: the numbers the watcher catches.
const STOP_SIGNALS: [(rustix::process::Signal, &str); 3] = [
    (rustix::process::Signal::INT, "Ctrl-C (SIGINT)"),
    (rustix::process::Signal::TERM, "SIGTERM"),
    (rustix::process::Signal::HUP, "SIGHUP"),
];

fn signal(p: &Proc, sig: rustix::process::Signal) -> Outcome {
    let pid = rustix::process::Pid::from_raw(p.pid() as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(pid, sig));
    Ok(())
}

/// With standard error full (/dev/full) or closed, errors and signals still end procom with
/// the documented status: it never dies with a panic's 101 nor ignores SIGTERM.
fn stderr_full_or_closed_never_panics() -> Outcome {
    let missing = format!("mq:/{}", unique_name("exit-missing"));
    // A failed operation: status 1 whatever happened to its sentence.
    let full = check!(std::fs::OpenOptions::new().write(true).open("/dev/full"));
    let mut cmd = procom(&["recv", &missing]);
    cmd.stderr(check!(full.try_clone()));
    let status = check!(check!(cmd.spawn()).wait());
    ensure!(status.code() == Some(1), "recv with stderr full: {status}");
    let mut sh = Command::new("sh");
    sh.args(["-c", "exec \"$P\" recv \"$E\" 2>&-"])
        .env("P", env!("CARGO_BIN_EXE_procom"))
        .env("E", &missing)
        .stdin(Stdio::null());
    let status = check!(check!(sh.spawn()).wait());
    ensure!(
        status.code() == Some(1),
        "recv with stderr closed: {status}"
    );
    // Servers that announce themselves on stderr, then wait: a signal still ends them.
    for args in [["listen", "tcp:127.0.0.1:0"], ["recv", "udp:127.0.0.1:0"]] {
        for (sig, _) in STOP_SIGNALS {
            let mut cmd = procom(&args);
            cmd.stdout(Stdio::null()).stderr(check!(full.try_clone()));
            let mut child = check!(cmd.spawn());
            let pid = child.id();
            let started = until_catching(pid, &[1, 2, 15]);
            if let Some(early) = check!(child.try_wait()) {
                return Err(format!("{args:?} with stderr full ended at start: {early}"));
            }
            started?;
            let target = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
            check!(rustix::process::kill_process(target, sig));
            let status = check!(wait_pid(&mut child, STEP));
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            ensure!(
                status.and_then(|s| s.code()) == Some(1),
                "{args:?} with stderr full, on {sig:?}: {status:?}"
            );
        }
    }
    Ok(())
}

/// Mistakes on the command line exit 2, also when only found after parsing.
fn usage_errors_exit_2_wherever_found() -> Outcome {
    let me = std::process::id().to_string();
    let key = format!("{:#x}", 0x5e00_0000u32 | (std::process::id() & 0xffff));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["mq", "create", "noslash"],
            "not a valid message queue name",
        ),
        (
            vec!["mq", "create", "/.."],
            "not a valid message queue name",
        ),
        (vec!["mq", "create", "/q", "--capacity", "0"], "at least 1"),
        (vec!["sem", "create", "noslash", "1"], "noslash"),
        (
            vec!["shm", "create", "noslash", "--size", "1"],
            "neither a POSIX",
        ),
        (
            vec!["shm", "create", "/x", "--size", "0"],
            "at least 1 byte",
        ),
        (vec!["signal", "send", &me, "FOO"], "is not a signal"),
        (vec!["signal", "wait", "KILL"], "can be neither caught"),
        (vec!["listen", "udp:127.0.0.1:0"], "use procom recv"),
        (
            vec!["connect", "udp:127.0.0.1:9"],
            "use procom send and recv",
        ),
        (
            vec!["listen", "tcp:127.0.0.1:0", "--allow-uid", "0"],
            "a TCP client has no uid",
        ),
        (vec!["bench", "--mechanism", "bogus"], "not a mechanism"),
        (
            vec!["send", "fifo:/nonexistent", "x", "--priority", "3"],
            "--priority",
        ),
        (
            vec!["send", "fifo:/nonexistent", "x", "--type", "3"],
            "--type",
        ),
        (
            vec!["msg", "create", &key, "--max-bytes", "0"],
            "byte limit of 0",
        ),
        (vec!["send", "-", "x", "--max-size", "5GiB"], "4 GiB"),
    ];
    for (args, words) in &cases {
        fails(args, 2, words)?;
    }
    // msg --type 0 on an existing queue (a sender's type must be 1 or more).
    let made = run(&["msg", "create", &key])?;
    ensure!(made.status.success(), "msg create: {}", made.stderr);
    let typed = fails(
        &["send", &format!("msg:{key}"), "x", "--type", "0"],
        2,
        "type",
    );
    let removed = run(&["msg", "rm", &key])?;
    typed?;
    ensure!(removed.status.success(), "msg rm: {}", removed.stderr);
    // Durations: never a panic, always a usage error.
    for bad in ["inf", "nan", "1e300", "-1", "soon"] {
        usage_by_clap(&["listen", "tcp:127.0.0.1:0", "--idle", bad])?;
        usage_by_clap(&["recv", "udp:127.0.0.1:0", "--timeout", bad])?;
    }
    Ok(())
}

/// clap's own usage errors: status 2, no panic (their text spans several lines).
fn usage_by_clap(args: &[&str]) -> Outcome {
    let fin = run(args)?;
    ensure!(
        fin.code() == Some(2) && !fin.stderr.contains("panicked"),
        "{args:?}: {fin:?}"
    );
    Ok(())
}

/// A send blocked on a full queue and interrupted delivered nothing, and says so (it used to
/// claim a message was cut off mid-transfer).
fn interrupted_send_to_a_full_queue_says_it_was_not_sent() -> Outcome {
    let name = format!("/{}", unique_name("exit-full"));
    let ep = format!("mq:{name}");
    let made = run(&["mq", "create", &name, "--capacity", "1"])?;
    ensure!(made.status.success(), "mq create: {}", made.stderr);
    let result = (|| -> Outcome {
        let first = run(&["send", &ep, "first"])?;
        ensure!(first.status.success(), "first send: {}", first.stderr);
        let p = Proc::spawn("blocked send", &mut procom(&["send", &ep, "second"]))?;
        until_catching(p.pid(), &[2])?;
        // Blocked in the kernel's queue wait (the state the kernel reports as sleeping).
        until("send is blocked in the queue's wait", || {
            std::fs::read_to_string(format!("/proc/{}/wchan", p.pid()))
                .is_ok_and(|w| w.contains("wq_sleep"))
        })?;
        signal(&p, rustix::process::Signal::INT)?;
        let fin = p.finish(STEP)?;
        ensure!(
            fin.code() == Some(1)
                && fin.stderr.contains("was not delivered")
                && !fin.stderr.contains("cut off"),
            "{fin:?}"
        );
        let info = run(&["mq", "info", &name])?;
        ensure!(
            info.stdout.first().map(String::as_str) == Some("messages: 1"),
            "{:?}",
            info.stdout
        );
        Ok(())
    })();
    let removed = run(&["mq", "rm", &name])?;
    result?;
    ensure!(removed.status.success(), "mq rm: {}", removed.stderr);
    Ok(())
}

/// A user's argument echoed in an error cannot drive the terminal: control characters are
/// shown escaped.
fn control_characters_are_escaped_in_errors() -> Outcome {
    let fin = run(&["mq", "info", "/no\u{1b}[31mred\u{7}"])?;
    ensure!(fin.code() == Some(1), "{fin:?}");
    ensure!(
        !fin.stderr.contains('\u{1b}') && !fin.stderr.contains('\u{7}'),
        "raw control characters in {:?}",
        fin.stderr
    );
    ensure!(
        fin.stderr.contains("\\u{1b}[31mred\\u{7}") && fin.stderr.lines().count() == 1,
        "{:?}",
        fin.stderr
    );
    Ok(())
}

/// `procom tour` interrupted while a step's child runs (the FIFO writer waiting for its
/// reader): the child goes too, instead of waiting for ever, and the scratch directory is
/// removed. (How every long-running command ends is the table in `stdio.rs`.)
fn an_interrupted_tour_leaves_no_child() -> Outcome {
    let scratch = Scratch::new("exit-tour")?;
    // Interrupted while a step's child runs (the FIFO writer waiting for its reader): the
    // child goes too, instead of waiting for ever.
    let mut cmd = procom(&["tour"]);
    cmd.env("TMPDIR", scratch.path());
    let p = Proc::spawn("procom tour", &mut cmd)?;
    let tour = p.pid();
    let mut writer = None;
    until("the tour's FIFO writer runs", || {
        writer = children_of(tour)
            .into_iter()
            .find(|pid| cmdline(*pid).contains("hello through a FIFO"));
        writer.is_some()
    })?;
    let writer = writer.ok_or("no writer")?;
    until("the writer waits in open() for a reader", || {
        std::fs::read_to_string(format!("/proc/{writer}/wchan"))
            .is_ok_and(|w| w.contains("wait_for_partner"))
    })?;
    let pid = rustix::process::Pid::from_raw(writer as i32).ok_or("pid 0")?;
    let pidfd = check!(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty()
    ));
    signal(&p, rustix::process::Signal::INT)?;
    let fin = p.finish(STEP)?;
    ensure!(fin.code() == Some(1), "tour on SIGINT: {fin:?}");
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: STEP.as_secs() as i64,
        tv_nsec: 0,
    };
    let ended = check!(rustix::event::poll(&mut fds, Some(&ts)));
    if ended == 0 {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        return Err(format!("the tour's child {writer} outlived the tour"));
    }
    scratch.finish()
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A process's command line, its arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The hint after an error depends on the kind of object the library says it concerns.
fn hints_follow_the_kind_of_object() -> Outcome {
    let scratch = Scratch::new("exit-hints")?;
    let fifo = scratch.join("f");
    let fifo = fifo.to_str().ok_or("path")?;
    let missing_mq = format!("mq:/{}", unique_name("exit-hint"));
    let missing_shm = format!("shm:/{}", unique_name("exit-hint"));
    let fifo_ep = format!("fifo:{fifo}");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["recv", &missing_mq, "--timeout", "0"],
            1,
            "create it with `procom mq create /NAME`",
        ),
        (
            vec!["send", "msg:0x5eff0002", "x", "--timeout", "0"],
            1,
            "create it with `procom msg create KEY`",
        ),
        (
            vec!["send", &fifo_ep, "x"],
            1,
            "create it with `procom fifo create PATH`",
        ),
        (
            vec!["send", &missing_shm, "x"],
            1,
            "start its receiver first",
        ),
        (
            vec!["send", "-", "hello", "--max-size", "3"],
            1,
            "raise --max-size on both sides",
        ),
    ];
    for (args, code, words) in &cases {
        fails(args, *code, words)?;
    }
    check!(run(&["fifo", "create", fifo]).map(drop));
    let with_fifo: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["fifo", "create", fifo],
            "remove it with `procom fifo rm PATH`",
        ),
        (
            vec!["send", &fifo_ep, "x", "--timeout", "0"],
            "start a reader first",
        ),
    ];
    let result = with_fifo
        .iter()
        .try_for_each(|(args, words)| fails(args, 1, words));
    check!(run(&["fifo", "rm", fifo]).map(drop));
    result?;
    scratch.finish()
}

/// As another user: a queue gets the queue hint, a FIFO the file-mode one, a process none.
fn permission_hints_follow_the_kind_of_object() -> Outcome {
    let name = format!("/{}", unique_name("exit-perm"));
    let made = run(&["mq", "create", &name])?;
    ensure!(made.status.success(), "mq create: {}", made.stderr);
    let scratch = Scratch::new("exit-perm")?;
    let dir = scratch.path().to_str().ok_or("path")?.to_string();
    check!(std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755)
    ));
    let fifo = format!("{dir}/f");
    let result = (|| -> Outcome {
        check!(run(&["fifo", "create", &fifo]).map(drop));
        let me = std::process::id().to_string();
        for (args, words, not) in [
            (
                vec!["send".to_string(), format!("mq:{name}"), "x".into()],
                "queues are created 0600",
                "ls -l",
            ),
            (
                vec![
                    "send".to_string(),
                    format!("fifo:{fifo}"),
                    "x".into(),
                    "--timeout".into(),
                    "0".into(),
                ],
                "check with ls -l",
                "queues",
            ),
            (
                vec!["signal".to_string(), "send".into(), me, "USR1".into()],
                "only root may signal it",
                "ls -l",
            ),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = procom(&args);
            let fin = Proc::spawn("as nobody", check!(procom_testkit::as_nobody(&mut cmd)))?
                .finish(STEP)?;
            ensure!(
                fin.code() == Some(1) && fin.stderr.contains(words) && !fin.stderr.contains(not),
                "{args:?}: {:?}",
                fin.stderr
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&fifo);
    let removed = run(&["mq", "rm", &name])?;
    result?;
    ensure!(removed.status.success(), "mq rm: {}", removed.stderr);
    scratch.finish()
}

/// Every command's `--help` describes each of its positionals and options (a line that names
/// an argument is followed by what it is, on the line or the next), and `recv --help` says
/// what lines cannot carry and where to turn.
fn every_argument_and_option_is_described() -> Outcome {
    let commands: &[&[&str]] = &[
        &["send"],
        &["recv"],
        &["listen"],
        &["connect"],
        &["fifo", "create"],
        &["fifo", "rm"],
        &["mq", "create"],
        &["mq", "info"],
        &["mq", "rm"],
        &["msg", "create"],
        &["msg", "info"],
        &["msg", "rm"],
        &["shm", "create"],
        &["shm", "info"],
        &["shm", "rm"],
        &["shm", "write"],
        &["shm", "read"],
        &["sem", "create"],
        &["sem", "post"],
        &["sem", "wait"],
        &["sem", "get"],
        &["sem", "rm"],
        &["signal", "list"],
        &["signal", "send"],
        &["signal", "wait"],
        &["bench"],
        &["tour"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let fin = run(&args)?;
        ensure!(fin.status.success(), "{args:?}: {fin:?}");
        let mut in_list = false;
        for (i, line) in fin.stdout.iter().enumerate() {
            if line == "Arguments:" || line == "Options:" {
                in_list = true;
                continue;
            }
            if line.is_empty() || !line.starts_with(' ') {
                in_list = line.is_empty() && in_list;
                continue;
            }
            let item = line.trim_start();
            // An argument's line: `<NAME>` or `-x, --long <VALUE>`, then its description.
            if in_list && line.starts_with("  ") && (item.starts_with('<') || item.starts_with('-'))
            {
                // What follows the argument, less a bare "[default: …]".
                let described_here = item.split_once("  ").is_some_and(|(_, text)| {
                    !text.trim().is_empty() && !text.trim().starts_with('[')
                });
                let described_below = fin.stdout.get(i + 1).is_some_and(|next| {
                    next.len() - next.trim_start().len() > line.len() - item.len()
                });
                ensure!(
                    described_here || described_below,
                    "procom {}: `{item}` has no description",
                    cmd.join(" ")
                );
            }
        }
    }
    let recv = run(&["recv", "--help"])?.stdout.join("\n");
    ensure!(
        recv.contains("cannot be told from two messages")
            && recv.contains("--json")
            && recv.contains("--framed"),
        "{recv}"
    );
    Ok(())
}

/// Durations in messages are written one way ("250 ms", "1.5 s"), never Rust's debug form.
fn durations_are_said_one_way() -> Outcome {
    fails(
        &["recv", "udp:127.0.0.1:0", "--timeout", "0.25"],
        1,
        "no whole message arrived within 250 ms (0 received)",
    )
}

/// A port below net.ipv4.ip_unprivileged_port_start refused to an unprivileged user says it is
/// privileged, and does not send the user to `ls -l`.
fn a_privileged_port_says_so() -> Outcome {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    ensure!(
        start > 1,
        "every port is unprivileged here (net.ipv4.ip_unprivileged_port_start = {start})"
    );
    let port = (start - 1).min(80).to_string();
    for args in [
        vec!["listen".to_string(), format!("tcp:127.0.0.1:{port}")],
        vec!["recv".to_string(), format!("udp:127.0.0.1:{port}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = procom(&args);
        let fin =
            Proc::spawn("as nobody", check!(procom_testkit::as_nobody(&mut cmd)))?.finish(STEP)?;
        ensure!(
            fin.code() == Some(1)
                && fin.stderr.lines().count() == 1
                && fin.stderr.contains(&format!("port {port} is privileged"))
                && !fin.stderr.contains("ls -l"),
            "{args:?}: {:?}",
            fin.stderr
        );
    }
    Ok(())
}
