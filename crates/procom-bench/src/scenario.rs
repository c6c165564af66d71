//! What a run measures: the mechanisms, receive modes, profiles and message sizes of a scenario,
//! and how its round trips and stream split into batches; with the helpers every module shares
//! (`bench_error`, `unique`).

use std::sync::atomic::Ordering;

use procom::{Error, ErrorKind};

/// The message sizes every mechanism is measured at, where it allows them.
pub const SIZES: [usize; 4] = [64, 4096, 64 << 10, 1 << 20];

/// The largest message size a run measures (`--size`): every scenario holds a few messages at
/// once in each process and in the channels between them, and takes at least a few hundred
/// round trips.
pub const MAX_SIZE: usize = 64 << 20;

/// A mechanism the benchmark can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Anonymous pipes, one each way.
    Pipe,
    /// Two FIFOs.
    Fifo,
    /// Two shared-memory ring channels.
    Shm,
    /// Two anonymous shared-memory channels carrying typed messages (`procom::typed`,
    /// postcard), as `procom::typed::shm_pair` makes, the peer's ends handed to it as
    /// descriptors.
    ShmTyped,
    /// A Unix stream socket pair.
    Unix,
    /// A Unix stream socket pair carrying typed messages (`procom::typed`, postcard): the
    /// payload as one byte string, encoded and decoded on every hop.
    UnixTyped,
    /// Two Unix datagram sockets.
    UnixGram,
    /// A Unix sequenced-packet socket pair (`SOCK_SEQPACKET`).
    UnixPacket,
    /// A Unix sequenced-packet socket pair carrying typed messages (`procom::typed`,
    /// postcard), as `procom::typed::pair` makes where a whole message fits in one packet.
    UnixPacketTyped,
    /// Two TCP connections on loopback.
    Tcp,
    /// Two UDP sockets on loopback.
    Udp,
    /// Two POSIX message queues.
    Mq,
    /// Two System V message queues.
    Msg,
    /// Two named semaphores handing a turn back and forth (no payload).
    Sem,
    /// Real-time signals queued back and forth with sigqueue (a 4-byte value, no payload).
    Signal,
}

impl Mechanism {
    /// Every mechanism, in table order.
    pub const ALL: [Mechanism; 15] = [
        Mechanism::Shm,
        Mechanism::ShmTyped,
        Mechanism::Unix,
        Mechanism::UnixTyped,
        Mechanism::UnixGram,
        Mechanism::UnixPacket,
        Mechanism::UnixPacketTyped,
        Mechanism::Pipe,
        Mechanism::Fifo,
        Mechanism::Tcp,
        Mechanism::Udp,
        Mechanism::Mq,
        Mechanism::Msg,
        Mechanism::Sem,
        Mechanism::Signal,
    ];

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::Shm => "shm",
            Mechanism::ShmTyped => "shm-typed",
            Mechanism::Unix => "unix",
            Mechanism::UnixTyped => "unix-typed",
            Mechanism::UnixGram => "unixgram",
            Mechanism::UnixPacket => "unixpacket",
            Mechanism::UnixPacketTyped => "unixpacket-typed",
            Mechanism::Tcp => "tcp",
            Mechanism::Udp => "udp",
            Mechanism::Mq => "mq",
            Mechanism::Msg => "msg",
            Mechanism::Sem => "sem",
            Mechanism::Signal => "signal",
        }
    }

    /// Whether the payload travels as a typed message (`procom::typed`).
    pub fn is_typed(self) -> bool {
        self.carrier() != self
    }

    /// The byte channel a typed mechanism rides on (itself for the others): its wiring, its
    /// limits and its raw baseline are that channel's.
    pub fn carrier(self) -> Mechanism {
        match self {
            Mechanism::ShmTyped => Mechanism::Shm,
            Mechanism::UnixTyped => Mechanism::Unix,
            Mechanism::UnixPacketTyped => Mechanism::UnixPacket,
            m => m,
        }
    }

    /// Whether the mechanism carries `size`-byte messages in a run whose smallest size is
    /// `smallest`, and why not.
    pub fn supports(self, size: usize, smallest: usize) -> Result<(), &'static str> {
        match self.carrier() {
            Mechanism::Udp if size > 4096 => {
                Err("over one UDP datagram (65,507 bytes, less procom's 16-byte header)")
            }
            Mechanism::UnixGram if size > 64 << 10 => Err("over a Unix datagram socket's buffer"),
            Mechanism::UnixPacket if size == 0 && self == Mechanism::UnixPacket => {
                Err("an empty packet reads as the sender leaving, so the channel carries none")
            }
            Mechanism::UnixPacket if size >= procom::socket::packet_limit() => {
                Err("over one packet here (twice net.core.wmem_max, at most 4 MiB)")
            }
            Mechanism::Mq if size as i64 > procom::mq::limits().msgsize_max => {
                Err("over fs.mqueue.msgsize_max on this machine")
            }
            Mechanism::Mq if size > 64 << 10 => {
                Err("two such queues exceed RLIMIT_MSGQUEUE (800 KiB per user by default)")
            }
            Mechanism::Msg if size as i64 > procom::msg::limits().msgmax => {
                Err("over kernel.msgmax on this machine")
            }
            Mechanism::Sem | Mechanism::Signal if size != smallest => {
                Err("carries no payload: one row, at the smallest size")
            }
            _ => Ok(()),
        }
    }

    /// Whether the raw loop crosses between the processes at `size`: a byte stream carries no
    /// empty message, so at 0 bytes its raw write and read would move nothing and a `vs raw`
    /// would compare procom with no work at all.
    pub fn has_raw(self, size: usize) -> bool {
        size > 0
            || !matches!(
                self.carrier(),
                Mechanism::Pipe | Mechanism::Fifo | Mechanism::Unix | Mechanism::Tcp
            )
    }

    /// Whether the peer binds its own receiving end (named kernel objects and sockets).
    pub(crate) fn peer_binds(self) -> bool {
        !self.is_typed()
            && !matches!(
                self,
                Mechanism::Pipe
                    | Mechanism::Unix
                    | Mechanism::UnixPacket
                    | Mechanism::Fifo
                    | Mechanism::Sem
                    | Mechanism::Signal
            )
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The modes the mechanism has.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Mechanism::Shm => &[Mode::Block, Mode::Spin],
            _ => &[Mode::Block],
        }
    }
}

