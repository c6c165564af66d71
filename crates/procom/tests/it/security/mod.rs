//! The security matrix: every named object kind × every library constructor that creates or
//! opens it ([`ways`]), under every condition procom promises.
//!
//! - A creator gives exactly the mode asked (0600 by default) under the umasks 000, 022 and
//!   077 (`modes_are_exact_under_every_umask`, one process per row: the umask is per process).
//! - An opener run as uid 65534 is refused root's object with `PermissionDenied`
//!   (`another_user_is_denied`).
//! - An object, a file, a symbolic link (dangling too) or a hard link planted at the name by
//!   another user, world-writable and with content, makes a creator fail and is left exactly
//!   as it was: inode, type, mode, owner and content; so is what a link points to
//!   (`planted_objects_are_refused_and_untouched`). A path opener does not follow a link.
//! - A listener's uid allow-list turns another user away before reading anything
//!   (`the_allow_list_rejects_before_any_payload`).
//!
//! A new object kind cannot come without rows: `every_object_kind_has_rows` goes through
//! [`ObjectKind::ALL`] and fails on a kind that is neither in the matrix nor declared to name
//! nothing. A new socket kind is one line in [`SOCKETS`] (`ways.rs`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use procom::endpoint::Endpoint;
use procom::fifo::Fifo;
use procom::mq::Queue;
use procom::msg::MsgQueue;
use procom::sem::SemSet;
use procom::shm::Segment;
use procom::socket::Listener;
use procom::{ErrorKind, Options};
use procom_testkit::{
    Outcome, Proc, Role, STEP, Scratch, Seen, Trial, as_nobody, check, ensure, needs, path_seen,
    role, trials,
};

mod ways;

use ways::{Act, Named, SOCKETS, all_kinds, find, key, victim, ways};

pub const ROLES: &[Role] = &[
    Role {
        name: "security::modes",
        run: modes,
    },
    Role {
        name: "security::denied",
        run: denied,
    },
    Role {
        name: "security::plant",
        run: plant,
    },
    Role {
        name: "security::client",
        run: client,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "security":
            every_object_kind_has_rows,
            modes_are_exact_under_every_umask,
            another_user_is_denied [needs::root()],
            planted_objects_are_refused_and_untouched [needs::root()],
            the_allow_list_rejects_before_any_payload [needs::root()];
    ]
}

fn every_object_kind_has_rows() -> Outcome {
    let ways = ways()?;
    for kind in all_kinds()? {
        let creators = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Create(_)))
            .count();
        let openers = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Open(_)))
            .count();
        ensure!(
            creators > 0 && openers > 0,
            "{}: {creators} creators, {openers} openers",
            kind.label()
        );
    }
    Ok(())
}

/// Role: each creation of one way under each umask, with the default and an explicit mode;
/// the kernel shows exactly the mode asked, owned by this user; dropping removes it.
fn modes(args: &[String]) -> Outcome {
    let [label, dir] = args else {
        return Err("args: LABEL DIR".into());
    };
    let way = find(label)?;
    let Act::Create(create) = way.act else {
        return Err(format!("{label} creates nothing"));
    };
    let me = rustix::process::geteuid().as_raw();
    for mask in [0o000, 0o022, 0o077] {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        for (asked, expected) in [(None, 0o600), (Some(0o640), 0o640), (Some(0o666), 0o666)] {
            let target = way.kind.fresh(Path::new(dir));
            let made = check!(create(way.kind, &target, asked));
            let seen = way.kind.seen(&target).ok_or("nothing to see")?;
            ensure!(
                seen.perms() == expected && seen.uid == me,
                "{label} under umask {mask:03o}, mode {asked:?}: {:o}, uid {}",
                seen.perms(),
                seen.uid
            );
            drop(made);
            ensure!(
                way.kind.seen(&target).is_none(),
                "{label}: {target} is left after the drop"
            );
        }
    }
    Ok(())
}

fn modes_are_exact_under_every_umask() -> Outcome {
    let scratch = Scratch::new("sec-modes")?;
    let dir = scratch.path().display().to_string();
    for way in ways()? {
        if let Act::Create(_) = way.act {
            let mut cmd = role("security::modes", &[&way.label(), &dir]);
            Proc::spawn(&way.label(), &mut cmd)?.success(STEP)?;
        }
    }
    scratch.finish()
}

