//! An in-memory [`cluster::Cluster`] whose physics (pod termination, pod start, agent restart,
//! API latency) are drawn from seeded distributions, for running the executor in virtual time.
//!
//! ```text
//! every verb ─► count (verb, resource) ─► sleep a drawn API latency (tokio clock: virtual
//!               under a paused runtime) ─► act on the state, which is a function of time:
//!   evict ──────► pod terminating now, gone after a drawn termination time; its ReplicaSet's
//!                 replacement appears at once on another schedulable node, Ready after a
//!                 drawn start time (PDBs count Ready, non-terminating members)
//!   delete agent ► old agent gone after 1 s (the chart's grace period), the DaemonSet's new
//!                 pod (new UID) appears then, Ready after a drawn agent restart time
//! ```
//!
//! State is evaluated lazily against `tokio::time::Instant::now()`: no background tasks, so a
//! paused clock only advances when every task waits on a timer.
//!
//! Distributions, from `/work/shared/reference/perf-anchors.md`:
//! - pod termination: uniform in [1 s, 30 s]. §2 "30 s — Default pod termination grace period,
//!   which sets the lower bound of a drain" and §7 "drain: max grace period of the node's pods,
//!   30 s by default": apps exit anywhere between at once and at the grace period.
//! - pod start (the evicted pod's replacement): log-normal, median 1.5 s, σ 0.52, so p99 ≈ 5 s:
//!   §2 "5 s p99 — Pod startup SLO, stateless, excluding image pull".
//! - agent restart to Ready: log-normal, median 20 s, σ 0.3 (≈ 10–30 s): §7 "cilium agent
//!   restart to Ready: 10–30 s on a healthy mid-size cluster"; plus a 2 % tail uniform in
//!   [80 s, 90 s]: §2 "80–90 s … cilium-agent startup to startupProbe pass" (issue 29795).
//! - API latency: log-normal, median 10 ms (reads) / 20 ms (writes), σ 0.5, capped at 1 s:
//!   well inside §3 "≤ 1 s p99 — Mutating API call latency SLO"; a ConfigMap write also pays
//!   its size at 100 MB/s (an assumption: no anchor gives body throughput).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use cluster::{Cluster, ClusterError, Eviction};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use planner::snapshot::{
    CustomObject, IntOrString, LabelSelector, NodeInfo, OwnerRef, PdbInfo, PodInfo, PodPhase,
};
use serde_json::json;
use tokio::time::Instant;

