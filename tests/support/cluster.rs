//! A simulated cluster in the test process, and the real `cni-migrate` binary run against it:
//! the test reads the model's ground truth through the same API the tool uses.

#![allow(dead_code)] // each test binary uses a different part of it

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use cluster::{Cluster, ClusterArgs, KubeCluster};
use sim::{Sim, model::ModelOptions};

/// A running simulated cluster with a kubeconfig and a spec tuned for it.
pub struct Env {
    /// The server and model.
    pub sim: Sim,
    /// A client for ground truth.
    pub cluster: KubeCluster,
    /// Temporary files.
    pub dir: tempfile::TempDir,
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// The spec (the example's, with a short soak and a reboot hook that works here).
    pub spec: PathBuf,
}

/// The example's spec, adapted to the simulated cluster: a 1 s soak, a reboot hook that only
/// echoes, and `tweak` applied last.
pub fn adapted_spec(text: &str, tweak: &(dyn Fn(String) -> String + Sync)) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("soak:") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}soak: 1s\n"));
        } else {
            out.push_str(&line.replace(
                r#"["docker", "restart", "{node}"]"#,
                r#"["echo", "rebooting", "{node}"]"#,
            ));
            out.push('\n');
        }
    }
    tweak(out)
}

/// Starts a simulated cluster loaded from an example's dump, with fast pods.
pub async fn env(example: &str, tweak: &(dyn Fn(String) -> String + Sync)) -> Env {
    let plans = super::plans_dir();
    let dump = ["dump.yaml", "dump.json"]
        .iter()
        .map(|ext| plans.join(format!("{example}.{ext}")))
        .find(|p| p.exists())
        .expect("the example has a dump");
    let mut sim = Sim::start(0).await.expect("sim starts");
    sim.load_dump(&dump).expect("dump loads");
    sim.start_model(
        ModelOptions {
            pod_start: Duration::from_millis(50),
            ..ModelOptions::default()
        },
        Duration::from_millis(100),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let spec_text = std::fs::read_to_string(plans.join(format!("{example}.yaml"))).expect("spec");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, adapted_spec(&spec_text, tweak)).expect("write spec");
    let client = cluster::connect(&ClusterArgs {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
    })
    .await
    .expect("client");
    Env {
        sim,
        cluster: KubeCluster::new(client),
        dir,
        kubeconfig,
        spec,
    }
}

impl Env {
    /// Gives a node one of the model's faults (`agent-stuck`, `cnc-ignored`).
    pub fn set_fault(&self, node: &str, fault: &str) {
        self.sim
            .set_node_fault(node, fault)
            .expect("the node exists");
    }

    /// `cni-migrate SUB --spec ... --kubeconfig ... --helm "cni-migrate sim helm" --yes
    /// --sim-timing --lease-seconds 1 -o json` plus `extra`.
    pub fn command(&self, sub: &str, extra: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(super::binary());
        c.arg(sub)
            .arg("--spec")
            .arg(&self.spec)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--helm")
            .arg(format!("{} sim helm", super::binary().display()))
            .args([
                "--yes",
                "--sim-timing",
                "--lease-seconds",
                "1",
                "-o",
                "json",
            ])
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Starts `cni-migrate SUB` (as [`Env::command`]) with its JSON lines read as they come.
    pub fn watch(&self, sub: &str, extra: &[&str]) -> Watched {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = self
            .command(sub, extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        Watched {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Runs `apply`, killed with SIGKILL at `point` (`STEP@started|done`, from the test
    /// hook), and waits until its Lease is stale, as a human would before `resume
    /// --force-unlock`.
    pub async fn killed_at(&self, point: &str) {
        self.killed_in("apply", &[], point).await;
    }

    /// Runs `cni-migrate SUB EXTRA`, killed with SIGKILL at `point`, and waits until its Lease
    /// is stale.
    pub async fn killed_in(&self, sub: &str, extra: &[&str], point: &str) {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.command(sub, extra)
                .env("CNI_MIGRATE_TEST_CRASH_AT", point)
                .output(),
        )
        .await
        .expect("in time")
        .expect("runs");
        assert_eq!(
            out.status.code(),
            None,
            "{point}: the process should have been killed: {}",
            show(&out)
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }

    /// Runs `cni-migrate ARGS --kubeconfig K` to its end (`status`, `pause`, ...).
    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(super::binary())
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .expect("cni-migrate runs")
    }

    /// `cni-migrate SUB` without `--helm` (so it stops at the Helm gates), values files in
    /// `values/` of the test's directory.
    pub fn gated(&self, sub: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(super::binary());
        c.args([
            sub,
            "--yes",
            "--sim-timing",
            "--lease-seconds",
            "1",
            "--work-dir",
            "values",
            "--spec",
        ])
        .arg(&self.spec)
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .current_dir(self.dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        c
    }

    /// Runs a command to its end (at most `limit`; past it, the panic shows what it printed).
    pub async fn run(&self, sub: &str, extra: &[&str], limit: Duration) -> Output {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out_path = self.dir.path().join(format!("{sub}-{n}.out"));
        let err_path = self.dir.path().join(format!("{sub}-{n}.err"));
        let mut cmd = self.command(sub, extra);
        cmd.stdout(std::fs::File::create(&out_path).expect("out file"))
            .stderr(std::fs::File::create(&err_path).expect("err file"));
        let mut child = cmd.spawn().expect("cni-migrate starts");
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                let _ = child.kill().await;
                panic!(
                    "cni-migrate {sub} did not finish in {limit:?}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
                    tail(&out_path),
                    tail(&err_path)
                );
            }
        };
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    /// The nodes: name → (cordoned, labelled).
    pub async fn nodes(&self) -> BTreeMap<String, (bool, bool)> {
        let snap = cluster::discover(self.cluster.client())
            .await
            .expect("discover");
        snap.nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    (
                        n.unschedulable,
                        n.labels
                            .get(planner::plan::MIGRATION_LABEL)
                            .is_some_and(|v| v == "true"),
                    ),
                )
            })
            .collect()
    }

    /// Controller-owned pods outside DaemonSets and the old CNI, counted by owner (`ns/Kind/name`,
    /// StatefulSet pods by name too): what must survive the migration.
    pub async fn workload_pods(&self) -> BTreeMap<String, Vec<planner::snapshot::PodInfo>> {
        let pods = self.cluster.pods(None, "").await.expect("pods");
        let mut out: BTreeMap<String, Vec<planner::snapshot::PodInfo>> = BTreeMap::new();
        for p in pods {
            let Some(owner) = &p.owner else { continue };
            // The old CNI's own workloads are removed with it.
            let old_cni = [
                "calico-system",
                "calico-apiserver",
                "tigera-operator",
                "kube-flannel",
            ]
            .contains(&p.namespace.as_str())
                || owner.name.starts_with("calico-");
            if owner.kind == "DaemonSet" || old_cni || p.terminating || p.phase.is_finished() {
                continue;
            }
            out.entry(format!("{}/{}/{}", p.namespace, owner.kind, owner.name))
                .or_default()
                .push(p);
        }
        out
    }

    /// The names of pods the tool deleted directly (not through eviction).
    pub fn deleted_pods(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .filter(|(verb, path)| verb == "DELETE" && path.contains("/pods/"))
            .map(|(_, path)| {
                path.split('?')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("/api/v1/namespaces/")
                    .replace("/pods/", "/")
            })
            .collect()
    }

    /// The checkpoint the run left in its ConfigMaps, read as the tool reads it.
    pub async fn checkpoint(&self) -> Option<executor::checkpoint::Checkpoint> {
        use executor::store::StateStore as _;
        executor::store::ConfigMapStore::new(std::sync::Arc::new(self.cluster.clone()))
            .load()
            .await
            .expect("the checkpoint reads")
    }
}

/// A run started by [`Env::watch`].
pub struct Watched {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Watched {
    /// Reads lines until one satisfies `pred` and returns it; `None` when the run ended first.
    pub async fn until(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
        None
    }

