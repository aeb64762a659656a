//! The disruption controller: a PodDisruptionBudget's status from the pods it selects.
//!
//! ```text
//! pod changed ──► the budgets selecting it ─┐
//! budget spec changed (generation) ─────────┴─► status: expectedPods, currentHealthy,
//!     desiredHealthy, disruptionsAllowed, observedGeneration, the DisruptionAllowed
//!     condition, and disruptedPods (kept while an evicted pod is not yet terminating)
//! ```

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Model;
use crate::store::{Stored, now_rfc3339};

impl Model {
    /// The budgets in a namespace that select a pod with these labels (found through the
    /// store's selector index).
    pub(super) fn budgets(&mut self, namespace: &str, pod_labels: &BTreeMap<String, String>) {
        let (_, pdbs, _) = self.store.budgets_for(namespace, pod_labels);
        for (_, stored) in pdbs {
            self.budget_status(namespace, &stored);
        }
    }

    /// One budget, after a change of its spec.
    pub(super) fn budget(&mut self, namespace: &str, name: &str) {
        if let Some(stored) = self
            .store
            .get("policy/poddisruptionbudgets", namespace, name)
        {
            self.budget_status(namespace, &stored);
        }
    }

    /// PodDisruptionBudget status as the disruption controller keeps it: expected pods (from
    /// the controllers' scale when known), healthy pods, desired healthy, disruptions allowed.
    fn budget_status(&mut self, namespace: &str, stored: &Stored) {
        {
            let mut pdb = stored.value();
            let Some(ml) = pdb["spec"]["selector"]["matchLabels"].as_object().cloned() else {
                return;
            };
            if ml.is_empty() {
                return;
            }
            let (_, members, _) = self.store.pods_matching(namespace, &ml);
            // The members' controllers and readiness, from what the store keeps beside each
            // object: a budget of a large app decodes none of its pods.
            let mut scale = 0;
            let mut seen = std::collections::BTreeSet::new();
            for (_, m) in &members {
                let Some(owner) = m.controller.as_deref() else {
                    continue;
                };
                let key = match owner.0.as_str() {
                    "ReplicaSet" => "apps/replicasets",
                    "StatefulSet" => "apps/statefulsets",
                    _ => continue,
                };
                if seen.insert((key, owner.1.as_str())) {
                    scale += self
                        .store
                        .get(key, namespace, &owner.1)
                        .and_then(|c| c.value()["spec"]["replicas"].as_i64())
                        .unwrap_or(0);
                }
            }
            let expected = i64::try_from(members.len()).unwrap_or(0).max(scale);
            let healthy = i64::try_from(
                members
                    .iter()
                    .filter(|(_, p)| !p.terminating && p.ready)
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
            // Evicted pods not yet terminating stay in disruptedPods and are not counted
            // healthy.
            let disrupted: serde_json::Map<String, Value> = pdb["status"]["disruptedPods"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(p, _)| {
                    members
                        .iter()
                        .any(|((_, name), m)| name == *p && !m.terminating)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let healthy = healthy - i64::try_from(disrupted.len()).unwrap_or(0);
            let allowed = (healthy - desired).max(0);
            let generation = pdb["metadata"]["generation"].clone();
            let (condition_status, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            let old_condition = pdb["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionAllowed"))
                .cloned();
            let since = match &old_condition {
                Some(c) if c["status"] == condition_status => c["lastTransitionTime"].clone(),
                _ => json!(now_rfc3339()),
            };
            let mut status = json!({"currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed,
                "expectedPods": expected, "observedGeneration": generation,
                "conditions": [{"type": "DisruptionAllowed", "status": condition_status, "observedGeneration": generation,
                                "lastTransitionTime": since, "reason": reason, "message": ""}]});
            if !disrupted.is_empty() {
                status["disruptedPods"] = Value::Object(disrupted);
            }
            if pdb["status"] == status {
                return;
            }
            pdb["status"] = status;
            let _ = self
                .store
                .update("policy/poddisruptionbudgets", pdb, Some(stored.rv), false);
        }
    }
}
