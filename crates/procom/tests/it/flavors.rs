//! The channel flavors the chaos and soak tests run, and for each one: how a sender and a
//! receiver are opened (as bytes, or typed), where its named object lives, and the check
//! that nothing is left of it.

use std::time::Duration;

use procom::{ErrorKind, Receiver, Sender};
use procom_testkit::{Outcome, Scratch, check, ensure};

use crate::traffic::Rng;

/// The mechanism under a flavor (`Typed` is typed messages over `unix:`; `ShmSpin` the ring
/// with `?spin=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mech {
    Pipe,
    Fifo,
    Unix,
    Packet,
    Typed,
    Tcp,
    Udp,
    UnixGram,
    Mq,
    Msg,
    Shm,
    ShmSpin,
}

/// One flavor: what it carries, and what each side can know of the other's death.
pub(crate) struct Flavor {
    pub(crate) name: &'static str,
    pub(crate) mech: Mech,
    /// The largest message of its traffic.
    pub(crate) max: usize,
    /// Whether a receiver learns that its sender died (`PeerGone`).
    pub(crate) receiver_learns: bool,
    /// Whether a sender learns that its receiver died (`PeerGone`).
    pub(crate) sender_learns: bool,
}

pub(crate) const FLAVORS: &[Flavor] = &[
    flavor("pipe", Mech::Pipe, 256 << 10, true, true),
    flavor("fifo", Mech::Fifo, 256 << 10, true, true),
    flavor("unix", Mech::Unix, 256 << 10, true, true),
    flavor("unixpacket", Mech::Packet, 256 << 10, true, true),
    flavor("typed_unix", Mech::Typed, 64 << 10, true, true),
    flavor("tcp", Mech::Tcp, 256 << 10, true, true),
    flavor("udp", Mech::Udp, 16 << 10, false, true),
    flavor("unixgram", Mech::UnixGram, 16 << 10, false, true),
    flavor("mq", Mech::Mq, 8192, false, false),
    flavor("msg", Mech::Msg, 8192, false, false),
    flavor("shm", Mech::Shm, 256 << 10, true, true),
    flavor("shm_spin", Mech::ShmSpin, 256 << 10, true, true),
];

const fn flavor(
    name: &'static str,
    mech: Mech,
    max: usize,
    receiver_learns: bool,
    sender_learns: bool,
) -> Flavor {
    Flavor {
        name,
        mech,
        max,
        receiver_learns,
        sender_learns,
    }
}

impl Flavor {
    /// A byte stream: a kill can cut a message in two.
    pub(crate) fn is_stream(&self) -> bool {
        matches!(
            self.mech,
            Mech::Pipe | Mech::Fifo | Mech::Unix | Mech::Typed | Mech::Tcp
        )
    }

    /// Whether a receiver keeps hearing new senders after one died (otherwise it is bound
    /// again on the same name each round).
    pub(crate) fn receiver_outlives_senders(&self) -> bool {
        matches!(
            self.mech,
            Mech::Udp | Mech::UnixGram | Mech::Mq | Mech::Msg | Mech::Shm | Mech::ShmSpin
        )
    }

    /// A stream socket: the receiving side accepts each sender's connection.
    pub(crate) fn accepts(&self) -> bool {
        matches!(
            self.mech,
            Mech::Unix | Mech::Packet | Mech::Typed | Mech::Tcp
        )
    }

    /// Whether a killed receiver's object stays at its name, for the next one to open.
    pub(crate) fn leaves_object(&self) -> bool {
        matches!(self.mech, Mech::Mq | Mech::Msg)
    }
}

pub(crate) fn find(name: &str) -> Result<&'static Flavor, String> {
    FLAVORS
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("no flavor {name}"))
}

// --- the messages' two forms: bytes, or a typed value carrying them ---------------------------

/// The typed flavor's message: the same checked bytes inside a serde value.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub(crate) struct Wire {
    bytes: Vec<u8>,
}

pub(crate) enum Tx {
    Bytes(Sender),
    Typed(procom::typed::Sender<Wire>),
}

impl Tx {
    pub(crate) fn connect(f: &Flavor, ep: &str) -> Result<Tx, procom::Error> {
        Ok(match f.mech {
            Mech::Typed => Tx::Typed(procom::typed::Sender::connect(ep)?),
            _ => Tx::Bytes(Sender::connect(ep)?),
        })
    }

    /// Sends, waiting at most `wait` (`None`: only if there is room now).
    pub(crate) fn send(&mut self, m: Vec<u8>, wait: Option<Duration>) -> Result<(), procom::Error> {
        match (self, wait) {
            (Tx::Bytes(s), Some(w)) => s.send_timeout(m, w).map_err(|e| e.into_error()),
            (Tx::Bytes(s), None) => s.try_send(m).map_err(|e| e.into_error()),
            (Tx::Typed(s), Some(w)) => s
                .send_timeout(Wire { bytes: m }, w)
                .map_err(|e| e.into_error()),
            (Tx::Typed(s), None) => s.try_send(Wire { bytes: m }).map_err(|e| e.into_error()),
        }
    }
}

pub(crate) enum Rx {
    Bytes(Receiver),
    Typed(procom::typed::Receiver<Wire>),
}

impl Rx {
    pub(crate) fn new(f: &Flavor, rx: Receiver) -> Rx {
        match f.mech {
            Mech::Typed => Rx::Typed(procom::typed::Receiver::from_untyped(rx)),
            _ => Rx::Bytes(rx),
        }
    }

