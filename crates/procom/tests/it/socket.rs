//! Sockets across real processes: a listener serving several clients while some misbehave,
//! Unix socket files (mode, stale, live, not-a-socket), peer credentials and the uid allow
//! list, the abstract namespace, a writer whose peer is gone, live servers that are never
//! taken over (a full backlog, another user's socket), TCP peers, and UDP loss accounting
//! per sender.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use procom::socket::{self, Listener};
use procom::{Endpoint, ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, needs, role, trials, unique_name,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "socket::echo_server",
        run: echo_server,
    },
    Role {
        name: "socket::umask_bind",
        run: umask_bind,
    },
    Role {
        name: "socket::client_says_hi",
        run: client_says_hi,
    },
    Role {
        name: "socket::sigpipe_default_writer",
        run: sigpipe_default_writer,
    },
    Role {
        name: "socket::busy_server",
        run: busy_server,
    },
    Role {
        name: "socket::bind_over",
        run: bind_over,
    },
    Role {
        name: "socket::numbered_sender",
        run: numbered_sender,
    },
    Role {
        name: "socket::raw_datagrams",
        run: raw_datagrams,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "socket":
            one_misbehaving_client_does_not_stop_the_others,
            unix_socket_files_are_safe,
            peer_credentials_and_uid_allow_list,
            abstract_namespace_leaves_no_file,
            writer_to_a_closed_peer_gets_peergone,
            errors_are_one_sentence,
            a_live_server_is_never_taken_over,
            another_users_live_socket_is_never_taken_over [needs::root()],
            tcp_peers_have_an_address_and_no_credentials,
            udp_counts_each_sender_separately,
            datagram_deadlines_wait_in_the_receive,
            a_bad_datagram_is_refused_and_the_receiver_goes_on,
            udp_header_is_recognised_and_a_foreign_datagram_never_trimmed,
            a_budgeted_receiver_never_waits_for_its_own_charge,
            a_socket_file_swapped_for_a_symlink_is_never_chmodded;
    ]
}

/// Serves `n` clients at once, echoing; reports how each connection ended.
fn echo_server(args: &[String]) -> Outcome {
    let [ep, n] = args else {
        return Err("args".into());
    };
    let n: usize = check!(n.parse::<usize>());
    let listener = check!(Listener::bind(
        &check!(Endpoint::parse(ep)),
        &Options::default().max_message(1 << 20)
    ));
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut workers = Vec::new();
    for _ in 0..n {
        let mut conn = check!(listener.accept_timeout(STEP));
        workers.push(std::thread::spawn(move || {
            loop {
                match conn.receiver.recv_timeout(Duration::from_millis(500)) {
                    Ok(m) => {
                        if conn.sender.send(&m).is_err() {
                            return "send failed".to_string();
                        }
                    }
                    Err(e) => return format!("{:?}", e.kind()),
                }
            }
        }));
    }
    let mut ends: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|_| "panicked".into()))
        .collect();
    ends.sort();
    println!("{}", ends.join(","));
    Ok(())
}

fn one_misbehaving_client_does_not_stop_the_others() -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    let path = dir.join("srv");
    let ep = format!("unix:{}", path.display());
    let mut server = Proc::spawn("server", &mut role("socket::echo_server", &[&ep, "4"]))?;
    server.expect_line("ready")?;
    // A length prefix of 4 GiB: refused before anything is allocated.
    let mut huge = check!(UnixStream::connect(&path));
    check!(huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    // Half a frame, then gone.
    let mut cut = check!(UnixStream::connect(&path));
    check!(cut.write_all(&[0, 0, 0, 10, b'a', b'b', b'c']));
    drop(cut);
    // Connects and says nothing.
    let _idle = check!(UnixStream::connect(&path));
    // A well-behaved client is served regardless.
    let (mut tx, mut rx) = check!(socket::connect(
        &check!(Endpoint::parse(&ep)),
        &Options::default()
    ));
    for m in ["one", "two", "three"] {
        check!(tx.send(m).map_err(|e| e.into_error()));
        ensure!(check!(rx.recv_timeout(STEP)) == m.as_bytes(), "echo of {m}");
    }
    drop((tx, rx, huge));
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["Malformed,PeerGone,Timeout,TooLarge"],
        "connections ended as {:?}",
        fin.stdout
    );
    dir.finish()
}

