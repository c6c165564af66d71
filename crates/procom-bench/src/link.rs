//! The links the loops drive: the `Link` trait, procom's byte and typed channels behind it,
//! their options, and how a spinning receiver waits.

use std::time::{Duration, Instant};

use procom::{Error, Options, Receiver, Sender};

use crate::scenario::{Mode, bench_error};

/// The largest message the benchmark's endpoints accept when its payloads are `size` bytes:
/// procom's 2 MiB default, or the payload with room for a typed message's length prefix.
pub(crate) fn max_message(size: usize) -> usize {
    (2 << 20).max(size.saturating_add(64))
}

/// The options of every endpoint the benchmark makes for `size`-byte payloads.
pub(crate) fn options(size: usize) -> Options {
    Options::default().max_message(max_message(size))
}

/// The `spin=` parameter a spinning shared-memory endpoint carries: long enough that a
/// receiver never sleeps while its peer keeps sending; short enough that a side waiting out
/// another side's batch stops spinning and leaves it the CPU.
pub(crate) fn spin_param(mode: Mode) -> String {
    match mode {
        Mode::Block | Mode::Async => String::new(),
        Mode::Spin => format!("&spin={}us", SPIN.as_micros()),
    }
}

/// One side's two directions as the benchmark driver sees them, so that procom and every peer
/// library run exactly the same loop (see [`drive`](crate::measure::drive) and
/// [`serve`](crate::measure::serve)).
pub(crate) trait Link {
    /// Sends `msg`: the payload is written into the transport.
    fn send(&mut self, msg: &[u8]) -> Result<(), Error>;
    /// Receives one message, reads its payload as the mechanism's raw loop does, and returns
    /// its length: a kernel transport's receive call copies the payload out of the kernel; a
    /// shared-memory link copies it out of the mapping into a buffer it keeps (as the raw
    /// mailbox loop does), so that no side skips the reading.
    fn recv_len(&mut self) -> Result<usize, Error>;
    /// Receives one message into an owned buffer and sends that buffer back (the echo side).
    fn echo(&mut self) -> Result<(), Error>;
    /// Receives a short control message (ready, acknowledgement) within `timeout`.
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error>;
    /// A link that can drop messages (UDP): how it ends its batches. `None` for a reliable
    /// link, whose peer acknowledges each batch.
    fn udp_batches(&mut self) -> Option<&mut udp::Batches> {
        None
    }
    /// After streaming batch `batch`: waits until the peer has taken it. `None`: every message
    /// arrived (a reliable link); `Some(n)`: the peer received `n` (a link that drops).
    fn end_batch(&mut self, batch: usize) -> Result<Option<usize>, Error> {
        if self.udp_batches().is_some() {
            udp::end_batch(self, batch)
        } else {
            await_ack(self)
        }
    }
    /// The peer's side of one streamed batch of `n` messages of `size` bytes.
    fn take_batch(&mut self, size: usize, n: usize, batch: usize) -> Result<(), Error> {
        let Some(b) = self.udp_batches() else {
            return take_and_ack(self, size, n);
        };
        let mut answered = b.answered.take();
        let r = udp::take_batch(self, size, batch, &mut answered);
        if let Some(b) = self.udp_batches() {
            b.answered = answered;
        }
        r
    }
    /// The peer's side once the last batch is taken.
    fn end_stream(&mut self) -> Result<(), Error> {
        match self.udp_batches().and_then(|b| b.answered) {
            Some(last) => udp::end_stream(self, last),
            None => Ok(()),
        }
    }
}

/// A reliable link's end of a batch: the peer's acknowledgement.
fn await_ack(link: &mut (impl Link + ?Sized)) -> Result<Option<usize>, Error> {
    let ack = link.recv_control(Duration::from_secs(60))?;
    if ack != b"k" {
        return Err(bench_error("the peer did not acknowledge the stream"));
    }
    Ok(None)
}

/// A reliable link's peer side of a batch: `n` messages of `size` bytes, then the
/// acknowledgement.
pub(crate) fn take_and_ack(
    link: &mut (impl Link + ?Sized),
    size: usize,
    n: usize,
) -> Result<(), Error> {
    for _ in 0..n {
        let got = link.recv_len()?;
        if got != size {
            return Err(bench_error(format!(
                "received {got} bytes instead of {size}"
            )));
        }
    }
    link.send(b"k")
}

