//! [`Budget`]: one memory allowance for the partly received messages of many connections.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::{Error, ErrorKind};

/// What every stream receiver may buffer without asking its budget: two read chunks.
pub(crate) const FREE_BYTES: usize = 128 * 1024;

/// One memory allowance shared by the receivers of many connections (a server's clients).
///
/// The per-message limit ([`Options::max_message`](crate::Options::max_message)) bounds one
/// message; a budget bounds them all together: many slow clients that each announce a large
/// message and send most of it cannot make the server hold more than the budget. Give the
/// same `Budget` to every connection through [`Options::budget`](crate::Options::budget).
///
/// Each receiver buffers up to 128 KiB on its own; beyond that its buffer is charged here and
/// released as soon as the buffer is empty again. A message whose length prefix announces its
/// size reserves all of it at once: if the budget has no room, the receiver stops reading from
/// that connection (the sender's writes block — back-pressure) until other messages complete
/// and release theirs, or the receive deadline passes ([`ErrorKind::LimitReached`]). A message
/// larger than the whole budget, and a line (no length known in advance) that finds no room,
/// are refused at once with [`ErrorKind::LimitReached`].
#[derive(Debug, Clone)]
pub struct Budget(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    limit: usize,
    used: Mutex<usize>,
    room: Condvar,
}

impl PartialEq for Budget {
    fn eq(&self, other: &Budget) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Budget {}

impl Budget {
    /// A budget of `bytes` for everything buffered beyond each receiver's own 128 KiB.
    pub fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Shared {
            limit: bytes,
            used: Mutex::new(0),
            room: Condvar::new(),
        }))
    }

    /// The allowance in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// How many bytes receivers hold charged now.
    pub fn in_use(&self) -> usize {
        *self.used()
    }

    fn used(&self) -> MutexGuard<'_, usize> {
        self.0.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` more from the budget for a receiver already holding `held`: waits for
    /// room until `deadline` when `wait` (a message whose size is known), fails at once
    /// otherwise, and at once also when the two together exceed the whole budget (no waiting
    /// can make room for them).
    pub(crate) fn take(
        &self,
        bytes: usize,
        held: usize,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<Charge, Error> {
        let limit = self.0.limit;
        let refuse = |why: &str| {
            Error::new(ErrorKind::LimitReached).detail(format!(
                "{why}: a message needing {bytes} more bytes does not fit the memory budget of {limit} bytes shared by all connections"
            ))
        };
        if held.saturating_add(bytes) > limit {
            return Err(refuse("refused"));
        }
        let mut used = self.used();
        while limit - *used < bytes {
            if !wait {
                return Err(refuse("refused while other connections hold the rest"));
            }
            used = match deadline {
                None => self.0.room.wait(used).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(refuse(
                            "not received: other connections held the budget until the deadline",
                        ));
                    }
                    self.0
                        .room
                        .wait_timeout(used, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        *used += bytes;
        Ok(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Budget,
    bytes: usize,
}

impl Charge {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes `other`'s bytes part of this charge.
    pub(crate) fn absorb(&mut self, mut other: Charge) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut used = self.budget.used();
        *used = used.saturating_sub(self.bytes);
        drop(used);
        self.budget.0.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn charges_are_bounded_and_returned() {
        let b = Budget::new(100);
        let a = b.take(60, 0, false, None).unwrap();
        assert_eq!(b.in_use(), 60);
        let e = b.take(50, 0, false, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitReached);
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(
            b.take(50, 0, true, soon).unwrap_err().kind(),
            ErrorKind::LimitReached
        );
        assert_eq!(
            b.take(101, 0, true, None).unwrap_err().kind(),
            ErrorKind::LimitReached
        );
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.take(50, 0, true, None).map(|c| c.bytes()))
        };
        drop(a); // the waiter gets its room
        assert_eq!(waiter.join().unwrap().unwrap(), 50);
        assert_eq!(b.in_use(), 0);
    }
}
