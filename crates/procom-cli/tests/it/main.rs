//! CLI integration tests: every test runs the built `procom` binary as a real process.

mod bench;
mod fifo;
mod shm;

fn main() -> std::process::ExitCode {
    let roles: Vec<procom_testkit::Role> = [bench::ROLES, fifo::ROLES, shm::ROLES].concat();
    let trials = [bench::trials(), fifo::trials(), shm::trials()]
        .into_iter()
        .flatten()
        .collect();
    procom_testkit::main(&roles, trials)
}
