//! The plan: a DAG of steps, and the node order the executor admits nodes in.
//!
//! ```text
//! prelude:  preflight ─► cilium-installed ─► node-config
//!                                               │
//! canaries: cordon ─► drain ─► label ─► restart-agent ─► [reboot] ─► verify ─► uncordon   (one at a time)
//!                                               │
//! the rest: the same chain per node, each depending on the last canary; the executor keeps at
//!           most `maxInFlight` of them in flight, in `nodes` order
//!                                               │
//! finale:   final-values ─► delete-node-config ─► remove-old-cni ─► [reboot per node] ─► final-verify
//! ```
//!
//! The EKS profiles (`target.mode`) change the chain:
//!
//! ```text
//! eks-overlay: preflight ─► patch-aws-node ─► cilium-installed ─► node-config
//!              per node: cordon ─► drain ─► label ─► stop-aws-node ─► restart-agent ─► [reboot]
//!                        ─► restart-unmanaged-pods ─► verify ─► uncordon
//! eks-eni:     preflight ─► patch-aws-node ─► cilium-installed (takes every node's CNI over)
//!              per node: restart-unmanaged-pods ─► verify
//!              finale without delete-node-config (there is no CiliumNodeConfig)
//! ```

use std::{collections::BTreeMap, fmt, time::Duration};

use petgraph::{algo::toposort, graph::DiGraph};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    facts::{CniKind, Encapsulation, NetworkFacts},
    findings::{Finding, Severity},
    snapshot::{ClusterSnapshot, NodeInfo, PdbIndex, PodInfo},
    spec::{MigrationSpec, TargetMode},
    values::{self, Artifacts},
};

/// The label that selects nodes for the migration `CiliumNodeConfig`.
pub const MIGRATION_LABEL: &str = "io.cilium.migration/cilium-default";
/// Name (and namespace) of the migration `CiliumNodeConfig`.
pub const NODE_CONFIG_NAME: &str = "cilium-default";
/// Namespace of Cilium's objects.
pub const CILIUM_NAMESPACE: &str = "kube-system";
/// The node label Cilium's EKS guide puts in aws-node's node selector: aws-node runs only
/// where a node carries it.
pub const AWS_NODE_LABEL: &str = "io.cilium/aws-node-enabled";

/// The patch that confines aws-node to nodes labelled [`AWS_NODE_LABEL`]`=true`.
pub fn aws_node_patch() -> serde_json::Value {
    serde_json::json!({"spec": {"template": {"spec": {"nodeSelector": {AWS_NODE_LABEL: "true"}}}}})
}

/// The kubectl command of [`aws_node_patch`].
pub fn aws_node_patch_command() -> String {
    format!(
        "kubectl -n kube-system patch daemonset aws-node --type=strategic -p {}",
        shell_quote(&aws_node_patch().to_string())
    )
}

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
    /// Final check: every pod on Cilium, policy enforcement on.
    FinalVerify,
    /// Rollback: remove the migration label.
    Unlabel,
    /// Rollback: put the old CNI's configuration files back.
    RestoreCni,
    /// Rollback, EKS overlay: bring aws-node back to the node.
    StartAwsNode,
    /// Rollback: the node hands out old-overlay addresses again.
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
    /// A node's way back to the old CNI (`cni-migrate rollback`).
    Rollback,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique, stable id: the kind for global steps (`cilium-installed`), `NODE/KIND` for
    /// per-node steps (`kind-worker/drain`), `final-reboot/NODE` for the finale's reboots.
    pub id: String,
    /// What it does.
    pub kind: StepKind,
    /// The node, for per-node steps.
    pub node: Option<String>,
    /// Ids of the steps that must be done first.
    pub depends_on: Vec<String>,
    /// Prelude, node or finale.
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

/// Pods a drain evicts: not DaemonSet-managed, not mirror pods, not finished, not terminating,
/// not the tool's own (it removes those itself).
pub fn evictable(pod: &PodInfo) -> bool {
    !pod.is_daemonset_pod()
        && !pod.mirror
        && !pod.phase.is_finished()
        && !pod.terminating
        && !pod.is_cni_migrate_pod()
}

