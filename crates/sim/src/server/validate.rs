//! Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`, Warn when absent), as
//! the API server does it for built-in kinds: the object is decoded into its typed form, and a
//! field the type does not know is an error (Strict: 400 `strict decoding error: unknown
//! field "spec.replica"`) or a `Warning: 299` header (Warn). A value of the wrong type is a
//! 400 whatever the directive, as the real decoder refuses it.
//!
//! The typed forms are k8s-openapi's (the version the workspace pins), so a field newer than
//! that version reads as unknown. Custom resources (Cilium's, Calico's) are not validated: the
//! real server checks them against their CRD's structural schema, which the sim does not hold.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use axum::{
    http::{HeaderValue, header::HeaderName},
    response::Response,
};
use k8s_openapi::api;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::response::status;
use crate::registry::Resource;

/// What the request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    /// The `fieldValidation` query parameter; anything else is a 400, as on a real server.
    pub(super) fn parse(q: Option<&String>) -> Result<Self, Response> {
        match q.map(String::as_str) {
            None | Some("" | "Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(status(
                400,
                "BadRequest",
                &format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
                ),
                None,
            )),
        }
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// The object decoded into its typed form and written back, or `None` for kinds the sim does
/// not validate.
fn typed(r: &Resource, v: &Value) -> Option<Result<Value, String>> {
    Some(match (r.group, r.kind) {
        ("", "Pod") => roundtrip::<api::core::v1::Pod>(v),
        ("", "Node") => roundtrip::<api::core::v1::Node>(v),
        ("", "ConfigMap") => roundtrip::<api::core::v1::ConfigMap>(v),
        ("", "Service") => roundtrip::<api::core::v1::Service>(v),
        ("", "Namespace") => roundtrip::<api::core::v1::Namespace>(v),
        ("", "Event") => roundtrip::<api::core::v1::Event>(v),
        ("", "ServiceAccount") => roundtrip::<api::core::v1::ServiceAccount>(v),
        ("apps", "DaemonSet") => roundtrip::<api::apps::v1::DaemonSet>(v),
        ("apps", "Deployment") => roundtrip::<api::apps::v1::Deployment>(v),
        ("apps", "ReplicaSet") => roundtrip::<api::apps::v1::ReplicaSet>(v),
        ("apps", "StatefulSet") => roundtrip::<api::apps::v1::StatefulSet>(v),
        ("apps", "ControllerRevision") => roundtrip::<api::apps::v1::ControllerRevision>(v),
        ("batch", "Job") => roundtrip::<api::batch::v1::Job>(v),
        ("policy", "PodDisruptionBudget") => roundtrip::<api::policy::v1::PodDisruptionBudget>(v),
        ("coordination.k8s.io", "Lease") => roundtrip::<api::coordination::v1::Lease>(v),
        ("events.k8s.io", "Event") => roundtrip::<api::events::v1::Event>(v),
        ("networking.k8s.io", "NetworkPolicy") => {
            roundtrip::<api::networking::v1::NetworkPolicy>(v)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            roundtrip::<api::scheduling::v1::PriorityClass>(v)
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<api::rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<api::rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<api::rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<api::rbac::v1::RoleBinding>(v),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            roundtrip::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(v)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            roundtrip::<api::admissionregistration::v1::MutatingWebhookConfiguration>(v)
        }
        _ => return None,
    })
}

/// Paths (`spec.template.spec.containers[0].imagePullPolicyX`) of the fields in `sent` that
/// the typed form `kept` dropped. `null` values are not fields.
fn unknown(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(kv) => unknown(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks an object about to be stored. `Ok(warnings)` lets it through (with the `Warning`
/// headers to send under Warn), `Err` is the 400 to answer.
pub(super) fn check(
    r: &Resource,
    v: &Value,
    directive: Directive,
) -> Result<Vec<String>, Response> {
    let Some(decoded) = typed(r, v) else {
        return Ok(Vec::new());
    };
    let api_version = r.version;
    let kind = r.kind;
    let kept = decoded.map_err(|e| {
        status(
            400,
            "BadRequest",
            &format!("{kind} in version \"{api_version}\" cannot be handled as a {kind}: {e}"),
            None,
        )
    })?;
    if directive == Directive::Ignore {
        return Ok(Vec::new());
    }
    let mut fields = Vec::new();
    unknown(v, &kept, "", &mut fields);
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let each: Vec<String> = fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if directive == Directive::Strict {
        return Err(status(
            400,
            "BadRequest",
            &format!(
                "{kind} in version \"{api_version}\" cannot be handled as a {kind}: strict decoding error: {}",
                each.join(", ")
            ),
            None,
        ));
    }
    Ok(each)
}

/// Adds `Warning: 299 - "..."` headers, as the API server sends them.
pub(super) fn warn(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(h) = HeaderValue::from_str(&text) {
            resp.headers_mut()
                .append(HeaderName::from_static("warning"), h);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let r = registry::find("apps", "v1", "deployments").expect("served");
        assert_eq!(
            check(r, &deployment(), Directive::Strict).ok(),
            Some(vec![])
        );
        let mut d = deployment();
        d["spec"]["replica"] = json!(3);
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyX"] = json!("Always");
        let warned = check(r, &d, Directive::Warn).expect("Warn lets it through");
        assert_eq!(
            warned,
            vec![
                "unknown field \"spec.replica\"".to_owned(),
                "unknown field \"spec.template.spec.containers[0].imagePullPolicyX\"".to_owned()
            ]
        );
        assert!(check(r, &d, Directive::Ignore).is_ok_and(|w| w.is_empty()));
        let refused = check(r, &d, Directive::Strict).expect_err("Strict refuses");
        assert_eq!(refused.status(), 400);
        d["spec"]["replicas"] = json!("three");
        assert!(
            check(r, &d, Directive::Ignore).is_err(),
            "a wrong type is refused whatever the directive"
        );
        let cnc = registry::find("cilium.io", "v2", "ciliumnodeconfigs").expect("served");
        assert!(check(cnc, &json!({"spec": {"anything": 1}}), Directive::Strict).is_ok());
    }
}
