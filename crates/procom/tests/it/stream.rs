//! Length-framed reads on a Unix stream socket into one reused buffer (`recv_into`), with a
//! writer in another process: messages of the size the receiver expects, larger and smaller
//! ones, several frames arriving in one read, empty messages, a stream that ends inside a
//! message and a length over the limit. Every message must arrive whole, in order, with
//! nothing of its neighbours in it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use procom::{ErrorKind, Options, Receiver};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[Role {
    name: "stream::scripted_frames",
    run: scripted_frames,
}];

pub fn trials() -> Vec<Trial> {
    trials![
        "stream":
            recv_into_keeps_every_boundary_then_reports_a_cut_message,
            recv_into_keeps_every_boundary_then_refuses_a_length_over_the_limit;
    ]
}

/// The receiver's limit.
const MAX: usize = 2 << 20;

/// The messages, group by group: the writer sends a group whole and waits for the reader to
/// take it before the next. Large messages follow large ones of the same, a smaller and a
/// larger size; small and empty ones follow large ones, several to a group.
const GROUPS: &[&[usize]] = &[
    &[40_000],
    &[40_000],
    &[1 << 20],
    &[50_000, 5, 0, 70_000, 3],
    &[33_000],
    &[0, 7],
    &[33_000, 33_000],
    &[40_000],
];

fn pattern(size: usize, k: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(131) ^ k.wrapping_mul(17) ^ (i >> 8)) as u8)
        .collect()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Writes [`GROUPS`] as raw frames on the socket that is its standard input, each after the
/// reader's one-byte go-ahead, then the ending its argument names: `cut` (a header for 33,000
/// bytes and 10 of them, then the end of the stream) or `oversize` (a header announcing more
/// than the reader's limit, and bytes after it).
fn scripted_frames(args: &[String]) -> Outcome {
    let [ending] = args else {
        return Err("args".into());
    };
    let fd = check!(std::io::stdin().as_fd().try_clone_to_owned());
    let mut sock = UnixStream::from(fd);
    let mut k = 0;
    for (g, group) in GROUPS.iter().enumerate() {
        if g > 0 {
            let mut go = [0u8; 1];
            check!(sock.read_exact(&mut go));
        }
        let mut bytes = Vec::new();
        for size in *group {
            bytes.extend(frame(&pattern(*size, k)));
            k += 1;
        }
        check!(sock.write_all(&bytes));
    }
    let mut go = [0u8; 1];
    check!(sock.read_exact(&mut go));
    let tail = match ending.as_str() {
        "cut" => {
            let mut t = 33_000u32.to_be_bytes().to_vec();
            t.extend_from_slice(&[9u8; 10]);
            t
        }
        "oversize" => {
            let mut t = ((MAX + 1) as u32).to_be_bytes().to_vec();
            t.extend_from_slice(&[9u8; 100]);
            t
        }
        _ => return Err(format!("no ending `{ending}`")),
    };
    check!(sock.write_all(&tail));
    Ok(())
}

/// Runs the script against a receiver over a socket pair; returns the receiver, the writer
/// and the error of the receive after the last group.
fn run_script(ending: &str) -> Result<(Receiver, Proc, procom::Error), String> {
    let (mine, theirs) = check!(UnixStream::pair());
    let mut cmd = role("stream::scripted_frames", &[ending]);
    cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
    let writer = Proc::spawn("writer", &mut cmd)?;
    drop(cmd); // its copy of the writer's end: the stream ends when the writer exits
    let mut acks = check!(mine.try_clone());
    let mut rx = Receiver::from_fd(
        OwnedFd::from(mine),
        "unix socketpair",
        &Options::default().max_message(MAX),
    );
    let mut reused = vec![0xeeu8; 3];
    let mut k = 0;
    for (g, group) in GROUPS.iter().enumerate() {
        for size in *group {
            let n = check!(rx.recv_into(&mut reused));
            ensure!(
                n == *size && reused.len() == *size,
                "message {k} (group {g}): {size} bytes sent, recv_into gave {n} in a buffer of {}",
                reused.len()
            );
            ensure!(
                reused == pattern(*size, k),
                "message {k} (group {g}, {size} bytes) has the wrong contents"
            );
            k += 1;
        }
        check!(acks.write_all(b"g"));
    }
    let e = match rx.recv_into(&mut reused) {
        Ok(n) => return Err(format!("after the last group, a {n}-byte message arrived")),
        Err(e) => e,
    };
    Ok((rx, writer, e))
}

fn recv_into_keeps_every_boundary_then_reports_a_cut_message() -> Outcome {
    let (mut rx, writer, e) = run_script("cut")?;
    writer.success(STEP)?;
    ensure!(
        e.kind() == ErrorKind::Malformed,
        "a stream that ended inside a message gave {e}"
    );
    let again = rx.recv_into(&mut Vec::new()).err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::Malformed),
        "the receive after a cut message gave {again:?}"
    );
    Ok(())
}

fn recv_into_keeps_every_boundary_then_refuses_a_length_over_the_limit() -> Outcome {
    let (mut rx, writer, e) = run_script("oversize")?;
    writer.success(STEP)?;
    ensure!(
        e.kind() == ErrorKind::TooLarge,
        "a length over the limit gave {e}"
    );
    let again = rx.recv_into(&mut Vec::new()).err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::Malformed),
        "the receive after a length over the limit gave {again:?}"
    );
    Ok(())
}
