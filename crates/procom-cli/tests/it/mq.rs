//! `procom mq` and send/recv on `mq:` endpoints, each step a separate procom process (so the
//! queue's kernel lifetime carries every step to the next).

use procom_testkit::{
    Outcome, Proc, Role, STEP, Trial, as_nobody, ensure, needs, trials, unique_name,
};

use crate::common::{fails, ok, procom, run_with_input};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::mq":
            create_send_priority_recv_rm,
            stdin_lines_are_messages,
            bad_input_is_one_sentence,
            removed_while_recv_waits,
            other_users_are_denied [needs::root()],
            shared_with_a_group [needs::root()],
            modes_and_groups_that_cannot_be_are_usage_errors,
            a_group_you_are_not_in_is_refused [needs::root()],
            recv_json_is_lossless_and_shows_priorities,
            info_json;
    ]
}

fn queue_name() -> String {
    format!("/{}", unique_name("procom-cli-q"))
}

fn create_send_priority_recv_rm() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name, "--capacity", "2", "--msgsize", "64"])?;
    ok(&["send", &ep, "low", "--priority", "1"])?;
    ok(&["send", &ep, "high", "--priority", "9"])?;
    fails(
        &["send", &ep, "third", "--timeout", "0.1"],
        1,
        "stayed full until the deadline",
    )?;
    let info = ok(&["mq", "info", &name])?;
    ensure!(
        info.starts_with(&[
            "messages: 2".into(),
            "capacity: 2".into(),
            "msgsize: 64".into()
        ]) && info[3].contains("msg_max="),
        "{info:?}"
    );
    ensure!(
        ok(&["recv", &ep, "--count", "2"])? == ["high", "low"],
        "priority order"
    );
    fails(
        &["recv", &ep, "--timeout", "0.05"],
        1,
        "no whole message arrived",
    )?;
    fails(
        &["send", &ep, &"x".repeat(65)],
        1,
        "over this queue's message size of 64 bytes",
    )?;
    ok(&["mq", "rm", &name])?;
    fails(
        &["mq", "info", &name],
        1,
        "does not exist; create it with `procom mq create",
    )?;
    fails(&["mq", "rm", &name], 1, "does not exist")?;
    Ok(())
}

fn stdin_lines_are_messages() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name])?; // the kernel's default capacity and size
    let fin = run_with_input(procom(&["send", &ep, "-"]), "send -", b"one\ntwo\n\nfour\n")?;
    ensure!(fin.status.success(), "send -: {}", fin.stderr);
    ensure!(
        ok(&["mq", "info", &name])?[0] == "messages: 4",
        "four messages, one empty"
    );
    ensure!(
        ok(&["recv", &ep, "--count", "4"])? == ["one", "two", "", "four"],
        "lines"
    );
    ok(&["mq", "rm", &name])?;
    Ok(())
}

fn bad_input_is_one_sentence() -> Outcome {
    let name = queue_name();
    fails(&["mq", "create", "jobs"], 2, "must start with '/'")?;
    fails(&["send", "mq:jobs", "x"], 2, "must start with '/'")?;
    fails(
        &["mq", "create", &name, "--capacity", "100000"],
        1,
        "fs.mqueue.msg_max",
    )?;
    fails(
        &["mq", "create", &name, "--msgsize", "64MiB"],
        1,
        "fs.mqueue.msgsize_max",
    )?;
    fails(
        &["mq", "create", &name, "--capacity", "0"],
        2,
        "at least 1 message",
    )?;
    ok(&["mq", "create", &name, "--capacity", "1"])?;
    fails(&["mq", "create", &name], 1, "already exists")?;
    let ep = format!("mq:{name}");
    fails(&["send", &ep, "x", "--priority", "40000"], 2, "0 to 32767")?;
    fails(
        &["send", &ep, "x", "--type", "2"],
        2,
        "--type applies to msg: endpoints only",
    )?;
    ok(&["send", &ep, "x", "--timeout", "0"])?;
    fails(&["send", &ep, "y", "--timeout", "0"], 1, "stayed full")?;
    ok(&["mq", "rm", &name])?;
    fails(
        &["recv", "mq:/procom-no-such-queue", "--timeout", "0"],
        1,
        "does not exist",
    )?;
    Ok(())
}

