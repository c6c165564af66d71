//! Semaphores across real processes: the classic two examples (a mutex of 1 guarding a shared
//! counter, an ordering of 0), SEM_UNDO after a crash, unnamed semaphores in shared memory,
//! permissions, and interoperation with a C program using the standard calls.

use std::process::{Command, Stdio};
use std::time::Duration;

use procom::ErrorKind;
use procom::endpoint::SysvKey;
use procom::sem::{Op, SemSet, Semaphore, SharedSemaphore};
use procom::shm::{Segment, TypedRegion};
use procom_testkit::{
    Outcome, Plant, Proc, Role, STEP, Scratch, Trial, as_nobody, check, ensure, needs, plant, role,
    trials, unique_name, wait_pid,
};

pub const ROLES: &[Role] = &[
    Role {
        name: "sem::increment",
        run: increment,
    },
    Role {
        name: "sem::consumer",
        run: consumer,
    },
    Role {
        name: "sem::producer",
        run: producer,
    },
    Role {
        name: "sem::hold_undo",
        run: hold_undo,
    },
    Role {
        name: "sem::post_fd0",
        run: post_fd0,
    },
    Role {
        name: "sem::open_denied",
        run: open_denied,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "sem":
            mutex_of_one_keeps_every_increment,
            without_the_mutex_updates_are_lost,
            ordering_of_zero_never_reads_early,
            sem_undo_releases_a_crashed_holder,
            unnamed_semaphore_in_shared_memory,
            try_timeout_value_and_permissions,
            another_user_cannot_open_a_semaphore [needs::root()],
            interoperates_with_c,
            planted_link_fifo_or_directory_is_never_removed,
            planted_file_is_never_opened_as_a_semaphore;
    ]
}

fn name() -> String {
    format!("/{}", unique_name("procom-sem"))
}

const ROUNDS: u64 = 2000;

/// Adds 1 to the shared counter ROUNDS times, under the semaphore unless told "unguarded",
/// starting once every incrementer is ready (it posts "ready", then waits on "go").
fn increment(args: &[String]) -> Outcome {
    let [seg_name, sem_name, mode, ready, go] = args else {
        return Err("args".into());
    };
    let seg = check!(Segment::open(seg_name));
    let map = check!(seg.map());
    let counter = check!(TypedRegion::<u64>::new(&map, 0));
    let sem = check!(Semaphore::open(sem_name));
    // Both opened before "ready": the test removes their names once all are ready.
    let (ready, go) = (check!(Semaphore::open(ready)), check!(Semaphore::open(go)));
    check!(ready.post());
    check!(go.wait_timeout(STEP));
    for _ in 0..ROUNDS {
        if mode == "guarded" {
            let _guard = check!(sem.acquire()); // P ... V on drop
            let v = check!(counter.load());
            std::thread::yield_now(); // widen the window the semaphore must protect
            check!(counter.store(&(v + 1)));
        } else {
            let v = check!(counter.load());
            std::thread::yield_now();
            check!(counter.store(&(v + 1)));
        }
    }
    Ok(())
}

fn run_counter(mode: &str, procs: usize) -> Result<u64, String> {
    let seg_name = name();
    let sem_name = name();
    let seg = check!(Segment::create(&seg_name, 4096));
    let map = check!(seg.map());
    let sem = check!(Semaphore::create(&sem_name, 1));
    // A barrier of two semaphores: every incrementer starts at once, so the unguarded ones
    // overlap however long each takes to start.
    let (ready_name, go_name) = (name(), name());
    let ready = check!(Semaphore::create(&ready_name, 0));
    let go = check!(Semaphore::create(&go_name, 0));
    let children: Vec<Proc> = (0..procs)
        .map(|i| {
            Proc::spawn(
                &format!("incrementer {i}"),
                &mut role(
                    "sem::increment",
                    &[&seg_name, &sem_name, mode, &ready_name, &go_name],
                ),
            )
        })
        .collect::<Result<_, _>>()?;
    for _ in 0..procs {
        check!(ready.wait_timeout(STEP));
    }
    for _ in 0..procs {
        check!(go.post());
    }
    drop((ready, go));
    for c in children {
        c.success(STEP)?;
    }
    let total = check!(check!(TypedRegion::<u64>::new(&map, 0)).load());
    ensure!(check!(sem.value()) == 1, "the mutex was not left at 1");
    drop(map);
    drop(seg);
    drop(sem);
    ensure!(
        !std::path::Path::new(&format!("/dev/shm{seg_name}")).exists(),
        "leaked the segment"
    );
    ensure!(
        !std::path::Path::new(&format!("/dev/shm/sem.{}", &sem_name[1..])).exists(),
        "leaked the semaphore"
    );
    Ok(total)
}

