//! Executor benchmarks that print their figures.
//!
//! ```text
//! exec-bench [schedule] [--nodes 1000] [--pods-per-node 30] [--max-unavailable 10[,1,5%...]]
//!     [--soak 10m] [--canary 1] [--pdbs 5] [--seed 1] [--no-api-latency]
//! exec-bench discovery [--cli target/release/cni-migrate] [--runs 3] [-o json]
//!     [--synthetic nodes=5000,pods-per-node=30,cni=flannel]
//! exec-bench checkpoint
//! ```
//!
//! `schedule` (the default) runs the real [`executor::runtime::Runner`] over a fake 1,000-node
//! cluster ([`bench::fake`]) on a current-thread tokio runtime whose clock is paused: every
//! sleep auto-advances, so the makespan is virtual time and a run takes seconds of wall time.
//! The run stops at the finale gate (`stop_before_finalize`). It prints the node phase's
//! makespan against a lower bound computed from the measured per-node durations d_i
//! (canaries serial + soak + max(max d_i, Σ_rest d_i / k); target: within 10 %), a
//! wave-barrier schedule and one-node-at-a-time for comparison, API requests per node, the
//! checkpoint's size (this run, and 5,000 and 20,000 finished nodes, with the time to save and
//! load them) and the peak RSS.
//!
//! `discovery` starts `cni-migrate sim --synthetic ...` (5,000 nodes, 150,000 pods) as a child
//! process, waits for it to serve, then times `cni-migrate plan --spec SPEC --kubeconfig F -o
//! json` three times, sampling the child's VmHWM every 20 ms. Targets: median under 30 s, peak
//! RSS under 512 MiB. The CLI must be built first: `cargo build --release -p cni-migrate`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use bench::{
    fake::{Physics, Shape, Synthetic},
    median, mib, peak_rss,
    schedule::{hand_over, hms, list_schedule, pct},
    secs,
};
use cluster::Cluster;
use executor::{
    checkpoint::{Checkpoint, NodePrior, StepIndex, StepState},
    config::{RunConfig, Timing},
    events::{Event, EventKind, Observer},
    outcome::Outcome,
    session::{Intent, LockSpec, Session},
    store::{CONFIGMAP_LIMIT, ConfigMapStore},
};
use tokio::time::Instant;

const USAGE: &str = "usage:
  exec-bench [schedule] [--nodes 1000] [--pods-per-node 30] [--max-unavailable 10[,1,5%...]]
             [--soak 10m] [--canary 1] [--pdbs 5] [--seed 1] [--no-api-latency]
  exec-bench discovery [--cli target/release/cni-migrate] [--runs 3] [-o json]
             [--synthetic nodes=5000,pods-per-node=30,cni=flannel]
  exec-bench checkpoint      (only the checkpoint's sizes and save/load times; schedule prints them too)
discovery needs the CLI built first: cargo build --release -p cni-migrate";

struct ScheduleArgs {
    nodes: usize,
    pods_per_node: usize,
    max_unavailable: Vec<String>,
    soak: String,
    canary: u32,
    pdbs: usize,
    seed: u64,
    api_latency: bool,
}

struct DiscoveryArgs {
    cli: PathBuf,
    runs: usize,
    synthetic: String,
    output: String,
}

enum Mode {
    Schedule(ScheduleArgs),
    Discovery(DiscoveryArgs),
    Checkpoint,
}

fn parse_args() -> anyhow::Result<Mode> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.retain(|a| a != "--bench");
    let discovery = args.first().is_some_and(|a| a == "discovery");
    if args.first().is_some_and(|a| a == "checkpoint") {
        return Ok(Mode::Checkpoint);
    }
    if args
        .first()
        .is_some_and(|a| a == "discovery" || a == "schedule")
    {
        args.remove(0);
    }
    let mut it = args.into_iter();
    if discovery {
        let mut d = DiscoveryArgs {
            cli: PathBuf::from("target/release/cni-migrate"),
            runs: 3,
            synthetic: "nodes=5000,pods-per-node=30,cni=flannel".into(),
            output: "json".into(),
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--cli" => d.cli = PathBuf::from(value()?),
                "--runs" => d.runs = value()?.parse::<usize>()?.max(1),
                "--synthetic" => d.synthetic = value()?,
                "-o" | "--output" => d.output = value()?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown flag {other}\n{USAGE}"),
            }
        }
        return Ok(Mode::Discovery(d));
    }
    let mut s = ScheduleArgs {
        nodes: 1000,
        pods_per_node: 30,
        max_unavailable: vec!["10".into()],
        soak: "10m".into(),
        canary: 1,
        pdbs: 5,
        seed: 1,
        api_latency: true,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => s.nodes = value()?.parse()?,
            "--pods-per-node" => s.pods_per_node = value()?.parse::<usize>()?.max(1),
            "--max-unavailable" => {
                s.max_unavailable = value()?
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
            }
            "--soak" => s.soak = value()?,
            "--canary" => s.canary = value()?.parse()?,
            "--pdbs" => s.pdbs = value()?.parse()?,
            "--seed" => s.seed = value()?.parse()?,
            "--no-api-latency" => s.api_latency = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if s.max_unavailable.is_empty() {
        bail!("--max-unavailable needs at least one value");
    }
    Ok(Mode::Schedule(s))
}

