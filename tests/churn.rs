//! End-to-end: clusters change while they migrate. Nodes join and leave between runs and
//! during them, and the run carries on: every remaining node migrated, none cordoned, the old
//! CNI removed, every pod in the new pool; the finale never removes the old CNI from under a
//! Ready node that is not migrated.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cluster::{Env, assert_migrated, env, events, show};

const LIMIT: Duration = Duration::from_secs(120);
const POOL: &str = "10.245.0.0/16";

fn same(s: String) -> String {
    s
}

/// A new worker, as a node group would add it: a copy of `kind-worker` under another name,
/// with its own pod CIDR and address, Ready, not cordoned, not labelled.
fn join(env: &Env, name: &str, n: u8) {
    let stored = env
        .sim
        .store()
        .get("/nodes", "", "kind-worker")
        .expect("kind-worker exists");
    let mut node = stored.value();
    let meta = node["metadata"].as_object_mut().expect("metadata");
    meta.remove("uid");
    meta.remove("resourceVersion");
    meta.remove("creationTimestamp");
    node["metadata"]["name"] = json!(name);
    node["metadata"]["labels"]["kubernetes.io/hostname"] = json!(name);
    if let Some(labels) = node["metadata"]["labels"].as_object_mut() {
        labels.remove("io.cilium.migration/cilium-default");
    }
    // A new machine: none of the sim's node state (its CNI directory is the old CNI's).
    if let Some(annotations) = node["metadata"]["annotations"].as_object_mut() {
        annotations.retain(|k, _| !k.starts_with("sim.cni-migrate.io/"));
    }
    node["spec"]["podCIDR"] = json!(format!("10.244.{n}.0/24"));
    node["spec"]["podCIDRs"] = json!([format!("10.244.{n}.0/24")]);
    if let Some(spec) = node["spec"].as_object_mut() {
        spec.remove("unschedulable");
    }
    node["status"]["addresses"] = json!([{"type": "InternalIP", "address": format!("172.18.0.{n}")}, {"type": "Hostname", "address": name}]);
    assert!(env.sim.insert(node), "the node is stored");
}

/// Every node migrated, the run stopped before the finale; then `kind-worker9` joins. The nodes
/// as they are then (the new one neither cordoned nor labelled).
async fn migrated_then_joined(env: &Env) -> std::collections::BTreeMap<String, (bool, bool)> {
    let first = env
        .run("apply", &["--stop-before", "finalize"], LIMIT)
        .await;
    assert_eq!(first.status.code(), Some(4), "{}", show(&first));
    join(env, "kind-worker9", 9);
    env.nodes().await
}

