//! Test support for procom's integration tests (never a dependency of shipped code).
//!
//! - [`main`] runs a test binary: either as the harness (libtest-compatible output and
//!   filters, via libtest-mimic) or, when re-executed by a test, as one named child [`Role`].
//! - [`trials!`] registers test functions by name (the trial's name is the function's), and
//!   [`test()`] wraps a test in a watchdog so a hang fails in seconds instead of stalling CI.
//! - [`needs`] states what a trial needs (root, a tool, a namespace): checked just before it
//!   runs, an unmet need reports the trial as ignored with the reason, never as passed.
//! - [`wait_for_socket`] and its shorthands learn that a server is ready (and on which port)
//!   from the kernel's socket tables, without binding or connecting to anything.
//! - [`Proc`] is a child process under a deadline: its output lines arrive on a channel, it
//!   is killed if still running when dropped.
//! - [`Scratch`] is a unique directory that must be empty at the end (the leak check for
//!   named objects); [`unique_name`] makes names for objects that live elsewhere.
//! - [`Seen`] is a named object as the kernel shows it (inode, mode, owner, content): what
//!   a security test compares before and after procom meets an object someone planted.
//! - Every role checks that it leaked no file descriptor before it exits.

use std::time::Duration;

pub use libtest_mimic::Trial;

/// What a test or role returns: `Err` carries the failure's explanation.
pub type Outcome = Result<(), String>;

/// How long one test may run before the watchdog fails it.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// How long a child role may run before it kills itself.
pub const ROLE_LIMIT: Duration = Duration::from_secs(45);
/// The default wait for one step of a conversation with a child.
pub const STEP: Duration = Duration::from_secs(20);

/// Environment variable that tells a re-executed test binary which role to play.
const ROLE_VAR: &str = "PROCOM_IT_ROLE";
/// Environment variable that gives a role another limit than [`ROLE_LIMIT`] (seconds).
const ROLE_LIMIT_VAR: &str = "PROCOM_IT_ROLE_LIMIT";

/// Returns `Err(message)` from the enclosing function unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{} (at {}:{})", format!($($fmt)+), file!(), line!()));
        }
    };
}

/// Turns any displayable error into the test's `Err(String)`, noting where it happened.
#[macro_export]
macro_rules! check {
    ($e:expr) => {
        $e.map_err(|e| format!("{}: {} (at {}:{})", stringify!($e), e, file!(), line!()))?
    };
}

/// What a trial may need from the machine it runs on. A trial lists its needs where it is
/// registered ([`trials!`]); each is checked just before the trial runs, and an unmet one
/// reports it as ignored with the reason (`ignored (needs root: ...)`), never as passed.
pub mod needs;

mod harness;
mod objects;
mod proc;
mod scratch;
mod sockets;

pub use harness::{
    Role, copies_of_open_files, fds_of, main, open_fds, role, role_unshared, role_within, test,
    test_needing, test_within,
};
pub use objects::{Seen, Sysv, path_seen, queue_seen, sysv_seen};
pub use proc::{Finished, Proc, address_space, as_nobody, wait_pid};
pub use scratch::{PLANTED, Plant, Planted, Scratch, plant, unique_name};
pub use sockets::{
    Socket, refusing_tcp_port, sockets_of, tcp_listening, udp_bound, unix_listening,
    wait_for_socket,
};
