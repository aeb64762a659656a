//! `apply`, `resume` and `rollback`: parse the flags, call the executor's session, print.
//!
//! ```text
//! flags ─► validated RunSettings (before any I/O) ─► connect ─► Session::open (what the
//!       checkpoint allows) ─► discover ─► plan ─► preflight gate (exit 3) ─► Session::lock
//!       ─► confirm (--yes, or a terminal) ─► Runner (run, or rollback) ─► exit 0 / 4 / 5
//! ```

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use clap::Args;
use cluster::{Cluster, KubeCluster, lease::LeaseLock};
use executor::{
    config::{CrashPoint, Helm, RunConfig, Timing},
    session::{Allowed, Intent, LockSpec, Session, SessionError},
};
use planner::MigrationSpec;

use crate::{
    args::{KubeArgs, StateArgs, StateLocation, connect, json_output, runtime, store_for},
    failure::{Failure, exit},
    ops::{Ops, OpsArgs, Tee},
    progress,
};

mod report;

/// `cni-migrate apply` and `cni-migrate resume`.
#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    /// The MigrationSpec file.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Where the checkpoint lives.
    #[command(flatten)]
    pub state: StateArgs,
    /// Helm command line to install and upgrade Cilium (e.g. "helm"); without it the run stops
    /// at a gate with the exact command to run, and `resume` checks the result.
    #[arg(long, value_name = "CMD")]
    pub helm: Option<String>,
    /// Run Helm with this kubeconfig (`--kubeconfig PATH` to helm) instead of the tool's own
    /// credentials: least-privilege RBAC (`cni-migrate rbac`) does not cover the Cilium chart.
    #[arg(long, value_name = "PATH", requires = "helm")]
    pub helm_kubeconfig: Option<PathBuf>,
    /// Take over a stale lock (a run that stopped renewing it). Never takes a fresh one.
    #[arg(long)]
    pub force_unlock: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output: `text` (progress bars on a terminal, plain lines otherwise) or `json` (JSON lines).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: String,
    /// Stop at a gate before this phase: `finalize` keeps the old CNI until `resume`.
    #[arg(long, value_name = "PHASE")]
    pub stop_before: Option<String>,
    /// Resume even though the checkpoint's plan fingerprint differs from the current plan.
    #[arg(long)]
    pub ignore_fingerprint: bool,
    /// Where the values files for Helm are written (default: beside a `file:` state, else a
    /// directory named after the plan under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Do not record Kubernetes Events on the Nodes.
    #[arg(long)]
    pub no_events: bool,
    /// Lease duration of the run lock, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub lease_seconds: u64,
    /// Pacing for the simulated cluster (tests and rehearsals): polls in milliseconds.
    #[arg(long, hide = true)]
    pub sim_timing: bool,
    /// With `resume`: migrate this node again after `cni-migrate rollback` (repeatable).
    #[arg(long, value_name = "NODE")]
    pub retry: Vec<String>,
    /// With `apply`: go on with the recorded migration when there is one instead of refusing
    /// (what `cni-migrate job` runs, so that every new pod of the Job carries on).
    #[arg(long)]
    pub or_resume: bool,
    /// Maintenance windows, metrics, notifications, the audit trail.
    #[command(flatten)]
    pub ops: OpsArgs,
}

/// `cni-migrate rollback`.
#[derive(Debug, Args, Clone)]
pub struct RollbackArgs {
    /// The node to return to the old CNI.
    #[arg(
        value_name = "NODE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub node: Option<String>,
    /// Every node the migration touched, the most recent first.
    #[arg(long)]
    pub all: bool,
    /// The same flags as `apply`.
    #[command(flatten)]
    pub run: ApplyArgs,
}

/// Validated flags, before any I/O.
struct RunSettings {
    spec: MigrationSpec,
    state: StateLocation,
    helm: Option<Vec<String>>,
    json: bool,
    stop_before_finalize: bool,
    metrics_addr: Option<std::net::SocketAddr>,
}

