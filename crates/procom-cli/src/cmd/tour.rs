//! `procom tour`: the classic Linux IPC scenarios, each run with real processes and checked.
//!
//! Every step explains what it shows in a few lines, runs it, and prints PASS or FAIL; the
//! exit status is 1 if any step failed. Children are `procom` itself and standard tools.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use procom::pipe::{self, Pipeline};
use procom::{ErrorKind, Framing, Options, Receiver};

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

struct Step {
    title: &'static str,
    explain: &'static str,
    run: fn(&Ctx) -> anyhow::Result<String>,
}

struct Ctx {
    exe: PathBuf,
    dir: PathBuf,
}

pub fn run() -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .context("could not find the procom executable to run as a child")?;
    let dir = std::env::temp_dir().join(format!("procom-tour-{}-{}", std::process::id(), nanos()));
    let creating = crate::interrupt::creating();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("could not create the scratch directory {}", dir.display()))?;
    let _remove_on_exit = {
        let dir = dir.clone();
        crate::interrupt::on_exit(move || {
            kill_children();
            let _ = std::fs::remove_dir_all(&dir);
            remove_named_objects();
        })
    };
    let _scratch = ScratchDir(dir.clone()); // dropped before the hook goes
    drop(creating);
    let ctx = Ctx { exe, dir };
    let steps = steps();
    super::outln!("procom tour: the classic Linux IPC scenarios, run with real processes\n")?;
    let mut failed = 0;
    for (i, step) in steps.iter().enumerate() {
        super::outln!("[{}/{}] {}", i + 1, steps.len(), step.title)?;
        for line in step.explain.lines() {
            super::outln!("      {line}")?;
        }
        match (step.run)(&ctx) {
            Ok(what) => super::outln!("      PASS  {what}\n")?,
            Err(e) => {
                failed += 1;
                super::outln!("      FAIL  {e:#}\n")?;
            }
        }
    }
    super::outln!("{} of {} steps passed", steps.len() - failed, steps.len())?;
    if failed > 0 {
        bail!("{failed} tour step(s) failed");
    }
    Ok(())
}

use std::os::unix::fs::DirBuilderExt;

/// The tour's scratch directory, removed however `run` returns (an early `?` included).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn steps() -> Vec<Step> {
    vec![
        Step {
            title: "Anonymous pipe: parent writes, child reads",
            explain: "pipe() returns a read end and a write end, both kept in the kernel's memory.\n\
                      The child's standard input is the read end; the parent keeps only the write\n\
                      end, so closing it gives the child end-of-file.",
            run: pipe_parent_to_child,
        },
        Step {
            title: "Pipeline `seq 1 100000 | wc -l`: two children of one parent",
            explain: "As in the shell, both commands are children of this process, joined by a pipe\n\
                      that only they hold. wc sees end-of-file exactly when seq exits.",
            run: pipeline,
        },
        Step {
            title: "FIFO: the writer waits until a reader opens it",
            explain: "A FIFO is a pipe with a name (mkfifo). `echo hello > myPipe` stops until some\n\
                      process opens myPipe for reading; then the data flows and the writer exits.",
            run: fifo_writer_waits,
        },
        Step {
            title: "Shared memory guarded by a semaphore of 1 (mutual exclusion)",
            explain: "Two processes map the same pages and each adds 1 to a shared counter 2000\n\
                      times. P before touching it, V after: with the semaphore at 1 only one is\n\
                      ever inside, so no increment is lost. (Without it, the tests show losses.)",
            run: shm_mutex,
        },
        Step {
            title: "A semaphore of 0 orders two processes (B waits for A)",
            explain: "B starts first and does P on a semaphore of 0, so it blocks. A writes into\n\
                      shared memory, then does V; only then does B run on and read what A wrote.",
            run: sem_ordering,
        },
        Step {
            title: "Message queues: boundaries kept, and a size limit enforced",
            explain: "A queue is a list of separate messages in the kernel. Each has a maximum size\n\
                      (MSGMAX for System V, msgsize for POSIX): a message over it is refused whole,\n\
                      and one that fits comes out exactly as it went in.",
            run: queue_limit,
        },
        Step {
            title: "Signals: caught, ignored, and the one that cannot be caught",
            explain: "The child catches SIGUSR1 (its handler only records it), ignores SIGINT, and\n\
                      then meets SIGKILL, which no process can catch or ignore.",
            run: signals,
        },
        Step {
            title: "Sockets: TCP, Unix stream, UDP and Unix datagram",
            explain: "Stream sockets: a listening socket plus one connected socket per client. Datagram\n\
                      sockets: bind, then every send is one message. Unix sockets are bound to a file\n\
                      instead of an address and port.",
            run: sockets,
        },
    ]
}