/// Binds a Unix listener under umask 0 and checks the file is 0600.
fn umask_bind(args: &[String]) -> Outcome {
    rustix::process::umask(rustix::fs::Mode::empty());
    let path = std::path::Path::new(&args[0]);
    let l = check!(Listener::bind(
        &check!(Endpoint::parse(&format!("unix:{}", path.display()))),
        &Options::default()
    ));
    let mode = check!(std::fs::metadata(path)).permissions().mode() & 0o777;
    ensure!(mode == 0o600, "socket file mode {mode:o} under umask 0");
    drop(l);
    ensure!(!path.exists(), "the listener left its socket file");
    Ok(())
}

fn unix_socket_files_are_safe() -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    let path = dir.join("s");
    Proc::spawn(
        "umask",
        &mut role("socket::umask_bind", &[&path.display().to_string()]),
    )?
    .success(STEP)?;
    let ep = check!(Endpoint::parse(&format!("unix:{}", path.display())));
    // A stale file: a server bound it and died without removing it.
    drop(check!(std::os::unix::net::UnixListener::bind(&path)));
    ensure!(path.exists(), "no stale file to test with");
    let live = check!(Listener::bind(&ep, &Options::default()));
    // A live server's socket is never taken.
    let e = Listener::bind(&ep, &Options::default())
        .err()
        .ok_or("took a live server's socket")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("live server"),
        "got {e}"
    );
    drop(live);
    ensure!(!path.exists(), "the listener left its socket file");
    // A file that is not a socket is never removed.
    check!(std::fs::write(&path, b"precious"));
    let e = Listener::bind(&ep, &Options::default())
        .err()
        .ok_or("bound over a regular file")?;
    ensure!(
        e.kind() == ErrorKind::WrongType && e.to_string().contains("never removes it"),
        "got {e}"
    );
    ensure!(
        check!(std::fs::read(&path)) == b"precious",
        "the regular file changed"
    );
    check!(std::fs::remove_file(&path));
    let long = format!("unix:/{}", "x".repeat(110));
    let e = Endpoint::parse(&long)
        .err()
        .ok_or("a 111-byte path was accepted")?;
    ensure!(e.to_string().contains("107-byte limit"), "got {e}");
    dir.finish()
}

/// Connects (to any connected endpoint), says hi, and waits for the server to close. With `refused`, the server may close
/// before the greeting goes out, so the send may meet PeerGone too.
fn client_says_hi(args: &[String]) -> Outcome {
    let (mut tx, mut rx) = check!(socket::connect(
        &check!(Endpoint::parse(&args[0])),
        &Options::default()
    ));
    match tx.send("hi") {
        Ok(()) => {}
        Err(e)
            if args.get(1).is_some_and(|a| a == "refused") && e.kind() == ErrorKind::PeerGone => {}
        Err(e) => return Err(e.to_string()),
    }
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::PeerGone),
        "after the server closed: {e:?}"
    );
    Ok(())
}

fn peer_credentials_and_uid_allow_list() -> Outcome {
    credentials_and_allow_list("unix")
}

/// A connection on a Unix socket of `scheme` (`unix`, `unixpacket`) carries its client's pid
/// and uid, and a listener whose allow-list leaves the client out turns it away.
pub(crate) fn credentials_and_allow_list(scheme: &str) -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    let ep_text = format!("{scheme}:{}", dir.join("creds").display());
    let ep = check!(Endpoint::parse(&ep_text));
    let listener = check!(Listener::bind(&ep, &Options::default()));
    let client = Proc::spawn("client", &mut role("socket::client_says_hi", &[&ep_text]))?;
    let mut conn = check!(listener.accept_timeout(STEP));
    ensure!(
        conn.peer.pid == Some(client.pid() as i32),
        "peer pid {:?}, client {}",
        conn.peer.pid,
        client.pid()
    );
    ensure!(
        conn.peer.uid == Some(rustix::process::getuid().as_raw()),
        "peer uid {:?}",
        conn.peer.uid
    );
    ensure!(check!(conn.receiver.recv_timeout(STEP)) == b"hi", "message");
    drop(conn);
    client.success(STEP)?;
    drop(listener);
    // Only uid 4242 admitted: this process's own client is turned away.
    let mut listener = check!(Listener::bind(&ep, &Options::default()));
    listener.allow_uids([4242]);
    let mut client = Proc::spawn(
        "refused client",
        &mut role("socket::client_says_hi", &[&ep_text, "refused"]),
    )?;
    // The listener accepts (and turns away) until the client has seen its connection closed,
    // however late it comes: what closed it is the allow-list, not the listener's end.
    let give_up = std::time::Instant::now() + STEP;
    while client.exits_within(Duration::ZERO)?.is_none() {
        ensure!(
            std::time::Instant::now() < give_up,
            "the refused client was not turned away within {STEP:?}"
        );
        match listener.accept_timeout(Duration::from_millis(20)) {
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            r => {
                return Err(format!(
                    "a refused client was admitted: {:?}",
                    r.map(|c| c.peer)
                ));
            }
        }
    }
    client.success(STEP)?; // it saw the connection closed
    drop(listener);
    dir.finish()
}

