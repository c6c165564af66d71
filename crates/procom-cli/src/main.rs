//! `procom`: every Linux IPC mechanism from the command line.
//!
//! Exit status: 0 on success, 1 when an operation fails (the reason is one sentence on
//! standard error), 2 for a usage error (including an endpoint that does not parse, and a
//! mistake found only after parsing, such as a queue name without its leading slash). A closed
//! standard output (`procom recv … | head -1`) ends the program quietly with status 0. Ctrl-C,
//! SIGTERM and SIGHUP end it with status 1 after removing what it created. A closed or full
//! standard error loses the messages, never the status.

mod cli;
mod cmd;
mod interrupt;

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    fill_closed_stdio();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and usage errors itself; a closed or full stream loses them.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_stdout(&err) {
                return ExitCode::SUCCESS;
            }
            let _guard = interrupt::output_lock();
            interrupt::warn(format_args!("{}", escape_controls(&one_line(&err))));
            ExitCode::from(if is_usage(&err) { 2 } else { 1 })
        }
    }
}

/// A standard descriptor (0, 1, 2) closed by the caller (`2>&-`) is opened on /dev/null, so
/// that no socket or file this program opens takes its number and receives its output.
fn fill_closed_stdio() {
    use std::os::fd::{AsRawFd, IntoRawFd};
    while let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        if f.as_raw_fd() > 2 {
            break; // dropped: every standard descriptor is open
        }
        let _ = f.into_raw_fd(); // kept for good as the missing standard descriptor
    }
}

/// Control characters (a user's argument echoed in an error may hold escape sequences) are
/// shown escaped, so an error line never drives the terminal.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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
    text
}

/// What the user can do about a library error, when the CLI knows better than the library.
/// Decided by the kind of object the error concerns, never by its text.
fn hint(e: &procom::Error) -> &'static str {
    use procom::ErrorKind as K;
    use procom::ObjectKind as O;
    let object = e.object_kind();
    let stream = matches!(
        object,
        Some(O::Fifo | O::UnixSocket | O::Tcp | O::Stdio | O::Descriptor)
    );
    match (e.kind(), object) {
        (K::NotFound, Some(O::Fifo)) => "; create it with `procom fifo create PATH` or mkfifo",
        (K::NotFound, Some(O::ShmChannel)) => {
            "; start its receiver first (procom recv shm:/NAME creates the channel)"
        }
        (K::NotFound, Some(O::PosixQueue)) => "; create it with `procom mq create /NAME`",
        (K::NotFound, Some(O::SysvQueue)) => "; create it with `procom msg create KEY`",
        (K::PermissionDenied, Some(O::PosixQueue)) => {
            "; it belongs to another user or its mode forbids it (queues are created 0600)"
        }
        (K::PermissionDenied, Some(O::SysvQueue)) => {
            "; it belongs to another user or its mode forbids it (check with ipcs -q)"
        }
        (K::NoReader, _) => "; start a reader first, or give --timeout SECS to wait for one",
        (K::AlreadyExists, Some(O::Fifo)) => {
            "; remove it with `procom fifo rm PATH` or use it as it is"
        }
        // A process that refuses a signal, or a port, has no file whose mode to check; the
        // sentence already says why.
        (K::PermissionDenied, Some(O::Process | O::Tcp | O::Udp)) => "",
        (K::PermissionDenied, _) => {
            "; it belongs to another user or its mode forbids it (check with ls -l)"
        }
        (K::TooLarge, _) if stream => {
            "; raise --max-size on both sides if the message is legitimate"
        }
        _ => "",
    }
}

/// A mistake on the command line, found by clap or later: a malformed endpoint or name, an
/// argument the library refuses as invalid, an option that does not apply.
fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<cmd::Usage>().is_some()
            || c.downcast_ref::<procom::Error>().is_some_and(|e| {
                matches!(
                    e.kind(),
                    procom::ErrorKind::InvalidEndpoint | procom::ErrorKind::InvalidInput
                )
            })
    })
}

fn is_broken_stdout(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<cmd::StdoutClosed>().is_some())
        || err
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
