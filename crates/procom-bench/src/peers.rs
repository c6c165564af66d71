//! Other Rust IPC libraries measured in the same run, doing exactly the work procom does
//! (feature `peers`).
//!
//! Every peer runs the same `drive`/`serve` loop as procom, process to process, with the
//! peer process being the same `procom` executable:
//!
//! - **iceoryx2** publish-subscribe over `[u8]` slices, two services (one each way), the
//!   receiver busy-polling `receive()` — its spin mode, compared with procom's `shm spin`;
//!   and **iceoryx2-block**, the same with an event service each way (the sender notifies
//!   after each sample, an empty receiver sleeps in the listener's wait), compared with
//!   `shm block`.
//!   The sender writes the payload into a loaned sample (one copy), the echo side copies the
//!   received payload into an owned buffer and from it into its own loan: the copies procom's
//!   `send` and `recv` make.
//! - **ipc-channel**: typed `IpcSender<ByteBuf>`/`IpcReceiver<ByteBuf>` (postcard over a Unix
//!   socket), compared with procom's `unixpacket-typed` (postcard over a Unix sequenced-packet socket,
//!   as ipc-channel's own), and also with `shm-typed` (procom's typed channel over shared
//!   memory) from the same run. procom sends a view of the payload and receives views (see
//!   `TypedLink`); ipc-channel, whose API takes and gives only owned values, a `ByteBuf`.
//! - **interprocess**: a local socket stream (a Unix stream socket) carrying the same 4-byte
//!   big-endian length prefix procom's `unix` writes, so that messages keep their boundaries.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use procom::Error;
use serde_bytes::ByteBuf;

use crate::link::Link;
use crate::measure::{Measurement, drive, serve};
use crate::process::{child_result, finish, peer_args, spawn};
use crate::scenario::{Mode, Scenario, bench_error, unique};

/// A library measured beside procom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// iceoryx2 publish-subscribe, busy-polling.
    Iceoryx2,
    /// iceoryx2 publish-subscribe with an event service: the sender notifies after each
    /// sample, the receiver sleeps in the listener's wait when nothing is there.
    Iceoryx2Block,
    /// ipc-channel's typed channel.
    IpcChannel,
    /// interprocess local sockets with length-prefixed messages.
    Interprocess,
}

impl Peer {
    /// Every peer, in table order.
    pub const ALL: [Peer; 4] = [
        Peer::Iceoryx2,
        Peer::Iceoryx2Block,
        Peer::IpcChannel,
        Peer::Interprocess,
    ];

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Iceoryx2 => "iceoryx2",
            Peer::Iceoryx2Block => "iceoryx2-block",
            Peer::IpcChannel => "ipc-channel",
            Peer::Interprocess => "interprocess",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }

    /// How its receiver waits: `iceoryx2` busy-polls `receive()` (its subscriber never
    /// blocks); `iceoryx2-block` sleeps on an event service between samples; the socket peers
    /// block in the kernel.
    pub fn mode(self) -> Mode {
        match self {
            Peer::Iceoryx2 => Mode::Spin,
            Peer::Iceoryx2Block | Peer::IpcChannel | Peer::Interprocess => Mode::Block,
        }
    }

    /// The procom row this peer is measured in turns with, and compared with.
    pub fn counterpart(self) -> (&'static str, Mode) {
        match self {
            Peer::Iceoryx2 => ("shm", Mode::Spin),
            Peer::Iceoryx2Block => ("shm", Mode::Block),
            Peer::IpcChannel => ("unixpacket-typed", Mode::Block),
            Peer::Interprocess => ("unix", Mode::Block),
        }
    }

    /// A procom row this peer's rows are compared with too, in the same run but not in turns
    /// with it: ipc-channel's typed channel against procom's typed channel over shared memory,
    /// the other local typed channel procom offers.
    pub fn also_compared(self) -> Option<(&'static str, Mode)> {
        match self {
            Peer::IpcChannel => Some(("shm-typed", Mode::Block)),
            Peer::Iceoryx2 | Peer::Iceoryx2Block | Peer::Interprocess => None,
        }
    }
}

