//! Named POSIX semaphores (`sem_open`): `Semaphore`, its guard, and removal by name.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use procom_sys::sem::NamedSemaphore;

use super::{post_error, waited};
use crate::error::{Error, ErrorKind};
use crate::shm::{DEFAULT_MODE, check_name};

/// A named POSIX semaphore.
#[derive(Debug)]
pub struct Semaphore {
    sem: Arc<NamedSemaphore>,
    name: String,
    label: String,
    owner: bool,
    #[cfg(feature = "tokio")]
    waiter: super::waiter::Lazy<super::waiter::Posix<NamedSemaphore>>,
}

impl Semaphore {
    /// Creates `name` (like `/lock`) with `value`, mode 0600, exclusively. The creator
    /// removes the name when dropped unless [`Semaphore::keep`] is called.
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, value: u32) -> Result<Semaphore, Error> {
        Semaphore::create_with_mode(name, value, DEFAULT_MODE)
    }

    /// Creates `name` as [`Semaphore::create`] does, with exactly the permission bits `mode`
    /// (like 0o660: its group may wait and post too), whatever the umask.
    #[doc(alias = "sem_open")]
    pub fn create_with_mode(name: &str, value: u32, mode: u32) -> Result<Semaphore, Error> {
        check_name(name, "semaphore")?;
        let label = format!("semaphore {name}");
        let mode = crate::access::check_mode(mode).map_err(|e| e.object(&label))?;
        // Created 0600 at most (the umask can clear bits, never add any), then set exactly to
        // `mode` through the file glibc keeps in /dev/shm: never more open than asked.
        let sem = NamedSemaphore::create(name, mode & DEFAULT_MODE, value).map_err(|e| match e.raw_os_error() {
            Some(c) if c == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                .detail("already exists; procom does not adopt an existing semaphore (remove it, or open it instead)")
                .object(&label),
            Some(c) if c == rustix::io::Errno::INVAL.raw_os_error() => Error::new(ErrorKind::InvalidInput)
                .detail(format!("{value} is above the largest semaphore value (SEM_VALUE_MAX)"))
                .object(&label),
            _ => Error::os("create it", e).object(&label),
        })?;
        let sem = Semaphore {
            sem: Arc::new(sem),
            name: name.to_string(),
            label,
            owner: true,
            #[cfg(feature = "tokio")]
            waiter: super::waiter::Lazy::new(),
        };
        match set_mode(&sem_path(name), mode) {
            // 0600 is the most the umask could have left: best effort there.
            Err(_) if mode == DEFAULT_MODE => {}
            // Dropping `sem` removes the name again.
            Err(e) => return Err(e.object(&sem.label)),
            Ok(()) => {}
        }
        Ok(sem)
    }

    /// Gives the semaphore (its file in /dev/shm) to group `gid`; its owner and mode stay.
    /// Only its owner may, and only to a group it belongs to unless privileged
    /// ([`ErrorKind::PermissionDenied`]).
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        open_file(&sem_path(&self.name))
            .and_then(|fd| crate::access::chown_fd(&fd, gid))
            .map_err(|e| e.object(&self.label))
    }

    /// Opens the existing semaphore `name`.
    pub fn open(name: &str) -> Result<Semaphore, Error> {
        check_name(name, "semaphore")?;
        let label = format!("semaphore {name}");
        // Checked before glibc maps it; a file that is missing or not ours to read is
        // sem_open's to report, in its own words.
        if let Err(e) = open_file(&sem_path(name))
            && matches!(e.kind(), ErrorKind::WrongType | ErrorKind::Corrupted)
        {
            return Err(e.object(&label));
        }
        let sem = NamedSemaphore::open(name).map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(Semaphore {
            sem: Arc::new(sem),
            name: name.to_string(),
            label,
            owner: false,
            #[cfg(feature = "tokio")]
            waiter: super::waiter::Lazy::new(),
        })
    }

    /// P: waits until the value is positive, then decrements it.
    #[doc(alias = "P")]
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<(), Error> {
        waited(self.sem.wait(None), ErrorKind::Timeout, &self.label)
    }

    /// P without waiting: [`ErrorKind::Empty`] if the value is 0.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<(), Error> {
        waited(
            self.sem.wait(Some(Duration::ZERO)),
            ErrorKind::Empty,
            &self.label,
        )
    }

    /// P waiting at most `timeout`: [`ErrorKind::Timeout`] if the value stayed 0.
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Error> {
        if timeout.is_zero() {
            return waited(
                self.sem.wait(Some(Duration::ZERO)),
                ErrorKind::Timeout,
                &self.label,
            );
        }
        waited(
            self.sem.wait(Some(timeout)),
            ErrorKind::Timeout,
            &self.label,
        )
    }

    /// P waiting until `deadline` at most: [`ErrorKind::Timeout`] if the value stayed 0.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Error> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// V: increments the value, waking one waiter.
    #[doc(alias = "V")]
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<(), Error> {
        self.sem
            .post()
            .map_err(|e| post_error(e).object(&self.label))
    }

    /// The current value.
    pub fn value(&self) -> Result<i32, Error> {
        self.sem
            .value()
            .map_err(|e| Error::os("read its value", e).object(&self.label))
    }

    /// P, returning a guard that does V when dropped (mutual exclusion with an initial 1).
    pub fn acquire(&self) -> Result<SemGuard<'_>, Error> {
        self.wait()?;
        Ok(SemGuard { sem: self })
    }

    /// P without blocking the thread (feature `tokio`): waits until the value is positive,
    /// then decrements it, as [`Semaphore::wait`] does (see the [module docs](super) for how).
    ///
    /// Cancellation-safe: if the future is dropped before it completes, nothing was taken.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) -> Result<(), Error> {
        self.wait_async_until(None).await
    }

    async_waits!(label);

    /// P without blocking the thread, returning the guard [`Semaphore::acquire`] returns (V
    /// when dropped).
    ///
    /// Cancellation-safe: if the future is dropped before it completes, nothing was taken.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use procom::sem::Semaphore;
    /// let name = format!("/procom-doc-sem-async-{}", std::process::id());
    /// let mutex = Semaphore::create(&name, 1)?;
    /// {
    ///     let _inside = mutex.acquire_async().await?; // P, without blocking the runtime
    ///     assert_eq!(mutex.value()?, 0);
    /// } // V on drop
    /// assert_eq!(mutex.value()?, 1);
    /// # Ok(()) })
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn acquire_async(&self) -> Result<SemGuard<'_>, Error> {
        self.wait_async().await?;
        Ok(SemGuard { sem: self })
    }

    /// The name, like `/lock`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the name in place when this handle is dropped (it stays until removed or a
    /// reboot); returns the handle.
    pub fn keep(mut self) -> Semaphore {
        self.owner = false;
        self
    }

    /// Removes the name now (processes that have it open keep using it).
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        remove(&self.name)
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        if self.owner {
            let _ = procom_sys::sem::sem_unlink(&self.name);
        }
    }
}

