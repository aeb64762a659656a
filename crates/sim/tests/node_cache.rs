//! `cluster::NodeCached` against the simulated API server over real HTTP: node reads come
//! from one LIST and one WATCH of the nodes, not a GET or a LIST each; a write of ours is read
//! back at once (read your writes), from the watch when it shows it within a moment, else from
//! the API; what others change (a label,
//! readiness, a deleted node, a node replaced under the same name) is seen through the watch.

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use cluster::{Cluster, KubeCluster, NodeCached};
use sim::{Faults, Sim};

async fn start() -> (Sim, KubeCluster, tempfile::TempDir) {
    let sim = Sim::start(0).await.expect("sim");
    sim.load_dump(
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans"))
            .join("kind-flannel.dump.yaml"),
    )
    .expect("dump");
    let (client, dir) = support::connected(&sim).await;
    (sim, KubeCluster::new(client), dir)
}

/// Requests for nodes other than the watch's own LIST and WATCH.
fn node_reads(sim: &Sim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|(verb, path)| verb == "GET" && path.starts_with("/api/v1/nodes"))
        .filter(|(_, path)| !path.contains("watch=true"))
        .map(|(verb, path)| format!("{verb} {path}"))
        .collect()
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reads_come_from_one_watch_and_see_their_own_writes() {
    let (sim, kube, _dir) = start().await;
    let cached = NodeCached::new(Arc::new(kube.clone())).expect("the sim can watch nodes");
    until("the LIST is in", async || cached.live()).await;
    let listed = node_reads(&sim);
    assert_eq!(listed.len(), 1, "one LIST for the cache: {listed:?}");

    // Reads: no request.
    for _ in 0..20 {
        let n = cached
            .node("kind-worker")
            .await
            .expect("read")
            .expect("there");
        assert!(n.ready && !n.unschedulable);
    }
    assert!(cached.node("no-such-node").await.expect("read").is_none());
    let all = cached.nodes().await.expect("nodes");
    assert_eq!(
        all,
        kube.nodes().await.expect("nodes"),
        "the cache is the LIST"
    );
    assert_eq!(
        node_reads(&sim).len(),
        listed.len() + 1,
        "only the direct LIST above"
    );

    // Our writes are read back at once.
    cached
        .set_unschedulable("kind-worker", true)
        .await
        .expect("cordon");
    assert!(
        cached
            .node("kind-worker")
            .await
            .expect("read")
            .expect("there")
            .unschedulable
    );
    cached
        .set_node_label(
            "kind-worker",
            "io.cilium.migration/cilium-default",
            Some("true"),
        )
        .await
        .expect("label");
    let n = cached
        .node("kind-worker")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(
        n.labels
            .get("io.cilium.migration/cilium-default")
            .map(String::as_str),
        Some("true")
    );
    assert!(n.unschedulable);
    cached
        .set_node_annotations("kind-worker", &[("example.com/a", Some("1"))])
        .await
        .expect("annotate");
    assert!(
        cached
            .nodes()
            .await
            .expect("nodes")
            .iter()
            .any(|n| n.name == "kind-worker"
                && n.annotations.get("example.com/a").map(String::as_str) == Some("1")
                && n.unschedulable)
    );
    // A read right after a write of ours waits a moment for the watch to show it rather
    // than send a GET (the API is asked only when the watch lags).
    let at = node_reads(&sim).len();
    for i in 0..10 {
        let cordon = i % 2 == 0;
        cached
            .set_unschedulable("kind-worker", cordon)
            .await
            .expect("write");
        let n = cached
            .node("kind-worker")
            .await
            .expect("read")
            .expect("there");
        assert_eq!(n.unschedulable, cordon, "read your writes");
    }
    let gets = node_reads(&sim).len() - at;
    assert!(gets <= 5, "{gets} GETs for 10 reads after a write of ours");
    // ...and once the watch has shown them, reads are the cache's again.
    let before = node_reads(&sim).len();
    until("the watch shows our writes", async || {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at = node_reads(&sim).len();
        cached.node("kind-worker").await.expect("read");
        node_reads(&sim).len() == at
    })
    .await;
    let settled = node_reads(&sim).len();
    assert!(settled - before <= 10, "settled quickly");
    for _ in 0..10 {
        cached.node("kind-worker").await.expect("read");
    }
    assert_eq!(node_reads(&sim).len(), settled);

    // What others change.
    sim.set_node_ready("kind-worker2", false)
        .expect("not ready");
    until("NotReady seen", async || {
        !cached
            .node("kind-worker2")
            .await
            .expect("read")
            .expect("there")
            .ready
    })
    .await;
    let old = cached.node("kind-worker3").await.expect("read");
    if let Some(old) = old {
        let mut v = sim
            .store()
            .get("/nodes", "", "kind-worker3")
            .expect("stored")
            .value();
        sim.store()
            .delete("/nodes", "", "kind-worker3", false)
            .expect("delete");
        until("deletion seen", async || {
            cached.node("kind-worker3").await.expect("read").is_none()
        })
        .await;
        assert!(
            !cached
                .nodes()
                .await
                .expect("nodes")
                .iter()
                .any(|n| n.name == "kind-worker3")
        );
        // Back under the same name: another UID.
        v["metadata"]["uid"] = "replaced-uid".into();
        v["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("resourceVersion");
        assert!(sim.insert(v), "recreated");
        until("the replacement seen", async || {
            cached
                .node("kind-worker3")
                .await
                .expect("read")
                .is_some_and(|n| n.uid == "replaced-uid" && n.uid != old.uid)
        })
        .await;
    }
    assert_eq!(
        node_reads(&sim).len(),
        settled,
        "all of it through the watch"
    );
}

/// A watch the server drops is opened again from where it was; one that cannot be opened
/// hands reads to the API (whose failure is the reader's, never a stale answer) until a new
/// LIST is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_watch_hands_reads_to_the_api_until_it_is_back() {
    let (sim, kube, _dir) = start().await;
    // Every watch is closed by the server after 200 ms (a dropped connection).
    sim.set_faults(Faults {
        drop_watch_after: Some(Duration::from_millis(200)),
        ..Faults::default()
    });
    let cached = NodeCached::new(Arc::new(kube)).expect("the sim can watch nodes");
    until("the LIST is in", async || cached.live()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.set_node_ready("kind-worker", false).expect("not ready");
    until(
        "a change after the watch was dropped and opened again",
        async || {
            !cached
                .node("kind-worker")
                .await
                .expect("read")
                .expect("there")
                .ready
        },
    )
    .await;
    assert!(cached.live());

    sim.set_faults(Faults {
        drop_watch_after: Some(Duration::from_millis(100)),
        error_500: 1.0,
        ..Faults::default()
    });
    until("the cache gives up", async || !cached.live()).await;
    assert!(
        cached.node("kind-worker").await.is_err(),
        "the API's failure, not the cache's last answer"
    );
    sim.set_faults(Faults::default());
    sim.set_node_ready("kind-worker", true).expect("ready");
    until("read from the API meanwhile", async || {
        cached
            .node("kind-worker")
            .await
            .is_ok_and(|n| n.is_some_and(|n| n.ready))
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cached.live() {
        assert!(tokio::time::Instant::now() < deadline, "watched again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