    /// Reads the rest, waits for the exit, and returns it with every line.
    /// Sends a signal (`TERM`, `INT`) to the running command.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -s {name} {pid}");
    }

    pub async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line);
        }
        let status = self.child.wait().await.expect("wait");
        (status, self.seen)
    }
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Asserts the end state of a complete migration against the state before it.
pub async fn assert_migrated(
    env: &Env,
    before_nodes: &BTreeMap<String, (bool, bool)>,
    before_pods: &BTreeMap<String, Vec<planner::snapshot::PodInfo>>,
    pool: &str,
) {
    let pool: ipnet::IpNet = pool.parse().expect("pool");
    let nodes = env.nodes().await;
    for (name, (cordoned, labelled)) in &nodes {
        assert!(labelled, "node {name} is not labelled");
        let was = before_nodes.get(name).map(|b| b.0).unwrap_or(false);
        assert_eq!(
            *cordoned, was,
            "node {name}: cordoned {cordoned} after the migration, {was} before"
        );
    }
    // Every workload still has its pods (as themselves or replacements), Running, in the pool.
    let mut after = BTreeMap::new();
    for _ in 0..100 {
        after = env.workload_pods().await;
        let settled = before_pods.iter().all(|(owner, pods)| {
            after.get(owner).is_some_and(|a| {
                a.len() == pods.len()
                    && a.iter().all(|p| {
                        p.ready && (p.host_network || p.pod_ips.iter().any(|ip| pool.contains(ip)))
                    })
            })
        });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (owner, pods) in before_pods {
        let now = after.get(owner).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            now.len(),
            pods.len(),
            "{owner}: {} pod(s) before, {} after",
            pods.len(),
            now.len()
        );
        for p in now {
            assert!(
                p.host_network || p.pod_ips.iter().any(|ip| pool.contains(ip)),
                "{} has {:?}, outside {pool}",
                p.key(),
                p.pod_ips
            );
        }
    }
    // Nothing but Cilium agent pods and the tool's own probes and beacons was deleted
    // directly, each agent pod at most once, and none of the tool's pods is left.
    let deleted: Vec<String> = env
        .deleted_pods()
        .into_iter()
        .filter(|d| !d.starts_with("kube-system/cni-migrate-"))
        .collect();
    for d in &deleted {
        assert!(
            d.starts_with("kube-system/cilium-"),
            "{d} was deleted directly, not evicted"
        );
    }
    use cluster::Cluster as _;
    let ours = env
        .cluster
        .pods(
            Some("kube-system"),
            "app.kubernetes.io/managed-by=cni-migrate",
        )
        .await
        .expect("list");
    assert!(
        ours.is_empty(),
        "the tool's pods are left: {:?}",
        ours.iter().map(|p| p.key()).collect::<Vec<_>>()
    );
    let distinct: BTreeSet<&String> = deleted.iter().collect();
    assert!(
        distinct.len() <= nodes.len(),
        "{} agent pods deleted for {} nodes: {deleted:?}",
        distinct.len(),
        nodes.len()
    );
}

/// The JSON-lines events a run printed.
pub fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The step ids of a plan, as `cni-migrate plan -o json` prints them.
pub fn step_ids(spec: &Path, kubeconfig: &Path) -> Vec<String> {
    let out = std::process::Command::new(super::binary())
        .args(["plan", "-o", "json", "--spec"])
        .arg(spec)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("plan runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}
