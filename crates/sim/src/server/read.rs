//! GET of a collection: LIST with label and field selectors, paging and resource versions.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::collections::BTreeMap;

use axum::{
    http::{HeaderMap, header},
    response::Response,
};

use super::{
    response::{raw_json, status},
    state::State,
    table::table,
};
use crate::{
    registry::Resource,
    selectors::{FieldSelector, LabelSelector},
    store::Stored,
};

pub(super) fn parse_rv(s: Option<&str>) -> Option<u64> {
    s.and_then(|s| s.parse().ok())
}

pub(super) fn selectors(
    q: &BTreeMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), Response> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| status(400, "BadRequest", &e, None))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| status(400, "BadRequest", &e, None))?;
    Ok((labels, fields))
}

pub(super) fn list(
    state: &State,
    r: &'static Resource,
    namespace: Option<&str>,
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match token
            .split_once('/')
            .and_then(|(rv, rest)| Some((rv.parse::<u64>().ok()?, rest.split_once('/')?)))
        {
            Some((_, (ns, name))) => Some((ns.to_owned(), name.to_owned())),
            None => {
                return status(
                    400,
                    "BadRequest",
                    "continue key is not valid: malformed token",
                    None,
                );
            }
        },
        None => None,
    };
    let filter = |k: &(String, String), s: &Stored| -> bool {
        labels.matches(&s.labels) && fields.matches(&k.0, &k.1, s)
    };
    // `spec.nodeName=X` on pods reads the node index instead of every pod (in the same
    // order, so pages and continue tokens are those of a full scan).
    let (rv, items, more) = match fields.node_equals() {
        Some(node) if r.plural == "pods" => {
            let (rv, items, _) = state.store.pods_on_node(&node, &filter);
            let mut items: Vec<_> = items
                .into_iter()
                .filter(|(k, _)| namespace.is_none_or(|ns| k.0 == ns))
                .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
                .collect();
            let more = limit.is_some_and(|l| items.len() > l);
            if let Some(l) = limit {
                items.truncate(l);
            }
            (rv, items, more)
        }
        _ => state
            .store
            .list(&r.storage_key(), namespace, after.as_ref(), limit, &filter),
    };
    let continue_token = if more {
        items
            .last()
            .map(|((ns, name), _)| format!("{rv}/{ns}/{name}"))
    } else {
        None
    };
    let wants_table = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    if wants_table {
        return table(r, &items, rv, continue_token);
    }
    // Assemble the list from the stored bytes without decoding them.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"", r.kind, r.api_version()).as_bytes());
    if let Some(c) = &continue_token {
        out.extend_from_slice(format!(",\"continue\":\"{c}\"").as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, (_, s)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&s.bytes());
    }
    out.extend_from_slice(b"]}");
    raw_json(out)
}
