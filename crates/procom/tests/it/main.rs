//! procom's integration tests: one binary, one module per mechanism, run by procom-testkit
//! (libtest-compatible output; the binary re-executes itself to play child roles).

// A test function left out of its module's `trials!` list is never used: the build fails.
#![deny(dead_code)]

/// The test binary's `main` over these modules: their roles and trials are gathered from
/// them. (The modules are declared outside the macro, where rustfmt sees them; one declared
/// but left out here is unused, and the build fails.)
/// Modules after `tokio:` exist only with the `tokio` feature (`cargo test -p procom
/// --features tokio --test it async` runs them).
macro_rules! main_of {
    ($($m:ident),* $(,)? ; tokio: $($a:ident),* $(,)?) => {
        fn main() -> std::process::ExitCode {
            #[allow(unused_mut)]
            let mut roles: Vec<procom_testkit::Role> = [$($m::ROLES),*].concat();
            #[allow(unused_mut)]
            let mut trials: Vec<procom_testkit::Trial> =
                [$($m::trials()),*].into_iter().flatten().collect();
            #[cfg(feature = "tokio")]
            {
                roles.extend([$($a::ROLES),*].concat());
                trials.extend([$($a::trials()),*].into_iter().flatten());
            }
            procom_testkit::main(&roles, trials)
        }
    };
}

mod async_contract;
mod chaos;
mod contract;
mod exhaustion;
mod fifo;
// The flavors chaos and soak run: no trials of its own.
mod flavors;
mod garbage;
mod memory;
mod mq;
mod msg;
mod packet;
mod pipe;
mod removal;
mod security;
mod sem;
mod shm;
mod shm_anon;
mod shm_anon_hostile;
mod shm_anon_typed;
mod signal;
mod signal_wait;
mod soak;
mod socket;
mod stream;
// Checked traffic for chaos and soak: no trials of its own.
mod traffic;
mod typed;

#[cfg(feature = "tokio")]
mod child_async;
#[cfg(feature = "tokio")]
mod sem_async;
#[cfg(feature = "tokio")]
mod shm_anon_async;

// Trials start in this order: the soak, the longest and mostly waiting, first, so that the
// rest of the suite runs beside it rather than after it.
main_of![
    soak, async_contract, chaos, contract, exhaustion, fifo, garbage, memory, mq, msg, packet, pipe,
    removal, security, sem, shm, shm_anon, shm_anon_hostile, shm_anon_typed, signal, signal_wait, socket, stream, typed;
    tokio: child_async, sem_async, shm_anon_async
];
