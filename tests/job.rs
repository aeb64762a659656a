//! `cni-migrate job`: the objects that run the migration inside the cluster. Their shape is
//! checked by parsing them (the Job's pod lives through the migration it runs), and the Job's
//! own command line is run against the simulated cluster, with the spec as the ConfigMap holds
//! it, so that what the pod would run is known to work.

mod support;

use std::collections::BTreeSet;

use serde::Deserialize as _;
use serde_json::Value;
use support::cluster::{assert_migrated, env, show};

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn job_objects(extra: &[&str]) -> Vec<Value> {
    job_objects_for(&support::plans_dir().join("kind-flannel.yaml"), extra)
}

fn job_objects_for(spec: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let spec = spec.display().to_string();
    let mut args = vec![
        "job",
        "--spec",
        &spec,
        "--image",
        "example.org/cni-migrate:0.1.0",
    ];
    args.extend_from_slice(extra);
    let out = support::run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    docs(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn the_job_lives_through_the_migration_it_runs() {
    let objects = job_objects(&["--helm", "helm", "--stop-before", "finalize"]);
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Job",
    ] {
        assert!(kinds.contains(k), "no {k}: {kinds:?}");
    }
    let by_kind = |k: &str| objects.iter().find(|o| o["kind"] == k).expect(k);
    let cm = by_kind("ConfigMap");
    let spec_text =
        std::fs::read_to_string(support::plans_dir().join("kind-flannel.yaml")).expect("spec");
    assert_eq!(cm["data"]["spec.yaml"], spec_text.as_str());
    let sa = by_kind("ServiceAccount");
    assert_eq!(sa["metadata"]["namespace"], "kube-system");
    // Every binding names the ServiceAccount the pod runs as.
    for b in objects
        .iter()
        .filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        let s = &b["subjects"][0];
        assert_eq!(
            (s["kind"].as_str(), s["name"].as_str()),
            (Some("ServiceAccount"), Some("cni-migrate"))
        );
    }
    let job = by_kind("Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cni-migrate");
    assert_eq!(
        pod["hostNetwork"], true,
        "it must depend on neither overlay"
    );
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerates every taint, node.cilium.io/agent-not-ready included"
    );
    let prefers =
        pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .to_string();
    assert!(
        prefers.contains("node-role.kubernetes.io/control-plane")
            && prefers.contains("io.cilium.migration/cilium-default")
    );
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..2], ["apply", "--or-resume"]);
    for want in [
        "--in-cluster",
        "--yes",
        "--helm",
        "--stop-before",
        "--force-unlock",
    ] {
        assert!(args.contains(&want), "{args:?}");
    }
    assert!(
        job["spec"]["activeDeadlineSeconds"]
            .as_u64()
            .is_some_and(|d| d >= 600)
    );
    let policy = job["spec"]["podFailurePolicy"].to_string();
    assert!(
        policy.contains("DisruptionTarget") && policy.contains("FailJob"),
        "{policy}"
    );
    // Metrics on the pod (scrape annotations), webhook URLs from a Secret, not in the spec.
    let watched = job_objects(&["--metrics-port", "9464", "--notify-secret", "slack-webhook"]);
    let job = watched.iter().find(|o| o["kind"] == "Job").expect("Job");
    let template = &job["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/port"],
        "9464"
    );
    let c = &template["spec"]["containers"][0];
    assert!(
        c["args"]
            .to_string()
            .contains(r#""--metrics-addr","0.0.0.0:9464""#)
    );
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    let notify = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "CNI_MIGRATE_NOTIFY")
        .expect("CNI_MIGRATE_NOTIFY");
    assert_eq!(
        notify["valueFrom"]["secretKeyRef"]["name"], "slack-webhook",
        "{notify}"
    );
    // --rollback runs rollback --all.
    let rollback = job_objects(&["--rollback"]);
    let job = rollback.iter().find(|o| o["kind"] == "Job").expect("Job");
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.starts_with(r#"["rollback","--all""#), "{args}");
}

