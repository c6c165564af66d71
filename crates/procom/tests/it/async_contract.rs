//! The async (tokio) face of every flavor, as properties of the channel contract (so each runs
//! for every flavor, across two processes, by `contract!`): `async_exactly_once` drops send
//! and receive futures at random points under load and checks that every message arrives
//! exactly once, whole and in order; `async_typed` sends typed values through the async
//! typed channel. Their trial names contain `async`, which is how CI selects the async tests.
//!
//! UDP may lose datagrams, so there `async_exactly_once` checks "at most once, whole and in
//! order", and that every gap is counted as lost.

use procom_testkit::{Role, Trial};

use crate::contract::Property;

#[cfg(feature = "tokio")]
pub const PROPERTIES: &[Property] = &[
    Property {
        name: "async_exactly_once",
        send: imp::once_send,
        recv: imp::once_recv,
        parent: crate::contract::no_step,
        sender_survives: true,
    },
    Property {
        name: "async_typed",
        send: imp::typed_send,
        recv: imp::typed_recv,
        parent: crate::contract::no_step,
        sender_survives: true,
    },
];
#[cfg(not(feature = "tokio"))]
pub const PROPERTIES: &[Property] = &[];

#[rustfmt::skip]
pub const ROLES: &[Role] = &[
    #[cfg(feature = "tokio")]
    Role { name: "async_contract::hello_client", run: imp::hello_client },
    #[cfg(feature = "tokio")]
    Role { name: "async_contract::wrap_receiver", run: imp::wrap_receiver },
    #[cfg(feature = "tokio")]
    Role { name: "async_contract::wrap_sender", run: imp::wrap_sender },
    #[cfg(feature = "tokio")]
    Role { name: "async_contract::send_one", run: imp::send_one },
];

pub fn trials() -> Vec<Trial> {
    procom_testkit::trials![
        "async_listener":
            #[cfg(feature = "tokio")]
            unix_serves_clients_at_once,
            #[cfg(feature = "tokio")]
            tcp_serves_clients_at_once;
        "async_shm":
            #[cfg(feature = "tokio")]
            waits_never_end_by_the_liveness_tick;
        "async_msg":
            #[cfg(feature = "tokio")]
            a_dropped_receiver_loses_no_message;
    ]
}

#[cfg(feature = "tokio")]
fn unix_serves_clients_at_once() -> procom_testkit::Outcome {
    let scratch = procom_testkit::Scratch::new("procom-al")?;
    let ep = format!("unix:{}", scratch.join("srv").display());
    imp::serve_clients_at_once(&ep)?;
    scratch.finish()
}

#[cfg(feature = "tokio")]
fn tcp_serves_clients_at_once() -> procom_testkit::Outcome {
    imp::serve_clients_at_once("tcp:127.0.0.1:0")
}

/// A 4 KiB ring and messages of sizes that make nearly every send wait for room or for a
/// padding record to be skipped, between an async receiver and an async sender whose waiter
/// threads sleep on the futex: with the liveness period at 5 s, a wait that ends by the tick
/// instead of a wake-up is a lost wake-up, and fails the side that saw it.
#[cfg(feature = "tokio")]
fn waits_never_end_by_the_liveness_tick() -> procom_testkit::Outcome {
    use procom_testkit::{Proc, STEP, ensure, role};
    let name = format!("/{}", procom_testkit::unique_name("procom-aw"));
    let ep = format!("shm:{name}?capacity=4KiB");
    let mut rx = Proc::spawn(
        "receiver",
        &mut role("async_contract::wrap_receiver", &[&ep]),
    )?;
    rx.expect_line("ready")?;
    let tx = Proc::spawn("sender", &mut role("async_contract::wrap_sender", &[&ep]))?;
    tx.success(STEP)?;
    rx.success(STEP)?;
    let path = std::path::PathBuf::from(format!("/dev/shm{name}"));
    ensure!(!path.exists(), "leaked {name}");
    Ok(())
}