/// splitmix64, with the few distributions the model needs.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // 53 bits are exact
        let x = (self.next_u64() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with this median and σ (of the underlying normal).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// The model's physics.
#[derive(Clone, Debug)]
pub struct Physics {
    /// Draw API latencies (off: every request is instant).
    pub api_latency: bool,
}

impl Physics {
    fn termination(rng: &mut Rng) -> Duration {
        secs(rng.uniform(1.0, 30.0))
    }

    fn pod_start(rng: &mut Rng) -> Duration {
        secs(rng.log_normal(1.5, 0.52).min(30.0))
    }

    fn agent_restart(rng: &mut Rng) -> Duration {
        if rng.unit() < 0.02 {
            secs(rng.uniform(80.0, 90.0))
        } else {
            secs(rng.log_normal(20.0, 0.3))
        }
    }

    fn latency(&self, rng: &mut Rng, write: bool, bytes: usize) -> Duration {
        if !self.api_latency {
            return Duration::ZERO;
        }
        let median = if write { 0.020 } else { 0.010 };
        #[allow(clippy::cast_precision_loss)] // bytes of a ConfigMap
        let body = bytes as f64 / 100e6;
        secs(rng.log_normal(median, 0.5).min(1.0) + body)
    }
}

#[derive(Clone, Debug)]
struct FakePod {
    info: PodInfo,
    appears: Instant,
    ready_at: Instant,
    deleting_at: Option<Instant>,
    gone_at: Option<Instant>,
    /// The PDB-covered app it belongs to.
    app: Option<String>,
    /// A pod that runs to completion (the verification probe), with its log.
    exits: Option<String>,
}

impl FakePod {
    fn visible(&self, t: Instant) -> bool {
        self.appears <= t && self.gone_at.is_none_or(|g| t < g)
    }

    fn gone(&self, t: Instant) -> bool {
        self.gone_at.is_some_and(|g| g <= t)
    }

    fn terminating(&self, t: Instant) -> bool {
        self.deleting_at.is_some_and(|d| d <= t)
    }

    fn healthy(&self, t: Instant) -> bool {
        self.visible(t) && !self.terminating(t) && self.ready_at <= t
    }

    fn view(&self, t: Instant) -> PodInfo {
        let mut p = self.info.clone();
        p.terminating = self.terminating(t);
        p.ready = self.ready_at <= t && !p.terminating;
        p.phase = match (self.ready_at <= t, &self.exits) {
            (true, Some(_)) => PodPhase::Succeeded,
            (true, None) => PodPhase::Running,
            _ => PodPhase::Pending,
        };
        if self.exits.is_some() {
            p.ready = false;
        }
        p
    }
}

#[derive(Clone, Debug)]
struct FakeNode {
    info: NodeInfo,
    cidr: String,
}

#[derive(Clone, Debug)]
struct FakePdb {
    namespace: String,
    name: String,
    app: String,
    max_unavailable: i64,
    expected: i64,
}

/// What happened physically on a node: the truth the executor's waits are measured against.
#[derive(Clone, Debug, Default)]
pub struct NodePhysics {
    /// First eviction accepted.
    pub first_evict: Option<Instant>,
    /// The last evicted pod gone.
    pub last_gone: Option<Instant>,
    /// The agent pod deleted.
    pub agent_deleted: Option<Instant>,
    /// The new agent Ready.
    pub agent_ready: Option<Instant>,
}

impl NodePhysics {
    /// Time the cluster itself needed: drain (first eviction to last pod gone, PDB waits
    /// included) plus agent restart (delete to Ready).
    pub fn physical(&self) -> Duration {
        let drain = match (self.first_evict, self.last_gone) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let agent = match (self.agent_deleted, self.agent_ready) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        drain + agent
    }
}

struct State {
    rng: Rng,
    nodes: BTreeMap<String, FakeNode>,
    node_names: Vec<String>,
    pods: HashMap<String, FakePod>,
    by_node: HashMap<String, BTreeSet<String>>,
    by_ns: HashMap<String, BTreeSet<String>>,
    pdbs: Vec<FakePdb>,
    pdb_members: HashMap<String, BTreeSet<String>>,
    configmaps: BTreeMap<(String, String), ConfigMap>,
    custom: BTreeMap<(String, Option<String>, String), serde_json::Value>,
    resource_version: u64,
    seq: u64,
    requests: BTreeMap<&'static str, u64>,
    list_items: u64,
    physics: HashMap<String, NodePhysics>,
    blocked_evictions: u64,
}

impl State {
    fn insert_pod(&mut self, pod: FakePod) {
        let key = pod.info.key();
        if let Some(n) = &pod.info.node_name {
            self.by_node
                .entry(n.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_ns
            .entry(pod.info.namespace.clone())
            .or_default()
            .insert(key.clone());
        if let Some(app) = &pod.app {
            self.pdb_members
                .entry(app.clone())
                .or_default()
                .insert(key.clone());
        }
        self.pods.insert(key, pod);
    }

    fn remove_gone(&mut self, keys: &[String], t: Instant) {
        for k in keys {
            let Some(p) = self.pods.get(k) else { continue };
            if !p.gone(t) {
                continue;
            }
            let p = self.pods.remove(k).expect("present");
            if let Some(n) = &p.info.node_name
                && let Some(s) = self.by_node.get_mut(n)
            {
                s.remove(k);
            }
            if let Some(s) = self.by_ns.get_mut(&p.info.namespace) {
                s.remove(k);
            }
            if let Some(app) = &p.app
                && let Some(s) = self.pdb_members.get_mut(app)
            {
                s.remove(k);
            }
        }
    }

    fn allowed(&self, pdb: &FakePdb, t: Instant) -> i64 {
        let healthy = self
            .pdb_members
            .get(&pdb.app)
            .map(|m| {
                m.iter()
                    .filter(|k| self.pods.get(*k).is_some_and(|p| p.healthy(t)))
                    .count()
            })
            .unwrap_or(0);
        let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
        (healthy - (pdb.expected - pdb.max_unavailable)).max(0)
    }

    fn next_uid(&mut self) -> String {
        self.seq += 1;
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.seq,
            self.rng.next_u64() >> 16
        )
    }

    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }
}

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

/// A pod as the snapshot and the fake both see it.
fn app_pod(node: &str, rs: &str, app: &str, name: String, uid: String, ip: String) -> PodInfo {
    PodInfo {
        namespace: "shop".into(),
        name,
        uid,
        labels: [
            ("app".to_owned(), app.to_owned()),
            ("pod-template-hash".to_owned(), "7d9f8b6c5".to_owned()),
        ]
        .into(),
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: rs.to_owned(),
            uid: format!("rs-{rs}"),
        }),
        node_name: Some(node.to_owned()),
        grace_period_seconds: Some(30),
        phase: PodPhase::Running,
        pod_ips: ip.parse().ok().into_iter().collect(),
        ready: true,
        ..PodInfo::default()
    }
}

