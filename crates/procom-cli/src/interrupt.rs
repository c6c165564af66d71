//! How the program ends when it is told to stop: Ctrl-C (SIGINT), SIGTERM or SIGHUP, or its
//! standard output going away while it serves.
//!
//! A background thread waits for the signal (signal-hook's self-pipe; nothing runs in the
//! handler). It takes the output lock, so a message being printed or sent is finished first
//! (up to a second), then prints one sentence and ends the program with status 1 through
//! [`exit`]: the exit hooks run first (they remove what this process created, and print what a
//! receiver counted), so nothing but SIGKILL leaves a socket file or a segment behind. No
//! partial message is ever printed as if whole.
//!
//! Nothing here panics when standard error is closed or full: [`warn`] drops what cannot be
//! written, so the watcher thread survives and a signal always ends the program.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError};
use std::time::{Duration, Instant};

type HookFn = Arc<dyn Fn() + Send + Sync>;

static OUTPUT: Mutex<()> = Mutex::new(());
static ACTIVITY: Mutex<String> = Mutex::new(String::new());
static IN_FLIGHT: Mutex<&'static str> = Mutex::new(CUT_OFF);
static HOOKS: Mutex<Vec<(u64, HookFn)>> = Mutex::new(Vec::new());
static NEXT_HOOK: Mutex<u64> = Mutex::new(0);
static EXITING: Mutex<()> = Mutex::new(());
static CREATING: RwLock<()> = RwLock::new(());

/// What an interrupt means for a message held in the middle of a byte-stream transfer.
pub const CUT_OFF: &str =
    "a message was in transfer, and its receiver may see it cut off as incomplete";
/// What an interrupt means for a message held in a send to a mechanism that takes a message
/// whole or not at all (queues, datagrams, the shared-memory ring).
pub const NOT_SENT: &str = "the message being sent was not delivered (a message queue, datagram or ring takes a message whole or not at all); every earlier one was";

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held while one message is written out, so an interrupt never cuts it in half.
pub fn output_lock() -> MutexGuard<'static, ()> {
    lock(&OUTPUT)
}

/// Describes what the program is doing, for the interrupt message ("receiving from fifo:x").
pub fn set_activity(what: impl Into<String>) {
    *lock(&ACTIVITY) = what.into();
}

/// What it means if an interrupt finds a message in transfer ([`CUT_OFF`] unless set).
pub fn set_in_flight(meaning: &'static str) {
    *lock(&IN_FLIGHT) = meaning;
}

/// Writes `procom: MESSAGE` as one line on standard error. A closed or full standard error
/// loses the line; it never panics.
pub fn warn(message: fmt::Arguments<'_>) {
    let line = format!("procom: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Registered work for an early end (a signal, standard output gone); unregistered on drop.
#[must_use = "the hook is unregistered when this is dropped"]
pub struct ExitHook(u64);

impl Drop for ExitHook {
    fn drop(&mut self) {
        lock(&HOOKS).retain(|(id, _)| *id != self.0);
    }
}

/// Runs `f` if the program ends through [`exit`] while the returned hook is alive. A normal
/// return does not run it: the objects it cleans up after clean up after themselves then.
pub fn on_exit(f: impl Fn() + Send + Sync + 'static) -> ExitHook {
    let id = {
        let mut next = lock(&NEXT_HOOK);
        *next += 1;
        *next
    };
    lock(&HOOKS).push((id, Arc::new(f)));
    ExitHook(id)
}

/// Held while an object is created and its exit hook registered: an early end waits (up to a
/// second) for the hook, so a signal in between cannot leave the object behind.
pub fn creating() -> RwLockReadGuard<'static, ()> {
    CREATING.read().unwrap_or_else(|p| p.into_inner())
}

/// Ends the program now with `code`, after running every exit hook once. A second caller
/// (the interrupt watcher and a server thread at the same moment) waits for the first.
pub fn exit(code: u8) -> ! {
    let _only_one = lock(&EXITING);
    let _no_creation = within_a_second(|| CREATING.try_write()); // an object being created
    let hooks: Vec<HookFn> = lock(&HOOKS).drain(..).map(|(_, f)| f).collect();
    for hook in hooks {
        hook();
    }
    std::process::exit(i32::from(code))
}

/// Starts the watcher thread for SIGINT, SIGTERM and SIGHUP, leaving out `keep` (signals the
/// command catches itself), and SIGHUP when the process was started with it ignored (`nohup`):
/// it stays ignored.
pub fn install(keep: &[procom::signal::Signal]) -> anyhow::Result<()> {
    use procom::signal::{Disposition, Signal, disposition};
    let watched: Vec<i32> = [Signal::INT, Signal::TERM, Signal::HUP]
        .into_iter()
        .filter(|s| !keep.contains(s))
        .filter(|s| *s != Signal::HUP || !matches!(disposition(*s), Ok(Disposition::Ignore)))
        .map(Signal::number)
        .collect();
    if watched.is_empty() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new(&watched)?;
    std::thread::Builder::new()
        .name("procom-interrupt".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                interrupted(sig);
            }
        })?;
    Ok(())
}

/// Ends the program (status 0, quietly, after the exit hooks) as soon as standard output's
/// reader goes away — a pipe whose reader exited reports an error, a socket or terminal a
/// hang-up — even while nothing is being printed: a server whose output nobody reads any more
/// must not go on accepting clients and dropping what they send.
pub fn watch_stdout() -> anyhow::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    std::thread::Builder::new()
        .name("procom-stdout".into())
        .spawn(|| {
            let stdout = std::io::stdout();
            let mut fds = [PollFd::from_borrowed_fd(stdout.as_fd(), PollFlags::empty())];
            loop {
                match poll(&mut fds, None) {
                    Ok(_)
                        if fds[0]
                            .revents()
                            .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) =>
                    {
                        exit(0)
                    }
                    Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return, // nothing to watch
                }
            }
        })?;
    Ok(())
}

/// Takes a guard through `try_take`, waiting up to a second for whoever holds it; `None` if
/// they still do (an early end does not wait forever for a thread stuck in a system call).
fn within_a_second<G>(mut try_take: impl FnMut() -> Result<G, TryLockError<G>>) -> Option<G> {
    let give_up = Instant::now() + Duration::from_secs(1);
    loop {
        match try_take() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(5)); // waiting out the holder
            }
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}

fn interrupted(sig: i32) -> ! {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let name = match sig {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    };
    let guard = within_a_second(|| OUTPUT.try_lock()); // a message being written
    let activity = lock(&ACTIVITY).clone();
    let what = if activity.is_empty() {
        String::new()
    } else {
        format!(" while {activity}")
    };
    let tail = if guard.is_some() {
        "every message already shown was whole"
    } else {
        *lock(&IN_FLIGHT)
    };
    warn(format_args!("interrupted by {name}{what}; {tail}"));
    exit(1)
}
