//! Removing what others left behind: System V objects by id, a shared-memory channel or a
//! Unix socket file only once its creator is provably gone (`procom::stale`), and a socket
//! file only when it is one (`procom::socket::remove`).

use std::os::unix::net::UnixListener;
use std::process::Stdio;

use procom::endpoint::SysvKey;
use procom::msg::MsgQueue;
use procom::sem::SemSet;
use procom::shm::Segment;
use procom::{ErrorKind, Receiver};
use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, plant, role,
    trials, unique_name,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "removal::remove_by_id",
        run: remove_by_id,
    },
    Role {
        name: "removal::hold",
        run: hold,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "removal":
            sysv_objects_are_removed_by_id,
            another_user_may_not_remove_by_id [needs::root()],
            a_channel_is_removed_only_once_its_receiver_is_dead,
            a_socket_file_is_removed_only_once_nothing_is_bound,
            only_a_socket_is_removed_as_one,
            a_directory_swapped_in_the_path_never_redirects_a_removal;
    ]
}

/// A key no other test or run uses.
fn key() -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0x5200_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)) as i32
}

/// The id the kernel lists for `key` in /proc/sysvipc/`file` (msg, shm or sem).
fn id_of(file: &str, key: i32) -> Result<Option<i32>, String> {
    let list = check!(std::fs::read_to_string(format!("/proc/sysvipc/{file}")));
    Ok(list.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let k: i32 = f.next()?.parse().ok()?;
        let id: i32 = f.next()?.parse().ok()?;
        (k == key).then_some(id)
    }))
}

/// Makes a System V object of `kind` for `key`, kept; returns its id.
fn make(kind: &str, key: i32) -> Result<i32, String> {
    let k = SysvKey::Key(key);
    match kind {
        "msg" => drop(check!(MsgQueue::create(&k)).keep()),
        "shm" => drop(check!(Segment::create_sysv(&k, 4096)).keep()),
        "sem" => drop(check!(SemSet::create(&k, &[1])).keep()),
        _ => return Err(format!("kind {kind}")),
    }
    id_of(kind, key)?.ok_or_else(|| format!("{kind} {key:#x} is not listed"))
}

fn remove(kind: &str, id: i32) -> Result<(), procom::Error> {
    match kind {
        "msg" => procom::msg::remove_id(id),
        "shm" => procom::shm::remove_sysv_id(id),
        _ => procom::sem::remove_set_id(id),
    }
}

/// Removes the `kind` object `id`; prints the error kind (or "ok").
fn remove_by_id(args: &[String]) -> Outcome {
    let [kind, id] = args else {
        return Err("args".into());
    };
    let id: i32 = check!(id.parse());
    match remove(kind, id) {
        Ok(()) => println!("ok"),
        Err(e) => println!("{:?} {e}", e.kind()),
    }
    Ok(())
}

fn sysv_objects_are_removed_by_id() -> Outcome {
    for kind in ["msg", "shm", "sem"] {
        let key = key();
        let id = make(kind, key)?;
        check!(remove(kind, id));
        ensure!(id_of(kind, key)?.is_none(), "{kind} id {id} is still there");
        // Once gone, the id names nothing: NotFound, named by the id.
        let e = remove(kind, id).err().ok_or("removed twice")?;
        ensure!(
            e.kind() == ErrorKind::NotFound && e.to_string().starts_with(&format!("{kind}id:{id}")),
            "{kind}: {e}"
        );
        let e = remove(kind, -1).err().ok_or("removed id -1")?;
        ensure!(e.kind() == ErrorKind::InvalidInput, "{kind} -1: {e}");
    }
    Ok(())
}

