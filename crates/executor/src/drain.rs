//! Draining a node with `kubectl drain`'s semantics, bounded and explained.
//!
//! ```text
//! list pods on node ─► classify (kubectl's filters, all refusals reported before any eviction)
//!        │
//!        ▼
//! evict each (policy/v1) ─► 200: wait until gone (404 or a new UID: StatefulSet pods come back
//!        │                      with the same name)
//!        ├─ 429: a PDB has no disruption left: retry every `retry_delay`, count the wait
//!        ├─ 500 "more than one PodDisruptionBudget": fail, waiting cannot fix it
//!        └─ global deadline: fail, naming the pods still there and the PDBs holding them
//! ```
//!
//! Never deletes a pod directly and never forces: the only way a pod leaves is the eviction
//! API, so every PodDisruptionBudget is honoured. Waiting uses one field-selected watch of the
//! node's pods (one LIST, one WATCH); where the cluster cannot watch, or once the watch failed,
//! one field-selected LIST per tick, never a GET per pod.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use cluster::{Cluster, ClusterError, Eviction};
use futures::StreamExt as _;
use planner::snapshot::{PdbInfo, PodInfo};
use tokio::time::Instant;

/// How to drain.
#[derive(Clone, Debug)]
pub struct DrainOptions {
    /// Global deadline for the whole drain.
    pub timeout: Duration,
    /// Evict pods with emptyDir volumes (their data is lost).
    pub delete_empty_dir_data: bool,
    /// Evict pods without a controller (they are not recreated).
    pub allow_unreplicated: bool,
    /// Override each pod's termination grace period.
    pub grace_period_seconds: Option<i64>,
    /// Pause between retries of an eviction refused by a PDB (kubectl: 5 s).
    pub retry_delay: Duration,
    /// Pause between checks for evicted pods being gone.
    pub poll: Duration,
    /// How often to check that the node is still Ready.
    pub node_check: Duration,
    /// Evict DaemonSet pods too (their controller recreates them on the same node): the
    /// restart of pods Cilium does not manage, not a drain.
    pub include_daemonset_pods: bool,
    /// The pod this process runs in (`namespace/name`, from the downward API's `POD_NAMESPACE`
    /// and `POD_NAME`: an in-cluster Job): evicted last, after every other pod of the node is
    /// gone, so that the run stops (SIGTERM) only when its drain's work is done and the Job's
    /// next pod resumes on another node.
    pub own_pod: Option<String>,
}

impl DrainOptions {
    /// The options a spec asks for, with kubectl's retry pacing.
    pub fn from_spec(drain: &planner::spec::Drain) -> Self {
        Self {
            timeout: drain.timeout.0,
            delete_empty_dir_data: drain.delete_empty_dir_data,
            allow_unreplicated: drain.allow_unreplicated,
            grace_period_seconds: drain.grace_period_seconds,
            retry_delay: Duration::from_secs(5),
            poll: Duration::from_secs(1),
            node_check: Duration::from_secs(5),
            include_daemonset_pods: false,
            own_pod: None,
        }
    }
}

/// Why a pod is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Managed by a DaemonSet (`--ignore-daemonsets`).
    DaemonSet,
    /// A static pod's mirror.
    Mirror,
    /// One of the tool's own probe, beacon or restore pods (the runtime removes them itself).
    Ours,
}

/// Why a drain refuses to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// No controller would recreate it.
    Unreplicated,
    /// Has emptyDir data that eviction would delete.
    LocalStorage,
}

impl Refusal {
    fn explain(self) -> &'static str {
        match self {
            Refusal::Unreplicated => {
                "no controller would recreate it (allow with rollout.drain.allowUnreplicated)"
            }
            Refusal::LocalStorage => {
                "its emptyDir data would be lost (allow with rollout.drain.deleteEmptyDirData)"
            }
        }
    }
}

/// kubectl's filters, in kubectl's order: DaemonSet pods and mirror pods are skipped; finished
/// pods are always fine to remove; emptyDir and unreplicated pods are refused unless allowed.
pub fn classify(pod: &PodInfo, opts: &DrainOptions) -> Result<Option<Skip>, Refusal> {
    if pod.is_daemonset_pod() && !opts.include_daemonset_pods {
        return Ok(Some(Skip::DaemonSet));
    }
    if pod.mirror {
        return Ok(Some(Skip::Mirror));
    }
    if pod.is_cni_migrate_pod() {
        return Ok(Some(Skip::Ours));
    }
    if pod.phase.is_finished() {
        return Ok(None);
    }
    if pod.empty_dir && !opts.delete_empty_dir_data {
        return Err(Refusal::LocalStorage);
    }
    if pod.owner.is_none() && !opts.allow_unreplicated {
        return Err(Refusal::Unreplicated);
    }
    Ok(None)
}