/// Role (as uid 65534): opening root's object one way is `PermissionDenied`, said so.
fn denied(args: &[String]) -> Outcome {
    let [label, target] = args else {
        return Err("args: LABEL TARGET".into());
    };
    let way = find(label)?;
    let r = match way.act {
        Act::Open(open) => open(way.kind, target),
        Act::Create(create) => create(way.kind, target, None),
        Act::Waits(create) => create(way.kind, target),
    };
    let e = r
        .err()
        .ok_or_else(|| format!("{label}: opened root's object"))?;
    ensure!(
        e.kind() == ErrorKind::PermissionDenied && e.to_string().contains("permission denied"),
        "{label}: {:?}: {e}",
        e.kind()
    );
    Ok(())
}

fn another_user_is_denied() -> Outcome {
    let scratch = Scratch::new("sec-denied")?;
    let ways = ways()?;
    for kind in all_kinds()? {
        let target = kind.fresh(scratch.path());
        let creator = ways
            .iter()
            .find_map(|w| match w.act {
                Act::Create(c) if w.kind == kind => Some(c),
                _ => None,
            })
            .ok_or("no creator")?;
        let made = check!(creator(kind, &target, None));
        let result = ways
            .iter()
            .filter(|w| w.kind == kind && matches!(w.act, Act::Open(_)))
            .try_for_each(|w| {
                let mut cmd = role("security::denied", &[&w.label(), &target]);
                Proc::spawn(&w.label(), as_nobody(&mut cmd)?)?
                    .success(STEP)
                    .map(drop)
            });
        drop(made);
        result?;
    }
    scratch.finish()
}

/// Role (as another user): plants `what` at `target`, world-writable, with content.
fn plant(args: &[String]) -> Outcome {
    let [kind, what, target] = args else {
        return Err("args: KIND WHAT TARGET".into());
    };
    rustix::process::umask(rustix::fs::Mode::empty());
    let kind = all_kinds()?
        .into_iter()
        .find(|k| k.label() == *kind)
        .ok_or("kind")?;
    let content = b"planted by another user";
    let file = |p: &Path| -> Outcome {
        check!(std::fs::write(p, content));
        check!(std::fs::set_permissions(
            p,
            std::fs::Permissions::from_mode(0o666)
        ));
        Ok(())
    };
    let path = kind.path(target);
    match (kind, what.as_str()) {
        (Named::PosixQueue, "same") => {
            let q = check!(Queue::create_with_mode(target, Some(4), Some(64), 0o666));
            check!(q.send(content, 1));
            q.keep();
        }
        (Named::SysvQueue, "same") => {
            let q = check!(MsgQueue::create_with_mode(&key(target), 0o666));
            check!(q.send(content, 1));
            q.keep();
        }
        (Named::SysvSegment, "same") => {
            check!(Segment::create_sysv_with_mode(&key(target), 4096, 0o666)).keep();
        }
        (Named::SemSet, "same") => {
            check!(SemSet::create_with_mode(&key(target), &[3], 0o666)).keep();
        }
        (Named::Fifo, "same") | (_, "fifo") => {
            let p = path.ok_or("path")?;
            check!(Fifo::create_with_mode(&p, 0o666)).keep();
        }
        (Named::Socket(..), "same") => {
            let p = path.ok_or("path")?;
            drop(check!(std::os::unix::net::UnixListener::bind(&p)));
            check!(std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(0o777)
            ));
        }
        (_, "file") => file(&path.ok_or("path")?)?,
        (_, "symlink") => {
            let p = path.ok_or("path")?;
            file(&victim(&p))?;
            check!(std::os::unix::fs::symlink(victim(&p), &p));
        }
        (_, "dangling") => {
            let p = path.ok_or("path")?;
            check!(std::os::unix::fs::symlink(victim(&p), &p));
        }
        (_, "hardlink") => {
            let p = path.ok_or("path")?;
            file(&victim(&p))?;
            check!(std::fs::hard_link(victim(&p), &p));
        }
        (k, w) => return Err(format!("nothing to plant for {w} on {k:?}")),
    }
    Ok(())
}

/// The object and what a link there points to, as the kernel shows them.
fn snapshot(kind: Named, target: &str) -> (Option<Seen>, Option<Seen>) {
    let victim = kind.path(target).and_then(|p| path_seen(&victim(&p)));
    (kind.seen(target), victim)
}

