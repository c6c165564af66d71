//! `procom`: every Linux IPC mechanism from the command line.
//!
//! Exit status: 0 on success, 1 when an operation fails (the reason is one sentence on
//! standard error), 2 for a usage error (including an endpoint that does not parse). A closed standard output (`procom recv … | head -1`)
//! ends the program quietly with status 0.

mod cli;
mod cmd;
mod interrupt;

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_stdout(&err) {
                return ExitCode::SUCCESS;
            }
            let _guard = interrupt::output_lock();
            eprintln!("procom: {}", one_line(&err));
            ExitCode::from(if is_usage(&err) { 2 } else { 1 })
        }
    }
}

/// The error as one line: anyhow's context chain joined up to the first procom error (which is
/// a whole sentence already), followed by a hint on what to do.
fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        if let Some(e) = cause.downcast_ref::<procom::Error>() {
            text.push_str(hint(e));
            break;
        }
    }
    text.replace('\n', " ")
}

/// What the user can do about a library error, when the CLI knows better than the library.
fn hint(e: &procom::Error) -> &'static str {
    use procom::ErrorKind as K;
    let fifo = e.object_name().is_some_and(|o| o.starts_with("fifo:"));
    let shm_channel = e.object_name().is_some_and(|o| o.starts_with("shm:"));
    let mq = e.object_name().is_some_and(|o| o.starts_with("mq:"));
    let msg = e.object_name().is_some_and(|o| o.starts_with("msg:"));
    let msg_key = e.object_name().is_some_and(|o| o.starts_with("msg:0x"));
    let stream = e.object_name().is_some_and(|o| {
        ["fifo:", "unix:", "tcp:", "-"]
            .iter()
            .any(|p| o.starts_with(p))
    });
    match e.kind() {
        K::NotFound if fifo => "; create it with `procom fifo create PATH` or mkfifo",
        K::NotFound if shm_channel => {
            "; start its receiver first (procom recv shm:/NAME creates the channel)"
        }
        K::NotFound if mq => "; create it with `procom mq create /NAME`",
        K::NotFound if msg_key => "; create it with `procom msg create KEY`",
        K::PermissionDenied if mq => {
            "; it belongs to another user or its mode forbids it (queues are created 0600)"
        }
        K::PermissionDenied if msg => {
            "; it belongs to another user or its mode forbids it (check with ipcs -q)"
        }
        K::NoReader => "; start a reader first, or give --timeout SECS to wait for one",
        K::AlreadyExists if fifo => "; remove it with `procom fifo rm PATH` or use it as it is",
        K::PermissionDenied => {
            "; it belongs to another user or its mode forbids it (check with ls -l)"
        }
        K::TooLarge if stream => "; raise --max-size on both sides if the message is legitimate",
        _ => "",
    }
}

/// A malformed endpoint is a mistake on the command line, like any other usage error.
fn is_usage(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<procom::Error>())
        .any(|e| e.kind() == procom::ErrorKind::InvalidEndpoint)
}

fn is_broken_stdout(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<cmd::StdoutClosed>().is_some())
        || err
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
