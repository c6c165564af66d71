//! Helpers every CLI test module uses: run `procom` as a real process, under the watchdog.

use std::io::Write;
use std::process::{Command, Stdio};

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