#[test]
fn bad_input_is_named_and_prints_nothing() {
    let spec = support::plans_dir().join("kind-flannel.yaml");
    let spec = spec.display().to_string();
    for (args, says) in [
        (
            vec!["job", "--spec", "/nonexistent.yaml", "--image", "i"],
            "/nonexistent.yaml",
        ),
        (
            vec![
                "job",
                "--spec",
                &spec,
                "--image",
                "i",
                "--stop-before",
                "verify",
            ],
            "--stop-before verify",
        ),
        (
            vec!["job", "--spec", &spec, "--image", "i", "--deadline", "5m"],
            "--deadline 5m",
        ),
        (
            vec![
                "job",
                "--spec",
                &spec,
                "--image",
                "i",
                "--rollback",
                "--stop-before",
                "finalize",
            ],
            "--rollback",
        ),
    ] {
        let out = support::run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed objects");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            show(&out)
        );
    }
}

/// `--in-cluster` outside a pod says what it expected, and changes nothing.
#[test]
fn in_cluster_outside_a_pod_is_named() {
    let out = std::process::Command::new(support::binary())
        .args(["status", "--in-cluster"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--in-cluster: not inside a pod") && said.contains("KUBERNETES_SERVICE_HOST"),
        "{said}"
    );
}

/// What `cni-migrate job ... | kubectl apply -f -` does, against the sim: first with
/// `--dry-run=server` (every object, the Job included, validated by the server strictly:
/// kubectl reads the sim's OpenAPI documents and sends `fieldValidation=Strict`), then for
/// real. `false` (and a note) where kubectl is not installed.
fn kubectl_applies(env: &support::cluster::Env, objects: &[Value]) -> bool {
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("yaml")))
        .collect();
    let apply = |extra: &[&str]| {
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["apply", "-f", "-"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())?;
        child.wait_with_output()
    };
    let Ok(dry) = apply(&["--dry-run=server"]) else {
        eprintln!("note: kubectl is not on the PATH; the Job's objects are inserted unchecked");
        return false;
    };
    assert!(dry.status.success(), "{}", show(&dry));
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    for kind in ["configmap", "serviceaccount", "job.batch"] {
        assert!(dry_out.contains(kind), "{kind}: {dry_out}");
    }
    assert!(
        env.sim
            .store()
            .get("batch/jobs", "kube-system", "cni-migrate")
            .is_none(),
        "a server dry run stores nothing"
    );
    let real = apply(&[]).expect("kubectl runs");
    assert!(real.status.success(), "{}", show(&real));
    assert!(
        env.sim
            .store()
            .get("batch/jobs", "kube-system", "cni-migrate")
            .is_some(),
        "the Job is stored (the sim runs no Job controller: the test runs its command line)"
    );
    true
}

/// The ServiceAccount volume as admission mounts it in the Job's pod (`token`, `ca.crt`,
/// `namespace`), for the simulated cluster served over TLS.
fn mount_service_account(env: &support::cluster::Env, ca_pem: &str) -> std::path::PathBuf {
    let dir = env.dir.path().join("serviceaccount");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("token"),
        sim::server::auth::issue("kube-system", "cni-migrate"),
    )
    .expect("token");
    std::fs::write(dir.join("ca.crt"), ca_pem).expect("ca.crt");
    std::fs::write(dir.join("namespace"), "kube-system").expect("namespace");
    dir
}

