//! What a run leaves if it ends early: the named kernel objects its scenarios create here and
//! in their peers (shared-memory segments, POSIX semaphores and message queues, System V
//! queues), and the peer processes themselves.
//!
//! Each object is recorded when its name (or key, or id) is taken, before it exists. A
//! scenario that ends normally removes its objects through their owners; one that fails may
//! have killed a peer that owned one, so [`tidy`] removes whatever is still there after every
//! scenario. A run ended by a signal cannot unwind: its exit hook calls [`abandon`], which
//! kills the live peers (each by its pidfd, so never a process that took a dead peer's pid),
//! waits for them to die, and then removes every recorded object. Objects are created in this
//! process only while the registry is held ([`Registry::hold`]) and peers started only while
//! their list is ([`start_peer`]); `abandon` keeps both once it has them, so no object is
//! created and no peer (which would create its own) started between its removal and the
//! program's end.
//!
//! A peer can also end in the middle of its work without being asked: killed from outside
//! (SIGKILL, the OOM killer) or by a crash. The bench may then wait for it where nothing else
//! will ever wake it (a POSIX or System V queue, a semaphore, a spinning cache line), so each
//! peer is watched through its pidfd: one killed by a signal the bench did not send it
//! ([`end_peer`], [`abandon`]) is reported to the hook set by [`on_peer_killed`], which ends
//! the program.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A named kernel object a run creates.
#[derive(Debug)]
enum Object {
    /// A shared-memory segment (`/dev/shm`), by name.
    Shm(String),
    /// A named POSIX semaphore, by name.
    Sem(String),
    /// A POSIX message queue, by name.
    Mq(String),
    /// A System V queue, by key (created by whichever process binds it).
    MsgKey(i32),
    /// A private System V queue, by id.
    MsgId(i32),
}

impl Object {
    /// Removes the object if it is still there (and, for a System V queue, still ours).
    fn remove(&self) {
        match self {
            Object::Shm(name) => {
                let _ = rustix::shm::unlink(name.as_str());
            }
            Object::Sem(name) => {
                let _ = procom_sys::sem::sem_unlink(name);
            }
            Object::Mq(name) => {
                let _ = procom_sys::mq::unlink(name);
            }
            Object::MsgKey(key) => {
                if let Ok(id) = procom_sys::msg::open(*key, false, false) {
                    remove_own_queue(id, Some(*key));
                }
            }
            Object::MsgId(id) => remove_own_queue(*id, None),
        }
    }
}

/// Removes System V queue `id` if this user owns it and it still has `key` (0, private, when
/// `None`): an id or key reused by someone else's queue since is left alone.
fn remove_own_queue(id: i32, key: Option<i32>) {
    let Ok(st) = procom_sys::msg::stat(id) else {
        return;
    };
    if st.uid == rustix::process::geteuid().as_raw() && st.key == key.unwrap_or(0) {
        let _ = procom_sys::msg::remove(id);
    }
}

/// The objects recorded since the last [`tidy`].
#[derive(Debug, Default)]
pub(crate) struct Registry {
    objects: Vec<Object>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    objects: Vec::new(),
});

/// A peer started since the last [`tidy`].
#[derive(Debug)]
struct Peer {
    pid: u32,
    pidfd: OwnedFd,
    /// Whether the bench ended it itself (then its death by a signal is expected, not a
    /// failure to report); shared with its watcher.
    ended: Arc<AtomicBool>,
}

/// The peers started since the last [`tidy`]. Taken after [`REGISTRY`] when both are needed.
static PEERS: Mutex<Vec<Peer>> = Mutex::new(Vec::new());

/// What reports a peer killed by a signal the bench did not send it (see [`on_peer_killed`]).
type KilledHook = Box<dyn Fn(&dyn Fn() -> Option<String>) + Send + Sync>;

static ON_KILLED: OnceLock<KilledHook> = OnceLock::new();

/// Sets what happens when a peer is killed by a signal the bench did not send it: `hook` is
/// called with a function that gives the one-line reason, or `None` if the bench has ended
/// the peer itself by the time it is called (the hook calls it while holding whatever
/// serialises its output, and ends the program when it gets a reason). Without a hook, peers
/// are not watched. Set once, before the first peer starts.
pub fn on_peer_killed(hook: impl Fn(&dyn Fn() -> Option<String>) + Send + Sync + 'static) {
    let _ = ON_KILLED.set(Box::new(hook));
}

/// Marks peer `pid` as ended by the bench: its death by a signal is not reported.
fn release(pid: u32) {
    if let Some(peer) = lock(&PEERS).iter().rev().find(|p| p.pid == pid) {
        peer.ended.store(true, Ordering::SeqCst);
    }
}

