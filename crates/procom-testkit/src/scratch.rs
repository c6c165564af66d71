//! Named objects: unique names, [`Scratch`] directories with their leak check, and what a
//! hostile local user plants in a shared directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Outcome, as_nobody};

/// A name no other test, run or process uses: `prefix-PID-N-NANOS`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory for one test's named objects. It is world-searchable (0755) so a child
/// running as an unprivileged uid reaches the objects inside and meets only their own modes.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory under the system temporary directory.
    pub fn new(prefix: &str) -> Result<Scratch, String> {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        // The umask may have removed bits; set them exactly.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The leak check: fails if anything is left in the directory, then removes it.
    pub fn finish(self) -> Outcome {
        let left: Vec<String> = std::fs::read_dir(&self.path)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("leaked into {}: {left:?}", self.path.display()))
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a hostile local user plants at a name in a shared directory (`/dev/shm`, `/tmp`).
#[derive(Debug, Clone, Copy)]
pub enum Plant<'a> {
    /// A symbolic link to this path.
    Symlink(&'a Path),
    /// A FIFO (opening it for reading would block until a writer comes).
    Fifo,
    /// A directory.
    Dir,
    /// An empty regular file anyone may write (mode 0666).
    EmptyFile,
    /// A regular file anyone may write (mode 0666) holding [`PLANTED`].
    File,
    /// A hard link to this file (the planting user's own).
    HardLink(&'a Path),
    /// A socket file anyone may connect to (mode 0777) whose server is gone.
    Socket,
}

/// What a planted [`Plant::File`] holds.
pub const PLANTED: &str = "planted by another user";

/// An object planted by [`plant`]; removed when dropped.
#[derive(Debug)]
pub struct Planted {
    path: PathBuf,
    dir: bool,
}

impl Planted {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is still there, as planted (never following it).
    pub fn intact(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            let t = m.file_type();
            if self.dir {
                t.is_dir()
            } else {
                t.is_symlink()
                    || t.is_file()
                    || std::os::unix::fs::FileTypeExt::is_fifo(&t)
                    || std::os::unix::fs::FileTypeExt::is_socket(&t)
            }
        })
    }

    /// Removes it and checks it is gone.
    pub fn remove(mut self) -> Outcome {
        let r = self.remove_now();
        std::mem::forget(self);
        r
    }

    fn remove_now(&mut self) -> Outcome {
        let r = if self.dir {
            std::fs::remove_dir(&self.path)
        } else {
            std::fs::remove_file(&self.path)
        };
        r.map_err(|e| format!("removing the planted {}: {e}", self.path.display()))?;
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(format!("{} is still there", self.path.display())),
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// Plants `what` at `path` the way a hostile local user would: a real `ln -s`, `mkfifo` or
/// `mkdir` run as uid 65534 when this process is root (as this user otherwise: what is
/// planted is the same, only its owner differs).
pub fn plant(path: &Path, what: Plant<'_>) -> Result<Planted, String> {
    let mut cmd = match what {
        Plant::Symlink(target) => {
            let mut c = Command::new("ln");
            c.arg("-s").arg(target).arg(path);
            c
        }
        Plant::Fifo => {
            let mut c = Command::new("mkfifo");
            c.arg(path);
            c
        }
        Plant::Dir => {
            let mut c = Command::new("mkdir");
            c.arg(path);
            c
        }
        Plant::EmptyFile => {
            let mut c = Command::new("sh");
            c.args(["-c", "umask 0 && : > \"$1\"", "sh"]).arg(path);
            c
        }
        Plant::File => {
            let mut c = Command::new("sh");
            c.args(["-c", "umask 0 && printf %s \"$2\" > \"$1\"", "sh"])
                .arg(path)
                .arg(PLANTED);
            c
        }
        Plant::HardLink(target) => {
            let mut c = Command::new("ln");
            c.arg(target).arg(path);
            c
        }
        Plant::Socket => return plant_socket(path),
    };
    let _ = as_nobody(&mut cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("planting {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "planting {}: {}; {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Planted {
        path: path.to_path_buf(),
        dir: matches!(what, Plant::Dir),
    })
}

/// A stale socket file: bound here, its server gone at once, given to uid 65534 (when this
/// process is root) and opened to everyone.
fn plant_socket(path: &Path) -> Result<Planted, String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("planting a socket at {}: {e}", path.display());
    drop(std::os::unix::net::UnixListener::bind(path).map_err(fail)?);
    let planted = Planted {
        path: path.to_path_buf(),
        dir: false,
    };
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(path, Some(65534), Some(65534)).map_err(fail)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(fail)?;
    Ok(planted)
}
