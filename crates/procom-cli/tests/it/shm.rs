//! `procom shm`, `procom sem`, and `send`/`recv` over the shm: channel, as real processes.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, plant,
    trials, unique_name,
};

use crate::common::{fails, ok, procom};

pub const ROLES: &[Role] = &[Role {
    name: "cli::shm::feeder",
    run: feeder,
}];

pub fn trials() -> Vec<Trial> {
    trials![
        "cli::shm":
            posix_segment_round_trip,
            sysv_segment_round_trip,
            channel_send_recv,
            planted_link_fifo_or_directory_is_never_used,
            read_checks_bounds_and_streams_a_huge_segment,
            read_of_a_segment_truncated_midway_fails_after_what_it_wrote,
            write_reads_no_more_input_than_fits,
            create_of_size_0_is_refused,
            recv_from_a_channel_whose_header_is_overwritten_fails,
            recv_shares_its_channel_with_another_user [needs::root()],
            segments_shared_with_a_group [needs::root()];
        "cli::sem":
            p_and_v,
            system_v_sets,
            a_semaphore_at_its_maximum_says_so,
            shared_with_a_group [needs::root()];
    ]
}

fn posix_segment_round_trip() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    ok(&["shm", "create", &name, "--size", "4KiB"])?;
    fails(
        &["shm", "create", &name, "--size", "1"],
        1,
        "already exists",
    )?;
    ok(&["shm", "write", &name, "--offset", "100", "hello segment"])?;
    let out = ok(&["shm", "read", &name, "--offset", "100", "--len", "13"])?;
    ensure!(out == ["hello segment"], "read {out:?}");
    let info = ok(&["shm", "info", &name])?;
    ensure!(
        info.contains(&"size: 4096".to_string()) && info.contains(&"mode: 600".to_string()),
        "info {info:?}"
    );
    fails(
        &["shm", "write", &name, "--offset", "4090", "too long to fit"],
        1,
        "outside the 4096-byte mapping",
    )?;
    ok(&["shm", "rm", &name])?;
    fails(&["shm", "info", &name], 1, "does not exist")?;
    fails(
        &["shm", "create", "frame", "--size", "1"],
        2,
        "neither a POSIX shared-memory name",
    )?;
    fails(
        &["shm", "create", "/..", "--size", "1"],
        2,
        "name directories",
    )?;
    Ok(())
}

fn sysv_segment_round_trip() -> Outcome {
    let key = format!("{:#x}", (std::process::id() & 0xffff) | 0x5200_0000);
    ok(&["shm", "create", &key, "--size", "100"])?;
    ok(&["shm", "write", &key, "sysv!"])?;
    let out = ok(&["shm", "read", &key, "--len", "5"])?;
    ensure!(out == ["sysv!"], "read {out:?}");
    let info = ok(&["shm", "info", &key])?;
    ensure!(
        info.contains(&"kind: sysv".to_string()) && info.contains(&"attached: 0".to_string()),
        "info {info:?}"
    );
    ok(&["shm", "rm", &key])?;
    fails(&["shm", "info", &key], 1, "does not exist")?;
    Ok(())
}

fn channel_send_recv() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let ep = format!("shm:{name}");
    fails(&["send", &ep, "early"], 1, "start its receiver first")?;
    let recv = Proc::spawn("recv", &mut procom(&["recv", &ep, "--count", "3"]))?;
    // The receiver creates the channel; wait for the kernel object to appear.
    let deadline = Instant::now() + STEP;
    while !std::path::Path::new(&format!("/dev/shm{name}")).exists() {
        ensure!(
            Instant::now() < deadline,
            "the receiver never created {name}"
        );
        std::thread::sleep(Duration::from_millis(2)); // polling for the kernel object
    }
    let mut cmd = procom(&["send", &ep, "-"]);
    cmd.stdin(Stdio::piped());
    let mut send = Proc::spawn("send", &mut cmd)?;
    let mut stdin = send.child().stdin.take().ok_or("stdin")?;
    check!(stdin.write_all(b"one\ntwo\nthree\n"));
    drop(stdin);
    send.success(STEP)?;
    let fin = recv.success(STEP)?;
    ensure!(
        fin.stdout == ["one", "two", "three"],
        "recv printed {:?}",
        fin.stdout
    );
    ensure!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "the receiver left its segment"
    );
    Ok(())
}

