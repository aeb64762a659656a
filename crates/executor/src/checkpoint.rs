//! The checkpoint: where a run is, written after every transition so that a crashed run can be
//! resumed exactly where it stopped, and read by `cni-migrate status` from any machine.
//!
//! ```text
//! Checkpoint v2 (typed here; the stored encoding is private to this file)
//!   fingerprint, plan name, run id, created/updated (Unix seconds), generation
//!   global steps : prelude and finale, by step id: state, started/finished
//!   per node     : its chain's steps (state, started/finished, seconds after `created`),
//!                  prior state (was it cordoned? labelled?), the agent UIDs when the label went
//!                  on (until verified), the failure message, and, once rolled back, when and
//!                  the rollback chain's steps
//!                  when it joined or left, its UID (first 8 characters), held as a new node
//!   nodes replaced under the same name (their records when they left)
//!   paused, gate, failure
//! stored as   {"s": "DDRPPPP", "d": [3,6,0,32,...], "p": "c", "u": [...], "m": ..., "r": ...,
//!              "b": "DDP...", "bt": [...], "j", "l", "w", "i"}   one letter a step: P R D F S,
//!              times as differences (checkpoint/wire.rs; every field but "s" optional, so
//!              older records read; format 1's absolute times "t" too)
//!   then zlib-compressed (checkpoint/compact.rs) where the store keeps bytes
//! ```
//!
//! A node's record compresses to about 45 bytes, so 5,000 nodes take about 200 KiB and 20,000
//! a little under 1 MiB (the ConfigMap store splits it past 768 KiB). Transitions are checked:
//! a step starts only when every step before it in its chain is done, and never goes back from
//! done.

use std::collections::{BTreeMap, HashMap};

use planner::{
    StepKind,
    plan::{Phase, Plan, Step},
};
use serde::{Deserialize, Serialize};

/// The checkpoint format version this build writes: 2, the compact JSON below, stored
/// compressed (`checkpoint/compact.rs`) and, in a ConfigMap, split across objects when it
/// outgrows one (`store`). Format 1 (the same JSON, stored as text in one ConfigMap key) is
/// still read, and written as format 2 by the next save.
pub const VERSION: u32 = 2;

/// The oldest checkpoint format version this build reads.
pub const OLDEST_VERSION: u32 = 1;

/// A step's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started, not finished (a crash leaves steps here; resume re-runs them, which is safe).
    Running,
    /// Done.
    Done,
    /// Failed.
    Failed,
    /// Skipped (e.g. nothing to do).
    Skipped,
}

impl StepState {
    fn letter(self) -> char {
        match self {
            StepState::Pending => 'P',
            StepState::Running => 'R',
            StepState::Done => 'D',
            StepState::Failed => 'F',
            StepState::Skipped => 'S',
        }
    }

    fn from_letter(c: char) -> Option<Self> {
        Some(match c {
            'P' => StepState::Pending,
            'R' => StepState::Running,
            'D' => StepState::Done,
            'F' => StepState::Failed,
            'S' => StepState::Skipped,
            _ => return None,
        })
    }

    /// Done or skipped: the next step may start.
    pub fn is_complete(self) -> bool {
        matches!(self, StepState::Done | StepState::Skipped)
    }

    /// Lowercase, as users read it (`pending`, `running`, `done`, `failed`, `skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

/// One step's record in a node's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// Its state.
    pub state: StepState,
    /// When it (last) started, seconds after the checkpoint's creation.
    pub started: Option<u32>,
    /// When it finished (or failed), seconds after the checkpoint's creation.
    pub finished: Option<u32>,
}

impl StepRecord {
    const PENDING: StepRecord = StepRecord {
        state: StepState::Pending,
        started: None,
        finished: None,
    };
}

