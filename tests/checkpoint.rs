//! End-to-end: a checkpoint of format 1 (the whole JSON in one ConfigMap key, as the releases
//! before the compact format wrote it) left by a killed run is resumed by the real
//! `cni-migrate` binary, which finishes the migration and writes format 2 from then on.

mod support;

use std::{collections::BTreeMap, time::Duration};

use cluster::Cluster as _;
use support::cluster::{assert_migrated, env, show, step_ids};

const LIMIT: Duration = Duration::from_secs(120);

/// The checkpoint as format 1 wrote it: `"version": 1`, each node's times absolute (`t`).
fn format_1(c: &executor::checkpoint::Checkpoint) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&c.to_json()).expect("json");
    v["version"] = 1.into();
    for rec in v["nodes"].as_object_mut().expect("nodes").values_mut() {
        let rec = rec.as_object_mut().expect("record");
        if let Some(d) = rec.remove("d") {
            let mut at = 0i64;
            let t: Vec<i64> = d
                .as_array()
                .expect("deltas")
                .iter()
                .map(|x| {
                    at += x.as_i64().expect("an integer");
                    at
                })
                .collect();
            rec.insert("t".into(), t.into());
        }
    }
    serde_json::to_string(&v).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_checkpoint_left_by_a_killed_run_resumes_to_the_end() {
    let env = env("kind-flannel", &|s| s).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    let ids = step_ids(&env.spec, &env.kubeconfig);
    let point = ids
        .iter()
        .find(|id| id.ends_with("/drain"))
        .map(|id| format!("{id}@done"))
        .expect("a drain step");
    env.killed_at(&point).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(
        ck.nodes.values().any(|r| r.started()),
        "the run got as far as {point}"
    );

    // Rewrite it as the previous release left it.
    let head = env
        .cluster
        .configmap("kube-system", "cni-migrate-state")
        .await
        .expect("get")
        .expect("the head");
    let text = format_1(&ck);
    assert!(text.contains("\"version\":1") && text.contains("\"t\":["));
    let data = BTreeMap::from([("checkpoint.json".to_owned(), text)]);
    env.cluster
        .write_configmap(
            "kube-system",
            "cni-migrate-state",
            &head.metadata.labels.clone().unwrap_or_default(),
            &data,
            &BTreeMap::new(),
            head.metadata.resource_version.as_deref(),
        )
        .await
        .expect("write")
        .expect("replaced");
    assert_eq!(env.checkpoint().await, Some(ck), "format 1 reads the same");

    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
    let head = env
        .cluster
        .configmap("kube-system", "cni-migrate-state")
        .await
        .expect("get")
        .expect("the head");
    let index = &head.data.as_ref().expect("data")["checkpoint.json"];
    assert!(
        index.starts_with("{\"version\":2,"),
        "written as format 2: {index}"
    );
    let status = env.cli(&["status", "-o", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(doc["state"], "finished", "{doc}");
}
