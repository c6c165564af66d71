//! `procom sem create|post|wait|get|rm NAME|KEY`: named POSIX semaphores (`/lock`) and System V
//! semaphore sets (a numeric key such as `0x5300`) (P = wait, V = post).

use procom::endpoint::SysvKey;
use procom::sem::{Op, SemSet, Semaphore};
use serde_json::json;

use super::shm::Name;
use crate::cli::SemCommand;

fn parse(name: &str) -> anyhow::Result<Name> {
    super::shm::parse_name(name, "sem", "a semaphore name (like /lock)", "0x5300")
}

/// Refuses a set's option on a named semaphore.
fn set_only(name: &str, option: &str, given: bool) -> anyhow::Result<()> {
    if given {
        return Err(super::usage!(
            "{option} applies to System V semaphore sets (a key like 0x5300), not to the named semaphore {name}"
        ));
    }
    Ok(())
}

/// A set's member: opened with as many members as the kernel says, `index` checked by the
/// library against them.
fn member(key: &SysvKey, index: Option<u16>) -> anyhow::Result<(SemSet, u16)> {
    Ok((SemSet::open_all(key)?, index.unwrap_or(0)))
}

pub fn run(cmd: SemCommand) -> anyhow::Result<()> {
    match cmd {
        SemCommand::Create {
            name,
            value,
            count,
            share,
        } => {
            let (mode, group) = super::share(&share)?;
            match parse(&name)? {
                Name::Posix(n) => {
                    set_only(&name, "--count", count.is_some())?;
                    let sem = Semaphore::create_with_mode(&n, value, mode)?;
                    if let Some(gid) = group {
                        sem.set_group(gid)?; // on failure `sem` is dropped, which removes it
                    }
                    drop(sem.keep());
                }
                Name::SysV(key) => {
                    let value = u16::try_from(value)
                        .ok()
                        .filter(|v| *v <= procom::sem::SET_VALUE_MAX)
                        .ok_or_else(|| {
                            super::usage!(
                                "{value} is above the largest value of a System V semaphore ({}, SEMVMX)",
                                procom::sem::SET_VALUE_MAX
                            )
                        })?;
                    let count = usize::from(count.unwrap_or(1));
                    if count == 0 {
                        return Err(super::usage!("--count 0: a set needs at least 1 semaphore"));
                    }
                    let set = SemSet::create_with_mode(&key, &vec![value; count], mode)?;
                    if let Some(gid) = group {
                        set.set_group(gid)?; // on failure `set` is dropped, which removes it
                    }
                    drop(set.keep());
                }
            }
        }
        SemCommand::Post { name, index } => match parse(&name)? {
            Name::Posix(n) => {
                set_only(&name, "--index", index.is_some())?;
                Semaphore::open(&n)?.post()?
            }
            Name::SysV(key) => {
                let (set, i) = member(&key, index)?;
                // No undo: a V that outlives procom is the point of posting from the shell.
                set.apply(&[Op {
                    index: i,
                    delta: 1,
                    undo: false,
                }])?
            }
        },
        SemCommand::Wait {
            name,
            timeout,
            index,
        } => {
            crate::interrupt::set_activity(format!("waiting on semaphore {name}"));
            match parse(&name)? {
                Name::Posix(n) => {
                    set_only(&name, "--index", index.is_some())?;
                    let sem = Semaphore::open(&n)?;
                    match timeout {
                        Some(t) => sem.wait_timeout(t)?,
                        None => sem.wait()?,
                    }
                }
                Name::SysV(key) => {
                    let (set, i) = member(&key, index)?;
                    let op = [Op {
                        index: i,
                        delta: -1,
                        undo: false,
                    }];
                    match timeout {
                        Some(t) => set.apply_timeout(&op, t)?,
                        None => set.apply(&op)?,
                    }
                }
            }
        }
        SemCommand::Get { name, index, json } => match parse(&name)? {
            Name::Posix(n) => {
                set_only(&name, "--index", index.is_some())?;
                let value = Semaphore::open(&n)?.value()?;
                if json {
                    super::json_line(&json!({"name": n, "value": value}))?;
                } else {
                    super::outln!("{value}")?;
                }
            }
            Name::SysV(key) => {
                let (set, i) = member(&key, index)?;
                let value = set.value(i).map_err(|e| {
                    if usize::from(i) >= set.len() {
                        super::usage!(
                            "--index {i}: semaphore set {key} has {} semaphores (0 to {})",
                            set.len(),
                            set.len().saturating_sub(1)
                        )
                    } else {
                        e.into()
                    }
                })?;
                if json {
                    super::json_line(&json!({
                        "key": key.to_string(),
                        "id": set.id(),
                        "index": i,
                        "count": set.len(),
                        "value": value,
                    }))?;
                } else {
                    super::outln!("{value}")?;
                }
            }
        },
        SemCommand::Rm { name } => match parse(&name)? {
            Name::Posix(n) => procom::sem::remove(&n)?,
            Name::SysV(key) => SemSet::open(&key, 0)?.remove()?,
        },
    }
    Ok(())
}
