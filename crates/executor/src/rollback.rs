//! `cni-migrate rollback`: a node back to the old CNI, through the same step machinery as the
//! migration (retries, checkpoint transitions, events and progress output).
//!
//! ```text
//! refuse once the finale began (Cilium is then the primary CNI everywhere), in eks-eni, for a
//! node not in the plan or gone, and when there is nothing to roll back
//! record: node held, its forward steps Pending again, prior state kept       ─► checkpoint
//! the planner's rollback chain, step by step (run_step):
//!   cordon ─► drain ─► unlabel ─► restart-agent ─► restore-cni ─► [start-aws-node] ─► [reboot]
//!   ─► verify-rollback ─► uncordon (if we cordoned it)
//! ```
//!
//! The agent restarts before the CNI files are restored, not after: an agent still running
//! with `cni-exclusive` would rename the restored configuration away again. A rollback that
//! stopped half-way goes on from its first step not done when run again; the node stays held
//! until `resume --retry NODE`.

use planner::{
    Step, StepKind,
    plan::{MIGRATION_LABEL, rollback_chain},
    spec::TargetMode,
};

use crate::{
    checkpoint::{StepIndex, StepState},
    events::{EventKind, chain},
    outcome::{RollbackEnd, RunError},
    runtime::{Runner, StepEnd},
    step,
};

impl Runner<'_> {
    /// Lets this run roll `nodes` back: their rollback chains join the steps it knows.
    #[must_use]
    pub fn with_rollback(mut self, nodes: &[String]) -> Self {
        for n in nodes {
            self.rollback
                .insert(n.clone(), rollback_chain(self.plan, n));
        }
        self.journal.index = StepIndex::new(
            self.plan
                .steps
                .iter()
                .chain(self.rollback.values().flatten()),
        );
        self
    }

    /// A node's rollback chain, when this run may roll it back.
    pub(crate) fn rollback_steps(&self, node: &str) -> &[Step] {
        self.rollback.get(node).map_or(&[], Vec::as_slice)
    }

    /// Whether the finale has begun, and what it has done (rollback is refused then).
    pub async fn finale_begun(&self) -> Option<String> {
        let ck = self.journal.ck.lock().await;
        let step = self
            .plan
            .steps
            .iter()
            .find(|s| s.kind == StepKind::FinalValues)?;
        if ck.global_state(&step.id) == StepState::Pending {
            return None;
        }
        Some(if ck.global_state("remove-old-cni") == StepState::Done {
            format!(
                "the finale removed the old CNI ({}): there is nothing to roll back to",
                self.plan.facts.source.cni
            )
        } else {
            "the finale has begun (final-values): Cilium is the primary CNI on every node, so one node cannot go back alone".to_owned()
        })
    }

    /// Why `node` cannot be rolled back now, if it cannot.
    async fn refusal(&self, node: &str) -> Option<RollbackEnd> {
        if let Some(why) = self.finale_begun().await {
            return Some(RollbackEnd::Refused(format!(
                "cannot roll back {node}: {why}"
            )));
        }
        if self.plan.spec.target.mode == TargetMode::EksEni {
            return Some(RollbackEnd::Refused(format!(
                "cannot roll back {node} alone in eks-eni: Cilium took every node's CNI over at install and aws-node no longer runs anywhere; to go back, restore aws-node's node selector (kubectl -n kube-system patch daemonset aws-node --type=json -p '[{{\"op\":\"remove\",\"path\":\"/spec/template/spec/nodeSelector/io.cilium~1aws-node-enabled\"}}]'), uninstall Cilium (helm uninstall cilium -n kube-system) and restart the pods Cilium started"
            )));
        }
        let rec = self.journal.ck.lock().await.node(node).cloned();
        let Some(rec) = rec else {
            return Some(RollbackEnd::Refused(format!(
                "{node} is not a node of plan {}",
                self.plan.name
            )));
        };
        let live = match self.cluster.node(node).await {
            Ok(Some(n)) => n,
            Ok(None) => return Some(RollbackEnd::Refused(format!("node {node} does not exist"))),
            Err(e) => {
                return Some(RollbackEnd::Refused(format!(
                    "cannot read node {node}: {}",
                    chain(&e)
                )));
            }
        };
        let labelled = live
            .labels
            .get(MIGRATION_LABEL)
            .is_some_and(|v| v == "true");
        if !rec.started() && !rec.held() && !labelled {
            return Some(RollbackEnd::Nothing(format!(
                "{node} was not migrated (no step ran, no {MIGRATION_LABEL} label): nothing to roll back"
            )));
        }
        if rec.rollback_complete() && !labelled {
            return Some(RollbackEnd::Nothing(format!(
                "{node} is already back on {}; `cni-migrate resume --retry {node}` migrates it again",
                self.plan.facts.source.cni
            )));
        }
        None
    }

    /// Rolls one node back. A failed step is a [`RollbackEnd::Failed`]; [`RunError`] only when
    /// the checkpoint cannot be kept.
    ///
    /// # Errors
    /// [`RunError`] when the checkpoint cannot be kept or the lock is lost.
    pub async fn rollback(&self, node: &str) -> Result<RollbackEnd, RunError> {
        if let Some(end) = self.refusal(node).await {
            return Ok(end);
        }
        let chain_steps = self.rollback_steps(node);
        if chain_steps.is_empty() {
            return Ok(RollbackEnd::Refused(format!(
                "{node} has no rollback chain in this run (a bug: the session names the nodes to roll back)"
            )));
        }
        // Intent first: held, steps Pending again, prior state kept (observed now if the run
        // never recorded it).
        if let Err(why) = self.record_prior(node, false).await? {
            return Ok(RollbackEnd::Failed {
                step: "observe".into(),
                reason: format!("cannot observe {node}'s state before rolling it back: {why}"),
            });
        }
        {
            let mut ck = self.journal.ck.lock().await;
            let kinds: Vec<String> = chain_steps.iter().map(|s| s.kind.to_string()).collect();
            ck.begin_rollback(node, &kinds, self.now());
            self.journal.save(&mut ck).await?;
        }
        self.emit(
            EventKind::NodeAdmitted,
            None,
            Some(node),
            format!("rolling back {node} to {}", self.plan.facts.source.cni),
        );
        let mut seen = Vec::new();
        for s in chain_steps {
            match self.run_step(s).await? {
                StepEnd::Done(detail) => seen.extend(detail),
                StepEnd::Left => {
                    return Ok(RollbackEnd::Nothing(format!(
                        "{node} left the cluster during its rollback: nothing is left to roll back"
                    )));
                }
                StepEnd::Gate(reason) | StepEnd::Failed(reason) => {
                    return Ok(RollbackEnd::Failed {
                        step: s.kind.to_string(),
                        reason,
                    });
                }
            }
        }
        step::verify::remove_beacons(&*self.cluster).await;
        self.emit(
            EventKind::NodeDone,
            None,
            Some(node),
            format!(
                "{node} is back on {}; `cni-migrate resume --retry {node}` migrates it again",
                self.plan.facts.source.cni
            ),
        );
        Ok(RollbackEnd::Done(seen.join("; ")))
    }
}