fn validate(args: &ApplyArgs) -> Result<RunSettings, Failure> {
    let state = args.state.location()?;
    let helm = match &args.helm {
        None => None,
        Some(line) => {
            let words = shlex::split(line)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| {
                    Failure::bad_input(anyhow::anyhow!(
                        "--helm {line:?}: not a command line (unbalanced quotes?)"
                    ))
                })?;
            if words.is_empty() {
                return Err(Failure::bad_input(anyhow::anyhow!(
                    "--helm is empty: give the helm command, e.g. --helm helm"
                )));
            }
            Some(words)
        }
    };
    let json = json_output(&args.output)?;
    let stop_before_finalize = match args.stop_before.as_deref() {
        None => false,
        Some("finalize") => true,
        Some(other) => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "--stop-before {other}: the only phase to stop before is `finalize`"
            )));
        }
    };
    let min_lease = if args.sim_timing { 1 } else { 15 };
    if args.lease_seconds < min_lease {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--lease-seconds {}: at least {min_lease}",
            args.lease_seconds
        )));
    }
    let metrics_addr = args.ops.validate()?;
    let spec = MigrationSpec::from_file(&args.spec).map_err(Failure::bad_input)?;
    Ok(RunSettings {
        spec,
        state,
        helm,
        json,
        stop_before_finalize,
        metrics_addr,
    })
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn new_run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("r{:x}{:04x}@{}", t, std::process::id() & 0xffff, host())
}

/// `apply` (`resume: false`) or `resume`.
///
/// # Errors
/// A [`Failure`] with its exit code.
pub fn apply(args: ApplyArgs, resume: bool) -> Result<u8, Failure> {
    let settings = validate(&args)?;
    if resume && args.or_resume {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--or-resume belongs to `cni-migrate apply`: `resume` always goes on with the recorded migration"
        )));
    }
    if !resume && !args.retry.is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--retry belongs to `cni-migrate resume`: a rolled-back node is in a recorded migration"
        )));
    }
    let intent = if resume {
        Intent::Resume {
            retry: args.retry.clone(),
        }
    } else {
        Intent::Apply
    };
    runtime()?.block_on(run(args, settings, intent))
}

/// `cni-migrate rollback NODE` / `--all`.
///
/// # Errors
/// A [`Failure`] with its exit code.
pub fn rollback(args: RollbackArgs) -> Result<u8, Failure> {
    let settings = validate(&args.run)?;
    if args.run.stop_before.is_some() || !args.run.retry.is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--stop-before and --retry do not apply to rollback"
        )));
    }
    let intent = Intent::Rollback {
        node: if args.all { None } else { args.node.clone() },
    };
    runtime()?.block_on(run(args.run, settings, intent))
}

/// Where the values files go when `--work-dir` is not given.
fn work_dir(args: &ApplyArgs, state: &StateLocation, plan: &planner::Plan) -> PathBuf {
    if let Some(d) = &args.work_dir {
        return std::path::absolute(d).unwrap_or_else(|_| d.clone());
    }
    match state {
        StateLocation::File(p) => p
            .parent()
            .map(|d| d.join("cni-migrate-values"))
            .unwrap_or_else(|| PathBuf::from("cni-migrate-values")),
        // One directory per plan: runs of the same plan write the same files (atomically).
        StateLocation::ConfigMap => std::env::temp_dir().join(format!(
            "cni-migrate-{}-{}",
            plan.name,
            plan.fingerprint
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>()
        )),
    }
}

