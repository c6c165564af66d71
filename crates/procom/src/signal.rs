//! Signals: the only asynchronous IPC mechanism.
//!
//! A signal can reach a process at any moment — from the keyboard (Ctrl+C is SIGINT, Ctrl+Z
//! SIGTSTP) or from software (`kill -9 PID`). For each signal a process takes the default
//! action, catches it, or ignores it; SIGKILL and SIGSTOP can be neither caught nor ignored,
//! so any process can always be stopped.
//!
//! - [`Signal`]: every Linux signal with the number and name `kill -l` shows and the C
//!   library's description, real-time ones included (`RTMIN+3`, `RTMAX-2`, numbered from this
//!   system's `SIGRTMIN`), parsed from `TERM`, `SIGTERM`, `term`, `15` or `RTMIN+3`.
//! - Sending: [`send`] (a pid), [`send_group`], [`queue`] (with a value, `sigqueue`), and
//!   [`Process`] (a pidfd: no race with pid reuse). Errors tell a process that does not exist
//!   ([`ErrorKind::NotFound`]) from one that is not ours ([`ErrorKind::PermissionDenied`]).
//! - Catching: [`Signals::catch`] delivers each signal as a [`Delivery`] (the signal, the
//!   sender's pid and uid, the queued value) through an iterator, with `wait`, `wait_timeout`
//!   and `try_wait` forms, and `AsyncSignals` as a tokio `Stream` (feature `tokio`). No user
//!   code runs in a signal handler; see [`Signals`] for how delivery works in multi-threaded
//!   programs.
//! - [`ignore`], [`restore_default`], [`disposition`], and [`block`] (hold signals pending in
//!   this thread).
//!
//! ```
//! use procom::signal::{self, Signal, Signals};
//! # fn main() -> Result<(), procom::Error> {
//! let usr1 = Signal::USR1;
//! let mut caught = Signals::catch([usr1])?;
//! signal::queue(std::process::id() as i32, usr1, 42)?; // to ourselves, with a value
//! let d = caught.wait_timeout(std::time::Duration::from_secs(10))?;
//! assert_eq!((d.signal, d.value), (usr1, Some(42)));
//! assert_eq!(d.sender_pid, std::process::id() as i32);
//! # Ok(()) }
//! ```
//!
//! # References
//! - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
//! - [`kill(1)`](https://man7.org/linux/man-pages/man1/kill.1.html)

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use crate::error::{Error, ErrorKind};
use crate::stream::{deadline_after, wait};

/// What a signal does to a process that neither catches nor ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The process ends.
    Terminate,
    /// The process ends and dumps core.
    CoreDump,
    /// Nothing happens.
    Ignore,
    /// The process stops until SIGCONT.
    Stop,
    /// A stopped process continues.
    Continue,
}

impl Action {
    /// A lower-case word for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Terminate => "terminate",
            Action::CoreDump => "core",
            Action::Ignore => "ignore",
            Action::Stop => "stop",
            Action::Continue => "continue",
        }
    }
}

/// A Linux signal, standard (1–31) or real-time (`SIGRTMIN`–`SIGRTMAX`).
///
/// Displays as `kill -l` names it (`SIGTERM`, `SIGRTMIN+3`); parses from a name with or without
/// `SIG` in any case, a number, `RTMIN+N` or `RTMAX-N`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Defines the standard signals once: a constant for each, and the table of numbers, names,
/// descriptions (the C library's words) and default actions.
macro_rules! standard_signals {
    ($(($n:literal, $name:ident, $desc:literal, $action:ident)),* $(,)?) => {
        impl Signal {
            $(
                #[doc = concat!("`SIG", stringify!($name), "` (", $n, "): ", $desc, ".")]
                pub const $name: Signal = Signal($n);
            )*
        }
        /// Standard signals: number, name, description, default action.
        const STANDARD: &[(i32, &str, &str, Action)] =
            &[$(($n, stringify!($name), $desc, Action::$action)),*];
    };
}

