//! `procom listen` under many clients: one memory budget for all partly received messages, and
//! a client it cannot start a thread for turned away (`relay --listen` too), never a panic.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, tcp_listening,
    trials, unix_listening,
};

use crate::common::{procom, run_with_input, until_catching};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::listen":
            memory_budget_bounds_many_slow_senders,
            another_user_connects_with_mode_and_allow_uid [needs::root()],
            idle_0_never_closes_and_idle_is_said_in_one_format,
            errors_name_the_peer_once,
            a_client_without_a_thread_is_turned_away,
            relay_turns_away_a_client_without_a_thread;
    ]
}

const MIB: usize = 1 << 20;

/// The listener's resident memory, in bytes.
fn resident(pid: u32) -> Result<usize, String> {
    let status = check!(std::fs::read_to_string(format!("/proc/{pid}/status")));
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kib * 1024)
}

/// A client that announces an 8 MiB message, sends 7 MiB of it (reported on `partial`), and
/// the last MiB only when told to on `go`.
fn slow_sender(
    stream: UnixStream,
    id: usize,
    partial: mpsc::Sender<usize>,
    go: mpsc::Receiver<()>,
) -> std::io::Result<()> {
    let mut stream = stream;
    stream.set_write_timeout(Some(STEP))?;
    stream.write_all(&(8 * MIB as u32).to_be_bytes())?;
    let chunk = vec![b'x'; MIB];
    for _ in 0..7 {
        stream.write_all(&chunk)?;
    }
    let _ = partial.send(id);
    if go.recv_timeout(STEP).is_ok() {
        stream.write_all(&chunk)?;
    }
    Ok(())
}

/// Eight clients each announce 8 MiB and send 7 MiB of it to `listen --memory 16MiB`: only two
/// messages fit, so only two clients get their 7 MiB in while the others' writes block; the
/// server's memory grows by about the budget, not by 56 MiB. When those two complete, two
/// waiting ones go on. A message larger than the whole budget is refused with a clear reason.
fn memory_budget_bounds_many_slow_senders() -> Outcome {
    let scratch = Scratch::new("listen-budget")?;
    let sock = scratch.join("s");
    let ep = format!("unix:{}", sock.display());
    let mut cmd = procom(&[
        "listen",
        &ep,
        "--framed",
        "--max-size",
        "32MiB",
        "--memory",
        "16MiB",
        "--idle",
        "40",
    ]);
    cmd.stdout(std::process::Stdio::null());
    let server = Proc::spawn_keep_stdout("listen --memory 16MiB", &mut cmd)?;
    unix_listening(server.pid(), &sock)?;
    until_catching(server.pid(), &[15])?;
    let base = resident(server.pid())?;
    let (partial_tx, partial) = mpsc::channel();
    let mut clients = Vec::new();
    for id in 0..8 {
        let stream = check!(UnixStream::connect(&sock));
        let handle = check!(stream.try_clone());
        let (go_tx, go) = mpsc::channel();
        let tx = partial_tx.clone();
        let thread = std::thread::spawn(move || slow_sender(stream, id, tx, go));
        clients.push((handle, go_tx, thread));
    }
    let first: Vec<usize> = (0..2)
        .map(|_| partial.recv_timeout(STEP))
        .collect::<Result<_, _>>()
        .map_err(|_| "two clients never got their 7 MiB in")?;
    let grown = resident(server.pid())?.saturating_sub(base);
    ensure!(
        grown < 24 * MIB,
        "the listener grew by {} MiB with a 16 MiB budget",
        grown / MIB
    );
    // The two complete their messages; their room goes to two of the waiting clients.
    for id in &first {
        let _ = clients[*id].1.send(());
    }
    let next: Vec<usize> = (0..2)
        .map(|_| partial.recv_timeout(STEP))
        .collect::<Result<_, _>>()
        .map_err(|_| "no waiting client went on after two messages completed")?;
    ensure!(
        next.iter().all(|id| !first.contains(id)),
        "{first:?} then {next:?}"
    );
    let grown = resident(server.pid())?.saturating_sub(base);
    ensure!(
        grown < 24 * MIB,
        "the listener grew by {} MiB with a 16 MiB budget after the first two",
        grown / MIB
    );
    // A message larger than the whole budget is refused at once, with the reason.
    let mut big = check!(UnixStream::connect(&sock));
    check!(big.write_all(&(20 * MIB as u32).to_be_bytes()));
    for (handle, _, _) in &clients {
        let _ = handle.shutdown(std::net::Shutdown::Both);
    }
    for (_, go, thread) in clients {
        drop(go); // a client still waiting for its turn gives up
        let _ = thread.join();
    }
    check!(big.set_read_timeout(Some(STEP)));
    let mut byte = [0u8; 1];
    let closed = std::io::Read::read(&mut big, &mut byte);
    ensure!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "the over-budget client was not closed: {closed:?}"
    );
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::TERM
    ));
    let fin = server.finish(STEP)?;
    ensure!(
        fin.stderr
            .contains("does not fit the memory budget of 16777216 bytes"),
        "{:?}",
        fin.stderr
    );
    ensure!(fin.code() == Some(1), "{fin:?}");
    scratch.finish()
}

