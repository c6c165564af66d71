//! `procom send`, `recv` and `fifo` against real FIFOs, shell tools and bad input.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procom_testkit::{
    Finished, Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, trials,
    wait_pid,
};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::fifo":
            echo_into_fifo_is_received,
            send_is_read_by_cat,
            stdin_lines_framed_round_trip,
            raw_stdin_copy_is_byte_exact,
            recv_count_and_timeout,
            bad_paths_are_one_sentence,
            no_reader_without_waiting,
            created_fifo_is_private,
            unprivileged_user_is_denied [needs::root()],
            shared_with_a_group [needs::root()],
            group_minus_one_is_a_usage_error,
            framed_garbage_truncation_and_oversize,
            ctrl_c_mid_transfer,
            create_and_rm,
            a_line_cut_off_by_the_end_is_shown_and_reported;
        "cli":
            usage_errors_exit_2,
            send_to_a_closed_stdout_is_an_error,
            recv_from_stdin,
            tour_passes;
    ]
}

fn procom(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procom"));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn spawn(args: &[&str]) -> Result<Proc, String> {
    Proc::spawn(&format!("procom {}", args.join(" ")), &mut procom(args))
}

/// Runs procom to completion under the watchdog.
fn run(args: &[&str]) -> Result<Finished, String> {
    spawn(args)?.finish(STEP)
}

/// A failure must be exit 1 (or `code`), with exactly one line on stderr naming `object`.
fn one_sentence(fin: &Finished, code: i32, object: &str, words: &str) -> Outcome {
    ensure!(
        fin.code() == Some(code),
        "exit status {} (stderr {:?})",
        fin.status,
        fin.stderr
    );
    let lines: Vec<&str> = fin.stderr.lines().collect();
    ensure!(lines.len() == 1, "stderr is not one line: {:?}", fin.stderr);
    ensure!(
        lines[0].starts_with(&format!("procom: {object}")),
        "stderr does not name {object}: {:?}",
        lines[0]
    );
    ensure!(
        lines[0].contains(words),
        "stderr lacks {words:?}: {:?}",
        lines[0]
    );
    ensure!(!fin.stderr.contains("panicked"), "panic: {}", fin.stderr);
    Ok(())
}

fn make_fifo(dir: &Scratch, name: &str) -> Result<(String, String), String> {
    let path = dir.join(name).display().to_string();
    let fin = run(&["fifo", "create", &path])?;
    ensure!(fin.status.success(), "fifo create failed: {}", fin.stderr);
    Ok((path.clone(), format!("fifo:{path}")))
}

fn sh(script: &str, path: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(path)
        .stdin(Stdio::null());
    cmd
}

fn echo_into_fifo_is_received() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "myPipe")?;
    let recv = spawn(&["recv", &ep, "--count", "1"])?;
    Proc::spawn("echo", &mut sh("echo hello > \"$1\"", &path))?.success(STEP)?;
    let fin = recv.success(STEP)?;
    ensure!(fin.stdout == ["hello"], "recv printed {:?}", fin.stdout);
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn send_is_read_by_cat() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "myPipe")?;
    let cat = Proc::spawn("cat", &mut sh("cat < \"$1\"", &path))?;
    spawn(&["send", &ep, "hi"])?.success(STEP)?;
    let fin = cat.success(STEP)?;
    ensure!(fin.stdout == ["hi"], "cat printed {:?}", fin.stdout);
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn feed(mut cmd: Command, input: &[u8]) -> Result<Proc, String> {
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn("procom send", &mut cmd)?;
    let mut stdin = p.child().stdin.take().ok_or("stdin")?;
    check!(stdin.write_all(input));
    drop(stdin);
    Ok(p)
}

