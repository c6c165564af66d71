//! `procom signal list|send|wait`.

use anyhow::bail;
use procom::ErrorKind;
use procom::signal::{Signal, Signals};

use crate::cli::SignalCommand;

fn out(line: &str) -> anyhow::Result<()> {
    super::write_stdout(&[line.as_bytes(), b"\n"])
}

pub fn run(cmd: SignalCommand) -> anyhow::Result<()> {
    match cmd {
        SignalCommand::List { json } => {
            for s in Signal::all() {
                if json {
                    let v = serde_json::json!({
                        "number": s.number(),
                        "name": s.to_string(),
                        "description": s.description(),
                        "default_action": s.default_action().as_str(),
                        "catchable": s.can_be_caught(),
                    });
                    out(&v.to_string())?;
                } else {
                    out(&format!(
                        "{:>2} {:<12} {:<9} {}",
                        s.number(),
                        s.to_string(),
                        s.default_action().as_str(),
                        s.description()
                    ))?;
                }
            }
        }
        SignalCommand::Send {
            pid,
            signal,
            value,
            group,
            force,
        } => {
            let sig: Signal = signal.parse()?;
            if pid <= 0 && !force {
                bail!(
                    "pid {pid} would signal {} rather than one process; add --force if that is what you mean",
                    if pid == 0 {
                        "your whole process group"
                    } else {
                        "every process you may signal"
                    }
                );
            }
            match (value, group) {
                (Some(_), true) => bail!("--value needs a single process (sigqueue), not --group"),
                (Some(v), false) => procom::signal::queue(pid, sig, v)?,
                (None, true) => procom::signal::send_group(pid, sig)?,
                (None, false) if pid <= 0 => procom::signal::broadcast(pid, sig)?,
                (None, false) => procom::signal::send(pid, sig)?,
            }
        }
        SignalCommand::Wait {
            signals,
            count,
            timeout,
            json,
        } => {
            let sigs: Vec<Signal> = signals
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?;
            let mut catcher = Signals::catch(sigs)?;
            let mut got = 0u64;
            while count.is_none_or(|n| got < n) {
                let d = match timeout {
                    Some(t) => catcher.wait_timeout(t),
                    None => catcher.wait(),
                };
                let d = match d {
                    Ok(d) => d,
                    Err(e) if e.kind() == ErrorKind::Timeout => {
                        bail!(
                            "no {} arrived within {:?} ({got} received)",
                            signals.join(" or "),
                            timeout.unwrap_or_default()
                        )
                    }
                    Err(e) => return Err(e.into()),
                };
                let line = if json {
                    serde_json::json!({
                        "signal": d.signal.to_string(),
                        "number": d.signal.number(),
                        "sender_pid": d.sender_pid,
                        "sender_uid": d.sender_uid,
                        "value": d.value,
                    })
                    .to_string()
                } else {
                    let value = d.value.map_or_else(|| "-".to_string(), |v| v.to_string());
                    format!(
                        "{} pid={} uid={} value={value}",
                        d.signal, d.sender_pid, d.sender_uid
                    )
                };
                out(&line)?;
                got += 1;
            }
        }
    }
    Ok(())
}
