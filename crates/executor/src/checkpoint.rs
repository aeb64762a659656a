//! The checkpoint: where a run is, written after every transition so that a crashed run can be
//! resumed exactly where it stopped, and read by `cni-migrate status` from any machine.
//!
//! ```text
//! Checkpoint v1
//!   fingerprint, plan name, run id, created/updated (Unix seconds)
//!   global steps     : prelude and finale, by step id
//!   per node         : "s" chain states, one letter a step (P pending, R running, D done,
//!                      F failed, S skipped); "t" start/finish seconds after `created`;
//!                      "p" prior state (c: was cordoned, l: was labelled); "u" agent UIDs at
//!                      label time, kept until the node is verified; "m" the failure message
//!   paused, gate, failure
//! ```
//!
//! The per-node record is a few dozen bytes, so 5,000 nodes fit a ConfigMap's 1 MiB with room
//! to spare. Transitions are checked: a step starts only when every step before it in its chain
//! is done, and never goes back from done.

use std::collections::BTreeMap;

use planner::plan::{Phase, Plan};
use serde::{Deserialize, Serialize};

use crate::steps::NodePrior;

/// The checkpoint format version this build reads and writes.
pub const VERSION: u32 = 1;

/// A step's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    /// Not started.
    #[serde(rename = "P")]
    Pending,
    /// Started, not finished (a crash leaves steps here; resume re-runs them, which is safe).
    #[serde(rename = "R")]
    Running,
    /// Done.
    #[serde(rename = "D")]
    Done,
    /// Failed.
    #[serde(rename = "F")]
    Failed,
    /// Skipped (e.g. nothing to do).
    #[serde(rename = "S")]
    Skipped,
}

impl StepState {
    /// The letter the checkpoint stores.
    pub fn letter(self) -> char {
        match self {
            StepState::Pending => 'P',
            StepState::Running => 'R',
            StepState::Done => 'D',
            StepState::Failed => 'F',
            StepState::Skipped => 'S',
        }
    }

    /// The state a stored letter stands for.
    pub fn from_letter(c: char) -> Option<Self> {
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
}

/// One global step's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalStep {
    /// State letter.
    #[serde(rename = "s")]
    pub state: String,
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

/// One node's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// One state letter per step of the node's chain.
    #[serde(rename = "s")]
    pub states: String,
    /// Start and finish of each step, seconds after `created` (0 = not yet).
    #[serde(rename = "t", default)]
    pub times: Vec<u32>,
    /// Prior state flags: `c` was cordoned, `l` was labelled; absent until recorded.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<String>,
    /// Agent pod UIDs when the label went on.
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    pub agent_uids: Vec<String>,
    /// The failure message.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `cni-migrate rollback` returned the node to the old CNI (seconds after `created`):
    /// its steps are Pending again, and it is not admitted until `resume --retry NODE`.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<u32>,
}

