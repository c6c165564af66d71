//! Async channels on tokio (feature `tokio`).
//!
//! TODO docs
mod receiver;
mod wake;

pub use receiver::AsyncReceiver;
pub use sender::AsyncSender;
mod sender;
pub(crate) mod typed;
