//! Every long-running command ([`commands`]) under every way it can be ended or starved
//! ([`Condition`]): Ctrl-C, SIGTERM and SIGHUP; standard output closed, full (/dev/full) or a
//! pipe whose reader is gone; the same for standard error. Each ends with its documented
//! status (a signal: 1 with one sentence; output's reader gone: 0; output full: 1; a lost
//! standard error loses the sentence, never the status), never panics, and leaves nothing
//! it created. One trial per condition runs every command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use procom::Sender;
use procom::fifo::{self, Fifo};
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::sem::{Op, SemSet, Semaphore};
use procom_testkit::{
    Outcome, Role, STEP, Scratch, Trial, check, ensure, path_seen, tcp_listening, trials,
    udp_bound, unique_name, unix_listening, wait_pid,
};
use rustix::process::Signal;

use crate::common::{until, until_catching};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::stdio":
            on_sigint,
            on_sigterm,
            on_sighup,
            stdout_closed,
            stdout_full,
            stdout_broken,
            stderr_closed,
            stderr_full,
            stderr_broken;
    ]
}

/// How a command is ended or starved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Signal(Signal, &'static str),
    Closed(Fd),
    Full(Fd),
    Broken(Fd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fd {
    Stdout,
    Stderr,
}

fn on_sigint() -> Outcome {
    every_command(Condition::Signal(Signal::INT, "Ctrl-C (SIGINT)"))
}
fn on_sigterm() -> Outcome {
    every_command(Condition::Signal(Signal::TERM, "SIGTERM"))
}
fn on_sighup() -> Outcome {
    every_command(Condition::Signal(Signal::HUP, "SIGHUP"))
}
fn stdout_closed() -> Outcome {
    every_command(Condition::Closed(Fd::Stdout))
}
fn stdout_full() -> Outcome {
    every_command(Condition::Full(Fd::Stdout))
}
fn stdout_broken() -> Outcome {
    every_command(Condition::Broken(Fd::Stdout))
}
fn stderr_closed() -> Outcome {
    every_command(Condition::Closed(Fd::Stderr))
}
fn stderr_full() -> Outcome {
    every_command(Condition::Full(Fd::Stderr))
}
fn stderr_broken() -> Outcome {
    every_command(Condition::Broken(Fd::Stderr))
}

/// An object a command creates, which must be gone when it has ended.
enum Made {
    Path(PathBuf),
    /// A directory that must be empty (the command makes its own scratch directory there).
    EmptyDir(PathBuf),
}

impl Made {
    fn left(&self) -> Option<String> {
        match self {
            Made::Path(p) => path_seen(p).map(|_| p.display().to_string()),
            Made::EmptyDir(d) => {
                let left: Vec<_> = std::fs::read_dir(d)
                    .ok()?
                    .flatten()
                    .map(|e| e.path().display().to_string())
                    .collect();
                (!left.is_empty()).then(|| left.join(", "))
            }
        }
    }
}

/// What makes a running command print one line, given its pid (state it needs stays inside).
type Feed = Box<dyn FnMut(u32) -> Outcome>;

/// One long-running command, set up and ready to start.
struct Run {
    args: Vec<String>,
    env: Vec<(&'static str, PathBuf)>,
    /// Whether it watches its standard output and ends when the reader goes, printing or not.
    watches_stdout: bool,
    /// Waits (given its pid) until it has done what it does before it waits.
    ready: Box<dyn Fn(u32) -> Outcome>,
    /// Makes it print a line and go on; `None` for a command that prints nothing while it waits.
    feed: Option<Feed>,
    /// Whether what `feed` does ends it (with status 0).
    feed_ends: bool,
    /// Whether it prints lines of its own accord, fed or not.
    prints_unfed: bool,
    /// What it creates.
    made: Vec<Made>,
    /// What the test made for it (removed when this is dropped).
    _held: Vec<Box<dyn std::any::Any>>,
}

/// One row: a command's name and how to set it up in a scratch directory.
type Row = (&'static str, fn(&Path) -> Result<Run, String>);

fn commands() -> Vec<Row> {
    vec![
        ("recv fifo:", recv_fifo),
        ("recv mq:", recv_mq),
        ("recv msg:", recv_msg),
        ("recv shm:", recv_shm),
        ("recv unixgram:", recv_unixgram),
        ("recv udp:", recv_udp),
        ("listen unix:", listen_unix),
        ("listen tcp:", listen_tcp),
        ("connect unix:", connect_unix),
        ("recv unixpacket:", recv_unixpacket),
        ("listen unixpacket:", listen_unixpacket),
        ("connect unixpacket:", connect_unixpacket),
        ("relay mq: -", relay_mq),
        ("relay --listen", relay_listen),
        ("send fifo: (no reader)", send_fifo),
        ("sem wait /NAME", sem_wait_named),
        ("sem wait KEY", sem_wait_set),
        ("signal wait", signal_wait),
        ("tour", tour),
        ("bench --quick", bench),
    ]
}

fn run(args: &[&str]) -> Run {
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        watches_stdout: matches!(args.first(), Some(&"recv" | &"listen" | &"connect")),
        ready: Box::new(|_| Ok(())),
        feed: None,
        feed_ends: false,
        prints_unfed: false,
        made: Vec::new(),
        _held: Vec::new(),
    }
}

fn exists(p: &Path) -> Box<dyn Fn(u32) -> Outcome> {
    let p = p.to_path_buf();
    Box::new(move |_| until(&format!("{} exists", p.display()), || p.exists()))
}

fn recv_fifo(dir: &Path) -> Result<Run, String> {
    let path = dir.join("fifo");
    let made = check!(Fifo::create(&path));
    let mut r = run(&["recv", &format!("fifo:{}", path.display())]);
    let mut writer = None;
    r.feed = Some(Box::new(move |_| {
        // Held open: the receiver goes on after the line.
        let w = writer.get_or_insert(check!(fifo::open_write(&path)));
        check!(w.write_all(b"one line\n"));
        Ok(())
    }));
    r._held.push(Box::new(made));
    Ok(r)
}

fn recv_mq(_: &Path) -> Result<Run, String> {
    let name = format!("/{}", unique_name("stdio"));
    let q = std::rc::Rc::new(check!(Queue::create(&name, Some(4), Some(64))));
    let mut r = run(&["recv", &format!("mq:{name}")]);
    let fq = q.clone();
    r.feed = Some(Box::new(move |_| Ok(check!(fq.send(b"one line", 0)))));
    r._held.push(Box::new(q));
    Ok(r)
}

fn recv_msg(_: &Path) -> Result<Run, String> {
    let key = fresh_key();
    let q = std::rc::Rc::new(check!(MsgQueue::create(&procom::endpoint::SysvKey::Key(
        key
    ))));
    let mut r = run(&["recv", &format!("msg:{key}")]);
    let fq = q.clone();
    r.feed = Some(Box::new(move |_| Ok(check!(fq.send(b"one line", 1)))));
    r._held.push(Box::new(q));
    Ok(r)
}

fn recv_shm(_: &Path) -> Result<Run, String> {
    let name = format!("/{}", unique_name("stdio"));
    let file = PathBuf::from(format!("/dev/shm{name}"));
    let ep = format!("shm:{name}");
    let mut r = run(&["recv", &ep]);
    r.ready = exists(&file);
    let mut tx = None;
    r.feed = Some(Box::new(move |_| {
        let tx = tx.get_or_insert(check!(Sender::connect(ep.as_str())));
        Ok(check!(tx.send(b"one line")))
    }));
    r.made.push(Made::Path(file));
    Ok(r)
}

fn recv_unixgram(dir: &Path) -> Result<Run, String> {
    let path = dir.join("gram");
    let ep = format!("unixgram:{}", path.display());
    let mut r = run(&["recv", &ep]);
    r.ready = exists(&path);
    r.feed = Some(Box::new(move |_| {
        Ok(check!(
            check!(Sender::connect(ep.as_str())).send(b"one line")
        ))
    }));
    r.made.push(Made::Path(path));
    Ok(r)
}

fn recv_udp(_: &Path) -> Result<Run, String> {
    let mut r = run(&["recv", "udp:127.0.0.1:0"]);
    r.ready = Box::new(|pid| udp_bound(pid).map(drop));
    r.feed = Some(Box::new(|pid| {
        let to = udp_bound(pid)?;
        let mut tx = check!(Sender::connect(format!("udp:{to}")));
        Ok(check!(tx.send(b"one line")))
    }));
    Ok(r)
}

/// A client that connects to a line-reading server and sends a line, held open.
fn stream_feed(connect: impl Fn(u32) -> Result<Box<dyn Write>, String> + 'static) -> Feed {
    let mut client = None;
    Box::new(move |pid| {
        if client.is_none() {
            client = Some(connect(pid)?);
        }
        let c = client.as_mut().ok_or("no client")?;
        check!(c.write_all(b"one line\n"));
        Ok(())
    })
}

fn listen_unix(dir: &Path) -> Result<Run, String> {
    let path = dir.join("listen");
    let mut r = run(&["listen", &format!("unix:{}", path.display())]);
    let p = path.clone();
    r.ready = Box::new(move |pid| unix_listening(pid, &p));
    let p = path.clone();
    r.feed = Some(stream_feed(move |_| {
        Ok(Box::new(check!(std::os::unix::net::UnixStream::connect(
            &p
        ))))
    }));
    r.made.push(Made::Path(path));
    Ok(r)
}

fn listen_tcp(_: &Path) -> Result<Run, String> {
    let mut r = run(&["listen", "tcp:127.0.0.1:0"]);
    r.ready = Box::new(|pid| tcp_listening(pid).map(drop));
    r.feed = Some(stream_feed(|pid| {
        Ok(Box::new(check!(std::net::TcpStream::connect(
            tcp_listening(pid)?
        ))))
    }));
    Ok(r)
}

fn connect_unix(dir: &Path) -> Result<Run, String> {
    let path = dir.join("server");
    let server = check!(std::os::unix::net::UnixListener::bind(&path));
    let mut r = run(&["connect", &format!("unix:{}", path.display())]);
    let server = std::rc::Rc::new(server);
    let s = server.clone();
    r.feed = Some(stream_feed(move |_| {
        let (conn, _) = check!(s.accept());
        Ok(Box::new(conn))
    }));
    r.ready = Box::new(connected_unix_socket);
    r._held.push(Box::new(server));
    r._held.push(Box::new(Removed(path)));
    Ok(r)
}

/// A sequenced-packet socket, written packet by packet (one `write` is one packet).
fn packet_socket() -> Result<std::os::fd::OwnedFd, String> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(check!(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None
    )))
}