/// What a drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Pods evicted (namespace/name).
    pub evicted: Vec<String>,
    /// Pods left alone, and why.
    pub skipped: Vec<(String, Skip)>,
    /// Time spent waiting on each PDB (namespace/name), summed over the pods it held.
    pub pdb_waits: BTreeMap<String, Duration>,
    /// Evictions refused with 429 and retried.
    pub retries: u32,
}

/// Why a drain failed. The node stays cordoned; nothing was forced.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// Some pods may not be evicted under the spec's options; nothing was evicted.
    #[error("cannot drain node {node}: {}", describe_refused(.pods))]
    Refused {
        /// Node.
        node: String,
        /// Pods and why.
        pods: Vec<(String, Refusal)>,
    },
    /// The deadline passed with pods still on the node.
    #[error(
        "drain of node {node} timed out after {}s with {} pod(s) still on it ({}){}",
        .timeout.as_secs(), .remaining.len(), .remaining.join(", "),
        if .pdbs.is_empty() { String::new() } else { format!("; blocked by PodDisruptionBudget(s) {}", .pdbs.join(", ")) }
    )]
    Timeout {
        /// Node.
        node: String,
        /// The deadline.
        timeout: Duration,
        /// Pods still there.
        remaining: Vec<String>,
        /// PDBs that refused their evictions.
        pdbs: Vec<String>,
        /// Pods evicted before the deadline.
        evicted: Vec<String>,
    },
    /// The eviction API refused for a reason waiting cannot fix (overlapping PDBs).
    #[error("cannot evict pod {pod} from node {node}: {message}")]
    Misconfigured {
        /// Node.
        node: String,
        /// Pod.
        pod: String,
        /// The API server's message.
        message: String,
    },
    /// The node stopped being Ready during the drain: its pods cannot terminate cleanly.
    #[error("node {node} became NotReady during the drain; stopping rather than guessing")]
    NodeNotReady {
        /// Node.
        node: String,
    },
    /// The node disappeared.
    #[error("node {node} no longer exists")]
    NodeGone {
        /// Node.
        node: String,
    },
    /// The API failed.
    #[error("drain of node {node} failed talking to the API server")]
    Cluster {
        /// Node.
        node: String,
        /// The error.
        #[source]
        source: ClusterError,
    },
}

impl DrainError {
    /// Whether running the drain again later may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        match self {
            DrainError::Cluster { source, .. } => source.is_retriable(),
            _ => false,
        }
    }
}

fn describe_refused(pods: &[(String, Refusal)]) -> String {
    let mut by: BTreeMap<Refusal, Vec<&str>> = BTreeMap::new();
    for (p, r) in pods {
        by.entry(*r).or_default().push(p);
    }
    by.into_iter()
        .map(|(r, ps)| format!("{} ({})", ps.join(", "), r.explain()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug)]
struct Pending {
    namespace: String,
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    evicted: bool,
    next_try: Instant,
    blocked_since: Option<Instant>,
}

fn matching_pdbs<'a>(pdbs: &'a [PdbInfo], p: &Pending) -> impl Iterator<Item = &'a PdbInfo> + 'a {
    let ns = p.namespace.clone();
    let labels = p.labels.clone();
    pdbs.iter().filter(move |pdb| {
        pdb.namespace == ns
            && pdb
                .selector
                .as_ref()
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
    })
}

/// Drains a node. The node must already be cordoned (the cordon step's job).
///
/// # Errors
/// [`DrainError`], naming the node, the pods and the PDBs involved.
pub async fn drain<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    opts: &DrainOptions,
) -> Result<DrainReport, DrainError> {
    drain_listed(cluster, node, opts, None).await
}

/// A watch of a node's pods.
pub type PodWatch =
    futures::stream::BoxStream<'static, Result<Vec<PodInfo>, cluster::ClusterError>>;

/// A node's pods as just listed (by the drain step's announcement), and the watch whose first
/// snapshot they were, when the cluster can watch: the drain goes on from them, so that
/// announcing the count costs no second LIST.
pub struct Listed {
    /// The pods.
    pub pods: Vec<PodInfo>,
    /// The watch they came from.
    pub watch: Option<PodWatch>,
}

impl Listed {
    /// The node's pods: the first snapshot of a watch where the cluster can watch (the watch
    /// kept for the drain), else a LIST.
    ///
    /// # Errors
    /// The API's failure.
    pub async fn now<C: Cluster + ?Sized>(
        cluster: &C,
        node: &str,
    ) -> Result<Self, cluster::ClusterError> {
        use futures::StreamExt as _;
        if let Some(mut watch) = cluster.watch_pods(None, &format!("spec.nodeName={node}")) {
            match watch.next().await {
                Some(Ok(pods)) => {
                    return Ok(Self {
                        pods,
                        watch: Some(watch),
                    });
                }
                Some(Err(e)) => {
                    tracing::info!(node, error = %e, "cannot watch the node's pods; listing them")
                }
                None => {}
            }
        }
        Ok(Self {
            pods: cluster.pods_on_node(node).await?,
            watch: None,
        })
    }
}

