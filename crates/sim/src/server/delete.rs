//! DELETE: preconditions, finalizers, a pod's graceful termination.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::collections::BTreeMap;

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{
    read::parse_rv,
    response::{ok_json, store_error},
    state::State,
};
use crate::{
    registry::Resource,
    store::{StoreError, now_rfc3339},
};

pub(super) fn delete(
    state: &State,
    r: &'static Resource,
    ns: &str,
    name: &str,
    body: &[u8],
    q: &BTreeMap<String, String>,
    dry_run: bool,
) -> Response {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
    };
    let key = r.storage_key();
    let Some(current) = state.store.get(&key, ns, name) else {
        return store_error(
            &StoreError::NotFound {
                kind: r.plural.into(),
                name: name.into(),
            },
            r,
        );
    };
    let cur = current.value();
    if let Some(uid) = opts["preconditions"]["uid"].as_str()
        && cur["metadata"]["uid"].as_str() != Some(uid)
    {
        return store_error(
            &StoreError::Conflict {
                kind: r.plural.into(),
                name: name.into(),
                reason: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    cur["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            },
            r,
        );
    }
    if let Some(rv) = opts["preconditions"]["resourceVersion"].as_str()
        && parse_rv(Some(rv)) != Some(current.rv)
    {
        return store_error(
            &StoreError::Conflict {
                kind: r.plural.into(),
                name: name.into(),
                reason: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current.rv
                ),
            },
            r,
        );
    }
    let grace = opts["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    if r.plural == "pods" {
        return delete_pod(state, r, ns, name, cur, grace, dry_run);
    }
    match state.store.delete(&key, ns, name, dry_run) {
        Ok(_) => {
            let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": r.group, "kind": r.plural, "uid": cur["metadata"]["uid"]}});
            // No `group` for the core group, as on the wire.
            if r.group.is_empty()
                && let Some(d) = body["details"].as_object_mut()
            {
                d.remove("group");
            }
            ok_json(StatusCode::OK, &body)
        }
        Err(e) => store_error(&e, r),
    }
}

/// Graceful pod deletion: the pod gets a deletionTimestamp and goes away after its grace
/// period (the model's kubelet decides when; without one, after the configured termination
/// time, or at once).
pub(super) fn delete_pod(
    state: &State,
    r: &'static Resource,
    ns: &str,
    name: &str,
    mut cur: Value,
    grace: Option<i64>,
    dry_run: bool,
) -> Response {
    let key = r.storage_key();
    let delay = *state
        .pod_termination
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let grace = grace
        .or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    if dry_run {
        return ok_json(StatusCode::OK, &cur);
    }
    let spread = *state
        .termination_spread
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let delay = delay.map(|d| {
        if spread > 0.0 {
            // Two uniform draws for one normal one, as in the model.
            let mut seed = (state.roll() * 1e15) as u64 | 1;
            d.mul_f64(crate::model::lognormal_factor(&mut seed, spread))
        } else {
            d
        }
    });
    match delay {
        Some(d) if grace > 0 && !cur["spec"]["nodeName"].is_null() => {
            if cur["metadata"]["deletionTimestamp"].is_null() {
                cur["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                cur["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                match state.store.update(&key, cur.clone(), None, false) {
                    Ok(v) => cur = v,
                    Err(e) => return store_error(&e, r),
                }
                let store = state.store.clone();
                let (ns, name, uid) = (
                    ns.to_owned(),
                    name.to_owned(),
                    cur["metadata"]["uid"].clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    if store
                        .get(&key, &ns, &name)
                        .is_some_and(|s| s.value()["metadata"]["uid"] == uid)
                    {
                        let _ = store.delete(&key, &ns, &name, false);
                    }
                });
            }
            ok_json(StatusCode::OK, &cur)
        }
        _ => match state.store.delete(&key, ns, name, false) {
            Ok(v) => ok_json(StatusCode::OK, &v),
            Err(e) => store_error(&e, r),
        },
    }
}