/// A System V receive runs on the waiter thread, which blocks in `msgrcv`: an async receiver
/// dropped while it waits leaves that thread to take the next message, which it must put
/// back on the queue. Sent by another process after the drop; received by a blocking
/// receiver, which is not waiting meanwhile, so the thread takes it first.
#[cfg(feature = "tokio")]
fn a_dropped_receiver_loses_no_message() -> procom_testkit::Outcome {
    use procom_testkit::{Proc, STEP, check, ensure, role};
    let ep = format!("msg:{:#x}?type=7", crate::contract::unique_key());
    let mut owner = check!(procom::Receiver::bind(ep.as_str()));
    let rt = check!(
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
    );
    rt.block_on(async {
        let mut waiting = check!(procom::AsyncReceiver::connect(ep.as_str()));
        ensure!(
            imp::cancel_after(waiting.recv(), 0).await.is_none(),
            "a message on a queue nobody sent to"
        );
        Ok(())
    })?;
    let sender = Proc::spawn("sender", &mut role("async_contract::send_one", &[&ep]))?;
    sender.success(STEP)?;
    let m = check!(owner.recv_timeout(STEP));
    ensure!(m == b"only one", "got {m:?}");
    Ok(())
}

#[cfg(feature = "tokio")]
mod imp {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Duration;

    use procom::{AsyncReceiver, AsyncSender, ErrorKind, Options};
    use procom_testkit::{Outcome, STEP, check, ensure};

    use crate::contract::{flavor_max, is_queue, open_rx, ready};

    /// Messages per run: enough that futures are dropped at every stage of a send and a
    /// receive (waiting for room, part-way through a frame, waiting for a message).
    const N: u64 = 3000;

    /// A small xorshift generator: the points where futures are dropped.
    struct Rng(u64);

    impl Rng {
        fn new() -> Rng {
            Rng(u64::from(std::process::id()) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// The size of message `seq`: mostly small, every 16th large (larger than a pipe's or a
    /// socket's buffer on byte streams), within what the flavor carries.
    fn size(seq: u64, ep: &str) -> usize {
        let big = if is_queue(ep) { 8000 } else { 300_000 };
        let n = if seq % 16 == 15 {
            big
        } else {
            (seq as usize * 37) % 2000
        };
        (n + 8).min(flavor_max(ep))
    }

    /// Message `seq`: its number, then bytes that depend on it.
    fn message(seq: u64, ep: &str) -> Vec<u8> {
        let mut m = seq.to_le_bytes().to_vec();
        m.extend((8..size(seq, ep)).map(|i| (i as u64 ^ seq) as u8));
        m
    }

    fn runtime() -> Result<tokio::runtime::Runtime, String> {
        Ok(check!(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        ))
    }

    /// Polls `fut` until it completes or has returned `Pending` `polls` + 1 times; then drops
    /// it (`None`).
    pub async fn cancel_after<F: Future>(fut: F, polls: u64) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let mut pending = 0;
        std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if pending >= polls => Poll::Ready(None),
            Poll::Pending => {
                pending += 1;
                Poll::Pending
            }
        })
        .await
    }

    /// One step of a loop that drops futures: by poll count, or by a race against a timer
    /// of a few microseconds (`tokio::select!`), or not at all.
    async fn maybe_cancelled<F: Future>(fut: F, rng: &mut Rng) -> Option<F::Output> {
        match rng.next() % 4 {
            0 => Some(fut.await),
            1 => {
                tokio::select! {
                    v = fut => Some(v),
                    () = tokio::time::sleep(Duration::from_micros(rng.next() % 200)) => None,
                }
            }
            _ => cancel_after(fut, rng.next() % 3).await,
        }
    }

    pub fn once_send(ep: &str) -> Outcome {
        runtime()?.block_on(async {
            let mut tx = check!(AsyncSender::connect(ep));
            let mut rng = Rng::new();
            for seq in 0..N {
                let msg = message(seq, ep);
                // A dropped send sent nothing: send the same message again.
                loop {
                    match maybe_cancelled(tx.send(&msg[..]), &mut rng).await {
                        Some(Ok(())) => break,
                        Some(Err(e)) => return Err(format!("send {seq}: {e}")),
                        None => {}
                    }
                }
            }
            loop {
                if let Some(r) = maybe_cancelled(tx.flush(), &mut rng).await {
                    check!(r);
                    break;
                }
            }
            Ok(())
        })
    }

