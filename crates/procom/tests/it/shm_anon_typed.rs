//! Typed values sent piece by piece into the ring of an anonymous shared-memory channel: a
//! value that fails to encode midway after padding leaves no sleeper waiting for the liveness
//! period; values larger than the ring, facing a full one or failing midway leave nothing in
//! it; a child killed while encoding values into the ring leaves only whole values.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use procom::{ErrorKind, Options, Sender};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[
    Role {
        name: "shm_anon_typed::failing_encoder",
        run: failing_encoder,
    },
    Role {
        name: "shm_anon_typed::typed_streamer",
        run: typed_streamer,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "shm::anonymous::typed":
            a_value_failing_to_encode_in_the_ring_leaves_no_stall,
            large_typed_values_that_do_not_fit_are_refused_whole,
            a_child_killed_while_encoding_into_the_ring_leaves_only_whole_values;
    ]
}

/// The ring capacity of every channel here.
const CAPACITY: u64 = 64 << 10;

fn fd_of(end: Option<OwnedFd>) -> Result<OwnedFd, String> {
    end.ok_or_else(|| "an anonymous end gave no descriptor".to_string())
}

/// A value whose encoding (a pair of byte strings, `first` and `second` bytes long) fails
/// after its first byte string from the second time on: measured whole, then refused
/// midway through being written into the ring.
struct FailsMidway {
    first: usize,
    second: usize,
    calls: std::cell::Cell<u32>,
}

impl serde::Serialize for FailsMidway {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeTuple};
        let calls = self.calls.get();
        self.calls.set(calls + 1);
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(serde_bytes::Bytes::new(&vec![1u8; self.first]))?;
        if calls > 0 {
            return Err(S::Error::custom("failing midway on purpose"));
        }
        t.serialize_element(serde_bytes::Bytes::new(&vec![2u8; self.second]))?;
        t.end()
    }
}

/// Whether the thread `tid` of this process is asleep on a futex.
fn asleep_on_futex(tid: &str) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan"));
    wchan.is_ok_and(|w| w.contains("futex"))
}

/// Both ends of a 64 KiB channel, with a liveness period far longer than any scheduling
/// hiccup: a receiver thread takes a 40 KiB value and falls asleep on the empty ring; a value
/// that then fails to encode midway is reserved after padding (it does not fit before the
/// ring's end) and refused; the next 40 KiB value needs the room the padding holds. Neither
/// side may wait for the liveness period.
fn failing_encoder(_: &[String]) -> Outcome {
    procom::test_hooks::set_liveness_period(Duration::from_secs(5));
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &Options::default()));
    let mut tx = procom::typed::Sender::<serde_bytes::ByteBuf>::from_untyped(tx);
    let mut rx = procom::typed::Receiver::<serde_bytes::ByteBuf>::from_untyped(rx);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> Outcome {
        let tid = check!(std::fs::read_link("/proc/thread-self"));
        let tid = tid
            .file_name()
            .and_then(|t| t.to_str())
            .unwrap_or("")
            .to_string();
        let first = check!(rx.recv_timeout(STEP));
        ensure!(first.len() == 40_000, "first value: {} bytes", first.len());
        check!(tid_tx.send(tid));
        let second = check!(rx.recv_timeout(STEP));
        ensure!(
            second.len() == 40_000 && second.iter().all(|&b| b == 3),
            "second value"
        );
        Ok(())
    });
    check!(tx.send(serde_bytes::ByteBuf::from(vec![3u8; 40_000])));
    let tid = check!(tid_rx.recv_timeout(STEP));
    let start = std::time::Instant::now();
    while !asleep_on_futex(&tid) {
        ensure!(
            start.elapsed() < STEP,
            "the receiver thread never fell asleep"
        );
        std::thread::yield_now();
    }
    let failing = FailsMidway {
        first: 20_000,
        second: 15_000,
        calls: std::cell::Cell::new(0),
    };
    let e = tx.send_view(&failing).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::InvalidInput),
        "a value failing midway: {e:?}"
    );
    check!(tx.send(serde_bytes::ByteBuf::from(vec![3u8; 40_000])));
    receiver
        .join()
        .map_err(|_| "the receiver thread panicked")??;
    let ticks = procom::test_hooks::liveness_ticks();
    ensure!(
        ticks == 0,
        "{ticks} sleeps lasted the liveness period: a wake-up was lost after the refused value"
    );
    Ok(())
}

