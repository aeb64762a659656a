//! What `cni-migrate status` reports: a stable, documented shape built from the checkpoint, the
//! lock and (when the cluster answers) the pods Cilium manages. `status -o json` prints it as
//! is; the text form is the CLI's rendering of it.
//!
//! ```text
//! Status v1
//!   version, plan, fingerprint, runId, checkpoint (where), updated (Unix s)
//!   state: running | finished | gate | paused | failed | stopped | stale-lock, and a message
//!   gate, failure {step, node, reason, at}, lock {holder, fresh, renewedSecondsAgo}
//!   counts {nodes, done, inFlight, failed, pending, rolledBack}
//!   clusterSteps [{id, kind, state, started, finished, message}]
//!   nodes [{name, state, step, message, prior, steps [{kind, state, started, finished}],
//!           rollback [...]}]
//!   pods {summary, managed, total, unmanaged}      (absent without a cluster)
//! ```

use cluster::Cluster;
use serde::Serialize;

use crate::{
    checkpoint::{Checkpoint, NodePrior, NodeRecord, NodeStatus, StepRecord, StepState},
    endpoints::{Endpoints, on_pod_network},
};

/// The version of the status document.
pub const STATUS_VERSION: u32 = 1;

/// Where the migration is, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// A run holds a fresh lock.
    Running,
    /// Every node and cluster step is done.
    Finished,
    /// Stopped at a gate: something outside the tool must happen, then `resume`.
    Gate,
    /// Paused.
    Paused,
    /// Stopped by a failure.
    Failed,
    /// Not running, nothing in the way: `resume` goes on.
    Stopped,
    /// The run holding the lock stopped renewing it (crashed?).
    StaleLock,
}

/// The lock, as `status` sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockView {
    /// `run-id@host`.
    pub holder: String,
    /// Renewed within its duration.
    pub fresh: bool,
    /// Seconds since its last renewal, when known.
    pub renewed_seconds_ago: Option<u64>,
}

/// The failure that stopped the run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    /// The step id.
    pub step: String,
    /// Its node.
    pub node: Option<String>,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// How many nodes are where.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// In the checkpoint.
    pub nodes: usize,
    /// Migrated.
    pub done: usize,
    /// Started, not done.
    pub in_flight: usize,
    /// Stopped by a failed step.
    pub failed: usize,
    /// Not started.
    pub pending: usize,
    /// Rolled back, held until `resume --retry`.
    pub rolled_back: usize,
    /// Left the cluster (deleted or replaced) during the migration.
    pub left: usize,
    /// Joined the cluster after the migration started.
    pub joined: usize,
    /// Replaced by a node of the same name and a new UID (also counted in `left`; the
    /// successor is in `nodes`).
    pub replaced: usize,
}

/// A step as `status` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    /// The id (cluster steps) or the kind (node steps).
    pub id: String,
    /// Its state.
    pub state: StepState,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// The failure message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a node is, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Not started.
    Pending,
    /// Started, not done.
    InFlight,
    /// Stopped by a failed step.
    Failed,
    /// Migrated.
    Done,
    /// Rolled back (or being rolled back); held until `resume --retry`.
    RolledBack,
    /// Left the cluster during the migration: nothing more is done on it.
    Left,
    /// Joined under `rollout.newNodes: hold`; waits for `resume --retry`.
    Awaiting,
}

/// A node as `status` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node.
    pub name: String,
    /// Where it is.
    pub state: NodeState,
    /// The step it is at (running, next, or failed), by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What to know: the failure, or what happens next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node before the migration touched it, once recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior: Option<NodePrior>,
    /// Its chain.
    pub steps: Vec<StepView>,
    /// Its rollback chain, once a rollback started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<StepView>,
    /// When it joined the migration after it started (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<u64>,
    /// When it left the cluster (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<u64>,
    /// Its `metadata.uid`, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Pods off the host network and how many Cilium manages.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedPods {
    /// `N/M pods managed by Cilium`.
    pub summary: String,
    /// Managed.
    pub managed: usize,
    /// Off the host network.
    pub total: usize,
    /// The first few it does not manage.
    pub unmanaged: Vec<String>,
}