/// `listen unix:PATH --mode 666 --allow-uid 65534`: a client running as nobody connects (the
/// socket file lets it) and is served (the allow list admits it); without --mode the file is
/// 0600 and the same client is refused by the kernel.
fn another_user_connects_with_mode_and_allow_uid() -> Outcome {
    let scratch = Scratch::new("listen-shared")?;
    check!(std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755)
    ));
    let sock = scratch.join("s");
    let ep = format!("unix:{}", sock.display());
    let server = Proc::spawn(
        "listen --mode 666",
        &mut procom(&[
            "listen",
            &ep,
            "--mode",
            "666",
            "--allow-uid",
            "65534",
            "--count",
            "1",
        ]),
    )?;
    unix_listening(server.pid(), &sock)?;
    let mode = check!(std::fs::symlink_metadata(&sock));
    ensure!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777 == 0o666,
        "socket file mode {:o}",
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions())
    );
    let mut client = procom(&["connect", &ep]);
    as_nobody(&mut client)?;
    let fin = run_with_input(client, "connect as nobody", b"from nobody\n")?;
    ensure!(fin.status.success(), "nobody's client: {fin:?}");
    let served = server.success(STEP)?;
    ensure!(
        served.stdout == ["from nobody"],
        "the server printed {served:?}"
    );
    scratch.finish()
}

/// `--idle 0` never closes a quiet client; a positive --idle is said as "200 ms" (one format
/// for every duration), not Rust's "200ms".
fn idle_0_never_closes_and_idle_is_said_in_one_format() -> Outcome {
    let server = Proc::spawn(
        "listen --idle 0",
        &mut procom(&["listen", "tcp:127.0.0.1:0", "--idle", "0", "--count", "1"]),
    )?;
    let addr = tcp_listening(server.pid())?;
    let mut client = check!(std::net::TcpStream::connect(addr));
    // Quiet for a while first: with --idle 0 read as a 0 s timeout, it would be closed at once.
    std::thread::sleep(std::time::Duration::from_millis(300));
    check!(client.write_all(b"late\n"));
    drop(client);
    let fin = server.success(STEP)?;
    ensure!(fin.stdout == ["late"], "--idle 0: {fin:?}");
    ensure!(!fin.stderr.contains("sent nothing"), "--idle 0: {fin:?}");

    let server = Proc::spawn(
        "listen --idle 0.2",
        &mut procom(&["listen", "tcp:127.0.0.1:0", "--idle", "0.2", "--count", "1"]),
    )?;
    let addr = tcp_listening(server.pid())?;
    let client = check!(std::net::TcpStream::connect(addr));
    let fin = server.success(STEP)?;
    drop(client);
    ensure!(
        fin.stderr
            .contains("sent nothing for 200 ms; connection closed"),
        "{:?}",
        fin.stderr
    );
    Ok(())
}

