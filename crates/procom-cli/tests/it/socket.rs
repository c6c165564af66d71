//! `procom listen`, `connect`, `send` and `recv` on sockets: several clients, socat and nc in
//! both roles, datagrams, a framed server that drops bad and silent clients while it serves
//! a good one, and two hosts in network namespaces joined by a veth pair.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procom_testkit::{
    Finished, Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, needs, refusing_tcp_port,
    tcp_listening, trials, udp_bound, unique_name, unix_listening,
};

use crate::common::{procom, run_with_input};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::socket":
            listen_echo_many_clients,
            socat_is_a_client_of_listen [needs::tool("socat")],
            recv_binds_datagram_endpoints,
            socat_sends_to_recv_udp [needs::tool("socat")],
            errors,
            another_user_is_refused_a_private_socket [needs::root()],
            across_hosts_in_network_namespaces [needs::netns()],
            nc_interop [needs::tool("nc")],
            framed_listener_drops_bad_clients_and_serves_good_ones,
            recv_skips_bad_datagrams,
            framed_udp_never_trims_a_datagram,
            recv_reports_datagram_loss,
            recv_json_names_senders_and_gaps,
            recv_unixgram_shared_with_another_user [needs::root()];
    ]
}

/// Starts `procom listen tcp:127.0.0.1:0 ARGS`: the kernel picks a free port, and the test
/// learns it from the kernel's socket table once the server listens. Returns the server and
/// the address it listens on.
fn listen_tcp(args: &[&str]) -> Result<(Proc, String), String> {
    let mut cmd = procom(&["listen", "tcp:127.0.0.1:0"]);
    cmd.args(args);
    let server = Proc::spawn("listen tcp", &mut cmd)?;
    let addr = tcp_listening(server.pid())?;
    Ok((server, addr.to_string()))
}

/// Starts `procom recv udp:127.0.0.1:0 ARGS`: the kernel picks a free port, and the test
/// learns it from the kernel's socket table once the receiver has bound it (a datagram sent
/// before that would be lost). Returns the receiver and its port.
fn recv_udp(args: &[&str]) -> Result<(Proc, u16), String> {
    let mut cmd = procom(&["recv", "udp:127.0.0.1:0"]);
    cmd.args(args);
    let recv = Proc::spawn("recv udp", &mut cmd)?;
    let port = udp_bound(recv.pid())?.port();
    Ok((recv, port))
}

fn listen_echo_many_clients() -> Outcome {
    let (server, addr) = listen_tcp(&["--echo", "--count", "3"])?;
    let ep = format!("tcp:{addr}");
    let a = run_with_input(procom(&["connect", &ep]), "client a", b"alpha\nbeta\n")?;
    ensure!(
        a.status.success() && a.stdout == ["alpha", "beta"],
        "client a got {a:?}"
    );
    let b = run_with_input(procom(&["connect", &ep]), "client b", b"gamma\n")?;
    ensure!(
        b.status.success() && b.stdout == ["gamma"],
        "client b got {b:?}"
    );
    let c = run_with_input(procom(&["connect", &ep]), "client c", b"delta\n")?;
    ensure!(
        c.status.success() && c.stdout == ["delta"],
        "client c got {c:?}"
    );
    let fin = server.success(STEP)?;
    let mut lines = fin.stdout.clone();
    lines.sort();
    ensure!(
        lines == ["alpha", "beta", "delta", "gamma"],
        "server printed {:?}",
        fin.stdout
    );
    Ok(())
}

/// socat as a client of `procom listen --echo` over TCP.
fn socat_is_a_client_of_listen() -> Outcome {
    let (server, addr) = listen_tcp(&["--echo", "--count", "1"])?;
    socat_line_is_echoed(server, &format!("TCP:{addr}"))
}

