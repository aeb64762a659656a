//! Admitting a node: its prior state (cordoned? labelled? guarded against scale-down?)
//! observed and recorded in the checkpoint before anything changes on it.

use super::Runner;
use crate::{
    checkpoint::NodePrior,
    error::StepError,
    events::{EventKind, chain},
    outcome::RunError,
    step,
};

impl Runner<'_> {
    /// Records the node's prior state before anything changes on it (only the first time).
    /// `Ok(Err(why))` when it cannot be observed now: the node must not be touched (a guess
    /// could make the tool uncordon a node someone else cordoned).
    pub(crate) async fn record_prior(
        &self,
        node: &str,
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
        let prior = match observed {
            Ok(p) => p,
            Err(e) => return Ok(Err(chain(&e))),
        };
        let mut ck = self.journal.ck.lock().await;
        ck.record_prior(node, &prior);
        self.journal.save(&mut ck).await?;
        Ok(Ok(prior))
    }

    /// Admits a node: its prior state recorded first. `false` when it cannot be observed now.
    pub(super) async fn admit(&self, node: &str) -> Result<bool, RunError> {
        let fresh = self.journal.ck.lock().await.prior(node).is_none();
        let prior = match self.record_prior(node).await? {
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
        self.emit(EventKind::NodeAdmitted, None, Some(node), message);
        Ok(true)
    }
}
