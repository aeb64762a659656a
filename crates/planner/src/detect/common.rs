//! Small readers every detector shares: a ConfigMap's key, a DaemonSet's env and reference,
//! a string deep in a JSON object.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use serde_json::Value;

use crate::snapshot::ObjectRef;

/// A ConfigMap's `data[key]`.
pub(super) fn cm_data<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.data.as_ref()?.get(key).map(String::as_str)
}

/// The literal env values of a DaemonSet's containers (all, or the one named `container`);
/// `valueFrom` entries cannot be resolved from the object alone, so they are left out.
pub(super) fn ds_env(ds: &DaemonSet, container: Option<&str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return env;
    };
    for c in &spec.containers {
        if container.is_some_and(|n| n != c.name) {
            continue;
        }
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                env.insert(e.name.clone(), v.clone());
            }
        }
    }
    env
}

/// A reference to the DaemonSet, for findings and removal.
pub(super) fn ds_ref(ds: &DaemonSet) -> ObjectRef {
    ObjectRef::namespaced(
        "DaemonSet",
        ds.metadata.namespace.as_deref().unwrap_or_default(),
        ds.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The string at `path` in a JSON object.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}