/// socat, connecting to `address`, sends one line to `server` (a `procom listen --echo
/// --count 1`), gets it echoed, and the server printed it.
pub(crate) fn socat_line_is_echoed(server: Proc, address: &str) -> Outcome {
    let mut socat = Command::new("socat");
    socat.args(["-", address]);
    let s = run_with_input(socat, "socat", b"from socat\n")?;
    ensure!(
        s.status.success() && s.stdout == ["from socat"],
        "socat got {s:?}"
    );
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["from socat"],
        "the server printed {:?}",
        fin.stdout
    );
    Ok(())
}

fn recv_binds_datagram_endpoints() -> Outcome {
    let (recv, port) = recv_udp(&["--count", "2", "--timeout", "20"])?;
    let ep = format!("udp:127.0.0.1:{port}");
    ensure!(
        run_with_input(procom(&["send", &ep, "from an argument"]), "send", b"")?
            .status
            .success(),
        "send failed"
    );
    let fin = run_with_input(procom(&["send", &ep, "-"]), "send udp", b"from procom\n")?;
    ensure!(fin.status.success(), "send: {}", fin.stderr);
    let got = recv.success(STEP)?;
    ensure!(
        got.stdout == ["from an argument", "from procom"],
        "recv printed {:?}",
        got.stdout
    );

    let dir = Scratch::new("procom-cli-sock")?;
    let path = dir.join("d");
    let ep = format!("unixgram:{}", path.display());
    let recv = Proc::spawn(
        "recv unixgram",
        &mut procom(&["recv", &ep, "--count", "1", "--timeout", "20"]),
    )?;
    wait_path(&path)?;
    let fin = run_with_input(
        procom(&["send", &ep, "local datagram"]),
        "send unixgram",
        b"",
    )?;
    ensure!(fin.status.success(), "send: {}", fin.stderr);
    ensure!(
        recv.success(STEP)?.stdout == ["local datagram"],
        "unixgram message"
    );
    dir.finish()
}

/// socat as a sender to `procom recv udp:`.
fn socat_sends_to_recv_udp() -> Outcome {
    let (recv, port) = recv_udp(&["--count", "1", "--timeout", "20"])?;
    let mut socat = Command::new("socat");
    socat.args(["-u", "-", &format!("UDP:127.0.0.1:{port}")]);
    ensure!(
        run_with_input(socat, "socat udp", b"from socat")?
            .status
            .success(),
        "socat failed"
    );
    let got = recv.success(STEP)?;
    ensure!(
        got.stdout == ["from socat"],
        "recv printed {:?}",
        got.stdout
    );
    Ok(())
}

/// A root-owned 0600 socket file: another user is refused, in one sentence; the owner is not.
fn another_user_is_refused_a_private_socket() -> Outcome {
    let dir = Scratch::new("procom-cli-sock")?;
    let path = dir.join("private");
    let ep = format!("unix:{}", path.display());
    let server = Proc::spawn(
        "listen",
        &mut procom(&["listen", &ep, "--count", "1", "--idle", "5"]),
    )?;
    unix_listening(server.pid(), &path)?;
    let mut nobody = procom(&["connect", &ep]);
    let f =
        Proc::spawn("connect as nobody", procom_testkit::as_nobody(&mut nobody)?)?.finish(STEP)?;
    ensure!(
        f.code() == Some(1)
            && f.stderr.lines().count() == 1
            && f.stderr.contains("permission denied"),
        "{:?}",
        f.stderr
    );
    ensure!(
        run_with_input(procom(&["connect", &ep]), "owner", b"x\n")?
            .status
            .success(),
        "the owner could not connect"
    );
    server.success(STEP)?;
    dir.finish()
}

