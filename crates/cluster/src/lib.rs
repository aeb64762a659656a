//! Live cluster access for cni-migrate.
//!
//! ```text
//!  --kubeconfig / --context ──► connect ──► kube::Client
//!                                              │
//!                         discover: paged LISTs (500 a page), each page decoded straight
//!                         into the planner's projections (no full k8s-openapi Pods)
//!                                              ▼
//!                                       ClusterSnapshot ──► planner
//! ```
//!
//! The same projections the dump loader produces, from the same decoding path: a page of
//! pods is deserialized directly into `Vec<PodInfo>`, so memory stays proportional to what the
//! planner needs, not to the size of the objects. Secrets are never read.

pub mod cached;
pub mod connect;
pub mod discovery;
pub mod error;
pub mod lease;
pub mod ops;
pub mod telemetry;
pub mod watch;

pub use cached::NodeCached;
pub use connect::{ClusterArgs, USER_AGENT, configure, connect, connect_in_cluster};
pub use discovery::discover;
pub use error::{ClusterError, is_retriable, status_code};
pub use ops::{CiliumNodeInfo, Cluster, EndpointInfo, Eviction, KubeCluster, cilium_node_ranges};