fn planted_objects_are_refused_and_untouched() -> Outcome {
    let scratch = Scratch::new("sec-planted")?;
    // Another user may write the directory (not sticky: the kernel's protections for sticky
    // directories would hide a follow).
    check!(std::fs::set_permissions(
        scratch.path(),
        std::fs::Permissions::from_mode(0o777)
    ));
    let mut failures = Vec::new();
    let mut tried = 0;
    for way in ways()? {
        for what in way.kind.plants() {
            let target = way.kind.fresh(scratch.path());
            let label = way.kind.label();
            let mut cmd = role("security::plant", &[&label, what, &target]);
            let planted = Proc::spawn("plant", as_nobody(&mut cmd)?)?.success(STEP);
            let result = planted.and_then(|_| {
                let before = snapshot(way.kind, &target);
                ensure!(before.0.is_some(), "nothing was planted at {target}");
                let r = match way.act {
                    Act::Create(create) => create(way.kind, &target, None).map(drop),
                    Act::Waits(create) => create(way.kind, &target).map(drop),
                    // An opener meets the planted object: it may open another user's object
                    // of its kind, never a link nor anything else.
                    Act::Open(open) if !way.kind.same_kind(what, way.name.ends_with("remove")) => {
                        open(way.kind, &target).map(drop)
                    }
                    Act::Open(_) => return Ok(()),
                };
                let after = snapshot(way.kind, &target);
                ensure!(
                    r.is_err(),
                    "{} with {what} planted: not refused",
                    way.label()
                );
                ensure!(
                    before == after,
                    "{} with {what} planted: changed from {before:?} to {after:?}",
                    way.label()
                );
                Ok(())
            });
            tried += 1;
            way.kind.remove(&target);
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {tried} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    scratch.finish()
}

/// Role: connects to a Unix stream (`unix`) or sequenced-packet (`unixpacket`) socket, sends
/// `payload` unless it is empty, and waits for the server to close the connection (end of file
/// or a reset).
fn client(args: &[String]) -> Outcome {
    let [scheme, path, payload] = args else {
        return Err("args: SCHEME PATH PAYLOAD".into());
    };
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let mut s = check!(connect(scheme, path));
    if !payload.is_empty() {
        // Already turned away, the write finds the connection closed.
        match s.write_all(payload.as_bytes()) {
            Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset) => return Ok(()),
            r => check!(r),
        }
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ConnectionReset => Ok(()),
        other => Err(format!("expected to be turned away, got {other:?}")),
    }
}

/// A connected Unix socket of the scheme's type (a packet socket's writes are one packet each).
fn connect(scheme: &str, path: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let kind = if scheme == "unixpacket" {
        SocketType::SEQPACKET
    } else {
        SocketType::STREAM
    };
    let fd = rustix::net::socket(AddressFamily::UNIX, kind, None)?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(std::os::unix::net::UnixStream::from(fd))
}

fn the_allow_list_rejects_before_any_payload() -> Outcome {
    let scratch = Scratch::new("sec-allow")?;
    for (_, scheme, conn) in SOCKETS {
        if !conn {
            continue;
        }
        let path = scratch.join("s");
        let e = check!(Endpoint::parse(&format!("{scheme}:{}", path.display())));
        let mut listener = check!(Listener::bind(&e, &Options::default().mode(0o666)));
        listener.allow_uids([rustix::process::geteuid().as_raw()]);
        let server = std::thread::spawn(move || -> Result<Vec<u8>, String> {
            let mut conn = check!(listener.accept_timeout(STEP));
            let msg = check!(conn.receiver.recv_timeout(STEP));
            Ok(msg)
        });
        let p = path.display().to_string();
        // Turned away both silent (before it sends anything) and with a payload.
        for payload in ["", "from nobody"] {
            let mut cmd = role("security::client", &[scheme, &p, payload]);
            Proc::spawn("nobody's client", as_nobody(&mut cmd)?)?.success(STEP)?;
        }
        let mut s = check!(connect(scheme, &p));
        // A stream carries the length-prefixed frame; a packet is the message itself.
        let frame: &[u8] = if *scheme == "unixpacket" {
            b"from root"
        } else {
            b"\0\0\0\x09from root"
        };
        check!(s.write_all(frame));
        let got = server.join().map_err(|_| "server panicked")??;
        ensure!(got == b"from root", "the first message served: {got:?}");
    }
    scratch.finish()
}
