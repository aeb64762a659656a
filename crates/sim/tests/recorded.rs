//! The sim against recordings of a real kube-apiserver v1.36.2 (with kube-controller-manager,
//! the scheduler and a scripted kubelet), taken on the cluster of `plans/kind-flannel.dump.yaml`.
//!
//! ```text
//! recording (JSON) ──► the requests, replayed against a sim with the same dump loaded
//!                  └─► the responses and status series, compared by shape:
//!                      status codes, reasons, messages (names swapped for the sim's),
//!                      which fields are present, the order of the transitions
//! ```
//!
//! The recordings are not part of the project: these tests read them from
//! `/work/shared/fixtures/real-apiserver` (or `$REAL_APISERVER_CORPUS`) and skip, saying so,
//! when the directory is absent. Names, UIDs, times, resourceVersions and managedFields are
//! not compared.

mod support;

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};
use sim::{Sim, model::ModelOptions, store::Event};
use tokio::sync::broadcast::Receiver;

/// The recorded case, or `None` (and a line saying why) when the corpus is not here.
fn recording(case: &str) -> Option<Value> {
    let dir = std::env::var("REAL_APISERVER_CORPUS")
        .unwrap_or_else(|_| "/work/shared/fixtures/real-apiserver".to_owned());
    let path = PathBuf::from(&dir).join(case);
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "skipping: the real-apiserver recording {} is not present",
            path.display()
        );
        return None;
    };
    Some(serde_json::from_str(&text).expect("a recording is JSON"))
}

/// The recorded exchange whose note starts with `note`.
fn exchange<'a>(rec: &'a Value, note: &str) -> &'a Value {
    rec["exchanges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["note"].as_str().is_some_and(|n| n.starts_with(note)))
        .unwrap_or_else(|| panic!("no exchange `{note}` in {}", rec["case"]))
}

/// A sim with the recorded cluster loaded and its model running (pods start in 100 ms and
/// take 300 ms to terminate: the shapes compared do not depend on the timings).
async fn sim() -> Sim {
    let mut sim = Sim::start(0).await.expect("sim");
    sim.load_dump(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plans/kind-flannel.dump.yaml"
    )))
    .expect("dump");
    sim.start_model(
        ModelOptions {
            pod_start: Duration::from_millis(100),
            ..ModelOptions::default()
        },
        Duration::from_millis(300),
    );
    sim
}

struct Reply {
    code: u16,
    headers: String,
    body: Value,
}

async fn http(sim: &Sim, method: &str, path: &str, content_type: &str, body: &Value) -> Reply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let raw = support::http(sim, method, path, content_type, &body).await;
    Reply {
        code: raw.code,
        headers: raw.headers.to_ascii_lowercase(),
        body: serde_json::from_str(&raw.body).unwrap_or(Value::Null),
    }
}

/// A recorded request's path with its query string.
fn path_and_query(req: &Value) -> String {
    let path = req["path"].as_str().unwrap_or_default();
    match req["query"].as_object().filter(|q| !q.is_empty()) {
        Some(q) => {
            let q: Vec<String> = q
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => path.to_owned(),
    }
}

/// Replays a recorded request (its path with `names` swapped) and checks the status code.
async fn replay(sim: &Sim, ex: &Value, names: &[(&str, &str)]) -> Reply {
    let req = &ex["request"];
    let path = swap(&path_and_query(req), names);
    let body: Value = serde_json::from_str(&swap(&req["body"].to_string(), names)).expect("body");
    let content_type = req["contentType"].as_str().unwrap_or("application/json");
    let reply = http(
        sim,
        req["method"].as_str().unwrap_or("GET"),
        &path,
        content_type,
        &body,
    )
    .await;
    assert_eq!(
        reply.code,
        ex["response"]["status"].as_u64().unwrap_or(0) as u16,
        "{} {path}: {}",
        req["method"],
        reply.body
    );
    reply
}

fn swap(s: &str, names: &[(&str, &str)]) -> String {
    names
        .iter()
        .fold(s.to_owned(), |s, (from, to)| s.replace(from, to))
}

/// A `Status` body as recorded, names swapped (a Success's `details.uid` aside).
fn assert_same_status(got: &Value, ex: &Value, names: &[(&str, &str)]) {
    let mut want: Value =
        serde_json::from_str(&swap(&ex["response"]["body"].to_string(), names)).expect("body");
    let mut got = got.clone();
    for v in [&mut want, &mut got] {
        if let Some(d) = v["details"].as_object_mut() {
            d.remove("uid");
        }
    }
    assert_eq!(got, want, "{}", ex["note"]);
}

/// The headers the real server did not send: no Retry-After on an eviction's 429.
fn assert_no_retry_after(reply: &Reply, ex: &Value) {
    let recorded = ex["response"]["headers"]
        .as_object()
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("retry-after")));
    assert!(!recorded, "the recording has a Retry-After");
    assert!(
        !reply.headers.contains("retry-after"),
        "{}: {}",
        ex["note"],
        reply.headers
    );
}