fn abstract_namespace_leaves_no_file() -> Outcome {
    let ep = check!(Endpoint::parse(&format!(
        "unix:@{}",
        unique_name("procom-abs")
    )));
    let listener = check!(Listener::bind(&ep, &Options::default()));
    let mut tx = check!(Sender::connect(&ep));
    let mut conn = check!(listener.accept_timeout(STEP));
    check!(tx.send("abstract").map_err(|e| e.into_error()));
    ensure!(
        check!(conn.receiver.recv_timeout(STEP)) == b"abstract",
        "message"
    );
    Ok(())
}

/// With SIGPIPE at its default action, writes to a socket whose peer has closed.
fn sigpipe_default_writer(args: &[String]) -> Outcome {
    check!(procom_sys::sigpipe::restore_default_sigpipe());
    let ep = check!(Endpoint::parse(&args[0]));
    let listener = check!(Listener::bind(&ep, &Options::default()));
    let mut tx = check!(Sender::connect(&ep));
    let conn = check!(listener.accept_timeout(STEP));
    drop(conn); // the peer is gone
    let mut last = None;
    for _ in 0..100 {
        if let Err(e) = tx.send(vec![0u8; 65536]) {
            last = Some(e.kind());
            break;
        }
    }
    ensure!(
        last == Some(ErrorKind::PeerGone),
        "writing to a closed peer gave {last:?}"
    );
    Ok(())
}

fn writer_to_a_closed_peer_gets_peergone() -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    let ep = format!("unix:{}", dir.join("p").display());
    let fin = Proc::spawn(
        "writer",
        &mut role("socket::sigpipe_default_writer", &[&ep]),
    )?
    .finish(STEP)?;
    ensure!(
        fin.status.success(),
        "the writer did not survive: {} {}",
        fin.status,
        fin.stderr.trim()
    );
    dir.finish()
}

fn errors_are_one_sentence() -> Outcome {
    let (_refusing, port) = procom_testkit::refusing_tcp_port()?;
    let refused = Sender::connect(format!("tcp:127.0.0.1:{port}"))
        .err()
        .ok_or("connected to a closed port")?;
    ensure!(
        refused.to_string().contains("refused") && !refused.to_string().contains('\n'),
        "{refused}"
    );
    let holder = check!(std::net::TcpListener::bind("127.0.0.1:0"));
    let taken = check!(holder.local_addr()).port();
    let e = Listener::bind(
        &check!(Endpoint::parse(&format!("tcp:127.0.0.1:{taken}"))),
        &Options::default(),
    )
    .err()
    .ok_or("bound a taken port")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("already in use"),
        "{e}"
    );
    let e = Sender::connect("unix:/procom-no-such-dir/sock")
        .err()
        .ok_or("connected to nothing")?;
    ensure!(e.kind() == ErrorKind::NotFound, "{e}");
    Ok(())
}

/// A live server that accepts nobody: its backlog (length 0: one pending connection) is full,
/// so a further connect gets `EAGAIN`, not "refused". Removes its file when stdin closes.
fn busy_server(args: &[String]) -> Outcome {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let path = std::path::Path::new(&args[0]);
    let addr = check!(SocketAddrUnix::new(path));
    let fd = check!(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None
    ));
    check!(rustix::net::bind(&fd, &addr));
    check!(rustix::net::listen(&fd, 0));
    let mut pending = Vec::new();
    loop {
        let c = check!(rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None
        ));
        match rustix::net::connect(&c, &addr) {
            Ok(()) => pending.push(c),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(format!("filling the backlog: {e}")),
        }
        ensure!(pending.len() < 1000, "the backlog never filled");
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(pending);
    drop(fd);
    check!(std::fs::remove_file(path));
    Ok(())
}

