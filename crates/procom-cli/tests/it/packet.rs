//! `procom listen`, `connect`, `relay`, `ls` and `rm` on `unixpacket:` sockets: one packet per
//! line each way, socat as a client, stream clients relayed both ways to a packet server, and
//! a killed server's socket file found stale and removed while a live one stays.

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, needs, trials, unix_listening,
};

use crate::common::{ok, procom, run_with_input};
use crate::ls::{find, ls_json, stop};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::packet":
            listen_and_connect_carry_one_packet_per_line,
            socat_is_a_client_of_listen_unixpacket [needs::tool("socat")],
            relay_serves_stream_clients_through_a_packet_server,
            ls_names_packet_sockets_and_rm_stale_removes_a_dead_ones_file,
            recv_connects_so_mode_and_group_are_usage_errors;
    ]
}

/// Starts `procom listen unixpacket:PATH ARGS` and waits until it listens.
fn listen_packet(path: &std::path::Path, args: &[&str]) -> Result<Proc, String> {
    let mut cmd = procom(&["listen", &format!("unixpacket:{}", path.display())]);
    cmd.args(args);
    let server = Proc::spawn("listen unixpacket", &mut cmd)?;
    unix_listening(server.pid(), path)?;
    Ok(server)
}

fn listen_and_connect_carry_one_packet_per_line() -> Outcome {
    let scratch = Scratch::new("cli-pkt")?;
    let path = scratch.join("echo.sock");
    let server = listen_packet(&path, &["--echo", "--count", "1"])?;
    let ep = format!("unixpacket:{}", path.display());
    // An empty line is a packet of its own (its newline), not the end of the conversation.
    let c = run_with_input(procom(&["connect", &ep]), "connect", b"one\n\nthree\n")?;
    ensure!(
        c.status.success() && c.stdout == ["one", "", "three"],
        "the client got {c:?}"
    );
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["one", "", "three"],
        "the server printed {:?}",
        fin.stdout
    );
    ensure!(!path.exists(), "the server left its socket file");
    scratch.finish()
}

fn socat_is_a_client_of_listen_unixpacket() -> Outcome {
    let scratch = Scratch::new("cli-pkt")?;
    let path = scratch.join("socat.sock");
    let server = listen_packet(&path, &["--echo", "--count", "1"])?;
    crate::socket::socat_line_is_echoed(
        server,
        &format!("UNIX-CONNECT:{},type=5", path.display()),
    )?;
    scratch.finish()
}

fn ls_names_packet_sockets_and_rm_stale_removes_a_dead_ones_file() -> Outcome {
    let scratch = Scratch::new("cli-pkt")?;
    let dead = scratch.join("dead.sock");
    let live = scratch.join("live.sock");
    let mut killed = listen_packet(&dead, &[])?;
    check!(killed.child().kill());
    killed.finish(STEP)?;
    let server = listen_packet(&live, &[])?;
    let dir = scratch.path().display().to_string();
    let result = (|| -> Outcome {
        let all = ls_json(&["--kind", "unix", "--fifos", &dir])?;
        let d = find(&all, "unix", &dead.display().to_string())
            .ok_or("the stale packet socket file is not listed")?;
        ensure!(d["abandoned"] == true, "stale socket: {d}");
        let l = find(&all, "unix", &live.display().to_string())
            .ok_or("the live packet socket is not listed")?;
        ensure!(
            l["alive"] == true
                && l["type"] == "seqpacket"
                && l["endpoint"] == format!("unixpacket:{}", live.display()),
            "live socket: {l}"
        );
        ok(&["rm", "--stale", "--dir", &dir])?;
        ensure!(!dead.exists(), "the stale socket file is still there");
        ensure!(live.exists(), "the live server's socket file went");
        Ok(())
    })();
    stop(server)?;
    result?;
    scratch.finish()
}

fn relay_serves_stream_clients_through_a_packet_server() -> Outcome {
    let scratch = Scratch::new("cli-pkt")?;
    let srv = scratch.join("srv.sock");
    let front = scratch.join("front.sock");
    let server = listen_packet(&srv, &["--echo"])?;
    let relay = Proc::spawn(
        "relay",
        &mut procom(&[
            "relay",
            &format!("unixpacket:{}", srv.display()),
            &format!("unix:{}", front.display()),
            "--listen",
        ]),
    )?;
    let result = (|| -> Outcome {
        unix_listening(relay.pid(), &front)?;
        let c = run_with_input(
            procom(&["connect", &format!("unix:{}", front.display())]),
            "connect",
            b"hi\nthere\n",
        )?;
        ensure!(
            c.status.success() && c.stdout == ["hi", "there"],
            "the stream client got {c:?}"
        );
        Ok(())
    })();
    stop(relay)?;
    stop(server)?;
    result?;
    scratch.finish()
}

/// `recv unixpacket:PATH` connects to a server: it creates no socket file, so --mode and
/// --group, which would say who may use it, are usage errors rather than ignored.
fn recv_connects_so_mode_and_group_are_usage_errors() -> Outcome {
    let scratch = Scratch::new("cli-pkt")?;
    let path = scratch.join("served.sock");
    let server = listen_packet(&path, &["--count", "1"])?;
    let ep = format!("unixpacket:{}", path.display());
    for share in [["--mode", "660"], ["--group", "0"]] {
        let fin = crate::common::run(&["recv", &ep, share[0], share[1], "--timeout", "1"])?;
        ensure!(
            fin.code() == Some(2) && fin.stderr.contains(share[0]),
            "recv {ep} {} {}: {fin:?}",
            share[0],
            share[1]
        );
    }
    // The server is still waiting for its one client: nobody connected.
    let c = run_with_input(procom(&["connect", &ep]), "connect", b"done\n")?;
    ensure!(c.status.success(), "the client got {c:?}");
    let fin = server.success(STEP)?;
    ensure!(
        fin.stdout == ["done"],
        "the server printed {:?}",
        fin.stdout
    );
    scratch.finish()
}