fn p_and_v() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    ok(&["sem", "create", &name, "0"])?;
    fails(&["sem", "create", &name, "0"], 1, "already exists")?;
    ensure!(ok(&["sem", "get", &name])? == ["0"], "initial value");
    fails(
        &["sem", "wait", &name, "--timeout", "0.05"],
        1,
        "stayed at 0 until the deadline",
    )?;
    // A waiter blocks in P until another process does V.
    let waiter = Proc::spawn(
        "waiter",
        &mut procom(&["sem", "wait", &name, "--timeout", "20"]),
    )?;
    ok(&["sem", "post", &name])?;
    waiter.success(STEP)?;
    ensure!(
        ok(&["sem", "get", &name])? == ["0"],
        "the waiter did not take the post"
    );
    ok(&["sem", "post", &name])?;
    ensure!(ok(&["sem", "get", &name])? == ["1"], "value after V");
    ok(&["sem", "rm", &name])?;
    fails(&["sem", "get", &name], 1, "does not exist")?;
    Ok(())
}

/// A symlink to root's file, a FIFO and a directory, each planted at a /dev/shm name by uid
/// 65534: every command that names it fails at once (exit 1, one line naming what is there),
/// nothing is written through the link, nothing planted is removed.
fn planted_link_fifo_or_directory_is_never_used() -> Outcome {
    let scratch = Scratch::new("procom-cli-shm")?;
    let victim = scratch.join("victim");
    let original = b"root's file: never written through a link in /dev/shm\n".repeat(80);
    check!(std::fs::write(&victim, &original));
    for (what, words) in [
        (Plant::Symlink(&victim), "is a symbolic link"),
        (Plant::Fifo, "is a FIFO"),
        (Plant::Dir, "is a directory"),
    ] {
        let name = format!("/{}", unique_name("procom-cli"));
        let ep = format!("shm:{name}");
        let planted = plant(format!("/dev/shm{name}").as_ref(), what)?;
        for args in [
            &["shm", "write", &name, "YYYY"][..],
            &["shm", "write", &name, "-"],
            &["shm", "read", &name],
            &["shm", "info", &name],
            &["shm", "rm", &name],
            &["send", &ep, "x"],
            &["recv", &ep],
        ] {
            fails(args, 1, words)?;
            ensure!(
                planted.intact(),
                "procom {args:?} changed or removed the planted {what:?}"
            );
        }
        fails(
            &["shm", "create", &name, "--size", "4KiB"],
            1,
            "already exists",
        )?;
        planted.remove()?;
        ensure!(
            check!(std::fs::read(&victim)) == original,
            "the file behind the planted {what:?} was written"
        );
    }
    check!(std::fs::remove_file(&victim));
    scratch.finish()
}

/// Starts `procom args` with its standard output on a pipe whose read end is returned.
fn spawn_to_pipe(args: &[&str]) -> Result<(Proc, procom::pipe::PipeReader), String> {
    let (r, w) = check!(procom::pipe::pipe());
    let mut cmd = procom(args);
    cmd.stdout(w);
    let p = Proc::spawn_keep_stdout(&format!("procom {}", args.join(" ")), &mut cmd)?;
    drop(cmd); // our copy of the write end
    Ok((p, r))
}

