use std::process::{Command, Stdio};

/// One precondition: `None` when met, or why not.
pub struct Need {
    what: String,
    check: Box<dyn Fn() -> Option<String> + Send>,
}

impl std::fmt::Debug for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl Need {
    /// Why the need is unmet, or `None` when it is met.
    pub fn unmet(&self) -> Option<String> {
        (self.check)().map(|why| format!("needs {}: {why}", self.what))
    }
}

fn need(what: &str, check: impl Fn() -> Option<String> + Send + 'static) -> Need {
    Need {
        what: what.to_string(),
        check: Box::new(check),
    }
}

/// Root: to run a child as the unprivileged uid 65534 ([`crate::as_nobody`]).
pub fn root() -> Need {
    need("root", || {
        (!is_root()).then(|| "not running as root, so no child can switch to uid 65534".into())
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An executable named `name` on the `PATH`.
pub fn tool(name: &'static str) -> Need {
    need(name, move || {
        (!on_path(name)).then(|| "it is not on the PATH".to_string())
    })
}

/// Network namespaces: root, iproute2's `ip`, and the kernel letting this process make one.
pub fn netns() -> Need {
    need("network namespaces", || {
        namespace_probe(&["ip", "unshare"], &["--net", "true"])
    })
}

/// PID namespaces: root, util-linux's `unshare`, and the kernel letting this process make one.
pub fn pidns() -> Need {
    need("PID namespaces", || {
        namespace_probe(&["unshare"], &["--pid", "--fork", "--kill-child", "true"])
    })
}

/// IPC and mount namespaces of its own (fresh System V and POSIX queue limits, a private
/// /dev/shm): root, util-linux's `unshare`, and the kernel letting this process make them.
pub fn ipc_mount_ns() -> Need {
    need("IPC and mount namespaces", || {
        namespace_probe(
            &["unshare"],
            &["--ipc", "--mount", "--propagation", "private", "true"],
        )
    })
}

fn namespace_probe(tools: &[&str], unshare: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    if let Some(t) = tools.iter().find(|t| !on_path(t)) {
        return Some(format!("{t} is not on the PATH"));
    }
    match Command::new("unshare")
        .args(unshare)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "they cannot be created here (unshare {}: {})",
            unshare.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("unshare: {e}")),
    }
}

/// Whether an executable file named `name` is in a directory of the `PATH`.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
