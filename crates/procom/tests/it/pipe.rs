//! Anonymous pipes across real processes: parent to child, child to parent, shell-style
//! pipelines with no stray ends, and a dead reader that must not kill the writer.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

use procom::pipe::{self, Pipeline};
use procom::{ErrorKind, Options, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Trial, check, ensure, fds_of, role, trials, wait_pid,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "pipe::echo_stdin",
        run: echo_stdin,
    },
    Role {
        name: "pipe::emit",
        run: emit,
    },
    Role {
        name: "pipe::dead_reader",
        run: dead_reader,
    },
    Role {
        name: "pipe::frames_in",
        run: frames_in,
    },
    Role {
        name: "pipe::reader_dies_mid_frame",
        run: reader_dies_mid_frame,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "pipe":
            parent_to_child,
            child_to_parent,
            pipeline_has_no_stray_ends,
            dead_reader_is_an_error_not_sigpipe,
            a_frame_larger_than_the_pipe_grows_it,
            a_reader_dying_mid_frame_is_an_error_not_sigpipe;
    ]
}

/// Reads standard input to end-of-file and prints its length and contents.
fn echo_stdin(_: &[String]) -> Outcome {
    let mut all = Vec::new();
    check!(std::io::stdin().read_to_end(&mut all));
    println!("{} {}", all.len(), String::from_utf8_lossy(&all).trim_end());
    Ok(())
}

/// Writes N numbered lines to standard output.
fn emit(args: &[String]) -> Outcome {
    let n: usize = check!(
        args.first()
            .ok_or("count")
            .and_then(|a| a.parse::<usize>().map_err(|_| "count"))
    );
    let mut out = std::io::stdout().lock();
    for i in 0..n {
        check!(writeln!(out, "line {i}"));
    }
    Ok(())
}

/// With SIGPIPE at its default (deadly) action, writes to a pipe whose reader is gone.
fn dead_reader(_: &[String]) -> Outcome {
    check!(procom_sys::sigpipe::restore_default_sigpipe());
    let (r, mut w) = check!(pipe::pipe());
    drop(r);
    let e = w.write(b"x").err().map(|e| e.kind());
    ensure!(
        e == Some(std::io::ErrorKind::BrokenPipe),
        "PipeWriter gave {e:?}"
    );
    let (r, w) = check!(pipe::pipe());
    drop(r);
    let mut tx = Sender::from_fd(w, "pipe", &Options::default());
    let e = tx.send(b"hello").err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "Sender gave {e:?}");
    Ok(())
}

/// The payload of a `frames_in` message of `len` bytes.
fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Receives messages on standard input until the writer closes it; checks each one and prints
/// its length.
fn frames_in(_: &[String]) -> Outcome {
    let fd = check!(std::io::stdin().as_fd().try_clone_to_owned());
    let opts = Options::default().max_message(2 << 20);
    let mut rx = procom::Receiver::from_fd(fd, "stdin", &opts);
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) => {
                ensure!(
                    m == frame(m.len()),
                    "a {}-byte message arrived garbled",
                    m.len()
                );
                println!("{}", m.len());
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A message larger than the pipe's buffer makes the sender ask for a buffer that holds it
/// whole (up to 1 MiB), and every message still arrives intact.
fn a_frame_larger_than_the_pipe_grows_it() -> Outcome {
    let (r, w) = check!(pipe::pipe());
    let mut cmd = role("pipe::frames_in", &[]);
    cmd.stdin(Stdio::from(OwnedFd::from(r)))
        .stdout(Stdio::piped());
    let mut child = Proc::spawn("frames_in", &mut cmd)?;
    let mut tx = Sender::from_fd(w, "pipe", &Options::default().max_message(2 << 20));
    let size = |tx: &Sender| -> Result<usize, String> {
        let fd = tx.as_fd().ok_or("no fd")?;
        Ok(check!(rustix::pipe::fcntl_getpipe_size(fd)))
    };
    let start = size(&tx)?;
    let sizes = [1000, 64 << 10, 300_000, 1 << 20];
    for len in sizes {
        check!(tx.send(frame(len)).map_err(|e| e.into_error()));
        // The frame is the payload plus a 4-byte length.
        let want = (len + 4).next_power_of_two().min(1 << 20).max(start);
        let now = size(&tx)?;
        ensure!(
            now >= want,
            "after a {len}-byte message the pipe holds {now} bytes, not {want}"
        );
    }
    drop(tx);
    for len in sizes {
        child.expect_line(&len.to_string())?;
    }
    child.success(STEP).map(drop)
}

/// With SIGPIPE at its default (deadly) action, sends a 4 MiB message into a pipe whose
/// reader takes part of it and then closes: the blocking write returns part of the frame and
/// the kernel raises SIGPIPE together; procom must take the signal back and report an error.
fn reader_dies_mid_frame(_: &[String]) -> Outcome {
    check!(procom_sys::sigpipe::restore_default_sigpipe());
    let (mut r, w) = check!(pipe::pipe());
    let reader = std::thread::spawn(move || {
        // Bytes arriving prove the sender is inside its write; then the reader goes away.
        let mut some = vec![0u8; 64 << 10];
        let got = r.read_exact(&mut some);
        drop(r);
        got
    });
    let mut tx = Sender::from_fd(w, "pipe", &Options::default().max_message(8 << 20));
    let e = tx.send(vec![7u8; 4 << 20]).err().map(|e| e.kind());
    check!(reader.join().map_err(|_| "the reader panicked")?);
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "a send to a reader gone mid-frame gave {e:?}"
    );
    Ok(())
}