/// The datagram that ends a UDP batch: `end BATCH`; the peer answers `k BATCH RECEIVED`.
fn end_mark(batch: usize) -> Vec<u8> {
    format!("end {batch}").into_bytes()
}

/// A UDP peer's count for `batch`, if `m` is its answer.
fn parse_count(m: &[u8], batch: usize) -> Option<usize> {
    let m = std::str::from_utf8(m).ok()?.strip_prefix("k ")?;
    let (b, n) = m.split_once(' ')?;
    (b.parse::<usize>().ok()? == batch).then_some(())?;
    n.parse().ok()
}

/// How long a UDP side waits for an answer before it sends its datagram again (the answer or
/// the question may have been dropped).
const UDP_RETRY: Duration = Duration::from_millis(100);

/// procom's byte channels.
pub(crate) struct ProcomLink {
    tx: Sender,
    rx: Receiver,
    /// A datagram can be lost, so UDP waits with a deadline and ends its batches by asking
    /// (`Some`); the others block in the kernel (System V queues have no timed receive, and a
    /// deadline would make them poll).
    udp: Option<udp::Batches>,
    /// The echo side's buffer, reused for every message (as the peers' links do).
    buf: Vec<u8>,
    /// Shared memory: a received payload is copied out into `buf` (see [`Link::recv_len`]).
    copy_out: bool,
}

impl ProcomLink {
    pub(crate) fn new(tx: Sender, rx: Receiver) -> ProcomLink {
        ProcomLink {
            udp: udp::Batches::for_endpoint(rx.endpoint()),
            copy_out: rx.endpoint().starts_with("shm:"),
            tx,
            rx,
            buf: Vec::new(),
        }
    }
}

impl ProcomLink {
    /// The sender and receiver (the async link wraps them).
    pub(crate) fn into_parts(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }
}

impl Link for ProcomLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.tx.send(msg).map_err(|e| e.into_error())
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        if self.udp.is_some() {
            Ok(self.rx.recv_timeout(Duration::from_secs(10))?.len())
        } else if self.copy_out {
            self.rx.recv_into(&mut self.buf)
        } else {
            self.rx.recv_with(|b| b.len())
        }
    }
    fn echo(&mut self) -> Result<(), Error> {
        self.rx.recv_into(&mut self.buf)?;
        self.tx.send(&self.buf).map_err(|e| e.into_error())
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        self.rx.recv_timeout(timeout)
    }
    fn udp_batches(&mut self) -> Option<&mut udp::Batches> {
        self.udp.as_mut()
    }
}

/// A UDP batch's end, for every link over `udp:` (procom's blocking and async links): a
/// datagram can be lost, so the sender asks how many arrived until the peer answers.
pub(crate) mod udp {
    use std::time::{Duration, Instant};

    use procom::Error;

    use super::{Link, UDP_RETRY, end_mark, parse_count};
    use crate::scenario::bench_error;

    /// A UDP link's memory between batches: the last batch this side answered and its count,
    /// sent again if the sender asks again.
    #[derive(Debug, Default)]
    pub(crate) struct Batches {
        pub(crate) answered: Option<(usize, usize)>,
    }

    impl Batches {
        /// `Some` for a `udp:` endpoint.
        pub(crate) fn for_endpoint(endpoint: &str) -> Option<Batches> {
            endpoint.starts_with("udp:").then(Batches::default)
        }
    }

