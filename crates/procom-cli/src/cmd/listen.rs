//! `procom listen ENDPOINT [--echo] [--count N] [--framed]` and `procom connect ENDPOINT`: a
//! small nc/socat for tcp:, unix: and unixpacket: endpoints.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Duration;

use procom::socket::{Connection, Listener};
use procom::{Endpoint, ErrorKind};

use crate::cli::{ConnectArgs, ListenArgs};
use crate::interrupt;

fn print_line(msg: &[u8]) -> anyhow::Result<()> {
    super::write_stdout(&[msg, b"\n"])
}

/// Serves one client until it closes, misbehaves or idles too long; reports why it ended.
/// Every report starts with the connection's name, which names the client once (`tcp:…:7000
/// (peer 10.0.0.2:41234)`, `unix:… (peer pid 42)`).
fn serve(mut conn: Connection, echo: bool, idle: Duration) {
    let who = conn.receiver.endpoint().to_string();
    loop {
        // `--idle 0`: a client may stay silent for as long as it likes.
        let got = if idle.is_zero() {
            conn.receiver.recv()
        } else {
            conn.receiver.recv_timeout(idle)
        };
        match got {
            Ok(msg) => {
                if let Err(e) = print_line(&msg) {
                    // Nobody reads what clients send any more: stop serving them all (status 0
                    // when the reader simply left, as for recv), removing the socket file.
                    let closed = e.downcast_ref::<super::StdoutClosed>().is_some();
                    if !closed {
                        interrupt::warn(format_args!("{e:#}; no longer serving"));
                    }
                    interrupt::exit(if closed { 0 } else { 1 });
                }
                if echo && let Err(e) = conn.sender.send(&msg) {
                    interrupt::warn(format_args!("{}; connection closed", e.error()));
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => return,
            Err(e) if e.kind() == ErrorKind::Timeout => {
                interrupt::warn(format_args!(
                    "{who}: sent nothing for {}; connection closed",
                    super::duration(idle)
                ));
                return;
            }
            Err(e) => {
                interrupt::warn(format_args!("{e}; connection closed"));
                return;
            }
        }
    }
}

pub fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let ep = Endpoint::parse(&args.endpoint)?;
    if !matches!(
        ep,
        Endpoint::Tcp { .. } | Endpoint::Unix { .. } | Endpoint::UnixPacket { .. }
    ) {
        return Err(super::usage!(
            "{ep}: procom listen serves tcp:, unix: and unixpacket: endpoints (for udp: and unixgram:, use procom recv)"
        ));
    }
    if !args.allow_uid.is_empty()
        && !matches!(ep, Endpoint::Unix { .. } | Endpoint::UnixPacket { .. })
    {
        return Err(super::usage!(
            "{ep}: --allow-uid admits clients by the uid a Unix socket reports; a TCP client has no uid to check (use a firewall, or a unix: endpoint)"
        ));
    }
    // The budget bounds what the receivers buffer; message buffers over 256 KiB also go back
    // to the system when freed, so it bounds what the process holds as well (the allocator
    // would otherwise keep freed large buffers resident, several times the budget).
    procom_sys::alloc::map_blocks_from(256 << 10);
    let budget = usize::try_from(args.memory).unwrap_or(usize::MAX);
    let mut opts = super::options(&args.stream, false)?.budget(procom::Budget::new(budget));
    if super::sharing(&args.share) {
        if !matches!(
            ep,
            Endpoint::Unix {
                addr: procom::endpoint::UnixAddr::Path(_)
            } | Endpoint::UnixPacket {
                addr: procom::endpoint::UnixAddr::Path(_)
            }
        ) {
            return Err(super::usage!(
                "{ep}: --mode and --group apply to a unix:PATH or unixpacket:PATH socket file; a TCP port or an abstract socket has none (use --allow-uid, or a firewall)"
            ));
        }
        let (mode, group) = super::share(&args.share)?;
        opts = opts.mode(mode);
        if let Some(gid) = group {
            opts = opts.group(gid);
        }
    }
    // Declared before the owner, so dropped after it: the owner removes what it created
    // while the hook still covers an early end.
    let _remove_on_exit;
    let creating = interrupt::creating();
    let mut listener = Listener::bind(&ep, &opts)?;
    _remove_on_exit = listener.cleanup().map(|c| {
        interrupt::on_exit(move || {
            c.remove();
        })
    });
    drop(creating);
    if !args.allow_uid.is_empty() {
        listener.allow_uids(args.allow_uid.iter().copied());
    }
    interrupt::set_activity(format!("listening on {}", listener.local_endpoint()));
    interrupt::warn(format_args!("listening on {}", listener.local_endpoint()));
    let idle = args.idle;
    let mut served = 0u64;
    let mut handles = Vec::new();
    while args.count.is_none_or(|n| served < n) {
        let conn = match listener.accept() {
            Ok(conn) => conn,
            // Out of descriptors or memory for now: the clients being served go on, and the
            // next connection is tried again shortly (like a web server's accept loop).
            Err(e) if super::out_of_resources(&e) => {
                interrupt::warn(format_args!("{e}; still listening"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        served += 1;
        let echo = args.echo;
        let who = conn.receiver.endpoint().to_string();
        // No thread to be had (a thread or task limit, or no memory for its stack): this
        // client is turned away (its connection closes with the dropped closure), the others
        // go on.
        match std::thread::Builder::new().spawn(move || serve(conn, echo, idle)) {
            Ok(h) => handles.push(h),
            Err(e) => interrupt::warn(format_args!(
                "{who}: could not start a thread to serve it ({e}); connection closed"
            )),
        }
        handles.retain(|h| !h.is_finished());
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

pub fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    let ep = Endpoint::parse(&args.endpoint)?;
    if matches!(ep, Endpoint::UnixPacket { .. }) {
        return connect_packet(&ep, args.timeout);
    }
    if !matches!(ep, Endpoint::Tcp { .. } | Endpoint::Unix { .. }) {
        return Err(super::usage!(
            "{ep}: procom connect joins tcp:, unix: and unixpacket: endpoints (for datagrams, use procom send and recv)"
        ));
    }
    interrupt::set_activity(format!("connected to {ep}"));
    let fd: OwnedFd = procom::socket::connect_stream(&ep, args.timeout)?;
    let mut reader = std::fs::File::from(fd.try_clone()?);
    let writer_fd = fd;
    // Standard input to the peer; at its end, half-close so the peer sees end-of-file.
    let to_peer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut w = std::fs::File::from(writer_fd.try_clone()?);
        let copied = std::io::copy(&mut std::io::stdin().lock(), &mut w);
        let _ = rustix::net::shutdown(&writer_fd, rustix::net::Shutdown::Write);
        copied.map(drop)
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{ep}: could not read"))),
        };
        super::write_stdout(&[&buf[..n]])?;
    }
    // The peer closed: whatever standard input still holds has nowhere to go.
    if to_peer.is_finished()
        && let Ok(Err(e)) = to_peer.join()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(anyhow::Error::new(e).context(format!("{ep}: could not send")));
    }
    Ok(())
}

/// `procom connect unixpacket:…`: each line of standard input goes to the peer as one packet,
/// each packet from the peer is printed as one line; at the end of standard input the
/// sending half is shut down, so the peer sees the end.
fn connect_packet(ep: &Endpoint, timeout: Option<Duration>) -> anyhow::Result<()> {
    use std::io::BufRead;
    let opts = procom::Options::default()
        .framing(procom::Framing::Lines)
        .open_timeout(timeout);
    interrupt::set_activity(format!("connected to {ep}"));
    let (mut tx, mut rx) = procom::socket::connect(ep, &opts)?;
    let half: Option<OwnedFd> = tx.as_fd().map(|fd| fd.try_clone_to_owned()).transpose()?;
    let to_peer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        let sent = loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(anyhow::Error::new(e).context("could not read standard input")),
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if let Err(e) = tx.send(&line) {
                break Err(e.into_error().into());
            }
        };
        if let Some(fd) = &half {
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
        }
        sent
    });
    loop {
        match rx.recv() {
            Ok(msg) => print_line(&msg)?,
            Err(e) if e.kind() == ErrorKind::PeerGone => break,
            Err(e) => return Err(e.into()),
        }
    }
    // The peer closed: whatever standard input still holds has nowhere to go.
    if to_peer.is_finished()
        && let Ok(Err(e)) = to_peer.join()
        && e.downcast_ref::<procom::Error>()
            .is_none_or(|e| e.kind() != ErrorKind::PeerGone)
    {
        return Err(e);
    }
    Ok(())
}
