//! `procom rm`: each kind of object removed by its endpoint or id, a wrong kind of object at
//! the name refused and left, another user's object refused as that user, stale socket
//! files, and no question asked without a terminal.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, plant,
    trials, unique_name, unix_listening,
};

use crate::common::{fails, ok, procom, run, run_with_input};
use crate::ls::{stop, sysv_key};

pub const ROLES: &[Role] = &[];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::rm":
            removes_each_kind [needs::tool("ipcmk")],
            a_wrong_kind_at_the_name_is_refused_and_left,
            another_users_object_is_refused [needs::root()],
            stale_removes_only_socket_files_nothing_is_bound_to,
            never_prompts_without_a_terminal,
            asks_on_a_terminal [needs::tool("script")],
            usage_errors_exit_2_and_remove_nothing;
    ]
}

/// The id /proc/sysvipc/`file` lists for `key` (as `0x...`).
fn id_of(file: &str, key: &str) -> Result<Option<String>, String> {
    let key = i64::from_str_radix(key.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
    let key = key as u32 as i32;
    let list = check!(std::fs::read_to_string(format!("/proc/sysvipc/{file}")));
    Ok(list.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()?.parse::<i32>().ok()? == key).then(|| f.next().map(str::to_string))?
    }))
}

fn id_listed(file: &str, id: &str) -> Result<bool, String> {
    let list = check!(std::fs::read_to_string(format!("/proc/sysvipc/{file}")));
    Ok(list
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(id)))
}

fn exists(p: impl AsRef<Path>) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn removes_each_kind() -> Outcome {
    let scratch = Scratch::new("rm-kinds")?;
    let mq = format!("/{}", unique_name("procom-rm"));
    let shm = format!("/{}", unique_name("procom-rm"));
    let sem = format!("/{}", unique_name("procom-rm"));
    let (msg_key, msg_by_id, shm_key) = (sysv_key(), sysv_key(), sysv_key());
    let fifo = scratch.join("f").display().to_string();
    let sock = scratch.join("s");
    ok(&["mq", "create", &mq])?;
    ok(&["shm", "create", &shm, "--size", "4096"])?;
    ok(&["sem", "create", &sem, "0"])?;
    ok(&["msg", "create", &msg_key])?;
    ok(&["msg", "create", &msg_by_id])?;
    ok(&["shm", "create", &shm_key, "--size", "64"])?;
    ok(&["fifo", "create", &fifo])?;
    drop(check!(UnixListener::bind(&sock))); // the file stays behind
    let out = check!(
        Command::new("ipcmk")
            .args(["-S", "1"])
            .stdin(Stdio::null())
            .output()
    );
    let semid = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    ensure!(id_listed("sem", &semid)?, "ipcmk made no set: {out:?}");
    let msgid = id_of("msg", &msg_by_id)?.ok_or("no msg id")?;
    let shmid = id_of("shm", &shm_key)?.ok_or("no shm id")?;
    let args = [
        format!("mq:{mq}"),
        format!("shm:{shm}"),
        format!("sem:{sem}"),
        format!("msg:{msg_key}"),
        format!("msgid:{msgid}"),
        format!("shmid:{shmid}"),
        format!("semid:{semid}"),
        format!("fifo:{fifo}"),
        format!("unix:{}", sock.display()),
    ];
    let mut all = vec!["rm"];
    all.extend(args.iter().map(String::as_str));
    let fin = run(&all)?;
    ensure!(
        fin.status.success() && fin.stdout.is_empty() && fin.stderr.is_empty(),
        "rm {args:?}: {fin:?}"
    );
    fails(&["mq", "info", &mq], 1, "does not exist")?;
    ensure!(
        !exists(format!("/dev/shm{shm}")),
        "shm {shm} is still there"
    );
    ensure!(
        !exists(format!("/dev/shm/sem.{}", &sem[1..])),
        "sem {sem} is still there"
    );
    ensure!(
        id_of("msg", &msg_key)?.is_none(),
        "msg {msg_key} is still there"
    );
    ensure!(!id_listed("msg", &msgid)?, "msgid {msgid} is still there");
    ensure!(!id_listed("shm", &shmid)?, "shmid {shmid} is still there");
    ensure!(!id_listed("sem", &semid)?, "semid {semid} is still there");
    ensure!(!exists(&fifo) && !exists(&sock), "a file is still there");
    // Gone already: one sentence, exit 1.
    fails(&["rm", &format!("shmid:{shmid}")], 1, "no System V")?;
    fails(&["rm", &format!("fifo:{fifo}")], 1, "does not exist")?;
    scratch.finish()
}

