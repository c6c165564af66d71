//! Anonymous pipes: the shell's `A | B`, and `pipe()` + `fork()`.
//!
//! A pipe is a one-way buffer in the kernel with a read end and a write end. It has no name,
//! so only processes that inherit an end can use it. Every end procom creates is
//! close-on-exec: a child receives an end only when it is explicitly wired to the child's
//! standard input or output, so no process keeps a stray end, and the reader sees end-of-file
//! as soon as the last writer is gone (the classic "parent closes fd\[0\], child closes
//! fd\[1\]").
//!
//! A write to a pipe whose reader has gone fails with [`std::io::ErrorKind::BrokenPipe`]; it never
//! kills the process with SIGPIPE, whatever the process's SIGPIPE disposition.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::process::Command;
//!
//! // parent → child: the child's standard input is the read end.
//! let mut cmd = Command::new("tr");
//! cmd.arg("a-z").arg("A-Z").stdout(std::process::Stdio::piped());
//! let (mut child, mut to_child) = procom::pipe::spawn_with_stdin(cmd)?;
//! to_child.write_all(b"hello")?;
//! drop(to_child); // EOF for the child
//! let mut out = String::new();
//! child.stdout.take().unwrap().read_to_string(&mut out)?;
//! assert_eq!(out, "HELLO");
//! assert!(child.wait()?.success());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # References
//! - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
//! - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)

use std::process::{Child, Command, ExitStatus, Stdio};

use rustix::pipe::PipeFlags;

use crate::channel::{Options, Receiver, Sender};
pub use crate::ends::{PipeReader, PipeWriter};
use crate::error::{Error, ErrorKind};

/// Creates an anonymous pipe, both ends close-on-exec.
#[doc(alias = "pipe2")]
pub fn pipe() -> Result<(PipeReader, PipeWriter), Error> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| Error::os("create a pipe", e.into()).object("pipe"))?;
    Ok((PipeReader::from(r), PipeWriter::from(w)))
}

/// `cmd.spawn()`, with a failure naming the program.
fn start(cmd: &mut Command) -> Result<Child, Error> {
    cmd.spawn().map_err(|e| {
        Error::os("start it", e).object(format!("program {}", cmd.get_program().display()))
    })
}

/// A message channel over a new anonymous pipe, with length framing.
///
/// Hand the [`Sender`]'s or [`Receiver`]'s descriptor to a child (for example with
/// [`Sender::into_fd`] and [`Stdio::from`]) to talk across processes.
pub fn channel() -> Result<(Sender, Receiver), Error> {
    let (r, w) = pipe()?;
    let opts = Options::default();
    Ok((
        Sender::from_fd(w, "pipe", &opts),
        Receiver::from_fd(r, "pipe", &opts),
    ))
}

/// Spawns `cmd` with its standard input reading from a new pipe, and returns the child and
/// the write end. The parent's copy of the read end is closed before this returns, so the
/// child sees end-of-file when the returned writer is dropped.
pub fn spawn_with_stdin(mut cmd: Command) -> Result<(Child, PipeWriter), Error> {
    let (r, w) = pipe()?;
    cmd.stdin(r);
    let child = start(&mut cmd)?;
    drop(cmd); // the Command holds the read end until it is dropped
    Ok((child, w))
}

/// Spawns `cmd` with its standard output writing into a new pipe, and returns the child and
/// the read end. The parent's copy of the write end is closed before this returns, so the
/// reader sees end-of-file when the child (and any process it handed its output to) exits.
pub fn spawn_with_stdout(mut cmd: Command) -> Result<(Child, PipeReader), Error> {
    let (r, w) = pipe()?;
    cmd.stdout(w);
    let child = start(&mut cmd)?;
    drop(cmd);
    Ok((child, r))
}

/// Where a pipeline's first command reads from, or its last command writes to.
#[derive(Debug, Default)]
enum End {
    #[default]
    Inherit,
    Piped,
    Given(Stdio),
}

/// Commands joined like the shell's `A | B | C`: each command's standard output feeds the
/// next one's standard input through its own pipe.
///
/// As in the shell, every command is a child of the caller, not of each other. Each pipe end
/// lives in exactly one process: the parent keeps none (unless it asks for the pipeline's
/// input or output with [`Pipeline::stdin_piped`] / [`Pipeline::stdout_piped`]), so
/// end-of-file travels down the pipeline as each command exits.
#[derive(Debug, Default)]
pub struct Pipeline {
    commands: Vec<Command>,
    stdin: End,
    stdout: End,
}

