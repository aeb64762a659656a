//! A synthetic cluster of a given shape (nodes, pods per node, budgets), built once and turned
//! into a fresh [`FakeCluster`](super::api::FakeCluster) per run.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
};

use super::{
    api::FakeCluster,
    physics::Physics,
    rng::Rng,
    state::{FakeNode, FakePdb, FakePod, State, agent_pod, app_pod},
};
use k8s_openapi::api::core::v1::ConfigMap;
use planner::snapshot::{IntOrString, LabelSelector, NodeInfo, PdbInfo};
use serde_json::json;
use tokio::time::Instant;

/// The shape of the synthetic cluster.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Nodes.
    pub nodes: usize,
    /// Application pods per node (ReplicaSet-owned), besides the agent.
    pub app_pods_per_node: usize,
    /// Replicas per ReplicaSet.
    pub replicas: usize,
    /// ReplicaSets covered by a PDB (`maxUnavailable: 1`).
    pub pdbs: usize,
    /// Seed.
    pub seed: u64,
}

/// The name of node `i`: `ip-10-0-X-Y.eu-west-1.compute.internal`.
pub fn node_name(i: usize) -> String {
    format!(
        "ip-10-0-{}-{}.eu-west-1.compute.internal",
        i / 250,
        i % 250 + 1
    )
}

/// The synthetic cluster: the snapshot the planner sees (Flannel, before Cilium) and the fake
/// cluster the executor talks to (Cilium installed in migration mode).
pub struct Synthetic {
    /// For the planner.
    pub snapshot: planner::ClusterSnapshot,
    pub(super) shape: Shape,
}

