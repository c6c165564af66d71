//! CLI integration tests: every test runs the built `procom` binary as a real process.

// A test function left out of its module's `trials!` list is never used: the build fails.
#![deny(dead_code)]

mod common;

/// Lists every test module once: its roles and trials are gathered from it.
macro_rules! modules {
    ($($m:ident),* $(,)?) => {
        $(mod $m;)*
        fn main() -> std::process::ExitCode {
            let roles: Vec<procom_testkit::Role> = [$($m::ROLES),*].concat();
            let trials = [$($m::trials()),*].into_iter().flatten().collect();
            procom_testkit::main(&roles, trials)
        }
    };
}

modules![bench, exit, fifo, listen, mq, msg, shm, signal, socket];
