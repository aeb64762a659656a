//! The authorizer against the recorded denials of a real kube-apiserver (read from
//! /work/shared/fixtures/real-apiserver/rbac-denials.json when present, skipped otherwise), and
//! against the rule shapes the tool's RBAC uses.

use serde_json::{Value, json};

use super::*;

async fn body(r: Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    (code, serde_json::from_slice(&bytes).expect("json"))
}

fn attrs(method: &str, path_query: &str) -> Attributes {
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    Attributes::of(method, path, query).expect("a resource request")
}

fn policy(rules: Value, cluster: bool) -> Policy {
    let subjects = json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "kube-system"}]);
    let role = json!({"metadata": {"name": "r", "namespace": "kube-system"}, "rules": rules});
    if cluster {
        Policy {
            cluster_roles: vec![role],
            cluster_role_bindings: vec![json!({"metadata": {"name": "b"}, "subjects": subjects,
                "roleRef": {"kind": "ClusterRole", "name": "r"}})],
            ..Policy::default()
        }
    } else {
        Policy {
            roles: vec![role],
            role_bindings: vec![
                json!({"metadata": {"name": "b", "namespace": "kube-system"},
                "subjects": subjects, "roleRef": {"kind": "Role", "name": "r"}}),
            ],
            ..Policy::default()
        }
    }
}

#[tokio::test]
async fn the_recorded_denials_are_reproduced() {
    let path = std::path::Path::new("/work/shared/fixtures/real-apiserver/rbac-denials.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!(
            "skipped: {} is absent (the real API server corpus)",
            path.display()
        );
        return;
    };
    let case: Value = serde_json::from_str(&text).expect("the corpus parses");
    let exchanges = case["exchanges"].as_array().expect("exchanges");
    let created = |kind: &str| -> Vec<Value> {
        exchanges
            .iter()
            .map(|e| &e["response"]["body"])
            .filter(|b| b["kind"] == kind)
            .cloned()
            .collect()
    };
    let policy = Policy {
        roles: created("Role"),
        role_bindings: created("RoleBinding"),
        ..Policy::default()
    };
    let user = User::service_account("kube-system", "probe-sa");
    let mut checked = 0;
    for e in exchanges {
        let req = &e["request"];
        let auth = req["auth"].as_str().unwrap_or_default();
        if !auth.contains("probe-sa") || e["response"]["status"] == 401 {
            continue;
        }
        let method = req["method"].as_str().expect("method");
        let path = req["path"].as_str().expect("path");
        if path.contains("selfsubjectaccessreviews") {
            let ra = &req["body"]["spec"]["resourceAttributes"];
            let a = Attributes {
                verb: ra["verb"].as_str().unwrap_or_default().into(),
                group: ra["group"].as_str().unwrap_or_default().into(),
                resource: ra["resource"].as_str().unwrap_or_default().into(),
                sub: None,
                namespace: ra["namespace"].as_str().map(str::to_owned),
                name: None,
            };
            assert_eq!(
                policy.allows(&user, &a),
                e["response"]["body"]["status"]["allowed"] == true
            );
            checked += 1;
            continue;
        }
        let mut a = attrs(method, path);
        let code = e["response"]["status"].as_u64().expect("status");
        let apply = req["contentType"]
            .as_str()
            .is_some_and(|c| c.contains("apply-patch"));
        let note = e["note"].as_str().unwrap_or_default();
        if apply && note.contains("create") {
            assert!(policy.allows(&user, &a), "{note}: patch is granted");
            a.verb = "create".into();
        }
        if code == 403 {
            assert!(!policy.allows(&user, &a), "{note}: expected a denial");
            let (status, got) = body(forbidden(&user, &a)).await;
            assert_eq!(status, 403);
            assert_eq!(got, e["response"]["body"], "{note}");
        } else {
            assert!(policy.allows(&user, &a), "{note}: expected it allowed");
        }
        checked += 1;
    }
    assert!(checked >= 8, "the corpus has the denials: {checked}");
}

