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

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;

use procom::{Error, ErrorKind};

mod handoff;
mod link;
mod machine;
mod measure;
#[cfg(feature = "peers")]
pub mod peers;
mod raw;
mod scenario;
mod wiring;

pub use machine::{Limits, limits};
pub use measure::Measurement;
pub use scenario::{Mechanism, Mode, Profile, SIZES, Scenario};
pub use wiring::{peer, pin, run};

// What peers.rs takes from the crate root.
#[cfg(feature = "peers")]
pub(crate) use link::{Link, poll_politely};
#[cfg(feature = "peers")]
pub(crate) use measure::{drive, serve};
#[cfg(feature = "peers")]
pub(crate) use wiring::{child_result, finish, peer_args, run_beside, spawn};

fn bench_error(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Io)
        .detail(what.into())
        .object("bench")
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
