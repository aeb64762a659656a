//! The model behind the API: replacements for evicted pods are scheduled on schedulable nodes
//! and become Ready, so a drain that waits on a PodDisruptionBudget completes as it would on a
//! real cluster; StatefulSet pods come back with the same name and a new UID.

mod support;

use std::{path::PathBuf, time::Duration};

use cluster::{Cluster, Eviction, KubeCluster};
use sim::{Sim, model::ModelOptions};

/// The kind-flannel dump in a sim whose model runs with `opts` (pods go in 100 ms).
async fn sim_with(opts: ModelOptions) -> Sim {
    let mut sim = Sim::start(0).await.expect("sim");
    sim.load_dump(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.dump.yaml"
    )))
    .expect("dump");
    sim.start_model(opts, Duration::from_millis(100));
    sim
}

async fn start() -> (Sim, KubeCluster, tempfile::TempDir) {
    let sim = sim_with(ModelOptions {
        pod_start: Duration::from_millis(100),
        ..ModelOptions::default()
    })
    .await;
    let (client, dir) = support::connected(&sim).await;
    (sim, KubeCluster::new(client), dir)
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = std::time::Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn evicted_replicaset_pods_are_replaced_on_schedulable_nodes() {
    let (_sim, c, _dir) = start().await;
    c.set_unschedulable("kind-worker", true)
        .await
        .expect("cordon");
    let before = c.pods(Some("shop"), "app=frontend").await.expect("pods");
    let victim = before
        .iter()
        .find(|p| p.node_name.as_deref() == Some("kind-worker"))
        .expect("a frontend pod on kind-worker");
    assert_eq!(
        c.evict("shop", &victim.name, None).await.expect("evict"),
        Eviction::Evicted
    );
    eventually("a Ready replacement", || async {
        let pods = c.pods(Some("shop"), "app=frontend").await.expect("pods");
        pods.len() == 3 && pods.iter().all(|p| p.ready) && !pods.iter().any(|p| p.uid == victim.uid)
    })
    .await;
    let pods = c.pods(Some("shop"), "app=frontend").await.expect("pods");
    let fresh = pods
        .iter()
        .find(|p| !before.iter().any(|b| b.uid == p.uid))
        .expect("replacement");
    assert_eq!(
        fresh.node_name.as_deref(),
        Some("kind-worker2"),
        "not the cordoned node, not the tainted control plane"
    );
    assert!(
        fresh.pod_ips[0].to_string().starts_with("10.244.2."),
        "an IP from the node's podCIDR: {:?}",
        fresh.pod_ips
    );
    // The budget has its disruption back: the second pod on kind-worker can go now.
    let second = before
        .iter()
        .find(|p| p.node_name.as_deref() == Some("kind-worker") && p.uid != victim.uid)
        .expect("second");
    assert_eq!(
        c.evict("shop", &second.name, None).await.expect("evict"),
        Eviction::Evicted
    );
}

/// A pod that fits no node stays Pending, and is scheduled as soon as a node fits (the
/// scheduler looks at its unschedulable pods again when a node comes or changes): a node
/// uncordoned, or added, after the pod was created.
#[tokio::test]
async fn a_pod_that_fits_no_node_is_scheduled_once_one_fits() {
    let (sim, c, _dir) = start().await;
    for node in ["kind-worker", "kind-worker2"] {
        c.set_unschedulable(node, true).await.expect("cordon");
    }
    let before = c.pods(Some("shop"), "app=frontend").await.expect("pods");
    let victim = before
        .iter()
        .find(|p| p.node_name.as_deref() == Some("kind-worker"))
        .expect("a frontend pod on kind-worker");
    assert_eq!(
        c.evict("shop", &victim.name, None).await.expect("evict"),
        Eviction::Evicted
    );
    eventually("a Pending replacement, unbound", || async {
        let (_, pending, _) = sim.store().pods_on_node("", &|k, _| k.0 == "shop");
        pending.len() == 1
    })
    .await;
    // Nothing fits for a while: it stays Pending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, pending, _) = sim.store().pods_on_node("", &|k, _| k.0 == "shop");
    assert_eq!(pending.len(), 1, "still Pending while no node fits");
    c.set_unschedulable("kind-worker2", false)
        .await
        .expect("uncordon");
    eventually("the replacement Ready on kind-worker2", || async {
        let pods = c.pods(Some("shop"), "app=frontend").await.expect("pods");
        pods.len() == 3
            && pods.iter().all(|p| p.ready)
            && pods.iter().any(|p| {
                !before.iter().any(|b| b.uid == p.uid)
                    && p.node_name.as_deref() == Some("kind-worker2")
            })
    })
    .await;
    let (_, pending, _) = sim.store().pods_on_node("", &|_, _| true);
    assert!(
        pending.is_empty(),
        "the index of unbound pods follows the bind"
    );
}

#[tokio::test]
async fn statefulset_pods_come_back_with_the_same_name_and_a_new_uid() {
    let (_sim, c, _dir) = start().await;
    let old = c
        .pod("shop", "cart-redis-0")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        c.evict("shop", "cart-redis-0", None).await.expect("evict"),
        Eviction::Evicted
    );
    eventually("cart-redis-0 back with a new UID", || async {
        c.pod("shop", "cart-redis-0")
            .await
            .expect("get")
            .is_some_and(|p| p.uid != old.uid && p.ready)
    })
    .await;
}