/// Offsets and lengths out of range are one sentence before anything is allocated; a 64 GiB
/// (sparse) segment is streamed, never read into memory whole.
fn read_checks_bounds_and_streams_a_huge_segment() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    ok(&["shm", "create", &name, "--size", "4KiB"])?;
    let end = "past the end of the 4096-byte segment";
    fails(
        &[
            "shm",
            "read",
            &name,
            "--offset",
            "8",
            "--len",
            &u64::MAX.to_string(),
        ],
        1,
        end,
    )?;
    fails(
        &[
            "shm",
            "read",
            &name,
            "--offset",
            &u64::MAX.to_string(),
            "--len",
            "2",
        ],
        1,
        end,
    )?;
    fails(&["shm", "read", &name, "--len", "64GiB"], 1, end)?;
    fails(&["shm", "read", &name, "--offset", "5000"], 1, end)?;
    fails(
        &["shm", "read", &name, "--offset", "4090", "--len", "7"],
        1,
        end,
    )?;
    ensure!(
        ok(&["shm", "read", &name, "--offset", "4096"])?.is_empty(),
        "read at the end"
    );
    ok(&["shm", "rm", &name])?;

    // Sparse: the pages are never allocated, except the few read here.
    let big = format!("/{}", unique_name("procom-cli"));
    let size: u64 = 64 << 30;
    ok(&["shm", "create", &big, "--size", "64GiB"])?;
    let slice: u64 = (3 << 20) + 12345; // more than one chunk, and not a whole number of them
    let from = size - slice;
    ok(&["shm", "write", &big, "--offset", &from.to_string(), "head"])?;
    ok(&[
        "shm",
        "write",
        &big,
        "--offset",
        &(size - 4).to_string(),
        "tail",
    ])?;
    let (p, mut r) = spawn_to_pipe(&["shm", "read", &big, "--offset", &from.to_string()])?;
    let mut got = Vec::new();
    check!(std::io::Read::read_to_end(&mut r, &mut got));
    let fin = p.finish(STEP)?;
    ensure!(
        fin.status.success(),
        "reading the slice: {}",
        fin.stderr.trim()
    );
    ensure!(
        got.len() as u64 == slice
            && got.starts_with(b"head")
            && got.ends_with(b"tail")
            && got[4..got.len() - 4].iter().all(|b| *b == 0),
        "the slice read back as {} bytes",
        got.len()
    );
    // The whole 64 GiB to a reader that stops after a few MiB: streamed, so it starts at once
    // and ends quietly when its standard output closes.
    let (p, mut r) = spawn_to_pipe(&["shm", "read", &big])?;
    let mut first = vec![0u8; 3 << 20];
    check!(std::io::Read::read_exact(&mut r, &mut first));
    drop(r);
    let fin = p.finish(STEP)?;
    ensure!(
        fin.status.success() && fin.stderr.is_empty(),
        "reading 64 GiB into a closed pipe: {}; {}",
        fin.status,
        fin.stderr.trim()
    );
    // Reading the holes allocated none of them (only the two pages written above).
    let used = check!(std::fs::metadata(format!("/dev/shm{big}"))).blocks() * 512;
    ensure!(
        used <= 64 << 10,
        "reading made the sparse segment hold {used} bytes"
    );
    ok(&["shm", "rm", &big])?;
    Ok(())
}

/// A segment truncated while `shm read` streams it: what was read before is written, then
/// the command fails (exit 1, one sentence); no zeros from the vanished pages are written.
fn read_of_a_segment_truncated_midway_fails_after_what_it_wrote() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let size = 16usize << 20;
    let seg = check!(procom::shm::Segment::create(&name, size as u64));
    let map = check!(seg.map());
    check!(map.write(0, &vec![0x5a; size]));
    let (p, mut r) = spawn_to_pipe(&["shm", "read", &name])?;
    // Once the first bytes arrive, the reader is blocked writing into the full pipe.
    let mut first = [0u8; 4096];
    check!(std::io::Read::read_exact(&mut r, &mut first));
    check!(rustix::fs::ftruncate(seg.fd().ok_or("fd")?, 0));
    let mut rest = Vec::new();
    check!(std::io::Read::read_to_end(&mut r, &mut rest));
    let fin = p.finish(STEP)?;
    let total = first.len() + rest.len();
    ensure!(
        fin.code() == Some(1)
            && fin.stderr.lines().count() == 1
            && fin.stderr.contains("truncated"),
        "after the truncation: {}; {:?}",
        fin.status,
        fin.stderr
    );
    ensure!(
        total < size && first.iter().chain(&rest).all(|b| *b == 0x5a),
        "{total} bytes written, not all from before the truncation"
    );
    drop(map);
    drop(seg);
    ensure!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "leaked {name}"
    );
    Ok(())
}

