//! Watches: the events after a resource version, bookmarks, and faults that drop the stream.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde_json::json;

use super::{
    read::selectors,
    response::{status, store_error},
    state::{Faults, State},
};
use crate::{
    registry::Resource,
    store::{StoreError, Stored},
};

pub(super) fn watch(
    state: &State,
    r: &'static Resource,
    namespace: Option<&str>,
    q: &BTreeMap<String, String>,
    f: &Faults,
) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let key = r.storage_key();
    let requested = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse::<u64>().ok());
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let timeout = f.drop_watch_after.map_or(timeout, |d| d.min(timeout));
    let ns = namespace.map(str::to_owned);
    let node = fields.node_equals().filter(|_| r.plural == "pods");
    let matches = {
        let ns = ns.clone();
        move |e_ns: &str, name: &str, s: &Stored| {
            ns.as_deref().is_none_or(|n| n == e_ns)
                && labels.matches(&s.labels)
                && fields.matches(e_ns, name, s)
        }
    };
    let line = |type_: &str, bytes: &[u8]| {
        let mut out = Vec::with_capacity(bytes.len() + 32);
        out.extend_from_slice(format!("{{\"type\":\"{type_}\",\"object\":").as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let from_rv = match requested {
        Some(rv) => rv,
        None => {
            // No version: the current state as ADDED events first, then changes. A node's
            // pods (`spec.nodeName=X`) come from the node index, not from every pod.
            let filter = |k: &(String, String), s: &Stored| matches(&k.0, &k.1, s);
            let (rv, items, _) = match &node {
                Some(node) => state.store.pods_on_node(node, &filter),
                None => state.store.list(&key, namespace, None, None, &filter),
            };
            initial.extend(items.iter().map(|(_, s)| line("ADDED", &s.bytes())));
            rv
        }
    };
    let (backlog, rx) = match state.store.watch_from(Some(&key), node.as_deref(), from_rv) {
        Ok(x) => x,
        Err(StoreError::Gone { requested, floor }) => {
            let err = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {requested} ({floor})"), "reason": "Expired", "code": 410}});
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{err}\n"),
            )
                .into_response();
        }
        Err(e) => return store_error(&e, r),
    };
    // The newest version this watcher has been given or passed over: its bookmarks say no more
    // than that, as the API server's come in order with the events.
    let seen = Arc::new(AtomicU64::new(
        backlog.last().map_or(from_rv, |e| e.rv.max(from_rv)),
    ));
    for e in backlog {
        if matches(&e.namespace, &e.name, &e.object) {
            initial.push(line(e.type_, &e.object.bytes()));
        }
    }
    // WatchList (sendInitialEvents=true): the end of the initial state is marked by a bookmark
    // annotated k8s.io/initial-events-end, which clients wait for before they call it synced.
    if q.get("sendInitialEvents").is_some_and(|v| v == "true") {
        let b = json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": from_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
        initial.push(Bytes::from(format!("{b}\n")));
    }
    let key2 = key.clone();
    let matches2 = matches.clone();
    // A watcher that falls behind the event buffer is closed, as the API server's watch cache
    // closes an unresponsive one; the client watches again from the last version it saw.
    // Going on would skip the events it missed without it ever knowing.
    let seen2 = seen.clone();
    let live = tokio_stream::wrappers::BroadcastStream::new(rx)
        .take_while(|e| futures::future::ready(e.is_ok()))
        .filter_map(move |e| {
            let out = match e {
                Ok(e) if e.rv > from_rv => {
                    seen2.fetch_max(e.rv, Ordering::Relaxed);
                    (e.key == key2 && matches2(&e.namespace, &e.name, &e.object))
                        .then(|| Some(line(e.type_, &e.object.bytes())))
                }
                _ => None,
            };
            futures::future::ready(out)
        })
        // The end of the live events (a lagged watcher) ends the response, bookmarks and all.
        .chain(futures::stream::once(futures::future::ready(None)));
    let api_version = r.api_version();
    let kind = r.kind;
    let bookmark_stream = futures::stream::unfold((), move |()| {
        let seen = seen.clone();
        let api_version = api_version.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let rv = seen.load(Ordering::Relaxed);
            let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}}});
            Some((Some(Bytes::from(format!("{b}\n"))), ()))
        }
    })
    .filter(move |_| futures::future::ready(bookmarks));
    let events = futures::stream::iter(initial).chain(
        futures::stream::select(live, bookmark_stream)
            .take_while(|b| futures::future::ready(b.is_some()))
            .filter_map(futures::future::ready),
    );
    let deadline = tokio::time::sleep(timeout);
    let body = events
        .take_until(deadline)
        .map(Ok::<Bytes, std::convert::Infallible>);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            status(
                500,
                "InternalError",
                "cannot build the watch response",
                None,
            )
        })
}
