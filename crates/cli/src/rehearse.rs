//! `cni-migrate rehearse`: the whole migration on a simulated cluster in this process, with the
//! real executor, a continuous connectivity prober, and a report.
//!
//! ```text
//! spec + dump (or the embedded kind cluster, or a synthetic one)
//!   ─► Sim (HTTP on 127.0.0.1, model with durations ÷ speed)
//!   ─► discover ─► plan ─► Runner (real executor, Helm stand-in, findings noted, not fatal)
//!        │                      │ events (ms)            prober: every simulated second, the
//!        │                      ▼                        model's reachability between workload pods
//!        └──────────────► report.md, report.html, timeline.svg, report.json
//! ```
//!
//! Durations are the model's, `speed` times faster than real time; the report multiplies
//! them back into real-time estimates. The rehearsal goes on past preflight errors (a real
//! `apply` would stop there) to show what they lead to, and says so.

mod html;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use clap::Args;
use cluster::{Cluster, ClusterArgs, KubeCluster};
use executor::{
    config::{Helm, RunConfig, Timing},
    events::{Event, EventKind, Observer},
    outcome::Outcome,
    session::{Intent, LockSpec, Session},
    store::FileStore,
};
use planner::{MigrationSpec, Severity, StepKind, spec::HumanDuration};
use serde::Serialize;
use sim::{Sim, model::ModelOptions};

use crate::failure::{Failure, exit};

mod churn;
mod floors;

/// The Cilium guide's kind cluster, embedded so `rehearse` needs no files but the spec.
const KIND_FLANNEL_DUMP: &str = include_str!("../../../plans/kind-flannel.dump.yaml");

/// Real-world durations the model runs at (÷ speed), as medians of log-normal draws with
/// sigma 0.5 (about 2.7x between the 16th and 84th percentiles). From
/// `../shared/reference/perf-anchors.md` §2: a pod starts in seconds once its image is cached,
/// terminates within its grace period (most well under the 30 s default), and a Cilium agent
/// is Ready some ten to thirty seconds after its pod starts.
const POD_START: Duration = Duration::from_secs(8);
const POD_TERMINATION: Duration = Duration::from_secs(12);

/// `cni-migrate rehearse`.
#[derive(Debug, Args, Clone)]
pub struct RehearseArgs {
    /// The MigrationSpec file.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Rehearse on this `kubectl get ... -o yaml|json` dump of the real cluster (default: the
    /// Cilium guide's kind cluster, embedded).
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub from_dump: Option<PathBuf>,
    /// Rehearse on a synthetic cluster, e.g. `nodes=50,pods-per-node=20,cni=flannel`.
    #[arg(long, value_name = "PARAMS")]
    pub synthetic: Option<String>,
    /// How many times faster than real time the model runs.
    #[arg(long, default_value_t = 60.0, value_name = "N")]
    pub speed: f64,
    /// Where to write report.md, report.html, timeline.svg and report.json.
    #[arg(long, default_value = "rehearsal", value_name = "DIR")]
    pub report: PathBuf,
    /// Faults injected into the rehearsal, with `cni-migrate sim`'s syntax, e.g.
    /// `error-500=0.05,latency=0ms-200ms,not-ready=kind-worker@30s,agent-stuck=kind-worker2`
    /// or `node-join=kind-worker9@30s,node-leave=kind-worker2@60s` (times of `not-ready`,
    /// `node-join` and `node-leave` are the model's, scaled by `--speed`).
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
}

/// One step as it happened (milliseconds of wall time from the start of the run).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StepSpan {
    id: String,
    kind: StepKind,
    node: Option<String>,
    start_ms: u64,
    end_ms: Option<u64>,
    failed: bool,
    message: String,
}

/// What the rehearsal observed.
#[derive(Default)]
struct Record {
    spans: BTreeMap<String, StepSpan>,
    lines: Vec<String>,
    phase: String,
}

struct Recorder {
    start: std::time::Instant,
    record: Arc<Mutex<Record>>,
    quiet: bool,
}