/// A client of the sequenced-packet server at `path`.
fn packet_client(path: &Path) -> Result<Box<dyn Write>, String> {
    let fd = packet_socket()?;
    let addr = check!(rustix::net::SocketAddrUnix::new(path));
    check!(rustix::net::connect(&fd, &addr));
    Ok(Box::new(std::os::unix::net::UnixStream::from(fd)))
}

fn listen_unixpacket(dir: &Path) -> Result<Run, String> {
    let path = dir.join("packet");
    let mut r = run(&["listen", &format!("unixpacket:{}", path.display())]);
    let p = path.clone();
    r.ready = Box::new(move |pid| unix_listening(pid, &p));
    let p = path.clone();
    r.feed = Some(stream_feed(move |_| packet_client(&p)));
    r.made.push(Made::Path(path));
    Ok(r)
}

fn connect_unixpacket(dir: &Path) -> Result<Run, String> {
    packet_server_client("connect", dir)
}

fn recv_unixpacket(dir: &Path) -> Result<Run, String> {
    packet_server_client("recv", dir)
}

/// `procom COMMAND unixpacket:PATH`, a client of a sequenced-packet server this test holds.
fn packet_server_client(command: &str, dir: &Path) -> Result<Run, String> {
    let path = dir.join("packet-server");
    let server = packet_socket()?;
    check!(rustix::net::bind(
        &server,
        &check!(rustix::net::SocketAddrUnix::new(&path))
    ));
    check!(rustix::net::listen(&server, 8));
    let mut r = run(&[command, &format!("unixpacket:{}", path.display())]);
    let server = std::rc::Rc::new(server);
    let s = server.clone();
    r.feed = Some(stream_feed(move |_| {
        let conn = check!(rustix::net::accept(&*s));
        Ok(Box::new(std::os::unix::net::UnixStream::from(conn)))
    }));
    r.ready = Box::new(connected_unix_socket);
    r._held.push(Box::new(server));
    r._held.push(Box::new(Removed(path)));
    Ok(r)
}

