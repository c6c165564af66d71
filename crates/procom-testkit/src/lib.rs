//! Test support for procom's integration tests (never a dependency of shipped code).
//!
//! - [`main`] runs a test binary: either as the harness (libtest-compatible output and
//!   filters, via libtest-mimic) or, when re-executed by a test, as one named child [`Role`].
//! - [`trials!`] registers test functions by name (the trial's name is the function's), and
//!   [`test()`] wraps a test in a watchdog so a hang fails in seconds instead of stalling CI.
//! - [`needs`] states what a trial needs (root, a tool, a namespace): checked just before it
//!   runs, an unmet need reports the trial as ignored with the reason, never as passed.
//! - [`Proc`] is a child process under a deadline: its output lines arrive on a channel, it
//!   is killed if still running when dropped.
//! - [`Scratch`] is a unique directory that must be empty at the end (the leak check for
//!   named objects); [`unique_name`] makes names for objects that live elsewhere.
//! - Every role checks that it leaked no file descriptor before it exits.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use libtest_mimic::Completion;
pub use libtest_mimic::Trial;

/// What a test or role returns: `Err` carries the failure's explanation.
pub type Outcome = Result<(), String>;

/// How long one test may run before the watchdog fails it.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// How long a child role may run before it kills itself.
pub const ROLE_LIMIT: Duration = Duration::from_secs(45);
/// The default wait for one step of a conversation with a child.
pub const STEP: Duration = Duration::from_secs(20);

/// Environment variable that tells a re-executed test binary which role to play.
const ROLE_VAR: &str = "PROCOM_IT_ROLE";

/// Returns `Err(message)` from the enclosing function unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{} (at {}:{})", format!($($fmt)+), file!(), line!()));
        }
    };
}

/// Turns any displayable error into the test's `Err(String)`, noting where it happened.
#[macro_export]
macro_rules! check {
    ($e:expr) => {
        $e.map_err(|e| format!("{}: {} (at {}:{})", stringify!($e), e, file!(), line!()))?
    };
}

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
    std::thread::spawn(|| {
        std::thread::sleep(ROLE_LIMIT); // a self-destruct timer, not synchronisation
        eprintln!("role watchdog: still running after {ROLE_LIMIT:?}, exiting");
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
        match rx.recv_timeout(TEST_LIMIT) {
            Ok(r) => r.map_err(Into::into),
            Err(_) => {
                Err(format!("watchdog: the test was still running after {TEST_LIMIT:?}").into())
            }
        }
    })
}

/// What a trial may need from the machine it runs on. A trial lists its needs where it is
/// registered ([`trials!`]); each is checked just before the trial runs, and an unmet one
/// reports it as ignored with the reason (`ignored (needs root: ...)`), never as passed.
pub mod needs {
    use std::process::{Command, Stdio};

    /// One precondition: `None` when met, or why not.
    pub struct Need {
        what: String,
        check: Box<dyn Fn() -> Option<String> + Send>,
    }

    impl std::fmt::Debug for Need {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.what)
        }
    }

    impl Need {
        /// Why the need is unmet, or `None` when it is met.
        pub fn unmet(&self) -> Option<String> {
            (self.check)().map(|why| format!("needs {}: {why}", self.what))
        }
    }

    fn need(what: &str, check: impl Fn() -> Option<String> + Send + 'static) -> Need {
        Need {
            what: what.to_string(),
            check: Box::new(check),
        }
    }

    /// Root: to run a child as the unprivileged uid 65534 ([`crate::as_nobody`]).
    pub fn root() -> Need {
        need("root", || {
            (!is_root()).then(|| "not running as root, so no child can switch to uid 65534".into())
        })
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// An executable named `name` on the `PATH`.
    pub fn tool(name: &'static str) -> Need {
        need(name, move || {
            (!on_path(name)).then(|| "it is not on the PATH".to_string())
        })
    }

    /// Network namespaces: root, iproute2's `ip`, and the kernel letting this process make one.
    pub fn netns() -> Need {
        need("network namespaces", || {
            namespace_probe(&["ip", "unshare"], &["--net", "true"])
        })
    }

    /// PID namespaces: root, util-linux's `unshare`, and the kernel letting this process make one.
    pub fn pidns() -> Need {
        need("PID namespaces", || {
            namespace_probe(&["unshare"], &["--pid", "--fork", "--kill-child", "true"])
        })
    }

    fn namespace_probe(tools: &[&str], unshare: &[&str]) -> Option<String> {
        if !is_root() {
            return Some("not running as root".into());
        }
        if let Some(t) = tools.iter().find(|t| !on_path(t)) {
            return Some(format!("{t} is not on the PATH"));
        }
        match Command::new("unshare")
            .args(unshare)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "they cannot be created here (unshare {}: {})",
                unshare.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(format!("unshare: {e}")),
        }
    }

    /// Whether an executable file named `name` is in a directory of the `PATH`.
    fn on_path(name: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }
}

