//! The Cilium agent on one node: restarting it so it picks up the CiliumNodeConfig, and the
//! cheap signals that say the node runs on Cilium.
//!
//! "Restarted after the label" is decided by UID, not by clock: the label step records the UIDs
//! of the node's agent pods as they were when the label went on, and any Ready agent pod with
//! another UID was created after it. Comparing our clock with the API server's timestamps would
//! be wrong by any clock skew between the two.

use std::time::Duration;

use cluster::{Cluster, ClusterError};
use ipnet::IpNet;
use planner::snapshot::PodInfo;
use tokio::time::Instant;

use crate::{
    ranges::Ranges,
    wait::{self, Check},
};

/// Namespace of the Cilium agent.
pub const AGENT_NAMESPACE: &str = "kube-system";
/// Label selector of the agent pods.
pub const AGENT_SELECTOR: &str = "k8s-app=cilium";

/// Why an agent step failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No agent pod is scheduled on the node at all.
    #[error(
        "no Cilium agent pod (label {AGENT_SELECTOR}) runs on node {node}: is the cilium DaemonSet installed and tolerating the node?"
    )]
    Missing {
        /// Node.
        node: String,
    },
    /// The new agent did not become Ready in time.
    #[error("the Cilium agent on node {node} is not Ready {}s after its restart: {observed}", .waited.as_secs())]
    NotReady {
        /// Node.
        node: String,
        /// How long we waited.
        waited: Duration,
        /// What was seen last (pod, phase, readiness, waiting reason).
        observed: String,
    },
    /// The API failed.
    #[error("cannot restart the Cilium agent on node {node}")]
    Cluster {
        /// Node.
        node: String,
        /// The error.
        #[source]
        source: ClusterError,
    },
}

impl AgentError {
    /// Whether trying again later may succeed without anyone changing anything (the API
    /// failed for a passing reason: 5xx, 429, a conflict, a dropped connection).
    pub fn is_retriable(&self) -> bool {
        matches!(self, AgentError::Cluster { source, .. } if source.is_retriable())
    }
}

/// The agent pods bound to a node.
///
/// # Errors
/// When the API fails.
pub async fn agent_pods<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
) -> Result<Vec<PodInfo>, ClusterError> {
    // The node's pods (a field-selected LIST, served from the API server's node index), not
    // every agent in the cluster filtered here: 30 objects rather than 5,000 at scale.
    Ok(only_agents(cluster.pods_on_node(node).await?))
}

/// The Cilium agent pods among a node's pods.
pub fn only_agents(pods: Vec<PodInfo>) -> Vec<PodInfo> {
    let (key, value) = AGENT_SELECTOR
        .split_once('=')
        .unwrap_or((AGENT_SELECTOR, ""));
    pods.into_iter()
        .filter(|p| p.namespace == AGENT_NAMESPACE && p.labels.get(key).is_some_and(|v| v == value))
        .collect()
}

