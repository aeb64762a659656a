//! What the model does in answer to a store event, now or after a delay.

use std::collections::BTreeMap;

use serde_json::Value;

/// One thing the model does.
#[derive(Debug)]
pub(super) enum Action {
    /// Garbage collection of what a deleted controller owned.
    Collect {
        namespace: String,
        uid: Value,
    },
    /// The Tigera operator's uninstall of calico-system.
    TigeraUninstall,
    Budgets {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    /// One budget whose spec changed.
    Budget {
        namespace: String,
        name: String,
    },
    Daemonset {
        namespace: String,
        name: String,
    },
    /// The Deployment, ReplicaSet and StatefulSet controllers (see `replicas`).
    Deployment {
        namespace: String,
        name: String,
    },
    ReplicaSet {
        namespace: String,
        name: String,
    },
    StatefulSet {
        namespace: String,
        name: String,
    },
    /// A pod the model deleted gracefully goes.
    Remove {
        namespace: String,
        name: String,
        uid: Value,
    },
    /// The kubelet's not-Ready on a terminating pod.
    MarkTerminating {
        namespace: String,
        name: String,
    },
    /// The node lifecycle controller's removal of the `not-ready` taint.
    Untaint {
        name: String,
    },
    /// The node lifecycle controller's `unschedulable` taint following `spec.unschedulable`.
    Unschedulable {
        name: String,
    },
    Bind {
        namespace: String,
        name: String,
    },
    Start {
        namespace: String,
        name: String,
        uid: Value,
    },
    Replace {
        pod: std::sync::Arc<Value>,
    },
    /// The pod garbage collector removes the pods of a deleted node.
    Orphans {
        node: String,
    },
    /// Cilium removes a deleted pod's CiliumEndpoint.
    DropEndpoint {
        namespace: String,
        name: String,
        uid: Value,
    },
}
