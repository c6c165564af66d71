//! Signals: the only asynchronous IPC mechanism.
//!
//! A signal can reach a process at any moment — from the keyboard (Ctrl+C is SIGINT, Ctrl+Z
//! SIGTSTP) or from software (`kill -9 PID`). For each signal a process takes the default
//! action, catches it, or ignores it; SIGKILL and SIGSTOP can be neither caught nor ignored,
//! so any process can always be stopped.
//!
//! - [`Signal`]: every Linux signal with the number, name and description `kill -l` shows,
//!   real-time ones included (`RTMIN+3`, `RTMAX-2`), parsed from `TERM`, `SIGTERM`, `term`,
//!   `15` or `RTMIN+3`.
//! - Sending: [`send`] (a pid), [`send_group`], [`queue`] (with a value, `sigqueue`), and
//!   [`Process`] (a pidfd: no race with pid reuse).
//! - Catching: [`Signals::catch`] delivers each signal as a [`Delivery`] (the signal, the
//!   sender's pid and uid, the queued value) through an iterator. No user code runs in the
//!   handler: it only writes a record to a pipe, and it works whichever thread the kernel
//!   delivers to, so multi-threaded programs need nothing special (see
//!   `procom_sys::signal` for the mechanism).
//! - [`ignore`], [`restore_default`], and [`block`] (hold signals pending in this thread).
//!
//! # References
//! - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)

use std::fmt;
use std::os::fd::OwnedFd;
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Standard signals: number, name, description, default action.
const STANDARD: [(i32, &str, &str, Action); 31] = [
    (1, "HUP", "Hangup", Action::Terminate),
    (2, "INT", "Interrupt (Ctrl+C)", Action::Terminate),
    (3, "QUIT", "Quit (Ctrl+\\)", Action::CoreDump),
    (4, "ILL", "Illegal instruction", Action::CoreDump),
    (5, "TRAP", "Trace/breakpoint trap", Action::CoreDump),
    (6, "ABRT", "Aborted", Action::CoreDump),
    (7, "BUS", "Bus error", Action::CoreDump),
    (8, "FPE", "Floating point exception", Action::CoreDump),
    (
        9,
        "KILL",
        "Killed (cannot be caught or ignored)",
        Action::Terminate,
    ),
    (10, "USR1", "User defined signal 1", Action::Terminate),
    (11, "SEGV", "Segmentation fault", Action::CoreDump),
    (12, "USR2", "User defined signal 2", Action::Terminate),
    (13, "PIPE", "Broken pipe", Action::Terminate),
    (14, "ALRM", "Alarm clock", Action::Terminate),
    (15, "TERM", "Terminated", Action::Terminate),
    (16, "STKFLT", "Stack fault", Action::Terminate),
    (17, "CHLD", "Child exited", Action::Ignore),
    (18, "CONT", "Continued", Action::Continue),
    (
        19,
        "STOP",
        "Stopped (cannot be caught or ignored)",
        Action::Stop,
    ),
    (20, "TSTP", "Stopped (Ctrl+Z)", Action::Stop),
    (21, "TTIN", "Stopped (tty input)", Action::Stop),
    (22, "TTOU", "Stopped (tty output)", Action::Stop),
    (23, "URG", "Urgent I/O condition", Action::Ignore),
    (24, "XCPU", "CPU time limit exceeded", Action::CoreDump),
    (25, "XFSZ", "File size limit exceeded", Action::CoreDump),
    (26, "VTALRM", "Virtual timer expired", Action::Terminate),
    (27, "PROF", "Profiling timer expired", Action::Terminate),
    (28, "WINCH", "Window changed", Action::Ignore),
    (29, "IO", "I/O possible", Action::Terminate),
    (30, "PWR", "Power failure", Action::Terminate),
    (31, "SYS", "Bad system call", Action::CoreDump),
];

#[allow(missing_docs)]
impl Signal {
    pub const HUP: Signal = Signal(1);
    pub const INT: Signal = Signal(2);
    pub const QUIT: Signal = Signal(3);
    pub const ABRT: Signal = Signal(6);
    pub const KILL: Signal = Signal(9);
    pub const USR1: Signal = Signal(10);
    pub const SEGV: Signal = Signal(11);
    pub const USR2: Signal = Signal(12);
    pub const PIPE: Signal = Signal(13);
    pub const ALRM: Signal = Signal(14);
    pub const TERM: Signal = Signal(15);
    pub const CHLD: Signal = Signal(17);
    pub const CONT: Signal = Signal(18);
    pub const STOP: Signal = Signal(19);
    pub const TSTP: Signal = Signal(20);
    pub const WINCH: Signal = Signal(28);
}