    pub fn once_recv(ep: &str, mode: &str) -> Outcome {
        let rx = open_rx(ep, mode, &Options::default())?;
        runtime()?.block_on(async {
            let mut rx = AsyncReceiver::new(rx);
            // No sender exists before `ready`: this receive must wait, and is dropped waiting.
            ensure!(
                cancel_after(rx.recv(), 0).await.is_none(),
                "a message before the sender started"
            );
            ready();
            let mut rng = Rng::new();
            let lossy = ep.starts_with("udp:");
            let (mut expect, mut dropped) = (0u64, 1u64);
            while expect < N {
                // UDP may lose the last datagrams: half a second of silence ends the run.
                let wait = match (lossy, expect) {
                    (true, 1..) => Duration::from_millis(500),
                    _ => STEP,
                };
                let Some(r) = maybe_cancelled(rx.recv_timeout(wait), &mut rng).await else {
                    dropped += 1;
                    continue;
                };
                let r = match r {
                    Err(e) if lossy && expect > 0 && e.kind() == ErrorKind::Timeout => break,
                    r => r,
                };
                let m = r.map_err(|e| format!("receive {expect}: {e}"))?;
                ensure!(m.len() >= 8, "a {}-byte message", m.len());
                let seq = u64::from_le_bytes(check!(m[..8].try_into()));
                if lossy {
                    ensure!(seq >= expect, "got {seq} after {}", expect - 1);
                } else {
                    ensure!(seq == expect, "expected message {expect}, got {seq}");
                }
                ensure!(m == message(seq, ep), "message {seq} arrived changed");
                expect = seq + 1;
            }
            println!("{dropped} receive futures dropped");
            if lossy {
                // Whatever arrived was whole and in order; every gap is counted as lost.
                let stats = rx.get_ref().datagram_stats().ok_or("no datagram stats")?;
                ensure!(
                    stats.received + stats.lost == expect,
                    "received {} + lost {} != {expect} sent up to the last seen",
                    stats.received,
                    stats.lost
                );
                return Ok(());
            }
            // Nothing more: the sender's end (streams), or silence (queues, datagrams).
            let quiet = if is_queue(ep) {
                Duration::from_millis(200)
            } else {
                STEP
            };
            match rx.recv_timeout(quiet).await {
                Err(e) if e.kind() == ErrorKind::PeerGone && !is_queue(ep) => {}
                Err(e) if e.kind() == ErrorKind::Timeout && is_queue(ep) => {}
                Err(e) => return Err(format!("after the last message: {e}")),
                Ok(m) => return Err(format!("a {}-byte message after the last", m.len())),
            }
            Ok(())
        })
    }

    /// Clients that say hello and wait for "all here", which the server sends only once
    /// every client has said hello: a server that served one connection at a time would never
    /// get there.
    const CLIENTS: usize = 3;

    /// A client: says hello, waits for "all here", then has 50 messages echoed.
    pub fn hello_client(args: &[String]) -> Outcome {
        let [ep] = args else {
            return Err(format!("bad arguments {args:?}"));
        };
        let ep = check!(procom::Endpoint::parse(ep));
        let (mut tx, mut rx) = check!(procom::socket::connect(&ep, &Options::default()));
        let me = std::process::id();
        check!(
            tx.send(format!("hello from {me}"))
                .map_err(|e| e.into_error())
        );
        ensure!(
            check!(rx.recv_timeout(STEP)) == b"all here",
            "no \"all here\""
        );
        for i in 0..50 {
            let m = format!("{me} {i}");
            check!(tx.send(&m).map_err(|e| e.into_error()));
            ensure!(check!(rx.recv_timeout(STEP)) == m.as_bytes(), "echo {i}");
        }
        Ok(())
    }