/// What a DaemonSet status shows: the four fields always there, the others only when not 0.
fn assert_ds_status_shape(status: &Value) {
    for f in [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
    ] {
        assert!(status.get(f).is_some(), "{f} missing in {status}");
    }
    for f in [
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberUnavailable",
    ] {
        assert_ne!(
            status.get(f),
            Some(&json!(0)),
            "{f}: 0 is left out: {status}"
        );
    }
}

/// Whether `want` appears in `got` in order (not necessarily next to each other).
fn is_subsequence(want: &[Value], got: &[Value]) -> bool {
    let mut it = got.iter();
    want.iter().all(|w| it.any(|g| g == w))
}

fn dedup(v: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in v {
        if out.last() != Some(&x) {
            out.push(x);
        }
    }
    out
}

/// The statuses of one object from the store's events, until `done` says so (10 s at most).
async fn status_series(
    rx: &mut Receiver<std::sync::Arc<Event>>,
    key: &str,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if e.key != key || e.name != name {
            continue;
        }
        let v = e.object.value();
        out.push(json!({"generation": v["metadata"]["generation"], "status": v["status"]}));
        if done(&v) {
            return out;
        }
    }
    panic!("{name} did not settle: {out:?}");
}

fn ds_done(v: &Value) -> bool {
    let s = &v["status"];
    s["observedGeneration"] == v["metadata"]["generation"]
        && s["numberUnavailable"].is_null()
        && s["updatedNumberScheduled"] == s["desiredNumberScheduled"]
        && s["numberReady"] == s["desiredNumberScheduled"]
}