/// A client that breaks the framing is named once in the server's sentence: by the
/// connection's name, `tcp:…:PORT (peer 127.0.0.1:CLIENTPORT)`, not again before it.
fn errors_name_the_peer_once() -> Outcome {
    let server = Proc::spawn(
        "listen --framed",
        &mut procom(&["listen", "tcp:127.0.0.1:0", "--framed", "--count", "1"]),
    )?;
    let addr = tcp_listening(server.pid())?;
    let mut client = check!(std::net::TcpStream::connect(addr));
    let port = check!(client.local_addr()).port().to_string();
    check!(client.write_all(&u32::MAX.to_be_bytes()));
    let fin = server.success(STEP)?;
    drop(client);
    let line = fin
        .stderr
        .lines()
        .find(|l| l.contains("connection closed"))
        .ok_or_else(|| format!("no sentence about the client: {:?}", fin.stderr))?;
    // The port as an address's port: after a colon, not followed by a digit (the sentence's
    // other numbers, such as the announced length, may hold the same digits).
    let named = line
        .match_indices(&format!(":{port}"))
        .filter(|(at, m)| !line[at + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .count();
    ensure!(
        line.contains(&format!("(peer 127.0.0.1:{port})")) && named == 1,
        "the peer is not named exactly once: {line:?}"
    );
    Ok(())
}

/// Sets the listener's RLIMIT_AS (`None`: no limit).
fn limit_address_space(pid: u32, bytes: Option<u64>) -> Outcome {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    let limit = rustix::process::Rlimit {
        current: bytes,
        maximum: None,
    };
    check!(rustix::process::prlimit(
        Some(pid),
        rustix::process::Resource::As,
        limit
    ));
    Ok(())
}

/// Makes the server's address space too full for another thread's stack, connects a client
/// (which must be closed, unserved), gives the room back, and connects one that says `served`.
fn starve_one_client(server: &Proc, path: &std::path::Path) -> Outcome {
    limit_address_space(
        server.pid(),
        Some(procom_testkit::address_space(server.pid())? + (256 << 10)),
    )?;
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let mut first = check!(UnixStream::connect(path));
    // Closed before or after its line arrives: the write may find it closed already.
    match first.write_all(b"unserved\n") {
        Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset) => {}
        r => {
            check!(r);
            let mut end = [0u8; 16];
            let n = std::io::Read::read(&mut first, &mut end);
            ensure!(
                matches!(n, Ok(0)) || n.as_ref().is_err_and(|e| e.kind() == ConnectionReset),
                "the client without a thread was not closed: {n:?}"
            );
        }
    }
    limit_address_space(server.pid(), None)?;
    let mut second = check!(UnixStream::connect(path));
    check!(second.write_all(b"served\n"));
    Ok(())
}

/// It said why a client was turned away, and never panicked.
fn turned_away(stderr: &str) -> Outcome {
    ensure!(
        stderr.contains("could not start a thread") && !stderr.contains("panicked"),
        "what the server said: {stderr}"
    );
    Ok(())
}

/// A client the listener cannot start a thread for (its address space is full, as a
/// thread or task limit would also do) is turned away in one sentence, and the listener goes
/// on serving the next one: it never panics.
fn a_client_without_a_thread_is_turned_away() -> Outcome {
    let scratch = Scratch::new("cli-listen")?;
    let path = scratch.join("threads.sock");
    let ep = format!("unix:{}", path.display());
    let server = Proc::spawn("listen", &mut procom(&["listen", &ep, "--count", "2"]))?;
    unix_listening(server.pid(), &path)?;
    starve_one_client(&server, &path)?;
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["served"],
        "the listener printed {:?}",
        fin.stdout
    );
    turned_away(&fin.stderr)?;
    scratch.finish()
}

/// The same for `relay --listen`: the client is turned away, the next one relayed.
fn relay_turns_away_a_client_without_a_thread() -> Outcome {
    let scratch = Scratch::new("cli-listen")?;
    let path = scratch.join("relay.sock");
    let ep = format!("unix:{}", path.display());
    let mut relay = Proc::spawn("relay", &mut procom(&["relay", "--listen", "-", &ep]))?;
    unix_listening(relay.pid(), &path)?;
    starve_one_client(&relay, &path)?;
    relay.expect_line("served")?;
    let pid = rustix::process::Pid::from_raw(relay.pid() as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::INT
    ));
    let fin = relay.finish(STEP)?;
    ensure!(fin.code() == Some(1), "relay ended with {:?}", fin.status);
    turned_away(&fin.stderr)?;
    scratch.finish()
}
