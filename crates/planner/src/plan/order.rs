//! The order nodes are admitted in, and why.
//!
//! ```text
//! nodes ─► sort by (has a critical singleton, is control plane, name)
//!       ─► the first `rollout.canary` are canaries
//!       ─► PlannedNode { order, role, canary, critical pods, pods to evict, PDBs, state now }
//! ```
//!
//! Workers go first and nodes running the Cilium operator or CoreDNS last, so the canaries
//! are ordinary workers and the cluster's singletons move once, when everything else works.

use std::collections::BTreeMap;

use super::types::PlannedNode;
use crate::{
    eviction::evictable,
    names::MIGRATION_LABEL,
    snapshot::{ClusterSnapshot, NodeInfo, PdbIndex, PodInfo},
    spec::MigrationSpec,
};

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

/// Orders nodes: non-critical before critical, workers before control-plane nodes, then by
/// name; the first `canary` nodes (preferring workers without critical pods) are canaries.
pub(super) fn order_nodes(spec: &MigrationSpec, snapshot: &ClusterSnapshot) -> Vec<PlannedNode> {
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
                uid: node.uid.clone(),
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