impl Observer for Recorder {
    fn event(&self, e: &Event) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut r = self
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = format!(
            "{:>8.1}s {:?} {}{}",
            ms as f64 / 1000.0,
            e.event,
            e.step
                .as_deref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default(),
            e.message
        );
        if !self.quiet {
            println!("{line}");
        }
        r.lines.push(line);
        let (Some(step), Some(kind)) = (&e.step, e.kind) else {
            return;
        };
        match e.event {
            EventKind::StepStarted => {
                r.phase = match &e.node {
                    Some(n) => format!("{n}: {kind}"),
                    None => kind.to_string(),
                };
                r.spans.insert(
                    step.clone(),
                    StepSpan {
                        id: step.clone(),
                        kind,
                        node: e.node.clone(),
                        start_ms: ms,
                        end_ms: None,
                        failed: false,
                        message: String::new(),
                    },
                );
            }
            EventKind::StepDone | EventKind::StepFailed => {
                if let Some(s) = r.spans.get_mut(step) {
                    s.end_ms = Some(ms);
                    s.failed = e.event == EventKind::StepFailed;
                    s.message.clone_from(&e.message);
                }
                if e.event == EventKind::StepDone && e.node.is_some() {
                    r.phase = "between nodes".into();
                }
            }
            _ => {}
        }
    }
}

/// Connectivity between workloads, sampled every simulated second.
#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Connectivity {
    samples: u64,
    /// `from → to` workload pair: (probes, failures).
    pairs: BTreeMap<String, (u64, u64)>,
    /// Phase: (probes, failures).
    phases: BTreeMap<String, (u64, u64)>,
    /// Why probes failed, by reason.
    reasons: BTreeMap<String, u64>,
    /// Each round: (milliseconds of wall time from the start, probes, failures).
    series: Vec<(u64, u64, u64)>,
}

/// The machine-readable report (the tests check it against the model's ground truth).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    plan: String,
    speed: f64,
    outcome: String,
    findings: Vec<(String, String, String)>,
    would_stop: Vec<String>,
    wall_ms: u64,
    estimated_seconds: f64,
    critical_path: Vec<String>,
    steps: Vec<StepSpan>,
    evicted: BTreeMap<String, Vec<String>>,
    pdb_wait_seconds: BTreeMap<String, f64>,
    connectivity: Connectivity,
    /// From the model: the evictions its disruption controller granted.
    ground_truth_evicted: usize,
    /// From the model: agent pods left crash-looping, with their last log line.
    crash_looping_agents: Vec<(String, String)>,
    /// The faults injected (`--faults`), as given.
    faults: Option<String>,
    /// What the `node-join` / `node-leave` faults did to the model.
    node_faults: Vec<churn::FaultFired>,
    /// Nodes that joined, left or were replaced, and what the run did about each.
    node_churn: Vec<churn::NodeChurn>,
    /// With maintenance windows: when a run started now would finish, admitting only inside
    /// them.
    calendar: Option<String>,
    /// The node phase next to the floors no schedule can beat.
    floors: floors::Floors,
}

fn scaled(d: Duration, speed: f64, floor: Duration) -> Duration {
    d.div_f64(speed).max(floor)
}

/// Runs `cni-migrate rehearse`.
pub fn rehearse(args: RehearseArgs) -> Result<u8, Failure> {
    if !(args.speed.is_finite() && args.speed >= 1.0 && args.speed <= 10_000.0) {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--speed {}: expected a factor between 1 and 10000",
            args.speed
        )));
    }
    let spec = MigrationSpec::from_file(&args.spec).map_err(Failure::bad_input)?;
    if let Some(f) = &args.faults {
        f.parse::<sim::Faults>()
            .map_err(|e| Failure::bad_input(anyhow::anyhow!("--faults {f}: {e}")))?;
    }
    let synthetic = match &args.synthetic {
        Some(s) => Some(s.parse::<synthetic::Params>().map_err(Failure::bad_input)?),
        None => None,
    };
    if let Some(d) = &args.from_dump
        && !d.exists()
    {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "dump {} does not exist",
            d.display()
        )));
    }
    crate::args::runtime()?.block_on(run(args, spec, synthetic))
}

