//! The ConfigMap checkpoint store through the real `KubeCluster` against the simulated API
//! server over HTTP: a checkpoint split across ConfigMaps reads back whole, a save killed
//! between the writes of its parts leaves the previous checkpoint readable (and its parts are
//! removed by the next save), a checkpoint of format 1 (JSON in one key) still reads and is
//! written as format 2 from then on, and a damaged one is refused naming what is wrong.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use cluster::{Cluster, ClusterArgs, KubeCluster};
use executor::{
    checkpoint::{Checkpoint, StepIndex, StepState},
    store::{ConfigMapStore, StateStore, StoreError},
};
use planner::snapshot::{ClusterSnapshot, NodeInfo};
use sim::Sim;

const NS: &str = "kube-system";
const HEAD: &str = "cni-migrate-state";

async fn start() -> (Sim, Arc<dyn Cluster>, tempfile::TempDir) {
    let sim = Sim::start(0).await.expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc).expect("kubeconfig");
    let client = cluster::connect(&ClusterArgs {
        kubeconfig: Some(kc),
        context: None,
    })
    .await
    .expect("client");
    (sim, Arc::new(KubeCluster::new(client)), dir)
}

fn plan(nodes: usize) -> planner::Plan {
    let spec = planner::MigrationSpec::from_yaml(
        "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
         target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n",
        "t",
    )
    .expect("spec");
    let snap = ClusterSnapshot {
        nodes: (0..nodes)
            .map(|i| NodeInfo {
                name: format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i / 250, i % 250),
                uid: format!("{:08x}-1a2b-4c3d-8e9f-0a1b2c3d4e5f", i * 7919),
                ready: true,
                ..NodeInfo::default()
            })
            .collect(),
        ..ClusterSnapshot::default()
    };
    planner::plan(&spec, &snap)
}

/// A checkpoint of the plan with its first 60% of steps done, at irregular times.
fn checkpoint(p: &planner::Plan) -> Checkpoint {
    let idx = StepIndex::new(&p.steps);
    let mut c = Checkpoint::new(p, "run-1@host", 1_700_000_000);
    let mut now = 1_700_000_000u64;
    for (i, s) in p.steps.iter().take(p.steps.len() * 3 / 5).enumerate() {
        now += (i as u64 * 7) % 13;
        c.transition(&idx, &s.id, StepState::Running, now, None)
            .expect("start");
        now += (i as u64 * 31) % 97;
        c.transition(&idx, &s.id, StepState::Done, now, None)
            .expect("done");
    }
    c
}

/// The part ConfigMaps in the namespace, by name.
async fn parts(cluster: &Arc<dyn Cluster>) -> Vec<String> {
    let mut names: Vec<String> = cluster
        .configmaps_labelled(NS, &format!("cni-migrate.io/checkpoint-of={HEAD}"))
        .await
        .expect("list")
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    names
}

