//! The executor's steps through the real `KubeCluster` against the simulated API server over
//! HTTP: drain with kubectl's semantics (refusals before any eviction, PDB waits, a timeout that
//! names the budget and the pods), cordon/uncordon that respect a prior cordon, the label, the
//! agent restart decided by UID, and the basic verification.

use std::{path::PathBuf, time::Duration};

use cluster::{Cluster, ClusterArgs, KubeCluster};
use executor::{
    agent,
    checkpoint::NodePrior,
    drain::{self, DrainError, DrainOptions, Refusal},
    error::StepError,
    ranges::Ranges,
    step::{node as steps, verify::verify_basic},
};
use serde_json::json;
use sim::Sim;

async fn start(dump: &str) -> (Sim, KubeCluster, tempfile::TempDir) {
    let sim = Sim::start(0).await.expect("sim");
    sim.load_dump(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans")).join(dump))
        .expect("dump");
    let (c, dir) = connect(&sim).await;
    (sim, c, dir)
}

/// A client of the sim over HTTP, through a kubeconfig in a temporary directory.
async fn connect(sim: &Sim) -> (KubeCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc).expect("kubeconfig");
    let client = cluster::connect(&ClusterArgs {
        kubeconfig: Some(kc),
        context: None,
    })
    .await
    .expect("client");
    (KubeCluster::new(client), dir)
}

fn fast(timeout: Duration) -> DrainOptions {
    DrainOptions {
        timeout,
        delete_empty_dir_data: false,
        allow_unreplicated: false,
        grace_period_seconds: None,
        retry_delay: Duration::from_millis(100),
        poll: Duration::from_millis(50),
        node_check: Duration::from_millis(200),
        include_daemonset_pods: false,
        own_pod: None,
    }
}

#[tokio::test]
async fn drain_evicts_controller_pods_and_skips_daemonsets_and_mirrors() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    let report = drain::drain(&c, "kind-worker2", &fast(Duration::from_secs(10)))
        .await
        .expect("drains");
    assert_eq!(
        report.evicted,
        ["shop/cart-redis-0", "shop/frontend-6b8d9f5c7d-b7qzt"]
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|(p, s)| p.starts_with("kube-flannel/") && *s == drain::Skip::DaemonSet)
    );
    let left: Vec<String> = c
        .pods_on_node("kind-worker2")
        .await
        .expect("pods")
        .into_iter()
        .map(|p| p.key())
        .collect();
    assert!(
        left.iter()
            .all(|p| p.starts_with("kube-flannel/") || p.starts_with("kube-system/kube-proxy")),
        "{left:?}"
    );
    // Nothing was deleted directly: every removal went through the eviction subresource.
    assert!(
        !sim.requests()
            .iter()
            .any(|(verb, path)| verb == "DELETE" && path.contains("/pods/"))
    );
    // Draining again is a no-op.
    assert!(
        drain::drain(&c, "kind-worker2", &fast(Duration::from_secs(5)))
            .await
            .expect("again")
            .evicted
            .is_empty()
    );
}

#[tokio::test]
async fn a_drain_waits_for_pods_to_go_through_one_watch_not_a_list_a_poll() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    sim.set_pod_termination(Some(Duration::from_millis(800)));
    let before = sim.requests().len();
    let report = drain::drain(&c, "kind-worker2", &fast(Duration::from_secs(10)))
        .await
        .expect("drains");
    assert_eq!(report.evicted.len(), 2, "{report:?}");
    let requests: Vec<(String, String)> = sim.requests()[before..].to_vec();
    let on_node = |(verb, path): &&(String, String)| {
        verb == "GET" && path.starts_with("/api/v1/pods?") && path.contains("spec.nodeName")
    };
    let watches = requests
        .iter()
        .filter(on_node)
        .filter(|(_, p)| p.contains("watch=true"))
        .count();
    let lists = requests
        .iter()
        .filter(on_node)
        .filter(|(_, p)| !p.contains("watch=true"))
        .count();
    // The classification's LIST and the watch's; at a 50 ms poll, 800 ms of termination
    // would have been some 16 LISTs.
    assert_eq!(watches, 1, "{requests:?}");
    assert!(lists <= 2, "{lists} LISTs: {requests:?}");
}

