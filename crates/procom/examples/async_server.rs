//! One tokio task serving a POSIX queue, a shared-memory channel, a Unix socket and signals
//! at once (`tokio::select!`), with no thread per mechanism.
//!
//! ```text
//! cargo run -p procom --features tokio --example async_server
//! # in another shell, with the names it prints:
//! procom send mq:/procom-example-PID 'job 1'
//! procom send shm:/procom-example-PID 'frame 1'
//! procom send unix:/tmp/procom-example-PID.sock hello     # lines, replied to
//! kill -USR1 PID      # counted; Ctrl-C or kill PID ends it (the queue, the segment and
//!                     # the socket file are removed)
//! ```

use std::task::{Context, Poll};

use futures_core::Stream;
use procom::aio::{AsyncConnection, AsyncListener};
use procom::signal::{AsyncSignals, Signal};
use procom::{AsyncReceiver, Endpoint, Error, Framing, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let pid = std::process::id();
    // Each receiver creates its object and removes it when dropped.
    let mut jobs = AsyncReceiver::bind(format!("mq:/procom-example-{pid}"))?;
    let mut frames = AsyncReceiver::bind(format!("shm:/procom-example-{pid}"))?;
    let socket = std::env::temp_dir().join(format!("procom-example-{pid}.sock"));
    // Lines on the socket, so `procom send`, `socat` and `nc -U` can talk to it.
    let lines = Options::default().framing(Framing::Lines);
    let mut server = AsyncListener::bind(
        &Endpoint::parse(&format!("unix:{}", socket.display()))?,
        &lines,
    )?;
    let mut signals = AsyncSignals::catch([Signal::INT, Signal::TERM, Signal::USR1])?;
    let mut clients: Vec<AsyncConnection> = Vec::new();
    println!(
        "pid {pid}: serving {}, {}, {}",
        jobs.endpoint(),
        frames.endpoint(),
        server.local_endpoint()
    );

    let mut usr1 = 0;
    loop {
        // Every receive here is cancellation safe: the branches that lose a round lose nothing.
        tokio::select! {
            job = jobs.recv_meta() => {
                let (job, meta) = job?;
                println!("queue: {} (priority {})", String::from_utf8_lossy(&job), meta.priority.unwrap_or(0));
            }
            frame = frames.recv() => match frame {
                Ok(f) => println!("shared memory: {}", String::from_utf8_lossy(&f)),
                // Its sender closed: a fresh channel for the next one (the old one's name
                // is removed when it is dropped, then bound again).
                Err(e) if e.kind() == procom::ErrorKind::PeerGone => {
                    let name = frames.endpoint().to_string();
                    drop(frames);
                    frames = AsyncReceiver::bind(&name)?;
                }
                Err(e) => return Err(e),
            },
            conn = server.accept() => {
                let conn = conn?;
                println!("socket: a client connected (pid {:?})", conn.peer.pid);
                clients.push(conn);
            }
            (i, msg) = std::future::poll_fn(|cx| any_client(&mut clients, cx)) => match msg {
                Ok(m) => {
                    println!("socket: {}", String::from_utf8_lossy(&m));
                    // Never waits for a slow client: one that left, or reads nothing, is dropped.
                    let reply = format!("got {} bytes", m.len());
                    if clients[i].sender.try_send(reply).is_err() {
                        clients.swap_remove(i);
                    }
                }
                Err(_) => {
                    println!("socket: a client left");
                    clients.swap_remove(i);
                }
            },
            sig = std::future::poll_fn(|cx| std::pin::Pin::new(&mut signals).poll_next(cx)) => {
                let Some(sig) = sig else { break };
                if sig.signal == Signal::USR1 {
                    usr1 += 1;
                    println!("signal: SIGUSR1 from pid {} ({usr1} so far)", sig.sender_pid);
                } else {
                    println!("signal: {}, shutting down", sig.signal);
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The next message from any connected client, with the client's index.
fn any_client(
    clients: &mut [AsyncConnection],
    cx: &mut Context<'_>,
) -> Poll<(usize, Result<Vec<u8>, Error>)> {
    for (i, c) in clients.iter_mut().enumerate() {
        if let Poll::Ready(r) = c.receiver.poll_recv(cx) {
            return Poll::Ready((i, r));
        }
    }
    Poll::Pending
}
