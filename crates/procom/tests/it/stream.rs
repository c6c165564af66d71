//! Length-framed reads on a Unix stream socket and on a TCP connection over loopback, with a
//! writer in another process: into one
//! reused buffer (`recv_into`), and as typed views lent from the receiver's own buffer
//! (`recv_view`). Messages of the size the receiver expects, larger and smaller ones, several
//! frames arriving in one read, empty messages, a stream that ends inside a message and a
//! length over the limit. Every message must arrive whole, in order, with nothing of its
//! neighbours in it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use procom::{ErrorKind, Options, Receiver};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[
    Role {
        name: "stream::scripted_frames",
        run: scripted_frames,
    },
    Role {
        name: "stream::datagram_frames",
        run: datagram_frames,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "stream":
            recv_into_keeps_every_boundary_then_reports_a_cut_message,
            recv_into_keeps_every_boundary_then_refuses_a_length_over_the_limit,
            recv_view_keeps_every_boundary_then_reports_a_cut_message,
            tcp_recv_into_keeps_every_boundary_then_reports_a_cut_message,
            tcp_recv_view_keeps_every_boundary_then_reports_a_cut_message,
            udp_handed_over_as_a_stream_keeps_each_datagram_whole,
            unix_datagrams_handed_over_as_a_stream_keep_each_datagram_whole;
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

/// `payload` as the typed channel encodes a byte string (postcard): its length as a varint,
/// then its bytes.
fn byte_string(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = payload.len();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(payload);
    out
}

/// Writes [`GROUPS`] as frames on the stream socket that is its standard input, each after the
/// reader's one-byte go-ahead, then the ending its first argument names: `cut` (a header for
/// 33,000 bytes and 10 of them, then the end of the stream) or `oversize` (a header announcing
/// more than the reader's limit, and bytes after it). With a second argument `typed`, each
/// payload travels as a typed byte string.
fn scripted_frames(args: &[String]) -> Outcome {
    let (ending, typed) = match args {
        [ending] => (ending, false),
        [ending, t] if t == "typed" => (ending, true),
        _ => return Err("args".into()),
    };
    let fd = check!(std::io::stdin().as_fd().try_clone_to_owned());
    let mut sock = std::fs::File::from(fd);
    let mut k = 0;
    for (g, group) in GROUPS.iter().enumerate() {
        if g > 0 {
            let mut go = [0u8; 1];
            check!(sock.read_exact(&mut go));
        }
        let mut bytes = Vec::new();
        for size in *group {
            let payload = pattern(*size, k);
            bytes.extend(frame(&if typed {
                byte_string(&payload)
            } else {
                payload
            }));
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

/// The two ends of a stream: a Unix socket pair, or with `tcp` a TCP connection over
/// loopback.
fn stream_pair(tcp: bool) -> Result<(OwnedFd, OwnedFd), String> {
    if !tcp {
        let (a, b) = check!(UnixStream::pair());
        return Ok((a.into(), b.into()));
    }
    let listener = check!(std::net::TcpListener::bind("127.0.0.1:0"));
    let theirs = check!(std::net::TcpStream::connect(check!(listener.local_addr())));
    let (mine, _) = check!(listener.accept());
    Ok((mine.into(), theirs.into()))
}

/// Runs the script (`args`) against a receiver `make` builds over a stream pair (TCP with
/// `tcp`): `take` receives and checks message `k` of `size` bytes. Returns the receiver and
/// the writer.
fn run_script<R>(
    tcp: bool,
    args: &[&str],
    make: impl FnOnce(OwnedFd) -> R,
    mut take: impl FnMut(&mut R, usize, usize) -> Outcome,
) -> Result<(R, Proc), String> {
    let (mine, theirs) = stream_pair(tcp)?;
    let mut cmd = role("stream::scripted_frames", args);
    cmd.stdin(Stdio::from(theirs));
    let writer = Proc::spawn("writer", &mut cmd)?;
    drop(cmd); // its copy of the writer's end: the stream ends when the writer exits
    let mut acks = std::fs::File::from(check!(mine.try_clone()));
    let mut rx = make(mine);
    let mut k = 0;
    for (g, group) in GROUPS.iter().enumerate() {
        for size in *group {
            take(&mut rx, k, *size).map_err(|e| format!("message {k} (group {g}): {e}"))?;
            k += 1;
        }
        check!(acks.write_all(b"g"));
    }
    Ok((rx, writer))
}

/// The script received with `recv_into` into one reused buffer; the error of the receive
/// after the last group.
fn into_reused(tcp: bool, ending: &str) -> Result<(Receiver, Proc, procom::Error), String> {
    let mut reused = vec![0xeeu8; 3];
    let (mut rx, writer) = run_script(
        tcp,
        &[ending],
        |fd| Receiver::from_fd(fd, "stream pair", &Options::default().max_message(MAX)),
        |rx, k, size| {
            let n = check!(rx.recv_into(&mut reused));
            ensure!(
                n == size && reused.len() == size,
                "{size} bytes sent, recv_into gave {n} in a buffer of {}",
                reused.len()
            );
            ensure!(
                reused == pattern(size, k),
                "{size} bytes with the wrong contents"
            );
            Ok(())
        },
    )?;
    let e = match rx.recv_into(&mut reused) {
        Ok(n) => return Err(format!("after the last group, a {n}-byte message arrived")),
        Err(e) => e,
    };
    Ok((rx, writer, e))
}

/// The script with `ending`, received with `recv_into`: the receive after the last group is
/// `first` (the ending, `what`), and the one after that `Malformed` (the stream can no longer
/// be framed).
fn into_reused_ends_with(tcp: bool, ending: &str, first: ErrorKind, what: &str) -> Outcome {
    let (mut rx, writer, e) = into_reused(tcp, ending)?;
    writer.success(STEP)?;
    ensure!(e.kind() == first, "{what} gave {e}");
    let again = rx.recv_into(&mut Vec::new()).err().map(|e| e.kind());
    ensure!(
        again == Some(ErrorKind::Malformed),
        "the receive after {what} gave {again:?}"
    );
    Ok(())
}

fn recv_into_keeps_every_boundary_then_reports_a_cut_message() -> Outcome {
    into_reused_ends_with(
        false,
        "cut",
        ErrorKind::Malformed,
        "a stream that ended inside a message",
    )
}

fn recv_into_keeps_every_boundary_then_refuses_a_length_over_the_limit() -> Outcome {
    into_reused_ends_with(
        false,
        "oversize",
        ErrorKind::TooLarge,
        "a length over the limit",
    )
}

/// Over TCP, where a large message goes straight into the caller's buffer or through a
/// bounce buffer, as the buffer's place in memory decides.
fn tcp_recv_into_keeps_every_boundary_then_reports_a_cut_message() -> Outcome {
    into_reused_ends_with(
        true,
        "cut",
        ErrorKind::Malformed,
        "a stream that ended inside a message",
    )
}

/// Typed byte strings received as views with no deadline (lent from the receiver's own
/// buffer: a large message read straight into it, or the reader's buffer handed over) keep
/// every boundary; the cut message at the end is `Malformed`.
fn recv_view_keeps_every_boundary_then_reports_a_cut_message() -> Outcome {
    view_keeps_every_boundary_then_reports_a_cut_message(false)
}

fn tcp_recv_view_keeps_every_boundary_then_reports_a_cut_message() -> Outcome {
    view_keeps_every_boundary_then_reports_a_cut_message(true)
}

fn view_keeps_every_boundary_then_reports_a_cut_message(tcp: bool) -> Outcome {
    type Rx = procom::typed::Receiver<serde_bytes::ByteBuf>;
    let (mut rx, writer) = run_script(
        tcp,
        &["cut", "typed"],
        |fd| {
            Rx::from_untyped(Receiver::from_fd(
                fd,
                "stream pair",
                &Options::default().max_message(MAX),
            ))
        },
        |rx, k, size| {
            let v: &serde_bytes::Bytes = check!(rx.recv_view());
            ensure!(v.len() == size, "{size} bytes sent, {} received", v.len());
            ensure!(
                **v == pattern(size, k)[..],
                "{size} bytes with the wrong contents"
            );
            Ok(())
        },
    )?;
    writer.success(STEP)?;
    let e = rx
        .recv_view::<&serde_bytes::Bytes>()
        .err()
        .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Malformed),
        "a stream that ended inside a message gave {e:?}"
    );
    Ok(())
}

/// The payload sizes [`datagram_frames`] sends, a frame to a datagram: a large one, one larger
/// than the size now expected, then the first size again.
const DATAGRAMS: &[usize] = &[40_000, 50_000, 40_000];

/// Sends [`DATAGRAMS`] on the connected datagram socket that is its standard input, each as one
/// length-prefixed frame in one datagram, after the reader's one-byte go-ahead for each.
fn datagram_frames(_args: &[String]) -> Outcome {
    let fd = check!(std::io::stdin().as_fd().try_clone_to_owned());
    let mut sock = std::fs::File::from(fd);
    for (k, size) in DATAGRAMS.iter().enumerate() {
        let mut go = [0u8; 1];
        check!(sock.read_exact(&mut go));
        let f = frame(&pattern(*size, k));
        let n = check!(sock.write(&f));
        ensure!(n == f.len(), "{n} of a {}-byte datagram sent", f.len());
    }
    Ok(())
}

/// A datagram socket handed to `Receiver::from_fd` is read as a byte stream: each datagram
/// is read whole through the receiver's buffer, never into a buffer sized for the message
/// expected (which would cut a larger one short and frame the next from its remains).
fn datagrams_handed_over_as_a_stream_keep_each_whole(mine: OwnedFd, theirs: OwnedFd) -> Outcome {
    let mut cmd = role("stream::datagram_frames", &[]);
    cmd.stdin(Stdio::from(theirs));
    let writer = Proc::spawn("writer", &mut cmd)?;
    drop(cmd);
    let mut acks = std::fs::File::from(check!(mine.try_clone()));
    let mut rx = Receiver::from_fd(
        mine,
        "datagram socket",
        &Options::default().max_message(MAX),
    );
    let mut reused = Vec::new();
    for (k, size) in DATAGRAMS.iter().enumerate() {
        check!(acks.write_all(b"g"));
        let n = check!(rx.recv_into(&mut reused));
        ensure!(n == *size, "message {k}: {size} bytes sent, {n} received");
        ensure!(
            reused == pattern(*size, k),
            "message {k}: {size} bytes with the wrong contents"
        );
    }
    writer.success(STEP)?;
    Ok(())
}

fn udp_handed_over_as_a_stream_keeps_each_datagram_whole() -> Outcome {
    let a = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    let b = check!(std::net::UdpSocket::bind("127.0.0.1:0"));
    check!(a.connect(check!(b.local_addr())));
    check!(b.connect(check!(a.local_addr())));
    datagrams_handed_over_as_a_stream_keep_each_whole(b.into(), a.into())
}

fn unix_datagrams_handed_over_as_a_stream_keep_each_datagram_whole() -> Outcome {
    let (a, b) = check!(std::os::unix::net::UnixDatagram::pair());
    datagrams_handed_over_as_a_stream_keep_each_whole(b.into(), a.into())
}