impl Synthetic {
    /// Builds the shape's pods and nodes.
    ///
    /// # Errors
    /// When the fixed Flannel objects do not decode (a bug).
    pub fn new(shape: &Shape) -> anyhow::Result<Self> {
        let total = shape.nodes * shape.app_pods_per_node;
        let rs_count = total.div_ceil(shape.replicas.max(1)).max(1);
        let mut nodes = Vec::with_capacity(shape.nodes);
        let mut pods = Vec::with_capacity(total);
        for i in 0..shape.nodes {
            let name = node_name(i);
            nodes.push(NodeInfo {
                name: name.clone(),
                uid: format!("node-uid-{i}"),
                labels: [
                    ("kubernetes.io/hostname".to_owned(), name.clone()),
                    ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                    (
                        "topology.kubernetes.io/zone".to_owned(),
                        format!("eu-west-1{}", ["a", "b", "c"][i % 3]),
                    ),
                ]
                .into(),
                pod_cidrs: vec![format!("10.{}.{}.0/24", 128 + i / 256, i % 256)],
                addresses: vec![planner::snapshot::NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                }],
                ready: true,
                ..NodeInfo::default()
            });
            for s in 0..shape.app_pods_per_node {
                // Spread each ReplicaSet's replicas over distant nodes.
                let g = s * shape.nodes + i;
                let rs = g % rs_count;
                let rs_name = format!("app-{rs:05}-7d9f8b6c5");
                pods.push(app_pod(
                    &name,
                    &rs_name,
                    &format!("app-{rs:05}"),
                    format!("{rs_name}-{g:06}"),
                    format!("pod-uid-{g}"),
                    format!("10.{}.{}.{}", 128 + i / 256, i % 256, s + 2),
                ));
            }
        }
        let pdbs = (0..shape.pdbs)
            .map(|j| {
                let rs = j * rs_count / shape.pdbs.max(1);
                PdbInfo {
                    namespace: "shop".into(),
                    name: format!("app-{rs:05}"),
                    selector: Some(LabelSelector {
                        match_labels: [("app".to_owned(), format!("app-{rs:05}"))].into(),
                        ..LabelSelector::default()
                    }),
                    max_unavailable: Some(IntOrString::Int(1)),
                    current_healthy: Some(i64::try_from(shape.replicas).unwrap_or(0)),
                    desired_healthy: Some(i64::try_from(shape.replicas).unwrap_or(1) - 1),
                    disruptions_allowed: Some(1),
                    expected_pods: Some(i64::try_from(shape.replicas).unwrap_or(0)),
                    ..PdbInfo::default()
                }
            })
            .collect();
        let flannel_cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
            // A /9, not Flannel's default /16: 1,000 nodes need 1,000 /24s.
            "data": {"net-conf.json": "{\"Network\":\"10.128.0.0/9\",\"Backend\":{\"Type\":\"vxlan\"}}"}
        }))?;
        let n = shape.nodes;
        let flannel_ds = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel", "labels": {"app": "flannel"}, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "flannel"}},
                     "template": {"metadata": {"labels": {"app": "flannel"}},
                                  "spec": {"hostNetwork": true, "containers": [{"name": "kube-flannel", "image": "ghcr.io/flannel-io/flannel:v0.26.1"}]}}},
            "status": {"desiredNumberScheduled": n, "numberReady": n, "updatedNumberScheduled": n, "currentNumberScheduled": n, "numberMisscheduled": 0, "observedGeneration": 1}
        }))?;
        let mut snapshot = planner::ClusterSnapshot {
            nodes,
            pods,
            pdbs,
            daemonsets: vec![flannel_ds],
            configmaps: vec![flannel_cm],
            namespaces: vec!["kube-flannel".into(), "kube-system".into(), "shop".into()],
            ..planner::ClusterSnapshot::default()
        };
        snapshot.normalize();
        Ok(Self {
            snapshot,
            shape: shape.clone(),
        })
    }

    /// The fake cluster for a plan of this snapshot: Cilium installed in migration mode.
    pub fn cluster(&self, spec: &planner::MigrationSpec, physics: Physics) -> FakeCluster {
        let t0 = Instant::now();
        let mut st = State {
            rng: Rng(self.shape.seed),
            nodes: BTreeMap::new(),
            node_names: Vec::new(),
            pods: HashMap::new(),
            by_node: HashMap::new(),
            by_ns: HashMap::new(),
            pdbs: Vec::new(),
            pdb_members: HashMap::new(),
            configmaps: BTreeMap::new(),
            custom: BTreeMap::new(),
            resource_version: 1000,
            seq: 0,
            requests: BTreeMap::new(),
            arrivals: Vec::new(),
            list_items: 0,
            physics: HashMap::new(),
            blocked_evictions: 0,
            node_log: Vec::new(),
            node_written: std::sync::Arc::default(),
        };
        let pool = spec.target.pod_cidrs.first().map(ToString::to_string);
        let base: Vec<u8> = pool
            .as_deref()
            .and_then(|p| p.split('/').next())
            .map(|a| a.split('.').filter_map(|o| o.parse().ok()).collect())
            .unwrap_or_else(|| vec![100, 64, 0, 0]);
        for (i, n) in self.snapshot.nodes.iter().enumerate() {
            // The pool's i-th /24 (100.64.0.0/10 holds 16,384 of them).
            let a = usize::from(base.get(1).copied().unwrap_or(64)) + i / 256;
            let cidr = format!(
                "{}.{a}.{}.0/24",
                base.first().copied().unwrap_or(100),
                i % 256
            );
            st.nodes.insert(
                n.name.clone(),
                FakeNode {
                    info: n.clone(),
                    cidr,
                },
            );
            st.node_names.push(n.name.clone());
        }
        let pdb_apps: BTreeMap<String, (String, String)> = self
            .snapshot
            .pdbs
            .iter()
            .map(|p| {
                let app = p
                    .selector
                    .as_ref()
                    .and_then(|s| s.match_labels.get("app").cloned())
                    .unwrap_or_default();
                (app, (p.namespace.clone(), p.name.clone()))
            })
            .collect();
        for p in &self.snapshot.pods {
            let app = p
                .labels
                .get("app")
                .filter(|a| pdb_apps.contains_key(*a))
                .cloned();
            st.insert_pod(FakePod {
                info: p.clone(),
                appears: t0,
                ready_at: t0,
                deleting_at: None,
                gone_at: None,
                app,
                exits: None,
            });
        }
        for (app, (ns, name)) in &pdb_apps {
            let expected = st.pdb_members.get(app).map_or(0, BTreeSet::len);
            st.pdbs.push(FakePdb {
                namespace: ns.clone(),
                name: name.clone(),
                app: app.clone(),
                max_unavailable: 1,
                expected: i64::try_from(expected).unwrap_or(0),
            });
        }
        // One agent per node, in kube-system.
        for (i, n) in self.snapshot.nodes.iter().enumerate() {
            let uid = st.next_uid();
            st.insert_pod(FakePod {
                info: agent_pod(&n.name, &format!("cilium-{i:05}"), uid),
                appears: t0,
                ready_at: t0,
                deleting_at: None,
                gone_at: None,
                app: None,
                exits: None,
            });
        }
        let data: BTreeMap<String, String> = planner::values::migration_config(spec)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let rv = st.bump();
        st.configmaps.insert(
            ("kube-system".into(), "cilium-config".into()),
            ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("cilium-config".into()),
                    namespace: Some("kube-system".into()),
                    resource_version: Some(rv),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            },
        );
        let n = self.snapshot.nodes.len();
        st.custom.insert(
            ("daemonsets".into(), Some("kube-system".into()), "cilium".into()),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "cilium", "namespace": "kube-system", "generation": 1},
                   "status": {"desiredNumberScheduled": n, "numberReady": n, "updatedNumberScheduled": n,
                              "currentNumberScheduled": n, "numberAvailable": n, "observedGeneration": 1}}),
        );
        FakeCluster {
            state: std::sync::Arc::new(Mutex::new(st)),
            physics,
        }
    }
}