fn removed_while_recv_waits() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name])?;
    ok(&["send", &ep, "before"])?;
    let mut recv = Proc::spawn("recv", &mut procom(&["recv", &ep, "--count", "3"]))?;
    recv.expect_line("before")?; // it has the queue open, and waits for the next message
    ok(&["mq", "rm", &name])?;
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.code() == Some(1)
            && fin.stderr.trim()
                == format!(
                    "procom: {ep}: the queue was removed and is empty; no process can open it to send (1 received)"
                ),
        "{fin:?}"
    );
    Ok(())
}

fn other_users_are_denied() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name])?;
    for args in [
        &["recv", &ep, "--timeout", "0"][..],
        &["send", &ep, "x"],
        &["mq", "rm", &name],
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
    ok(&["mq", "rm", &name])?;
    Ok(())
}

/// `mq create --mode 660 --group 65534`: a member of that group (nobody, gid 65534) may send
/// and receive; `mq info` shows the mode and group.
fn shared_with_a_group() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    crate::common::queue_shared_with_a_group("mq", &name, &ep)
}

/// A mode that is not octal, is above 777 or gives group or others more than the owner, and
/// a group that does not exist: usage errors, and nothing is created.
fn modes_and_groups_that_cannot_be_are_usage_errors() -> Outcome {
    let name = queue_name();
    for mode in ["8", "1000", "rw", "066", "607"] {
        let fin = crate::common::run(&["mq", "create", &name, "--mode", mode])?;
        ensure!(
            fin.code() == Some(2) && fin.stderr.contains("--mode"),
            "--mode {mode}: {fin:?}"
        );
    }
    fails(
        &["mq", "create", &name, "--group", "procom-no-such-group"],
        2,
        "no group is called `procom-no-such-group`",
    )?;
    fails(&["mq", "info", &name], 1, "does not exist")?;
    Ok(())
}

/// An unprivileged user may not give what it creates to a group it is not in: one sentence,
/// exit 2, nothing left behind.
fn a_group_you_are_not_in_is_refused() -> Outcome {
    let name = queue_name();
    let mut cmd = procom(&["mq", "create", &name, "--mode", "660", "--group", "0"]);
    let fin = Proc::spawn("nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
    ensure!(
        fin.code() == Some(2)
            && fin.stderr.lines().count() == 1
            && fin.stderr.contains("you are not in group `0`"),
        "{fin:?}"
    );
    fails(&["mq", "info", &name], 1, "does not exist")?;
    Ok(())
}

/// `recv --json`: one object per message, a newline inside a message kept (with lines it
/// would print as two), bytes that are not UTF-8 in base64, and each message's priority.
fn recv_json_is_lossless_and_shows_priorities() -> Outcome {
    let name = queue_name();
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name])?;
    let result = (|| -> Outcome {
        ok(&["send", &ep, "two\nlines", "--priority", "5"])?;
        let fin = run_with_input(procom(&["send", &ep, "-"]), "send -", b"a\xffb\n")?;
        ensure!(fin.status.success(), "send -: {}", fin.stderr);
        let out = ok(&["recv", &ep, "--count", "2", "--json"])?;
        let got: Vec<serde_json::Value> = out
            .iter()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?}: {e}")))
            .collect::<Result<_, _>>()?;
        ensure!(
            got == [
                serde_json::json!({"bytes": "two\nlines", "len": 9, "priority": 5}),
                serde_json::json!({"bytes": null, "base64": "Yf9i", "len": 3, "priority": 0}),
            ],
            "{out:?}"
        );
        Ok(())
    })();
    ok(&["mq", "rm", &name])?;
    result
}

/// `mq info --json`: one object with the counts, the mode and the limits.
fn info_json() -> Outcome {
    let name = queue_name();
    ok(&["mq", "create", &name, "--capacity", "3", "--msgsize", "64"])?;
    let out = ok(&["mq", "info", &name, "--json"]);
    ok(&["mq", "rm", &name])?;
    let out = out?;
    ensure!(out.len() == 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out[0]).map_err(|e| e.to_string())?;
    ensure!(
        v["name"] == name.as_str()
            && v["messages"] == 0
            && v["capacity"] == 3
            && v["msgsize"] == 64
            && v["mode"] == "0600"
            && v["limits"]["msg_max"].is_i64(),
        "{v}"
    );
    Ok(())
}
