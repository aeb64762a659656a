//! Runs a cni-migrate plan against a cluster.
//!
//! ```text
//! Plan ─► scheduler (canary, soak, maxUnavailable, PDB-aware)      [not yet: issue 3]
//!           │
//!           ▼
//!         steps: observe ─► act ─► wait, through the `Cluster` trait only
//!           cordon · drain · label · restart-agent · reboot · verify · uncordon
//!           │
//!           ▼
//!         checkpoints + Lease lock (cluster::lease)                 [lock done; checkpoints: issue 3]
//! ```
//!
//! Every step first checks whether its effect already holds, so re-running any step after a
//! crash is safe; prior node state is observed separately so the runtime can record it before
//! the first change.

pub mod agent;
pub mod checkpoint;
pub mod drain;
pub mod eks;
pub mod probe;
pub mod runtime;
pub mod scheduler;
pub mod steps;
pub mod store;
