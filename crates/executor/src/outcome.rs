//! How a run ends: its [`Outcome`] (finished, gate, paused, failed), the [`Summary`] of what it
//! did, why it could not go on at all ([`RunError`]), and how a node's rollback ended.

use std::{collections::BTreeMap, time::Duration};

use planner::{Plan, Severity};
use serde::Serialize;

use crate::{
    checkpoint::{Checkpoint, CheckpointError},
    store::StoreError,
};

/// What this process counted as it went: evictions and PDB waits, per node and per budget.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    evicted: BTreeMap<String, usize>,
    evicted_pods: BTreeMap<String, Vec<String>>,
    pdb_waits: BTreeMap<String, Duration>,
}

impl Counters {
    /// Adds a drain's evictions and PDB waits.
    pub fn add(&mut self, node: &str, evicted: &[String], waits: &BTreeMap<String, Duration>) {
        *self.evicted.entry(node.to_owned()).or_default() += evicted.len();
        self.evicted_pods
            .entry(node.to_owned())
            .or_default()
            .extend(evicted.iter().cloned());
        for (pdb, d) in waits {
            *self.pdb_waits.entry(pdb.clone()).or_default() += *d;
        }
    }
}

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

impl Summary {
    /// What a run did, from its checkpoint and what this process counted.
    pub fn of(ck: &Checkpoint, plan: &Plan, counters: &Counters) -> Self {
        let mut node_seconds = BTreeMap::new();
        let mut last = 0u32;
        for (name, rec) in &ck.nodes {
            if let Some((first, end)) = rec.span() {
                last = last.max(end);
                node_seconds.insert(name.clone(), u64::from(end - first));
            }
        }
        for g in ck.global.values() {
            last = last.max(g.finished.unwrap_or(0));
        }
        let ms = |d: &Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Summary {
            nodes: ck.nodes.values().filter(|r| r.done()).count(),
            seconds: u64::from(last),
            node_seconds,
            evicted: counters.evicted.clone(),
            evicted_pods: counters.evicted_pods.clone(),
            pdb_wait_ms: counters
                .pdb_waits
                .iter()
                .map(|(k, v)| (k.clone(), ms(v)))
                .collect(),
            pdb_waits: counters
                .pdb_waits
                .iter()
                .map(|(k, v)| (k.clone(), v.as_secs()))
                .collect(),
            warnings: plan
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .map(|f| format!("{}: {}", f.code, f.message))
                .collect(),
        }
    }
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
