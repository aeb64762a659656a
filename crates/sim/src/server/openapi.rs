//! The OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/<group-version>`), built from the
//! registry, as far as clients read them: every path and operation with its
//! `x-kubernetes-group-version-kind` and query parameters. kubectl reads the `fieldValidation`
//! parameter of a resource's PATCH operation to decide that the server validates (it then sends
//! `fieldValidation=Strict` and does no client-side schema validation); see
//! [`super::validate`] for the validation itself. The documents carry no schemas
//! (`kubectl explain` has nothing to show); nothing the tool or kubectl's writes need reads them.

use serde_json::{Map, Value, json};

use crate::registry::{RESOURCES, Resource};

/// `api/v1` or `apis/GROUP/VERSION`: the key of a group-version in the root document.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The group-versions served, in the registry's order, without repeats.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// An FNV-1a hash of a document, as the `hash` the root document gives each group-version
/// (clients cache documents by it).
fn hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in doc.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`: where each group-version's document is.
pub(super) fn root() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let key = gv_path(g, v);
        let doc = document(g, v).unwrap_or(Value::Null);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&doc))}),
        );
    }
    json!({ "paths": paths })
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/G/V` (the path after `/openapi/v3/`).
pub(super) fn for_path(rest: &str) -> Option<Value> {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", v] => document("", v),
        ["apis", g, v] => document(g, v),
        _ => None,
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// The query parameters of a write: what the server honours on POST, PUT and PATCH.
fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn (the default) or Strict.",
        ),
    ];
    if patch {
        p.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    p
}

fn operation(id: &str, action: &str, gvk: &Value, params: Vec<Value>) -> Value {
    json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    })
}

/// `createCoreV1NamespacedPod`-style operation ids.
fn op_id(verb: &str, r: &Resource, namespaced: bool, suffix: &str) -> String {
    let mut group: String = r
        .group
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    if group.is_empty() {
        group = "Core".into();
    }
    let mut version = r.version.to_owned();
    if let Some(c) = version.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    let scope = if namespaced { "Namespaced" } else { "" };
    format!("{verb}{group}{version}{scope}{}{suffix}", r.kind)
}

fn document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let prefix = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for r in resources {
        let kind = gvk(r.group, r.version, r.kind);
        let ns = r.namespaced;
        let base = if ns {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(
            base.clone(),
            json!({
                "get": operation(&op_id("list", r, ns, ""), "list", &kind, vec![]),
                "post": operation(&op_id("create", r, ns, ""), "post", &kind, write_params(false)),
                "delete": operation(&op_id("deleteCollection", r, ns, ""), "deletecollection", &kind, vec![]),
            }),
        );
        if ns {
            paths.insert(
                format!("{prefix}/{}", r.plural),
                json!({"get": operation(&op_id("list", r, false, "ForAllNamespaces"), "list", &kind, vec![])}),
            );
        }
        let item = format!("{base}/{{name}}");
        paths.insert(
            item.clone(),
            json!({
                "get": operation(&op_id("read", r, ns, ""), "get", &kind, vec![]),
                "put": operation(&op_id("replace", r, ns, ""), "put", &kind, write_params(false)),
                "patch": operation(&op_id("patch", r, ns, ""), "patch", &kind, write_params(true)),
                "delete": operation(&op_id("delete", r, ns, ""), "delete", &kind, vec![query("dryRun", "When present, indicates that modifications should not be persisted.")]),
            }),
        );
        for sub in r.subresources {
            let path = format!("{item}/{sub}");
            let mut cap = (*sub).to_owned();
            if let Some(c) = cap.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            let ops = match *sub {
                "eviction" => {
                    let k = gvk("policy", "v1", "Eviction");
                    json!({"post": operation(&op_id("create", r, ns, &cap), "post", &k, write_params(false))})
                }
                "log" => {
                    json!({"get": operation(&op_id("read", r, ns, &cap), "get", &kind, vec![])})
                }
                other => {
                    let k = if other == "scale" {
                        gvk("autoscaling", "v1", "Scale")
                    } else {
                        kind.clone()
                    };
                    json!({
                        "get": operation(&op_id("read", r, ns, &cap), "get", &k, vec![]),
                        "put": operation(&op_id("replace", r, ns, &cap), "put", &k, write_params(false)),
                        "patch": operation(&op_id("patch", r, ns, &cap), "patch", &k, write_params(true)),
                    })
                }
            };
            paths.insert(path, ops);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_a_document_with_patch_and_field_validation() {
        let root = root();
        for (g, v) in group_versions() {
            let key = gv_path(g, v);
            let url = root["paths"][&key]["serverRelativeURL"]
                .as_str()
                .expect("listed in the root");
            assert!(
                url.starts_with(&format!("/openapi/v3/{key}?hash=")),
                "{url}"
            );
            let doc = for_path(&key).expect("a document");
            let patch_with_validation = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .filter_map(|p| p.get("patch"))
                .any(|op| {
                    op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"))
                });
            assert!(patch_with_validation, "{key}");
        }
        let apps = for_path("apis/apps/v1").expect("apps/v1");
        let op = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(for_path("apis/nope/v1").is_none());
    }
}
