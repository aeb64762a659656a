//! The signals that stop a run: SIGTERM (a drained node, a deleted pod, `kill`) and SIGINT
//! (Ctrl-C). The run then stops where it is and releases its Lease; see `run`.

use crate::failure::exit;

/// A signal that asks the run to stop.
pub struct Stop {
    /// `SIGTERM`, `SIGINT`.
    pub name: &'static str,
    /// The exit code it maps to.
    pub code: u8,
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (what a drain, a deleted pod or `kill` sends). The
/// run then stops where it is and releases its Lease, so the next `resume` (or the next pod of
/// a Job) goes on at once instead of waiting for a stale lock.
pub async fn stop_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => Stop { name: "SIGTERM", code: exit::TERMINATED },
            _ = int.recv() => Stop { name: "SIGINT", code: exit::INTERRUPTED },
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop {
            name: "interrupt",
            code: exit::INTERRUPTED,
        }
    }
}
