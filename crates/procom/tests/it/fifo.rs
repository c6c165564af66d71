//! FIFOs across real processes: creation mode, refusal of anything that is not our FIFO,
//! the classic blocking open, non-blocking and deadline opens, end-of-file after the last
//! writer, ownership on drop, and permission checks against an unprivileged peer.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procom::fifo::{self, Fifo};
use procom::{ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, role, trials,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "fifo::umask_create",
        run: umask_create,
    },
    Role {
        name: "fifo::write_one",
        run: write_one,
    },
    Role {
        name: "fifo::write_and_hold",
        run: write_and_hold,
    },
    Role {
        name: "fifo::open_denied",
        run: open_denied,
    },
    Role {
        name: "fifo::write_bytes_and_exit",
        run: write_bytes_and_exit,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "fifo":
            mode_is_exact_whatever_the_umask,
            refuses_what_is_not_a_fifo,
            writer_waits_for_a_reader,
            no_reader_fails_fast_or_at_deadline,
            eof_only_after_the_last_writer,
            creator_removes_opener_does_not,
            unprivileged_peer_is_denied [needs::root()],
            a_line_cut_off_by_the_end_is_not_a_message;
    ]
}

fn mode_of(path: &Path) -> Result<u32, String> {
    Ok(check!(std::fs::symlink_metadata(path)).permissions().mode() & 0o7777)
}

/// Creates FIFOs under several umasks (a process-wide setting, hence its own process).
fn umask_create(args: &[String]) -> Outcome {
    let dir = Path::new(args.first().ok_or("dir")?);
    for (i, mask) in [0o000, 0o022, 0o077, 0o777].into_iter().enumerate() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        let p = dir.join(format!("default-{i}"));
        let f = check!(Fifo::create(&p));
        ensure!(
            mode_of(&p)? == 0o600,
            "umask {mask:o}: mode {:o}",
            mode_of(&p)?
        );
        drop(f);
        let p = dir.join(format!("custom-{i}"));
        let f = check!(Fifo::create_with_mode(&p, 0o640));
        ensure!(
            mode_of(&p)? == 0o640,
            "umask {mask:o}: mode {:o}",
            mode_of(&p)?
        );
        check!(f.remove());
    }
    Ok(())
}

fn mode_is_exact_whatever_the_umask() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let p = Proc::spawn(
        "umask_create",
        &mut role("fifo::umask_create", &[&dir.path().display().to_string()]),
    )?;
    p.success(STEP)?;
    dir.finish()
}

fn refuses_what_is_not_a_fifo() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let regular = dir.join("regular");
    check!(std::fs::write(&regular, b"precious"));
    let directory = dir.join("directory");
    check!(std::fs::create_dir(&directory));
    let real = dir.join("real");
    let real_fifo = check!(Fifo::create(&real));
    let link_to_fifo = dir.join("link-to-fifo");
    check!(symlink(&real, &link_to_fifo));
    let link_to_file = dir.join("link-to-file");
    check!(symlink(&regular, &link_to_file));
    let socket = dir.join("socket");
    let listener = check!(std::os::unix::net::UnixListener::bind(&socket));

    for path in [&regular, &directory, &link_to_fifo, &link_to_file, &socket] {
        let e = Fifo::create(path).err().map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::AlreadyExists),
            "{}: create gave {e:?}",
            path.display()
        );
        let kinds = [
            fifo::open_read(path).err().map(|e| e.kind()),
            fifo::open_write(path).err().map(|e| e.kind()),
            fifo::try_open_write(path).err().map(|e| e.kind()),
            Receiver::connect(format!("fifo:{}", path.display()))
                .err()
                .map(|e| e.kind()),
            fifo::remove(path).err().map(|e| e.kind()),
        ];
        ensure!(
            kinds.iter().all(|k| *k == Some(ErrorKind::WrongType)),
            "{}: {kinds:?}",
            path.display()
        );
        ensure!(
            std::fs::symlink_metadata(path).is_ok(),
            "{} was removed",
            path.display()
        );
    }
    let e = fifo::try_open_write(&link_to_fifo).unwrap_err();
    ensure!(e.to_string().contains("symbolic link"), "message: {e}");
    ensure!(
        check!(std::fs::read(&regular)) == b"precious",
        "the regular file was changed"
    );
    let missing = dir.join("missing");
    let kinds = [
        fifo::open_read(&missing).err().map(|e| e.kind()),
        fifo::remove(&missing).err().map(|e| e.kind()),
    ];
    ensure!(
        kinds.iter().all(|k| *k == Some(ErrorKind::NotFound)),
        "missing: {kinds:?}"
    );

    drop(listener);
    for p in [&regular, &link_to_fifo, &link_to_file, &socket] {
        check!(std::fs::remove_file(p));
    }
    check!(std::fs::remove_dir(&directory));
    check!(real_fifo.remove());
    dir.finish()
}