#[tokio::test]
async fn daemonset_rollout_status_as_recorded() {
    let Some(rec) = recording("daemonset-rollout-status.json") else {
        return;
    };
    let recorded: Vec<Value> = rec["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|x| json!({"generation": x["object"]["generation"], "status": x["object"]["status"]}))
        .collect();
    for r in &recorded {
        assert_ds_status_shape(&r["status"]);
    }
    let sim = sim().await;
    let mut rx = sim.store().subscribe();
    let trigger = exchange(&rec, "the trigger");
    let reply = replay(&sim, trigger, &[]).await;
    // The PATCH answers with the new generation and the old status.
    assert_eq!(
        reply.body["metadata"]["generation"],
        trigger["response"]["body"]["metadata"]["generation"]
    );
    let generation = reply.body["metadata"]["generation"].as_i64().expect("gen");
    assert!(reply.body["status"]["observedGeneration"].as_i64() < Some(generation));
    let series = dedup(status_series(&mut rx, "apps/daemonsets", "kube-flannel-ds", ds_done).await);
    for s in &series {
        assert_ds_status_shape(&s["status"]);
        // maxUnavailable=1: never more than one node without an available pod.
        assert!(
            s["status"]["numberUnavailable"].as_i64().unwrap_or(0) <= 1,
            "{s}"
        );
    }
    // observedGeneration lags: the first status after the change still has the old one.
    assert!(series[0]["status"]["observedGeneration"].as_i64() < Some(generation));
    let caught_up: Vec<Value> = dedup(
        recorded
            .into_iter()
            .filter(|r| r["status"]["observedGeneration"] == r["generation"])
            .collect(),
    );
    assert!(
        is_subsequence(&caught_up, &series),
        "recorded statuses {caught_up:#?}\nnot in order in the sim's {series:#?}"
    );
    let after = exchange(&rec, "DS after the rollout");
    assert_eq!(
        series.last().map(|s| &s["status"]),
        Some(&after["response"]["body"]["status"])
    );
}

#[tokio::test]
async fn a_new_daemonsets_status_as_recorded() {
    let Some(rec) = recording("daemonset-create-status.json") else {
        return;
    };
    let sim = sim().await;
    let mut rx = sim.store().subscribe();
    let create = exchange(&rec, "create");
    let reply = replay(&sim, create, &[]).await;
    assert_eq!(
        reply.body["status"], create["response"]["body"]["status"],
        "the create response's status"
    );
    let series: Vec<Value> = dedup(
        status_series(&mut rx, "apps/daemonsets", "corpus-probe-ds", ds_done)
            .await
            .into_iter()
            .map(|s| s["status"].clone())
            .collect(),
    );
    let recorded: Vec<Value> = dedup(
        rec["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|x| x["object"]["status"].clone())
            .collect(),
    );
    assert!(
        is_subsequence(&recorded, &series),
        "recorded statuses {recorded:#?}\nnot in order in the sim's {series:#?}"
    );
    let delete = exchange(&rec, "delete");
    let reply = replay(&sim, delete, &[]).await;
    assert_same_status(&reply.body, delete, &[]);
}

/// One pod change as a token: which pod (0: the first seen, 1: the next UID of the same
/// name, or the replacement), and what it shows.
fn pod_token(index: usize, type_: &str, conditions: &Value, deleting: bool, bound: bool) -> String {
    if type_ == "DELETED" {
        return format!("{index}:gone");
    }
    let mut t = format!("{index}:");
    if conditions["DisruptionTarget"] == "True/EvictionByEvictionAPI" {
        t.push_str("disruption-target,");
    }
    if deleting {
        t.push_str("deleting,");
    }
    t.push_str(match (bound, conditions["Ready"].as_str()) {
        (false, _) => "unbound",
        (true, Some("True")) => "ready",
        (true, Some(r)) if r.starts_with("False/PodTerminating") => "terminating",
        _ => "pending",
    });
    t
}

/// The recorded pod watch as tokens.
fn recorded_tokens(rec: &Value) -> Vec<String> {
    let mut uids: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for ev in rec["podWatch"]["events"].as_array().expect("podWatch") {
        let p = &ev["pod"];
        let uid = p["uid"].as_str().unwrap_or_default().to_owned();
        if !uids.contains(&uid) {
            uids.push(uid.clone());
        }
        let i = uids.iter().position(|u| *u == uid).unwrap_or(0);
        out.push(pod_token(
            i,
            ev["type"].as_str().unwrap_or_default(),
            &p["conditions"],
            !p["deletionTimestamp"].is_null(),
            !p["nodeName"].is_null(),
        ));
    }
    dedup_strings(out)
}

/// Tokens without repeats of a pod's own last state (interleaved with another pod's changes,
/// the kubelet's last write before the final delete shows as one).
fn dedup_strings(v: Vec<String>) -> Vec<String> {
    let mut last: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for t in v {
        let pod = t.split(':').next().unwrap_or_default().to_owned();
        if last.get(&pod) != Some(&t) {
            last.insert(pod, t.clone());
            out.push(t);
        }
    }
    out
}

/// The sim's pod changes as tokens, from the store's events, for pods `matching`, until
/// `done` holds for the tokens (10 s at most).
async fn sim_tokens(
    rx: &mut Receiver<std::sync::Arc<Event>>,
    matching: impl Fn(&Value) -> bool,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut uids: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let p = e.object.value();
        if e.key != "/pods" || !matching(&p) {
            continue;
        }
        let uid = p["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        if !uids.contains(&uid) {
            uids.push(uid.clone());
        }
        let i = uids.iter().position(|u| *u == uid).unwrap_or(0);
        let mut conditions = json!({});
        for c in p["status"]["conditions"].as_array().into_iter().flatten() {
            let v = match c["reason"].as_str() {
                Some(r) if c["status"] != "True" || c["type"] == "DisruptionTarget" => {
                    format!("{}/{r}", c["status"].as_str().unwrap_or_default())
                }
                _ => c["status"].as_str().unwrap_or_default().to_owned(),
            };
            conditions[c["type"].as_str().unwrap_or_default()] = json!(v);
        }
        out.push(pod_token(
            i,
            e.type_,
            &conditions,
            !p["metadata"]["deletionTimestamp"].is_null(),
            !p["spec"]["nodeName"].is_null(),
        ));
        out = dedup_strings(out);
        if done(&out) {
            return out;
        }
    }
    panic!("the pods did not settle: {out:?}");
}

/// A PDB status without its times, for comparison.
fn pdb_shape(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(c) = s["conditions"].as_array_mut() {
        for c in c {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    if let Some(d) = s["disruptedPods"].as_object_mut() {
        for v in d.values_mut() {
            *v = json!("<time>");
        }
    }
    s
}

#[tokio::test]
async fn a_statefulset_pod_comes_back_as_recorded() {
    let Some(rec) = recording("statefulset-eviction.json") else {
        return;
    };
    let sim = sim().await;
    let mut rx = sim.store().subscribe();
    let first = exchange(&rec, "the eviction");
    let reply = replay(&sim, first, &[]).await;
    assert_same_status(&reply.body, first, &[]);
    let second = exchange(&rec, "second eviction");
    let reply = replay(&sim, second, &[]).await;
    assert_same_status(&reply.body, second, &[]);
    assert_no_retry_after(&reply, second);
    let want = recorded_tokens(&rec);
    let last = want.last().cloned().expect("tokens");
    let got = sim_tokens(
        &mut rx,
        |p| p["metadata"]["name"] == "cart-redis-0",
        |t| t.last() == Some(&last),
    )
    .await;
    // Same name, new UID, created only once the old pod is gone.
    assert_eq!(got, want);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = exchange(&rec, "PDB after");
    let reply = replay(&sim, after, &[]).await;
    assert_eq!(
        pdb_shape(&reply.body["status"]),
        pdb_shape(&after["response"]["body"]["status"])
    );
}

#[tokio::test]
async fn a_replicaset_replaces_an_evicted_pod_as_recorded() {
    let Some(rec) = recording("deployment-eviction.json") else {
        return;
    };
    let sim = sim().await;
    let before: Vec<String> = sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, s| {
            s.labels.get("app").map(String::as_str) == Some("frontend")
        })
        .1
        .into_iter()
        .map(|((_, n), _)| n)
        .collect();
    let victim = before.first().cloned().expect("a frontend pod");
    let recorded_victim = rec["podWatch"]["events"][0]["pod"]["name"]
        .as_str()
        .expect("victim")
        .to_owned();
    let names = [(recorded_victim.as_str(), victim.as_str())];
    let mut rx = sim.store().subscribe();
    let evict = exchange(&rec, "t=0");
    let reply = replay(&sim, evict, &names).await;
    assert_same_status(&reply.body, evict, &names);
    let want = recorded_tokens(&rec);
    let last = want.last().cloned().expect("tokens");
    let got = sim_tokens(
        &mut rx,
        |p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            p["metadata"]["labels"]["app"] == "frontend"
                && (name == victim || !before.iter().any(|b| b == name))
        },
        |t| t.last() == Some(&last),
    )
    .await;
    // The replacement is made while the evicted pod still terminates.
    assert_eq!(got, want);
}

#[tokio::test]
async fn evictions_a_budget_refuses_as_recorded() {
    let Some(rec) = recording("eviction-blocked.json") else {
        return;
    };
    let sim = sim().await;
    let victim = sim
        .store()
        .list("/pods", Some("shop"), None, None, &|_, s| {
            s.labels.get("app").map(String::as_str) == Some("frontend")
        })
        .1
        .first()
        .map(|((_, n), _)| n.clone())
        .expect("a frontend pod");
    let names = [("frontend-5d547859fd-5chlw", victim.as_str())];
    let pdb_path = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets/frontend";
    let before = exchange(&rec, "frontend PDB before");
    let reply = replay(&sim, before, &names).await;
    assert_eq!(reply.body["spec"], before["response"]["body"]["spec"]);
    let patch = exchange(&rec, "make the PDB allow no disruption");
    let reply = replay(&sim, patch, &names).await;
    // The PATCH answers with the old status: the disruption controller has not seen it yet.
    assert!(
        reply.body["status"]["observedGeneration"].as_i64()
            < reply.body["metadata"]["generation"].as_i64()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let observed = exchange(&rec, "frontend PDB after controller observed");
    let reply = http(&sim, "GET", pdb_path, "", &Value::Null).await;
    assert_eq!(
        pdb_shape(&reply.body["status"]),
        pdb_shape(&observed["response"]["body"]["status"])
    );
    for note in [
        "eviction blocked by PDB",
        "same eviction with dryRun=All",
        "same eviction with a policy/v1beta1",
    ] {
        let ex = exchange(&rec, note);
        let reply = replay(&sim, ex, &names).await;
        assert_same_status(&reply.body, ex, &names);
        assert_no_retry_after(&reply, ex);
    }
    let missing = exchange(&rec, "eviction of a missing pod");
    let reply = replay(&sim, missing, &names).await;
    assert_same_status(&reply.body, missing, &names);
    let restore = exchange(&rec, "restore maxUnavailable=1");
    replay(&sim, restore, &names).await;
    let second = exchange(&rec, "a second PDB over the same pods");
    let reply = replay(&sim, second, &names).await;
    assert_eq!(
        reply.body["status"], second["response"]["body"]["status"],
        "a new budget's status"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second_status = exchange(&rec, "second PDB status");
    let reply = replay(&sim, second_status, &names).await;
    assert_eq!(
        pdb_shape(&reply.body["status"]),
        pdb_shape(&second_status["response"]["body"]["status"])
    );
    let two = exchange(&rec, "pod covered by two PDBs");
    let reply = replay(&sim, two, &names).await;
    assert_same_status(&reply.body, two, &names);
    let remove = exchange(&rec, "remove second PDB");
    let reply = replay(&sim, remove, &names).await;
    assert_same_status(&reply.body, remove, &names);
    let cart = exchange(&rec, "cart-redis PDB before");
    let reply = replay(&sim, cart, &names).await;
    assert_eq!(reply.body["spec"], cart["response"]["body"]["spec"]);
    let allowed = exchange(&rec, "allowed eviction of cart-redis-1");
    let reply = replay(&sim, allowed, &names).await;
    assert_same_status(&reply.body, allowed, &names);
    let refused = exchange(
        &rec,
        "eviction of cart-redis-0 while cart-redis-1 is restarting",
    );
    let reply = replay(&sim, refused, &names).await;
    assert_same_status(&reply.body, refused, &names);
    assert_no_retry_after(&reply, refused);
}

#[tokio::test]
async fn a_joining_node_as_recorded() {
    let Some(rec) = recording("node-join.json") else {
        return;
    };
    let sim = sim().await;
    let create = exchange(&rec, "create Node");
    let reply = replay(&sim, create, &[]).await;
    assert_eq!(
        reply.body["spec"]["taints"], create["response"]["body"]["spec"]["taints"],
        "the create response's taints"
    );
    let conditions = exchange(&rec, "status conditions via /status");
    replay(&sim, conditions, &[]).await;
    let daemonsets: Vec<String> = rec["daemonsets"]
        .as_array()
        .expect("daemonsets")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    let node = "kind-worker9";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Vec<String> = sim
            .store()
            .list("/pods", None, None, None, &|_, s| {
                s.node_name.as_deref() == Some(node)
            })
            .1
            .into_iter()
            .map(|(_, s)| s.value())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| {
                let owner = p["metadata"]["ownerReferences"][0]["name"].as_str()?;
                Some(format!("{}/{owner}", p["metadata"]["namespace"].as_str()?))
            })
            .collect();
        let untainted = sim
            .store()
            .get("/nodes", "", node)
            .is_some_and(|n| n.value()["spec"]["taints"].is_null());
        let mut sorted = ready.clone();
        sorted.sort();
        if untainted && sorted == daemonsets {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{node}: Ready DaemonSet pods {ready:?}, untainted {untainted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = exchange(&rec, "Node at the end");
    let reply = replay(&sim, end, &[]).await;
    assert_eq!(
        reply.body["spec"]["taints"],
        end["response"]["body"]["spec"]["taints"]
    );
}

/// A JSON path's value for comparing an object's shape.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[tokio::test]
async fn patches_and_server_side_apply_as_recorded() {
    let Some(rec) = recording("ssa.json") else {
        return;
    };
    let sim = sim().await;
    // resourceVersion per path, recorded and ours: a write that leaves it alone here must
    // leave it alone there.
    let mut last: std::collections::BTreeMap<String, (Value, Value)> = Default::default();
    for ex in rec["exchanges"].as_array().expect("exchanges") {
        let note = ex["note"].as_str().unwrap_or_default();
        if note.starts_with("Node 1.5 s after cordon") {
            // The controller's taint: wait as the recording did (less: the sim is quicker).
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let reply = replay(&sim, ex, &[]).await;
        let want = &ex["response"]["body"];
        if want["kind"] == "Status" {
            assert_same_status(&reply.body, ex, &[]);
            continue;
        }
        let path = ex["request"]["path"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let rv = (
            at(want, &["metadata", "resourceVersion"]).clone(),
            at(&reply.body, &["metadata", "resourceVersion"]).clone(),
        );
        // A Node's resourceVersion also moves with its controller's taints (timing): checked
        // once settled, below.
        if let Some((want_before, got_before)) = last.get(&path)
            && ex["request"]["query"]["dryRun"].is_null()
            && !path.contains("/nodes/")
        {
            assert_eq!(
                want_before == &rv.0,
                got_before == &rv.1,
                "{note}: resourceVersion kept or not as recorded"
            );
        }
        if ex["request"]["method"] != "GET" {
            last.insert(path, rv);
        }
        if ex["request"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("configmaps"))
        {
            assert_eq!(reply.body["data"], want["data"], "{note}: data");
        }
        if ex["request"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/nodes/"))
        {
            let keys = |v: &Value| {
                v["spec"]["taints"]
                    .as_array()
                    .map(|t| t.iter().map(|t| t["key"].clone()).collect::<Vec<_>>())
            };
            // The taints the controller adds and removes, where the recording waited for it.
            if ex["request"]["method"] == "GET" || note.starts_with("cleanup label") {
                assert_eq!(keys(&reply.body), keys(want), "{note}: taints");
            }
            assert_eq!(
                reply.body["spec"]["unschedulable"], want["spec"]["unschedulable"],
                "{note}: unschedulable"
            );
        }
    }
    // `unschedulable: false` on an uncordoned node is a no-op: the resourceVersion stays.
    let no_op = exchange(&rec, "strategic merge patch unschedulable=false");
    let first = replay(&sim, no_op, &[]).await;
    let again = replay(&sim, no_op, &[]).await;
    assert_eq!(
        first.body["metadata"]["resourceVersion"],
        again.body["metadata"]["resourceVersion"]
    );
    assert!(again.body["spec"].get("unschedulable").is_none());
}

/// `rbac-denials.json`, every exchange in order: the admin makes a ServiceAccount, a Role
/// (get, list, patch, delete on ciliumnodeconfigs) and its binding, and takes a token; as that
/// ServiceAccount a server-side apply that would create is refused naming `create`, a POST,
/// Secrets and a cluster-scoped LIST are refused, an allowed GET of a missing object is a 404,
/// the apply of an existing object is allowed (`patch`), the SelfSubjectAccessReview answers,
/// and a bad token is a 401. Codes always; `Status` bodies exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denials_as_recorded() {
    let Some(rec) = recording("rbac-denials.json") else {
        return;
    };
    let sim = sim().await;
    let mut token: Option<String> = None;
    for ex in rec["exchanges"].as_array().expect("exchanges") {
        let req = &ex["request"];
        let auth = req["auth"].as_str().unwrap_or_default();
        let as_token = if ex["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("invalid bearer"))
        {
            Some("not-a-token".to_owned())
        } else if auth.starts_with("bearer") {
            Some(token.clone().expect("a token was taken before it is used"))
        } else {
            None
        };
        let path = path_and_query(req);
        let body = if req["body"].is_null() {
            String::new()
        } else {
            req["body"].to_string()
        };
        let method = req["method"].as_str().unwrap_or("GET");
        let content_type = req["contentType"].as_str().unwrap_or("application/json");
        let raw = support::http_as(
            &sim,
            as_token.as_deref(),
            method,
            &path,
            content_type,
            &body,
        )
        .await;
        let got: Value = serde_json::from_str(&raw.body).unwrap_or(Value::Null);
        let want = &ex["response"];
        assert_eq!(
            u64::from(raw.code),
            want["status"].as_u64().unwrap_or(0),
            "{}: {method} {path}: {got}",
            ex["note"]
        );
        if want["body"]["kind"] == "Status" {
            assert_same_status(&got, ex, &[]);
        } else if got["kind"] == "SelfSubjectAccessReview" {
            assert_eq!(got["status"]["allowed"], want["body"]["status"]["allowed"]);
        } else {
            assert_eq!(got["kind"], want["body"]["kind"], "{}", ex["note"]);
        }
        if got["kind"] == "TokenRequest" {
            token = got["status"]["token"].as_str().map(str::to_owned);
        }
    }
    assert!(token.is_some(), "the recording takes a token");
}

/// `discovery.json`: `/api`, `/apis`, `/version`, the APIResourceLists and `/openapi/v3`,
/// compared by shape: every resource the sim serves is listed as the real server lists it
/// (name, namespaced, kind, verbs, short names); the OpenAPI v3 index gives each
/// group-version a `serverRelativeURL` with a `hash`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_as_recorded() {
    let Some(rec) = recording("discovery.json") else {
        return;
    };
    let sim = sim().await;
    for ex in rec["exchanges"].as_array().expect("exchanges") {
        let req = &ex["request"];
        let path = req["path"].as_str().unwrap_or_default();
        let want = &ex["response"]["body"];
        if req["accept"].is_string()
            || matches!(path, "/healthz" | "/readyz" | "/openapi/v2" | "/openapi/v3")
        {
            // Aggregated discovery, health and OpenAPI v2 are not served (README); the v3
            // index is compared below.
            continue;
        }
        if path.starts_with("/openapi/v3/") {
            let got = http(&sim, "GET", path, "application/json", &Value::Null).await;
            assert_eq!(got.code, 200, "{path}");
            assert!(got.body["paths"].is_object(), "{path}");
            continue;
        }
        let got = http(&sim, "GET", path, "application/json", &Value::Null).await;
        assert_eq!(got.code, 200, "{path}");
        match want["kind"].as_str() {
            Some("APIResourceList") => {
                for r in got.body["resources"].as_array().expect("resources") {
                    let Some(real) = want["resources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|w| w["name"] == r["name"])
                    else {
                        panic!("{path}: {} is not served by the real server", r["name"]);
                    };
                    for field in ["namespaced", "kind"] {
                        assert_eq!(r[field], real[field], "{path} {} {field}", r["name"]);
                    }
                    let mut verbs: Vec<&str> = r["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    let mut real_verbs: Vec<&str> = real["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    verbs.sort_unstable();
                    real_verbs.sort_unstable();
                    assert_eq!(verbs, real_verbs, "{path} {} verbs", r["name"]);
                    if real["shortNames"].is_array() {
                        assert_eq!(r["shortNames"], real["shortNames"], "{path} {}", r["name"]);
                    }
                }
            }
            Some("APIVersions") => assert_eq!(got.body["versions"], want["versions"]),
            Some("APIGroupList") => {
                for g in got.body["groups"].as_array().expect("groups") {
                    let name = g["name"].as_str().unwrap_or_default();
                    if name.ends_with("projectcalico.org") || name.ends_with("tigera.io") {
                        continue; // not installed on the recorded cluster
                    }
                    let real = want["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|w| w["name"] == name)
                        .unwrap_or_else(|| panic!("group {name} is not on the real server"));
                    assert_eq!(g["preferredVersion"], real["preferredVersion"], "{name}");
                }
            }
            None if path == "/version" => {
                for field in ["major", "minor", "gitVersion", "platform"] {
                    assert!(got.body[field].is_string(), "/version {field}");
                }
            }
            other => panic!("{path}: unexpected recorded kind {other:?}"),
        }
    }
    let index = http(&sim, "GET", "/openapi/v3", "application/json", &Value::Null).await;
    let real_index = rec["exchanges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["request"]["path"] == "/openapi/v3")
        .map(|e| &e["response"]["body"])
        .expect("the index is recorded");
    for (key, entry) in index.body["paths"].as_object().expect("paths") {
        let url = entry["serverRelativeURL"]
            .as_str()
            .expect("serverRelativeURL");
        assert!(
            url.starts_with(&format!("/openapi/v3/{key}?hash=")),
            "{url}"
        );
        if !key.contains("projectcalico") && !key.contains("tigera") {
            assert!(
                real_index["paths"][key].is_object(),
                "{key} is not in the real index"
            );
        }
    }
}
