//! CLI integration tests: every test runs the built `procom` binary as a real process.

mod fifo;

fn main() -> std::process::ExitCode {
    let roles: Vec<procom_testkit::Role> = [fifo::ROLES].concat();
    let trials = [fifo::trials()].into_iter().flatten().collect();
    procom_testkit::main(&roles, trials)
}