/// Ready once the command holds a connected Unix socket (its client end).
fn connected_unix_socket(pid: u32) -> Result<(), String> {
    procom_testkit::wait_for_socket(pid, "a connected Unix socket", |s| match s {
        procom_testkit::Socket::Unix {
            path: None,
            listening: false,
        } => Some(()),
        _ => None,
    })
}

/// A path removed when dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn relay_mq(_: &Path) -> Result<Run, String> {
    let mut r = recv_mq(Path::new("/"))?;
    let ep = r.args.pop().ok_or("args")?;
    r.args = vec!["relay".into(), ep, "-".into()];
    r.watches_stdout = false;
    Ok(r)
}

fn relay_listen(dir: &Path) -> Result<Run, String> {
    let name = format!("/{}", unique_name("stdio"));
    let q = check!(Queue::create(&name, Some(4), Some(64)));
    let path = dir.join("relay");
    let mut r = run(&[
        "relay",
        "--listen",
        &format!("mq:{name}"),
        &format!("unix:{}", path.display()),
    ]);
    let p = path.clone();
    r.ready = Box::new(move |pid| unix_listening(pid, &p));
    r.made.push(Made::Path(path));
    r._held.push(Box::new(q));
    Ok(r)
}

fn send_fifo(dir: &Path) -> Result<Run, String> {
    let path = dir.join("fifo");
    let made = check!(Fifo::create(&path));
    let mut r = run(&["send", &format!("fifo:{}", path.display()), "never read"]);
    r.ready = Box::new(|pid| {
        until("the sender waits in open() for a reader", || {
            std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .is_ok_and(|w| w.contains("wait_for_partner"))
        })
    });
    r._held.push(Box::new(made));
    Ok(r)
}

