//! Server-side apply's field ownership, as far as the tool meets it: who applied which
//! field (`managedFields[].fieldsV1`), conflicts with another applier's differing value,
//! `force` taking fields over, and fields an applier dropped removed when nobody else owns
//! them.
//!
//! ```text
//! apply(manager, patch, force)
//!   ├─ leaves of the patch (maps walked, lists and scalars whole) = the fields it owns now
//!   ├─ a leaf another applier owns with a different value ──► conflict (409), unless force:
//!   │                                                         then the other loses it
//!   ├─ a leaf this applier owned before and left out, owned by nobody else ──► removed
//!   └─ the patch merged in; the manager's entry records its leaves
//! ```
//!
//! Simplifications: only `Apply` entries own fields (an `Update` manager owns none, so it
//! never conflicts), and a list is one field.

use serde_json::{Map, Value, json};

use crate::patch;

/// A field path, `["spec", "defaults", "cni-chaining-mode"]`.
type Path = Vec<String>;

/// One conflict: the manager that owns the field, and the field as `.a.b.c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// The leaves an applied object sets (identity fields apart).
fn leaves(v: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let top = prefix.is_empty();
                let identity = top && matches!(k.as_str(), "apiVersion" | "kind")
                    || prefix.len() == 1
                        && prefix[0] == "metadata"
                        && matches!(
                            k.as_str(),
                            "name" | "namespace" | "resourceVersion" | "managedFields"
                        );
                if identity {
                    continue;
                }
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

/// `{"f:spec": {"f:a": {}}}` from paths.
fn to_fields(paths: &[Path]) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut m = &mut root;
        for k in p {
            m = m
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fields are maps");
        }
    }
    Value::Object(root)
}

/// Paths from `{"f:spec": {"f:a": {}}}` (an empty map is a leaf).
fn from_fields(v: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    let Some(m) = v.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, child) in children {
        prefix.push(k.trim_start_matches("f:").to_owned());
        from_fields(child, prefix, out);
        prefix.pop();
    }
}

fn value_at<'a>(v: &'a Value, path: &Path) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k.as_str()))
}

fn remove_at(v: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn owned_paths(entry: &Value) -> Vec<Path> {
    let mut out = Vec::new();
    from_fields(&entry["fieldsV1"], &mut Vec::new(), &mut out);
    out
}

/// Applies `patch` as `manager` to `object` (a new object is `{}`): conflicts without
/// `force`, else the merged object with ownership recorded.
///
/// # Errors
/// The conflicts, when another applier owns a field this patch sets to another value and
/// `force` is off.
pub fn apply(
    object: &mut Value,
    patch_v: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<(), Vec<Conflict>> {
    let mut mine = Vec::new();
    leaves(patch_v, &mut Vec::new(), &mut mine);
    let mut entries: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_mine = |e: &Value| e["manager"] == manager && e["operation"] == "Apply";
    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !is_mine(e) && e["operation"] == "Apply")
    {
        for p in owned_paths(e) {
            if mine.contains(&p) && value_at(object, &p) != value_at(patch_v, &p) {
                conflicts.push(Conflict {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    field: format!(".{}", p.join(".")),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced: the others lose what this patch sets.
    for e in entries
        .iter_mut()
        .filter(|e| !is_mine(e) && e["operation"] == "Apply")
    {
        let kept: Vec<Path> = owned_paths(e)
            .into_iter()
            .filter(|p| {
                !conflicts
                    .iter()
                    .any(|c| c.field == format!(".{}", p.join(".")))
            })
            .collect();
        e["fieldsV1"] = to_fields(&kept);
    }
    // What this manager dropped and nobody else owns goes.
    let before: Vec<Path> = entries
        .iter()
        .find(|e| is_mine(e))
        .map(owned_paths)
        .unwrap_or_default();
    let others: Vec<Path> = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(owned_paths)
        .collect();
    for p in before
        .iter()
        .filter(|p| !mine.contains(p) && !others.contains(p))
    {
        remove_at(object, p);
    }
    patch::strategic(object, patch_v);
    let fields = to_fields(&mine);
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) if e["fieldsV1"] == fields => {}
        Some(e) => {
            e["fieldsV1"] = fields;
            e["time"] = json!(now);
        }
        None => entries.push(json!({"manager": manager, "operation": "Apply",
            "apiVersion": patch_v["apiVersion"], "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields})),
    }
    object["metadata"]["managedFields"] = Value::Array(entries);
    Ok(())
}

/// The 409's message and causes, as the API server words them.
pub fn conflict_message(conflicts: &[Conflict]) -> (String, Value) {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
        .collect();
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with \"{}\": {}",
            one.manager, one.field
        ),
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    (message, json!({"causes": causes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_appliers_field_conflicts_unless_forced_and_dropped_fields_go() {
        let mut o = json!({"metadata": {"name": "x"}});
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        apply(&mut o, &a, "me", false, "t").unwrap();
        let b = json!({"data": {"a": "9"}});
        let err = apply(&mut o.clone(), &b, "other", false, "t").unwrap_err();
        assert_eq!(err[0].field, ".data.a");
        // The same value is shared, not a conflict.
        apply(
            &mut o.clone(),
            &json!({"data": {"a": "1"}}),
            "other",
            false,
            "t",
        )
        .unwrap();
        let dropped = json!({"data": {"a": "1"}});
        apply(&mut o, &dropped, "me", false, "t").unwrap();
        assert_eq!(o["data"], json!({"a": "1"}));
    }
}