/// A node as it was before the tool changed anything on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePrior {
    /// It was cordoned already: leave it cordoned at the end.
    pub cordoned: bool,
    /// It carried the migration label already.
    pub labelled: bool,
    /// It was annotated against scale-down already (cluster-autoscaler or Karpenter): the
    /// tool neither adds nor removes those annotations.
    #[serde(default)]
    pub guarded: bool,
    /// It joined after Cilium was installed and ran no workload pods when admitted: only the
    /// label, the agent restart and verification; no cordon, drain, reboot or uncordon.
    #[serde(default)]
    pub light: bool,
}

/// Where a node is, derived from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// No step started.
    Pending,
    /// Some steps ran, not all; `step` is the first one not complete (`running`: it is under
    /// way rather than next).
    InFlight {
        /// Position in the chain.
        step: usize,
        /// Whether it is running.
        running: bool,
    },
    /// A step failed.
    Failed {
        /// Position in the chain.
        step: usize,
    },
    /// Every step is complete.
    Done,
    /// Rolled back to the old CNI (or being rolled back): held until `resume --retry`.
    RolledBack,
    /// Joined under `rollout.newNodes: hold`: held until `resume --retry`.
    Awaiting,
    /// Left the cluster (deleted or replaced) before its chain finished.
    Left,
}

/// One node's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "wire::NodeWire", into = "wire::NodeWire")]
pub struct NodeRecord {
    /// The node's chain, step by step.
    pub steps: Vec<StepRecord>,
    /// The node as it was before the tool changed anything on it; `None` until recorded.
    pub prior: Option<NodePrior>,
    /// The UIDs of the agent pods on the node when the label went on (or off, rolling back),
    /// kept until the node is verified; `Some(empty)` when there was none.
    pub agent_uids: Option<Vec<String>>,
    /// The failure message.
    pub message: Option<String>,
    /// When `cni-migrate rollback` returned the node to the old CNI (seconds after `created`):
    /// its steps are Pending again, and it is not admitted until `resume --retry NODE`.
    pub rolled_back: Option<u32>,
    /// The rollback chain's steps, once a rollback started.
    pub rollback: Vec<StepRecord>,
    /// When the node joined the migration after it started (seconds after `created`); `None`
    /// for a node of the plan the run started with.
    pub joined: Option<u32>,
    /// When the node left the cluster (seconds after `created`): deleted, or replaced by a
    /// node of the same name (which then gets a fresh record). Its chain stops wherever it
    /// was; it counts as neither done nor failed.
    pub left: Option<u32>,
    /// Joined under `rollout.newNodes: hold`: not admitted until `resume --retry NODE`.
    pub awaiting: bool,
    /// The node's `metadata.uid` (its first 8 characters) when it was recorded: a node of the
    /// same name with another UID is a replacement. `None` in checkpoints written before UIDs were recorded (the
    /// next run adopts the UID it finds).
    pub uid: Option<String>,
}

impl NodeRecord {
    /// A record of `len` pending steps.
    pub fn pending(len: usize) -> Self {
        Self {
            steps: vec![StepRecord::PENDING; len],
            ..Self::default()
        }
    }

