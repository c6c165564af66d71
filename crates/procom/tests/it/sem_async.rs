//! The semaphores' async waits (feature `tokio`) across real processes: a wait woken by
//! another process's post, timeouts, futures dropped at random points while two other
//! processes post and compete (no unit lost or invented), SEM_UNDO after an async apply, a
//! removed set waking its async waiter, and the waiter thread ending with its handle.

use std::future::Future;
use std::pin::pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use procom::ErrorKind;
use procom::endpoint::SysvKey;
use procom::sem::{Op, OwnedSharedSemaphore, SemSet, Semaphore};
use procom::shm::Segment;
use procom_testkit::{Outcome, Proc, Role, STEP, Trial, check, ensure, role, trials, unique_name};

pub const ROLES: &[Role] = &[
    Role {
        name: "sem_async::post",
        run: post,
    },
    Role {
        name: "sem_async::take",
        run: take,
    },
    Role {
        name: "sem_async::hold_undo",
        run: hold_undo,
    },
    Role {
        name: "sem_async::remove",
        run: remove,
    },
    Role {
        name: "sem_async::waiter_ends",
        run: waiter_ends,
    },
    Role {
        name: "sem_async::post_one",
        run: post_one,
    },
];

pub fn trials() -> Vec<Trial> {
    trials![
        "sem_async":
            named_wait_is_woken_by_another_process,
            timeouts_and_guard_match_the_blocking_forms,
            dropped_named_waits_lose_and_invent_no_unit,
            dropped_shared_waits_lose_and_invent_no_unit,
            dropped_set_applies_lose_and_invent_no_unit,
            async_apply_is_undone_when_its_process_dies,
            the_waiter_thread_ends_with_its_handle,
            removing_a_set_wakes_its_async_waiter,
            an_apply_is_not_held_up_by_an_older_one;
    ]
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn name() -> String {
    format!("/{}", unique_name("procom-sem-async"))
}

/// A key no other test or run uses: this process's pid and a counter.
fn set_key() -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0x5a00_0000 | ((std::process::id() & 0xfff) << 12) | (n & 0xfff)) as i32
}

/// Polls `fut` once, with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// One of the three kinds, as the tests and roles use them.
enum Sem {
    Named(Semaphore),
    Shared(OwnedSharedSemaphore),
    /// Both members, taken and posted together.
    Set(SemSet),
}

/// P on both members of a set, without SEM_UNDO (so a role's exit changes nothing).
const BOTH: [Op; 2] = [
    Op {
        index: 0,
        delta: -1,
        undo: false,
    },
    Op {
        index: 1,
        delta: -1,
        undo: false,
    },
];
/// V on both members, without SEM_UNDO.
const BOTH_V: [Op; 2] = [
    Op {
        index: 0,
        delta: 1,
        undo: false,
    },
    Op {
        index: 1,
        delta: 1,
        undo: false,
    },
];

impl Sem {
    /// Opens the object a test made: `named NAME`, `set KEY`, or `shared` (its memfd on
    /// standard input).
    fn open(kind: &str, id: &str) -> Result<Sem, String> {
        Ok(match kind {
            "named" => Sem::Named(check!(Semaphore::open(id))),
            "set" => Sem::Set(check!(SemSet::open(
                &SysvKey::Key(check!(id.parse::<i32>())),
                2
            ))),
            "shared" => {
                let fd = check!(std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned());
                let map = check!(Segment::from_fd(fd, true).map());
                Sem::Shared(check!(OwnedSharedSemaphore::existing(Arc::new(map), 0)))
            }
            _ => return Err(format!("kind {kind}")),
        })
    }

    async fn wait_async(&self) -> Result<(), procom::Error> {
        match self {
            Sem::Named(s) => s.wait_async().await,
            Sem::Shared(s) => s.wait_async().await,
            // Sem::Set takes both with SEM_UNDO: the kernel keeps the process's adjustment.
            Sem::Set(s) => s.apply_async(&[Op::wait(0), Op::wait(1)]).await,
        }
    }

