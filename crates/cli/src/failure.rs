//! How a command fails: an error with the exit code it maps to, and the exit codes themselves
//! (documented in the README and relied on by scripts).

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const OTHER: u8 = 1;
    /// Bad input.
    pub const BAD_INPUT: u8 = 2;
    /// Preflight found errors.
    pub const PREFLIGHT: u8 = 3;
    /// Stopped at a gate, or paused.
    pub const GATE: u8 = 4;
    /// Stopped by a failure.
    pub const FAILED: u8 = 5;
    /// Interrupted by SIGINT (Ctrl-C), the lock released: 128 + 2, as shells report it.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM (a drained node, a deleted pod, `kill`), the lock released.
    pub const TERMINATED: u8 = 143;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// The error chain.
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: nothing was changed.
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: exit::BAD_INPUT,
            error: error.into(),
        }
    }

    /// Anything else.
    pub fn other(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: exit::OTHER,
            error: error.into(),
        }
    }

    /// A session refusing (bad input) or failing.
    pub fn session(e: executor::session::SessionError) -> Self {
        if e.is_bad_input() {
            Self::bad_input(e)
        } else {
            Self::other(e)
        }
    }
}
