//! The workload controllers' answer to a deleted pod: a ReplicaSet's replacement (a new name,
//! made as soon as the old pod terminates), a StatefulSet's (the same name, a new UID, only
//! once the old pod is gone), a DaemonSet's (the DaemonSet controller's reconcile).

use serde_json::{Value, json};

use super::Model;

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
        let (_, siblings, _) = self.store.list("/pods", Some(&ns), None, None, &|_, s| {
            let v = s.value();
            v["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| {
                    o["controller"] == true && o["name"] == owner_name.as_str() && o["kind"] == kind
                })
                && v["metadata"]["deletionTimestamp"].is_null()
        });
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
                fresh["metadata"]["name"] = pod["metadata"]["name"].clone();
            }
            _ => {
                // The DaemonSet controller decides (a node whose old pod is gone gets one).
                if let Some(node) = pod["spec"]["nodeName"].as_str() {
                    self.daemonset_had_pod(&ns, &owner_name, &controller, node);
                }
                self.reconcile_daemonset(&ns, &owner_name);
                return;
            }
        }
        let _ = self.store.create("/pods", fresh, false);
    }
}
