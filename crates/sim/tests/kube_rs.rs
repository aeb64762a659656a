//! kube-rs against the simulated API server over real HTTP: discovery, pagination, watches
//! (and recovery from 410), evictions with PDBs, server-side apply, every patch type, 409 on a
//! stale update; and the tool's own `cluster` crate (discovery, the `Cluster` verbs, the Lease
//! lock) through the same path.

mod support;

use std::{path::PathBuf, time::Duration};

use cluster::{
    Cluster, Eviction, KubeCluster,
    lease::{LeaseLock, LockError},
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::json;
use sim::Sim;

fn plans() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans"))
}

async fn start(dump: Option<&str>) -> (Sim, kube::Client, tempfile::TempDir) {
    let sim = Sim::start(0).await.expect("sim starts");
    if let Some(d) = dump {
        let n = sim.load_dump(&plans().join(d)).expect("dump loads");
        assert!(n > 10, "{d}: {n} objects");
    }
    let (client, dir) = support::connected(&sim).await;
    (sim, client, dir)
}

#[tokio::test]
async fn discovery_through_the_cluster_crate_matches_the_dump() {
    let (_sim, client, _dir) = start(Some("kind-flannel.dump.yaml")).await;
    let live = cluster::discover(&client).await.expect("discover");
    let offline = planner::dump::load_path(&plans().join("kind-flannel.dump.yaml")).expect("dump");
    assert_eq!(live.nodes.len(), offline.nodes.len());
    assert_eq!(live.pods.len(), offline.pods.len());
    assert_eq!(live.pdbs.len(), offline.pdbs.len());
    assert_eq!(live.daemonsets.len(), offline.daemonsets.len());
    let wl = |s: &planner::ClusterSnapshot| {
        s.workloads
            .iter()
            .map(|w| format!("{}/{}/{}", w.kind, w.namespace, w.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        wl(&live),
        wl(&offline),
        "LIST items carry no kind: discovery sets it"
    );
    let facts = planner::detect::detect(&live);
    assert_eq!(facts.source.cni.to_string(), "flannel");
    assert_eq!(facts.source.port, Some(8472));
    let spec = planner::MigrationSpec::from_file(&plans().join("kind-flannel.yaml")).expect("spec");
    let a = planner::plan(&spec, &live);
    let b = planner::plan(&spec, &offline);
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "a live plan and a dump plan of the same cluster agree"
    );
}

#[tokio::test]
async fn lists_page_with_continue_tokens() {
    let (_sim, client, _dir) = start(Some("calico-operator-vxlan.dump.json")).await;
    let api: Api<Pod> = Api::all(client);
    let all = api.list(&ListParams::default()).await.expect("list");
    let mut paged = Vec::new();
    let mut lp = ListParams::default().limit(7);
    loop {
        let page = api.list(&lp).await.expect("page");
        assert!(page.items.len() <= 7);
        paged.extend(
            page.items
                .into_iter()
                .map(|p| p.metadata.name.unwrap_or_default()),
        );
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(paged.len(), all.items.len());
    let by_node = api
        .list(&ListParams::default().fields("spec.nodeName=worker-a"))
        .await
        .expect("field selector");
    assert!(!by_node.items.is_empty());
    assert!(
        by_node
            .items
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("worker-a"))
    );
    let by_label = api
        .list(&ListParams::default().labels("k8s-app in (calico-node,kube-proxy)"))
        .await
        .expect("label selector");
    assert_eq!(by_label.items.len(), 8);
}

#[tokio::test]
async fn watches_see_changes_and_410_for_a_compacted_version() {
    let (sim, client, _dir) = start(None).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "1"}}))
                .expect("cm"),
        )
        .await
        .expect("create");
    let rv = cm.metadata.resource_version.clone().expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .expect("patch");
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    match ev {
        WatchEvent::Modified(cm) => assert_eq!(cm.data.expect("data")["k"], "2"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    sim.store().compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("ok").expect("event") {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // kube-runtime's watcher recovers by re-listing.
    let w = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default());
    let mut w = w.boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), w.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(first.is_some());
}

#[tokio::test]
async fn evictions_honour_disruption_budgets() {
    let (_sim, client, _dir) = start(Some("pdb-blocks-drain.dump.yaml")).await;
    let c = KubeCluster::new(client);
    let pods = c.pods(Some("shop"), "app=payments").await.expect("pods");
    assert_eq!(pods.len(), 2);
    match c.evict("shop", &pods[0].name, None).await.expect("evict") {
        Eviction::Blocked { message } => {
            assert!(message.contains("disruption budget"), "{message}")
        }
        other => panic!("minAvailable=2 of 2 must block, got {other:?}"),
    }
    let fe = c.pods(Some("shop"), "app=frontend").await.expect("pods");
    assert_eq!(
        c.evict("shop", &fe[0].name, None).await.expect("evict"),
        Eviction::Evicted
    );
    assert!(
        c.pod("shop", &fe[0].name).await.expect("get").is_none(),
        "evicted at once without a model"
    );
    // maxUnavailable: 1 is now spent: the next frontend pod is refused.
    assert!(matches!(
        c.evict("shop", &fe[1].name, None).await.expect("evict"),
        Eviction::Blocked { .. }
    ));
    assert_eq!(
        c.evict("shop", "no-such-pod", None).await.expect("evict"),
        Eviction::Gone
    );
}

