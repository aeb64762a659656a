//! [`cluster::Cluster`] over the fake state: every verb counted, delayed by a drawn API latency,
//! then acted out against the state at the current (virtual) instant.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use super::{
    physics::{NodePhysics, Physics},
    state::{FakePod, State, agent_pod, app_pod, selector_matches},
};
use async_trait::async_trait;
use cluster::{Cluster, ClusterError, Eviction};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use planner::snapshot::{
    CustomObject, IntOrString, LabelSelector, NodeInfo, PdbInfo, PodInfo, PodPhase,
};
use serde_json::json;
use tokio::time::Instant;

/// The fake cluster.
pub struct FakeCluster {
    pub(super) state: std::sync::Arc<Mutex<State>>,
    pub(super) physics: Physics,
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
    /// The most requests sent within one second, and the most within ten seconds.
    pub peak: (usize, usize),
}

impl FakeCluster {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the request and waits its latency.
    async fn request(&self, what: &'static str, write: bool, bytes: usize) {
        let d = {
            let mut st = self.lock();
            *st.requests.entry(what).or_default() += 1;
            st.arrivals.push(Instant::now());
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
            peak: (
                busiest(&st.arrivals, Duration::from_secs(1)),
                busiest(&st.arrivals, Duration::from_secs(10)),
            ),
        }
    }
}

