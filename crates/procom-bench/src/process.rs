//! The peer process: its command line, starting it (pinned to its own CPU) with pipes or a
//! socket pair on its standard input and output, and reaping it.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use procom::Error;

use crate::scenario::{Scenario, bench_error};

/// `__bench-peer MECH MODE SIZE ITERATIONS STREAM A2B B2A`.
pub(crate) fn peer_args(s: &Scenario, mech: &str, a2b: &str, b2a: &str) -> Vec<String> {
    vec![
        "__bench-peer".to_string(),
        mech.to_string(),
        s.mode.name().to_string(),
        s.size.to_string(),
        s.iterations.to_string(),
        s.stream.to_string(),
        a2b.to_string(),
        b2a.to_string(),
    ]
}

pub(crate) fn peer_command(exe: &Path, s: &Scenario, a2b: &str, b2a: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(peer_args(s, s.mechanism.name(), a2b, b2a))
        .stderr(Stdio::inherit());
    cmd
}

/// The environment variable that tells a peer its bench's pid (see `peer_side`).
pub(crate) const PARENT_VAR: &str = "PROCOM_BENCH_PARENT";

pub(crate) fn spawn(mut cmd: Command) -> Result<Child, Error> {
    cmd.env(PARENT_VAR, std::process::id().to_string());
    let child = crate::leftovers::start_peer(&mut cmd)
        .map_err(|e| Error::os("start the benchmark peer", e).object("bench"))?;
    if let (Some((_, peer_cpu)), Some(pid)) = (
        PINNED.get().copied().flatten(),
        rustix::process::Pid::from_raw(child.id() as i32),
    ) {
        let mut set = rustix::thread::CpuSet::new();
        set.set(peer_cpu);
        let _ = rustix::thread::sched_setaffinity(Some(pid), &set);
    }
    Ok(child)
}

static PINNED: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();

/// Pins this process to the first CPU it may use and every peer to the second, when it may use
/// two or more; returns the two CPUs, or `None` (then nothing is pinned). Call once, first.
pub fn pin() -> Option<(usize, usize)> {
    *PINNED.get_or_init(|| {
        let allowed = rustix::thread::sched_getaffinity(None).ok()?;
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|c| allowed.is_set(*c))
            .take(2)
            .collect();
        let [mine, peer] = cpus[..] else { return None };
        let mut set = rustix::thread::CpuSet::new();
        set.set(mine);
        rustix::thread::sched_setaffinity(None, &set).ok()?;
        Some((mine, peer))
    })
}

/// Starts `cmd` as a peer reading one pipe on its standard input and writing another on its
/// standard output; returns our write end, our read end and the peer.
pub(crate) fn pipe_peer(mut cmd: Command) -> Result<(OwnedFd, OwnedFd, Child), Error> {
    let (r1, w1) = procom::pipe::pipe()?;
    let (r2, w2) = procom::pipe::pipe()?;
    cmd.stdin(r1).stdout(w2);
    let child = spawn(cmd)?;
    Ok((w1.into(), r2.into(), child))
}

/// Starts `cmd` as a peer with one end of a Unix socket pair on its standard input and output;
/// returns our end twice (to write, to read) and the peer.
pub(crate) fn socketpair_peer(mut cmd: Command) -> Result<(OwnedFd, OwnedFd, Child), Error> {
    let dup = |s: &UnixStream| {
        s.try_clone()
            .map(OwnedFd::from)
            .map_err(|e| Error::os("duplicate a socket", e))
    };
    let (a, b) = UnixStream::pair().map_err(|e| Error::os("create a socket pair", e))?;
    cmd.stdin(dup(&b)?).stdout(OwnedFd::from(b));
    let a2 = dup(&a)?;
    let child = spawn(cmd)?;
    Ok((a.into(), a2, child))
}

/// Starts `cmd` as a peer with one end of a Unix sequenced-packet socket pair on its standard
/// input and output; returns our end twice (to write, to read) and the peer.
pub(crate) fn packet_pair_peer(mut cmd: Command) -> Result<(OwnedFd, OwnedFd, Child), Error> {
    let dup = |s: &OwnedFd| {
        s.try_clone()
            .map_err(|e| Error::os("duplicate a socket", e))
    };
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("create a socket pair", e.into()))?;
    cmd.stdin(dup(&b)?).stdout(b);
    let a2 = dup(&a)?;
    let child = spawn(cmd)?;
    Ok((a, a2, child))
}

/// The ring capacity of the shared-memory channels the benchmark makes for `size`-byte
/// payloads: 4 MiB (three 1 MiB messages), or room for two or three messages when they are
/// larger.
pub(crate) fn shm_capacity(size: usize) -> u64 {
    (size as u64 + 4096)
        .next_power_of_two()
        .saturating_mul(2)
        .max(4 << 20)
}

/// Starts `cmd` as a peer with the receiving end of one anonymous shared-memory channel on
/// its standard input and the sending end of another on its standard output
/// (`procom::shm::channel`); returns our ends and the peer.
pub(crate) fn shm_pair_peer(
    mut cmd: Command,
    capacity: u64,
    opts: &procom::Options,
) -> Result<(procom::Sender, procom::Receiver, Child), Error> {
    let (to_peer, peer_rx) = procom::shm::channel(capacity, opts)?;
    let (peer_tx, from_peer) = procom::shm::channel(capacity, opts)?;
    let handed = |fd: Option<OwnedFd>| {
        fd.ok_or_else(|| bench_error("an anonymous shared-memory end gave no descriptor"))
    };
    cmd.stdin(handed(peer_rx.into_fd())?)
        .stdout(handed(peer_tx.into_fd())?);
    let child = spawn(cmd)?;
    Ok((to_peer, from_peer, child))
}

/// Waits for the peer; kills it first when the run failed (it may be waiting for ever).
pub(crate) fn child_result(child: &mut Child, failed: bool) -> Result<(), Error> {
    if failed {
        crate::leftovers::end_peer(child);
    }
    let status = child
        .wait()
        .map_err(|e| Error::os("wait for the benchmark peer", e))?;
    if !failed && !status.success() {
        return Err(bench_error(format!("the benchmark peer failed ({status})")));
    }
    Ok(())
}

/// The run's own error first, then the peer's.
pub(crate) fn finish<T>(peer: Result<(), Error>, run: Result<T, Error>) -> Result<T, Error> {
    let m = run?;
    peer?;
    Ok(m)
}