#[tokio::test]
async fn a_budget_that_never_allows_a_disruption_times_out_naming_it_and_its_pods() {
    let (_sim, c, _dir) = start("pdb-blocks-drain.dump.yaml").await;
    let err = drain::drain(&c, "kind-worker", &fast(Duration::from_secs(2)))
        .await
        .expect_err("blocked");
    match &err {
        DrainError::Timeout {
            remaining, pdbs, ..
        } => {
            // payments can never lose a pod; frontend (maxUnavailable 1) spent its one
            // disruption on the first of kind-worker's two frontend pods, and nothing here
            // recreates it.
            assert_eq!(pdbs, &["shop/frontend", "shop/payments"]);
            assert_eq!(remaining.len(), 2, "{remaining:?}");
            assert!(remaining.iter().any(|p| p.starts_with("shop/payments-")));
        }
        other => panic!("expected a timeout, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("kind-worker")
            && msg.contains("shop/payments")
            && msg.contains("timed out after 2s"),
        "{msg}"
    );
    assert!(!err.is_retriable());
}

#[tokio::test]
async fn unreplicated_and_emptydir_pods_are_refused_before_any_eviction() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    assert!(sim.insert(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": "default"},
        "spec": {"nodeName": "kind-worker", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})));
    let before = c.pods_on_node("kind-worker").await.expect("pods").len();
    match drain::drain(&c, "kind-worker", &fast(Duration::from_secs(5))).await {
        Err(DrainError::Refused { pods, .. }) => assert_eq!(
            pods,
            vec![("default/debug".to_owned(), Refusal::Unreplicated)]
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        c.pods_on_node("kind-worker").await.expect("pods").len(),
        before,
        "a refused drain evicts nothing"
    );
    let allow = DrainOptions {
        allow_unreplicated: true,
        ..fast(Duration::from_secs(10))
    };
    let report = drain::drain(&c, "kind-worker", &allow).await;
    // The frontend budget allows one of kind-worker's two frontend pods at a time, and nothing
    // recreates pods here: the drain evicts what it may and then times out on the budget.
    assert!(
        matches!(report, Err(DrainError::Timeout { ref pdbs, .. }) if pdbs == &["shop/frontend"]),
        "{report:?}"
    );
    assert!(c.pod("default", "debug").await.expect("get").is_none());
}

#[tokio::test]
async fn a_node_going_not_ready_stops_the_drain() {
    let (sim, c, _dir) = start("pdb-blocks-drain.dump.yaml").await;
    let store = sim.store().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let node = store.get("/nodes", "", "kind-worker").expect("node");
        let mut v = node.value();
        for cond in v["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
        {
            if cond["type"] == "Ready" {
                cond["status"] = json!("Unknown");
            }
        }
        store.update("/nodes", v, None, false).expect("update");
    });
    let err = drain::drain(&c, "kind-worker", &fast(Duration::from_secs(10)))
        .await
        .expect_err("stops");
    assert!(matches!(err, DrainError::NodeNotReady { .. }), "{err}");
}

