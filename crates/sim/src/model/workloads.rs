//! The workload controllers' answer to a deleted pod: a ReplicaSet's replacement (a new name,
//! made as soon as the old pod terminates), a StatefulSet's (the same name, a new UID, only
//! once the old pod is gone), a DaemonSet's (the DaemonSet controller's reconcile).

use std::sync::Arc;

use serde_json::{Value, json};

use super::Model;
use crate::store::Store;

impl Model {
    /// The workload controllers' answer to a deleted pod.
    pub(super) fn replace(&mut self, pod: &Value) {
        let Some(owner) = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
            .cloned()
        else {
            return;
        };
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let owner_name = owner["name"].as_str().unwrap_or_default().to_owned();
        let kind = owner["kind"].as_str().unwrap_or_default();
        let (key, owner_key_ns) = match kind {
            "ReplicaSet" => ("apps/replicasets", ns.clone()),
            "StatefulSet" => ("apps/statefulsets", ns.clone()),
            "DaemonSet" => ("apps/daemonsets", ns.clone()),
            _ => return,
        };
        // A controller that no longer exists recreates nothing.
        let Some(controller) = self
            .store
            .get(key, &owner_key_ns, &owner_name)
            .map(|s| s.value())
        else {
            return;
        };
        let (_, siblings, _) = self
            .store
            .pods_of_controller(&ns, kind, &owner_name, &|_, s| !s.terminating);
        let mut fresh = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "labels": pod["metadata"]["labels"].clone(), "ownerReferences": [owner]},
            "spec": controller["spec"]["template"]["spec"].clone(),
            "status": {"phase": "Pending"},
        });
        if fresh["spec"].is_null() {
            // Dumps and synthetic clusters may carry controllers without a template: reuse the
            // deleted pod's own spec.
            fresh["spec"] = pod["spec"].clone();
        }
        if let Some(spec) = fresh["spec"].as_object_mut() {
            spec.remove("nodeName");
        }
        match kind {
            "ReplicaSet" => {
                let want = controller["spec"]["replicas"].as_u64().unwrap_or(1);
                if u64::try_from(siblings.len()).unwrap_or(u64::MAX) >= want {
                    return;
                }
                fresh["metadata"]["generateName"] = json!(format!("{owner_name}-"));
            }
            "StatefulSet" => {
                // Only an ordinal below `spec.replicas` comes back (a scale-down's pods stay
                // gone).
                let want = controller["spec"]["replicas"].as_u64().unwrap_or(1);
                let ordinal = pod["metadata"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix(&format!("{owner_name}-")))
                    .and_then(|o| o.parse::<u64>().ok());
                if ordinal.is_none_or(|o| o >= want) {
                    return;
                }
                fresh["metadata"]["name"] = pod["metadata"]["name"].clone();
            }
            _ => {
                // The DaemonSet controller decides (a node whose old pod is gone gets one).
                if let Some(node) = pod["spec"]["nodeName"].as_str() {
                    self.daemonset_had_pod(&ns, &owner_name, &controller, node);
                }
                // Coalesced with the other changes that are ready, as its work queue does: a
                // reconcile looks at every node.
                self.dirty_daemonsets.insert((ns, owner_name));
                return;
            }
        }
        let _ = self.store.create("/pods", fresh, false);
    }
}

/// The namespace of the kubelets' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

impl Model {
    /// The kubelets' heartbeats: every Ready node's Lease in `kube-node-lease` renewed (created
    /// for a node that joined). A node that is not Ready, or is gone, renews nothing; a cordoned
    /// one still does. They run beside the model, which does not react to Leases.
    pub(super) fn heartbeats(store: &Store) {
        let now = crate::store::now_rfc3339_micro();
        let (_, nodes, _) = store.list("/nodes", None, None, None, &|_, s| s.ready);
        let key = "coordination.k8s.io/leases";
        for ((_, name), _) in nodes {
            match store.get(key, NODE_LEASE_NAMESPACE, &name) {
                Some(l) => {
                    let mut v = l.value();
                    v["spec"]["renewTime"] = json!(now);
                    let _ = store.update(key, v, Some(l.rv), false);
                }
                None => {
                    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
                    let _ = store.create(key, lease, false);
                }
            }
        }
    }

    /// Every node, each decoded once per resourceVersion (the scheduler and the DaemonSet
    /// controller look at all of them often).
    pub(super) fn nodes(&self) -> Vec<(String, Arc<Value>)> {
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let mut memo = self.node_memo.borrow_mut();
        let out: Vec<(String, Arc<Value>)> = nodes
            .into_iter()
            .map(|((_, name), s)| {
                let v = match memo.get(&name) {
                    Some((rv, v)) if *rv == s.rv => Arc::clone(v),
                    _ => {
                        let v = Arc::new(s.value());
                        memo.insert(name.clone(), (s.rv, Arc::clone(&v)));
                        v
                    }
                };
                (name, v)
            })
            .collect();
        if memo.len() > out.len() {
            let names: std::collections::HashSet<&String> = out.iter().map(|(n, _)| n).collect();
            memo.retain(|n, _| names.contains(n));
        }
        out
    }
}