fn errors() -> Outcome {
    let (_refusing, port) = refusing_tcp_port()?;
    let fin = Proc::spawn(
        "connect",
        &mut procom(&["connect", &format!("tcp:127.0.0.1:{port}")]),
    )?
    .finish(STEP)?;
    ensure!(
        fin.code() == Some(1) && fin.stderr.contains("refused") && fin.stderr.lines().count() == 1,
        "{fin:?}"
    );
    let holder = check!(std::net::TcpListener::bind("127.0.0.1:0"));
    let taken = check!(holder.local_addr()).port();
    let fin = Proc::spawn(
        "listen",
        &mut procom(&["listen", &format!("tcp:127.0.0.1:{taken}")]),
    )?
    .finish(STEP)?;
    ensure!(
        fin.code() == Some(1) && fin.stderr.contains("already in use"),
        "{fin:?}"
    );
    let fin = Proc::spawn("listen", &mut procom(&["listen", "udp:127.0.0.1:9"]))?.finish(STEP)?;
    ensure!(
        fin.code() == Some(2) && fin.stderr.contains("use procom recv"),
        "{fin:?}"
    );
    // A socket path whose directory is missing says so (not that the socket does not exist).
    for ep in [
        "unix:/nonexistent-procom-dir/s",
        "unixgram:/nonexistent-procom-dir/s",
    ] {
        let verb = if ep.starts_with("unix:") {
            "listen"
        } else {
            "recv"
        };
        let fin = Proc::spawn(verb, &mut procom(&[verb, ep]))?.finish(STEP)?;
        ensure!(
            fin.code() == Some(1)
                && fin
                    .stderr
                    .contains("the directory it would go in does not exist"),
            "{fin:?}"
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<Finished, String> {
    let mut cmd = Command::new("ip");
    cmd.args(args).stdin(Stdio::null());
    Proc::spawn(&format!("ip {}", args.join(" ")), &mut cmd)?.finish(STEP)
}

/// Two namespaces `a` (10.213.7.1) and `b` (10.213.7.2) joined by a veth pair, removed on
/// drop. (They share this process's IPC namespace: `ip netns exec` changes the network only.)
pub struct Hosts {
    pub a: String,
    pub b: String,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

impl Hosts {
    /// Makes the two namespaces, the veth pair and the addresses (needs::netns()).
    pub fn new() -> Result<Hosts, String> {
        let tag = unique_name("pc").replace('-', "");
        let tag = &tag[tag.len().saturating_sub(8)..];
        let hosts = Hosts {
            a: format!("procom-a-{tag}"),
            b: format!("procom-b-{tag}"),
        };
        let (va, vb) = (format!("pa{tag}"), format!("pb{tag}"));
        let va = &va[..va.len().min(15)];
        let vb = &vb[..vb.len().min(15)];
        for args in [
            vec!["netns", "add", hosts.a.as_str()],
            vec!["netns", "add", hosts.b.as_str()],
            vec!["link", "add", va, "type", "veth", "peer", "name", vb],
            vec!["link", "set", va, "netns", hosts.a.as_str()],
            vec!["link", "set", vb, "netns", hosts.b.as_str()],
            vec![
                "-n",
                hosts.a.as_str(),
                "addr",
                "add",
                "10.213.7.1/30",
                "dev",
                va,
            ],
            vec![
                "-n",
                hosts.b.as_str(),
                "addr",
                "add",
                "10.213.7.2/30",
                "dev",
                vb,
            ],
            vec!["-n", hosts.a.as_str(), "link", "set", va, "up"],
            vec!["-n", hosts.b.as_str(), "link", "set", vb, "up"],
            vec!["-n", hosts.a.as_str(), "link", "set", "lo", "up"],
            vec!["-n", hosts.b.as_str(), "link", "set", "lo", "up"],
        ] {
            let f = ip(&args)?;
            ensure!(f.status.success(), "ip {args:?}: {}", f.stderr.trim());
        }
        Ok(hosts)
    }
}

/// `procom ARGS` run inside network namespace `ns` (`ip netns exec` execs procom in its own
/// process, so the pid is procom's and its sockets are in the namespace's tables).
pub fn procom_in(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_procom")])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn across_hosts_in_network_namespaces() -> Outcome {
    let hosts = Hosts::new()?;
    let in_ns = procom_in;
    // TCP: a server on host a, a client on host b.
    let server = Proc::spawn(
        "server on a",
        &mut in_ns(
            &hosts.a,
            &["listen", "tcp:10.213.7.1:7000", "--echo", "--count", "1"],
        ),
    )?;
    let mut sent = String::new();
    for i in 0..200 {
        sent.push_str(&format!("message {i}\n"));
    }
    // `ip netns exec` execs procom in its own process: the server's socket is in the table of
    // host a's namespace once it listens.
    tcp_listening(server.pid())?;
    let client = run_with_input(
        in_ns(&hosts.b, &["connect", "tcp:10.213.7.1:7000"]),
        "client on b",
        sent.as_bytes(),
    )?;
    ensure!(client.status.success(), "client: {}", client.stderr.trim());
    let expect: Vec<String> = (0..200).map(|i| format!("message {i}")).collect();
    ensure!(
        client.stdout == expect,
        "echo across hosts: {} of 200 lines",
        client.stdout.len()
    );
    ensure!(server.success(STEP)?.stdout == expect, "server side");
    // UDP: the receiver on host b prints what arrives; once it is bound, 50 datagrams must all
    // arrive, in order.
    let recv = Proc::spawn(
        "udp recv on b",
        &mut in_ns(
            &hosts.b,
            &[
                "recv",
                "udp:10.213.7.2:7001",
                "--count",
                "50",
                "--timeout",
                "20",
            ],
        ),
    )?;
    udp_bound(recv.pid())?;
    let mut msgs = String::new();
    for i in 0..50 {
        msgs.push_str(&format!("datagram {i}\n"));
    }
    let f = run_with_input(
        in_ns(&hosts.a, &["send", "udp:10.213.7.2:7001", "-"]),
        "udp send on a",
        msgs.as_bytes(),
    )?;
    ensure!(f.status.success(), "udp send: {}", f.stderr.trim());
    let got = recv.success(STEP)?.stdout;
    let want: Vec<String> = (0..50).map(|i| format!("datagram {i}")).collect();
    ensure!(got == want, "udp across hosts: {got:?}");
    // A host no route leads to (inside our namespace, so nothing leaves it): one sentence.
    let f = Proc::spawn(
        "unreachable",
        &mut in_ns(
            &hosts.b,
            &["connect", "tcp:10.213.9.9:7000", "--timeout", "5"],
        ),
    )?
    .finish(STEP)?;
    ensure!(
        f.code() == Some(1)
            && f.stderr.lines().count() == 1
            && f.stderr.contains("cannot be reached"),
        "unreachable: {:?}",
        f.stderr
    );
    drop(hosts);
    Ok(())
}

/// Connects to the Unix socket at `path`.
fn connect_unix(path: &std::path::Path) -> Result<std::os::unix::net::UnixStream, String> {
    std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("connecting to {}: {e}", path.display()))
}

fn nc_interop() -> Outcome {
    let dir = Scratch::new("procom-cli-sock")?;
    // nc as the client of `procom listen` on a Unix socket (-N: half-close at end of input).
    let path = dir.join("n");
    let ep = format!("unix:{}", path.display());
    let server = Proc::spawn(
        "listen",
        &mut procom(&["listen", &ep, "--echo", "--count", "1"]),
    )?;
    unix_listening(server.pid(), &path)?;
    let mut nc = Command::new("nc");
    nc.args(["-N", "-U", &path.display().to_string()]);
    let f = run_with_input(nc, "nc -U", b"hello from nc\nsecond line\n")?;
    ensure!(
        f.status.success() && f.stdout == ["hello from nc", "second line"],
        "nc got {f:?}"
    );
    ensure!(
        server.success(STEP)?.stdout == ["hello from nc", "second line"],
        "the server printed something else"
    );
    // `procom connect` as the client of an nc server on a Unix socket.
    let path = dir.join("m");
    let mut nc = Command::new("nc");
    nc.args(["-l", "-U", &path.display().to_string()])
        .stdin(Stdio::null());
    let nc_server = Proc::spawn("nc -lU", &mut nc)?;
    unix_listening(nc_server.pid(), &path)?;
    let client = run_with_input(
        procom(&["connect", &format!("unix:{}", path.display())]),
        "connect",
        b"to nc\n",
    )?;
    ensure!(client.status.success(), "connect: {}", client.stderr.trim());
    ensure!(
        nc_server.success(STEP)?.stdout == ["to nc"],
        "nc -lU printed something else"
    );
    check!(std::fs::remove_file(&path)); // nc leaves its socket file behind
    // nc -u sending a line to `procom recv udp:`: one datagram, printed as one line.
    let (recv, port) = recv_udp(&["--count", "1", "--timeout", "20"])?;
    let mut nc = Command::new("nc");
    nc.args(["-u", "-q0", "127.0.0.1", &port.to_string()]);
    ensure!(
        run_with_input(nc, "nc -u", b"over nc udp\n")?
            .status
            .success(),
        "nc -u failed"
    );
    ensure!(
        recv.success(STEP)?.stdout == ["over nc udp"],
        "recv udp printed something else"
    );
    // `procom send udp:` to `nc -u -l` on a port the kernel picks, learnt once nc has bound it.
    let mut nc = Command::new("nc");
    nc.args(["-u", "-l", "-W", "1", "127.0.0.1", "0"])
        .stdin(Stdio::null());
    let mut nc_server = Proc::spawn("nc -ul", &mut nc)?;
    let port = udp_bound(nc_server.pid())?.port();
    let f = run_with_input(
        procom(&["send", &format!("udp:127.0.0.1:{port}"), "to nc over udp"]),
        "send udp",
        b"",
    )?;
    ensure!(f.status.success(), "send: {}", f.stderr.trim());
    let l = nc_server.line(STEP)?;
    ensure!(l == "to nc over udp", "nc -ul printed {l:?}");
    nc_server.success(STEP)?;
    dir.finish()
}

fn framed_listener_drops_bad_clients_and_serves_good_ones() -> Outcome {
    use std::io::{Read, Write};
    let dir = Scratch::new("procom-cli-sock")?;
    let path = dir.join("f");
    let ep = format!("unix:{}", path.display());
    let server = Proc::spawn(
        "listen",
        &mut procom(&[
            "listen", &ep, "--framed", "--echo", "--count", "4", "--idle", "2",
        ]),
    )?;
    unix_listening(server.pid(), &path)?;
    // Connects and says nothing: it must not hold the server.
    let mut silent = connect_unix(&path)?;
    // A length prefix of 4 GiB: refused before anything is allocated.
    let mut huge = connect_unix(&path)?;
    check!(huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    // Half a frame, then gone.
    let mut cut = connect_unix(&path)?;
    check!(cut.write_all(&[0, 0, 0, 10, b'a', b'b']));
    drop(cut);
    // A good client is served, and echoed, while the silent one still holds its connection.
    let mut good = connect_unix(&path)?;
    check!(good.set_read_timeout(Some(STEP)));
    check!(good.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']));
    let mut echo = [0u8; 9];
    check!(good.read_exact(&mut echo));
    ensure!(&echo == b"\0\0\0\x05hello", "echo {echo:?}");
    check!(good.shutdown(std::net::Shutdown::Write));
    let mut rest = Vec::new();
    check!(good.read_to_end(&mut rest));
    ensure!(rest.is_empty(), "after the echo: {rest:?}");
    // The silent client is closed by the server (end of file, nothing sent).
    check!(silent.set_read_timeout(Some(STEP)));
    let mut got = Vec::new();
    check!(silent.read_to_end(&mut got));
    ensure!(got.is_empty(), "the silent client got {got:?}");
    let _ = huge.read_to_end(&mut Vec::new());
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["hello"],
        "the server printed {:?}",
        fin.stdout
    );
    let said: Vec<&str> = fin
        .stderr
        .lines()
        .filter(|l| l.contains("connection closed"))
        .collect();
    ensure!(
        said.len() == 3,
        "three clients dropped, one sentence each: {:?}",
        fin.stderr
    );
    for words in [
        "over the 67108864-byte limit",
        "the stream ended 2 bytes into a 10-byte message",
        "sent nothing for",
    ] {
        ensure!(
            said.iter().any(|l| l.contains(words)),
            "no line says {words:?}: {said:?}"
        );
    }
    dir.finish()
}

/// Waits until the socket file at `path` exists (the receiver has bound it).
fn wait_path(path: &std::path::Path) -> Outcome {
    let deadline = Instant::now() + STEP;
    while !path.exists() {
        ensure!(
            Instant::now() < deadline,
            "nothing bound {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5)); // polling for the receiver's socket
    }
    Ok(())
}

/// One bad datagram (no room for procom's UDP header; over --max-size) must not switch a
/// receiver off: it is reported, skipped and counted, and the next good datagram is printed.
/// A flood of them is reported a few times, then only counted.
fn recv_skips_bad_datagrams() -> Outcome {
    let (recv, port) = recv_udp(&["--framed", "--count", "1", "--timeout", "20"])?;
    let ep = format!("udp:127.0.0.1:{port}");
    let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    for _ in 0..15 {
        check!(s.send_to(b"", ("127.0.0.1", port)));
    }
    let f = run_with_input(procom(&["send", &ep, "--framed", "good"]), "send udp", b"")?;
    ensure!(f.status.success(), "send: {}", f.stderr);
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stdout == ["good"],
        "recv udp: {fin:?}"
    );
    let reported = fin
        .stderr
        .lines()
        .filter(|l| l.contains("a 0-byte datagram"))
        .count();
    ensure!(
        reported == 10,
        "{reported} of 15 bad datagrams reported one by one: {:?}",
        fin.stderr
    );
    ensure!(
        fin.stderr.lines().any(|l| l.contains("only counted")),
        "no word on the rest: {:?}",
        fin.stderr
    );
    ensure!(
        fin.stderr.lines().last().is_some_and(
            |l| l.contains("datagrams: 1 delivered, 0 lost") && l.contains("15 refused")
        ),
        "the summary: {:?}",
        fin.stderr
    );
    ensure!(!fin.stderr.contains("panicked"), "{}", fin.stderr);

    let dir = Scratch::new("procom-cli-sock")?;
    let path = dir.join("g");
    let ep = format!("unixgram:{}", path.display());
    let recv = Proc::spawn(
        "recv unixgram",
        &mut procom(&[
            "recv",
            &ep,
            "--max-size",
            "10",
            "--count",
            "1",
            "--timeout",
            "20",
        ]),
    )?;
    wait_path(&path)?;
    let s = check!(std::os::unix::net::UnixDatagram::unbound());
    check!(s.send_to(&[b'x'; 50], &path));
    let f = run_with_input(procom(&["send", &ep, "ok"]), "send unixgram", b"")?;
    ensure!(f.status.success(), "send: {}", f.stderr);
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stdout == ["ok"],
        "recv unixgram: {fin:?}"
    );
    ensure!(
        fin.stderr.lines().any(|l| l.starts_with(&format!(
            "procom: {ep}: a 50-byte datagram is over the 10-byte"
        ))),
        "{:?}",
        fin.stderr
    );
    ensure!(
        fin.stderr
            .lines()
            .any(|l| l.contains("datagrams: 1 delivered, 1 refused")),
        "the summary: {:?}",
        fin.stderr
    );
    // A run that ends in an error gives the summary too, before the error.
    let recv = Proc::spawn(
        "recv unixgram",
        &mut procom(&["recv", &ep, "--max-size", "10", "--timeout", "0.5"]),
    )?;
    wait_path(&path)?;
    check!(s.send_to(&[b'x'; 11], &path));
    let fin = recv.finish(STEP)?;
    let lines: Vec<&str> = fin.stderr.lines().collect();
    ensure!(fin.code() == Some(1) && lines.len() == 3, "{fin:?}");
    ensure!(
        lines[0].contains("an 11-byte datagram") || lines[0].contains("a 11-byte datagram"),
        "{lines:?}"
    );
    ensure!(
        lines[1].contains("datagrams: 0 delivered, 1 refused")
            && lines[2].contains("no whole message arrived"),
        "{lines:?}"
    );
    dir.finish()
}

/// procom's UDP header as the README documents it: `ff 50 43 55`, version 1, three zero
/// bytes, the sequence number (8 bytes, big-endian); then the payload.
fn procom_udp(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0xff, b'P', b'C', b'U', 1, 0, 0, 0];
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// `recv udp: --framed` never prints a datagram with its first bytes cut off: a plain one and
/// a 4-byte length-framed one from another program are refused whole, and said to be; what
/// `send udp: --framed` puts on the wire is exactly procom's documented header and the bytes.
fn framed_udp_never_trims_a_datagram() -> Outcome {
    let plain = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    check!(plain.set_read_timeout(Some(STEP)));
    let to = format!("udp:{}", check!(plain.local_addr()));
    let f = run_with_input(procom(&["send", &to, "--framed", "hello"]), "send udp", b"")?;
    ensure!(f.status.success(), "send: {}", f.stderr);
    let mut buf = [0u8; 100];
    let n = check!(plain.recv(&mut buf));
    ensure!(
        buf[..n] == procom_udp(0, b"hello")[..],
        "send --framed put {:02x?} on the wire",
        &buf[..n]
    );

    let (recv, port) = recv_udp(&["--framed", "--count", "2", "--timeout", "20"])?;
    let ep = format!("udp:127.0.0.1:{port}");
    let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    let mut framed = 5u32.to_be_bytes().to_vec();
    framed.extend_from_slice(b"hello");
    check!(s.send_to(b"raw no frame", ("127.0.0.1", port)));
    check!(s.send_to(&framed, ("127.0.0.1", port)));
    check!(s.send_to(&procom_udp(0, b"crafted"), ("127.0.0.1", port)));
    let f = run_with_input(
        procom(&["send", &ep, "--framed", "from procom"]),
        "send udp",
        b"",
    )?;
    ensure!(f.status.success(), "send: {}", f.stderr);
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stdout == ["crafted", "from procom"],
        "recv udp --framed: {fin:?}"
    );
    let refusals: Vec<&str> = fin
        .stderr
        .lines()
        .filter(|l| l.contains("does not carry procom's 16-byte UDP header"))
        .collect();
    ensure!(
        refusals.len() == 2 && refusals.iter().all(|l| l.contains("without --framed")),
        "{:?}",
        fin.stderr
    );
    ensure!(
        refusals[0].contains("a 12-byte datagram") && refusals[1].contains("a 9-byte datagram"),
        "{refusals:?}"
    );
    Ok(())
}

/// `recv udp: --framed` says on stderr what it counted when it ends: datagrams a sender
/// numbered and that never came, came twice, or could not be delivered. A normal end keeps
/// status 0 (what was printed is what arrived), a SIGTERM'd receiver reports too, and a run
/// with nothing to report says nothing.
fn recv_reports_datagram_loss() -> Outcome {
    // Nothing lost: nothing said.
    let (recv, port) = recv_udp(&["--framed", "--count", "1", "--timeout", "20"])?;
    let ep = format!("udp:127.0.0.1:{port}");
    let f = run_with_input(procom(&["send", &ep, "--framed", "clean"]), "send udp", b"")?;
    ensure!(f.status.success(), "send: {}", f.stderr);
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stdout == ["clean"] && fin.stderr.is_empty(),
        "a clean run: {fin:?}"
    );

    // A sender that skips numbers 1-4 and 6-8, sends 9 twice, and one foreign datagram.
    let (recv, port) = recv_udp(&["--framed", "--count", "4", "--timeout", "20"])?;
    let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    for (seq, m) in [(0, "zero"), (5, "five"), (9, "nine"), (9, "nine again")] {
        check!(s.send_to(&procom_udp(seq, m.as_bytes()), ("127.0.0.1", port)));
    }
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stdout == ["zero", "five", "nine", "nine again"],
        "recv: {fin:?}"
    );
    let summary: Vec<&str> = fin.stderr.lines().filter(|l| l.contains(" lost")).collect();
    ensure!(summary.len() == 1, "no one-line summary: {:?}", fin.stderr);
    // The summary names the endpoint as it was given (port 0).
    for words in [
        "procom: udp:127.0.0.1:0: datagrams: 4 delivered",
        "7 lost",
        "0 reordered",
        "1 duplicated",
        "0 refused",
    ] {
        ensure!(
            summary[0].contains(words),
            "the summary lacks {words:?}: {:?}",
            summary[0]
        );
    }

    // Ended by SIGTERM: the interrupt line, then the summary (here with a refused datagram).
    let (mut recv, port) = recv_udp(&["--framed"])?;
    check!(s.send_to(&procom_udp(0, b"a"), ("127.0.0.1", port)));
    check!(s.send_to(b"foreign", ("127.0.0.1", port)));
    check!(s.send_to(&procom_udp(2, b"c"), ("127.0.0.1", port)));
    ensure!(
        recv.line(STEP)? == "a" && recv.line(STEP)? == "c",
        "the receiver printed something else"
    );
    let pid = rustix::process::Pid::from_raw(recv.pid() as i32).ok_or("pid")?;
    check!(rustix::process::kill_process(
        pid,
        rustix::process::Signal::TERM
    ));
    let fin = recv.finish(STEP)?;
    ensure!(fin.code() == Some(1), "exit {}", fin.status);
    ensure!(
        fin.stderr
            .lines()
            .any(|l| l.starts_with("procom: interrupted by SIGTERM")),
        "{:?}",
        fin.stderr
    );
    let summary: Vec<&str> = fin.stderr.lines().filter(|l| l.contains(" lost")).collect();
    ensure!(
        summary.len() == 1
            && summary[0].contains("datagrams: 2 delivered, 1 lost")
            && summary[0].contains("1 refused"),
        "after SIGTERM: {:?}",
        fin.stderr
    );
    Ok(())
}

