//! Async channels on tokio (feature `tokio`): [`AsyncSender`] and [`AsyncReceiver`] for every
//! endpoint, typed ones in [`crate::typed`], and [`AsyncListener`] for servers.
//!
//! They are one more face of each flavor, not a second implementation: every async call
//! tries the flavor's non-blocking path (the same code as `try_send`/`try_recv`, so the same
//! framing, checks and errors) and, when that finds the channel full or empty, waits for the
//! mechanism to be ready and tries again. The endpoint strings are those of [`crate::Sender`]
//! and [`crate::Receiver`] (an async endpoint wraps one: [`AsyncSender::new`],
//! [`AsyncReceiver::new`]). Deadlines (`_timeout`, `_deadline`) run on a timer descriptor of
//! their own, so a runtime needs only I/O enabled (`enable_io`), not time. A runtime built
//! without I/O cannot run them: tokio panics when one registers a descriptor there.
//!
//! # How each mechanism is waited on
//!
//! No runtime thread ever blocks, and nothing polls on a timer.
//!
//! | endpoint | waits on | threads |
//! |---|---|---|
//! | `-`, `fifo:`, `unix:`, `tcp:`, descriptors | the descriptor's readiness, from tokio's reactor (epoll) | none |
//! | `udp:`, `unixgram:` | the socket's readiness | none |
//! | `mq:` | the queue descriptor's readiness (Linux can poll a POSIX queue) | none |
//! | `shm:` | the ring's futex, slept on by a waiter thread | one per endpoint, started at its first wait |
//! | `msg:` | the blocking `msgrcv`/`msgsnd` itself, on a waiter thread | one per endpoint, started at its first wait |
//!
//! The kernel gives neither a System V queue nor a futex a descriptor. For those an endpoint
//! has one waiter thread of its own, never one per message: a shared-memory endpoint that
//! finds its ring empty (or full) announces itself to its peer exactly as a blocking one
//! does, and the thread sleeps on the futex in its place, waking the task when the peer
//! wakes it (so the peer sees an ordinary sleeper). The thread never touches the ring. A
//! System V endpoint has nothing to sleep on but the call: its thread makes the blocking
//! `msgrcv` (or `msgsnd`) and hands the result to the task. Neither spins: an async
//! endpoint ignores the `?spin=` of a `shm:` endpoint (a spinning task would hold up every
//! other task of its runtime thread).
//!
//! What it costs: a thread's stack (mostly untouched virtual memory) per `shm:` or `msg:`
//! endpoint that has ever waited, and on each wake-up a second thread switch: the peer wakes
//! the waiter thread, which wakes the runtime thread. `procom bench --async` measures it
//! beside the blocking figures (see BENCHMARKS.md). A message that is already there when
//! the task asks costs no thread at all. A thread ends when its endpoint is dropped: at once
//! for `shm:` (its sleep is ended); for `msg:`, once the receive it is blocked in returns
//! (a message arrives, or the queue is removed) — a message it receives for a dropped
//! receiver is put back at the end of the queue, with its type (its thread waits for room if
//! the queue filled up meanwhile, and ends once the message is back or the queue is removed).
//!
//! An idle `shm:` endpoint's waiter thread wakes every 50 ms, as a blocking endpoint does, to
//! check that the peer process is alive (a peer killed without closing is then noticed).
//!
//! # Differences from the blocking API
//!
//! - A `shm:` endpoint's `?spin=` is ignored (see above).
//! - A wait on a POSIX queue is not woken when the queue is removed meanwhile (a blocking
//!   wait notices within 100 ms and reports [`ErrorKind::PeerGone`](crate::ErrorKind)):
//!   put a deadline on waits where a removal must be noticed.
//! - With [`Options::budget`](crate::Options::budget), a message whose announced size does
//!   not fit the budget now fails at once with `LimitReached` instead of waiting for room.
//! - The typed receiver decodes from a received copy, in a buffer it keeps from one message to
//!   the next (the blocking one decodes in place, in the channel's own buffer).
//!
//! # Cancellation
//!
//! Like tokio's own, each call says whether it is cancellation safe: whether dropping its
//! future before it completes (a `tokio::select!` branch that lost, a timeout) can lose
//! anything.
//!
//! | call | cancellation safe | when dropped before it completes |
//! |---|---|---|
//! | [`AsyncReceiver::recv`], `recv_meta`, `recv_into`, `recv_timeout`, `recv_deadline`, the `Stream` | yes | no message was taken; part of a message that arrived stays buffered for the next call; a message a `msg:` waiter thread received is kept for the next call |
//! | [`AsyncSender::send`], `send_timeout`, `send_deadline` | yes | the message was not sent (it is dropped with the future, so keep a copy to send again) |
//! | [`AsyncSender::flush`] | yes | what is left stays with the sender, written by the next call |
//! | [`AsyncListener::accept`] | yes | no client was accepted |
//! | `typed::AsyncReceiver::recv` | yes | as `recv` |
//! | `typed::AsyncSender::send` | yes | as `send` |
//!
//! A send completes when the channel has taken the whole message. That is not always when
//! every byte is in the kernel: a byte stream that took only part of a frame leaves the rest
//! with the sender, which writes it before anything else (next `send` or [`flush`]); a full
//! `msg:` queue takes the message onto the waiter thread, which sends it. Either way the
//! message is delivered whole, once, in order, even if later futures are dropped. Before
//! dropping a sender whose last message must arrive, `flush` it: a frame still partly held
//! at drop is cut, and the receiver reports the cut frame (it never delivers it).
//!
//! [`flush`]: AsyncSender::flush
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
//! # rt.block_on(async {
//! use std::time::Duration;
//! let name = format!("shm:/procom-doc-aio-{}", std::process::id());
//! let mut rx = procom::AsyncReceiver::bind(&name)?;
//! let mut tx = procom::AsyncSender::connect(&name)?;
//! tx.send(b"frame").await.map_err(|e| e.into_error())?;
//! assert_eq!(rx.recv().await?, b"frame");
//! let e = rx.recv_timeout(Duration::from_millis(10)).await.unwrap_err();
//! assert_eq!(e.kind(), procom::ErrorKind::Timeout);
//! # Ok(()) })
//! # }
//! ```

mod listener;
mod receiver;
mod sender;
pub(crate) mod typed;
mod wake;

pub use listener::{AsyncConnection, AsyncListener};
pub use receiver::AsyncReceiver;
pub use sender::AsyncSender;