#[tokio::test]
async fn daemonset_pods_come_back_on_their_node() {
    let (_sim, c, _dir) = start().await;
    let agent = c
        .pods_on_node("kind-worker")
        .await
        .expect("pods")
        .into_iter()
        .find(|p| p.name.starts_with("kube-flannel-ds"))
        .expect("flannel pod");
    assert!(
        c.delete_pod(&agent.namespace, &agent.name, Some(&agent.uid))
            .await
            .expect("delete")
    );
    eventually("a new flannel pod on kind-worker", || async {
        c.pods_on_node("kind-worker")
            .await
            .expect("pods")
            .iter()
            .any(|p| p.name.starts_with("kube-flannel-ds") && p.uid != agent.uid && p.ready)
    })
    .await;
}

#[tokio::test]
async fn the_helm_stand_in_installs_cilium_and_an_upgrade_rolls_the_agents() {
    let (sim, c, _dir) = start().await;
    let spec = planner::MigrationSpec::from_file(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.yaml"
    )))
    .expect("spec");
    let values = planner::values::migration_values(&spec, &planner::NetworkFacts::default());
    for (revision, expect_policy) in [(1, "never"), (2, "never")] {
        install(&c, &values, revision).await;
        let rev = revision.to_string();
        eventually("an agent of this revision Ready on every node", || async {
            let agents = c
                .pods(Some("kube-system"), "k8s-app=cilium")
                .await
                .expect("pods");
            let current: Vec<_> = agents
                .iter()
                .filter(|p| p.ready && !p.terminating)
                .collect();
            current.len() == 3
                && sim
                    .store()
                    .list("/pods", Some("kube-system"), None, None, &|_, s| {
                        s.labels.get("k8s-app").is_some_and(|a| a == "cilium")
                    })
                    .1
                    .iter()
                    .all(|(_, s)| {
                        s.value()["metadata"]["annotations"]["cni-migrate.io/helm-revision"]
                            == rev.as_str()
                    })
        })
        .await;
        let cm = c
            .configmap("kube-system", "cilium-config")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            cm.data.as_ref().expect("data")["enable-policy"],
            expect_policy
        );
        assert_eq!(cm.data.as_ref().expect("data")["custom-cni-conf"], "true");
        eventually("the DaemonSet status to say rolled out", || async {
            let ds = sim
                .store()
                .get("apps/daemonsets", "kube-system", "cilium")
                .expect("ds")
                .value();
            ds["status"]["updatedNumberScheduled"] == 3
                && ds["status"]["numberReady"] == 3
                && ds["status"]["desiredNumberScheduled"] == 3
        })
        .await;
    }
}