/// Critical singletons that put a node last: the Cilium operator and CoreDNS.
fn critical_name(pod: &PodInfo) -> Option<&'static str> {
    let label = |k: &str| pod.labels.get(k).map(String::as_str);
    if label("io.cilium/app") == Some("operator") || label("name") == Some("cilium-operator") {
        Some("cilium-operator")
    } else if label("k8s-app") == Some("kube-dns") {
        Some("coredns")
    } else {
        None
    }
}

/// Builds the plan. Pure: the same inputs give the same plan, byte for byte.
pub fn build(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    facts: &NetworkFacts,
    mut findings: Vec<Finding>,
) -> Plan {
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.objects, &a.message)
            .cmp(&(b.severity, b.code, &b.objects, &b.message))
    });
    let artifacts = values::generate(spec, facts);
    let nodes = order_nodes(spec, snapshot);
    let max_in_flight = spec.rollout.max_in_flight(nodes.len());
    let steps = build_steps(spec, facts, &nodes);
    debug_assert!(steps_are_acyclic(&steps));

    let summary = PlanSummary {
        nodes: nodes.len(),
        canaries: nodes.iter().filter(|n| n.canary).count(),
        max_in_flight,
        pods_to_evict: nodes.iter().map(|n| n.pods_to_evict).sum(),
        errors: findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
        steps: steps.len(),
    };
    let source = SourceSummary {
        cni: facts.source.cni,
        pod_cidrs: facts
            .source
            .pod_cidrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        encapsulation: facts.source.encapsulation,
        port: facts.source.port,
    };
    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    Plan {
        api_version: crate::spec::API_VERSION.to_owned(),
        kind: "Plan".to_owned(),
        name: spec.metadata.name.clone(),
        fingerprint: fingerprint(spec, facts, &node_names),
        source,
        summary,
        findings,
        spec: spec.clone(),
        facts: facts.clone(),
        artifacts,
        nodes,
        steps,
    }
}

/// The fingerprint covers the spec, the source overlay, the service CIDR and the node set:
/// the facts a half-done migration relies on. It deliberately leaves out what a migration
/// itself changes (an installed Cilium, pods, cordons), so a resumed run matches.
pub fn fingerprint(spec: &MigrationSpec, facts: &NetworkFacts, nodes: &[&str]) -> String {
    let mut sorted: Vec<&str> = nodes.to_vec();
    sorted.sort_unstable();
    let doc = serde_json::json!({
        "spec": spec,
        "source": {
            "cni": facts.source.cni,
            "podCIDRs": facts.source.pod_cidrs,
            "encapsulation": facts.source.encapsulation,
            "port": facts.source.port,
        },
        "serviceCIDRs": facts.service.cidrs,
        "nodes": sorted,
    });
    let mut h = Sha256::new();
    h.update(doc.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..32])
}