fn invalid(text: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput).detail(text.to_string())
}

impl Signal {
    /// The signal with this number, if Linux has one (1–31, or SIGRTMIN–SIGRTMAX).
    pub fn from_number(n: i32) -> Result<Signal, Error> {
        let (min, max) = (
            procom_sys::signal::sigrtmin(),
            procom_sys::signal::sigrtmax(),
        );
        if (1..=31).contains(&n) || (min..=max).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(invalid(format!(
                "{n} is not a signal number (1-31 are standard, {min}-{max} real-time; `procom signal list` shows them)"
            )))
        }
    }

    /// The real-time signal `SIGRTMIN + k`.
    pub fn rtmin_plus(k: i32) -> Result<Signal, Error> {
        Signal::from_number(procom_sys::signal::sigrtmin() + k)
    }

    /// Every signal, in `kill -l` order.
    pub fn all() -> impl Iterator<Item = Signal> {
        (1..=31)
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
        if let Some((_, name, _, _)) = STANDARD.iter().find(|(n, ..)| *n == self.0) {
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

    /// A short description, like strsignal(3) gives.
    pub fn description(self) -> String {
        match STANDARD.iter().find(|(n, ..)| *n == self.0) {
            Some((_, _, d, _)) => (*d).to_string(),
            None => format!(
                "Real-time signal {}",
                self.0 - procom_sys::signal::sigrtmin()
            ),
        }
    }

    /// What it does by default.
    pub fn default_action(self) -> Action {
        match STANDARD.iter().find(|(n, ..)| *n == self.0) {
            Some((_, _, _, a)) => *a,
            None => Action::Terminate,
        }
    }

    /// Whether a process can catch or ignore it (all but SIGKILL and SIGSTOP).
    pub fn can_be_caught(self) -> bool {
        self != Signal::KILL && self != Signal::STOP
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

    /// Parses `TERM`, `SIGTERM`, `term`, `15`, `RTMIN+3`, `SIGRTMAX-2`.
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
            Some(base + sign * k)
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
            "pid {pid} would reach a whole process group or every process (kill(2)); use send_group or a positive pid"
        )));
    }
    Ok(())
}

/// Sends `sig` to process `pid` (which must be positive: group and broadcast sends are
/// [`send_group`] and [`broadcast`], so they are never an accident).
#[doc(alias = "kill")]
pub fn send(pid: i32, sig: Signal) -> Result<(), Error> {
    check_pid(pid)?;
    procom_sys::signal::send(pid, sig.0).map_err(|e| send_error(&format!("pid {pid}"), e))
}

/// Sends `sig` to every process in group `pgid`.
#[doc(alias = "killpg")]
pub fn send_group(pgid: i32, sig: Signal) -> Result<(), Error> {
    check_pid(pgid)?;
    procom_sys::signal::send_group(pgid, sig.0)
        .map_err(|e| send_error(&format!("process group {pgid}"), e))
}

/// kill(2) with a pid of 0 (the caller's group) or -1 (every process the caller may signal).
pub fn broadcast(pid: i32, sig: Signal) -> Result<(), Error> {
    if pid > 0 {
        return send(pid, sig);
    }
    procom_sys::signal::send(pid, sig.0).map_err(|e| send_error(&format!("pid {pid}"), e))
}

/// Queues `sig` with `value` for process `pid` (`sigqueue`): real-time signals queue one per
/// send, in order, each with its value; standard ones still coalesce.
#[doc(alias = "sigqueue")]
pub fn queue(pid: i32, sig: Signal, value: i32) -> Result<(), Error> {
    check_pid(pid)?;
    procom_sys::signal::queue(pid, sig.0, value).map_err(|e| send_error(&format!("pid {pid}"), e))
}

/// A process held by a pidfd: signals sent through it can never reach another process that
/// later reuses the pid.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    fd: OwnedFd,
}

impl Process {
    /// Refers to process `pid` from now on.
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
    pub fn send(&self, sig: Signal) -> Result<(), Error> {
        procom_sys::signal::send_pidfd(std::os::fd::AsFd::as_fd(&self.fd), sig.0)
            .map_err(|e| send_error(&format!("pid {} (pidfd)", self.pid), e))
    }
}

fn uncatchable(sig: Signal, what: &str) -> Error {
    Error::new(ErrorKind::InvalidInput)
        .detail(format!(
            "{sig} can be neither caught nor ignored, so it cannot be {what}: the kernel keeps it to stop any process"
        ))
        .object(sig)
}

