//! Contract tests: for each endpoint and error case the tool depends on, the status code and
//! the body's shape, as the Kubernetes API conventions document them (a `Status` object with
//! `kind`, `apiVersion`, `status: Failure`, `message`, `reason`, `details`, `code`). Raw
//! HTTP/1.1 over a TCP socket, so nothing in a client library hides what the server sent.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use sim::{Faults, Sim};
use support::{Reply, http};

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn assert_status(r: &Reply, code: u16, reason: &str) -> Value {
    assert_eq!(r.code, code, "{}", r.body);
    let v = r.json();
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["reason"], reason, "{v}");
    assert_eq!(v["code"], code);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    v
}

async fn sim_with_kind() -> Sim {
    let sim = Sim::start(0).await.expect("sim");
    sim.load_dump(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/pdb-blocks-drain.dump.yaml"
    )))
    .expect("dump");
    sim
}

#[tokio::test]
async fn not_found_already_exists_conflict_invalid() {
    let sim = sim_with_kind().await;
    let v = assert_status(
        &http(&sim, "GET", "/api/v1/namespaces/shop/pods/nope", "", "").await,
        404,
        "NotFound",
    );
    assert_eq!(v["details"]["name"], "nope");
    assert_eq!(v["details"]["kind"], "pods");
    assert_eq!(v["message"], "pods \"nope\" not found");

    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).to_string();
    assert_eq!(
        http(
            &sim,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            &cm
        )
        .await
        .code,
        201
    );
    assert_status(
        &http(
            &sim,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            &cm,
        )
        .await,
        409,
        "AlreadyExists",
    );

    let stale = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "1"}}).to_string();
    let v = assert_status(
        &http(
            &sim,
            "PUT",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            &stale,
        )
        .await,
        409,
        "Conflict",
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("the object has been modified"))
    );

    let unnamed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}).to_string();
    assert_status(
        &http(
            &sim,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            &unnamed,
        )
        .await,
        422,
        "Invalid",
    );

    assert_status(
        &http(&sim, "GET", "/api/v1/secrets", "", "").await,
        404,
        "NotFound",
    );
    assert_status(
        &http(
            &sim,
            "PATCH",
            "/api/v1/nodes/kind-worker",
            "text/plain",
            "{}",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &http(&sim, "GET", "/api/v1/pods?labelSelector=a%20in%20b", "", "").await,
        400,
        "BadRequest",
    );
    assert_status(
        &http(
            &sim,
            "GET",
            "/api/v1/pods?fieldSelector=spec.schedulerName%3Dx",
            "",
            "",
        )
        .await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn lists_carry_kind_and_resource_version() {
    let sim = sim_with_kind().await;
    let r = http(&sim, "GET", "/api/v1/namespaces/shop/pods?limit=2", "", "").await;
    assert_eq!(r.code, 200);
    let v = r.json();
    assert_eq!(v["kind"], "PodList");
    assert_eq!(v["apiVersion"], "v1");
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| rv.parse::<u64>().is_ok())
    );
    assert!(v["metadata"]["continue"].as_str().is_some());
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    let v = http(
        &sim,
        "GET",
        "/apis/apps/v1/namespaces/shop/statefulsets/cart-redis",
        "",
        "",
    )
    .await
    .json();
    assert_eq!(v["kind"], "StatefulSet");
    assert!(v["metadata"]["resourceVersion"].is_string() && v["metadata"]["uid"].is_string());
    let disc = http(&sim, "GET", "/api/v1", "", "").await.json();
    let eviction = disc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("eviction");
    assert_eq!(
        (
            eviction["group"].as_str(),
            eviction["version"].as_str(),
            eviction["kind"].as_str()
        ),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
}

#[tokio::test]
async fn eviction_blocked_by_a_budget_is_429_with_the_budget_named() {
    let sim = sim_with_kind().await;
    let pods = http(
        &sim,
        "GET",
        "/api/v1/namespaces/shop/pods?labelSelector=app%3Dpayments",
        "",
        "",
    )
    .await
    .json();
    let name = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_owned();
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "shop"}}).to_string();
    let r = http(
        &sim,
        "POST",
        &format!("/api/v1/namespaces/shop/pods/{name}/eviction"),
        "application/json",
        &body,
    )
    .await;
    let v = assert_status(&r, 429, "TooManyRequests");
    assert_eq!(
        v["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(v["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert!(
        v["details"]["causes"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("payments"))
    );
    // The real eviction 429 carries no Retry-After (recorded against kube-apiserver v1.36.2).
    assert!(!r.headers.to_ascii_lowercase().contains("retry-after"));
    let r = http(
        &sim,
        "POST",
        "/api/v1/namespaces/shop/pods/nope/eviction",
        "application/json",
        &body,
    )
    .await;
    assert_status(&r, 404, "NotFound");
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_an_expired_error_event() {
    let sim = sim_with_kind().await;
    sim.store().compact();
    let r = http(
        &sim,
        "GET",
        "/api/v1/namespaces/shop/pods?watch=true&resourceVersion=2&timeoutSeconds=1",
        "",
        "",
    )
    .await;
    assert_eq!(r.code, 200);
    let first: Value =
        serde_json::from_str(r.body.lines().next().expect("an event")).expect("json");
    assert_eq!(first["type"], "ERROR");
    assert_eq!(first["object"]["code"], 410);
    assert_eq!(first["object"]["reason"], "Expired");
}

#[tokio::test]
async fn injected_faults_hit_resources_but_not_discovery() {
    let sim = sim_with_kind().await;
    sim.set_faults(Faults {
        error_500: 1.0,
        ..Faults::default()
    });
    assert_status(
        &http(&sim, "GET", "/api/v1/nodes", "", "").await,
        500,
        "InternalError",
    );
    assert_eq!(http(&sim, "GET", "/api/v1", "", "").await.code, 200);
    sim.set_faults(Faults {
        error_429: 1.0,
        ..Faults::default()
    });
    assert_status(
        &http(&sim, "GET", "/api/v1/nodes", "", "").await,
        429,
        "TooManyRequests",
    );
    sim.set_faults(Faults {
        conflict: 1.0,
        ..Faults::default()
    });
    let r = http(
        &sim,
        "PATCH",
        "/api/v1/nodes/kind-worker",
        "application/merge-patch+json",
        r#"{"spec":{"unschedulable":true}}"#,
    )
    .await;
    assert_status(&r, 409, "Conflict");
    sim.set_faults(Faults::default());
    assert_eq!(http(&sim, "GET", "/api/v1/nodes", "", "").await.code, 200);
    let slow = std::time::Duration::from_millis(150);
    sim.set_faults(Faults {
        latency: [("LIST".to_owned(), (slow, slow))].into(),
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(http(&sim, "GET", "/api/v1/nodes", "", "").await.code, 200);
    assert!(t.elapsed() >= slow, "LISTs are slowed");
    let t = std::time::Instant::now();
    assert_eq!(
        http(&sim, "GET", "/api/v1/nodes/kind-worker", "", "")
            .await
            .code,
        200
    );
    assert!(t.elapsed() < slow, "GETs are not");
}

/// Every object of every example dump (`plans/*.dump.*`) is one a real API server accepts:
/// created again on an empty sim with `fieldValidation=Strict` and `dryRun=All` (its
/// resourceVersion, UID and managedFields cleared, as a create needs), none is refused for an
/// unknown field or a wrong type.
#[tokio::test]
async fn example_dumps_pass_strict_field_validation() {
    let plans = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans"));
    let empty = Sim::start(0).await.expect("sim");
    let mut checked = 0;
    for entry in std::fs::read_dir(&plans).expect("plans/") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().contains(".dump.") {
            continue;
        }
        let loaded = Sim::start(0).await.expect("sim");
        loaded.load_dump(&path).expect("dump");
        for r in sim::registry::RESOURCES {
            let (_, items, _) = loaded
                .store()
                .list(&r.storage_key(), None, None, None, &|_, _| true);
            for ((ns, name), stored) in items {
                let mut v = stored.value();
                if let Some(meta) = v["metadata"].as_object_mut() {
                    for k in [
                        "resourceVersion",
                        "uid",
                        "managedFields",
                        "creationTimestamp",
                    ] {
                        meta.remove(k);
                    }
                }
                let base = if r.group.is_empty() {
                    format!("/api/{}", r.version)
                } else {
                    format!("/apis/{}/{}", r.group, r.version)
                };
                let url = if r.namespaced {
                    format!(
                        "{base}/namespaces/{ns}/{}?dryRun=All&fieldValidation=Strict",
                        r.plural
                    )
                } else {
                    format!("{base}/{}?dryRun=All&fieldValidation=Strict", r.plural)
                };
                let reply = http(&empty, "POST", &url, "application/json", &v.to_string()).await;
                assert_eq!(
                    reply.code,
                    201,
                    "{}: {} {ns}/{name}: {}",
                    path.display(),
                    r.kind,
                    reply.body
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} objects checked");
}

/// A watcher that falls behind (the server's event buffer overflows while it does not read)
/// is closed, as the API server closes an unresponsive watcher: what it got is a gapless
/// prefix of the changes, and the response ends, so the client watches again from the last
/// version it saw. Skipping the events it missed and going on would lose them silently.
#[tokio::test]
async fn a_watcher_that_falls_behind_is_closed_not_skipped_ahead() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = Sim::start(0).await.expect("sim");
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let path = format!(
        "/api/v1/namespaces/lag/configmaps?watch=true&resourceVersion={}&timeoutSeconds=120",
        sim.store().resource_version()
    );
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.expect("status line");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // More changes than the event buffer holds, while the watcher reads nothing.
    let (early, total) = (10, 80_000);
    for i in 0..total {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i:06}"), "namespace": "lag"}, "data": {"k": "v"}});
        sim.store()
            .create("/configmaps", cm, false)
            .expect("create");
        if i + 1 == early {
            // The server sends these while the test sleeps (one thread runs both).
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("the watch ends, before its 120 s timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    let text = support::dechunk(text.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    let names: Vec<String> = text
        .split("\"name\":\"")
        .skip(1)
        .filter_map(|t| t.split('"').next())
        .filter(|n| n.starts_with("cm-"))
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() >= early && names.len() < total,
        "{} of {total} events before the close ({:?}): {names:?}",
        names.len(),
        started.elapsed()
    );
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &format!("cm-{i:06}"), "event {i} of a lagged watcher");
    }
}

/// A node's pods (`fieldSelector=spec.nodeName=X`, served from the node index) page as a full
/// scan does: in (namespace, name) order, `limit` at a time, the continue token naming where
/// to go on, and the pages together what one unpaged LIST returns.
#[tokio::test]
async fn a_node_s_pods_page_with_limit_and_continue() {
    let sim = Sim::start(0).await.expect("sim");
    for (ns, name, node) in [
        ("b", "p3", "n1"),
        ("a", "p1", "n1"),
        ("a", "p9", "n2"),
        ("b", "p1", "n1"),
        ("a", "p2", "n1"),
        ("c", "p1", "n1"),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}});
        sim.store().create("/pods", pod, false).expect("create");
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    p["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let all = http(
        &sim,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        "",
        "",
    )
    .await;
    assert_eq!(all.code, 200, "{}", all.body);
    let all = names(&all.json());
    assert_eq!(all, ["a/p1", "a/p2", "b/p1", "b/p3", "c/p1"]);
    let (mut paged, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let r = http(
            &sim,
            "GET",
            &format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=2&continue={token}"),
            "",
            "",
        )
        .await;
        assert_eq!(r.code, 200, "{}", r.body);
        let v = r.json();
        let page = names(&v);
        assert!(page.len() <= 2, "{page:?}");
        paged.extend(page);
        pages += 1;
        match v["metadata"]["continue"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => token = t.replace('/', "%2F"),
            None => break,
        }
    }
    assert_eq!(paged, all);
    assert_eq!(pages, 3);
    let in_a = http(
        &sim,
        "GET",
        "/api/v1/namespaces/a/pods?fieldSelector=spec.nodeName%3Dn1&limit=1",
        "",
        "",
    )
    .await
    .json();
    assert_eq!(names(&in_a), ["a/p1"]);
    assert!(
        in_a["metadata"]["continue"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}