    pub fn serve_clients_at_once(ep: &str) -> Outcome {
        use procom::aio::AsyncListener;
        runtime()?.block_on(async {
            let ep = check!(procom::Endpoint::parse(ep));
            let mut server = check!(AsyncListener::bind(&ep, &Options::default()));
            let at = server.local_endpoint().to_string();
            let mut clients = Vec::new();
            for _ in 0..CLIENTS {
                let mut cmd = procom_testkit::role("async_contract::hello_client", &[&at]);
                clients.push(procom_testkit::Proc::spawn("client", &mut cmd)?);
            }
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                let mut c = check!(server.accept().await);
                let hello = check!(c.receiver.recv().await);
                ensure!(hello.starts_with(b"hello from "), "got {hello:?}");
                conns.push(c);
            }
            // Every connection on its own task of this one thread.
            let mut tasks = tokio::task::JoinSet::new();
            for mut c in conns {
                tasks.spawn(async move {
                    c.sender
                        .send(b"all here")
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut echoed = 0;
                    loop {
                        match c.receiver.recv().await {
                            Ok(m) => c.sender.send(m).await.map_err(|e| e.to_string())?,
                            Err(e) if e.kind() == ErrorKind::PeerGone => return Ok(echoed),
                            Err(e) => return Err(e.to_string()),
                        }
                        echoed += 1;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                let echoed: usize = check!(check!(r));
                ensure!(echoed == 50, "echoed {echoed} messages of 50");
            }
            for c in clients {
                c.success(STEP)?;
            }
            Ok(())
        })
    }

    /// Sends one message to `args[0]` with the blocking API.
    pub fn send_one(args: &[String]) -> Outcome {
        let [ep] = args else {
            return Err(format!("bad arguments {args:?}"));
        };
        let mut tx = check!(procom::Sender::connect(ep.as_str()));
        check!(tx.send(b"only one").map_err(|e| e.into_error()));
        Ok(())
    }

    const WRAP_SIZES: [usize; 6] = [1528, 3064, 2048, 504, 3584, 1016];
    const WRAP_MESSAGES: usize = 3000;

    fn wrap_message(i: usize) -> Vec<u8> {
        vec![i as u8; WRAP_SIZES[i % WRAP_SIZES.len()]]
    }

    pub fn wrap_receiver(args: &[String]) -> Outcome {
        procom::test_hooks::set_liveness_period(Duration::from_secs(5));
        let [ep] = args else {
            return Err(format!("bad arguments {args:?}"));
        };
        let mut rx = check!(AsyncReceiver::bind(ep.as_str()));
        ready();
        runtime()?.block_on(async {
            // The sender process may take a while to start: count from the first message.
            ensure!(check!(rx.recv().await) == wrap_message(0), "message 0");
            let ticks = procom::test_hooks::liveness_ticks();
            for i in 1..WRAP_MESSAGES {
                let m = check!(rx.recv().await);
                ensure!(
                    procom::test_hooks::liveness_ticks() == ticks,
                    "receiving message {i} waited for the liveness tick (lost wake-up)"
                );
                ensure!(m == wrap_message(i), "message {i}: {} bytes", m.len());
            }
            Ok(())
        })
    }

    pub fn wrap_sender(args: &[String]) -> Outcome {
        procom::test_hooks::set_liveness_period(Duration::from_secs(5));
        let [ep] = args else {
            return Err(format!("bad arguments {args:?}"));
        };
        runtime()?.block_on(async {
            let mut tx = check!(AsyncSender::connect(ep.as_str()));
            for i in 0..WRAP_MESSAGES {
                check!(tx.send(wrap_message(i)).await.map_err(|e| e.into_error()));
                ensure!(
                    procom::test_hooks::liveness_ticks() == 0,
                    "sending message {i} waited for the liveness tick (lost wake-up)"
                );
            }
            Ok(())
        })
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Reading {
        seq: u32,
        sensor: String,
        values: Vec<f32>,
    }

    fn reading(seq: u32) -> Reading {
        Reading {
            seq,
            sensor: format!("s{}", seq % 7),
            values: (0..seq % 9).map(|v| v as f32 / 2.0).collect(),
        }
    }

    pub fn typed_send(ep: &str) -> Outcome {
        runtime()?.block_on(async {
            let mut tx = check!(procom::typed::AsyncSender::<Reading>::connect(ep));
            for i in 0..200 {
                tx.send(reading(i)).await.map_err(|e| e.to_string())?;
            }
            check!(tx.flush().await);
            Ok(())
        })
    }

    pub fn typed_recv(ep: &str, mode: &str) -> Outcome {
        let rx = open_rx(ep, mode, &Options::default())?;
        ready();
        runtime()?.block_on(async {
            let mut rx = procom::typed::AsyncReceiver::<Reading>::from_untyped(rx);
            for i in 0..200 {
                let r = check!(rx.recv_timeout(STEP).await);
                ensure!(r == reading(i), "got {r:?}");
            }
            Ok(())
        })
    }
}