#[tokio::test]
async fn an_unknown_token_gets_the_real_401() {
    let (code, b) = body(unauthorized()).await;
    assert_eq!(code, 401);
    assert_eq!(
        b,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

#[test]
fn subresources_need_their_own_grant() {
    let user = User::service_account("kube-system", "sa");
    let p = policy(
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create"]}]),
        true,
    );
    let evict = attrs("POST", "/api/v1/namespaces/shop/pods/web-1/eviction");
    assert_eq!(evict.full_resource(), "pods/eviction");
    assert!(
        !p.allows(&user, &evict),
        "pods does not cover pods/eviction"
    );
    assert!(!p.allows(
        &user,
        &attrs("GET", "/api/v1/namespaces/kube-system/pods/p/log")
    ));
    assert!(p.allows(&user, &attrs("GET", "/api/v1/pods?limit=500")));
    assert!(!p.allows(&user, &attrs("GET", "/api/v1/pods?watch=true")));
    let p = policy(
        json!([{"apiGroups": [""], "resources": ["pods/eviction", "pods/log"], "verbs": ["create", "get"]},
               {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}]),
        true,
    );
    assert!(p.allows(&user, &evict));
    assert!(p.allows(
        &user,
        &attrs("GET", "/api/v1/namespaces/kube-system/pods/p/log")
    ));
    assert!(p.allows(
        &user,
        &attrs("PATCH", "/apis/apps/v1/namespaces/a/daemonsets/d/status")
    ));
    assert!(!p.allows(
        &user,
        &attrs("PATCH", "/apis/apps/v1/namespaces/a/daemonsets/d")
    ));
}

#[test]
fn wildcards_resource_names_and_role_namespaces() {
    let user = User::service_account("kube-system", "sa");
    let p = policy(
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "resourceNames": ["cni-migrate"], "verbs": ["get", "update"]},
               {"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}]),
        false,
    );
    let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    assert!(p.allows(&user, &attrs("GET", &format!("{lease}/cni-migrate"))));
    assert!(!p.allows(&user, &attrs("GET", &format!("{lease}/other"))));
    assert!(
        !p.allows(&user, &attrs("POST", lease)),
        "resourceNames never match a create"
    );
    assert!(p.allows(
        &user,
        &attrs("GET", "/api/v1/namespaces/kube-system/configmaps")
    ));
    assert!(
        !p.allows(&user, &attrs("GET", "/api/v1/namespaces/shop/configmaps")),
        "a Role grants in its namespace only"
    );
    assert!(
        !p.allows(&user, &attrs("GET", "/api/v1/configmaps")),
        "nor cluster-wide"
    );
    let other = User::service_account("kube-system", "someone-else");
    assert!(!p.allows(
        &other,
        &attrs("GET", "/api/v1/namespaces/kube-system/configmaps")
    ));
    // A ClusterRole bound by a RoleBinding grants in the binding's namespace only.
    let mut p = policy(
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
        true,
    );
    p.role_bindings = vec![json!({"metadata": {"name": "b", "namespace": "shop"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kube-system"}],
        "roleRef": {"kind": "ClusterRole", "name": "r"}})];
    p.cluster_role_bindings.clear();
    assert!(p.allows(
        &user,
        &attrs("DELETE", "/api/v1/namespaces/shop/configmaps/c")
    ));
    assert!(!p.allows(
        &user,
        &attrs("DELETE", "/api/v1/namespaces/default/configmaps/c")
    ));
}

#[tokio::test]
async fn a_denial_names_the_verb_resource_and_scope() {
    let user = User::service_account("kube-system", "sa");
    let (_, b) = body(forbidden(&user, &attrs("GET", "/api/v1/nodes"))).await;
    assert_eq!(
        b["message"],
        "nodes is forbidden: User \"system:serviceaccount:kube-system:sa\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
    let (_, b) = body(forbidden(
        &user,
        &attrs("POST", "/api/v1/namespaces/shop/pods/web-1/eviction"),
    ))
    .await;
    assert_eq!(
        b["message"],
        "pods \"web-1\" is forbidden: User \"system:serviceaccount:kube-system:sa\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"shop\""
    );
}
