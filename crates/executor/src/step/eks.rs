//! The EKS profiles' own steps: confining aws-node, moving a node off it (and back, rolling
//! back), and restarting the pods Cilium does not manage.
//!
//! ```text
//! patch-aws-node          eks-overlay: label every node io.cilium/aws-node-enabled=true first
//!                         (aws-node stays everywhere); both: node selector on aws-node, then
//!                         wait (eks-eni: every aws-node pod gone; eks-overlay: one per node)
//! stop-aws-node NODE      remove the label, wait for the node's aws-node pod to be gone, flush
//!                         the VPC CNI's nat chains from a privileged host-network pod
//! restart-unmanaged-pods  evict (drain's rules: PDBs, refusals, deadline) the node's pods off
//!                         the host network with no CiliumEndpoint or an IP outside Cilium's
//!                         ranges, DaemonSet pods included
//! start-aws-node NODE     (rollback) the label again, then a Ready aws-node pod on the node
//! ```

use std::time::Duration;

use cluster::Cluster;
use planner::{
    plan::{AWS_NODE_LABEL, aws_node_patch},
    snapshot::PodInfo,
    spec::TargetMode,
};
use serde_json::json;

use super::{
    ctx::{Done, StepCtx},
    node::drain_options,
    verify::wait_verified,
};
use crate::{
    drain::{self, DrainOptions, DrainReport},
    endpoints::{Endpoints, on_pod_network},
    error::{StepError, cl},
    probe,
    ranges::Ranges,
    wait::{self, Check},
};

/// aws-node's pod label.
pub const AWS_NODE_SELECTOR: &str = "k8s-app=aws-node";

fn is_aws_node(p: &PodInfo) -> bool {
    p.namespace == "kube-system" && p.labels.get("k8s-app").map(String::as_str) == Some("aws-node")
}

/// Confines aws-node to labelled nodes (see the module's table). Re-running it is safe.
///
/// # Errors
/// An API failure, or aws-node not settling within `timeout`.
pub async fn patch_aws_node(
    c: &dyn Cluster,
    mode: TargetMode,
    timeout: Duration,
    poll: Duration,
) -> Result<String, StepError> {
    let Some(ds) = c
        .custom("apps/v1", "daemonsets", Some("kube-system"), "aws-node")
        .await
        .map_err(cl("reading DaemonSet kube-system/aws-node"))?
    else {
        return Ok("no DaemonSet kube-system/aws-node: nothing to confine".to_owned());
    };
    let mut did = Vec::new();
    if mode == TargetMode::EksOverlay {
        let nodes = c.nodes().await.map_err(cl("listing nodes"))?;
        let mut labelled = 0;
        for n in nodes
            .iter()
            .filter(|n| n.labels.get(AWS_NODE_LABEL).is_none_or(|v| v != "true"))
        {
            c.set_node_label(&n.name, AWS_NODE_LABEL, Some("true"))
                .await
                .map_err(cl(format!("labelling node {}", n.name)))?;
            labelled += 1;
        }
        did.push(format!(
            "labelled {labelled} node(s) {AWS_NODE_LABEL}=true ({} already were)",
            nodes.len() - labelled
        ));
    }
    let selected = ds.object["spec"]["template"]["spec"]["nodeSelector"][AWS_NODE_LABEL] == "true";
    if selected {
        did.push(format!("aws-node already selects {AWS_NODE_LABEL}=true"));
    } else {
        let mut object = aws_node_patch();
        object["apiVersion"] = json!("apps/v1");
        object["kind"] = json!("DaemonSet");
        object["metadata"] = json!({"namespace": "kube-system", "name": "aws-node"});
        c.apply("daemonsets", &object)
            .await
            .map_err(cl("patching DaemonSet kube-system/aws-node"))?;
        did.push(format!("aws-node now selects {AWS_NODE_LABEL}=true"));
    }
    // Settle: eks-eni, no aws-node pod left anywhere; eks-overlay, none on a node without the
    // label (every node has it).
    let running = wait::until(
        timeout,
        poll,
        || async {
            let nodes = c.nodes().await.map_err(cl("listing nodes"))?;
            let labelled: Vec<&str> = nodes
                .iter()
                .filter(|n| n.labels.get(AWS_NODE_LABEL).is_some_and(|v| v == "true"))
                .map(|n| n.name.as_str())
                .collect();
            let pods = c
                .pods(Some("kube-system"), AWS_NODE_SELECTOR)
                .await
                .map_err(cl("listing aws-node pods"))?;
            let stray: Vec<String> = pods
                .iter()
                .filter(|p| {
                    is_aws_node(p)
                        && p.node_name
                            .as_deref()
                            .is_none_or(|n| !labelled.contains(&n))
                })
                .map(PodInfo::key)
                .collect();
            Ok(if stray.is_empty() {
                Check::Done(pods.len())
            } else {
                Check::Pending(stray)
            })
        },
        |stray| StepError::AwsNodeNotConfined {
            label: AWS_NODE_LABEL.to_owned(),
            waited: timeout,
            stray,
        },
    )
    .await?;
    did.push(if mode == TargetMode::EksOverlay {
        format!("{running} aws-node pod(s) keep running")
    } else {
        "no aws-node pod runs any more: Cilium manages ENIs from here".to_owned()
    });
    Ok(did.join("; "))
}

