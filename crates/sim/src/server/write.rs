//! POST, PUT and PATCH: identity checks, the status subresource split, optimistic concurrency.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::collections::BTreeMap;

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    read::parse_rv,
    response::{body_json, ok_json, status, store_error},
    state::State,
    validate::{self, Directive},
};
use crate::{
    ownership,
    patch::{self, PatchType},
    registry::Resource,
    store::{StoreError, now_rfc3339},
};

pub(super) fn check_identity(r: &Resource, v: &mut Value, ns: &str) -> Result<(), Response> {
    if let Some(kind) = v["kind"].as_str()
        && kind != r.kind
    {
        return Err(status(
            400,
            "BadRequest",
            &format!("the object provided is of kind {kind}, expected {}", r.kind),
            None,
        ));
    }
    v["kind"] = json!(r.kind);
    v["apiVersion"] = json!(r.api_version());
    if r.namespaced {
        match v["metadata"]["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(status(
                    400,
                    "BadRequest",
                    &format!(
                        "the namespace of the provided object does not match the namespace sent on the request ({n} vs {ns})"
                    ),
                    None,
                ));
            }
            _ => v["metadata"]["namespace"] = json!(ns),
        }
    }
    Ok(())
}

pub(super) fn create(
    state: &State,
    r: &'static Resource,
    ns: &str,
    body: &[u8],
    dry_run: bool,
    q: &BTreeMap<String, String>,
) -> Response {
    let mut v = match body_json(body) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if let Err(resp) = check_identity(r, &mut v, ns) {
        return resp;
    }
    if let Some(m) = q.get("fieldManager") {
        patch::record_manager(&mut v, m, "Update", None, &now_rfc3339());
    }
    if r.plural == "pods" && v["status"].get("phase").is_none() {
        v["status"]["phase"] = json!("Pending");
    }
    created_status(r, &mut v);
    let warnings = match validated(r, &v, None, q) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    match state.store.create(&r.storage_key(), v, dry_run) {
        Ok(v) => validate::warn(ok_json(StatusCode::CREATED, &v), &warnings),
        Err(e) => store_error(&e, r),
    }
}

/// Server-side field validation of an object about to be stored (see [`validate`]). An
/// object that was stored undecodable (a dump's or a synthetic cluster's controller without a
/// template) is not refused for what it already was.
fn validated(
    r: &Resource,
    v: &Value,
    old: Option<&Value>,
    q: &BTreeMap<String, String>,
) -> Result<Vec<String>, Response> {
    let directive = Directive::parse(q.get("fieldValidation"))?;
    match validate::check(r, v, directive) {
        Err(_) if old.is_some_and(|o| validate::check(r, o, Directive::Ignore).is_err()) => {
            Ok(Vec::new())
        }
        other => other,
    }
}

