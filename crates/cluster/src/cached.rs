//! A [`Cluster`] whose node reads come from one watch of every node instead of a GET or a
//! LIST each: a run reads its nodes before every step, every few seconds while a drain waits,
//! for every admission and for every verification, and a 5,000-node cluster's LIST of nodes
//! is tens of megabytes.
//!
//! ```text
//! watch_nodes ─► LIST + WATCH ─► cache (name ─► NodeInfo), live once the LIST is in
//!   the stream ends or fails ─► not live (reads go to the API) ─► watched again after 5 s..60 s
//! node(n) / nodes() ─► the cache while live, except nodes with a write of ours not seen yet
//! set_unschedulable / set_node_label / set_node_annotations ─► an expectation recorded
//!   before the write; a read of the node waits up to 100 ms for the watch to show the write's
//!   effect, and asks the API if it has not
//! ```
//!
//! So a read never returns a node older than a write this process made to it (read your
//! writes), and otherwise lags the cluster by the watch's latency, as a GET sent a moment
//! earlier would. Everything else goes to the wrapped cluster as it is.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use planner::snapshot::{CustomObject, NodeInfo, PdbInfo, PodInfo};
use tokio::sync::Notify;

use crate::{
    ClusterError,
    ops::{CiliumNodeInfo, Cluster, EndpointInfo, Eviction},
    watch::{Change, Lost},
};

/// The effect a write of ours must show in the watch before the cache answers for its node.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Unschedulable(bool),
    Label(String, Option<String>),
    Annotation(String, Option<String>),
}

impl Expect {
    fn same_field(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unschedulable(_), Self::Unschedulable(_)) => true,
            (Self::Label(a, _), Self::Label(b, _))
            | (Self::Annotation(a, _), Self::Annotation(b, _)) => a == b,
            _ => false,
        }
    }

    fn holds(&self, node: &NodeInfo) -> bool {
        match self {
            Self::Unschedulable(u) => node.unschedulable == *u,
            Self::Label(k, v) => node.labels.get(k) == v.as_ref(),
            Self::Annotation(k, v) => node.annotations.get(k) == v.as_ref(),
        }
    }
}

#[derive(Default)]
struct Cache {
    /// The LIST is in and the watch has not failed since.
    live: bool,
    nodes: HashMap<String, NodeInfo>,
    /// Writes of ours the watch has not shown yet, by node.
    pending: HashMap<String, Vec<Expect>>,
}

impl Cache {
    fn settle(&mut self, name: &str) {
        let Some(expects) = self.pending.get_mut(name) else {
            return;
        };
        match self.nodes.get(name) {
            Some(node) => expects.retain(|e| !e.holds(node)),
            // Gone: nothing of ours can show any more; the cache's answer (gone) is the API's.
            None => expects.clear(),
        }
        if expects.is_empty() {
            self.pending.remove(name);
        }
    }

    fn apply(&mut self, change: Change<NodeInfo>) {
        match change {
            Change::Listed(items) => {
                self.nodes = items.into_iter().map(|n| (n.name.clone(), n)).collect();
                self.live = true;
                let names: Vec<String> = self.pending.keys().cloned().collect();
                for n in names {
                    self.settle(&n);
                }
            }
            Change::Applied(n) => {
                let name = n.name.clone();
                self.nodes.insert(name.clone(), n);
                self.settle(&name);
            }
            Change::Deleted(n) => {
                self.nodes.remove(&n.name);
                self.settle(&n.name);
            }
        }
    }
}

/// Aborts the watching task when the last clone of the cluster goes.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`Cluster`] with its node reads served from a watch (see the module's documentation).
pub struct NodeCached {
    inner: Arc<dyn Cluster>,
    cache: Arc<Mutex<Cache>>,
    /// Told after every change the watch applied.
    changed: Arc<Notify>,
    _task: Task,
}