standard_signals![
    (1, HUP, "Hangup", Terminate),
    (2, INT, "Interrupt", Terminate),
    (3, QUIT, "Quit", CoreDump),
    (4, ILL, "Illegal instruction", CoreDump),
    (5, TRAP, "Trace/breakpoint trap", CoreDump),
    (6, ABRT, "Aborted", CoreDump),
    (7, BUS, "Bus error", CoreDump),
    (8, FPE, "Floating point exception", CoreDump),
    (9, KILL, "Killed", Terminate),
    (10, USR1, "User defined signal 1", Terminate),
    (11, SEGV, "Segmentation fault", CoreDump),
    (12, USR2, "User defined signal 2", Terminate),
    (13, PIPE, "Broken pipe", Terminate),
    (14, ALRM, "Alarm clock", Terminate),
    (15, TERM, "Terminated", Terminate),
    (16, STKFLT, "Stack fault", Terminate),
    (17, CHLD, "Child exited", Ignore),
    (18, CONT, "Continued", Continue),
    (19, STOP, "Stopped (signal)", Stop),
    (20, TSTP, "Stopped", Stop),
    (21, TTIN, "Stopped (tty input)", Stop),
    (22, TTOU, "Stopped (tty output)", Stop),
    (23, URG, "Urgent I/O condition", Ignore),
    (24, XCPU, "CPU time limit exceeded", CoreDump),
    (25, XFSZ, "File size limit exceeded", CoreDump),
    (26, VTALRM, "Virtual timer expired", Terminate),
    (27, PROF, "Profiling timer expired", Terminate),
    (28, WINCH, "Window changed", Ignore),
    (29, IO, "I/O possible", Terminate),
    (30, PWR, "Power failure", Terminate),
    (31, SYS, "Bad system call", CoreDump),
];

/// Other names the C library and shells accept.
const ALIASES: &[(&str, i32)] = &[("IOT", 6), ("CLD", 17), ("POLL", 29)];

fn invalid(text: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput).detail(text.to_string())
}

fn standard(n: i32) -> Option<&'static (i32, &'static str, &'static str, Action)> {
    STANDARD.iter().find(|(m, ..)| *m == n)
}

impl Signal {
    /// The signal with this number, if Linux has one (1–31, or SIGRTMIN–SIGRTMAX).
    pub fn from_number(n: i32) -> Result<Signal, Error> {
        let (min, max) = (
            procom_sys::signal::sigrtmin(),
            procom_sys::signal::sigrtmax(),
        );
        if standard(n).is_some() || (min..=max).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(invalid(format!(
                "{n} is not a signal number (1-31 are standard, {min}-{max} real-time; `procom signal list` shows them)"
            )))
        }
    }

    /// The real-time signal `SIGRTMIN + k`.
    #[doc(alias = "SIGRTMIN")]
    pub fn rtmin_plus(k: i32) -> Result<Signal, Error> {
        Signal::from_number(procom_sys::signal::sigrtmin().saturating_add(k))
    }

    /// The real-time signal `SIGRTMAX - k`.
    #[doc(alias = "SIGRTMAX")]
    pub fn rtmax_minus(k: i32) -> Result<Signal, Error> {
        Signal::from_number(procom_sys::signal::sigrtmax().saturating_sub(k))
    }

    /// Every signal, in `kill -l` order.
    pub fn all() -> impl Iterator<Item = Signal> {
        STANDARD
            .iter()
            .map(|(n, ..)| *n)
            .chain(procom_sys::signal::sigrtmin()..=procom_sys::signal::sigrtmax())
            .map(Signal)
    }

    /// The number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Whether it is a real-time signal (these queue, carry values, and arrive in order).
    pub fn is_realtime(self) -> bool {
        self.0 >= procom_sys::signal::sigrtmin()
    }

    /// The name without `SIG`, as `kill -l` writes it: `TERM`, `RTMIN+3`, `RTMAX-2`.
    pub fn name(self) -> String {
        if let Some((_, name, ..)) = standard(self.0) {
            return (*name).to_string();
        }
        let (min, max) = (
            procom_sys::signal::sigrtmin(),
            procom_sys::signal::sigrtmax(),
        );
        let k = self.0 - min;
        if self.0 == min {
            "RTMIN".into()
        } else if self.0 == max {
            "RTMAX".into()
        } else if k <= (max - min) / 2 {
            format!("RTMIN+{k}")
        } else {
            format!("RTMAX-{}", max - self.0)
        }
    }

    /// Its description in the C library's words (`strsignal(3)`): "Interrupt", "Killed",
    /// "Real-time signal 3".
    pub fn description(self) -> String {
        match standard(self.0) {
            Some((_, _, d, _)) => (*d).to_string(),
            None => format!(
                "Real-time signal {}",
                self.0 - procom_sys::signal::sigrtmin()
            ),
        }
    }

    /// The key that sends it to the terminal's foreground process group, if one does:
    /// `Ctrl+C` for SIGINT, `Ctrl+\` for SIGQUIT, `Ctrl+Z` for SIGTSTP.
    pub fn keyboard(self) -> Option<&'static str> {
        match self {
            Signal::INT => Some("Ctrl+C"),
            Signal::QUIT => Some("Ctrl+\\"),
            Signal::TSTP => Some("Ctrl+Z"),
            _ => None,
        }
    }

    /// What it does by default.
    pub fn default_action(self) -> Action {
        match standard(self.0) {
            Some((_, _, _, a)) => *a,
            None => Action::Terminate,
        }
    }

    /// Whether a process can catch or ignore it: all but SIGKILL and SIGSTOP.
    pub fn can_be_caught(self) -> bool {
        !procom_sys::signal::uncatchable(self.0)
    }

    /// Whether the kernel raises it for a fault of the process itself: SIGSEGV, SIGBUS, SIGILL
    /// and SIGFPE. procom neither catches nor ignores these (see [`Signals::catch`]).
    pub fn is_fault(self) -> bool {
        procom_sys::signal::is_fault(self.0)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}({})", self.name(), self.0)
    }
}