fn leave(env: &Env, name: &str) {
    env.sim
        .store()
        .delete("/nodes", "", name, false)
        .expect("the node exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_before_the_finale_is_migrated_on_resume() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = migrated_then_joined(&env).await;
    // Its flannel pod comes up like on any new node.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    let ev = events(&resumed);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "node-joined" && e["node"] == "kind-worker9"),
        "{}",
        show(&resumed)
    );
    assert!(
        ev.iter()
            .any(|e| e["event"] == "node-done" && e["node"] == "kind-worker9")
    );
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    let rec = ck.node("kind-worker9").expect("recorded");
    assert!(rec.joined.is_some() && rec.done());
    assert!(ck.finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaced_before_it_started_is_recorded_gone_and_its_successor_migrated() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let mut before_nodes = env.nodes().await;
    env.killed_at("kind-worker/cordon@done").await;
    // Replaced, as a node group replaces an instance: the old one goes (its pods with it),
    // a new one comes a little later. Its pods' replacements fit no node meanwhile (the other
    // worker is cordoned): they wait, Pending, and the new node takes them.
    leave(&env, "kind-worker2");
    let start = std::time::Instant::now();
    while env
        .sim
        .store()
        .pods_on_node("", &|k, _| k.0 == "shop")
        .1
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no pod Pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    join(&env, "kind-worker7", 7);
    before_nodes.remove("kind-worker2");
    before_nodes.insert("kind-worker7".into(), (false, false));
    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert!(
        events(&resumed)
            .iter()
            .any(|e| e["event"] == "node-left" && e["node"] == "kind-worker2"),
        "{}",
        show(&resumed)
    );
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(ck.node("kind-worker2").expect("recorded").gone());
    assert!(
        ck.node("kind-worker7")
            .is_some_and(|r| r.done() && r.joined.is_some())
    );
    assert!(ck.finished());
    let status = env.cli(&["status", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status is JSON");
    assert_eq!(doc["counts"]["left"], 1, "{doc}");
    let node = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "kind-worker2")
        .expect("listed");
    assert_eq!(node["state"], "left");
}

/// The finale checks the world, not the plan: a Ready node the record does not show migrated
/// stops the run before the old CNI goes; `resume` then migrates it and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finale_refuses_to_remove_the_old_cni_from_under_an_unmigrated_node() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    // Killed right before the finale: the plan of the resumed run is made...
    env.killed_at("final-values@started").await;
    // ...and a node joins while the resumed run is under way, after it planned: the run
    // holds the finale at a gate naming it.
    let mut watched = env.watch("resume", &["--force-unlock"]);
    assert!(
        watched
            .until(|l| l.contains("\"run-started\""))
            .await
            .is_some(),
        "the resumed run starts"
    );
    join(&env, "kind-worker8", 8);
    let (status, lines) = watched.finish().await;
    let all = lines.join("\n");
    if status.code() == Some(4) {
        assert!(
            all.contains("kind-worker8") && all.contains("not migrated"),
            "{all}"
        );
        let resumed = env.run("resume", &[], LIMIT).await;
        assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    } else {
        // The node joined before the resumed run planned: it was migrated with the others.
        assert_eq!(status.code(), Some(0), "{all}");
    }
    let before_nodes = env.nodes().await;
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(ck.node("kind-worker8").is_some_and(|r| r.done()));
}

/// A node that leaves mid-drain (a scale-down, a spot interruption) does not leave the run
/// waiting: the drain notices, the node is recorded as gone, its slot is freed and the run
/// finishes with the nodes that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_mid_drain_frees_its_slot_and_the_run_finishes() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let mut before_nodes = env.nodes().await;
    // Evictions take a second each: the drain is under way long enough to lose its node.
    env.sim
        .set_faults("latency.evict=1s".parse().expect("a fault spec"));
    let mut run = env.watch("apply", &[]);
    assert!(
        run.until(|l| l.contains("\"step-started\"") && l.contains("kind-worker/drain\""))
            .await
            .is_some(),
        "the first drain starts"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The node goes (its pods with it) and a replacement comes.
    join(&env, "kind-worker6", 6);
    leave(&env, "kind-worker");
    let (status, lines) = tokio::time::timeout(LIMIT, run.finish())
        .await
        .expect("the run does not wait on a node that is gone");
    let all = lines.join("\n");
    assert!(
        all.contains("\"node-left\"") && all.contains("kind-worker left the cluster"),
        "{all}"
    );
    // The drain ends either way: its pods went with the node (404 is "gone"), or it saw the
    // node gone; the next step that needs the node records it as left.
    // The replacement joined after the run planned: the finale stops for it, resume migrates it.
    if status.code() == Some(4) {
        let resumed = env.run("resume", &[], LIMIT).await;
        assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    } else {
        assert_eq!(status.code(), Some(0), "{all}");
    }
    before_nodes.remove("kind-worker");
    before_nodes.insert("kind-worker6".into(), (false, false));
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(ck.node("kind-worker").expect("recorded").gone());
    assert!(ck.finished());
}

/// SIGKILL while a node that joined is in flight, then `resume`: it ends as an uninterrupted
/// run, the joined node migrated. It joined empty: the decision to skip its cordon and drain
/// is in the checkpoint, so the resumed run skips them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_a_joined_node_is_in_flight_then_resume() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = migrated_then_joined(&env).await;
    env.killed_in("resume", &[], "kind-worker9/label@started")
        .await;
    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert!(
        !events(&resumed)
            .iter()
            .any(|e| e["event"] == "step-started" && e["step"] == "kind-worker9/cordon"),
        "{}",
        show(&resumed)
    );
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    let rec = ck.node("kind-worker9").expect("recorded");
    assert!(rec.done() && rec.joined.is_some());
    assert!(rec.prior.as_ref().is_some_and(|p| p.light), "{rec:?}");
}