/// `recv --json` on datagrams: each object names its sender (`from`, an endpoint to answer
/// to) and, with procom's UDP header, its sequence number and the numbers skipped before it.
fn recv_json_names_senders_and_gaps() -> Outcome {
    let (recv, port) = recv_udp(&["--framed", "--json", "--count", "3", "--timeout", "20"])?;
    let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    let from = format!("udp:{}", check!(s.local_addr()));
    for (seq, m) in [(0, "zero"), (3, "three"), (1, "one")] {
        check!(s.send_to(&procom_udp(seq, m.as_bytes()), ("127.0.0.1", port)));
    }
    let fin = recv.success(STEP)?;
    let want = [
        format!(r#"{{"bytes":"zero","from":"{from}","len":4,"seq":0}}"#),
        format!(r#"{{"bytes":"three","from":"{from}","gap":2,"len":5,"seq":3}}"#),
        format!(r#"{{"bytes":"one","from":"{from}","gap":0,"len":3,"seq":1}}"#),
    ];
    ensure!(fin.stdout == want, "{:?}", fin.stdout);
    Ok(())
}

/// `recv unixgram:PATH --mode 622`: another user (nobody) may send to the socket file.
fn recv_unixgram_shared_with_another_user() -> Outcome {
    let dir = Scratch::new("procom-cli-gram")?;
    check!(std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755)
    ));
    let path = dir.join("g");
    let ep = format!("unixgram:{}", path.display());
    let recv = Proc::spawn(
        "recv unixgram --mode 622",
        &mut procom(&["recv", &ep, "--mode", "622", "--count", "1"]),
    )?;
    crate::common::until(&format!("{} exists", path.display()), || path.exists())?;
    let mut cmd = procom(&["send", &ep, "from nobody"]);
    let sent = Proc::spawn("send as nobody", procom_testkit::as_nobody(&mut cmd)?)?.finish(STEP)?;
    ensure!(sent.status.success(), "send as nobody: {sent:?}");
    let fin = recv.success(STEP)?;
    ensure!(fin.stdout == ["from nobody"], "recv: {fin:?}");
    dir.finish()
}
