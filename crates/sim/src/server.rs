//! The HTTP side: URL routing, discovery, verbs, Status errors, watches, faults.
//!
//! ```text
//! /version /api /apis /api/v1 /apis/G/V            discovery, built from the registry
//! /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]]      core resources
//! /apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]    everything else
//!   GET (one, LIST with selectors and paging, ?watch=true)  POST  PUT  PATCH  DELETE
//!   pods/NAME/eviction  pods/NAME/log  */status
//! ```

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{
    patch::{self, PatchType},
    registry::{self, RESOURCES, Resource},
    selectors::{FieldSelector, LabelSelector},
    store::{Store, StoreError, Stored, now_rfc3339},
};

/// Faults injected into requests (not into discovery), per test or per run.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added latency, drawn uniformly from `[min, max]`, by verb: `GET`, `LIST`, `WATCH`,
    /// `POST`, `PUT`, `PATCH`, `DELETE`, `EVICT`, or `*` for every verb without its own entry.
    pub latency: BTreeMap<String, (Duration, Duration)>,
    /// Share of requests answered 500.
    pub error_500: f64,
    /// Share of requests answered 503.
    pub error_503: f64,
    /// Share of requests answered 429 (API priority and fairness).
    pub error_429: f64,
    /// Share of updates (PUT/PATCH) answered 409 Conflict.
    pub conflict: f64,
    /// Watches are closed after this long (a dropped connection).
    pub drop_watch_after: Option<Duration>,
    /// Nodes that go NotReady this long after the faults are set (`cni-migrate sim` only).
    pub not_ready: Vec<(String, Duration)>,
    /// Node faults of the model (`agent-stuck`, `cnc-ignored`), by node (`cni-migrate sim` only).
    pub node_faults: Vec<(String, String)>,
}

impl std::str::FromStr for Faults {
    type Err = String;