#[tokio::test]
async fn cluster_verbs_cordon_label_apply_and_delete() {
    let (sim, client, _dir) = start(Some("kind-flannel.dump.yaml")).await;
    let c = KubeCluster::new(client.clone());
    c.set_unschedulable("kind-worker", true)
        .await
        .expect("cordon");
    assert!(
        c.node("kind-worker")
            .await
            .expect("get")
            .expect("node")
            .unschedulable
    );
    c.set_unschedulable("kind-worker", false)
        .await
        .expect("uncordon");
    assert!(
        !c.node("kind-worker")
            .await
            .expect("get")
            .expect("node")
            .unschedulable
    );
    c.set_node_label(
        "kind-worker",
        "io.cilium.migration/cilium-default",
        Some("true"),
    )
    .await
    .expect("label");
    let n = c.node("kind-worker").await.expect("get").expect("node");
    assert_eq!(
        n.labels
            .get("io.cilium.migration/cilium-default")
            .map(String::as_str),
        Some("true")
    );
    c.set_node_label("kind-worker", "io.cilium.migration/cilium-default", None)
        .await
        .expect("unlabel");
    assert!(
        !c.node("kind-worker")
            .await
            .expect("get")
            .expect("node")
            .labels
            .contains_key("io.cilium.migration/cilium-default")
    );
    assert!(c.node("nope").await.expect("get").is_none());

    let spec = planner::MigrationSpec::from_file(&plans().join("kind-flannel.yaml")).expect("spec");
    let cnc = planner::values::node_config_object(&spec, &planner::NetworkFacts::default());
    c.apply("ciliumnodeconfigs", &cnc)
        .await
        .expect("apply creates");
    c.apply("ciliumnodeconfigs", &cnc)
        .await
        .expect("apply again is idempotent");
    let got = c
        .custom(
            "cilium.io/v2",
            "ciliumnodeconfigs",
            Some("kube-system"),
            "cilium-default",
        )
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.object["spec"]["defaults"]["custom-cni-conf"], "false");
    assert_eq!(
        got.object["metadata"]["managedFields"][0]["manager"],
        "cni-migrate"
    );
    // The same object is visible under the deprecated version too.
    assert!(
        c.custom(
            "cilium.io/v2alpha1",
            "ciliumnodeconfigs",
            Some("kube-system"),
            "cilium-default"
        )
        .await
        .expect("get")
        .is_some()
    );
    assert!(
        c.delete(
            "cilium.io/v2",
            "ciliumnodeconfigs",
            Some("kube-system"),
            "cilium-default"
        )
        .await
        .expect("delete")
    );
    assert!(
        !c.delete(
            "cilium.io/v2",
            "ciliumnodeconfigs",
            Some("kube-system"),
            "cilium-default"
        )
        .await
        .expect("delete")
    );

    c.node_event(
        "kind-worker",
        "CordonedForMigration",
        "cordoned by cni-migrate",
        false,
    )
    .await
    .expect("event");
    assert_eq!(sim.store().count("/events"), 1);
    let agent = c.pods_on_node("kind-worker").await.expect("pods");
    assert!(agent.iter().any(|p| p.name.starts_with("kube-flannel-ds")));
    let p = &agent[0];
    assert!(
        !c.delete_pod(&p.namespace, &p.name, Some("another-uid"))
            .await
            .expect("precondition"),
        "a UID precondition protects a replacement"
    );
    assert!(
        c.delete_pod(&p.namespace, &p.name, Some(&p.uid))
            .await
            .expect("delete")
    );
}

#[tokio::test]
async fn patches_of_every_type_and_conflicts() {
    let (_sim, client, _dir) = start(Some("kind-flannel.dump.yaml")).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes
        .patch(
            "kind-worker",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("strategic");
    assert_eq!(n.spec.and_then(|s| s.unschedulable), Some(true));
    let n = nodes
        .patch(
            "kind-worker",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
                )
                .expect("json patch"),
            ),
        )
        .await
        .expect("json");
    assert_eq!(n.metadata.labels.expect("labels")["x"], "y");
    let mut stale = nodes.get("kind-worker").await.expect("get");
    nodes
        .patch(
            "kind-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"z": "1"}}})),
        )
        .await
        .expect("merge");
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("w".into(), "2".into());
    let err = nodes
        .replace("kind-worker", &PostParams::default(), &stale)
        .await
        .expect_err("stale update");
    assert_eq!(cluster::status_code(&err), Some(409));
    let cms: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let dry = cms
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &serde_json::from_value(json!({"metadata": {"name": "dry"}})).expect("cm"),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(
        cms.get_opt("dry").await.expect("get").is_none(),
        "dryRun=All stores nothing"
    );
}

#[tokio::test]
async fn the_lease_lock_admits_one_holder() {
    let (_sim, client, _dir) = start(None).await;
    let mut a = LeaseLock::new(client.clone(), "run-a@host", Duration::from_secs(60));
    let mut b = LeaseLock::new(client.clone(), "run-b@host", Duration::from_secs(60));
    a.acquire(false).await.expect("first takes it");
    match b.acquire(false).await {
        Err(LockError::Held { holder, .. }) => assert_eq!(holder, "run-a@host"),
        other => panic!("second must be refused, got {other:?}"),
    }
    a.renew().await.expect("renew");
    a.release().await.expect("release");
    b.acquire(false).await.expect("free again");
    // A lease that stopped being renewed is stale: it needs --force-unlock.
    let mut short = LeaseLock::new(client.clone(), "run-c@host", Duration::from_secs(1));
    b.release().await.expect("release");
    short.acquire(false).await.expect("take");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut d = LeaseLock::new(client, "run-d@host", Duration::from_secs(60));
    assert!(matches!(
        d.acquire(false).await,
        Err(LockError::Stale { .. })
    ));
    d.acquire(true).await.expect("force-unlock takes over");
    assert!(matches!(short.renew().await, Err(LockError::Lost { .. })));
}