fn stdin_lines_framed_round_trip() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "framed")?;
    let recv = spawn(&["recv", &ep, "--framed"])?;
    feed(procom(&["send", &ep, "-", "--framed"]), b"a\nb b\n\nlast")?.success(STEP)?;
    let fin = recv.success(STEP)?;
    ensure!(
        fin.stdout == ["a", "b b", "", "last"],
        "recv printed {:?}",
        fin.stdout
    );
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn raw_stdin_copy_is_byte_exact() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "raw")?;
    let out = dir.join("out.bin");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut cat = check!(sh("cat < \"$1\" > \"$2\"", &path).arg(&out).spawn());
    feed(procom(&["send", &ep, "-"]), &data)?.success(STEP)?;
    let st = check!(wait_pid(&mut cat, STEP)).ok_or("cat did not finish")?;
    ensure!(st.success(), "cat failed");
    ensure!(
        check!(std::fs::read(&out)) == data,
        "bytes changed on the way"
    );
    check!(std::fs::remove_file(&out));
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn recv_count_and_timeout() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "counted")?;
    let fin = run(&["recv", &ep, "--timeout", "0.2"])?;
    one_sentence(&fin, 1, &ep, "no whole message arrived within")?;

    let recv = spawn(&["recv", &ep, "--count", "3"])?;
    feed(procom(&["send", &ep, "-"]), b"one\ntwo\n")?.success(STEP)?;
    let fin = recv.finish(STEP)?;
    ensure!(fin.stdout == ["one", "two"], "printed {:?}", fin.stdout);
    one_sentence(&fin, 1, &ep, "the sender closed after 2 of 3 messages")?;

    let recv = spawn(&["recv", &ep, "--count", "2"])?;
    feed(procom(&["send", &ep, "-"]), b"x\ny\nz\n")?.finish(STEP)?;
    let fin = recv.success(STEP)?;
    ensure!(fin.stdout == ["x", "y"], "printed {:?}", fin.stdout);
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn bad_paths_are_one_sentence() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let regular = dir.join("regular");
    check!(std::fs::write(&regular, b"keep me"));
    let directory = dir.join("directory");
    check!(std::fs::create_dir(&directory));
    let (fifo_path, _) = make_fifo(&dir, "target")?;
    let link = dir.join("link");
    check!(symlink(&fifo_path, &link));
    let cases = [
        (dir.join("missing"), "does not exist"),
        (regular.clone(), "is a regular file, not a FIFO"),
        (directory.clone(), "is a directory, not a FIFO"),
        (link.clone(), "is a symbolic link"),
    ];
    for (path, words) in &cases {
        let ep = format!("fifo:{}", path.display());
        one_sentence(&run(&["recv", &ep])?, 1, &ep, words)?;
        one_sentence(&run(&["send", &ep, "hi"])?, 1, &ep, words)?;
    }
    ensure!(
        check!(std::fs::read(&regular)) == b"keep me",
        "the regular file was changed"
    );
    check!(std::fs::remove_file(&regular));
    check!(std::fs::remove_dir(&directory));
    check!(std::fs::remove_file(&link));
    check!(std::fs::remove_file(&fifo_path));
    dir.finish()
}

fn no_reader_without_waiting() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "lonely")?;
    one_sentence(
        &run(&["send", &ep, "hi", "--timeout", "0"])?,
        1,
        &ep,
        "no process has it open for reading",
    )?;
    one_sentence(
        &run(&["send", &ep, "hi", "--timeout", "0.1"])?,
        1,
        &ep,
        "no process opened it for reading within",
    )?;
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn created_fifo_is_private() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, _) = make_fifo(&dir, "private")?;
    let mode = check!(std::fs::metadata(&path)).permissions().mode() & 0o777;
    ensure!(mode == 0o600, "created with mode {mode:o}");
    check!(std::fs::remove_file(&path));
    dir.finish()
}