#[tokio::test]
async fn cordon_and_uncordon_leave_a_prior_cordon_alone() {
    let (_sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    let prior = steps::observe_prior(&c, "kind-worker")
        .await
        .expect("prior");
    assert_eq!(prior, NodePrior::default());
    steps::cordon(&c, "kind-worker").await.expect("cordon");
    steps::cordon(&c, "kind-worker")
        .await
        .expect("cordon again is a no-op");
    // On resume the node now looks cordoned, but the recorded prior state says we did it.
    assert!(
        steps::observe_prior(&c, "kind-worker")
            .await
            .expect("prior")
            .cordoned
    );
    steps::uncordon(&c, "kind-worker", &prior)
        .await
        .expect("uncordon");
    assert!(
        !c.node("kind-worker")
            .await
            .expect("node")
            .expect("exists")
            .unschedulable
    );

    c.set_unschedulable("kind-worker2", true)
        .await
        .expect("operator cordon");
    let prior2 = steps::observe_prior(&c, "kind-worker2")
        .await
        .expect("prior");
    assert!(prior2.cordoned);
    let msg = steps::uncordon(&c, "kind-worker2", &prior2)
        .await
        .expect("uncordon");
    assert!(msg.contains("left cordoned"), "{msg}");
    assert!(
        c.node("kind-worker2")
            .await
            .expect("node")
            .expect("exists")
            .unschedulable,
        "a node we did not cordon stays cordoned"
    );

    assert!(matches!(
        steps::cordon(&c, "ghost").await,
        Err(StepError::NodeGone { .. })
    ));
    steps::label(&c, "kind-worker", true).await.expect("label");
    assert!(
        steps::label(&c, "kind-worker", true)
            .await
            .expect("again")
            .contains("has the label")
    );
    steps::label(&c, "kind-worker", false)
        .await
        .expect("unlabel");
}

fn agent_pod(name: &str, node: &str, ready: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "cilium"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "cilium", "uid": "ds", "controller": true}]},
        "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.17.3"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

#[tokio::test]
async fn the_agent_restart_is_decided_by_uid_not_by_clock() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    assert!(sim.insert(agent_pod("cilium-abcde", "kind-worker", true)));
    let old = steps::agent_uids(&c, "kind-worker").await.expect("uids");
    assert_eq!(old.len(), 1);
    // Without anything to recreate the agent, the restart deletes it and then times out,
    // saying what it saw.
    let err = agent::restart_agent(
        &c,
        "kind-worker",
        &old,
        Duration::from_millis(500),
        Duration::from_millis(50),
    )
    .await
    .expect_err("no new agent");
    assert!(
        err.to_string().contains("not Ready") && err.to_string().contains("no agent pod"),
        "{err}"
    );
    // A DaemonSet controller stand-in brings a new agent (new UID) that becomes Ready.
    let store = sim.store().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = agent_pod("cilium-fghij", "kind-worker", true);
        let _ = store.create("/pods", v, false);
    });
    let msg = agent::restart_agent(
        &c,
        "kind-worker",
        &old,
        Duration::from_secs(5),
        Duration::from_millis(50),
    )
    .await
    .expect("restarted");
    assert!(msg.contains("cilium-fghij"), "{msg}");
    // Re-running is a no-op: a fresh Ready agent is already there.
    let again = agent::restart_agent(
        &c,
        "kind-worker",
        &old,
        Duration::from_secs(5),
        Duration::from_millis(50),
    )
    .await
    .expect("again");
    assert!(again.contains("already restarted"), "{again}");
}

#[tokio::test]
async fn basic_verification_explains_what_it_expected_and_saw() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    let spec = planner::MigrationSpec::from_file(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.yaml"
    )))
    .expect("spec");
    let err = verify_basic(
        &c,
        &Ranges::new(spec.target.pod_cidrs.clone()),
        "kind-worker",
        &[],
    )
    .await
    .expect_err("no agent");
    assert!(
        err.to_string()
            .contains("expected a Ready Cilium agent created after the label, saw: no agent pod"),
        "{err}"
    );
    assert!(sim.insert(agent_pod("cilium-x", "kind-worker", true)));
    let err = verify_basic(
        &c,
        &Ranges::new(spec.target.pod_cidrs.clone()),
        "kind-worker",
        &[],
    )
    .await
    .expect_err("no CiliumNode");
    assert!(err.to_string().contains("saw no CiliumNode"), "{err}");
    assert!(sim.insert(json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "kind-worker"}, "spec": {"ipam": {"podCIDRs": ["10.244.1.0/24"]}}})));
    let err = verify_basic(
        &c,
        &Ranges::new(spec.target.pod_cidrs.clone()),
        "kind-worker",
        &[],
    )
    .await
    .expect_err("old pool");
    assert!(
        err.to_string()
            .contains("inside 10.245.0.0/16, saw 10.244.1.0/24"),
        "{err}"
    );
    let mut cn = sim
        .store()
        .get("cilium.io/ciliumnodes", "", "kind-worker")
        .expect("cn")
        .value();
    cn["spec"]["ipam"]["podCIDRs"] = json!(["10.245.3.0/24"]);
    sim.store()
        .update("cilium.io/ciliumnodes", cn, None, false)
        .expect("update");
    let ok = verify_basic(
        &c,
        &Ranges::new(spec.target.pod_cidrs.clone()),
        "kind-worker",
        &[],
    )
    .await
    .expect("verified");
    assert!(ok.contains("10.245.3.0/24"), "{ok}");
}

