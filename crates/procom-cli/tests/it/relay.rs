//! `procom relay`: a queue into a Unix stream with boundaries kept, a FIFO into a shared-memory
//! channel, a TCP listener relaying each client to its own connection, both directions of a
//! Unix-to-TCP relay, Ctrl-C, a queue exported over TCP from one network namespace into
//! another, and combinations whose directions cannot work.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;

use procom_testkit::{
    Finished, Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, needs, tcp_listening,
    trials, unique_name, unix_listening,
};

use crate::common::{fails, ok, procom, run_with_input, until, until_catching};
use crate::socket::{Hosts, procom_in};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::relay":
            mq_into_a_unix_stream_keeps_boundaries,
            fifo_into_shm,
            tcp_listener_relays_each_client_to_its_own_connection,
            unix_and_tcp_both_ways,
            ctrl_c_prints_the_summary_and_exits_1,
            exports_a_queue_across_network_namespaces [needs::netns()],
            directions_that_cannot_work_exit_2;
    ]
}

/// A POSIX queue made for one test and removed when it ends, however it ends.
struct Queue(String);

impl Queue {
    fn new(prefix: &str) -> Result<Queue, String> {
        let name = format!("/{}", unique_name(prefix));
        ok(&["mq", "create", &name])?;
        Ok(Queue(name))
    }