/// Kills `child`, a peer the bench no longer wants, without reporting its death, and reaps it
/// (a later `wait` gives the same status).
pub(crate) fn end_peer(child: &mut std::process::Child) {
    release(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Watches peer `pid` through `pidfd` until it ends; reports it to the hook if a signal the
/// bench did not send it killed it. A peer already reaped by the bench is not reported.
fn watch(pid: u32, pidfd: OwnedFd, ended: Arc<AtomicBool>) {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
    // WNOWAIT: the bench reaps its own children.
    let status = loop {
        match waitid(
            WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(Some(status)) => break status,
            Err(rustix::io::Errno::INTR) => continue,
            Ok(None) | Err(_) => return,
        }
    };
    let Some(sig) = status.terminating_signal() else {
        return; // it exited: the bench sees its status when it reaps it
    };
    if let Some(hook) = ON_KILLED.get() {
        hook(&|| {
            (!ended.load(Ordering::SeqCst)).then(|| {
                let name = procom::signal::Signal::from_number(sig)
                    .map_or_else(|_| format!("signal {sig}"), |s| format!("SIG{}", s.name()));
                format!(
                    "bench: the benchmark peer (pid {pid}) was killed by {name} in the middle of the run"
                )
            })
        });
    }
}

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// The registry, held while names are taken and their objects created in this process
    /// (the peers create theirs after they start, and die before `abandon` removes anything).
    pub(crate) fn hold() -> MutexGuard<'static, Registry> {
        lock(&REGISTRY)
    }

    /// Records shared-memory segment `name` (as given to `shm_open`); returns it.
    pub(crate) fn shm(&mut self, name: String) -> String {
        self.objects.push(Object::Shm(name.clone()));
        name
    }

    /// Records POSIX semaphore `name`; returns it.
    pub(crate) fn sem(&mut self, name: String) -> String {
        self.objects.push(Object::Sem(name.clone()));
        name
    }

    /// Records POSIX message queue `name`; returns it.
    pub(crate) fn mq(&mut self, name: String) -> String {
        self.objects.push(Object::Mq(name.clone()));
        name
    }

    /// Records the System V queue of `key`; returns the key.
    pub(crate) fn msg_key(&mut self, key: i32) -> i32 {
        self.objects.push(Object::MsgKey(key));
        key
    }

    /// Records the private System V queue `id`; returns it.
    pub(crate) fn msg_id(&mut self, id: i32) -> i32 {
        self.objects.push(Object::MsgId(id));
        id
    }
}

/// Starts a peer and records it by a pidfd, with [`PEERS`] held throughout: an early end
/// ([`abandon`]) either finds the peer recorded and kills it, or holds `PEERS` first, and then
/// no peer starts at all. A peer whose pidfd cannot be had (a kernel before 5.3) is not
/// recorded: it still dies with the bench (its parent-death signal), only perhaps after its
/// objects were removed.
pub(crate) fn start_peer(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut peers = lock(&PEERS);
    let child = cmd.spawn()?;
    let pidfd = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    if let Some(pidfd) = pidfd {
        let (pid, ended) = (child.id(), Arc::new(AtomicBool::new(false)));
        if ON_KILLED.get().is_some()
            && let Ok(watched) = pidfd.try_clone()
        {
            let ended = Arc::clone(&ended);
            let _ = std::thread::Builder::new()
                .name("procom-bench-peer".into())
                .spawn(move || watch(pid, watched, ended));
        }
        peers.push(Peer { pid, pidfd, ended });
    }
    Ok(child)
}

/// Removes whatever the scenarios since the last call left behind, and forgets their peers
/// (each is reaped by then). Called between scenarios.
pub fn tidy() {
    let mut registry = lock(&REGISTRY);
    for object in registry.objects.drain(..) {
        object.remove();
    }
    lock(&PEERS).clear();
}

/// Takes `m`, waiting until `until` for whoever holds it; `None` if they still do.
fn take_by<T>(m: &'static Mutex<T>, until: Instant) -> Option<MutexGuard<'static, T>> {
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2)); // waiting out a creation or a start
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// For a run ended by a signal, from its exit hook: kills every live peer, waits (up to a
/// second) for them to die, and removes every recorded object. Keeps the registry and the
/// peers' list, so no object is created and no peer started in this process after it; the
/// program is expected to end at once.
pub fn abandon() {
    // Whoever holds either is creating an object or starting a peer: a moment, unless stuck.
    let give_up = Instant::now() + Duration::from_secs(1);
    let registry = take_by(&REGISTRY, give_up);
    let peers = take_by(&PEERS, give_up);
    if let Some(peers) = &peers {
        for p in peers.iter() {
            p.ended.store(true, Ordering::SeqCst);
            let _ = rustix::process::pidfd_send_signal(&p.pidfd, rustix::process::Signal::KILL);
        }
        // A pidfd is readable once its process has ended.
        for p in peers.iter() {
            let left = give_up.saturating_duration_since(Instant::now());
            let timeout = rustix::time::Timespec::try_from(left.max(Duration::from_millis(100)))
                .unwrap_or(rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                });
            let mut fds = [rustix::event::PollFd::new(
                &p.pidfd,
                rustix::event::PollFlags::IN,
            )];
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
    }
    if let Some(mut registry) = registry {
        for object in registry.objects.drain(..) {
            object.remove();
        }
        std::mem::forget(registry);
    }
    if let Some(peers) = peers {
        std::mem::forget(peers);
    }
}
