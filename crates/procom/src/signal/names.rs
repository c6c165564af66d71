//! The `Signal` type: every Linux signal's number, name, description and default action.

use std::fmt;
use std::str::FromStr;

#[cfg(doc)]
use super::Signals;
use crate::error::{Error, ErrorKind};

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
pub struct Signal(pub(super) i32);

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

pub(super) fn invalid(text: impl fmt::Display) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
