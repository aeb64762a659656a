//! The scheduler's view of the nodes: the Ready, schedulable ones and the taints a pod must
//! tolerate on each, built once and kept until a node changes (as the scheduler's informer
//! cache is), instead of decoding every node for every pod it binds. Below the model, so it
//! does not import it.
//!
//! ```text
//! node event ──► view dropped ──► next bind builds it from the nodes
//! bind(pod) ──► nodes whose taints the pod tolerates ──► the one with fewest pods
//! ```

use serde_json::Value;

/// A node a pod may be bound to, and its taints that keep pods off (`NoSchedule`,
/// `NoExecute`).
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) name: String,
    taints: Vec<Value>,
}

impl Candidate {
    /// The node, if it is Ready and not cordoned.
    pub(super) fn of(name: &str, node: &Value) -> Option<Self> {
        if !is_ready(node) {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            taints: node["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["effect"] != "PreferNoSchedule")
                .cloned()
                .collect(),
        })
    }

    /// Whether a pod with these tolerations tolerates every taint of the node.
    pub(super) fn tolerated_by(&self, tolerations: &[Value]) -> bool {
        tolerates(tolerations, &self.taints)
    }
}

/// Whether `tolerations` tolerate each of `taints` (an `Exists` toleration without a key
/// tolerates every taint).
pub(super) fn tolerates<'a>(
    tolerations: &[Value],
    taints: impl IntoIterator<Item = &'a Value>,
) -> bool {
    taints.into_iter().all(|t| {
        tolerations.iter().any(|tol| {
            (tol["operator"] == "Exists" && (tol["key"].is_null() || tol["key"] == t["key"]))
                || (tol["key"] == t["key"] && tol["value"] == t["value"])
        })
    })
}

/// A node that is Ready and not cordoned.
pub(super) fn is_ready(n: &Value) -> bool {
    n["spec"]["unschedulable"] != true
        && n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