    async fn wait_async_timeout(&self, t: Duration) -> Result<(), procom::Error> {
        match self {
            Sem::Named(s) => s.wait_async_timeout(t).await,
            Sem::Shared(s) => s.wait_async_timeout(t).await,
            Sem::Set(s) => s.apply_async_timeout(&[Op::wait(0), Op::wait(1)], t).await,
        }
    }

    fn wait_timeout(&self, t: Duration) -> Result<(), procom::Error> {
        match self {
            Sem::Named(s) => s.wait_timeout(t),
            Sem::Shared(s) => s.wait_timeout(t),
            Sem::Set(s) => s.apply_timeout(&BOTH, t),
        }
    }

    fn try_wait(&self) -> Result<(), procom::Error> {
        match self {
            Sem::Named(s) => s.try_wait(),
            Sem::Shared(s) => s.try_wait(),
            Sem::Set(s) => s.try_apply(&BOTH),
        }
    }

    fn post(&self) -> Result<(), procom::Error> {
        match self {
            Sem::Named(s) => s.post(),
            Sem::Shared(s) => s.post(),
            Sem::Set(s) => s.apply(&BOTH_V),
        }
    }

    /// The values (one, or both members of the set).
    fn values(&self) -> Result<Vec<i32>, procom::Error> {
        Ok(match self {
            Sem::Named(s) => vec![s.value()?],
            Sem::Shared(s) => vec![s.value()?],
            Sem::Set(s) => vec![s.value(0)?, s.value(1)?],
        })
    }
}

