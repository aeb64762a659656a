use super::*;

/// Generated names are not unique (a 5-letter suffix): one that is taken is generated
/// again, as the API server does, so thousands of `generateName` creates all succeed.
#[test]
fn generated_names_that_are_taken_are_generated_again() {
    let s = Store::new();
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..5_000 {
        let v = s
            .create(
                "/pods",
                json!({"metadata": {"generateName": "cilium-", "namespace": "kube-system"}}),
                false,
            )
            .expect("every create succeeds");
        assert!(names.insert(v["metadata"]["name"].as_str().unwrap().to_owned()));
    }
}

/// The indexes follow creates, updates and deletes: pods by label and by controller,
/// budgets by their first selector label.
#[test]
fn the_label_controller_and_selector_indexes_follow_changes() {
    let s = Store::new();
    let pod = |name: &str, app: &str| {
        json!({"metadata": {"name": name, "namespace": "n", "labels": {"app": app},
               "ownerReferences": [{"kind": "ReplicaSet", "name": format!("{app}-rs"), "controller": true}]}})
    };
    s.create("/pods", pod("a", "web"), false).unwrap();
    s.create("/pods", pod("b", "web"), false).unwrap();
    s.create(
        BUDGETS,
        json!({"metadata": {"name": "web", "namespace": "n"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
        false,
    )
    .unwrap();
    s.create(
        BUDGETS,
        json!({"metadata": {"name": "db", "namespace": "n"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}}}),
        false,
    )
    .unwrap();
    let names = |page: Page| page.1.into_iter().map(|((_, n), _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(s.pods_with_label("n", ("app", "web"), &|_, _| true)),
        ["a", "b"]
    );
    assert_eq!(
        names(s.pods_of_controller("n", "ReplicaSet", "web-rs", &|_, _| true)),
        ["a", "b"]
    );
    let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    assert_eq!(names(s.budgets_for("n", &labels)), ["web"]);
    // A pod relabelled moves; a deleted one leaves.
    let mut b = s.get("/pods", "n", "b").unwrap().value();
    b["metadata"]["labels"]["app"] = json!("db");
    b["metadata"]["ownerReferences"][0]["name"] = json!("db-rs");
    s.update("/pods", b, None, false).unwrap();
    s.delete("/pods", "n", "a", false).unwrap();
    assert!(names(s.pods_with_label("n", ("app", "web"), &|_, _| true)).is_empty());
    assert_eq!(
        names(s.pods_with_label("n", ("app", "db"), &|_, _| true)),
        ["b"]
    );
    assert_eq!(
        names(s.pods_of_controller("n", "ReplicaSet", "db-rs", &|_, _| true)),
        ["b"]
    );
    s.delete(BUDGETS, "n", "web", false).unwrap();
    assert!(names(s.budgets_for("n", &labels)).is_empty());
}

#[test]
fn create_update_delete_with_versions_and_conflicts() {
    let s = Store::new();
    let v = s
        .create(
            "/configmaps",
            json!({"metadata": {"name": "a", "namespace": "n"}, "data": {"k": "v"}}),
            false,
        )
        .unwrap();
    let rv: u64 = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(v["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(matches!(
        s.create(
            "/configmaps",
            json!({"metadata": {"name": "a", "namespace": "n"}}),
            false
        ),
        Err(StoreError::AlreadyExists { .. })
    ));
    let mut w = v.clone();
    w["data"]["k"] = json!("w");
    let w = s.update("/configmaps", w, Some(rv), false).unwrap();
    assert!(matches!(
        s.update("/configmaps", v.clone(), Some(rv), false),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(w["metadata"]["uid"], v["metadata"]["uid"]);
    s.delete("/configmaps", "n", "a", false).unwrap();
    assert!(s.get("/configmaps", "n", "a").is_none());
    let (events, _) = s.watch_from(Some("/configmaps"), None, 0).unwrap();
    assert_eq!(
        events.iter().map(|e| e.type_).collect::<Vec<_>>(),
        ["ADDED", "MODIFIED", "DELETED"]
    );
    s.compact();
    assert!(matches!(
        s.watch_from(None, None, 1),
        Err(StoreError::Gone { .. })
    ));
}

#[test]
fn lists_page_in_order_within_a_namespace() {
    let s = Store::new();
    for (ns, n) in [("b", "2"), ("a", "1"), ("b", "1"), ("c", "1")] {
        s.create(
            "/pods",
            json!({"metadata": {"name": n, "namespace": ns}}),
            false,
        )
        .unwrap();
    }
    let (_, page, more) = s.list("/pods", None, None, Some(2), &|_, _| true);
    assert!(more);
    assert_eq!(
        page.iter()
            .map(|(k, _)| format!("{}/{}", k.0, k.1))
            .collect::<Vec<_>>(),
        ["a/1", "b/1"]
    );
    let (_, page, more) = s.list("/pods", None, Some(&page[1].0), Some(2), &|_, _| true);
    assert!(!more);
    assert_eq!(page.len(), 2);
    let (_, page, _) = s.list("/pods", Some("b"), None, None, &|_, _| true);
    assert_eq!(page.len(), 2);
}

/// A watch hears its own resource's changes only, and a watch of one node's pods only theirs
/// (binding and deletion included), as the API server's watch cache keeps a channel for each
/// resource and indexes pods by node; the model's receiver hears everything but Leases and Events.
#[test]
fn watches_hear_only_their_resource_and_node() {
    let s = Store::new();
    let mut everything = s.subscribe();
    let (_, mut pods) = s.watch_from(Some("/pods"), None, 0).unwrap();
    let (_, mut n1) = s.watch_from(Some("/pods"), Some("n1"), 0).unwrap();
    let (_, mut leases) = s
        .watch_from(Some("coordination.k8s.io/leases"), None, 0)
        .unwrap();
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "a"}, "spec": {"containers": []}});
        if let Some(node) = node {
            p["spec"]["nodeName"] = json!(node);
        }
        p
    };
    s.create("/pods", pod("on-n1", Some("n1")), false).unwrap();
    s.create("/pods", pod("on-n2", Some("n2")), false).unwrap();
    let unbound = s.create("/pods", pod("later-n1", None), false).unwrap();
    let mut bound = unbound.clone();
    bound["spec"]["nodeName"] = json!("n1");
    s.update("/pods", bound, None, false).unwrap();
    s.delete("/pods", "a", "on-n1", false).unwrap();
    s.create(
        "coordination.k8s.io/leases",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease"}}),
        false,
    )
    .unwrap();
    let drain = |rx: &mut broadcast::Receiver<Arc<Event>>| {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(format!("{} {}", e.type_, e.name));
        }
        out
    };
    assert_eq!(
        drain(&mut n1),
        ["ADDED on-n1", "MODIFIED later-n1", "DELETED on-n1"]
    );
    assert_eq!(drain(&mut pods).len(), 5);
    assert_eq!(drain(&mut leases), ["ADDED n1"]);
    // The model's receiver does not hear the kubelets' Leases.
    assert_eq!(drain(&mut everything).len(), 5);
    // A channel nobody listens to any more is let go at its next change.
    drop(n1);
    s.create("/pods", pod("again-n1", Some("n1")), false)
        .unwrap();
    assert!(s.read().channels["/pods"].by_node.is_empty());
}
