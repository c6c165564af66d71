//! [`AsyncListener`]: a `tcp:`/`unix:` server's listening socket, accepting async
//! connections.

use std::task::{Context, Poll};

use tokio::io::Interest;

use super::wake::Registered;
use crate::channel::Options;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind};
use crate::socket::{Listener, Peer};
use crate::{AsyncReceiver, AsyncSender};

/// A listening stream socket (`tcp:` or `unix:`) whose accepts are futures; each client is
/// an [`AsyncConnection`]. Wraps a [`Listener`] (its uid filter, socket file and cleanup
/// alike).
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
/// # rt.block_on(async {
/// use procom::{Endpoint, Options, aio::AsyncListener};
/// let mut server = AsyncListener::bind(&Endpoint::parse("tcp:127.0.0.1:0")?, &Options::default())?;
/// let at = server.local_endpoint();
/// let (tx, _rx) = procom::socket::connect(&at, &Options::default())?;
/// let mut conn = server.accept().await?;
/// let mut tx = procom::AsyncSender::new(tx);
/// tx.send(b"hello").await.map_err(|e| e.into_error())?;
/// assert_eq!(conn.receiver.recv().await?, b"hello");
/// # Ok(()) })
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncListener {
    inner: Listener,
    fd: Registered,
}

/// One accepted client: its async sender and receiver (on the same connection) and who it is.
#[derive(Debug)]
pub struct AsyncConnection {
    /// Sends to this client.
    pub sender: AsyncSender,
    /// Receives from this client.
    pub receiver: AsyncReceiver,
    /// Who the client is.
    pub peer: Peer,
}

impl AsyncListener {
    /// Binds and listens (see [`Listener::bind`]).
    pub fn bind(endpoint: &Endpoint, opts: &Options) -> Result<AsyncListener, Error> {
        Listener::bind(endpoint, opts).map(AsyncListener::new)
    }

    /// Makes `listener` async.
    pub fn new(listener: Listener) -> AsyncListener {
        AsyncListener {
            inner: listener,
            fd: Registered::new(Interest::READABLE),
        }
    }

    /// The listener underneath (its cleanup, its uid filter).
    pub fn get_mut(&mut self) -> &mut Listener {
        &mut self.inner
    }

    /// The endpoint actually bound (with the real port when 0 was asked for).
    pub fn local_endpoint(&self) -> Endpoint {
        self.inner.local_endpoint()
    }

    /// Waits for the next admitted client. Cancellation safe: dropped before it completes,
    /// it accepted no one.
    pub async fn accept(&mut self) -> Result<AsyncConnection, Error> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls [`AsyncListener::accept`].
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<AsyncConnection, Error>> {
        loop {
            match self.inner.try_accept() {
                Ok(c) => {
                    return Poll::Ready(Ok(AsyncConnection {
                        sender: AsyncSender::new(c.sender),
                        receiver: AsyncReceiver::new(c.receiver),
                        peer: c.peer,
                    }));
                }
                Err(e) if e.kind() == ErrorKind::Empty => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = std::task::ready!(self.fd.poll_ready(cx, self.inner.fd())) {
                return Poll::Ready(Err(
                    Error::os("wait for a client", e).object(self.inner.local_endpoint())
                ));
            }
        }
    }
}
