//! The run and a node set that changes under it: nodes that joined and left announced, a
//! node gone mid-chain recorded as left (its slot freed), nodes that join mid-run noticed
//! (the run then asks its caller for a new plan), and the finale's check that every Ready
//! node in the cluster, not only in the plan, is migrated.

use std::collections::HashMap;

use planner::{plan::Step, snapshot::NodeInfo};

use super::{Pass, Runner};
use crate::{
    checkpoint::{Checkpoint, NodeChanges, NodeRecord},
    error::StepError,
    events::{EventKind, chain},
    outcome::RunError,
    step,
};

impl Runner<'_> {
    /// A runner whose caller re-plans when nodes join mid-run ([`Pass::Replan`]); without
    /// it, joined nodes wait for the finale's gate and the next `resume`.
    #[must_use]
    pub fn replanning(mut self) -> Self {
        self.replan = true;
        self
    }

    /// Ready nodes in the cluster that this plan does not have, in words; `None` when there
    /// are none, the cluster cannot be listed now, or the caller cannot re-plan.
    pub(super) async fn watch_joins(&self) -> Option<String> {
        if !self.replan {
            return None;
        }
        let nodes = self.cluster.nodes().await.ok()?;
        let new = {
            let ck = self.journal.ck.lock().await;
            self.unplanned(&ck, &nodes)
        };
        if new.is_empty() {
            return None;
        }
        let message = format!(
            "node(s) {} joined the cluster: the run goes on with the nodes it planned and, once none is in flight, plans again with the new ones",
            new.join(", ")
        );
        self.emit(EventKind::Waiting, None, None, message.clone());
        Some(message)
    }

    /// Before the finale switches Cilium to its final mode and again before it removes the old
    /// CNI: the world, not the plan, must be migrated. A Ready node the record does not show
    /// migrated (it joined after this run planned) stops the run at a gate naming it, and the
    /// old CNI stays under it; `resume` adds it and migrates it first.
    pub(super) async fn world_check(&self, step: &Step) -> Result<Option<Pass>, RunError> {
        let nodes = match self.cluster.nodes().await {
            Ok(n) => n,
            Err(e) => {
                let message = format!(
                    "cannot list the nodes to check that every Ready node is migrated before {} ({e}); `cni-migrate resume` tries again",
                    step.kind
                );
                return Ok(Some(Pass::Ended(self.gate(step, message).await?)));
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
        let unplanned = self.unplanned(&ck, &nodes);
        if self.replan && !unplanned.is_empty() {
            step::verify::remove_beacons(&*self.cluster).await;
            return Ok(Some(Pass::Replan(format!(
                "node(s) {} joined the cluster before {}: the run plans again and migrates them first",
                unplanned.join(", "),
                step.kind
            ))));
        }
        let message = format!(
            "node(s) {} are Ready but not migrated (they joined after this run planned): {} would take the old CNI from under them, so the run stops here; `cni-migrate resume` adds them and migrates them first",
            unmigrated.join(", "),
            step.kind
        );
        Ok(Some(Pass::Ended(self.gate(step, message).await?)))
    }

    /// The cluster's Ready nodes this plan does not migrate: not in it, in it under another
    /// UID (replaced under the same name), or recorded as gone.
    fn unplanned<'n>(&self, ck: &Checkpoint, nodes: &'n [NodeInfo]) -> Vec<&'n str> {
        let planned: HashMap<&str, &str> = self
            .plan
            .nodes
            .iter()
            .map(|p| (p.name.as_str(), p.uid.as_str()))
            .collect();
        nodes
            .iter()
            .filter(|n| n.ready)
            .filter(|n| match planned.get(n.name.as_str()) {
                None => true,
                Some(uid) => {
                    (!uid.is_empty() && !n.uid.is_empty() && *uid != n.uid)
                        || ck.node_replaced_by(&n.name, &n.uid)
                        || ck.node(&n.name).is_some_and(NodeRecord::gone)
                }
            })
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Before each step of a node's chain: whether the node was replaced under the same name
    /// (another UID than the recorded one). Then the old node is recorded as gone, its chain
    /// stops, and the run plans the new one (a failed read is not a replacement).
    pub(super) async fn replaced_mid_chain(&self, node: &str) -> Result<bool, RunError> {
        let Ok(Some(now)) = self.cluster.node(node).await else {
            return Ok(false);
        };
        let mut ck = self.journal.ck.lock().await;
        if !ck.node_replaced_by(node, &now.uid) || !ck.record_left(node, self.now()) {
            return Ok(false);
        }
        self.journal.save(&mut ck).await?;
        drop(ck);
        self.emit(
            EventKind::NodeLeft,
            None,
            Some(node),
            format!(
                "{node} was replaced mid-chain (same name, new UID {}): the old node is recorded as gone, its chain stops here; the new one is migrated as a joined node",
                now.uid
            ),
        );
        Ok(true)
    }

    /// Events for the nodes that came and went since the checkpoint last saw the cluster.
    pub(super) fn announce(&self, changes: &NodeChanges) {
        for n in &changes.replaced {
            self.emit(
                EventKind::NodeLeft,
                None,
                Some(n),
                format!("{n} was replaced (same name, new UID): the old node is recorded as gone"),
            );
        }
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
