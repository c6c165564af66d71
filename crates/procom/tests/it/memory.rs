//! Memory for a message a peer announced on a byte stream: a copy, or a message larger than
//! the one expected, that finds no memory under the process's RLIMIT_AS is `LimitReached`,
//! and the stream keeps every byte of it, in order; a budgeted receiver's charge for it is
//! taken once; a small message needs no room for the size the last large one had. (The buffer
//! a message is read into is `exhaustion::a_message_without_memory_is_named_and_kept`.)

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use procom::{Budget, Options, Receiver};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

use crate::exhaustion::{is_limit, is_pattern, limit_address_space, pattern_at, while_writing};

pub const ROLES: &[Role] = &[
    Role {
        name: "memory::copy_without_memory",
        run: copy_without_memory,
    },
    Role {
        name: "memory::larger_than_expected",
        run: larger_than_expected,
    },
    Role {
        name: "memory::small_after_large",
        run: small_after_large,
    },
    Role {
        name: "memory::budgeted",
        run: budgeted,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "memory":
            a_message_without_memory_for_its_copy_is_kept,
            a_larger_message_than_expected_without_memory_is_kept,
            a_small_message_needs_no_memory_for_the_large_one_before,
            a_budgeted_message_without_memory_is_charged_once;
    ]
}

/// A child playing `name` with one malloc arena: a thread's arena holds 64 MiB of address
/// space, taken whenever that thread first allocates (the watchdog's may come after the limit
/// is set), and may hand out memory the limit then no longer bounds.
fn spawn(what: &str, name: &str) -> Outcome {
    Proc::spawn(what, role(name, &[]).env("MALLOC_ARENA_MAX", "1"))?.success(STEP)?;
    Ok(())
}

/// A 64 MiB message that arrived whole in the reader's buffer, while the address space has
/// room for 96 MiB more: the copy handed out (`recv`, and `recv_into` a buffer too small)
/// finds no memory and is `LimitReached`, and the message stays buffered: once the limit is
/// lifted, the same message is received whole.
fn copy_without_memory(_: &[String]) -> Outcome {
    // 64 MiB: more than the heap of a glibc thread arena, whose address space is held
    // already, could give (a smaller copy may come from there despite the limit).
    const LEN: usize = 64 << 20;
    let opts = Options::default().max_message(1 << 30);
    let (mut w, r) = check!(UnixStream::pair());
    let mut rx = Receiver::from_fd(OwnedFd::from(r), "unix socketpair", &opts);
    let mut frame = (LEN as u32).to_be_bytes().to_vec();
    frame.extend((0..LEN).map(pattern_at));
    // Running before the limit is lowered, with its stack and its bytes (address space the
    // limit must not leave out).
    let (ready, started) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let _ = ready.send(());
        // The bytes stay until joined: their address space is not given back midway.
        w.write_all(&frame).map(|()| (w, frame))
    });
    check!(started.recv());
    let words = ["no memory for the 67108864", "RLIMIT_AS", "max_message"];
    let mut buf = Vec::new();
    limit_address_space(Some(96 << 20), false)?;
    let copied = rx.recv().err();
    let into = rx.recv_into(&mut buf).err();
    limit_address_space(None, false)?;
    is_limit(copied, "recv's copy", &words)?;
    is_limit(into, "recv_into's copy", &words)?;
    let got = check!(rx.recv());
    let _sent = check!(writer.join().map_err(|_| "the writer panicked")?);
    ensure!(
        is_pattern(&got, LEN),
        "after the limit was lifted, {} bytes arrived, not the {LEN} sent intact",
        got.len()
    );
    Ok(())
}

fn a_message_without_memory_for_its_copy_is_kept() -> Outcome {
    spawn(
        "no memory for a message's copy",
        "memory::copy_without_memory",
    )
}

/// After a 1 MiB message read straight into the caller's buffer, the next one is expected the
/// same size and read with its header in one call; it announces 64 MiB while the address space
/// has room for 16 MiB more: `LimitReached`, and the header and the bytes read with it go back
/// in front of the stream. Once the limit is lifted, that message arrives whole, and then the
/// one after it.
fn larger_than_expected(_: &[String]) -> Outcome {
    const FIRST: usize = 1 << 20;
    const LEN: usize = 64 << 20;
    // What comes with the header: less than the socket holds, so it is there in one write.
    const SENT: usize = 100 << 10;
    let opts = Options::default().max_message(1 << 30);
    let (mut w, r) = check!(UnixStream::pair());
    let mut rx = Receiver::from_fd(OwnedFd::from(r), "unix socketpair", &opts);
    let writer = std::thread::spawn(move || {
        let mut first = (FIRST as u32).to_be_bytes().to_vec();
        first.resize(4 + FIRST, 7);
        w.write_all(&first).map(|()| w)
    });
    let mut buf = Vec::new();
    let n = check!(rx.recv_into(&mut buf));
    let mut w = check!(writer.join().map_err(|_| "the writer panicked")?);
    ensure!(
        n == FIRST && buf.iter().all(|b| *b == 7),
        "the first message: {n} bytes"
    );
    check!(w.write_all(&(LEN as u32).to_be_bytes()));
    check!(w.write_all(&(0..SENT).map(pattern_at).collect::<Vec<u8>>()));
    let rest: Vec<u8> = (SENT..LEN)
        .map(pattern_at)
        .chain(*b"\0\0\0\x05after")
        .collect();
    let words = ["no memory for the 67108864", "RLIMIT_AS", "max_message"];
    limit_address_space(Some(16 << 20), false)?;
    let larger = rx.recv_into(&mut buf).err();
    let buffered = rx.recv_timeout(STEP).err();
    limit_address_space(None, false)?;
    is_limit(larger, "a larger message than expected", &words)?;
    is_limit(
        buffered,
        "the same, through the reader's buffer",
        &["RLIMIT_AS"],
    )?;
    let (n, _w) = while_writing(w, rest, || rx.recv_into(&mut buf))?;
    ensure!(
        n == LEN && is_pattern(&buf, LEN),
        "after the limit was lifted, {n} bytes arrived, not the {LEN} announced intact"
    );
    let next = check!(rx.recv());
    ensure!(next == b"after", "the next message: {next:?}");
    Ok(())
}