/// Ignores `sig` from now on.
pub fn ignore(sig: Signal) -> Result<(), Error> {
    if !sig.can_be_caught() {
        return Err(uncatchable(sig, "ignored"));
    }
    procom_sys::signal::set_disposition(sig.0, true)
        .map_err(|e| Error::os("ignore it", e).object(sig))
}

/// Restores `sig`'s default action.
pub fn restore_default(sig: Signal) -> Result<(), Error> {
    procom_sys::signal::set_disposition(sig.0, false)
        .map_err(|e| Error::os("restore its default action", e).object(sig))
}

/// While the guard lives, `signals` are blocked in the calling thread: they stay pending
/// (standard signals coalescing into one, real-time ones queueing) and are delivered when it
/// is dropped.
///
/// The mask is per thread. A signal sent to the process goes to any thread that does not block
/// it, so to hold a signal for the whole process, block it in every thread — simplest, before
/// spawning any (new threads inherit the mask of the thread that spawns them).
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
    /// The sender's pid (0 when the kernel sent it, e.g. SIGPIPE or a keyboard signal).
    pub sender_pid: i32,
    /// The sender's real uid.
    pub sender_uid: u32,
    /// The value sent with `sigqueue`, if it was.
    pub value: Option<i32>,
}

/// Catches signals and hands them out as [`Delivery`] values.
#[derive(Debug)]
pub struct Signals {
    sub: procom_sys::signal::Subscription,
    pending: Vec<u8>,
    signals: Vec<Signal>,
}

impl Signals {
    /// Starts catching `signals`. Until this is dropped they no longer take their default
    /// action; afterwards the previous disposition is restored. SIGKILL and SIGSTOP are refused.
    pub fn catch(signals: impl IntoIterator<Item = Signal>) -> Result<Signals, Error> {
        let signals: Vec<Signal> = signals.into_iter().collect();
        if let Some(s) = signals.iter().find(|s| !s.can_be_caught()) {
            return Err(uncatchable(*s, "caught"));
        }
        if let Some(s) = signals.iter().find(|s| [4, 7, 8, 11].contains(&s.0)) {
            return Err(invalid(format!(
                "{s} is a synchronous fault (the faulting instruction would run again after the handler): it cannot be caught as a message"
            ))
            .object(s));
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

    /// The next delivery if one is waiting, else [`ErrorKind::Empty`].
    pub fn try_wait(&mut self) -> Result<Delivery, Error> {
        self.next_deadline(Some(Instant::now()), true)
    }

    /// The next delivery, waiting at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Delivery, Error> {
        self.next_deadline(deadline_after(timeout), false)
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
    /// Starts catching `signals`; must be called inside a tokio runtime with I/O enabled.
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

    /// The next delivery.
    pub async fn recv(&mut self) -> Result<Delivery, Error> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(
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
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(), // the pipe was drained above
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

    #[test]
    fn names_and_numbers_round_trip() {
        for s in Signal::all() {
            assert_eq!(s.name().parse::<Signal>().unwrap(), s);
            assert_eq!(s.to_string().parse::<Signal>().unwrap(), s);
            assert_eq!(s.number().to_string().parse::<Signal>().unwrap(), s);
        }
        assert_eq!("term".parse::<Signal>().unwrap(), Signal::TERM);
        assert_eq!("SIGUSR1".parse::<Signal>().unwrap(), Signal::USR1);
        assert_eq!(
            "RTMIN+3".parse::<Signal>().unwrap().number(),
            procom_sys::signal::sigrtmin() + 3
        );
        assert_eq!(
            "sigrtmax-2".parse::<Signal>().unwrap().number(),
            procom_sys::signal::sigrtmax() - 2
        );
        for bad in ["", "FOO", "0", "32", "65", "RTMIN+99", "RTMIN-1", "RTMAX+1"] {
            let e = bad.parse::<Signal>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
        assert_eq!(Signal::all().count(), 31 + 31);
    }

    #[test]
    fn kill_and_stop_are_refused() {
        assert_eq!(
            Signals::catch([Signal::KILL]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Signals::catch([Signal::USR1, Signal::STOP])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            ignore(Signal::KILL).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(
            ignore(Signal::STOP)
                .unwrap_err()
                .to_string()
                .contains("can be neither caught nor ignored")
        );
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_signals_arrive_through_the_runtime() {
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
            for v in 0..3 {
                let d = s.recv().await.unwrap();
                assert_eq!((d.signal, d.value, d.sender_pid), (rtsig, Some(v), me));
            }
        });
    }

    #[test]
    fn broadcast_pids_are_refused_by_send() {
        assert_eq!(
            send(0, Signal::TERM).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            send(-1, Signal::TERM).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            queue(0, Signal::USR1, 1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