/// Runs one scenario (its mechanism and mode are ignored) against `peer`, on its own: for a
/// peer whose procom counterpart is not part of the run.
pub fn run(exe: &Path, scratch: &Path, peer: Peer, s: &Scenario) -> Result<Measurement, Error> {
    let s = Scenario {
        mode: peer.mode(),
        ..*s
    };
    with_link(exe, scratch, peer, &s, |link| drive(link, &s, peer.name()))
}

/// Runs procom's scenario `s` (the peer's counterpart) with `peer` doing the same work in turns
/// beside it, batch by batch, so that both see the same machine; returns procom's row and the
/// peer's.
pub fn run_beside(
    exe: &Path,
    scratch: &Path,
    peer: Peer,
    s: &Scenario,
) -> Result<(Measurement, Measurement), Error> {
    let theirs = Scenario {
        mode: peer.mode(),
        ..*s
    };
    let (ours, theirs) = with_link(exe, scratch, peer, &theirs, |link| {
        crate::wiring::run_beside(exe, scratch, s, Some((link, peer.name())))
    })?;
    let theirs = theirs.ok_or_else(|| bench_error("the peer was not measured"))?;
    Ok((ours, theirs))
}

/// Starts `peer`'s process for scenario `s`, connects to it, waits for it to be ready, runs
/// `f` on the link and reaps the process (killing it if `f` failed).
fn with_link<T>(
    exe: &Path,
    scratch: &Path,
    peer: Peer,
    s: &Scenario,
    f: impl FnOnce(&mut dyn Link) -> Result<T, Error>,
) -> Result<T, Error> {
    // The endpoints (arguments 6 and 7) are filled in below.
    let mut args = peer_args(s, &format!("peer:{}", peer.name()), "-", "-");
    let timeout = Duration::from_secs(10);
    match peer {
        Peer::Iceoryx2 | Peer::Iceoryx2Block => {
            let names = (unique("procom-bench/a2b"), unique("procom-bench/b2a"));
            let block = peer == Peer::Iceoryx2Block;
            let mut link = iox::Iox::create(&names.0, &names.1, s.size, block)?;
            args[6].clone_from(&names.0);
            args[7].clone_from(&names.1);
            let mut child = start(exe, &args)?;
            let result = ready(&mut link, timeout).and_then(|()| {
                link.update();
                f(&mut link)
            });
            drop(link);
            finish(child_result(&mut child, result.is_err()), result)
        }
        Peer::IpcChannel => {
            type Ends = (
                ipc_channel::ipc::IpcSender<ByteBuf>,
                ipc_channel::ipc::IpcReceiver<ByteBuf>,
            );
            let (server, name) = ipc_channel::ipc::IpcOneShotServer::<Ends>::new()
                .map_err(|e| Error::os("start an ipc-channel server", e))?;
            args[6] = name;
            let mut child = start(exe, &args)?;
            let accepted = within(timeout, move || {
                server
                    .accept()
                    .map_err(|e| bench_error(format!("ipc-channel: {e:?}")))
            });
            let result = accepted.and_then(|(_, (tx, rx))| {
                let mut link = IpcLink { tx, rx };
                ready(&mut link, timeout).and_then(|()| f(&mut link))
            });
            finish(child_result(&mut child, result.is_err()), result)
        }
        Peer::Interprocess => {
            use interprocess::local_socket::traits::Listener;
            use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
            let path = scratch.join(unique("interprocess.sock"));
            let name = path
                .clone()
                .to_fs_name::<GenericFilePath>()
                .map_err(|e| Error::os("name a local socket", e))?;
            let listener = ListenerOptions::new()
                .name(name)
                .create_sync()
                .map_err(|e| Error::os("listen on a local socket", e))?;
            args[6] = path.display().to_string();
            let mut child = start(exe, &args)?;
            let accepted = within(timeout, move || {
                listener
                    .accept()
                    .map_err(|e| Error::os("accept a local socket", e))
            });
            let result = accepted.and_then(|stream| {
                let mut link = StreamLink::new(stream, s.size);
                ready(&mut link, timeout).and_then(|()| f(&mut link))
            });
            let _ = std::fs::remove_file(&path);
            finish(child_result(&mut child, result.is_err()), result)
        }
    }
}

