//! Test support for procom's integration tests (never a dependency of shipped code).
//!
//! - [`main`] runs a test binary: either as the harness (libtest-compatible output and
//!   filters, via libtest-mimic) or, when re-executed by a test, as one named child [`Role`].
//! - [`trials!`] registers test functions by name (the trial's name is the function's), and
//!   [`test()`] wraps a test in a watchdog so a hang fails in seconds instead of stalling CI.
//! - [`needs`] states what a trial needs (root, a tool, a namespace): checked just before it
//!   runs, an unmet need reports the trial as ignored with the reason, never as passed.
//! - [`wait_for_socket`] and its shorthands learn that a server is ready (and on which port)
//!   from the kernel's socket tables, without binding or connecting to anything.
//! - [`Proc`] is a child process under a deadline: its output lines arrive on a channel, it
//!   is killed if still running when dropped.
//! - [`Scratch`] is a unique directory that must be empty at the end (the leak check for
//!   named objects); [`unique_name`] makes names for objects that live elsewhere.
//! - Every role checks that it leaked no file descriptor before it exits.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    procom::child::wait_timeout(child, timeout).map_err(std::io::Error::from)
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

/// A socket as the kernel lists it in a network namespace's tables
/// (`/proc/PID/net/{tcp,tcp6,udp,udp6,unix}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socket {
    /// A TCP socket: its local address, and whether it listens.
    Tcp {
        /// The address it is bound to.
        local: SocketAddr,
        /// Whether it is in the LISTEN state.
        listening: bool,
    },
    /// A UDP socket bound to this address.
    Udp {
        /// The address it is bound to.
        local: SocketAddr,
    },
    /// A Unix socket.
    Unix {
        /// The path it is bound to (`@name` in the abstract namespace), if any.
        path: Option<String>,
        /// Whether it listens (a stream or seqpacket socket after `listen`).
        listening: bool,
    },
}

/// The sockets process `pid` holds (its descriptors matched by inode against the tables of
/// its own network namespace). Reading them never touches a socket.
pub fn sockets_of(pid: u32) -> Result<Vec<Socket>, String> {
    // A process that is gone or exiting has no descriptors to show: no sockets.
    let inodes: BTreeSet<u64> = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    let table = |name: &str| match std::fs::read_to_string(format!("/proc/{pid}/net/{name}")) {
        Ok(text) => Ok(text),
        // No IPv6 in this kernel, or the process is gone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("/proc/{pid}/net/{name}: {e}")),
    };
    let mut found = Vec::new();
    for (name, tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in table(name)?.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            if !inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                continue;
            }
            let Some(local) = table_addr(local) else {
                continue;
            };
            found.push(if tcp {
                Socket::Tcp {
                    local,
                    listening: *state == "0A",
                }
            } else {
                Socket::Udp { local }
            });
        }
    }
    // Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is __SO_ACCEPTCON.
    for line in table("unix")?.lines().skip(1) {
        let mut rest = line;
        let mut f = Vec::new();
        for _ in 0..7 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            f.push(&rest[..end]);
            rest = &rest[end..];
        }
        if !f[6].parse().is_ok_and(|i: u64| inodes.contains(&i)) {
            continue;
        }
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        let path = rest.strip_prefix(' ').filter(|p| !p.is_empty());
        found.push(Socket::Unix {
            path: path.map(str::to_string),
            listening: flags & 0x10000 != 0,
        });
    }
    Ok(found)
}

/// An address as the socket tables print it: the address's bytes in memory order, each
/// 32-bit word as the kernel's native integer in hex, then `:` and the port in hex.
fn table_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::new();
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether process `pid` still runs (not gone, not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

/// Polls the kernel's view of process `pid` until it holds a socket that `pick` accepts, and
/// returns what `pick` made of it: how a test learns that a server is ready, and on which
/// port, without binding or connecting to anything itself. Fails as soon as the process has
/// ended, and after [`STEP`] otherwise.
pub fn wait_for_socket<T>(
    pid: u32,
    what: &str,
    mut pick: impl FnMut(&Socket) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(t) = sockets_of(pid)?.iter().find_map(&mut pick) {
            return Ok(t);
        }
        if !running(pid) {
            return Err(format!("process {pid} ended before it had {what}"));
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} had no {what} after {STEP:?}"));
        }
        std::thread::sleep(Duration::from_millis(2)); // polling the kernel's view
    }
}

/// Waits until process `pid` listens on TCP, and returns the address (the real port when it
/// asked for port 0).
pub fn tcp_listening(pid: u32) -> Result<SocketAddr, String> {
    wait_for_socket(pid, "a listening TCP socket", |s| match s {
        Socket::Tcp {
            local,
            listening: true,
        } => Some(*local),
        _ => None,
    })
}

/// Waits until process `pid` has a bound UDP socket, and returns its address (the real port
/// when it asked for port 0).
pub fn udp_bound(pid: u32) -> Result<SocketAddr, String> {
    wait_for_socket(pid, "a bound UDP socket", |s| match s {
        Socket::Udp { local } if local.port() != 0 => Some(*local),
        _ => None,
    })
}

/// Waits until process `pid` listens on the Unix socket at `path` (its file appears at
/// `bind`, a moment before `listen`: a connection in between would be refused).
pub fn unix_listening(pid: u32, path: &Path) -> Outcome {
    let want = path.display().to_string();
    wait_for_socket(pid, &format!("a Unix socket listening at {want}"), |s| {
        matches!(s, Socket::Unix { path: Some(p), listening: true } if *p == want).then_some(())
    })
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket is
/// held: bound, so no other process can take the port, but not listening.
pub fn refusing_tcp_port() -> Result<(std::os::fd::OwnedFd, u16), String> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    rustix::net::bind(&fd, &any).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let bound = rustix::net::getsockname(&fd).map_err(|e| format!("getsockname: {e}"))?;
    let bound = std::net::SocketAddrV4::try_from(bound).map_err(|e| format!("getsockname: {e}"))?;
    Ok((fd, bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_table_addresses() {
        // As /proc/net/tcp and tcp6 print 127.0.0.1:8080 and [::1]:8080 on this machine.
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(
            table_addr(&format!("{v4:08X}:1F90")),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            table_addr(&format!("000000000000000000000000{one:08X}:1F90")),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(table_addr("0100007F"), None);
    }

    #[test]
    fn a_listening_socket_is_seen_without_touching_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        assert_eq!(tcp_listening(me).unwrap(), l.local_addr().unwrap());
        assert_eq!(udp_bound(me).unwrap(), u.local_addr().unwrap());
        let (_fd, port) = refusing_tcp_port().unwrap();
        let e = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