impl FromStr for Signal {
    type Err = Error;

    /// Parses `TERM`, `SIGTERM`, `term`, `15`, `RTMIN+3`, `SIGRTMAX-2` (and the aliases `IOT`,
    /// `CLD`, `POLL`).
    fn from_str(text: &str) -> Result<Signal, Error> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::from_number(n);
        }
        let upper = t.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((n, ..)) = STANDARD.iter().find(|(_, s, ..)| *s == name) {
            return Ok(Signal(*n));
        }
        if let Some((_, n)) = ALIASES.iter().find(|(s, _)| *s == name) {
            return Ok(Signal(*n));
        }
        let (min, max) = (
            procom_sys::signal::sigrtmin(),
            procom_sys::signal::sigrtmax(),
        );
        let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
            if rest.is_empty() {
                return Some(base);
            }
            let k: i32 = rest
                .strip_prefix(if sign > 0 { '+' } else { '-' })?
                .parse()
                .ok()?;
            base.checked_add(sign.checked_mul(k)?)
        };
        let n = if let Some(rest) = name.strip_prefix("RTMIN") {
            rt(min, rest, 1)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            rt(max, rest, -1)
        } else {
            None
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(Signal(n)),
            _ => Err(invalid(format!(
                "`{text}` is not a signal: use a name like TERM or SIGUSR1, a number, or RTMIN+N / RTMAX-N (`procom signal list` shows them all)"
            ))),
        }
    }
}

fn send_error(target: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(c) if c == rustix::io::Errno::SRCH.raw_os_error() => Error::new(ErrorKind::NotFound)
            .detail("no such process (it does not exist, or has exited)")
            .object(target),
        Some(c) if c == rustix::io::Errno::PERM.raw_os_error() => {
            Error::new(ErrorKind::PermissionDenied)
                .detail("it is not ours: it belongs to another user, and only root may signal it")
                .object(target)
        }
        _ => Error::os("signal it", e).object(target),
    }
}

fn check_pid(pid: i32) -> Result<(), Error> {
    if pid <= 0 {
        return Err(invalid(format!(
            "pid {pid} would reach a whole process group or every process (kill(2)); give a positive pid, or name the group with Target::group, Target::OWN_GROUP or Target::EVERYONE"
        )));
    }
    Ok(())
}

/// Who a signal goes to: one process, one process group, or — only when named as such — the
/// caller's own process group or every process the caller may signal.
///
/// kill(2) packs all four into one integer (a positive pid, `-pgid`, `0`, `-1`), and killpg(3)
/// turns group 1 into `kill(-1)`, every process: a computed number can broadcast by accident.
/// A `Target` cannot: [`Target::process`] takes only a positive pid, [`Target::group`] only a
/// group above 1, and the two that reach many processes are the constants
/// [`Target::OWN_GROUP`] and [`Target::EVERYONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(Reach);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Process(i32),
    Group(i32),
    OwnGroup,
    Everyone,
}

impl Target {
    /// The caller's own process group (kill(2) with pid 0), the caller included.
    pub const OWN_GROUP: Target = Target(Reach::OwnGroup);
    /// Every process the caller may signal, except init and the caller itself (kill(2) with
    /// pid -1): as root, every process on the machine (in its PID namespace).
    pub const EVERYONE: Target = Target(Reach::Everyone);

    /// The one process `pid`, which must be positive.
    pub fn process(pid: i32) -> Result<Target, Error> {
        check_pid(pid)?;
        Ok(Target(Reach::Process(pid)))
    }

    /// Every member of process group `pgid`. Group 1 is refused: killpg(3) sends to group 1
    /// as `kill(-1)`, which reaches every process ([`Target::EVERYONE`] says that on purpose);
    /// 0 and negative numbers are refused too ([`Target::OWN_GROUP`] is the caller's group).
    pub fn group(pgid: i32) -> Result<Target, Error> {
        match pgid {
            2.. => Ok(Target(Reach::Group(pgid))),
            1 => Err(invalid(
                "process group 1 cannot be signalled as a group: kill(2) reads it as -1, every process the caller may signal; use Target::EVERYONE if that is what is meant",
            )),
            _ => Err(invalid(format!(
                "process group {pgid} does not exist: a group is named by its leader's positive pid (Target::OWN_GROUP is the caller's own)"
            ))),
        }
    }

