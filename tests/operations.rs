//! Operating a run like production, end to end on the simulated cluster with the real binary:
//! the health budget (a NotReady node holds admissions; failed nodes within maxFailedNodes let
//! the others go on), the Prometheus alert gate against a real Prometheus server (a query the
//! test flips through a scraped target, a firing alert past holdTimeout, Prometheus down),
//! the metrics endpoint scraped by that Prometheus and checked through its query API,
//! notifications received by a local webhook, and the audit trail of mutating requests.
//!
//! The tests that need Prometheus skip, saying so, where Debian's `prometheus` is absent
//! (`.ci/run` installs it).

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use support::{
    cluster::{env, events, show},
    prometheus::{Prometheus, Target, free_port, wait_for},
};

const LIMIT: Duration = Duration::from_secs(120);

/// Adds lines under `rollout:` of the adapted spec.
fn with_rollout(extra: impl Into<String>) -> impl Fn(String) -> String + Sync {
    let extra = extra.into();
    move |s: String| s.replacen("rollout:\n", &format!("rollout:\n{extra}"), 1)
}

/// kind-flannel with a Prometheus gate.
async fn gated_env(gate: String) -> support::cluster::Env {
    env(
        "kind-flannel",
        &with_rollout(format!("  gates:\n    prometheus:\n{gate}")),
    )
    .await
}

/// The plan's node order (canary first) for the example as adapted.
fn node_order(env: &support::cluster::Env) -> Vec<String> {
    let spec = planner::MigrationSpec::from_file(&env.spec).expect("spec");
    let dump = support::plans_dir().join("kind-flannel.dump.yaml");
    let plan = planner::plan(&spec, &planner::dump::load_path(&dump).expect("dump"));
    plan.nodes.into_iter().map(|n| n.name).collect()
}