/// Waits for `child` at most `timeout`, using a pidfd (no polling loop); kills it on timeout.
fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    if let Some(status) = exited_within(child, timeout)? {
        return Ok(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "child {} did not finish within {} and was killed",
        child.id(),
        super::duration(timeout)
    )
}

/// The child's status if it exits within `timeout`, else `None` (the child keeps running).
fn exited_within(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
    Ok(procom::child::wait_timeout(child, timeout)?)
}

fn pipe_parent_to_child(ctx: &Ctx) -> anyhow::Result<String> {
    let mut cmd = Command::new(&ctx.exe);
    cmd.args(["recv", "-", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, mut to_child) = pipe::spawn_with_stdin(cmd)?;
    to_child.write_all(b"hello through a pipe\n")?;
    drop(to_child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("child stdout")?
        .read_to_string(&mut out)?;
    let status = wait_timeout(&mut child, STEP_TIMEOUT)?;
    ensure!(status.success(), "the child failed: {status}");
    ensure!(out == "hello through a pipe\n", "the child printed {out:?}");
    Ok(format!(
        "child {} read {:?} from its end of the pipe",
        child.id(),
        out.trim_end()
    ))
}

fn pipeline(_ctx: &Ctx) -> anyhow::Result<String> {
    let mut seq = Command::new("seq");
    seq.args(["1", "100000"]);
    let mut wc = Command::new("wc");
    wc.arg("-l");
    let mut running = Pipeline::new()
        .command(seq)
        .command(wc)
        .stdout_piped()
        .spawn()?;
    for pid in running.pids() {
        watch_child(pid);
    }
    let mut out = String::new();
    running
        .stdout
        .take()
        .context("pipeline output")?
        .read_to_string(&mut out)?;
    let pids = running.pids();
    for child in &mut running.children {
        let status = wait_timeout(child, STEP_TIMEOUT)?;
        ensure!(status.success(), "a pipeline command failed: {status}");
    }
    ensure!(out.trim() == "100000", "wc -l printed {out:?}, not 100000");
    Ok(format!(
        "seq (pid {}) | wc -l (pid {}) counted {} lines",
        pids[0],
        pids[1],
        out.trim()
    ))
}

fn fifo_writer_waits(ctx: &Ctx) -> anyhow::Result<String> {
    let path = ctx.dir.join("myPipe");
    let fifo = procom::fifo::Fifo::create(&path)?;
    let ep = format!("fifo:{}", path.display());
    let no_reader = procom::fifo::try_open_write(&path).err().map(|e| e.kind());
    ensure!(
        no_reader == Some(ErrorKind::NoReader),
        "opening with no reader gave {no_reader:?}"
    );
    let mut writer = Command::new(&ctx.exe)
        .args(["send", &ep, "hello through a FIFO"])
        .stderr(Stdio::piped())
        .started()?;
    // Nobody reads yet, so the writer must still be waiting in open() a moment later.
    if let Some(status) = exited_within(&mut writer, Duration::from_millis(300))? {
        bail!("the writer finished ({status}) although no process was reading");
    }
    let mut rx = Receiver::connect_with(&ep, &Options::default().framing(Framing::Lines))?;
    let msg = rx.recv_timeout(STEP_TIMEOUT)?;
    let status = wait_timeout(&mut writer, STEP_TIMEOUT)?;
    ensure!(status.success(), "the writer failed: {status}");
    ensure!(
        msg == b"hello through a FIFO",
        "read {:?}",
        String::from_utf8_lossy(&msg)
    );
    let eof = rx.recv_timeout(STEP_TIMEOUT).err().map(|e| e.kind());
    ensure!(
        eof == Some(ErrorKind::PeerGone),
        "after the writer left, reading gave {eof:?} instead of end-of-file"
    );
    drop(rx);
    fifo.remove()?;
    ensure!(!Path::new(&path).exists(), "the FIFO was not removed");
    Ok(format!(
        "writer {} blocked until this process opened the FIFO, then {:?} arrived, then end-of-file",
        writer.id(),
        String::from_utf8_lossy(&msg)
    ))
}

/// The peer processes of the tour's shared-memory steps (`procom __tour-peer ...`).
pub fn peer(args: &[String]) -> anyhow::Result<()> {
    match args {
        [role, seg, sem] if role == "increment" => {
            let seg = procom::shm::Segment::open(seg)?;
            let map = seg.map()?;
            let counter = procom::shm::TypedRegion::<u64>::new(&map, 0)?;
            let sem = procom::sem::Semaphore::open(sem)?;
            for _ in 0..2000 {
                let _inside = sem.acquire()?; // P; V when dropped
                let v = counter.load()?;
                std::thread::yield_now(); // give the other process every chance to interfere
                counter.store(&(v + 1))?;
            }
            Ok(())
        }
        [role] if role == "signals" => {
            procom::signal::ignore(procom::signal::Signal::INT)?;
            let mut caught = procom::signal::Signals::catch([procom::signal::Signal::USR1])?;
            super::outln!("ready")?;
            std::io::Write::flush(&mut std::io::stdout())?;
            let d = caught.wait_timeout(STEP_TIMEOUT)?;
            super::outln!("caught {} from pid {}", d.signal, d.sender_pid)?;
            std::io::Write::flush(&mut std::io::stdout())?;
            // Wait for the SIGKILL that ends us (stdin stays open until then).
            let mut sink = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink)?;
            Ok(())
        }
        [role, seg, sem] if role == "consumer" => {
            let seg = procom::shm::Segment::open(seg)?;
            let map = seg.map()?;
            let sem = procom::sem::Semaphore::open(sem)?;
            super::outln!("waiting")?;
            sem.wait_timeout(STEP_TIMEOUT)?; // P on 0: blocks until A's V
            let mut buf = [0u8; 13];
            map.read(0, &mut buf)?;
            super::outln!("{}", String::from_utf8_lossy(&buf))?;
            Ok(())
        }
        _ => bail!("unknown tour peer {args:?}"),
    }
}

fn scratch_name(tag: &str) -> String {
    format!("/procom-tour-{}-{tag}-{}", std::process::id(), nanos())
}

/// The children the steps started, killed on an early end (Ctrl-C in the middle of a step)
/// so that none is left waiting for a peer that is gone. Held by pidfd: a child reaped since
/// cannot be confused with a process that reused its pid.
static CHILDREN: std::sync::Mutex<Vec<procom::signal::Process>> = std::sync::Mutex::new(Vec::new());

/// Starting a child the tour kills if it ends early.
trait Started {
    fn started(&mut self) -> anyhow::Result<Child>;
}

impl Started for Command {
    fn started(&mut self) -> anyhow::Result<Child> {
        let _creating = crate::interrupt::creating();
        let child = self.spawn()?;
        watch_child(child.id());
        Ok(child)
    }
}

fn watch_child(pid: u32) {
    if let Ok(p) = procom::signal::Process::open(pid as i32) {
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(p);
    }
}

fn kill_children() {
    for child in CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = child.send(procom::signal::Signal::KILL);
    }
}