    /// Whether this target reaches more than one process group: the caller's own group or
    /// every process. Callers that take a target from a person should ask for confirmation.
    pub fn is_broadcast(self) -> bool {
        matches!(self.0, Reach::OwnGroup | Reach::Everyone)
    }

    /// The pid argument of kill(2) for this target.
    fn kill_pid(self) -> i32 {
        match self.0 {
            Reach::Process(pid) => pid,
            Reach::Group(pgid) => -pgid,
            Reach::OwnGroup => 0,
            Reach::Everyone => -1,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reach::Process(pid) => write!(f, "pid {pid}"),
            Reach::Group(pgid) => write!(f, "process group {pgid}"),
            Reach::OwnGroup => f.write_str("our process group"),
            Reach::Everyone => f.write_str("every process we may signal"),
        }
    }
}

/// Sends `sig` to process `pid` (which must be positive: a group or every process is
/// [`send_to`] with a [`Target`], so it is never an accident).
///
/// [`ErrorKind::NotFound`] if no such process exists, [`ErrorKind::PermissionDenied`] if it is
/// not ours (another user's, and we are not root).
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn send(pid: i32, sig: Signal) -> Result<(), Error> {
    send_to(Target::process(pid)?, sig)
}

/// Sends `sig` to every process in group `pgid` (above 1: see [`Target::group`]).
///
/// # References
/// - [`killpg(3)`](https://man7.org/linux/man-pages/man3/killpg.3.html)
#[doc(alias = "killpg")]
pub fn send_group(pgid: i32, sig: Signal) -> Result<(), Error> {
    send_to(Target::group(pgid)?, sig)
}

/// Sends `sig` to `target`: one process, one group, the caller's group or every process.
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn send_to(target: Target, sig: Signal) -> Result<(), Error> {
    procom_sys::signal::send(target.kill_pid(), sig.0)
        .map_err(|e| send_error(&target.to_string(), e))
}

/// Whether process `pid` exists and this process may signal it: kill(2) with signal 0, which
/// checks both and delivers nothing (`kill -0`). `Ok(())` if so; [`ErrorKind::NotFound`] if no
/// such process exists (a zombie not yet reaped still does); [`ErrorKind::PermissionDenied`] if
/// it exists but belongs to another user.
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn probe(pid: i32) -> Result<(), Error> {
    let target = Target::process(pid)?;
    procom_sys::signal::send(target.kill_pid(), 0).map_err(|e| send_error(&target.to_string(), e))
}

/// Queues `sig` with `value` for process `pid` (`sigqueue`): real-time signals queue one per
/// send, in order, each with its value; standard ones still coalesce while pending.
///
/// # References
/// - [`sigqueue(3)`](https://man7.org/linux/man-pages/man3/sigqueue.3.html)
#[doc(alias = "sigqueue")]
pub fn queue(pid: i32, sig: Signal, value: i32) -> Result<(), Error> {
    check_pid(pid)?;
    procom_sys::signal::queue(pid, sig.0, value).map_err(|e| send_error(&format!("pid {pid}"), e))
}

/// A process held by a pidfd: signals sent through it can never reach another process that
/// later reuses the pid.
///
/// Open it while the process is known to be the one meant — for a child, any time before it
/// is reaped (`Child::wait`) — and from then on it means that process only.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    fd: OwnedFd,
}