/// How long a read of a node with a write of ours not seen yet waits for the watch to show it
/// before it asks the API: the watch usually shows it within milliseconds (a step that reads
/// its node right after the previous step wrote it no longer costs a GET), and a watch that
/// lags costs a read no more than this.
const SETTLE_WAIT: Duration = Duration::from_millis(100);

type NodeChanges = BoxStream<'static, Result<Change<NodeInfo>, ClusterError>>;

impl NodeCached {
    /// Wraps `inner`, watching its nodes from now on; `inner` itself when it cannot watch
    /// nodes or there is no Tokio runtime to watch on.
    pub fn wrap(inner: Arc<dyn Cluster>) -> Arc<dyn Cluster> {
        match Self::new(inner.clone()) {
            Some(cached) => Arc::new(cached),
            None => inner,
        }
    }

    /// `inner` with its nodes watched from now on; `None` when it cannot watch nodes or there
    /// is no Tokio runtime to watch on.
    pub fn new(inner: Arc<dyn Cluster>) -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        let first = inner.watch_nodes()?;
        let cache = Arc::new(Mutex::new(Cache::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(watch(inner.clone(), cache.clone(), changed.clone(), first));
        Some(Self {
            inner,
            cache,
            changed,
            _task: Task(task),
        })
    }

    /// Whether the cache answers reads now (its LIST is in, its watch has not failed since).
    pub fn live(&self) -> bool {
        self.lock().live
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache's answer for a node: `None` when the API must be asked.
    fn cached(&self, name: &str) -> Option<Option<NodeInfo>> {
        let c = self.lock();
        if !c.live || c.pending.contains_key(name) {
            return None;
        }
        Some(c.nodes.get(name).cloned())
    }

    /// Waits (at most [`SETTLE_WAIT`]) until `ready` holds of the live cache; whether it did.
    async fn settled(&self, ready: impl Fn(&Cache) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            // Registered before the check: a change between the two still wakes it.
            let changed = self.changed.notified();
            {
                let c = self.lock();
                if !c.live {
                    return false;
                }
                if ready(&c) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Records a write's effect before the write is sent; a failed write keeps it (it may
    /// have applied), so the node is read from the API until the watch settles it.
    fn expect(&self, node: &str, expects: Vec<Expect>) {
        let mut c = self.lock();
        let list = c.pending.entry(node.to_owned()).or_default();
        for e in expects {
            list.retain(|old| !old.same_field(&e));
            list.push(e);
        }
        c.settle(node);
    }
}

/// Keeps the cache (see [`crate::watch::follow`] for when the watch is opened again).
async fn watch(
    inner: Arc<dyn Cluster>,
    cache: Arc<Mutex<Cache>>,
    changed: Arc<Notify>,
    first: NodeChanges,
) {
    let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
    crate::watch::follow(
        first,
        || inner.watch_nodes(),
        |change| {
            lock().apply(change);
            changed.notify_waiters();
        },
        |lost| {
            lock().live = false;
            match lost {
                Lost::Failed(e) if crate::watch::forbidden(e) => {
                    tracing::warn!(error = %e, "nodes cannot be watched (RBAC: re-apply `cni-migrate rbac`): every node read goes to the API");
                }
                Lost::Failed(e) => {
                    tracing::info!(error = %e, "the watch of the nodes failed: nodes are read from the API until it is back");
                }
                Lost::Ended => {}
            }
        },
    )
    .await;
}

#[async_trait]
impl Cluster for NodeCached {
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ClusterError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        if self.settled(|c| !c.pending.contains_key(name)).await
            && let Some(hit) = self.cached(name)
        {
            return Ok(hit);
        }
        self.inner.node(name).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        self.settled(|c| c.pending.is_empty()).await;
        let cached = {
            let c = self.lock();
            if c.live {
                let nodes: BTreeMap<String, NodeInfo> = c
                    .nodes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let unsettled: Vec<String> = c.pending.keys().cloned().collect();
                Some((nodes, unsettled))
            } else {
                None
            }
        };
        let Some((mut nodes, unsettled)) = cached else {
            return self.inner.nodes().await;
        };
        for name in unsettled {
            match self.inner.node(&name).await? {
                Some(n) => nodes.insert(name, n),
                None => nodes.remove(&name),
            };
        }
        Ok(nodes.into_values().collect())
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ClusterError> {
        self.expect(node, vec![Expect::Unschedulable(unschedulable)]);
        self.inner.set_unschedulable(node, unschedulable).await
    }

    async fn set_node_label(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ClusterError> {
        self.expect(
            node,
            vec![Expect::Label(key.to_owned(), value.map(str::to_owned))],
        );
        self.inner.set_node_label(node, key, value).await
    }

    async fn set_node_annotations(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), ClusterError> {
        self.expect(
            node,
            annotations
                .iter()
                .map(|(k, v)| Expect::Annotation((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
        );
        self.inner.set_node_annotations(node, annotations).await
    }

    fn watch_nodes(&self) -> Option<NodeChanges> {
        self.inner.watch_nodes()
    }

    fn watch_pod_changes(
        &self,
    ) -> Option<BoxStream<'static, Result<Change<PodInfo>, ClusterError>>> {
        self.inner.watch_pod_changes()
    }

    async fn pods_on_node(&self, node: &str) -> Result<Vec<PodInfo>, ClusterError> {
        self.inner.pods_on_node(node).await
    }

    fn watch_pods(
        &self,
        namespace: Option<&str>,
        field_selector: &str,
    ) -> Option<BoxStream<'static, Result<Vec<PodInfo>, ClusterError>>> {
        self.inner.watch_pods(namespace, field_selector)
    }

    async fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<PodInfo>, ClusterError> {
        self.inner.pods(namespace, label_selector).await
    }

    fn watch_object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<BoxStream<'static, Result<Option<serde_json::Value>, ClusterError>>> {
        self.inner
            .watch_object(api_version, plural, namespace, name)
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        self.inner.pod(namespace, name).await
    }

    async fn evict(
        &self,
        namespace: &str,
        name: &str,
        grace_period_seconds: Option<i64>,
    ) -> Result<Eviction, ClusterError> {
        self.inner
            .evict(namespace, name, grace_period_seconds)
            .await
    }

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError> {
        self.inner.delete_pod(namespace, name, uid).await
    }

    async fn create_pod(&self, pod: &Pod) -> Result<PodInfo, ClusterError> {
        self.inner.create_pod(pod).await
    }

    async fn pod_log(&self, namespace: &str, name: &str) -> Result<String, ClusterError> {
        self.inner.pod_log(namespace, name).await
    }

    async fn pdbs(&self) -> Result<Vec<PdbInfo>, ClusterError> {
        self.inner.pdbs().await
    }

    async fn configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        self.inner.configmap(namespace, name).await
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
        self.inner
            .write_configmap(namespace, name, labels, data, binary_data, resource_version)
            .await
    }

    async fn configmaps_labelled(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        self.inner.configmaps_labelled(namespace, selector).await
    }

    async fn custom(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<CustomObject>, ClusterError> {
        self.inner
            .custom(api_version, plural, namespace, name)
            .await
    }

    async fn apply(&self, plural: &str, object: &serde_json::Value) -> Result<(), ClusterError> {
        self.inner.apply(plural, object).await
    }

    async fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ClusterError> {
        self.inner
            .delete(api_version, plural, namespace, name)
            .await
    }

    async fn cilium_nodes(&self) -> Result<Vec<CiliumNodeInfo>, ClusterError> {
        self.inner.cilium_nodes().await
    }

    async fn cilium_endpoints(&self) -> Result<Vec<EndpointInfo>, ClusterError> {
        self.inner.cilium_endpoints().await
    }

    async fn node_event(
        &self,
        node: &str,
        reason: &str,
        message: &str,
        warning: bool,
    ) -> Result<(), ClusterError> {
        self.inner.node_event(node, reason, message, warning).await
    }
}