fn run_config(args: &ApplyArgs, s: &RunSettings, plan: &planner::Plan, run_id: &str) -> RunConfig {
    let mut extra = Vec::new();
    if let Some(k) = &args.helm_kubeconfig {
        // Helm's own credentials: its kubeconfig's current context, not the tool's --context.
        extra.extend(["--kubeconfig".to_owned(), k.display().to_string()]);
    } else {
        if let Some(k) = &args.kube.kubeconfig {
            extra.extend(["--kubeconfig".to_owned(), k.display().to_string()]);
        }
        if let Some(c) = &args.kube.context {
            extra.extend(["--kube-context".to_owned(), c.clone()]);
        }
    }
    let mut cfg = RunConfig::new(
        run_id,
        if args.sim_timing {
            Timing::fast()
        } else {
            Timing::real()
        },
    );
    cfg.helm = Helm {
        command: s.helm.clone(),
        extra,
        work_dir: work_dir(args, &s.state, plan),
    };
    cfg.stop_before_finalize = s.stop_before_finalize;
    cfg.node_events = !args.no_events;
    cfg.exit_outside_window = args.ops.exit_outside_window;
    cfg.crash_at = std::env::var("CNI_MIGRATE_TEST_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<CrashPoint>().ok());
    cfg
}

/// Asks on the terminal (unless `--yes`). `Ok(false)`: the user said no.
fn confirm(args: &ApplyArgs, intent: &Intent, plan: &planner::Plan) -> Result<bool, Failure> {
    if args.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "no terminal to confirm on: review `cni-migrate plan`, then pass --yes"
        )));
    }
    print!(
        "{}",
        planner::render::render(plan, planner::render::Format::Table).map_err(Failure::other)?
    );
    match intent {
        Intent::Rollback { node } => print!(
            "Roll back {} to {} on this cluster? [y/N] ",
            node.as_deref().unwrap_or("every migrated node"),
            plan.facts.source.cni
        ),
        _ => print!(
            "{} the migration of {} node(s) on this cluster? [y/N] ",
            if *intent == Intent::Apply {
                "Start"
            } else {
                "Resume"
            },
            plan.nodes.len()
        ),
    }
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// What a run that stops before acting says about the cluster: "nothing was changed" only when
/// no recorded migration has changed anything either; otherwise what the recorded one did, so
/// nobody reads a half-migrated cluster as untouched.
fn unchanged(session: &Session, then: &str) -> String {
    match session.allowed() {
        Allowed::Continue(recorded) => match recorded.progress() {
            Some(progress) => format!(
                "this run changed nothing, but the migration recorded in {} has ({progress}): the cluster is as that run left it (see `cni-migrate status`); {then}",
                session.store()
            ),
            None => format!("nothing was changed; {then}"),
        },
        _ => format!("nothing was changed; {then}"),
    }
}

