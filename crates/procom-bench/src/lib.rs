//! procom's benchmark scenarios, shared by `procom bench` (and, later, the peers comparison).
//!
//! Every scenario runs process to process: the parent spawns the `procom` executable as a peer
//! (its hidden `__bench-peer` subcommand calls [`peer`]), and every payload is really written
//! and read on both sides.
//!
//! - **Ping-pong latency**: the parent sends a message, the peer echoes it, the parent records
//!   half the round trip (one-way latency) in an HdrHistogram; p50, p99 and p99.9 are reported.
//! - **Streaming throughput**: the parent sends N messages back to back; the peer receives
//!   them all and acknowledges; msgs/s and MB/s follow from the elapsed time.
//! - **The machine's limits**, measured in the same run: a cache-line ping-pong between two
//!   processes over shared memory (one-way ns) and memcpy bandwidth, so results can be read as
//!   ratios that move less between machines and runs than raw numbers.
//!
//! Blocking mode (the receiver sleeps in the kernel) and spin mode (the receiver busy-polls)
//! are separate rows, never mixed. Only the shared-memory channel has a spin mode: every other
//! mechanism waits in a system call either way.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

// Layers, bottom up (a module uses only those below it): scenario (with `bench_error`, `unique`
// and the batch schedule); link; process; raw; measure; handoff and machine; wiring; async_rows;
// peers (feature `peers`); peer_side.
mod async_rows;
mod handoff;
mod leftovers;
mod link;
mod machine;
mod measure;
mod peer_side;
#[cfg(feature = "peers")]
pub mod peers;
mod process;
mod raw;
mod scenario;
mod wiring;

pub use async_rows::{has_async, run_async};
pub use handoff::block_raw_signal;
pub use leftovers::{abandon, on_peer_killed, tidy};
pub use machine::{Limits, limits};
pub use measure::Measurement;
pub use peer_side::peer;
pub use process::pin;
pub use scenario::{MAX_SIZE, Mechanism, Mode, Profile, SIZES, Scenario};
pub use wiring::run;