impl Process {
    /// Refers to process `pid` from now on.
    ///
    /// # References
    /// - [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
    #[doc(alias = "pidfd_open")]
    pub fn open(pid: i32) -> Result<Process, Error> {
        check_pid(pid)?;
        let p =
            rustix::process::Pid::from_raw(pid).ok_or_else(|| invalid("pid 0 is not a process"))?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .map_err(|e| send_error(&format!("pid {pid}"), e.into()))?;
        Ok(Process { pid, fd })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig`; [`ErrorKind::NotFound`] once the process has exited.
    ///
    /// # References
    /// - [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    #[doc(alias = "pidfd_send_signal")]
    pub fn send(&self, sig: Signal) -> Result<(), Error> {
        procom_sys::signal::send_pidfd(self.fd.as_fd(), sig.0)
            .map_err(|e| send_error(&format!("pid {} (pidfd)", self.pid), e))
    }
}

impl AsFd for Process {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why procom refuses to catch, ignore or change the action of `sig`, if it does.
fn refused(sig: Signal) -> Option<Error> {
    let detail = if !sig.can_be_caught() {
        "it can be neither caught nor ignored: the kernel keeps it so that any process can always be stopped"
    } else if sig.is_fault() {
        "it reports a fault of this process itself (a bad memory access, an illegal instruction, an arithmetic error), which a catcher cannot handle since the faulting instruction would run again forever; procom neither catches nor ignores it"
    } else {
        return None;
    };
    Some(
        Error::new(ErrorKind::InvalidInput)
            .detail(detail)
            .object(sig),
    )
}

fn action_error(sig: Signal, what: &str, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
        return Error::new(ErrorKind::InvalidInput)
            .detail(format!(
                "a Signals catcher in this process catches it, so it cannot be {what}; drop the catcher first (it then restores the action it replaced)"
            ))
            .object(sig);
    }
    Error::os(&format!("make it {what}"), e).object(sig)
}

/// Ignores `sig` from now on: the kernel discards it on arrival.
///
/// Refused ([`ErrorKind::InvalidInput`]) for SIGKILL and SIGSTOP, which cannot be ignored, for
/// the fault signals (see [`Signal::is_fault`]), and while a [`Signals`] in this process
/// catches `sig`.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_IGN")]
pub fn ignore(sig: Signal) -> Result<(), Error> {
    if let Some(e) = refused(sig) {
        return Err(e);
    }
    procom_sys::signal::ignore(sig.0).map_err(|e| action_error(sig, "ignored", e))
}

/// Gives `sig` its default action back (see [`Signal::default_action`]).
///
/// SIGKILL and SIGSTOP always have theirs, so this does nothing for them. Refused
/// ([`ErrorKind::InvalidInput`]) for the fault signals and while a [`Signals`] in this process
/// catches `sig` (dropping it restores what it replaced).
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_DFL")]
pub fn restore_default(sig: Signal) -> Result<(), Error> {
    if !sig.can_be_caught() {
        return Ok(());
    }
    if let Some(e) = refused(sig) {
        return Err(e);
    }
    procom_sys::signal::restore_default(sig.0)
        .map_err(|e| action_error(sig, "given its default action", e))
}

/// What this process does with a signal now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Its default action ([`Signal::default_action`]).
    Default,
    /// It is ignored.
    Ignore,
    /// A handler runs: a [`Signals`] catcher, or one installed by other code.
    Caught,
}

/// What this process does with `sig` now.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
pub fn disposition(sig: Signal) -> Result<Disposition, Error> {
    use procom_sys::signal::Disposition as D;
    match procom_sys::signal::disposition(sig.0) {
        Ok(D::Default) => Ok(Disposition::Default),
        Ok(D::Ignore) => Ok(Disposition::Ignore),
        Ok(D::Handled) => Ok(Disposition::Caught),
        Err(e) => Err(Error::os("read its disposition", e).object(sig)),
    }
}

/// While the guard lives, `signals` are blocked in the calling thread: they stay pending
/// (standard signals coalescing into one, real-time ones queueing) and are delivered when it
/// is dropped.
///
/// The mask is per thread. A signal sent to the process goes to any thread that does not block
/// it, so to hold a signal for the whole process, block it in every thread — simplest, before
/// spawning any (new threads inherit the mask of the thread that spawns them).
///
/// # References
/// - [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
#[doc(alias = "pthread_sigmask")]
#[doc(alias = "sigprocmask")]
pub fn block(signals: &[Signal]) -> Result<BlockGuard, Error> {
    let nums: Vec<i32> = signals.iter().map(|s| s.0).collect();
    procom_sys::signal::block(&nums)
        .map(BlockGuard)
        .map_err(|e| Error::os("block signals", e))
}

/// Unblocks the signals [`block`] blocked when dropped.
#[derive(Debug)]
pub struct BlockGuard(#[allow(dead_code)] procom_sys::signal::MaskGuard);

/// One signal delivered to a [`Signals`] catcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The signal.
    pub signal: Signal,
    /// The sender's pid (0 when the kernel sent it, e.g. a keyboard signal).
    pub sender_pid: i32,
    /// The sender's real uid.
    pub sender_uid: u32,
    /// The value sent with `sigqueue`, if it was.
    pub value: Option<i32>,
}

/// Catches signals and hands them out as [`Delivery`] values, by iterator or by `wait` calls.
///
/// ```no_run
/// use procom::signal::{Signal, Signals};
/// # fn main() -> Result<(), procom::Error> {
/// for d in Signals::catch([Signal::USR1, Signal::TERM])? {
///     println!("{} from pid {} (uid {})", d.signal, d.sender_pid, d.sender_uid);
///     if d.signal == Signal::TERM {
///         break; // shut down cleanly
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # How delivery works
///
/// No signal is blocked. While a `Signals` lives, each caught signal has a process-wide
/// handler (`sigaction`, `SA_SIGINFO | SA_RESTART`). The kernel runs it in whichever thread
/// does not block the signal — any thread, created before or after the catcher. The handler
/// only writes a 24-byte record (signal, sender pid and uid, value) to a pipe, the self-pipe
/// this catcher reads; it runs no code of yours, takes no lock, allocates nothing. `wait`
/// then reads the pipe in your thread. signalfd is not used because it only receives a signal
/// blocked in every thread of the process, which a library cannot arrange for threads it did
/// not create.
///
/// Consequences:
/// - A signal blocked in every thread (see [`block`]) stays pending and reaches the catcher
///   when some thread unblocks it.
/// - Standard signals sent while one is still pending coalesce into one delivery; real-time
///   signals queue, each with its value, in order — as the catcher sees them only when one
///   thread takes them all: two threads that do not block the signal may handle two of them
///   at the same moment, and their records may arrive in either order.
/// - Several catchers of the same signal each receive every delivery.
/// - A system call interrupted in another thread is restarted where the kernel allows
///   (`SA_RESTART`); a few (`poll`, `sleep`, ...) return `EINTR` as with any handler.
/// - The handler replaces the signal's previous action, which comes back when the last
///   catcher of that signal is dropped.
#[derive(Debug)]
pub struct Signals {
    sub: procom_sys::signal::Subscription,
    pending: Vec<u8>,
    signals: Vec<Signal>,
}

impl Signals {
    /// Starts catching `signals`. Until this is dropped they no longer take their default
    /// action (or the action they had); afterwards the previous action is restored.
    ///
    /// Refused with [`ErrorKind::InvalidInput`]: SIGKILL and SIGSTOP, which can be neither
    /// caught nor ignored, and the fault signals SIGSEGV, SIGBUS, SIGILL and SIGFPE (as tokio and
    /// signal-hook refuse them): when the kernel raises one for a fault of this process, a
    /// handler that records it and returns makes the faulting instruction run again, forever.
    ///
    /// # References
    /// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
    /// - [`signal-safety(7)`](https://man7.org/linux/man-pages/man7/signal-safety.7.html)
    #[doc(alias = "sigaction")]
    pub fn catch(signals: impl IntoIterator<Item = Signal>) -> Result<Signals, Error> {
        let signals: Vec<Signal> = signals.into_iter().collect();
        if let Some(e) = signals.iter().find_map(|s| refused(*s)) {
            return Err(e);
        }
        if signals.is_empty() {
            return Err(invalid("name at least one signal to catch"));
        }
        let nums: Vec<i32> = signals.iter().map(|s| s.0).collect();
        let sub = procom_sys::signal::subscribe(&nums)
            .map_err(|e| Error::os("install a signal catcher", e))?;
        Ok(Signals {
            sub,
            pending: Vec::new(),
            signals,
        })
    }

    /// The signals being caught.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Deliveries dropped because more than ~40,000 were waiting unread.
    pub fn lost(&self) -> u64 {
        self.sub.lost()
    }

    /// The next delivery, waiting as long as it takes.
    pub fn wait(&mut self) -> Result<Delivery, Error> {
        self.next_deadline(None, false)
    }

    /// The next delivery if one has arrived, else [`ErrorKind::Empty`].
    pub fn try_wait(&mut self) -> Result<Delivery, Error> {
        self.next_deadline(Some(Instant::now()), true)
    }

    /// The next delivery, waiting at most `timeout` ([`ErrorKind::Timeout`] after it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Delivery, Error> {
        self.next_deadline(deadline_after(timeout), false)
    }

    /// The next delivery, waiting until `deadline` at most ([`ErrorKind::Timeout`] after it).
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<Delivery, Error> {
        self.next_deadline(Some(deadline), false)
    }

    /// The deliveries that have arrived, without waiting.
    pub fn try_iter(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        std::iter::from_fn(move || self.try_wait().ok())
    }

    fn next_deadline(
        &mut self,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<Delivery, Error> {
        use procom_sys::signal::{RECORD_SIZE, Record, SI_QUEUE};
        loop {
            if self.pending.len() >= RECORD_SIZE {
                let mut r = [0u8; RECORD_SIZE];
                r.copy_from_slice(&self.pending[..RECORD_SIZE]);
                self.pending.drain(..RECORD_SIZE);
                let rec = Record::decode(&r);
                let Ok(signal) = Signal::from_number(rec.signo) else {
                    continue;
                };
                return Ok(Delivery {
                    signal,
                    sender_pid: rec.pid,
                    sender_uid: rec.uid,
                    value: (rec.code == SI_QUEUE).then_some(rec.value),
                });
            }
            let mut buf = [0u8; RECORD_SIZE * 64];
            match rustix::io::read(self.sub.fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    self.pending.extend_from_slice(&buf[..n]);
                    continue;
                }
                Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::os("read delivered signals", e.into())),
            }
            // `wait` retries EINTR against the same deadline.
            if !wait(self.sub.fd(), PollFlags::IN, deadline)
                .map_err(|e| Error::os("wait for signals", e))?
            {
                return Err(if is_try {
                    Error::new(ErrorKind::Empty).detail("no signal has arrived")
                } else {
                    Error::new(ErrorKind::Timeout).detail("no signal arrived before the deadline")
                });
            }
        }
    }
}