/// Tries to bind a listener at the endpoint and prints how that went: `bound` or the error's
/// kind and sentence.
fn bind_over(args: &[String]) -> Outcome {
    match Listener::bind(&check!(Endpoint::parse(&args[0])), &Options::default()) {
        Ok(_) => println!("bound"),
        Err(e) => println!("{:?}: {e}", e.kind()),
    }
    Ok(())
}

fn a_live_server_is_never_taken_over() -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    // 1. A live server with a full backlog: a blocking probe would hang, a careless one would
    //    call it stale. It is neither.
    let path = dir.join("busy");
    let ep = check!(Endpoint::parse(&format!("unix:{}", path.display())));
    let mut cmd = role("socket::busy_server", &[&path.display().to_string()]);
    cmd.stdin(std::process::Stdio::piped());
    let mut busy = Proc::spawn("busy server", &mut cmd)?;
    busy.expect_line("ready")?;
    let e = Listener::bind(&ep, &Options::default())
        .err()
        .ok_or("took a busy server's socket")?;
    ensure!(
        e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("live server"),
        "got {e}"
    );
    drop(busy.child().stdin.take());
    busy.success(STEP)?;
    dir.finish()
}

/// Another user's live socket in a directory that user may write to: it cannot connect (the
/// file is 0600), so it cannot tell the server is alive, and must leave it alone.
fn another_users_live_socket_is_never_taken_over() -> Outcome {
    let dir = Scratch::new("procom-sock")?;
    let shared = dir.join("w");
    check!(std::fs::create_dir(&shared));
    check!(std::fs::set_permissions(
        &shared,
        std::fs::Permissions::from_mode(0o777)
    ));
    let sock = shared.join("s");
    let ep_text = format!("unix:{}", sock.display());
    let ep = check!(Endpoint::parse(&ep_text));
    let listener = check!(Listener::bind(&ep, &Options::default()));
    let before = check!(std::fs::metadata(&sock));
    let mut other = role("socket::bind_over", &[&ep_text]);
    let out = Proc::spawn("bind as nobody", procom_testkit::as_nobody(&mut other)?)?
        .success(STEP)?
        .stdout;
    ensure!(
        out.len() == 1
            && out[0].starts_with("PermissionDenied:")
            && out[0].contains("leaves it alone"),
        "another user binding over a live socket: {out:?}"
    );
    let after = check!(std::fs::metadata(&sock));
    use std::os::unix::fs::MetadataExt;
    ensure!(
        (before.dev(), before.ino()) == (after.dev(), after.ino()),
        "the socket file was replaced"
    );
    // The server still gets its clients.
    let client = Proc::spawn("client", &mut role("socket::client_says_hi", &[&ep_text]))?;
    let mut conn = check!(listener.accept_timeout(STEP));
    ensure!(check!(conn.receiver.recv_timeout(STEP)) == b"hi", "message");
    drop(conn);
    client.success(STEP)?;
    drop(listener);
    check!(std::fs::remove_dir(&shared));
    dir.finish()
}

fn tcp_peers_have_an_address_and_no_credentials() -> Outcome {
    let listener = check!(Listener::bind(
        &check!(Endpoint::parse("tcp:127.0.0.1:0")),
        &Options::default()
    ));
    let ep = listener.local_endpoint().to_string();
    ensure!(
        !ep.ends_with(":0"),
        "the listener does not name its real port: {ep}"
    );
    let client = Proc::spawn("client", &mut role("socket::client_says_hi", &[&ep]))?;
    let mut conn = check!(listener.accept_timeout(STEP));
    ensure!(
        conn.peer.addr.starts_with("127.0.0.1:"),
        "peer address {:?}",
        conn.peer.addr
    );
    ensure!(
        conn.peer.pid.is_none() && conn.peer.uid.is_none() && conn.peer.gid.is_none(),
        "TCP has no peer credentials: {:?}",
        conn.peer
    );
    ensure!(check!(conn.receiver.recv_timeout(STEP)) == b"hi", "message");
    drop(conn);
    client.success(STEP)?;
    // The generic channel: `Receiver::bind` listens, names the real port, takes one client.
    let mut rx = check!(Receiver::bind("tcp:127.0.0.1:0"));
    let ep = rx.endpoint().to_string();
    ensure!(
        ep.starts_with("tcp:127.0.0.1:") && !ep.ends_with(":0"),
        "Receiver::bind names {ep}"
    );
    let client = Proc::spawn("client", &mut role("socket::client_says_hi", &[&ep]))?;
    ensure!(
        check!(rx.recv_timeout(STEP)) == b"hi",
        "message through Receiver::bind"
    );
    drop(rx);
    client.success(STEP)?;
    Ok(())
}