fn a_wrong_kind_at_the_name_is_refused_and_left() -> Outcome {
    let scratch = Scratch::new("rm-wrong")?;
    // Anyone may plant here, as in /tmp.
    check!(std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777)
    ));
    let file = scratch.join("file");
    check!(std::fs::write(&file, b"keep"));
    let fifo = scratch.join("fifo");
    ok(&["fifo", "create", &fifo.display().to_string()])?;
    let sock = scratch.join("sock");
    let listener = check!(UnixListener::bind(&sock));
    let link = scratch.join("link");
    let planted = plant(&link, Plant::Symlink(&fifo))?;
    let sem = format!("/{}", unique_name("procom-rm"));
    ok(&["sem", "create", &sem, "1"])?;
    let d = |p: &Path| p.display().to_string();
    let cases = [
        (format!("fifo:{}", d(&file)), "not a FIFO"),
        (format!("unix:{}", d(&file)), "not a Unix socket"),
        (format!("unix:{}", d(&fifo)), "is a FIFO, not a Unix socket"),
        (format!("fifo:{}", d(&sock)), "not a FIFO"),
        (format!("fifo:{}", d(&link)), "link"),
        (format!("unix:{}", d(&link)), "symbolic link"),
        (format!("shm:/sem.{}", &sem[1..]), "is the named semaphore"),
        (
            format!("sem:/{}", unique_name("procom-rm")),
            "does not exist",
        ),
    ];
    let result = (|| -> Outcome {
        for (ep, words) in &cases {
            fails(&["rm", ep], 1, words)?;
        }
        ensure!(
            check!(std::fs::read(&file)) == b"keep"
                && exists(&fifo)
                && exists(&sock)
                && planted.intact()
                && exists(format!("/dev/shm/sem.{}", &sem[1..])),
            "something was removed"
        );
        Ok(())
    })();
    planted.remove()?;
    drop(listener);
    for p in [&file, &fifo, &sock] {
        check!(std::fs::remove_file(p));
    }
    ok(&["sem", "rm", &sem])?;
    result?;
    scratch.finish()
}

fn another_users_object_is_refused() -> Outcome {
    let scratch = Scratch::new("rm-other")?;
    // Anyone may write here, as in /tmp: only the owner of an entry may remove it.
    check!(std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777)
    ));
    let mq = format!("/{}", unique_name("procom-rm"));
    let shm = format!("/{}", unique_name("procom-rm"));
    let msg_key = sysv_key();
    let fifo = scratch.join("f").display().to_string();
    ok(&["mq", "create", &mq])?;
    ok(&["shm", "create", &shm, "--size", "64"])?;
    ok(&["msg", "create", &msg_key])?;
    ok(&["fifo", "create", &fifo])?;
    let msgid = id_of("msg", &msg_key)?.ok_or("no msg id")?;
    let result = (|| -> Outcome {
        for ep in [
            format!("mq:{mq}"),
            format!("shm:{shm}"),
            format!("msg:{msg_key}"),
            format!("msgid:{msgid}"),
            format!("fifo:{fifo}"),
        ] {
            let mut cmd = procom(&["rm", &ep]);
            let fin = Proc::spawn("rm as nobody", as_nobody(&mut cmd)?)?.finish(STEP)?;
            ensure!(
                fin.code() == Some(1)
                    && fin.stderr.lines().count() == 1
                    && fin.stderr.contains(&ep)
                    // Its owner is named where procom can look it up (a POSIX queue's
                    // only where /dev/mqueue is mounted).
                    && (fin.stderr.contains("belongs to root")
                        || ep.starts_with("mq:") && fin.stderr.contains("belongs to another user")),
                "rm {ep} as nobody: {fin:?}"
            );
        }
        ensure!(
            exists(format!("/dev/shm{shm}")) && exists(&fifo) && id_listed("msg", &msgid)?,
            "nobody removed root's object"
        );
        Ok(())
    })();
    ok(&["mq", "rm", &mq])?;
    ok(&["shm", "rm", &shm])?;
    ok(&["msg", "rm", &msg_key])?;
    ok(&["fifo", "rm", &fifo])?;
    result?;
    scratch.finish()
}

