//! The steps that act on one node: cordon, drain, label (and unlabel), restart the agent,
//! reboot, restore the old CNI's files, uncordon. Each observes first, so running it again
//! (after a crash, on `resume`) is always safe.
//!
//! ```text
//! cordon          already unschedulable? ─► else set spec.unschedulable
//! drain           the tool's pods on the node removed, then kubectl drain's semantics (drain.rs)
//! label / unlabel record the agent pod UIDs first (intent before effect), then set / remove
//!                 io.cilium.migration/cilium-default
//! restart-agent   a Ready agent newer than the recorded UIDs? ─► else delete the old ones, wait
//! reboot          the spec's hook with {node}, then wait for the node to be Ready
//! restore-cni     (rollback) a privileged pod renames *.cilium_bak back, removes 05-cilium.conflist
//! uncordon        left cordoned when it was cordoned before the migration
//! ```
//!
//! Prior state is observed separately ([`observe_prior`]) so that the runtime records it in the
//! checkpoint *before* the first change to the node, and never overwrites it on a re-run (a
//! node we cordoned must not look "already cordoned" on resume).

use std::{collections::BTreeMap, time::Duration};

use cluster::Cluster;
use planner::{
    names::{DO_NOT_DISRUPT, SCALE_DOWN_DISABLED},
    plan::MIGRATION_LABEL,
    snapshot::NodeInfo,
};
use tokio::time::Instant;

use super::ctx::{Done, StepCtx};
use crate::{
    agent,
    checkpoint::NodePrior,
    drain::{self, DrainOptions},
    error::{StepError, cl},
    probe,
    wait::{self, Check},
};

/// The node, or [`StepError::NodeGone`].
async fn existing_node(cluster: &dyn Cluster, node: &str) -> Result<NodeInfo, StepError> {
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
pub async fn observe_prior(cluster: &dyn Cluster, node: &str) -> Result<NodePrior, StepError> {
    let n = existing_node(cluster, node).await?;
    Ok(NodePrior {
        cordoned: n.unschedulable,
        labelled: n.labels.get(MIGRATION_LABEL).is_some_and(|v| v == "true"),
        guarded: n.annotations.contains_key(SCALE_DOWN_DISABLED)
            || n.annotations.contains_key(DO_NOT_DISRUPT),
        light: false,
    })
}

/// The pod this process runs in, when it runs in one (`POD_NAMESPACE`/`POD_NAME` from the
/// downward API, as `cni-migrate job` sets them).
fn own_pod() -> Option<String> {
    let ns = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty())?;
    Some(format!("{ns}/{name}"))
}

/// The options of every drain and eviction the run makes: the spec's, paced by the run.
pub fn drain_options(ctx: &StepCtx<'_>) -> DrainOptions {
    let t = ctx.timing();
    let mut opts = DrainOptions::from_spec(&ctx.spec().rollout.drain);
    opts.retry_delay = t.drain_retry;
    opts.poll = t.drain_poll;
    opts.node_check = t.poll.max(t.drain_poll);
    opts.own_pod = own_pod();
    opts
}