/// Writes `args[0]` bytes to standard output until they are all written or the reader goes,
/// then says on standard error how many the reader took.
fn feeder(args: &[String]) -> Outcome {
    let total: usize = check!(args[0].parse::<usize>());
    let buf = vec![b'x'; 64 << 10];
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    while written < total {
        match out.write(&buf[..(total - written).min(buf.len())]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(format!("feeding: {e}")),
        }
    }
    eprintln!("wrote {written}");
    Ok(())
}

/// `shm write NAME -` reads no more of its standard input than the segment can hold from the
/// offset (plus one byte, to see there is more): input that does not fit is refused after a
/// few bytes, not after reading it all, and nothing is written.
fn write_reads_no_more_input_than_fits() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    ok(&["shm", "create", &name, "--size", "16"])?;
    ok(&["shm", "write", &name, "0123456789abcdef"])?;
    let (r, w) = check!(procom::pipe::pipe());
    let mut cmd = procom_testkit::role("cli::shm::feeder", &[&(4usize << 20).to_string()]);
    cmd.stdout(w).stdin(Stdio::null());
    let feeder = Proc::spawn_keep_stdout("feeder", &mut cmd)?;
    drop(cmd);
    let mut cmd = procom(&["shm", "write", &name, "--offset", "3", "-"]);
    cmd.stdin(r);
    let write = Proc::spawn("procom shm write", &mut cmd)?;
    drop(cmd);
    let fin = write.finish(STEP)?;
    let words = format!(
        "standard input holds more than the 13 bytes that fit at offset 3 of shm {name}; nothing was written"
    );
    ensure!(
        fin.code() == Some(1) && fin.stderr.lines().count() == 1 && fin.stderr.contains(&words),
        "writing 4 MiB into 13 bytes: {}; {:?}",
        fin.status,
        fin.stderr
    );
    let fed = feeder.success(STEP)?;
    let taken: usize = check!(
        fed.stderr
            .trim()
            .strip_prefix("wrote ")
            .ok_or("no count from the feeder")?
            .parse::<usize>()
    );
    ensure!(
        taken < 1 << 20,
        "procom took {taken} bytes of input for a 16-byte segment"
    );
    let out = ok(&["shm", "read", &name])?;
    ensure!(out == ["0123456789abcdef"], "the segment changed: {out:?}");
    // What fits exactly is written; the offset is checked before any input is read.
    let fin = crate::common::run_with_input(
        procom(&["shm", "write", &name, "--offset", "10", "-"]),
        "procom shm write",
        b"UVWXYZ",
    )?;
    ensure!(
        fin.status.success(),
        "six bytes at 10: {}",
        fin.stderr.trim()
    );
    ensure!(
        ok(&["shm", "read", &name])? == ["0123456789UVWXYZ"],
        "after the fitting write"
    );
    fails(
        &["shm", "write", &name, "--offset", "17", "-"],
        1,
        "offset 17 is past the end of the 16-byte segment",
    )?;
    ok(&["shm", "rm", &name])?;
    Ok(())
}

/// `shm create NAME --size 0` is a usage error (exit 2) and creates nothing.
fn create_of_size_0_is_refused() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let key = format!("{:#x}", (std::process::id() & 0xffff) | 0x5400_0000);
    for n in [&name, &key] {
        let fin = crate::common::run(&["shm", "create", n, "--size", "0"])?;
        ensure!(
            fin.code() == Some(2)
                && fin.stderr.lines().count() == 1
                && fin.stderr.contains("a segment needs at least 1 byte"),
            "shm create {n} --size 0: {}; {:?}",
            fin.status,
            fin.stderr
        );
        fails(&["shm", "info", n], 1, "does not exist")?;
    }
    Ok(())
}

