//! The steps of a node's chain and of the prelude and finale, each *observe, then act, then
//! wait*: a step first checks whether its effect already holds, so running it again (after a
//! crash, on `resume`) is always safe.
//!
//! Prior state is observed by separate functions ([`observe_prior`], [`agent_uids`]) so that
//! the runtime can record it in the checkpoint *before* the first change to the node, and never
//! overwrite it on a re-run (a node we cordoned must not look "already cordoned" on resume).

use std::{collections::BTreeMap, time::Duration};

use cluster::{Cluster, ClusterError};
use planner::plan::{MIGRATION_LABEL, NODE_CONFIG_NAME};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::agent::{self, AgentError};

/// A node as it was before the tool changed anything on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePrior {
    /// It was cordoned already: leave it cordoned at the end.
    pub cordoned: bool,
    /// It carried the migration label already.
    pub labelled: bool,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The node does not exist (any more).
    #[error("node {node} does not exist")]
    NodeGone {
        /// Node.
        node: String,
    },
    /// The node did not come back Ready.
    #[error("node {node} is not Ready {}s after the reboot hook", .waited.as_secs())]
    NodeNotReady {
        /// Node.
        node: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The reboot hook failed.
    #[error("reboot hook `{command}` for node {node} failed: {reason}")]
    RebootHook {
        /// Node.
        node: String,
        /// The command as run.
        command: String,
        /// Exit status or spawn error.
        reason: String,
    },
    /// The Helm command failed (retried: `helm upgrade --install` with the same values is
    /// idempotent).
    #[error("`{command}` failed: {reason}")]
    Helm {
        /// The command as run.
        command: String,
        /// Exit status and stderr, or why it could not start.
        reason: String,
    },
    /// An agent step failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A drain failed.
    #[error(transparent)]
    Drain(#[from] crate::drain::DrainError),
    /// A verification failed: what was expected and what was seen.
    #[error("verification of node {node} failed: {reason}")]
    Verify {
        /// Node (or `cluster` for final checks).
        node: String,
        /// Expected vs seen.
        reason: String,
    },
    /// The API failed.
    #[error("{what} failed talking to the API server")]
    Cluster {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: ClusterError,
    },
}

impl StepError {
    /// Whether running the step again later may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        match self {
            StepError::Cluster { source, .. } => source.is_retriable(),
            StepError::Drain(d) => d.is_retriable(),
            StepError::Helm { .. } => true,
            StepError::Agent(a) => a.is_retriable(),
            _ => false,
        }
    }
}

/// Wraps a cluster error with what was being done.
pub(crate) fn cl(what: impl Into<String>) -> impl FnOnce(ClusterError) -> StepError {
    let what = what.into();
    move |source| StepError::Cluster { what, source }
}

/// The node, or [`StepError::NodeGone`].
async fn existing_node<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
) -> Result<planner::snapshot::NodeInfo, StepError> {
    cluster
        .node(node)
        .await
        .map_err(cl(format!("reading node {node}")))?
        .ok_or_else(|| StepError::NodeGone {
            node: node.to_owned(),
        })
}

/// Observes the node's prior state (to be recorded before anything changes).
///
/// # Errors
/// [`StepError::NodeGone`] or an API failure.
pub async fn observe_prior<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
) -> Result<NodePrior, StepError> {
    let n = existing_node(cluster, node).await?;
    Ok(NodePrior {
        cordoned: n.unschedulable,
        labelled: n.labels.get(MIGRATION_LABEL).is_some_and(|v| v == "true"),
    })
}

/// Cordons the node (a no-op when it is cordoned already).
///
/// # Errors
/// [`StepError::NodeGone`] or an API failure.
pub async fn cordon<C: Cluster + ?Sized>(cluster: &C, node: &str) -> Result<String, StepError> {
    let n = existing_node(cluster, node).await?;
    if n.unschedulable {
        return Ok(format!("{node} is cordoned"));
    }
    cluster
        .set_unschedulable(node, true)
        .await
        .map_err(cl(format!("cordoning node {node}")))?;
    Ok(format!("cordoned {node}"))
}

/// Uncordons the node, unless it was cordoned before the migration.
///
/// # Errors
/// [`StepError::NodeGone`] or an API failure.
pub async fn uncordon<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    prior: &NodePrior,
) -> Result<String, StepError> {
    if prior.cordoned {
        return Ok(format!(
            "{node} was cordoned before the migration: left cordoned"
        ));
    }
    let n = existing_node(cluster, node).await?;
    if !n.unschedulable {
        return Ok(format!("{node} is schedulable"));
    }
    cluster
        .set_unschedulable(node, false)
        .await
        .map_err(cl(format!("uncordoning node {node}")))?;
    Ok(format!("uncordoned {node}"))
}

/// The UIDs of the node's agent pods now (recorded before the label goes on).
///
/// # Errors
/// An API failure.
pub async fn agent_uids<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
) -> Result<Vec<String>, StepError> {
    let pods = agent::agent_pods(cluster, node)
        .await
        .map_err(cl(format!("listing agent pods on {node}")))?;
    let mut uids: Vec<String> = pods.into_iter().map(|p| p.uid).collect();
    uids.sort();
    Ok(uids)
}

/// Sets (or removes) the migration label.
///
/// # Errors
/// [`StepError::NodeGone`] or an API failure.
pub async fn label<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    on: bool,
) -> Result<String, StepError> {
    let n = existing_node(cluster, node).await?;
    let has = n.labels.get(MIGRATION_LABEL).is_some_and(|v| v == "true");
    if has == on {
        return Ok(format!(
            "{node} {} the label",
            if on { "has" } else { "does not have" }
        ));
    }
    cluster
        .set_node_label(node, MIGRATION_LABEL, on.then_some("true"))
        .await
        .map_err(cl(format!("labelling node {node}")))?;
    Ok(format!(
        "{} {MIGRATION_LABEL} on {node}",
        if on { "set" } else { "removed" }
    ))
}

