//! Answers as the API server writes them: `Status` objects with a reason and details, JSON
//! bodies, and a store error turned into the HTTP code a real server gives.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{registry::Resource, store::StoreError};

/// A `Status` failure body, shaped as the API server sends it (an empty `reason` is left out,
/// as in the eviction subresource's 500). No `Retry-After`: the eviction's 429 carries none;
/// see [`throttled`] for the one that does.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    if reason.is_empty()
        && let Some(o) = body.as_object_mut()
    {
        o.remove("reason");
    }
    if let Some(d) = details {
        body["details"] = d;
    }
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A 429 of API priority and fairness: unlike the eviction's, it says when to come back.
pub fn throttled(message: &str) -> Response {
    let mut resp = status(429, "TooManyRequests", message, None);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// `pods`, or `ciliumnodeconfigs.cilium.io`: how the API server names a resource in messages.
pub(super) fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_owned()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

pub(super) fn store_error(e: &StoreError, r: &Resource) -> Response {
    // `group` is left out for the core group, as on the wire.
    let details = |name: &str| {
        let mut d = json!({"name": name, "group": r.group, "kind": r.plural});
        if r.group.is_empty()
            && let Some(o) = d.as_object_mut()
        {
            o.remove("group");
        }
        Some(d)
    };
    match e {
        StoreError::NotFound { name, .. } => status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", qualified(r)),
            details(name),
        ),
        StoreError::AlreadyExists { name, .. } => status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", qualified(r)),
            details(name),
        ),
        StoreError::Conflict { name, reason, .. } => status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": {reason}",
                qualified(r)
            ),
            details(name),
        ),
        StoreError::Invalid { name, reason, .. } => status(
            422,
            "Invalid",
            &format!("{} \"{name}\" is invalid: {reason}", r.kind),
            Some(
                json!({"name": name, "group": r.group, "kind": r.kind, "causes": [{"reason": "FieldValueRequired", "message": reason}]}),
            ),
        ),
        StoreError::Gone { requested, floor } => status(
            410,
            "Expired",
            &format!("too old resource version: {requested} ({floor})"),
            None,
        ),
    }
}

pub(super) fn ok_json(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(super) fn raw_json(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

pub(super) fn body_json(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice::<Value>(body)
        .or_else(|_| serde_yaml::from_slice::<Value>(body))
        .map_err(|e| {
            status(
                400,
                "BadRequest",
                &format!("the body of the request could not be decoded: {e}"),
                None,
            )
        })
}