fn a_reader_dying_mid_frame_is_an_error_not_sigpipe() -> Outcome {
    let mut cmd = role("pipe::reader_dies_mid_frame", &[]);
    Proc::spawn("sender", &mut cmd)?.success(STEP).map(drop)
}

fn parent_to_child() -> Outcome {
    let mut cmd = role("pipe::echo_stdin", &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, mut w) = check!(pipe::spawn_with_stdin(cmd));
    check!(w.write_all(b"hello child\n"));
    drop(w); // the only write end: the child must now see end-of-file
    let mut out = String::new();
    check!(
        child
            .stdout
            .take()
            .ok_or("stdout")?
            .read_to_string(&mut out)
    );
    let status = check!(wait_pid(&mut child, STEP)).ok_or("child did not exit")?;
    ensure!(status.success(), "child failed: {status}");
    ensure!(out == "12 hello child\n", "child printed {out:?}");
    Ok(())
}

fn child_to_parent() -> Outcome {
    let mut cmd = role("pipe::emit", &["20000"]);
    cmd.stderr(Stdio::null());
    let (mut child, mut r) = check!(pipe::spawn_with_stdout(cmd));
    let mut out = String::new();
    check!(r.read_to_string(&mut out)); // returns only at end-of-file: no stray write end
    let status = check!(wait_pid(&mut child, STEP)).ok_or("child did not exit")?;
    ensure!(status.success(), "child failed: {status}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 20000, "got {} lines", lines.len());
    ensure!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}")),
        "lines out of order"
    );
    Ok(())
}

fn pipeline_has_no_stray_ends() -> Outcome {
    let mut running = check!(
        Pipeline::new()
            .command(Command::new("cat"))
            .command(Command::new("cat"))
            .command(Command::new("cat"))
            .stdin_piped()
            .stdout_piped()
            .spawn()
    );
    // Each pipe of the pipeline is held by exactly the two processes it joins: child i's
    // standard output is child i+1's standard input, no child holds any other end of them, and
    // this process holds none of the pipes between children. (Descriptors other than pipes
    // may be inherited from whoever started the tests; they are not ours to judge.)
    let pids = running.pids();
    // A child looked at before it runs `cat` still holds what the spawn itself uses (the
    // descriptor that reports a failed exec); its ends are judged once it runs `cat`.
    for pid in &pids {
        let deadline = std::time::Instant::now() + STEP;
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or(true, |c| c.trim() != "cat")
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "child {pid} never ran cat"
            );
            std::thread::yield_now();
        }
    }
    let ends: Vec<(String, String)> = pids
        .iter()
        .map(|p| Ok((link(*p, 0)?, link(*p, 1)?)))
        .collect::<Result<_, String>>()?;
    for w in ends.windows(2) {
        ensure!(
            w[0].1 == w[1].0,
            "a child's output {} is not the next child's input {}",
            w[0].1,
            w[1].0
        );
    }
    let all_pipes: Vec<&String> = ends.iter().flat_map(|(i, o)| [i, o]).collect();
    for pid in &pids {
        for fd in fds_of(*pid)?.into_iter().filter(|fd| *fd > 2) {
            let l = link(*pid, fd)?;
            ensure!(
                !all_pipes.contains(&&l),
                "child {pid} holds a stray end {l} on fd {fd}"
            );
        }
    }
    let internal: Vec<&String> = ends.iter().skip(1).map(|(i, _)| i).collect();
    for fd in procom_testkit::open_fds() {
        if let Ok(l) = link(std::process::id(), fd) {
            ensure!(
                !internal.contains(&&l),
                "this process holds a stray end {l} on fd {fd}"
            );
        }
    }
    let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    let mut input = running.stdin.take().ok_or("stdin")?;
    let expected = data.clone();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let mut out = Vec::new();
    // read_to_end returns only when every write end of the last pipe is closed, which proves
    // that neither this process nor any other child kept one.
    check!(running.stdout.take().ok_or("stdout")?.read_to_end(&mut out));
    check!(writer.join().map_err(|_| "writer panicked")?);
    for child in &mut running.children {
        let status = check!(wait_pid(child, STEP)).ok_or("a pipeline command did not exit")?;
        ensure!(status.success(), "a pipeline command failed: {status}");
    }
    ensure!(
        out == expected,
        "the pipeline changed the data ({} bytes out)",
        out.len()
    );
    Ok(())
}

/// What `/proc/PID/fd/FD` points to, like `pipe:[1234]`.
fn link(pid: u32, fd: i32) -> Result<String, String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .map_err(|e| format!("/proc/{pid}/fd/{fd}: {e}"))
}

fn dead_reader_is_an_error_not_sigpipe() -> Outcome {
    let p = Proc::spawn("dead_reader", &mut role("pipe::dead_reader", &[]))?;
    let fin = p.finish(STEP)?;
    ensure!(
        fin.status.success(),
        "the writer did not survive: {} (stderr: {})",
        fin.status,
        fin.stderr.trim()
    );
    Ok(())
}
