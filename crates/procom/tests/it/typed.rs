//! Typed channels across real processes. `typed_views`, a property of the channel contract
//! (so it runs for every flavor): values sent as views, references and owned values, from a
//! few bytes to 1 MiB (just below, at and above the size from which a byte stream or a
//! shared-memory ring takes a value piece by piece), received as views borrowing from the
//! receiver's buffer and as owned values, all intact and in order. A `Serialize` whose second
//! encoding differs in length is refused with the documented outcome, over a Unix stream and
//! in a shared-memory ring. Over a Unix stream: a receive deadline that passes mid-message
//! keeps the message whole for the next receive; a send deadline that passes mid-message
//! leaves the sender unusable and its receiver with no torn value; garbage inside a frame and
//! a huge length are reported, never decoded; a large view whose frame header came in pieces
//! still lies half a page in.

use std::cell::Cell;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use procom::typed::{Receiver, Sender};
use procom::{ErrorKind, Options};
use procom_testkit::{Outcome, Proc, Role, STEP, Scratch, Trial, check, ensure, role, trials};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};

use crate::contract::{Property, flavor_max, is_queue, open_rx, ready};

pub const PROPERTIES: &[Property] = &[Property {
    name: "typed_views",
    send: views_send,
    recv: views_recv,
    parent: crate::contract::no_step,
    sender_survives: true,
}];

pub const ROLES: &[Role] = &[
    Role {
        name: "typed::changing_sender",
        run: changing_sender,
    },
    Role {
        name: "typed::half_sender",
        run: half_sender,
    },
    Role {
        name: "typed::stalled_sender",
        run: stalled_sender,
    },
    Role {
        name: "typed::garbage_sender",
        run: garbage_sender,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "typed":
            a_value_whose_encoding_changes_is_refused,
            a_value_whose_encoding_changes_publishes_nothing_in_a_ring,
            a_receive_deadline_mid_message_keeps_it_whole,
            a_send_deadline_mid_message_leaves_no_torn_value,
            views_report_garbage_and_huge_lengths,
            a_budgeted_view_lies_in_charged_memory,
            a_large_view_whose_header_came_in_pieces_lies_half_a_page_in;
    ]
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Blob {
    id: u32,
    name: String,
    data: ByteBuf,
}

/// Encodes exactly as a [`Blob`] does, borrowing its strings.
#[derive(Serialize, Deserialize, Debug)]
struct BlobView<'a> {
    id: u32,
    name: &'a str,
    #[serde(borrow)]
    data: &'a Bytes,
}

/// The payload of message `id`, `len` bytes: different for every message and position.
fn payload(id: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(id * 7) as u8)
        .collect()
}

fn name(id: u32) -> String {
    format!("blob-{id}")
}

/// The payload length that makes message `id` encode to `encoded` bytes.
fn len_for(id: u32, encoded: usize) -> usize {
    let empty = BlobView {
        id,
        name: &name(id),
        data: Bytes::new(&[]),
    };
    // All but the byte string's length prefix (one byte when it is empty).
    let base = postcard::to_allocvec(&empty).map_or(1, |b| b.len()) - 1;
    let mut len = encoded.saturating_sub(base + 1);
    while len > 0 && base + varint_len(len) + len > encoded {
        len -= 1;
    }
    len
}

