//! The fake cluster's state, a function of time: pods visible, terminating, gone or healthy at
//! an instant, and the budgets counted from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{physics::NodePhysics, rng::Rng};
use k8s_openapi::api::core::v1::ConfigMap;
use planner::snapshot::{NodeInfo, OwnerRef, PodInfo, PodPhase};
use tokio::time::Instant;

/// What a watch of the fake selects: a node's pods, or one pod (`namespace/name`).
#[derive(Clone, Debug)]
pub(crate) enum Sel {
    /// `spec.nodeName=N`.
    Node(String),
    /// `metadata.name=P` in a namespace.
    Pod(String),
}

#[derive(Clone, Debug)]
pub(super) struct FakePod {
    pub(super) info: PodInfo,
    pub(super) appears: Instant,
    pub(super) ready_at: Instant,
    pub(super) deleting_at: Option<Instant>,
    pub(super) gone_at: Option<Instant>,
    /// The PDB-covered app it belongs to.
    pub(super) app: Option<String>,
    /// A pod that runs to completion (the verification probe), with its log.
    pub(super) exits: Option<String>,
}

impl FakePod {
    pub(super) fn visible(&self, t: Instant) -> bool {
        self.appears <= t && self.gone_at.is_none_or(|g| t < g)
    }

    pub(super) fn gone(&self, t: Instant) -> bool {
        self.gone_at.is_some_and(|g| g <= t)
    }

    pub(super) fn terminating(&self, t: Instant) -> bool {
        self.deleting_at.is_some_and(|d| d <= t)
    }

    pub(super) fn healthy(&self, t: Instant) -> bool {
        self.visible(t) && !self.terminating(t) && self.ready_at <= t
    }

    pub(super) fn view(&self, t: Instant) -> PodInfo {
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
pub(super) struct FakeNode {
    pub(super) info: NodeInfo,
    pub(super) cidr: String,
}

#[derive(Clone, Debug)]
pub(super) struct FakePdb {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) app: String,
    pub(super) max_unavailable: i64,
    pub(super) expected: i64,
}

pub(super) struct State {
    pub(super) rng: Rng,
    pub(super) nodes: BTreeMap<String, FakeNode>,
    pub(super) node_names: Vec<String>,
    pub(super) pods: HashMap<String, FakePod>,
    pub(super) by_node: HashMap<String, BTreeSet<String>>,
    pub(super) by_ns: HashMap<String, BTreeSet<String>>,
    pub(super) pdbs: Vec<FakePdb>,
    pub(super) pdb_members: HashMap<String, BTreeSet<String>>,
    pub(super) configmaps: BTreeMap<(String, String), ConfigMap>,
    pub(super) custom: BTreeMap<(String, Option<String>, String), serde_json::Value>,
    pub(super) resource_version: u64,
    pub(super) seq: u64,
    pub(super) requests: BTreeMap<&'static str, u64>,
    /// When each counted request was sent (virtual time, in order).
    pub(super) arrivals: Vec<Instant>,
    pub(super) list_items: u64,
    pub(super) physics: HashMap<String, NodePhysics>,
    pub(super) blocked_evictions: u64,
    /// The names of nodes changed by a write, in order (what a watch of nodes sends).
    pub(super) node_log: Vec<String>,
    /// Woken at each node write.
    pub(super) node_written: std::sync::Arc<tokio::sync::Notify>,
}

impl State {
    /// Logs a node's change for the watches of nodes.
    pub(super) fn node_changed(&mut self, node: &str) {
        self.node_log.push(node.to_owned());
        self.node_written.notify_waiters();
    }

    pub(super) fn insert_pod(&mut self, pod: FakePod) {
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

    /// The pods on a node as a LIST would show them at `t` (gone ones removed).
    pub(super) fn on_node(&mut self, node: &str, t: Instant) -> Vec<PodInfo> {
        let keys: Vec<String> = self
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.remove_gone(&keys, t);
        keys.iter()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| p.visible(t))
            .map(|p| p.view(t))
            .collect()
    }

    /// The pods a watch selects, as a LIST would show them at `t`.
    pub(super) fn selected(&mut self, sel: &Sel, t: Instant) -> Vec<PodInfo> {
        match sel {
            Sel::Node(n) => self.on_node(n, t),
            Sel::Pod(key) => {
                self.remove_gone(std::slice::from_ref(key), t);
                self.pods
                    .get(key)
                    .filter(|p| p.visible(t))
                    .map(|p| p.view(t))
                    .into_iter()
                    .collect()
            }
        }
    }

    /// The next instant after `t` at which a selected pod appears, terminates, goes or
    /// becomes ready.
    pub(super) fn next_change_of(&self, sel: &Sel, t: Instant) -> Option<Instant> {
        let keys: Vec<&String> = match sel {
            Sel::Node(n) => self.by_node.get(n)?.iter().collect(),
            Sel::Pod(key) => vec![key],
        };
        keys.into_iter()
            .filter_map(|k| self.pods.get(k))
            .flat_map(|p| [Some(p.appears), Some(p.ready_at), p.deleting_at, p.gone_at])
            .flatten()
            .filter(|x| *x > t)
            .min()
    }

    pub(super) fn remove_gone(&mut self, keys: &[String], t: Instant) {
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

    pub(super) fn allowed(&self, pdb: &FakePdb, t: Instant) -> i64 {
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

    pub(super) fn next_uid(&mut self) -> String {
        self.seq += 1;
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.seq,
            self.rng.next_u64() >> 16
        )
    }

    pub(super) fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }
}

/// A pod as the snapshot and the fake both see it.
pub(super) fn app_pod(
    node: &str,
    rs: &str,
    app: &str,
    name: String,
    uid: String,
    ip: String,
) -> PodInfo {
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

pub(super) fn agent_pod(node: &str, name: &str, uid: String) -> PodInfo {
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
pub(super) fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|req| match req.split_once('=') {
            Some((k, v)) => labels.get(k.trim()).is_some_and(|l| l == v.trim()),
            None => labels.contains_key(req),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_match_like_the_api_server() {
        assert!(selector_matches(
            "k8s-app=cilium",
            &[("k8s-app".to_owned(), "cilium".to_owned())].into()
        ));
        assert!(!selector_matches("k8s-app=cilium", &BTreeMap::new()));
        assert!(selector_matches("", &BTreeMap::new()));
    }
}