/// Where glibc keeps the named semaphore `name` (`/lock` is `/dev/shm/sem.lock`).
fn sem_path(name: &str) -> String {
    format!("/dev/shm/sem.{}", name.strip_prefix('/').unwrap_or(name))
}

/// Opens the semaphore file at `path` without following a symbolic link or blocking, and
/// checks that it is a regular file large enough to hold a semaphore: glibc's `sem_open` maps
/// the file as it is, and a shorter one (an empty file planted by another user) would kill
/// the process with SIGBUS at the first `sem_post`.
fn open_file(path: &str) -> Result<OwnedFd, Error> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => crate::shm::planted(FileType::Symlink, "semaphore"),
        rustix::io::Errno::ISDIR => crate::shm::planted(FileType::Directory, "semaphore"),
        rustix::io::Errno::NXIO => crate::shm::planted(FileType::Socket, "semaphore"),
        e => Error::os("open its file", e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::os("read its status", e.into()))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(crate::shm::planted(ft, "semaphore"));
    }
    let need = procom_sys::sem::SEM_T_SIZE;
    if u64::try_from(st.st_size).is_ok_and(|size| size < need as u64) {
        return Err(Error::new(ErrorKind::Corrupted).detail(format!(
            "its file is {} bytes, too small to hold a semaphore ({need} bytes); someone may have planted it: remove it if it is not yours",
            st.st_size
        )));
    }
    Ok(fd)
}

/// Sets the mode of the semaphore file at `path` through a descriptor that followed no
/// symbolic link and is a regular file.
fn set_mode(path: &str, mode: u32) -> Result<(), Error> {
    let fd = open_file(path)?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| Error::os("set its mode", e.into()))
}

/// Removes the named semaphore `name`.
///
/// Only a semaphore (a regular file in /dev/shm) is removed: a symbolic link, FIFO or
/// directory someone planted at its place is [`ErrorKind::WrongType`] and stays.
#[doc(alias = "sem_unlink")]
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name, "semaphore")?;
    let label = format!("semaphore {name}");
    crate::shm::check_removable(&sem_path(name), "semaphore").map_err(|e| e.object(&label))?;
    procom_sys::sem::sem_unlink(name).map_err(|e| Error::os("remove it", e).object(&label))
}

/// Holds a semaphore taken with `acquire`; posts it back on drop.
#[derive(Debug)]
#[must_use = "dropping the guard releases the semaphore at once"]
pub struct SemGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.post();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P with a deadline: a passed deadline on 0 is a timeout; a posted value is taken.
    #[test]
    fn wait_deadline_times_out_then_takes() {
        let name = format!("/procom-unit-sem-{}", std::process::id());
        let sem = Semaphore::create(&name, 0).unwrap();
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(
            sem.wait_deadline(soon).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        sem.post().unwrap();
        sem.wait_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(sem.value().unwrap(), 0);
    }

    /// The async waits can move between threads (tokio::spawn needs it).
    #[cfg(feature = "tokio")]
    #[test]
    fn async_waits_are_send() {
        fn send<T: Send>(_: T) {}
        let name = format!("/procom-unit-sem-send-{}", std::process::id());
        let sem = Semaphore::create(&name, 0).unwrap();
        send(sem.wait_async());
        send(sem.acquire_async());
        send(sem.wait_async_deadline(Instant::now()));
        let set = super::super::SemSet::create(&crate::endpoint::SysvKey::Key(0), &[0]).unwrap();
        send(set.apply_async(&[super::super::Op::wait(0)]));
    }
}