fn varint_len(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// The encoded sizes `typed_views` sends over `ep`: a few bytes, a page, just below, at and
/// just above the size from which a byte stream carries a value piece by piece (32 KiB), and
/// 1 MiB; only those the flavor carries (UDP, which may drop datagrams, only small ones).
fn view_sizes(ep: &str) -> Vec<usize> {
    let most = if ep.starts_with("udp:") {
        4096
    } else {
        flavor_max(ep)
    };
    [16, 4096, (32 << 10) - 1, 32 << 10, (32 << 10) + 1, 1 << 20]
        .into_iter()
        .filter(|&s| s <= most)
        .collect()
}

/// Sends each size twice: as a view, a reference and an owned value in turn.
fn views_send(ep: &str) -> Outcome {
    let mut tx = check!(Sender::<Blob>::connect(ep));
    for (i, size) in view_sizes(ep).iter().chain(&view_sizes(ep)).enumerate() {
        let id = i as u32;
        let data = payload(id, len_for(id, *size));
        let sent = match i % 3 {
            0 => tx.send_view(&BlobView {
                id,
                name: &name(id),
                data: Bytes::new(&data),
            }),
            1 => tx.send_ref(&Blob {
                id,
                name: name(id),
                data: ByteBuf::from(data),
            }),
            _ => tx
                .send(Blob {
                    id,
                    name: name(id),
                    data: ByteBuf::from(data),
                })
                .map_err(|e| e.into_error()),
        };
        sent.map_err(|e| format!("message {i} ({size} bytes encoded): {e}"))?;
    }
    Ok(())
}

/// Receives every message, alternately as a view and as an owned value, and checks it.
fn views_recv(ep: &str, mode: &str) -> Outcome {
    let mut rx = Receiver::<Blob>::from_untyped(open_rx(ep, mode, &Options::default())?);
    ready();
    let n = 2 * view_sizes(ep).len();
    for i in 0..n {
        let id = i as u32;
        let want = payload(id, len_for(id, view_sizes(ep)[i % (n / 2)]));
        if i % 2 == 0 {
            let v: BlobView<'_> = check!(rx.recv_view_timeout(STEP));
            ensure!(
                v.id == id && v.name == name(id) && v.data.as_ref() == want,
                "view {i} arrived as id {} name {:?} with {} bytes",
                v.id,
                v.name,
                v.data.len()
            );
        } else {
            let b = check!(rx.recv_timeout(STEP));
            ensure!(
                b.id == id && b.name == name(id) && *b.data == want,
                "value {i} arrived as id {} name {:?} with {} bytes",
                b.id,
                b.name,
                b.data.len()
            );
        }
    }
    if is_queue(ep) {
        return Ok(());
    }
    match rx.recv_view_timeout::<BlobView<'_>>(STEP) {
        Err(e) if e.kind() == ErrorKind::PeerGone => Ok(()),
        Err(e) => Err(format!("expected PeerGone, got {e}")),
        Ok(v) => Err(format!("expected PeerGone, got message {}", v.id)),
    }
}

// --- over a Unix stream ---------------------------------------------------------------------

/// A receiver on a new Unix socket and the sender role `name`, started with its endpoint.
fn unix_pair(role_name: &str) -> Result<(Scratch, Receiver<Blob>, Proc), String> {
    let scratch = Scratch::new("procom-typed")?;
    let ep = format!("unix:{}", scratch.join("s").display());
    let rx = check!(Receiver::<Blob>::bind(&ep));
    let mut cmd = role(role_name, &[&ep]);
    cmd.stdin(Stdio::piped());
    let tx = Proc::spawn("sender", &mut cmd)?;
    Ok((scratch, rx, tx))
}

fn tell(p: &mut Proc, line: &str) -> Outcome {
    let stdin = p.child().stdin.as_mut().ok_or("no stdin")?;
    check!(writeln!(stdin, "{line}"));
    Ok(())
}

fn wait_told() -> Outcome {
    let mut line = String::new();
    check!(std::io::stdin().read_line(&mut line));
    Ok(())
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Checks that `v` is message `id` with a `len`-byte payload.
fn is_blob(v: &BlobView<'_>, id: u32, len: usize) -> Outcome {
    ensure!(
        v.id == id && v.name == name(id) && v.data.as_ref() == payload(id, len),
        "message {} ({} bytes) arrived instead of message {id} ({len} bytes)",
        v.id,
        v.data.len()
    );
    Ok(())
}

const MIB: usize = 1 << 20;

/// A value of a `Blob`'s shape whose encoding is one byte longer (or shorter) from the second
/// time on: a `Serialize` that is not deterministic.
struct Changing {
    data: Vec<u8>,
    longer: bool,
    calls: Cell<u32>,
}

impl Serialize for Changing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let calls = self.calls.get();
        self.calls.set(calls + 1);
        let len = match (calls, self.longer) {
            (0, _) => self.data.len() - 1,
            (_, true) => self.data.len(),
            (_, false) => self.data.len() - 2,
        };
        BlobView {
            id: 99,
            name: "changing",
            data: Bytes::new(&self.data[..len]),
        }
        .serialize(s)
    }
}

/// Sends a value that grows on its second encoding (refused before anything is written: the
/// sender stays usable), message 1, a value that shrinks (over a byte stream refused after its
/// payload was written, leaving the sender unusable; in a shared-memory ring refused with
/// nothing published), and message 2; prints each outcome.
fn changing_sender(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::<Blob>::connect(&args[0]));
    for longer in [true, false] {
        let value = Changing {
            data: payload(99, MIB),
            longer,
            calls: Cell::new(0),
        };
        let e = tx
            .send_view(&value)
            .err()
            .ok_or("a value whose encoding changed was sent")?;
        ensure!(e.kind() == ErrorKind::InvalidInput, "{e}");
        say(&format!(
            "refused {}",
            if longer { "longer" } else { "shorter" }
        ));
        if longer {
            let data = payload(1, MIB);
            let v = BlobView {
                id: 1,
                name: &name(1),
                data: Bytes::new(&data),
            };
            check!(tx.send_view(&v));
        }
    }
    let last = tx.send_view(&BlobView {
        id: 2,
        name: &name(2),
        data: Bytes::new(b"after"),
    });
    say(&match last {
        Ok(()) => "then sent".to_string(),
        Err(e) => format!("then {:?}", e.kind()),
    });
    Ok(())
}

