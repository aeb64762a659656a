//! A node's chain: its steps in order, each step's end written with the next step's start.

use planner::{Step, StepKind};

use super::{Runner, StepEnd};
use crate::{events::EventKind, outcome::RunError};

impl Runner<'_> {
    /// Whether a step's start is worth an Event on the node: the ones that disrupt its pods
    /// for a while (a drain, the restart of unmanaged pods, a reboot) and a rollback's. For
    /// the others, the Event of their end says enough (`kubectl describe node` shows one
    /// Event a step, two for those).
    pub(super) fn announces_start(step: &Step) -> bool {
        matches!(
            step.kind,
            StepKind::Drain | StepKind::RestartUnmanagedPods | StepKind::Reboot
        ) || step.phase == planner::plan::Phase::Rollback
    }

    pub(super) async fn run_node(&self, node: String) -> (String, Result<(), RunError>) {
        let r = self.run_chain(&node).await;
        (node, r)
    }

    async fn run_chain(&self, node: &str) -> Result<(), RunError> {
        if self.journal.ck.lock().await.prior(node).is_none() && !self.admit(node).await? {
            return Ok(());
        }
        let light = self
            .journal
            .ck
            .lock()
            .await
            .prior(node)
            .is_some_and(|p| p.light);
        let steps: Vec<&Step> = self.plan.node_steps(node).collect();
        for (i, step) in steps.iter().enumerate() {
            if self.replaced_mid_chain(node).await? {
                self.journal.flush().await?;
                return Ok(());
            }
            if light && self.skip_light(step, node).await? {
                continue;
            }
            match self.run_step_in(step, i + 1 < steps.len()).await? {
                StepEnd::Done(_) => {}
                // Node steps have no gates; a failure is recorded and stops admissions.
                StepEnd::Gate(_) | StepEnd::Failed(_) | StepEnd::Left => {
                    self.journal.flush().await?;
                    return Ok(());
                }
            }
        }
        // A step's `Done` left for the next step's write, where no next step wrote.
        self.journal.flush().await?;
        let secs = self
            .journal
            .ck
            .lock()
            .await
            .node(node)
            .and_then(|r| r.span())
            .map_or(0, |(first, last)| last - first);
        self.emit(
            EventKind::NodeDone,
            None,
            Some(node),
            format!("{node} migrated in {secs}s"),
        );
        Ok(())
    }
}