/// Posts `count` units, giving the processor away between posts so that the takers often
/// find the semaphore at 0 and wait (the pace changes what is exercised, not the outcome).
fn post(args: &[String]) -> Outcome {
    let [kind, id, count] = args else {
        return Err("args".into());
    };
    let sem = Sem::open(kind, id)?;
    let count: u32 = check!(count.parse());
    for _ in 0..count {
        check!(sem.post());
        for _ in 0..20 {
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// Takes `count` units with the blocking wait, competing with the test's async waits.
fn take(args: &[String]) -> Outcome {
    let [kind, id, count] = args else {
        return Err("args".into());
    };
    let sem = Sem::open(kind, id)?;
    let count: u32 = check!(count.parse());
    for i in 0..count {
        sem.wait_timeout(STEP)
            .map_err(|e| format!("unit {i} of {count}: {e}"))?;
    }
    Ok(())
}

/// Units posted in one stress run, and how many of them the competing process takes.
const UNITS: u32 = 3000;
const THEIRS: u32 = 600;

/// A poster and a blocking taker in two other processes; this process takes the rest with
/// async waits, dropping futures at random points: after the first poll, while the waiter
/// thread waits for them, just after it may have taken a unit for them, or by a timeout. In
/// the end exactly UNITS were taken (a lost unit leaves someone waiting, and the test fails
/// at its deadline) and the semaphore is at 0 (an invented unit shows there).
fn stress(sem: &Sem, kind: &str, id: &str, fd: Option<&Segment>) -> Outcome {
    let spawn = |what: &str, r: &str, n: u32| -> Result<Proc, String> {
        let mut cmd = role(r, &[kind, id, &n.to_string()]);
        if let Some(seg) = fd {
            let dup = check!(seg.fd().ok_or("no fd")?.try_clone_to_owned());
            cmd.stdin(Stdio::from(dup));
        }
        Proc::spawn(what, &mut cmd)
    };
    let competitor = spawn("competitor", "sem_async::take", THEIRS)?;
    let rt = runtime()?;
    // One wait is dropped for certain: polled while nothing has been posted yet, so its
    // request is still with the waiter thread when the poster starts.
    rt.block_on(async {
        let mut fut = pin!(sem.wait_async());
        ensure!(
            poll_once(fut.as_mut()).is_pending(),
            "a unit was there before any post"
        );
        Ok(())
    })?;
    let poster = spawn("poster", "sem_async::post", UNITS)?;
    let want = UNITS - THEIRS;
    let (mine, dropped) = rt.block_on(async {
        let give_up = Instant::now() + Duration::from_secs(40);
        let mut rng = (std::process::id() as u64) << 16 | 0x9e37;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut mine, mut dropped) = (0u32, 1u32);
        while mine < want {
            ensure!(
                Instant::now() < give_up,
                "after 40 s this process had taken only {mine} of {want} units ({dropped} waits dropped): a unit was lost"
            );
            let r = next();
            match r % 4 {
                // Dropped by a timer at a random moment (or completed first).
                0 => {
                    let t = Duration::from_micros(r >> 8 & 0x1ff);
                    match tokio::time::timeout(t, sem.wait_async()).await {
                        Ok(done) => {
                            check!(done);
                            mine += 1;
                        }
                        Err(_) => dropped += 1,
                    }
                }
                // Polled once, left alone for a while (the waiter thread may take a unit for
                // it meanwhile), maybe polled again, then dropped.
                1 => {
                    let mut fut = pin!(sem.wait_async());
                    if let Poll::Ready(done) = poll_once(fut.as_mut()) {
                        check!(done);
                        mine += 1;
                        continue;
                    }
                    for _ in 0..(r >> 8 & 0xff) {
                        std::thread::yield_now();
                    }
                    if r & 0x10000 != 0
                        && let Poll::Ready(done) = poll_once(fut.as_mut())
                    {
                        check!(done);
                        mine += 1;
                        continue;
                    }
                    dropped += 1;
                }
                // The timeout form, which may complete with Timeout.
                2 => match sem
                    .wait_async_timeout(Duration::from_micros(r >> 8 & 0x3ff))
                    .await
                {
                    Ok(()) => mine += 1,
                    Err(e) if e.kind() == ErrorKind::Timeout => dropped += 1,
                    Err(e) => return Err(format!("wait_async_timeout: {e}")),
                },
                // Awaited to the end.
                _ => {
                    check!(sem.wait_async_timeout(STEP).await);
                    mine += 1;
                }
            }
        }
        Ok((mine, dropped))
    })?;
    poster.success(STEP)?;
    competitor.success(STEP)?;
    let values = check!(sem.values());
    ensure!(
        values.iter().all(|v| *v == 0),
        "after {UNITS} posts and {mine} + {THEIRS} waits the value is {values:?}: a unit was invented"
    );
    let extra = sem.try_wait().err().map(|e| e.kind());
    ensure!(
        extra == Some(ErrorKind::Empty),
        "one more unit could be taken: {extra:?}"
    );
    println!("{kind}: {mine} async waits completed, {dropped} dropped or timed out");
    Ok(())
}

fn dropped_named_waits_lose_and_invent_no_unit() -> Outcome {
    let n = name();
    let sem = Sem::Named(check!(Semaphore::create(&n, 0)));
    stress(&sem, "named", &n, None)
}

fn dropped_shared_waits_lose_and_invent_no_unit() -> Outcome {
    let seg = check!(Segment::memfd("procom-sem-async", 4096, true));
    let map = Arc::new(check!(seg.map()));
    let sem = Sem::Shared(check!(OwnedSharedSemaphore::init(map, 0, 0)));
    stress(&sem, "shared", "-", Some(&seg))
}

fn dropped_set_applies_lose_and_invent_no_unit() -> Outcome {
    let key = set_key();
    let set = check!(SemSet::create(&SysvKey::Key(key), &[0, 0]));
    let sem = Sem::Set(set);
    stress(&sem, "set", &key.to_string(), None)?;
    // The async applies used SEM_UNDO: the kernel holds +1 per member for each of them, for
    // this process. Removing the set drops that record.
    let Sem::Set(set) = sem else {
        return Err("kind".into());
    };
    check!(set.remove());
    Ok(())
}

/// The wait is queued (the value is 0) before the other process posts: the waiter thread,
/// not the first try, takes the unit.
fn named_wait_is_woken_by_another_process() -> Outcome {
    let n = name();
    let sem = check!(Semaphore::create(&n, 0));
    let rt = runtime()?;
    rt.block_on(async {
        let mut fut = pin!(sem.wait_async());
        ensure!(
            poll_once(fut.as_mut()).is_pending(),
            "a wait on 0 completed at once"
        );
        let poster = Proc::spawn("poster", &mut role("sem_async::post", &["named", &n, "1"]))?;
        check!(check!(tokio::time::timeout(STEP, fut).await));
        poster.success(STEP)?;
        ensure!(check!(sem.value()) == 0, "the unit was not taken");
        Ok(())
    })
}

fn timeouts_and_guard_match_the_blocking_forms() -> Outcome {
    let n = name();
    let sem = check!(Semaphore::create(&n, 0));
    let rt = runtime()?;
    rt.block_on(async {
        let e = sem
            .wait_async_timeout(Duration::from_millis(30))
            .await
            .err()
            .map(|e| e.kind());
        ensure!(e == Some(ErrorKind::Timeout), "timeout on 0: {e:?}");
        let e = sem
            .wait_async_deadline(Instant::now())
            .await
            .err()
            .map(|e| e.kind());
        ensure!(e == Some(ErrorKind::Timeout), "passed deadline on 0: {e:?}");
        // Another process posts once; the guard holds that unit and gives it back on drop.
        Proc::spawn("poster", &mut role("sem_async::post", &["named", &n, "1"]))?.success(STEP)?;
        {
            let _guard = check!(sem.acquire_async().await);
            ensure!(check!(sem.value()) == 0, "held, yet the value is not 0");
        }
        ensure!(check!(sem.value()) == 1, "the guard did not post on drop");
        check!(sem.wait_async_deadline(Instant::now()).await); // available: no wait needed
        Ok(())
    })?;
    check!(sem.remove());
    Ok(())
}

/// Takes both members with SEM_UNDO through the async apply (waiting for the test's posts),
/// says so, and waits to be killed.
fn hold_undo(args: &[String]) -> Outcome {
    let key: i32 = check!(args[0].parse());
    let set = check!(SemSet::open(&SysvKey::Key(key), 2));
    let rt = runtime()?;
    rt.block_on(async {
        let ops = [Op::wait(0), Op::wait(1)];
        let mut fut = pin!(set.apply_async(&ops));
        ensure!(poll_once(fut.as_mut()).is_pending(), "taken at once");
        println!("waiting");
        check!(check!(tokio::time::timeout(STEP, fut).await));
        Ok(())
    })?;
    println!("held");
    let mut sink = Vec::new();
    check!(std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink));
    Ok(())
}

fn async_apply_is_undone_when_its_process_dies() -> Outcome {
    let key = set_key();
    let set = check!(SemSet::create(&SysvKey::Key(key), &[0, 0]));
    let mut cmd = role("sem_async::hold_undo", &[&key.to_string()]);
    cmd.stdin(Stdio::piped());
    let mut holder = Proc::spawn("holder", &mut cmd)?;
    holder.expect_line("waiting")?;
    check!(set.apply(&BOTH_V));
    holder.expect_line("held")?;
    let held = (check!(set.value(0)), check!(set.value(1)));
    ensure!(held == (0, 0), "held, yet the values are {held:?}");
    check!(holder.child().kill());
    holder.finish(STEP)?;
    // The kernel undid the dead holder's operations, applied on its runtime's thread.
    let after = (check!(set.value(0)), check!(set.value(1)));
    ensure!(after == (1, 1), "after the holder died: {after:?}");
    check!(set.remove());
    Ok(())
}

/// Removes the set with key `args[0]`.
fn remove(args: &[String]) -> Outcome {
    let key: i32 = check!(args[0].parse());
    check!(check!(SemSet::open(&SysvKey::Key(key), 2)).remove());
    Ok(())
}

fn removing_a_set_wakes_its_async_waiter() -> Outcome {
    let key = set_key();
    let set = check!(SemSet::create(&SysvKey::Key(key), &[0, 0]));
    let rt = runtime()?;
    rt.block_on(async {
        let mut fut = pin!(set.apply_async(&BOTH));
        ensure!(poll_once(fut.as_mut()).is_pending(), "taken at once");
        Proc::spawn(
            "remover",
            &mut role("sem_async::remove", &[&key.to_string()]),
        )?
        .success(STEP)?;
        let e = check!(tokio::time::timeout(STEP, fut).await)
            .err()
            .map(|e| e.kind());
        ensure!(
            e == Some(ErrorKind::PeerGone),
            "after another process removed the set, the async waiter got {e:?}"
        );
        Ok(())
    })
}

/// One waiter thread for a handle, started by its first wait that had to wait, and ended
/// when the handle is dropped, even with an abandoned wait in progress. (Counted in a child
/// process: the test binary's other tests have waiter threads of their own.)
fn waiter_ends(args: &[String]) -> Outcome {
    use procom::test_hooks::{sem_waiters, sem_waiters_gone};
    let sem = check!(Semaphore::open(&args[0]));
    ensure!(
        sem_waiters() == 0,
        "{} threads before any wait",
        sem_waiters()
    );
    let rt = runtime()?;
    rt.block_on(async {
        let mut first = pin!(sem.wait_async());
        ensure!(poll_once(first.as_mut()).is_pending(), "taken at once");
        println!("waiting");
        check!(check!(tokio::time::timeout(STEP, first).await));
        let mut second = pin!(sem.wait_async());
        ensure!(poll_once(second.as_mut()).is_pending(), "taken at once");
        Ok(())
    })?; // the second wait is dropped here, unfinished
    ensure!(
        sem_waiters() == 1,
        "{} threads for one handle",
        sem_waiters()
    );
    drop(sem);
    ensure!(
        sem_waiters_gone(STEP),
        "the waiter thread still runs after its handle was dropped"
    );
    Ok(())
}

fn the_waiter_thread_ends_with_its_handle() -> Outcome {
    let n = name();
    let sem = check!(Semaphore::create(&n, 0));
    let mut cmd = role("sem_async::waiter_ends", &[&n]);
    let mut child = Proc::spawn("waiter", &mut cmd)?;
    child.expect_line("waiting")?;
    check!(sem.post());
    child.success(STEP)?;
    // The abandoned second wait took nothing.
    ensure!(check!(sem.value()) == 0, "value {}", check!(sem.value()));
    check!(sem.post());
    ensure!(check!(sem.value()) == 1, "a post after the child left");
    Ok(())
}

/// Posts member `args[1]` of the set with key `args[0]` once, without SEM_UNDO.
fn post_one(args: &[String]) -> Outcome {
    let [key, index] = args else {
        return Err("args".into());
    };
    let set = check!(SemSet::open(&SysvKey::Key(check!(key.parse())), 2));
    check!(set.apply(&[Op {
        index: check!(index.parse()),
        delta: 1,
        undo: false,
    }]));
    Ok(())
}

/// Two async applies on one set wait for different members: another process's post to the
/// younger one's member completes it while the older one still waits, as two blocking
/// applies in two threads would.
fn an_apply_is_not_held_up_by_an_older_one() -> Outcome {
    let key = set_key();
    let set = check!(SemSet::create(&SysvKey::Key(key), &[0, 0]));
    let take = |index| {
        [Op {
            index,
            delta: -1,
            undo: false,
        }]
    };
    let (take0, take1) = (take(0), take(1));
    let rt = runtime()?;
    let outcome = rt.block_on(async {
        let mut older = pin!(set.apply_async(&take0));
        ensure!(poll_once(older.as_mut()).is_pending(), "member 0 taken at once");
        let mut younger = pin!(set.apply_async(&take1));
        ensure!(poll_once(younger.as_mut()).is_pending(), "member 1 taken at once");
        let mut cmd = role("sem_async::post_one", &[&key.to_string(), "1"]);
        Proc::spawn("poster", &mut cmd)?.success(STEP)?;
        let done = tokio::time::timeout(STEP, younger).await.map_err(|_| {
            "member 1 was posted, yet its async apply still waited behind the older apply on member 0"
        })?;
        check!(done);
        ensure!(
            poll_once(older.as_mut()).is_pending(),
            "member 0 was taken with no post"
        );
        Ok(())
    });
    check!(set.remove());
    outcome
}