async fn install(c: &KubeCluster, values: &serde_json::Value, revision: u64) {
    for object in sim::helm::manifests("kube-system", "1.17.3", values, revision) {
        let plural = match object["kind"].as_str() {
            Some("ConfigMap") => "configmaps",
            Some("DaemonSet") => "daemonsets",
            _ => "deployments",
        };
        c.apply(plural, &object).await.expect("apply");
    }
}

fn kind_spec() -> planner::MigrationSpec {
    planner::MigrationSpec::from_file(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.yaml"
    )))
    .expect("spec")
}

#[tokio::test]
async fn a_labelled_node_moves_to_cilium_only_when_its_agent_restarts() {
    let (sim, c, _dir) = start().await;
    let spec = kind_spec();
    install(
        &c,
        &planner::values::migration_values(&spec, &planner::NetworkFacts::default()),
        1,
    )
    .await;
    eventually("agents Ready and CiliumNodes allocated", || async {
        c.pods(Some("kube-system"), "k8s-app=cilium")
            .await
            .expect("pods")
            .iter()
            .filter(|p| p.ready)
            .count()
            == 3
            && sim.store().count("cilium.io/ciliumnodes") == 3
    })
    .await;
    let cidrs = executor_free_cidrs(&c, "kind-worker").await;
    assert!(cidrs[0].starts_with("10.245."), "{cidrs:?}");
    // customConf=true: Cilium writes no CNI config yet; new pods still get Flannel addresses.
    assert!(node_cni(&sim, "kind-worker").is_none());

    c.apply(
        "ciliumnodeconfigs",
        &planner::values::node_config_object(&spec, &planner::NetworkFacts::default()),
    )
    .await
    .expect("cnc");
    c.set_node_label(
        "kind-worker",
        "io.cilium.migration/cilium-default",
        Some("true"),
    )
    .await
    .expect("label");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node_cni(&sim, "kind-worker").is_none(),
        "the CiliumNodeConfig applies only when the agent restarts"
    );
    restart_agent(&c, "kind-worker").await;
    eventually("kind-worker on Cilium", || async {
        node_cni(&sim, "kind-worker").as_deref() == Some("cilium")
    })
    .await;
    // A pod started there now gets an address from the node's Cilium block.
    assert!(sim.insert(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"nodeName": "kind-worker", "containers": [{"name": "c", "image": "netshoot"}]}, "status": {"phase": "Pending"}})));
    eventually("the probe running with a Cilium address", || async {
        let block: ipnet::IpNet = cidrs[0].parse().expect("cidr");
        c.pod("default", "probe")
            .await
            .expect("get")
            .is_some_and(|p| p.ready && p.pod_ips.first().is_some_and(|ip| block.contains(ip)))
    })
    .await;
}

async fn executor_free_cidrs(c: &KubeCluster, node: &str) -> Vec<String> {
    let cn = c
        .custom("cilium.io/v2", "ciliumnodes", None, node)
        .await
        .expect("get")
        .expect("CiliumNode");
    cn.object["spec"]["ipam"]["podCIDRs"]
        .as_array()
        .expect("cidrs")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect()
}