/// The synthetic cluster: the snapshot the planner sees (Flannel, before Cilium) and the fake
/// cluster the executor talks to (Cilium installed in migration mode).
pub struct Synthetic {
    /// For the planner.
    pub snapshot: planner::ClusterSnapshot,
    shape: Shape,
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
            list_items: 0,
            physics: HashMap::new(),
            blocked_evictions: 0,
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
            state: Mutex::new(st),
            physics,
        }
    }
}

fn agent_pod(node: &str, name: &str, uid: String) -> PodInfo {
    PodInfo {
        namespace: "kube-system".into(),
        name: name.to_owned(),
        uid,
        labels: [("k8s-app".to_owned(), "cilium".to_owned())].into(),
        owner: Some(OwnerRef {
            kind: "DaemonSet".into(),
            name: "cilium".into(),
            uid: "ds-cilium".into(),
        }),
        node_name: Some(node.to_owned()),
        host_network: true,
        grace_period_seconds: Some(1),
        phase: PodPhase::Running,
        ready: true,
        ..PodInfo::default()
    }
}

/// Matches `k=v,k2=v2` (the only selector form the executor sends); empty matches all.
fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|req| match req.split_once('=') {
            Some((k, v)) => labels.get(k.trim()).is_some_and(|l| l == v.trim()),
            None => labels.contains_key(req),
        })
}

/// The fake cluster.
pub struct FakeCluster {
    state: Mutex<State>,
    physics: Physics,
}

/// What the fake saw, for the report.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Requests by `verb resource`.
    pub requests: BTreeMap<&'static str, u64>,
    /// Objects returned by LISTs.
    pub list_items: u64,
    /// Evictions refused (429) by a PDB.
    pub blocked_evictions: u64,
    /// Per node physics.
    pub physics: HashMap<String, NodePhysics>,
}