fn mutex_of_one_keeps_every_increment() -> Outcome {
    let total = run_counter("guarded", 4)?;
    ensure!(
        total == 4 * ROUNDS,
        "4 processes x {ROUNDS} increments ended at {total}"
    );
    Ok(())
}

fn without_the_mutex_updates_are_lost() -> Outcome {
    // The classic warning, shown: the same work without P/V loses updates. (Each process
    // yields between reading and writing the counter, so overlapping is all but certain.)
    let total = run_counter("unguarded", 4)?;
    ensure!(
        total < 4 * ROUNDS,
        "no update was lost ({total}); the race did not show this time"
    );
    println!(
        "without the semaphore: {total} of {} increments survived",
        4 * ROUNDS
    );
    Ok(())
}

/// Waits on "full" (initial 0) before each read: it can never read before the producer wrote.
fn consumer(args: &[String]) -> Outcome {
    let [seg_name, full, empty] = args else {
        return Err("args".into());
    };
    let seg = check!(Segment::open(seg_name));
    let map = check!(seg.map());
    let slot = check!(TypedRegion::<u64>::new(&map, 0));
    let full = check!(Semaphore::open(full));
    let empty = check!(Semaphore::open(empty));
    println!("waiting");
    for i in 1..=300u64 {
        check!(full.wait_timeout(STEP)); // P(full)
        let v = check!(slot.load());
        ensure!(
            v == i * 7,
            "round {i}: read {v} before the producer wrote {}",
            i * 7
        );
        check!(empty.post()); // V(empty)
    }
    Ok(())
}

fn producer(args: &[String]) -> Outcome {
    let [seg_name, full, empty] = args else {
        return Err("args".into());
    };
    let seg = check!(Segment::open(seg_name));
    let map = check!(seg.map());
    let slot = check!(TypedRegion::<u64>::new(&map, 0));
    let full = check!(Semaphore::open(full));
    let empty = check!(Semaphore::open(empty));
    for i in 1..=300u64 {
        check!(empty.wait_timeout(STEP));
        check!(slot.store(&(i * 7)));
        check!(full.post()); // A's V lets B's P through
    }
    Ok(())
}

fn ordering_of_zero_never_reads_early() -> Outcome {
    let seg_name = name();
    let (full, empty) = (name(), name());
    let seg = check!(Segment::create(&seg_name, 4096));
    let _full = check!(Semaphore::create(&full, 0));
    let _empty = check!(Semaphore::create(&empty, 1));
    // B starts first and must wait: the classic "process B runs before A" case.
    let mut b = Proc::spawn(
        "consumer",
        &mut role("sem::consumer", &[&seg_name, &full, &empty]),
    )?;
    b.expect_line("waiting")?;
    let a = Proc::spawn(
        "producer",
        &mut role("sem::producer", &[&seg_name, &full, &empty]),
    )?;
    a.success(STEP)?;
    b.success(STEP)?;
    drop(seg);
    Ok(())
}