fn a_value_whose_encoding_changes_is_refused() -> Outcome {
    let (scratch, mut rx, mut tx) = unix_pair("typed::changing_sender")?;
    let first: BlobView<'_> = check!(rx.recv_view_timeout(STEP));
    is_blob(&first, 1, MIB)?;
    // The shrinking value's frame stays unfinished (reading it lets its payload be written);
    // once the sender is gone that is reported, never decoded.
    let e = rx
        .recv_view_timeout::<BlobView<'_>>(STEP)
        .err()
        .ok_or("an unfinished message was delivered")?;
    ensure!(e.kind() == ErrorKind::Malformed, "{e}");
    tx.expect_line("refused longer")?;
    tx.expect_line("refused shorter")?;
    tx.expect_line("then Io")?;
    tx.success(STEP)?;
    drop(rx);
    scratch.finish()
}

/// Over shared memory a value is encoded straight into the ring: one whose encoding grows or
/// shrinks is refused with nothing of it published, and the sender goes on. The receiver
/// (this process) gets message 1, then message 2, then the sender's close.
fn a_value_whose_encoding_changes_publishes_nothing_in_a_ring() -> Outcome {
    let ep = format!(
        "shm:/{}?capacity=4MiB",
        procom_testkit::unique_name("procom-it-typed")
    );
    let mut rx = check!(Receiver::<Blob>::bind(&ep));
    let mut tx = Proc::spawn("sender", &mut role("typed::changing_sender", &[&ep]))?;
    let first: BlobView<'_> = check!(rx.recv_view_timeout(STEP));
    is_blob(&first, 1, MIB)?;
    let second: BlobView<'_> = check!(rx.recv_view_timeout(STEP));
    ensure!(
        second.id == 2 && second.name == name(2) && second.data.as_ref() == b"after",
        "message {} ({} bytes) arrived instead of message 2",
        second.id,
        second.data.len()
    );
    tx.expect_line("refused longer")?;
    tx.expect_line("refused shorter")?;
    tx.expect_line("then sent")?;
    tx.success(STEP)?;
    let end = rx.recv_view_timeout::<BlobView<'_>>(STEP).map(|v| v.id);
    ensure!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::PeerGone),
        "after the sender's close: {end:?}"
    );
    Ok(())
}