/// A run inside the cluster evicts its own pod last: every other pod of the node is gone
/// before the eviction that stops the run (the Job's next pod resumes elsewhere).
#[tokio::test]
async fn the_runs_own_pod_is_evicted_last() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    // cart-redis-0 sorts first: without the rule it would go first.
    let own = "shop/cart-redis-0";
    let opts = DrainOptions {
        own_pod: Some(own.to_owned()),
        ..fast(Duration::from_secs(10))
    };
    let report = drain::drain(&c, "kind-worker2", &opts)
        .await
        .expect("drains");
    assert_eq!(report.evicted.len(), 2);
    let order = sim.evictions();
    assert_eq!(order.last().map(String::as_str), Some(own), "{order:?}");
}

/// A simulated cluster of `nodes` synthetic Flannel nodes whose agents start in 100 ms, with
/// Cilium installed (revision 1) and rolled out.
async fn with_cilium(nodes: usize) -> (Sim, KubeCluster, tempfile::TempDir) {
    let mut sim = Sim::start(0).await.expect("sim");
    let params: synthetic::Params = format!("nodes={nodes},pods-per-node=3,cni=flannel")
        .parse()
        .expect("params");
    sim.load_synthetic(&params);
    sim.start_model(
        sim::model::ModelOptions {
            pod_start: Duration::from_millis(100),
            ..sim::model::ModelOptions::default()
        },
        Duration::from_millis(100),
    );
    let (c, dir) = connect(&sim).await;
    install_cilium(&c, 1).await;
    executor::step::helm::agents_rolled_out(
        &c,
        true,
        Duration::from_secs(10),
        Duration::from_millis(50),
    )
    .await
    .expect("revision 1 rolls out");
    (sim, c, dir)
}

async fn install_cilium(c: &KubeCluster, revision: u64) {
    let spec = planner::MigrationSpec::from_file(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.yaml"
    )))
    .expect("spec");
    let values = planner::values::migration_values(&spec, &planner::NetworkFacts::default());
    for object in sim::helm::manifests("kube-system", "1.17.3", &values, revision) {
        let plural = match object["kind"].as_str() {
            Some("ConfigMap") => "configmaps",
            Some("DaemonSet") => "daemonsets",
            _ => "deployments",
        };
        c.apply(plural, &object).await.expect("apply");
    }
}

/// The chart replaces two agents at a time: on a large cluster the rollout takes far longer
/// than any fixed deadline. The wait judges it by its progress: a rollout that keeps moving is
/// waited for however long it takes; one that stops fails after the stall window, saying
/// what it saw.
#[tokio::test]
async fn the_agent_rollout_is_waited_for_while_it_progresses_and_fails_once_it_stalls() {
    let (sim, c, _dir) = with_cilium(16).await;
    let stall = Duration::from_millis(700);
    let poll = Duration::from_millis(50);
    install_cilium(&c, 2).await;
    let started = std::time::Instant::now();
    let before = sim.requests().len();
    executor::step::helm::agents_rolled_out(&c, true, stall, poll)
        .await
        .expect("a progressing rollout is waited for");
    let took = started.elapsed();
    assert!(
        took > stall,
        "eight waves of two agents take longer than the stall window ({took:?})"
    );
    // Watched, not polled: one LIST and one WATCH of the DaemonSet by name, where polls would
    // have read it every 50 ms (more than 14 times in the rollout's time).
    let reads: Vec<(String, String)> = sim.requests()[before..]
        .iter()
        .filter(|(_, path)| path.contains("/daemonsets"))
        .cloned()
        .collect();
    assert!(
        reads.len() <= 3
            && reads
                .iter()
                .any(|(_, p)| p.contains("watch=true") && p.contains("metadata.name%3Dcilium")),
        "{reads:?}"
    );

    // An agent that never comes back stops the rollout.
    let node = "node-00003";
    let stored = sim.store().get("/nodes", "", node).expect("node");
    let mut v = stored.value();
    v["metadata"]["labels"]["io.cilium.migration/cilium-default"] = json!("true");
    sim.store().update("/nodes", v, None, false).expect("label");
    sim.set_node_fault(node, "agent-stuck").expect("fault");
    install_cilium(&c, 3).await;
    let err = executor::step::helm::agents_rolled_out(&c, true, stall, poll)
        .await
        .expect_err("a stalled rollout fails");
    let message = err.to_string();
    assert!(
        matches!(err, StepError::RolloutIncomplete { .. }),
        "{message}"
    );
    assert!(message.contains("made no progress"), "{message}");
    assert!(message.contains("/16 Ready"), "{message}");
}

