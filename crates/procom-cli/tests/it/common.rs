//! Helpers every CLI test module uses: run `procom` as a real process, under the watchdog.

use std::io::Write;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use procom_testkit::{Finished, Outcome, Proc, STEP, check, ensure};

/// The built `procom` with `args` and an empty standard input.
pub fn procom(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `procom args` to completion.
pub fn run(args: &[&str]) -> Result<Finished, String> {
    Proc::spawn(&format!("procom {}", args.join(" ")), &mut procom(args))?.finish(STEP)
}

/// Runs `procom args`, which must succeed; returns its output lines.
pub fn ok(args: &[&str]) -> Result<Vec<String>, String> {
    let fin = run(args)?;
    ensure!(
        fin.status.success(),
        "procom {args:?}: {}",
        fin.stderr.trim()
    );
    Ok(fin.stdout)
}

/// Runs `procom args`, which must fail with `code` and one line of stderr containing `words`.
pub fn fails(args: &[&str], code: i32, words: &str) -> Outcome {
    let fin = run(args)?;
    ensure!(
        fin.code() == Some(code),
        "procom {args:?}: exit {}",
        fin.status
    );
    ensure!(
        fin.stderr.lines().count() == 1 && fin.stderr.contains(words),
        "procom {args:?}: {:?}",
        fin.stderr
    );
    ensure!(!fin.stderr.contains("panicked"), "panic: {}", fin.stderr);
    Ok(())
}

/// Runs `cmd` with `input` on its standard input, to completion.
pub fn run_with_input(mut cmd: Command, what: &str, input: &[u8]) -> Result<Finished, String> {
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(what, &mut cmd)?;
    let mut stdin = p.child().stdin.take().ok_or("stdin")?;
    check!(stdin.write_all(input));
    drop(stdin);
    p.finish(STEP)
}

/// Whether process `pid` has a handler installed for signal `signo` (the kernel's SigCgt mask).
fn catching(pid: u32, signo: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (signo - 1)) != 0)
}

/// Polls the kernel's view of `pid` until it catches every signal in `signos`.
pub fn until_catching(pid: u32, signos: &[u32]) -> Outcome {
    until(&format!("pid {pid} catching {signos:?}"), || {
        signos.iter().all(|s| catching(pid, *s))
    })
}

/// Polls the kernel's view (a file appearing, a handler installed) until `ready` holds.
pub fn until(what: &str, mut ready: impl FnMut() -> bool) -> Outcome {
    let deadline = Instant::now() + STEP;
    while !ready() {
        ensure!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view
    }
    Ok(())
}

/// `KIND create NAME --mode 660 --group 65534` (a queue, `mq` or `msg`): a member of that
/// group (nobody, gid 65534) may send and receive on `ep`; `KIND info` shows the mode and
/// group. The queue is removed afterwards.
pub fn queue_shared_with_a_group(kind: &str, name: &str, ep: &str) -> Outcome {
    ok(&[kind, "create", name, "--mode", "660", "--group", "65534"])?;
    let result = (|| -> Outcome {
        let info = ok(&[kind, "info", name])?;
        ensure!(
            info.contains(&"mode: 660".to_string()) && info.contains(&"gid: 65534".to_string()),
            "{info:?}"
        );
        for (args, out) in [
            (&["send", ep, "from nobody"][..], vec![]),
            (
                &["recv", ep, "--count", "1"],
                vec!["from nobody".to_string()],
            ),
        ] {
            let mut cmd = procom(args);
            let fin = Proc::spawn("nobody", procom_testkit::as_nobody(&mut cmd)?)?.finish(STEP)?;
            ensure!(
                fin.status.success() && fin.stdout == out,
                "{args:?} as a member of the group: {fin:?}"
            );
        }
        Ok(())
    })();
    ok(&[kind, "rm", name])?;
    result
}
