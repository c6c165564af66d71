//! The command line, as clap derive types. One subcommand per file under `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Every Linux inter-process communication mechanism, from the command line.
///
/// Endpoints: `-` (stdin/stdout), `fifo:PATH`, `mq:/NAME`, `msg:KEY`, `shm:/NAME`,
/// `unix:PATH`, `unixgram:PATH`, `tcp:HOST:PORT`, `udp:HOST:PORT`.
#[derive(Debug, Parser)]
#[command(name = "procom", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one message, or standard input, to an endpoint.
    Send(SendArgs),
    /// Receive messages from an endpoint and print each on its own line.
    Recv(RecvArgs),
    /// Serve clients on a tcp: or unix: endpoint, printing what each sends (like nc -l).
    Listen(ListenArgs),
    /// Join a tcp: or unix: endpoint: standard input to the peer, the peer to standard output.
    Connect(ConnectArgs),
    /// Move messages between two endpoints, both ways where both sides can (like socat).
    Relay(RelayArgs),
    /// Create and remove named pipes (FIFOs).
    #[command(subcommand)]
    Fifo(FifoCommand),
    /// Create, inspect and remove POSIX message queues.
    #[command(subcommand)]
    Mq(MqCommand),
    /// Create, inspect and remove System V message queues.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Create, inspect, read, write and remove shared-memory segments.
    #[command(subcommand)]
    Shm(ShmCommand),
    /// Create, post (V), wait on (P), read and remove named semaphores.
    #[command(subcommand)]
    Sem(SemCommand),
    /// Measure every mechanism on this machine: latency percentiles and throughput, process to
    /// process, next to the machine's own limits.
    Bench(BenchArgs),
    /// The peer process `procom bench` starts (not for direct use).
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List, send and catch signals.
    #[command(subcommand)]
    Signal(SignalCommand),
    /// The peer processes `procom tour` starts (not for direct use).
    #[command(name = "__tour-peer", hide = true)]
    TourPeer {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List every IPC object on this machine (queues, segments, semaphores, sockets, FIFOs),
    /// with whether its creator is alive; --limits lists the kernel's limits.
    Ls(crate::cmd::ls::LsArgs),
    /// Remove IPC objects named like endpoints (mq:/jobs, shmid:ID, ...), or with --stale
    /// what procom can prove abandoned.
    Rm(crate::cmd::rm::RmArgs),
    /// Walk through the classic Linux IPC scenarios with real processes; each step prints PASS or FAIL.
    Tour,
}

