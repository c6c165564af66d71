//! The library's errors: one [`Error`] type whose [`ErrorKind`] tells the cases apart, and
//! [`SendError`], which hands a message that could not be sent back to the caller.
//!
//! Every error displays as one plain sentence that names the object it concerns, so a program
//! can show it to a person as it is.

use std::fmt;
use std::io;

/// What went wrong, in a form a program can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The channel has no room for the message now (`try_send`).
    Full,
    /// No message is waiting (`try_recv`).
    Empty,
    /// The deadline passed before the operation could complete.
    Timeout,
    /// The other side closed its end or exited; nothing more will arrive or be taken.
    PeerGone,
    /// A message is over the size limit; [`Error::limit`] and [`Error::size`] give the numbers.
    TooLarge,
    /// Bytes from the peer do not form a valid message (bad framing, truncated, undecodable).
    Malformed,
    /// Shared state was found inconsistent (reserved for shared-memory flavors).
    Corrupted,
    /// The operating system refused access.
    PermissionDenied,
    /// The object exists already and was not adopted.
    AlreadyExists,
    /// The object does not exist.
    NotFound,
    /// A FIFO has no process reading it, and the caller asked not to wait for one.
    NoReader,
    /// The path names something of the wrong type (a regular file where a FIFO was expected, a
    /// symlink where none may be followed).
    WrongType,
    /// The endpoint text does not follow the grammar.
    InvalidEndpoint,
    /// The mechanism is part of the grammar but has no implementation yet.
    NotImplemented,
    /// An argument is out of range (not caused by a peer).
    InvalidInput,
    /// A kernel or per-user limit leaves no room for what was asked (the sentence names the
    /// limit and how to raise it): not a mistake in the request, which may succeed elsewhere
    /// or later. Also a message a peer announced on a byte stream that no memory can be found
    /// for (the process's RLIMIT_AS, or the system's memory): it stays in the stream, whole,
    /// for the next receive.
    LimitReached,
    /// Any other operating-system error; [`std::error::Error::source`] has it.
    Io,
}

impl ErrorKind {
    fn default_text(self) -> &'static str {
        match self {
            ErrorKind::Full => "the channel is full",
            ErrorKind::Empty => "no message is waiting",
            ErrorKind::Timeout => "the deadline passed",
            ErrorKind::PeerGone => "the peer has closed its end or exited",
            ErrorKind::TooLarge => "the message is too large",
            ErrorKind::Malformed => "the peer sent bytes that are not a valid message",
            ErrorKind::Corrupted => "the shared state is corrupted",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotFound => "does not exist",
            ErrorKind::NoReader => "no process has it open for reading",
            ErrorKind::WrongType => "is not of the expected type",
            ErrorKind::InvalidEndpoint => "is not a valid endpoint",
            ErrorKind::NotImplemented => "is not implemented yet",
            ErrorKind::InvalidInput => "invalid argument",
            ErrorKind::LimitReached => "a system limit is reached",
            ErrorKind::Io => "input/output error",
        }
    }
}