/// Another process overwrites the header of the channel `procom recv` created, through its
/// file in /dev/shm: recv fails (exit 1, one line saying "corrupted"), not a clean end.
fn recv_from_a_channel_whose_header_is_overwritten_fails() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let path = format!("/dev/shm{name}");
    let recv = Proc::spawn("recv", &mut procom(&["recv", &format!("shm:{name}")]))?;
    // Wait until the receiver has published its header (the version word, at offset 8).
    let deadline = Instant::now() + STEP;
    loop {
        let mut version = [0u8; 4];
        let published = std::fs::File::open(&path)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut version, 8))
            .is_ok_and(|()| version != [0; 4]);
        if published {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the receiver never set up {name}"
        );
        std::thread::sleep(Duration::from_millis(2)); // polling for the kernel object
    }
    let file = check!(std::fs::OpenOptions::new().write(true).open(&path));
    check!(std::os::unix::fs::FileExt::write_all_at(
        &file,
        &[0xab; 64],
        0
    ));
    drop(file);
    let fin = recv.finish(STEP)?;
    ensure!(
        fin.code() == Some(1)
            && fin.stderr.lines().count() == 1
            && fin.stderr.contains("corrupted"),
        "recv after its header was overwritten: {}; {:?}",
        fin.status,
        fin.stderr
    );
    ensure!(
        !std::path::Path::new(&path).exists(),
        "the receiver left its segment"
    );
    Ok(())
}

/// A System V key unique to this process and call, with `top` as its first byte.
fn sysv_key(top: u32) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:#010x}",
        (top << 24) | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)
    )
}

/// Runs `procom args` as uid/gid 65534 (nobody), to completion.
fn as_nobody_run(args: &[&str]) -> Result<procom_testkit::Finished, String> {
    let mut cmd = procom(args);
    Proc::spawn(&format!("{args:?} as nobody"), as_nobody(&mut cmd)?)?.finish(STEP)
}

/// `recv shm:/NAME --mode 660 --group 65534`: the channel's segment has that mode and group,
/// and a sender running as a member of the group (nobody) gets its messages through.
fn recv_shares_its_channel_with_another_user() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let ep = format!("shm:{name}");
    let recv = Proc::spawn(
        "recv --mode 660",
        &mut procom(&[
            "recv", &ep, "--count", "1", "--mode", "660", "--group", "65534",
        ]),
    )?;
    let path = format!("/dev/shm{name}");
    // The receiver creates the segment, then gives it its group: wait for the group.
    crate::common::until(&format!("{path} has group 65534"), || {
        std::fs::metadata(&path).is_ok_and(|m| m.gid() == 65534)
    })?;
    let meta = check!(std::fs::metadata(&path));
    ensure!(
        meta.mode() & 0o777 == 0o660 && meta.gid() == 65534,
        "the segment is {:o}, gid {}",
        meta.mode() & 0o777,
        meta.gid()
    );
    let sent = as_nobody_run(&["send", &ep, "from nobody"])?;
    ensure!(sent.status.success(), "send as nobody: {sent:?}");
    let fin = recv.success(STEP)?;
    ensure!(fin.stdout == ["from nobody"], "recv: {fin:?}");
    Ok(())
}

/// `shm create --mode 640 --group 65534`, POSIX and System V: `shm info --json` shows the mode
/// and group; a member of the group may read the segment and may not write it.
fn segments_shared_with_a_group() -> Outcome {
    let posix = format!("/{}", unique_name("procom-cli"));
    let sysv = sysv_key(0x50);
    for name in [posix.as_str(), sysv.as_str()] {
        ok(&[
            "shm", "create", name, "--size", "16", "--mode", "640", "--group", "65534",
        ])?;
        let result = (|| -> Outcome {
            ok(&["shm", "write", name, "shared"])?;
            let out = ok(&["shm", "info", name, "--json"])?;
            let v: serde_json::Value =
                serde_json::from_str(&out.join("")).map_err(|e| e.to_string())?;
            ensure!(
                v["mode"] == "0640" && v["gid"] == 65534 && v["size"] == 16 && v["name"] == name,
                "{name}: {v}"
            );
            let read = as_nobody_run(&["shm", "read", name, "--len", "6"])?;
            ensure!(
                read.status.success() && read.stdout == ["shared"],
                "{name}: a member of the group could not read: {read:?}"
            );
            let write = as_nobody_run(&["shm", "write", name, "x"])?;
            ensure!(
                write.code() == Some(1) && write.stderr.contains("permission denied"),
                "{name}: a member of the group could write: {write:?}"
            );
            Ok(())
        })();
        ok(&["shm", "rm", name])?;
        result?;
    }
    Ok(())
}