fn node_cni(sim: &Sim, node: &str) -> Option<String> {
    sim.store().get("/nodes", "", node)?.value()["metadata"]["annotations"]["sim.cni-migrate.io/cni"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_tunnel_port_equal_to_flannels_makes_the_agents_crash_loop() {
    let (sim, c, _dir) = start().await;
    let mut spec = kind_spec();
    spec.target.tunnel.port = None; // Cilium's default 8472: Flannel's VXLAN port
    install(
        &c,
        &planner::values::migration_values(&spec, &planner::NetworkFacts::default()),
        1,
    )
    .await;
    eventually("agents crash-looping", || async {
        let agents = c
            .pods(Some("kube-system"), "k8s-app=cilium")
            .await
            .expect("pods");
        agents.len() == 3
            && agents
                .iter()
                .all(|p| !p.ready && p.waiting_reason.as_deref() == Some("CrashLoopBackOff"))
    })
    .await;
    let agent = c
        .pods(Some("kube-system"), "k8s-app=cilium")
        .await
        .expect("pods")
        .remove(0);
    let log = c.pod_log("kube-system", &agent.name).await.expect("log");
    assert!(
        log.contains("address already in use") && log.contains("8472"),
        "{log}"
    );
    assert!(sim.store().get("/nodes", "", "kind-worker").is_some());
}

/// Deletes the Cilium agent pod on `node` (its DaemonSet starts another); returns the old one.
async fn restart_agent(c: &KubeCluster, node: &str) -> planner::snapshot::PodInfo {
    let agent = c
        .pods_on_node(node)
        .await
        .expect("pods")
        .into_iter()
        .find(|p| p.labels.get("k8s-app").is_some_and(|a| a == "cilium"))
        .expect("agent");
    assert!(
        c.delete_pod(&agent.namespace, &agent.name, Some(&agent.uid))
            .await
            .expect("delete")
    );
    agent
}

fn probe(name: &str, node: &str, targets: &[String]) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"cni-migrate.io/probe": "true"},
                     "annotations": {"cni-migrate.io/probe-targets": targets.join(",")}},
        "spec": {"nodeName": node, "restartPolicy": "Never", "tolerations": [{"operator": "Exists"}], "containers": [{"name": "probe", "image": "nicolaka/netshoot:v0.13"}]},
        "status": {"phase": "Pending"}})
}

async fn migrate_kind_worker(sim: &Sim, c: &KubeCluster, host_legacy_routing: bool) {
    let spec = kind_spec();
    let mut values = planner::values::migration_values(&spec, &planner::NetworkFacts::default());
    values["bpf"]["hostLegacyRouting"] = serde_json::json!(host_legacy_routing);
    install(c, &values, 1).await;
    eventually("agents Ready", || async {
        c.pods(Some("kube-system"), "k8s-app=cilium")
            .await
            .expect("pods")
            .iter()
            .filter(|p| p.ready)
            .count()
            == 3
    })
    .await;
    c.apply(
        "ciliumnodeconfigs",
        &planner::values::node_config_object(&spec, &planner::NetworkFacts::default()),
    )
    .await
    .expect("cnc");
    c.set_node_label(
        "kind-worker",
        "io.cilium.migration/cilium-default",
        Some("true"),
    )
    .await
    .expect("label");
    restart_agent(c, "kind-worker").await;
    eventually("kind-worker on Cilium", || async {
        node_cni(sim, "kind-worker").as_deref() == Some("cilium")
    })
    .await;
}

async fn probe_log(
    sim: &Sim,
    c: &KubeCluster,
    name: &str,
    node: &str,
    targets: &[String],
) -> String {
    assert!(sim.insert(probe(name, node, targets)));
    eventually("the probe to finish", || async {
        c.pod("kube-system", name)
            .await
            .expect("get")
            .is_some_and(|p| p.phase == planner::snapshot::PodPhase::Succeeded)
    })
    .await;
    c.pod_log("kube-system", name).await.expect("log")
}

