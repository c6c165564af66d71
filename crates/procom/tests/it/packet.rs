//! `unixpacket:` sockets across real processes: the socket file's safety (mode, stale file,
//! live servers of either type, planted objects), peer credentials and the uid allow-list, a
//! 1 MiB message (whole, or refused by the sender with the limit the kernel allows), and socat
//! as a client and as a server.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use procom::socket::{self, Listener};
use procom::{Endpoint, ErrorKind, Options, Receiver, Sender};
use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, check, ensure, needs, plant, role, trials,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "packet::umask_bind",
        run: umask_bind,
    },
    Role {
        name: "packet::serve_in_little_room",
        run: serve_in_little_room,
    },
    Role {
        name: "packet::send_mebibyte",
        run: send_mebibyte,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "packet":
            packet_socket_files_are_safe,
            peer_credentials_and_uid_allow_list,
            a_mebibyte_crosses_or_is_refused_with_the_limit,
            a_server_keeps_room_for_what_arrives_not_for_the_limit,
            socat_is_a_client_of_a_packet_receiver [needs::tool("socat")],
            socat_is_a_server_for_a_packet_sender [needs::tool("socat")];
    ]
}

fn packet_ep(path: &std::path::Path) -> Result<Endpoint, String> {
    Ok(check!(Endpoint::parse(&format!(
        "unixpacket:{}",
        path.display()
    ))))
}

/// Binds a packet listener under umask 0 and checks the file is 0600.
fn umask_bind(args: &[String]) -> Outcome {
    rustix::process::umask(rustix::fs::Mode::empty());
    let path = std::path::Path::new(&args[0]);
    let l = check!(Listener::bind(&packet_ep(path)?, &Options::default()));
    let mode = check!(std::fs::metadata(path)).permissions().mode() & 0o777;
    ensure!(mode == 0o600, "socket file mode {mode:o} under umask 0");
    drop(l);
    ensure!(!path.exists(), "the listener left its socket file");
    Ok(())
}

fn packet_socket_files_are_safe() -> Outcome {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let dir = Scratch::new("procom-pkt")?;
    let path = dir.join("s");
    Proc::spawn(
        "umask",
        &mut role("packet::umask_bind", &[&path.display().to_string()]),
    )?
    .success(STEP)?;
    let ep = packet_ep(&path)?;
    // A stale file: a sequenced-packet server bound it and died without removing it.
    let stale = check!(rustix::net::socket(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        None
    ));
    check!(rustix::net::bind(
        &stale,
        &check!(SocketAddrUnix::new(&path))
    ));
    check!(rustix::net::listen(&stale, 1));
    drop(stale);
    ensure!(path.exists(), "no stale file to test with");
    let live = check!(Listener::bind(&ep, &Options::default()));
    // A live server's socket is never taken, by a packet listener or a stream one.
    for taker in [
        ep.clone(),
        Endpoint::parse(&format!("unix:{}", path.display())).unwrap(),
    ] {
        let e = Listener::bind(&taker, &Options::default())
            .err()
            .ok_or(format!("{taker} took a live packet server's socket"))?;
        ensure!(
            e.kind() == ErrorKind::AlreadyExists && e.to_string().contains("live server"),
            "got {e}"
        );
    }
    drop(live);
    ensure!(!path.exists(), "the listener left its socket file");
    // A live stream server is recognised as live by a packet listener too (its probe asks in
    // the socket's own type).
    let stream = check!(std::os::unix::net::UnixListener::bind(&path));
    let e = Listener::bind(&ep, &Options::default())
        .err()
        .ok_or("a packet listener took a live stream server's socket")?;
    ensure!(e.kind() == ErrorKind::AlreadyExists, "got {e}");
    drop(stream);
    check!(std::fs::remove_file(&path));
    // A planted symbolic link or a regular file is never followed, adopted or removed.
    // Anyone may plant here, as in /tmp.
    check!(std::fs::set_permissions(
        dir.path(),
        std::fs::Permissions::from_mode(0o1777)
    ));
    let target = dir.join("target");
    check!(std::fs::write(&target, b"precious"));
    for what in [Plant::Symlink(&target), Plant::EmptyFile] {
        let planted = plant(&path, what)?;
        let e = Listener::bind(&ep, &Options::default())
            .err()
            .ok_or("bound over a planted object")?;
        ensure!(e.kind() == ErrorKind::WrongType, "got {e}");
        let e = Receiver::bind(&ep)
            .err()
            .ok_or("bound over a planted object")?;
        ensure!(e.kind() == ErrorKind::WrongType, "got {e}");
        ensure!(planted.intact(), "the planted object was touched");
        planted.remove()?;
    }
    ensure!(
        check!(std::fs::read(&target)) == b"precious",
        "the link's target changed"
    );
    check!(std::fs::remove_file(&target));
    dir.finish()
}

fn peer_credentials_and_uid_allow_list() -> Outcome {
    crate::socket::credentials_and_allow_list("unixpacket")
}

fn mebibyte() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i % 251) as u8).collect()
}

