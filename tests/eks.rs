//! End-to-end on the simulated cluster, both EKS profiles: `eks-eni` (aws-node confined, Cilium
//! takes every node over at install, each node's old pods restarted through evictions) and
//! `eks-overlay` (aws-node stays until a node migrates, then leaves it; its nat chains are
//! flushed; the node moves to Cilium's pool as in the dual overlay).

mod support;

use std::{collections::BTreeMap, time::Duration};

use cluster::Cluster as _;
use planner::plan::AWS_NODE_LABEL;
use support::cluster::{assert_migrated, env, show};

fn same(s: String) -> String {
    s
}

/// Pods the tool deleted directly (not evicted) that are not its own or Cilium agents.
fn deleted_directly(env: &support::cluster::Env) -> Vec<String> {
    env.deleted_pods()
        .into_iter()
        .filter(|d| {
            !d.starts_with("kube-system/cni-migrate-") && !d.starts_with("kube-system/cilium-")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_eni_restarts_every_old_pod_onto_cilium_enis() {
    let env = env("eks-eni-al2023", &same).await;
    let before = env.workload_pods().await;
    let out = env.run("apply", &[], Duration::from_secs(300)).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("patch-aws-node"), "{log}");
    assert!(log.contains("restarted"), "no pod was restarted: {log}");

    // aws-node is gone (the old CNI removed), no node was cordoned or labelled for a
    // CiliumNodeConfig, and none exists.
    let c = &env.cluster;
    assert!(
        c.custom("apps/v1", "daemonsets", Some("kube-system"), "aws-node")
            .await
            .expect("get")
            .is_none(),
        "aws-node is still there"
    );
    for (name, (cordoned, labelled)) in env.nodes().await {
        assert!(
            !cordoned && !labelled,
            "{name}: cordoned {cordoned}, labelled {labelled}"
        );
    }
    // Every workload pod is back, Ready, with an address from its node's ENI pool and a
    // CiliumEndpoint holding it.
    let cns = c.cilium_nodes().await.expect("ciliumnodes");
    let eps = c.cilium_endpoints().await.expect("endpoints");
    let after = env.workload_pods().await;
    for (owner, pods) in &before {
        let now = after.get(owner).cloned().unwrap_or_default();
        assert_eq!(now.len(), pods.len(), "{owner}: pods before and after");
        for p in now.iter().filter(|p| !p.host_network) {
            let node = p.node_name.clone().unwrap_or_default();
            let pool: Vec<String> = cns
                .iter()
                .find(|cn| cn.name == node)
                .map(|cn| cn.pod_cidrs.clone())
                .unwrap_or_default();
            let ip = p.pod_ips.first().expect("an IP");
            assert!(
                pool.contains(&format!("{ip}/32")),
                "{} on {node} has {ip}, not an ENI address of its CiliumNode",
                p.key()
            );
            assert!(
                eps.iter()
                    .any(|e| e.namespace == p.namespace && e.name == p.name && e.ips.contains(ip)),
                "{} has no CiliumEndpoint",
                p.key()
            );
        }
    }
    assert!(
        deleted_directly(&env).is_empty(),
        "deleted, not evicted: {:?}",
        deleted_directly(&env)
    );
    // status: every pod off the host network is managed.
    let status = env.cli(&["status", "-o", "json"]);
    let json: serde_json::Value =
        serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&status)));
    let m = &json["pods"];
    assert!(m["total"].as_u64().is_some_and(|t| t > 0), "{json}");
    assert_eq!(m["managed"], m["total"], "{json}");
    assert_eq!(
        m["summary"].as_str().unwrap_or_default(),
        format!("{0}/{0} pods managed by Cilium", m["total"]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_overlay_moves_nodes_off_aws_node_one_at_a_time() {
    let env = env("eks-overlay-al2", &same).await;
    let before_nodes: BTreeMap<String, (bool, bool)> = env.nodes().await;
    let before_pods = env.workload_pods().await;
    let (status, seen) = env.watch("apply", &[]).finish().await;
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
    // Each node lost the aws-node label (aws-node left it) and had the nat chains flushed
    // before its agent restarted.
    let snap = cluster::discover(env.cluster.client())
        .await
        .expect("discover");
    for n in &snap.nodes {
        assert!(
            !n.labels.contains_key(AWS_NODE_LABEL),
            "{} still carries {AWS_NODE_LABEL}",
            n.name
        );
        assert_eq!(
            n.annotations
                .get(sim::model::VPC_NAT_ANNOTATION)
                .map(String::as_str),
            Some("flushed"),
            "{}: the VPC CNI's nat chains were not flushed",
            n.name
        );
        let stop = seen
            .iter()
            .position(|l| {
                l.contains("step-done") && l.contains(&format!("{}/stop-aws-node", n.name))
            })
            .unwrap_or_else(|| panic!("no stop-aws-node for {}: {all}", n.name));
        let restart = seen
            .iter()
            .position(|l| {
                l.contains("step-done") && l.contains(&format!("{}/restart-agent", n.name))
            })
            .expect("restart-agent");
        assert!(
            stop < restart,
            "{}: aws-node stopped after the agent restarted",
            n.name
        );
    }
    // While the first node moved, aws-node kept running on the others (the label went
    // first everywhere): the patch step reported it.
    assert!(
        all.contains("aws-node pod(s) keep running"),
        "aws-node did not stay on the unmigrated nodes: {all}"
    );
    assert!(
        deleted_directly(&env).is_empty(),
        "deleted, not evicted: {:?}",
        deleted_directly(&env)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_overlay_rollback_brings_aws_node_back_and_eks_eni_refuses_one() {
    let limit = Duration::from_secs(120);
    let env = env("eks-overlay-al2", &same).await;
    let out = env
        .run("apply", &["--stop-before", "finalize"], limit)
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let node = "ip-192-168-12-34.eu-west-1.compute.internal";
    let out = env.run("rollback", &[node], limit).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("aws-node") && text.contains("Ready on"),
        "{text}"
    );
    let n = env.cluster.node(node).await.expect("get").expect("node");
    assert_eq!(
        n.labels.get(AWS_NODE_LABEL).map(String::as_str),
        Some("true")
    );
    let pods = env.cluster.pods_on_node(node).await.expect("pods");
    assert!(
        pods.iter()
            .any(|p| p.labels.get("k8s-app").map(String::as_str) == Some("aws-node") && p.ready),
        "no Ready aws-node on {node}"
    );
    // aws-node rewrote its nat chains there: a retry must flush them again.
    let v = env
        .sim
        .store()
        .get("/nodes", "", node)
        .expect("node")
        .value();
    assert_eq!(
        v["metadata"]["annotations"][sim::model::VPC_NAT_ANNOTATION],
        "present"
    );

    let env = support::cluster::env("eks-eni-al2023", &same).await;
    let out = env
        .run("apply", &["--stop-before", "finalize"], limit)
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let out = env.run("rollback", &[node], limit).await;
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let all = show(&out);
    assert!(
        all.contains("cannot roll back") && all.contains("eks-eni"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_tainted_agent_not_ready_are_untainted_by_cilium_and_migrate() {
    let env = env("eks-eni-al2-tainted", &same).await;
    let tainted = |snap: &planner::ClusterSnapshot| {
        snap.nodes
            .iter()
            .filter(|n| {
                n.taints
                    .iter()
                    .any(|t| t.key == "node.cilium.io/agent-not-ready")
            })
            .count()
    };
    let before = cluster::discover(env.cluster.client())
        .await
        .expect("discover");
    assert_eq!(
        tainted(&before),
        2,
        "the example taints node group ng-cilium"
    );
    let out = env.run("apply", &[], Duration::from_secs(300)).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let after = cluster::discover(env.cluster.client())
        .await
        .expect("discover");
    assert_eq!(
        tainted(&after),
        0,
        "Cilium's operator removes the taint once agents are up"
    );
    let status = env.cli(&["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let m = &json["pods"];
    assert_eq!(m["managed"], m["total"], "{json}");
}