#[tokio::test]
async fn a_probe_on_a_migrated_node_reaches_both_overlays_with_host_legacy_routing() {
    let (sim, c, _dir) = start().await;
    migrate_kind_worker(&sim, &c, true).await;
    let old = c
        .pods(Some("shop"), "app=frontend")
        .await
        .expect("pods")
        .into_iter()
        .find(|p| p.node_name.as_deref() == Some("kind-worker2"))
        .expect("an unmigrated pod");
    let beacon = probe_log(&sim, &c, "beacon", "kind-worker", &[]).await;
    let beacon_ip = beacon
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("ip="))
        .expect("ip")
        .to_owned();
    let log = probe_log(
        &sim,
        &c,
        "verify",
        "kind-worker",
        &[old.pod_ips[0].to_string(), beacon_ip.clone()],
    )
    .await;
    assert!(log.starts_with("ip=10.245."), "{log}");
    assert!(log.contains("apiserver=ok"));
    assert!(
        log.contains(&format!("reach {}=ok", old.pod_ips[0])),
        "{log}"
    );
    assert!(log.contains(&format!("reach {beacon_ip}=ok")), "{log}");
}

#[tokio::test]
async fn without_host_legacy_routing_the_overlays_cannot_talk() {
    let (sim, c, _dir) = start().await;
    migrate_kind_worker(&sim, &c, false).await;
    let old = c
        .pods(Some("shop"), "app=frontend")
        .await
        .expect("pods")
        .into_iter()
        .find(|p| p.node_name.as_deref() == Some("kind-worker2"))
        .expect("an unmigrated pod");
    let log = probe_log(
        &sim,
        &c,
        "verify",
        "kind-worker",
        &[old.pod_ips[0].to_string()],
    )
    .await;
    assert!(
        log.contains(
            "fail (cross-overlay traffic needs bpf.hostLegacyRouting, which is off on kind-worker)"
        ),
        "{log}"
    );
    let pods: Vec<serde_json::Value> = sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, _| true)
        .1
        .into_iter()
        .map(|(_, s)| s.value())
        .collect();
    assert!(
        sim::datapath::matrix(sim.store(), &pods)
            .iter()
            .all(|(_, _, r)| r.is_ok()),
        "pods on the same (old) overlay all reach each other"
    );
}

#[tokio::test]
async fn a_node_can_be_made_not_ready() {
    let (sim, c, _dir) = start().await;
    sim.set_node_ready("kind-worker", false).expect("fault");
    assert!(
        !c.node("kind-worker")
            .await
            .expect("get")
            .expect("node")
            .ready
    );
    sim.set_node_ready("kind-worker", true).expect("recover");
    assert!(
        c.node("kind-worker")
            .await
            .expect("get")
            .expect("node")
            .ready
    );
    assert!(sim.set_node_ready("ghost", false).is_err());
}

#[tokio::test]
async fn budget_status_follows_the_pods() {
    let (sim, c, _dir) = start().await;
    let allowed = |sim: &Sim| {
        sim.store()
            .get("policy/poddisruptionbudgets", "shop", "frontend")
            .expect("pdb")
            .value()["status"]["disruptionsAllowed"]
            .as_i64()
    };
    assert_eq!(allowed(&sim), Some(1));
    let pod = c
        .pods(Some("shop"), "app=frontend")
        .await
        .expect("pods")
        .remove(0);
    assert_eq!(
        c.evict("shop", &pod.name, None).await.expect("evict"),
        Eviction::Evicted
    );
    eventually("the budget spent", || async { allowed(&sim) == Some(0) }).await;
    eventually("the budget back once the replacement is Ready", || async {
        allowed(&sim) == Some(1)
    })
    .await;
    let pdb = sim
        .store()
        .get("policy/poddisruptionbudgets", "shop", "frontend")
        .expect("pdb")
        .value();
    assert_eq!(pdb["status"]["expectedPods"], 3);
    assert_eq!(pdb["status"]["currentHealthy"], 3);
}

/// Sets or clears a node fault (the `sim.cni-migrate.io/fault` annotation).
fn set_fault(sim: &Sim, node: &str, fault: Option<&str>) {
    let stored = sim.store().get("/nodes", "", node).expect("node");
    let mut v = stored.value();
    v["metadata"]["annotations"][sim::model::FAULT_ANNOTATION] =
        fault.map_or(serde_json::Value::Null, |f| serde_json::json!(f));
    sim.store()
        .update("/nodes", v, None, false)
        .expect("update");
}