/// Options shared by `send` and `recv`.
#[derive(Debug, Args)]
pub struct StreamOpts {
    /// Messages instead of lines: on byte streams a 4-byte big-endian length, then the bytes;
    /// on udp: procom's 16-byte header (magic ff 50 43 55, version, sequence number) before
    /// the bytes, so loss is counted; on unixgram: each datagram as it is.
    #[arg(long)]
    pub framed: bool,
    /// The largest message accepted or sent, like 64MiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_size: u64,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Where to send: an endpoint such as fifo:myPipe, or - for standard output.
    pub endpoint: String,
    /// The message, or - to send standard input (each line one message; on a byte-stream
    /// endpoint without --framed, standard input is copied as it is).
    pub message: String,
    /// Give up if the transfer has not finished within SECS (0: do not wait at all, so a FIFO
    /// with no reader is an error at once).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<std::time::Duration>,
    /// Message priority on an mq: endpoint (higher first).
    #[arg(long, value_name = "P")]
    pub priority: Option<u32>,
    /// Message type on a msg: endpoint (1 or more; default 1).
    #[arg(long = "type", value_name = "T", allow_hyphen_values = true)]
    pub mtype: Option<i64>,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Where to receive from: an endpoint such as fifo:myPipe, or - for standard input.
    pub endpoint: String,
    /// Stop after N messages (fewer before the sender closes is an error).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Give up if no message arrives within SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<std::time::Duration>,
    /// Type selector on a msg: endpoint: 0 the first message, N the first of type N, -N the
    /// first of the lowest type at most N.
    #[arg(long = "type", value_name = "T", allow_hyphen_values = true)]
    pub mtype: Option<i64>,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where to listen: tcp:HOST:PORT, unix:PATH or unix:@NAME.
    pub endpoint: String,
    /// Send every message back to the client that sent it.
    #[arg(long)]
    pub echo: bool,
    /// Exit after serving N connections.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Close a client's connection after SECS without a message.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub idle: std::time::Duration,
    /// Admit only clients with this uid (Unix sockets; repeatable).
    #[arg(long, value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// Memory for partly received messages, shared by all clients (beyond 128 KiB each). A
    /// message that finds no room waits — its client's writes block — until others complete,
    /// or is refused when its client idles out; one larger than the whole budget is refused.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub memory: u64,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Where to connect: tcp:HOST:PORT, unix:PATH or unix:@NAME.
    pub endpoint: String,
    /// Give up on a TCP connection attempt after SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// One side, such as mq:/jobs or unix:/run/app.sock: read (and written back to, when both
    /// sides are connected tcp:/unix: streams), or, with --listen, what clients are relayed to.
    pub a: String,
    /// The other side, such as tcp:10.0.0.2:7000: written (and read back from, when both sides
    /// are streams), or, with --listen, where clients connect.
    pub b: String,
    /// Listen on B (tcp: or unix:) and serve many clients: each is relayed to its own
    /// connection to A when A is tcp: or unix:, or else into A.
    #[arg(long)]
    pub listen: bool,
    /// Close a connection (end the relay, without --listen) after SECS with no message either
    /// way (0: never, the default).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle: Option<std::time::Duration>,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Subcommand)]
pub enum FifoCommand {
    /// Create a FIFO (mode 0600 unless --mode says otherwise), like mkfifo; an existing path
    /// is an error.
    Create {
        path: PathBuf,
        /// Permission bits in octal, applied exactly whatever the umask.
        #[arg(long, default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Remove a FIFO; anything that is not a FIFO is left alone and reported.
    Rm { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum MqCommand {
    /// Create a queue (like /jobs), mode 0600, exclusively; it stays until removed.
    Create {
        name: String,
        /// Maximum number of messages (default: fs.mqueue.msg_default).
        #[arg(long)]
        capacity: Option<u64>,
        /// Maximum message size, like 8KiB (default: fs.mqueue.msgsize_default).
        #[arg(long, value_parser = parse_size)]
        msgsize: Option<u64>,
    },
    /// Print a queue's message count, capacity and message size, and the kernel's limits.
    Info { name: String },
    /// Remove a queue.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Create a queue for KEY (decimal or 0x-hex) or PATH (ftok), mode 0600, exclusively; it
    /// stays until removed.
    Create {
        key: String,
        /// The queue's byte limit, like 4KiB (default: kernel.msgmnb; above it needs root).
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        max_bytes: Option<u64>,
    },
    /// Print a queue's count, bytes, byte limit, last pids and times, and the kernel's limits.
    Info { key: String },
    /// Remove a queue.
    Rm { key: String },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer samples per scenario (the whole run in a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// Several times the samples (steadier tails; takes a few minutes).
    #[arg(long, conflicts_with = "quick")]
    pub full: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only these mechanisms (shm, unix, unix-typed, unixgram, pipe, fifo, tcp, udp, mq, msg,
    /// sem, signal) and, in a build with `--features peers`, peers (iceoryx2, iceoryx2-block,
    /// ipc-channel, interprocess); repeatable.
    #[arg(long, value_name = "NAME")]
    pub mechanism: Vec<String>,
    /// Also draw latency and throughput against message size into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Only these message sizes (default 64, 4KiB, 64KiB, 1MiB); repeatable.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: Vec<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ShmCommand {
    /// Create a segment (mode 0600, exclusive) that stays until removed. NAME is a POSIX name
    /// like /frame, or a System V key like 0x5100.
    Create {
        name: String,
        /// Its size, like 4096 or 1MiB.
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        size: u64,
    },
    /// Print a segment's kind, size, mode, owner (and attach count for System V).
    Info { name: String },
    /// Remove a segment.
    Rm { name: String },
    /// Write DATA (or standard input, with -) into a segment at --offset.
    Write {
        name: String,
        /// The bytes to write, or - for standard input.
        data: String,
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offset: u64,
    },
    /// Copy bytes of a segment to standard output.
    Read {
        name: String,
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// How many bytes (default: to the end).
        #[arg(long, value_parser = parse_size)]
        len: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SignalCommand {
    /// Every signal with its number, name, default action and description (as kill -l).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send SIGNAL (a name like TERM, a number, or RTMIN+N) to PID; signal 0 sends nothing and
    /// says whether PID exists and may be signalled (like kill -0).
    Send {
        /// The process; -N is process group N. 0 (your own process group) and -1 (every
        /// process you may signal) need --force.
        #[arg(allow_hyphen_values = true)]
        pid: i32,
        /// TERM, SIGTERM, term, 15, RTMIN+3, ... (`procom signal list` shows them all), or 0.
        signal: String,
        /// Queue this integer with the signal (sigqueue).
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        value: Option<i32>,
        /// PID is a process group: signal every member (group 0 is your own group and group 1
        /// means every process, as in killpg(3): both need --force).
        #[arg(long)]
        group: bool,
        /// Allow a target that reaches your whole process group or every process you may signal.
        #[arg(long)]
        force: bool,
    },
    /// Catch SIGNALs and print each delivery (signal, sender pid, uid, value) on its own line.
    Wait {
        /// The signals to catch (not KILL or STOP, which cannot be caught, nor the fault
        /// signals SEGV, BUS, ILL and FPE).
        #[arg(required = true)]
        signals: Vec<String>,
        /// Stop after N deliveries.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Give up if SECS pass without a delivery.
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<std::time::Duration>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SemCommand {
    /// Create a named semaphore (like /lock) with VALUE, mode 0600, exclusively; it stays
    /// until removed. 1 makes a mutex, 0 an ordering.
    Create { name: String, value: u32 },
    /// V: add one, waking a waiter.
    Post { name: String },
    /// P: wait until the value is positive, then subtract one.
    Wait {
        name: String,
        /// Give up after SECS.
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<std::time::Duration>,
    },
    /// Print the current value alone.
    Get { name: String },
    /// Remove the name (processes that have it open keep it).
    Rm { name: String },
}

fn parse_size(s: &str) -> Result<u64, String> {
    procom::endpoint::parse_size(s).map_err(|e| e.to_string())
}

/// Seconds as a finite, non-negative number of at most a year (so a deadline computed from it
/// can never overflow): `inf`, `nan`, `1e300` and negative numbers are usage errors.
fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=YEAR).contains(&secs) {
        return Err(format!(
            "`{s}` is not a usable number of seconds (0 to {YEAR}, a year)"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a usable number of seconds"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal mode between 0 and 777"))
}