    /// Asks the peer how many datagrams of the batch it received, until it answers.
    pub(crate) fn end_batch(
        link: &mut (impl Link + ?Sized),
        batch: usize,
    ) -> Result<Option<usize>, Error> {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            link.send(&end_mark(batch))?;
            let wait = Instant::now() + UDP_RETRY;
            while let Some(left) = wait.checked_duration_since(Instant::now()) {
                match link.recv_control(left) {
                    Ok(m) => {
                        if let Some(n) = parse_count(&m, batch) {
                            return Ok(Some(n));
                        }
                    }
                    Err(e) if e.kind() == procom::ErrorKind::Timeout => break,
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() > give_up {
                return Err(bench_error(
                    "the UDP peer never answered the end of a batch",
                ));
            }
        }
    }

    /// Counts the batch's datagrams until its end mark, and answers with the count; an end
    /// mark of the batch before (our answer was dropped) is answered again. `answered` is the
    /// last batch answered and its count.
    pub(crate) fn take_batch(
        link: &mut (impl Link + ?Sized),
        size: usize,
        batch: usize,
        answered: &mut Option<(usize, usize)>,
    ) -> Result<(), Error> {
        let mut count = 0;
        loop {
            let m = link.recv_control(Duration::from_secs(10))?;
            if m.len() == size && !m.starts_with(b"end ") {
                count += 1;
            } else if m == end_mark(batch) {
                *answered = Some((batch, count));
                return link.send(format!("k {batch} {count}").as_bytes());
            } else if let Some((b, c)) = answered.filter(|(b, _)| m == end_mark(*b)) {
                link.send(format!("k {b} {c}").as_bytes())?;
            } else {
                return Err(bench_error(format!(
                    "received {} bytes instead of {size}",
                    m.len()
                )));
            }
        }
    }

    /// Answers the last end mark again until the sender says `done` (or goes quiet), so a
    /// dropped last answer does not leave it waiting.
    pub(crate) fn end_stream(
        link: &mut (impl Link + ?Sized),
        (b, c): (usize, usize),
    ) -> Result<(), Error> {
        loop {
            match link.recv_control(Duration::from_secs(1)) {
                Ok(m) if m == end_mark(b) => link.send(format!("k {b} {c}").as_bytes())?,
                Ok(m) if m == b"done" => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == procom::ErrorKind::Timeout => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// procom's typed channel (postcard) carrying the payload as one byte string, through its
/// borrowing forms, as a program holding its payload in a buffer would use it: the sender
/// sends a view of its buffer (`&Bytes`, which encodes as the `ByteBuf` the channel carries),
/// the echo side receives a view borrowing from its receive buffer and sends that view back,
/// and the initiator receives a view and reads its length. (ipc-channel's API takes and gives
/// only owned values: its link makes a `ByteBuf` of the payload and receives one.)
pub(crate) struct TypedLink {
    pub(crate) tx: procom::typed::Sender<serde_bytes::ByteBuf>,
    pub(crate) rx: procom::typed::Receiver<serde_bytes::ByteBuf>,
}

impl Link for TypedLink {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.tx.send_view(serde_bytes::Bytes::new(msg))
    }
    fn recv_len(&mut self) -> Result<usize, Error> {
        let m: &serde_bytes::Bytes = self.rx.recv_view()?;
        Ok(m.len())
    }
    fn echo(&mut self) -> Result<(), Error> {
        let m: &serde_bytes::Bytes = self.rx.recv_view()?;
        self.tx.send_view(m)
    }
    fn recv_control(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        Ok(self.rx.recv_timeout(timeout)?.into_vec())
    }
}

/// How long a spin-mode receiver busy-polls before it sleeps (procom's and the peers').
pub(crate) const SPIN: Duration = Duration::from_millis(10);

/// How long the iceoryx2 peer and the raw shared-memory loop busy-poll before they offer the
/// CPU to other threads between bursts: the same as procom's spin mode.
pub(crate) const SPIN_ALONE: Duration = Duration::from_micros(50);

/// Busy-polls `poll` until it gives a value, the way procom's spin mode waits: alone for
/// [`SPIN_ALONE`], then offering the CPU to other threads between bursts, then napping between
/// polls after [`SPIN`], so a side waiting out another side's batch leaves the CPU to it.
/// `None` once `timeout` has passed. (The raw shared-memory loop and the iceoryx2 peer.)
pub(crate) fn poll_politely<R, E>(
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Option<R>, E>,
) -> Result<Option<R>, E> {
    let start = Instant::now();
    let mut polls = 0u32;
    let mut idle = false;
    loop {
        if let Some(r) = poll()? {
            return Ok(Some(r));
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(128) {
            let waited = start.elapsed();
            if waited > timeout {
                return Ok(None);
            }
            idle = waited > SPIN;
            if !idle && waited > SPIN_ALONE {
                std::thread::yield_now();
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            std::hint::spin_loop();
        }
    }
}