    /// Every step done or skipped.
    pub fn done(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.state.is_complete())
    }

    /// Some step left Pending.
    pub fn started(&self) -> bool {
        self.steps.iter().any(|s| s.state != StepState::Pending)
    }

    /// Started and not done (and still in the cluster).
    pub fn in_flight(&self) -> bool {
        self.started() && !self.done() && !self.gone()
    }

    /// Left the cluster: nothing more is done on it, and the migration does not wait for it.
    pub fn gone(&self) -> bool {
        self.left.is_some()
    }

    /// Rolled back, or joined under `rollout.newNodes: hold`: not admitted until `resume
    /// --retry NODE`.
    pub fn held(&self) -> bool {
        self.rolled_back.is_some() || self.awaiting
    }

    /// Where the node is.
    pub fn status(&self) -> NodeStatus {
        if self.gone() {
            return NodeStatus::Left;
        }
        self.status_ignoring_left()
    }

    /// Where the node's chain is, whether or not the node is still there.
    pub fn status_ignoring_left(&self) -> NodeStatus {
        if self.awaiting && !self.started() {
            return NodeStatus::Awaiting;
        }
        if self.held() && !self.started() {
            return NodeStatus::RolledBack;
        }
        if let Some(step) = self.steps.iter().position(|s| s.state == StepState::Failed) {
            return NodeStatus::Failed { step };
        }
        if self.done() {
            return NodeStatus::Done;
        }
        match self.steps.iter().position(|s| !s.state.is_complete()) {
            Some(step) if self.started() => NodeStatus::InFlight {
                step,
                running: self.steps[step].state == StepState::Running,
            },
            _ => NodeStatus::Pending,
        }
    }

    /// From the first step's start to the last step's finish, in seconds after `created`:
    /// `None` before the node's first step started.
    pub fn span(&self) -> Option<(u32, u32)> {
        let first = self.steps.iter().filter_map(|s| s.started).min()?;
        let last = self
            .steps
            .iter()
            .flat_map(|s| [s.started, s.finished])
            .flatten()
            .max()
            .unwrap_or(first);
        Some((first, last))
    }

    /// When the step at `position` finished, seconds after `created`.
    pub fn finished_at(&self, position: usize) -> Option<u32> {
        self.steps.get(position)?.finished
    }

    /// The rollback chain was started and every step of it is complete.
    pub fn rollback_complete(&self) -> bool {
        !self.rollback.is_empty() && self.rollback.iter().all(|s| s.state.is_complete())
    }
}

/// One global step's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalStep {
    /// Its state.
    #[serde(rename = "s", with = "wire::letter")]
    pub state: StepState,
    /// Seconds after `created` when it started.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u32>,
    /// Seconds after `created` when it finished.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u32>,
    /// The failure message.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Default for GlobalStep {
    fn default() -> Self {
        Self {
            state: StepState::Pending,
            started: None,
            finished: None,
            message: None,
        }
    }
}

/// The failure that stopped admissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The step id.
    pub step: String,
    /// Why.
    pub reason: String,
    /// When, seconds after `created`.
    pub at: u32,
}

/// The checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// The plan's fingerprint.
    pub fingerprint: String,
    /// The plan's name.
    pub plan: String,
    /// The run that wrote it.
    pub run_id: String,
    /// Unix seconds of creation.
    pub created: u64,
    /// Unix seconds of the last write.
    pub updated: u64,
    /// Bumped on every write: a writer that finds another generation than the one it read lost
    /// a race and must not overwrite.
    pub generation: u64,
    /// The spec's Cilium version.
    pub cilium_version: String,
    /// Prelude and finale steps.
    pub global: BTreeMap<String, GlobalStep>,
    /// The step kinds of every node's chain, in order (what each step of a node's record
    /// stands for), so that `status` can explain a checkpoint without the plan.
    #[serde(default)]
    pub chain: Vec<String>,
    /// The step kinds of a node's rollback chain, once a node was rolled back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_chain: Vec<String>,
    /// The old CNI as the run found it when it started (the finale removes it; a resumed run
    /// plans with this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<planner::facts::SourceCni>,
    /// Per-node records.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Nodes that were replaced by a node of the same name (a new UID), oldest first: their
    /// records as they were when they left. The name's entry in `nodes` is the successor's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<FormerNode>,
    /// Paused: no new admissions.
    #[serde(default)]
    pub paused: bool,
    /// Stopped at a gate, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The failure that opened the circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureRecord>,
}

/// A node replaced by another of the same name: its record when it left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormerNode {
    /// The name it shares with its successor.
    #[serde(rename = "n")]
    pub name: String,
    /// Its record (`left` set; `uid` its own, when recorded).
    #[serde(rename = "r")]
    pub record: NodeRecord,
}