/// The most nodes in flight at once, from the events: admitted until done or gone.
fn most_in_flight(ev: &[serde_json::Value]) -> usize {
    let mut in_flight = std::collections::BTreeSet::new();
    let mut most = 0;
    for e in ev {
        let node = e["node"].as_str().unwrap_or_default().to_owned();
        match e["event"].as_str() {
            Some("node-admitted") => {
                in_flight.insert(node);
            }
            Some("node-done" | "node-left") => {
                in_flight.remove(&node);
            }
            _ => {}
        }
        most = most.max(in_flight.len());
    }
    most
}

/// A node that joins during the rollout (not between runs) is noticed by the run, planned
/// and admitted under the same `maxUnavailable` rule as the others, and migrated in the same
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_mid_run_is_admitted_under_max_unavailable_and_migrated() {
    let two = |s: String| s.replace("maxUnavailable: 1 ", "maxUnavailable: 2 ");
    let env = env("kind-flannel", &two).await;
    let before_pods = env.workload_pods().await;
    let mut before_nodes = env.nodes().await;
    let mut run = env.watch("apply", &[]);
    assert!(
        run.until(|l| l.contains("\"step-started\"") && l.contains("/drain\""))
            .await
            .is_some(),
        "the canary's drain starts"
    );
    join(&env, "kind-worker9", 9);
    before_nodes.insert("kind-worker9".into(), (false, false));
    let (status, lines) = tokio::time::timeout(LIMIT, run.finish())
        .await
        .expect("the run ends");
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    let ev: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        ev.iter()
            .any(|e| e["event"] == "node-joined" && e["node"] == "kind-worker9"),
        "{all}"
    );
    assert!(
        ev.iter()
            .any(|e| e["event"] == "node-done" && e["node"] == "kind-worker9"),
        "{all}"
    );
    assert_eq!(
        most_in_flight(&ev),
        2,
        "never more than maxUnavailable: {all}"
    );
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(
        ck.node("kind-worker9")
            .is_some_and(|r| r.done() && r.joined.is_some())
    );
    assert!(ck.finished());
}

/// A node deleted and created again under the same name mid-run (a new UID): the old one is
/// recorded as replaced (gone), the new one joins and is migrated in the same run; `status`
/// shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaced_under_the_same_name_mid_run_ends_migrated() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = env.nodes().await;
    let old_uid = env
        .sim
        .store()
        .get("/nodes", "", "kind-worker2")
        .expect("kind-worker2")
        .value()["metadata"]["uid"]
        .as_str()
        .expect("a UID")
        .to_owned();
    env.sim
        .set_faults("latency.evict=1s".parse().expect("a fault spec"));
    let mut run = env.watch("apply", &[]);
    assert!(
        run.until(|l| l.contains("\"step-started\"") && l.contains("kind-worker2/drain\""))
            .await
            .is_some(),
        "kind-worker2's drain starts"
    );
    leave(&env, "kind-worker2");
    join(&env, "kind-worker2", 12);
    let (status, lines) = tokio::time::timeout(LIMIT, run.finish())
        .await
        .expect("the run ends");
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    assert!(all.contains("\"node-left\""), "{all}");
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(ck.finished());
    let new = ck.node("kind-worker2").expect("the successor");
    assert!(new.done() && new.joined.is_some(), "{new:?}");
    assert_ne!(new.uid.as_deref(), Some(&old_uid[..8]));
    assert_eq!(ck.replaced.len(), 1, "{:?}", ck.replaced);
    assert_eq!(ck.replaced[0].name, "kind-worker2");
    assert_eq!(ck.replaced[0].record.uid.as_deref(), Some(&old_uid[..8]));
    assert!(ck.replaced[0].record.gone());
    let json = env.cli(&["status", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status is JSON");
    assert_eq!(doc["counts"]["replaced"], 1, "{doc}");
    assert_eq!(doc["replaced"][0]["name"], "kind-worker2", "{doc}");
    assert_eq!(doc["replaced"][0]["state"], "left", "{doc}");
    assert_eq!(doc["replaced"][0]["uid"], old_uid[..8], "{doc}");
    let text = env.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("replaced   kind-worker2") && text.contains("joined     kind-worker2"),
        "{text}"
    );
}

