//! `procom msg` and send/recv on `msg:` endpoints, each step a separate procom process, plus
//! the system's own ipcs/ipcrm on the same queues.

use std::process::Command;

use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, trials,
};

use crate::common::{fails, ok, procom};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::msg":
            create_send_type_recv_rm,
            path_keys_and_selectors,
            byte_limit_full_and_oversize,
            bad_input_is_one_sentence,
            removed_while_recv_waits,
            other_users_are_denied [needs::root()],
            info_shows_the_key_and_readable_times,
            a_path_key_is_ftok_with_project_id_m,
            recv_json_shows_types,
            shared_with_a_group [needs::root()],
            ipcs_and_ipcrm_see_the_same_queue [needs::tool("ipcs"), needs::tool("ipcrm")];
    ]
}

/// A key as `ipcs` shows it, unique to this process and call.
fn key() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:#010x}",
        0x4d00_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)
    )
}

fn create_send_type_recv_rm() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key])?;
    fails(&["msg", "create", &key], 1, "already exists")?;
    ok(&["send", &ep, "two", "--type", "2"])?;
    ok(&["send", &ep, "one"])?; // type 1 by default
    ensure!(
        ok(&["recv", &ep, "--type", "2", "--count", "1"])? == ["two"],
        "type selector"
    );
    let info = ok(&["msg", "info", &key])?;
    for want in ["messages: 1", "bytes: 3", "mode: 600", "max_bytes: "] {
        ensure!(info.iter().any(|l| l.starts_with(want)), "{want}: {info:?}");
    }
    ensure!(
        info.iter().any(|l| l.starts_with("limits: msgmax=")),
        "{info:?}"
    );
    ensure!(
        ok(&["recv", &ep, "--count", "1"])? == ["one"],
        "first message"
    );
    // Decimal works as well as hex.
    let decimal = u32::from_str_radix(&key[2..], 16)
        .map_err(|e| e.to_string())?
        .to_string();
    ok(&["msg", "rm", &decimal])?;
    fails(
        &["msg", "info", &key],
        1,
        "does not exist; create it with `procom msg create",
    )?;
    Ok(())
}

fn path_keys_and_selectors() -> Outcome {
    let dir = Scratch::new("procom-cli-msg")?;
    let path = dir.join("key").display().to_string();
    fails(&["msg", "create", &path], 1, "the path does not exist")?;
    check!(std::fs::write(&path, b""));
    ok(&["msg", "create", &path])?;
    let ep = format!("msg:{path}");
    for (t, m) in [("3", "three"), ("5", "five"), ("2", "two"), ("1", "one")] {
        ok(&["send", &ep, m, "--type", t])?;
    }
    // -3: the lowest type at most 3, each time.
    ensure!(
        ok(&["recv", &ep, "--type", "-3", "--count", "3"])? == ["one", "two", "three"],
        "-3"
    );
    fails(
        &["recv", &ep, "--type", "-3", "--timeout", "0"],
        1,
        "no whole message arrived",
    )?;
    ensure!(ok(&["recv", &ep, "--count", "1"])? == ["five"], "0");
    fails(&["send", &ep, "x", "--type", "0"], 2, "must be 1 or more")?;
    ok(&["msg", "rm", &path])?;
    check!(std::fs::remove_file(&path));
    dir.finish()
}

fn byte_limit_full_and_oversize() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key, "--max-bytes", "8"])?;
    ensure!(
        ok(&["msg", "info", &key])?.contains(&"max_bytes: 8".to_string()),
        "limit"
    );
    ok(&["send", &ep, "12345678"])?;
    fails(
        &["send", &ep, "x", "--timeout", "0.1"],
        1,
        "stayed full until the deadline",
    )?;
    fails(&["send", &ep, "123456789"], 1, "can never fit")?;
    let msgmax = procom::msg::limits().msgmax as usize;
    fails(
        &["send", &ep, &"x".repeat(msgmax + 1)],
        1,
        "sysctl -w kernel.msgmax",
    )?;
    ensure!(
        ok(&["recv", &ep, "--count", "1"])? == ["12345678"],
        "the message"
    );
    ok(&["msg", "rm", &key])?;
    Ok(())
}

fn bad_input_is_one_sentence() -> Outcome {
    fails(&["send", "msg:zz", "x"], 2, "not a key")?;
    fails(&["send", "msg:0", "x"], 2, "IPC_PRIVATE")?;
    fails(&["msg", "create", "0x1g"], 2, "not a key")?;
    fails(
        &["send", "msg:0x5eff0001", "x", "--timeout", "0"],
        1,
        "does not exist",
    )?;
    fails(
        &["send", "msg:0x5eff0001", "x", "--priority", "2"],
        2,
        "--priority applies to mq:",
    )?;
    fails(&["msg", "rm", "0x5eff0001"], 1, "does not exist")?;
    Ok(())
}

fn removed_while_recv_waits() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key])?;
    ok(&["send", &ep, "before"])?;
    let mut recv = Proc::spawn("recv", &mut procom(&["recv", &ep]))?;
    recv.expect_line("before")?;
    ok(&["msg", "rm", &key])?;
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.code() == Some(1)
            && fin.stderr.trim()
                == format!("procom: msg:{key}: the queue was removed (1 received)"),
        "{fin:?}"
    );
    Ok(())
}

