//! Operating a run like production: Prometheus metrics (`--metrics-addr`), notifications
//! (`--notify URL`), the audit trail of every mutating request (JSON lines, `--audit-log`), and
//! `--exit-outside-window`.
//!
//! ```text
//! executor events ──► Ops (Observer) ─┬─ metrics: nodes by state, step durations by kind,
//! drains, checkpoint writes           │  evictions, PDB wait, holds by reason, checkpoint
//!                                     │  writes and size ─► GET /metrics (text format)
//!                                     └─ notifications: run started, canary done, node failed,
//!                                        gate, held, paused, stopped, finished ─► POST JSON
//! every API request ─► Ops (cluster::telemetry::ApiObserver) ─┬─ metrics: requests by verb, code
//!                                                             └─ mutating: an audit line
//! ```
//!
//! Notifications are sent in the background, each with a 10 s timeout; a failure is logged on
//! stderr, never fatal. The run waits for the last ones (at most 10 s) before it exits.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use clap::Args;
use cluster::telemetry::{ApiCall, ApiObserver};
use executor::events::{Event, EventKind, Observer};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::failure::Failure;

/// The flags of a production run.
#[derive(Debug, Args, Clone, Default)]
pub struct OpsArgs {
    /// Outside every maintenance window (rollout.windows), stop at a gate (exit 4) instead of
    /// waiting for the next window.
    #[arg(long)]
    pub exit_outside_window: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run goes, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// POST a JSON event to this webhook when the run starts, a canary is done, a node fails,
    /// the run reaches a gate, is held, paused or stopped, and when it finishes; its `text`
    /// field is what Slack and Teams incoming webhooks display (repeatable; from the
    /// environment, comma-separated, so a webhook's secret URL can come from a Secret).
    #[arg(
        long,
        value_name = "URL",
        env = "CNI_MIGRATE_NOTIFY",
        value_delimiter = ','
    )]
    pub notify: Vec<String>,
    /// Also append the audit trail (every mutating request: verb, object, step, answer) to this
    /// file, one JSON line each; with `-o json` it is in the output too.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