/// What the API server's create strategies and admission put on a new object: a DaemonSet's
/// and a PodDisruptionBudget's status start from zero (the fields without `omitempty` only),
/// and a Node is created with the `node.kubernetes.io/not-ready:NoSchedule` taint
/// (TaintNodesByCondition) that the node lifecycle controller removes once it is Ready.
fn created_status(r: &Resource, v: &mut Value) {
    match (r.group, r.plural) {
        ("apps", "daemonsets") => {
            v["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
        }
        ("policy", "poddisruptionbudgets") => {
            v["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
        }
        ("", "nodes") => {
            let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
            let taints = &mut v["spec"]["taints"];
            if !taints.is_array() {
                *taints = json!([]);
            }
            if let Some(t) = taints.as_array_mut()
                && !t.iter().any(|x| x["key"] == taint["key"])
            {
                t.push(taint);
            }
        }
        _ => {}
    }
}

/// Keeps the old status on the main resource and the old everything-but-status on `/status`,
/// as the API server does for resources with a status subresource.
pub(super) fn split_status(r: &Resource, sub: Option<&str>, old: &Value, new: &mut Value) {
    if !r.subresources.contains(&"status") {
        return;
    }
    if sub == Some("status") {
        let st = new.get("status").cloned();
        *new = old.clone();
        if let Some(st) = st {
            new["status"] = st;
        }
    } else if let Some(st) = old.get("status") {
        new["status"] = st.clone();
    }
}

#[allow(clippy::too_many_arguments)] // one request's parts
pub(super) fn replace(
    state: &State,
    r: &'static Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    dry_run: bool,
    q: &BTreeMap<String, String>,
) -> Response {
    let mut v = match body_json(body) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if let Err(resp) = check_identity(r, &mut v, ns) {
        return resp;
    }
    if v["metadata"]["name"].as_str() != Some(name) {
        return status(
            400,
            "BadRequest",
            &format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                v["metadata"]["name"]
            ),
            None,
        );
    }
    let Some(old) = state.store.get(&r.storage_key(), ns, name) else {
        return store_error(
            &StoreError::NotFound {
                kind: r.plural.into(),
                name: name.into(),
            },
            r,
        );
    };
    let expected = parse_rv(v["metadata"]["resourceVersion"].as_str());
    let old_v = old.value();
    split_status(r, sub, &old_v, &mut v);
    let warnings = match validated(r, &v, Some(&old_v), q) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    match state.store.update(&r.storage_key(), v, expected, dry_run) {
        Ok(v) => validate::warn(ok_json(StatusCode::OK, &v), &warnings),
        Err(e) => store_error(&e, r),
    }
}

#[allow(clippy::too_many_arguments)] // one request's parts
pub(super) fn patch_object(
    state: &State,
    r: &'static Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
    q: &BTreeMap<String, String>,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default();
    let Some(kind) = PatchType::from_content_type(ct) else {
        return status(
            415,
            "UnsupportedMediaType",
            "415: Unsupported Media Type",
            Some(json!({})),
        );
    };
    let patch_v = match patch::parse_body(kind, body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string(), None),
    };
    let key = r.storage_key();
    let manager = q.get("fieldManager").cloned();
    let force = q.get("force").is_some_and(|f| f == "true");
    if kind == PatchType::Apply {
        if manager.is_none() {
            return no_field_manager();
        }
        if let Some(body_name) = patch_v["metadata"]["name"].as_str()
            && body_name != name
        {
            return status(
                400,
                "BadRequest",
                &format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                ),
                None,
            );
        }
    }
    let Some(old) = state.store.get(&key, ns, name) else {
        if let (PatchType::Apply, Some(manager)) = (kind, manager) {
            let mut v = json!({});
            if let Err(conflicts) =
                ownership::apply(&mut v, &patch_v, &manager, true, &now_rfc3339())
            {
                return conflict(&conflicts);
            }
            if let Err(resp) = check_identity(r, &mut v, ns) {
                return resp;
            }
            v["metadata"]["name"] = json!(name);
            let warnings = match validated(r, &v, None, q) {
                Ok(w) => w,
                Err(resp) => return resp,
            };
            return match state.store.create(&key, v, dry_run) {
                Ok(v) => validate::warn(ok_json(StatusCode::CREATED, &v), &warnings),
                Err(e) => store_error(&e, r),
            };
        }
        return store_error(
            &StoreError::NotFound {
                kind: r.plural.into(),
                name: name.into(),
            },
            r,
        );
    };
    let old_v = old.value();
    let mut v = old_v.clone();
    if let (PatchType::Apply, Some(m)) = (kind, &manager) {
        if let Err(conflicts) = ownership::apply(&mut v, &patch_v, m, force, &now_rfc3339()) {
            return conflict(&conflicts);
        }
    } else if patch::apply(kind, &mut v, &patch_v).is_err() {
        return status(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            Some(json!({})),
        );
    }
    // A patch may carry a resourceVersion precondition.
    let expected = patch_v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok());
    if let Err(resp) = check_identity(r, &mut v, ns) {
        return resp;
    }
    v["metadata"]["name"] = json!(name);
    split_status(r, sub, &old_v, &mut v);
    if let Some(m) = manager.filter(|_| kind != PatchType::Apply) {
        patch::record_manager(&mut v, &m, "Update", sub, &now_rfc3339());
    }
    // `unschedulable: false` is the default, left out on the wire.
    if r.plural == "nodes"
        && v["spec"]["unschedulable"] == false
        && let Some(spec) = v["spec"].as_object_mut()
    {
        spec.remove("unschedulable");
    }
    // A patch that changes nothing writes nothing: the resourceVersion stays.
    let warnings = match validated(r, &v, Some(&old_v), q) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    if without_times(&v) == without_times(&old_v) {
        return validate::warn(ok_json(StatusCode::OK, &old_v), &warnings);
    }
    match state.store.update(&key, v, expected, dry_run) {
        Ok(v) => validate::warn(ok_json(StatusCode::OK, &v), &warnings),
        Err(e) => store_error(&e, r),
    }
}

/// The 422 of an apply patch without a field manager.
fn no_field_manager() -> Response {
    status(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        Some(
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]}),
        ),
    )
}

/// The 409 of an apply that conflicts with another applier's fields.
fn conflict(conflicts: &[ownership::Conflict]) -> Response {
    let (message, details) = ownership::conflict_message(conflicts);
    status(409, "Conflict", &message, Some(details))
}

/// An object without its managedFields times (a no-op write does not refresh them).
fn without_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(entries) = v["metadata"]["managedFields"].as_array_mut() {
        for e in entries {
            if let Some(e) = e.as_object_mut() {
                e.remove("time");
            }
        }
    }
    v
}
