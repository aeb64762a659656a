//! The plan's data: steps, their kinds and phases, the planned nodes, and the [`Plan`] that
//! holds them. This is the JSON interface `plan -o json` prints and the executor reads.
//!
//! ```text
//! Plan ─┬─ source: SourceSummary      summary: PlanSummary      findings, spec, facts, artifacts
//!       ├─ nodes: [PlannedNode]       (admission order, canaries first)
//!       └─ steps: [Step]              kind: StepKind, phase: Phase, depends_on: [step id]
//! ```

use std::{collections::BTreeMap, fmt};

use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};

use crate::{
    facts::{CniKind, Encapsulation, NetworkFacts},
    findings::Finding,
    spec::MigrationSpec,
    values::Artifacts,
};

/// What a step does. The names are part of the JSON interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Re-check the preflight findings against the live cluster.
    Preflight,
    /// EKS: confine aws-node to nodes labelled `io.cilium/aws-node-enabled=true`.
    PatchAwsNode,
    /// Cilium installed in secondary (migration) mode, checked through `cilium-config`.
    CiliumInstalled,
    /// The migration `CiliumNodeConfig` applied.
    NodeConfig,
    /// Cordon the node.
    Cordon,
    /// Drain the node (evictions).
    Drain,
    /// Label the node for the `CiliumNodeConfig`.
    Label,
    /// EKS overlay: remove the node's `io.cilium/aws-node-enabled` label, wait for aws-node to
    /// leave it, flush the VPC CNI's nat chains.
    StopAwsNode,
    /// Delete the node's Cilium agent pod; wait for a new, Ready one.
    RestartAgent,
    /// Evict the node's pods Cilium does not manage (no CiliumEndpoint, or an address outside
    /// Cilium's ranges), honouring PDBs.
    RestartUnmanagedPods,
    /// Run the reboot hook; wait for the node to be Ready again.
    Reboot,
    /// Verify the node runs on Cilium.
    Verify,
    /// Uncordon the node (only if the tool cordoned it).
    Uncordon,
    /// Final Helm values: Cilium becomes the primary CNI.
    FinalValues,
    /// Delete the migration `CiliumNodeConfig`.
    DeleteNodeConfig,
    /// Remove the old CNI's objects.
    RemoveOldCni,
    /// Remove the old CNI's leftovers (iptables chains, devices, routes) on every node, with a
    /// privileged host-network pod per node, a bounded number at a time.
    CleanOldCni,
    /// Final check: every pod on Cilium, policy enforcement on.
    FinalVerify,
    /// Rollback: remove the node's migration label, so the `CiliumNodeConfig` no longer
    /// applies to it.
    Unlabel,
    /// Rollback: a privileged pod on the node renames `*.cilium_bak` back and removes
    /// `05-cilium.conflist` in the node's CNI directory.
    RestoreCni,
    /// Rollback, EKS overlay: label the node `io.cilium/aws-node-enabled=true` again and wait
    /// for a Ready aws-node pod on it.
    StartAwsNode,
    /// Rollback: a probe pod on the node gets an old-overlay address and reaches the API
    /// server and the beacons.
    VerifyRollback,
}

impl StepKind {
    /// The kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Preflight => "preflight",
            StepKind::PatchAwsNode => "patch-aws-node",
            StepKind::StopAwsNode => "stop-aws-node",
            StepKind::RestartUnmanagedPods => "restart-unmanaged-pods",
            StepKind::CiliumInstalled => "cilium-installed",
            StepKind::NodeConfig => "node-config",
            StepKind::Cordon => "cordon",
            StepKind::Drain => "drain",
            StepKind::Label => "label",
            StepKind::RestartAgent => "restart-agent",
            StepKind::Reboot => "reboot",
            StepKind::Verify => "verify",
            StepKind::Uncordon => "uncordon",
            StepKind::FinalValues => "final-values",
            StepKind::DeleteNodeConfig => "delete-node-config",
            StepKind::RemoveOldCni => "remove-old-cni",
            StepKind::CleanOldCni => "clean-old-cni",
            StepKind::FinalVerify => "final-verify",
            StepKind::Unlabel => "unlabel",
            StepKind::RestoreCni => "restore-cni",
            StepKind::StartAwsNode => "start-aws-node",
            StepKind::VerifyRollback => "verify-rollback",
        }
    }

    /// Whether the step changes the cluster (everything but checks).
    pub fn mutates(self) -> bool {
        !matches!(
            self,
            StepKind::Preflight
                | StepKind::Verify
                | StepKind::FinalVerify
                | StepKind::VerifyRollback
        )
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phase a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before any node.
    Prelude,
    /// A node's own chain.
    Node,
    /// After every node.
    Finale,
    /// A node's rollback chain ([`rollback_chain`](super::rollback_chain)); never part of
    /// [`Plan::steps`].
    Rollback,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique, stable id: the kind for global steps (`cilium-installed`), `NODE/KIND` for
    /// per-node steps (`kind-worker/drain`), `final-reboot/NODE` for the finale's reboots,
    /// `rollback/NODE/KIND` for a node's rollback chain (`rollback/kind-worker/restore-cni`).
    pub id: String,
    /// What it does.
    pub kind: StepKind,
    /// The node, for per-node steps.
    pub node: Option<String>,
    /// Ids of the steps that must be done first.
    pub depends_on: Vec<String>,
    /// Prelude, node, finale or rollback.
    pub phase: Phase,
    /// How long the step may take before it fails, in seconds.
    pub timeout_seconds: u64,
    /// One line a reviewer can read.
    pub description: String,
    /// The kubectl / helm commands that do the same by hand.
    pub commands: Vec<String>,
}

