//! Runs a cni-migrate plan against a cluster.
//!
//! ```text
//! session ─► Lease lock (renewed in the background, released on drop) ─► checkpoint read and
//!   │        judged (fresh run, resume, rollback, already complete) ─► Runner
//!   ▼
//! runtime (Runner: the run loop) ─► scheduler::decide (pure) ─► node chains in flight
//!   │       controls (windows, Prometheus gate, health budget) and recheck (migrated nodes
//!   │       hold up) before each admission
//!   │       run_step ─► step::dispatch(kind, ctx): observe ─► act ─► wait, through `Cluster`
//!   │                     node · helm · verify · finale · eks          (drain, agent, probe)
//!   ├─► checkpoint (typed record; ConfigMap or file store) after every transition
//!   └─► events ─► progress bars / lines / JSON lines, Node Events
//! rollback: the planner's rollback chain through the same run_step
//! status: what `cni-migrate status` shows, from the checkpoint and the cluster
//! ```
//!
//! Below them: `error` (one `StepError`), `wait` (`until` and `Backoff`), `config`, `ranges`,
//! `endpoints`, `outcome`.

pub mod admission;
pub mod agent;
pub mod checkpoint;
pub mod config;
pub mod controls;
pub mod drain;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod journal;
pub mod ledger;
pub mod node_events;
pub mod outcome;
pub mod probe;
pub mod prometheus;
pub mod ranges;
pub mod recheck;
pub mod rollback;
pub mod runtime;
pub mod scheduler;
pub mod session;
pub mod status;
pub mod step;
pub mod store;
pub mod wait;