/// A name no other test, run or process uses: `prefix-PID-N-NANOS`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory for one test's named objects. It is world-searchable (0755) so a child
/// running as an unprivileged uid reaches the objects inside and meets only their own modes.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory under the system temporary directory.
    pub fn new(prefix: &str) -> Result<Scratch, String> {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        // The umask may have removed bits; set them exactly.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The leak check: fails if anything is left in the directory, then removes it.
    pub fn finish(self) -> Outcome {
        let left: Vec<String> = std::fs::read_dir(&self.path)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("leaked into {}: {left:?}", self.path.display()))
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A command that re-executes this test binary as the child role `name` with `args`.
pub fn role(name: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_VAR, name).args(args);
    cmd
}

/// Makes `cmd` run as the unprivileged uid/gid 65534 ("nobody"). Returns `Err(reason)` when
/// this process is not root and so cannot switch: a trial that needs it declares
/// [`needs::root`], so it is reported as ignored rather than run.
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
    stderr: Option<std::thread::JoinHandle<String>>,
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
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            s
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
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
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
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
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

/// Waits for `child` at most `timeout` using a pidfd, without polling in a loop.
pub fn wait_pid(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    procom::child::wait_timeout(child, timeout)
}

/// What a hostile local user plants at a name in a shared directory (`/dev/shm`, `/tmp`).
#[derive(Debug, Clone, Copy)]
pub enum Plant<'a> {
    /// A symbolic link to this path.
    Symlink(&'a Path),
    /// A FIFO (opening it for reading would block until a writer comes).
    Fifo,
    /// A directory.
    Dir,
    /// An empty regular file anyone may write (mode 0666).
    EmptyFile,
}

/// An object planted by [`plant`]; removed when dropped.
#[derive(Debug)]
pub struct Planted {
    path: PathBuf,
    dir: bool,
}

impl Planted {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is still there, as planted (never following it).
    pub fn intact(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            let t = m.file_type();
            if self.dir {
                t.is_dir()
            } else {
                t.is_symlink() || t.is_file() || std::os::unix::fs::FileTypeExt::is_fifo(&t)
            }
        })
    }

    /// Removes it and checks it is gone.
    pub fn remove(mut self) -> Outcome {
        let r = self.remove_now();
        std::mem::forget(self);
        r
    }

    fn remove_now(&mut self) -> Outcome {
        let r = if self.dir {
            std::fs::remove_dir(&self.path)
        } else {
            std::fs::remove_file(&self.path)
        };
        r.map_err(|e| format!("removing the planted {}: {e}", self.path.display()))?;
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(format!("{} is still there", self.path.display())),
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// Plants `what` at `path` the way a hostile local user would: a real `ln -s`, `mkfifo` or
/// `mkdir` run as uid 65534 when this process is root (as this user otherwise: what is
/// planted is the same, only its owner differs).
pub fn plant(path: &Path, what: Plant<'_>) -> Result<Planted, String> {
    let mut cmd = match what {
        Plant::Symlink(target) => {
            let mut c = Command::new("ln");
            c.arg("-s").arg(target).arg(path);
            c
        }
        Plant::Fifo => {
            let mut c = Command::new("mkfifo");
            c.arg(path);
            c
        }
        Plant::Dir => {
            let mut c = Command::new("mkdir");
            c.arg(path);
            c
        }
        Plant::EmptyFile => {
            let mut c = Command::new("sh");
            c.args(["-c", "umask 0 && : > \"$1\"", "sh"]).arg(path);
            c
        }
    };
    let _ = as_nobody(&mut cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("planting {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "planting {}: {}; {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Planted {
        path: path.to_path_buf(),
        dir: matches!(what, Plant::Dir),
    })
}
