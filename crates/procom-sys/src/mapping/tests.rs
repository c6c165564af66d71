use super::sigbus::OLD_ACTION;
use super::*;

#[test]
fn truncation_faults_become_zeros_and_a_flag() {
    let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 8192).unwrap();
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 8192, true).unwrap();
    m.write(4096, b"hello").unwrap();
    assert!(!m.faulted());
    rustix::fs::ftruncate(&fd, 100).unwrap();
    let mut buf = [1u8; 5];
    m.read(4096, &mut buf).unwrap(); // past the new end: would be SIGBUS
    assert_eq!(buf, [0; 5]);
    assert!(m.faulted());
}

#[test]
fn accessors_check_bounds_and_alignment() {
    let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 64).unwrap();
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 64, false).unwrap();
    assert!(m.read(60, &mut [0; 8]).is_err());
    assert!(m.write(0, b"x").is_err());
    assert!(m.atomic_u32(2).is_none());
    assert!(m.atomic_u64(64).is_none());
    assert_eq!(m.load_u64(56, Ordering::Relaxed), Some(0));
    assert_eq!(m.load_u32(2, Ordering::Relaxed), None);
    assert_eq!(m.load_u64(64, Ordering::Relaxed), None);
    let w = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 64, true).unwrap();
    assert!(w.atomic_u64(56).is_some());
    w.atomic_u32(8).unwrap().store(7, Ordering::Relaxed);
    assert_eq!(m.load_u32(8, Ordering::Relaxed), Some(7));
}

#[test]
fn read_only_mappings_hand_out_no_atomics() {
    // A store through such an atomic would be SIGSEGV, which nothing catches.
    let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, false).unwrap();
    assert!(m.atomic_u32(0).is_none());
    assert!(m.atomic_u64(0).is_none());
    assert_eq!(m.load_u32(0, Ordering::Acquire), Some(0));
}

#[test]
fn sysv_attach_refuses_more_than_the_segment_has() {
    let id = sysv_shmget(libc::IPC_PRIVATE, 4096, true, 0o600).unwrap();
    let too_long = Mapping::attach_sysv(id, 3 * 4096, true).map(drop);
    let exact = Mapping::attach_sysv(id, 4096, true).map(|m| m.len());
    let shorter = Mapping::attach_sysv(id, 100, false).map(|m| m.len());
    sysv_shm_remove(id).unwrap();
    let e = too_long.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(exact.unwrap(), 4096);
    assert_eq!(shorter.unwrap(), 100);
}

/// How a forked child ended: `Ok(exit code)` or `Err(signal)`.
///
/// The child runs `f` and exits with its result; `f` must only do async-signal-safe work
/// (system calls, plain memory), since other test threads may hold locks at the fork.
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, i32> {
    // SAFETY: fork has no preconditions; the child only runs `f` (see above) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is ours to write.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(libc::WTERMSIG(status))
    }
}

/// A sigaction with `handler` (SIG_DFL or SIG_IGN), leaked so a child can point the
/// chain at it.
fn leaked_action(handler: libc::sighandler_t) -> *mut libc::sigaction {
    // SAFETY: all-zero is a valid sigaction; the handler is set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    Box::into_raw(Box::new(act))
}

#[test]
fn a_sent_sigbus_takes_the_previous_default_action() {
    let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, true).unwrap();
    let dfl = leaked_action(libc::SIG_DFL);
    let ended = in_child(|| {
        // As if SIGBUS had its default disposition when the handler was installed.
        OLD_ACTION.store(dfl, Ordering::Release);
        // SAFETY: kill to ourselves with a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
        if m.faulted() { 2 } else { 0 }
    });
    assert_eq!(
        ended,
        Err(libc::SIGBUS),
        "a SIGBUS sent with kill must end the process as without the handler"
    );
}

#[test]
fn a_forged_sigbus_address_zeroes_nothing() {
    let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 8192).unwrap();
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 8192, true).unwrap();
    m.write(4096, b"hello").unwrap();
    let target = m.as_ptr().wrapping_add(4096);
    // A queued SIGBUS (si_code SI_QUEUE) whose si_addr points into the mapping: the
    // address field follows three ints, aligned for a pointer.
    // SAFETY: all-zero is a valid siginfo; the fields are set below.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = libc::SIGBUS;
    info.si_code = libc::SI_QUEUE;
    let align = std::mem::align_of::<usize>();
    let at = (3 * std::mem::size_of::<libc::c_int>()).div_ceil(align) * align;
    // SAFETY: `at + size_of::<usize>()` lies inside the siginfo (128 bytes), aligned.
    unsafe {
        ((&mut info as *mut libc::siginfo_t as *mut u8).add(at) as *mut usize)
            .write(target as usize)
    };
    // SAFETY: reading the union field back through libc's accessor.
    assert_eq!(unsafe { info.si_addr() } as usize, target as usize);
    let ign = leaked_action(libc::SIG_IGN);
    let ended = in_child(|| {
        // As if SIGBUS was ignored when the handler was installed: the sent signal is then
        // simply ignored, and the child can report what it did to the mapping.
        OLD_ACTION.store(ign, Ordering::Release);
        // SAFETY: rt_sigqueueinfo to ourselves with a valid siginfo we own.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigqueueinfo,
                libc::getpid(),
                libc::SIGBUS,
                &info as *const libc::siginfo_t,
            )
        };
        let mut got = [0u8; 5];
        if m.read(4096, &mut got).is_err() {
            return 3;
        }
        match (m.faulted(), &got == b"hello") {
            (false, true) => 0,
            (true, _) => 1,
            (false, false) => 2,
        }
    });
    assert_eq!(
        ended,
        Ok(0),
        "a forged SIGBUS must neither flag the mapping (1) nor zero its page (2)"
    );
}

#[test]
fn populate_allocates_every_page_of_the_object() {
    let fd = rustix::fs::memfd_create("procom-populate", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 1 << 20).unwrap();
    let blocks = |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).unwrap().st_blocks;
    let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 1 << 20, true).unwrap();
    assert_eq!(blocks(&fd), 0, "a fresh object has no pages yet");
    m.populate().unwrap();
    // st_blocks counts 512-byte units.
    assert_eq!(blocks(&fd) * 512, 1 << 20);
    // A prefix allocates that much (of a second object) and no more.
    let fd2 = rustix::fs::memfd_create("procom-populate", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd2, 1 << 20).unwrap();
    let m2 = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd2), 1 << 20, true).unwrap();
    m2.populate_prefix(64 << 10).unwrap();
    assert_eq!(blocks(&fd2) * 512, 64 << 10);
    let r = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, false).unwrap();
    assert_eq!(
        r.populate().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}