/// A started pipeline.
#[derive(Debug)]
pub struct RunningPipeline {
    /// The children, in pipeline order.
    pub children: Vec<Child>,
    /// The write end feeding the first command, with [`Pipeline::stdin_piped`].
    pub stdin: Option<PipeWriter>,
    /// The read end draining the last command, with [`Pipeline::stdout_piped`].
    pub stdout: Option<PipeReader>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends a command.
    #[must_use]
    pub fn command(mut self, cmd: Command) -> Pipeline {
        self.commands.push(cmd);
        self
    }

    /// The first command reads from a pipe whose write end the caller gets.
    #[must_use]
    pub fn stdin_piped(mut self) -> Pipeline {
        self.stdin = End::Piped;
        self
    }

    /// The last command writes into a pipe whose read end the caller gets.
    #[must_use]
    pub fn stdout_piped(mut self) -> Pipeline {
        self.stdout = End::Piped;
        self
    }

    /// The first command reads from `stdin`.
    #[must_use]
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Pipeline {
        self.stdin = End::Given(stdin.into());
        self
    }

    /// The last command writes to `stdout`.
    #[must_use]
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Pipeline {
        self.stdout = End::Given(stdout.into());
        self
    }

    /// Starts every command. If one fails to start, the ones already started are killed and
    /// reaped, and the error is returned.
    pub fn spawn(self) -> Result<RunningPipeline, Error> {
        if self.commands.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("a pipeline needs at least one command")
                .object("pipeline"));
        }
        let mut running = RunningPipeline {
            children: Vec::new(),
            stdin: None,
            stdout: None,
        };
        match spawn_all(self, &mut running) {
            Ok(()) => Ok(running),
            Err(e) => {
                drop(running.stdin.take());
                for child in &mut running.children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(e)
            }
        }
    }
}

fn spawn_all(p: Pipeline, running: &mut RunningPipeline) -> Result<(), Error> {
    let n = p.commands.len();
    let mut next_in: Option<Stdio> = match p.stdin {
        End::Inherit => None,
        End::Piped => {
            let (r, w) = pipe()?;
            running.stdin = Some(w);
            Some(r.into())
        }
        End::Given(s) => Some(s),
    };
    let mut last_out = Some(p.stdout);
    for (i, mut cmd) in p.commands.into_iter().enumerate() {
        if let Some(s) = next_in.take() {
            cmd.stdin(s);
        }
        let mut read_end = None;
        if i + 1 < n {
            let (r, w) = pipe()?;
            cmd.stdout(w);
            read_end = Some(r);
        } else {
            match last_out.take().unwrap_or_default() {
                End::Inherit => {}
                End::Piped => {
                    let (r, w) = pipe()?;
                    cmd.stdout(w);
                    running.stdout = Some(r);
                }
                End::Given(s) => {
                    cmd.stdout(s);
                }
            }
        }
        running.children.push(start(&mut cmd)?);
        // Dropping the Command closes the parent's copies of this child's ends.
        drop(cmd);
        next_in = read_end.map(Stdio::from);
    }
    Ok(())
}

impl RunningPipeline {
    /// Closes the pipeline's input (if the caller held it) and waits for every command.
    pub fn wait(&mut self) -> Result<Vec<ExitStatus>, Error> {
        drop(self.stdin.take());
        self.children
            .iter_mut()
            .map(|c| {
                c.wait()
                    .map_err(|e| Error::os("wait for it", e).object(format!("pid {}", c.id())))
            })
            .collect()
    }

    /// The children's process ids, in pipeline order.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn ends_are_close_on_exec() {
        let (r, w) = pipe().unwrap();
        for fd in [r.as_fd(), w.as_fd()] {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
    }

    #[test]
    fn writer_to_dead_reader_gets_broken_pipe() {
        let (r, mut w) = pipe().unwrap();
        drop(r);
        let e = w.write(b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn empty_pipeline_is_refused() {
        assert_eq!(
            Pipeline::new().spawn().unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