fn another_user_may_not_remove_by_id() -> Outcome {
    for kind in ["msg", "shm", "sem"] {
        let key = key();
        let id = make(kind, key)?;
        let mut cmd = role("removal::remove_by_id", &[kind, &id.to_string()]);
        let fin = Proc::spawn("remove as nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
        let still = id_of(kind, key)?;
        let _ = remove(kind, id);
        ensure!(
            fin.stdout
                .first()
                .is_some_and(|l| l.starts_with("PermissionDenied")),
            "{kind} as nobody: {:?}",
            fin.stdout
        );
        ensure!(still == Some(id), "{kind}: nobody removed root's object");
    }
    Ok(())
}

/// Holds `shm:NAME` (a receiver) or `unix:PATH` (a listener), says ready, waits to be killed.
fn hold(args: &[String]) -> Outcome {
    let ep = args.first().ok_or("args")?;
    let _held: Box<dyn std::any::Any> = if let Some(path) = ep.strip_prefix("unix:") {
        Box::new(check!(UnixListener::bind(path)))
    } else {
        Box::new(check!(Receiver::bind(ep.as_str())))
    };
    println!("ready");
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn holder(ep: &str) -> Result<Proc, String> {
    let mut cmd = role("removal::hold", &[ep]);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn("holder", &mut cmd)?;
    p.expect_line("ready")?;
    Ok(p)
}

fn a_channel_is_removed_only_once_its_receiver_is_dead() -> Outcome {
    let name = format!("/{}", unique_name("procom-it-stale"));
    let file = std::path::PathBuf::from(format!("/dev/shm{name}"));
    let mut owner = holder(&format!("shm:{name}"))?;
    let pid = owner.pid();
    let live = check!(procom::stale::shm_channel(&name));
    ensure!(
        live == Some(procom::stale::ShmChannel {
            receiver: pid,
            alive: true
        }),
        "a live channel: {live:?}"
    );
    let e = procom::stale::remove_shm_channel(&name)
        .err()
        .ok_or("removed a live channel")?;
    ensure!(e.kind() == ErrorKind::AlreadyExists, "live: {e}");
    ensure!(file.exists(), "a live channel's segment went");
    check!(owner.child().kill());
    owner.finish(STEP)?;
    let dead = check!(procom::stale::shm_channel(&name));
    ensure!(
        dead == Some(procom::stale::ShmChannel {
            receiver: pid,
            alive: false
        }),
        "a dead receiver's channel: {dead:?}"
    );
    let removed = check!(procom::stale::remove_shm_channel(&name));
    ensure!(removed == pid, "removal named pid {removed}, not {pid}");
    ensure!(!file.exists(), "{} is still there", file.display());
    // A segment that is not a channel is never judged, nor removed.
    let other = check!(Segment::create(&name, 4096));
    let plain = check!(procom::stale::shm_channel(&name));
    ensure!(plain.is_none(), "a plain segment: {plain:?}");
    let e = procom::stale::remove_shm_channel(&name)
        .err()
        .ok_or("removed a plain segment")?;
    ensure!(e.kind() == ErrorKind::WrongType, "plain segment: {e}");
    ensure!(file.exists(), "the plain segment went");
    drop(other);
    Ok(())
}

fn a_socket_file_is_removed_only_once_nothing_is_bound() -> Outcome {
    let scratch = Scratch::new("removal-sock")?;
    let sock = scratch.join("s");
    let ep = format!("unix:{}", sock.display());
    let mut server = holder(&ep)?;
    let e = procom::stale::remove_unix_socket(&sock)
        .err()
        .ok_or("removed a live server's socket")?;
    ensure!(e.kind() == ErrorKind::AlreadyExists, "live: {e}");
    check!(server.child().kill());
    server.finish(STEP)?;
    ensure!(
        sock.exists(),
        "the killed server's socket file went by itself"
    );
    check!(procom::stale::remove_unix_socket(&sock));
    ensure!(!sock.exists(), "the stale socket file is still there");
    let e = procom::stale::remove_unix_socket(&sock)
        .err()
        .ok_or("removed a missing file")?;
    ensure!(e.kind() == ErrorKind::NotFound, "missing: {e}");
    scratch.finish()
}

fn only_a_socket_is_removed_as_one() -> Outcome {
    let scratch = Scratch::new("removal-kind")?;
    // Anyone may plant here, as in /tmp.
    check!(std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777)
    ));
    let victim = scratch.join("victim");
    check!(std::fs::write(&victim, b"keep me"));
    for what in [Plant::Symlink(&victim), Plant::Fifo, Plant::Dir] {
        let at = scratch.join("planted");
        let planted = plant(&at, what)?;
        for e in [
            procom::socket::remove(&at).err(),
            procom::stale::remove_unix_socket(&at).err(),
        ] {
            let e = e.ok_or(format!("removed {what:?}"))?;
            ensure!(e.kind() == ErrorKind::WrongType, "{what:?}: {e}");
        }
        ensure!(planted.intact(), "{what:?} was touched");
        planted.remove()?;
    }
    let e = procom::socket::remove(&victim)
        .err()
        .ok_or("removed a regular file")?;
    ensure!(e.kind() == ErrorKind::WrongType, "regular file: {e}");
    check!(std::fs::remove_file(&victim));
    // A socket file is removed, live or not.
    let sock = scratch.join("s");
    let listener = check!(UnixListener::bind(&sock));
    check!(procom::socket::remove(&sock));
    ensure!(!sock.exists(), "the socket file is still there");
    drop(listener);
    scratch.finish()
}

/// `fifo::remove` and `socket::remove` check what is at a path, then remove it. Whoever may
/// write a directory in the path can swap it for a link between the two steps; the removal
/// must still act on the directory that was checked, never on a file of the swapper's choice
/// (here a regular file in `victim/`, which the checks would refuse). A thread swaps `d`
/// between links to `real/` (which holds a FIFO or a socket) and `victim/` while the removal
/// runs again and again.
fn a_directory_swapped_in_the_path_never_redirects_a_removal() -> Outcome {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let scratch = Scratch::new("removal-swap")?;
    let (real, victim, d) = (
        scratch.join("real"),
        scratch.join("victim"),
        scratch.join("d"),
    );
    check!(std::fs::create_dir(&real));
    check!(std::fs::create_dir(&victim));
    let bait = victim.join("s");
    check!(std::fs::write(&bait, b"not to be removed"));
    check!(std::os::unix::fs::symlink(&real, &d));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, real, victim, d) = (stop.clone(), real.clone(), victim.clone(), d.clone());
        let tmp = d.with_extension("tmp");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for target in [&victim, &real] {
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::os::unix::fs::symlink(target, &tmp);
                    let _ = std::fs::rename(&tmp, &d); // atomic: d is always one link or the other
                }
            }
            let _ = std::fs::remove_file(&tmp);
        })
    };
    let target = d.join("s");
    let result = (|| -> Outcome {
        for round in 0..20_000 {
            let placed = real.join("s");
            let socket = round % 2 == 1;
            if !placed.exists() {
                if socket {
                    drop(check!(UnixListener::bind(&placed))); // leaves its socket file
                } else {
                    check!(rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &placed,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o600),
                        0
                    ));
                }
            }
            let _ = if socket {
                procom::socket::remove(&target)
            } else {
                procom::fifo::remove(&target)
            };
            ensure!(
                bait.exists(),
                "round {round}: a removal through the swapped link deleted the victim's file"
            );
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    let _ = std::fs::remove_file(&d);
    let _ = std::fs::remove_file(real.join("s"));
    check!(std::fs::remove_file(&bait));
    check!(std::fs::remove_dir(&real));
    check!(std::fs::remove_dir(&victim));
    result?;
    scratch.finish()
}
