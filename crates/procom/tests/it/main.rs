//! procom's integration tests: one binary, one module per mechanism, run by procom-testkit
//! (libtest-compatible output; the binary re-executes itself to play child roles).

// A test function left out of its module's `trials!` list is never used: the build fails.
#![deny(dead_code)]

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

mod async_contract;
mod contract;
mod fifo;
mod mq;
mod msg;
mod pipe;
mod removal;
mod sem;
mod shm;
mod signal;
mod socket;

main_of![
    async_contract,
    contract,
    fifo,
    mq,
    msg,
    pipe,
    removal,
    sem,
    shm,
    signal,
    socket
];
