//! [`Wait`]: how long an operation may wait, the one value behind every blocking, `try_`,
//! `_timeout` and `_deadline` form.

use std::time::Instant;

/// How long a send or receive may wait for room or for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all (`try_`): a full channel is `Full`, an empty one `Empty`.
    Never,
    /// Until this instant: then `Timeout`.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// A deadline, or forever when there is none (a timeout too long to represent).
    pub(crate) fn until(deadline: Option<Instant>) -> Wait {
        deadline.map_or(Wait::Forever, Wait::Until)
    }

    /// The deadline to pass to a wait: now for [`Wait::Never`], none for [`Wait::Forever`].
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Never => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }

    /// Whether a wait that runs out means `Full`/`Empty` rather than `Timeout`.
    pub(crate) fn is_try(self) -> bool {
        self == Wait::Never
    }
}
