//! What a step is given: the cluster, the plan, the run's configuration, its node, and a
//! narrow interface to the run's record ([`Ledger`]) for the few things a step must record
//! before it acts or read from what earlier steps recorded.
//!
//! ```text
//! StepCtx ─┬─ cluster   the Cluster trait (KubeCluster against a real or simulated API server)
//!          ├─ plan      spec, facts, nodes, artifacts
//!          ├─ config    timing, Helm, work dir
//!          ├─ node      the step's node ("" for cluster steps)
//!          ├─ ledger    prior state, agent UIDs (recorded before the label changes), progress
//!          │            of other nodes (beacons), when the agent restarted, eviction counts
//!          └─ shared    what concurrent node chains share (the beacons' lock)
//! ```

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use cluster::Cluster;
use planner::{MigrationSpec, Plan};

use crate::{
    checkpoint::{NodePrior, NodeStatus},
    config::{RunConfig, Timing},
    error::{StepError, cl},
    ranges::Ranges,
};

/// What a step's execution came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// Its effect holds; what was done or seen.
    Done(String),
    /// It needs a human: stop at a gate with this message.
    Gate(String),
}

/// The run's record, as steps may read and extend it.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The node's state before the tool changed anything on it.
    async fn prior(&self, node: &str) -> Option<NodePrior>;
    /// The agent pod UIDs recorded when the migration label changed.
    async fn agent_uids(&self, node: &str) -> Option<Vec<String>>;
    /// Records the agent pod UIDs (only the first time) and saves the record before the label
    /// changes.
    ///
    /// # Errors
    /// [`StepError::Record`] when the record cannot be saved: the label must not change then.
    async fn record_agent_uids(&self, node: &str, uids: Vec<String>) -> Result<(), StepError>;
    /// Where another node is.
    async fn status(&self, node: &str) -> Option<NodeStatus>;
    /// Where each of these nodes is (those the record knows), read at once.
    async fn statuses(&self, nodes: &[&str]) -> std::collections::HashMap<String, NodeStatus> {
        let mut out = std::collections::HashMap::new();
        for n in nodes {
            if let Some(s) = self.status(n).await {
                out.insert((*n).to_owned(), s);
            }
        }
        out
    }
    /// When the node's agent restart finished (Unix seconds), if it did.
    async fn restarted_at(&self, node: &str) -> Option<u64>;
    /// Adds evictions and PDB waits to the run's counters.
    fn count_evictions(&self, node: &str, evicted: &[String], waits: &BTreeMap<String, Duration>);
}

/// What concurrent node chains share.
#[derive(Default)]
pub struct Shared {
    /// Held while beacons are placed or moved (nodes verify concurrently).
    pub beacons: tokio::sync::Mutex<()>,
    /// The node the old overlay's beacon is on: admitted after every other node, so that it
    /// moves as rarely as possible.
    pub old_beacon: std::sync::Mutex<Option<String>>,
    /// A node's pods as the drain's announcement listed them (and the watch they came from),
    /// taken by the drain that follows at once (one LIST for both).
    pub listed: std::sync::Mutex<std::collections::BTreeMap<String, crate::drain::Listed>>,
}

impl Shared {
    /// Notes the node the old overlay's beacon is on.
    pub fn note_old_beacon(&self, node: &str) {
        let mut b = self
            .old_beacon
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.as_deref() != Some(node) {
            *b = Some(node.to_owned());
        }
    }
}

/// Everything a step may use.
pub struct StepCtx<'a> {
    /// The cluster.
    pub cluster: &'a dyn Cluster,
    /// The plan.
    pub plan: &'a Plan,
    /// How to run.
    pub config: &'a RunConfig,
    /// The step's node (empty for cluster-wide steps).
    pub node: &'a str,
    /// The run's record.
    pub ledger: &'a dyn Ledger,
    /// What node chains share.
    pub shared: &'a Shared,
}

impl StepCtx<'_> {
    /// The spec.
    pub fn spec(&self) -> &MigrationSpec {
        &self.plan.spec
    }

    /// The run's pacing.
    pub fn timing(&self) -> &Timing {
        &self.config.timing
    }

    /// How long the verification of a node may take (`rollout.verify.timeout`).
    pub fn verify_timeout(&self) -> Duration {
        self.spec().rollout.verify.timeout.0
    }

    /// Cilium's ranges: the spec's pool for an overlay; in ENI mode, every address of every
    /// CiliumNode's ENI pool (there is no pool to name in advance).
    ///
    /// # Errors
    /// An API failure (ENI mode).
    pub async fn ranges(&self) -> Result<Ranges, StepError> {
        let spec = self.spec();
        if spec.target.mode.is_overlay() {
            return Ok(Ranges::new(spec.target.pod_cidrs.iter().copied()));
        }
        let cns = self
            .cluster
            .cilium_nodes()
            .await
            .map_err(cl("listing CiliumNodes"))?;
        Ok(Ranges::new(cns.iter().flat_map(|cn| {
            cn.pod_cidrs.iter().filter_map(|c| c.parse().ok())
        })))
    }

    /// Since when (Unix seconds) a node's new pods must be on Cilium: its agent restart; in
    /// ENI mode, where the restart-unmanaged-pods step moved every pod, all of them.
    pub async fn on_cilium_since(&self, node: &str) -> u64 {
        if self.spec().target.mode.is_overlay() {
            self.ledger.restarted_at(node).await.unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}