async fn run(
    args: RehearseArgs,
    spec: MigrationSpec,
    synthetic: Option<synthetic::Params>,
) -> Result<u8, Failure> {
    let speed = args.speed;
    let tmp = tempfile::tempdir().map_err(Failure::other)?;
    let mut sim = Sim::start(0).await.map_err(Failure::other)?;
    let source = match (&args.from_dump, &synthetic) {
        (Some(d), _) => {
            sim.load_dump(d).map_err(Failure::bad_input)?;
            d.display().to_string()
        }
        (None, Some(p)) => {
            sim.load_synthetic(p);
            format!(
                "synthetic cluster {}",
                args.synthetic.clone().unwrap_or_default()
            )
        }
        (None, None) => {
            let path = tmp.path().join("kind-flannel.dump.yaml");
            std::fs::write(&path, KIND_FLANNEL_DUMP).map_err(Failure::other)?;
            sim.load_dump(&path).map_err(Failure::other)?;
            "the Cilium guide's kind cluster (embedded plans/kind-flannel.dump.yaml)".to_owned()
        }
    };
    sim.start_model(
        ModelOptions {
            pod_start: POD_START.div_f64(speed),
            spread: 0.5,
            heartbeat: Duration::from_secs(10).div_f64(speed),
        },
        POD_TERMINATION.div_f64(speed),
    );
    sim.set_termination_spread(0.5);
    let fired = churn::Fired::default();
    if let Some(text) = &args.faults {
        let faults: sim::Faults = text
            .parse()
            .map_err(|e| Failure::bad_input(anyhow::anyhow!("--faults {text}: {e}")))?;
        for (node, fault) in &faults.node_faults {
            sim.set_node_fault(node, fault).map_err(|e| {
                Failure::bad_input(anyhow::anyhow!(
                    "--faults {fault}={node}: {e}; name a node of the rehearsed cluster"
                ))
            })?;
        }
        for (node, after) in faults.not_ready.clone() {
            if sim.store().get("/nodes", "", &node).is_none() {
                return Err(Failure::bad_input(anyhow::anyhow!(
                    "--faults not-ready={node}: no node {node} in the rehearsed cluster"
                )));
            }
            let store = sim.store().clone();
            tokio::spawn(async move {
                tokio::time::sleep(after.div_f64(speed)).await;
                let _ = sim::node_ready_in(&store, &node, false);
            });
        }
        sim::churn::check(sim.store(), &faults)
            .map_err(|e| Failure::bad_input(anyhow::anyhow!("--faults {e}")))?;
        sim::churn::spawn(sim.store(), &faults, speed, churn::recorder(&fired));
        sim.set_faults(faults);
    }
    let kubeconfig = tmp.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).map_err(Failure::other)?;
    let client = cluster::connect(&ClusterArgs {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
    })
    .await
    .map_err(Failure::other)?;
    let kc: Arc<dyn Cluster> = Arc::new(KubeCluster::new(client.clone()));
    let snapshot = cluster::discover(&client).await.map_err(Failure::other)?;
    let real_plan = planner::plan(&spec, &snapshot);

    // The spec the model runs: its waits shortened by the speed, its reboot hook a no-op
    // (nodes are not rebooted in the model; the report says so).
    let mut run_spec = spec.clone();
    let r = &mut run_spec.rollout;
    r.soak = HumanDuration(scaled(r.soak.0, speed, Duration::ZERO));
    r.drain.timeout = HumanDuration(scaled(r.drain.timeout.0, speed, Duration::from_secs(2)));
    r.verify.timeout = HumanDuration(scaled(r.verify.timeout.0, speed, Duration::from_secs(2)));
    // The model runs without pause: the windows go into the calendar estimate instead, and
    // the alert gate asks the real cluster's Prometheus, which a rehearsal does not have.
    r.windows.clear();
    r.gates = planner::spec::Gates::default();
    let rebooting = r.reboot.is_some();
    if let Some(reboot) = &mut r.reboot {
        reboot.command = vec!["true".into(), "{node}".into()];
        reboot.timeout = HumanDuration(scaled(reboot.timeout.0, speed, Duration::from_secs(2)));
    }
    let plan = planner::plan(&run_spec, &snapshot);

    println!(
        "rehearsing `{}` on {source}: {} node(s), {}x faster than real time",
        plan.name,
        plan.nodes.len(),
        speed
    );
    let record = Arc::new(Mutex::new(Record {
        phase: "prelude".into(),
        ..Record::default()
    }));
    let start = std::time::Instant::now();
    let recorder = Recorder {
        start,
        record: record.clone(),
        quiet: false,
    };
    let exe = std::env::current_exe().map_err(Failure::other)?;
    let mut timing = Timing::fast();
    timing.install_timeout = scaled(Duration::from_secs(600), speed, Duration::from_secs(5));
    timing.agent_timeout = scaled(Duration::from_secs(300), speed, Duration::from_secs(5));
    timing.retry_budget = scaled(Duration::from_secs(300), speed, Duration::from_secs(5));
    let mut cfg = RunConfig::new("rehearsal@sim", timing);
    cfg.helm = Helm {
        command: Some(vec![exe.display().to_string(), "sim".into(), "helm".into()]),
        extra: vec!["--kubeconfig".into(), kubeconfig.display().to_string()],
        work_dir: tmp.path().join("values"),
    };
    cfg.ignore_preflight = true;
    // The rehearsal's own cluster and checkpoint: no lock to share with anybody.
    let store = Box::new(FileStore::new(tmp.path().join("state.json")));
    let session = Session::open(kc, store, Intent::Apply)
        .await
        .map_err(Failure::session)?;
    let mut locked = session
        .lock(LockSpec::None, &plan, &cfg.run_id, false)
        .await
        .map_err(Failure::session)?;

    // The prober: every simulated second, every ordered pair of sampled workload pods.
    let connectivity = Arc::new(Mutex::new(Connectivity::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let store = sim.store().clone();
        let connectivity = connectivity.clone();
        let record = record.clone();
        let stop = stop.clone();
        let every = Duration::from_secs(1).div_f64(speed);
        let mut kept = Vec::new();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                probe(&store, &mut kept, &connectivity, &record, start);
                tokio::time::sleep(every).await;
            }
        })
    };
    // Nodes that join mid-run (`--faults node-join=`): the cluster is planned again.
    let discover = || async { cluster::discover(&client).await.ok() };
    let (outcome, summary) = locked.run(&plan, cfg, &recorder, discover).await;
    let node_churn = churn::outcomes(locked.checkpoint());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = prober.await;
    let wall_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let ground_truth_evicted = sim.evictions().len();
    let crash_looping_agents = crash_looping(&sim);
    sim.stop();

    let (outcome_text, code) = match outcome {
        Ok(Outcome::Finished(_)) => ("finished".to_owned(), exit::OK),
        Ok(Outcome::Failed { step, reason, .. }) => {
            (format!("stopped: {step} failed: {reason}"), exit::FAILED)
        }
        Ok(Outcome::Gate { step, message }) => {
            (format!("stopped at a gate ({step}): {message}"), exit::GATE)
        }
        Ok(Outcome::Paused) => ("paused".to_owned(), exit::GATE),
        Err(e) => (format!("the run could not go on: {e}"), exit::FAILED),
    };
    let rec = record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut would_stop: Vec<String> = real_plan
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| {
            format!(
                "preflight error {}: {} (a real `apply` stops here: exit 3)",
                f.code, f.message
            )
        })
        .collect();
    if code != exit::OK {
        would_stop.push(outcome_text.clone());
    }
    for (pod, log) in &crash_looping_agents {
        would_stop.push(format!("Cilium agent {pod} is crash-looping: {log}"));
    }
    let mut steps: Vec<StepSpan> = rec.spans.values().cloned().collect();
    steps.sort_by_key(|s| (s.start_ms, s.id.clone()));
    let floors = floors::floors(
        steps
            .iter()
            .filter_map(|s| Some((s.node.clone()?, s.start_ms, s.end_ms?))),
        speed,
        plan.summary.max_in_flight,
        summary.evicted_pods.values().map(Vec::len).sum(),
    );
    let report = Report {
        plan: plan.name.clone(),
        speed,
        outcome: outcome_text,
        findings: real_plan
            .findings
            .iter()
            .map(|f| (f.severity.to_string(), f.code.to_string(), f.message.clone()))
            .collect(),
        would_stop,
        wall_ms,
        #[allow(clippy::cast_precision_loss)] // display only
        estimated_seconds: wall_ms as f64 / 1000.0 * speed,
        critical_path: critical_path(&plan, &steps),
        steps,
        evicted: summary.evicted_pods.clone(),
        pdb_wait_seconds: summary
            .pdb_wait_ms
            .iter()
            .map(|(k, ms)| {
                #[allow(clippy::cast_precision_loss)] // display only
                let s = *ms as f64 / 1000.0 * speed;
                (k.clone(), s)
            })
            .collect(),
        connectivity: std::mem::take(
            &mut *connectivity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        ground_truth_evicted,
        crash_looping_agents,
        faults: args.faults.clone(),
        node_faults: std::mem::take(
            &mut *fired
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        node_churn,
        calendar: calendar(&spec.rollout.windows, wall_ms as f64 / 1000.0 * speed),
        floors,
    };
    drop(rec);
    write_report(&args.report, &report, &plan, rebooting).map_err(Failure::other)?;
    println!(
        "\nrehearsal {}: about {} in real time; report in {}",
        report.outcome,
        human(report.estimated_seconds),
        args.report.join("report.md").display()
    );
    if let Some(c) = &report.calendar {
        println!("  {c}");
    }
    for w in &report.would_stop {
        println!("  would stop the run: {w}");
    }
    for n in &report.node_churn {
        println!("  node {} {}: {}", n.node, n.change, n.outcome);
    }
    if code == exit::OK && real_plan.has_errors() {
        return Ok(exit::PREFLIGHT);
    }
    Ok(code)
}

/// The calendar estimate with maintenance windows: admitting only inside them, from now.
fn calendar(windows: &[planner::spec::Window], seconds: f64) -> Option<String> {
    if windows.is_empty() {
        return None;
    }
    let now = i64::try_from(executor::events::unix_now()).unwrap_or(0);
    #[allow(clippy::cast_possible_truncation)] // whole seconds of an estimate
    let work = seconds.ceil() as i64;
    Some(match planner::spec::calendar_end(windows, now, work) {
        Some(end) => format!(
            "with the maintenance windows, a run started now ({}) would finish around {}: {} of calendar time for {} of work (nodes in flight at a window's close finish after it)",
            planner::spec::describe_instant(windows, now),
            planner::spec::describe_instant(windows, end),
            human((end - now) as f64),
            human(seconds)
        ),
        None => "the maintenance windows never open: no node would be admitted".to_owned(),
    })
}

fn human(secs: f64) -> String {
    if secs >= 48.0 * 3600.0 {
        format!("{:.1} days", secs / 86400.0)
    } else if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 60.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

fn owner_of(v: &serde_json::Value) -> Option<(String, String)> {
    let o = v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)?;
    Some((
        o["kind"].as_str().unwrap_or_default().to_owned(),
        o["name"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn crash_looping(sim: &Sim) -> Vec<(String, String)> {
    let (_, pods, _) = sim
        .store()
        .list("/pods", Some("kube-system"), None, None, &|_, s| {
            s.labels.get("k8s-app").is_some_and(|a| a == "cilium")
        });
    pods.iter()
        .filter_map(|((ns, name), s)| {
            let v = s.value();
            let waiting = v["status"]["containerStatuses"]
                .as_array()?
                .iter()
                .any(|c| c["state"]["waiting"]["reason"] == "CrashLoopBackOff");
            waiting.then(|| {
                let log = sim.store().log(ns, name).unwrap_or_default();
                (
                    format!("{ns}/{name}"),
                    log.lines().last().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

/// A sampled pod: its key, the resourceVersion it was decoded at, the pod.
type Sampled = ((String, String), u64, serde_json::Value);

/// Keeps the prober's sample: at most one pod per workload and at most 24 workloads (the
/// pairs stay few). A sampled pod that changed is decoded again; once one is gone, no longer
/// Running or terminating, the sample is drawn again (only the candidates are decoded: a
/// large cluster's pods are many).
fn resample(store: &sim::Store, kept: &mut Vec<Sampled>) {
    let usable = |s: &sim::store::Stored| {
        s.phase.as_deref() == Some("Running")
            && !s.terminating
            && s.controller
                .as_deref()
                .is_some_and(|(k, _)| k != "DaemonSet")
    };
    let mut intact = !kept.is_empty();
    for (key, rv, v) in kept.iter_mut() {
        match store.get("/pods", &key.0, &key.1) {
            Some(s) if usable(&s) => {
                if s.rv != *rv {
                    (*rv, *v) = (s.rv, s.value());
                }
            }
            _ => intact = false,
        }
    }
    if intact {
        return;
    }
    kept.clear();
    let (_, pods, _) = store.list("/pods", None, None, None, &|_, s| usable(s));
    let mut seen = BTreeSet::new();
    for (key, s) in pods {
        if kept.len() == 24 {
            break;
        }
        let owner = s
            .controller
            .as_deref()
            .map(|(_, n)| n.as_str())
            .unwrap_or_default();
        let workload = format!("{}/{owner}", key.0);
        if seen.contains(&workload) {
            continue;
        }
        let v = s.value();
        if v["spec"]["hostNetwork"] != true {
            seen.insert(workload);
            kept.push((key, s.rv, v));
        }
    }
}

/// One round of the prober over a bounded sample of workload pods.
fn probe(
    store: &sim::Store,
    kept: &mut Vec<Sampled>,
    conn: &Mutex<Connectivity>,
    record: &Mutex<Record>,
    start: std::time::Instant,
) {
    resample(store, kept);
    let sample: Vec<serde_json::Value> = kept.iter().map(|k| k.2.clone()).collect();
    let workload = |key: &str| -> String {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let v = sample
            .iter()
            .find(|v| v["metadata"]["name"] == name && v["metadata"]["namespace"] == ns);
        let owner = v.and_then(owner_of).map(|(_, n)| n).unwrap_or_default();
        format!("{ns}/{owner}")
    };
    let results = sim::datapath::matrix(store, &sample);
    let phase = record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .phase
        .clone();
    let mut c = conn
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    c.samples += 1;
    let at = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let round_probes = u64::try_from(results.len()).unwrap_or(u64::MAX);
    let round_lost = u64::try_from(results.iter().filter(|r| r.2.is_err()).count()).unwrap_or(0);
    c.series.push((at, round_probes, round_lost));
    for (a, b, r) in results {
        let pair = format!("{} → {}", workload(&a), workload(&b));
        let failed = u64::from(r.is_err());
        let e = c.pairs.entry(pair).or_default();
        e.0 += 1;
        e.1 += failed;
        let p = c.phases.entry(phase.clone()).or_default();
        p.0 += 1;
        p.1 += failed;
        if let Err(why) = r {
            *c.reasons.entry(why).or_default() += 1;
        }
    }
}

/// The steps that decided the end: from the last step back through whichever dependency (or
/// freed slot) it waited on last.
fn critical_path(plan: &planner::Plan, steps: &[StepSpan]) -> Vec<String> {
    let by_id: BTreeMap<&str, &StepSpan> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let Some(mut cur) = steps.iter().max_by_key(|s| s.end_ms.unwrap_or(s.start_ms)) else {
        return Vec::new();
    };
    let mut path = vec![cur.id.clone()];
    for _ in 0..steps.len() {
        let deps: Vec<&StepSpan> = plan
            .step(&cur.id)
            .map(|s| {
                s.depends_on
                    .iter()
                    .filter_map(|d| by_id.get(d.as_str()).copied())
                    .collect()
            })
            .unwrap_or_default();
        let latest = deps.iter().max_by_key(|d| d.end_ms.unwrap_or(0)).copied();
        // A node step that started well after its dependencies waited for a slot: the node
        // that finished just before it freed it.
        let slot = if cur.kind == StepKind::Cordon
            && latest.is_none_or(|d| cur.start_ms > d.end_ms.unwrap_or(0) + 500)
        {
            steps
                .iter()
                .filter(|s| {
                    s.kind == StepKind::Uncordon && s.end_ms.is_some_and(|e| e <= cur.start_ms)
                })
                .max_by_key(|s| s.end_ms)
        } else {
            None
        };
        let Some(next) = slot.or(latest) else { break };
        path.push(next.id.clone());
        cur = next;
    }
    path.reverse();
    path
}

fn colour(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Preflight
        | StepKind::Verify
        | StepKind::VerifyRollback
        | StepKind::FinalVerify => "#4c9f70",
        StepKind::CiliumInstalled | StepKind::FinalValues => "#8e6cc0",
        StepKind::NodeConfig
        | StepKind::DeleteNodeConfig
        | StepKind::RemoveOldCni
        | StepKind::CleanOldCni
        | StepKind::RestoreCni => "#6c8ec0",
        StepKind::Cordon | StepKind::Uncordon => "#b0b0b0",
        StepKind::Drain | StepKind::RestartUnmanagedPods => "#e0a040",
        StepKind::Label
        | StepKind::Unlabel
        | StepKind::PatchAwsNode
        | StepKind::StopAwsNode
        | StepKind::StartAwsNode => "#70b0d0",
        StepKind::RestartAgent => "#d06060",
        StepKind::Reboot => "#806040",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn markdown(report: &Report, plan: &planner::Plan, rebooting: bool) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(md, "# Rehearsal of `{}`\n", report.plan);
    let _ = writeln!(
        md,
        "Outcome: **{}**. Estimated real duration: **{}** (the model ran {}x faster; {} of wall time).\n",
        report.outcome,
        human(report.estimated_seconds),
        report.speed,
        human(report.wall_ms as f64 / 1000.0)
    );
    let f = &report.floors;
    if f.nodes > 0 {
        let _ = writeln!(
            md,
            "Node phase: **{}** for {} node(s); the floors no schedule beats: the nodes' own durations over {} in flight, **{}**; {} evictions and the pods they re-create at {} a second, **{}**. Above both: budgets that let one pod go at a time, admissions held (see the time waiting on budgets below).\n",
            human(f.node_phase_seconds),
            f.nodes,
            plan.summary.max_in_flight,
            human(f.node_bound_seconds),
            f.evictions,
            floors::CHURN_PER_SECOND,
            human(f.churn_floor_seconds)
        );
    }
    if let Some(c) = &report.calendar {
        let mut c = c.clone();
        c[..1].make_ascii_uppercase();
        let _ = writeln!(md, "{c}.\n");
    }
    if let Some(f) = &report.faults {
        let _ = writeln!(md, "Faults injected: `{f}`.\n");
    }
    if rebooting {
        md.push_str("The spec's reboot hook was not run: the model does not reboot nodes, so add each node's reboot time to the estimate.\n\n");
    }
    md.push_str("## What would have stopped the run\n\n");
    if report.would_stop.is_empty() {
        md.push_str("Nothing.\n\n");
    } else {
        for w in &report.would_stop {
            let _ = writeln!(md, "- {w}");
        }
        md.push('\n');
    }
    md.push_str(&churn::markdown(&report.node_faults, &report.node_churn));
    md.push_str("## Findings\n\n| severity | code | message |\n|---|---|---|\n");
    for (sev, code, msg) in &report.findings {
        let _ = writeln!(md, "| {sev} | {code} | {} |", msg.replace('|', "\\|"));
    }
    md.push_str("\n## Timeline\n\n![timeline](timeline.svg)\n\n| step | start | duration (real-time estimate) |\n|---|---|---|\n");
    for s in &report.steps {
        let dur = s.end_ms.map_or("unfinished".to_owned(), |e| {
            human((e - s.start_ms) as f64 / 1000.0 * report.speed)
        });
        let _ = writeln!(
            md,
            "| {}{} | {} | {dur} |",
            s.id,
            if s.failed { " (failed)" } else { "" },
            human(s.start_ms as f64 / 1000.0 * report.speed)
        );
    }
    let _ = writeln!(
        md,
        "\nCritical path: {}\n",
        report.critical_path.join(" → ")
    );
    md.push_str("## Pods evicted per node\n\n| node | pods |\n|---|---|\n");
    // The plan's nodes, and any that joined mid-run.
    let names: BTreeSet<&String> = plan.nodes.iter().map(|n| &n.name).collect();
    for name in names
        .iter()
        .copied()
        .chain(report.evicted.keys().filter(|k| !names.contains(k)))
    {
        let pods = report.evicted.get(name).map_or(0, Vec::len);
        let _ = writeln!(md, "| {name} | {pods} |");
    }
    let _ = writeln!(
        md,
        "\nIn all {} evictions (the model's disruption controller granted {}).\n",
        report.evicted.values().map(Vec::len).sum::<usize>(),
        report.ground_truth_evicted
    );
    md.push_str("## Time waiting on PodDisruptionBudgets\n\n");
    if report.pdb_wait_seconds.is_empty() {
        md.push_str("None.\n");
    } else {
        md.push_str("| PDB | waited (real-time estimate) |\n|---|---|\n");
        for (p, s) in &report.pdb_wait_seconds {
            let _ = writeln!(md, "| {p} | {} |", human(*s));
        }
    }
    let c = &report.connectivity;
    let _ = writeln!(
        md,
        "\n## Connectivity\n\nA prober sampled every ordered pair of workloads (one pod each, on whichever overlay it was) every simulated second: {} rounds.\n\n| phase | probes | lost | loss |\n|---|---|---|---|",
        c.samples
    );
    for (phase, (n, lost)) in &c.phases {
        #[allow(clippy::cast_precision_loss)]
        let pct = if *n == 0 {
            0.0
        } else {
            *lost as f64 * 100.0 / *n as f64
        };
        let _ = writeln!(md, "| {phase} | {n} | {lost} | {pct:.1}% |");
    }
    md.push_str("\n| pair | probes | lost |\n|---|---|---|\n");
    for (pair, (n, lost)) in c.pairs.iter().filter(|(_, (_, l))| *l > 0) {
        let _ = writeln!(md, "| {pair} | {n} | {lost} |");
    }
    if c.pairs.values().all(|(_, l)| *l == 0) {
        md.push_str("| (every pair) | | 0 |\n");
    }
    if !c.reasons.is_empty() {
        md.push_str("\nWhy probes failed:\n\n");
        for (why, n) in &c.reasons {
            let _ = writeln!(md, "- {why}: {n}");
        }
    }
    md
}

fn write_report(
    dir: &std::path::Path,
    report: &Report,
    plan: &planner::Plan,
    rebooting: bool,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create report directory {}", dir.display()))?;
    // A lane per node: the plan's, then any the run met besides (nodes that joined).
    let mut lanes: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    for n in report.steps.iter().filter_map(|s| s.node.as_ref()) {
        if !lanes.contains(n) {
            lanes.push(n.clone());
        }
    }
    let svg = report.timeline_svg(&lanes);
    let md = markdown(report, plan, rebooting);
    let html = report.html_page(&md, &svg);
    for (name, body) in [
        ("report.md", md),
        ("report.html", html),
        ("timeline.svg", svg),
        ("report.json", serde_json::to_string_pretty(report)?),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
