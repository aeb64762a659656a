//! An in-memory [`cluster::Cluster`] whose physics (pod termination, pod start, agent restart,
//! API latency) are drawn from seeded distributions, for running the executor in virtual time.
//!
//! ```text
//! every verb ─► count (verb, resource) ─► sleep a drawn API latency (tokio clock: virtual
//!               under a paused runtime) ─► act on the state, which is a function of time:
//!   evict ──────► pod terminating now, gone after a drawn termination time; its ReplicaSet's
//!                 replacement appears at once on another schedulable node, Ready after a
//!                 drawn start time (PDBs count Ready, non-terminating members)
//!   delete agent ► old agent gone after 1 s (the chart's grace period), the DaemonSet's new
//!                 pod (new UID) appears then, Ready after a drawn agent restart time
//! ```
//!
//! State is evaluated lazily against `tokio::time::Instant::now()`: no background tasks, so a
//! paused clock only advances when every task waits on a timer.
//!
//! Distributions, from `/work/shared/reference/perf-anchors.md`:
//! - pod termination: uniform in [1 s, 30 s]. §2 "30 s — Default pod termination grace period,
//!   which sets the lower bound of a drain" and §7 "drain: max grace period of the node's pods,
//!   30 s by default": apps exit anywhere between at once and at the grace period.
//! - pod start (the evicted pod's replacement): log-normal, median 1.5 s, σ 0.52, so p99 ≈ 5 s:
//!   §2 "5 s p99 — Pod startup SLO, stateless, excluding image pull".
//! - agent restart to Ready: log-normal, median 20 s, σ 0.3 (≈ 10–30 s): §7 "cilium agent
//!   restart to Ready: 10–30 s on a healthy mid-size cluster"; plus a 2 % tail uniform in
//!   [80 s, 90 s]: §2 "80–90 s … cilium-agent startup to startupProbe pass" (issue 29795).
//! - API latency: log-normal, median 10 ms (reads) / 20 ms (writes), σ 0.5, capped at 1 s:
//!   well inside §3 "≤ 1 s p99 — Mutating API call latency SLO"; a ConfigMap write also pays
//!   its size at 100 MB/s (an assumption: no anchor gives body throughput).
//!
//! It stays beside the sim's model on purpose: the sim answers over HTTP with background tasks,
//! while this fake evaluates its state lazily against the tokio clock, which is what lets a
//! paused runtime run a 5,000-node migration in seconds of wall time.

mod api;
mod physics;
mod rng;
mod state;
mod synthetic;

pub use api::{Counters, FakeCluster};
pub use physics::{NodePhysics, Physics};
pub use rng::Rng;
pub use synthetic::{Shape, Synthetic, node_name};
