//! The run's record as steps see it: the [`Ledger`] a step's context reads and extends,
//! implemented over the runner's journal and counters.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use planner::StepKind;

use crate::{
    checkpoint::{NodePrior, NodeStatus},
    error::StepError,
    events::chain,
    runtime::Runner,
    step::Ledger,
};

#[async_trait]
impl Ledger for Runner<'_> {
    async fn prior(&self, node: &str) -> Option<NodePrior> {
        self.journal.ck.lock().await.prior(node)
    }

    async fn agent_uids(&self, node: &str) -> Option<Vec<String>> {
        self.journal.ck.lock().await.agent_uids(node)
    }

    async fn record_agent_uids(&self, node: &str, uids: Vec<String>) -> Result<(), StepError> {
        let mut ck = self.journal.ck.lock().await;
        if ck.record_agent_uids(node, uids) {
            self.journal
                .save(&mut ck)
                .await
                .map_err(|e| StepError::Record {
                    node: node.to_owned(),
                    what: "the agent pods".into(),
                    before: "changing the label".into(),
                    reason: chain(&e),
                })?;
        }
        Ok(())
    }

    async fn status(&self, node: &str) -> Option<NodeStatus> {
        self.journal.ck.lock().await.node(node).map(|r| r.status())
    }

    async fn statuses(&self, nodes: &[&str]) -> std::collections::HashMap<String, NodeStatus> {
        // One hold of the record's lock, not one per node behind every write in flight.
        let ck = self.journal.ck.lock().await;
        nodes
            .iter()
            .filter_map(|n| Some(((*n).to_owned(), ck.node(n)?.status())))
            .collect()
    }

    async fn restarted_at(&self, node: &str) -> Option<u64> {
        let at = self
            .plan
            .node_steps(node)
            .position(|s| s.kind == StepKind::RestartAgent)?;
        let ck = self.journal.ck.lock().await;
        let t = ck.node(node)?.finished_at(at)?;
        Some(ck.created + u64::from(t))
    }

    fn count_evictions(&self, node: &str, evicted: &[String], waits: &BTreeMap<String, Duration>) {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(node, evicted, waits);
        self.observer.drained(node, evicted.len(), waits);
    }
}
