//! Anonymous shared-memory channels behind the async API (feature `tokio`): an
//! `AsyncReceiver` whose sending end was handed to a child that is killed mid-stream gets
//! every whole message, then `PeerGone`; an `AsyncSender` whose receiving end's child is killed
//! finds it gone.

use std::os::fd::OwnedFd;

use procom::aio::{AsyncReceiver, AsyncSender};
use procom::{ErrorKind, Options};
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "shm::anonymous::async":
            an_async_receiver_sees_a_killed_child_gone_after_its_messages,
            an_async_sender_sees_a_killed_receiving_child_gone;
    ]
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn fd_of(end: Option<OwnedFd>) -> Result<OwnedFd, String> {
    end.ok_or_else(|| "an anonymous end gave no descriptor".to_string())
}

/// `shm_anon::streamer`'s message `i` (1000 bytes).
fn msg(i: u32) -> Vec<u8> {
    (0..1000usize)
        .map(|k| (k as u32).wrapping_mul(131).wrapping_add(i.wrapping_mul(7)) as u8)
        .collect()
}

fn an_async_receiver_sees_a_killed_child_gone_after_its_messages() -> Outcome {
    let (tx, rx) = check!(procom::shm::channel(64 << 10, &Options::default()));
    let mut cmd = role("shm_anon::streamer", &[]);
    cmd.stdin(fd_of(tx.into_fd())?);
    let mut child = Proc::spawn("streamer", &mut cmd)?;
    drop(cmd);
    runtime()?.block_on(async {
        let mut rx = AsyncReceiver::new(rx);
        let mut i = 0u32;
        loop {
            let got = tokio::time::timeout(STEP, rx.recv())
                .await
                .map_err(|_| format!("nothing after {i} messages"))?;
            match got {
                Ok(m) => {
                    ensure!(m == msg(i), "message {i} arrived torn or out of order");
                    i += 1;
                    if i == 100 {
                        check!(child.child().kill());
                        let _ = child.child().wait();
                    }
                }
                Err(e) if e.kind() == ErrorKind::PeerGone && i >= 100 => return Ok(()),
                Err(e) => return Err(format!("after {i} messages: {e}")),
            }
        }
    })
}

fn an_async_sender_sees_a_killed_receiving_child_gone() -> Outcome {
    let (tx, rx) = check!(procom::shm::channel(64 << 10, &Options::default()));
    let mut cmd = role("shm_anon::holder", &[]);
    cmd.stdin(fd_of(rx.into_fd())?);
    let mut child = Proc::spawn("holder", &mut cmd)?;
    drop(cmd);
    child.expect_line("holding")?;
    runtime()?.block_on(async {
        let mut tx = AsyncSender::new(tx);
        // Fill the ring while the child holds the end: a send then waits, it is not refused.
        let mut sent = 0u32;
        loop {
            match tx.try_send(msg(sent)) {
                Ok(()) => sent += 1,
                Err(e) if e.kind() == ErrorKind::Full => break,
                Err(e) => return Err(format!("filling: {}", e.into_error())),
            }
        }
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(200), tx.send(msg(0))).await;
        ensure!(
            waited.is_err(),
            "a send into a full ring of a live receiver: {waited:?}"
        );
        check!(child.child().kill());
        let _ = child.child().wait();
        let got = tokio::time::timeout(STEP, tx.send(msg(0)))
            .await
            .map_err(|_| "the receiver's death went unnoticed")?;
        let kind = got.err().map(|e| e.kind());
        ensure!(
            kind == Some(ErrorKind::PeerGone),
            "after the kill: {kind:?} ({sent} sent)"
        );
        Ok(())
    })
}