async fn run(args: ApplyArgs, s: RunSettings, intent: Intent) -> Result<u8, Failure> {
    // Metrics and the audit trail from the first request on (the Lease's among them).
    args.kube.rate_limit(args.sim_timing)?;
    let ops = Arc::new(Ops::new(&args.ops, s.json)?);
    cluster::telemetry::install(ops.clone());
    if let Some(addr) = s.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::bad_input(anyhow::anyhow!(
                "--metrics-addr {addr}: cannot listen ({e})"
            ))
        })?;
        ops.serve(listener);
    }
    let client = connect(&args.kube).await?;
    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(client.clone()));
    let store = store_for(&s.state, cluster.clone());
    let (session, intent) = match Session::open(cluster.clone(), store, intent.clone()).await {
        Err(SessionError::AlreadyRecorded { plan, run_id, .. }) if args.or_resume => {
            eprintln!(
                "the migration `{plan}` (run {run_id}) is recorded: going on with it (--or-resume)"
            );
            let intent = Intent::Resume { retry: Vec::new() };
            let store = store_for(&s.state, cluster.clone());
            let session = Session::open(cluster, store, intent.clone())
                .await
                .map_err(Failure::session)?;
            (session, intent)
        }
        opened => (opened.map_err(Failure::session)?, intent),
    };
    if let Allowed::Complete { plan } = session.allowed() {
        println!(
            "the migration `{plan}` is already complete ({}); nothing to {}",
            session.store(),
            if intent == Intent::Apply {
                "do"
            } else {
                "resume"
            }
        );
        return Ok(exit::OK);
    }
    let snapshot = cluster::discover(&client).await.map_err(Failure::other)?;
    let plan = session.plan(&s.spec, &snapshot);
    drop(snapshot);
    let rolling_back = matches!(intent, Intent::Rollback { .. });
    if plan.has_errors() && rolling_back {
        eprintln!(
            "warning: preflight finds {} error(s) now; rolling back anyway (see `cni-migrate plan`)",
            plan.summary.errors
        );
    } else if plan.has_errors() {
        print!(
            "{}",
            planner::render::render(&plan, planner::render::Format::Table)
                .map_err(Failure::other)?
        );
        eprintln!(
            "preflight found {} error(s): {}",
            plan.summary.errors,
            unchanged(&session, "fix them (see the findings above) and run again")
        );
        return Ok(exit::PREFLIGHT);
    }

    // The lock before the second look at the checkpoint: two runs that both found none must
    // not both start one.
    let run_id = new_run_id();
    let lease = LeaseLock::new(
        client.clone(),
        run_id.clone(),
        Duration::from_secs(args.lease_seconds),
    );
    let lock = LockSpec::Lease {
        lock: lease,
        force: args.force_unlock,
    };
    let declined = unchanged(&session, "run again when ready");
    let mut locked = session
        .lock(lock, &plan, &run_id, args.ignore_fingerprint)
        .await
        .map_err(Failure::session)?;
    if let Some(w) = locked.warning() {
        eprintln!("warning: {w}; going on because of --ignore-fingerprint");
    }
    if !confirm(&args, &intent, &plan)? {
        println!("{declined}");
        return Ok(exit::OTHER);
    }
    let progress = progress::observer(s.json, plan.nodes.len());
    ops.set_run(&plan, locked.checkpoint(), &run_id);
    let observer = Tee(&*progress, &*ops);
    let cfg = run_config(&args, &s, &plan, &run_id);
    let work = async {
        if rolling_back {
            let runner = locked.runner(&plan, cfg, &observer);
            report::rollback_nodes(&runner, &locked.rollback_targets(), s.json).await
        } else {
            // Nodes that join mid-run: the cluster is planned again and the run goes on.
            let discover = || async { cluster::discover(&client).await.ok() };
            let (outcome, _) = locked.run(&plan, cfg, &observer, discover).await;
            report::report(outcome, &resume_command(&args, &s), s.json)
        }
    };
    let ended = tokio::select! {
        ended = work => ended,
        signal = crate::signal::stop_signal() => {
            eprintln!(
                "{}: stopping; steps under way stop where they are and stay recorded as running in the checkpoint ({}), and `resume` runs them again (every step observes before it acts); the lock is released, so this goes on at once: {}",
                signal.name,
                locked.store(),
                resume_command(&args, &s)
            );
            Ok(signal.code)
        }
    };
    // The progress bars are finished before the last lines.
    drop(progress);
    ops.finish().await;
    if let Err(e) = locked.release().await {
        eprintln!("warning: cannot release the lock: {e}");
    }
    ended
}

/// The command that goes on from here.
fn resume_command(args: &ApplyArgs, s: &RunSettings) -> String {
    let state_flag = match &s.state {
        StateLocation::ConfigMap => String::new(),
        StateLocation::File(p) => format!(" --state file:{}", p.display()),
    };
    format!(
        "cni-migrate resume --spec {}{}{}{}",
        args.spec.display(),
        state_flag,
        args.helm
            .as_deref()
            .map(|h| format!(" --helm {}", planner::plan::shell_quote(h)))
            .unwrap_or_default(),
        args.helm_kubeconfig
            .as_deref()
            .map(|k| format!(
                " --helm-kubeconfig {}",
                planner::plan::shell_quote(&k.display().to_string())
            ))
            .unwrap_or_default()
    )
}