/// The status document.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// The plan's name.
    pub plan: String,
    /// The plan's fingerprint.
    pub fingerprint: String,
    /// The run that last wrote the checkpoint.
    pub run_id: String,
    /// Where the checkpoint lives.
    pub checkpoint: String,
    /// When it was last written, Unix seconds.
    pub updated: u64,
    /// Where the migration is.
    pub state: RunState,
    /// The same, in a sentence.
    pub message: String,
    /// The gate it stopped at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The failure that stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureView>,
    /// The lock, when held.
    pub lock: Option<LockView>,
    /// How many nodes are where.
    pub counts: Counts,
    /// The prelude and finale.
    pub cluster_steps: Vec<StepView>,
    /// Every node.
    pub nodes: Vec<NodeView>,
    /// Nodes replaced by a node of the same name and a new UID, as they were when they left
    /// (state `left`); the successor is in `nodes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<NodeView>,
    /// Pods Cilium manages (when the cluster could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<ManagedPods>,
}

fn at(ck: &Checkpoint, rel: Option<u32>) -> Option<u64> {
    rel.map(|t| ck.created + u64::from(t))
}

fn steps(ck: &Checkpoint, names: &[String], records: &[StepRecord]) -> Vec<StepView> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| StepView {
            id: names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("step {}", i + 1)),
            state: r.state,
            started: at(ck, r.started),
            finished: at(ck, r.finished),
            message: None,
        })
        .collect()
}

impl Status {
    /// The status of a checkpoint, with the lock as seen now.
    pub fn new(ck: &Checkpoint, store: &str, lock: Option<LockView>) -> Self {
        let mut counts = Counts {
            nodes: ck.nodes.len(),
            ..Counts::default()
        };
        let step_name = |i: usize| {
            ck.chain
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("step {}", i + 1))
        };
        let mut view = |name: &String, rec: &NodeRecord| {
            if rec.joined.is_some() {
                counts.joined += 1;
            }
            let (state, step, message) = match rec.status() {
                NodeStatus::Left => {
                    counts.left += 1;
                    let was = if rec.done() {
                        "after it was migrated".to_owned()
                    } else {
                        match rec.status_ignoring_left() {
                            NodeStatus::Pending => "before it started".to_owned(),
                            _ => "mid-chain; its chain stopped there".to_owned(),
                        }
                    };
                    (
                        NodeState::Left,
                        None,
                        Some(format!(
                            "left the cluster {was}: nothing more is done on it"
                        )),
                    )
                }
                NodeStatus::Awaiting => {
                    counts.pending += 1;
                    (
                        NodeState::Awaiting,
                        None,
                        Some(format!(
                            "joined after the migration started; held (rollout.newNodes: hold) until `cni-migrate resume --retry {name}`"
                        )),
                    )
                }
                NodeStatus::RolledBack => {
                    counts.rolled_back += 1;
                    let message = match rec.rollback.iter().position(|s| !s.state.is_complete()) {
                        None => format!(
                            "rolled back to the old CNI; held until `cni-migrate resume --retry {name}`"
                        ),
                        Some(_) if rec.rollback.iter().any(|s| s.state == StepState::Failed) => {
                            format!(
                                "the rollback failed: {}; run `cni-migrate rollback {name}` again once fixed",
                                rec.message.clone().unwrap_or_default()
                            )
                        }
                        Some(_) => format!(
                            "being rolled back; `cni-migrate rollback {name}` goes on with it"
                        ),
                    };
                    (NodeState::RolledBack, None, Some(message))
                }
                NodeStatus::Failed { step } => {
                    counts.failed += 1;
                    (
                        NodeState::Failed,
                        Some(step_name(step)),
                        rec.message.clone(),
                    )
                }
                NodeStatus::Done => {
                    counts.done += 1;
                    (NodeState::Done, None, None)
                }
                NodeStatus::InFlight { step, running } => {
                    counts.in_flight += 1;
                    let what = if running { "running" } else { "next" };
                    (
                        NodeState::InFlight,
                        Some(step_name(step)),
                        Some(format!("{what}: {}", step_name(step))),
                    )
                }
                NodeStatus::Pending => {
                    counts.pending += 1;
                    (NodeState::Pending, None, None)
                }
            };
            NodeView {
                name: name.clone(),
                state,
                step,
                message,
                prior: rec.prior.clone(),
                steps: steps(ck, &ck.chain, &rec.steps),
                rollback: steps(ck, &ck.rollback_chain, &rec.rollback),
                joined: at(ck, rec.joined),
                left: at(ck, rec.left),
                uid: rec.uid.clone(),
            }
        };
        let nodes: Vec<NodeView> = ck.nodes.iter().map(|(n, r)| view(n, r)).collect();
        let replaced: Vec<NodeView> = ck
            .replaced
            .iter()
            .map(|f| {
                let mut v = view(&f.name, &f.record);
                v.message = Some(format!(
                    "replaced by a node of the same name{}: the old node is recorded as gone, the new one joined",
                    ck.node(&f.name)
                        .and_then(|r| r.uid.as_deref())
                        .map(|u| format!(" (new UID {u})"))
                        .unwrap_or_default()
                ));
                v
            })
            .collect();
        for v in &replaced {
            if v.state == NodeState::Left {
                counts.replaced += 1;
            }
        }

