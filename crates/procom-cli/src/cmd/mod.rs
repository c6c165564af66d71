//! One file per subcommand; `run` dispatches.

mod bench;
mod fifo;
mod listen;
pub mod ls;
mod mq;
mod msg;
mod recv;
mod relay;
pub mod rm;
mod sem;
mod send;
mod shm;
mod signal;
mod tour;

use std::fmt;

use crate::cli::{Cli, Command, ShareOpts, StreamOpts};

/// Standard output was closed by its reader (`procom recv … | head -1`): not an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// A mistake on the command line found after parsing (exit status 2, like clap's own).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `usage!("...", args)`: a [`Usage`] error to return or bail with.
macro_rules! usage {
    ($($arg:tt)*) => {
        anyhow::Error::new($crate::cmd::Usage(format!($($arg)*)))
    };
}
pub(crate) use usage;

/// `outln!("...", args)?`: one line on standard output through [`write_stdout`] (a closed or
/// full standard output is an error to return, never a panic).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::write_stdout(&[format!($($arg)*).as_bytes(), b"\n"])
    };
}
pub(crate) use outln;

/// Writes `parts` to standard output as one piece, under the output lock (so an interrupt
/// never cuts it), and flushes. A closed standard output becomes [`StdoutClosed`].
pub(crate) fn write_stdout(parts: &[&[u8]]) -> anyhow::Result<()> {
    use std::io::Write;
    let _whole = crate::interrupt::output_lock();
    let mut out = std::io::stdout().lock();
    parts
        .iter()
        .try_for_each(|p| out.write_all(p))
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(e).context("could not write to standard output")
            }
        })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    // The benchmark's raw signal loop takes its signal with sigtimedwait in this thread: blocked
    // before any other thread starts, so none of them is picked to receive it.
    let _raw_signal = matches!(cli.command, Command::Bench(_) | Command::BenchPeer { .. })
        .then(procom_bench::block_raw_signal)
        .transpose()?;
    // `signal wait` catches signals itself (INT and TERM included), so it keeps them.
    if !matches!(cli.command, Command::Signal(_)) {
        crate::interrupt::install(&[])?;
    }
    // Commands that print what arrives end when nobody reads their output any more.
    if matches!(
        cli.command,
        Command::Recv(_) | Command::Listen(_) | Command::Connect(_)
    ) {
        crate::interrupt::watch_stdout()?;
    }
    match cli.command {
        Command::Send(args) => send::run(args),
        Command::Recv(args) => recv::run(args),
        Command::Fifo(cmd) => fifo::run(cmd),
        Command::Listen(args) => listen::listen(args),
        Command::Connect(args) => listen::connect(args),
        Command::Relay(args) => relay::run(args),
        Command::Mq(cmd) => mq::run(cmd),
        Command::Msg(cmd) => msg::run(cmd),
        Command::Shm(cmd) => shm::run(cmd),
        Command::Signal(cmd) => signal::run(cmd),
        Command::Sem(cmd) => sem::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::BenchPeer { args } => Ok(procom_bench::peer(&args)?),
        Command::TourPeer { args } => tour::peer(&args),
        Command::Ls(args) => ls::run(args),
        Command::Rm(args) => rm::run(args),
        Command::Tour => tour::run(),
    }
}

/// Library options from the shared flags; `raw` picks unframed bytes.
fn options(stream: &StreamOpts, raw: bool) -> anyhow::Result<procom::Options> {
    let framing = if stream.framed {
        procom::Framing::Length
    } else if raw {
        procom::Framing::Raw
    } else {
        procom::Framing::Lines
    };
    let max = usize::try_from(stream.max_size)
        .ok()
        .filter(|m| *m <= u32::MAX as usize)
        .ok_or_else(|| {
            usage!(
                "--max-size {} is over the 4 GiB a length prefix can describe",
                stream.max_size
            )
        })?;
    Ok(procom::Options::default().framing(framing).max_message(max))
}

/// `--type T` on a msg: endpoint (it overrides the endpoint's `?type=`).
fn apply_type(ep: &mut procom::Endpoint, t: Option<i64>) -> anyhow::Result<()> {
    match (ep, t) {
        (_, None) => Ok(()),
        (procom::Endpoint::Msg { mtype, .. }, Some(t)) => {
            *mtype = Some(t);
            Ok(())
        }
        (_, Some(_)) => Err(usage!("--type applies to msg: endpoints only")),
    }
}

/// `--mode` (0600 when not given) and `--group` as a mode and a group id. A group the user is
/// not in is refused (root may name any): the kernel refuses it for files anyway, and System V
/// objects would otherwise be given to any group at all.
fn share(opts: &ShareOpts) -> anyhow::Result<(u32, Option<u32>)> {
    let gid = match &opts.group {
        None => None,
        Some(spec) => Some(group_id(spec)?),
    };
    Ok((opts.mode.unwrap_or(0o600), gid))
}

/// Whether `--mode` or `--group` was given.
fn sharing(opts: &ShareOpts) -> bool {
    opts.mode.is_some() || opts.group.is_some()
}

fn group_id(spec: &str) -> anyhow::Result<u32> {
    let gid = match spec.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => procom::access::group_id(spec)?
            .ok_or_else(|| usage!("no group is called `{spec}` (getent group lists them)"))?,
    };
    if gid == u32::MAX {
        return Err(usage!(
            "`{spec}` is not a group id: 4294967295 (-1) means no group to the kernel"
        ));
    }
    if !rustix::process::geteuid().is_root() && !procom::access::is_member(gid) {
        return Err(usage!(
            "you are not in group `{spec}` (gid {gid}), so what you create cannot be given to it (id -Gn lists your groups)"
        ));
    }
    Ok(gid)
}

/// A duration as every message of the CLI writes it: `1 s`, `1.5 s`, `20 ms`.
fn duration(d: std::time::Duration) -> String {
    procom::endpoint::format_duration(d)
}

/// A JSON object, as one line.
fn json_line(value: &serde_json::Value) -> anyhow::Result<()> {
    outln!("{value}")
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the system is short of something for now.
pub(crate) fn out_of_resources(e: &procom::Error) -> bool {
    use rustix::io::Errno;
    e.os_error()
        .and_then(|e| e.raw_os_error())
        .is_some_and(|code| {
            [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
                .iter()
                .any(|x| x.raw_os_error() == code)
        })
}
