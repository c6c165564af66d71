//! Ctrl-C (SIGINT) and SIGTERM in the middle of a transfer.
//!
//! A background thread waits for the signal (signal-hook's self-pipe; nothing runs in the
//! handler). It takes the output lock, so a message being printed or sent is finished first
//! (up to a second), then prints one sentence and exits with status 1: no partial message is
//! ever printed as if whole.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

static OUTPUT: Mutex<()> = Mutex::new(());
static ACTIVITY: OnceLock<Mutex<String>> = OnceLock::new();

/// Held while one message is written out, so an interrupt never cuts it in half.
pub fn output_lock() -> MutexGuard<'static, ()> {
    OUTPUT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Describes what the program is doing, for the interrupt message ("receiving from fifo:x").
pub fn set_activity(what: impl Into<String>) {
    let slot = ACTIVITY.get_or_init(|| Mutex::new(String::new()));
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = what.into();
}

/// Starts the watcher thread.
pub fn install() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("procom-interrupt".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGINT {
                    "Ctrl-C (SIGINT)"
                } else {
                    "SIGTERM"
                };
                let give_up = Instant::now() + Duration::from_secs(1);
                let guard = loop {
                    match OUTPUT.try_lock() {
                        Ok(g) => break Some(g),
                        Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
                        Err(std::sync::TryLockError::WouldBlock) if Instant::now() < give_up => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(std::sync::TryLockError::WouldBlock) => break None,
                    }
                };
                let activity = ACTIVITY
                    .get()
                    .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
                    .unwrap_or_default();
                let what = if activity.is_empty() {
                    String::new()
                } else {
                    format!(" while {activity}")
                };
                let tail = if guard.is_some() {
                    "every message already shown was whole"
                } else {
                    "a message was cut off mid-transfer, and its receiver will see it as incomplete"
                };
                eprintln!("procom: interrupted by {name}{what}; {tail}");
                std::process::exit(1);
            }
        })?;
    Ok(())
}