/// Takes member 0 of a System V set with SEM_UNDO, says so, and waits to be killed.
fn hold_undo(args: &[String]) -> Outcome {
    let key: i32 = check!(args[0].parse::<i32>());
    let set = check!(SemSet::open(&SysvKey::Key(key), 2));
    check!(set.apply(&[Op::wait(0), Op::wait(1)])); // both at once, atomically
    println!("held");
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn sem_undo_releases_a_crashed_holder() -> Outcome {
    let key = (std::process::id() as i32 & 0xffff) | 0x5300_0000;
    let set = check!(SemSet::create(&SysvKey::Key(key), &[1, 1]));
    let mut cmd = role("sem::hold_undo", &[&key.to_string()]);
    cmd.stdin(Stdio::piped());
    let mut holder = Proc::spawn("holder", &mut cmd)?;
    holder.expect_line("held")?;
    ensure!(
        check!(set.value(0)) == 0 && check!(set.value(1)) == 0,
        "not held"
    );
    let busy = set.try_apply(&[Op::wait(0)]).err().map(|e| e.kind());
    ensure!(busy == Some(ErrorKind::Empty), "try while held: {busy:?}");
    check!(holder.child().kill());
    holder.finish(STEP)?;
    // The kernel undid the dead holder's operations: both are free again.
    check!(set.apply_timeout(&[Op::wait(0), Op::wait(1)], STEP));
    check!(set.apply(&[Op::post(0), Op::post(1)]));
    let bad = set.apply(&[Op::wait(5)]).err().map(|e| e.kind());
    ensure!(bad == Some(ErrorKind::InvalidInput), "member 5: {bad:?}");
    check!(set.remove());
    Ok(())
}

/// Posts the unnamed semaphore at offset 0 of the memfd it got as standard input.
fn post_fd0(_: &[String]) -> Outcome {
    let fd = check!(std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned());
    let seg = Segment::from_fd(fd, true);
    let map = check!(seg.map());
    let sem = check!(SharedSemaphore::existing(&map, 0));
    check!(map.write(64, b"done"));
    check!(sem.post());
    Ok(())
}

fn unnamed_semaphore_in_shared_memory() -> Outcome {
    let seg = check!(Segment::memfd("procom-sem", 4096, true));
    let map = check!(seg.map());
    let sem = check!(SharedSemaphore::init(&map, 0, 0));
    let mut cmd = role("sem::post_fd0", &[]);
    cmd.stdin(Stdio::from(check!(
        seg.fd().ok_or("fd")?.try_clone_to_owned()
    )));
    let child = Proc::spawn("poster", &mut cmd)?;
    check!(sem.wait_timeout(STEP));
    let mut buf = [0u8; 4];
    check!(map.read(64, &mut buf));
    ensure!(
        &buf == b"done",
        "the child's write was not visible after its post"
    );
    child.success(STEP)?;
    Ok(())
}

fn open_denied(args: &[String]) -> Outcome {
    let e = Semaphore::open(&args[0])
        .err()
        .ok_or("opened a 0600 semaphore as another user")?;
    ensure!(e.kind() == ErrorKind::PermissionDenied, "got {e}");
    Ok(())
}

fn try_timeout_value_and_permissions() -> Outcome {
    let n = name();
    let sem = check!(Semaphore::create(&n, 0));
    let e = sem.try_wait().err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Empty), "try_wait on 0: {e:?}");
    let e = sem
        .wait_timeout(Duration::from_millis(20))
        .err()
        .map(|e| e.kind());
    ensure!(e == Some(ErrorKind::Timeout), "wait_timeout on 0: {e:?}");
    check!(sem.post());
    check!(sem.post());
    ensure!(check!(sem.value()) == 2, "value after two posts");
    check!(sem.try_wait());
    ensure!(check!(sem.value()) == 1, "value after a wait");
    let e = Semaphore::create(&n, 1).err().map(|e| e.kind());
    ensure!(e == Some(ErrorKind::AlreadyExists), "second create: {e:?}");
    let path = format!("/dev/shm/sem.{}", &n[1..]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&check!(std::fs::metadata(&path)).permissions())
            & 0o777;
    ensure!(mode == 0o600, "mode {mode:o}");
    let missing = Semaphore::open("/procom-no-such-semaphore")
        .err()
        .map(|e| e.kind());
    ensure!(missing == Some(ErrorKind::NotFound), "missing: {missing:?}");
    check!(sem.remove());
    ensure!(!std::path::Path::new(&path).exists(), "remove left it");
    Ok(())
}

/// A 0600 semaphore cannot be opened by another (unprivileged) user.
fn another_user_cannot_open_a_semaphore() -> Outcome {
    let n = name();
    let sem = check!(Semaphore::create(&n, 0));
    let mut cmd = role("sem::open_denied", &[&n]);
    Proc::spawn("nobody", as_nobody(&mut cmd)?)?.success(STEP)?;
    check!(sem.remove());
    Ok(())
}

const C_PEER: &str = r#"
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    /* argv[1]: segment, argv[2]: semaphore procom created; argv[3]: semaphore to create */
    int fd = shm_open(argv[1], O_RDWR, 0);
    if (fd < 0) { perror("shm_open"); return 1; }
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    if (strcmp(p, "from procom") != 0) { fprintf(stderr, "read '%s'\n", p); return 1; }
    strcpy(p + 100, "from C");
    sem_t *s = sem_open(argv[2], 0);
    if (s == SEM_FAILED) { perror("sem_open"); return 1; }
    if (sem_post(s) != 0) { perror("sem_post"); return 1; }
    sem_t *mine = sem_open(argv[3], O_CREAT | O_EXCL, 0600, 3);
    if (mine == SEM_FAILED) { perror("sem_open create"); return 1; }
    return 0;
}
"#;

