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
    let (events, _) = s.watch_from(Some("/configmaps"), 0).unwrap();
    assert_eq!(
        events.iter().map(|e| e.type_).collect::<Vec<_>>(),
        ["ADDED", "MODIFIED", "DELETED"]
    );
    s.compact();
    assert!(matches!(
        s.watch_from(None, 1),
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
