//! What may start now: the scheduler's pure decision, after the re-check of the migrated nodes
//! and a look at the next candidates only.
//!
//! ```text
//! scheduler::decide(plan, checkpoint, no observations) admits nothing ─► done (no API reads)
//! controls (windows, health budget, Prometheus) ─┬─ hold ─► Held (nothing admitted)
//!                                                └─ halt ─► Halt: the run stops at a gate
//! recheck of the migrated nodes ─┬─ a regression, not lasting ─► hold (nothing admitted)
//!                                └─ lasting ─► Regressed: the run records the failure, stops
//! observe: PDB budgets (one LIST), readiness of the next free+1 candidates (one GET each)
//!   ─► scheduler::decide(plan, checkpoint, observations)
//! ```

use std::collections::BTreeSet;

use planner::Plan;

use crate::{
    checkpoint::Checkpoint,
    controls::{Controls, HoldReason, Verdict as Control},
    recheck::{Recheck, Verdict},
    scheduler::{self, Admission, Observations},
    step::StepCtx,
};

/// What the run knows when it decides.
pub struct View<'v> {
    /// The plan.
    pub plan: &'v Plan,
    /// The checkpoint now.
    pub ck: &'v Checkpoint,
    /// Nodes in flight.
    pub running: &'v BTreeSet<String>,
    /// Free slots.
    pub free: usize,
    /// Unix seconds.
    pub now: u64,
}

/// What was decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Admit these (or none, and why).
    Decided(Admission),
    /// Nothing could start anyway (soaking, a canary in flight): the controls were not asked.
    Idle(Admission),
    /// A control holds admissions (nodes in flight go on).
    Held(HoldReason, String),
    /// A control stops the run at a gate once the nodes in flight finish.
    Halt(HoldReason, String),
    /// A migrated node regressed past the grace period: the run must stop.
    Regressed {
        /// The node.
        node: String,
        /// What no longer holds.
        reason: String,
    },
}

/// Which nodes may start now.
pub async fn next(
    view: &View<'_>,
    ctx: &StepCtx<'_>,
    controls: &Controls,
    recheck: &Recheck,
) -> Next {
    // Observations only ever remove candidates: when the plan and checkpoint alone admit
    // nothing (soaking, a canary in flight), spare the API the reads.
    let unobserved = scheduler::decide(view.plan, view.ck, &Observations::default(), view.now);
    if unobserved.admit.is_empty() {
        return Next::Idle(unobserved);
    }
    match controls.check(view.now, ctx.cluster).await {
        Control::Open => {}
        Control::Hold(reason, why) => return Next::Held(reason, why),
        Control::Halt(reason, why) => return Next::Halt(reason, why),
    }
    // Before a new node starts, the migrated ones must still hold up.
    let migrated: Vec<&str> = view
        .plan
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| view.ck.node_migrated(n))
        .collect();
    match recheck.check(ctx, &migrated).await {
        Verdict::Clear => {}
        Verdict::Hold(why) => {
            return Next::Decided(Admission {
                stopped: Some(why),
                ..Admission::default()
            });
        }
        Verdict::Regressed { node, reason } => return Next::Regressed { node, reason },
    }
    let obs = observe(view, ctx).await;
    Next::Decided(scheduler::decide(view.plan, view.ck, &obs, view.now))
}

/// What the scheduler needs: budgets and node readiness for the next candidates only (one GET
/// per candidate, not a LIST of every node per tick).
async fn observe(view: &View<'_>, ctx: &StepCtx<'_>) -> Observations {
    let (plan, ck, cluster) = (view.plan, view.ck, ctx.cluster);
    let mut obs = Observations {
        last: ctx
            .shared
            .old_beacon
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        ..Observations::default()
    };
    for n in &plan.nodes {
        obs.node_pdbs.insert(n.name.clone(), n.pdbs.clone());
    }
    if plan.nodes.iter().any(|n| !n.pdbs.is_empty()) {
        match cluster.pdbs().await {
            Ok(pdbs) => {
                for p in pdbs {
                    obs.pdb_allowed.insert(
                        format!("{}/{}", p.namespace, p.name),
                        p.disruptions_allowed.unwrap_or(0),
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list PDBs; admitting without budgets"),
        }
    }
    let mut ready_found = 0;
    let candidates = plan.nodes.iter().filter(|n| {
        !view.running.contains(&n.name) && !ck.node_settled(&n.name) && !ck.node_in_flight(&n.name)
    });
    for n in candidates {
        if ready_found > view.free {
            break;
        }
        match cluster.node(&n.name).await {
            Ok(Some(info)) if info.ready => ready_found += 1,
            Ok(_) => {
                obs.not_ready.insert(n.name.clone());
            }
            Err(e) => {
                tracing::debug!(node = %n.name, error = %e, "cannot read node; not admitting it now");
                obs.not_ready.insert(n.name.clone());
            }
        }
    }
    obs
}
