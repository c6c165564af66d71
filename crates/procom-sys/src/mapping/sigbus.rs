//! The SIGBUS guard (see "Truncation by a peer" in the module docs of [`super`]): the registry
//! of protected mappings, the handler that repairs a fault inside one of them, and the chaining
//! of every other SIGBUS to the handler it replaced.

use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// How many mappings can be protected at once.
const SLOTS: usize = 256;

pub(super) struct Slot {
    pub(super) start: AtomicUsize,
    pub(super) len: AtomicUsize,
    pub(super) writable: AtomicBool,
    pub(super) faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    writable: AtomicBool::new(false),
    faulted: AtomicBool::new(false),
};
pub(super) static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
pub(super) static OLD_ACTION: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Only a fault the kernel raised for an access past the end of a mapped object
    // (BUS_ADRERR) is ours to repair. A SIGBUS sent with kill/sigqueue/tgkill has a code <= 0
    // and an si_addr that means nothing (or was forged to make us zero a page); other kernel
    // codes (misalignment, hardware memory errors) are not truncation.
    if code == libc::BUS_ADRERR && repair(info) {
        return;
    }
    chain(sig, info, ctx, code > 0);
}

/// Maps a zero page over the faulting page if it lies in a registered mapping.
fn repair(info: *mut libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo, and for a kernel-raised SIGBUS si_addr is the
    // faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in &REGISTRY {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr - start < len {
            let base = addr & !(page - 1);
            let prot = if slot.writable.load(Ordering::Relaxed) {
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE
            } else {
                rustix::mm::ProtFlags::READ
            };
            // SAFETY: `base..base+page` lies inside a mapping this process owns (registered and
            // not yet unmapped); replacing it with a private zero page is what the fault needs.
            // rustix issues the raw syscall, which is async-signal-safe.
            let r = unsafe {
                rustix::mm::mmap_anonymous(
                    base as *mut libc::c_void,
                    page,
                    prot,
                    rustix::mm::MapFlags::FIXED | rustix::mm::MapFlags::PRIVATE,
                )
            };
            if r.is_ok() {
                slot.faulted.store(true, Ordering::Release);
                return true;
            }
        }
    }
    false
}

/// Hands a SIGBUS that is not ours to whatever had it before, as if this handler did not
/// exist. `fault` says the kernel raised it for the instruction we return to.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, fault: bool) {
    let old = OLD_ACTION.load(Ordering::Acquire);
    if old.is_null() {
        return;
    }
    // SAFETY: `old` points to the leaked sigaction saved at installation, never freed.
    let old = unsafe { &*old };
    if old.sa_flags & libc::SA_SIGINFO != 0 && old.sa_sigaction > libc::SIG_IGN {
        // SAFETY: with SA_SIGINFO the saved handler has the three-argument signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig, info, ctx);
    } else if old.sa_sigaction > libc::SIG_IGN {
        // SAFETY: without SA_SIGINFO the saved handler has the one-argument signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig);
    } else if fault {
        // Default or ignored: put that disposition back; returning re-executes the faulting
        // access, which then takes the default action (terminate with a core dump; the kernel
        // does not let a fault be ignored), as without this handler.
        // SAFETY: `old` is a valid sigaction; a null old-action pointer is allowed.
        unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
    } else if old.sa_sigaction == libc::SIG_DFL {
        // A sent SIGBUS whose default action is to terminate: there is no access to
        // re-execute, so restore the default and raise it again (SIGBUS is not blocked here:
        // the handler runs with SA_NODEFER).
        // SAFETY: as above; raise is async-signal-safe.
        unsafe {
            libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut());
            libc::raise(libc::SIGBUS);
        }
    }
    // A sent SIGBUS the process ignored: ignored.
}

pub(super) fn install() -> io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: an all-zero sigaction is valid; the fields are set below.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_sigbus as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
        let old = Box::into_raw(Box::new(
            // SAFETY: as above, all-zero is a valid sigaction to be overwritten.
            unsafe { std::mem::zeroed::<libc::sigaction>() },
        ));
        // SAFETY: `act` is initialised and `old` points to writable memory for the previous
        // action, which is leaked so the handler can read it for the life of the process.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &act, old) };
        if rc == -1 {
            result = Err(io::Error::last_os_error());
        } else {
            OLD_ACTION.store(old, Ordering::Release);
        }
    });
    result
}