/// Sends `n` messages `TAG i` to the endpoint (length framing: UDP numbers them).
fn numbered_sender(args: &[String]) -> Outcome {
    let [ep, n, tag] = args else {
        return Err("args".into());
    };
    let mut tx = check!(Sender::connect(ep.as_str()));
    for i in 0..check!(n.parse::<u32>()) {
        check!(tx.send(format!("{tag} {i}")).map_err(|e| e.into_error()));
    }
    Ok(())
}

fn udp_counts_each_sender_separately() -> Outcome {
    const N: usize = 20;
    let mut rx = check!(Receiver::bind("udp:127.0.0.1:0"));
    let ep = rx.endpoint().to_string();
    ensure!(!ep.ends_with(":0"), "Receiver::bind names {ep}");
    // Two senders, each numbering from 0: one sender's numbers are no gap or echo of the other's.
    let n = N.to_string();
    let a = Proc::spawn(
        "sender a",
        &mut role("socket::numbered_sender", &[&ep, &n, "a"]),
    )?;
    let b = Proc::spawn(
        "sender b",
        &mut role("socket::numbered_sender", &[&ep, &n, "b"]),
    )?;
    a.success(STEP)?;
    b.success(STEP)?;
    let mut got = Vec::new();
    for _ in 0..2 * N {
        got.push(String::from_utf8_lossy(&check!(rx.recv_timeout(STEP))).into_owned());
    }
    for tag in ["a", "b"] {
        let mine: Vec<&String> = got.iter().filter(|m| m.starts_with(tag)).collect();
        let want: Vec<String> = (0..N).map(|i| format!("{tag} {i}")).collect();
        ensure!(
            mine.iter()
                .map(|m| m.as_str())
                .eq(want.iter().map(String::as_str)),
            "sender {tag}: {mine:?}"
        );
    }
    let stats = rx.datagram_stats().ok_or("no statistics")?;
    ensure!(
        stats.received == 2 * N as u64
            && stats.lost == 0
            && stats.reordered == 0
            && stats.duplicated == 0,
        "two senders over loopback: {stats:?}"
    );
    Ok(())
}

/// A datagram receive with a deadline waits in the receive itself (the deadline becomes the
/// socket's receive timeout): it still times out, still gets what another process sends, and
/// a descriptor handed out with `into_fd` carries no timeout of procom's.
fn datagram_deadlines_wait_in_the_receive() -> Outcome {
    for ep in [
        "udp:127.0.0.1:0".to_string(),
        format!("unixgram:@{}", unique_name("procom-dg")),
    ] {
        let mut rx = check!(Receiver::bind(ep.as_str()));
        let ep = rx.endpoint().to_string();
        let e = rx
            .recv_timeout(Duration::from_millis(60))
            .err()
            .map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::Timeout),
            "{ep}: an empty receive gave {e:?}"
        );
        let fd = rx.as_fd().ok_or("no descriptor")?;
        let set = check!(rustix::net::sockopt::socket_timeout(
            fd,
            rustix::net::sockopt::Timeout::Recv
        ));
        ensure!(
            set.is_some(),
            "{ep}: the deadline did not become a receive timeout"
        );
        let tx = Proc::spawn(
            "sender",
            &mut role("socket::numbered_sender", &[&ep, "3", "t"]),
        )?;
        tx.success(STEP)?;
        for i in 0..3 {
            let m = check!(rx.recv_timeout(STEP));
            ensure!(
                m == format!("t {i}").as_bytes(),
                "{ep}: message {i} was {m:?}"
            );
        }
        let fd = rx.into_fd().ok_or("no descriptor")?;
        let left = check!(rustix::net::sockopt::socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv
        ));
        ensure!(
            left.is_none(),
            "{ep}: into_fd handed out a receive timeout of {left:?}"
        );
    }
    // A bound socket file is kept by into_fd (the receiver owned it; now the caller does).
    let dir = Scratch::new("procom-dg")?;
    let path = dir.join("kept.sock");
    let rx = check!(Receiver::bind(
        format!("unixgram:{}", path.display()).as_str()
    ));
    let fd = rx.into_fd().ok_or("no descriptor")?;
    ensure!(path.exists(), "into_fd removed the socket file");
    drop(fd);
    check!(std::fs::remove_file(&path));
    Ok(())
}