fn a_larger_message_than_expected_without_memory_is_kept() -> Outcome {
    spawn(
        "no memory for a larger message than expected",
        "memory::larger_than_expected",
    )
}

/// After a 64 MiB message read straight into the caller's buffer, the next is expected the
/// same size; the caller's buffer is a new one and the address space has room for 16 MiB
/// more: a 5-byte message still arrives (the room made for a size only guessed is not a
/// message's), and so does one of 64 MiB once the limit is lifted.
fn small_after_large(_: &[String]) -> Outcome {
    const LEN: usize = 64 << 20;
    let opts = Options::default().max_message(1 << 30);
    let (mut w, r) = check!(UnixStream::pair());
    let mut rx = Receiver::from_fd(OwnedFd::from(r), "unix socketpair", &opts);
    let mut frame = (LEN as u32).to_be_bytes().to_vec();
    frame.extend((0..LEN).map(pattern_at));
    let writer = std::thread::spawn(move || w.write_all(&frame).map(|()| (w, frame)));
    let mut buf = Vec::new();
    let n = check!(rx.recv_into(&mut buf));
    let (mut w, frame) = check!(writer.join().map_err(|_| "the writer panicked")?);
    ensure!(n == LEN, "the first message: {n} bytes");
    drop(buf);
    check!(w.write_all(b"\0\0\0\x05small"));
    let mut buf = Vec::new();
    limit_address_space(Some(16 << 20), false)?;
    let small = rx.recv_into(&mut buf);
    limit_address_space(None, false)?;
    let n = check!(small);
    ensure!(buf[..n] == *b"small", "the small message: {:?}", &buf[..n]);
    let (n, _w) = while_writing(w, frame, || rx.recv_into(&mut buf))?;
    ensure!(
        n == LEN && is_pattern(&buf, LEN),
        "then {n} bytes arrived, not the {LEN} sent intact"
    );
    Ok(())
}

fn a_small_message_needs_no_memory_for_the_large_one_before() -> Outcome {
    spawn(
        "a small message after a large one, without memory for another",
        "memory::small_after_large",
    )
}

/// A budgeted receiver: a 64 MiB message announced while the address space has room for 16 MiB
/// more is `LimitReached`, twice, and as a typed view; the budget holds the message's charge
/// once, not once per attempt, and all of it is back once the message has arrived whole.
fn budgeted(_: &[String]) -> Outcome {
    const LEN: usize = 64 << 20;
    let budget = Budget::new(256 << 20);
    let opts = Options::default()
        .max_message(1 << 30)
        .budget(budget.clone());
    let (mut w, r) = check!(UnixStream::pair());
    check!(w.write_all(&(LEN as u32).to_be_bytes()));
    check!(w.write_all(&(0..10).map(pattern_at).collect::<Vec<u8>>()));
    let mut typed = procom::typed::Receiver::<Vec<u8>>::from_untyped(Receiver::from_fd(
        OwnedFd::from(r),
        "unix socketpair",
        &opts,
    ));
    let words = ["no memory for the 671088", "RLIMIT_AS", "max_message"];
    limit_address_space(Some(16 << 20), false)?;
    let first = typed.recv_view_timeout::<&[u8]>(STEP).err();
    let charged = budget.in_use();
    let again = typed.recv_view_timeout::<&[u8]>(STEP).err();
    let charged_again = budget.in_use();
    limit_address_space(None, false)?;
    is_limit(first, "a budgeted view", &words)?;
    is_limit(again, "the same view again", &words)?;
    ensure!(
        charged > 0 && charged <= LEN + 4 && charged_again == charged,
        "the budget held {charged} bytes after the first refusal, {charged_again} after the second"
    );
    let mut rx = typed.into_untyped();
    let rest = (10..LEN).map(pattern_at).collect();
    let (got, _w) = while_writing(w, rest, || {
        rx.recv_timeout(std::time::Duration::from_secs(60))
    })?;
    ensure!(
        is_pattern(&got, LEN),
        "after the limit was lifted, {} bytes arrived, not the {LEN} announced intact",
        got.len()
    );
    ensure!(
        budget.in_use() == 0,
        "{} bytes still charged after the message arrived",
        budget.in_use()
    );
    Ok(())
}

fn a_budgeted_message_without_memory_is_charged_once() -> Outcome {
    spawn("a budgeted message without memory", "memory::budgeted")
}
