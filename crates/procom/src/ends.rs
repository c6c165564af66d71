//! The ends of a pipe or FIFO: [`PipeReader`] and [`PipeWriter`], plain `Read`/`Write` over a
//! descriptor. A write to a pipe whose reader has gone is `BrokenPipe`, never SIGPIPE.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::Stdio;

use rustix::io::Errno;

/// The read end of a pipe or FIFO.
#[derive(Debug)]
pub struct PipeReader {
    fd: OwnedFd,
}

/// The write end of a pipe or FIFO.
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
    sigpipe_ignored: bool,
}

impl PipeReader {
    /// Another handle to the same read end.
    pub fn try_clone(&self) -> io::Result<PipeReader> {
        Ok(PipeReader::from(self.fd.try_clone()?))
    }
}

impl PipeWriter {
    /// Another handle to the same write end.
    pub fn try_clone(&self) -> io::Result<PipeWriter> {
        Ok(PipeWriter::from(self.fd.try_clone()?))
    }
}

fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

fn write_fd(fd: BorrowedFd<'_>, buf: &[u8], sigpipe_ignored: bool) -> io::Result<usize> {
    let attempt = || loop {
        match rustix::io::write(fd, buf) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    };
    if sigpipe_ignored {
        attempt()
    } else {
        procom_sys::sigpipe::without_sigpipe(attempt)
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_fd(), buf)
    }
}

impl Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_fd(), buf)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_fd(self.fd.as_fd(), buf, self.sigpipe_ignored)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_fd(self.fd.as_fd(), buf, self.sigpipe_ignored)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! fd_conversions {
    ($t:ty) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }
        impl From<$t> for OwnedFd {
            fn from(p: $t) -> OwnedFd {
                p.fd
            }
        }
        impl From<$t> for Stdio {
            fn from(p: $t) -> Stdio {
                Stdio::from(p.fd)
            }
        }
    };
}
fd_conversions!(PipeReader);
fd_conversions!(PipeWriter);

impl From<OwnedFd> for PipeReader {
    fn from(fd: OwnedFd) -> PipeReader {
        PipeReader { fd }
    }
}

impl From<OwnedFd> for PipeWriter {
    fn from(fd: OwnedFd) -> PipeWriter {
        PipeWriter {
            fd,
            sigpipe_ignored: procom_sys::sigpipe::sigpipe_ignored().unwrap_or(false),
        }
    }
}
