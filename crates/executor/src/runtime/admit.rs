//! Admitting a node: its prior state (cordoned? labelled? guarded against scale-down? joined
//! empty?) observed and recorded in the checkpoint before anything changes on it.
//!
//! A node that joined after Cilium was installed and runs no workload pods (only DaemonSet and
//! mirror pods) needs no cordon and no drain: nothing on it must move. That is decided once, at
//! admission, and recorded with the prior state (`light`), so a resumed run skips the same
//! steps; a node with workloads gets the full chain.

use std::collections::BTreeSet;

use planner::{Step, StepKind};

use super::Runner;
use crate::{
    admission::{self, Next},
    checkpoint::{Checkpoint, FailureRecord, NodePrior, StepState},
    controls::HoldReason,
    error::StepError,
    events::{Event, EventKind, chain},
    outcome::RunError,
    scheduler, step,
};

/// The steps a node admitted `light` does not need: nothing on it must move.
fn not_needed_when_light(kind: StepKind) -> bool {
    matches!(
        kind,
        StepKind::Cordon | StepKind::Drain | StepKind::Reboot | StepKind::Uncordon
    )
}

impl Runner<'_> {
    /// Records the node's prior state before anything changes on it (only the first time).
    /// `Ok(Err(why))` when it cannot be observed now: the node must not be touched (a guess
    /// could make the tool uncordon a node someone else cordoned).
    ///
    /// `written_by_next`: the caller's next step writes the checkpoint before it acts (a
    /// chain's first transition), so the prior state goes in that write rather than one of
    /// its own; a crash before it leaves the node unadmitted, as nothing was done to it.
    pub(crate) async fn record_prior(
        &self,
        node: &str,
        written_by_next: bool,
    ) -> Result<Result<NodePrior, String>, RunError> {
        if let Some(prior) = self.journal.ck.lock().await.prior(node) {
            return Ok(Ok(prior));
        }
        let observed = self
            .cfg
            .timing
            .backoff()
            .retry(
                || step::node::observe_prior(&*self.cluster, node),
                StepError::is_retriable,
            )
            .await;
        let mut prior = match observed {
            Ok(p) => p,
            Err(e) => return Ok(Err(chain(&e))),
        };
        prior.light = self.joined_empty(node).await;
        let mut ck = self.journal.ck.lock().await;
        ck.record_prior(node, &prior);
        if written_by_next {
            self.journal.unsaved();
        } else {
            self.journal.save(&mut ck).await?;
        }
        Ok(Ok(prior))
    }

    /// Whether the node joined after Cilium was installed and runs no workload pod now (a
    /// pod a drain would evict). A failed read answers `false`: the full chain is always safe.
    async fn joined_empty(&self, node: &str) -> bool {
        let joined_after_install = {
            let ck = self.journal.ck.lock().await;
            let joined = ck.node(node).and_then(|r| r.joined);
            let installed = self
                .plan
                .steps
                .iter()
                .find(|s| s.kind == StepKind::CiliumInstalled)
                .and_then(|s| ck.global.get(&s.id))
                .filter(|g| g.state.is_complete())
                .and_then(|g| g.finished);
            matches!((joined, installed), (Some(j), Some(i)) if i <= j)
        };
        if !joined_after_install {
            return false;
        }
        match self.cluster.pods_on_node(node).await {
            Ok(pods) => !pods.iter().any(planner::plan::evictable),
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot list the pods of a joined node");
                false
            }
        }
    }

    /// Admits a node: its prior state recorded first. `false` when it cannot be observed now.
    pub(super) async fn admit(&self, node: &str) -> Result<bool, RunError> {
        let fresh = self.journal.ck.lock().await.prior(node).is_none();
        let prior = match self.record_prior(node, true).await? {
            Ok(p) => p,
            Err(why) => {
                let message = format!("not admitting {node}: cannot observe its state ({why})");
                self.emit(EventKind::Waiting, None, Some(node), message);
                return Ok(false);
            }
        };
        let mut message = format!("admitted {node}");
        if fresh && prior.cordoned {
            message.push_str(" (cordoned before the migration: it stays cordoned)");
        }
        if fresh && prior.light {
            message.push_str(&format!(
                "; {node} joined with no workload pods: no cordon or drain (label, agent restart, verification)"
            ));
        }
        self.emit(EventKind::NodeAdmitted, None, Some(node), message);
        Ok(true)
    }

    /// Skips the step when a node admitted `light` does not need it (recorded like any
    /// transition); `false` when the step must run.
    pub(super) async fn skip_light(&self, step: &Step, node: &str) -> Result<bool, RunError> {
        if !not_needed_when_light(step.kind) {
            return Ok(false);
        }
        let state = self.journal.state(&*self.journal.ck.lock().await, step);
        if state.is_complete() {
            return Ok(true);
        }
        self.transition(step, StepState::Skipped, None).await?;
        self.emit(
            EventKind::StepSkipped,
            Some(step),
            None,
            format!("skipped: {node} joined with no workload pods: no cordon or drain"),
        );
        Ok(true)
    }

    /// Which nodes may start now (see [`crate::admission`]); a regression that lasted stops
    /// the run here.
    pub(super) async fn decide(
        &self,
        ck: &Checkpoint,
        running: &BTreeSet<String>,
        free: usize,
    ) -> Result<scheduler::Admission, RunError> {
        let view = admission::View {
            plan: self.plan,
            ck,
            running,
            free,
            now: self.now(),
        };
        Ok(
            match admission::next(&view, &self.ctx(""), &self.controls, &self.recheck).await {
                Next::Idle(a) => a,
                Next::Decided(a) => {
                    self.hold_changed(None);
                    a
                }
                Next::Held(reason, why) => {
                    self.hold_changed(Some((reason, why.clone())));
                    scheduler::Admission {
                        stopped: Some(why),
                        ..scheduler::Admission::default()
                    }
                }
                Next::Halt(reason, why) => {
                    self.hold_changed(Some((reason, why.clone())));
                    *self
                        .halt
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
                    scheduler::Admission {
                        stopped: Some(why),
                        ..scheduler::Admission::default()
                    }
                }
                Next::Regressed { node, reason } => scheduler::Admission {
                    stopped: Some(self.regressed(&node, reason).await?),
                    ..scheduler::Admission::default()
                },
            },
        )
    }

    /// Picks up a `pause` another process wrote into the checkpoint.
    pub(super) async fn check_pause(&self) -> Result<(), RunError> {
        if self
            .journal
            .refresh_pause(self.cfg.timing.pause_check)
            .await?
        {
            self.emit(
                EventKind::Waiting,
                None,
                None,
                "pause requested: no new node starts; nodes in flight finish".into(),
            );
        }
        Ok(())
    }

    /// Before a prelude or finale step that is still to run: nothing changes outside the
    /// maintenance windows either (Cilium's install, the final values, the old CNI's removal).
    /// Waits for a window, saying until when, or with `--exit-outside-window` stops at a gate;
    /// a `pause` meanwhile ends the run paused.
    pub(super) async fn in_window(
        &self,
        step: &Step,
    ) -> Result<Option<crate::outcome::Outcome>, RunError> {
        loop {
            if self
                .journal
                .state(&*self.journal.ck.lock().await, step)
                .is_complete()
            {
                return Ok(None);
            }
            match self.controls.window(self.now()) {
                None => {
                    self.hold_changed(None);
                    return Ok(None);
                }
                Some(crate::controls::Verdict::Halt(reason, why)) => {
                    self.hold_changed(Some((reason, why.clone())));
                    *self
                        .halt
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                    let ck = self.journal.ck.lock().await.clone();
                    return self.halted_or_failed(&ck).await;
                }
                Some(crate::controls::Verdict::Hold(reason, why)) => {
                    self.hold_changed(Some((reason, format!("{why}; {} waits", step.id))));
                }
                Some(crate::controls::Verdict::Open) => return Ok(None),
            }
            self.check_pause().await?;
            if self.journal.ck.lock().await.paused {
                self.emit(
                    EventKind::Paused,
                    None,
                    None,
                    format!("paused before {}; `cni-migrate resume` goes on", step.id),
                );
                return Ok(Some(crate::outcome::Outcome::Paused));
            }
            if self.lock_lost.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(RunError::LockLost(format!(
                    "{} had not started when the lock was lost",
                    step.id
                )));
            }
            tokio::time::sleep(self.cfg.timing.tick).await;
        }
    }

    /// Whether a control stopped the run (it ends once no node is in flight).
    pub(super) fn halted(&self) -> bool {
        self.halt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// With nothing in flight and not every node done: the gate a control asked for, or the
    /// failures the health budget let the run go on past once nothing else can start.
    pub(super) async fn halted_or_failed(
        &self,
        ck: &Checkpoint,
    ) -> Result<Option<crate::outcome::Outcome>, RunError> {
        let halt = self
            .halt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(message) = halt {
            let mut ck = self.journal.ck.lock().await;
            ck.gate = Some(format!("rollout: {message}"));
            self.journal.save(&mut ck).await?;
            drop(ck);
            self.emit(EventKind::Gate, None, None, message.clone());
            return Ok(Some(crate::outcome::Outcome::Gate {
                step: "rollout".into(),
                message,
            }));
        }
        let failed = failed_nodes(self.plan, ck);
        // Failed nodes count against maxUnavailable (they are cordoned, or half-migrated):
        // when they take every slot, nothing more can start either.
        let stuck = failed.len() >= self.plan.summary.max_in_flight.max(1)
            || self.plan.nodes.iter().all(|n| {
                ck.node_settled(&n.name) || ck.held(&n.name) || failed.contains(&n.name.as_str())
            });
        if failed.is_empty() || !stuck {
            return Ok(None);
        }
        let first = failed[0];
        let step = ck
            .node(first)
            .and_then(|r| {
                self.plan
                    .node_steps(first)
                    .zip(&r.steps)
                    .find(|(_, s)| s.state == StepState::Failed)
                    .map(|(step, _)| step.id.clone())
            })
            .unwrap_or_default();
        let reason = format!(
            "{} node(s) failed ({}), within healthBudget.maxFailedNodes ({}); no other node can start now \
             (failed nodes count against maxUnavailable). `cni-migrate resume` retries them, \
             `cni-migrate rollback NODE` undoes one (first failed step: {step})",
            failed.len(),
            failed.join(", "),
            self.plan.spec.rollout.max_failed_nodes(),
        );
        self.emit(EventKind::Stopped, None, Some(first), reason.clone());
        Ok(Some(crate::outcome::Outcome::Failed {
            step,
            node: Some(first.to_owned()),
            reason,
        }))
    }

    /// Tells the observer when a control starts or stops holding admissions (not every tick).
    fn hold_changed(&self, now: Option<(HoldReason, String)>) {
        let mut last = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == now {
            return;
        }
        let event = match &now {
            Some((reason, why)) => Event {
                time: self.now(),
                event: EventKind::Held,
                node: None,
                step: None,
                kind: None,
                reason: Some(reason.as_str().to_owned()),
                message: why.clone(),
            },
            None => Event {
                time: self.now(),
                event: EventKind::Released,
                node: None,
                step: None,
                kind: None,
                reason: last.as_ref().map(|(r, _)| r.as_str().to_owned()),
                message: "admissions may go on".into(),
            },
        };
        *last = now;
        drop(last);
        self.observer.event(&event);
    }

    /// Whether this failure stays within `healthBudget.maxFailedNodes`: a node step of a
    /// non-canary node, with no more failed nodes than the budget allows. `Some((failed,
    /// allowed))` when it does: admissions go on.
    pub(super) fn failure_tolerated(&self, ck: &Checkpoint, step: &Step) -> Option<(usize, usize)> {
        let allowed = self.plan.spec.rollout.max_failed_nodes();
        let node = step.node.as_deref()?;
        if allowed == 0
            || step.phase != planner::plan::Phase::Node
            || self.plan.nodes.iter().any(|n| n.canary && n.name == node)
        {
            return None;
        }
        let failed = failed_nodes(self.plan, ck).len();
        (failed <= allowed).then_some((failed, allowed))
    }

    /// A migrated node regressed for longer than the grace: the failure stops the run.
    async fn regressed(&self, node: &str, reason: String) -> Result<String, RunError> {
        let step = format!("{node}/verify");
        {
            let mut ck = self.journal.ck.lock().await;
            if ck.failure.is_none() {
                ck.failure = Some(FailureRecord {
                    step: step.clone(),
                    reason: reason.clone(),
                    at: u32::try_from(self.now().saturating_sub(ck.created)).unwrap_or(u32::MAX),
                });
                self.journal.save(&mut ck).await?;
            }
        }
        self.emit(EventKind::StepFailed, None, Some(node), reason.clone());
        if let Some(s) = self.plan.steps.iter().find(|s| s.id == step) {
            self.node_event(s, "MigrationRegressed", &reason, true);
        }
        Ok(format!("stopped: {reason}"))
    }
}

/// The plan's nodes with a failed step (failures the health budget let the run go on past).
pub(super) fn failed_nodes<'p>(plan: &'p planner::Plan, ck: &Checkpoint) -> Vec<&'p str> {
    plan.nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| {
            ck.node(n)
                .is_some_and(|r| !r.gone() && r.steps.iter().any(|s| s.state == StepState::Failed))
        })
        .collect()
}
