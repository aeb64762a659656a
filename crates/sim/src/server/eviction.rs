//! The eviction subresource: PodDisruptionBudgets checked the way the API server does.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{
    delete::delete_pod,
    response::{ok_json, status, store_error},
    state::State,
};
use crate::{
    registry::{self, RESOURCES},
    store::{StoreError, now_rfc3339},
};

pub(super) fn pod_healthy(v: &Value) -> bool {
    v["metadata"]["deletionTimestamp"].is_null()
        && v["status"]["phase"] == "Running"
        && v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub(super) fn resolve(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let p: i64 = s.trim().strip_suffix('%')?.parse().ok()?;
            Some(if round_up {
                (p * total + 99) / 100
            } else {
                p * total / 100
            })
        }
        _ => None,
    }
}

/// The eviction subresource, with the disruption controller's arithmetic.
pub(super) fn evict(state: &State, ns: &str, name: &str, body: &[u8], dry_run: bool) -> Response {
    let _one_at_a_time = state
        .evictions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pods = registry::find("", "v1", "pods").unwrap_or(&RESOURCES[1]);
    let Some(pod) = state.store.get("/pods", ns, name) else {
        return store_error(
            &StoreError::NotFound {
                kind: "pods".into(),
                name: name.into(),
            },
            pods,
        );
    };
    let mut pod_v = pod.value();
    let opts: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    let grace = opts["deleteOptions"]["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| opts["delete_options"]["gracePeriodSeconds"].as_i64());
    // Terminating pods and pods that are not healthy can always be evicted.
    if pod_v["metadata"]["deletionTimestamp"].is_null() && pod_healthy(&pod_v) {
        // Only the budgets whose matchLabels the pod has are decoded.
        let (_, pdbs, _) = state.store.budgets_for(ns, &pod.labels);
        let matching: Vec<Value> = pdbs
            .iter()
            .map(|(_, s)| s.value())
            .filter(|pdb| {
                let sel = &pdb["spec"]["selector"];
                let ml = sel["matchLabels"].as_object();
                let has_any = ml.is_some_and(|m| !m.is_empty())
                    || sel["matchExpressions"]
                        .as_array()
                        .is_some_and(|e| !e.is_empty());
                has_any
                    && ml
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| pod.labels.get(k).map(String::as_str) == v.as_str())
            })
            .collect();
        if matching.len() > 1 {
            // The real answer carries no reason.
            return status(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                None,
            );
        }
        if let Some(pdb) = matching.first() {
            let ml = pdb["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let (_, members, _) = state.store.pods_matching(ns, &ml);
            // Like the disruption controller: expected pods come from the controllers' scale
            // when known (a pod that was evicted and not yet replaced still counts).
            let mut controllers = std::collections::BTreeSet::new();
            for (_, m) in &members {
                let mv = m.value();
                for o in mv["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if o["controller"] == true {
                        controllers.insert((
                            o["kind"].as_str().unwrap_or_default().to_owned(),
                            o["name"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            let scale: i64 = controllers
                .iter()
                .filter_map(|(kind, cname)| {
                    let key = match kind.as_str() {
                        "ReplicaSet" => "apps/replicasets",
                        "StatefulSet" => "apps/statefulsets",
                        _ => return None,
                    };
                    state.store.get(key, ns, cname)?.value()["spec"]["replicas"].as_i64()
                })
                .sum();
            let expected = i64::try_from(members.len()).unwrap_or(i64::MAX).max(scale);
            let healthy = i64::try_from(
                members
                    .iter()
                    .filter(|(_, s)| pod_healthy(&s.value()))
                    .count(),
            )
            .unwrap_or(0);
            let desired = if let Some(max) = pdb["spec"].get("maxUnavailable") {
                expected - resolve(max, expected, true).unwrap_or(0)
            } else {
                resolve(&pdb["spec"]["minAvailable"], expected, true).unwrap_or(1)
            };
            // Pods evicted but not yet terminating still count against the budget.
            let disrupted = pdb["status"]["disruptedPods"].as_object().map_or(0, |d| {
                d.keys()
                    .filter(|p| {
                        members
                            .iter()
                            .any(|((_, n), m)| n == *p && pod_healthy(&m.value()))
                    })
                    .count()
            });
            let healthy = healthy - i64::try_from(disrupted).unwrap_or(0);
            if healthy - desired <= 0 {
                let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or_default();
                return status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    Some(
                        json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")}]}),
                    ),
                );
            }
        }
    }
    if !dry_run {
        // As the API server does before deleting: the budget records the disruption, the pod
        // gets its DisruptionTarget condition.
        note_disruption(state, ns, name, &pod.labels);
        pod_v = disruption_target(state, ns, name).unwrap_or(pod_v);
    }
    if dry_run {
        return ok_json(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        );
    }
    let resp = delete_pod(state, pods, ns, name, pod_v, grace, false);
    if resp.status().is_success() {
        state
            .evicted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{ns}/{name}"));
        ok_json(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    } else {
        resp
    }
}

/// The pod's `DisruptionTarget` condition, as the eviction writes it.
fn disruption_target(state: &State, ns: &str, name: &str) -> Option<Value> {
    let s = state.store.get("/pods", ns, name)?;
    let mut pod = s.value();
    let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting", "lastTransitionTime": now_rfc3339()});
    match pod["status"]["conditions"].as_array_mut() {
        Some(c) => c.push(condition),
        None => pod["status"]["conditions"] = json!([condition]),
    }
    state.store.update("/pods", pod, Some(s.rv), false).ok()
}

/// The budget over the pod records it in `disruptedPods` and allows one disruption less.
fn note_disruption(
    state: &State,
    ns: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) {
    // The budgets selecting the pod by matchLabels (the selector index finds the candidates).
    let (_, pdbs, _) = state.store.budgets_for(ns, labels);
    let pdbs = pdbs
        .into_iter()
        .filter(|(_, s)| s.match_labels.as_deref().is_some_and(|ml| !ml.is_empty()));
    for (_, s) in pdbs {
        let mut pdb = s.value();
        pdb["status"]["disruptedPods"][name] = json!(now_rfc3339());
        let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
        pdb["status"]["disruptionsAllowed"] = json!((allowed - 1).max(0));
        let _ = state
            .store
            .update("policy/poddisruptionbudgets", pdb, Some(s.rv), false);
    }
}
