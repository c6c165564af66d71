//! `procom recv ENDPOINT [--count N] [--timeout SECS]`

use procom::{Endpoint, ErrorKind, Receiver};

use crate::cli::RecvArgs;
use crate::interrupt;

pub fn run(args: RecvArgs) -> anyhow::Result<()> {
    let mut ep = Endpoint::parse(&args.endpoint)?;
    super::apply_type(&mut ep, args.mtype)?;
    let opts = super::options(&args.stream, false)?;
    interrupt::set_activity(format!("receiving from {ep}"));
    let mut rx = Receiver::connect_with(&ep, &opts)?;
    let datagrams = matches!(ep, Endpoint::Udp { .. } | Endpoint::UnixGram { .. });
    let mut refused = 0u64;
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        let msg = match args.timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv(),
        };
        let msg = match msg {
            Ok(m) => m,
            // A kernel queue has no peer to close it: its removal ends the wait, and says so.
            Err(e)
                if e.kind() == ErrorKind::PeerGone
                    && matches!(ep, Endpoint::Mq { .. } | Endpoint::Msg { .. }) =>
            {
                anyhow::bail!("{e} ({received} received)")
            }
            Err(e) if e.kind() == ErrorKind::PeerGone => match args.count {
                None => return Ok(()),
                Some(n) => {
                    anyhow::bail!("{ep}: the sender closed after {received} of {n} messages")
                }
            },
            // One bad datagram concerns only itself: the library discarded and counted it.
            // Any local process can send one, so it is reported (a flood only a few times)
            // and the receiver goes on.
            Err(e)
                if datagrams && matches!(e.kind(), ErrorKind::TooLarge | ErrorKind::Malformed) =>
            {
                refused += 1;
                if refused <= REPORTED_REFUSALS {
                    interrupt::warn(format_args!("{e}"));
                }
                if refused == REPORTED_REFUSALS {
                    interrupt::warn(format_args!(
                        "{ep}: further datagrams that cannot be delivered are only counted"
                    ));
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let t = args.timeout.unwrap_or_default();
                anyhow::bail!("{ep}: no whole message arrived within {t:?} ({received} received)");
            }
            // A stream that ended inside a line: its last bytes are shown as they came (no
            // newline is added, so they do not pass for a line), and the run fails.
            Err(e) if e.fragment().is_some() => {
                super::write_stdout(&[e.fragment().unwrap_or_default()])?;
                anyhow::bail!("{e}; its bytes were printed as they came, with no newline")
            }
            Err(e) => return Err(e.into()),
        };
        super::write_stdout(&[&msg, b"\n"])?;
        received += 1;
    }
    Ok(())
}

/// How many undeliverable datagrams a receiver reports one by one before it only counts them.
const REPORTED_REFUSALS: u64 = 10;