fn admitted_after(seen: &[String], marker: &str) -> Vec<String> {
    let from = seen.iter().position(|l| l.contains(marker)).unwrap_or(0);
    seen[from..]
        .iter()
        .filter(|l| l.contains("\"node-admitted\""))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_node_holds_admissions_until_it_recovers() {
    let env = env(
        "kind-flannel",
        &with_rollout("  healthBudget: {maxNotReadyNodes: 0}\n"),
    )
    .await;
    let order = node_order(&env);
    let sick = order.last().expect("a node").clone();
    env.sim.set_node_ready(&sick, false).expect("not ready");
    let mut run = env.watch("apply", &[]);
    let held = run
        .until(|l| l.contains("\"held\"") && l.contains("health-budget"))
        .await
        .expect("a hold by the health budget");
    assert!(held.contains(&sick) && held.contains("NotReady"), "{held}");
    // Held: nothing is admitted while the node is NotReady.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.sim.set_node_ready(&sick, true).expect("ready");
    let (status, seen) = run.finish().await;
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    let before_release: Vec<&String> = seen
        .iter()
        .take_while(|l| !l.contains("\"released\""))
        .filter(|l| l.contains("\"node-admitted\""))
        .collect();
    assert!(
        before_release.is_empty(),
        "no node was admitted while held: {before_release:?}"
    );
    assert!(seen.iter().any(|l| l.contains("\"released\"")));
    assert!(seen.iter().any(|l| l.contains("\"finished\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_within_max_failed_nodes_let_the_other_nodes_finish() {
    let budget = with_rollout("  healthBudget: {maxFailedNodes: 1}\n");
    let env = env("kind-flannel", &move |s: String| {
        budget(s).replacen("maxUnavailable: 1 ", "maxUnavailable: 2 ", 1)
    })
    .await;
    let order = node_order(&env);
    assert!(order.len() >= 3, "{order:?}");
    let (canary, victim) = (order[0].clone(), order[1].clone());
    env.set_fault(&victim, "agent-stuck");
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let ev = events(&out);
    let done: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "node-done")
        .filter_map(|e| e["node"].as_str())
        .collect();
    assert!(done.contains(&canary.as_str()), "{done:?}");
    for other in &order[2..] {
        assert!(
            done.contains(&other.as_str()),
            "{other} went on past {victim}'s failure: {}",
            show(&out)
        );
    }
    let stopped = ev
        .iter()
        .find(|e| e["event"] == "stopped")
        .expect("a stopped event");
    let message = stopped["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&victim) && message.contains("maxFailedNodes"),
        "{message}"
    );
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "step-started" && e["step"] == "final-values"),
        "the finale did not start with a node failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_holds_admissions_and_stops_after_the_hold_timeout() {
    let port = free_port();
    let env = gated_env(format!(
        "      {{url: \"http://127.0.0.1:{port}\", alerts: {{firingOnly: true}}, holdTimeout: 2s}}\n"
    ))
    .await;
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let ev = events(&out);
    let held = ev.iter().find(|e| e["event"] == "held").expect("a hold");
    assert_eq!(held["reason"], "prometheus-unreachable");
    assert!(
        held["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer") && m.contains("not a healthy answer")),
        "{held}"
    );
    assert!(
        !ev.iter().any(|e| e["event"] == "node-admitted"),
        "{}",
        show(&out)
    );
    let gate = ev.iter().find(|e| e["event"] == "gate").expect("a gate");
    assert!(
        gate["message"]
            .as_str()
            .is_some_and(|m| m.contains("holdTimeout")),
        "{gate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_gate_holds_on_a_query_result_until_prometheus_clears_it() {
    let target = Target::start(1).await;
    let Some(prom) = Prometheus::start(&[("gate", target.addr)]).await else {
        return;
    };
    assert!(
        wait_for(Duration::from_secs(20), || async {
            prom.value("test_gate_blocker").await == Some(1.0)
        })
        .await,
        "Prometheus scraped the target"
    );
    let env = gated_env(format!(
        "      url: \"{}\"\n      query: \"test_gate_blocker > 0\"\n      holdTimeout: 5m\n",
        prom.url
    ))
    .await;
    let mut run = env.watch("apply", &[]);
    let held = run.until(|l| l.contains("\"held\"")).await.expect("a hold");
    assert!(
        held.contains("\"prometheus\"") && held.contains("test_gate_blocker"),
        "{held}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    target.set(0);
    let (status, seen) = run.finish().await;
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert!(
        admitted_after(&seen, "\"held\"").len() == admitted_after(&seen, "\"released\"").len(),
        "no node admitted between the hold and its release: {}",
        seen.join("\n")
    );
    assert!(seen.iter().any(|l| l.contains("\"finished\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_held_past_the_hold_timeout_stops_the_run_naming_it() {
    let target = Target::start(1).await;
    let Some(prom) = Prometheus::start(&[("gate", target.addr)]).await else {
        return;
    };
    assert!(
        wait_for(Duration::from_secs(30), || prom.firing("MigrationBlocker")).await,
        "the alert fires"
    );
    let env = gated_env(format!(
        "      url: \"{}\"\n      alerts: {{matchRegexp: \"^Migration\", firingOnly: true}}\n      holdTimeout: 2s\n",
        prom.url
    ))
    .await;
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let ev = events(&out);
    assert!(
        !ev.iter().any(|e| e["event"] == "node-admitted"),
        "{}",
        show(&out)
    );
    let gate = ev.iter().find(|e| e["event"] == "gate").expect("a gate");
    assert!(
        gate["message"]
            .as_str()
            .is_some_and(|m| m.contains("MigrationBlocker (firing)") && m.contains("holdTimeout")),
        "{gate}"
    );
    // A resume after the alert resolves goes on (the controls are not in the fingerprint).
    target.set(0);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            !prom.firing("MigrationBlocker").await
        })
        .await
    );
    let again = env.run("resume", &[], LIMIT).await;
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
}

/// A webhook that records what it receives.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                if let Ok(v) = serde_json::from_slice(&body) {
                    g.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_notifications_and_the_audit_trail() {
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let prom = Prometheus::start(&[("cni-migrate", metrics_addr.parse().expect("addr"))]).await;
    let env = env("kind-flannel", &|s| s).await;
    env.sim
        .set_pod_termination(Some(Duration::from_millis(400)));
    let (hook, got) = webhook().await;
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let audit = env.dir.path().join("audit.jsonl");
    let audit_flag = audit.display().to_string();
    let args = [
        "--metrics-addr",
        metrics_addr.as_str(),
        "--notify",
        hook.as_str(),
        "--notify",
        dead.as_str(),
        "--audit-log",
        audit_flag.as_str(),
    ];
    let run = env.run("apply", &args, LIMIT);
    // Scrape the endpoint as the run goes; keep the last answer.
    let scrape_url = format!("http://{metrics_addr}/metrics");
    let scraper = tokio::spawn(async move {
        let mut last = String::new();
        for _ in 0..1200 {
            match reqwest::get(&scrape_url).await {
                Ok(r) => {
                    if let Ok(t) = r.text().await {
                        last = t;
                    }
                }
                Err(_) if !last.is_empty() => break,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    });
    let out = run.await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let scraped = scraper.await.expect("scraper");
    let nodes = node_order(&env).len() as f64;
    assert_eq!(
        metric(&scraped, "cni_migrate_nodes{state=\"done\"}"),
        Some(nodes),
        "{scraped}"
    );
    assert!(
        metric(&scraped, "cni_migrate_evictions_total").is_some_and(|v| v >= 1.0),
        "{scraped}"
    );
    assert!(
        metric(&scraped, "cni_migrate_checkpoint_writes_total").is_some_and(|v| v >= 10.0),
        "{scraped}"
    );
    assert!(
        metric(&scraped, "cni_migrate_checkpoint_bytes").is_some_and(|v| v > 100.0),
        "{scraped}"
    );
    assert!(
        scraped.contains("cni_migrate_api_requests_total{verb=\"patch\",code=\"200\"}"),
        "{scraped}"
    );
    assert!(
        scraped.contains("cni_migrate_step_duration_seconds_count{kind=\"drain\"}"),
        "{scraped}"
    );

    // Notifications: what a Slack or Teams webhook shows, one per event.
    let got = got
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let kinds: Vec<&str> = got.iter().filter_map(|n| n["event"].as_str()).collect();
    for k in ["run-started", "canary-done", "finished"] {
        assert!(kinds.contains(&k), "{k} notified: {kinds:?}");
    }
    assert!(got.iter().all(|n| {
        n["text"]
            .as_str()
            .is_some_and(|t| t.contains("kind-flannel"))
    }));
    // The dead webhook is logged, not fatal.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed"),
        "{}",
        show(&out)
    );

    // The audit trail: every mutating request, with its step, in the JSON lines and the file.
    let ev = events(&out);
    let audit_lines: Vec<&serde_json::Value> =
        ev.iter().filter(|e| e["event"] == "audit").collect();
    let first = &node_order(&env)[0];
    assert!(
        audit_lines.iter().any(|a| a["verb"] == "patch"
            && a["resource"] == "nodes"
            && a["name"] == first.as_str()
            && a["step"] == format!("{first}/cordon").as_str()),
        "the cordon is audited with its step: {audit_lines:?}"
    );
    assert!(
        audit_lines.iter().any(|a| a["verb"] == "create"
            && a["subresource"] == "eviction"
            && a["step"] == format!("{first}/drain").as_str()),
        "evictions are audited with their step"
    );
    assert!(
        audit_lines
            .iter()
            .any(|a| a["resource"] == "leases" && a["verb"] == "create"),
        "the Lease taken is audited"
    );
    assert!(
        audit_lines
            .iter()
            .all(|a| a["verb"] != "get" && a["verb"] != "list")
    );
    let file: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(file.len(), audit_lines.len(), "the file has the same trail");

    // The same endpoint, scraped by a real Prometheus, read through its query API.
    if let Some(prom) = prom {
        let done = prom
            .value("max_over_time(cni_migrate_nodes{state=\"done\"}[5m])")
            .await;
        assert!(
            done.is_some_and(|d| d >= 1.0),
            "Prometheus saw nodes done: {done:?}"
        );
        let patches = prom
            .value("max_over_time(cni_migrate_api_requests_total{verb=\"patch\",code=\"200\"}[5m])")
            .await;
        assert!(patches.is_some_and(|p| p >= 1.0), "{patches:?}");
        // The README's progress query is valid PromQL and reads a fraction of the nodes (its
        // value over the run: the run may have gone before a one-second step saw it).
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[(
                "query",
                "max_over_time((cni_migrate_nodes{state=\"done\"} / ignoring(state) sum without(state) (cni_migrate_nodes))[5m:1s])",
            )])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["status"], "success", "{answer}");
        for s in answer["data"]["result"].as_array().into_iter().flatten() {
            let v: f64 = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{answer}");
        }
    }
}