/// The peer process's side, for `procom __bench-peer peer:NAME …`.
pub(crate) fn peer_main(
    name: &str,
    size: usize,
    iterations: usize,
    stream: usize,
    a2b: &str,
    b2a: &str,
) -> Result<(), Error> {
    match Peer::parse(name) {
        Some(p @ (Peer::Iceoryx2 | Peer::Iceoryx2Block)) => {
            let mut link = iox::Iox::open(a2b, b2a, size, p == Peer::Iceoryx2Block)?;
            serve(&mut link, size, iterations, stream)
        }
        Some(Peer::IpcChannel) => {
            let (a2b_tx, a2b_rx) = ipc_channel::ipc::channel::<ByteBuf>()
                .map_err(|e| Error::os("create an ipc-channel", e))?;
            let (b2a_tx, b2a_rx) = ipc_channel::ipc::channel::<ByteBuf>()
                .map_err(|e| Error::os("create an ipc-channel", e))?;
            let parent = ipc_channel::ipc::IpcSender::<(
                ipc_channel::ipc::IpcSender<ByteBuf>,
                ipc_channel::ipc::IpcReceiver<ByteBuf>,
            )>::connect(a2b.to_string())
            .map_err(|e| Error::os("connect to the ipc-channel server", e))?;
            parent
                .send((a2b_tx, b2a_rx))
                .map_err(|e| bench_error(format!("ipc-channel: {e:?}")))?;
            let mut link = IpcLink {
                tx: b2a_tx,
                rx: a2b_rx,
            };
            serve(&mut link, size, iterations, stream)
        }
        Some(Peer::Interprocess) => {
            use interprocess::local_socket::traits::Stream as _;
            use interprocess::local_socket::{GenericFilePath, Stream, ToFsName};
            let name = a2b
                .to_fs_name::<GenericFilePath>()
                .map_err(|e| Error::os("name a local socket", e))?;
            let conn =
                Stream::connect(name).map_err(|e| Error::os("connect to a local socket", e))?;
            serve(&mut StreamLink::new(conn, size), size, iterations, stream)
        }
        None => Err(bench_error(format!("`{name}` is not a peer"))),
    }
}

fn start(exe: &Path, args: &[String]) -> Result<Child, Error> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    spawn(cmd)
}

fn ready(link: &mut dyn Link, timeout: Duration) -> Result<(), Error> {
    match link.recv_control(timeout)? {
        m if m == b"ready" => Ok(()),
        _ => Err(bench_error("the peer did not say ready")),
    }
}

/// Runs a blocking setup step (an accept) on a thread and gives up after `timeout`, so that a
/// peer that died before connecting fails the run instead of hanging it.
fn within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout)
        .map_err(|_| bench_error("the peer did not connect"))?
}

/// ipc-channel's typed channel carrying the payload as one byte string.
struct IpcLink {
    tx: ipc_channel::ipc::IpcSender<ByteBuf>,
    rx: ipc_channel::ipc::IpcReceiver<ByteBuf>,
}

fn ipc_error(e: impl std::fmt::Debug) -> Error {
    bench_error(format!("ipc-channel: {e:?}"))
}

impl Link for IpcLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.tx.send(ByteBuf::from(msg.to_vec())).map_err(ipc_error)
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        Ok(self.rx.recv().map_err(ipc_error)?.len())
    }
    fn echo(&mut self) -> Result<(), Error> {
        let m = self.rx.recv().map_err(ipc_error)?;
        self.tx.send(m).map_err(ipc_error)
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        Ok(self
            .rx
            .try_recv_timeout(timeout)
            .map_err(ipc_error)?
            .into_vec())
    }
}

/// A byte stream with procom's framing (4-byte big-endian length, then the payload).
struct StreamLink {
    stream: interprocess::local_socket::Stream,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// The longest frame accepted (the benchmark's limit for its payload size).
    max: usize,
}

