//! `procom mq`, `procom msg`, and send/recv on queue endpoints, as real processes.


use procom_testkit::{Outcome, Role, Trial, ensure, test, unique_name};

use crate::common::{fails, ok};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    vec![
        test("cli::mq::create_send_priority_recv_rm", mq_round_trip),
        test("cli::msg::create_send_type_recv_rm", msg_round_trip),
        test("cli::queue::bad_input", bad_input),
    ]
}




fn mq_round_trip() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli-q"));
    let ep = format!("mq:{name}");
    ok(&["mq", "create", &name, "--capacity", "2", "--msgsize", "64"])?;
    ok(&["send", &ep, "low", "--priority", "1"])?;
    ok(&["send", &ep, "high", "--priority", "9"])?;
    fails(&["send", &ep, "third", "--timeout", "0.1"], 1, "stayed full until the deadline")?;
    let info = ok(&["mq", "info", &name])?;
    ensure!(info.starts_with(&["messages: 2".into(), "capacity: 2".into(), "msgsize: 64".into()]), "{info:?}");
    ensure!(ok(&["recv", &ep, "--count", "2"])? == ["high", "low"], "priority order");
    fails(&["recv", &ep, "--timeout", "0.05"], 1, "no whole message arrived")?;
    fails(&["send", &ep, &"x".repeat(65)], 1, "over this queue's message size of 64 bytes")?;
    ok(&["mq", "rm", &name])?;
    fails(&["mq", "info", &name], 1, "does not exist")?;
    Ok(())
}

fn msg_round_trip() -> Outcome {
    let key = format!("{:#x}", 0x4d00_0000 | (std::process::id() & 0xffff));
    let ep = format!("msg:{key}");
    ok(&["msg", "create", &key])?;
    fails(&["msg", "create", &key], 1, "already exists")?;
    ok(&["send", &ep, "two", "--type", "2"])?;
    ok(&["send", &ep, "one"])?; // type 1 by default
    ensure!(ok(&["recv", &ep, "--type", "2", "--count", "1"])? == ["two"], "type selector");
    let info = ok(&["msg", "info", &key])?;
    ensure!(info.contains(&"messages: 1".to_string()) && info.contains(&"mode: 600".to_string()), "{info:?}");
    ensure!(ok(&["recv", &ep, "--count", "1"])? == ["one"], "first message");
    ok(&["msg", "rm", &key])?;
    fails(&["msg", "info", &key], 1, "does not exist")?;
    Ok(())
}

fn bad_input() -> Outcome {
    fails(&["mq", "create", "jobs"], 1, "must start with '/'")?;
    fails(&["send", "mq:jobs", "x"], 2, "must start with '/'")?;
    fails(&["send", "msg:zz", "x"], 2, "not a key")?;
    fails(&["send", "msg:0", "x"], 2, "IPC_PRIVATE")?;
    fails(&["recv", "mq:/procom-no-such-queue", "--timeout", "0"], 1, "does not exist")?;
    fails(&["send", "mq:/procom-no-such-queue", "x", "--type", "2"], 1, "--type applies to msg: endpoints only")?;
    Ok(())
}