fn describe(pods: &[PodInfo]) -> String {
    if pods.is_empty() {
        return "no agent pod on the node".to_owned();
    }
    pods.iter()
        .map(|p| {
            format!(
                "pod {} {:?}{}{}{}{}",
                p.key(),
                p.phase,
                if p.ready { " Ready" } else { " not Ready" },
                if p.terminating { " terminating" } else { "" },
                p.waiting_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                if p.restarts > 0 {
                    format!(", {} restart(s)", p.restarts)
                } else {
                    String::new()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Ready agent pod on the node whose UID is not one of `old_uids`, if any.
pub fn fresh_ready_agent<'a>(pods: &'a [PodInfo], old_uids: &[String]) -> Option<&'a PodInfo> {
    pods.iter()
        .find(|p| p.ready && !p.terminating && !old_uids.contains(&p.uid))
}

/// Restarts the agent on a node: observe (a fresh Ready agent already?), act (delete the agent
/// pods that predate the label), wait (a fresh one Ready). Safe to run again at any point.
///
/// # Errors
/// [`AgentError`] naming the node and what was seen.
pub async fn restart_agent<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    old_uids: &[String],
    timeout: Duration,
    poll: Duration,
) -> Result<String, AgentError> {
    let err = |source| AgentError::Cluster {
        node: node.to_owned(),
        source,
    };
    let start = Instant::now();
    // One watch of the node's pods, opened first: its first snapshot is what to act on, the
    // rest is the wait. A LIST where the cluster cannot watch.
    let listed = crate::drain::Listed::now(cluster, node)
        .await
        .map_err(err)?;
    let (pods, stream) = (only_agents(listed.pods), listed.watch);
    if let Some(p) = fresh_ready_agent(&pods, old_uids) {
        return Ok(format!(
            "agent pod {} already restarted after the label and Ready",
            p.key()
        ));
    }
    if pods.is_empty() && old_uids.is_empty() {
        return Err(AgentError::Missing {
            node: node.to_owned(),
        });
    }
    for p in pods
        .iter()
        .filter(|p| old_uids.contains(&p.uid) && !p.terminating)
    {
        cluster
            .delete_pod(&p.namespace, &p.name, Some(&p.uid))
            .await
            .map_err(err)?;
    }
    let judge = |pods: Vec<PodInfo>| match fresh_ready_agent(&pods, old_uids) {
        Some(p) => Check::Done(p.key()),
        None => Check::Pending(pods),
    };
    // One watch of the node's pods; a LIST every poll where the cluster cannot watch, or
    // after the watch failed, for the time left.
    let deadline = start + timeout;
    let watched = match stream {
        Some(stream) => {
            wait::watched(
                stream,
                deadline,
                poll * 15,
                pods.clone(),
                |all: Vec<PodInfo>| judge(only_agents(all)),
                || async { cluster.pods_on_node(node).await.ok() },
            )
            .await
        }
        None => None,
    };
    let waited = match watched {
        Some(w) => w,
        None => {
            let left = deadline.saturating_duration_since(Instant::now());
            wait::looked(left, poll, || async {
                let pods = agent_pods(cluster, node).await.map_err(err)?;
                Ok(judge(pods))
            })
            .await?
        }
    };
    match waited {
        Ok(pod) => Ok(format!(
            "agent pod {pod} Ready after {}s",
            start.elapsed().as_secs()
        )),
        Err(pods) => {
            // As `cilium status` does for a crash-looping agent: its last log line.
            let mut observed = describe(&pods);
            if let Some(p) = pods.iter().find(|p| !p.ready && !old_uids.contains(&p.uid))
                && let Ok(log) = cluster.pod_log(&p.namespace, &p.name).await
                && let Some(last) = log.lines().rev().find(|l| !l.trim().is_empty())
            {
                observed.push_str(&format!("; its last log line: {}", last.trim()));
            }
            Err(AgentError::NotReady {
                node: node.to_owned(),
                waited: timeout,
                observed,
            })
        }
    }
}

/// The pod CIDRs Cilium's operator gave the node (`CiliumNode.spec.ipam.podCIDRs`; in ENI
/// mode its pool's addresses as host routes).
///
/// # Errors
/// When the API fails.
pub async fn cilium_node_cidrs<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
) -> Result<Option<Vec<String>>, ClusterError> {
    let cn = cluster
        .custom("cilium.io/v2", "ciliumnodes", None, node)
        .await?;
    Ok(cn.map(|cn| cluster::cilium_node_ranges(&cn.object["spec"]["ipam"])))
}

/// Whether every CIDR is inside one of the pool's CIDRs; returns the ones that are not (or do
/// not parse).
pub fn outside_pool(cidrs: &[String], pool: &Ranges) -> Vec<String> {
    cidrs
        .iter()
        .filter(|c| match c.parse::<IpNet>() {
            Ok(net) => !pool.contains_net(&net),
            Err(_) => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_containment() {
        let pool = Ranges::new(["10.245.0.0/16".parse::<IpNet>().unwrap()]);
        assert!(outside_pool(&["10.245.3.0/24".into()], &pool).is_empty());
        assert_eq!(
            outside_pool(&["10.244.3.0/24".into(), "x".into()], &pool),
            ["10.244.3.0/24", "x"]
        );
    }

    #[test]
    fn fresh_agent_is_decided_by_uid() {
        let old = PodInfo {
            uid: "a".into(),
            ready: true,
            ..PodInfo::default()
        };
        let new = PodInfo {
            uid: "b".into(),
            ready: true,
            ..PodInfo::default()
        };
        let pods = [old.clone()];
        assert!(fresh_ready_agent(&pods, &["a".into()]).is_none());
        let pods = [old, new];
        assert_eq!(
            fresh_ready_agent(&pods, &["a".into()]).map(|p| p.uid.as_str()),
            Some("b")
        );
    }
}
