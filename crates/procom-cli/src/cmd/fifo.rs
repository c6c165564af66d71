//! `procom fifo create|rm PATH`

use crate::cli::FifoCommand;

pub fn run(cmd: FifoCommand) -> anyhow::Result<()> {
    match cmd {
        FifoCommand::Create { path, share } => {
            let (mode, group) = super::share(&share)?;
            let fifo = procom::fifo::Fifo::create_with_mode(&path, mode)?;
            if let Some(gid) = group {
                fifo.set_group(gid)?; // on failure `fifo` is dropped, which removes it
            }
            drop(fifo.keep());
        }
        FifoCommand::Rm { path } => procom::fifo::remove(&path)?,
    }
    Ok(())
}
