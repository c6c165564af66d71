//! Who may use a created object besides its owner: its permission bits and its group.
//!
//! Every creator in procom takes a mode (0600 unless asked otherwise, applied exactly whatever
//! the umask) and can give its object to a group (`set_group` on each owner type;
//! [`Options::group`](crate::Options::group) for what a binding receiver creates). The kernel
//! lets an unprivileged owner give a file to a group it belongs to only; System V objects it
//! lets their owner give to any group, so callers that act for a user should check membership
//! first ([`is_member`]).

use std::os::fd::AsFd;

use crate::error::{Error, ErrorKind};

/// The permission bits and group a creator gives its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) mode: u32,
    pub(crate) group: Option<u32>,
}

impl Access {
    /// 0600 and the creator's group: the default of every procom creator.
    pub(crate) const PRIVATE: Access = Access {
        mode: 0o600,
        group: None,
    };
}

/// Refuses bits beyond the permission bits (set-id, sticky, or not a mode at all).
pub(crate) fn check_mode(mode: u32) -> Result<u32, Error> {
    if mode & !0o777 != 0 {
        return Err(Error::new(ErrorKind::InvalidInput).detail(format!(
            "mode {mode:#o} has bits beyond the permission bits 0777"
        )));
    }
    Ok(mode)
}

/// The error for a kernel's refusal to give an object to group `gid`.
pub(crate) fn group_error(e: std::io::Error, gid: u32) -> Error {
    if crate::error::kind_of(&e) == ErrorKind::PermissionDenied {
        return Error::new(ErrorKind::PermissionDenied).detail(format!(
            "may not be given to group {gid}: only its owner may, and only to a group the owner belongs to (root excepted)"
        ));
    }
    Error::os(&format!("give it to group {gid}"), e)
}

/// Gives the file behind `fd` (which may be an `O_PATH` descriptor) to group `gid`.
///
/// `u32::MAX` (-1) is no group: to the kernel it means "leave the group as it is".
pub(crate) fn chown_fd(fd: impl AsFd, gid: u32) -> Result<(), Error> {
    if gid == u32::MAX {
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail("4294967295 (-1) is not a group id: the kernel takes it to mean no change"));
    }
    rustix::fs::chownat(
        fd,
        "",
        None,
        Some(rustix::fs::Gid::from_raw(gid)),
        rustix::fs::AtFlags::EMPTY_PATH,
    )
    .map_err(|e| group_error(e.into(), gid))
}

/// Whether this process is in group `gid` (its effective group or a supplementary one), so
/// that it may give a file it owns to that group without privilege.
pub fn is_member(gid: u32) -> bool {
    rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// The id of the group `name` (looked up as the C library does, `/etc/group` or another
/// configured source), or `None` when no group has that name.
#[doc(alias = "getgrnam")]
pub fn group_id(name: &str) -> Result<Option<u32>, Error> {
    procom_sys::ids::group_id(name)
        .map_err(|e| Error::os("look up the group", e).object(format!("group {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// -1 is refused as an error (rustix would panic on it), and the file keeps its group.
    #[test]
    fn group_minus_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("procom-access-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let file = std::fs::File::create(&dir).unwrap();
        let r = chown_fd(&file, u32::MAX);
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