/// `fifo create --mode 660 --group 65534`: the FIFO has that mode and group, and a member of
/// the group (nobody) writes to it while its owner reads.
fn shared_with_a_group() -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let dir = Scratch::new("procom-cli")?;
    check!(std::fs::set_permissions(
        dir.path(),
        std::fs::Permissions::from_mode(0o755)
    ));
    let path = dir.join("shared").display().to_string();
    let ep = format!("fifo:{path}");
    let made = crate::common::run(&["fifo", "create", &path, "--mode", "660", "--group", "65534"])?;
    ensure!(made.status.success(), "fifo create: {made:?}");
    let meta = check!(std::fs::metadata(&path));
    ensure!(
        meta.mode() & 0o777 == 0o660 && meta.gid() == 65534,
        "created {:o}, gid {}",
        meta.mode() & 0o777,
        meta.gid()
    );
    let reader = Proc::spawn("recv", &mut procom(&["recv", &ep, "--count", "1"]))?;
    let mut cmd = procom(&["send", &ep, "from nobody", "--timeout", "5"]);
    let sent = Proc::spawn("send as nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
    ensure!(sent.status.success(), "send as nobody: {sent:?}");
    let fin = reader.success(STEP)?;
    ensure!(fin.stdout == ["from nobody"], "recv: {fin:?}");
    check!(std::fs::remove_file(&path));
    dir.finish()
}

/// `--group 4294967295` (-1, "no change" to the kernel) is a usage error, for root too, and
/// creates nothing.
fn group_minus_one_is_a_usage_error() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let path = dir.join("minus-one").display().to_string();
    let out = crate::common::run(&["fifo", "create", &path, "--group", "4294967295"])?;
    ensure!(out.status.code() == Some(2), "fifo create: {out:?}");
    ensure!(!std::path::Path::new(&path).exists(), "{path} was created");
    dir.finish()
}

fn unprivileged_user_is_denied() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "private")?;
    for args in [
        vec!["recv", ep.as_str()],
        vec!["send", ep.as_str(), "hi", "--timeout", "0"],
    ] {
        let mut cmd = procom(&args);
        let fin = Proc::spawn("procom as nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
        one_sentence(&fin, 1, &ep, "permission denied")?;
    }
    check!(std::fs::remove_file(&path));
    dir.finish()
}

/// Writes `bytes` into the FIFO as a raw writer (no framing of its own), then closes it.
fn write_raw(path: &str, bytes: &[u8]) -> Outcome {
    let mut w = check!(procom::fifo::open_write_timeout(path, STEP));
    check!(w.write_all(bytes));
    Ok(())
}

