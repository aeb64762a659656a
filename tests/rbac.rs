//! `cni-migrate rbac` is kept in sync with what the tool really does: full migrations of three
//! examples (plan, apply to each Helm gate, resume, status, pause) are recorded request by
//! request against the simulated cluster, and every request must be granted by the printed
//! rules, and every rule must be used. The Helm stand-in's own requests (it plays helm, which has
//! its own RBAC) are left out by recording windows around the tool's runs only.

mod support;

use std::{collections::BTreeSet, time::Duration};

use cni_migrate::rbac::{RULES, granted, permission};
use support::cluster::{Env, env, show};

const LIMIT: Duration = Duration::from_secs(120);

fn same(s: String) -> String {
    s
}

/// Requests the tool made during `f`.
async fn recorded<F: std::future::Future<Output = ()>>(
    env: &Env,
    into: &mut Vec<(String, String)>,
    f: F,
) {
    let start = env.sim.requests().len();
    f.await;
    into.extend(env.sim.requests().into_iter().skip(start));
}

fn helm(env: &Env, values: &std::path::Path) {
    let out = std::process::Command::new(support::binary())
        .args([
            "sim",
            "helm",
            "upgrade",
            "--install",
            "cilium",
            "cilium/cilium",
            "--namespace",
            "kube-system",
            "-f",
        ])
        .arg(values)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()
        .expect("helm stand-in runs");
    assert!(out.status.success(), "{}", show(&out));
}

async fn gated(env: &Env, sub: &str) -> std::process::Output {
    tokio::time::timeout(LIMIT, env.gated(sub).output())
        .await
        .expect("in time")
        .expect("runs")
}

fn cli(env: &Env, args: &[&str]) {
    let out = env.cli(args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
}

async fn requests_of_a_full_migration(example: &str) -> Vec<(String, String)> {
    let env = env(example, &same).await;
    let mut tool = Vec::new();
    let values = env.dir.path().join("values");
    recorded(&env, &mut tool, async {
        cli(&env, &["plan", "--spec", &env.spec.display().to_string()]);
        let out = gated(&env, "apply").await;
        assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    })
    .await;
    helm(&env, &values.join("values-migration.yaml"));
    recorded(&env, &mut tool, async {
        let out = gated(&env, "resume").await;
        assert_eq!(
            out.status.code(),
            Some(4),
            "the final values gate: {}",
            show(&out)
        );
        cli(&env, &["status"]);
        cli(&env, &["pause"]);
    })
    .await;
    helm(&env, &values.join("values-final.yaml"));
    recorded(&env, &mut tool, async {
        let out = gated(&env, "resume").await;
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        cli(&env, &["status"]);
    })
    .await;
    tool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_rbac_grants_exactly_what_full_migrations_use() {
    let mut all = Vec::new();
    for example in [
        "kind-flannel",
        "calico-operator-vxlan",
        "calico-manifest-ipip",
        "eks-overlay-al2",
        "eks-eni-al2023",
    ] {
        all.extend(requests_of_a_full_migration(example).await);
    }
    let mut used: BTreeSet<(String, String, String, Option<String>)> = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for (method, uri) in &all {
        assert!(
            !uri.contains("/secrets"),
            "the tool read a Secret: {method} {uri}"
        );
        let Some((group, resource, verb, namespace)) = permission(method, uri) else {
            continue;
        };
        if !granted(&group, &resource, &verb, namespace.as_deref()) {
            denied.insert(format!(
                "{verb} {group}/{resource} in {namespace:?} ({method} {uri})"
            ));
        }
        used.insert((group, resource, verb, namespace));
    }
    assert!(
        denied.is_empty(),
        "requests the RBAC does not grant:\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );
    let mut unused = Vec::new();
    for r in RULES {
        for v in r.verbs {
            let hit = used.iter().any(|(g, res, verb, ns)| {
                g == r.group
                    && res == r.resource
                    && verb == v
                    && r.namespace.is_none_or(|want| ns.as_deref() == Some(want))
            });
            if !hit {
                unused.push(format!(
                    "{v} {}/{} ({:?})",
                    r.group, r.resource, r.namespace
                ));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "grants no recorded run used (drop them or cover them):\n{}",
        unused.join("\n")
    );
}

#[test]
fn rbac_prints_valid_yaml_documents_naming_the_subject() {
    let out = support::run(&["rbac", "--service-account", "ops/migrator"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .filter(|d| d.contains("apiVersion"))
        .map(|d| serde_yaml::from_str(d.trim_start_matches("---\n")).expect("yaml"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"ClusterRole") && kinds.contains(&"ClusterRoleBinding"));
    assert!(kinds.contains(&"Role") && kinds.contains(&"RoleBinding"));
    for d in docs
        .iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        assert_eq!(d["subjects"][0]["name"], "migrator");
        assert_eq!(d["subjects"][0]["namespace"], "ops");
    }
    assert!(!text.contains("secrets"));
    let bad = support::run(&["rbac", "--service-account", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
}