/// Nodes that came and went since the checkpoint last saw the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChanges {
    /// Nodes new to the migration: they get the full chain, admitted like any other.
    pub joined: Vec<String>,
    /// Nodes no longer in the cluster: recorded as gone, not failed.
    pub left: Vec<String>,
    /// Nodes replaced by a node of the same name and a new UID: the old one recorded as gone,
    /// the new one (also in `joined`) migrated.
    pub replaced: Vec<String>,
}

impl NodeChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && self.replaced.is_empty()
    }
}

/// Why a checkpoint could not be read or changed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint.
    #[error("the checkpoint is not valid JSON of a cni-migrate checkpoint: {0}")]
    Malformed(String),
    /// Written by a newer (or unknown) format.
    #[error(
        "the checkpoint has format version {found}, this cni-migrate reads versions {OLDEST_VERSION} to {VERSION}: use the cni-migrate release that wrote it"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// A transition the state machine does not allow.
    #[error("step {step} cannot go from {from:?} to {to:?}{}", .why.as_ref().map(|w| format!(": {w}")).unwrap_or_default())]
    Transition {
        /// The step.
        step: String,
        /// Its state.
        from: StepState,
        /// The state asked for.
        to: StepState,
        /// Why not.
        why: Option<String>,
    },
    /// The step is not in the plan.
    #[error("step {0} is not in the plan")]
    UnknownStep(String),
    /// The checkpoint belongs to a different plan.
    #[error("the checkpoint belongs to another plan ({found}, this plan is {expected}): {}; pass --ignore-fingerprint only if you are sure the cluster and spec are still what the run started with", .differences.join("; "))]
    Fingerprint {
        /// The plan's fingerprint.
        expected: String,
        /// The checkpoint's.
        found: String,
        /// What differs, when it can be told.
        differences: Vec<String>,
    },
}

/// How a node's UID is recorded: its first 8 characters (32 random bits tell a replacement
/// apart; the whole UID would cost 5,000 nodes 200 KB of the ConfigMap's 1 MiB). `None` for
/// an unknown UID.
fn short_uid(uid: &str) -> Option<String> {
    (!uid.is_empty()).then(|| uid.chars().take(8).collect())
}

