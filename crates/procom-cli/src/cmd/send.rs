//! `procom send ENDPOINT MESSAGE|-`

use std::io::Read;
use std::time::Instant;

use anyhow::Context;
use procom::{Endpoint, Error, Sender};

use crate::cli::SendArgs;
use crate::interrupt;

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let mut ep = Endpoint::parse(&args.endpoint)?;
    super::apply_type(&mut ep, args.mtype)?;
    let from_stdin = args.message == "-";
    let raw_copy = from_stdin && ep.is_byte_stream() && !args.stream.framed;
    let opts = super::options(&args.stream, raw_copy)?.open_timeout(args.timeout);
    // `--priority P` overrides the endpoint's `?priority=`, as `--type` does `?type=`.
    if let Some(p) = args.priority {
        match &mut ep {
            Endpoint::Mq { priority, .. } => *priority = Some(p),
            _ => return Err(super::usage!("--priority applies to mq: endpoints only")),
        }
    }
    let deadline = args.timeout.map(|t| Instant::now() + t);
    interrupt::set_activity(format!("sending to {ep}"));
    if !ep.is_byte_stream() {
        interrupt::set_in_flight(interrupt::NOT_SENT);
    }
    let mut tx = Sender::connect_with(&ep, &opts)?;
    let mut send = |msg: &[u8]| -> Result<(), Error> {
        let _whole = interrupt::output_lock();
        match deadline {
            Some(d) => tx.send_deadline(msg, d),
            None => tx.send(msg),
        }
        .map_err(|e| e.into_error())
    };
    if !from_stdin {
        return Ok(send(args.message.as_bytes())?);
    }
    let mut stdin = std::io::stdin().lock();
    if raw_copy {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("could not read standard input"),
            };
            send(&buf[..n])?;
        }
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_until(&mut stdin, b'\n', &mut line)
            .context("could not read standard input")?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        send(&line)?;
    }
}