/// A named object a step created, which the step's drop removes; listed so that an early end
/// (Ctrl-C in the middle of a step) removes it too.
enum Named {
    Segment(String),
    Semaphore(String),
    Queue(String),
}

static NAMED: std::sync::Mutex<Vec<Named>> = std::sync::Mutex::new(Vec::new());

/// Creates `object` with `make` and lists it for [`remove_named_objects`], with an early end
/// held off in between.
fn create<T>(object: Named, make: impl FnOnce() -> Result<T, procom::Error>) -> anyhow::Result<T> {
    let _creating = crate::interrupt::creating();
    let made = make()?;
    NAMED.lock().unwrap_or_else(|p| p.into_inner()).push(object);
    Ok(made)
}

/// Removes what the steps created and may not have removed yet (the exit hook's part).
fn remove_named_objects() {
    for object in NAMED.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = match object {
            Named::Segment(n) => procom::shm::remove(&n),
            Named::Semaphore(n) => procom::sem::remove(&n),
            Named::Queue(n) => procom::mq::remove(&n),
        };
    }
}

fn shm_mutex(ctx: &Ctx) -> anyhow::Result<String> {
    let (seg_name, sem_name) = (scratch_name("counter"), scratch_name("mutex"));
    let seg = create(Named::Segment(seg_name.clone()), || {
        procom::shm::Segment::create(&seg_name, 4096)
    })?;
    let map = seg.map()?;
    let sem = create(Named::Semaphore(sem_name.clone()), || {
        procom::sem::Semaphore::create(&sem_name, 1)
    })?;
    let mut kids = Vec::new();
    for _ in 0..2 {
        kids.push(
            Command::new(&ctx.exe)
                .args(["__tour-peer", "increment", &seg_name, &sem_name])
                .started()?,
        );
    }
    for kid in &mut kids {
        let status = wait_timeout(kid, STEP_TIMEOUT)?;
        ensure!(status.success(), "an incrementing process failed: {status}");
    }
    let total = procom::shm::TypedRegion::<u64>::new(&map, 0)?.load()?;
    ensure!(total == 4000, "the counter ended at {total}, not 4000");
    ensure!(sem.value()? == 1, "the semaphore was not left at 1");
    Ok(format!(
        "2 processes x 2000 increments under P/V = {total}, none lost"
    ))
}