    /// `error-500=0.05,error-503=0.01,error-429=0.05,conflict=0.05,latency=0ms-200ms,
    /// latency.EVICT=50ms-1s,drop-watch=5s,not-ready=kind-worker@30s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Faults::default();
        let dur = |v: &str, what: &str| {
            humantime::parse_duration(v)
                .map_err(|e| format!("faults `{what}={v}`: not a duration like 200ms ({e})"))
        };
        let share = |v: &str, what: &str| match v.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(format!(
                "faults `{what}={v}`: expected a share between 0 and 1, e.g. 0.05"
            )),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("faults `{part}`: expected KEY=VALUE"))?;
            match k {
                "error-500" => f.error_500 = share(v, k)?,
                "error-503" => f.error_503 = share(v, k)?,
                "error-429" => f.error_429 = share(v, k)?,
                "conflict" => f.conflict = share(v, k)?,
                "drop-watch" => f.drop_watch_after = Some(dur(v, k)?),
                "not-ready" => {
                    let (node, at) = v.split_once('@').ok_or_else(|| {
                        format!(
                            "faults `{part}`: expected not-ready=NODE@DELAY, e.g. kind-worker@30s"
                        )
                    })?;
                    f.not_ready.push((node.to_owned(), dur(at, k)?));
                }
                "agent-stuck" | "cnc-ignored" => {
                    if v.is_empty() {
                        return Err(format!("faults `{part}`: expected {k}=NODE"));
                    }
                    f.node_faults.push((v.to_owned(), k.to_owned()));
                }
                _ if k == "latency" || k.starts_with("latency.") => {
                    let verb = k.strip_prefix("latency.").unwrap_or("*").to_uppercase();
                    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                    let (lo, hi) = (dur(lo, k)?, dur(hi, k)?);
                    if hi < lo {
                        return Err(format!("faults `{part}`: the range goes down"));
                    }
                    f.latency.insert(verb, (lo, hi));
                }
                other => {
                    return Err(format!(
                        "faults: unknown key `{other}` (known: error-500, error-503, error-429, conflict, latency, latency.VERB, drop-watch, not-ready, agent-stuck, cnc-ignored)"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// What the server shares between requests.
pub struct State {
    /// The objects.
    pub store: Arc<Store>,
    /// Injected faults.
    pub faults: Mutex<Faults>,
    rng: Mutex<u64>,
    /// How long a gracefully deleted pod stays terminating when no model is attached;
    /// `None` deletes at once.
    pub pod_termination: Mutex<Option<Duration>>,
    /// Log-normal sigma of termination times around `pod_termination` (0: exact).
    pub termination_spread: Mutex<f64>,
    /// Every request, as `VERB path` (for the RBAC sync test).
    pub requests: Mutex<Vec<(String, String)>>,
    /// Evictions are decided one at a time, as the API server makes them atomic through the
    /// budget's status (two concurrent evictions must not both spend the last disruption).
    evictions: Mutex<()>,
    /// Every eviction granted, as `namespace/name` (ground truth for reports).
    pub evicted: Mutex<Vec<String>>,
}

impl State {
    /// A new state over a store, with a seed for fault decisions.
    pub fn new(store: Arc<Store>, seed: u64) -> Self {
        Self {
            store,
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(seed | 1),
            pod_termination: Mutex::new(None),
            termination_spread: Mutex::new(0.0),
            requests: Mutex::new(Vec::new()),
            evictions: Mutex::new(()),
            evicted: Mutex::new(Vec::new()),
        }
    }

    fn roll(&self) -> f64 {
        let mut s = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        #[allow(clippy::cast_precision_loss)]
        let x = (*s >> 11) as f64 / (1u64 << 53) as f64;
        x
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A `Status` failure body, shaped as the API server sends it.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if code == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

/// `pods`, or `ciliumnodeconfigs.cilium.io`: how the API server names a resource in messages.
fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_owned()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

fn store_error(e: &StoreError, r: &Resource) -> Response {
    let details = |name: &str| Some(json!({"name": name, "group": r.group, "kind": r.plural}));
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

fn ok_json(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn raw_json(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A resolved resource URL.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Discovery(Value),
    Resource(Target),
    NotFound,
}

fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": registry::verbs(), "shortNames": r.short,
        }));
        for sub in r.subresources {
            let (kind, verbs, g, v) = match *sub {
                "eviction" => ("Eviction", vec!["create"], "policy", "v1"),
                "log" => ("Pod", vec!["get"], "", ""),
                "scale" => ("Scale", vec!["get", "patch", "update"], "autoscaling", "v1"),
                _ => (r.kind, vec!["get", "patch", "update"], "", ""),
            };
            let mut entry = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if !g.is_empty() {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Route::Discovery(
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-cni-migrate-sim", "gitCommit": "sim", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        ["api"] => Route::Discovery(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => Route::Discovery(json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": registry::groups().into_iter().map(|(g, vs)| json!({
                "name": g,
                "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                "preferredVersion": {"groupVersion": format!("{g}/{}", vs[0]), "version": vs[0]},
            })).collect::<Vec<_>>()
        })),
        ["api", v] => api_resource_list("", v).map_or(Route::NotFound, Route::Discovery),
        ["apis", g] => {
            let groups = registry::groups();
            match groups.iter().find(|(name, _)| name == g) {
                Some((g, vs)) => {
                    Route::Discovery(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                    "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                    "preferredVersion": {"groupVersion": format!("{g}/{}", vs[0]), "version": vs[0]}}))
                }
                None => Route::NotFound,
            }
        }
        ["apis", g, v] => api_resource_list(g, v).map_or(Route::NotFound, Route::Discovery),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if group.is_empty() || !plural.is_empty() => {
            (Some((*ns).to_owned()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    // `/api/v1/namespaces/NAME` is the namespace itself.
    let (namespace, rest) = if namespace.is_none() && rest.first() == Some(&"namespaces") {
        (None, rest)
    } else {
        (namespace, rest)
    };
    let Some(plural) = rest.first() else {
        return Route::NotFound;
    };
    let Some(resource) = registry::find(group, version, plural) else {
        return Route::NotFound;
    };
    if resource.namespaced != namespace.is_some() && rest.len() > 1 && resource.namespaced {
        return Route::NotFound;
    }
    Route::Resource(Target {
        resource,
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        sub: rest.get(2).map(|s| (*s).to_owned()),
    })
}

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
        }
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
        return status(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later (injected fault)",
            None,
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
            Some(s) => raw_json(s.bytes.to_vec()),
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
        (&Method::POST, None, None) => create(&state, r, &ns, &body, dry_run, &q),
        (&Method::POST, Some(name), Some("eviction")) if r.plural == "pods" => {
            evict(&state, &ns, name, &body, dry_run)
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            if roll < f.conflict {
                return store_error(&StoreError::Conflict { kind: r.plural.into(), name: name.into(), reason: "the object has been modified; please apply your changes to the latest version and try again (injected fault)".into() }, r);
            }
            replace(&state, r, &ns, name, sub, &body, dry_run)
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

fn parse_rv(s: Option<&str>) -> Option<u64> {
    s.and_then(|s| s.parse().ok())
}

fn selectors(q: &BTreeMap<String, String>) -> Result<(LabelSelector, FieldSelector), Response> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| status(400, "BadRequest", &e, None))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| status(400, "BadRequest", &e, None))?;
    Ok((labels, fields))
}

fn list(
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
    // `spec.nodeName=X` on pods reads the node index instead of every pod.
    let (rv, items, more) = match fields.node_equals() {
        Some(node) if r.plural == "pods" && after.is_none() && limit.is_none() => {
            let (rv, items, more) = state.store.pods_on_node(&node, &filter);
            let items = items
                .into_iter()
                .filter(|(k, _)| namespace.is_none_or(|ns| k.0 == ns))
                .collect();
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
    let mut out =
        Vec::with_capacity(items.iter().map(|(_, s)| s.bytes.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(format!("{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"", r.kind, r.api_version()).as_bytes());
    if let Some(c) = &continue_token {
        out.extend_from_slice(format!(",\"continue\":\"{c}\"").as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, (_, s)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&s.bytes);
    }
    out.extend_from_slice(b"]}");
    raw_json(out)
}

fn age(created: Option<&str>) -> String {
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
fn table(
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

fn watch(
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
            // No version: the current state as ADDED events first, then changes.
            let (rv, items, _) = state.store.list(&key, namespace, None, None, &|_, _| true);
            for ((ns, name), s) in &items {
                if matches(ns, name, s) {
                    initial.push(line("ADDED", &s.bytes));
                }
            }
            rv
        }
    };
    let (backlog, rx) = match state.store.watch_from(Some(&key), from_rv) {
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
    for e in backlog {
        if matches(&e.namespace, &e.name, &e.object) {
            initial.push(line(e.type_, &e.object.bytes));
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
    let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| {
        let out = match e {
            Ok(e)
                if e.key == key2
                    && e.rv > from_rv
                    && matches2(&e.namespace, &e.name, &e.object) =>
            {
                Some(line(e.type_, &e.object.bytes))
            }
            _ => None,
        };
        futures::future::ready(out)
    });
    let store = state.store.clone();
    let api_version = r.api_version();
    let kind = r.kind;
    let bookmark_stream = futures::stream::unfold((), move |()| {
        let store = store.clone();
        let api_version = api_version.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": store.resource_version().to_string()}}});
            Some((Bytes::from(format!("{b}\n")), ()))
        }
    })
    .filter(move |_| futures::future::ready(bookmarks));
    let events =
        futures::stream::iter(initial).chain(futures::stream::select(live, bookmark_stream));
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

fn body_json(body: &[u8]) -> Result<Value, Response> {
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

fn check_identity(r: &Resource, v: &mut Value, ns: &str) -> Result<(), Response> {
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

fn create(
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
    match state.store.create(&r.storage_key(), v, dry_run) {
        Ok(v) => ok_json(StatusCode::CREATED, &v),
        Err(e) => store_error(&e, r),
    }
}

/// Keeps the old status on the main resource and the old everything-but-status on `/status`,
/// as the API server does for resources with a status subresource.
fn split_status(r: &Resource, sub: Option<&str>, old: &Value, new: &mut Value) {
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

fn replace(
    state: &State,
    r: &'static Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    dry_run: bool,
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
    split_status(r, sub, &old.value(), &mut v);
    match state.store.update(&r.storage_key(), v, expected, dry_run) {
        Ok(v) => ok_json(StatusCode::OK, &v),
        Err(e) => store_error(&e, r),
    }
}

#[allow(clippy::too_many_arguments)] // one request's parts
fn patch_object(
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
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct})"
            ),
            None,
        );
    };
    let patch_v = match patch::parse_body(kind, body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string(), None),
    };
    let key = r.storage_key();
    let manager = q.get("fieldManager").cloned();
    let Some(old) = state.store.get(&key, ns, name) else {
        if kind == PatchType::Apply {
            let Some(manager) = manager else {
                return status(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    None,
                );
            };
            let mut v = patch_v;
            if let Err(resp) = check_identity(r, &mut v, ns) {
                return resp;
            }
            v["metadata"]["name"] = json!(name);
            patch::record_manager(&mut v, &manager, "Apply", None, &now_rfc3339());
            return match state.store.create(&key, v, dry_run) {
                Ok(v) => ok_json(StatusCode::CREATED, &v),
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
    if kind == PatchType::Apply && manager.is_none() {
        return status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            None,
        );
    }
    if let Err(e) = patch::apply(kind, &mut v, &patch_v) {
        return status(422, "Invalid", &e.to_string(), None);
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
    if let Some(m) = manager {
        patch::record_manager(
            &mut v,
            &m,
            if kind == PatchType::Apply {
                "Apply"
            } else {
                "Update"
            },
            sub,
            &now_rfc3339(),
        );
    }
    match state.store.update(&key, v, expected, dry_run) {
        Ok(v) => ok_json(StatusCode::OK, &v),
        Err(e) => store_error(&e, r),
    }
}

fn delete(
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
        Ok(_) => ok_json(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": r.group, "kind": r.plural, "uid": cur["metadata"]["uid"]}}),
        ),
        Err(e) => store_error(&e, r),
    }
}

/// Graceful pod deletion: the pod gets a deletionTimestamp and goes away after its grace
/// period (the model's kubelet decides when; without one, after the configured termination
/// time, or at once).
fn delete_pod(
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

fn pod_healthy(v: &Value) -> bool {
    v["metadata"]["deletionTimestamp"].is_null()
        && v["status"]["phase"] == "Running"
        && v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn resolve(v: &Value, total: i64, round_up: bool) -> Option<i64> {
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
fn evict(state: &State, ns: &str, name: &str, body: &[u8], dry_run: bool) -> Response {
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
    let pod_v = pod.value();
    let opts: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    let grace = opts["deleteOptions"]["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| opts["delete_options"]["gracePeriodSeconds"].as_i64());
    // Terminating pods and pods that are not healthy can always be evicted.
    if pod_v["metadata"]["deletionTimestamp"].is_null() && pod_healthy(&pod_v) {
        let (_, pdbs, _) = state.store.list(
            "policy/poddisruptionbudgets",
            Some(ns),
            None,
            None,
            &|_, _| true,
        );
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
            return status(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                None,
            );
        }
        if let Some(pdb) = matching.first() {
            let ml = pdb["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let (_, members, _) = state.store.list("/pods", Some(ns), None, None, &|_, s| {
                ml.iter()
                    .all(|(k, v)| s.labels.get(k).map(String::as_str) == v.as_str())
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_and_bad_ones_say_why() {
        let f: Faults = "error-500=0.05,error-429=0.1,conflict=0.05,latency=0ms-200ms,latency.evict=1s,drop-watch=5s,not-ready=kind-worker@30s,agent-stuck=kind-worker2,cnc-ignored=kind-worker2"
            .parse()
            .expect("parses");
        assert_eq!(
            f.node_faults,
            [
                ("kind-worker2".to_owned(), "agent-stuck".to_owned()),
                ("kind-worker2".to_owned(), "cnc-ignored".to_owned())
            ]
        );
        assert_eq!((f.error_500, f.error_429, f.conflict), (0.05, 0.1, 0.05));
        assert_eq!(f.latency["*"], (Duration::ZERO, Duration::from_millis(200)));
        assert_eq!(
            f.latency["EVICT"],
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!(f.drop_watch_after, Some(Duration::from_secs(5)));
        assert_eq!(
            f.not_ready,
            [("kind-worker".to_owned(), Duration::from_secs(30))]
        );
        for (bad, says) in [
            ("error-500=2", "between 0 and 1"),
            ("latency=1s-1ms", "goes down"),
            ("nope=1", "unknown key"),
            ("not-ready=kind-worker", "NODE@DELAY"),
            ("error-429", "KEY=VALUE"),
            ("agent-stuck=", "agent-stuck=NODE"),
        ] {
            let err = bad.parse::<Faults>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_resolve_like_the_api_server() {
        let t = |p: &str| match route(p) {
            Route::Resource(t) => Some((t.resource.plural, t.namespace, t.name, t.sub)),
            _ => None,
        };
        assert_eq!(t("/api/v1/pods"), Some(("pods", None, None, None)));
        assert_eq!(
            t("/api/v1/namespaces/a/pods/p/eviction"),
            Some((
                "pods",
                Some("a".into()),
                Some("p".into()),
                Some("eviction".into())
            ))
        );
        assert_eq!(
            t("/api/v1/namespaces/kube-system"),
            Some(("namespaces", None, Some("kube-system".into()), None))
        );
        assert_eq!(
            t("/apis/cilium.io/v2alpha1/namespaces/kube-system/ciliumnodeconfigs/x"),
            Some((
                "ciliumnodeconfigs",
                Some("kube-system".into()),
                Some("x".into()),
                None
            ))
        );
        assert!(t("/api/v1/secrets").is_none(), "Secrets are never served");
        assert!(matches!(route("/apis"), Route::Discovery(_)));
        assert_eq!(
            decode("spec.nodeName%3Dn1").as_deref(),
            Some("spec.nodeName=n1")
        );
    }
}