/// Defines [`ObjectKind`] and [`ObjectKind::ALL`] from one list, so that no kind is ever
/// missing from `ALL`.
macro_rules! object_kinds {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $v:ident,)+ }) => {
        $(#[$meta])*
        pub enum $name { $($(#[$vmeta])* $v,)+ }

        impl $name {
            /// Every kind, in declaration order: for a program (or a test) that must treat
            /// each kind and wants to learn of a new one.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
        }
    };
}

object_kinds! {
/// What kind of object an error concerns, for a program that reacts to it (a hint, a retry)
/// without reading the text: [`Error::object_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// Standard input or output (`-`).
    Stdio,
    /// A byte-stream descriptor handed to `Sender::from_fd` or `Receiver::from_fd`.
    Descriptor,
    /// A named pipe (`fifo:`).
    Fifo,
    /// A POSIX message queue (`mq:`).
    PosixQueue,
    /// A System V message queue (`msg:`).
    SysvQueue,
    /// The file a System V key is derived from (`ftok`).
    KeyFile,
    /// A shared-memory channel (`shm:`).
    ShmChannel,
    /// A Unix stream socket (`unix:`).
    UnixSocket,
    /// A Unix datagram socket (`unixgram:`).
    UnixDatagram,
    /// A Unix sequenced-packet socket (`unixpacket:`).
    UnixPacket,
    /// A TCP socket (`tcp:`).
    Tcp,
    /// A UDP socket (`udp:`).
    Udp,
    /// A process or process group (a signal's target).
    Process,
}
}

/// A procom error: a kind, the object it concerns, a sentence, and the OS error if any.
pub struct Error {
    kind: ErrorKind,
    object: Option<String>,
    object_kind: Option<ObjectKind>,
    detail: Option<String>,
    /// For `TooLarge`: the message's size and the limit it exceeded.
    too_large: Option<(u64, u64)>,
    fragment: Option<Box<[u8]>>,
    source: Option<io::Error>,
}

impl Error {
    /// An error of `kind` with the kind's default sentence.
    pub fn new(kind: ErrorKind) -> Error {
        Error {
            kind,
            object: None,
            object_kind: None,
            detail: None,
            too_large: None,
            fragment: None,
            source: None,
        }
    }

    /// A message of `size` bytes is over `limit`.
    pub fn too_large(size: u64, limit: u64) -> Error {
        let mut e = Error::new(ErrorKind::TooLarge).detail(format!(
            "a {size}-byte message is over the {limit}-byte limit"
        ));
        e.too_large = Some((size, limit));
        e
    }

    /// An operating-system error met while doing `what` (for example "open it for writing");
    /// the kind is derived from the error number.
    pub fn os(what: &str, err: io::Error) -> Error {
        let kind = kind_of(&err);
        let detail = match kind {
            ErrorKind::NotFound => "does not exist".to_string(),
            ErrorKind::PermissionDenied => format!("permission denied when trying to {what}"),
            ErrorKind::PeerGone => "the peer has closed its end or exited".to_string(),
            ErrorKind::LimitReached => limit_sentence(what, &err),
            _ => format!("could not {what}: {err}"),
        };
        let mut e = Error::new(kind).detail(detail);
        e.source = Some(err);
        e
    }

    /// Names the object the error concerns (an endpoint, a path); shown first.
    #[must_use]
    pub fn object(mut self, object: impl fmt::Display) -> Error {
        if self.object.is_none() {
            self.object = Some(object.to_string());
        }
        self
    }

    /// Names the object the error concerns and what kind of object it is (unless an object
    /// was named already).
    #[must_use]
    pub fn object_of(mut self, kind: ObjectKind, object: impl fmt::Display) -> Error {
        if self.object.is_none() {
            self.object = Some(object.to_string());
            self.object_kind = Some(kind);
        }
        self
    }

    /// Replaces the default sentence.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The object the error concerns, if known.
    pub fn object_name(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// What kind of object [`Error::object_name`] names, where procom knows it.
    pub fn object_kind(&self) -> Option<ObjectKind> {
        self.object_kind
    }

    /// For [`ErrorKind::TooLarge`]: the limit that was exceeded, in bytes.
    pub fn limit(&self) -> Option<u64> {
        self.too_large.map(|(_, limit)| limit)
    }

    /// For [`ErrorKind::TooLarge`]: the size of the message that was refused, in bytes.
    pub fn size(&self) -> Option<u64> {
        self.too_large.map(|(size, _)| size)
    }

    /// For a byte stream read as lines ([`Framing::Lines`](crate::Framing::Lines)) that ended
    /// inside a line ([`ErrorKind::Malformed`]): the bytes after the last newline. They are
    /// not a whole message (the writer may have been cut off); here for a caller that wants
    /// to show or keep them anyway.
    pub fn fragment(&self) -> Option<&[u8]> {
        self.fragment.as_deref()
    }

    /// Attaches the bytes of an unfinished line (see [`Error::fragment`]).
    #[must_use]
    pub(crate) fn with_fragment(mut self, bytes: &[u8]) -> Error {
        self.fragment = Some(bytes.into());
        self
    }

    /// The operating-system error behind this one, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

/// The error of removing a System V object (a `what`: "message queue") by its id:
/// an id no such object has (EINVAL, or EIDRM while it goes) is `NotFound`; EPERM says who may.
pub(crate) fn sysv_removal(e: io::Error, what: &str) -> Error {
    let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
    let mut err = match errno {
        Some(rustix::io::Errno::INVAL | rustix::io::Errno::IDRM) => Error::new(ErrorKind::NotFound)
            .detail(format!("no System V {what} has this id (ipcs lists them)")),
        Some(rustix::io::Errno::PERM) => Error::new(ErrorKind::PermissionDenied).detail(format!(
            "permission denied: only the {what}'s owner, its creator or root may remove it"
        )),
        _ => return Error::os("remove it", e),
    };
    err.source = Some(e);
    err
}

/// The sentence for an OS error that is a limit (see [`kind_of`]): which one, and the remedy.
fn limit_sentence(what: &str, err: &io::Error) -> String {
    let errno = err.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
    match errno {
        // An allocation refused: its error says for what, and what to do.
        None => format!("could not {what}: {err}"),
        Some(rustix::io::Errno::MFILE) => {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            let limit = limit.map_or("its limit".to_string(), |n| n.to_string());
            format!(
                "could not {what}: this process has as many descriptors open as RLIMIT_NOFILE allows ({limit}); close some, or raise the limit with ulimit -n"
            )
        }
        Some(rustix::io::Errno::NFILE) => format!(
            "could not {what}: the system has as many files open as fs.file-max allows; close some, or raise it as root with sysctl -w fs.file-max=N"
        ),
        _ => format!(
            "could not {what}: no space is left on the filesystem that holds it; remove what is no longer used there, or make it larger"
        ),
    }
}

/// Maps an OS error to the kind a caller matches on.
pub(crate) fn kind_of(err: &io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(code) => match rustix::io::Errno::from_raw_os_error(code) {
            rustix::io::Errno::NOENT => ErrorKind::NotFound,
            rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => ErrorKind::PermissionDenied,
            rustix::io::Errno::EXIST => ErrorKind::AlreadyExists,
            rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET | rustix::io::Errno::NOTCONN => {
                ErrorKind::PeerGone
            }
            rustix::io::Errno::NXIO => ErrorKind::NoReader,
            rustix::io::Errno::AGAIN => ErrorKind::Full,
            rustix::io::Errno::TIMEDOUT => ErrorKind::Timeout,
            rustix::io::Errno::MSGSIZE => ErrorKind::TooLarge,
            rustix::io::Errno::MFILE | rustix::io::Errno::NFILE | rustix::io::Errno::NOSPC => {
                ErrorKind::LimitReached
            }
            _ => ErrorKind::Io,
        },
        None => match err.kind() {
            io::ErrorKind::OutOfMemory => ErrorKind::LimitReached,
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::BrokenPipe => ErrorKind::PeerGone,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        },
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error::os("complete the operation", e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .detail
            .as_deref()
            .unwrap_or_else(|| self.kind.default_text());
        match &self.object {
            Some(object) => write!(f, "{object}: {text}"),
            None => f.write_str(text),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("message", &self.to_string());
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::PeerGone => io::ErrorKind::BrokenPipe,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Full | ErrorKind::Empty => io::ErrorKind::WouldBlock,
            ErrorKind::Malformed | ErrorKind::Corrupted => io::ErrorKind::InvalidData,
            ErrorKind::InvalidEndpoint | ErrorKind::InvalidInput | ErrorKind::TooLarge => {
                io::ErrorKind::InvalidInput
            }
            ErrorKind::NotImplemented => io::ErrorKind::Unsupported,
            ErrorKind::LimitReached => io::ErrorKind::QuotaExceeded,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// A message that could not be sent, handed back with the reason.
pub struct SendError<M> {
    message: M,
    error: Error,
}

impl<M> SendError<M> {
    pub(crate) fn new(message: M, error: Error) -> SendError<M> {
        SendError { message, error }
    }

    /// Takes the message back.
    pub fn into_message(self) -> M {
        self.message
    }

    /// The message that was not sent.
    pub fn message(&self) -> &M {
        &self.message
    }

    /// Why it was not sent.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Shorthand for `self.error().kind()`.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind
    }

    /// Drops the message and keeps the error.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<M> std::error::Error for SendError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<M> From<SendError<M>> for Error {
    fn from(e: SendError<M>) -> Error {
        e.error
    }
}

/// The result of library calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_kinds_and_read_as_one_sentence() {
        let e = Error::os(
            "open it for writing",
            io::Error::from_raw_os_error(libc_eacces()),
        )
        .object("fifo:/x");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "fifo:/x: permission denied when trying to open it for writing"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn too_large_carries_numbers() {
        let e = Error::too_large(10, 4);
        assert_eq!(e.limit(), Some(4));
        assert_eq!(e.size(), Some(10));
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn send_error_hands_the_message_back() {
        let e = SendError::new(vec![1u8, 2, 3], Error::new(ErrorKind::Full));
        assert_eq!(e.kind(), ErrorKind::Full);
        assert_eq!(e.into_message(), vec![1, 2, 3]);
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }
}