impl FakeCluster {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the request and waits its latency.
    async fn request(&self, what: &'static str, write: bool, bytes: usize) {
        let d = {
            let mut st = self.lock();
            *st.requests.entry(what).or_default() += 1;
            self.physics.latency(&mut st.rng, write, bytes)
        };
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        let st = self.lock();
        Counters {
            requests: st.requests.clone(),
            list_items: st.list_items,
            blocked_evictions: st.blocked_evictions,
            physics: st.physics.clone(),
        }
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ClusterError> {
        self.request("GET node", false, 0).await;
        Ok(self.lock().nodes.get(name).map(|n| n.info.clone()))
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ClusterError> {
        self.request("PATCH node (unschedulable)", true, 0).await;
        if let Some(n) = self.lock().nodes.get_mut(node) {
            n.info.unschedulable = unschedulable;
        }
        Ok(())
    }

    async fn set_node_label(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ClusterError> {
        self.request("PATCH node (label)", true, 0).await;
        if let Some(n) = self.lock().nodes.get_mut(node) {
            match value {
                Some(v) => {
                    n.info.labels.insert(key.to_owned(), v.to_owned());
                }
                None => {
                    n.info.labels.remove(key);
                }
            }
        }
        Ok(())
    }

    async fn pods_on_node(&self, node: &str) -> Result<Vec<PodInfo>, ClusterError> {
        self.request("LIST pods (spec.nodeName=)", false, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let keys: Vec<String> = st
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        st.remove_gone(&keys, t);
        let out: Vec<PodInfo> = keys
            .iter()
            .filter_map(|k| st.pods.get(k))
            .filter(|p| p.visible(t))
            .map(|p| p.view(t))
            .collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<PodInfo>, ClusterError> {
        self.request("LIST pods (labelSelector=)", false, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let keys: Vec<String> = match namespace {
            Some(ns) => st
                .by_ns
                .get(ns)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            None => st.pods.keys().cloned().collect(),
        };
        st.remove_gone(&keys, t);
        let out: Vec<PodInfo> = keys
            .iter()
            .filter_map(|k| st.pods.get(k))
            .filter(|p| p.visible(t) && selector_matches(label_selector, &p.info.labels))
            .map(|p| p.view(t))
            .collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        self.request("GET pod", false, 0).await;
        let t = Instant::now();
        Ok(self
            .lock()
            .pods
            .get(&format!("{namespace}/{name}"))
            .filter(|p| p.visible(t))
            .map(|p| p.view(t)))
    }

    async fn evict(
        &self,
        namespace: &str,
        name: &str,
        _grace_period_seconds: Option<i64>,
    ) -> Result<Eviction, ClusterError> {
        self.request("CREATE pods/eviction", true, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let key = format!("{namespace}/{name}");
        let Some(pod) = st.pods.get(&key).filter(|p| p.visible(t)).cloned() else {
            return Ok(Eviction::Gone);
        };
        if pod.terminating(t) {
            return Ok(Eviction::Evicted);
        }
        if let Some(app) = &pod.app
            && let Some(pdb) = st.pdbs.iter().find(|p| &p.app == app)
            && st.allowed(pdb, t) <= 0
        {
            let message = format!(
                "Cannot evict pod as it would violate the pod's disruption budget {}/{}.",
                pdb.namespace, pdb.name
            );
            st.blocked_evictions += 1;
            return Ok(Eviction::Blocked { message });
        }
        let term = Physics::termination(&mut st.rng);
        let start = Physics::pod_start(&mut st.rng);
        let gone = t + term;
        if let Some(p) = st.pods.get_mut(&key) {
            p.deleting_at = Some(t);
            p.gone_at = Some(gone);
        }
        let node = pod.info.node_name.clone().unwrap_or_default();
        let phys = st.physics.entry(node.clone()).or_default();
        phys.first_evict.get_or_insert(t);
        phys.last_gone = Some(phys.last_gone.map_or(gone, |g| g.max(gone)));
        // The ReplicaSet's replacement, on another schedulable node: the one with the fewest
        // pods among 16 drawn at random, a stand-in for kube-scheduler's default scoring
        // (LeastAllocated over a sample of the feasible nodes), which favours the nodes a drain
        // just emptied once they are uncordoned.
        let mut target: Option<(usize, String)> = None;
        for _ in 0..16 {
            let len = st.node_names.len();
            let i = st.rng.below(len);
            let cand = &st.node_names[i];
            if *cand == node || st.nodes.get(cand).is_none_or(|n| n.info.unschedulable) {
                continue;
            }
            let load = st.by_node.get(cand).map_or(0, BTreeSet::len);
            if target.as_ref().is_none_or(|(l, _)| load < *l) {
                target = Some((load, cand.clone()));
            }
        }
        let target = target.map(|(_, t)| t);
        if let Some(target) = target {
            st.seq += 1;
            let owner = pod.info.owner.clone().map(|o| o.name).unwrap_or_default();
            let cidr = st
                .nodes
                .get(&target)
                .map(|n| n.cidr.clone())
                .unwrap_or_default();
            let ip = format!("{}.{}", cidr.trim_end_matches(".0/24"), st.seq % 250 + 2);
            let uid = st.next_uid();
            let mut info = app_pod(
                &target,
                &owner,
                pod.info.labels.get("app").map_or("", String::as_str),
                format!("{owner}-r{:07}", st.seq),
                uid,
                ip,
            );
            info.labels.clone_from(&pod.info.labels);
            st.insert_pod(FakePod {
                info,
                appears: t,
                ready_at: t + start,
                deleting_at: None,
                gone_at: None,
                exits: None,
                app: pod.app.clone(),
            });
        }
        Ok(Eviction::Evicted)
    }

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError> {
        self.request("DELETE pod", true, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let key = format!("{namespace}/{name}");
        let Some(pod) = st.pods.get(&key).filter(|p| p.visible(t)).cloned() else {
            return Ok(false);
        };
        if uid.is_some_and(|u| u != pod.info.uid) {
            return Ok(false);
        }
        if pod.terminating(t) {
            return Ok(true);
        }
        // The chart's terminationGracePeriodSeconds for the agent is 1 s.
        let gone = t + Duration::from_secs(1);
        if let Some(p) = st.pods.get_mut(&key) {
            p.deleting_at = Some(t);
            p.gone_at = Some(gone);
        }
        let is_agent = pod
            .info
            .owner
            .as_ref()
            .is_some_and(|o| o.kind == "DaemonSet");
        if is_agent {
            let node = pod.info.node_name.clone().unwrap_or_default();
            let restart = Physics::agent_restart(&mut st.rng);
            let ready = gone + restart;
            let phys = st.physics.entry(node.clone()).or_default();
            phys.agent_deleted = Some(t);
            phys.agent_ready = Some(ready);
            // The DaemonSet controller's new pod takes the freed slot once the old one is gone;
            // a new name, like the real controller's generateName.
            st.seq += 1;
            let uid = st.next_uid();
            let new_name = format!("cilium-n{:07}", st.seq);
            st.insert_pod(FakePod {
                info: agent_pod(&node, &new_name, uid),
                appears: gone,
                ready_at: ready,
                deleting_at: None,
                gone_at: None,
                app: None,
                exits: None,
            });
        }
        Ok(true)
    }

    /// The verification's own pods: a beacon runs, a probe runs, prints a passing report and
    /// exits; both start after a drawn pod start time, with an IP from the node's CiliumNode
    /// block (the fake's nodes are all on Cilium once their agent restarted: the executor's
    /// view of a healthy migration).
    async fn create_pod(&self, pod: &Pod) -> Result<PodInfo, ClusterError> {
        self.request("CREATE pod", true, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_else(|| {
            format!(
                "{}{seq:07}",
                pod.metadata.generate_name.clone().unwrap_or_default()
            )
        });
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let cidr = st
            .nodes
            .get(&node)
            .map(|n| n.cidr.clone())
            .unwrap_or_default();
        let ip = format!("{}.{}", cidr.trim_end_matches(".0/24"), 250 + seq % 4);
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let exits = labels.contains_key("cni-migrate.io/probe").then(|| {
            let targets = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("cni-migrate.io/probe-targets"))
                .cloned()
                .unwrap_or_default();
            let mut log = format!("ip={ip}\napiserver=ok\n");
            for t in targets.split(',').filter(|t| !t.is_empty()) {
                log.push_str(&format!("reach {t}=ok\n"));
            }
            log
        });
        let start = Physics::pod_start(&mut st.rng);
        let uid = st.next_uid();
        let info = PodInfo {
            namespace,
            name,
            uid,
            labels: labels.into_iter().collect(),
            node_name: Some(node),
            phase: PodPhase::Pending,
            pod_ips: ip.parse().ok().into_iter().collect(),
            ..PodInfo::default()
        };
        st.insert_pod(FakePod {
            info: info.clone(),
            appears: t,
            ready_at: t + start,
            deleting_at: None,
            gone_at: None,
            exits,
            app: None,
        });
        Ok(info)
    }

    async fn pod_log(&self, namespace: &str, name: &str) -> Result<String, ClusterError> {
        self.request("GET pods/log", false, 0).await;
        Ok(self
            .lock()
            .pods
            .get(&format!("{namespace}/{name}"))
            .and_then(|p| p.exits.clone())
            .unwrap_or_default())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        self.request("LIST nodes", false, 0).await;
        let mut st = self.lock();
        let out: Vec<NodeInfo> = st.nodes.values().map(|n| n.info.clone()).collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn cilium_nodes(&self) -> Result<Vec<cluster::CiliumNodeInfo>, ClusterError> {
        self.request("LIST ciliumnodes", false, 0).await;
        let mut st = self.lock();
        let out: Vec<cluster::CiliumNodeInfo> = st
            .nodes
            .iter()
            .map(|(name, n)| cluster::CiliumNodeInfo {
                name: name.clone(),
                pod_cidrs: vec![n.cidr.clone()],
            })
            .collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn cilium_endpoints(&self) -> Result<Vec<cluster::EndpointInfo>, ClusterError> {
        self.request("LIST ciliumendpoints", false, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let out: Vec<cluster::EndpointInfo> = st
            .pods
            .values()
            .filter(|p| p.visible(t) && !p.info.host_network)
            .map(|p| cluster::EndpointInfo {
                namespace: p.info.namespace.clone(),
                name: p.info.name.clone(),
                ips: p.info.pod_ips.clone(),
            })
            .collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn pdbs(&self) -> Result<Vec<PdbInfo>, ClusterError> {
        self.request("LIST poddisruptionbudgets", false, 0).await;
        let t = Instant::now();
        let mut st = self.lock();
        let out: Vec<PdbInfo> = st
            .pdbs
            .iter()
            .map(|p| PdbInfo {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                selector: Some(LabelSelector {
                    match_labels: [("app".to_owned(), p.app.clone())].into(),
                    ..LabelSelector::default()
                }),
                max_unavailable: Some(IntOrString::Int(p.max_unavailable)),
                expected_pods: Some(p.expected),
                disruptions_allowed: Some(st.allowed(p, t)),
                ..PdbInfo::default()
            })
            .collect();
        st.list_items += out.len() as u64;
        Ok(out)
    }

    async fn configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        self.request("GET configmap", false, 0).await;
        Ok(self
            .lock()
            .configmaps
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn write_configmap(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, ClusterError> {
        let bytes: usize = data.values().map(String::len).sum();
        self.request(
            if resource_version.is_some() {
                "UPDATE configmap"
            } else {
                "CREATE configmap"
            },
            true,
            bytes,
        )
        .await;
        let mut st = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let current = st
            .configmaps
            .get(&key)
            .map(|c| c.metadata.resource_version.clone());
        match (current, resource_version) {
            (Some(_), None) | (None, Some(_)) => return Ok(None),
            (Some(cur), Some(rv)) if cur.as_deref() != Some(rv) => return Ok(None),
            _ => {}
        }
        let rv = st.bump();
        st.configmaps.insert(
            key,
            ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(labels.clone()),
                    resource_version: Some(rv.clone()),
                    ..Default::default()
                },
                data: Some(data.clone()),
                ..Default::default()
            },
        );
        Ok(Some(rv))
    }

    async fn custom(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<CustomObject>, ClusterError> {
        self.request(
            match plural {
                "ciliumnodes" => "GET ciliumnode",
                "daemonsets" => "GET daemonset",
                "ciliumnodeconfigs" => "GET ciliumnodeconfig",
                _ => "GET other object",
            },
            false,
            0,
        )
        .await;
        let st = self.lock();
        let object = if plural == "ciliumnodes" {
            st.nodes.get(name).map(|n| {
                json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
                       "metadata": {"name": name},
                       "spec": {"ipam": {"podCIDRs": [n.cidr]}}})
            })
        } else {
            st.custom
                .get(&(
                    plural.to_owned(),
                    namespace.map(str::to_owned),
                    name.to_owned(),
                ))
                .cloned()
        };
        Ok(object.map(|object| CustomObject {
            api_version: object["apiVersion"]
                .as_str()
                .unwrap_or(api_version)
                .to_owned(),
            kind: object["kind"].as_str().unwrap_or_default().to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            object,
        }))
    }

    async fn apply(&self, plural: &str, object: &serde_json::Value) -> Result<(), ClusterError> {
        self.request("APPLY object", true, 0).await;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        self.lock().custom.insert(
            (plural.to_owned(), namespace, name.to_owned()),
            object.clone(),
        );
        Ok(())
    }

    async fn delete(
        &self,
        _api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ClusterError> {
        self.request("DELETE object", true, 0).await;
        Ok(self
            .lock()
            .custom
            .remove(&(
                plural.to_owned(),
                namespace.map(str::to_owned),
                name.to_owned(),
            ))
            .is_some())
    }

    async fn node_event(
        &self,
        _node: &str,
        _reason: &str,
        _message: &str,
        _warning: bool,
    ) -> Result<(), ClusterError> {
        self.request("CREATE event", true, 0).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_are_in_range_and_deterministic() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..1000 {
            let t = Physics::termination(&mut a);
            assert!(t >= Duration::from_secs(1) && t <= Duration::from_secs(30));
            let r = Physics::agent_restart(&mut a);
            assert!(r > Duration::ZERO && r <= Duration::from_secs(90));
        }
        assert!(selector_matches(
            "k8s-app=cilium",
            &[("k8s-app".to_owned(), "cilium".to_owned())].into()
        ));
        assert!(!selector_matches("k8s-app=cilium", &BTreeMap::new()));
        assert!(selector_matches("", &BTreeMap::new()));
    }
}