fn sem_ordering(ctx: &Ctx) -> anyhow::Result<String> {
    let (seg_name, sem_name) = (scratch_name("data"), scratch_name("ready"));
    let seg = create(Named::Segment(seg_name.clone()), || {
        procom::shm::Segment::create(&seg_name, 4096)
    })?;
    let map = seg.map()?;
    let sem = create(Named::Semaphore(sem_name.clone()), || {
        procom::sem::Semaphore::create(&sem_name, 0)
    })?;
    let mut b = Command::new(&ctx.exe)
        .args(["__tour-peer", "consumer", &seg_name, &sem_name])
        .stdout(Stdio::piped())
        .started()?;
    let mut out = std::io::BufReader::new(b.stdout.take().context("consumer output")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    ensure!(line.trim() == "waiting", "the consumer said {line:?}");
    // B is on its way into P; nothing is written yet. A produces, then V.
    map.write(0, b"made by A (1)")?;
    sem.post()?;
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    let status = wait_timeout(&mut b, STEP_TIMEOUT)?;
    ensure!(status.success(), "the consumer failed: {status}");
    ensure!(line.trim() == "made by A (1)", "B read {:?}", line.trim());
    Ok(format!(
        "B (pid {}) waited in P until A's V, then read {:?}",
        b.id(),
        line.trim()
    ))
}

fn queue_limit(ctx: &Ctx) -> anyhow::Result<String> {
    let name = scratch_name("queue");
    let q = create(Named::Queue(name.clone()), || {
        procom::mq::Queue::create(&name, Some(4), Some(64))
    })?;
    let ep = format!("mq:{name}");
    let big = "x".repeat(100);
    let refused = Command::new(&ctx.exe)
        .args(["send", &ep, &big])
        .stderr(Stdio::piped())
        .output()?;
    ensure!(
        refused.status.code() == Some(1),
        "a 100-byte message was not refused"
    );
    let why = String::from_utf8_lossy(&refused.stderr).trim().to_string();
    let ok = Command::new(&ctx.exe)
        .args(["send", &ep, "fits in 64 bytes"])
        .status()?;
    ensure!(ok.success(), "a small message was refused");
    let (msg, _) = q.recv_timeout(STEP_TIMEOUT)?;
    ensure!(
        msg == b"fits in 64 bytes",
        "the queue delivered {:?}",
        String::from_utf8_lossy(&msg)
    );
    q.remove()?;
    let limits = procom::msg::limits();
    Ok(format!(
        "refused: \"{}\"; System V here: MSGMAX {} bytes, MSGMNB {} bytes",
        why.trim_start_matches("procom: "),
        limits.msgmax,
        limits.msgmnb
    ))
}

fn signals(ctx: &Ctx) -> anyhow::Result<String> {
    use procom::signal::{self, Signal};
    let mut child = Command::new(&ctx.exe)
        .args(["__tour-peer", "signals"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .started()?;
    let pid = child.id() as i32;
    let mut out = std::io::BufReader::new(child.stdout.take().context("child output")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    ensure!(line.trim() == "ready", "the child said {line:?}");
    signal::send(pid, Signal::INT)?; // ignored: the child lives on
    signal::send(pid, Signal::USR1)?; // caught
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    ensure!(
        line.starts_with("caught SIGUSR1"),
        "the child said {line:?}"
    );
    signal::send(pid, Signal::KILL)?;
    let status = wait_timeout(&mut child, STEP_TIMEOUT)?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        "the child ended with {status}"
    );
    Ok(format!(
        "SIGINT ignored, {}, then SIGKILL ended it",
        line.trim()
    ))
}

fn sockets(ctx: &Ctx) -> anyhow::Result<String> {
    use procom::{Endpoint, Options, Receiver};
    let mut done = Vec::new();
    // Port 0: the kernel picks a free port, and the listener or receiver says which.
    for ep in [
        "tcp:127.0.0.1:0".to_string(),
        format!("unix:{}", ctx.dir.join("stream.sock").display()),
    ] {
        let listener = procom::socket::Listener::bind(
            &Endpoint::parse(&ep)?,
            &Options::default().framing(procom::Framing::Lines),
        )?;
        let endpoint = listener.local_endpoint();
        let ep = endpoint.to_string();
        let mut client = Command::new(&ctx.exe)
            .args(["connect", &ep])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .started()?;
        let mut conn = listener.accept_timeout(STEP_TIMEOUT)?;
        client
            .stdin
            .take()
            .context("client input")?
            .write_all(b"ping\n")?;
        let m = conn.receiver.recv_timeout(STEP_TIMEOUT)?;
        conn.sender.send(b"pong").map_err(|e| e.into_error())?;
        drop(conn);
        let mut reply = String::new();
        client
            .stdout
            .take()
            .context("client output")?
            .read_to_string(&mut reply)?;
        ensure!(
            wait_timeout(&mut client, STEP_TIMEOUT)?.success(),
            "the {ep} client failed"
        );
        ensure!(
            m == b"ping" && reply == "pong\n",
            "{ep}: sent ping, got {reply:?}"
        );
        done.push(endpoint.scheme());
    }
    for ep in [
        "udp:127.0.0.1:0".to_string(),
        format!("unixgram:{}", ctx.dir.join("dgram.sock").display()),
    ] {
        let mut rx = Receiver::bind_with(
            ep.as_str(),
            &Options::default().framing(procom::Framing::Lines),
        )?;
        let ep = rx.endpoint().to_string();
        let status = Command::new(&ctx.exe)
            .args(["send", &ep, "one datagram"])
            .status()?;
        ensure!(status.success(), "sending to {ep} failed");
        let m = rx.recv_timeout(STEP_TIMEOUT)?;
        ensure!(
            m == b"one datagram",
            "{ep} delivered {:?}",
            String::from_utf8_lossy(&m)
        );
        done.push(Endpoint::parse(&ep)?.scheme());
    }
    Ok(format!(
        "ping/pong over {} and {}, one datagram over {} and {}",
        done[0], done[1], done[2], done[3]
    ))
}