fn rel(created: u64, now: u64) -> u32 {
    u32::try_from(now.saturating_sub(created))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Checkpoint {
    /// A fresh checkpoint for a plan.
    pub fn new(plan: &Plan, run_id: &str, now: u64) -> Self {
        let nodes = plan
            .nodes
            .iter()
            .map(|n| {
                let mut record = NodeRecord::pending(plan.node_steps(&n.name).count());
                record.uid = short_uid(&n.uid);
                (n.name.clone(), record)
            })
            .collect();
        let global = plan
            .steps
            .iter()
            .filter(|s| s.phase != Phase::Node)
            .map(|s| (s.id.clone(), GlobalStep::default()))
            .collect();
        Self {
            version: VERSION,
            fingerprint: plan.fingerprint.clone(),
            plan: plan.name.clone(),
            run_id: run_id.to_owned(),
            created: now,
            updated: now,
            generation: 0,
            cilium_version: plan.spec.target.cilium_version.to_string(),
            chain: plan
                .nodes
                .first()
                .map(|n| {
                    plan.node_steps(&n.name)
                        .map(|s| s.kind.as_str().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            rollback_chain: Vec::new(),
            global,
            source: Some(plan.facts.source.clone()),
            nodes,
            replaced: Vec::new(),
            paused: false,
            gate: None,
            failure: None,
        }
    }

    /// Serializes compactly.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a checkpoint of format [`OLDEST_VERSION`] to [`VERSION`] (one read as the
    /// current format: the next save writes it so), refusing other format versions.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] or [`CheckpointError::Version`].
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            version: u64,
        }
        let peek: Peek =
            serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let version = u32::try_from(peek.version).unwrap_or(u32::MAX);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(CheckpointError::Version { found: version });
        }
        let mut ck: Self =
            serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        ck.version = VERSION;
        Ok(ck)
    }

    /// Checks the checkpoint belongs to this plan, explaining what differs when it does not.
    ///
    /// # Errors
    /// [`CheckpointError::Fingerprint`].
    pub fn verify_fingerprint(&self, plan: &Plan) -> Result<(), CheckpointError> {
        if self.fingerprint == plan.fingerprint {
            return Ok(());
        }
        // A checkpoint of version 1 fingerprints hashed its node names too.
        let recorded: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        if self.fingerprint == planner::plan::legacy_fingerprint(&plan.spec, &plan.facts, &recorded)
        {
            return Ok(());
        }
        let mut differences = Vec::new();
        if self.plan != plan.name {
            differences.push(format!(
                "the spec is now `{}`, the run was `{}`",
                plan.name, self.plan
            ));
        }
        let version = plan.spec.target.cilium_version.to_string();
        if self.cilium_version != version {
            differences.push(format!(
                "target Cilium {version}, the run used {}",
                self.cilium_version
            ));
        }
        if differences.is_empty() {
            differences.push("the spec or the old overlay's facts changed".into());
        }
        Err(CheckpointError::Fingerprint {
            expected: plan.fingerprint.clone(),
            found: self.fingerprint.clone(),
            differences,
        })
    }

    /// A node's record.
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.get(name)
    }

    /// Every step of the node done or skipped.
    pub fn node_done(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(NodeRecord::done)
    }

    /// Started (some step left Pending) and not done.
    pub fn node_in_flight(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(NodeRecord::in_flight)
    }

    /// Rolled back by `cni-migrate rollback`: not admitted until `resume --retry NODE`.
    pub fn held(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(NodeRecord::held)
    }

    /// The global step's state.
    pub fn global_state(&self, id: &str) -> StepState {
        self.global.get(id).map_or(StepState::Pending, |g| g.state)
    }

    /// Every node and every global step complete: the migration is over.
    pub fn finished(&self) -> bool {
        !self.nodes.is_empty()
            && self.nodes.values().all(|n| n.done() || n.gone())
            && self.global.values().all(|g| g.state.is_complete())
    }

    /// The state of any step.
    pub fn state(&self, index: &StepIndex, step_id: &str) -> Option<StepState> {
        let entry = index.by_id.get(step_id)?;
        match &entry.place {
            Place::Global => Some(self.global.get(step_id)?.state),
            Place::Chain { node, chain, at } => {
                let rec = self.nodes.get(node)?;
                let steps = match chain {
                    Chain::Forward => &rec.steps,
                    Chain::Rollback => &rec.rollback,
                };
                Some(steps.get(*at).map_or(StepState::Pending, |s| s.state))
            }
        }
    }

    /// Moves a step to a new state at `now`, enforcing the state machine: Pending/Running/Failed
    /// → Running only when every dependency is complete; Running → Done/Failed/Skipped;
    /// Pending → Skipped; nothing leaves Done.
    ///
    /// # Errors
    /// [`CheckpointError::Transition`] or [`CheckpointError::UnknownStep`].
    pub fn transition(
        &mut self,
        index: &StepIndex,
        step_id: &str,
        to: StepState,
        now: u64,
        message: Option<String>,
    ) -> Result<(), CheckpointError> {
        let unknown = || CheckpointError::UnknownStep(step_id.to_owned());
        let entry = index.by_id.get(step_id).ok_or_else(unknown)?;
        let from = self.state(index, step_id).ok_or_else(unknown)?;
        let refuse = |why: Option<String>| CheckpointError::Transition {
            step: step_id.to_owned(),
            from,
            to,
            why,
        };
        let legal = matches!(
            (from, to),
            (
                StepState::Pending | StepState::Running | StepState::Failed,
                StepState::Running
            ) | (
                StepState::Running,
                StepState::Done | StepState::Failed | StepState::Skipped
            ) | (StepState::Pending, StepState::Skipped)
        );
        if !legal {
            return Err(refuse(None));
        }
        if to == StepState::Running {
            for dep in &entry.depends_on {
                let s = self.state(index, dep);
                // A step of a node that left the cluster holds nothing up: its chain ended
                // there (the canary being replaced must not stop every other node).
                let gone = index
                    .node_step(dep)
                    .is_some_and(|(node, _, _)| self.nodes.get(node).is_some_and(NodeRecord::gone));
                if !gone && !s.is_some_and(StepState::is_complete) {
                    return Err(refuse(Some(format!("it depends on {dep}, which is {s:?}"))));
                }
            }
        }
        let t = rel(self.created, now);
        match &entry.place {
            Place::Chain { node, chain, at } => {
                let rec = self.nodes.get_mut(node).ok_or_else(unknown)?;
                let steps = match chain {
                    Chain::Forward => &mut rec.steps,
                    Chain::Rollback => &mut rec.rollback,
                };
                if steps.len() <= *at {
                    steps.resize(at + 1, StepRecord::PENDING);
                }
                let s = &mut steps[*at];
                s.state = to;
                match to {
                    StepState::Running => s.started = Some(t),
                    _ => s.finished = Some(t),
                }
                if to == StepState::Failed {
                    rec.message = message;
                } else if to == StepState::Done {
                    rec.message = None;
                    // The agent UIDs only matter until the node is verified.
                    if matches!(entry.kind, StepKind::Verify | StepKind::VerifyRollback) {
                        rec.agent_uids = None;
                    }
                }
            }
            Place::Global => {
                let rec = self.global.entry(step_id.to_owned()).or_default();
                rec.state = to;
                match to {
                    StepState::Running => rec.started = Some(t),
                    _ => rec.finished = Some(t),
                }
                rec.message = if to == StepState::Failed {
                    message
                } else {
                    None
                };
            }
        }
        self.updated = now;
        Ok(())
    }

    /// Records a node's prior state (only the first time: a resumed run must not overwrite it).
    pub fn record_prior(&mut self, node: &str, prior: &NodePrior) -> bool {
        let Some(rec) = self.nodes.get_mut(node) else {
            return false;
        };
        if rec.prior.is_some() {
            return false;
        }
        rec.prior = Some(prior.clone());
        true
    }

    /// The recorded prior state of a node.
    pub fn prior(&self, node: &str) -> Option<NodePrior> {
        self.nodes.get(node)?.prior.clone()
    }

    /// Records the node's agent pods before the label changes (only the first time).
    pub fn record_agent_uids(&mut self, node: &str, mut uids: Vec<String>) -> bool {
        let Some(rec) = self.nodes.get_mut(node) else {
            return false;
        };
        if rec.agent_uids.is_some() {
            return false;
        }
        uids.sort();
        rec.agent_uids = Some(uids);
        true
    }

    /// The agent pods recorded when the label changed.
    pub fn agent_uids(&self, node: &str) -> Option<Vec<String>> {
        self.nodes.get(node)?.agent_uids.clone()
    }

    /// Starts (or goes on with) a node's rollback: it is held from now, its forward steps are
    /// Pending again, the agent UIDs are forgotten (the rollback records its own), and a failure
    /// of this node no longer stops admissions. The rollback chain keeps what a previous attempt
    /// completed. Returns whether anything changed.
    pub fn begin_rollback(&mut self, node: &str, chain: &[String], now: u64) -> bool {
        let t = rel(self.created, now);
        let chain_len = chain.len();
        if self.rollback_chain.is_empty() {
            self.rollback_chain = chain.to_vec();
        }
        let Some(rec) = self.nodes.get_mut(node) else {
            return false;
        };
        let fresh = rec.rolled_back.is_none() || rec.rollback.len() != chain_len;
        rec.rolled_back.get_or_insert(t);
        if fresh {
            let len = rec.steps.len();
            rec.steps = vec![StepRecord::PENDING; len];
            rec.rollback = vec![StepRecord::PENDING; chain_len];
            rec.agent_uids = None;
            rec.message = None;
        }
        if self
            .failure
            .as_ref()
            .is_some_and(|f| f.step.starts_with(&format!("{node}/")))
        {
            self.failure = None;
        }
        self.updated = now;
        true
    }

    /// The nodes `rollback --all` returns, newest first: every node touched (a step left
    /// Pending) and not already rolled back.
    pub fn rollback_candidates(&self) -> Vec<String> {
        let mut touched: Vec<(u32, &String)> = self
            .nodes
            .iter()
            .filter(|(_, r)| !r.held() && r.started())
            .map(|(n, r)| (r.span().map_or(0, |(_, last)| last), n))
            .collect();
        touched.sort_by(|a, b| b.cmp(a));
        touched.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// Lets a rolled-back node be admitted again (`resume --retry NODE`).
    ///
    /// # Errors
    /// A message naming the node when it was not rolled back or is not in the checkpoint.
    pub fn retry(&mut self, node: &str) -> Result<(), String> {
        match self.nodes.get_mut(node) {
            Some(r) if r.awaiting => {
                r.awaiting = false;
                Ok(())
            }
            Some(r) if r.rolled_back.is_some() => {
                r.rolled_back = None;
                r.rollback.clear();
                r.agent_uids = None;
                Ok(())
            }
            Some(_) => Err(format!(
                "--retry {node}: {node} was not rolled back and does not wait as a new node"
            )),
            None => Err(format!(
                "--retry {node}: {node} is not a node of plan {}",
                self.plan
            )),
        }
    }
}

/// Which chain of a node a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// The migration.
    Forward,
    /// Back to the old CNI.
    Rollback,
}

