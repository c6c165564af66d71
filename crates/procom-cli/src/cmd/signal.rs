//! `procom signal list|send|wait`.
//!
//! `run` in cmd/mod.rs does not start the Ctrl-C watcher for these commands: `wait` may catch
//! SIGINT or SIGTERM itself, so it starts the watcher only when it waits for neither.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::bail;
use procom::ErrorKind;
use procom::signal::{Delivery, Signal, Signals};

use crate::cli::SignalCommand;

fn out(line: &str) -> anyhow::Result<()> {
    super::write_stdout(&[line.as_bytes(), b"\n"])
}

pub fn run(cmd: SignalCommand) -> anyhow::Result<()> {
    match cmd {
        SignalCommand::List { json } => list(json),
        SignalCommand::Send {
            pid,
            signal,
            value,
            group,
            force,
        } => send(pid, &signal, value, group, force),
        SignalCommand::Wait {
            signals,
            count,
            timeout,
            json,
        } => wait(&signals, count, timeout, json),
    }
}

/// Every signal, numbered and named as `kill -l` does, with its default action and the C
/// library's description (plus its key, or that it cannot be caught).
fn list(json: bool) -> anyhow::Result<()> {
    for s in Signal::all() {
        if json {
            let v = serde_json::json!({
                "number": s.number(),
                "name": s.to_string(),
                "description": s.description(),
                "default_action": s.default_action().as_str(),
                "catchable": s.can_be_caught(),
                "keyboard": s.keyboard(),
            });
            out(&v.to_string())?;
        } else {
            let note = match (s.keyboard(), s.can_be_caught()) {
                (Some(key), _) => format!(" ({key})"),
                (None, false) => "; cannot be caught or ignored".to_string(),
                (None, true) => String::new(),
            };
            out(&format!(
                "{:>2} {:<12} {:<9} {}{note}",
                s.number(),
                s.to_string(),
                s.default_action().as_str(),
                s.description()
            ))?;
        }
    }
    Ok(())
}

fn send(
    pid: i32,
    signal: &str,
    value: Option<i32>,
    group: bool,
    force: bool,
) -> anyhow::Result<()> {
    let sig: Signal = signal.parse()?;
    if group && pid <= 0 {
        bail!("--group needs a positive process group id, not {pid}");
    }
    if value.is_some() && (group || pid <= 0) {
        bail!(
            "--value queues the signal for one process (sigqueue), so it needs a positive pid without --group"
        );
    }
    if pid <= 0 && !force {
        let reach = match pid {
            0 => "your whole process group".to_string(),
            -1 => "every process you may signal".to_string(),
            _ => format!("every process of group {}", pid.unsigned_abs()),
        };
        bail!(
            "pid {pid} would signal {reach} rather than one process; add --force if that is what you mean"
        );
    }
    match (value, group) {
        (Some(v), _) => procom::signal::queue(pid, sig, v)?,
        (None, true) => procom::signal::send_group(pid, sig)?,
        (None, false) if pid <= 0 => procom::signal::broadcast(pid, sig)?,
        (None, false) => procom::signal::send(pid, sig)?,
    }
    Ok(())
}

/// One delivery as a line: `SIGUSR1 pid=1234 uid=0 value=-`, or a JSON object.
fn line(d: &Delivery, json: bool) -> String {
    if json {
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
    }
}

fn wait(
    names: &[String],
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    let sigs: Vec<Signal> = names.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let waited = sigs
        .iter()
        .map(Signal::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    // Ctrl-C ends the wait as it ends every other command, unless it is one of the signals
    // waited for.
    crate::interrupt::install(&sigs)?;
    let mut catcher = Signals::catch(sigs)?;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "waiting for {waited} as pid {} (send one with `procom signal send {} {}`)",
            std::process::id(),
            std::process::id(),
            names[0]
        );
    }
    let mut got = 0u64;
    while count.is_none_or(|n| got < n) {
        let d = match timeout {
            Some(t) => catcher.wait_timeout(t),
            None => catcher.wait(),
        };
        let d = match d {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let of = count.map_or_else(String::new, |n| format!(" of {n}"));
                bail!(
                    "no {waited} arrived within {} s ({got}{of} received)",
                    timeout.unwrap_or_default().as_secs_f64()
                )
            }
            Err(e) => return Err(e.into()),
        };
        out(&line(&d, json))?;
        got += 1;
    }
    Ok(())
}