/// System V semaphore sets by key: create with --count, P and V on one member by --index,
/// get (also as JSON), out-of-range members and values refused, removal.
fn system_v_sets() -> Outcome {
    let key = sysv_key(0x53);
    ok(&["sem", "create", &key, "1", "--count", "3"])?;
    let result = (|| -> Outcome {
        fails(&["sem", "create", &key, "1"], 1, "already exists")?;
        ensure!(
            ok(&["sem", "get", &key, "--index", "2"])? == ["1"],
            "initial value"
        );
        ok(&["sem", "post", &key, "--index", "2"])?;
        ok(&["sem", "wait", &key, "--index", "0"])?;
        ensure!(ok(&["sem", "get", &key])? == ["0"], "member 0 after P");
        fails(
            &["sem", "wait", &key, "--timeout", "0.05"],
            1,
            "stayed at 0 until the deadline",
        )?;
        let out = ok(&["sem", "get", &key, "--index", "2", "--json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&out.join("")).map_err(|e| e.to_string())?;
        ensure!(
            v["key"] == key.as_str()
                && v["index"] == 2
                && v["count"] == 3
                && v["value"] == 2
                && v["id"].is_i64(),
            "{v}"
        );
        fails(&["sem", "get", &key, "--index", "3"], 2, "has 3 semaphores")?;
        fails(
            &["sem", "post", &key, "--index", "3"],
            2,
            "does not exist in a set of 3",
        )?;
        Ok(())
    })();
    ok(&["sem", "rm", &key])?;
    result?;
    fails(&["sem", "get", &key], 1, "does not exist")?;
    fails(&["sem", "create", &key, "40000"], 2, "32767")?;
    let name = format!("/{}", unique_name("procom-cli"));
    fails(
        &["sem", "create", &name, "1", "--count", "2"],
        2,
        "System V",
    )?;
    fails(&["sem", "get", &name, "--index", "1"], 2, "System V")?;
    Ok(())
}

/// V on a semaphore at its maximum says so, named or in a set, instead of the C library's
/// "Value too large for defined data type".
fn a_semaphore_at_its_maximum_says_so() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    ok(&["sem", "create", &name, "2147483647"])?;
    let named = fails(
        &["sem", "post", &name],
        1,
        "is at its maximum value (2147483647",
    );
    ok(&["sem", "rm", &name])?;
    named?;
    let key = sysv_key(0x53);
    ok(&["sem", "create", &key, "32767"])?;
    let set = fails(&["sem", "post", &key], 1, "above its maximum value (32767");
    ok(&["sem", "rm", &key])?;
    set
}

/// `sem create --mode 660 --group 65534`, named and System V: a member of the group (nobody)
/// may post and wait.
fn shared_with_a_group() -> Outcome {
    let name = format!("/{}", unique_name("procom-cli"));
    let key = sysv_key(0x53);
    for sem in [name.as_str(), key.as_str()] {
        ok(&[
            "sem", "create", sem, "0", "--mode", "660", "--group", "65534",
        ])?;
        let result = (|| -> Outcome {
            for args in [
                &["sem", "post", sem][..],
                &["sem", "post", sem],
                &["sem", "wait", sem],
            ] {
                let fin = as_nobody_run(args)?;
                ensure!(
                    fin.status.success(),
                    "{args:?} as a member of the group: {fin:?}"
                );
            }
            ensure!(ok(&["sem", "get", sem])? == ["1"], "{sem}: two V and one P");
            Ok(())
        })();
        ok(&["sem", "rm", sem])?;
        result?;
    }
    Ok(())
}
