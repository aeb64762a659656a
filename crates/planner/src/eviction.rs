//! Which pods a drain evicts.
//!
//! ```text
//! PodInfo ─► evictable? ─► plan (pods to evict per node, their PDBs)
//!                      └─► preflight (unreplicated and emptyDir pods, PDBs that block)
//! ```
//!
//! One rule for both, so the plan never counts a pod that preflight ignored, or the reverse.

use crate::snapshot::PodInfo;

/// Pods a drain evicts: not DaemonSet-managed, not mirror pods, not finished, not terminating,
/// not the tool's own (it removes those itself).
pub fn evictable(pod: &PodInfo) -> bool {
    !pod.is_daemonset_pod()
        && !pod.mirror
        && !pod.phase.is_finished()
        && !pod.terminating
        && !pod.is_cni_migrate_pod()
}
