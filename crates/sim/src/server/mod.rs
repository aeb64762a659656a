//! The HTTP side: URL routing, discovery, verbs, Status errors, watches, faults.
//!
//! ```text
//! /version /api /apis /api/v1 /apis/G/V            discovery, built from the registry
//! /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]]      core resources
//! /apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]    everything else
//!   GET (one, LIST with selectors and paging, ?watch=true)  POST  PUT  PATCH  DELETE
//!   pods/NAME/eviction  pods/NAME/log  */status
//! every request first passes auth::gate (Bearer tokens of ServiceAccounts against RBAC;
//! no token: the admin)
//! ```

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::sync::Arc;

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use self::{
    delete::delete,
    eviction::evict,
    read::list,
    response::{ok_json, raw_json, store_error},
    routing::{Route, query, route},
    watch::watch,
    write::{create, patch_object, replace},
};
use crate::store::StoreError;

pub mod auth;
mod delete;
mod eviction;
mod openapi;
mod read;
mod response;
mod routing;
mod scale;
mod state;
mod table;
mod validate;
mod watch;
mod write;

pub use response::{status, throttled};
pub use state::{Faults, State};

/// The one handler behind every URL.
pub async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    {
        let mut reqs = state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reqs.len() < 1_000_000 {
            reqs.push((method.to_string(), uri.to_string()));
            state
                .arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(std::time::Instant::now());
        }
    }
    if let Some(refused) = auth::gate(&state, &method, &uri, &headers, &body) {
        return refused;
    }
    let target = match route(&path) {
        Route::Discovery(v) => return ok_json(StatusCode::OK, &v),
        Route::NotFound => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some(
                    json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
                ),
            );
        }
        Route::Resource(t) => t,
    };
    let f = state.faults();
    if !f.latency.is_empty() {
        let verb = match (&method, target.name.as_deref(), target.sub.as_deref()) {
            (&Method::GET, None, _)
                if uri
                    .query()
                    .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1")) =>
            {
                "WATCH"
            }
            (&Method::GET, None, _) => "LIST",
            (&Method::POST, Some(_), Some("eviction")) => "EVICT",
            (m, _, _) => m.as_str(),
        };
        if let Some((min, max)) = f.latency.get(verb).or_else(|| f.latency.get("*")) {
            let spread = max.saturating_sub(*min);
            tokio::time::sleep(*min + spread.mul_f64(state.roll())).await;
        }
    }
    let roll = state.roll();
    if roll < f.error_500 {
        return status(
            500,
            "InternalError",
            "Internal error occurred: injected fault",
            None,
        );
    }
    if roll < f.error_500 + f.error_503 {
        return status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request (injected fault)",
            None,
        );
    }
    if roll < f.error_500 + f.error_503 + f.error_429 {
        return throttled(
            "the server has received too many requests and has asked us to try again later (injected fault)",
        );
    }
    let q = query(&uri);
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    let r = target.resource;
    let key = r.storage_key();
    let ns = target.namespace.clone().unwrap_or_default();
    match (&method, target.name.as_deref(), target.sub.as_deref()) {
        (&Method::GET, None, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&state, r, target.namespace.as_deref(), &q, &f)
        }
        (&Method::GET, None, _) => list(&state, r, target.namespace.as_deref(), &q, &headers),
        (&Method::GET, Some(name), None | Some("status")) => match state.store.get(&key, &ns, name)
        {
            Some(s) => raw_json(s.bytes()),
            None => store_error(
                &StoreError::NotFound {
                    kind: r.plural.into(),
                    name: name.into(),
                },
                r,
            ),
        },
        (&Method::GET, Some(name), Some("log")) if r.plural == "pods" => {
            match state.store.get(&key, &ns, name) {
                Some(_) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain")],
                    state.store.log(&ns, name).unwrap_or_default(),
                )
                    .into_response(),
                None => store_error(
                    &StoreError::NotFound {
                        kind: r.plural.into(),
                        name: name.into(),
                    },
                    r,
                ),
            }
        }
        (&Method::GET, Some(name), Some("scale")) if r.subresources.contains(&"scale") => {
            scale::get(&state, r, &ns, name)
        }
        (&Method::PUT, Some(name), Some("scale")) if r.subresources.contains(&"scale") => {
            scale::write(&state, r, &ns, name, None, &body, dry_run)
        }
        (&Method::PATCH, Some(name), Some("scale")) if r.subresources.contains(&"scale") => {
            scale::write(&state, r, &ns, name, Some(&headers), &body, dry_run)
        }
        (&Method::POST, None, None) => create(&state, r, &ns, &body, dry_run, &q),
        (&Method::POST, Some(name), Some("eviction")) if r.plural == "pods" => {
            evict(&state, &ns, name, &body, dry_run)
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            if roll < f.conflict {
                return store_error(&StoreError::Conflict { kind: r.plural.into(), name: name.into(), reason: "the object has been modified; please apply your changes to the latest version and try again (injected fault)".into() }, r);
            }
            replace(&state, r, &ns, name, sub, &body, dry_run, &q)
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            if roll < f.conflict
                && !headers
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|c| c.to_str().is_ok_and(|c| c.contains("apply")))
            {
                return store_error(&StoreError::Conflict { kind: r.plural.into(), name: name.into(), reason: "the object has been modified; please apply your changes to the latest version and try again (injected fault)".into() }, r);
            }
            patch_object(&state, r, &ns, name, sub, &headers, &body, dry_run, &q)
        }
        (&Method::DELETE, Some(name), None) => delete(&state, r, &ns, name, &body, &q, dry_run),
        _ => status(
            405,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource: {method} {path}"
            ),
            None,
        ),
    }
}
