//! The re-check's pods: one watch of every pod instead of a LIST of every pod once a minute.
//!
//! ```text
//! first re-check ─► PodWatch::start(floor = the earliest migration among the migrated nodes)
//!   watch_pod_changes ─► LIST, then each change ─► kept: pods that may have to be on Cilium
//!     (off the host network, running with an IP, not ours, created after the floor), by key,
//!     as (node, created, IPs); any other change removes the pod
//!   the stream fails or ends ─► not live; watched again after 5 s..60 s (a new LIST)
//! re-check ─► live: the kept pods of each migrated node, created after its migration, with no
//!   IP in the pool · not live: the caller LISTs every pod as before (the fallback)
//! ```
//!
//! A 150,000-pod cluster's LIST is about a gigabyte of JSON through the API server; the watch
//! sends it once, then only what changes. A node migrated later has a later migration time
//! than the floor, so nothing it needs is left out.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

use cluster::{
    Cluster,
    watch::{Change, Lost},
};
use planner::snapshot::PodInfo;

use crate::step::verify::{must_be_on_cilium, parse_time};

/// A kept pod's key (`namespace/name`) and IPs.
pub type NewPod = (String, Vec<IpAddr>);

/// What is kept of a pod.
#[derive(Clone, Debug)]
pub struct Kept {
    pub node: String,
    pub created: u64,
    pub ips: Vec<IpAddr>,
}

#[derive(Default)]
struct Seen {
    /// The LIST is in and the watch has not failed since.
    live: bool,
    pods: HashMap<String, Kept>,
}

impl Seen {
    fn apply(&mut self, floor: u64, p: PodInfo) {
        let key = p.key();
        let node = p.node_name.clone().filter(|n| !n.is_empty());
        match (node, must_be_on_cilium(&p, floor)) {
            (Some(node), true) => {
                let created = parse_time(p.created.as_deref()).unwrap_or_default();
                self.pods.insert(
                    key,
                    Kept {
                        node,
                        created,
                        ips: p.pod_ips,
                    },
                );
            }
            _ => {
                self.pods.remove(&key);
            }
        }
    }
}

/// Aborts the watching task when the watch goes.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One watch of every pod, keeping the pods the re-check may have to look at.
pub struct PodWatch {
    seen: Arc<Mutex<Seen>>,
    floor: u64,
    _task: Task,
}

impl PodWatch {
    /// Watches every pod of `cluster`, keeping those created after `floor` (Unix seconds);
    /// `None` when the cluster cannot watch pods.
    pub fn start(cluster: Arc<dyn Cluster>, floor: u64) -> Option<Self> {
        let first = cluster.watch_pod_changes()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(follow(cluster, seen.clone(), floor, first));
        Some(Self {
            seen,
            floor,
            _task: Task(task),
        })
    }

    /// The earliest creation time kept.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the watch answers now (its LIST is in, it has not failed since).
    pub fn live(&self) -> bool {
        self.lock().live
    }

    /// The kept pods on `node` created after `since`, as (key, IPs); `None` when not live.
    pub fn on_node_since(&self, node: &str, since: u64) -> Option<Vec<NewPod>> {
        self.on_nodes_since(&[(node, since)])
            .map(|mut by_node| by_node.remove(node).unwrap_or_default())
    }

    /// [`PodWatch::on_node_since`] for many nodes in one pass over the kept pods, by node
    /// (nodes without such pods left out); `None` when not live.
    pub fn on_nodes_since(&self, since: &[(&str, u64)]) -> Option<BTreeMap<String, Vec<NewPod>>> {
        let seen = self.lock();
        if !seen.live {
            return None;
        }
        let since: HashMap<&str, u64> = since.iter().copied().collect();
        let mut out: BTreeMap<String, Vec<NewPod>> = BTreeMap::new();
        for (key, k) in &seen.pods {
            if since.get(k.node.as_str()).is_some_and(|s| k.created > *s) {
                out.entry(k.node.clone())
                    .or_default()
                    .push((key.clone(), k.ips.clone()));
            }
        }
        for pods in out.values_mut() {
            pods.sort();
        }
        Some(out)
    }

    /// How many pods are kept.
    pub fn kept(&self) -> usize {
        self.lock().pods.len()
    }
}

type PodChanges =
    futures::stream::BoxStream<'static, Result<Change<PodInfo>, cluster::ClusterError>>;

/// Keeps `seen` (see [`cluster::watch::follow`] for when the watch is opened again).
async fn follow(cluster: Arc<dyn Cluster>, seen: Arc<Mutex<Seen>>, floor: u64, first: PodChanges) {
    let lock = || seen.lock().unwrap_or_else(PoisonError::into_inner);
    cluster::watch::follow(
        first,
        || cluster.watch_pod_changes(),
        |change| {
            let mut s = lock();
            match change {
                Change::Listed(items) => {
                    s.pods.clear();
                    for p in items {
                        s.apply(floor, p);
                    }
                    s.live = true;
                }
                Change::Applied(p) => s.apply(floor, p),
                Change::Deleted(p) => {
                    s.pods.remove(&p.key());
                }
            }
        },
        |lost| {
            lock().live = false;
            match lost {
                Lost::Failed(e) if cluster::watch::forbidden(e) => {
                    tracing::warn!(error = %e, "every pod cannot be watched (RBAC: re-apply `cni-migrate rbac`): the re-check lists every pod at most once a minute");
                }
                Lost::Failed(e) => {
                    tracing::info!(error = %e, "the watch of every pod failed: the re-check lists pods until it is back");
                }
                Lost::Ended => {}
            }
        },
    )
    .await;
}
