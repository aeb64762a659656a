//! The run and a node set that changes under it: nodes that joined and left announced, a
//! node gone mid-chain recorded as left (its slot freed), and the finale's check that every
//! Ready node in the cluster, not only in the plan, is migrated.

use planner::plan::Step;

use super::Runner;
use crate::{
    checkpoint::NodeChanges,
    error::StepError,
    events::{EventKind, chain},
    outcome::{Outcome, RunError},
};

impl Runner<'_> {
    /// Before the finale switches Cilium to its final mode and again before it removes the old
    /// CNI: the world, not the plan, must be migrated. A Ready node the record does not show
    /// migrated (it joined after this run planned) stops the run at a gate naming it, and the
    /// old CNI stays under it; `resume` adds it and migrates it first.
    pub(super) async fn world_check(&self, step: &Step) -> Result<Option<Outcome>, RunError> {
        let nodes = match self.cluster.nodes().await {
            Ok(n) => n,
            Err(e) => {
                let message = format!(
                    "cannot list the nodes to check that every Ready node is migrated before {} ({e}); `cni-migrate resume` tries again",
                    step.kind
                );
                return Ok(Some(self.gate(step, message).await?));
            }
        };
        let ck = self.journal.ck.lock().await.clone();
        let unmigrated: Vec<&str> = nodes
            .iter()
            .filter(|n| n.ready && !ck.node_migrated(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        if unmigrated.is_empty() {
            return Ok(None);
        }
        let message = format!(
            "node(s) {} are Ready but not migrated (they joined after this run planned): {} would take the old CNI from under them, so the run stops here; `cni-migrate resume` adds them and migrates them first",
            unmigrated.join(", "),
            step.kind
        );
        Ok(Some(self.gate(step, message).await?))
    }

    /// Events for the nodes that came and went since the checkpoint last saw the cluster.
    pub(super) fn announce(&self, changes: &NodeChanges) {
        for n in &changes.joined {
            self.emit(
                EventKind::NodeJoined,
                None,
                Some(n),
                format!("{n} joined the cluster after the migration started: it is migrated like the others"),
            );
        }
        for n in &changes.left {
            self.emit(
                EventKind::NodeLeft,
                None,
                Some(n),
                format!("{n} left the cluster: recorded as gone, not failed"),
            );
        }
    }

    /// Whether the node is gone from the cluster (a failed read is not "gone").
    pub(super) async fn node_is_gone(&self, node: &str) -> bool {
        matches!(self.cluster.node(node).await, Ok(None))
    }

    /// Records that a node left the cluster mid-chain: its chain stops where it was, its slot
    /// is freed, and the run goes on.
    pub(super) async fn node_left(&self, node: &str, err: &StepError) -> Result<(), RunError> {
        let mut ck = self.journal.ck.lock().await;
        let now = self.now();
        if !ck.record_left(node, now) {
            return Ok(());
        }
        self.journal.save(&mut ck).await?;
        drop(ck);
        self.emit(
            EventKind::NodeLeft,
            None,
            Some(node),
            format!(
                "{node} left the cluster mid-chain ({}): recorded as gone, not failed; the run goes on",
                chain(err)
            ),
        );
        Ok(())
    }
}
