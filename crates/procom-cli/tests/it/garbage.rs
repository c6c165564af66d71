//! `procom listen` after garbage: clients in other processes send random bytes, huge length
//! prefixes, truncated frames, over-long lines, or half a frame before they are killed; each
//! is reported in one sentence and closed, and a good client is served throughout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role, tcp_listening, trials,
    unix_listening,
};

use crate::common::procom;

pub const ROLES: &[Role] = &[
    Role {
        name: "cli::garbage::spray",
        run: spray,
    },
    Role {
        name: "cli::garbage::half",
        run: half,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::garbage":
            framed_unix_listener_serves_after_garbage,
            framed_tcp_listener_serves_after_garbage,
            line_listener_serves_after_garbage;
    ]
}

/// `--max-size` of the listeners here.
const MAX: usize = 4096;

/// A connection to `addr`: a path for unix:, HOST:PORT for tcp:.
fn connect(addr: &str) -> std::io::Result<Box<dyn ReadWrite>> {
    if addr.starts_with('/') {
        Ok(Box::new(std::os::unix::net::UnixStream::connect(addr)?))
    } else {
        Ok(Box::new(std::net::TcpStream::connect(addr)?))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Garbage of each kind for a framed (`framed`) or a line listener, `n` rounds, one connection
/// each, with bytes that vary by round; prints how many connections must end with each
/// sentence: `too_large=N cut=N` (`cut_after_echo=N`: after a message the server echoes, so
/// the echo may meet the client gone first).
fn spray(args: &[String]) -> Outcome {
    let [addr, framing, n] = args else {
        return Err("args".into());
    };
    let framed = framing == "framed";
    let (mut too_large, mut cut, mut cut_after_echo) = (0, 0, 0);
    for round in 0..check!(n.parse::<usize>()) {
        // Lines are printed, and this test reads them as text: printable noise there.
        let noise: Vec<u8> = (0..(round * 37) % 700)
            .map(|i| (i * 131 + round) as u8)
            .map(|b| if framed { b } else { b' ' + b % 95 })
            .collect();
        let mut garbage = vec![noise.clone()];
        if framed {
            let mut truncated = frame(&noise);
            truncated.truncate(4 + noise.len() / 2);
            garbage.extend([
                (u32::MAX - round as u32).to_be_bytes().to_vec(),
                ((MAX + 1 + round) as u32).to_be_bytes().to_vec(),
                truncated,
                [frame(b"fine"), vec![0, 0]].concat(),
            ]);
            (too_large, cut, cut_after_echo) = (too_large + 2, cut + 1, cut_after_echo + 1);
        } else {
            let long: Vec<u8> = std::iter::repeat_n(b'x', MAX + 1 + round).collect();
            let tail: Vec<u8> = noise.iter().copied().filter(|b| *b != b'\n').collect();
            garbage.extend([[long, vec![b'\n']].concat(), [tail, vec![b'x']].concat()]);
            (too_large, cut) = (too_large + 1, cut + 1);
        }
        for bytes in garbage {
            let mut conn = check!(connect(addr));
            check!(conn.write_all(&bytes));
        }
    }
    println!("too_large={too_large} cut={cut} cut_after_echo={cut_after_echo}");
    Ok(())
}

/// Sends half a frame, says so, and waits to be killed.
fn half(args: &[String]) -> Outcome {
    let [addr] = args else {
        return Err("args".into());
    };
    let mut conn = check!(connect(addr));
    check!(conn.write_all(&frame(b"never finished")[..9]));
    println!("sent");
    let _ = std::io::stdout().flush();
    std::thread::sleep(STEP); // killed long before: a stand-in for a peer that hangs, then dies
    Err("was not killed".into())
}

/// A good client's round trips through `listen --echo`.
fn good_client(addr: &str, framed: bool, rounds: usize) -> Outcome {
    let conn = check!(connect(addr));
    let mut reader = BufReader::new(conn);
    for i in 0..rounds {
        let m = format!("good {i}");
        if framed {
            check!(reader.get_mut().write_all(&frame(m.as_bytes())));
            let mut got = vec![0u8; 4 + m.len()];
            check!(reader.read_exact(&mut got));
            ensure!(got == frame(m.as_bytes()), "echo of {m:?}: {got:?}");
        } else {
            check!(reader.get_mut().write_all(format!("{m}\n").as_bytes()));
            let mut got = String::new();
            check!(reader.read_line(&mut got));
            ensure!(got == format!("{m}\n"), "echo of {m:?}: {got:?}");
        }
    }
    Ok(())
}

fn listener_serves_after_garbage(listen: &str, framed: bool, dir: Scratch) -> Outcome {
    let rounds = 20;
    // Per round: the spray's connections (5 framed, 3 lines), then the half frame and two
    // good clients.
    let count = rounds * if framed { 5 } else { 3 } + 3;
    let mut args = vec![
        "listen",
        listen,
        "--echo",
        "--max-size",
        "4KiB",
        "--idle",
        "20",
    ];
    let count_text = count.to_string();
    args.extend(["--count", &count_text]);
    if framed {
        args.push("--framed");
    }
    let server = Proc::spawn("listen", &mut procom(&args))?;
    let addr = match listen.strip_prefix("unix:") {
        Some(path) => {
            unix_listening(server.pid(), std::path::Path::new(path))?;
            path.to_string()
        }
        None => tcp_listening(server.pid())?.to_string(),
    };
    good_client(&addr, framed, 3)?;
    let framing = if framed { "framed" } else { "lines" };
    let spray = Proc::spawn(
        "spray",
        &mut role(
            "cli::garbage::spray",
            &[&addr, framing, &rounds.to_string()],
        ),
    )?;
    if framed {
        let mut half = Proc::spawn("half", &mut role("cli::garbage::half", &[&addr]))?;
        half.expect_line("sent")?;
        drop(half); // SIGKILL, halfway through its frame
    } else {
        // The same count of connections: one more good client instead.
        good_client(&addr, framed, 1)?;
    }
    let sent = match spray.success(STEP) {
        Ok(f) => f.stdout.join(" "),
        Err(e) => return Err(format!("{e}: {:?}", server.finish(STEP))),
    };
    let sent: BTreeMap<&str, usize> = sent
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    good_client(&addr, framed, 3)?;
    let fin = server.finish(Duration::from_secs(30))?;
    ensure!(
        fin.status.success() && !fin.stderr.contains("panicked"),
        "listen ended {}: {}",
        fin.status,
        fin.stderr
    );
    let said = |words: &str| {
        fin.stderr
            .lines()
            .filter(|l| l.contains(words) && l.ends_with("; connection closed"))
            .count()
    };
    // Every sentence is about one connection, and ends it.
    ensure!(
        fin.stderr
            .lines()
            .skip(1)
            .all(|l| l.ends_with("; connection closed"))
            && fin.stderr.lines().count() <= count + 1,
        "{}",
        fin.stderr
    );
    // A cut after a message the server echoes may end in the echo instead (the client is
    // gone), so only the other cuts are counted.
    let cut = sent["cut"] + usize::from(framed);
    ensure!(
        said("over the 4096-byte limit") >= sent["too_large"]
            && said(if framed {
                "the stream ended"
            } else {
                "after the last newline"
            }) >= cut,
        "sent {sent:?}: {}",
        fin.stderr
    );
    ensure!(
        fin.stdout.iter().filter(|l| l.starts_with("good ")).count() == 6 + usize::from(!framed),
        "the good clients' messages: {:?}",
        fin.stdout
    );
    dir.finish()
}

fn framed_unix_listener_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-cli-garbage")?;
    let ep = format!("unix:{}", dir.join("srv").display());
    listener_serves_after_garbage(&ep, true, dir)
}

fn framed_tcp_listener_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-cli-garbage")?;
    listener_serves_after_garbage("tcp:127.0.0.1:0", true, dir)
}

fn line_listener_serves_after_garbage() -> Outcome {
    let dir = Scratch::new("procom-cli-garbage")?;
    let ep = format!("unix:{}", dir.join("srv").display());
    listener_serves_after_garbage(&ep, false, dir)
}
