//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets (`kubectl scale`):
//! an `autoscaling/v1` Scale read from the object, and written back as its `spec.replicas`.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    read::parse_rv,
    response::{body_json, ok_json, status, store_error},
    state::State,
};
use crate::{
    patch::{self, PatchType},
    registry::Resource,
    store::StoreError,
};

/// `matchLabels` as the label selector string a Scale's status carries (`app=web`).
fn selector_string(obj: &Value) -> String {
    let sel = &obj["spec"]["selector"];
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_owned()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector_string(obj)},
    })
}

fn not_found(r: &Resource, name: &str) -> Response {
    store_error(
        &StoreError::NotFound {
            kind: r.plural.into(),
            name: name.into(),
        },
        r,
    )
}

/// `GET .../NAME/scale`.
pub(super) fn get(state: &State, r: &Resource, ns: &str, name: &str) -> Response {
    match state.store.get(&r.storage_key(), ns, name) {
        Some(s) => ok_json(StatusCode::OK, &scale_of(&s.value())),
        None => not_found(r, name),
    }
}

/// `PUT` (a whole Scale) or `PATCH` (a merge, strategic-merge or JSON patch of one) of
/// `.../NAME/scale`: the object's `spec.replicas` changes, nothing else.
pub(super) fn write(
    state: &State,
    r: &Resource,
    ns: &str,
    name: &str,
    headers: Option<&HeaderMap>,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let key = r.storage_key();
    let Some(stored) = state.store.get(&key, ns, name) else {
        return not_found(r, name);
    };
    let obj = stored.value();
    let mut scale = scale_of(&obj);
    match headers {
        None => match body_json(body) {
            Ok(v) => scale = v,
            Err(resp) => return resp,
        },
        Some(headers) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or_default();
            let Some(kind) = PatchType::from_content_type(ct).filter(|k| *k != PatchType::Apply)
            else {
                return status(
                    415,
                    "UnsupportedMediaType",
                    "415: Unsupported Media Type",
                    Some(json!({})),
                );
            };
            let p = match patch::parse_body(kind, body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", &e.to_string(), None),
            };
            if let Err(e) = patch::apply(kind, &mut scale, &p) {
                return status(422, "Invalid", &e.to_string(), Some(json!({})));
            }
        }
    }
    let Some(replicas) = scale["spec"]["replicas"].as_i64().filter(|n| *n >= 0) else {
        return status(
            422,
            "Invalid",
            &format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {}: must be greater than or equal to 0",
                scale["spec"]["replicas"]
            ),
            Some(json!({"name": name, "group": "autoscaling", "kind": "Scale"})),
        );
    };
    let expected = parse_rv(scale["metadata"]["resourceVersion"].as_str());
    let mut v = obj;
    v["spec"]["replicas"] = json!(replicas);
    match state.store.update(&key, v, expected, dry_run) {
        Ok(v) => ok_json(StatusCode::OK, &scale_of(&v)),
        Err(e) => store_error(&e, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_names_its_selector_as_a_label_selector() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert!(crate::selectors::LabelSelector::parse("app=web,tier in (a,b)").is_ok());
    }
}