impl StreamLink {
    fn new(stream: interprocess::local_socket::Stream, size: usize) -> StreamLink {
        StreamLink {
            stream,
            out: Vec::new(),
            buf: Vec::new(),
            max: crate::link::max_message(size),
        }
    }

    fn read_frame(&mut self) -> Result<usize, Error> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| Error::os("read a local socket", e))?;
        let n = u32::from_be_bytes(len) as usize;
        if n > self.max {
            return Err(bench_error(format!("a {n}-byte frame")));
        }
        self.buf.resize(n, 0);
        self.stream
            .read_exact(&mut self.buf)
            .map_err(|e| Error::os("read a local socket", e))?;
        Ok(n)
    }
}

/// Writes the length prefix and `payload` in one `write` through the reused `out` buffer.
fn write_frame(
    stream: &mut interprocess::local_socket::Stream,
    out: &mut Vec<u8>,
    payload: &[u8],
) -> Result<(), Error> {
    out.clear();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    stream
        .write_all(out)
        .map_err(|e| Error::os("write a local socket", e))
}

impl Link for StreamLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        write_frame(&mut self.stream, &mut self.out, msg)
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        self.read_frame()
    }
    fn echo(&mut self) -> Result<(), Error> {
        self.read_frame()?;
        write_frame(&mut self.stream, &mut self.out, &self.buf)
    }
    fn recv_control(&mut self, _timeout: Duration) -> Result<Vec<u8>, Error> {
        // A peer that dies closes the stream, which ends the read.
        let n = self.read_frame()?;
        Ok(self.buf[..n].to_vec())
    }
}

mod iox {
    use super::*;
    use iceoryx2::port::listener::Listener;
    use iceoryx2::port::notifier::Notifier;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::*;

    fn error(what: &str, e: impl std::fmt::Debug) -> Error {
        bench_error(format!("iceoryx2: {what}: {e:?}"))
    }

    /// The sample buffer of each subscriber: deep enough that streaming does not stall on
    /// every message, within about 8 MiB per direction.
    fn depth(size: usize) -> usize {
        ((8 << 20) / size.max(1)).clamp(2, 1024)
    }

    /// One side's publisher (towards the other) and subscriber (from it); in blocking mode,
    /// also a notifier (woken: the other side) and a listener (for this side's wake-ups).
    pub(super) struct Iox {
        tx: Publisher<ipc::Service, [u8], ()>,
        rx: Subscriber<ipc::Service, [u8], ()>,
        events: Option<(Notifier<ipc::Service>, Listener<ipc::Service>)>,
        buf: Vec<u8>,
        _node: Node<ipc::Service>,
    }

    impl Iox {
        /// The parent: creates both services.
        pub(super) fn create(a2b: &str, b2a: &str, size: usize, block: bool) -> Result<Iox, Error> {
            Iox::new(b2a, a2b, size, true, block)
        }

        /// The peer: opens them.
        pub(super) fn open(a2b: &str, b2a: &str, size: usize, block: bool) -> Result<Iox, Error> {
            Iox::new(a2b, b2a, size, false, block)
        }