/// Cordons the node (a no-op when it is cordoned already).
///
/// # Errors
/// [`StepError::NodeGone`] or an API failure.
pub async fn cordon(cluster: &dyn Cluster, node: &str) -> Result<String, StepError> {
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
pub async fn uncordon(
    cluster: &dyn Cluster,
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

/// The UIDs of the node's agent pods now (recorded before the label changes).
///
/// # Errors
/// An API failure.
pub async fn agent_uids(cluster: &dyn Cluster, node: &str) -> Result<Vec<String>, StepError> {
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
pub async fn label(cluster: &dyn Cluster, node: &str, on: bool) -> Result<String, StepError> {
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
pub async fn reboot(
    cluster: &dyn Cluster,
    node: &str,
    command: &[String],
    timeout: Duration,
    poll: Duration,
) -> Result<String, StepError> {
    let argv: Vec<String> = command.iter().map(|a| a.replace("{node}", node)).collect();
    let line = planner::plan::reboot_command_line(command, node);
    let hook = |reason: String| StepError::RebootHook {
        node: node.to_owned(),
        command: line.clone(),
        reason,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(hook("empty command".into()));
    };
    let start = Instant::now();
    let output = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| hook(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(hook(format!("{} {}", output.status, stderr.trim())));
    }
    wait::until(
        timeout,
        poll,
        || async {
            let n = cluster
                .node(node)
                .await
                .map_err(cl(format!("reading node {node}")))?;
            Ok(match n {
                Some(n) if n.ready => Check::Done(()),
                _ => Check::Pending(()),
            })
        },
        |()| StepError::NodeNotReady {
            node: node.to_owned(),
            waited: timeout,
        },
    )
    .await?;
    Ok(format!(
        "rebooted {node}; Ready after {}s",
        start.elapsed().as_secs()
    ))
}

/// `cordon`.
pub(super) async fn cordon_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let mut done = cordon(ctx.cluster, ctx.node).await?;
    if let Some(said) = guard_against_scale_down(ctx, true).await? {
        done.push_str(&said);
    }
    Ok(Done::Done(done))
}

/// While the tool holds a node (cordon to uncordon) in a cluster where something scales nodes
/// down by itself (the plan's `NODE_AUTOSCALING_ACTIVE`), the node carries the annotations
/// that keep cluster-autoscaler and Karpenter off it; the tool adds them at cordon and removes
/// them at uncordon, unless the node had them before (then it leaves them alone). `None` when
/// there is nothing to do.
async fn guard_against_scale_down(
    ctx: &StepCtx<'_>,
    hold: bool,
) -> Result<Option<String>, StepError> {
    let autoscaled = ctx
        .plan
        .findings
        .iter()
        .any(|f| f.code == planner::findings::FindingCode::NodeAutoscalingActive);
    if !autoscaled {
        return Ok(None);
    }
    let prior = ctx.ledger.prior(ctx.node).await.unwrap_or_default();
    if prior.guarded {
        return Ok(None);
    }
    let value = hold.then_some("true");
    ctx.cluster
        .set_node_annotations(
            ctx.node,
            &[(SCALE_DOWN_DISABLED, value), (DO_NOT_DISRUPT, value)],
        )
        .await
        .map_err(cl(format!(
            "annotating node {} against scale-down",
            ctx.node
        )))?;
    Ok(Some(if hold {
        format!(
            "; annotated {SCALE_DOWN_DISABLED}=true and {DO_NOT_DISRUPT}=true while the tool holds it"
        )
    } else {
        "; scale-down annotations removed".to_owned()
    }))
}

/// `drain`: the tool's own pods on the node go first (a beacon moves elsewhere when it is next
/// needed), then kubectl drain's semantics.
pub(super) async fn drain_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let (c, node) = (ctx.cluster, ctx.node);
    let listed = ctx
        .shared
        .listed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(node);
    // The tool's own pods first: among the pods the announcement listed, or listed now.
    let listed = match listed {
        Some(mut listed) => {
            probe::remove_listed(c, &listed.pods, None).await?;
            listed.pods.retain(|p| !probe::is_ours(p));
            Some(listed)
        }
        None => {
            probe::remove_on_node(c, node, None).await?;
            None
        }
    };
    let report = match drain::drain_listed(c, node, &drain_options(ctx), listed).await {
        Ok(r) => r,
        Err(e) => {
            // What a failed drain did evict still counts in the summary.
            if let drain::DrainError::Timeout { evicted, .. } = &e {
                ctx.ledger.count_evictions(node, evicted, &BTreeMap::new());
            }
            return Err(e.into());
        }
    };
    ctx.ledger
        .count_evictions(node, &report.evicted, &report.pdb_waits);
    let waits = if report.pdb_waits.is_empty() {
        String::new()
    } else {
        format!(
            "; waited on {}",
            report
                .pdb_waits
                .iter()
                .map(|(p, d)| format!("PDB {p} {}s", d.as_secs()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(Done::Done(format!(
        "evicted {} pod(s){waits}",
        report.evicted.len()
    )))
}

/// `label` (`on`) or `unlabel`: the node's agent pods are recorded first, so that the agent
/// restart that follows knows which pods predate the change, even after a crash.
pub(super) async fn label_step(ctx: &StepCtx<'_>, on: bool) -> Result<Done, StepError> {
    let (c, node) = (ctx.cluster, ctx.node);
    if ctx.ledger.agent_uids(node).await.is_none() {
        let uids = agent_uids(c, node).await?;
        ctx.ledger.record_agent_uids(node, uids).await?;
    }
    label(c, node, on).await.map(Done::Done)
}

/// `restart-agent`: replaces the agent pods recorded when the label changed.
pub(super) async fn restart_agent_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    // Recorded by the label step, which always precedes this one.
    let uids = ctx.ledger.agent_uids(ctx.node).await.unwrap_or_default();
    let t = ctx.timing();
    agent::restart_agent(ctx.cluster, ctx.node, &uids, t.agent_timeout, t.poll)
        .await
        .map(Done::Done)
        .map_err(StepError::from)
}

/// `reboot`, through the spec's hook.
pub(super) async fn reboot_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let Some(hook) = &ctx.spec().rollout.reboot else {
        return Ok(Done::Done("no reboot hook in the spec".into()));
    };
    reboot(
        ctx.cluster,
        ctx.node,
        &hook.command,
        hook.timeout.0,
        ctx.timing().poll,
    )
    .await
    .map(Done::Done)
}

/// What `uncordon` will do, from the prior state it acts on; `None` when none is recorded.
pub(super) async fn uncordon_description(ctx: &StepCtx<'_>) -> Option<String> {
    let prior = ctx.ledger.prior(ctx.node).await?;
    let node = ctx.node;
    Some(if prior.cordoned {
        format!("leave {node} cordoned: it was cordoned before the migration")
    } else {
        format!("uncordon {node}")
    })
}

/// What `drain` will do, counted from the pods on the node now (the plan's count is from when
/// it was built); `None` when the pods cannot be read (the step itself will say why).
pub(super) async fn drain_description(ctx: &StepCtx<'_>, planned: &str) -> Option<String> {
    let listed = drain::Listed::now(ctx.cluster, ctx.node).await.ok()?;
    let pods = &listed.pods;
    let opts = drain_options(ctx);
    let evict = pods
        .iter()
        .filter(|p| matches!(drain::classify(p, &opts), Ok(None)))
        .count();
    let (_, rest) = planned.split_once(" pod(s) from ")?;
    let last = opts
        .own_pod
        .as_ref()
        .filter(|own| pods.iter().any(|p| p.key() == **own))
        .map(|own| format!("; this run's own pod {own} goes last (the run then stops and the Job's next pod resumes)"))
        .unwrap_or_default();
    ctx.shared
        .listed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(ctx.node.to_owned(), listed);
    Some(format!("evict {evict} pod(s) from {rest}{last}"))
}

/// `uncordon`, as the node was before the migration.
pub(super) async fn uncordon_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let prior = ctx.ledger.prior(ctx.node).await.unwrap_or_default();
    let mut done = uncordon(ctx.cluster, ctx.node, &prior).await?;
    if let Some(said) = guard_against_scale_down(ctx, false).await? {
        done.push_str(&said);
    }
    Ok(Done::Done(done))
}

/// `restore-cni` (rollback): a privileged pod with the node's CNI directory mounted renames
/// `*.cilium_bak` back and removes `05-cilium.conflist`.
pub(super) async fn restore_cni_step(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let (c, node) = (ctx.cluster, ctx.node);
    probe::remove_on_node(c, node, Some(probe::RESTORE_LABEL)).await?;
    let pod = probe::restore_pod(
        node,
        &ctx.spec().rollout.verify.image,
        &ctx.spec().target.cni_conf_dir,
    );
    let (done, log) = probe::run_to_completion(
        c,
        &pod,
        "CNI restore",
        node,
        ctx.verify_timeout(),
        ctx.timing().poll,
    )
    .await?;
    let said: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if done.phase != planner::snapshot::PodPhase::Succeeded {
        return Err(StepError::RestoreFailed {
            node: node.to_owned(),
            pod: done.key(),
            phase: format!("{:?}", done.phase),
            log: said.join(" / "),
        });
    }
    Ok(Done::Done(if said.is_empty() {
        "the CNI directory needed nothing".to_owned()
    } else {
        said.join(", ")
    }))
}