/// Moves a node off aws-node: label removed, its aws-node pod gone, the VPC CNI's nat chains
/// flushed. Re-running it is safe (the flush finds nothing to do).
///
/// # Errors
/// An API failure, aws-node staying, or the flush pod failing.
pub async fn stop_aws_node(
    c: &dyn Cluster,
    node: &str,
    image: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<String, StepError> {
    c.set_node_label(node, AWS_NODE_LABEL, None)
        .await
        .map_err(cl(format!("removing {AWS_NODE_LABEL} from {node}")))?;
    if let Err(left) = await_aws_node(c, node, false, timeout, poll).await? {
        return Err(StepError::AwsNodeStayed {
            node: node.to_owned(),
            label: AWS_NODE_LABEL.to_owned(),
            pods: left,
            waited: timeout,
        });
    }
    probe::remove_on_node(c, node, Some(probe::FLUSH_LABEL)).await?;
    let pod = probe::flush_pod(node, image);
    let (_, log) =
        probe::run_to_completion(c, &pod, "VPC CNI nat flush", node, timeout, poll).await?;
    let flushed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("flushed "))
        .collect();
    let failed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("failed "))
        .collect();
    if !failed.is_empty() || !log.lines().any(|l| l.trim() == "done") {
        return Err(StepError::NatFlush {
            node: node.to_owned(),
            seen: if failed.is_empty() {
                format!("the flush pod end without finishing: {:?}", log.trim())
            } else {
                format!("failures: {}", failed.join(", "))
            },
        });
    }
    Ok(format!(
        "aws-node left {node}; {}",
        if flushed.is_empty() {
            "no VPC CNI nat chain was left to flush".to_owned()
        } else {
            format!("flushed {}", flushed.join(", "))
        }
    ))
}