/// Bytes as hex, to pass any datagram (an empty one too) on a role's command line.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends each argument after the endpoint, hex-decoded, as one datagram of its own from a
/// plain socket (no procom framing): `udp:HOST:PORT` or `unixgram:PATH`/`unixgram:@NAME`.
fn raw_datagrams(args: &[String]) -> Outcome {
    let [ep, datagrams @ ..] = args else {
        return Err("args".into());
    };
    let decoded: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| e.to_string()))
                .collect::<Result<Vec<u8>, String>>()
        })
        .collect::<Result<_, _>>()?;
    match check!(Endpoint::parse(ep)) {
        Endpoint::Udp { host, port } => {
            let s = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
            check!(s.connect((host.as_str(), port)));
            for d in &decoded {
                check!(s.send(d));
            }
        }
        Endpoint::UnixGram { addr } => {
            use std::os::linux::net::SocketAddrExt;
            let s = check!(std::os::unix::net::UnixDatagram::unbound());
            let to = match addr {
                procom::endpoint::UnixAddr::Path(p) => {
                    check!(std::os::unix::net::SocketAddr::from_pathname(p))
                }
                procom::endpoint::UnixAddr::Abstract(n) => check!(
                    std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes())
                ),
            };
            for d in &decoded {
                check!(s.send_to_addr(d, &to));
            }
        }
        other => return Err(format!("not a datagram endpoint: {other}")),
    }
    Ok(())
}

/// A datagram the receiver cannot deliver (no room for procom's UDP header, over the size
/// limit) fails that one receive, is counted, and leaves the receiver working: any local
/// process could otherwise switch a receiver off with one datagram. The size reported is the
/// datagram's own.
fn a_bad_datagram_is_refused_and_the_receiver_goes_on() -> Outcome {
    // UDP with length framing: a 0-byte datagram, then one from a procom sender.
    let mut rx = check!(Receiver::bind("udp:127.0.0.1:0"));
    let ep = rx.endpoint().to_string();
    Proc::spawn("raw sender", &mut role("socket::raw_datagrams", &[&ep, ""]))?.success(STEP)?;
    Proc::spawn(
        "procom sender",
        &mut role("socket::numbered_sender", &[&ep, "1", "good"]),
    )?
    .success(STEP)?;
    let e = rx
        .recv_timeout(STEP)
        .err()
        .ok_or("an empty datagram was delivered")?;
    ensure!(
        e.kind() == ErrorKind::Malformed && e.to_string().contains("0-byte datagram"),
        "{e:?}"
    );
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"good 0", "after the bad datagram: {m:?}");
    let stats = rx.datagram_stats().ok_or("no statistics")?;
    ensure!(
        stats.refused == 1 && stats.received == 1 && stats.lost == 0,
        "{stats:?}"
    );

    // A Unix datagram receiver (lines, a 10-byte limit): 50 bytes, then a good line.
    let ep = format!("unixgram:@{}", unique_name("procom-bad-dg"));
    let mut rx = check!(Receiver::bind_with(
        ep.as_str(),
        &Options::default()
            .framing(procom::Framing::Lines)
            .max_message(10)
    ));
    Proc::spawn(
        "raw sender",
        &mut role(
            "socket::raw_datagrams",
            &[&ep, &hex(&[b'x'; 50]), &hex(b"ok\n")],
        ),
    )?
    .success(STEP)?;
    let e = rx
        .recv_timeout(STEP)
        .err()
        .ok_or("a 50-byte datagram passed a 10-byte limit")?;
    ensure!(
        e.kind() == ErrorKind::TooLarge && e.size() == Some(50) && e.limit() == Some(10),
        "{e:?}"
    );
    ensure!(
        e.to_string().contains(
            "a 50-byte datagram is over the 10-byte message limit (11 bytes with a final newline)"
        ),
        "{e}"
    );
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == b"ok", "after the bad datagram: {m:?}");
    let stats = rx.datagram_stats().ok_or("no statistics")?;
    ensure!(stats.refused == 1 && stats.received == 1, "{stats:?}");
    Ok(())
}

