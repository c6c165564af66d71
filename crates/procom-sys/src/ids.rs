//! User and group names, through the C library (so NSS sources such as LDAP are consulted).
//!
//! # References
//! - [`getgrnam_r(3)`](https://man7.org/linux/man-pages/man3/getgrnam_r.3.html)

use std::ffi::CString;
use std::io;

/// The id of the group called `name`, or `None` if there is no such group.
#[doc(alias = "getgrnam_r")]
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `c` is a valid C string; `grp`, `buf` (with its true length) and `found` are
        // writable and live for the call; getgrnam_r writes only within them.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                grp.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            // SAFETY: on success with a result, `found` points to `grp`, which it filled in.
            0 => return Ok(Some(unsafe { (*found).gr_gid })),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            libc::EINTR => {}
            // "Not found" comes back as one of these from some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_group_0_and_nonsense_is_none() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("procom-no-such-group-xyz").unwrap(), None);
    }
}