/// Opens the FIFO for writing (waiting for a reader, as the classic tour describes) and sends one line.
fn write_one(args: &[String]) -> Outcome {
    let [ep, msg] = args else {
        return Err("args".into());
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    tx.send(msg.as_bytes()).map_err(|e| e.to_string())
}

fn wchan(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

fn writer_waits_for_a_reader() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let path = dir.join("myPipe");
    let owner = check!(Fifo::create(&path));
    let ep = format!("fifo:{}", path.display());
    let mut writer = Proc::spawn("writer", &mut role("fifo::write_one", &[&ep, "hello"]))?;
    // The kernel shows where the writer sleeps: in the FIFO open, waiting for a partner.
    let deadline = Instant::now() + STEP;
    while wchan(writer.pid()) != "wait_for_partner" {
        ensure!(
            Instant::now() < deadline,
            "writer never blocked in open (wchan {:?})",
            wchan(writer.pid())
        );
        ensure!(
            writer.exits_within(Duration::from_millis(2))?.is_none(),
            "the writer finished with no reader"
        );
    }
    let mut rx = check!(Receiver::connect(&ep));
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"hello", "got {m:?}");
    writer.success(STEP)?;
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "after the writer left: {e:?}"
    );
    drop(rx);
    check!(owner.remove());
    dir.finish()
}

fn no_reader_fails_fast_or_at_deadline() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let path = dir.join("lonely");
    let owner = check!(Fifo::create(&path));
    let e = fifo::try_open_write(&path).unwrap_err();
    ensure!(e.kind() == ErrorKind::NoReader, "try_open_write: {e}");
    ensure!(
        e.to_string().contains("no process has it open for reading"),
        "message: {e}"
    );
    let e = fifo::open_write_timeout(&path, Duration::from_millis(30)).unwrap_err();
    ensure!(e.kind() == ErrorKind::Timeout, "open_write_timeout: {e}");
    ensure!(
        e.to_string()
            .contains("no process opened it for reading within"),
        "message: {e}"
    );
    let ep = format!("fifo:{}", path.display());
    let e = Sender::connect_with(&ep, &Options::default().open_timeout(Some(Duration::ZERO)))
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::NoReader, "connect with no wait: {e}");
    check!(owner.remove());
    dir.finish()
}

/// Sends one message, then keeps the FIFO open until its standard input closes.
fn write_and_hold(args: &[String]) -> Outcome {
    let [ep, msg] = args else {
        return Err("args".into());
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    check!(tx.send(msg.as_bytes()).map_err(|e| e.into_error()));
    println!("sent");
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn eof_only_after_the_last_writer() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let ep = format!("fifo:{}", dir.join("shared").display());
    let mut rx = check!(Receiver::bind(&ep));
    let mut writers = Vec::new();
    for name in ["first", "second"] {
        let mut cmd = role("fifo::write_and_hold", &[&ep, name]);
        cmd.stdin(Stdio::piped());
        let mut w = Proc::spawn(name, &mut cmd)?;
        w.expect_line("sent")?;
        writers.push(w);
    }
    let mut got = vec![check!(rx.recv_timeout(STEP)), check!(rx.recv_timeout(STEP))];
    got.sort();
    ensure!(
        got == [b"first".to_vec(), b"second".to_vec()],
        "got {got:?}"
    );
    let mut second = writers.pop().ok_or("writer")?;
    let mut first = writers.pop().ok_or("writer")?;
    drop(first.child().stdin.take());
    first.success(STEP)?;
    // One writer is still there: nothing to read, but no end-of-file either.
    let e = rx.try_recv().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "with one writer left: {e:?}");
    drop(second.child().stdin.take());
    second.success(STEP)?;
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "after the last writer: {e:?}"
    );
    drop(rx);
    dir.finish()
}

