//! The drawn times: pod termination and start, agent restart, API latency; and what one node's
//! migration physically took.

use std::time::Duration;

use super::rng::{Rng, secs};
use tokio::time::Instant;

/// The model's physics.
#[derive(Clone, Debug)]
pub struct Physics {
    /// Draw API latencies (off: every request is instant).
    pub api_latency: bool,
}

impl Physics {
    pub(super) fn termination(rng: &mut Rng) -> Duration {
        secs(rng.uniform(1.0, 30.0))
    }

    pub(super) fn pod_start(rng: &mut Rng) -> Duration {
        secs(rng.log_normal(1.5, 0.52).min(30.0))
    }

    pub(super) fn agent_restart(rng: &mut Rng) -> Duration {
        if rng.unit() < 0.02 {
            secs(rng.uniform(80.0, 90.0))
        } else {
            secs(rng.log_normal(20.0, 0.3))
        }
    }

    pub(super) fn latency(&self, rng: &mut Rng, write: bool, bytes: usize) -> Duration {
        if !self.api_latency {
            return Duration::ZERO;
        }
        let median = if write { 0.020 } else { 0.010 };
        #[allow(clippy::cast_precision_loss)] // bytes of a ConfigMap
        let body = bytes as f64 / 100e6;
        secs(rng.log_normal(median, 0.5).min(1.0) + body)
    }
}

/// What happened physically on a node: the truth the executor's waits are measured against.
#[derive(Clone, Debug, Default)]
pub struct NodePhysics {
    /// First eviction accepted.
    pub first_evict: Option<Instant>,
    /// The last evicted pod gone.
    pub last_gone: Option<Instant>,
    /// The agent pod deleted.
    pub agent_deleted: Option<Instant>,
    /// The new agent Ready.
    pub agent_ready: Option<Instant>,
    /// How long the tool's probe pods on the node took to start (a container runtime's
    /// time, not the tool's).
    pub probe_starts: Duration,
}

impl NodePhysics {
    /// Time the cluster itself needed: drain (first eviction to last pod gone, PDB waits
    /// included), agent restart (delete to Ready), the probe pods' starts.
    pub fn physical(&self) -> Duration {
        let drain = match (self.first_evict, self.last_gone) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let agent = match (self.agent_deleted, self.agent_ready) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        drain + agent + self.probe_starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_are_in_range_and_deterministic() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..1000 {
            let t = Physics::termination(&mut a);
            assert!(t >= Duration::from_secs(1) && t <= Duration::from_secs(30));
            let r = Physics::agent_restart(&mut a);
            assert!(r > Duration::ZERO && r <= Duration::from_secs(90));
        }
    }
}
