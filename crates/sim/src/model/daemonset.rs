//! The DaemonSet controller: one pod per selected node, rolled on a template change, and the
//! status a real controller writes (fields that are zero are left out, as on the wire).

use serde_json::{Value, json};

use super::{Model, ds_selects, has_node_selector, tolerates_all_taints};

impl Model {
    pub(super) fn daemonset_pods(&self, namespace: &str, name: &str) -> Vec<Value> {
        let (_, pods, _) = self
            .store
            .list("/pods", Some(namespace), None, None, &|_, _| true);
        pods.into_iter()
            .map(|(_, s)| s.value())
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| {
                        o["controller"] == true && o["kind"] == "DaemonSet" && o["name"] == name
                    })
            })
            .collect()
    }

    pub(super) fn revision(v: &Value) -> Value {
        v["spec"]["template"]["metadata"]["annotations"]["cni-migrate.io/helm-revision"].clone()
    }

    /// One pod per eligible node; pods of an older template revision are replaced (all at once:
    /// the rolling pace is not modelled).
    pub(super) fn reconcile_daemonset(&mut self, namespace: &str, name: &str) {
        let Some(ds) = self
            .store
            .get("apps/daemonsets", namespace, name)
            .map(|s| s.value())
        else {
            return;
        };
        let revision = Self::revision(&ds);
        let pods = self.daemonset_pods(namespace, name);
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let template_pod = json!({"spec": ds["spec"]["template"]["spec"].clone()});
        for (_, n) in nodes {
            let node = n.value();
            let node_name = node["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !tolerates_all_taints(&template_pod, &node) {
                continue;
            }
            let mine: Vec<&Value> = pods
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] == node_name.as_str()
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .collect();
            // A node the node selector leaves out loses its pod.
            if !ds_selects(&ds, &node) {
                for old in &mine {
                    let _ = self.store.delete(
                        "/pods",
                        namespace,
                        old["metadata"]["name"].as_str().unwrap_or_default(),
                        false,
                    );
                }
                continue;
            }
            // Dumps carry DaemonSets without our revision annotation: their pods are current
            // (a node newly selected still gets one).
            if revision.is_null() && (!mine.is_empty() || !has_node_selector(&ds)) {
                continue;
            }
            let current = mine
                .iter()
                .any(|p| p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] == revision);
            for old in mine.iter().filter(|p| {
                p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] != revision
            }) {
                let _ = self.store.delete(
                    "/pods",
                    namespace,
                    old["metadata"]["name"].as_str().unwrap_or_default(),
                    false,
                );
            }
            if current {
                continue;
            }
            let labels = if ds["spec"]["template"]["metadata"]["labels"].is_null() {
                json!({})
            } else {
                ds["spec"]["template"]["metadata"]["labels"].clone()
            };
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": format!("{name}-"), "namespace": namespace, "labels": labels,
                             "annotations": ds["spec"]["template"]["metadata"]["annotations"].clone(),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": ds["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
                "spec": ds["spec"]["template"]["spec"].clone(),
                "status": {"phase": "Pending"}});
            pod["spec"]["nodeName"] = json!(node_name);
            let _ = self.store.create("/pods", pod, false);
        }
        self.daemonset_status(namespace, name);
    }

    pub(super) fn daemonset_status(&mut self, namespace: &str, name: &str) {
        let Some(s) = self.store.get("apps/daemonsets", namespace, name) else {
            return;
        };
        let mut ds = s.value();
        let revision = Self::revision(&ds);
        let pods: Vec<Value> = self
            .daemonset_pods(namespace, name)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let template_pod = json!({"spec": ds["spec"]["template"]["spec"].clone()});
        let desired = nodes
            .iter()
            .filter(|(_, n)| {
                tolerates_all_taints(&template_pod, &n.value()) && ds_selects(&ds, &n.value())
            })
            .count();
        let ready = pods
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        let updated = pods
            .iter()
            .filter(|p| {
                revision.is_null()
                    || p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] == revision
            })
            .count();
        let status = json!({"currentNumberScheduled": pods.len(), "desiredNumberScheduled": desired, "numberAvailable": ready, "numberReady": ready,
            "numberMisscheduled": 0, "updatedNumberScheduled": updated, "observedGeneration": ds["metadata"]["generation"].clone()});
        if ds["status"] == status {
            return;
        }
        ds["status"] = status;
        let _ = self.store.update("apps/daemonsets", ds, Some(s.rv), false);
    }
}
