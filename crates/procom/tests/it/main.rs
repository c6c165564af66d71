//! procom's integration tests: one binary, one module per mechanism, run by procom-testkit
//! (libtest-compatible output; the binary re-executes itself to play child roles).

// A test function left out of its module's `trials!` list is never used: the build fails.
#![deny(dead_code)]

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

modules![contract, fifo, mq, msg, pipe, sem, shm, signal, socket];