    pub(crate) fn open(f: &Flavor, ep: &str, bind: bool) -> Result<Rx, procom::Error> {
        let rx = if bind {
            Receiver::bind(ep)?
        } else {
            Receiver::connect(ep)?
        };
        Ok(Rx::new(f, rx))
    }

    /// Receives, waiting at most `wait` (`None`: only what is there now).
    pub(crate) fn recv(&mut self, wait: Option<Duration>) -> Result<Vec<u8>, procom::Error> {
        match (self, wait) {
            (Rx::Bytes(r), Some(w)) => r.recv_timeout(w),
            (Rx::Bytes(r), None) => r.try_recv(),
            (Rx::Typed(r), Some(w)) => r.recv_timeout(w).map(|m| m.bytes),
            (Rx::Typed(r), None) => r.try_recv().map(|m| m.bytes),
        }
    }
}

// --- where a flavor's channel lives, and the leak check ---------------------------------------

pub(crate) struct Place {
    /// The endpoint.
    pub(crate) ep: String,
    scratch: Option<Scratch>,
    shm: Option<std::path::PathBuf>,
    mq: Option<String>,
    msg: Option<u32>,
}

pub(crate) fn place(f: &Flavor, rng: &mut Rng) -> Result<Place, String> {
    let mut p = Place {
        ep: String::new(),
        scratch: None,
        shm: None,
        mq: None,
        msg: None,
    };
    let unique = || procom_testkit::unique_name("procom-chaos");
    p.ep = match f.mech {
        Mech::Pipe => "-".into(),
        Mech::Fifo | Mech::Unix | Mech::Packet | Mech::Typed | Mech::UnixGram => {
            let s = Scratch::new("procom-chaos")?;
            let scheme = match f.mech {
                Mech::Fifo => "fifo",
                Mech::UnixGram => "unixgram",
                Mech::Packet => "unixpacket",
                _ => "unix",
            };
            let ep = format!("{scheme}:{}", s.join("ch").display());
            p.scratch = Some(s);
            ep
        }
        Mech::Tcp | Mech::Udp => port_endpoint(f, rng),
        Mech::Mq => {
            let name = format!("/{}", unique());
            p.mq = Some(name.clone());
            format!("mq:{name}?capacity=10&msgsize=8192")
        }
        Mech::Msg => {
            let key = unique_key();
            p.msg = Some(key);
            format!("msg:{key:#x}")
        }
        Mech::Shm | Mech::ShmSpin => {
            let name = format!("/{}", unique());
            p.shm = Some(format!("/dev/shm{name}").into());
            let spin = if f.mech == Mech::ShmSpin {
                "&spin=200us"
            } else {
                ""
            };
            format!("shm:{name}?capacity=1MiB{spin}")
        }
    };
    Ok(p)
}

/// A `tcp:` or `udp:` endpoint on a port outside the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): the port is bound again after each kill, and in between
/// no process that binds port 0 or connects anywhere can be handed it. (Someone may have bound
/// it on purpose: then the first round picks another, see [`taken`].)
pub(crate) fn port_endpoint(f: &Flavor, rng: &mut Rng) -> String {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768)
        .clamp(2050, 65535);
    let port = rng.between(low / 2, low - 1);
    let scheme = if f.mech == Mech::Tcp { "tcp" } else { "udp" };
    format!("{scheme}:127.0.0.1:{port}")
}

/// Whether an error says the first round's port was already taken by someone else.
pub(crate) fn taken(round: u32, e: &str) -> bool {
    round == 0 && e.contains("already in use")
}

/// A System V key no other test or run uses.
fn unique_key() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    0x4700_0000
        | ((std::process::id() & 0xfff) << 12)
        | (N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xfff)
}

impl Place {
    /// Removes the FIFO at the place's path (as `procom rm` would).
    pub(crate) fn remove_fifo(&self) -> Outcome {
        if let Some(s) = &self.scratch {
            check!(procom::fifo::remove(s.join("ch")));
        }
        Ok(())
    }

    /// Removes the queue a killed receiver left behind, if one did (nobody else will), then
    /// checks that nothing is left: no file in the scratch directory, no /dev/shm entry, no
    /// queue.
    pub(crate) fn finish(self, left_behind: bool) -> Outcome {
        if left_behind {
            if let Some(name) = &self.mq {
                check!(procom::mq::remove(name));
            }
            if let Some(key) = self.msg {
                check!(procom::msg::remove(&procom::endpoint::SysvKey::Key(
                    key as i32
                )));
            }
        }
        if let Some(path) = &self.shm {
            ensure!(!path.exists(), "leaked {}", path.display());
        }
        if let Some(name) = &self.mq {
            let e = procom::mq::Queue::open(name).err().map(|e| e.kind());
            ensure!(e == Some(ErrorKind::NotFound), "queue {name} leaked: {e:?}");
        }
        if let Some(key) = self.msg {
            let k = procom::endpoint::SysvKey::Key(key as i32);
            let e = procom::msg::MsgQueue::open(&k).err().map(|e| e.kind());
            ensure!(
                e == Some(ErrorKind::NotFound),
                "System V queue {key:#x} leaked: {e:?}"
            );
        }
        match self.scratch {
            Some(s) => s.finish(),
            None => Ok(()),
        }
    }
}