/// How a receiver waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sleeps in the kernel until woken.
    Block,
    /// Busy-polls.
    Spin,
    /// Through the async API on a current-thread tokio runtime (`procom bench --async`),
    /// waiting as blocking mode does underneath.
    Async,
}

impl Mode {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Spin => "spin",
            Mode::Async => "async",
        }
    }
}

/// How many samples a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// About ten seconds in all.
    Quick,
    /// Well within a minute on two cores.
    Default,
    /// Several times the default's samples, for steadier tails.
    Full,
}

/// One measurement to take.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// What to measure.
    pub mechanism: Mechanism,
    /// How receivers wait.
    pub mode: Mode,
    /// Payload bytes per message.
    pub size: usize,
    /// Round trips timed (after a warm-up of a tenth as many).
    pub iterations: usize,
    /// Messages streamed for the throughput figure.
    pub stream: usize,
}

impl Scenario {
    /// A scenario sized for the profile: each part takes a fraction of a second by default,
    /// less with `Quick`, several times longer with `Full`.
    pub fn sized(mechanism: Mechanism, mode: Mode, size: usize, profile: Profile) -> Scenario {
        let (budget, cap): (usize, usize) = match profile {
            Profile::Quick => (8 << 20, 2_500),
            Profile::Default => (64 << 20, 10_000),
            Profile::Full => (1 << 30, 100_000),
        };
        Scenario {
            mechanism,
            mode,
            size,
            iterations: (budget / 4 / size.max(1)).clamp(100, cap),
            // UDP streams too: a sender outrunning its receiver loses datagrams, so its row
            // gives the messages delivered per second and the share lost.
            stream: (budget / size.max(1)).clamp(200, cap * 5),
        }
    }
}

/// Loops measured side by side take turns in this many batches, for the round trips and again
/// for the stream: on a virtual machine, two separate runs of the same loop differ by more than
/// the 10% being looked for, while batches taken in turn see the same machine.
pub(crate) const BATCHES: usize = 10;

/// Round trips at the start of each batch that are not recorded: a side that slept (or
/// stopped spinning) while another side ran its batch wakes up in these, not in the histogram.
pub(crate) const LEAD: usize = 2;

/// The part of `total` that batch `b` takes.
pub(crate) fn batch_len(total: usize, b: usize) -> usize {
    total / BATCHES + usize::from(b < total % BATCHES)
}

/// Round trips a peer echoes for a scenario of `iterations` timed ones (warm-up and batch
/// leads included).
pub(crate) fn round_trips(iterations: usize) -> usize {
    iterations / 10 + iterations + BATCHES * LEAD
}

/// An error of the benchmark itself (not of the mechanism measured).
pub(crate) fn bench_error(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Io)
        .detail(what.into())
        .object("bench")
}

/// A name no other object of this run has: `prefix`, the pid and a counter.
pub(crate) fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
