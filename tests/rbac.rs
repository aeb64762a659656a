//! `cni-migrate rbac` is kept in sync with what the tool really does: full migrations of three
//! examples (plan, apply to each Helm gate, resume, status, pause) are recorded request by
//! request against the simulated cluster, and every request must be granted by the printed
//! rules, and every rule must be used. The Helm stand-in's own requests (it plays helm, which has
//! its own RBAC) are left out by recording windows around the tool's runs only.

mod support;

use std::{collections::BTreeSet, time::Duration};

use cni_migrate::rbac::{RULES, granted, permissions};
use support::cluster::{Env, env, show};

const LIMIT: Duration = Duration::from_secs(120);

/// Grants that only a fallback path uses, which a run takes or not by timing: a node is read
/// with GET only while the node cache is not live (before its first LIST, after its watch
/// failed) or has not yet shown a write of the tool's own (`cluster/src/cached.rs`; the GET is
/// tested in `crates/sim/tests/node_cache.rs`, `a_broken_watch_hands_reads_to_the_api_until_it_is_back`). They must
/// be granted (the check above) but a run need not use them.
const FALLBACK_ONLY: &[(&str, &str, &str)] = &[("get", "", "nodes")];

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
        for (group, resource, verb, namespace) in permissions(method, uri) {
            if !granted(&group, &resource, &verb, namespace.as_deref()) {
                denied.insert(format!(
                    "{verb} {group}/{resource} in {namespace:?} ({method} {uri})"
                ));
            }
            used.insert((group, resource, verb, namespace));
        }
    }
    assert!(
        denied.is_empty(),
        "requests the RBAC does not grant:\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );
    let mut unused = Vec::new();
    for r in RULES {
        for v in r.verbs {
            if FALLBACK_ONLY.contains(&(*v, r.group, r.resource)) {
                continue;
            }
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
    let sa = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .expect("the bound ServiceAccount is printed too");
    assert_eq!(sa["metadata"]["namespace"], "ops");
    assert_eq!(sa["metadata"]["name"], "migrator");
    let cnc = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["resources"][0] == "ciliumnodeconfigs")
        .expect("a rule for the CiliumNodeConfig");
    assert!(
        cnc["verbs"]
            .as_array()
            .is_some_and(|v| v.contains(&"create".into())),
        "the first server-side apply creates the CiliumNodeConfig: {cnc}"
    );
    assert!(
        text.contains("--helm-kubeconfig"),
        "says how Helm gets its rights"
    );
    assert!(!text.contains("name: cni-migrate-helm"));
    for d in docs
        .iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        assert_eq!(d["subjects"][0]["name"], "migrator");
        assert_eq!(d["subjects"][0]["namespace"], "ops");
    }
    assert!(!text.contains("secrets"));
    let helm = support::run(&["rbac", "--helm-role"]);
    assert!(helm.status.success(), "{}", show(&helm));
    let helm = String::from_utf8_lossy(&helm.stdout);
    assert!(helm.contains("name: cni-migrate-helm") && helm.contains("secrets"));
    let bad = support::run(&["rbac", "--service-account", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `cni-migrate rbac` output, applied to the simulated cluster as its objects.
fn apply_rbac(env: &Env, extra: &[&str]) {
    let mut args = vec!["rbac", "--service-account", "kube-system/cni-migrate"];
    args.extend(extra);
    let out = support::run(&args);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for doc in text.split("\n---\n").filter(|d| d.contains("apiVersion")) {
        let doc: serde_json::Value =
            serde_yaml::from_str(doc.trim_start_matches("---\n")).expect("yaml");
        assert!(
            env.sim.insert(doc.clone()),
            "the sim serves {}",
            doc["kind"]
        );
    }
}

/// The run as the ServiceAccount: its kubeconfig for the tool, the admin's kept for ground truth.
fn as_service_account(env: &mut Env) -> std::path::PathBuf {
    let admin = env.kubeconfig.clone();
    let sa = env.dir.path().join("sa-kubeconfig");
    env.sim
        .write_kubeconfig_for("kube-system", "cni-migrate", &sa)
        .expect("the ServiceAccount was applied");
    env.kubeconfig = sa;
    admin
}

/// The printed RBAC is enough for a whole migration, request by request, as the simulated API
/// server checks it (the first server-side apply of the CiliumNodeConfig needs `create`); Helm
/// runs with its own kubeconfig (`--helm-kubeconfig`). A rollback of one node and its retry too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_runs_as_the_service_account_the_rbac_prints() {
    let mut env = env("kind-flannel", &same).await;
    apply_rbac(&env, &[]);
    let admin = as_service_account(&mut env);
    let admin = admin.display().to_string();
    // The authorizer is on: the ServiceAccount may not read Secrets.
    let sa_client = cluster::connect(&cluster::ClusterArgs {
        kubeconfig: Some(env.kubeconfig.clone()),
        context: None,
    })
    .await
    .expect("client");
    let sa = cluster::KubeCluster::new(sa_client);
    use cluster::Cluster as _;
    let denied = sa
        .custom("v1", "secrets", Some("kube-system"), "x")
        .await
        .expect_err("Secrets are not granted");
    assert!(
        denied
            .to_string()
            .contains("cannot get resource \"secrets\""),
        "{denied}"
    );

    let out = env
        .run(
            "apply",
            &["--helm-kubeconfig", &admin, "--stop-before", "finalize"],
            LIMIT,
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let node = env
        .nodes()
        .await
        .into_keys()
        .last()
        .expect("the cluster has nodes");
    let out = env
        .run("rollback", &[&node, "--helm-kubeconfig", &admin], LIMIT)
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "rollback {node}: {}",
        show(&out)
    );
    let out = env
        .run(
            "resume",
            &["--helm-kubeconfig", &admin, "--retry", &node],
            LIMIT,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let forbidden: Vec<String> = env
        .sim
        .requests()
        .into_iter()
        .map(|(m, u)| format!("{m} {u}"))
        .filter(|r| r.contains("/secrets"))
        .collect();
    assert_eq!(forbidden.len(), 1, "only the probe above: {forbidden:?}");
}

/// Helm run with the tool's least-privilege credentials is refused on `cilium-config`: the
/// step fails at once (one Helm run, not five minutes of retries) and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_refused_by_rbac_fails_at_once() {
    let mut env = env("kind-flannel", &same).await;
    apply_rbac(&env, &[]);
    as_service_account(&mut env);
    let started = std::time::Instant::now();
    let out = env.run("apply", &[], LIMIT).await;
    let text = show(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("forbidden") && text.contains("--helm-kubeconfig"),
        "{text}"
    );
    let helm_writes = env
        .sim
        .requests()
        .into_iter()
        .filter(|(m, u)| m == "PATCH" && u.contains("/configmaps/cilium-config"))
        .count();
    assert_eq!(helm_writes, 1, "Helm ran once: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no retries: {:?}",
        started.elapsed()
    );
}

/// Every other example (Calico through its operator and its manifests, the EKS profiles)
/// runs as the ServiceAccount exactly as it runs as the admin: `apply` to the gate before the
/// finale, `rollback` of a node and `resume --retry` of it to the end, or, for the
/// examples made to stop, to the same refusal by preflight (exit 3: mixed AMI families, an
/// overlay webhook, a PDB that blocks every drain), which reads the whole cluster as that
/// ServiceAccount; never to a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_examples_migrate_as_the_service_account() {
    // (example, exit code of a plain apply, whether one node can be rolled back alone: not
    // in ENI mode, where Cilium took every node's CNI over at install)
    for (example, code, alone) in [
        ("calico-operator-vxlan", 0, true),
        ("calico-manifest-ipip", 0, true),
        ("eks-overlay-al2", 0, true),
        ("eks-eni-al2023", 0, false),
        ("eks-aws-vpc-cni", 0, true),
        ("eks-eni-al2-tainted", 0, false),
        ("eks-overlay-webhook", 3, true),
        ("eks-mixed-os", 3, true),
        ("pdb-blocks-drain", 3, true),
    ] {
        let mut env = env(example, &same).await;
        apply_rbac(&env, &[]);
        let admin = as_service_account(&mut env).display().to_string();
        if code != 0 {
            let out = env
                .run("apply", &["--helm-kubeconfig", &admin], LIMIT)
                .await;
            let shown = show(&out);
            assert_eq!(out.status.code(), Some(code), "{example}: {shown}");
            assert!(!shown.contains("forbidden"), "{example}: {shown}");
            continue;
        }
        // apply to the gate before the finale, roll one node back, resume retrying it.
        let out = env
            .run(
                "apply",
                &["--helm-kubeconfig", &admin, "--stop-before", "finalize"],
                LIMIT,
            )
            .await;
        assert_eq!(out.status.code(), Some(4), "{example}: {}", show(&out));
        let node = env.nodes().await.into_keys().last().expect("nodes");
        let out = env
            .run("rollback", &[&node, "--helm-kubeconfig", &admin], LIMIT)
            .await;
        let retry: &[&str] = if alone {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{example} rollback {node}: {}",
                show(&out)
            );
            &["--retry", &node]
        } else {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{example} rollback {node}: {}",
                show(&out)
            );
            assert!(show(&out).contains("cannot roll back"), "{}", show(&out));
            &[]
        };
        let mut args = vec!["--helm-kubeconfig", admin.as_str()];
        args.extend(retry);
        let out = env.run("resume", &args, LIMIT).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example} resume: {}",
            show(&out)
        );
    }
}