impl NodeRecord {
    /// From the first step's start to the last step's finish, in seconds after `created`:
    /// `None` before the node's first step started.
    pub fn span(&self) -> Option<(u32, u32)> {
        let first = self
            .times
            .iter()
            .step_by(2)
            .copied()
            .filter(|t| *t > 0)
            .min()?;
        let last = self.times.iter().copied().max().unwrap_or(first);
        Some((first, last))
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
    /// The step kinds of every node's chain, in order (what each letter of a node's states
    /// stands for), so that `status` can explain a checkpoint without the plan.
    #[serde(default)]
    pub chain: Vec<String>,
    /// The old CNI as the run found it when it started (the finale removes it; a resumed run
    /// plans with this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<planner::facts::SourceCni>,
    /// Per-node records.
    pub nodes: BTreeMap<String, NodeRecord>,
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

/// Why a checkpoint could not be read or changed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint.
    #[error("the checkpoint is not valid JSON of a cni-migrate checkpoint: {0}")]
    Malformed(String),
    /// Written by a newer (or unknown) format.
    #[error(
        "the checkpoint has format version {found}, this cni-migrate reads version {VERSION}: use the cni-migrate release that wrote it"
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

fn rel(created: u64, now: u64) -> u32 {
    u32::try_from(now.saturating_sub(created))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Checkpoint {
    /// A fresh checkpoint for a plan.
    pub fn new(plan: &Plan, run_id: &str, now: u64) -> Self {
        let mut nodes = BTreeMap::new();
        for n in &plan.nodes {
            let chain = plan.node_steps(&n.name).count();
            nodes.insert(
                n.name.clone(),
                NodeRecord {
                    states: "P".repeat(chain),
                    times: vec![0; chain * 2],
                    ..NodeRecord::default()
                },
            );
        }
        let global = plan
            .steps
            .iter()
            .filter(|s| s.phase != Phase::Node)
            .map(|s| {
                (
                    s.id.clone(),
                    GlobalStep {
                        state: "P".into(),
                        ..GlobalStep::default()
                    },
                )
            })
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
            global,
            source: Some(plan.facts.source.clone()),
            nodes,
            paused: false,
            gate: None,
            failure: None,
        }
    }

    /// Serializes compactly.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a checkpoint, refusing other format versions.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] or [`CheckpointError::Version`].
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let version = v["version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        if version != VERSION {
            return Err(CheckpointError::Version { found: version });
        }
        serde_json::from_value(v).map_err(|e| CheckpointError::Malformed(e.to_string()))
    }

    /// Checks the checkpoint belongs to this plan, explaining what differs when it does not.
    ///
    /// # Errors
    /// [`CheckpointError::Fingerprint`].
    pub fn verify_fingerprint(&self, plan: &Plan) -> Result<(), CheckpointError> {
        if self.fingerprint == plan.fingerprint {
            return Ok(());
        }
        let mut differences = Vec::new();
        let now: std::collections::BTreeSet<&str> =
            plan.nodes.iter().map(|n| n.name.as_str()).collect();
        let then: std::collections::BTreeSet<&str> =
            self.nodes.keys().map(String::as_str).collect();
        for n in now.difference(&then) {
            differences.push(format!("node {n} is new"));
        }
        for n in then.difference(&now) {
            differences.push(format!("node {n} is gone"));
        }
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

    /// The state of any step.
    pub fn state(&self, index: &StepIndex<'_>, step_id: &str) -> Option<StepState> {
        match index.node_step(step_id) {
            Some((node, idx)) => self
                .nodes
                .get(&node)?
                .states
                .chars()
                .nth(idx)
                .and_then(StepState::from_letter),
            None => self
                .global
                .get(step_id)?
                .state
                .chars()
                .next()
                .and_then(StepState::from_letter),
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
        index: &StepIndex<'_>,
        step_id: &str,
        to: StepState,
        now: u64,
        message: Option<String>,
    ) -> Result<(), CheckpointError> {
        let step = index
            .step(step_id)
            .ok_or_else(|| CheckpointError::UnknownStep(step_id.to_owned()))?;
        let from = self
            .state(index, step_id)
            .ok_or_else(|| CheckpointError::UnknownStep(step_id.to_owned()))?;
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
            for dep in &step.depends_on {
                let s = self.state(index, dep);
                if !s.is_some_and(StepState::is_complete) {
                    return Err(refuse(Some(format!("it depends on {dep}, which is {s:?}"))));
                }
            }
        }
        let t = rel(self.created, now);
        match index.node_step(step_id) {
            Some((node, idx)) => {
                let rec = self
                    .nodes
                    .get_mut(&node)
                    .ok_or_else(|| CheckpointError::UnknownStep(step_id.to_owned()))?;
                let mut letters: Vec<char> = rec.states.chars().collect();
                letters[idx] = to.letter();
                rec.states = letters.into_iter().collect();
                if rec.times.len() < (idx + 1) * 2 {
                    rec.times.resize((idx + 1) * 2, 0);
                }
                match to {
                    StepState::Running => rec.times[idx * 2] = t,
                    _ => rec.times[idx * 2 + 1] = t,
                }
                if to == StepState::Failed {
                    rec.message = message;
                } else if to == StepState::Done {
                    rec.message = None;
                    // The agent UIDs only matter until the node is verified.
                    if step.kind == planner::StepKind::Verify {
                        rec.agent_uids.clear();
                    }
                }
            }
            None => {
                let rec = self.global.entry(step_id.to_owned()).or_default();
                rec.state = to.letter().to_string();
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
        let mut flags = String::new();
        if prior.cordoned {
            flags.push('c');
        }
        if prior.labelled {
            flags.push('l');
        }
        rec.prior = Some(flags);
        true
    }

    /// The recorded prior state of a node.
    pub fn prior(&self, node: &str) -> Option<NodePrior> {
        let p = self.nodes.get(node)?.prior.as_ref()?;
        Some(NodePrior {
            cordoned: p.contains('c'),
            labelled: p.contains('l'),
        })
    }
}

/// A step, and for node steps its node and position in the node's chain.
type Indexed<'a> = (&'a planner::Step, Option<(String, usize)>);

/// The plan's steps by id, with each node step's position in its chain: built once per run so
/// that a transition costs no scan of a 35,000-step plan.
pub struct StepIndex<'a> {
    by_id: std::collections::HashMap<&'a str, Indexed<'a>>,
}

impl<'a> StepIndex<'a> {
    /// Indexes a plan.
    pub fn new(plan: &'a Plan) -> Self {
        let mut position: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut by_id = std::collections::HashMap::with_capacity(plan.steps.len());
        for s in &plan.steps {
            let node = match (&s.node, s.phase) {
                (Some(n), Phase::Node) => {
                    let p = position.entry(n.as_str()).or_insert(0);
                    let here = *p;
                    *p += 1;
                    Some((n.clone(), here))
                }
                _ => None,
            };
            by_id.insert(s.id.as_str(), (s, node));
        }
        Self { by_id }
    }

    /// A step.
    pub fn step(&self, id: &str) -> Option<&'a planner::Step> {
        self.by_id.get(id).map(|(s, _)| *s)
    }

    /// A node step's node and chain position.
    pub fn node_step(&self, id: &str) -> Option<(String, usize)> {
        self.by_id.get(id).and_then(|(_, n)| n.clone())
    }
}

/// Where checkpoints live.
pub trait CheckpointStore {
    /// Reads the checkpoint, if there is one.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    fn load(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// Writes the checkpoint, bumping its generation, unless another writer got there first
    /// (the stored generation is not the one `checkpoint` was read at).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another writer won; I/O errors otherwise.
    fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError>;
}

/// Why a checkpoint store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("cannot {verb} checkpoint file {path}")]
    Io {
        /// `read` or `write`.
        verb: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stored checkpoint is not readable.
    #[error("checkpoint file {path} is not usable")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: CheckpointError,
    },
    /// Reading or writing the checkpoint in the cluster failed.
    #[error("cannot {verb} the checkpoint in {what}")]
    Cluster {
        /// `read` or `write`.
        verb: &'static str,
        /// Where.
        what: String,
        /// The error.
        #[source]
        source: Box<cluster::ClusterError>,
    },
    /// The checkpoint outgrew its store.
    #[error("the checkpoint is {bytes} bytes, more than {what} can hold: use --state file:PATH")]
    TooLarge {
        /// Where.
        what: String,
        /// Its size.
        bytes: usize,
    },
    /// Another writer changed the checkpoint since it was read.
    #[error(
        "the checkpoint was changed by another run (generation {found}, expected {expected}): is another cni-migrate running?"
    )]
    Conflict {
        /// The generation read.
        expected: u64,
        /// The generation found.
        found: u64,
    },
}

