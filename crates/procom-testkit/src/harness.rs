//! The test binary's `main`: the harness, child roles, trial registration and the watchdog.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::time::Duration;

use libtest_mimic::Completion;

use crate::{Outcome, ROLE_LIMIT, ROLE_LIMIT_VAR, ROLE_VAR, TEST_LIMIT, Trial, needs};

/// A named piece of child-process behaviour, run when the test binary is re-executed.
#[derive(Clone, Copy)]
pub struct Role {
    /// Unique name, like `"fifo::writer"`.
    pub name: &'static str,
    /// The role; it gets the arguments it was started with.
    pub run: fn(&[String]) -> Outcome,
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The test binary's `main`: plays a role if asked to, otherwise runs the trials (two trials
/// with one name are refused: a filter could not tell them apart).
pub fn main(roles: &[Role], trials: Vec<Trial>) -> ExitCode {
    if let Ok(name) = std::env::var(ROLE_VAR) {
        return play(roles, &name);
    }
    let mut names = BTreeSet::new();
    for t in &trials {
        if !names.insert(t.name()) {
            eprintln!("two trials are named {}", t.name());
            return ExitCode::from(2);
        }
    }
    let args = libtest_mimic::Arguments::from_args();
    libtest_mimic::run(&args, trials).exit_code()
}

fn play(roles: &[Role], name: &str) -> ExitCode {
    let Some(role) = roles.iter().find(|r| r.name == name) else {
        eprintln!("no role named {name}");
        return ExitCode::from(2);
    };
    // The watchdog thread never takes a signal: roles that block signals in their own thread
    // must see them held for the whole process, as in a single-threaded program. It inherits
    // a full mask from this thread, which then gets its own mask back.
    let all: Vec<i32> = (1..=64).filter(|s| ![9, 19, 32, 33].contains(s)).collect();
    let held = procom_sys::signal::block(&all);
    let limit = std::env::var(ROLE_LIMIT_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(ROLE_LIMIT, Duration::from_secs);
    std::thread::spawn(move || {
        std::thread::sleep(limit); // a self-destruct timer, not synchronisation
        eprintln!("role watchdog: still running after {limit:?}, exiting");
        std::process::exit(124);
    });
    drop(held);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let before = open_fds();
    let result = (role.run)(&args);
    let after = open_fds();
    match result {
        Err(e) => {
            eprintln!("role {name} failed: {e}");
            ExitCode::from(1)
        }
        Ok(()) if before != after => {
            let leaked: Vec<_> = after.difference(&before).collect();
            eprintln!(
                "role {name} leaked file descriptors: {leaked:?} (before {before:?}, after {after:?})"
            );
            ExitCode::from(3)
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}

/// The file descriptors open in this process.
pub fn open_fds() -> BTreeSet<i32> {
    let mut fds = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                fds.insert(fd);
            }
        }
    }
    // The directory handle read_dir used was among them and is closed now.
    fds.retain(|fd| Path::new(&format!("/proc/self/fd/{fd}")).exists());
    fds
}

/// The file descriptors open in process `pid`.
pub fn fds_of(pid: u32) -> Result<BTreeSet<i32>, String> {
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect())
}

/// Copies, in this process, of every descriptor process `pid` holds of the file `file` (its
/// device and inode): the same open files, as a child `pid` forked would hold them until it
/// executes a program. Taken with `pidfd_getfd`, which needs the right to trace `pid` (its
/// parent's, or root's).
pub fn copies_of_open_files(pid: u32, file: (u64, u64)) -> Result<Vec<OwnedFd>, String> {
    let target = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    let pidfd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open({pid}): {e}"))?;
    let mut copies = Vec::new();
    for fd in fds_of(pid)? {
        // Gone since it was listed (the listing's own descriptor, in this process): skipped.
        let Ok(copy) =
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        else {
            continue;
        };
        if rustix::fs::fstat(&copy).is_ok_and(|st| (st.st_dev, st.st_ino) == file) {
            copies.push(copy);
        }
    }
    Ok(copies)
}

/// Registers test functions as trials named `PREFIX::function`. The name is made from the
/// function itself, so the two never disagree; and since each test binary denies dead code,
/// a test function left out of its module's list fails the build.
///
/// Groups are `"prefix": function, function, ...;`. Needs ([`needs`]) in brackets after a
/// function are checked just before it runs; one unmet reports the trial as ignored, with the
/// reason. Attributes (`#[cfg(...)]`) before a function apply to its registration.
///
/// ```text
/// pub fn trials() -> Vec<Trial> {
///     trials![
///         "cli::fifo": send_is_read_by_cat, unprivileged_user_is_denied [needs::root()];
///         "cli": tour_passes;
///     ]
/// }
/// ```
#[macro_export]
macro_rules! trials {
    ($($prefix:literal: $($(#[$attr:meta])* $f:ident $([$($need:expr),+ $(,)?])?),+ $(,)?);+ $(;)?) => {{
        let mut trials: Vec<$crate::Trial> = Vec::new();
        $($(
            $(#[$attr])*
            trials.push($crate::test_needing(
                concat!($prefix, "::", stringify!($f)),
                vec![$($($need),+)?],
                $f,
            ));
        )+)+
        trials
    }};
}

/// A test under the watchdog: fails if `f` fails, panics, or runs past [`TEST_LIMIT`].
pub fn test(name: impl Into<String>, f: impl FnOnce() -> Outcome + Send + 'static) -> Trial {
    test_needing(name, Vec::new(), f)
}

/// [`test()`] for a test with preconditions: if one of `needs` is unmet when the trial is
/// about to run, it is reported as ignored, with the reason, and `f` does not run.
pub fn test_needing(
    name: impl Into<String>,
    needs: Vec<needs::Need>,
    f: impl FnOnce() -> Outcome + Send + 'static,
) -> Trial {
    test_within(name, TEST_LIMIT, needs, f)
}

/// [`test_needing`] for a test whose length is its point (a soak run): the watchdog fails it
/// after `limit` instead of [`TEST_LIMIT`]. Its child roles need the same allowance
/// ([`role_within`]).
pub fn test_within(
    name: impl Into<String>,
    limit: Duration,
    needs: Vec<needs::Need>,
    f: impl FnOnce() -> Outcome + Send + 'static,
) -> Trial {
    Trial::ignorable_test(name, move || {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let run = move || match needs.iter().find_map(|n| n.unmet()) {
                Some(reason) => Ok(Completion::ignored_with(reason)),
                None => f().map(|()| Completion::Completed),
            };
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()))
                });
            let _ = tx.send(r);
        });
        match rx.recv_timeout(limit) {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(format!("watchdog: the test was still running after {limit:?}").into()),
        }
    })
}

/// A command that re-executes this test binary as the child role `name` with `args`.
pub fn role(name: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_VAR, name).args(args);
    cmd
}

/// [`role`] for a child that may run longer than [`ROLE_LIMIT`]: it kills itself after
/// `limit` instead.
pub fn role_within(name: &str, args: &[&str], limit: Duration) -> Command {
    let mut cmd = role(name, args);
    cmd.env(ROLE_LIMIT_VAR, limit.as_secs().max(1).to_string());
    cmd
}

/// [`role`] run by util-linux's `unshare` with `unshare_args` (like `--ipc --mount`): the
/// role gets namespaces of its own, whose limits and mounts it may change without touching
/// the machine's.
pub fn role_unshared(unshare_args: &[&str], name: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut cmd = Command::new("unshare");
    cmd.args(unshare_args)
        .arg("--")
        .arg(exe)
        .env(ROLE_VAR, name)
        .args(args);
    cmd
}