/// Runs the reboot hook with `{node}` substituted, then waits for the node to be Ready.
///
/// # Errors
/// [`StepError::RebootHook`] when the command fails; [`StepError::NodeNotReady`] on timeout.
pub async fn reboot<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    command: &[String],
    timeout: Duration,
    poll: Duration,
) -> Result<String, StepError> {
    let argv: Vec<String> = command.iter().map(|a| a.replace("{node}", node)).collect();
    let line = planner::plan::reboot_command_line(command, node);
    let Some((program, args)) = argv.split_first() else {
        return Err(StepError::RebootHook {
            node: node.to_owned(),
            command: line,
            reason: "empty command".into(),
        });
    };
    let start = Instant::now();
    let output = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| StepError::RebootHook {
            node: node.to_owned(),
            command: line.clone(),
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(StepError::RebootHook {
            node: node.to_owned(),
            command: line,
            reason: format!("{} {}", output.status, stderr.trim()),
        });
    }
    loop {
        let n = cluster
            .node(node)
            .await
            .map_err(cl(format!("reading node {node}")))?;
        match n {
            Some(n) if n.ready => {
                return Ok(format!(
                    "rebooted {node}; Ready after {}s",
                    start.elapsed().as_secs()
                ));
            }
            _ if start.elapsed() >= timeout => {
                return Err(StepError::NodeNotReady {
                    node: node.to_owned(),
                    waited: timeout,
                });
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}

/// The cheap per-node signals: a Ready agent restarted after the label, and the node's
/// CiliumNode pod CIDRs inside the new pool.
///
/// # Errors
/// [`StepError::Verify`] explaining what was expected and what was seen.
pub async fn verify_basic<C: Cluster + ?Sized>(
    cluster: &C,
    pool: &crate::probe::Ranges,
    node: &str,
    old_agent_uids: &[String],
) -> Result<String, StepError> {
    let pods = agent::agent_pods(cluster, node)
        .await
        .map_err(cl(format!("listing agent pods on {node}")))?;
    let Some(agent) = agent::fresh_ready_agent(&pods, old_agent_uids) else {
        return Err(StepError::Verify {
            node: node.to_owned(),
            reason: format!(
                "expected a Ready Cilium agent created after the label, saw: {}",
                if pods.is_empty() {
                    "no agent pod".to_owned()
                } else {
                    pods.iter()
                        .map(|p| {
                            format!(
                                "{} ready={} restarted={}",
                                p.key(),
                                p.ready,
                                !old_agent_uids.contains(&p.uid)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        });
    };
    let cidrs = agent::cilium_node_cidrs(cluster, node)
        .await
        .map_err(cl(format!("reading CiliumNode {node}")))?;
    let pool_s = pool.to_string();
    match cidrs {
        None => Err(StepError::Verify {
            node: node.to_owned(),
            reason: format!(
                "expected CiliumNode {node} with pod CIDRs in {pool_s}, saw no CiliumNode"
            ),
        }),
        Some(c) if c.is_empty() => Err(StepError::Verify {
            node: node.to_owned(),
            reason: format!("expected CiliumNode {node} pod CIDRs in {pool_s}, saw none allocated"),
        }),
        Some(c) => {
            let bad = agent::outside_pool(&c, pool);
            if bad.is_empty() {
                Ok(if c.len() > 4 {
                    // ENI mode: one host route per address.
                    format!(
                        "agent {} Ready; CiliumNode has {} addresses ({} .. {})",
                        agent.key(),
                        c.len(),
                        c[0],
                        c[c.len() - 1]
                    )
                } else {
                    format!(
                        "agent {} Ready; CiliumNode pod CIDRs {} inside {pool_s}",
                        agent.key(),
                        c.join(",")
                    )
                })
            } else {
                Err(StepError::Verify {
                    node: node.to_owned(),
                    reason: format!(
                        "expected CiliumNode {node} pod CIDRs inside {pool_s}, saw {}",
                        bad.join(",")
                    ),
                })
            }
        }
    }
}

/// Compares `cilium-config` with expectations; returns the differences as `key: expected X,
/// found Y` (empty when everything matches).
///
/// # Errors
/// An API failure.
pub async fn cilium_config_differences<C: Cluster + ?Sized>(
    cluster: &C,
    expected: &BTreeMap<&'static str, String>,
) -> Result<Vec<String>, StepError> {
    let cm = cluster
        .configmap("kube-system", "cilium-config")
        .await
        .map_err(cl("reading kube-system/cilium-config"))?;
    let Some(cm) = cm else {
        return Ok(vec![
            "kube-system/cilium-config does not exist: Cilium is not installed".to_owned(),
        ]);
    };
    let data = cm.data.unwrap_or_default();
    Ok(expected
        .iter()
        .filter_map(|(k, want)| {
            let got = data.get(*k).map(String::as_str).unwrap_or("<absent>");
            (got.trim() != want.as_str()).then(|| format!("{k}: expected {want}, found {got}"))
        })
        .collect())
}

/// Applies the migration CiliumNodeConfig (server-side apply is idempotent).
///
/// # Errors
/// An API failure (a missing CRD means Cilium is not installed).
pub async fn apply_node_config<C: Cluster + ?Sized>(
    cluster: &C,
    object: &serde_json::Value,
) -> Result<String, StepError> {
    cluster
        .apply("ciliumnodeconfigs", object)
        .await
        .map_err(cl(format!(
            "applying CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}"
        )))?;
    Ok(format!(
        "CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} applied"
    ))
}