/// [`drain`], from the node's pods as just listed.
///
/// # Errors
/// As [`drain`].
pub async fn drain_listed<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    opts: &DrainOptions,
    listed: Option<Listed>,
) -> Result<DrainReport, DrainError> {
    evict_listed(cluster, node, opts, &|_| true, listed).await
}

/// Evicts the pods on a node that `select` picks, with the drain's filters, refusals, PDB
/// handling and deadline (the node need not be cordoned: the replacements may land anywhere).
///
/// # Errors
/// As [`drain`].
pub async fn evict_where<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    opts: &DrainOptions,
    select: &(dyn Fn(&PodInfo) -> bool + Send + Sync),
) -> Result<DrainReport, DrainError> {
    evict_listed(cluster, node, opts, select, None).await
}

async fn evict_listed<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    opts: &DrainOptions,
    select: &(dyn Fn(&PodInfo) -> bool + Send + Sync),
    listed: Option<Listed>,
) -> Result<DrainReport, DrainError> {
    let err = |source| DrainError::Cluster {
        node: node.to_owned(),
        source,
    };
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let Listed { pods, mut watch } = match listed {
        Some(l) => l,
        None => Listed::now(cluster, node).await.map_err(err)?,
    };

    let mut report = DrainReport::default();
    let mut refused = Vec::new();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    for pod in pods.iter().filter(|p| select(p)) {
        match classify(pod, opts) {
            Ok(Some(skip)) => report.skipped.push((pod.key(), skip)),
            Ok(None) => {
                pending.insert(
                    pod.key(),
                    Pending {
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        uid: pod.uid.clone(),
                        labels: pod.labels.clone(),
                        evicted: false,
                        next_try: start,
                        blocked_since: None,
                    },
                );
            }
            Err(r) => refused.push((pod.key(), r)),
        }
    }
    if !refused.is_empty() {
        return Err(DrainError::Refused {
            node: node.to_owned(),
            pods: refused,
        });
    }

    // Evicted pods going are seen through one watch of the node's pods; a LIST a poll where
    // the cluster cannot watch, and from the first watch error on.
    // The watch is past its first snapshot: `pods` above.
    let mut latest: Option<Vec<PodInfo>> = watch.is_some().then(|| pods.clone());
    // A watch that stalls must not become a false timeout: a LIST reconciles when it was
    // quiet for a while (an event shows it alive).
    let resync = opts.node_check * 6;
    let mut last_list = start;
    let mut pdbs: Option<Vec<PdbInfo>> = None;
    let mut blocked_by: BTreeSet<String> = BTreeSet::new();
    let mut last_node_check = start;
    loop {
        let now = Instant::now();
        // Evict what is due.
        let others_left = pending.keys().any(|k| Some(k) != opts.own_pod.as_ref());
        for (key, p) in &mut pending {
            if p.evicted || p.next_try > now {
                continue;
            }
            if Some(key) == opts.own_pod.as_ref() {
                if others_left {
                    continue;
                }
                tracing::warn!(node, pod = %key, "evicting this run's own pod last: the run stops on SIGTERM and the Job's next pod resumes");
            }
            match cluster
                .evict(&p.namespace, &p.name, opts.grace_period_seconds)
                .await
                .map_err(err)?
            {
                Eviction::Evicted => {
                    p.evicted = true;
                    if let Some(since) = p.blocked_since.take() {
                        let waited = now.saturating_duration_since(since);
                        for pdb in matching_pdbs(pdbs.as_deref().unwrap_or_default(), p) {
                            *report
                                .pdb_waits
                                .entry(format!("{}/{}", pdb.namespace, pdb.name))
                                .or_default() += waited;
                        }
                    }
                    tracing::debug!(node, pod = %key, "evicted");
                }
                Eviction::Gone => p.evicted = true,
                Eviction::Blocked { message } => {
                    report.retries += 1;
                    if pdbs.is_none() {
                        pdbs = Some(cluster.pdbs().await.map_err(err)?);
                    }
                    for pdb in matching_pdbs(pdbs.as_deref().unwrap_or_default(), p) {
                        blocked_by.insert(format!("{}/{}", pdb.namespace, pdb.name));
                    }
                    p.blocked_since.get_or_insert(now);
                    p.next_try = now + opts.retry_delay;
                    tracing::info!(node, pod = %key, %message, "eviction refused by a disruption budget; will retry");
                }
                Eviction::Misconfigured { message } => {
                    return Err(DrainError::Misconfigured {
                        node: node.to_owned(),
                        pod: key.clone(),
                        message,
                    });
                }
            }
        }
        // Which evicted pods are gone: absent from the node, or back under a new UID.
        let current = match &latest {
            Some(snapshot) if Instant::now().saturating_duration_since(last_list) < resync => {
                snapshot.clone()
            }
            _ => {
                last_list = Instant::now();
                cluster.pods_on_node(node).await.map_err(err)?
            }
        };
        let still: BTreeMap<String, &str> =
            current.iter().map(|p| (p.key(), p.uid.as_str())).collect();
        pending.retain(|key, p| {
            let here = still.get(key).is_some_and(|uid| *uid == p.uid);
            if !here {
                report.evicted.push(key.clone());
            }
            here
        });
        if pending.is_empty() {
            report.evicted.sort();
            return Ok(report);
        }
        let now = Instant::now();
        if now >= deadline {
            let mut remaining: Vec<String> = pending.keys().cloned().collect();
            remaining.sort();
            let holding: BTreeSet<String> = pending
                .values()
                .filter(|p| p.blocked_since.is_some())
                .flat_map(|p| {
                    matching_pdbs(pdbs.as_deref().unwrap_or_default(), p)
                        .map(|pdb| format!("{}/{}", pdb.namespace, pdb.name))
                        .collect::<Vec<_>>()
                })
                .collect();
            let pdbs = if holding.is_empty() {
                blocked_by.into_iter().collect()
            } else {
                holding.into_iter().collect()
            };
            return Err(DrainError::Timeout {
                node: node.to_owned(),
                timeout: opts.timeout,
                remaining,
                pdbs,
                evicted: report.evicted.clone(),
            });
        }
        if now.saturating_duration_since(last_node_check) >= opts.node_check {
            last_node_check = now;
            match cluster.node(node).await.map_err(err)? {
                None => {
                    return Err(DrainError::NodeGone {
                        node: node.to_owned(),
                    });
                }
                Some(n) if !n.ready => {
                    return Err(DrainError::NodeNotReady {
                        node: node.to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        let next_eviction = pending
            .values()
            .filter(|p| !p.evicted)
            .map(|p| p.next_try)
            .min();
        let Some(w) = watch.as_mut() else {
            let wake = next_eviction
                .map_or(now + opts.poll, |t| t.min(now + opts.poll))
                .min(deadline);
            tokio::time::sleep_until(wake.max(now + Duration::from_millis(10))).await;
            continue;
        };
        // Watching: wake for a change, the next eviction, the node check or the deadline.
        let wake = next_eviction
            .unwrap_or(deadline)
            .min(last_node_check + opts.node_check)
            .min(deadline)
            .max(now + Duration::from_millis(10));
        let changed = tokio::select! {
            item = w.next() => Some(item),
            () = tokio::time::sleep_until(wake) => None,
        };
        match changed {
            None => {}
            Some(Some(Ok(snapshot))) => {
                latest = Some(snapshot);
                last_list = Instant::now();
            }
            Some(other) => {
                if let Some(Err(e)) = other {
                    tracing::info!(node, error = %e, "the watch of the node's pods failed; polling");
                }
                watch = None;
                latest = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use planner::snapshot::{OwnerRef, PodPhase};

    use super::*;

    fn opts() -> DrainOptions {
        DrainOptions::from_spec(&planner::spec::Drain::default())
    }

    fn pod(owner: Option<&str>) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: "p".into(),
            owner: owner.map(|k| OwnerRef {
                kind: k.into(),
                name: "o".into(),
                uid: "u".into(),
            }),
            phase: PodPhase::Running,
            ..PodInfo::default()
        }
    }

    #[test]
    fn kubectl_filters_in_order() {
        let o = opts();
        assert_eq!(
            classify(&pod(Some("DaemonSet")), &o),
            Ok(Some(Skip::DaemonSet))
        );
        assert_eq!(
            classify(
                &PodInfo {
                    mirror: true,
                    ..pod(Some("Node"))
                },
                &o
            ),
            Ok(Some(Skip::Mirror))
        );
        assert_eq!(classify(&pod(None), &o), Err(Refusal::Unreplicated));
        assert_eq!(
            classify(
                &PodInfo {
                    empty_dir: true,
                    ..pod(Some("ReplicaSet"))
                },
                &o
            ),
            Err(Refusal::LocalStorage)
        );
        assert_eq!(
            classify(
                &PodInfo {
                    phase: PodPhase::Succeeded,
                    ..pod(None)
                },
                &o
            ),
            Ok(None)
        );
        assert_eq!(classify(&pod(Some("ReplicaSet")), &o), Ok(None));
        let allow = DrainOptions {
            allow_unreplicated: true,
            delete_empty_dir_data: true,
            ..o
        };
        assert_eq!(
            classify(
                &PodInfo {
                    empty_dir: true,
                    ..pod(None)
                },
                &allow
            ),
            Ok(None)
        );
    }
}
