//! The peer's own side (`peer`): what `procom __bench-peer` runs for every scenario, procom's
//! channels, the raw loops, the hand-offs, the cache line and the peer libraries.

use std::os::fd::AsFd;

use procom::{Error, Receiver, Sender};

use crate::async_rows::AsyncLink;
use crate::handoff::handoff_peer;
use crate::link::{ProcomLink, TypedLink, options};
use crate::machine::cacheline_peer;
use crate::measure::serve;
#[cfg(feature = "peers")]
use crate::peers;
use crate::raw::raw_peer;
use crate::scenario::{Mechanism, Mode, bench_error};

/// The peer side, run by `procom __bench-peer MECH MODE SIZE ITERATIONS STREAM A2B B2A`.
pub fn peer(args: &[String]) -> Result<(), Error> {
    die_with_the_bench()?;
    let (args, raw) = match args {
        [rest @ .., last] if last.starts_with("raw-") => (rest, Some(last.as_str())),
        _ => (args, None),
    };
    let [mech, mode, size, iterations, stream, a2b, b2a] = args else {
        return Err(bench_error("the peer needs 7 arguments"));
    };
    let _ = stream;
    if let Some(raw) = raw {
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| bench_error(format!("`{s}` is not a number")))
        };
        if raw == "raw-sem" || raw == "raw-signal" {
            return handoff_peer(mech, Some(raw), num(iterations)?, a2b, b2a);
        }
        return raw_peer(raw, num(size)?, num(iterations)?, a2b, b2a);
    }
    let num = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| bench_error(format!("`{s}` is not a number")))
    };
    if let Some(name) = mech.strip_prefix("peer:") {
        #[cfg(feature = "peers")]
        return peers::peer_main(name, num(size)?, num(iterations)?, num(stream)?, a2b, b2a);
        #[cfg(not(feature = "peers"))]
        return Err(bench_error(format!(
            "`{name}`: this procom was built without the `peers` feature"
        )));
    }
    if mech == "cacheline" {
        return cacheline_peer(num(iterations)?);
    }
    if mech == "sem" || mech == "signal" {
        return handoff_peer(mech, None, num(iterations)?, a2b, b2a);
    }
    // The endpoints carry the mode (a spinning shared-memory endpoint says `spin=`).
    let (size, iterations, stream) = (num(size)?, num(iterations)?, num(stream)?);
    let opts = options(size);
    let mechanism = Mechanism::parse(mech);
    let bound = mechanism.is_some_and(Mechanism::peer_binds);
    let (rx, tx) = if mechanism == Some(Mechanism::ShmTyped) {
        // Anonymous shared-memory ends, handed over on standard input and output.
        let fd = |f: std::os::fd::BorrowedFd<'_>| {
            f.try_clone_to_owned()
                .map_err(|e| Error::os("duplicate a handed-over end", e))
        };
        let rx = Receiver::from_shm_fd(fd(std::io::stdin().as_fd())?, &opts)?;
        let tx = Sender::from_shm_fd(fd(std::io::stdout().as_fd())?, &opts)?;
        (rx, tx)
    } else if bound {
        let rx = Receiver::bind_with(a2b.as_str(), &opts)?;
        let mut tx = Sender::connect_with(b2a.as_str(), &opts)?;
        // Where this receiver is (the real port when port 0 was asked for).
        tx.send(format!("at {}", rx.endpoint()).into_bytes())
            .map_err(|e| e.into_error())?;
        (rx, tx)
    } else {
        let rx = Receiver::connect_with(a2b.as_str(), &opts)?;
        let tx = Sender::connect_with(b2a.as_str(), &opts)?;
        (rx, tx)
    };
    if Mechanism::parse(mech).is_some_and(Mechanism::is_typed) {
        let mut link = TypedLink {
            tx: procom::typed::Sender::from_untyped(tx),
            rx: procom::typed::Receiver::from_untyped(rx),
        };
        return serve(&mut link, size, iterations, stream);
    }
    if mode == Mode::Async.name() {
        let mut link = AsyncLink::new(tx, rx)?;
        return serve(&mut link, size, iterations, stream);
    }
    let mut link = ProcomLink::new(tx, rx);
    serve(&mut link, size, iterations, stream)
}

/// The peer never outlives the bench that started it: a bench ended by a signal cannot wait
/// for its peer, which would otherwise wait on for ever in its channel (or spin), holding its
/// names. The bench names itself in the environment, so a bench already gone before the
/// death signal is set is noticed too.
fn die_with_the_bench() -> Result<(), Error> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| bench_error(format!("could not tie the peer to the bench: {e}")))?;
    let bench = std::env::var(crate::process::PARENT_VAR).ok();
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().to_string());
    if bench.is_some() && bench != parent {
        return Err(bench_error("the bench that started this peer is gone"));
    }
    Ok(())
}
