//! What a run tells the world while it goes: one [`Event`] per transition, to whatever
//! [`Observer`] the caller gives (progress bars, plain lines, JSON lines, a rehearsal's
//! recorder), and the error chains in the one-line form users read.
//!
//! ```text
//! run-started ─► node-admitted ─► step-started ─► step-done | retrying | step-failed | step-skipped ─► node-done
//!             └► waiting (why nothing can start) · held / released (by a control) · gate ·
//!                paused · stopped · finished
//! ```

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use planner::StepKind;
use serde::Serialize;

/// What happened, for the terminal, JSON lines and Node events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The run started or resumed.
    RunStarted,
    /// A node was admitted.
    NodeAdmitted,
    /// A step started.
    StepStarted,
    /// A step finished.
    StepDone,
    /// A step failed.
    StepFailed,
    /// A step was skipped: not needed on this node (a node that joined with no workload pods
    /// is neither cordoned nor drained).
    StepSkipped,
    /// A step hit a retriable error and will try again.
    Retrying,
    /// Every step of a node is done.
    NodeDone,
    /// A node joined the cluster after the migration started: it is migrated like the others.
    NodeJoined,
    /// A node left the cluster (deleted or replaced): recorded as gone, not failed.
    NodeLeft,
    /// Nothing can be admitted now, and why.
    Waiting,
    /// A control (maintenance window, Prometheus gate, health budget) holds admissions;
    /// `reason` names it.
    Held,
    /// The control that held admissions released them.
    Released,
    /// The run stopped at a gate.
    Gate,
    /// The run stopped because it was paused.
    Paused,
    /// The run stopped because of a failure.
    Stopped,
    /// Every step is done.
    Finished,
}

/// One event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unix seconds.
    pub time: u64,
    /// What.
    pub event: EventKind,
    /// The node, for node events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The step id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The step kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<StepKind>,
    /// What holds admissions, for `held` and `released`: `window`, `health-budget`,
    /// `prometheus`, `prometheus-unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was seen or done.
    pub message: String,
}

/// Receives the run's events.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);

    /// A drain's evictions and the time it waited on each PDB (metrics).
    fn drained(&self, _node: &str, _evicted: usize, _pdb_waits: &BTreeMap<String, Duration>) {}

    /// The checkpoint was written; `bytes` is what its store holds now, when known (metrics).
    fn checkpoint_saved(&self, _bytes: Option<usize>) {}
}

/// An observer that drops everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Event) {}
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error and its sources, `: `-joined, as the CLI prints them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