/// The Lease's holder (`None` once released).
fn lease_holder(env: &support::cluster::Env) -> Option<String> {
    let (_, leases, _) = env.sim.store().list(
        "coordination.k8s.io/leases",
        Some("kube-system"),
        None,
        None,
        &|_, _| true,
    );
    leases.iter().find_map(|(_, s)| {
        s.value()["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    })
}

/// The Job's pods, without containers, under the sim's authorizer: the objects `job` prints
/// applied with kubectl (a server dry run first), the spec as the ConfigMap holds it, Helm in
/// the pod with the same identity; each pod is `cni-migrate` run with the Job's arguments and
/// the in-cluster environment (no kubeconfig; `KUBERNETES_SERVICE_HOST`/`_PORT` pointing at the
/// sim's TLS port; the ServiceAccount's token and CA where the volume is mounted), so kube-rs's
/// in-cluster configuration is what connects. The first pod is sent SIGTERM mid-drain (its node
/// drained): it writes the checkpoint, releases the Lease and exits 143; the second starts at
/// once, without waiting for the Lease, and is killed without warning (SIGKILL); the third
/// takes the stale Lease over, says so, and finishes the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_pods_survive_sigterm_and_sigkill() {
    let env = env("kind-flannel", &|s| s).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    let objects = job_objects_for(&env.spec, &["--helm", "helm"]);
    if !kubectl_applies(&env, &objects) {
        for o in objects.iter().filter(|o| o["kind"] != "Job") {
            assert!(env.sim.insert(o.clone()), "the sim serves {}", o["kind"]);
        }
    }
    let tls = env.sim.serve_tls().await.expect("TLS");
    let sa_dir = mount_service_account(&env, &tls.ca_pem);
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("ConfigMap");
    let job = objects.iter().find(|o| o["kind"] == "Job").expect("Job");
    let spec = env.dir.path().join("mounted-spec.yaml");
    std::fs::write(&spec, cm["data"]["spec.yaml"].as_str().expect("spec")).expect("write");
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let stand_in = format!("{} sim helm", support::binary().display());
    let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .map(|a| match a {
            "/etc/cni-migrate/spec.yaml" => spec.display().to_string(),
            "/work" => home.display().to_string(),
            "helm" => stand_in.clone(),
            other => other.to_owned(),
        })
        .collect();
    let pod = |crash_at: Option<&str>| {
        let mut c = tokio::process::Command::new(support::binary());
        c.args(&args)
            .args(["--sim-timing", "--lease-seconds", "1"])
            .env_remove("KUBECONFIG")
            .env("HOME", &home)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", tls.addr.port().to_string())
            .env("CNI_MIGRATE_SERVICEACCOUNT_DIR", &sa_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(point) = crash_at {
            c.env("CNI_MIGRATE_TEST_CRASH_AT", point);
        }
        c
    };

    // The first pod: its node is drained under it.
    let mut first = pod(None).spawn().expect("spawn");
    let stdout = first.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let drain = line.contains("\"step-started\"") && line.contains("/drain\"");
        seen.push(line);
        if drain {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("/drain\"")),
        "a drain starts, in-cluster: {}",
        seen.join("\n")
    );
    assert!(lease_holder(&env).is_some(), "the run holds the Lease");
    let pid = first.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let out = first.wait_with_output().await.expect("exits");
    assert_eq!(out.status.code(), Some(143), "{}", show(&out));
    assert!(lease_holder(&env).is_none(), "SIGTERM released the Lease");
    let ck = env.checkpoint().await.expect("the checkpoint is written");
    assert!(!ck.finished());

    // The second pod starts at once (the Lease was released) and dies without warning.
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        pod(Some("kind-worker2/cordon@done")).output(),
    )
    .await
    .expect("in time")
    .expect("runs");
    assert_eq!(out.status.code(), None, "killed: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("going on with it (--or-resume)"),
        "{}",
        show(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(
        lease_holder(&env).is_some(),
        "a killed run keeps the Lease until it is stale"
    );

    // The third pod waits for the Lease to go stale, takes it over and finishes.
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), pod(None).output())
        .await
        .expect("in time")
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        said.contains("stale") || said.contains("took over") || said.contains("force"),
        "{}",
        show(&out)
    );
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
}
