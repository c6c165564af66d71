//! The command line, as clap derive types. One subcommand per file under `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Every Linux inter-process communication mechanism, from the command line.
///
/// Endpoints: `-` (stdin/stdout), `fifo:PATH`, `mq:/NAME`, `msg:KEY`, `shm:/NAME`,
/// `unix:PATH`, `unixgram:PATH`, `unixpacket:PATH`, `tcp:HOST:PORT`, `udp:HOST:PORT`.
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
    ///
    /// With lines (the default, without --framed), a message that contains a newline cannot
    /// be told from two messages, on the wire or in the output: use --json (one JSON object
    /// per message, its bytes escaped or in base64) to print any message losslessly, and
    /// --framed on both sides to carry any bytes.
    ///
    /// recv creates a shm: channel or a unixgram: socket file (and removes it when it ends):
    /// --mode and --group say who else may send to it (a sender needs write permission). On
    /// unix: and unixpacket: it connects to a server (procom listen).
    Recv(RecvArgs),
    /// Serve clients on a tcp:, unix: or unixpacket: endpoint, printing what each sends (like
    /// nc -l).
    ///
    /// A client that sends nothing for --idle seconds (30 by default; 0: never) is
    /// disconnected. On a unix:PATH or unixpacket:PATH socket, --mode and --group set who may connect to the
    /// socket file (a client needs write permission on it) and --allow-uid which users are
    /// then served.
    Listen(ListenArgs),
    /// Join a tcp:, unix: or unixpacket: endpoint: standard input to the peer, the peer to
    /// standard output (on unixpacket:, one packet per line each way).
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
    /// Create, post (V), wait on (P), read and remove named semaphores (/NAME) and System V
    /// semaphore sets (0xKEY).
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