/// Why a node sits where it does in the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNode {
    /// Node name.
    pub name: String,
    /// Position in the admission order, from 1.
    pub order: usize,
    /// `worker` or `control-plane`.
    pub role: String,
    /// Migrated first, alone.
    pub canary: bool,
    /// Critical singletons on the node (cilium-operator, CoreDNS) that put it last.
    pub critical_pods: Vec<String>,
    /// Pods a drain would evict.
    pub pods_to_evict: usize,
    /// PDBs covering those pods.
    pub pdbs: Vec<String>,
    /// The node already carries the migration label (a resumed or partial migration).
    pub already_labelled: bool,
    /// The node is cordoned now (the tool will leave it cordoned).
    pub cordoned: bool,
    /// The node is not Ready now.
    pub not_ready: bool,
    /// `metadata.uid`: a node replaced under the same name has another. Not part of the
    /// plan's JSON (the plan's identity is not the node set); the executor records it.
    #[serde(skip)]
    pub uid: String,
}

/// The old CNI in brief, as the JSON interface promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSummary {
    /// Which CNI.
    pub cni: CniKind,
    /// The old pod network's CIDRs.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<String>,
    /// Its encapsulation.
    pub encapsulation: Encapsulation,
    /// Its UDP port, if any.
    pub port: Option<u16>,
}

/// Counts for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Nodes in the plan.
    pub nodes: usize,
    /// Canary nodes.
    pub canaries: usize,
    /// Nodes in flight at once after the canaries.
    pub max_in_flight: usize,
    /// Pods the drains will evict, all nodes together.
    pub pods_to_evict: usize,
    /// Error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Steps in the DAG.
    pub steps: usize,
}

/// A migration plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `cni-migrate.io/v1alpha1`.
    pub api_version: String,
    /// `Plan`.
    pub kind: String,
    /// The spec's name.
    pub name: String,
    /// Hash of the spec and of the facts a migration relies on; a checkpoint is only ever
    /// resumed against a plan with the same fingerprint.
    pub fingerprint: String,
    /// The old CNI in brief.
    pub source: SourceSummary,
    /// Counts.
    pub summary: PlanSummary,
    /// Preflight findings, errors first.
    pub findings: Vec<Finding>,
    /// The spec the plan was built from.
    pub spec: MigrationSpec,
    /// Everything detection learned.
    pub facts: NetworkFacts,
    /// Generated Helm values and CiliumNodeConfig.
    pub artifacts: Artifacts,
    /// Nodes in admission order.
    pub nodes: Vec<PlannedNode>,
    /// Steps, in an order that respects every dependency.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether any finding blocks `apply`.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }

    /// A step by id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Steps of one node, in chain order.
    pub fn node_steps<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps
            .iter()
            .filter(move |s| s.phase == Phase::Node && s.node.as_deref() == Some(node))
    }

    /// The steps as a petgraph DAG (edges point from a dependency to its dependent).
    pub fn graph(&self) -> DiGraph<&Step, ()> {
        let mut g = DiGraph::new();
        let idx: BTreeMap<&str, _> = self
            .steps
            .iter()
            .map(|s| (s.id.as_str(), g.add_node(s)))
            .collect();
        for s in &self.steps {
            for d in &s.depends_on {
                if let (Some(&from), Some(&to)) = (idx.get(d.as_str()), idx.get(s.id.as_str())) {
                    g.add_edge(from, to, ());
                }
            }
        }
        g
    }
}