/// Node Events go through a queue, posted in order by one task; a flush waits for them.
#[tokio::test]
async fn node_events_are_posted_in_order_off_the_steps_path() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    let events = executor::node_events::NodeEvents::new(std::sync::Arc::new(c));
    for i in 0..20 {
        events.post(
            "kind-worker/drain",
            "kind-worker",
            "MigrationStepDone",
            &format!("m{i:02}"),
            false,
        );
    }
    events.flush(Duration::from_secs(10)).await;
    let (_, stored, _) = sim.store().list("/events", None, None, None, &|_, _| true);
    let mut posted: Vec<(u64, String)> = stored
        .iter()
        .filter(|(_, e)| e.value()["involvedObject"]["name"] == "kind-worker")
        .map(|(_, e)| {
            (
                e.rv,
                e.value()["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    posted.sort();
    let messages: Vec<String> = posted.into_iter().map(|(_, m)| m).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    assert_eq!(messages, expected, "all posted, in order");
    assert_eq!(events.dropped(), 0);
}

/// The re-check's watch of every pod keeps the pods that may have to be on Cilium (created
/// after its floor, off the host network, running with an IP), follows their changes and
/// deletions, and lists every pod once, not at each look.
#[tokio::test]
async fn the_recheck_watch_keeps_new_pods_and_follows_them() {
    let (sim, c, _dir) = start("kind-flannel.dump.yaml").await;
    let floor = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 1;
    let watch = executor::recheck::PodWatch::start(std::sync::Arc::new(c), floor)
        .expect("the sim can watch pods");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !watch.live() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LIST never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The dump's pods were created long before the floor: none is kept.
    assert_eq!(watch.kept(), 0);
    assert_eq!(watch.on_node_since("kind-worker", floor), Some(vec![]));
    let stray = |ip: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"namespace": "shop", "name": "stray"},
               "spec": {"nodeName": "kind-worker", "containers": [{"name": "c", "image": "busybox"}]},
               "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    };
    assert!(sim.insert(stray("10.244.1.77")));
    let seen = |want: usize| {
        let watch = &watch;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let now = watch.on_node_since("kind-worker", 0).unwrap_or_default();
                if now.len() == want {
                    return now;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never {want}: {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let kept = seen(1).await;
    assert_eq!(kept[0].0, "shop/stray");
    assert_eq!(kept[0].1[0].to_string(), "10.244.1.77");
    // Not created after a later migration: not the later node's concern.
    assert_eq!(
        watch.on_node_since("kind-worker", floor + 3600),
        Some(vec![])
    );
    // Host-network pods are never kept; a deleted pod goes.
    sim.store()
        .delete("/pods", "shop", "stray", false)
        .expect("delete");
    seen(0).await;
    let mut host = stray("172.18.0.3");
    host["spec"]["hostNetwork"] = json!(true);
    assert!(sim.insert(host));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watch.kept(), 0, "a host-network pod is not kept");
    let lists = sim
        .requests()
        .into_iter()
        .filter(|(verb, path)| {
            verb == "GET" && path.starts_with("/api/v1/pods?") && !path.contains("watch=")
        })
        .count();
    assert_eq!(lists, 1, "one LIST of every pod, then the watch");
}
