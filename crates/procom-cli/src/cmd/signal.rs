//! `procom signal list|send|wait`.
//!
//! `run` in cmd/mod.rs does not start the Ctrl-C watcher for these commands: `wait` may catch
//! SIGINT or SIGTERM itself, so it starts the watcher only when it waits for neither.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::bail;
use procom::ErrorKind;
use procom::signal::{Delivery, Signal, Signals, Target};

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
    use super::usage;
    if signal.trim() == "0" {
        // `kill -0`: delivers nothing, says whether the process exists and may be signalled.
        if group || value.is_some() || pid <= 0 {
            return Err(usage!(
                "signal 0 checks whether one process exists and may be signalled: give a positive pid, without --group or --value"
            ));
        }
        procom::signal::probe(pid)?;
        return super::outln!("pid {pid} exists and may be signalled");
    }
    let sig: Signal = signal.parse()?;
    let target = match (group, pid) {
        (true, 2..) => Target::group(pid)?,
        (true, 1) => Target::EVERYONE, // killpg(1) is kill(-1)
        (true, 0) => Target::OWN_GROUP,
        (true, _) => {
            return Err(usage!(
                "--group needs a process group id (its leader's pid), not {pid}"
            ));
        }
        (false, 1..) => Target::process(pid)?,
        (false, 0) => Target::OWN_GROUP,
        (false, -1) => Target::EVERYONE,
        (false, _) => Target::group(pid.checked_neg().ok_or_else(|| {
            usage!(
                "pid {pid} names no process group: group ids go up to {}",
                i32::MAX
            )
        })?)?,
    };
    // Written as a pid, anything but one process is a surprise; written with --group, only a
    // target beyond that one group is.
    if (target.is_broadcast() || (!group && pid < 0)) && !force {
        let (how, reach) = match (group, pid) {
            (true, _) => (format!("--group {pid}"), target.to_string()),
            (false, ..-1) => (
                format!("pid {pid}"),
                format!("every process of group {}", pid.unsigned_abs()),
            ),
            (false, _) => (format!("pid {pid}"), target.to_string()),
        };
        return Err(usage!(
            "{how} would signal {reach} rather than one process; add --force if that is what you mean"
        ));
    }
    match value {
        Some(_) if group || pid <= 0 => Err(usage!(
            "--value queues the signal for one process (sigqueue), so it needs a positive pid without --group"
        )),
        Some(v) => Ok(procom::signal::queue(pid, sig, v)?),
        None => Ok(procom::signal::send_to(target, sig)?),
    }
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
        crate::interrupt::warn(format_args!(
            "waiting for {waited} as pid {} (send one with `procom signal send {} {}`)",
            std::process::id(),
            std::process::id(),
            names[0]
        ));
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
                    "no {waited} arrived within {} ({got}{of} received)",
                    super::duration(timeout.unwrap_or_default())
                )
            }
            Err(e) => return Err(e.into()),
        };
        out(&line(&d, json))?;
        got += 1;
    }
    Ok(())
}