/// A workload pod of the frontend ReplicaSet on `node`, as a scale-up puts one there (its
/// replicas raised by one; the scheduler picks the emptiest node); returns its name.
async fn workload_on(env: &Env, node: &str) -> String {
    // As a scale-up puts one there: the Deployment's ReplicaSet makes the pod, the scheduler
    // binds it to the least loaded schedulable node, which an empty new node is.
    let deploy = env
        .sim
        .store()
        .get("apps/deployments", "shop", "frontend")
        .expect("the Deployment");
    let mut value = deploy.value();
    let replicas = value["spec"]["replicas"].as_u64().unwrap_or(1);
    value["spec"]["replicas"] = json!(replicas + 1);
    env.sim
        .store()
        .update("apps/deployments", value, Some(deploy.rv), false)
        .expect("update");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, pods, _) = env
            .sim
            .store()
            .list("/pods", Some("shop"), None, None, &|_, s| {
                s.node_name.as_deref() == Some(node)
                    && s.value()["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("frontend-"))
            });
        if let Some(((_, name), _)) = pods.first() {
            return name.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler put no frontend pod on {node}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node that joins after Cilium was installed and runs only DaemonSet pods needs the label,
/// the agent restart and verification: no cordon, no drain, and the events say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_empty_is_neither_cordoned_nor_drained() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = migrated_then_joined(&env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    let ev = events(&resumed);
    let of = |step: &str, event: &str| {
        ev.iter()
            .any(|e| e["step"] == format!("kind-worker9/{step}") && e["event"] == event)
    };
    assert!(
        ev.iter().any(|e| e["node"] == "kind-worker9"
            && e["message"].as_str().is_some_and(
                |m| m.contains("kind-worker9 joined with no workload pods: no cordon or drain")
            )),
        "{}",
        show(&resumed)
    );
    for step in ["cordon", "drain", "uncordon"] {
        assert!(
            of(step, "step-skipped"),
            "{step} skipped: {}",
            show(&resumed)
        );
        assert!(!of(step, "step-started"), "{step} never started");
    }
    for step in ["label", "restart-agent", "verify"] {
        assert!(of(step, "step-done"), "{step} done: {}", show(&resumed));
    }
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
}

/// A workload pod scheduled onto an empty joined node after its admission (no cordon, no
/// drain) and before its agent restarts starts on the old overlay: `verify` evicts it, and
/// its ReplicaSet starts it again on Cilium, so the run finishes with every pod in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_scheduled_onto_an_empty_joined_node_before_its_agent_restarts_is_moved() {
    let env = env("kind-flannel", &same).await;
    let mut before_pods = env.workload_pods().await;
    let before_nodes = migrated_then_joined(&env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The agent's restart takes a while: the pod starts on the old overlay before it.
    env.sim
        .set_faults("latency.delete=1s".parse().expect("a fault spec"));
    let mut run = env.watch("resume", &[]);
    assert!(
        run.until(|l| l.contains("joined with no workload pods"))
            .await
            .is_some(),
        "kind-worker9 is admitted without a drain"
    );
    let moved = workload_on(&env, "kind-worker9").await;
    let (status, lines) = tokio::time::timeout(LIMIT, run.finish())
        .await
        .expect("the run ends");
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    let verified = lines
        .iter()
        .find(|l| l.contains("\"step-done\"") && l.contains("kind-worker9/verify\""))
        .expect("kind-worker9 verified");
    assert!(
        verified.contains("evicted 1 workload pod(s)") && verified.contains(&moved),
        "{all}"
    );
    env.sim.set_faults(sim::Faults::default());
    let frontend = before_pods
        .get_mut("shop/ReplicaSet/frontend-6b8d9f5c7d")
        .expect("the frontend's pods");
    frontend.push(frontend[0].clone());
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
}

/// A node that joins with a workload pod on it gets the full chain: cordoned and drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_with_workloads_gets_the_full_chain() {
    let env = env("kind-flannel", &same).await;
    let before_nodes = migrated_then_joined(&env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    workload_on(&env, "kind-worker9").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_pods = env.workload_pods().await;
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    let ev = events(&resumed);
    for step in ["cordon", "drain", "uncordon"] {
        assert!(
            ev.iter()
                .any(|e| e["step"] == format!("kind-worker9/{step}") && e["event"] == "step-done"),
            "{step} done: {}",
            show(&resumed)
        );
    }
    assert!(!ev.iter().any(|e| e["event"] == "step-skipped"));
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(
        ck.node("kind-worker9")
            .and_then(|r| r.prior.as_ref())
            .is_some_and(|p| !p.light)
    );
}

/// `rollout.newNodes: hold`: a node that joins waits; the run stops at a gate naming it once
/// it is all that is left, and `resume --retry NODE` migrates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_hold_stops_at_a_gate_naming_them() {
    let hold = |s: String| s.replace("rollout:\n", "rollout:\n  newNodes: hold\n");
    let env = env("kind-flannel", &hold).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = migrated_then_joined(&env).await;
    let held = env.run("resume", &[], LIMIT).await;
    assert_eq!(held.status.code(), Some(4), "{}", show(&held));
    let err = String::from_utf8_lossy(&held.stderr);
    assert!(
        err.contains("kind-worker9") && err.contains("rollout.newNodes: hold"),
        "{err}"
    );
    let ck = env.checkpoint().await.expect("a checkpoint");
    let rec = ck.node("kind-worker9").expect("recorded");
    assert!(rec.awaiting && !rec.started(), "held, untouched");
    let resumed = env.run("resume", &["--retry", "kind-worker9"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
}

/// Where something scales nodes down by itself (here: EKS managed node groups), the nodes the
/// tool holds carry the annotations that keep cluster-autoscaler and Karpenter off them, from
/// cordon to uncordon; a node annotated before keeps its annotations untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_held_in_an_autoscaled_cluster_are_kept_from_scale_down() {
    let env = env("kind-flannel", &same).await;
    let before_pods = env.workload_pods().await;
    let before_nodes = env.nodes().await;
    for name in ["kind-control-plane", "kind-worker", "kind-worker2"] {
        let stored = env.sim.store().get("/nodes", "", name).expect("node");
        let mut node = stored.value();
        node["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] = json!("ng-1");
        if name == "kind-worker2" {
            node["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/scale-down-disabled"] =
                json!("true");
        }
        env.sim
            .store()
            .update("/nodes", node, Some(stored.rv), false)
            .expect("update");
    }
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ev = events(&out);
    let said = |step: &str| {
        ev.iter()
            .find(|e| e["step"] == step && e["event"] == "step-done")
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        said("kind-worker/cordon").contains("annotated cluster-autoscaler.kubernetes.io/scale-down-disabled=true and karpenter.sh/do-not-disrupt=true"),
        "{}",
        said("kind-worker/cordon")
    );
    assert!(said("kind-worker/uncordon").contains("scale-down annotations removed"));
    assert!(!said("kind-worker2/cordon").contains("annotated"));
    assert_migrated(&env, &before_nodes, &before_pods, POOL).await;
    use cluster::Cluster as _;
    let nodes = env.cluster.nodes().await.expect("nodes");
    for n in &nodes {
        let kept = n
            .annotations
            .contains_key("cluster-autoscaler.kubernetes.io/scale-down-disabled");
        assert_eq!(
            kept,
            n.name == "kind-worker2",
            "{}: {:?}",
            n.name,
            n.annotations
        );
        assert!(!n.annotations.contains_key("karpenter.sh/do-not-disrupt"));
    }
}