fn framed_garbage_truncation_and_oversize() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "framed")?;

    let recv = spawn(&["recv", &ep, "--framed"])?;
    let mut bytes = 2u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"ok");
    bytes.extend_from_slice(b"hello world\n");
    write_raw(&path, &bytes)?;
    let fin = recv.finish(STEP)?;
    ensure!(fin.stdout == ["ok"], "printed {:?}", fin.stdout);
    one_sentence(&fin, 1, &ep, "over the 67108864-byte limit")?;

    let recv = spawn(&["recv", &ep, "--framed"])?;
    let mut bytes = 10u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"abc");
    write_raw(&path, &bytes)?;
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.stdout.is_empty(),
        "a truncated message was printed: {:?}",
        fin.stdout
    );
    one_sentence(
        &fin,
        1,
        &ep,
        "the stream ended 3 bytes into a 10-byte message",
    )?;

    let recv = spawn(&["recv", &ep, "--framed", "--max-size", "16"])?;
    let mut bytes = 4_000_000_000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    write_raw(&path, &bytes)?;
    let fin = recv.finish(STEP)?;
    ensure!(fin.stdout.is_empty(), "printed {:?}", fin.stdout);
    one_sentence(
        &fin,
        1,
        &ep,
        "announces a 4000000000-byte message, over the 16-byte limit",
    )?;

    let fin = feed(
        procom(&[
            "send",
            &ep,
            "-",
            "--framed",
            "--max-size",
            "4",
            "--timeout",
            "0",
        ]),
        b"12345\n",
    )?
    .finish(STEP)?;
    ensure!(
        fin.code() == Some(1),
        "an oversize send did not fail: {}",
        fin.status
    );
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn ctrl_c_mid_transfer() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "interrupted")?;
    let mut recv = spawn(&["recv", &ep])?;
    let mut w = check!(procom::fifo::open_write_timeout(&path, STEP));
    check!(w.write_all(b"one\ntw")); // the second message is half-written
    ensure!(recv.line(STEP)? == "one", "first message not printed");
    let pid = rustix::process::Pid::from_raw(recv.pid() as i32).ok_or("pid")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::INT
    ));
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.stdout.is_empty(),
        "printed after the interrupt: {:?}",
        fin.stdout
    );
    ensure!(fin.code() == Some(1), "exit {}", fin.status);
    ensure!(fin.stderr.lines().count() == 1, "stderr: {:?}", fin.stderr);
    ensure!(
        fin.stderr
            .starts_with("procom: interrupted by Ctrl-C (SIGINT) while receiving from"),
        "stderr: {:?}",
        fin.stderr
    );
    drop(w);

    // A sender waiting for a reader is interrupted cleanly too.
    let send = spawn(&["send", &ep, "never"])?;
    let deadline = Instant::now() + STEP;
    while std::fs::read_to_string(format!("/proc/{}/wchan", send.pid())).unwrap_or_default()
        != "wait_for_partner"
    {
        ensure!(
            Instant::now() < deadline,
            "the sender never blocked waiting for a reader"
        );
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view of the sender
    }
    let pid = rustix::process::Pid::from_raw(send.pid() as i32).ok_or("pid")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::INT
    ));
    let fin = send.finish(STEP)?;
    ensure!(fin.code() == Some(1), "exit {}", fin.status);
    ensure!(
        fin.stderr
            .starts_with("procom: interrupted by Ctrl-C (SIGINT) while sending to"),
        "stderr: {:?}",
        fin.stderr
    );
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn create_and_rm() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let path = dir.join("made");
    let p = path.display().to_string();
    ensure!(
        run(&["fifo", "create", &p])?.status.success(),
        "create failed"
    );
    let meta = check!(std::fs::symlink_metadata(&path));
    ensure!(
        std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()),
        "not a FIFO"
    );
    ensure!(
        meta.permissions().mode() & 0o7777 == 0o600,
        "mode {:o}",
        meta.permissions().mode()
    );
    one_sentence(
        &run(&["fifo", "create", &p])?,
        1,
        &format!("fifo:{p}"),
        "already exists",
    )?;
    ensure!(run(&["fifo", "rm", &p])?.status.success(), "rm failed");
    ensure!(!path.exists(), "rm left it");
    ensure!(
        run(&["fifo", "create", &p, "--mode", "640"])?
            .status
            .success(),
        "create --mode failed"
    );
    ensure!(
        check!(std::fs::metadata(&path)).permissions().mode() & 0o777 == 0o640,
        "--mode ignored"
    );
    ensure!(run(&["fifo", "rm", &p])?.status.success(), "rm failed");
    let regular = dir.join("regular");
    check!(std::fs::write(&regular, b"x"));
    let r = regular.display().to_string();
    one_sentence(
        &run(&["fifo", "rm", &r])?,
        1,
        &format!("fifo:{r}"),
        "is a regular file, not a FIFO",
    )?;
    ensure!(Path::new(&regular).exists(), "rm removed a regular file");
    check!(std::fs::remove_file(&regular));
    dir.finish()
}

