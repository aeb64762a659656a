//! Who is asking, and may they: ServiceAccount tokens and RBAC, the way kube-apiserver does it.
//!
//! ```text
//! request ─► Authorization: Bearer T? ── none ──► admin (the sim's own kubeconfig): allowed
//!              │ unknown T (or its ServiceAccount is gone) ──► 401 Unauthorized
//!              ▼ system:serviceaccount:NS:NAME (+ groups system:serviceaccounts[:NS],
//!              │                                system:authenticated)
//!            attributes(method, path, apply?) ── non-resource URL (discovery) ──► allowed
//!              ▼ verb, group, resource[/sub], namespace, name
//!            ClusterRoleBindings ─► ClusterRoles (anywhere)
//!            RoleBindings in NS   ─► Role / ClusterRole (in NS)   any rule matches ─► allowed
//!              │ none: 403 Forbidden, the real message and details
//!              ▼ server-side apply of a missing object: `create` too (else 403 naming create)
//!            POST serviceaccounts/NAME/token ─► TokenRequest (a token for that ServiceAccount)
//!            POST selfsubjectaccessreviews   ─► the decision for the asked attributes
//! ```
//!
//! Rules follow kube-apiserver's RBAC authorizer: `verbs`, `apiGroups`, `resources`
//! (`pods/eviction`, `*/status`, `*`), `resourceNames` (never matching a request without a
//! name), a Role's rules only in its namespace, a ClusterRole through a RoleBinding only in the
//! binding's namespace. Aggregated ClusterRoles and non-resource rules are not modelled.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{State, response::ok_json, status};
use crate::registry;

const RBAC: &str = "rbac.authorization.k8s.io";

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `system:serviceaccount:NS:NAME`.
    pub name: String,
    /// `system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`.
    pub groups: Vec<String>,
    /// The ServiceAccount's namespace and name.
    pub service_account: (String, String),
}

impl User {
    /// The user a ServiceAccount's token stands for.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            service_account: (namespace.into(), name.into()),
        }
    }
}

/// What a request asks to do, as the authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""`: core).
    pub group: String,
    /// Plural, e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `eviction`.
    pub sub: Option<String>,
    /// The namespace of a namespaced request.
    pub namespace: Option<String>,
    /// The object's name, when the request names one.
    pub name: Option<String>,
}

impl Attributes {
    /// A resource request's attributes; `None` for non-resource URLs (discovery, /version).
    pub fn of(method: &str, path: &str, query: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _v, rest @ ..] => ("", rest),
            ["apis", g, _v, rest @ ..] => (*g, rest),
            _ => return None,
        };
        let (namespace, rest): (Option<String>, Vec<&str>) = match rest {
            ["namespaces", ns, r, tail @ ..] => {
                (Some((*ns).to_owned()), [&[*r][..], tail].concat())
            }
            r => (None, r.to_vec()),
        };
        let (resource, name, sub) = match rest.as_slice() {
            [] => return None,
            [r] => (*r, None, None),
            [r, n] => (*r, Some(*n), None),
            [r, n, s, ..] => (*r, Some(*n), Some(*s)),
        };
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (method, name.is_some()) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        };
        // GET /api/v1/namespaces/NS is the namespace itself (cluster-scoped).
        let (resource, name, namespace) = if resource == "namespaces" && namespace.is_none() {
            (resource, name, name.map(str::to_owned))
        } else {
            (resource, name, namespace)
        };
        Some(Self {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            sub: sub.map(str::to_owned),
            namespace,
            name: name.map(str::to_owned),
        })
    }

    /// `pods/eviction`, or `pods`.
    fn full_resource(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// Whether one PolicyRule (`{verbs, apiGroups, resources, resourceNames}`) allows `a`.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let has = |field: &str, want: &str| {
        rule[field]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "*" || x == want))
    };
    let resource_ok = rule["resources"].as_array().is_some_and(|v| {
        v.iter().filter_map(Value::as_str).any(|r| {
            r == "*"
                || r == a.full_resource()
                || a.sub.as_deref().is_some_and(|s| r == format!("*/{s}"))
        })
    });
    let names_ok = match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => a
            .name
            .as_deref()
            .is_some_and(|n| names.iter().any(|x| x == n)),
        _ => true,
    };
    has("verbs", &a.verb) && has("apiGroups", &a.group) && resource_ok && names_ok
}

