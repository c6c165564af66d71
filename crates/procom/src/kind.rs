//! What kind of object an endpoint names, for errors ([`ObjectKind`]).

use crate::endpoint::Endpoint;
use crate::error::ObjectKind;

/// What kind of object an endpoint names, for errors.
pub(crate) fn kind_of(ep: &Endpoint) -> ObjectKind {
    match ep {
        Endpoint::Stdio => ObjectKind::Stdio,
        Endpoint::Fifo { .. } => ObjectKind::Fifo,
        Endpoint::Mq { .. } => ObjectKind::PosixQueue,
        Endpoint::Msg { .. } => ObjectKind::SysvQueue,
        Endpoint::Shm { .. } => ObjectKind::ShmChannel,
        Endpoint::Unix { .. } => ObjectKind::UnixSocket,
        Endpoint::UnixGram { .. } => ObjectKind::UnixDatagram,
        Endpoint::UnixPacket { .. } => ObjectKind::UnixPacket,
        Endpoint::Tcp { .. } => ObjectKind::Tcp,
        Endpoint::Udp { .. } => ObjectKind::Udp,
    }
}