fn main() -> anyhow::Result<()> {
    match parse_args()? {
        Mode::Schedule(a) => schedule(&a),
        Mode::Discovery(d) => discovery(&d),
        Mode::Checkpoint => checkpoint_sizes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: the scheduler's makespan in virtual time.

fn spec_yaml(canary: u32, max_unavailable: &str, soak: &str) -> String {
    let max = if max_unavailable.ends_with('%') {
        format!("\"{max_unavailable}\"")
    } else {
        max_unavailable.to_owned()
    };
    format!(
        "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: exec-bench}}\n\
         target: {{ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], maskSize: 24, tunnel: {{port: 8473}}}}\n\
         rollout: {{canary: {canary}, maxUnavailable: {max}, soak: {soak}}}\n"
    )
}

/// Virtual instants of each node's milestones, from the runner's events.
#[derive(Default)]
struct Marks {
    admitted: BTreeMap<String, Instant>,
    first_step: BTreeMap<String, Instant>,
    done: BTreeMap<String, Instant>,
    waiting: u64,
    retrying: u64,
    failed: Vec<String>,
    last_waiting: Option<String>,
    /// Node steps' starts, by step id.
    started: BTreeMap<String, Instant>,
    /// Node steps' durations (virtual seconds) by kind, and the gaps before them.
    steps: BTreeMap<String, Vec<f64>>,
    /// When each node's last step ended.
    last_end: BTreeMap<String, Instant>,
}

#[derive(Default)]
struct Timeline(Mutex<Marks>);

impl Observer for Timeline {
    fn event(&self, e: &Event) {
        let now = Instant::now();
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let node = e.node.clone().unwrap_or_default();
        match e.event {
            EventKind::NodeAdmitted => {
                m.admitted.entry(node).or_insert(now);
            }
            EventKind::StepStarted if !node.is_empty() => {
                if let Some(end) = m.last_end.get(&node).copied() {
                    let kind = e.step.clone().unwrap_or_default();
                    let kind = kind.rsplit('/').next().unwrap_or_default();
                    m.steps
                        .entry(format!("(gap) → {kind}"))
                        .or_default()
                        .push(now.saturating_duration_since(end).as_secs_f64());
                }
                m.first_step.entry(node).or_insert(now);
                if let Some(step) = &e.step {
                    m.started.insert(step.clone(), now);
                }
            }
            EventKind::StepDone if !node.is_empty() => {
                if let Some(step) = &e.step
                    && let Some(t) = m.started.remove(step)
                {
                    let kind = step.rsplit('/').next().unwrap_or_default().to_owned();
                    m.steps
                        .entry(kind)
                        .or_default()
                        .push(now.saturating_duration_since(t).as_secs_f64());
                }
                m.last_end.insert(node, now);
            }
            EventKind::NodeDone => {
                m.done.insert(node, now);
            }
            EventKind::Waiting => {
                m.waiting += 1;
                m.last_waiting = Some(e.message.clone());
            }
            EventKind::Retrying => m.retrying += 1,
            EventKind::StepFailed => m.failed.push(format!(
                "{}: {}",
                e.step.clone().unwrap_or_default(),
                e.message
            )),
            _ => {}
        }
    }
}

fn schedule(a: &ScheduleArgs) -> anyhow::Result<()> {
    let shape = Shape {
        nodes: a.nodes,
        // One of the node's pods is its Cilium agent (a DaemonSet pod, not evicted).
        app_pods_per_node: a.pods_per_node.saturating_sub(1),
        replicas: 10,
        pdbs: a.pdbs,
        seed: a.seed,
    };
    let t = std::time::Instant::now();
    let syn = Synthetic::new(&shape)?;
    println!(
        "synthetic cluster: {} nodes, {} pods ({} app pods per node + 1 Cilium agent), {} PDBs (maxUnavailable 1); built in {}",
        a.nodes,
        syn.snapshot.pods.len() + a.nodes,
        shape.app_pods_per_node,
        syn.snapshot.pdbs.len(),
        secs(t.elapsed())
    );
    println!(
        "physics: pod termination U[1 s, 30 s]; pod start lognormal(median 1.5 s, p99 5 s); agent restart lognormal(median 20 s, σ 0.3) + 2% U[80 s, 90 s]; API latency {}",
        if a.api_latency {
            "lognormal(median 10 ms read / 20 ms write, σ 0.5) + ConfigMap body at 100 MB/s"
        } else {
            "off"
        }
    );
    println!("timing: Timing::real() (poll 2 s, drain poll 1 s, tick 2 s, pause check 5 s)");
    for k in &a.max_unavailable {
        schedule_one(a, &syn, k)?;
    }
    println!();
    checkpoint_sizes()?;
    println!(
        "peak RSS of exec-bench: {}",
        peak_rss().map_or_else(|| "n/a".into(), mib)
    );
    Ok(())
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)] // one report, spelled out
fn schedule_one(a: &ScheduleArgs, syn: &Synthetic, k: &str) -> anyhow::Result<()> {
    let spec = planner::MigrationSpec::from_yaml(&spec_yaml(a.canary, k, &a.soak), "exec-bench")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = std::time::Instant::now();
    let plan = planner::plan(&spec, &syn.snapshot);
    let plan_time = t.elapsed();
    if plan.has_errors() {
        let errors: Vec<String> = plan
            .findings
            .iter()
            .filter(|f| f.severity == planner::Severity::Error)
            .map(|f| format!("{}: {}", f.code, f.message))
            .collect();
        bail!("the plan has errors:\n{}", errors.join("\n"));
    }
    let limit = plan.summary.max_in_flight.max(1);
    let soak = spec.rollout.soak.0.as_secs_f64();
    println!();
    println!(
        "== maxUnavailable {k} → {limit} in flight; {} nodes, {} canary, soak {}s; plan built in {} ({} steps) ==",
        plan.nodes.len(),
        plan.summary.canaries,
        soak,
        secs(plan_time),
        plan.steps.len()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let wall = std::time::Instant::now();
    let work = tempfile::tempdir()?;
    let (outcome, virtual_total, ck, counters, marks) = rt.block_on(async {
        let fake = Arc::new(syn.cluster(
            &spec,
            Physics {
                api_latency: a.api_latency,
            },
        ));
        let cluster: Arc<dyn Cluster> = fake.clone();
        let store = Box::new(ConfigMapStore::new(cluster.clone()));
        let timeline = Timeline::default();
        let mut cfg = RunConfig::new("exec-bench@localhost", Timing::real());
        cfg.helm.work_dir = work.path().to_path_buf();
        cfg.stop_before_finalize = true;
        let session = Session::open(cluster.clone(), store, Intent::Apply)
            .await
            .context("opening the session")?;
        let locked = session
            .lock(LockSpec::None, &plan, &cfg.run_id.clone(), false)
            .await
            .context("locking the session")?;
        let runner = locked.runner(&plan, cfg, &timeline);
        let t0 = Instant::now();
        let outcome = runner.run().await;
        let virtual_total = t0.elapsed();
        let ck = runner.checkpoint().await;
        drop(runner);
        let marks = std::mem::take(
            &mut *timeline
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        anyhow::Ok((outcome, virtual_total, ck, fake.counters(), marks))
    })?;
    let wall = wall.elapsed();
    let outcome = outcome.context("the run could not go on")?;
    match &outcome {
        Outcome::Gate { step, .. } => {
            println!("outcome: stopped at the gate before {step} (as asked)")
        }
        other => println!("outcome: {other:?} (expected the finale gate)"),
    }
    if !marks.failed.is_empty() {
        println!("failed steps: {}", marks.failed.join("; "));
    }
    println!(
        "wall time {} for {} of virtual time (whole run, prelude included)",
        secs(wall),
        hms(virtual_total.as_secs_f64())
    );

    // Per-node durations d_i: first step's start to the node's last step's finish.
    let mut d: BTreeMap<&str, f64> = BTreeMap::new();
    for n in &plan.nodes {
        if let (Some(s), Some(e)) = (marks.first_step.get(&n.name), marks.done.get(&n.name)) {
            d.insert(&n.name, e.saturating_duration_since(*s).as_secs_f64());
        }
    }
    if d.len() != plan.nodes.len() {
        println!(
            "only {} of {} nodes finished; last wait: {}",
            d.len(),
            plan.nodes.len(),
            marks.last_waiting.as_deref().unwrap_or("-")
        );
    }
    let Some(start) = marks.first_step.values().min().copied() else {
        bail!("no node step started");
    };
    let end = marks.done.values().max().copied().unwrap_or(start);
    let makespan = end.saturating_duration_since(start).as_secs_f64();
    let canaries: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.canary)
        .map(|n| n.name.as_str())
        .collect();
    let rest: Vec<f64> = plan
        .nodes
        .iter()
        .filter(|n| !n.canary)
        .filter_map(|n| d.get(n.name.as_str()).copied())
        .collect();
    let canary_sum: f64 = canaries.iter().filter_map(|c| d.get(c)).sum();
    let rest_sum: f64 = rest.iter().sum();
    let rest_max = rest.iter().copied().fold(0.0, f64::max);
    let k_f = limit as f64;
    let bound = canary_sum + soak + rest_max.max(rest_sum / k_f);
    let ratio = makespan / bound;
    let waves: f64 = rest
        .chunks(limit)
        .map(|w| w.iter().copied().fold(0.0, f64::max))
        .sum::<f64>()
        + canary_sum
        + soak;
    let serial: f64 = d.values().sum::<f64>() + soak;

    // Where the makespan beyond the bound went: the canary → soak → first admission gap, and
    // idle slots (fewer than k in flight while nodes were left).
    let last_canary_done = canaries.iter().filter_map(|c| marks.done.get(*c)).max();
    let first_rest = plan
        .nodes
        .iter()
        .filter(|n| !n.canary)
        .filter_map(|n| marks.admitted.get(&n.name))
        .min();
    let soak_gap = match (last_canary_done, first_rest) {
        (Some(c), Some(r)) => r.saturating_duration_since(*c).as_secs_f64(),
        _ => 0.0,
    };

    let mut sorted_d: Vec<f64> = d.values().copied().collect();
    sorted_d.sort_by(f64::total_cmp);
    println!(
        "node phase makespan: {:.1} s ({}), first node step to last node done",
        makespan,
        hms(makespan)
    );
    println!(
        "per-node d_i: p50 {:.1} s, p90 {:.1} s, p99 {:.1} s, max {:.1} s; Σ {:.0} s",
        pct(&sorted_d, 0.5),
        pct(&sorted_d, 0.9),
        pct(&sorted_d, 0.99),
        sorted_d.last().copied().unwrap_or(0.0),
        sorted_d.iter().sum::<f64>()
    );
    println!(
        "lower bound: canaries {:.1} s + soak {:.0} s + max(max d {:.1} s, Σ rest {:.0} s / {limit} = {:.1} s) = {:.1} s ({})",
        canary_sum,
        soak,
        rest_max,
        rest_sum,
        rest_sum / k_f,
        bound,
        hms(bound)
    );
    println!(
        "makespan / lower bound: {ratio:.4} ({:+.1} s) → target ≤ 1.10: {}",
        makespan - bound,
        if ratio <= 1.10 { "MET" } else { "NOT MET" }
    );
    // The same bound from what the cluster itself took (drains, agent restarts, the probe
    // pods' starts): what no tool could beat.
    let physical = |name: &str| {
        counters
            .physics
            .get(name)
            .map_or(0.0, |p| p.physical().as_secs_f64())
    };
    let p_canaries: f64 = canaries.iter().map(|c| physical(c)).sum();
    let p_rest: Vec<f64> = plan
        .nodes
        .iter()
        .filter(|n| !n.canary)
        .map(|n| physical(&n.name))
        .collect();
    let p_bound = p_canaries
        + soak
        + p_rest
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(p_rest.iter().sum::<f64>() / k_f);
    println!(
        "physical lower bound (the same from each node's physical waits): {:.1} s ({}); makespan / physical bound: {:.4} → target ≤ 1.05: {}",
        p_bound,
        hms(p_bound),
        makespan / p_bound,
        if makespan / p_bound <= 1.05 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    // What no admission order known in advance escapes: the same nodes in plan order, each
    // started the instant a slot frees and taking only its physical time (the tail of the last
    // round, where a slow agent restart drawn late holds the makespan, is in it).
    let ideal = p_canaries + soak + list_schedule(&p_rest, limit);
    println!(
        "  ideal list schedule (plan order, physical waits only, no tool time): {:.1} s, {:.4} of the physical bound; the tool's share of the rest: {:+.1} s",
        ideal,
        ideal / p_bound,
        makespan - ideal
    );
    // A slot's hand-over: the j-th node started after the soak took the slot the (j−k)-th
    // node to finish freed; the time between is the tool's, and in no node's d_i.
    let rest_names: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| !n.canary)
        .map(|n| n.name.as_str())
        .collect();
    let handover = hand_over(
        rest_names
            .iter()
            .filter_map(|n| marks.first_step.get(*n).copied())
            .collect(),
        rest_names
            .iter()
            .filter_map(|n| marks.done.get(*n).copied())
            .collect(),
        limit,
    );
    println!(
        "  slot hand-over (a node done → the next node's first step): p50 {:.2} s, p99 {:.2} s, Σ {:.1} s / {limit} = {:.1} s",
        pct(&handover, 0.5),
        pct(&handover, 0.99),
        handover.iter().sum::<f64>(),
        handover.iter().sum::<f64>() / k_f
    );
    println!("  last canary done → first post-soak admission: {soak_gap:.1} s (soak {soak:.0} s)");
    println!(
        "wave barrier (waves of {limit} in plan order, each its longest node) + canaries + soak: {:.1} s ({}), {:.3}× the pipelined makespan",
        waves,
        hms(waves),
        waves / makespan
    );
    println!(
        "one node at a time (Σ d_i + soak): {:.1} s ({}), {:.1}× the pipelined makespan",
        serial,
        hms(serial),
        serial / makespan
    );

    // Executor overhead per node: d_i minus what the cluster itself took.
    let mut overhead: Vec<f64> = plan
        .nodes
        .iter()
        .filter_map(|n| {
            let di = d.get(n.name.as_str())?;
            let phys = counters.physics.get(&n.name)?.physical().as_secs_f64();
            Some(di - phys)
        })
        .collect();
    overhead.sort_by(f64::total_cmp);
    let mut phys: Vec<f64> = counters
        .physics
        .values()
        .map(|p| p.physical().as_secs_f64())
        .collect();
    phys.sort_by(f64::total_cmp);
    println!(
        "physical waits per node (last evicted pod gone − first eviction + agent delete → Ready + the probe pod's start): p50 {:.1} s, p99 {:.1} s",
        pct(&phys, 0.5),
        pct(&phys, 0.99)
    );
    let (o50, o99) = (pct(&overhead, 0.5), pct(&overhead, 0.99));
    println!(
        "executor overhead per node (d_i − physical): p50 {o50:.2} s, p99 {o99:.2} s, max {:.2} s → target ≤ 2 s p50 / ≤ 10 s p99: {}",
        overhead.last().copied().unwrap_or(0.0),
        if o50 <= 2.0 && o99 <= 10.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );

    let mut with_probe: Vec<f64> = plan
        .nodes
        .iter()
        .filter_map(|n| {
            let p = counters.physics.get(&n.name)?;
            Some(d.get(n.name.as_str())? - (p.physical() - p.probe_starts).as_secs_f64())
        })
        .collect();
    with_probe.sort_by(f64::total_cmp);
    println!(
        "  counting the probe pod's start as the tool's time: p50 {:.2} s, p99 {:.2} s",
        pct(&with_probe, 0.5),
        pct(&with_probe, 0.99)
    );

    // Where the overhead sits in a node's chain (p50 of each gap, virtual seconds).
    let gap = |f: &dyn Fn(&bench::fake::NodePhysics, Instant, Instant) -> Option<f64>| {
        let mut v: Vec<f64> = plan
            .nodes
            .iter()
            .filter_map(|n| {
                let p = counters.physics.get(&n.name)?;
                f(
                    p,
                    *marks.first_step.get(&n.name)?,
                    *marks.done.get(&n.name)?,
                )
            })
            .collect();
        v.sort_by(f64::total_cmp);
        (pct(&v, 0.5), pct(&v, 0.99))
    };
    let before = gap(&|p, s, _| Some(p.first_evict?.saturating_duration_since(s).as_secs_f64()));
    let between = gap(&|p, _, _| {
        Some(
            p.agent_deleted?
                .saturating_duration_since(p.last_gone?)
                .as_secs_f64(),
        )
    });
    let after = gap(&|p, _, e| Some(e.saturating_duration_since(p.agent_ready?).as_secs_f64()));
    println!(
        "  overhead by place, p50/p99: first step → first eviction {:.2}/{:.2} s; last pod gone → agent deleted {:.2}/{:.2} s; agent Ready → node done {:.2}/{:.2} s",
        before.0, before.1, between.0, between.1, after.0, after.1
    );

    for (kind, v) in &mut marks.steps.clone() {
        v.sort_by(f64::total_cmp);
        println!(
            "  step {kind:<22} p50 {:.2} s, p99 {:.2} s",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }

    let total: u64 = counters.requests.values().sum();
    let nodes = plan.nodes.len().max(1) as f64;
    let evictions: u64 = counters
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("CREATE pods/eviction"))
        .map(|(_, n)| *n)
        .sum();
    let per_node = total as f64 / nodes;
    let besides = (total - evictions) as f64 / nodes;
    println!(
        "API requests: {total} in all, {per_node:.1} per node; {besides:.1} per node besides the {:.1} evictions → target ≤ 40: {}",
        evictions as f64 / nodes,
        if besides <= 40.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "peak request rate: {} in the busiest second, {:.1}/s over the busiest ten seconds (virtual time; the client's default limit is 30/s, burst 60)",
        counters.peak.0,
        counters.peak.1 as f64 / 10.0
    );
    let mut verbs: Vec<(&&str, &u64)> = counters.requests.iter().collect();
    verbs.sort_by(|x, y| y.1.cmp(x.1));
    for (verb, n) in verbs {
        println!(
            "  {:<32} {:>9} ({:.2} per node)",
            verb,
            n,
            *n as f64 / nodes
        );
    }
    println!(
        "objects returned by LISTs: {} ({:.0} per node); PDB-refused evictions: {}; Waiting events: {}; retries: {}",
        counters.list_items,
        counters.list_items as f64 / nodes,
        counters.blocked_evictions,
        marks.waiting,
        marks.retrying
    );
    let size = ck.to_json().len();
    let compressed = ck.to_compressed().len();
    println!(
        "checkpoint at the gate: {compressed} bytes compressed, {size} bytes of JSON, for {} nodes ({:.0} bytes a node compressed)",
        plan.nodes.len(),
        compressed as f64 / nodes
    );
    // Cross-check with the checkpoint's own (whole-second) record.
    let ck_secs: Vec<u32> = ck
        .nodes
        .values()
        .filter_map(|r| r.span().map(|(first, last)| last - first))
        .collect();
    let ck_first = ck
        .nodes
        .values()
        .filter_map(|r| r.span().map(|(first, _)| first))
        .min()
        .unwrap_or(0);
    let ck_last = ck
        .nodes
        .values()
        .filter_map(|r| r.span().map(|(_, last)| last))
        .max()
        .unwrap_or(0);
    println!(
        "checkpoint cross-check: node phase {} s by the checkpoint's whole seconds; Σ node seconds {}",
        ck_last.saturating_sub(ck_first),
        ck_secs.iter().map(|s| u64::from(*s)).sum::<u64>()
    );
    Ok(())
}

/// A checkpoint of `n` finished nodes with EKS-length names, their UIDs and agent UIDs, and
/// drawn step times (a start 0-5 s after the step before, a duration of 1 s to 2 min), so the
/// compression is not flattered by regular numbers.
fn finished_checkpoint(n: usize) -> anyhow::Result<Checkpoint> {
    let spec = planner::MigrationSpec::from_yaml(&spec_yaml(1, "10", "10m"), "exec-bench")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = bench::fake::Rng(7);
    let uid = |rng: &mut bench::fake::Rng| {
        let (a, b) = (rng.next_u64(), rng.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    };
    let snap = planner::ClusterSnapshot {
        nodes: (0..n)
            .map(|i| planner::snapshot::NodeInfo {
                name: bench::fake::node_name(i),
                uid: uid(&mut rng),
                ready: true,
                ..planner::snapshot::NodeInfo::default()
            })
            .collect(),
        ..planner::ClusterSnapshot::default()
    };
    let p = planner::plan(&spec, &snap);
    let idx = StepIndex::new(&p.steps);
    let mut c = Checkpoint::new(&p, "exec-bench@localhost", 1_700_000_000);
    let mut now = 1_700_000_000u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // whole seconds
    let draw = |rng: &mut bench::fake::Rng, lo: f64, hi: f64| rng.uniform(lo, hi) as u64;
    for s in &p.steps {
        now += draw(&mut rng, 0.0, 5.0);
        c.transition(&idx, &s.id, StepState::Running, now, None)?;
        let node = s.node.as_deref().unwrap_or_default();
        if s.kind == planner::StepKind::Cordon {
            c.record_prior(node, &NodePrior::default());
        }
        if s.kind == planner::StepKind::Label {
            c.record_agent_uids(node, vec![uid(&mut rng)]);
        }
        now += draw(&mut rng, 1.0, 120.0);
        c.transition(&idx, &s.id, StepState::Done, now, None)?;
    }
    Ok(c)
}

/// The checkpoint of 5,000 and 20,000 finished nodes: its size as format 1 stored it (plain
/// JSON) and as format 2 does (compressed, split past 768 KiB), and the time a save and a load
/// take through the ConfigMap store (API latency off: the tool's own work, medians of 5).
#[allow(clippy::cast_precision_loss)] // sizes and ratios in a report
fn checkpoint_sizes() -> anyhow::Result<()> {
    let spec = planner::MigrationSpec::from_yaml(&spec_yaml(1, "10", "10m"), "exec-bench")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let syn = Synthetic::new(&Shape {
        nodes: 1,
        app_pods_per_node: 0,
        replicas: 1,
        pdbs: 0,
        seed: 1,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    for n in [5000, 20_000] {
        let mut c = finished_checkpoint(n)?;
        let json = c.to_json().len();
        let compressed = c.to_compressed().len();
        let fake = Arc::new(syn.cluster(&spec, Physics { api_latency: false }));
        let cluster: Arc<dyn Cluster> = fake.clone();
        let store = ConfigMapStore::new(cluster);
        let (mut saves, mut loads) = (Vec::new(), Vec::new());
        let parts = rt.block_on(async {
            use executor::store::StateStore as _;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                store.save(&mut c).await?;
                saves.push(t.elapsed());
                let t = std::time::Instant::now();
                let back = store.load().await?;
                loads.push(t.elapsed());
                anyhow::ensure!(
                    back.as_ref() == Some(&c),
                    "the checkpoint read back differs"
                );
            }
            let parts = fake
                .configmaps_labelled(
                    "kube-system",
                    "cni-migrate.io/checkpoint-of=cni-migrate-state",
                )
                .await?;
            anyhow::Ok(parts.len())
        })?;
        let objects = parts + 1;
        println!(
            "checkpoint of {n} finished nodes: {compressed} bytes compressed ({:.1} KiB, {:.0} bytes a node; {json} bytes of JSON before compression, {:.1}x), in {objects} ConfigMap(s); save {} median, load {} median",
            compressed as f64 / 1024.0,
            compressed as f64 / n as f64,
            json as f64 / compressed as f64,
            secs(median(saves)),
            secs(median(loads)),
        );
    }
    println!("  (format 1 refused past {CONFIGMAP_LIMIT} bytes of JSON: about 6,000 nodes)");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 2: discovery of a simulated 5,000-node, 150,000-pod cluster by `cni-migrate plan`.

/// A child process killed (by its own id) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn discovery(d: &DiscoveryArgs) -> anyhow::Result<()> {
    if !d.cli.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p cni-migrate` (or pass --cli)",
            d.cli.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: discovery-bench}\n\
         target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n\
         rollout: {drain: {deleteEmptyDirData: true, allowUnreplicated: true}}\n",
    )?;
    println!(
        "starting `{} sim --synthetic {} --kubeconfig-out {}`",
        d.cli.display(),
        d.synthetic,
        kubeconfig.display()
    );
    let t = std::time::Instant::now();
    let mut sim = Reaped(
        Command::new(&d.cli)
            .args(["sim", "--synthetic", &d.synthetic, "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", d.cli.display()))?,
    );
    let sim_pid = sim.0.id();
    let stdout = sim.0.stdout.take().context("the sim's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let serving = loop {
        match lines.next() {
            Some(line) => {
                let line = line?;
                if line.starts_with("serving a simulated cluster") {
                    break line;
                }
            }
            None => bail!("the sim exited before serving: {:?}", sim.0.try_wait()),
        }
    };
    // Keep draining the sim's stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    println!(
        "sim ready in {} (pid {sim_pid}): {serving}",
        secs(t.elapsed())
    );
    println!(
        "sim RSS after loading: {}",
        proc_status_kb(sim_pid, "VmRSS:").map_or_else(|| "n/a".into(), |kb| mib(kb * 1024))
    );

    let mut walls = Vec::new();
    let mut peaks = Vec::new();
    for run in 1..=d.runs {
        let stderr_path = dir.path().join(format!("plan-{run}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)?;
        let t = std::time::Instant::now();
        let mut child = Command::new(&d.cli)
            .args(["plan", "--spec"])
            .arg(&spec)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-o", &d.output])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot start cni-migrate plan")?;
        let pid = child.id();
        let mut peak_kb = 0u64;
        let status = loop {
            if let Some(kb) = proc_status_kb(pid, "VmHWM:") {
                peak_kb = peak_kb.max(kb);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = t.elapsed();
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        println!(
            "run {run}: `cni-migrate plan -o {}` {}, peak RSS {} (VmHWM sampled every 20 ms), exit {}",
            d.output,
            secs(wall),
            mib(peak_kb * 1024),
            status
                .code()
                .map_or_else(|| status.to_string(), |c| c.to_string())
        );
        if !status.success() {
            let tail: Vec<&str> = err.lines().rev().take(10).collect();
            println!(
                "  stderr (last lines):\n    {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            );
        }
        walls.push(wall);
        peaks.push(peak_kb * 1024);
    }
    let med = median(walls);
    let peak = peaks.iter().copied().max().unwrap_or(0);
    println!(
        "median wall time {} → target < 30 s: {}",
        secs(med),
        if med < Duration::from_secs(30) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!(
        "max peak RSS {} → target < 512 MiB: {}",
        mib(peak),
        if peak < 512 * 1024 * 1024 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    drop(sim);
    println!("sim (pid {sim_pid}) killed");
    Ok(())
}
