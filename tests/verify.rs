//! End-to-end: each way a node can fail to move is caught at that node, before the next node
//! starts, with what was expected and what was seen; and a rollback returns a migrated node to
//! the old overlay. The failures are the simulated cluster's: an agent that never comes back,
//! a CiliumNodeConfig the node's agent does not see, host routing turned off on one node, and a
//! node joining with a pod CIDR inside Cilium's pool.

mod support;

use cluster::Cluster as _;
use support::cluster::{Env, env};

/// The plan's order for kind-flannel: the canary, then the second worker, the control plane last.
const CANARY: &str = "kind-worker";
const SECOND: &str = "kind-worker2";
const LAST: &str = "kind-control-plane";

fn same(s: String) -> String {
    s
}

/// Runs `apply` to its end; asserts exit 5 with one failed step, `step`, whose reason contains
/// every one of `needles`; asserts no node was admitted after it. Returns the reason.
async fn fails_at(env: &Env, step: &str, needles: &[&str]) -> String {
    let (status, seen) = env.watch("apply", &[]).finish().await;
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(5), "{all}");
    let ck = env.checkpoint().await.expect("checkpoint");
    let f = ck.failure.expect("a failure is recorded");
    assert_eq!(f.step, step, "{all}");
    for n in needles {
        assert!(f.reason.contains(n), "reason lacks {n:?}: {}", f.reason);
    }
    let after: Vec<&String> = seen
        .iter()
        .skip_while(|l| !l.contains("step-failed"))
        .filter(|l| l.contains("node-admitted"))
        .collect();
    assert!(after.is_empty(), "admitted after the failure: {after:?}");
    // The control plane, last in the plan, was never touched.
    assert!(
        !ck.nodes[LAST].started(),
        "{LAST} was started: {:?}",
        ck.nodes[LAST].steps
    );
    f.reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_comes_back_stops_the_run_at_its_node() {
    let env = env("kind-flannel", &same).await;
    env.set_fault(SECOND, "agent-stuck");
    fails_at(
        &env,
        &format!("{SECOND}/restart-agent"),
        &[SECOND, "CrashLoopBackOff"],
    )
    .await;
    // The node stays cordoned (we cordoned it) for someone to look at.
    assert_eq!(env.nodes().await[SECOND], (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_config_the_agent_does_not_apply_is_caught_by_the_probe() {
    let env = env("kind-flannel", &same).await;
    env.set_fault(SECOND, "cnc-ignored");
    // The API signals all look right (a fresh Ready agent, CiliumNode CIDRs in the pool): only
    // the probe's address shows the node still hands out old-overlay IPs.
    fails_at(
        &env,
        &format!("{SECOND}/verify"),
        &["expected the probe's IP in 10.245.0.0/16, saw 10.244."],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routing_off_on_one_node_fails_its_probe_across_overlays() {
    let env = env("kind-flannel", &same).await;
    // A CiliumNodeConfig of someone else's that turns host routing off on the second worker.
    assert!(env.sim.insert(serde_json::json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
        "metadata": {"namespace": "kube-system", "name": "zz-fast-path"},
        "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": SECOND}},
                 "defaults": {"enable-host-legacy-routing": "false"}}})));
    let reason = fails_at(
        &env,
        &format!("{SECOND}/verify"),
        &[
            "(old overlay)",
            "bpf.hostLegacyRouting, which is off on kind-worker2",
        ],
    )
    .await;
    // The beacon on the migrated canary was reached: only the cross-overlay path is broken.
    assert!(!reason.contains("(cilium overlay)"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cidr_clash_on_a_migrated_node_stops_the_next_admission() {
    let env = env("kind-flannel", &same).await;
    let mut run = env.watch("apply", &[]);
    let done = run
        .until(|l| l.contains("\"node-done\"") && l.contains(CANARY))
        .await;
    assert!(done.is_some(), "{}", run.seen.join("\n"));
    // During the canary's soak a node joins whose own pod CIDR (from a kube-controller-manager
    // --cluster-cidr wider than the plan knew) is the canary's Cilium block.
    let cn = env
        .cluster
        .custom("cilium.io/v2", "ciliumnodes", None, CANARY)
        .await
        .expect("get")
        .expect("the canary's CiliumNode");
    let block = cn.object["spec"]["ipam"]["podCIDRs"][0]
        .as_str()
        .expect("a block")
        .to_owned();
    assert!(env.sim.insert(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "kind-worker9", "labels": {"kubernetes.io/hostname": "kind-worker9"}},
        "spec": {"podCIDR": block, "podCIDRs": [block]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})));
    let (status, seen) = run.finish().await;
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(5), "{all}");
    let f = env
        .checkpoint()
        .await
        .expect("ck")
        .failure
        .expect("failure");
    assert_eq!(f.step, format!("{CANARY}/verify"), "{all}");
    assert!(
        f.reason.contains("regression on migrated node kind-worker")
            && f.reason
                .contains(&format!("overlaps kind-worker9's pod CIDR {block}")),
        "{}",
        f.reason
    );
    let ck = env.checkpoint().await.expect("ck");
    for n in [SECOND, LAST] {
        assert!(!ck.nodes[n].started(), "{n} was started: {all}");
    }
    // `status` says why it stopped.
    let st = env.cli(&["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("regression") && text.contains(CANARY),
        "{text}"
    );
}

/// The pods a node runs off the host network, with their IPs.
async fn pods_on(env: &Env, node: &str) -> Vec<planner::snapshot::PodInfo> {
    env.cluster
        .pods_on_node(node)
        .await
        .expect("list")
        .into_iter()
        .filter(|p| !p.host_network && !p.terminating && !p.pod_ips.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_node_returns_to_the_old_overlay_with_its_pods_reachable() {
    let limit = std::time::Duration::from_secs(120);
    let env = env("kind-flannel", &same).await;
    let out = env
        .run("apply", &["--stop-before", "finalize"], limit)
        .await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        support::cluster::show(&out)
    );

    let out = env.run("rollback", &[SECOND], limit).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        support::cluster::show(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restored") && text.contains("removed 05-cilium.conflist"),
        "{text}"
    );
    // Unlabelled and schedulable again (the tool had cordoned it), its CNI directory restored.
    assert_eq!(env.nodes().await[SECOND], (false, false));
    let node = env
        .sim
        .store()
        .get("/nodes", "", SECOND)
        .expect("node")
        .value();
    assert!(node["metadata"]["annotations"][sim::model::CNI_ANNOTATION].is_null());
    // The checkpoint holds it: steps Pending again, rolled back, no failure.
    let ck = env.checkpoint().await.expect("ck");
    assert!(ck.nodes[SECOND].rolled_back.is_some());
    assert!(!ck.nodes[SECOND].started());
    let st = env.cli(&["status"]);
    let status = String::from_utf8_lossy(&st.stdout);
    assert!(
        status.contains("rolled back") && status.contains(&format!("--retry {SECOND}")),
        "{status}"
    );

    // A pod started on it now gets an old-overlay IP and reaches, and is reached by, pods on
    // both overlays (ground truth from the model's datapath).
    assert!(env.sim.insert(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "default", "name": "after-rollback", "uid": "u-after-rollback"},
        "spec": {"nodeName": SECOND, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"}})));
    let mut ip = None;
    for _ in 0..100 {
        if let Some(p) = env
            .cluster
            .pod("default", "after-rollback")
            .await
            .expect("get")
            && let Some(a) = p.pod_ips.first()
        {
            ip = Some(*a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ip = ip.expect("the pod starts");
    let pool: ipnet::IpNet = "10.245.0.0/16".parse().unwrap();
    assert!(!pool.contains(&ip), "{ip} is in Cilium's pool");
    let running: Vec<serde_json::Value> = env
        .sim
        .store()
        .list("/pods", None, None, None, &|_, _| true)
        .1
        .into_iter()
        .map(|(_, s)| s.value())
        .filter(|p| p["status"]["phase"] == "Running" && p["spec"]["hostNetwork"] != true)
        .collect();
    let broken: Vec<String> = sim::datapath::matrix(env.sim.store(), &running)
        .into_iter()
        .filter(|(a, b, r)| {
            r.is_err() && (a == "default/after-rollback" || b == "default/after-rollback")
        })
        .map(|(a, b, r)| format!("{a} -> {b}: {r:?}"))
        .collect();
    assert!(broken.is_empty(), "{broken:?}");
    assert!(
        pods_on(&env, CANARY)
            .await
            .iter()
            .any(|p| pool.contains(&p.pod_ips[0])),
        "the canary still runs pods on Cilium"
    );

    // (The test's own pod has no controller: the drain would rightly refuse it.)
    env.sim
        .store()
        .delete("/pods", "default", "after-rollback", false)
        .expect("delete");

    // `resume` stops at a gate naming the held node; `--retry` migrates it again and finishes.
    let out = env.run("resume", &[], limit).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        support::cluster::show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("--retry {SECOND}")),
        "{}",
        support::cluster::show(&out)
    );
    let out = env.run("resume", &["--retry", SECOND], limit).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        support::cluster::show(&out)
    );
    assert_eq!(env.nodes().await[SECOND], (false, true));

    // After the finale there is nothing to roll back to, and the tool says so.
    let out = env.run("rollback", &[SECOND], limit).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        support::cluster::show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to roll back to"),
        "{}",
        support::cluster::show(&out)
    );
}

/// A pod started on a migrated node with an address outside Cilium's pool (the node handed out
/// an old-overlay address again) stops the next admission. The re-check sees it through its one
/// watch of every pod: no LIST of every pod at each look (the sim's timing re-checks at every
/// admission), only planning's and the watch's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_the_old_overlay_on_a_migrated_node_stops_the_next_admission() {
    // A soak long enough that the pod is there before the next admission's re-check.
    let env = env("kind-flannel", &|s: String| {
        s.replace("soak: 1s", "soak: 8s")
    })
    .await;
    let mut run = env.watch("apply", &[]);
    let done = run
        .until(|l| l.contains("\"node-done\"") && l.contains(CANARY))
        .await;
    assert!(done.is_some(), "{}", run.seen.join("\n"));
    // Creation times are in seconds: a pod of the same second as the agent's restart is not
    // held against the node.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(env.sim.insert(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "stray", "labels": {"app": "stray"}},
        "spec": {"nodeName": CANARY, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.77", "podIPs": [{"ip": "10.244.1.77"}],
                   "conditions": [{"type": "Ready", "status": "True"}]}})));
    let (status, seen) = tokio::time::timeout(std::time::Duration::from_secs(120), run.finish())
        .await
        .expect("the run stops at the next admission");
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(5), "{all}");
    let f = env
        .checkpoint()
        .await
        .expect("ck")
        .failure
        .expect("a failure is recorded");
    assert!(
        f.reason
            .contains(&format!("regression on migrated node {CANARY}"))
            && f.reason
                .contains("expected pods started since the migration to have IPs in 10.245.0.0/16")
            && f.reason.contains("shop/stray (10.244.1.77)"),
        "{}",
        f.reason
    );
    let every_pod: Vec<String> = env
        .sim
        .requests()
        .into_iter()
        .filter(|(verb, path)| {
            verb == "GET"
                && (path == "/api/v1/pods" || path.starts_with("/api/v1/pods?"))
                && !path.contains("watch=")
                && !path.contains("fieldSelector=")
                && !path.contains("labelSelector=")
        })
        .map(|(_, path)| path)
        .collect();
    assert!(every_pod.len() <= 3, "LISTs of every pod: {every_pod:?}");
    assert!(
        env.sim.requests().iter().any(|(verb, path)| verb == "GET"
            && path.starts_with("/api/v1/pods?")
            && path.contains("watch=true")
            && !path.contains("fieldSelector=")),
        "the re-check watches every pod"
    );
}