/// procom's UDP header as documented: 4 magic bytes, version 1, three zero bytes, then the
/// sequence number (8 bytes, big-endian). Written out here, not taken from the library, so
/// a change to the wire format fails this test.
fn procom_udp(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0xff, b'P', b'C', b'U', 1, 0, 0, 0];
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// A UDP receiver with length framing never alters a datagram: one without procom's header
/// (plain text from another program, a 4-byte length-framed message) is refused whole, never
/// delivered with its first bytes cut off; procom's own datagrams carry exactly the documented
/// header, and loss, duplicates and absurd sequence numbers are counted.
fn udp_header_is_recognised_and_a_foreign_datagram_never_trimmed() -> Outcome {
    // What a procom sender puts on the wire.
    let plain = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    check!(plain.set_read_timeout(Some(STEP)));
    let at = format!("udp:{}", check!(plain.local_addr()));
    Proc::spawn(
        "procom sender",
        &mut role("socket::numbered_sender", &[&at, "2", "w"]),
    )?
    .success(STEP)?;
    let mut buf = [0u8; 100];
    for i in 0..2u64 {
        let n = check!(plain.recv(&mut buf));
        ensure!(
            buf[..n] == procom_udp(i, format!("w {i}").as_bytes())[..],
            "datagram {i} on the wire: {:02x?}",
            &buf[..n]
        );
    }

    let mut rx = check!(Receiver::bind("udp:127.0.0.1:0"));
    let ep = rx.endpoint().to_string();
    let mut length_framed = 5u32.to_be_bytes().to_vec();
    length_framed.extend_from_slice(b"hello");
    let mut wrong_version = procom_udp(1, b"v2");
    wrong_version[4] = 2;
    let mut flagged = procom_udp(1, b"flags");
    flagged[7] = 1;
    let sent = [
        hex(b"raw no frame"),
        hex(&length_framed),
        hex(b"a plain datagram longer than procom's header"),
        hex(&procom_udp(0, b"")[..15]),
        hex(&wrong_version),
        hex(&flagged),
        hex(&procom_udp(0, b"zero")),
        hex(&procom_udp(3, b"three")),
        hex(&procom_udp(3, b"three again")),
        hex(&procom_udp(u64::MAX, b"absurd")),
        hex(&procom_udp(1, b"")),
    ];
    let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
    Proc::spawn(
        "raw sender",
        &mut role(
            "socket::raw_datagrams",
            &[&[ep.as_str()][..], &sent].concat(),
        ),
    )?
    .success(STEP)?;
    for what in [
        "raw no frame",
        "length-framed hello",
        "long plain",
        "15 bytes of a header",
        "version 2",
        "reserved bits",
    ] {
        match rx.recv_timeout(STEP) {
            Ok(m) => {
                return Err(format!(
                    "{what}: delivered as {:?}",
                    String::from_utf8_lossy(&m)
                ));
            }
            Err(e) => ensure!(
                e.kind() == ErrorKind::Malformed
                    && e.to_string().contains("procom's 16-byte UDP header"),
                "{what}: {e:?}"
            ),
        }
    }
    for want in [&b"zero"[..], b"three", b"three again", b"absurd", b""] {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(
            m == want,
            "got {:?}, wanted {:?}",
            String::from_utf8_lossy(&m),
            String::from_utf8_lossy(want)
        );
    }
    let stats = rx.datagram_stats().ok_or("no statistics")?;
    ensure!(
        stats.refused == 6 && stats.received == 5 && stats.duplicated == 1 && stats.reordered == 1,
        "{stats:?}"
    );
    // 0, 3 (1 and 2 missing), u64::MAX (all between missing), then 1 late: saturated, not wrapped.
    ensure!(stats.lost >= u64::MAX - 10, "lost {}", stats.lost);
    Ok(())
}

/// A length-framed message of `n` bytes of `c`.
fn framed(n: usize, c: u8) -> Vec<u8> {
    let mut f = (n as u32).to_be_bytes().to_vec();
    f.resize(4 + n, c);
    f
}

/// A receiver on one end of a socket pair with a 256 KiB budget. `first` is written but for
/// its last 10 bytes; once the receiver has taken all that, those 10 bytes come with `rest`,
/// so one read takes the end of the first message and the start of the next.
fn budgeted_with_crossing_read(
    first: Vec<u8>,
    rest: &[Vec<u8>],
) -> Result<
    (
        Receiver,
        std::thread::JoinHandle<std::io::Result<UnixStream>>,
    ),
    String,
