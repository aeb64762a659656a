//! The disruption controller: a PodDisruptionBudget's status from the pods it selects.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Model;

impl Model {
    /// PodDisruptionBudget status as the disruption controller keeps it: expected pods (from
    /// the controllers' scale when known), healthy pods, desired healthy, disruptions allowed.
    pub(super) fn budgets(&mut self, namespace: &str, pod_labels: &BTreeMap<String, String>) {
        // Only the budgets that select the pod that changed.
        let (_, pdbs, _) = self.store.list(
            "policy/poddisruptionbudgets",
            Some(namespace),
            None,
            None,
            &|_, s| {
                let v = s.value();
                v["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|ml| {
                        !ml.is_empty()
                            && ml.iter().all(|(k, val)| {
                                pod_labels.get(k).map(String::as_str) == val.as_str()
                            })
                    })
            },
        );
        for (_, stored) in pdbs {
            let mut pdb = stored.value();
            let Some(ml) = pdb["spec"]["selector"]["matchLabels"].as_object().cloned() else {
                continue;
            };
            if ml.is_empty() {
                continue;
            }
            let (_, members, _) = self
                .store
                .list("/pods", Some(namespace), None, None, &|_, s| {
                    ml.iter()
                        .all(|(k, v)| s.labels.get(k).map(String::as_str) == v.as_str())
                });
            let members: Vec<Value> = members.into_iter().map(|(_, s)| s.value()).collect();
            let mut scale = 0;
            let mut seen = std::collections::BTreeSet::new();
            for m in &members {
                for o in m["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| o["controller"] == true)
                {
                    let key = match o["kind"].as_str() {
                        Some("ReplicaSet") => "apps/replicasets",
                        Some("StatefulSet") => "apps/statefulsets",
                        _ => continue,
                    };
                    let name = o["name"].as_str().unwrap_or_default().to_owned();
                    if seen.insert((key, name.clone())) {
                        scale += self
                            .store
                            .get(key, namespace, &name)
                            .and_then(|c| c.value()["spec"]["replicas"].as_i64())
                            .unwrap_or(0);
                    }
                }
            }
            let expected = i64::try_from(members.len()).unwrap_or(0).max(scale);
            let healthy = i64::try_from(
                members
                    .iter()
                    .filter(|p| {
                        p["metadata"]["deletionTimestamp"].is_null()
                            && p["status"]["conditions"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                    .count(),
            )
            .unwrap_or(0);
            let resolve = |v: &Value, round_up: bool| -> Option<i64> {
                match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => {
                        let p: i64 = s.trim().strip_suffix('%')?.parse().ok()?;
                        Some(if round_up {
                            (p * expected + 99) / 100
                        } else {
                            p * expected / 100
                        })
                    }
                    _ => None,
                }
            };
            let desired = match pdb["spec"].get("maxUnavailable") {
                Some(max) if !max.is_null() => expected - resolve(max, true).unwrap_or(0),
                _ => resolve(&pdb["spec"]["minAvailable"], true).unwrap_or(1),
            };
            let status = json!({"currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": (healthy - desired).max(0),
                "expectedPods": expected, "observedGeneration": pdb["metadata"]["generation"].clone()});
            if pdb["status"]["currentHealthy"] == status["currentHealthy"]
                && pdb["status"]["disruptionsAllowed"] == status["disruptionsAllowed"]
                && pdb["status"]["expectedPods"] == status["expectedPods"]
                && pdb["status"]["desiredHealthy"] == status["desiredHealthy"]
            {
                continue;
            }
            pdb["status"] = status;
            let _ = self
                .store
                .update("policy/poddisruptionbudgets", pdb, Some(stored.rv), false);
        }
    }
}
