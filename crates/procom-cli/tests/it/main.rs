//! CLI integration tests: every test runs the built `procom` binary as a real process.

mod fifo;
mod shm;

fn main() -> std::process::ExitCode {
    let roles: Vec<procom_testkit::Role> = [fifo::ROLES, shm::ROLES].concat();
    let trials = [fifo::trials(), shm::trials()]
        .into_iter()
        .flatten()
        .collect();
    procom_testkit::main(&roles, trials)
}