fn interoperates_with_c() -> Outcome {
    let dir = Scratch::new("procom-sem-c")?;
    let src = dir.join("peer.c");
    let exe = dir.join("peer");
    check!(std::fs::write(&src, C_PEER));
    let mut cc = check!(
        Command::new("cc")
            .arg("-O1")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg("-pthread")
            .arg("-lrt")
            .spawn()
    );
    let st = check!(wait_pid(&mut cc, STEP)).ok_or("cc did not finish")?;
    ensure!(st.success(), "compiling the C peer failed");
    let (seg_name, sem_name, c_sem) = (name(), name(), name());
    let seg = check!(Segment::create(&seg_name, 4096));
    let map = check!(seg.map());
    check!(map.write(0, b"from procom\0"));
    let sem = check!(Semaphore::create(&sem_name, 0));
    let mut cmd = Command::new(&exe);
    cmd.args([&seg_name, &sem_name, &c_sem]);
    Proc::spawn("C peer", &mut cmd)?.success(STEP)?;
    check!(sem.wait_timeout(STEP)); // the C program's sem_post
    let mut buf = [0u8; 6];
    check!(map.read(100, &mut buf));
    ensure!(&buf == b"from C", "read {buf:?}");
    let theirs = check!(Semaphore::open(&c_sem)); // one the C program created
    ensure!(
        check!(theirs.value()) == 3,
        "the C program's semaphore has the wrong value"
    );
    drop(theirs);
    check!(procom::sem::remove(&c_sem));
    check!(std::fs::remove_file(&src));
    check!(std::fs::remove_file(&exe));
    dir.finish()
}

/// A symlink, a FIFO and a directory planted by uid 65534 where glibc keeps a named semaphore
/// (/dev/shm/sem.NAME): removing the name refuses, and leaves them (and the file a link
/// points to) alone.
fn planted_link_fifo_or_directory_is_never_removed() -> Outcome {
    let scratch = Scratch::new("procom-it-sem")?;
    let victim = scratch.join("victim");
    check!(std::fs::write(&victim, b"root's file"));
    for (what, words) in [
        (Plant::Symlink(&victim), "is a symbolic link"),
        (Plant::Fifo, "is a FIFO"),
        (Plant::Dir, "is a directory"),
    ] {
        let name = name();
        let planted = plant(format!("/dev/shm/sem.{}", &name[1..]).as_ref(), what)?;
        let e = procom::sem::remove(&name)
            .err()
            .ok_or(format!("removed the planted {what:?}"))?;
        ensure!(
            e.kind() == ErrorKind::WrongType && e.to_string().contains(words),
            "removing the planted {what:?}: {e:?}"
        );
        ensure!(
            planted.intact(),
            "the planted {what:?} was changed or removed"
        );
        planted.remove()?;
    }
    ensure!(
        check!(std::fs::read(&victim)) == b"root's file",
        "the victim changed"
    );
    check!(std::fs::remove_file(&victim));
    scratch.finish()
}

/// What another user plants at /dev/shm/sem.NAME is never handed to sem_open: an empty file
/// (glibc would map it and die of SIGBUS at the first post), a symlink, a FIFO or a directory.
fn planted_file_is_never_opened_as_a_semaphore() -> Outcome {
    let scratch = Scratch::new("procom-it-sem-open")?;
    let victim = scratch.join("victim");
    check!(std::fs::write(&victim, vec![0u8; 64]));
    for (what, kind, words) in [
        (
            Plant::EmptyFile,
            ErrorKind::Corrupted,
            "too small to hold a semaphore",
        ),
        (
            Plant::Symlink(&victim),
            ErrorKind::WrongType,
            "is a symbolic link",
        ),
        (Plant::Fifo, ErrorKind::WrongType, "is a FIFO"),
        (Plant::Dir, ErrorKind::WrongType, "is a directory"),
    ] {
        let name = name();
        let planted = plant(format!("/dev/shm/sem.{}", &name[1..]).as_ref(), what)?;
        let e = Semaphore::open(&name)
            .err()
            .ok_or(format!("opened the planted {what:?}"))?;
        ensure!(
            e.kind() == kind && e.to_string().contains(words),
            "opening the planted {what:?}: {e:?}"
        );
        ensure!(
            planted.intact(),
            "the planted {what:?} was changed or removed"
        );
        planted.remove()?;
    }
    ensure!(
        check!(std::fs::read(&victim)) == [0u8; 64],
        "the victim changed"
    );
    check!(std::fs::remove_file(&victim));
    scratch.finish()
}
