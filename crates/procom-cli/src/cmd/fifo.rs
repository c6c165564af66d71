//! `procom fifo create|rm PATH`

use crate::cli::FifoCommand;

pub fn run(cmd: FifoCommand) -> anyhow::Result<()> {
    match cmd {
        FifoCommand::Create { path, mode } => {
            drop(procom::fifo::Fifo::create_with_mode(&path, mode)?.keep());
        }
        FifoCommand::Rm { path } => procom::fifo::remove(&path)?,
    }
    Ok(())
}
