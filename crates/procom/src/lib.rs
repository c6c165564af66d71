//! procom: every Linux inter-process communication mechanism, real and fast, behind one safe
//! API.
//!
//! - [`Sender`] / [`Receiver`]: byte messages over any [`endpoint`] — `-`, `fifo:`,
//!   `mq:`, `msg:`, `shm:`, `unix:`, `unixgram:`, `tcp:`, `udp:` — with blocking, `try_`,
//!   `_timeout` and `_deadline` forms; [`typed`] for serde types; [`framing`] defines how
//!   messages travel over byte streams.
//! - One module per mechanism: [`pipe`] (anonymous pipes, children wired to them,
//!   pipelines), [`fifo`] (named pipes), [`mq`] and [`msg`] (POSIX and System V message
//!   queues), [`shm`] (shared memory) and [`sem`] (semaphores), [`signal`], [`socket`]; and
//!   [`child`] for waiting on a peer process with a deadline.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! let dir = std::env::temp_dir().join(format!("procom-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let ep = format!("fifo:{}/jobs", dir.display());
//! let mut rx = procom::Receiver::bind(&ep)?;        // creates the FIFO, removes it on drop
//! let writer = std::thread::spawn(move || -> Result<(), procom::Error> {
//!     let mut tx = procom::Sender::connect(&ep)?;   // waits for the reader, as a FIFO writer does
//!     tx.send(b"hello").map_err(|e| e.into_error())
//! });
//! assert_eq!(rx.recv()?, b"hello");
//! writer.join().unwrap()?;
//! drop(rx);
//! std::fs::remove_dir(&dir).unwrap();
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod budget;
mod channel;
pub mod child;
mod cleanup;
pub mod endpoint;
pub mod error;
pub mod fifo;
mod flavor;
pub mod framing;
pub mod mq;
pub mod msg;
mod net;
pub mod pipe;
pub mod sem;
pub mod shm;
pub mod signal;
pub mod socket;
mod stream;
pub mod typed;
mod wait;

pub use budget::Budget;
pub use channel::{Options, Receiver, Sender, ToEndpoint};
pub use cleanup::Cleanup;
pub use endpoint::Endpoint;
pub use error::{Error, ErrorKind, SendError};
pub use framing::Framing;
