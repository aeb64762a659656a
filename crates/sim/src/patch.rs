//! PATCH as the API server applies it: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch for the shapes kubectl and the tool send, and server-side apply.

use serde_json::{Map, Value};

/// The patch types the server accepts, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// From a Content-Type header.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// The merge key of lists that strategic merge patch merges element by element (from the
/// Kubernetes API's `patchMergeKey` tags); other lists are replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "ports" => "containerPort",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of scalars that strategic merge patch merges as sets.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch.
pub fn strategic(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => strategic_object(t, p),
        (t, p) => *t = strip_directives(p),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_object(t: &mut Map<String, Value>, p: &Map<String, Value>) {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *t = p
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), strip_directives(v)))
            .collect();
        return;
    }
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(Value::Object(tv)), Value::Object(pvo)) => strategic_object(tv, pvo),
            (Some(Value::Array(ta)), Value::Array(pa)) if merge_key(k).is_some() => {
                let key = merge_key(k).unwrap_or("name");
                for item in pa {
                    let id = item.get(key).cloned();
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    let pos = id
                        .as_ref()
                        .and_then(|id| ta.iter().position(|e| e.get(key) == Some(id)));
                    match (pos, delete) {
                        (Some(i), true) => {
                            ta.remove(i);
                        }
                        (Some(i), false) => strategic(&mut ta[i], item),
                        (None, true) => {}
                        (None, false) => ta.push(strip_directives(item)),
                    }
                }
            }
            (Some(Value::Array(ta)), Value::Array(pa)) if is_set_list(k) => {
                for item in pa {
                    if !ta.contains(item) {
                        ta.push(item.clone());
                    }
                }
            }
            _ => {
                t.insert(k.clone(), strip_directives(pv));
            }
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not a valid patch of its type.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json: {0}"
    )]
    Body(String),
    /// A JSON patch operation failed (e.g. `test` failed, path missing).
    #[error("the server rejected our request due to an error in our request: {0}")]
    Apply(String),
}

/// Parses a patch body for its type.
///
/// # Errors
/// [`PatchError::Body`] when the body does not parse.
pub fn parse_body(kind: PatchType, body: &[u8]) -> Result<Value, PatchError> {
    match kind {
        PatchType::Apply => {
            serde_yaml::from_slice::<Value>(body).map_err(|e| PatchError::Body(e.to_string()))
        }
        _ => serde_json::from_slice::<Value>(body).map_err(|e| PatchError::Body(e.to_string())),
    }
}

/// Applies a parsed patch to an existing object.
///
/// # Errors
/// [`PatchError`] when a JSON patch does not apply.
pub fn apply(kind: PatchType, target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match kind {
        PatchType::Merge => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| PatchError::Body(e.to_string()))?;
            json_patch::patch(target, &ops).map_err(|e| PatchError::Apply(e.to_string()))
        }
        PatchType::Strategic | PatchType::Apply => {
            strategic(target, patch);
            Ok(())
        }
    }
}

/// Records (or refreshes) a manager's entry in `metadata.managedFields`.
pub fn record_manager(
    object: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let api_version = object["apiVersion"].clone();
    let entries = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut kept: Vec<Value> = entries
        .into_iter()
        .filter(|e| {
            !(e["manager"] == manager
                && e["operation"] == operation
                && e.get("subresource").and_then(Value::as_str) == subresource)
        })
        .collect();
    let mut entry = serde_json::json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": {}});
    if let Some(s) = subresource {
        entry["subresource"] = Value::String(s.to_owned());
    }
    kept.push(entry);
    object["metadata"]["managedFields"] = Value::Array(kept);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strategic_merges_containers_by_name_and_deletes_with_null() {
        let mut pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}, {"name": "d", "image": "y:1"}], "tolerations": [{"key": "t"}]}});
        strategic(
            &mut pod,
            &json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"containers": [{"name": "d", "image": "y:2"}, {"name": "e", "image": "z"}, {"name": "c", "$patch": "delete"}], "tolerations": [{"key": "u"}]}}),
        );
        assert_eq!(pod["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "d", "image": "y:2"}, {"name": "e", "image": "z"}])
        );
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "u"}]));
    }

    #[test]
    fn json_and_merge_patches() {
        let mut v = json!({"spec": {"unschedulable": true}, "metadata": {"labels": {"x": "1"}}});
        apply(
            PatchType::Merge,
            &mut v,
            &json!({"spec": {"unschedulable": null}}),
        )
        .unwrap();
        assert_eq!(v["spec"], json!({}));
        apply(
            PatchType::Json,
            &mut v,
            &json!([{"op": "add", "path": "/metadata/labels/y", "value": "2"}]),
        )
        .unwrap();
        assert_eq!(v["metadata"]["labels"]["y"], "2");
        assert!(
            apply(
                PatchType::Json,
                &mut v,
                &json!([{"op": "test", "path": "/metadata/labels/y", "value": "3"}])
            )
            .is_err()
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml; charset=utf-8"),
            Some(PatchType::Apply)
        );
    }
}