fn creator_removes_opener_does_not() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let a = dir.join("a");
    drop(check!(Fifo::create(&a)));
    ensure!(!a.exists(), "a dropped creator left its FIFO");

    let kept = check!(Fifo::create(&a)).keep().path().to_path_buf();
    ensure!(
        check!(std::fs::symlink_metadata(&kept))
            .file_type()
            .is_fifo_like(),
        "kept FIFO missing"
    );
    drop(check!(Receiver::connect(format!(
        "fifo:{}",
        kept.display()
    ))));
    ensure!(kept.exists(), "an opener removed the FIFO");
    check!(fifo::remove(&kept));

    let b = dir.join("b");
    drop(check!(Receiver::bind(format!("fifo:{}", b.display()))));
    ensure!(!b.exists(), "a dropped binding receiver left its FIFO");

    // A creator never removes what replaced its FIFO.
    let c = dir.join("c");
    let owner = check!(Fifo::create(&c));
    check!(std::fs::remove_file(&c));
    let other = check!(Fifo::create(&c)).keep().path().to_path_buf();
    drop(owner);
    ensure!(
        other.exists(),
        "a creator removed a FIFO that was not its own"
    );
    check!(fifo::remove(&other));
    dir.finish()
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

/// Run as uid 65534: every way of opening a root-owned 0600 FIFO is PermissionDenied.
fn open_denied(args: &[String]) -> Outcome {
    let path = args.first().ok_or("path")?;
    let ep = format!("fifo:{path}");
    let errors = [
        Receiver::connect(&ep).err(),
        Sender::connect_with(&ep, &Options::default().open_timeout(Some(Duration::ZERO))).err(),
        fifo::try_open_write(path).err(),
    ];
    for e in errors {
        let e = e.ok_or("an unprivileged process opened a 0600 root FIFO")?;
        ensure!(e.kind() == ErrorKind::PermissionDenied, "got {e}");
        ensure!(e.to_string().contains("permission denied"), "message: {e}");
    }
    Ok(())
}

fn unprivileged_peer_is_denied() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let path = dir.join("private");
    let owner = check!(Fifo::create(&path));
    let mut cmd = role("fifo::open_denied", &[&path.display().to_string()]);
    Proc::spawn("nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
    check!(owner.remove());
    dir.finish()
}

/// Opens the FIFO as a plain writer (no framing of its own), writes `bytes`, and exits.
fn write_bytes_and_exit(args: &[String]) -> Outcome {
    let [path, bytes] = args else {
        return Err("args".into());
    };
    let mut w = check!(fifo::open_write_timeout(path, STEP));
    check!(std::io::Write::write_all(&mut w, bytes.as_bytes()));
    Ok(())
}

/// A writer that ends inside a line (killed mid-line, or `printf` without a newline): the
/// fragment is never delivered as a whole line, but it is handed back with the error. Raw
/// framing, which has no lines, delivers the bytes as they came.
fn a_line_cut_off_by_the_end_is_not_a_message() -> Outcome {
    let dir = Scratch::new("procom-fifo")?;
    let path = dir.join("cut");
    let ep = format!("fifo:{}", path.display());
    let mut rx = check!(Receiver::bind_with(
        &ep,
        &Options::default().framing(procom::Framing::Lines)
    ));
    let p = path.display().to_string();
    Proc::spawn(
        "writer",
        &mut role("fifo::write_bytes_and_exit", &[&p, "whole\npart"]),
    )?
    .success(STEP)?;
    ensure!(check!(rx.recv_timeout(STEP)) == b"whole", "the whole line");
    let e = rx
        .recv_timeout(STEP)
        .err()
        .ok_or("the fragment after the last newline was delivered as a line")?;
    ensure!(e.kind() == ErrorKind::Malformed, "got {e:?}");
    ensure!(
        e.to_string()
            .contains("the stream ended inside a line, 4 bytes after the last newline"),
        "message: {e}"
    );
    ensure!(
        e.fragment() == Some(&b"part"[..]),
        "fragment {:?}",
        e.fragment()
    );
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "after the fragment: {e:?}");
    drop(rx);

    let mut rx = check!(Receiver::bind_with(
        &ep,
        &Options::default().framing(procom::Framing::Raw)
    ));
    Proc::spawn(
        "writer",
        &mut role("fifo::write_bytes_and_exit", &[&p, "whole\npart"]),
    )?
    .success(STEP)?;
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(STEP) {
            Ok(m) => got.extend(m),
            Err(e) if e.kind() == ErrorKind::PeerGone => break,
            Err(e) => return Err(format!("raw: {e}")),
        }
    }
    ensure!(got == b"whole\npart", "raw bytes {got:?}");
    drop(rx);
    dir.finish()
}
