//! The workloads: what the drains will meet.
//!
//! ```text
//! NETWORK_POLICIES_PRESENT  policies go unenforced during the migration
//! UNREPLICATED_PODS         pods no controller brings back after a drain
//! LOCAL_STORAGE_PODS        pods whose emptyDir data a drain deletes
//! PDB_BLOCKS_DRAIN          budgets that allow no eviction at all
//! ```
//!
//! Linear in pods: PDBs are matched against the pods of their own namespace only, through
//! one index.

use std::collections::{BTreeMap, BTreeSet};

use super::common::{MAX_OBJECTS, finding, named};
use crate::{
    eviction::evictable,
    findings::{Finding, FindingCode, Severity},
    snapshot::{ClusterSnapshot, ObjectRef, PdbIndex, PdbInfo, PodInfo},
    spec::MigrationSpec,
};

/// Policies (Kubernetes and Calico) that nobody enforces while the CNIs change.
pub(super) fn network_policies(snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let calico_policies: Vec<&crate::snapshot::CustomObject> = snap
        .custom
        .iter()
        .filter(|o| o.group().contains("projectcalico.org") && o.kind.ends_with("NetworkPolicy"))
        .collect();
    if snap.network_policies.is_empty() && calico_policies.is_empty() {
        return;
    }
    let namespaces: BTreeSet<&str> = snap
        .network_policies
        .iter()
        .map(|p| p.namespace.as_str())
        .collect();
    let mut objects: Vec<ObjectRef> = snap
        .network_policies
        .iter()
        .map(|p| ObjectRef::namespaced("NetworkPolicy", &p.namespace, &p.name))
        .chain(calico_policies.iter().map(|o| o.object_ref()))
        .collect();
    objects.truncate(MAX_OBJECTS);
    out.push(finding(
        FindingCode::NetworkPoliciesPresent,
        Severity::Warning,
        format!(
            "{} NetworkPolicy object(s) in {} namespace(s){}: Cilium enforces no policy during the migration (policyEnforcementMode: never), and the old CNI stops enforcing them on migrated nodes",
            snap.network_policies.len(),
            namespaces.len(),
            if calico_policies.is_empty() { String::new() } else { format!(" and {} Calico policy object(s)", calico_policies.len()) }
        ),
        objects,
        "plan the migration window accordingly (policies are enforced again by Cilium after finalize); convert Calico-specific policies to CiliumNetworkPolicies before finalize".to_owned(),
    ));
}

/// What a PDB allows at most, structurally: `None` when it cannot be told. `expected` is how
/// many pods the budget covers when its workloads are whole (see [`expected_pods`]), not how
/// many happen to exist now.
fn pdb_blocks_forever(pdb: &PdbInfo, expected: i64) -> Option<String> {
    let n = expected;
    if let Some(max) = &pdb.max_unavailable {
        return match max.resolve(n, true) {
            Some(0) => Some(format!("maxUnavailable: {max} allows no disruption at all")),
            _ => None,
        };
    }
    if let Some(min) = &pdb.min_available {
        return match min.resolve(n, true) {
            Some(m) if m >= n && n > 0 => Some(format!(
                "minAvailable: {min} needs all {n} of its pods available, so no pod may ever be evicted"
            )),
            _ => None,
        };
    }
    None
}

/// How many pods a budget covers when its workloads are whole: the most of the pods that exist
/// now, the budget's `status.expectedPods`, and the desired replicas of the controllers owning
/// those pods (a ReplicaSet's or StatefulSet's `spec.replicas`). Counting only the pods that
/// exist mistakes a moment for the rule: a StatefulSet recreates an evicted pod only after the
/// old one is gone, so right after an eviction (or a crash mid-drain) its budget covers one pod
/// fewer than it will.
fn expected_pods(pdb: &PdbInfo, pods: &[&PodInfo], replicas: &Replicas<'_>) -> i64 {
    let existing = i64::try_from(pods.len()).unwrap_or(i64::MAX);
    let owners: BTreeSet<(&str, &str)> = pods
        .iter()
        .filter_map(|p| p.owner.as_ref())
        .filter(|o| o.kind == "ReplicaSet" || o.kind == "StatefulSet")
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    let desired: i64 = owners
        .iter()
        .filter_map(|(kind, name)| replicas.get(&(pdb.namespace.as_str(), kind, name)))
        .sum();
    existing.max(desired).max(pdb.expected_pods.unwrap_or(0))
}

