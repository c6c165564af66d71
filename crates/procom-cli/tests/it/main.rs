//! CLI integration tests: every test runs the built `procom` binary as a real process.

// A test function left out of its module's `trials!` list is never used: the build fails.
#![deny(dead_code)]

mod common;

/// The test binary's `main` over these modules: their roles and trials are gathered from
/// them. (The modules are declared outside the macro, where rustfmt sees them; one declared
/// but left out here is unused, and the build fails.)
macro_rules! main_of {
    ($($m:ident),* $(,)?) => {
        fn main() -> std::process::ExitCode {
            let roles: Vec<procom_testkit::Role> = [$($m::ROLES),*].concat();
            let trials = [$($m::trials()),*].into_iter().flatten().collect();
            procom_testkit::main(&roles, trials)
        }
    };
}

mod bench;
mod exit;
mod fifo;
mod garbage;
mod listen;
mod ls;
mod mq;
mod msg;
mod packet;
mod relay;
mod rm;
mod security;
mod shm;
mod signal;
mod socket;
mod stdio;

main_of![
    bench, exit, fifo, garbage, listen, ls, mq, msg, packet, relay, rm, security, shm, signal,
    socket, stdio
];