impl OpsArgs {
    /// Checks the flags before any I/O.
    ///
    /// # Errors
    /// Bad input naming the flag.
    pub fn validate(&self) -> Result<Option<SocketAddr>, Failure> {
        for url in &self.notify {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(Failure::bad_input(anyhow::anyhow!(
                    "--notify {url}: expected an http(s) URL of an incoming webhook, e.g. https://hooks.slack.com/services/..."
                )));
            }
        }
        self.metrics_addr
            .as_deref()
            .map(|a| {
                a.parse::<SocketAddr>().map_err(|e| {
                    Failure::bad_input(anyhow::anyhow!(
                        "--metrics-addr {a}: expected HOST:PORT such as 127.0.0.1:9464 ({e})"
                    ))
                })
            })
            .transpose()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PdbLabel {
    pdb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

fn step_histogram() -> Histogram {
    // 0.5 s to about 68 min.
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

struct Metrics {
    registry: Registry,
    nodes: Family<StateLabel, Gauge>,
    steps: Histograms,
    failed_steps: Family<KindLabel, Counter>,
    evictions: Counter,
    pdb_wait: Family<PdbLabel, Counter<f64, AtomicU64>>,
    requests: Family<RequestLabels, Counter>,
    held: Family<ReasonLabel, Gauge>,
    holds: Family<ReasonLabel, Counter>,
    checkpoint_writes: Counter,
    checkpoint_bytes: Gauge,
    throttled: Gauge<f64, AtomicU64>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("cni_migrate");
        let m = Self {
            registry: Registry::default(),
            nodes: Family::default(),
            steps: Histograms::new_with_constructor(step_histogram),
            failed_steps: Family::default(),
            evictions: Counter::default(),
            pdb_wait: Family::default(),
            requests: Family::default(),
            held: Family::default(),
            holds: Family::default(),
            checkpoint_writes: Counter::default(),
            checkpoint_bytes: Gauge::default(),
            throttled: Gauge::default(),
        };
        registry.register(
            "nodes",
            "Nodes of the plan by state (pending, running, done, failed, left)",
            m.nodes.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long steps took, by kind (done or failed)",
            m.steps.clone(),
        );
        registry.register(
            "step_failures",
            "Failed steps, by kind",
            m.failed_steps.clone(),
        );
        registry.register("evictions", "Pods evicted by drains", m.evictions.clone());
        registry.register(
            "pdb_wait_seconds",
            "Seconds drains waited on each PodDisruptionBudget",
            m.pdb_wait.clone(),
        );
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API, by verb and HTTP code (0: no answer)",
            m.requests.clone(),
        );
        registry.register(
            "admissions_held",
            "1 while a control holds admissions, by reason (window, health-budget, prometheus, prometheus-unreachable)",
            m.held.clone(),
        );
        registry.register(
            "admission_holds",
            "Times a control started holding admissions, by reason",
            m.holds.clone(),
        );
        registry.register(
            "checkpoint_writes",
            "Checkpoint writes",
            m.checkpoint_writes.clone(),
        );
        registry.register(
            "checkpoint_bytes",
            "Size of the stored checkpoint after the last write",
            m.checkpoint_bytes.clone(),
        );
        registry.register(
            "throttled_seconds",
            "Seconds requests waited for the client rate limit and the API server's Retry-After",
            m.throttled.clone(),
        );
        Self { registry, ..m }
    }

    fn encode(&self) -> String {
        self.throttled
            .set(cluster::telemetry::throttled().as_secs_f64());
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One notification: what webhooks receive.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// What Slack and Teams display.
    pub text: String,
    /// `run-started`, `canary-done`, `node-failed`, `gate`, `held`, `paused`, `stopped`,
    /// `finished`.
    pub event: &'static str,
    /// The plan.
    pub plan: String,
    /// The run.
    pub run_id: String,
    /// The node, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The step, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What happened, in full.
    pub message: String,
    /// Unix seconds.
    pub time: u64,
}

/// Metrics, notifications and the audit trail of one run.
pub struct Ops {
    metrics: Metrics,
    node_state: Mutex<BTreeMap<String, &'static str>>,
    started: Mutex<BTreeMap<String, Instant>>,
    canaries: Mutex<BTreeSet<String>>,
    /// The plan's name and the run's id, once known.
    run: Mutex<(String, String)>,
    json: bool,
    notify: Vec<String>,
    http: reqwest::Client,
    sent: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    audit: Option<Mutex<std::fs::File>>,
}

impl Ops {
    /// Metrics, notifications and the audit trail, before the plan is known (so the first
    /// requests, the Lease's among them, are counted and audited).
    ///
    /// # Errors
    /// Bad input when the audit log cannot be opened.
    pub fn new(args: &OpsArgs, json: bool) -> Result<Self, Failure> {
        let audit = match &args.audit_log {
            None => None,
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        Failure::bad_input(anyhow::anyhow!(
                            "--audit-log {}: cannot open it for appending ({e})",
                            p.display()
                        ))
                    })?,
            )),
        };
        Ok(Self {
            metrics: Metrics::new(),
            node_state: Mutex::new(BTreeMap::new()),
            started: Mutex::new(BTreeMap::new()),
            canaries: Mutex::new(BTreeSet::new()),
            run: Mutex::new((String::new(), String::new())),
            json,
            notify: args.notify.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent(cluster::USER_AGENT)
                .build()
                .unwrap_or_default(),
            sent: Mutex::new(Vec::new()),
            audit,
        })
    }

    /// The run's plan, and its nodes' states as the checkpoint has them.
    pub fn set_run(
        &self,
        plan: &planner::Plan,
        ck: &executor::checkpoint::Checkpoint,
        run_id: &str,
    ) {
        let states: BTreeMap<String, &'static str> = plan
            .nodes
            .iter()
            .map(|n| {
                let state = match ck.node(&n.name) {
                    Some(r) if r.gone() => "left",
                    Some(r) if r.done() => "done",
                    Some(r)
                        if r.steps
                            .iter()
                            .any(|s| s.state == executor::checkpoint::StepState::Failed) =>
                    {
                        "failed"
                    }
                    Some(r) if r.started() => "running",
                    _ => "pending",
                };
                (n.name.clone(), state)
            })
            .collect();
        *lock(&self.node_state) = states;
        *lock(&self.canaries) = plan
            .nodes
            .iter()
            .filter(|n| n.canary)
            .map(|n| n.name.clone())
            .collect();
        *lock(&self.run) = (plan.name.clone(), run_id.to_owned());
        self.count_nodes();
    }

    fn count_nodes(&self) {
        let states = lock(&self.node_state);
        for s in ["pending", "running", "done", "failed", "left"] {
            let n = states.values().filter(|v| **v == s).count();
            self.metrics
                .nodes
                .get_or_create(&StateLabel { state: s.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn set_node(&self, node: &str, state: &'static str) {
        lock(&self.node_state).insert(node.to_owned(), state);
        self.count_nodes();
    }

    /// The metrics in Prometheus's text format.
    pub fn encode(&self) -> String {
        self.metrics.encode()
    }

    /// Serves `/metrics` on `listener` until the process ends.
    pub fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let ops = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let ops = ops.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        ops.encode(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("warning: the metrics endpoint stopped: {e}");
            }
        });
    }

    fn notify(&self, event: &'static str, e: &Event, text: String) {
        if self.notify.is_empty() {
            return;
        }
        let (plan, run_id) = lock(&self.run).clone();
        let notice = Notice {
            text,
            event,
            plan,
            run_id,
            node: e.node.clone(),
            step: e.step.clone(),
            message: e.message.clone(),
            time: e.time,
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut sent = lock(&self.sent);
        sent.retain(|h| !h.is_finished());
        for url in &self.notify {
            let (http, url, notice) = (self.http.clone(), url.clone(), notice.clone());
            sent.push(handle.spawn(async move {
                let result = http.post(&url).json(&notice).send().await;
                match result.map(|r| r.status()) {
                    Ok(s) if s.is_success() => {}
                    Ok(s) => eprintln!(
                        "warning: notification `{}` to {url} was refused: HTTP {s}",
                        notice.event
                    ),
                    Err(err) => eprintln!(
                        "warning: notification `{}` to {url} failed: {err}",
                        notice.event
                    ),
                }
            }));
        }
    }

    /// `cni_migrate_admissions_held`: 1 for the reason holding now, 0 for the others.
    fn set_held(&self, now: Option<&str>) {
        for r in executor::controls::HoldReason::ALL {
            self.metrics
                .held
                .get_or_create(&ReasonLabel {
                    reason: r.as_str().into(),
                })
                .set(i64::from(Some(r.as_str()) == now));
        }
    }

    /// Waits for the notifications still being sent (at most 10 s in all).
    pub async fn finish(&self) {
        let pending: Vec<_> = lock(&self.sent).drain(..).collect();
        let all = futures_join(pending);
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            eprintln!("warning: some notifications were still being sent when the run ended");
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Observer for Ops {
    fn event(&self, e: &Event) {
        let node = e.node.as_deref();
        let who = format!("cni-migrate `{}`", lock(&self.run).0);
        match (&e.event, node) {
            (EventKind::RunStarted, _) => {
                self.notify("run-started", e, format!("{who}: {}", e.message));
            }
            (EventKind::NodeAdmitted, Some(n)) => self.set_node(n, "running"),
            (EventKind::NodeDone, Some(n)) => {
                self.set_node(n, "done");
                if lock(&self.canaries).contains(n) {
                    self.notify(
                        "canary-done",
                        e,
                        format!("{who}: canary {n} is migrated ({})", e.message),
                    );
                }
            }
            (EventKind::NodeLeft, Some(n)) => self.set_node(n, "left"),
            (EventKind::NodeJoined, Some(n)) => self.set_node(n, "pending"),
            (EventKind::StepStarted, _) => {
                if let Some(step) = &e.step {
                    lock(&self.started).insert(step.clone(), Instant::now());
                }
            }
            (EventKind::StepDone | EventKind::StepFailed, _) => {
                let kind = e.kind.map(|k| k.as_str().to_owned()).unwrap_or_default();
                if let Some(t) = e.step.as_ref().and_then(|s| lock(&self.started).remove(s)) {
                    self.metrics
                        .steps
                        .get_or_create(&KindLabel { kind: kind.clone() })
                        .observe(t.elapsed().as_secs_f64());
                }
                if e.event == EventKind::StepFailed {
                    self.metrics
                        .failed_steps
                        .get_or_create(&KindLabel { kind })
                        .inc();
                    if let Some(n) = node {
                        self.set_node(n, "failed");
                        self.notify(
                            "node-failed",
                            e,
                            format!(
                                "{who}: node {n} failed at {}: {}",
                                e.step.as_deref().unwrap_or("?"),
                                e.message
                            ),
                        );
                    }
                }
            }
            (EventKind::Held, _) => {
                let reason = e.reason.clone().unwrap_or_default();
                self.set_held(Some(&reason));
                self.metrics
                    .holds
                    .get_or_create(&ReasonLabel {
                        reason: reason.clone(),
                    })
                    .inc();
                self.notify(
                    "held",
                    e,
                    format!("{who}: admissions held ({reason}): {}", e.message),
                );
            }
            (EventKind::Released, _) => self.set_held(None),
            (EventKind::Gate, _) => self.notify(
                "gate",
                e,
                format!("{who} stopped at a gate and needs you: {}", e.message),
            ),
            (EventKind::Paused, _) => {
                self.notify("paused", e, format!("{who} paused: {}", e.message));
            }
            (EventKind::Stopped, _) => {
                self.notify("stopped", e, format!("{who} stopped: {}", e.message));
            }
            (EventKind::Finished, _) => {
                self.notify("finished", e, format!("{who}: {}", e.message));
            }
            _ => {}
        }
    }

    fn drained(&self, _node: &str, evicted: usize, pdb_waits: &BTreeMap<String, Duration>) {
        self.metrics.evictions.inc_by(evicted as u64);
        for (pdb, d) in pdb_waits {
            self.metrics
                .pdb_wait
                .get_or_create(&PdbLabel { pdb: pdb.clone() })
                .inc_by(d.as_secs_f64());
        }
    }

    fn checkpoint_saved(&self, bytes: Option<usize>) {
        self.metrics.checkpoint_writes.inc();
        if let Some(b) = bytes {
            self.metrics
                .checkpoint_bytes
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }
}

impl ApiObserver for Ops {
    fn call(&self, call: &ApiCall) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                verb: call.verb.to_owned(),
                code: call.code.to_string(),
            })
            .inc();
        if !call.mutating() || (!self.json && self.audit.is_none()) {
            return;
        }
        let line = serde_json::json!({
            "time": executor::events::unix_now(),
            "event": "audit",
            "verb": call.verb,
            "object": call.object(),
            "group": call.group,
            "resource": call.resource,
            "subresource": call.subresource,
            "namespace": call.namespace,
            "name": call.name,
            "step": call.step,
            "code": call.code,
        })
        .to_string();
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Some(f) = &self.audit {
            let _ = writeln!(lock(f), "{line}");
        }
    }
}

/// Two observers as one: the progress output and the [`Ops`].
pub struct Tee<'a>(pub &'a dyn Observer, pub &'a dyn Observer);

impl Observer for Tee<'_> {
    fn event(&self, e: &Event) {
        self.0.event(e);
        self.1.event(e);
    }

    fn drained(&self, node: &str, evicted: usize, pdb_waits: &BTreeMap<String, Duration>) {
        self.0.drained(node, evicted, pdb_waits);
        self.1.drained(node, evicted, pdb_waits);
    }

    fn checkpoint_saved(&self, bytes: Option<usize>) {
        self.0.checkpoint_saved(bytes);
        self.1.checkpoint_saved(bytes);
    }
}