fn other_users_are_denied() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key])?;
    for args in [
        &["recv", &ep, "--timeout", "0"][..],
        &["send", &ep, "x"],
        &["msg", "info", &key],
        &["msg", "rm", &key],
    ] {
        let mut cmd = procom(args);
        let fin = Proc::spawn("nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
        ensure!(
            fin.code() == Some(1)
                && fin.stderr.lines().count() == 1
                && fin.stderr.contains("permission denied"),
            "{args:?}: {fin:?}"
        );
    }
    ok(&["msg", "rm", &key])?;
    Ok(())
}

fn ipcs_and_ipcrm_see_the_same_queue() -> Outcome {
    let key = key();
    ok(&["msg", "create", &key])?;
    ok(&["send", &format!("msg:{key}"), "seen by ipcs"])?;
    let out = check!(Command::new("ipcs").arg("-q").output());
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&key))
        .ok_or(format!("ipcs -q does not list {key}: {listing}"))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    // key msqid owner perms used-bytes messages
    ensure!(
        cols.get(3..6) == Some(&["600", "12", "1"][..]),
        "ipcs -q: {line}"
    );
    let rm = check!(Command::new("ipcrm").args(["-Q", &key]).status());
    ensure!(rm.success(), "ipcrm -Q {key}");
    fails(&["msg", "info", &key], 1, "does not exist")?;
    Ok(())
}

/// `msg info` shows the queue's key and its times both as seconds and in ISO 8601 UTC ("never"
/// for what has not happened); `--json` has the same.
fn info_shows_the_key_and_readable_times() -> Outcome {
    let key = key();
    ok(&["msg", "create", &key])?;
    let result = (|| -> Outcome {
        ok(&["send", &format!("msg:{key}"), "x"])?;
        let info = ok(&["msg", "info", &key])?;
        let line = |name: &str| {
            info.iter()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_string)
                .ok_or(format!("no {name}: {info:?}"))
        };
        ensure!(line("key")? == key, "{info:?}");
        let sent = line("send_time")?;
        let (secs, utc) = sent.split_once(' ').ok_or(format!("send_time: {sent:?}"))?;
        let utc = utc.trim_matches(|c| c == '(' || c == ')');
        ensure!(
            secs.parse::<u64>().is_ok_and(|s| s > 0)
                && utc.len() == 20
                && utc.as_bytes()[10] == b'T'
                && utc.ends_with('Z'),
            "send_time: {sent:?}"
        );
        ensure!(line("receive_time")? == "0 (never)", "{info:?}");
        let out = ok(&["msg", "info", &key, "--json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&out.join("")).map_err(|e| e.to_string())?;
        ensure!(
            v["key"] == key.as_str()
                && v["messages"] == 1
                && v["send_time_utc"] == utc
                && v["receive_time_utc"].is_null()
                && v["receive_time"] == 0
                && v["mode"] == "0600",
            "{v}"
        );
        Ok(())
    })();
    ok(&["msg", "rm", &key])?;
    result
}

/// The key of a path is ftok(PATH, 'M') — as the README says, so a C or python peer computes
/// the same: ('M' << 24) | (device & 0xff) << 16 | (inode & 0xffff).
fn a_path_key_is_ftok_with_project_id_m() -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let dir = Scratch::new("procom-cli-ftok")?;
    let path = dir.join("key");
    check!(std::fs::write(&path, b""));
    let meta = check!(std::fs::metadata(&path));
    let want = format!(
        "{:#010x}",
        (u32::from(b'M') << 24) | ((meta.dev() as u32 & 0xff) << 16) | (meta.ino() as u32 & 0xffff)
    );
    let path = path.display().to_string();
    ok(&["msg", "create", &path])?;
    let info = ok(&["msg", "info", &path]);
    ok(&["msg", "rm", &path])?;
    let info = info?;
    ensure!(info.first() == Some(&format!("key: {want}")), "{info:?}");
    check!(std::fs::remove_file(&path));
    dir.finish()
}

/// `recv --json` on a System V queue gives each message's type.
fn recv_json_shows_types() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key])?;
    let result = (|| -> Outcome {
        ok(&["send", &ep, "four", "--type", "4"])?;
        ok(&["send", &ep, "one"])?;
        let out = ok(&["recv", &ep, "--json", "--count", "2"])?;
        ensure!(
            out == [
                r#"{"bytes":"four","len":4,"type":4}"#,
                r#"{"bytes":"one","len":3,"type":1}"#
            ],
            "{out:?}"
        );
        Ok(())
    })();
    ok(&["msg", "rm", &key])?;
    result
}

/// `msg create --mode 660 --group 65534`: a member of that group (nobody) may send and
/// receive; `msg info` shows the mode and group.
fn shared_with_a_group() -> Outcome {
    let key = key();
    let ep = format!("msg:{key}");
    crate::common::queue_shared_with_a_group("msg", &key, &ep)
}