fn sem_wait_named(_: &Path) -> Result<Run, String> {
    let name = format!("/{}", unique_name("stdio"));
    let sem = std::rc::Rc::new(check!(Semaphore::create(&name, 0)));
    let mut r = run(&["sem", "wait", &name]);
    let s = sem.clone();
    r.feed = Some(Box::new(move |_| Ok(check!(s.post()))));
    r.feed_ends = true;
    r._held.push(Box::new(sem));
    Ok(r)
}

fn sem_wait_set(_: &Path) -> Result<Run, String> {
    let key = fresh_key();
    let set = std::rc::Rc::new(check!(SemSet::create(
        &procom::endpoint::SysvKey::Key(key),
        &[0]
    )));
    let mut r = run(&["sem", "wait", &key.to_string()]);
    let s = set.clone();
    r.feed = Some(Box::new(move |_| Ok(check!(s.apply(&[Op::post(0)])))));
    r.feed_ends = true;
    r._held.push(Box::new(set));
    Ok(r)
}

fn signal_wait(_: &Path) -> Result<Run, String> {
    let mut r = run(&["signal", "wait", "USR1"]);
    r.ready = Box::new(|pid| until_catching(pid, &[10]));
    r.feed = Some(Box::new(|pid| send_signal(pid, Signal::USR1)));
    Ok(r)
}

fn tour(dir: &Path) -> Result<Run, String> {
    let mut r = run(&["tour"]);
    r.prints_unfed = true;
    r.env.push(("TMPDIR", dir.to_path_buf()));
    let d = dir.to_path_buf();
    // (With its output full, the tour ends at its first line, perhaps before this sees it.)
    r.ready = Box::new(move |pid| {
        until("the tour's scratch directory exists", || {
            std::fs::read_dir(&d).is_ok_and(|mut e| e.next().is_some()) || ended(pid)
        })
    });
    r.made.push(Made::EmptyDir(dir.to_path_buf()));
    Ok(r)
}

fn bench(dir: &Path) -> Result<Run, String> {
    let mut r = run(&["bench", "--quick", "--mechanism", "unixgram"]);
    r.env.push(("TMPDIR", dir.to_path_buf()));
    let d = dir.to_path_buf();
    // Its first peer runs: it must not outlive the bench.
    r.ready = Box::new(move |pid| {
        until("the bench's scratch directory and first peer exist", || {
            std::fs::read_dir(&d).is_ok_and(|mut e| e.next().is_some())
                && !children_of(pid).is_empty()
        })
    });
    r.made.push(Made::EmptyDir(dir.to_path_buf()));
    Ok(r)
}

/// The processes whose parent is `pid` (any of its threads).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether process `pid` has ended (a zombie not yet reaped).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// A System V key no other test or run uses.
fn fresh_key() -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0x5d10_0000 | ((std::process::id() & 0xfff) << 8) | (n & 0xff)) as i32
}

fn send_signal(pid: u32, sig: Signal) -> Outcome {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    check!(rustix::process::kill_process(pid, sig));
    Ok(())
}