/// Brings aws-node back to a node being rolled back (EKS overlay): the label again, then a
/// Ready aws-node pod on the node (it rewrites its CNI configuration and nat chains).
///
/// # Errors
/// An API failure, or no Ready aws-node pod within `timeout`.
pub async fn start_aws_node(
    c: &dyn Cluster,
    node: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<String, StepError> {
    c.set_node_label(node, AWS_NODE_LABEL, Some("true"))
        .await
        .map_err(cl(format!("labelling {node} {AWS_NODE_LABEL}=true")))?;
    match await_aws_node(c, node, true, timeout, poll).await? {
        Ok(pod) => Ok(format!("aws-node {pod} is Ready on {node} again")),
        Err(seen) => Err(StepError::AwsNodeNotBack {
            node: node.to_owned(),
            label: AWS_NODE_LABEL.to_owned(),
            waited: timeout,
            seen,
        }),
    }
}

/// Waits for the node's aws-node pod to be Ready (`ready`) or gone. `Ok(Ok(pod))` when it is
/// (the Ready pod's name, or empty), `Ok(Err(seen))` at the deadline with the aws-node pods
/// still seen there.
async fn await_aws_node(
    c: &dyn Cluster,
    node: &str,
    ready: bool,
    timeout: Duration,
    poll: Duration,
) -> Result<Result<String, Vec<String>>, StepError> {
    wait::looked(timeout, poll, || async {
        let pods = c
            .pods_on_node(node)
            .await
            .map_err(cl(format!("listing pods on {node}")))?;
        let mine: Vec<&PodInfo> = pods.iter().filter(|p| is_aws_node(p)).collect();
        if ready {
            if let Some(p) = mine.iter().find(|p| p.ready && !p.terminating) {
                return Ok(Check::Done(p.key()));
            }
        } else if mine.is_empty() {
            return Ok(Check::Done(String::new()));
        }
        Ok(Check::Pending(
            mine.iter()
                .map(|p| format!("{} ready={}", p.key(), p.ready))
                .collect(),
        ))
    })
    .await
}

/// Whether Cilium does not manage a pod: off the host network, it has no CiliumEndpoint with
/// its IP, or no IP inside Cilium's ranges.
pub fn unmanaged(p: &PodInfo, endpoints: &Endpoints, ranges: &Ranges) -> bool {
    on_pod_network(p)
        && !p.is_cni_migrate_pod()
        && (!endpoints.covers(p) || !p.pod_ips.iter().any(|ip| ranges.contains(ip)))
}

/// Evicts the node's pods Cilium does not manage, as a drain evicts (PDBs, refusals of
/// unreplicated and emptyDir pods unless the spec allows them, the deadline), DaemonSet pods
/// included.
///
/// # Errors
/// As a drain.
pub async fn restart_unmanaged(
    c: &dyn Cluster,
    node: &str,
    opts: &DrainOptions,
    ranges: &Ranges,
) -> Result<DrainReport, StepError> {
    let endpoints = Endpoints::list(c)
        .await
        .map_err(cl("listing CiliumEndpoints"))?;
    let mut opts = opts.clone();
    opts.include_daemonset_pods = true;
    let select = move |p: &PodInfo| unmanaged(p, &endpoints, ranges);
    drain::evict_where(c, node, &opts, &select)
        .await
        .map_err(StepError::from)
}

/// `patch-aws-node`.
pub(super) async fn patch_aws_node_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let t = ctx.timing();
    patch_aws_node(ctx.cluster, ctx.spec().target.mode, t.agent_timeout, t.poll)
        .await
        .map(Done::Done)
}

/// `stop-aws-node`.
pub(super) async fn stop_aws_node_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let t = ctx.timing();
    stop_aws_node(
        ctx.cluster,
        ctx.node,
        &ctx.spec().rollout.verify.image,
        t.agent_timeout,
        t.poll,
    )
    .await
    .map(Done::Done)
}

/// `start-aws-node` (rollback): only in an EKS overlay migration.
pub(super) async fn start_aws_node_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    if ctx.spec().target.mode != TargetMode::EksOverlay {
        return Ok(Done::Done(
            "not an EKS overlay migration: no aws-node to bring back".into(),
        ));
    }
    let t = ctx.timing();
    start_aws_node(ctx.cluster, ctx.node, t.agent_timeout, t.poll)
        .await
        .map(Done::Done)
}

/// `restart-unmanaged-pods`: once the node's agent is Ready (or the replacements would start
/// unmanaged again), the pods Cilium does not manage are evicted.
pub(super) async fn restart_unmanaged_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let node = ctx.node;
    wait_verified(ctx, node).await?;
    let ranges = ctx.ranges().await?;
    let report = restart_unmanaged(ctx.cluster, node, &drain_options(ctx), &ranges).await?;
    ctx.ledger
        .count_evictions(node, &report.evicted, &report.pdb_waits);
    Ok(Done::Done(if report.evicted.is_empty() {
        format!("every pod on {node} off the host network is managed by Cilium")
    } else {
        format!(
            "restarted {} pod(s) Cilium did not manage: {}",
            report.evicted.len(),
            report.evicted.join(", ")
        )
    }))
}