/// Message `id` framed by hand: the length prefix, then the encoding.
fn framed(id: u32, len: usize) -> Result<Vec<u8>, String> {
    let data = payload(id, len);
    let body = check!(postcard::to_allocvec(&BlobView {
        id,
        name: &name(id),
        data: Bytes::new(&data),
    }));
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes two 1 MiB messages by hand, each in two parts (its first 64 KiB, which the socket
/// holds, then the rest), waiting to be told to go on after each first part.
fn half_sender(args: &[String]) -> Outcome {
    let tx = check!(procom::Sender::connect(&args[0]));
    let mut sock = std::os::unix::net::UnixStream::from(tx.into_fd().ok_or("no descriptor")?);
    for id in [1, 2] {
        let frame = framed(id, MIB)?;
        let (first, rest) = frame.split_at(64 << 10);
        check!(sock.write_all(first));
        say(&format!("half {id}"));
        wait_told()?;
        check!(sock.write_all(rest));
    }
    Ok(())
}

fn a_receive_deadline_mid_message_keeps_it_whole() -> Outcome {
    let (scratch, mut rx, mut tx) = unix_pair("typed::half_sender")?;
    // The start of the message is in the socket; the rest is held back.
    tx.expect_line("half 1")?;
    let e = rx
        .recv_view_timeout::<BlobView<'_>>(Duration::from_millis(50))
        .err()
        .ok_or("half a message was delivered")?;
    ensure!(e.kind() == ErrorKind::Timeout, "{e}");
    tell(&mut tx, "go")?;
    is_blob(&check!(rx.recv_view_timeout(STEP)), 1, MIB)?;
    // A receive without a deadline, on a message whose first half has arrived.
    tx.expect_line("half 2")?;
    tell(&mut tx, "go")?;
    is_blob(&check!(rx.recv_view()), 2, MIB)?;
    tx.success(STEP)?;
    drop(rx);
    scratch.finish()
}

/// Sends a 16 MiB view with a short deadline to a receiver that is not reading (more than
/// the socket holds), then one more message; prints both outcomes.
fn stalled_sender(args: &[String]) -> Outcome {
    let mut tx = check!(Sender::<Blob>::connect(&args[0]));
    let data = payload(1, 16 * MIB);
    let v = BlobView {
        id: 1,
        name: &name(1),
        data: Bytes::new(&data),
    };
    let e = tx
        .send_view_timeout(&v, Duration::from_millis(200))
        .err()
        .ok_or("16 MiB fitted in the socket")?;
    let again = tx.send_view(&BlobView {
        id: 2,
        name: &name(2),
        data: Bytes::new(b"after"),
    });
    say(&format!(
        "{:?} then {:?}",
        e.kind(),
        again.err().map(|e| e.kind())
    ));
    wait_told()
}

fn a_send_deadline_mid_message_leaves_no_torn_value() -> Outcome {
    let (scratch, mut rx, mut tx) = unix_pair("typed::stalled_sender")?;
    tx.expect_line("Timeout then Some(Io)")?;
    tell(&mut tx, "go")?;
    tx.success(STEP)?;
    let e = rx
        .recv_view_timeout::<BlobView<'_>>(STEP)
        .err()
        .ok_or("a torn message was delivered")?;
    ensure!(e.kind() == ErrorKind::Malformed, "{e}");
    drop(rx);
    scratch.finish()
}

/// Writes by hand: a frame whose byte string claims 1 GiB, one whose name is not UTF-8,
/// message 1, and a length prefix over any limit.
fn garbage_sender(args: &[String]) -> Outcome {
    let tx = check!(procom::Sender::connect(&args[0]));
    let mut sock = std::os::unix::net::UnixStream::from(tx.into_fd().ok_or("no descriptor")?);
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // id 1, name "x", then a byte string of 2^30 bytes with 3 of them present.
    check!(sock.write_all(&frame(&[1, 1, b'x', 0x80, 0x80, 0x80, 0x80, 0x04, 1, 2, 3])));
    check!(sock.write_all(&frame(&[1, 2, 0xff, 0xfe, 1, 0])));
    check!(sock.write_all(&framed(1, 40 << 10)?));
    check!(sock.write_all(&u32::MAX.to_be_bytes()));
    wait_told()
}

fn views_report_garbage_and_huge_lengths() -> Outcome {
    let (scratch, mut rx, mut tx) = unix_pair("typed::garbage_sender")?;
    for what in ["a 1 GiB byte string", "a name that is not UTF-8"] {
        match rx.recv_view_timeout::<BlobView<'_>>(STEP) {
            Err(e) if e.kind() == ErrorKind::Malformed => {}
            Err(e) => return Err(format!("{what}: {e}")),
            Ok(v) => return Err(format!("{what} decoded as message {}", v.id)),
        }
    }
    is_blob(&check!(rx.recv_view_timeout(STEP)), 1, 40 << 10)?;
    let e = rx
        .recv_view::<BlobView<'_>>()
        .err()
        .ok_or("a 4 GiB length was accepted")?;
    ensure!(e.kind() == ErrorKind::TooLarge, "{e}");
    tell(&mut tx, "go")?;
    tx.success(STEP)?;
    drop(rx);
    scratch.finish()
}

/// A receiver with a memory budget lends a view where the message lies in its own charged
/// buffer, not in memory outside the budget: while the view lives the budget holds it, and the
/// next receive gives it back. The frames come from another process (`sh`), the second only
/// once the first view has been checked, so the first is all the receiver holds meanwhile.
fn a_budgeted_view_lies_in_charged_memory() -> Outcome {
    const N: usize = 300_000;
    let scratch = Scratch::new("typed::budgeted_view")?;
    let mut frames = Vec::new();
    let mut first = 0;
    for (c, n) in [(b'a', N), (b'b', 16)] {
        let body = check!(postcard::to_allocvec(&ByteBuf::from(vec![c; n])));
        frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frames.extend_from_slice(&body);
        if first == 0 {
            first = frames.len();
        }
    }
    let file = scratch.join("frames");
    check!(std::fs::write(&file, &frames));
    let (a, b) = check!(std::os::unix::net::UnixStream::pair());
    let budget = procom::Budget::new(1 << 20);
    let opts = Options::default()
        .max_message(1 << 20)
        .budget(budget.clone());
    let mut rx =
        Receiver::<ByteBuf>::from_untyped(procom::Receiver::from_fd(b, "unix:pair", &opts));
    let mut writer = sh_writer(
        r#"head -c "$1" "$2"; read go; tail -c +"$(($1 + 1))" "$2""#,
        &[first.to_string().as_ref(), file.as_os_str()],
        a,
        false,
    )?;
    let view: &Bytes = check!(rx.recv_view_timeout(STEP));
    ensure!(
        view.len() == N && view.iter().all(|&x| x == b'a'),
        "message a: {} bytes",
        view.len()
    );
    // Each stream receiver holds its first 128 KiB without charge; the rest of the view's
    // buffer is charged.
    ensure!(
        budget.in_use() >= N - (128 << 10),
        "a {N}-byte view lies outside the budget ({} bytes charged)",
        budget.in_use()
    );
    let mut go = writer.stdin.take().ok_or("no stdin for the writer")?;
    check!(go.write_all(b"go\n"));
    drop(go);
    let small: &Bytes = check!(rx.recv_view_timeout(STEP));
    ensure!(small.as_ref() == [b'b'; 16], "message b: {small:?}");
    ensure!(
        budget.in_use() < N,
        "the first view's {N} bytes are still charged after the next receive ({} bytes)",
        budget.in_use()
    );
    ensure!(check!(writer.wait()).success(), "the writer failed");
    check!(std::fs::remove_file(&file));
    drop(rx);
    ensure!(
        budget.in_use() == 0,
        "{} bytes charged after the receiver went",
        budget.in_use()
    );
    scratch.finish()
}

/// A large view lies half a page from a page boundary (where the kernel's copy out of a Unix
/// stream is not slowed), also when its frame's header came in two pieces: the first two bytes
/// alone, consumed by the receiver, then the rest (a writer in another process, `sh`, let go
/// once the receiver's socket holds nothing).
fn a_large_view_whose_header_came_in_pieces_lies_half_a_page_in() -> Outcome {
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsFd;
    const N: usize = 100_000;
    let scratch = Scratch::new("typed::view_in_pieces")?;
    let body = check!(postcard::to_allocvec(&ByteBuf::from(vec![b'v'; N])));
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let file = scratch.join("frame");
    check!(std::fs::write(&file, &frame));
    let (a, b) = check!(std::os::unix::net::UnixStream::pair());
    let watch = check!(b.as_fd().try_clone_to_owned());
    let opts = Options::default().max_message(1 << 20);
    let mut rx =
        Receiver::<ByteBuf>::from_untyped(procom::Receiver::from_fd(b, "unix:pair", &opts));
    let mut writer = sh_writer(
        r#"head -c 2 "$1"; echo written >&2; read go; tail -c +3 "$1""#,
        &[file.as_os_str()],
        a,
        true,
    )?;
    let mut go = writer.stdin.take().ok_or("no stdin for the writer")?;
    let written = writer.stderr.take().ok_or("no stderr for the writer")?;
    // Lets the writer go on once the header's first two bytes are in the socket and the
    // receiver has taken them (a wait on the socket's state, not on time).
    let release = std::thread::spawn(move || -> std::io::Result<()> {
        let mut line = String::new();
        BufReader::new(written).read_line(&mut line)?;
        while rustix::io::ioctl_fionread(&watch)? > 0 {
            std::thread::yield_now();
        }
        go.write_all(b"go\n")
    });
    let view: &Bytes = check!(rx.recv_view());
    ensure!(
        view.len() == N && view.iter().all(|&x| x == b'v'),
        "the view: {} bytes",
        view.len()
    );
    // The message starts at its byte string's length (a 3-byte varint), before the view.
    let start = view.as_ptr() as usize - 3;
    ensure!(
        start % 4096 == 2048,
        "a {N}-byte view lies {} bytes past a page boundary, not half a page",
        start % 4096
    );
    check!(
        release
            .join()
            .map_err(|_| "the releasing thread panicked")?
    );
    ensure!(check!(writer.wait()).success(), "the writer failed");
    check!(std::fs::remove_file(&file));
    scratch.finish()
}

/// `sh -c script sh args...` writing to `out` (one end of a socket pair), with its standard
/// input a pipe the test lets it go on through, and (with `report`) its standard error a pipe
/// it says how far it got on.
fn sh_writer(
    script: &str,
    args: &[&std::ffi::OsStr],
    out: std::os::unix::net::UnixStream,
    report: bool,
) -> Result<std::process::Child, String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", script, "sh"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(out)));
    if report {
        cmd.stderr(Stdio::piped());
    }
    Ok(check!(cmd.spawn()))
}