/// Desired replicas by workload (namespace, kind, name), built once: a lookup per owner
/// instead of a pass over every workload per budget.
type Replicas<'a> = std::collections::HashMap<(&'a str, &'a str, &'a str), i64>;

fn replicas(snap: &ClusterSnapshot) -> Replicas<'_> {
    let mut out = Replicas::with_capacity(snap.workloads.len());
    for w in &snap.workloads {
        *out.entry((w.namespace.as_str(), w.kind.as_str(), w.name.as_str()))
            .or_default() += w.replicas.unwrap_or(1);
    }
    out
}

/// Pods the drains would lose or could never evict.
pub(super) fn pods_and_pdbs(spec: &MigrationSpec, snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let mut unreplicated: Vec<&PodInfo> = Vec::new();
    let mut local: Vec<&PodInfo> = Vec::new();
    let mut by_ns: BTreeMap<&str, Vec<&PodInfo>> = BTreeMap::new();
    for p in snap.pods.iter().filter(|p| p.node_name.is_some()) {
        if !evictable(p) {
            continue;
        }
        if p.owner.is_none() {
            unreplicated.push(p);
        }
        if p.empty_dir {
            local.push(p);
        }
        by_ns.entry(p.namespace.as_str()).or_default().push(p);
    }
    let pods_finding = |code, allowed: bool, pods: &[&PodInfo], what: &str, flag: &str| {
        let names: Vec<String> = pods.iter().map(|p| p.key()).collect();
        finding(
            code,
            if allowed {
                Severity::Warning
            } else {
                Severity::Error
            },
            format!(
                "{} pod(s) {what}: {}{}",
                pods.len(),
                named(&names),
                if allowed {
                    format!(" (allowed by {flag}: the drain will evict them)")
                } else {
                    format!("; the drain refuses them unless {flag} is set")
                }
            ),
            pods.iter()
                .take(MAX_OBJECTS)
                .map(|p| p.object_ref())
                .collect(),
            if allowed {
                "make sure losing them is acceptable".to_owned()
            } else {
                format!(
                    "run them under a controller, or set {flag}: true if losing them is acceptable"
                )
            },
        )
    };
    if !unreplicated.is_empty() {
        out.push(pods_finding(
            FindingCode::UnreplicatedPods,
            spec.rollout.drain.allow_unreplicated,
            &unreplicated,
            "have no controller and would not come back after a drain",
            "rollout.drain.allowUnreplicated",
        ));
    }
    if !local.is_empty() {
        out.push(pods_finding(
            FindingCode::LocalStoragePods,
            spec.rollout.drain.delete_empty_dir_data,
            &local,
            "use emptyDir volumes whose data a drain deletes",
            "rollout.drain.deleteEmptyDirData",
        ));
    }
    // Pods per budget, from one pass over the pods through the index.
    let index = PdbIndex::new(&snap.pdbs);
    let mut covered: BTreeMap<(&str, &str), (&PdbInfo, Vec<&PodInfo>)> = BTreeMap::new();
    for pods in by_ns.values() {
        for p in pods {
            for pdb in index.for_pod(p) {
                covered
                    .entry((pdb.namespace.as_str(), pdb.name.as_str()))
                    .or_insert((pdb, Vec::new()))
                    .1
                    .push(p);
            }
        }
    }
    let replicas = replicas(snap);
    for (pdb, pods) in covered.into_values() {
        if let Some(why) = pdb_blocks_forever(pdb, expected_pods(pdb, &pods, &replicas)) {
            let names: Vec<String> = pods.iter().map(|p| p.key()).collect();
            let mut objects = vec![pdb.object_ref()];
            objects.extend(pods.iter().take(MAX_OBJECTS).map(|p| p.object_ref()));
            out.push(finding(
                FindingCode::PdbBlocksDrain,
                Severity::Error,
                format!(
                    "PodDisruptionBudget {}/{}: {why}; every drain of a node running {} would wait until its timeout",
                    pdb.namespace,
                    pdb.name,
                    named(&names)
                ),
                objects,
                format!(
                    "relax the budget (e.g. kubectl -n {} patch pdb {} --type=merge -p '{{\"spec\":{{\"maxUnavailable\":1,\"minAvailable\":null}}}}') or add replicas for the migration window",
                    pdb.namespace, pdb.name
                ),
            ));
        }
    }
}