fn stale_removes_only_socket_files_nothing_is_bound_to() -> Outcome {
    let scratch = Scratch::new("rm-stale")?;
    let dead = scratch.join("dead.sock");
    let live = scratch.join("live.sock");
    let fifo = scratch.join("fifo");
    let mut killed = Proc::spawn(
        "listen",
        &mut procom(&["listen", &format!("unix:{}", dead.display())]),
    )?;
    unix_listening(killed.pid(), &dead)?;
    check!(killed.child().kill());
    killed.finish(STEP)?;
    let server = Proc::spawn(
        "listen",
        &mut procom(&["listen", &format!("unix:{}", live.display())]),
    )?;
    unix_listening(server.pid(), &live)?;
    ok(&["fifo", "create", &fifo.display().to_string()])?;
    let dir = scratch.path().display().to_string();
    let result = (|| -> Outcome {
        let all = crate::ls::ls_json(&["--kind", "unix", "--fifos", &dir])?;
        let d = crate::ls::find(&all, "unix", &dead.display().to_string())
            .ok_or("the stale socket file is not listed")?;
        ensure!(d["abandoned"] == true, "stale socket: {d}");
        let out = ok(&["rm", "--stale", "--dir", &dir])?;
        ensure!(
            out.iter()
                .any(|l| l.contains(&format!("removed unix:{}", dead.display()))),
            "rm --stale said {out:?}"
        );
        ensure!(!exists(&dead), "the stale socket file is still there");
        ensure!(
            exists(&live) && exists(&fifo),
            "a live socket or the FIFO went"
        );
        Ok(())
    })();
    stop(server)?;
    check!(std::fs::remove_file(&fifo));
    result?;
    scratch.finish()
}

fn never_prompts_without_a_terminal() -> Outcome {
    let scratch = Scratch::new("rm-prompt")?;
    let fifo = scratch.join("f").display().to_string();
    ok(&["fifo", "create", &fifo])?;
    // A "no" on a pipe is not an answer: nothing is asked.
    let fin = run_with_input(procom(&["rm", &format!("fifo:{fifo}")]), "rm", b"n\n")?;
    ensure!(
        fin.status.success() && fin.stderr.is_empty() && fin.stdout.is_empty(),
        "rm with a pipe for input: {fin:?}"
    );
    ensure!(!exists(&fifo), "not removed");
    scratch.finish()
}

/// `script` gives `procom rm` a terminal: it asks, and "n" keeps the object.
fn asks_on_a_terminal() -> Outcome {
    let scratch = Scratch::new("rm-tty")?;
    let fifo = scratch.join("f").display().to_string();
    ok(&["fifo", "create", &fifo])?;
    let on_tty = |answer: &[u8], extra: &str| -> Result<procom_testkit::Finished, String> {
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c"])
            .arg(format!(
                "\"$P\" rm {extra} fifo:{fifo}",
                fifo = fifo.replace('\'', "")
            ))
            .arg("/dev/null")
            .env("P", env!("CARGO_BIN_EXE_procom"));
        run_with_input(cmd, "script rm", answer)
    };
    let fin = on_tty(b"n\n", "")?;
    ensure!(
        fin.status.success() && fin.stdout.join("\n").contains("[y/N]") && exists(&fifo),
        "answered n: {fin:?}"
    );
    let fin = on_tty(b"", "--yes")?;
    ensure!(
        fin.status.success() && !fin.stdout.join("\n").contains("[y/N]") && !exists(&fifo),
        "--yes: {fin:?}"
    );
    scratch.finish()
}

fn usage_errors_exit_2_and_remove_nothing() -> Outcome {
    let scratch = Scratch::new("rm-usage")?;
    let fifo = scratch.join("f").display().to_string();
    ok(&["fifo", "create", &fifo])?;
    let ep = format!("fifo:{fifo}");
    let result = (|| -> Outcome {
        for (bad, words) in [
            ("tcp:127.0.0.1:7000", "names nothing that stays behind"),
            ("shmid:x", "an id is a number"),
            ("semid:-3", "an id is a number"),
            ("unix:@procom-abstract", "abstract socket"),
            ("sem:lock", "starts with '/'"),
            ("mq:jobs", "must start with '/'"),
            ("bogus:x", "bogus"),
        ] {
            fails(&["rm", &ep, bad], 2, words)?;
        }
        let fin = run(&["rm"])?;
        ensure!(fin.code() == Some(2), "rm alone: {fin:?}");
        let fin = run(&["rm", "--stale", &ep])?;
        ensure!(fin.code() == Some(2), "rm --stale ENDPOINT: {fin:?}");
        ensure!(exists(&fifo), "a usage error removed the first object");
        Ok(())
    })();
    ok(&["fifo", "rm", &fifo])?;
    result?;
    scratch.finish()
}