/// The most of `times` (in order) within any `window`.
fn busiest(times: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut j = 0;
    for (i, t) in times.iter().enumerate() {
        while t.saturating_duration_since(times[j]) >= window {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ClusterError> {
        self.request("GET node", false, 0).await;
        Ok(self.lock().nodes.get(name).map(|n| n.info.clone()))
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ClusterError> {
        self.request("PATCH node (unschedulable)", true, 0).await;
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(node) {
            n.info.unschedulable = unschedulable;
            st.node_changed(node);
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
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(node) {
            match value {
                Some(v) => {
                    n.info.labels.insert(key.to_owned(), v.to_owned());
                }
                None => {
                    n.info.labels.remove(key);
                }
            }
            st.node_changed(node);
        }
        Ok(())
    }

    async fn set_node_annotations(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), ClusterError> {
        self.request("PATCH node (annotations)", true, 0).await;
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(node) {
            for (k, v) in annotations {
                match v {
                    Some(v) => {
                        n.info.annotations.insert((*k).to_owned(), (*v).to_owned());
                    }
                    None => {
                        n.info.annotations.remove(*k);
                    }
                }
            }
            st.node_changed(node);
        }
        Ok(())
    }

    async fn pods_on_node(&self, node: &str) -> Result<Vec<PodInfo>, ClusterError> {
        self.request("LIST pods (spec.nodeName=)", false, 0).await;
        let mut st = self.lock();
        let out = st.on_node(node, Instant::now());
        st.list_items += out.len() as u64;
        Ok(out)
    }

    /// One LIST and one WATCH of every node, counted once; then each node a write changed, a
    /// watch's latency after the write.
    fn watch_nodes(
        &self,
    ) -> Option<
        futures::stream::BoxStream<'static, Result<cluster::watch::Change<NodeInfo>, ClusterError>>,
    > {
        use cluster::watch::Change;
        use futures::StreamExt as _;
        let state = self.state.clone();
        let latency = self.physics.api_latency;
        Some(
            futures::stream::unfold((state, None::<usize>), move |(state, cursor)| async move {
                let lock = || {
                    state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                };
                let Some(at) = cursor else {
                    let (items, at) = {
                        let mut st = lock();
                        *st.requests.entry("LIST nodes (watch)").or_default() += 1;
                        *st.requests.entry("WATCH nodes").or_default() += 1;
                        let items: Vec<NodeInfo> =
                            st.nodes.values().map(|n| n.info.clone()).collect();
                        (items, st.node_log.len())
                    };
                    if latency {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return Some((Ok(Change::Listed(items)), (state, Some(at))));
                };
                let mut at = at;
                loop {
                    let notify = lock().node_written.clone();
                    let written = notify.notified();
                    tokio::pin!(written);
                    written.as_mut().enable();
                    let (logged, next) = {
                        let st = lock();
                        let next = st.node_log.get(at).and_then(|name| st.nodes.get(name));
                        (st.node_log.len(), next.map(|n| n.info.clone()))
                    };
                    if let Some(info) = next {
                        if latency {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        return Some((Ok(Change::Applied(info)), (state, Some(at + 1))));
                    }
                    if logged > at {
                        at += 1; // a node that is no longer there
                        continue;
                    }
                    tokio::select! {
                        () = &mut written => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })
            .boxed(),
        )
    }

    /// One LIST and one WATCH, counted once; then a snapshot whenever the pods change. The
    /// stream looks at the state at the next change it can foresee, and at least every 250 ms
    /// (an eviction's effects start after it computed its next wake-up). Field selectors
    /// `spec.nodeName=N` and `metadata.name=P` (with the namespace) are understood.
    fn watch_pods(
        &self,
        namespace: Option<&str>,
        field_selector: &str,
    ) -> Option<futures::stream::BoxStream<'static, Result<Vec<PodInfo>, ClusterError>>> {
        use futures::StreamExt as _;
        let state = self.state.clone();
        let node = match (field_selector.split_once('='), namespace) {
            (Some(("spec.nodeName", n)), None) => super::state::Sel::Node(n.to_owned()),
            (Some(("metadata.name", p)), Some(ns)) => super::state::Sel::Pod(format!("{ns}/{p}")),
            _ => return None,
        };
        let (list, watch) = match &node {
            super::state::Sel::Node(_) => {
                ("LIST pods (spec.nodeName=)", "WATCH pods (spec.nodeName=)")
            }
            super::state::Sel::Pod(_) => {
                ("LIST pods (metadata.name=)", "WATCH pods (metadata.name=)")
            }
        };
        let latency = self.physics.api_latency;
        let first = true;
        Some(
            futures::stream::unfold(
                (state, node, None::<Vec<PodInfo>>, first),
                move |(state, node, last, first)| async move {
                    if first {
                        {
                            let mut st = state
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            *st.requests.entry(list).or_default() += 1;
                            *st.requests.entry(watch).or_default() += 1;
                        }
                        if latency {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    loop {
                        let now = Instant::now();
                        let (snapshot, next) = {
                            let mut st = state
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            (st.selected(&node, now), st.next_change_of(&node, now))
                        };
                        if last.as_ref() != Some(&snapshot) {
                            return Some((
                                Ok(snapshot.clone()),
                                (state, node, Some(snapshot), false),
                            ));
                        }
                        let wake = next
                            .unwrap_or(now + Duration::from_secs(3600))
                            .min(now + Duration::from_millis(250));
                        tokio::time::sleep_until(wake).await;
                    }
                },
            )
            .boxed(),
        )
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
        // A pod starts on Cilium once its node carries the migration label (the agent is
        // restarted right after), on the old overlay before: its pod CIDR.
        let cidr = st
            .nodes
            .get(&node)
            .map(|n| {
                if n.info.labels.contains_key(planner::names::MIGRATION_LABEL) {
                    n.cidr.clone()
                } else {
                    n.info
                        .pod_cidrs
                        .first()
                        .cloned()
                        .unwrap_or_else(|| n.cidr.clone())
                }
            })
            .unwrap_or_default();
        let ip = format!("{}.{}", cidr.trim_end_matches(".0/24"), 250 + seq % 4);
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        // The finale's cleanup pod finds the old CNI's leftovers and removes them.
        let cleanup = labels
            .contains_key("cni-migrate.io/clean-old-cni")
            .then(|| {
                "removed iptables-nft nat chain FLANNEL-POSTRTG\nremoved link flannel.1\ndone\n"
                    .to_owned()
            });
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
        let exits = exits.or(cleanup);
        let start = Physics::pod_start(&mut st.rng);
        if labels.contains_key("cni-migrate.io/probe") {
            st.physics.entry(node.clone()).or_default().probe_starts += start;
        }
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
        binary_data: &BTreeMap<String, Vec<u8>>,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, ClusterError> {
        let bytes: usize = data.values().map(String::len).sum::<usize>()
            + binary_data.values().map(Vec::len).sum::<usize>();
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
            cluster::ops::configmap_object(namespace, name, labels, data, binary_data, Some(&rv)),
        );
        Ok(Some(rv))
    }

    async fn configmaps_labelled(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        self.request("LIST configmap", false, 0).await;
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        Ok(self
            .lock()
            .configmaps
            .iter()
            .filter(|((ns, _), cm)| {
                ns == namespace
                    && wanted.iter().all(|(k, v)| {
                        cm.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(*k))
                            .is_some_and(|x| x == v)
                    })
            })
            .map(|(_, cm)| cm.clone())
            .collect())
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
        if plural == "configmaps" {
            return Ok(self
                .lock()
                .configmaps
                .remove(&(namespace.unwrap_or_default().to_owned(), name.to_owned()))
                .is_some());
        }
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