#[derive(Clone, Debug)]
enum Place {
    Global,
    Chain {
        node: String,
        chain: Chain,
        at: usize,
    },
}

#[derive(Clone, Debug)]
struct Indexed {
    place: Place,
    kind: StepKind,
    depends_on: Vec<String>,
}

/// Steps by id, with each node step's place in its node's chain: built once per run so that a
/// transition costs no scan of a 35,000-step plan.
#[derive(Clone, Debug, Default)]
pub struct StepIndex {
    by_id: HashMap<String, Indexed>,
}

impl StepIndex {
    /// Indexes steps (a plan's, and any rollback chains the run may take).
    pub fn new<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Self {
        let mut position: HashMap<(String, bool), usize> = HashMap::new();
        let mut by_id = HashMap::new();
        for s in steps {
            let place = match (&s.node, s.phase) {
                (Some(n), Phase::Node | Phase::Rollback) => {
                    let rollback = s.phase == Phase::Rollback;
                    let p = position.entry((n.clone(), rollback)).or_insert(0);
                    let at = *p;
                    *p += 1;
                    Place::Chain {
                        node: n.clone(),
                        chain: if rollback {
                            Chain::Rollback
                        } else {
                            Chain::Forward
                        },
                        at,
                    }
                }
                _ => Place::Global,
            };
            by_id.insert(
                s.id.clone(),
                Indexed {
                    place,
                    kind: s.kind,
                    depends_on: s.depends_on.clone(),
                },
            );
        }
        Self { by_id }
    }

    /// A node step's node, chain and position in it.
    pub fn node_step(&self, id: &str) -> Option<(&str, Chain, usize)> {
        match &self.by_id.get(id)?.place {
            Place::Chain { node, chain, at } => Some((node.as_str(), *chain, *at)),
            Place::Global => None,
        }
    }

    /// Whether the step is indexed.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
}

mod compact;
mod membership;
#[cfg(test)]
mod tests;
mod wire;