fn subject_matches(s: &Value, user: &User) -> bool {
    match s["kind"].as_str() {
        Some("ServiceAccount") => {
            s["name"] == user.service_account.1.as_str()
                && s["namespace"] == user.service_account.0.as_str()
        }
        Some("User") => s["name"] == user.name.as_str(),
        Some("Group") => user.groups.iter().any(|g| s["name"] == g.as_str()),
        _ => false,
    }
}

/// The RBAC objects an authorizer decides with (as the API server stores them).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Roles.
    pub roles: Vec<Value>,
    /// ClusterRoles.
    pub cluster_roles: Vec<Value>,
    /// RoleBindings.
    pub role_bindings: Vec<Value>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<Value>,
}

impl Policy {
    fn from_state(state: &State) -> Self {
        let all = |plural: &str| -> Vec<Value> {
            let (_, items, _) =
                state
                    .store
                    .list(&format!("{RBAC}/{plural}"), None, None, None, &|_, _| true);
            items
                .into_iter()
                .filter_map(|(_, s)| serde_json::from_slice(&s.bytes()).ok())
                .collect()
        };
        Self {
            roles: all("roles"),
            cluster_roles: all("clusterroles"),
            role_bindings: all("rolebindings"),
            cluster_role_bindings: all("clusterrolebindings"),
        }
    }

    fn role(&self, kind: &str, name: &str, namespace: &str) -> Option<&Value> {
        let (list, ns) = match kind {
            "ClusterRole" => (&self.cluster_roles, None),
            "Role" => (&self.roles, Some(namespace)),
            _ => return None,
        };
        list.iter().find(|r| {
            r["metadata"]["name"] == name && ns.is_none_or(|ns| r["metadata"]["namespace"] == ns)
        })
    }

    /// Whether some binding of `user` grants `a`.
    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        let grants = |role: Option<&Value>| {
            role.and_then(|r| r["rules"].as_array())
                .is_some_and(|rules| rules.iter().any(|rule| rule_allows(rule, a)))
        };
        let bound = |b: &&Value| {
            b["subjects"]
                .as_array()
                .is_some_and(|ss| ss.iter().any(|s| subject_matches(s, user)))
        };
        let cluster = self.cluster_role_bindings.iter().filter(bound).any(|b| {
            grants(self.role(
                "ClusterRole",
                b["roleRef"]["name"].as_str().unwrap_or_default(),
                "",
            ))
        });
        cluster
            || a.namespace.as_deref().is_some_and(|ns| {
                self.role_bindings
                    .iter()
                    .filter(|b| b["metadata"]["namespace"] == ns)
                    .filter(bound)
                    .any(|b| {
                        grants(self.role(
                            b["roleRef"]["kind"].as_str().unwrap_or_default(),
                            b["roleRef"]["name"].as_str().unwrap_or_default(),
                            ns,
                        ))
                    })
            })
    }
}

/// The 403 kube-apiserver sends: `ciliumnodeconfigs.cilium.io "x" is forbidden: User "u"
/// cannot create resource "ciliumnodeconfigs" in API group "cilium.io" in the namespace "ns"`.
pub fn forbidden(user: &User, a: &Attributes) -> Response {
    let where_ = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let why = format!(
        "User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {where_}",
        user.name,
        a.verb,
        a.full_resource(),
        a.group
    );
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let message = match &a.name {
        Some(n) => format!("{qualified} \"{n}\" is forbidden: {why}"),
        None => format!("{qualified} is forbidden: {why}"),
    };
    let mut details = json!({});
    if let Some(n) = &a.name {
        details["name"] = n.as_str().into();
    }
    if !a.group.is_empty() {
        details["group"] = a.group.as_str().into();
    }
    details["kind"] = a.resource.as_str().into();
    status(403, "Forbidden", &message, Some(details))
}

/// The 401 kube-apiserver sends for a token it does not know.
pub fn unauthorized() -> Response {
    status(401, "Unauthorized", "Unauthorized", None)
}

