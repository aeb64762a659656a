//! The `Table` form of a LIST (`Accept: application/json;as=Table`), as kubectl asks for it.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::response::ok_json;
use crate::{registry::Resource, store::Stored};

pub(super) fn age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
    else {
        return "<unknown>".into();
    };
    let secs = std::time::SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `kubectl get`'s server-side printing: a `meta.k8s.io/v1` Table.
pub(super) fn table(
    r: &Resource,
    items: &[((String, String), Stored)],
    rv: u64,
    continue_token: Option<String>,
) -> Response {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    let extra: &[&str] = match r.plural {
        "pods" => &["Ready", "Status", "Restarts", "IP", "Node"],
        "nodes" => &["Status", "Roles", "Version"],
        "daemonsets" => &[
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
        ],
        "deployments" => &["Ready", "Up-to-date", "Available"],
        "replicasets" => &["Desired", "Current", "Ready"],
        "statefulsets" => &["Ready"],
        _ => &[],
    };
    for c in extra {
        columns.push(
            json!({"name": c, "type": "string", "format": "", "description": c, "priority": 0}),
        );
    }
    columns.push(
        json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}),
    );
    let rows: Vec<Value> = items
        .iter()
        .map(|(_, s)| {
            let v = s.value();
            let name = v["metadata"]["name"].clone();
            let mut cells = vec![name];
            match r.plural {
                "pods" => {
                    let statuses = v["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
                    let total = v["spec"]["containers"].as_array().map_or(0, Vec::len);
                    let phase = if v["metadata"]["deletionTimestamp"].is_string() { "Terminating".to_owned() } else {
                        statuses.iter().find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_owned)).unwrap_or_else(|| v["status"]["phase"].as_str().unwrap_or("Pending").to_owned())
                    };
                    let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
                    cells.extend([json!(format!("{ready}/{total}")), json!(phase), json!(restarts), v["status"]["podIP"].clone(), v["spec"]["nodeName"].clone()]);
                }
                "nodes" => {
                    let ready = v["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let mut st = if ready { "Ready".to_owned() } else { "NotReady".to_owned() };
                    if v["spec"]["unschedulable"] == true {
                        st.push_str(",SchedulingDisabled");
                    }
                    let roles: Vec<String> = s.labels.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned)).collect();
                    cells.extend([json!(st), json!(if roles.is_empty() { "<none>".to_owned() } else { roles.join(",") }), v["status"]["nodeInfo"]["kubeletVersion"].clone()]);
                }
                "daemonsets" => {
                    let n = |f: &str| v["status"][f].as_i64().unwrap_or(0);
                    let selector = v["spec"]["template"]["spec"]["nodeSelector"].as_object().filter(|m| !m.is_empty()).map_or_else(|| "<none>".to_owned(), |m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","));
                    cells.extend([json!(n("desiredNumberScheduled")), json!(n("currentNumberScheduled")), json!(n("numberReady")), json!(n("updatedNumberScheduled")), json!(n("numberAvailable")), json!(selector)]);
                }
                "deployments" => {
                    let n = |f: &str| v["status"][f].as_i64().unwrap_or(0);
                    let want = v["spec"]["replicas"].as_i64().unwrap_or(1);
                    cells.extend([json!(format!("{}/{want}", n("readyReplicas"))), json!(n("updatedReplicas")), json!(n("availableReplicas"))]);
                }
                "replicasets" => {
                    let n = |f: &str| v["status"][f].as_i64().unwrap_or(0);
                    cells.extend([json!(v["spec"]["replicas"].as_i64().unwrap_or(1)), json!(n("replicas")), json!(n("readyReplicas"))]);
                }
                "statefulsets" => {
                    let want = v["spec"]["replicas"].as_i64().unwrap_or(1);
                    cells.push(json!(format!("{}/{want}", v["status"]["readyReplicas"].as_i64().unwrap_or(0))));
                }
                _ => {}
            }
            cells.push(json!(age(v["metadata"]["creationTimestamp"].as_str())));
            let mut meta = v["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    ok_json(
        StatusCode::OK,
        &json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows}),
    )
}