    fn ep(&self) -> String {
        format!("mq:{}", self.0)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = procom(&["mq", "rm", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// Accepts one connection on `l`, waiting at most [`STEP`] (a relay that never connects fails
/// the test instead of hanging it).
fn accept_unix(l: &UnixListener) -> Result<UnixStream, String> {
    wait_readable(l.as_fd())?;
    let (s, _) = check!(l.accept());
    check!(s.set_read_timeout(Some(STEP)));
    Ok(s)
}

fn accept_tcp(l: &std::net::TcpListener) -> Result<std::net::TcpStream, String> {
    wait_readable(l.as_fd())?;
    let (s, _) = check!(l.accept());
    check!(s.set_read_timeout(Some(STEP)));
    Ok(s)
}

fn wait_readable(fd: std::os::fd::BorrowedFd<'_>) -> Outcome {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    let step = Timespec {
        tv_sec: STEP.as_secs() as i64,
        tv_nsec: 0,
    };
    let n = check!(poll(&mut fds, Some(&step)));
    ensure!(n == 1, "nobody connected within {STEP:?}");
    Ok(())
}

fn signal(p: &Proc, sig: rustix::process::Signal) -> Outcome {
    let pid = rustix::process::Pid::from_raw(p.pid() as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(pid, sig));
    Ok(())
}

/// Whether `fin`'s standard error has a line that is exactly `procom: LINE`.
fn said(fin: &Finished, line: &str) -> bool {
    fin.stderr.lines().any(|l| l == format!("procom: {line}"))
}

/// Queue messages (an empty one, one with a newline, one larger than a pipe's atomic write)
/// reach a Unix stream peer each as one length-prefixed frame; when the peer goes, the relay
/// ends by itself, with status 0 and its summary.
fn mq_into_a_unix_stream_keeps_boundaries() -> Outcome {
    let q = Queue::new("relay-mq")?;
    let big = "z".repeat(5000);
    let sent = ["one", "", "two\nlines", big.as_str()];
    for m in sent {
        ok(&["send", &q.ep(), m])?;
    }
    let dir = Scratch::new("relay-mq")?;
    let path = dir.join("s");
    let ep = format!("unix:{}", path.display());
    let listener = check!(UnixListener::bind(&path));
    let relay = Proc::spawn(
        "relay mq -> unix",
        &mut procom(&["relay", &q.ep(), &ep, "--framed"]),
    )?;
    let mut peer = accept_unix(&listener)?;
    for m in sent {
        let mut len = [0u8; 4];
        check!(peer.read_exact(&mut len));
        ensure!(
            u32::from_be_bytes(len) as usize == m.len(),
            "a frame of {} bytes where {} were sent",
            u32::from_be_bytes(len),
            m.len()
        );
        let mut body = vec![0u8; m.len()];
        check!(peer.read_exact(&mut body));
        ensure!(body == m.as_bytes(), "frame {body:?}");
    }
    drop(peer); // the reader goes: the relay notices and ends
    let fin = relay.finish(STEP)?;
    ensure!(fin.status.success(), "relay: {fin:?}");
    let bytes: usize = sent.iter().map(|m| m.len()).sum();
    ensure!(
        said(&fin, &format!("{ep}: its reader went away; relay ended"))
            && said(
                &fin,
                &format!("{} -> {ep}: 4 messages, {bytes} bytes", q.ep())
            ),
        "{:?}",
        fin.stderr
    );
    ensure!(
        fin.stderr.contains("carries messages one way"),
        "no word on the one direction: {:?}",
        fin.stderr
    );
    drop(listener);
    check!(std::fs::remove_file(&path)); // the test's own socket file
    dir.finish()
}

/// Lines written into a FIFO become messages of a shared-memory channel (an empty line is an
/// empty message); the writer's end of stream ends the relay with status 0.
fn fifo_into_shm() -> Outcome {
    let dir = Scratch::new("relay-fifo")?;
    let fifo = dir.join("in");
    ok(&["fifo", "create", &fifo.display().to_string()])?;
    let shm = format!("/{}", unique_name("relay-shm"));
    let recv = Proc::spawn(
        "recv shm",
        &mut procom(&["recv", &format!("shm:{shm}"), "--count", "3"]),
    )?;
    let seg = std::path::PathBuf::from(format!("/dev/shm{shm}"));
    until(&format!("{} exists", seg.display()), || seg.exists())?;
    let from = format!("fifo:{}", fifo.display());
    let to = format!("shm:{shm}");
    let relay = Proc::spawn("relay fifo -> shm", &mut procom(&["relay", &from, &to]))?;
    // The writer's open waits for the relay to open the FIFO for reading.
    let w = run_with_input(procom(&["send", &from, "-"]), "send fifo", b"a\n\nccc\n")?;
    ensure!(w.status.success(), "send: {}", w.stderr.trim());
    let fin = relay.finish(STEP)?;
    ensure!(fin.status.success(), "relay: {fin:?}");
    ensure!(
        said(&fin, &format!("{from} -> {to}: 3 messages, 4 bytes")),
        "{:?}",
        fin.stderr
    );
    let got = recv.success(STEP)?;
    ensure!(
        got.stdout == ["a", "", "ccc"],
        "recv shm printed {:?}",
        got.stdout
    );
    ensure!(!seg.exists(), "the channel was left behind");
    ok(&["fifo", "rm", &fifo.display().to_string()])?;
    dir.finish()
}

/// `relay unix:ECHO tcp:127.0.0.1:0 --listen`: two clients at once, each relayed to its own
/// connection to an echo server, each gets back exactly what it sent; Ctrl-C ends the relay
/// with status 1 and the summary for both directions.
fn tcp_listener_relays_each_client_to_its_own_connection() -> Outcome {
    let dir = Scratch::new("relay-listen")?;
    let echo_path = dir.join("echo");
    let echo_ep = format!("unix:{}", echo_path.display());
    let echo = Proc::spawn(
        "echo server",
        &mut procom(&["listen", &echo_ep, "--echo", "--count", "2"]),
    )?;
    unix_listening(echo.pid(), &echo_path)?;
    let relay = Proc::spawn(
        "relay --listen",
        &mut procom(&["relay", &echo_ep, "tcp:127.0.0.1:0", "--listen"]),
    )?;
    let addr = tcp_listening(relay.pid())?;
    let ep = format!("tcp:{addr}");
    // Client a connects and holds its connection open while client b is served.
    let mut a_cmd = procom(&["connect", &ep]);
    a_cmd.stdin(Stdio::piped());
    let mut a = Proc::spawn("client a", &mut a_cmd)?;
    let mut a_in = a.child().stdin.take().ok_or("stdin")?;
    check!(a_in.write_all(b"alpha\n"));
    a.expect_line("alpha")?;
    let b = run_with_input(procom(&["connect", &ep]), "client b", b"gamma\n")?;
    ensure!(
        b.status.success() && b.stdout == ["gamma"],
        "client b got {b:?}"
    );
    check!(a_in.write_all(b"beta\n"));
    drop(a_in);
    let a = a.finish(STEP)?;
    ensure!(
        a.status.success() && a.stdout == ["beta"],
        "client a got {a:?}"
    );
    let served = echo.success(STEP)?;
    let mut lines = served.stdout.clone();
    lines.sort();
    ensure!(
        lines == ["alpha", "beta", "gamma"],
        "the echo server got {lines:?}"
    );
    until_catching(relay.pid(), &[2])?;
    signal(&relay, rustix::process::Signal::INT)?;
    let fin = relay.finish(STEP)?;
    ensure!(fin.code() == Some(1), "relay after Ctrl-C: {fin:?}");
    let clients = format!("clients of {ep}");
    for line in [
        format!("2 clients served on {ep}"),
        format!("{echo_ep} -> {clients}: 17 bytes"),
        format!("{clients} -> {echo_ep}: 17 bytes"),
    ] {
        ensure!(said(&fin, &line), "no {line:?} in {:?}", fin.stderr);
    }
    ensure!(
        fin.stderr
            .lines()
            .any(|l| l.starts_with("procom: interrupted by Ctrl-C (SIGINT)")),
        "{:?}",
        fin.stderr
    );
    dir.finish()
}

/// `relay unix:A tcp:B`: bytes go both ways; one side's end of stream reaches the other while
/// the other direction still carries its answer; both ends make a clean exit.
fn unix_and_tcp_both_ways() -> Outcome {
    let dir = Scratch::new("relay-both")?;
    let path = dir.join("a");
    let unix = check!(UnixListener::bind(&path));
    let tcp = check!(std::net::TcpListener::bind("127.0.0.1:0"));
    let a = format!("unix:{}", path.display());
    let b = format!("tcp:{}", check!(tcp.local_addr()));
    let relay = Proc::spawn("relay unix <-> tcp", &mut procom(&["relay", &a, &b]))?;
    let mut ua = accept_unix(&unix)?;
    let mut tb = accept_tcp(&tcp)?;
    let mut buf = [0u8; 7];
    check!(ua.write_all(b"from a\n"));
    check!(tb.read_exact(&mut buf));
    ensure!(&buf == b"from a\n", "B got {buf:?}");
    check!(tb.write_all(b"from b\n"));
    check!(ua.read_exact(&mut buf));
    ensure!(&buf == b"from b\n", "A got {buf:?}");
    // A is done sending: B sees end of file, and its late answer still reaches A.
    check!(ua.shutdown(std::net::Shutdown::Write));
    let mut rest = Vec::new();
    check!(tb.read_to_end(&mut rest));
    ensure!(rest.is_empty(), "B got {rest:?} before its end of file");
    check!(tb.write_all(b"late answer"));
    drop(tb);
    check!(ua.read_to_end(&mut rest));
    ensure!(rest == b"late answer", "A got {rest:?}");
    let fin = relay.finish(STEP)?;
    ensure!(fin.status.success(), "relay: {fin:?}");
    ensure!(
        said(&fin, &format!("{a} -> {b}: 7 bytes")) && said(&fin, &format!("{b} -> {a}: 18 bytes")),
        "{:?}",
        fin.stderr
    );
    drop(unix);
    check!(std::fs::remove_file(&path)); // the test's own socket file
    dir.finish()
}

/// Ctrl-C ends a relay with status 1, the interrupt's sentence, then what went each way.
fn ctrl_c_prints_the_summary_and_exits_1() -> Outcome {
    let q = Queue::new("relay-int")?;
    ok(&["send", &q.ep(), "first"])?;
    ok(&["send", &q.ep(), "second"])?;
    let mut relay = Proc::spawn("relay mq -> -", &mut procom(&["relay", &q.ep(), "-"]))?;
    relay.expect_line("first")?;
    relay.expect_line("second")?;
    until_catching(relay.pid(), &[2])?;
    signal(&relay, rustix::process::Signal::INT)?;
    let fin = relay.finish(STEP)?;
    let lines: Vec<&str> = fin.stderr.lines().collect();
    ensure!(
        fin.code() == Some(1)
            && lines.len() == 2
            && lines[0].starts_with("procom: interrupted by Ctrl-C (SIGINT) while relaying")
            && lines[1] == format!("procom: {} -> -: 2 messages, 11 bytes", q.ep()),
        "{fin:?}"
    );
    Ok(())
}

/// A queue on host a is exported over TCP into a queue on host b: b's relay listens and puts
/// what clients send into its queue, a's relay reads its queue and connects to b. (The hosts
/// share one IPC namespace, so the two queues have two names.)
fn exports_a_queue_across_network_namespaces() -> Outcome {
    let hosts = Hosts::new()?;
    let qa = Queue::new("relay-qa")?;
    let qb = Queue::new("relay-qb")?;
    let port = "tcp:10.213.7.2:7000";
    let importer = Proc::spawn(
        "relay on b",
        &mut procom_in(&hosts.b, &["relay", &qb.ep(), port, "--listen", "--framed"]),
    )?;
    tcp_listening(importer.pid())?;
    let exporter = Proc::spawn(
        "relay on a",
        &mut procom_in(&hosts.a, &["relay", &qa.ep(), port, "--framed"]),
    )?;
    let sent = run_with_input(
        procom_in(&hosts.a, &["send", &qa.ep(), "-"]),
        "send on a",
        b"first\n\nthird message\n",
    )?;
    ensure!(sent.status.success(), "send: {}", sent.stderr.trim());
    let got = Proc::spawn(
        "recv on b",
        &mut procom_in(
            &hosts.b,
            &["recv", &qb.ep(), "--count", "3", "--timeout", "20"],
        ),
    )?
    .success(STEP)?;
    ensure!(
        got.stdout == ["first", "", "third message"],
        "host b's queue gave {:?}",
        got.stdout
    );
    for p in [&exporter, &importer] {
        until_catching(p.pid(), &[15])?;
        signal(p, rustix::process::Signal::TERM)?;
    }
    let a = exporter.finish(STEP)?;
    let b = importer.finish(STEP)?;
    ensure!(
        a.code() == Some(1) && said(&a, &format!("{} -> {port}: 3 messages, 18 bytes", qa.ep())),
        "host a's relay: {a:?}"
    );
    ensure!(
        b.code() == Some(1)
            && said(&b, &format!("1 client served on {port}"))
            && said(
                &b,
                &format!("clients of {port} -> {}: 3 messages, 18 bytes", qb.ep())
            ),
        "host b's relay: {b:?}"
    );
    Ok(())
}

/// Combinations whose directions cannot work are usage errors (status 2, one sentence),
/// found before anything is opened.
fn directions_that_cannot_work_exit_2() -> Outcome {
    let q = format!("mq:/{}", unique_name("relay-none"));
    for (args, words) in [
        (
            vec!["relay", "udp:127.0.0.1:0", "udp:127.0.0.1:0"],
            "no direction can work",
        ),
        (
            vec!["relay", &format!("{q}?priority=2"), "tcp:127.0.0.1:0"],
            "no direction can work",
        ),
        (vec!["relay", &q, &q], "one object"),
        (
            vec!["relay", &q, "udp:127.0.0.1:9", "--listen"],
            "cannot be listened on",
        ),
        (
            vec!["relay", "udp:127.0.0.1:0", "tcp:127.0.0.1:0", "--listen"],
            "the clients' messages go into A",
        ),
        (
            vec!["relay", "unix:/x", "tcp:127.0.0.1:0"],
            "give it as B with --listen",
        ),
        (vec!["relay", "mq:noslash", "-"], "must start with '/'"),
    ] {
        fails(&args, 2, words)?;
    }
    // Nothing was created on the way.
    let f = crate::common::run(&["mq", "info", &q["mq:".len()..]])?;
    ensure!(f.code() == Some(1), "mq info after the refusals: {f:?}");
    Ok(())
}
