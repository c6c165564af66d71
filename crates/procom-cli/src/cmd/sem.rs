//! `procom sem create|post|wait|get|rm NAME`: named POSIX semaphores (P = wait, V = post).

use procom::sem::Semaphore;

use crate::cli::SemCommand;

pub fn run(cmd: SemCommand) -> anyhow::Result<()> {
    match cmd {
        SemCommand::Create { name, value } => drop(Semaphore::create(&name, value)?.keep()),
        SemCommand::Post { name } => Semaphore::open(&name)?.post()?,
        SemCommand::Wait { name, timeout } => {
            crate::interrupt::set_activity(format!("waiting on semaphore {name}"));
            let sem = Semaphore::open(&name)?;
            match timeout {
                Some(t) => sem.wait_timeout(t)?,
                None => sem.wait()?,
            }
        }
        SemCommand::Get { name } => super::outln!("{}", Semaphore::open(&name)?.value()?)?,
        SemCommand::Rm { name } => procom::sem::remove(&name)?,
    }
    Ok(())
}