fn a_value_failing_to_encode_in_the_ring_leaves_no_stall() -> Outcome {
    let p = Proc::spawn(
        "failing encoder",
        &mut role("shm_anon_typed::failing_encoder", &[]),
    )?;
    p.success(STEP)?;
    Ok(())
}

/// Typed values encoded piece by piece into a 64 KiB ring: one larger than the ring is
/// `TooLarge`, one facing a full ring is handed back as `Full` by `try_send` and times out with
/// `send_timeout`, a value that fails midway is refused; none leaves anything in the ring, and
/// the values sent around them arrive whole and in order.
fn large_typed_values_that_do_not_fit_are_refused_whole() -> Outcome {
    use serde_bytes::ByteBuf;
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &Options::default()));
    let mut tx = procom::typed::Sender::<ByteBuf>::from_untyped(tx);
    let mut rx = procom::typed::Receiver::<ByteBuf>::from_untyped(rx);
    let value = |byte: u8| ByteBuf::from(vec![byte; 40_000]);
    let e = tx.send(ByteBuf::from(vec![0u8; 100_000])).err();
    ensure!(
        e.as_ref().map(|e| e.kind()) == Some(ErrorKind::TooLarge),
        "a value larger than the ring: {e:?}"
    );
    check!(tx.try_send(value(1)));
    let full = tx
        .try_send(value(2))
        .err()
        .ok_or("a second 40 KB value fit")?;
    ensure!(
        full.kind() == ErrorKind::Full,
        "a full ring: {:?}",
        full.kind()
    );
    ensure!(
        full.into_message() == value(2),
        "the value was not handed back"
    );
    let e = tx
        .send_timeout(value(2), Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Timeout),
        "send_timeout on a full ring: {e:?}"
    );
    let failing = FailsMidway {
        first: 30_000,
        second: 5_000,
        calls: std::cell::Cell::new(0),
    };
    let e = tx.try_send_view(&failing).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Full),
        "a failing value facing a full ring: {e:?}"
    );
    ensure!(check!(rx.recv_timeout(STEP)) == value(1), "value 1");
    // Measured whole again, then failing midway (after the padding its record needs).
    failing.calls.set(0);
    let e = tx.try_send_view(&failing).err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::InvalidInput),
        "a value failing midway: {e:?}"
    );
    // Nothing of it was published (the receive skips the padding it was reserved after).
    let e = rx.try_recv().err().map(|e| e.kind());
    ensure!(
        e == Some(ErrorKind::Empty),
        "after the refused value: {e:?}"
    );
    check!(tx.try_send(value(3)));
    ensure!(check!(rx.recv_timeout(STEP)) == value(3), "value 3");
    let e = rx.try_recv().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "after the last value: {e:?}");
    Ok(())
}

/// Typed value `i`: 40,000 bytes (encoded piece by piece into the ring), each telling `i`.
fn typed_value(i: u32) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(
        (0..40_000u32)
            .map(|k| k.wrapping_mul(31).wrapping_add(i) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Takes up the sending end handed on standard input and sends typed values until killed.
fn typed_streamer(_: &[String]) -> Outcome {
    let tx = check!(Sender::from_shm_fd(
        check!(std::io::stdin().as_fd().try_clone_to_owned()),
        &Options::default()
    ));
    let mut tx = procom::typed::Sender::<serde_bytes::ByteBuf>::from_untyped(tx);
    for i in 0u32.. {
        check!(tx.send(typed_value(i)));
    }
    Ok(())
}

fn a_child_killed_while_encoding_into_the_ring_leaves_only_whole_values() -> Outcome {
    let (tx, rx) = check!(procom::shm::channel(CAPACITY, &Options::default()));
    let mut rx = procom::typed::Receiver::<serde_bytes::ByteBuf>::from_untyped(rx);
    let mut cmd = role("shm_anon_typed::typed_streamer", &[]);
    cmd.stdin(fd_of(tx.into_fd())?);
    let mut child = Proc::spawn("typed streamer", &mut cmd)?;
    drop(cmd);
    let mut i = 0u32;
    loop {
        match rx.recv_timeout(STEP) {
            Ok(v) => {
                ensure!(
                    v == typed_value(i),
                    "value {i} arrived torn or out of order"
                );
                i += 1;
                if i == 50 {
                    check!(child.child().kill());
                    let _ = child.child().wait();
                }
            }
            Err(e) if e.kind() == ErrorKind::PeerGone && i >= 50 => return Ok(()),
            Err(e) => return Err(format!("after {i} values: {e}")),
        }
    }
}