fn pod_on(name: &str, node: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Pending"}})
}

/// Cilium's datapath outlives its agent: while the agent on a migrated node is down (here it
/// crash-loops), a pod already running there on Cilium keeps reaching the old overlay, and a
/// pod started there meanwhile waits in `ContainerCreating` with the CNI plugin's error until
/// an agent is Ready again, then runs.
#[tokio::test]
async fn an_agent_restart_keeps_established_endpoints_and_holds_new_pods() {
    let (sim, c, _dir) = start().await;
    migrate_kind_worker(&sim, &c, true).await;
    assert!(sim.insert(pod_on("web", "kind-worker")));
    eventually("web Running on Cilium", || async {
        c.pod("shop", "web").await.expect("get").is_some_and(|p| {
            p.phase == planner::snapshot::PodPhase::Running
                && p.pod_ips
                    .first()
                    .is_some_and(|ip| ip.to_string().starts_with("10.245."))
        })
    })
    .await;
    // The agent goes down and stays down.
    set_fault(&sim, "kind-worker", Some("agent-stuck"));
    let agent = restart_agent(&c, "kind-worker").await;
    eventually("the new agent crash-looping", || async {
        c.pods_on_node("kind-worker")
            .await
            .expect("pods")
            .iter()
            .any(|p| {
                p.labels.get("k8s-app").is_some_and(|a| a == "cilium")
                    && p.uid != agent.uid
                    && !p.ready
            })
    })
    .await;
    assert!(!sim::datapath::agent_ready(sim.store(), "kind-worker"));
    let web = sim
        .store()
        .get("/pods", "shop", "web")
        .expect("web")
        .value();
    let old = sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, s| {
            s.node_name.as_deref() == Some("kind-worker2")
                && s.labels.get("app").is_some_and(|a| a == "frontend")
        })
        .1
        .first()
        .map(|(_, s)| s.value())
        .expect("a frontend pod on the old overlay");
    assert_eq!(sim::datapath::reach(sim.store(), &web, &old), Ok(()));
    assert_eq!(sim::datapath::reach(sim.store(), &old, &web), Ok(()));
    // A pod started now waits for the agent.
    assert!(sim.insert(pod_on("late", "kind-worker")));
    eventually("late held in ContainerCreating", || async {
        sim.store().get("/pods", "shop", "late").is_some_and(|s| {
            let v = s.value();
            v["status"]["phase"] == "Pending"
                && v["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "ContainerCreating"
                && v["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cilium-cni"))
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sim.store()
            .get("/pods", "shop", "late")
            .expect("late")
            .value()["status"]["phase"],
        "Pending",
        "still waiting while no agent is Ready"
    );
    // The agent comes back: the pod runs, on Cilium.
    set_fault(&sim, "kind-worker", None);
    restart_agent(&c, "kind-worker").await;
    eventually("late Running on Cilium", || async {
        c.pod("shop", "late").await.expect("get").is_some_and(|p| {
            p.phase == planner::snapshot::PodPhase::Running
                && p.pod_ips
                    .first()
                    .is_some_and(|ip| ip.to_string().starts_with("10.245."))
        })
    })
    .await;
}

/// `node-join`: a Ready copy of a worker with its own pod CIDR and address, not cordoned, and a
/// pod of every DaemonSet on it. `node-leave`: the node and its pods go; the ReplicaSet's and
/// the StatefulSet's pods come back on other nodes (the StatefulSet's under the same name).
#[tokio::test]
async fn nodes_join_with_daemonset_pods_and_leave_with_their_pods_rescheduled() {
    let (sim, c, _dir) = start().await;
    let faults: sim::Faults = "node-join=kind-worker9@0s,node-leave=kind-worker2@0s"
        .parse()
        .expect("faults");
    assert!(sim::churn::check(sim.store(), &faults).is_ok());
    let said = sim::churn::node_join_in(sim.store(), "kind-worker9").expect("joins");
    assert!(said.contains("kind-worker9"), "{said}");
    let node = c.node("kind-worker9").await.expect("read").expect("there");
    let worker = c.node("kind-worker").await.expect("read").expect("there");
    assert!(node.ready && !node.unschedulable);
    assert_ne!(node.uid, worker.uid);
    assert_eq!(node.pod_cidrs, ["10.244.3.0/24"], "the first free block");
    assert!(!node.addresses.iter().any(|a| worker.addresses.contains(a)));
    eventually("a pod of every DaemonSet on the new node", || async {
        let pods = c.pods_on_node("kind-worker9").await.expect("pods");
        pods.iter()
            .filter(|p| p.is_daemonset_pod() && p.ready)
            .count()
            == 2
    })
    .await;
    let again = sim::churn::node_join_in(sim.store(), "kind-worker9").expect_err("exists");
    assert!(
        again.contains("node-join=kind-worker9") && again.contains("exists"),
        "{again}"
    );

    let on_it = c.pods_on_node("kind-worker2").await.expect("pods");
    assert!(on_it.iter().any(|p| p.name == "cart-redis-0"));
    sim::churn::node_leave_in(sim.store(), "kind-worker2").expect("leaves");
    assert!(c.node("kind-worker2").await.expect("read").is_none());
    eventually("the workloads back on other nodes", || async {
        let pods = c.pods(None, "").await.expect("pods");
        let frontend = pods
            .iter()
            .filter(|p| p.labels.get("app").is_some_and(|a| a == "frontend"));
        let redis = pods.iter().find(|p| p.name == "cart-redis-0");
        !pods
            .iter()
            .any(|p| p.node_name.as_deref() == Some("kind-worker2"))
            && frontend.clone().count() == 3
            && frontend.clone().all(|p| p.ready)
            && redis.is_some_and(|p| p.ready)
    })
    .await;
    let gone = sim::churn::node_leave_in(sim.store(), "kind-worker2").expect_err("gone");
    assert!(gone.contains("node-leave=kind-worker2"), "{gone}");
    let bad: sim::Faults = "node-leave=kind-worker7@1s".parse().expect("parses");
    let err = sim::churn::check(sim.store(), &bad).expect_err("no such node");
    assert!(err.contains("node-leave=kind-worker7"), "{err}");
}

/// The kubelets' heartbeats: every Ready node renews its Lease in `kube-node-lease`, a node
/// that joins starts renewing one, and a node that goes renews nothing more.
#[tokio::test]
async fn ready_nodes_renew_their_leases_and_a_joined_node_starts_to() {
    let sim = sim_with(ModelOptions {
        heartbeat: Duration::from_millis(50),
        ..ModelOptions::default()
    })
    .await;
    let renewed = |node: &str| {
        sim.store()
            .get("coordination.k8s.io/leases", "kube-node-lease", node)
            .and_then(|l| l.value()["spec"]["renewTime"].as_str().map(str::to_owned))
    };
    eventually("every node's Lease", || async {
        ["kind-control-plane", "kind-worker", "kind-worker2"]
            .iter()
            .all(|n| renewed(n).is_some())
    })
    .await;
    let first = renewed("kind-worker").expect("renewed");
    eventually("a renewal", || async {
        renewed("kind-worker").as_deref() != Some(&first)
    })
    .await;
    sim::churn::node_join_in(sim.store(), "kind-worker9").expect("joins");
    eventually("the joined node's Lease", || async {
        renewed("kind-worker9").is_some()
    })
    .await;
    sim::churn::node_leave_in(sim.store(), "kind-worker2").expect("leaves");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = renewed("kind-worker2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        renewed("kind-worker2"),
        last,
        "a deleted node renews nothing"
    );
}
