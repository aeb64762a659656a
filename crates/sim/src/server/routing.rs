//! URLs to resources, the way the API server reads them, and the discovery documents.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::collections::BTreeMap;

use axum::http::Uri;
use serde_json::{Value, json};

use crate::registry::{self, RESOURCES, Resource};

pub(super) fn query(uri: &Uri) -> BTreeMap<String, String> {
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

pub(super) fn decode(s: &str) -> Option<String> {
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
pub(super) struct Target {
    pub(super) resource: &'static Resource,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

pub(super) enum Route {
    Discovery(Value),
    Resource(Target),
    NotFound,
}

pub(super) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
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
            "verbs": r.verbs(), "shortNames": r.short,
        }));
        for sub in r.subresources {
            let (kind, verbs, g, v) = match *sub {
                "eviction" => ("Eviction", vec!["create"], "policy", "v1"),
                "log" => ("Pod", vec!["get"], "", ""),
                "scale" => ("Scale", vec!["get", "patch", "update"], "autoscaling", "v1"),
                "token" => (
                    "TokenRequest",
                    vec!["create"],
                    "authentication.k8s.io",
                    "v1",
                ),
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

pub(super) fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["openapi", "v3"] => Route::Discovery(super::openapi::root()),
        ["openapi", "v3", rest @ ..] => {
            super::openapi::for_path(&rest.join("/")).map_or(Route::NotFound, Route::Discovery)
        }
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

pub(super) fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
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

#[cfg(test)]
mod tests {
    use super::*;

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