> {
    let (mut a, b) = check!(UnixStream::pair());
    let queued = check!(b.try_clone());
    let opts = Options::default()
        .max_message(1 << 20)
        .budget(procom::Budget::new(256 * 1024));
    let rx = Receiver::from_fd(b, "unix:pair", &opts);
    let rest = [&[first[first.len() - 10..].to_vec()][..], rest]
        .concat()
        .concat();
    let writer = std::thread::spawn(move || {
        a.write_all(&first[..first.len() - 10])?;
        while rustix::io::ioctl_fionread(&queued)? > 0 {
            std::thread::yield_now();
        }
        drop(queued);
        a.write_all(&rest)?;
        Ok(a)
    });
    Ok((rx, writer))
}

/// One budgeted receiver, alone on its budget: the room its finished message still holds
/// (its buffer keeps the start of the next one) never counts against the next message. One
/// that fits the budget neither waits for its own receiver's charge nor is refused; one that
/// does not is refused at once, not when the deadline passes.
fn a_budgeted_receiver_never_waits_for_its_own_charge() -> Outcome {
    const N: usize = 200_000;
    let (mut rx, writer) =
        budgeted_with_crossing_read(framed(N, b'a'), &[framed(N, b'b'), framed(N, b'c')])?;
    for c in [b'a', b'b', b'c'] {
        let m = rx
            .recv_timeout(Duration::from_secs(2))
            .map_err(|e| format!("message {}: {e}", c as char))?;
        ensure!(
            m.len() == N && m.iter().all(|&x| x == c),
            "message {}: {} bytes",
            c as char,
            m.len()
        );
    }
    check!(writer.join().map_err(|_| "writer panicked")?);

    // 400 KB is over 128 KiB plus the whole budget.
    let (mut rx, writer) = budgeted_with_crossing_read(framed(N, b'a'), &[framed(400_000, b'b')])?;
    check!(rx.recv_timeout(Duration::from_secs(2)));
    let e = rx
        .recv_timeout(Duration::from_secs(20))
        .err()
        .ok_or("a message over the budget was delivered")?;
    ensure!(
        e.kind() == ErrorKind::LimitReached && e.to_string().contains("refused: "),
        "{e}"
    );
    drop(rx);
    let _ = writer.join();
    Ok(())
}

/// Whoever can write the socket's directory may swap the socket file for a symlink the moment
/// it appears: fixing the file's mode after the bind must never follow it (a root server
/// would make any file 0600). A thread plays that user here while sockets are bound again and
/// again; the file the symlink points to keeps its mode.
fn a_socket_file_swapped_for_a_symlink_is_never_chmodded() -> Outcome {
    use std::os::unix::fs::FileTypeExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let scratch = Scratch::new("socket-swap")?;
    let victim = scratch.join("victim");
    check!(std::fs::write(&victim, "not procom's"));
    check!(std::fs::set_permissions(
        &victim,
        std::fs::Permissions::from_mode(0o644)
    ));
    let sock = scratch.join("s");
    let moved = scratch.join("moved");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sock, victim) = (stop.clone(), sock.clone(), victim.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket())
                    && std::fs::rename(&sock, &moved).is_ok()
                    && std::os::unix::fs::symlink(&victim, &sock).is_ok()
                {
                    swaps += 1;
                }
            }
            let _ = std::fs::remove_file(&moved);
            swaps
        })
    };
    let ep = check!(Endpoint::parse(&format!("unix:{}", sock.display())));
    let mut changed = None;
    for _ in 0..3000 {
        drop(Listener::bind(&ep, &Options::default()));
        let _ = std::fs::remove_file(&sock);
        let mode = check!(std::fs::metadata(&victim)).permissions().mode() & 0o777;
        if mode != 0o644 {
            changed = Some(mode);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().map_err(|_| "the swapping thread panicked")?;
    let _ = std::fs::remove_file(&sock); // a symlink the thread made after the last bind
    ensure!(
        changed.is_none(),
        "after {swaps} swaps the symlink's target was made {:o}",
        changed.unwrap_or(0)
    );
    check!(std::fs::remove_file(&victim));
    scratch.finish()
}
