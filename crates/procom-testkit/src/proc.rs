//! Child processes: [`Proc`] (a child under a deadline, its output lines on a channel),
//! running a child as an unprivileged user, waiting with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{Outcome, STEP};

/// Makes `cmd` run as the unprivileged uid/gid 65534 ("nobody"). Returns `Err(reason)` when
/// this process is not root and so cannot switch: a trial that needs it declares
/// [`needs::root`](crate::needs::root), so it is reported as ignored rather than run.
pub fn as_nobody(cmd: &mut Command) -> Result<&mut Command, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not running as root, so a child cannot switch to an unprivileged uid".into());
    }
    Ok(cmd.uid(65534).gid(65534))
}

/// A running child whose standard output lines arrive on a channel; killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    what: String,
    lines: mpsc::Receiver<String>,
    /// Everything the child writes on standard error, once the pipe closes.
    stderr: Option<mpsc::Receiver<String>>,
    stdout_seen: Vec<String>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it printed on standard output that was not consumed by [`Proc::line`].
    pub stdout: Vec<String>,
    /// Everything it printed on standard error.
    pub stderr: String,
}

impl Finished {
    /// Its exit code, or `None` if a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Proc {
    /// Starts `cmd` with piped standard output and error (standard input as `cmd` says).
    pub fn spawn(what: &str, cmd: &mut Command) -> Result<Proc, String> {
        cmd.stdout(Stdio::piped());
        Proc::spawn_keep_stdout(what, cmd)
    }

    /// Starts `cmd` with piped standard error, leaving standard output as `cmd` set it (for a
    /// child whose standard output is the channel under test). Lines are read from standard
    /// output only if `cmd` piped it.
    pub fn spawn_keep_stdout(what: &str, cmd: &mut Command) -> Result<Proc, String> {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting {what}: {e}"))?;
        let out = child.stdout.take();
        let err = child.stderr.take().ok_or("no stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = out else { return };
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let (stderr_tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            let _ = stderr_tx.send(s);
        });
        Ok(Proc {
            child,
            what: what.to_string(),
            lines,
            stderr: Some(stderr),
            stdout_seen: Vec::new(),
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Access to the child (to take its standard input, say).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The next line the child prints, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("{}: no output line within {timeout:?}", self.what))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let fin = self.finish_now();
                Err(format!(
                    "{}: exited before printing the expected line: {fin}",
                    self.what
                ))
            }
        }
    }

    /// Waits until the child prints exactly `expected`.
    pub fn expect_line(&mut self, expected: &str) -> Outcome {
        let line = self.line(STEP)?;
        if line == expected {
            Ok(())
        } else {
            Err(format!(
                "{}: expected {expected:?}, got {line:?}",
                self.what
            ))
        }
    }

    fn finish_now(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let stderr = self.stderr.take().map(stderr_of).unwrap_or_default();
        format!("{status}; stderr: {}", stderr.trim())
    }

    /// Whether the child exits within `timeout` (it is left running if not).
    pub fn exits_within(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, String> {
        wait_pid(&mut self.child, timeout).map_err(|e| format!("{}: {e}", self.what))
    }

    /// Waits for the child to exit (at most `timeout`; then it is killed and this fails) and
    /// collects its remaining output.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished, String> {
        let status = match wait_pid(&mut self.child, timeout).map_err(|e| e.to_string())? {
            Some(s) => s,
            None => {
                let fin = self.finish_now();
                return Err(format!(
                    "{}: still running after {timeout:?}, killed: {fin}",
                    self.what
                ));
            }
        };
        let stderr = self.stderr.take().map(stderr_of).unwrap_or_default();
        let mut stdout = std::mem::take(&mut self.stdout_seen);
        while let Ok(l) = self.lines.recv_timeout(STEP) {
            stdout.push(l);
        }
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for the child and fails unless it exited 0.
    pub fn success(self, timeout: Duration) -> Result<Finished, String> {
        let what = self.what.clone();
        let fin = self.finish(timeout)?;
        if fin.status.success() {
            Ok(fin)
        } else {
            Err(format!(
                "{what}: {}; stderr: {}",
                fin.status,
                fin.stderr.trim()
            ))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a child wrote on standard error, once the pipe closed: waited for at most [`STEP`]
/// after the child ended, since a process it started may still hold the pipe open (and then
/// this says so instead of waiting for that process).
fn stderr_of(collected: mpsc::Receiver<String>) -> String {
    collected.recv_timeout(STEP).unwrap_or_else(|_| {
        "(standard error is still held open, by a process the child started)".to_string()
    })
}

/// Waits for `child` at most `timeout` using a pidfd, without polling in a loop.
pub fn wait_pid(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    procom::child::wait_timeout(child, timeout).map_err(std::io::Error::from)
}

/// The address space process `pid` uses, in bytes (`VmSize` in its `/proc` status).
pub fn address_space(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading the status of process {pid}: {e}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmSize")?;
    Ok(kib * 1024)
}
