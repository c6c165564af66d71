//! procom's integration tests: one binary, one module per mechanism, run by procom-testkit
//! (libtest-compatible output; the binary re-executes itself to play child roles).

mod contract;
mod fifo;
mod pipe;
mod sem;
mod shm;

fn main() -> std::process::ExitCode {
    let roles: Vec<procom_testkit::Role> = [
        contract::ROLES,
        fifo::ROLES,
        pipe::ROLES,
        sem::ROLES,
        shm::ROLES,
    ]
    .concat();
    let trials = [
        contract::trials(),
        fifo::trials(),
        pipe::trials(),
        sem::trials(),
        shm::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    procom_testkit::main(&roles, trials)
}