/// Sends a 1 MiB message and says `sent`, or `refused LIMIT` when the sender refuses it as too
/// large for a packet here.
fn send_mebibyte(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::connect(args[0].as_str()));
    match tx.send(mebibyte()) {
        Ok(()) => println!("sent"),
        Err(e) if e.kind() == ErrorKind::TooLarge => {
            ensure!(
                e.to_string().contains("net.core.wmem_max"),
                "the refusal does not say why: {e}"
            );
            println!("refused {}", e.error().limit().unwrap_or(0));
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

fn a_mebibyte_crosses_or_is_refused_with_the_limit() -> Outcome {
    let dir = Scratch::new("procom-pkt")?;
    let ep = format!("unixpacket:{}", dir.join("big").display());
    let mut rx = check!(Receiver::bind(&ep));
    let mut tx = Proc::spawn("sender", &mut role("packet::send_mebibyte", &[&ep]))?;
    let said = tx.line(STEP)?;
    if said == "sent" {
        let m = check!(rx.recv_timeout(STEP));
        ensure!(m == mebibyte(), "the 1 MiB message arrived altered");
    } else {
        let limit: usize = check!(said.strip_prefix("refused ").ok_or(said.clone())?.parse());
        ensure!(
            limit < 1 << 20 && limit >= socket::packet_limit().min(1 << 20) - 1,
            "refused with a limit of {limit}"
        );
    }
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "then: {e:?}");
    tx.success(STEP)?;
    drop(rx);
    dir.finish()
}

fn socat_is_a_client_of_a_packet_receiver() -> Outcome {
    let dir = Scratch::new("procom-pkt")?;
    let path = dir.join("r");
    let mut rx = check!(Receiver::bind(&packet_ep(&path)?));
    // socat reads the file in one read (its buffer is 8 KiB) and sends it as one packet.
    let input = dir.join("input");
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8 + b'a').collect();
    check!(std::fs::write(&input, &payload));
    let mut socat = Command::new("socat");
    socat
        .args([
            "-u",
            &format!("OPEN:{}", input.display()),
            &format!("UNIX-CONNECT:{},type=5", path.display()),
        ])
        .stdin(Stdio::null());
    let socat = Proc::spawn("socat", &mut socat)?;
    let m = check!(rx.recv_timeout(STEP));
    ensure!(m == payload, "got {} bytes from socat", m.len());
    let e = rx.recv_timeout(STEP).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::PeerGone), "after socat left: {e:?}");
    socat.success(STEP)?;
    check!(std::fs::remove_file(&input));
    drop(rx);
    dir.finish()
}

fn socat_is_a_server_for_a_packet_sender() -> Outcome {
    let dir = Scratch::new("procom-pkt")?;
    let path = dir.join("l");
    let mut socat = Command::new("socat");
    socat
        .args([
            "-u",
            &format!("UNIX-LISTEN:{},type=5", path.display()),
            "STDOUT",
        ])
        .stdin(Stdio::null());
    let socat = Proc::spawn("socat", &mut socat)?;
    procom_testkit::unix_listening(socat.pid(), &path)?;
    let mut tx = check!(Sender::connect(packet_ep(&path)?));
    for m in ["one packet\n", "and another\n"] {
        check!(tx.send(m).map_err(|e| e.into_error()));
    }
    drop(tx);
    let fin = socat.success(STEP)?;
    ensure!(
        fin.stdout == ["one packet", "and another"],
        "socat printed {:?}",
        fin.stdout
    );
    dir.finish()
}

/// Clients served by [`serve_in_little_room`].
const CLIENTS: usize = 16;

/// A server with a memory budget (as `procom listen` has) and the default 64 MiB message
/// limit, in an address space with 48 MiB to spare: it accepts [`CLIENTS`] clients, then
/// receives one small message from each, holding every connection open.
fn serve_in_little_room(args: &[String]) -> Outcome {
    let ep = packet_ep(std::path::Path::new(&args[0]))?;
    let opts = Options::default().budget(procom::Budget::new(64 << 20));
    let listener = check!(Listener::bind(&ep, &opts));
    let room = rustix::process::Rlimit {
        current: Some(procom_testkit::address_space(std::process::id())? + (48 << 20)),
        maximum: None,
    };
    check!(rustix::process::setrlimit(
        rustix::process::Resource::As,
        room
    ));
    println!("ready");
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(check!(listener.accept_timeout(STEP)));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let m = check!(c.receiver.recv_timeout(STEP));
        ensure!(m == [i as u8], "client {i} sent {m:?}");
    }
    println!("served {CLIENTS}");
    Ok(())
}

/// Each connection of a server keeps room for the messages that arrive, not for the largest
/// one the limit allows: [`CLIENTS`] clients sending a byte each are served in 48 MiB of
/// address space (reserving 8 MiB per connection, the server died of a failed allocation).
fn a_server_keeps_room_for_what_arrives_not_for_the_limit() -> Outcome {
    let dir = Scratch::new("procom-pkt")?;
    let path = dir.join("room");
    let mut server = Proc::spawn(
        "server",
        &mut role(
            "packet::serve_in_little_room",
            &[&path.display().to_string()],
        ),
    )?;
    server.expect_line("ready")?;
    let ep = packet_ep(&path)?;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (mut tx, rx) = check!(socket::connect(&ep, &Options::default()));
        check!(tx.send([i as u8]));
        clients.push((tx, rx));
    }
    server.expect_line(&format!("served {CLIENTS}"))?;
    server.success(STEP)?;
    drop(clients);
    dir.finish()
}