fn usage_errors_exit_2() -> Outcome {
    for args in [
        vec!["send"],
        vec!["recv", "-", "--count", "abc"],
        vec!["fifo", "create"],
        vec!["bogus"],
        vec!["send", "-", "x", "--timeout", "-1"],
    ] {
        let fin = run(&args)?;
        ensure!(fin.code() == Some(2), "{args:?}: exit {}", fin.status);
    }
    one_sentence(
        &run(&["send", "bogus", "hi"])?,
        2,
        "`bogus` is not a valid endpoint",
        "expected SCHEME:ADDRESS",
    )?;
    one_sentence(
        &run(&["recv", "mq:jobs"])?,
        2,
        "`mq:jobs` is not a valid endpoint",
        "must start with '/'",
    )?;
    Ok(())
}

fn send_to_a_closed_stdout_is_an_error() -> Outcome {
    let (r, w) = check!(procom::pipe::pipe());
    drop(r);
    let mut cmd = procom(&["send", "-", "hello"]);
    cmd.stdout(w).stderr(Stdio::piped());
    let p = Proc::spawn_keep_stdout("procom send -", &mut cmd)?;
    drop(cmd);
    let fin = p.finish(STEP)?;
    one_sentence(&fin, 1, "-", "the peer has closed its end or exited")
}

fn recv_from_stdin() -> Outcome {
    let mut cmd = procom(&["recv", "-"]);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn("procom recv -", &mut cmd)?;
    let mut stdin = p.child().stdin.take().ok_or("stdin")?;
    check!(stdin.write_all(b"first\nsecond\n"));
    drop(stdin);
    let fin = p.success(STEP)?;
    ensure!(
        fin.stdout == ["first", "second"],
        "printed {:?}",
        fin.stdout
    );
    // Input that ends inside a line: shown, but not as a whole line, and reported.
    let mut cmd = procom(&["recv", "-"]);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn("procom recv -", &mut cmd)?;
    let mut stdin = p.child().stdin.take().ok_or("stdin")?;
    check!(stdin.write_all(b"first\nno newline"));
    drop(stdin);
    let fin = p.finish(STEP)?;
    ensure!(
        fin.stdout == ["first", "no newline"],
        "printed {:?}",
        fin.stdout
    );
    one_sentence(
        &fin,
        1,
        "-",
        "the stream ended inside a line, 10 bytes after the last newline",
    )
}

/// A writer that ends inside a line (here `procom send` copying "whole\npart" and exiting):
/// recv prints the fragment as it came (no newline is added, so it does not pass for a line),
/// says on stderr that the stream ended inside a line, and exits 1.
fn a_line_cut_off_by_the_end_is_shown_and_reported() -> Outcome {
    let dir = Scratch::new("procom-cli")?;
    let (path, ep) = make_fifo(&dir, "cut")?;
    let out = dir.join("out");
    let mut cmd = procom(&["recv", &ep]);
    cmd.stdout(check!(std::fs::File::create(&out)));
    let recv = Proc::spawn_keep_stdout("procom recv", &mut cmd)?;
    drop(cmd);
    feed(procom(&["send", &ep, "-"]), b"whole\npart")?.success(STEP)?;
    let fin = recv.finish(STEP)?;
    one_sentence(
        &fin,
        1,
        &ep,
        "the stream ended inside a line, 4 bytes after the last newline (the writer may have been cut off)",
    )?;
    let printed = check!(std::fs::read(&out));
    ensure!(
        printed == b"whole\npart",
        "printed {:?}",
        String::from_utf8_lossy(&printed)
    );
    check!(std::fs::remove_file(&out));
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn tour_passes() -> Outcome {
    let fin = run(&["tour"])?;
    ensure!(
        fin.status.success(),
        "tour failed: {:?} {}",
        fin.stdout,
        fin.stderr
    );
    let passes = fin
        .stdout
        .iter()
        .filter(|l| l.trim_start().starts_with("PASS"))
        .count();
    let fails = fin
        .stdout
        .iter()
        .filter(|l| l.trim_start().starts_with("FAIL"))
        .count();
    ensure!(
        passes >= 3 && fails == 0,
        "{passes} PASS, {fails} FAIL: {:?}",
        fin.stdout
    );
    Ok(())
}