        let cluster_steps = ck
            .global
            .iter()
            .map(|(id, g)| StepView {
                id: id.clone(),
                state: g.state,
                started: at(ck, g.started),
                finished: at(ck, g.finished),
                message: g.message.clone(),
            })
            .collect();
        let (state, message) = if let Some(f) = &ck.failure {
            (
                RunState::Failed,
                format!("stopped by a failure: {} failed: {}", f.step, f.reason),
            )
        } else if let Some(g) = &ck.gate {
            (RunState::Gate, format!("stopped at a gate: {g}"))
        } else if ck.paused {
            (
                RunState::Paused,
                "paused (no new node starts; `cni-migrate resume` goes on)".to_owned(),
            )
        } else if ck.finished() {
            (RunState::Finished, "finished".to_owned())
        } else if lock.as_ref().is_some_and(|l| l.fresh) {
            (RunState::Running, "running".to_owned())
        } else if lock.is_some() {
            (
                RunState::StaleLock,
                "stopped: the run holding the lock stopped renewing it (crashed?); check it is gone, then \
                 `cni-migrate resume --force-unlock`"
                    .to_owned(),
            )
        } else {
            (
                RunState::Stopped,
                "stopped (no run holds the lock): `cni-migrate resume` goes on".to_owned(),
            )
        };
        Self {
            version: STATUS_VERSION,
            plan: ck.plan.clone(),
            fingerprint: ck.fingerprint.clone(),
            run_id: ck.run_id.clone(),
            checkpoint: store.to_owned(),
            updated: ck.updated,
            state,
            message,
            gate: ck.gate.clone(),
            failure: ck.failure.as_ref().map(|f| FailureView {
                step: f.step.clone(),
                node: f
                    .step
                    .split_once('/')
                    .map(|(n, _)| n.to_owned())
                    .filter(|n| ck.nodes.contains_key(n)),
                reason: f.reason.clone(),
                at: ck.created + u64::from(f.at),
            }),
            lock,
            counts,
            cluster_steps,
            nodes,
            replaced,
            pods: None,
        }
    }
}

/// How many pods off the host network Cilium manages (a CiliumEndpoint with the pod's IP), as
/// `cilium status` counts them. `None` when the cluster cannot be read.
pub async fn managed_pods(c: &dyn Cluster) -> Option<ManagedPods> {
    let pods = c.pods(None, "").await.ok()?;
    let eps = Endpoints::list(c).await.unwrap_or_default();
    let mut out = ManagedPods::default();
    for p in pods.iter().filter(|p| on_pod_network(p)) {
        out.total += 1;
        if eps.covers(p) {
            out.managed += 1;
        } else if out.unmanaged.len() < 10 {
            out.unmanaged.push(p.key());
        }
    }
    out.summary = format!("{}/{} pods managed by Cilium", out.managed, out.total);
    Some(out)
}