/// The parts the head names.
async fn named(cluster: &Arc<dyn Cluster>) -> Vec<String> {
    let head = cluster
        .configmap(NS, HEAD)
        .await
        .expect("get")
        .expect("head");
    let index: serde_json::Value =
        serde_json::from_str(&head.data.expect("data")["checkpoint.json"]).expect("index");
    let mut names: Vec<String> = index["parts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_checkpoint_split_across_configmaps_reads_back_and_leaves_no_stale_parts() {
    let (_sim, cluster, _dir) = start().await;
    let p = plan(300);
    let mut c = checkpoint(&p);
    let store = ConfigMapStore::new(cluster.clone()).with_part_bytes(2048);
    store.save(&mut c).await.expect("first save");
    let first = parts(&cluster).await;
    assert!(first.len() >= 2, "split into parts: {first:?}");
    assert_eq!(first, named(&cluster).await);
    let other = ConfigMapStore::new(cluster.clone());
    assert_eq!(other.load().await.expect("load"), Some(c.clone()));

    // The next save writes new parts, then the head, then deletes the previous parts.
    c.gate = Some("a change".into());
    store.save(&mut c).await.expect("second save");
    let second = parts(&cluster).await;
    assert_eq!(second, named(&cluster).await);
    assert!(second.iter().all(|n| !first.contains(n)), "{second:?}");
    assert_eq!(other.load().await.expect("load"), Some(c.clone()));

    // A checkpoint that fits the head again takes its parts away.
    let big = ConfigMapStore::new(cluster.clone());
    let mut again = big.load().await.expect("load").expect("there");
    big.save(&mut again).await.expect("inline save");
    assert!(parts(&cluster).await.is_empty());
    assert_eq!(other.load().await.expect("load"), Some(again));
}

/// A save killed between the writes of its parts (the future dropped while the API server
/// takes its time over each create, as a SIGKILL would leave it): the head and the parts it
/// names are untouched, the previous checkpoint reads back, and the next run's first save
/// removes the orphaned parts.
#[tokio::test]
async fn a_save_killed_between_its_parts_leaves_the_previous_checkpoint_readable() {
    let (sim, cluster, _dir) = start().await;
    let p = plan(300);
    let mut c = checkpoint(&p);
    let store = ConfigMapStore::new(cluster.clone()).with_part_bytes(1024);
    store.save(&mut c).await.expect("first save");
    let before = c.clone();
    let written = parts(&cluster).await;
    assert!(written.len() >= 4, "{written:?}");

    c.gate = Some("a change".into());
    sim.set_faults("latency.POST=150ms-150ms".parse().expect("faults"));
    let killed = tokio::time::timeout(Duration::from_millis(500), store.save(&mut c)).await;
    assert!(killed.is_err(), "the save should not have finished");
    sim.set_faults(sim::Faults::default());
    // Let the request in flight, if any, land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let orphans: Vec<String> = parts(&cluster)
        .await
        .into_iter()
        .filter(|n| !written.contains(n))
        .collect();
    assert!(
        !orphans.is_empty(),
        "some parts of the killed save were written"
    );
    assert_eq!(
        named(&cluster).await,
        written,
        "the head still names the old parts"
    );
    let next = ConfigMapStore::new(cluster.clone()).with_part_bytes(1024);
    let mut resumed = next.load().await.expect("load").expect("there");
    assert_eq!(resumed, before, "the previous checkpoint, whole");

    next.save(&mut resumed).await.expect("the next run saves");
    let left = parts(&cluster).await;
    assert_eq!(
        left,
        named(&cluster).await,
        "no part but the head's is left"
    );
    assert_eq!(
        ConfigMapStore::new(cluster.clone())
            .load()
            .await
            .expect("load"),
        Some(resumed)
    );
}

/// A checkpoint of format 1, as the release before this one left it: the whole JSON in
/// `data.checkpoint.json`, times absolute.
fn format_1(c: &Checkpoint) -> String {
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
                    at += x.as_i64().expect("int");
                    at
                })
                .collect();
            rec.insert("t".into(), t.into());
        }
    }
    serde_json::to_string(&v).expect("json")
}

#[tokio::test]
async fn a_format_1_checkpoint_reads_and_is_written_as_format_2() {
    let (_sim, cluster, _dir) = start().await;
    let c = checkpoint(&plan(20));
    let text = format_1(&c);
    assert!(text.contains("\"version\":1") && text.contains("\"t\":["));
    let labels = BTreeMap::from([("app.kubernetes.io/managed-by".into(), "cni-migrate".into())]);
    let data = BTreeMap::from([("checkpoint.json".to_owned(), text)]);
    cluster
        .write_configmap(NS, HEAD, &labels, &data, &BTreeMap::new(), None)
        .await
        .expect("write")
        .expect("created");
    let store = ConfigMapStore::new(cluster.clone());
    let mut read = store.load().await.expect("format 1 reads").expect("there");
    assert_eq!(read, c);
    store.save(&mut read).await.expect("saves over it");
    let head = cluster
        .configmap(NS, HEAD)
        .await
        .expect("get")
        .expect("head");
    let index = &head.data.as_ref().expect("data")["checkpoint.json"];
    assert!(index.starts_with("{\"version\":2,"), "{index}");
    assert!(
        head.binary_data
            .as_ref()
            .is_some_and(|b| b.contains_key("checkpoint.zz"))
    );
    assert_eq!(
        ConfigMapStore::new(cluster).load().await.expect("load"),
        Some(read)
    );
}

#[tokio::test]
async fn a_damaged_or_newer_checkpoint_is_refused_naming_what_is_wrong() {
    let (_sim, cluster, _dir) = start().await;
    let p = plan(300);
    let mut c = checkpoint(&p);
    let store = ConfigMapStore::new(cluster.clone()).with_part_bytes(2048);
    store.save(&mut c).await.expect("save");
    let gone = named(&cluster).await[1].clone();
    assert!(
        cluster
            .delete("v1", "configmaps", Some(NS), &gone)
            .await
            .expect("delete")
    );
    let err = ConfigMapStore::new(cluster.clone())
        .load()
        .await
        .expect_err("a part is missing");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains(&gone), "{err}");

    let labels = BTreeMap::new();
    let data = BTreeMap::from([(
        "checkpoint.json".to_owned(),
        r#"{"version":3,"generation":9}"#.to_owned(),
    )]);
    let head = cluster
        .configmap(NS, HEAD)
        .await
        .expect("get")
        .expect("head");
    cluster
        .write_configmap(
            NS,
            HEAD,
            &labels,
            &data,
            &BTreeMap::new(),
            head.metadata.resource_version.as_deref(),
        )
        .await
        .expect("write")
        .expect("replaced");
    let err = ConfigMapStore::new(cluster)
        .load()
        .await
        .expect_err("a newer format");
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(chain.contains("format version 3"), "{chain}");
}