fn every_command(cond: Condition) -> Outcome {
    let mut failures = Vec::new();
    for (name, setup) in commands() {
        let scratch = Scratch::new("stdio")?;
        let result = setup(scratch.path()).and_then(|r| one(r, cond));
        if let Err(e) = result.and_then(|()| scratch.finish()) {
            failures.push(format!("{name} with {cond:?}: {e}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Runs one command under one condition and checks how it ended.
fn one(mut r: Run, cond: Condition) -> Outcome {
    let mut cmd = match cond {
        // The shell closes the descriptor and becomes procom (the same pid).
        Condition::Closed(fd) => {
            let mut sh = Command::new("sh");
            let redirect = if fd == Fd::Stdout { ">&-" } else { "2>&-" };
            sh.arg("-c")
                .arg(format!("exec \"$0\" \"$@\" {redirect}"))
                .arg(env!("CARGO_BIN_EXE_procom"));
            sh
        }
        _ => Command::new(env!("CARGO_BIN_EXE_procom")),
    };
    cmd.args(&r.args).stdin(Stdio::piped());
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full");
    let (out, err) = match cond {
        Condition::Full(Fd::Stdout) => (check!(full()).into(), Stdio::piped()),
        Condition::Full(Fd::Stderr) => (Stdio::null(), check!(full()).into()),
        Condition::Closed(Fd::Stdout) => (Stdio::inherit(), Stdio::piped()),
        Condition::Closed(Fd::Stderr) => (Stdio::null(), Stdio::inherit()),
        Condition::Broken(Fd::Stdout) => (Stdio::piped(), Stdio::piped()),
        Condition::Broken(Fd::Stderr) => (Stdio::null(), Stdio::piped()),
        Condition::Signal(..) => (Stdio::null(), Stdio::piped()),
    };
    cmd.stdout(out).stderr(err);
    let mut child = Running(check!(cmd.spawn()));
    let pid = child.0.id();
    // Standard error is read to its end by a thread (or dropped: a broken pipe).
    let stderr = child.0.stderr.take();
    let stderr = match (cond, stderr) {
        (Condition::Broken(Fd::Stderr), Some(e)) => {
            drop(e);
            None
        }
        (_, Some(mut e)) => Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })),
        (_, None) => None,
    };
    let mut stdout = child.0.stdout.take();
    until_catching(pid, &[1, 2, 15])?;
    (r.ready)(pid)?;
    // What ends it, and the status that says so.
    let term = |pid| send_signal(pid, Signal::TERM).map(|()| 1);
    let expected = match (cond, &mut r.feed) {
        (Condition::Signal(sig, _), _) => send_signal(pid, sig).map(|()| 1)?,
        // Its output's reader gone: it ends quietly, at once if it watches its output, or
        // at the next line it prints.
        (Condition::Broken(Fd::Stdout), feed) => {
            drop(stdout.take());
            match feed {
                _ if r.watches_stdout || r.prints_unfed => 0,
                Some(feed) => feed(pid).map(|()| 0)?,
                None => term(pid)?,
            }
        }
        // A line that cannot be written is a failed operation.
        (Condition::Full(Fd::Stdout), _) if r.prints_unfed => 1,
        (Condition::Full(Fd::Stdout), Some(feed)) => {
            feed(pid)?;
            if r.feed_ends { 0 } else { 1 }
        }
        // Otherwise it goes on (its output going nowhere) until it is stopped.
        (_, Some(feed)) => {
            feed(pid)?;
            if r.feed_ends { 0 } else { term(pid)? }
        }
        (_, None) => term(pid)?,
    };
    drop(stdout);
    let children = children_of(pid);
    let status = wait_pid(&mut child.0, STEP).map_err(|e| e.to_string())?;
    let status: ExitStatus = status.ok_or("still running")?;
    // (Checked first: a child left running would hold standard error open.)
    until(&format!("its children {children:?} end with it"), || {
        children.iter().all(|c| ended(*c))
    })?;
    let stderr = stderr
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    ensure!(
        status.code() == Some(expected),
        "ended with {status} instead of status {expected}; stderr: {stderr:?}"
    );
    ensure!(!stderr.contains("panicked"), "panicked: {stderr}");
    // Every line a sentence of procom's (an announcement, the reason it ended), never a
    // dump of another kind.
    ensure!(
        stderr.lines().all(|l| l.starts_with("procom: ")),
        "not procom's sentences: {stderr:?}"
    );
    if let Condition::Signal(_, said) = cond {
        ensure!(
            stderr.contains(&format!("interrupted by {said}")),
            "{stderr:?}"
        );
    }
    let left: Vec<String> = r.made.iter().filter_map(Made::left).collect();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// A child killed and reaped if the check fails midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