impl StoreError {
    /// Whether trying again may succeed: the cluster failed for a passing reason.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Cluster { source, .. } if source.is_retriable())
    }
}

/// A checkpoint in a local file (`--state file:PATH`), replaced atomically on every write.
pub struct FileStore {
    path: std::path::PathBuf,
}

impl FileStore {
    /// A store at a path.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl CheckpointStore for FileStore {
    fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        let path = self.path.display().to_string();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Checkpoint::from_json(&text)
                .map(Some)
                .map_err(|source| StoreError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                verb: "read",
                path,
                source,
            }),
        }
    }

    fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError> {
        use std::io::Write as _;
        let path = self.path.display().to_string();
        if let Some(current) = self.load()?
            && current.generation != checkpoint.generation
        {
            return Err(StoreError::Conflict {
                expected: checkpoint.generation,
                found: current.generation,
            });
        }
        checkpoint.generation += 1;
        let tmp = self.path.with_extension("tmp~");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(checkpoint.to_json().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| {
            checkpoint.generation -= 1;
            StoreError::Io {
                verb: "write",
                path,
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use planner::snapshot::{ClusterSnapshot, NodeInfo};

    use super::*;

    fn plan(nodes: usize) -> Plan {
        let spec = planner::MigrationSpec::from_yaml(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
             target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n\
             rollout: {reboot: {command: [reboot, \"{node}\"]}}\n",
            "t",
        )
        .expect("spec");
        let snap = ClusterSnapshot {
            nodes: (0..nodes)
                .map(|i| NodeInfo {
                    name: format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i / 250, i % 250),
                    ready: true,
                    ..NodeInfo::default()
                })
                .collect(),
            ..ClusterSnapshot::default()
        };
        planner::plan(&spec, &snap)
    }

    #[test]
    fn five_thousand_finished_nodes_fit_a_configmap() {
        let p = plan(5000);
        let idx = StepIndex::new(&p);
        let mut c = Checkpoint::new(&p, "run-1@host", 1_700_000_000);
        let mut now = 1_700_000_000;
        for s in &p.steps {
            now += 7;
            c.transition(&idx, &s.id, StepState::Running, now, None)
                .expect("start");
            if s.kind == planner::StepKind::Cordon {
                c.record_prior(
                    s.node.as_deref().unwrap_or_default(),
                    &NodePrior {
                        cordoned: false,
                        labelled: false,
                    },
                );
            }
            if s.kind == planner::StepKind::Label {
                c.nodes
                    .get_mut(s.node.as_deref().unwrap_or_default())
                    .expect("node")
                    .agent_uids = vec!["5f0c3b8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f".into()];
            }
            c.transition(&idx, &s.id, StepState::Done, now + 30, None)
                .expect("done");
        }
        let size = c.to_json().len();
        eprintln!("checkpoint for 5,000 finished nodes: {size} bytes");
        assert!(size < 1024 * 1024, "{size} bytes does not fit a ConfigMap");
        assert_eq!(Checkpoint::from_json(&c.to_json()).expect("round trip"), c);
    }

    #[test]
    fn steps_start_only_after_their_dependencies_and_never_leave_done() {
        let p = plan(2);
        let idx = StepIndex::new(&p);
        let mut c = Checkpoint::new(&p, "r", 100);
        let first_node = &p.nodes[0].name;
        let drain = format!("{first_node}/drain");
        let err = c
            .transition(&idx, &drain, StepState::Running, 101, None)
            .expect_err("cordon not done");
        assert!(
            err.to_string().contains(&format!("{first_node}/cordon")),
            "{err}"
        );
        for id in ["preflight", "cilium-installed", "node-config"] {
            c.transition(&idx, id, StepState::Running, 101, None)
                .expect("start");
            c.transition(&idx, id, StepState::Done, 102, None)
                .expect("done");
        }
        let cordon = format!("{first_node}/cordon");
        c.transition(&idx, &cordon, StepState::Running, 103, None)
            .expect("start");
        c.transition(&idx, &cordon, StepState::Done, 104, None)
            .expect("done");
        assert!(
            c.transition(&idx, &cordon, StepState::Running, 105, None)
                .is_err(),
            "done is final"
        );
        c.transition(&idx, &drain, StepState::Running, 105, None)
            .expect("start");
        c.transition(
            &idx,
            &drain,
            StepState::Failed,
            106,
            Some("PDB shop/payments".into()),
        )
        .expect("fail");
        assert_eq!(
            c.nodes[first_node].message.as_deref(),
            Some("PDB shop/payments")
        );
        c.transition(&idx, &drain, StepState::Running, 107, None)
            .expect("a failed step may be retried");
        assert!(matches!(
            c.transition(&idx, "nope", StepState::Running, 1, None),
            Err(CheckpointError::UnknownStep(_))
        ));
    }

    #[test]
    fn prior_state_is_recorded_once() {
        let p = plan(1);
        let mut c = Checkpoint::new(&p, "r", 1);
        let n = &p.nodes[0].name;
        assert!(c.record_prior(
            n,
            &NodePrior {
                cordoned: true,
                labelled: false
            }
        ));
        assert!(
            !c.record_prior(
                n,
                &NodePrior {
                    cordoned: false,
                    labelled: true
                }
            ),
            "a resumed run must not overwrite it"
        );
        assert_eq!(
            c.prior(n),
            Some(NodePrior {
                cordoned: true,
                labelled: false
            })
        );
    }

    #[test]
    fn other_versions_and_other_plans_are_refused_with_reasons() {
        let p = plan(3);
        let c = Checkpoint::new(&p, "r", 1);
        let future = c.to_json().replace("\"version\":1", "\"version\":9");
        assert_eq!(
            Checkpoint::from_json(&future),
            Err(CheckpointError::Version { found: 9 })
        );
        assert!(matches!(
            Checkpoint::from_json("{"),
            Err(CheckpointError::Malformed(_))
        ));
        let bigger = plan(4);
        let err = c
            .verify_fingerprint(&bigger)
            .expect_err("different node set");
        assert!(err.to_string().contains("is new"), "{err}");
        c.verify_fingerprint(&p).expect("same plan");
    }

    #[test]
    fn the_file_store_writes_atomically_and_refuses_a_lost_race() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = FileStore::new(dir.path().join("state.json"));
        assert!(store.load().expect("load").is_none());
        let p = plan(2);
        let mut a = Checkpoint::new(&p, "a", 1);
        store.save(&mut a).expect("first write");
        let mut b = store.load().expect("load").expect("exists");
        store.save(&mut a).expect("a writes again");
        assert!(matches!(
            store.save(&mut b),
            Err(StoreError::Conflict {
                expected: 1,
                found: 2
            })
        ));
        assert_eq!(store.load().expect("load").expect("exists").generation, 2);
        std::fs::write(dir.path().join("state.json"), "garbage").expect("write");
        assert!(matches!(store.load(), Err(StoreError::Parse { .. })));
    }
}