/// Orders nodes: non-critical before critical, workers before control-plane nodes, then by
/// name; the first `canary` nodes (preferring workers without critical pods) are canaries.
fn order_nodes(spec: &MigrationSpec, snapshot: &ClusterSnapshot) -> Vec<PlannedNode> {
    let mut by_node: BTreeMap<&str, Vec<&PodInfo>> = BTreeMap::new();
    for pod in &snapshot.pods {
        if let Some(n) = &pod.node_name {
            by_node.entry(n.as_str()).or_default().push(pod);
        }
    }
    let index = PdbIndex::new(&snapshot.pdbs);
    // (critical, control plane, node, critical pods, pods to evict, PDBs)
    type Entry<'a> = (bool, bool, &'a NodeInfo, Vec<String>, usize, Vec<String>);
    let mut entries: Vec<Entry<'_>> = snapshot
        .nodes
        .iter()
        .map(|node| {
            let pods = by_node
                .get(node.name.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut critical: Vec<String> = pods
                .iter()
                .filter_map(|p| critical_name(p).map(|c| format!("{c} ({})", p.key())))
                .collect();
            critical.sort();
            let evict: Vec<&&PodInfo> = pods.iter().filter(|p| evictable(p)).collect();
            let mut pdbs: Vec<String> = evict
                .iter()
                .flat_map(|p| index.for_pod(p))
                .map(|pdb| format!("{}/{}", pdb.namespace, pdb.name))
                .collect();
            pdbs.sort();
            pdbs.dedup();
            (
                !critical.is_empty(),
                node.is_control_plane(),
                node,
                critical,
                evict.len(),
                pdbs,
            )
        })
        .collect();
    entries.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    let canaries = usize::try_from(spec.rollout.canary)
        .unwrap_or(usize::MAX)
        .min(entries.len());
    entries
        .into_iter()
        .enumerate()
        .map(
            |(i, (_, cp, node, critical_pods, pods_to_evict, pdbs))| PlannedNode {
                name: node.name.clone(),
                order: i + 1,
                role: if cp { "control-plane" } else { "worker" }.to_owned(),
                canary: i < canaries,
                critical_pods,
                pods_to_evict,
                pdbs,
                already_labelled: node
                    .labels
                    .get(MIGRATION_LABEL)
                    .is_some_and(|v| v == "true"),
                cordoned: node.unschedulable,
                not_ready: !node.ready,
            },
        )
        .collect()
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Quotes one word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The reboot command for a node, `{node}` substituted, as a shell line.
pub fn reboot_command_line(command: &[String], node: &str) -> String {
    command
        .iter()
        .map(|w| shell_quote(&w.replace("{node}", node)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The helm command line the executor runs (or a human runs at a gate) for a values file.
pub fn helm_command(spec: &MigrationSpec, values_file: &str) -> String {
    format!(
        "helm upgrade --install cilium cilium/cilium --namespace {CILIUM_NAMESPACE} --version {} -f {values_file}",
        spec.target.cilium_version
    )
}

/// The probe the verify step runs, as the Cilium guide writes it.
pub fn verify_command(spec: &MigrationSpec, node: &str) -> String {
    let overrides = format!(
        r#"{{"spec": {{"nodeName": "{node}", "tolerations": [{{"operator": "Exists"}}]}}}}"#
    );
    format!(
        "kubectl -n {CILIUM_NAMESPACE} run --attach --rm --restart=Never verify-network --overrides={} --image {} -- /bin/bash -c {}",
        shell_quote(&overrides),
        shell_quote(&spec.rollout.verify.image),
        shell_quote("ip -br addr && curl -s -k https://$KUBERNETES_SERVICE_HOST/healthz && echo"),
    )
}

fn remove_old_cni_commands(facts: &NetworkFacts) -> Vec<String> {
    let mut cmds: Vec<String> = facts
        .source
        .objects
        .iter()
        .filter(|o| o.kind != "Namespace")
        .map(|o| {
            let kind = o.kind.to_lowercase();
            match &o.namespace {
                Some(ns) => format!(
                    "kubectl delete -n {ns} {kind} {} --ignore-not-found",
                    o.name
                ),
                None => format!("kubectl delete {kind} {} --ignore-not-found", o.name),
            }
        })
        .collect();
    cmds.extend(
        facts
            .source
            .objects
            .iter()
            .filter(|o| o.kind == "Namespace")
            .map(|o| format!("kubectl delete namespace {} --ignore-not-found", o.name)),
    );
    if cmds.is_empty() {
        cmds.push("# no objects of the old CNI were detected: nothing to delete".to_owned());
    }
    cmds
}

#[allow(clippy::too_many_lines)] // one table of steps reads better in one place
fn build_steps(spec: &MigrationSpec, facts: &NetworkFacts, nodes: &[PlannedNode]) -> Vec<Step> {
    let mut steps = Vec::new();
    let global = |kind: StepKind,
                  phase: Phase,
                  deps: Vec<String>,
                  timeout: u64,
                  desc: String,
                  cmds: Vec<String>| Step {
        id: kind.as_str().to_owned(),
        kind,
        node: None,
        depends_on: deps,
        phase,
        timeout_seconds: timeout,
        description: desc,
        commands: cmds,
    };
    steps.push(global(
        StepKind::Preflight,
        Phase::Prelude,
        vec![],
        60,
        "re-run every preflight check against the live cluster; any error stops here".to_owned(),
        vec![format!(
            "cni-migrate plan --spec <spec> # expect no error findings"
        )],
    ));
    let mode = spec.target.mode;
    let mut installed_after = "preflight".to_owned();
    if mode.is_eks() {
        let overlay = mode == TargetMode::EksOverlay;
        steps.push(global(
            StepKind::PatchAwsNode,
            Phase::Prelude,
            vec!["preflight".to_owned()],
            300,
            if overlay {
                format!(
                    "label every node {AWS_NODE_LABEL}=true, then give DaemonSet kube-system/aws-node that node selector: aws-node keeps running on every node until the node migrates"
                )
            } else {
                format!(
                    "give DaemonSet kube-system/aws-node the node selector {AWS_NODE_LABEL}=true (no node has the label): aws-node stops managing ENIs everywhere; running pods keep their addresses"
                )
            },
            if overlay {
                vec![
                    format!("kubectl label nodes --all --overwrite {AWS_NODE_LABEL}=true"),
                    aws_node_patch_command(),
                    "kubectl -n kube-system rollout status ds/aws-node".to_owned(),
                ]
            } else {
                vec![
                    aws_node_patch_command(),
                    "kubectl -n kube-system rollout status ds/aws-node".to_owned(),
                ]
            },
        ));
        installed_after = "patch-aws-node".to_owned();
    }
    let egress = if mode.is_eks() {
        format!(
            ", egress masqueraded on {}",
            values::egress_masquerade_interfaces(spec, facts)
        )
    } else {
        String::new()
    };
    steps.push(global(
        StepKind::CiliumInstalled,
        Phase::Prelude,
        vec![installed_after],
        900,
        if mode == TargetMode::EksEni {
            format!(
                "install Cilium {} in ENI mode (ipam eni, native routing{egress}, policy enforcement off, no unmanaged-pod restarts): every agent writes its CNI configuration as it becomes Ready, so new pods on every node get ENI addresses from Cilium",
                spec.target.cilium_version
            )
        } else {
            format!(
                "install Cilium {} in migration mode (customConf, policy enforcement off, pool {}, {} port {}{egress}) and wait for the agents",
                spec.target.cilium_version,
                spec.target.pod_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                spec.target.tunnel.protocol,
                spec.target.tunnel.effective_port()
            )
        },
        vec![
            "helm repo add cilium https://helm.cilium.io/".to_owned(),
            helm_command(spec, "values-migration.yaml"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium --timeout=15m"),
        ],
    ));
    let prelude_end = if mode.is_overlay() {
        steps.push(global(
            StepKind::NodeConfig,
            Phase::Prelude,
            vec!["cilium-installed".to_owned()],
            60,
            format!(
                "apply CiliumNodeConfig {CILIUM_NAMESPACE}/{NODE_CONFIG_NAME} ({}), selecting nodes labelled {MIGRATION_LABEL}=true (none yet)",
                spec.target.cilium_version.node_config_api_version()
            ),
            vec!["kubectl apply --server-side -f ciliumnodeconfig.yaml".to_owned()],
        ));
        "node-config"
    } else {
        "cilium-installed"
    };
    let last_kind = if mode.is_overlay() {
        StepKind::Uncordon
    } else {
        StepKind::Verify
    };

    let canary_ends: Vec<String> = nodes
        .iter()
        .filter(|n| n.canary)
        .map(|n| format!("{}/{last_kind}", n.name))
        .collect();
    let mut prev_canary_end: Option<String> = None;
    for node in nodes {
        let name = node.name.as_str();
        let first_dep = if node.canary {
            prev_canary_end
                .clone()
                .unwrap_or_else(|| prelude_end.to_owned())
        } else {
            String::new()
        };
        let entry_deps: Vec<String> = if node.canary {
            vec![first_dep]
        } else if canary_ends.is_empty() {
            vec![prelude_end.to_owned()]
        } else {
            canary_ends.clone()
        };
        let honouring = if node.pdbs.is_empty() {
            String::new()
        } else {
            format!(", honouring PDBs {}", node.pdbs.join(", "))
        };
        // ENI mode: no cordon, drain, label or agent restart; Cilium took the node over at
        // install.
        let mut chain: Vec<(StepKind, u64, String, Vec<String>)> = if !mode.is_overlay() {
            Vec::new()
        } else {
            vec![
                (
                    StepKind::Cordon,
                    60,
                    if node.cordoned {
                        format!(
                            "{name} is already cordoned: record it, and leave it cordoned at the end"
                        )
                    } else {
                        format!("cordon {name}, recording that the tool cordoned it")
                    },
                    vec![format!("kubectl cordon {name}")],
                ),
                (
                    StepKind::Drain,
                    secs(spec.rollout.drain.timeout.0),
                    format!(
                        "evict {} pod(s) from {name} through the eviction API{}, waiting for each to be gone (404 or new UID)",
                        node.pods_to_evict, honouring
                    ),
                    vec![drain_command(spec, name)],
                ),
                (
                    StepKind::Label,
                    60,
                    format!(
                        "label {name} {MIGRATION_LABEL}=true so the CiliumNodeConfig applies to it"
                    ),
                    vec![format!(
                        "kubectl label node {name} --overwrite {MIGRATION_LABEL}=true"
                    )],
                ),
                (
                    StepKind::RestartAgent,
                    300,
                    format!(
                        "delete the Cilium agent pod on {name}; wait for a new one, created after the label, to be Ready (it writes 05-cilium.conflist)"
                    ),
                    vec![
                        format!(
                            "kubectl -n {CILIUM_NAMESPACE} delete pod --field-selector spec.nodeName={name} -l k8s-app=cilium"
                        ),
                        format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium -w"),
                    ],
                ),
            ]
        };
        if mode == TargetMode::EksOverlay {
            chain.insert(
                3,
                (
                    StepKind::StopAwsNode,
                    300,
                    format!(
                        "remove {name}'s label {AWS_NODE_LABEL} so aws-node leaves it, wait for its aws-node pod to be gone, then flush the VPC CNI's nat chains from a privileged host-network pod"
                    ),
                    vec![
                        format!("kubectl label node {name} {AWS_NODE_LABEL}-"),
                        format!(
                            "kubectl -n kube-system wait --for=delete pod --field-selector spec.nodeName={name} -l k8s-app=aws-node --timeout=300s"
                        ),
                        format!(
                            "# on {name} (SSM or SSH): {}",
                            crate::preflight::flush_vpc_cni_command()
                        ),
                    ],
                ),
            );
        }
        if let (true, Some(reboot)) = (mode.is_overlay(), &spec.rollout.reboot) {
            chain.push((
                StepKind::Reboot,
                secs(reboot.timeout.0),
                format!("reboot {name} with the reboot hook and wait for it to be Ready"),
                vec![
                    reboot_command_line(&reboot.command, name),
                    format!(
                        "kubectl wait --for=condition=Ready node/{name} --timeout={}s",
                        secs(reboot.timeout.0)
                    ),
                ],
            ));
        }
        if mode.is_eks() {
            chain.push((
                StepKind::RestartUnmanagedPods,
                secs(spec.rollout.drain.timeout.0),
                format!(
                    "evict the pods on {name} that Cilium does not manage (not hostNetwork, and no CiliumEndpoint or an address outside Cilium's ranges), DaemonSet pods included, through the eviction API{}; their replacements start on Cilium",
                    honouring
                ),
                vec![format!(
                    "kubectl get pods -A -o wide --field-selector spec.nodeName={name}  # compare with: kubectl get ciliumendpoints -A"
                ), r#"kubectl create --raw /api/v1/namespaces/NS/pods/POD/eviction -f - <<< '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"namespace":"NS","name":"POD"}}'  # per unmanaged pod"#.to_owned()],
            ));
        }
        let verify_description = if mode.is_overlay() {
            format!(
                "check the agent on {name} is Ready, its CiliumNode pod CIDRs lie in {} and clash with no node's own, and a probe pod pinned to it gets a new-pool IP and reaches the API server and a beacon pod on each overlay",
                spec.target
                    .pod_cidrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            format!(
                "check the agent on {name} is Ready, its CiliumNode has ENI addresses, every non-hostNetwork pod on it has a CiliumEndpoint with its address, and a probe pod pinned to it gets a Cilium address and reaches the API server and a beacon pod on another node"
            )
        };
        chain.push((
            StepKind::Verify,
            secs(spec.rollout.verify.timeout.0),
            verify_description,
            vec![
                if mode.is_overlay() {
                    format!("kubectl get ciliumnode {name} -o jsonpath='{{.spec.ipam.podCIDRs}}'")
                } else {
                    format!("kubectl get ciliumnode {name} -o jsonpath='{{.spec.ipam.pool}}'")
                },
                verify_command(spec, name),
            ],
        ));
        if mode.is_overlay() {
            chain.push((
                StepKind::Uncordon,
                60,
                if node.cordoned {
                    format!("leave {name} cordoned: it was cordoned before the migration")
                } else {
                    format!("uncordon {name}")
                },
                vec![if node.cordoned {
                    format!("# {name} was cordoned before the migration: leave it")
                } else {
                    format!("kubectl uncordon {name}")
                }],
            ));
        }
        let mut deps = entry_deps;
        for (kind, timeout, description, commands) in chain {
            let id = format!("{name}/{}", kind.as_str());
            steps.push(Step {
                id: id.clone(),
                kind,
                node: Some(name.to_owned()),
                depends_on: deps,
                phase: Phase::Node,
                timeout_seconds: timeout,
                description,
                commands,
            });
            deps = vec![id];
        }
        if node.canary {
            prev_canary_end = Some(format!("{name}/{last_kind}"));
        }
    }

    let all_nodes_done: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/{last_kind}", n.name))
        .collect();
    let after_nodes = if all_nodes_done.is_empty() {
        vec![prelude_end.to_owned()]
    } else {
        all_nodes_done
    };
    steps.push(global(
        StepKind::FinalValues,
        Phase::Finale,
        after_nodes,
        1200,
        format!(
            "switch Cilium to primary CNI: cni.customConf=false, policyEnforcementMode=default, operator.unmanagedPodWatcher.restart=true, bpf.hostLegacyRouting={}; restart the agents and wait for them",
            spec.finalize.host_legacy_routing
        ),
        vec![
            helm_command(spec, "values-final.yaml"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout restart daemonset cilium"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium --timeout=20m"),
        ],
    ));
    let before_removal = if mode.is_overlay() {
        steps.push(global(
            StepKind::DeleteNodeConfig,
            Phase::Finale,
            vec!["final-values".to_owned()],
            60,
            format!("delete CiliumNodeConfig {CILIUM_NAMESPACE}/{NODE_CONFIG_NAME} (only now that the final values are live)"),
            vec![format!("kubectl delete -n {CILIUM_NAMESPACE} ciliumnodeconfig {NODE_CONFIG_NAME}")],
        ));
        "delete-node-config"
    } else {
        "final-values"
    };
    steps.push(global(
        StepKind::RemoveOldCni,
        Phase::Finale,
        vec![before_removal.to_owned()],
        300,
        format!("remove the old CNI ({})", facts.source.cni),
        remove_old_cni_commands(facts),
    ));
    let mut last = "remove-old-cni".to_owned();
    if let (true, Some(reboot)) = (spec.finalize.rolling_reboot, &spec.rollout.reboot) {
        for node in nodes {
            let id = format!("final-reboot/{}", node.name);
            steps.push(Step {
                id: id.clone(),
                kind: StepKind::Reboot,
                node: Some(node.name.clone()),
                depends_on: vec![last],
                phase: Phase::Finale,
                timeout_seconds: secs(reboot.timeout.0),
                description: format!(
                    "reboot {} to clear the old CNI's interfaces and iptables rules",
                    node.name
                ),
                commands: vec![
                    reboot_command_line(&reboot.command, &node.name),
                    format!(
                        "kubectl wait --for=condition=Ready node/{} --timeout={}s",
                        node.name,
                        secs(reboot.timeout.0)
                    ),
                ],
            });
            last = id;
        }
    }
    steps.push(global(
        StepKind::FinalVerify,
        Phase::Finale,
        vec![last],
        600,
        if mode.is_overlay() {
            "every non-hostNetwork pod has an IP in the new pool and a CiliumEndpoint; policy enforcement is on".to_owned()
        } else {
            "every non-hostNetwork pod has a CiliumEndpoint with its address and an address of its node's CiliumNode; policy enforcement is on".to_owned()
        },
        vec![
            format!("kubectl -n {CILIUM_NAMESPACE} get configmap cilium-config -o jsonpath='{{.data.enable-policy}}'"),
            "kubectl get pods -A -o wide --field-selector=status.phase=Running".to_owned(),
            "kubectl get ciliumendpoints -A".to_owned(),
        ],
    ));
    steps
}

fn drain_command(spec: &MigrationSpec, node: &str) -> String {
    let mut cmd = format!("kubectl drain {node} --ignore-daemonsets");
    if spec.rollout.drain.delete_empty_dir_data {
        cmd.push_str(" --delete-emptydir-data");
    }
    if spec.rollout.drain.allow_unreplicated {
        cmd.push_str(" --force");
    }
    if let Some(g) = spec.rollout.drain.grace_period_seconds {
        cmd.push_str(&format!(" --grace-period={g}"));
    }
    cmd.push_str(&format!(
        " --timeout={}s",
        secs(spec.rollout.drain.timeout.0)
    ));
    cmd
}

fn steps_are_acyclic(steps: &[Step]) -> bool {
    let mut g: DiGraph<(), ()> = DiGraph::new();
    let idx: BTreeMap<&str, _> = steps
        .iter()
        .map(|s| (s.id.as_str(), g.add_node(())))
        .collect();
    for s in steps {
        for d in &s.depends_on {
            match (idx.get(d.as_str()), idx.get(s.id.as_str())) {
                (Some(&a), Some(&b)) => {
                    g.add_edge(a, b, ());
                }
                _ => return false,
            }
        }
    }
    toposort(&g, None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{NodeInfo, OwnerRef, PodPhase};

    fn spec(canary: u32, max: &str) -> MigrationSpec {
        let text = format!(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\n\
             target: {{ciliumVersion: 1.17.3, podCIDRs: [10.245.0.0/16], tunnel: {{port: 8473}}}}\n\
             rollout: {{canary: {canary}, maxUnavailable: {max}}}\n"
        );
        MigrationSpec::from_yaml(&text, "t").unwrap()
    }

    fn node(name: &str, cp: bool) -> NodeInfo {
        let mut n = NodeInfo {
            name: name.to_owned(),
            ready: true,
            ..NodeInfo::default()
        };
        if cp {
            n.labels.insert(
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new(),
            );
        }
        n
    }

    fn pod(name: &str, node: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: "kube-system".to_owned(),
            name: name.to_owned(),
            node_name: Some(node.to_owned()),
            phase: PodPhase::Running,
            owner: Some(OwnerRef {
                kind: "ReplicaSet".to_owned(),
                name: "rs".to_owned(),
                uid: "u".to_owned(),
            }),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..PodInfo::default()
        }
    }

    fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            nodes: vec![
                node("cp", true),
                node("w3", false),
                node("w1", false),
                node("w2", false),
            ],
            pods: vec![
                pod("coredns-1", "w1", &[("k8s-app", "kube-dns")]),
                pod("app", "w2", &[("app", "x")]),
            ],
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn workers_first_control_plane_then_critical_last() {
        let plan = build(&spec(1, "1"), &snapshot(), &NetworkFacts::default(), vec![]);
        let order: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(order, ["w2", "w3", "cp", "w1"]);
        assert!(plan.nodes[0].canary && !plan.nodes[1].canary);
        assert_eq!(
            plan.nodes[3].critical_pods,
            ["coredns (kube-system/coredns-1)"]
        );
    }

    #[test]
    fn canaries_chain_one_after_another_and_gate_the_rest() {
        let plan = build(&spec(2, "1"), &snapshot(), &NetworkFacts::default(), vec![]);
        assert_eq!(plan.step("w2/cordon").unwrap().depends_on, ["node-config"]);
        assert_eq!(plan.step("w3/cordon").unwrap().depends_on, ["w2/uncordon"]);
        assert_eq!(
            plan.step("cp/cordon").unwrap().depends_on,
            ["w2/uncordon", "w3/uncordon"]
        );
        let fin = plan.step("final-values").unwrap();
        assert_eq!(fin.depends_on.len(), 4);
        assert!(steps_are_acyclic(&plan.steps));
        let kinds: Vec<&str> = plan.node_steps("cp").map(|s| s.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "cordon",
                "drain",
                "label",
                "restart-agent",
                "verify",
                "uncordon"
            ]
        );
    }

    #[test]
    fn plan_is_deterministic_whatever_the_input_order() {
        let a = build(
            &spec(1, "\"50%\""),
            &snapshot(),
            &NetworkFacts::default(),
            vec![],
        );
        let mut s = snapshot();
        s.nodes.reverse();
        s.pods.reverse();
        let b = build(&spec(1, "\"50%\""), &s, &NetworkFacts::default(), vec![]);
        assert_eq!(a, b);
        assert_eq!(a.summary.max_in_flight, 2);
    }

    #[test]
    fn fingerprint_changes_with_spec_and_nodes_only() {
        let facts = NetworkFacts::default();
        let a = fingerprint(&spec(1, "1"), &facts, &["a", "b"]);
        assert_eq!(a, fingerprint(&spec(1, "1"), &facts, &["b", "a"]));
        assert_ne!(a, fingerprint(&spec(2, "1"), &facts, &["a", "b"]));
        assert_ne!(a, fingerprint(&spec(1, "1"), &facts, &["a"]));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("kind-worker"), "kind-worker");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            reboot_command_line(&["ssh".into(), "{node}".into(), "sudo reboot".into()], "n1"),
            "ssh n1 'sudo reboot'"
        );
    }
}

/// TEMPORARY stand-in (replaced by the planner's own): a node's rollback chain.
pub fn rollback_chain(plan: &Plan, node: &str) -> Vec<Step> {
    if !plan.nodes.iter().any(|n| n.name == node)
        || plan.spec.target.mode == crate::spec::TargetMode::EksEni
    {
        return Vec::new();
    }
    let mut kinds = vec![
        StepKind::Cordon,
        StepKind::Drain,
        StepKind::Unlabel,
        StepKind::RestartAgent,
        StepKind::RestoreCni,
    ];
    if plan.spec.target.mode == crate::spec::TargetMode::EksOverlay {
        kinds.push(StepKind::StartAwsNode);
    }
    if plan.spec.rollout.reboot.is_some() {
        kinds.push(StepKind::Reboot);
    }
    kinds.push(StepKind::VerifyRollback);
    kinds.push(StepKind::Uncordon);
    let mut out: Vec<Step> = Vec::new();
    for k in kinds {
        let id = format!("rollback/{node}/{k}");
        out.push(Step {
            depends_on: out.last().map(|s| vec![s.id.clone()]).unwrap_or_default(),
            id,
            kind: k,
            node: Some(node.to_owned()),
            phase: Phase::Rollback,
            timeout_seconds: 600,
            description: format!("{k} (rollback)"),
            commands: Vec::new(),
        });
    }
    out
}