fn tokens() -> &'static Mutex<HashMap<String, (String, String)>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, (String, String)>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// A new token for a ServiceAccount (valid for every sim of this process while the
/// ServiceAccount exists in the sim that is asked).
pub fn issue(namespace: &str, name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let token = format!(
        "sim.{:x}.{n:x}.{:08x}",
        std::process::id(),
        nanos ^ (n as u32).wrapping_mul(2_654_435_761)
    );
    tokens()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(token.clone(), (namespace.into(), name.into()));
    token
}

fn service_account_exists(state: &State, namespace: &str, name: &str) -> bool {
    state
        .store
        .get("/serviceaccounts", namespace, name)
        .is_some()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Authenticates and authorizes a request, and answers the TokenRequest and
/// SelfSubjectAccessReview: `Some(response)` ends the request there, `None` lets it through.
pub(super) fn gate(
    state: &State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let user = match bearer(headers) {
        None => None,
        Some(token) => {
            let known = tokens()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(token)
                .cloned();
            match known {
                Some((ns, name)) if service_account_exists(state, &ns, &name) => {
                    Some(User::service_account(&ns, &name))
                }
                _ => return Some(unauthorized()),
            }
        }
    };
    let path = uri.path();
    if method == Method::POST && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        return Some(self_review(state, user.as_ref(), body));
    }
    let attrs = Attributes::of(method.as_str(), path, uri.query().unwrap_or(""));
    if let (Some(user), Some(a)) = (&user, &attrs) {
        let policy = Policy::from_state(state);
        if !policy.allows(user, a) {
            return Some(forbidden(user, a));
        }
        let apply = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c.to_str().is_ok_and(|c| c.contains("apply-patch")));
        if apply && a.sub.is_none() && !exists(state, a) {
            let create = Attributes {
                verb: "create".into(),
                ..a.clone()
            };
            if !policy.allows(user, &create) {
                return Some(forbidden(user, &create));
            }
        }
    }
    match attrs {
        Some(a)
            if method == Method::POST
                && a.group.is_empty()
                && a.resource == "serviceaccounts"
                && a.sub.as_deref() == Some("token") =>
        {
            Some(token_request(state, &a, body))
        }
        _ => None,
    }
}

fn exists(state: &State, a: &Attributes) -> bool {
    let Some(name) = &a.name else { return true };
    registry::RESOURCES
        .iter()
        .find(|r| r.group == a.group && r.plural == a.resource)
        .is_none_or(|r| {
            state
                .store
                .get(
                    &r.storage_key(),
                    a.namespace.as_deref().unwrap_or_default(),
                    name,
                )
                .is_some()
        })
}

fn token_request(state: &State, a: &Attributes, body: &Bytes) -> Response {
    let ns = a.namespace.clone().unwrap_or_default();
    let name = a.name.clone().unwrap_or_default();
    if !service_account_exists(state, &ns, &name) {
        return status(
            404,
            "NotFound",
            &format!("serviceaccounts \"{name}\" not found"),
            Some(json!({"name": name, "kind": "serviceaccounts"})),
        );
    }
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let seconds = asked["spec"]["expirationSeconds"].as_u64().unwrap_or(3600);
    let token = issue(&ns, &name);
    ok_json(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "audiences": ["https://kubernetes.default.svc.cluster.local"],
                "expirationSeconds": seconds,
                "boundObjectRef": null
            },
            "status": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}
        }),
    )
}

fn self_review(state: &State, user: Option<&User>, body: &Bytes) -> Response {
    let mut review: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    let ra = &review["spec"]["resourceAttributes"];
    let a = Attributes {
        verb: ra["verb"].as_str().unwrap_or_default().into(),
        group: ra["group"].as_str().unwrap_or_default().into(),
        resource: ra["resource"].as_str().unwrap_or_default().into(),
        sub: ra["subresource"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        namespace: ra["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        name: ra["name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    };
    let allowed = user.is_none_or(|u| Policy::from_state(state).allows(u, &a));
    review["kind"] = "SelfSubjectAccessReview".into();
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["metadata"] = json!({});
    review["status"] = json!({"allowed": allowed});
    ok_json(StatusCode::CREATED, &review)
}

#[cfg(test)]
mod tests;