/// Who besides you may use what a command creates.
#[derive(Debug, Args)]
pub struct ShareOpts {
    /// Permission bits in octal, like 660 (your group may use it too) or 666 (everyone),
    /// applied exactly whatever the umask [default: 600]; group and others may not get more
    /// than the owner.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Give it to this group (a name or a number), one you belong to unless you are root;
    /// with --mode 660 the group's members may use it.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
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
    /// Print one JSON object per message instead of lines: {"bytes": the text (null when it
    /// is not UTF-8), "base64": the bytes (only then), "len": N}, and what the mechanism
    /// carries: "priority" (mq:), "type" (msg:), "from" (a datagram's sender), "seq" and
    /// "gap" (udp: with --framed).
    #[arg(long)]
    pub json: bool,
    // The mode and group of what recv creates (see the command's help).
    #[command(flatten)]
    pub share: ShareOpts,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where to listen: tcp:HOST:PORT, unix:PATH, unix:@NAME, unixpacket:PATH or
    /// unixpacket:@NAME.
    pub endpoint: String,
    /// Send every message back to the client that sent it.
    #[arg(long)]
    pub echo: bool,
    /// Exit after serving N connections.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Close a client's connection after SECS without a message (0: never).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub idle: std::time::Duration,
    /// Admit only clients with this uid (Unix sockets; repeatable). Another user's client
    /// also needs write permission on the socket file: see --mode.
    #[arg(long, value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// Memory for partly received messages, shared by all clients (beyond 128 KiB each). A
    /// message that finds no room waits — its client's writes block — until others complete,
    /// or is refused when its client idles out; one larger than the whole budget is refused.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub memory: u64,
    // The mode and group of a unix:PATH socket file (see the command's help).
    #[command(flatten)]
    pub share: ShareOpts,
    #[command(flatten)]
    pub stream: StreamOpts,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Where to connect: tcp:HOST:PORT, unix:PATH, unix:@NAME, unixpacket:PATH or
    /// unixpacket:@NAME.
    pub endpoint: String,
    /// Give up on a TCP connection attempt after SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// One side, such as mq:/jobs or unix:/run/app.sock: read (and written back to, when both
    /// sides are connected tcp:/unix:/unixpacket: sockets), or, with --listen, what clients are
    /// relayed to.
    pub a: String,
    /// The other side, such as tcp:10.0.0.2:7000: written (and read back from, when both sides
    /// are streams), or, with --listen, where clients connect.
    pub b: String,
    /// Listen on B (tcp:, unix: or unixpacket:) and serve many clients: each is relayed to its
    /// own connection to A when A is tcp:, unix: or unixpacket:, or else into A.
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
        /// Where to create it (its directory must exist).
        path: PathBuf,
        #[command(flatten)]
        share: ShareOpts,
    },
    /// Remove a FIFO; anything that is not a FIFO is left alone and reported.
    Rm {
        /// The FIFO to remove.
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum MqCommand {
    /// Create a queue (like /jobs), mode 0600 unless --mode says otherwise, exclusively; it
    /// stays until removed.
    Create {
        /// The queue's name: a slash, then up to 255 characters without a slash, like /jobs.
        name: String,
        /// Maximum number of messages (default: fs.mqueue.msg_default).
        #[arg(long)]
        capacity: Option<u64>,
        /// Maximum message size, like 8KiB (default: fs.mqueue.msgsize_default).
        #[arg(long, value_parser = parse_size)]
        msgsize: Option<u64>,
        #[command(flatten)]
        share: ShareOpts,
    },
    /// Print a queue's message count, capacity and message size, the kernel's limits, and its
    /// mode and owner.
    Info {
        /// The queue's name, like /jobs.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a queue.
    Rm {
        /// The queue's name, like /jobs.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Create a queue for KEY (decimal or 0x-hex) or PATH (ftok), mode 0600 unless --mode
    /// says otherwise, exclusively; it stays until removed.
    Create {
        /// A key as ipcs shows it (decimal or 0x-hex, like 0x5100), or an existing PATH that
        /// ftok(PATH, 'M') turns into one.
        key: String,
        /// The queue's byte limit, like 4KiB (default: kernel.msgmnb; above it needs root).
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        max_bytes: Option<u64>,
        #[command(flatten)]
        share: ShareOpts,
    },
    /// Print a queue's key, count, bytes, byte limit, last pids and times (seconds since the
    /// epoch and ISO 8601 UTC), mode, owner, and the kernel's limits.
    Info {
        /// A key (decimal or 0x-hex) or a PATH (ftok with project id 'M').
        key: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a queue.
    Rm {
        /// A key (decimal or 0x-hex) or a PATH (ftok with project id 'M').
        key: String,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer samples per scenario (the whole run in under ten seconds on a 2-core machine).
    #[arg(long)]
    pub quick: bool,
    /// Several times the samples (steadier tails; takes a few minutes).
    #[arg(long, conflicts_with = "quick")]
    pub full: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only these mechanisms (shm, shm-typed, unix, unix-typed, unixgram, unixpacket, unixpacket-typed, pipe, fifo, tcp, udp, mq, msg,
    /// sem, signal) and, in a build with `--features peers`, peers (iceoryx2, iceoryx2-block,
    /// ipc-channel, interprocess); repeatable.
    #[arg(long, value_name = "NAME")]
    pub mechanism: Vec<String>,
    /// Also draw latency and throughput against message size into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Only these message sizes (default 64, 4KiB, 64KiB, 1MiB; at most 64MiB); repeatable.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: Vec<u64>,
    /// Also run every channel's ping-pong and streaming through the async API (tokio, a
    /// current-thread runtime on each side), in turns with its blocking row: rows of mode
    /// `async`, and their ratio to the blocking ones.
    #[arg(long = "async")]
    pub with_async: bool,
}

#[derive(Debug, Subcommand)]
pub enum ShmCommand {
    /// Create a segment (mode 0600 unless --mode says otherwise, exclusive) that stays until
    /// removed. NAME is a POSIX name like /frame, or a System V key like 0x5100.
    Create {
        /// A POSIX name (/frame) or a System V key (decimal or 0x-hex, like 0x5100).
        name: String,
        /// Its size, like 4096 or 1MiB.
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        share: ShareOpts,
    },
    /// Print a segment's kind, size, mode, owner (and attach count for System V).
    Info {
        /// A POSIX name (/frame) or a System V key (decimal or 0x-hex).
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a segment.
    Rm {
        /// A POSIX name (/frame) or a System V key (decimal or 0x-hex).
        name: String,
    },
    /// Write DATA (or standard input, with -) into a segment at --offset.
    Write {
        /// A POSIX name (/frame) or a System V key (decimal or 0x-hex).
        name: String,
        /// The bytes to write, or - for standard input.
        data: String,
        /// Where in the segment to start writing, in bytes from its start.
        #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_size)]
        offset: u64,
    },
    /// Copy bytes of a segment to standard output.
    Read {
        /// A POSIX name (/frame) or a System V key (decimal or 0x-hex).
        name: String,
        /// Where in the segment to start reading, in bytes from its start.
        #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// How many bytes (default: to the end).
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
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
    /// Create a named semaphore (/NAME) with VALUE, or a System V set (0xKEY) of --count
    /// semaphores each with VALUE; mode 0600 unless --mode says otherwise, exclusively; it
    /// stays until removed. 1 makes a mutex, 0 an ordering.
    Create {
        /// A POSIX name like /lock, or a System V key (decimal or 0x-hex, like 0x5300).
        name: String,
        /// The initial value (at most 2147483647 for a named semaphore, 32767 in a set).
        value: u32,
        /// How many semaphores a System V set has (default 1).
        #[arg(long, value_name = "N")]
        count: Option<u16>,
        #[command(flatten)]
        share: ShareOpts,
    },
    /// V: add one, waking a waiter.
    Post {
        /// A POSIX name like /lock, or a System V key (decimal or 0x-hex).
        name: String,
        /// Which semaphore of a System V set (from 0; default 0).
        #[arg(long, value_name = "I")]
        index: Option<u16>,
    },
    /// P: wait until the value is positive, then subtract one.
    Wait {
        /// A POSIX name like /lock, or a System V key (decimal or 0x-hex).
        name: String,
        /// Give up after SECS.
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<std::time::Duration>,
        /// Which semaphore of a System V set (from 0; default 0). The P stays when procom
        /// exits (no SEM_UNDO), as with a named semaphore, until a post gives it back.
        #[arg(long, value_name = "I")]
        index: Option<u16>,
    },
    /// Print the current value alone.
    Get {
        /// A POSIX name like /lock, or a System V key (decimal or 0x-hex).
        name: String,
        /// Which semaphore of a System V set (from 0; default 0).
        #[arg(long, value_name = "I")]
        index: Option<u16>,
        /// Print one JSON object (with the key, id and index of a set's semaphore).
        #[arg(long)]
        json: bool,
    },
    /// Remove the name (processes that have it open keep it), or the System V set (waiters
    /// wake with an error).
    Rm {
        /// A POSIX name like /lock, or a System V key (decimal or 0x-hex).
        name: String,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    procom::endpoint::parse_size(s).map_err(|e| e.to_string())
}

/// Seconds as a finite, non-negative number of at most a year.
fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    procom::endpoint::parse_seconds(s).map_err(|e| e.to_string())
}

/// Permission bits in octal, at most 777, giving group and others nothing the owner lacks.
fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal mode between 0 and 777"))?;
    let owner = mode >> 6;
    if (mode >> 3) & 0o7 & !owner != 0 || mode & 0o7 & !owner != 0 {
        return Err(format!(
            "`{s}` would give the group or others what its owner does not have; give the owner those bits too (like {:o})",
            mode | ((mode >> 3) & 0o7) << 6 | (mode & 0o7) << 6
        ));
    }
    Ok(mode)
}