impl Iterator for Signals {
    type Item = Delivery;

    /// Blocks for the next delivery; ends only if reading fails.
    fn next(&mut self) -> Option<Delivery> {
        self.wait().ok()
    }
}

/// The descriptor that becomes readable when a delivery is waiting, for an event loop of
/// your own (poll, epoll, mio); then call [`Signals::try_wait`] until it reports empty.
impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sub.fd()
    }
}

/// The async form of [`Signals`] (feature `tokio`): a [`futures_core::Stream`] of deliveries,
/// woken by the runtime when the catcher's pipe becomes readable.
///
/// ```no_run
/// # async fn demo() -> Result<(), procom::Error> {
/// use procom::signal::{AsyncSignals, Signal};
/// let mut signals = AsyncSignals::catch([Signal::TERM, Signal::HUP])?;
/// while let Ok(d) = signals.recv().await {
///     if d.signal == Signal::TERM { break }
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncSignals {
    inner: Signals,
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

#[cfg(feature = "tokio")]
impl AsyncSignals {
    /// Starts catching `signals` (as [`Signals::catch`]); must be called inside a tokio runtime
    /// with I/O enabled.
    pub fn catch(signals: impl IntoIterator<Item = Signal>) -> Result<AsyncSignals, Error> {
        let inner = Signals::catch(signals)?;
        let dup = inner
            .sub
            .fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os("duplicate the catcher's pipe", e))?;
        let fd = procom_sys::async_fd::register(dup, tokio::io::Interest::READABLE)
            .map_err(|e| Error::os("register the catcher with the tokio runtime", e))?;
        Ok(AsyncSignals { inner, fd })
    }

    /// The signals being caught.
    pub fn signals(&self) -> &[Signal] {
        self.inner.signals()
    }

    /// The next delivery.
    pub async fn recv(&mut self) -> Result<Delivery, Error> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery: ready with one, or pending until the pipe is readable.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Delivery, Error>> {
        use std::task::Poll;
        loop {
            match self.inner.try_wait() {
                Ok(d) => return Poll::Ready(Ok(d)),
                Err(e) if e.kind() == ErrorKind::Empty => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.fd.poll_read_ready(cx) {
                // The pipe was drained above; a record written since then set a new readiness
                // tick, which clear_ready leaves alone, and the loop reads it.
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::os("wait for signals", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl futures_core::Stream for AsyncSignals {
    type Item = Delivery;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.poll_recv(cx).map(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by every unit test that changes this process's signal state.
    static SIGNAL_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        SIGNAL_STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn targets_that_reach_many_are_only_named_on_purpose() {
        for pid in [0, -1, -5, i32::MIN] {
            assert_eq!(
                Target::process(pid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        for pgid in [1, 0, -1, i32::MIN] {
            assert_eq!(
                Target::group(pgid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        let one = Target::group(1).unwrap_err().to_string();
        assert!(one.contains("every process"), "{one}");
        // killpg(1) is kill(-1): refused before any system call, so it reaches nobody.
        assert_eq!(
            send_group(1, Signal::CONT).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            send(-1, Signal::CONT).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(Target::process(7).unwrap().kill_pid(), 7);
        assert_eq!(Target::group(7).unwrap().kill_pid(), -7);
        assert_eq!(Target::OWN_GROUP.kill_pid(), 0);
        assert_eq!(Target::EVERYONE.kill_pid(), -1);
        assert!(Target::EVERYONE.is_broadcast() && Target::OWN_GROUP.is_broadcast());
        assert!(!Target::group(7).unwrap().is_broadcast());
        // kill -0 of this very process: it exists and we may signal it.
        probe(std::process::id() as i32).unwrap();
    }

    #[test]
    fn names_and_numbers_round_trip() {
        for s in Signal::all() {
            assert_eq!(s.name().parse::<Signal>().unwrap(), s);
            assert_eq!(s.to_string().parse::<Signal>().unwrap(), s);
            assert_eq!(s.number().to_string().parse::<Signal>().unwrap(), s);
            assert_eq!(s.to_string().to_lowercase().parse::<Signal>().unwrap(), s);
        }
        assert_eq!("term".parse::<Signal>().unwrap(), Signal::TERM);
        assert_eq!(" SIGUSR1 ".parse::<Signal>().unwrap(), Signal::USR1);
        assert_eq!("iot".parse::<Signal>().unwrap(), Signal::ABRT);
        assert_eq!("SIGCLD".parse::<Signal>().unwrap(), Signal::CHLD);
        assert_eq!("POLL".parse::<Signal>().unwrap(), Signal::IO);
        assert_eq!(
            "RTMIN+3".parse::<Signal>().unwrap().number(),
            procom_sys::signal::sigrtmin() + 3
        );
        assert_eq!(
            "sigrtmax-2".parse::<Signal>().unwrap(),
            Signal::rtmax_minus(2).unwrap()
        );
        for bad in [
            "",
            "FOO",
            "0",
            "32",
            "65",
            "-9",
            "RTMIN+99",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+2147483647",
            "RTMAX-2147483648",
            "SIG",
        ] {
            let e = bad.parse::<Signal>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("signal"), "{e}");
        }
        assert_eq!(Signal::all().count(), 31 + 31);
        assert_eq!(format!("{:?}", Signal::TERM), "SIGTERM(15)");
    }

    #[test]
    fn descriptions_are_the_c_librarys() {
        for s in Signal::all() {
            assert_eq!(
                s.description(),
                procom_sys::signal::describe(s.number()),
                "{s}"
            );
        }
        assert_eq!(Signal::INT.keyboard(), Some("Ctrl+C"));
        assert_eq!(Signal::TSTP.keyboard(), Some("Ctrl+Z"));
        assert_eq!(Signal::TSTP.default_action(), Action::Stop);
        assert_eq!(
            Signal::rtmin_plus(0).unwrap().default_action(),
            Action::Terminate
        );
    }

    #[test]
    fn kill_stop_and_faults_are_refused() {
        for s in [Signal::KILL, Signal::STOP] {
            let e = Signals::catch([Signal::USR1, s]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.to_string().contains("can be neither caught nor ignored"),
                "{e}"
            );
            assert_eq!(ignore(s).unwrap_err().kind(), ErrorKind::InvalidInput);
            restore_default(s).unwrap(); // they always have it
        }
        for s in [Signal::SEGV, Signal::BUS, Signal::ILL, Signal::FPE] {
            let e = Signals::catch([s]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("fault of this process"), "{e}");
            assert_eq!(ignore(s).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(
                restore_default(s).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        assert_eq!(
            Signals::catch([]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn ignore_while_caught_is_refused_and_the_action_comes_back() {
        let _state = lock();
        let sig = Signal::rtmin_plus(5).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Default);
        ignore(sig).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Ignore);
        {
            let mut caught = Signals::catch([sig]).unwrap();
            assert_eq!(disposition(sig).unwrap(), Disposition::Caught);
            let e = restore_default(sig).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("drop the catcher first"), "{e}");
            assert_eq!(caught.try_wait().unwrap_err().kind(), ErrorKind::Empty);
            assert_eq!(
                caught
                    .wait_timeout(Duration::from_millis(1))
                    .unwrap_err()
                    .kind(),
                ErrorKind::Timeout
            );
        }
        assert_eq!(disposition(sig).unwrap(), Disposition::Ignore);
        restore_default(sig).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Default);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_signals_arrive_through_the_runtime() {
        let _state = lock();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let rtsig = Signal::rtmin_plus(4).unwrap();
            let mut s = AsyncSignals::catch([rtsig]).unwrap();
            let me = std::process::id() as i32;
            for v in 0..3 {
                queue(me, rtsig, v).unwrap();
            }
            // Each exactly once. Their order is the kernel's only where one thread takes them
            // all: in this multi-threaded test process two may be handled at once.
            let mut values = Vec::new();
            for _ in 0..3 {
                let d = s.recv().await.unwrap();
                assert_eq!((d.signal, d.sender_pid), (rtsig, me));
                values.push(d.value);
            }
            values.sort();
            assert_eq!(values, [Some(0), Some(1), Some(2)]);
        });
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_signals_outside_a_runtime_is_an_error() {
        let _state = lock();
        let e = AsyncSignals::catch([Signal::USR2]).unwrap_err();
        assert!(e.to_string().contains("tokio runtime"), "{e}");
    }

    #[test]
    fn broadcast_pids_are_refused_by_send() {
        for pid in [0, -1, -5] {
            assert_eq!(
                send(pid, Signal::TERM).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                send_group(pid, Signal::TERM).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                queue(pid, Signal::USR1, 1).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                Process::open(pid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
