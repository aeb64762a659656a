//! How a run ends: its [`Outcome`] (finished, gate, paused, failed), the [`Summary`] of what it
//! did, why it could not go on at all ([`RunError`]), and how a node's rollback ended.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{checkpoint::CheckpointError, store::StoreError};

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step is done.
    Finished(Summary),
    /// Stopped at a gate: something outside the tool must happen, then `resume`.
    Gate {
        /// The step.
        step: String,
        /// What to do.
        message: String,
    },
    /// Paused: in-flight nodes finished, no new ones started.
    Paused,
    /// A step failed; admissions stopped and in-flight nodes reached a safe point.
    Failed {
        /// The step id.
        step: String,
        /// Its node.
        node: Option<String>,
        /// Why.
        reason: String,
    },
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Nodes migrated.
    pub nodes: usize,
    /// Seconds from the first step to the last, of this run and any it resumed.
    pub seconds: u64,
    /// Per node: seconds from its first step's start to its last step's finish.
    pub node_seconds: BTreeMap<String, u64>,
    /// Pods evicted by this process, per node.
    pub evicted: BTreeMap<String, usize>,
    /// Seconds spent waiting on each PDB by this process.
    pub pdb_waits: BTreeMap<String, u64>,
    /// Milliseconds spent waiting on each PDB by this process.
    pub pdb_wait_ms: BTreeMap<String, u64>,
    /// The pods this process evicted, per node (`namespace/name`).
    pub evicted_pods: BTreeMap<String, Vec<String>>,
    /// The plan's warnings, by code.
    pub warnings: Vec<String>,
}

/// Why a run could not go on at all (distinct from a step failing, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The checkpoint refused a transition (a bug, or a checkpoint edited by hand).
    #[error("the checkpoint refused a transition")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint could not be written.
    #[error("cannot write the checkpoint")]
    Store(#[from] StoreError),
    /// Another run took over the checkpoint.
    #[error("another run ({0}) wrote the checkpoint: this run stops; check `cni-migrate status`")]
    Superseded(String),
    /// The Lease was lost.
    #[error("the lock was lost; stopping without admitting more nodes: {0}")]
    LockLost(String),
}

/// How a node's rollback ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackEnd {
    /// Back on the old CNI; what was seen.
    Done(String),
    /// Nothing to do; why.
    Nothing(String),
    /// Refused before anything changed; why.
    Refused(String),
    /// A step failed; the node is left as it is (cordoned), and `rollback` may run again.
    Failed {
        /// The rollback step (`cordon`, `drain`, ...).
        step: String,
        /// Why.
        reason: String,
    },
}