        fn new(from: &str, to: &str, size: usize, create: bool, block: bool) -> Result<Iox, Error> {
            set_log_level(LogLevel::Error);
            let node = NodeBuilder::new()
                .signal_handling_mode(SignalHandlingMode::Disabled)
                .create::<ipc::Service>()
                .map_err(|e| error("create a node", e))?;
            let service = |name: &str| {
                let name: ServiceName = name.try_into().map_err(|e| error("name a service", e))?;
                let builder = node
                    .service_builder(&name)
                    .publish_subscribe::<[u8]>()
                    .max_publishers(1)
                    .max_subscribers(1)
                    .history_size(0)
                    .subscriber_max_buffer_size(depth(size))
                    .enable_safe_overflow(false);
                if create {
                    builder.create().map_err(|e| error("create a service", e))
                } else {
                    builder.open().map_err(|e| error("open a service", e))
                }
            };
            // An event service beside each direction: the side that publishes notifies on it,
            // the side that subscribes waits on it.
            let events = if block {
                let event = |name: &str| {
                    let name: ServiceName = format!("{name}.event")
                        .as_str()
                        .try_into()
                        .map_err(|e| error("name an event service", e))?;
                    let builder = node.service_builder(&name).event();
                    if create {
                        builder
                            .create()
                            .map_err(|e| error("create an event service", e))
                    } else {
                        builder
                            .open()
                            .map_err(|e| error("open an event service", e))
                    }
                };
                let (woken_here, woken_there) = (event(from)?, event(to)?);
                let notifier = woken_there
                    .notifier_builder()
                    .create()
                    .map_err(|e| error("create a notifier", e))?;
                let listener = woken_here
                    .listener_builder()
                    .create()
                    .map_err(|e| error("create a listener", e))?;
                Some((notifier, listener))
            } else {
                None
            };
            let (from, to) = (service(from)?, service(to)?);
            let rx = from
                .subscriber_builder()
                .buffer_size(depth(size))
                .create()
                .map_err(|e| error("create a subscriber", e))?;
            let tx = to
                .publisher_builder()
                .initial_max_slice_len(size.max(8))
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .map_err(|e| error("create a publisher", e))?;
            Ok(Iox {
                tx,
                rx,
                events,
                buf: Vec::new(),
                _node: node,
            })
        }

        /// Connects the publisher to a subscriber that appeared after it.
        pub(super) fn update(&mut self) {
            let _ = self.tx.update_connections();
        }

        /// Busy-polls for a sample (politely, like procom's spin mode: [`crate::link::poll_politely`])
        /// and hands its payload to `f`; gives up after `timeout`.
        ///
        /// In blocking mode it sleeps in the event listener's wait instead, woken by the
        /// notification the sender sends after each sample (a notification that arrives
        /// between the empty `receive` and the wait ends the wait at once).
        fn wait<R>(&mut self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
            if let Some((_, listener)) = &self.events {
                let start = Instant::now();
                loop {
                    if let Some(sample) = self.rx.receive().map_err(|e| error("receive", e))? {
                        return Ok(f(sample.payload()));
                    }
                    let left = timeout.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(bench_error("iceoryx2: nothing arrived from the peer"));
                    }
                    listener
                        .timed_wait(|_| {}, left)
                        .map_err(|e| error("wait for an event", e))?;
                }
            }
            let mut f = Some(f);
            crate::link::poll_politely(timeout, || {
                let Some(sample) = self.rx.receive().map_err(|e| error("receive", e))? else {
                    return Ok::<_, Error>(None);
                };
                Ok(f.take().map(|f| f(sample.payload())))
            })?
            .ok_or_else(|| bench_error("iceoryx2: nothing arrived from the peer"))
        }
    }

    impl Link for Iox {
        fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
            let sample = self
                .tx
                .loan_slice_uninit(msg.len())
                .map_err(|e| error("loan", e))?;
            let sample = sample.write_from_slice(msg);
            sample.send().map_err(|e| error("send", e))?;
            if let Some((notifier, _)) = &self.events {
                notifier.notify().map_err(|e| error("notify", e))?;
            }
            Ok(())
        }
        fn recv_len(&mut self) -> Result<usize, Error> {
            // The payload is copied out of the sample, as procom's shm link and the raw
            // mailbox loop copy theirs out of the mapping.
            let mut buf = std::mem::take(&mut self.buf);
            let n = self.wait(Duration::from_secs(10), |p| {
                buf.clear();
                buf.extend_from_slice(p);
                p.len()
            });
            self.buf = buf;
            n
        }
        fn echo(&mut self) -> Result<(), Error> {
            let mut buf = std::mem::take(&mut self.buf);
            self.wait(Duration::from_secs(10), |p| {
                buf.clear();
                buf.extend_from_slice(p);
            })?;
            let sent = self.send(&buf);
            self.buf = buf;
            sent
        }
        fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
            self.wait(timeout, <[u8]>::to_vec)
        }
    }
}
