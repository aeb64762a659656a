//! `apply`, `resume`, `status` and `pause`: the executor behind a command line.
//!
//! ```text
//! flags ─► validated RunArgs (before any I/O) ─► connect ─► discover ─► plan ─► preflight gate (exit 3)
//!       ─► lock (Lease) ─► checkpoint (new for apply, loaded and fingerprint-checked for resume)
//!       ─► confirm (--yes, or a terminal) ─► Runner ─► exit 0 / 4 / 5
//! ```

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::Args;
use cluster::{Cluster, KubeCluster, lease::LeaseLock};
use executor::{
    checkpoint::{Checkpoint, FileStore, StepState},
    runtime::{
        self, CrashPoint, Event, EventKind, Observer, Outcome, RollbackEnd, RunConfig, Runner,
        Timing,
    },
    scheduler,
    store::{ConfigMapStore, StateStore},
};
use planner::MigrationSpec;

use crate::{Failure, KubeArgs, exit};

/// Where the checkpoint lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    /// `kube-system/cni-migrate-state`.
    ConfigMap,
    /// A local file.
    File(PathBuf),
}

impl std::str::FromStr for StateLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "configmap" => Ok(Self::ConfigMap),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(Self::File(PathBuf::from(p))),
                _ => Err(format!(
                    "--state {s}: expected `configmap` (kube-system/cni-migrate-state) or `file:PATH`"
                )),
            },
        }
    }
}

/// The state flags shared by every executor command.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// Where the checkpoint lives: `configmap` (kube-system/cni-migrate-state) or `file:PATH`.
    #[arg(long, value_name = "configmap|file:PATH", default_value = "configmap")]
    pub state: String,
}

impl StateArgs {
    /// The parsed `--state`.
    fn location(&self) -> Result<StateLocation, Failure> {
        self.state
            .parse()
            .map_err(|e: String| Failure::bad_input(anyhow::anyhow!(e)))
    }
}

/// `-o text|json`: whether JSON was asked for.
fn json_output(output: &str) -> Result<bool, Failure> {
    match output {
        "text" => Ok(false),
        "json" => Ok(true),
        other => Err(Failure::bad_input(anyhow::anyhow!(
            "-o {other}: expected text or json"
        ))),
    }
}

/// The checkpoint store `--state` names, and a client when the cluster is reachable (a file
/// store works without one).
async fn open_store(
    kube: &KubeArgs,
    state: &StateLocation,
) -> Result<(Box<dyn StateStore>, Option<kube::Client>), Failure> {
    let client = match (state, connect(kube).await) {
        (_, Ok(c)) => Some(c),
        (StateLocation::File(_), Err(_)) => None,
        (StateLocation::ConfigMap, Err(e)) => return Err(e),
    };
    let store: Box<dyn StateStore> = match (state, &client) {
        (StateLocation::File(p), _) => Box::new(FileStore::new(p.clone())),
        (StateLocation::ConfigMap, Some(c)) => {
            Box::new(ConfigMapStore::new(Arc::new(KubeCluster::new(c.clone()))))
        }
        (StateLocation::ConfigMap, None) => {
            return Err(Failure::other(anyhow::anyhow!(
                "no cluster connection for the ConfigMap store"
            )));
        }
    };
    Ok((store, client))
}

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

/// What a locked run does.
#[derive(Clone, Debug)]
enum Mode {
    Apply,
    Resume,
    Rollback(Option<String>),
}

/// `cni-migrate status` and `cni-migrate pause`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Where the checkpoint lives.
    #[command(flatten)]
    pub state: StateArgs,
    /// Output: `text` or `json`.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: String,
}

/// Validated flags, before any I/O.
struct RunSettings {
    spec: MigrationSpec,
    state: StateLocation,
    helm: Option<Vec<String>>,
    json: bool,
    stop_before_finalize: bool,
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
    let spec = MigrationSpec::from_file(&args.spec).map_err(Failure::bad_input)?;
    Ok(RunSettings {
        spec,
        state,
        helm,
        json,
        stop_before_finalize,
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

fn store_for(state: &StateLocation, cluster: Arc<dyn Cluster>) -> Box<dyn StateStore> {
    match state {
        StateLocation::ConfigMap => Box::new(ConfigMapStore::new(cluster)),
        StateLocation::File(p) => Box::new(FileStore::new(p.clone())),
    }
}

async fn connect(kube: &KubeArgs) -> Result<kube::Client, Failure> {
    let args = cluster::ClusterArgs {
        kubeconfig: kube.kubeconfig.clone(),
        context: kube.context.clone(),
    };
    cluster::connect(&args).await.map_err(Failure::bad_input)
}

/// `apply` (`resume: false`) or `resume`.
pub fn apply(args: ApplyArgs, resume: bool) -> Result<u8, Failure> {
    let settings = validate(&args)?;
    if !resume && !args.retry.is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--retry belongs to `cni-migrate resume`: a rolled-back node is in a recorded migration"
        )));
    }
    let mode = if resume { Mode::Resume } else { Mode::Apply };
    crate::runtime()?.block_on(apply_async(args, settings, mode))
}

/// `cni-migrate rollback NODE` / `--all`.
pub fn rollback(args: RollbackArgs) -> Result<u8, Failure> {
    let settings = validate(&args.run)?;
    if args.run.stop_before.is_some() || !args.run.retry.is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--stop-before and --retry do not apply to rollback"
        )));
    }
    let mode = Mode::Rollback(if args.all { None } else { args.node.clone() });
    crate::runtime()?.block_on(apply_async(args.run, settings, mode))
}

fn finished(ck: &Checkpoint) -> bool {
    !ck.nodes.is_empty()
        && ck.nodes.keys().all(|n| scheduler::node_done(ck, n))
        && ck.global.values().all(|g| g.state == "D" || g.state == "S")
}

async fn apply_async(args: ApplyArgs, s: RunSettings, mode: Mode) -> Result<u8, Failure> {
    let resume = !matches!(mode, Mode::Apply);
    let rolling_back = matches!(mode, Mode::Rollback(_));
    let client = connect(&args.kube).await?;
    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(client.clone()));
    let store = store_for(&s.state, cluster.clone());

    // What is recorded decides what `apply` and `resume` may do, before anything else.
    let recorded = retrying(
        "reading the checkpoint",
        || store.load(),
        executor::checkpoint::StoreError::is_retriable,
    )
    .await
    .map_err(Failure::other)?;
    match (resume, &recorded) {
        (true, None) if rolling_back => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "nothing to roll back: no migration is recorded in {}",
                store.describe()
            )));
        }
        (true, Some(ck)) if rolling_back && finished(ck) => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "the migration `{}` is complete: the old CNI was removed, so there is nothing to roll back to",
                ck.plan
            )));
        }
        (false, Some(ck)) if finished(ck) => {
            println!(
                "the migration `{}` is already complete ({}); nothing to do",
                ck.plan,
                store.describe()
            );
            return Ok(exit::OK);
        }
        (false, Some(ck)) => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "a migration (`{}`, last run {}) is already recorded in {}: continue it with \
                 `cni-migrate resume` (same flags), or see `cni-migrate status`",
                ck.plan,
                ck.run_id,
                store.describe()
            )));
        }
        (true, None) => {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "nothing to resume: no checkpoint in {}; start with `cni-migrate apply`",
                store.describe()
            )));
        }
        (true, Some(ck)) if finished(ck) => {
            println!(
                "the migration `{}` is already complete ({}); nothing to resume",
                ck.plan,
                store.describe()
            );
            return Ok(exit::OK);
        }
        _ => {}
    }

    let snapshot = cluster::discover(&client).await.map_err(Failure::other)?;
    let plan = match recorded.as_ref().and_then(|ck| ck.source.as_ref()) {
        Some(source) => planner::plan_in_progress(&s.spec, &snapshot, source),
        None => planner::plan(&s.spec, &snapshot),
    };
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
            "preflight found {} error(s): nothing was changed; fix them (see the findings above) and run again",
            plan.summary.errors
        );
        return Ok(exit::PREFLIGHT);
    }

    // The lock: two runs that both found no checkpoint must not both start one.
    let run_id = new_run_id();
    let mut lock = LeaseLock::new(
        client.clone(),
        run_id.clone(),
        Duration::from_secs(args.lease_seconds),
    );
    let force = args.force_unlock;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match lock.acquire(force).await {
            Ok(()) => break,
            Err(cluster::lease::LockError::Cluster(e)) if e.is_retriable() && attempt < 8 => {
                tracing::warn!(error = %e, "cannot take the lock yet; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
            }
            Err(e) => return Err(Failure::other(e)),
        }
    }
    locked(&args, &s, &mode, &plan, cluster, &*store, lock, run_id).await
}

#[allow(clippy::too_many_arguments)]
async fn locked(
    args: &ApplyArgs,
    s: &RunSettings,
    mode: &Mode,
    plan: &planner::Plan,
    cluster: Arc<dyn Cluster>,
    store: &dyn StateStore,
    lock: LeaseLock,
    run_id: String,
) -> Result<u8, Failure> {
    let lock = Arc::new(tokio::sync::Mutex::new(lock));
    let release = |lock: Arc<tokio::sync::Mutex<LeaseLock>>| async move {
        for attempt in 1..=5u64 {
            match lock.lock().await.release().await {
                Ok(()) => return,
                Err(cluster::lease::LockError::Cluster(e)) if e.is_retriable() && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    eprintln!("warning: cannot release the lock: {e}");
                    return;
                }
            }
        }
    };
    let resume = !matches!(mode, Mode::Apply);
    // Read again under the lock: another run may have started between our first look and now.
    let existing = match retrying(
        "reading the checkpoint",
        || store.load(),
        executor::checkpoint::StoreError::is_retriable,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            release(lock).await;
            return Err(Failure::other(e));
        }
    };
    let checkpoint = match (resume, existing) {
        (false, Some(ck)) => {
            release(lock).await;
            return Err(Failure::bad_input(anyhow::anyhow!(
                "another run (`{}`, {}) started a migration in {} meanwhile; see `cni-migrate status`",
                ck.plan,
                ck.run_id,
                store.describe()
            )));
        }
        (false, None) => Checkpoint::new(plan, &run_id, executor::runtime::unix_now()),
        (true, None) => {
            release(lock).await;
            return Err(Failure::bad_input(anyhow::anyhow!(
                "nothing to resume: the checkpoint in {} is gone",
                store.describe()
            )));
        }
        (true, Some(ck)) => {
            if let Err(e) = ck.verify_fingerprint(plan) {
                if !args.ignore_fingerprint {
                    release(lock).await;
                    return Err(Failure::bad_input(e));
                }
                eprintln!("warning: {e}; going on because of --ignore-fingerprint");
            }
            ck
        }
    };

    if !args.yes {
        if !std::io::stdin().is_terminal() {
            release(lock).await;
            return Err(Failure::bad_input(anyhow::anyhow!(
                "no terminal to confirm on: review `cni-migrate plan`, then pass --yes"
            )));
        }
        print!(
            "{}",
            planner::render::render(plan, planner::render::Format::Table)
                .map_err(Failure::other)?
        );
        match mode {
            Mode::Rollback(node) => print!(
                "Roll back {} to {} on this cluster? [y/N] ",
                node.as_deref().unwrap_or("every migrated node"),
                plan.facts.source.cni
            ),
            _ => print!(
                "{} the migration of {} node(s) on this cluster? [y/N] ",
                if resume { "Resume" } else { "Start" },
                plan.nodes.len()
            ),
        }
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            release(lock).await;
            println!("nothing was changed");
            return Ok(exit::OTHER);
        }
    }

    // Keep the lock while running; a lost lock stops admissions.
    let lost = Arc::new(AtomicBool::new(false));
    let renew = {
        let lock = lock.clone();
        let lost = lost.clone();
        tokio::spawn(async move {
            let every = lock.lock().await.renew_every();
            let mut failing_since: Option<tokio::time::Instant> = None;
            loop {
                tokio::time::sleep(every).await;
                match lock.lock().await.renew().await {
                    Ok(()) => failing_since = None,
                    Err(cluster::lease::LockError::Lost { holder }) => {
                        eprintln!("error: lost the lock to {holder}");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                        tracing::warn!(error = %e, "cannot renew the lock");
                        if since.elapsed() >= every * 2 {
                            eprintln!("error: cannot renew the lock: {e}");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        })
    };

    let work_dir = args
        .work_dir
        .clone()
        .map(|d| std::path::absolute(&d).unwrap_or(d))
        .unwrap_or_else(|| match &s.state {
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
        });
    let mut helm_extra = Vec::new();
    if let Some(k) = &args.kube.kubeconfig {
        helm_extra.push("--kubeconfig".to_owned());
        helm_extra.push(k.display().to_string());
    }
    if let Some(c) = &args.kube.context {
        helm_extra.push("--kube-context".to_owned());
        helm_extra.push(c.clone());
    }
    let crash_at = std::env::var("CNI_MIGRATE_TEST_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<CrashPoint>().ok());
    let cfg = RunConfig {
        run_id: run_id.clone(),
        helm: s.helm.clone(),
        helm_extra,
        work_dir,
        timing: if args.sim_timing {
            Timing::fast()
        } else {
            Timing::real()
        },
        stop_before_finalize: s.stop_before_finalize,
        node_events: !args.no_events,
        crash_at,
    };
    let observer: Box<dyn Observer> = if s.json {
        Box::new(JsonLines)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new(plan.nodes.len()))
    } else {
        Box::new(Plain)
    };
    let runner = Runner::new(
        plan,
        cluster,
        store,
        checkpoint,
        cfg,
        &*observer,
        lost.clone(),
    );
    if let Mode::Rollback(node) = mode {
        let ended = rollback_nodes(&runner, node.as_deref(), s.json).await;
        drop(observer);
        renew.abort();
        if !lost.load(Ordering::SeqCst) {
            release(lock).await;
        }
        return ended;
    }
    if let Err(e) = runner.retry(&args.retry).await {
        drop(observer);
        renew.abort();
        release(lock).await;
        return Err(Failure::bad_input(anyhow::anyhow!(e)));
    }
    let outcome = runner.run().await;
    drop(observer);
    renew.abort();
    let lock_lost = lost.load(Ordering::SeqCst);
    if !lock_lost {
        release(lock).await;
    }
    let state_flag = match &s.state {
        StateLocation::ConfigMap => String::new(),
        StateLocation::File(p) => format!(" --state file:{}", p.display()),
    };
    let resume_cmd = format!(
        "cni-migrate resume --spec {}{}{}",
        args.spec.display(),
        state_flag,
        args.helm
            .as_deref()
            .map(|h| format!(" --helm {}", planner::plan::shell_quote(h)))
            .unwrap_or_default()
    );
    match outcome {
        Ok(Outcome::Finished(summary)) => {
            if s.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "summary", "summary": summary})
                );
            } else {
                print_summary(&summary);
            }
            Ok(exit::OK)
        }
        Ok(Outcome::Gate { step, message }) => {
            eprintln!("stopped at a gate ({step}): {message}\nthen: {resume_cmd}");
            Ok(exit::GATE)
        }
        Ok(Outcome::Paused) => {
            eprintln!("paused; continue with: {resume_cmd}");
            Ok(exit::GATE)
        }
        Ok(Outcome::Failed { step, node, reason }) => {
            let on = node.map(|n| format!(" on node {n}")).unwrap_or_default();
            eprintln!(
                "error: step {step}{on} failed: {reason}\n\
                 the node is left as the checkpoint records it (cordoned nodes stay cordoned; nothing was forced).\n\
                 see `cni-migrate status`; fix the cause, then: {resume_cmd}"
            );
            Ok(exit::FAILED)
        }
        Err(e) => Err(Failure {
            code: exit::FAILED,
            error: anyhow::Error::new(e).context(format!(
                "the run stopped; see `cni-migrate status`, then: {resume_cmd}"
            )),
        }),
    }
}

/// Rolls back one node, or every touched node newest first; stops at the first failure.
async fn rollback_nodes(
    runner: &Runner<'_>,
    node: Option<&str>,
    json: bool,
) -> Result<u8, Failure> {
    let nodes = match node {
        Some(n) => vec![n.to_owned()],
        None => runner.rollback_candidates().await,
    };
    if nodes.is_empty() {
        println!("no node was touched by the migration: nothing to roll back");
        return Ok(exit::OK);
    }
    let mut back = Vec::new();
    for n in &nodes {
        let end = runner.rollback(n).await.map_err(|e| Failure {
            code: exit::FAILED,
            error: anyhow::Error::new(e).context(format!("rolling back {n}")),
        })?;
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "rollback", "node": n, "result": match &end {
                    RollbackEnd::Done(_) => "done",
                    RollbackEnd::Nothing(_) => "nothing",
                    RollbackEnd::Failed { .. } => "failed",
                }, "message": match &end {
                    RollbackEnd::Done(m) | RollbackEnd::Nothing(m) => m.clone(),
                    RollbackEnd::Failed { step, reason } => format!("{step}: {reason}"),
                }})
            );
        }
        match end {
            RollbackEnd::Done(m) => {
                if !json {
                    println!("{n}: back on the old CNI: {m}");
                }
                back.push(n.clone());
            }
            RollbackEnd::Nothing(m) => println!("{m}"),
            RollbackEnd::Failed { step, reason } if step == "refused" => {
                return Err(Failure::bad_input(anyhow::anyhow!(reason)));
            }
            RollbackEnd::Failed { step, reason } => {
                eprintln!(
                    "error: rollback of {n} failed at {step}: {reason}\n\
                     the node is left as it is (cordoned); fix the cause and run the rollback again"
                );
                return Ok(exit::FAILED);
            }
        }
    }
    if !back.is_empty() {
        eprintln!(
            "rolled back {}; they are held: `cni-migrate resume --retry NODE` migrates one again",
            back.join(", ")
        );
    }
    Ok(exit::OK)
}

/// Retries a call while its error is retriable (at most 8 tries, backing off).
pub(crate) async fn retrying<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    mut f: F,
    retriable: fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retriable(&e) && attempt < 8 => {
                tracing::warn!(error = %e, "{what}: retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn print_summary(s: &runtime::Summary) {
    println!(
        "\nmigration finished: {} node(s) in {}s",
        s.nodes, s.seconds
    );
    if !s.node_seconds.is_empty() {
        let total: u64 = s.node_seconds.values().sum();
        let max = s.node_seconds.values().max().copied().unwrap_or(0);
        println!(
            "  per node: {}s on average, {max}s the longest",
            total / s.node_seconds.len() as u64
        );
    }
    let evicted: usize = s.evicted.values().sum();
    println!("  pods evicted by this run: {evicted}");
    for (pdb, secs) in &s.pdb_waits {
        println!("  waited {secs}s on PodDisruptionBudget {pdb}");
    }
    for w in &s.warnings {
        println!("  warning from the plan: {w}");
    }
}

/// JSON lines on stdout.
struct JsonLines;

impl Observer for JsonLines {
    fn event(&self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

fn plain_line(e: &Event) -> String {
    let what = match e.event {
        EventKind::RunStarted => "start",
        EventKind::NodeAdmitted => "admit",
        EventKind::StepStarted => "begin",
        EventKind::StepDone => "done",
        EventKind::StepFailed => "FAILED",
        EventKind::Retrying => "retry",
        EventKind::NodeDone => "node done",
        EventKind::Waiting => "wait",
        EventKind::Gate => "gate",
        EventKind::Paused => "paused",
        EventKind::Stopped => "stopped",
        EventKind::Finished => "finished",
    };
    let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(e.time));
    match &e.step {
        Some(step) => format!("{at} {what:<9} {step}: {}", e.message),
        None => format!("{at} {what:<9} {}", e.message),
    }
}

/// Plain lines on stdout.
struct Plain;

impl Observer for Plain {
    fn event(&self, e: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", plain_line(e));
        let _ = out.flush();
    }
}

/// Progress bars on a terminal: one for the nodes overall, one per node in flight.
struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    nodes: Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(total: usize) -> Self {
        let multi = indicatif::MultiProgress::new();
        let overall = multi.add(indicatif::ProgressBar::new(total as u64));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} nodes {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("migrated");
        Self {
            multi,
            overall,
            nodes: Mutex::new(std::collections::BTreeMap::new()),
        }
    }
}

impl Observer for Bars {
    fn event(&self, e: &Event) {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let node_bar = |nodes: &mut std::collections::BTreeMap<String, indicatif::ProgressBar>,
                        name: &str| {
            nodes
                .entry(name.to_owned())
                .or_insert_with(|| {
                    let b = self.multi.add(indicatif::ProgressBar::new_spinner());
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>12} {spinner} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(name.to_owned());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                })
                .clone()
        };
        match (&e.event, &e.node) {
            (EventKind::NodeDone, Some(n)) => {
                if let Some(b) = nodes.remove(n) {
                    b.finish_and_clear();
                }
                self.overall.inc(1);
                let _ = self.multi.println(plain_line(e));
            }
            (EventKind::StepStarted | EventKind::StepDone | EventKind::Retrying, Some(n)) => {
                let b = node_bar(&mut nodes, n);
                b.set_message(format!(
                    "{} {}",
                    e.kind.map(|k| k.as_str()).unwrap_or_default(),
                    e.message
                ));
            }
            (EventKind::NodeAdmitted, Some(n)) => {
                node_bar(&mut nodes, n).set_message(e.message.clone());
            }
            (EventKind::RunStarted, _) => {
                let _ = self.multi.println(plain_line(e));
            }
            _ => {
                self.overall.set_message(e.message.clone());
                let _ = self.multi.println(plain_line(e));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for b in self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            b.finish_and_clear();
        }
        self.overall.finish();
    }
}

/// `cni-migrate status`.
pub fn status(args: StatusArgs) -> Result<u8, Failure> {
    let state = args.state.location()?;
    let json = json_output(&args.output)?;
    crate::runtime()?.block_on(async {
        let (store, client) = open_store(&args.kube, &state).await?;
        let Some(ck) = store.load().await.map_err(Failure::other)? else {
            println!("no migration is recorded in {}", store.describe());
            return Ok(exit::OK);
        };
        let lock = match &client {
            Some(c) => lock_holder(c).await,
            None => None,
        };
        let mut report = StatusReport::new(&ck, lock);
        if let Some(c) = &client {
            report.managed = managed_pods(c).await;
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "summary": report,
                    "checkpoint": ck,
                }))
                .map_err(Failure::other)?
            );
        } else {
            print!("{}", report.text(&ck, &store.describe()));
        }
        Ok(exit::OK)
    })
}

/// How many pods off the host network Cilium manages (a CiliumEndpoint with the pod's IP), as
/// `cilium status` counts them. `None` when the cluster cannot be read.
async fn managed_pods(client: &kube::Client) -> Option<ManagedPods> {
    use cluster::Cluster as _;
    let c = cluster::KubeCluster::new(client.clone());
    let pods = c.pods(None, "").await.ok()?;
    let eps = c.cilium_endpoints().await.unwrap_or_default();
    let by_pod: std::collections::BTreeMap<(&str, &str), &cluster::EndpointInfo> = eps
        .iter()
        .map(|e| ((e.namespace.as_str(), e.name.as_str()), e))
        .collect();
    let mut out = ManagedPods::default();
    for p in pods.iter().filter(|p| {
        !p.host_network && !p.terminating && !p.phase.is_finished() && !p.pod_ips.is_empty()
    }) {
        out.total += 1;
        let managed = by_pod
            .get(&(p.namespace.as_str(), p.name.as_str()))
            .is_some_and(|e| p.pod_ips.iter().any(|ip| e.ips.contains(ip)));
        if managed {
            out.managed += 1;
        } else if out.unmanaged.len() < 10 {
            out.unmanaged.push(p.key());
        }
    }
    out.summary = format!("{}/{} pods managed by Cilium", out.managed, out.total);
    Some(out)
}

/// Pods off the host network and how many Cilium manages.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ManagedPods {
    /// `N/M pods managed by Cilium`.
    summary: String,
    managed: usize,
    total: usize,
    /// The first few it does not manage.
    unmanaged: Vec<String>,
}

/// The Lease's holder, when held: (`holder, renewed ...`, whether it is fresh).
async fn lock_holder(client: &kube::Client) -> Option<(String, bool)> {
    use kube::Api;
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), cluster::lease::LEASE_NAMESPACE);
    let lease = api.get_opt(cluster::lease::LEASE_NAME).await.ok()??;
    let spec = lease.spec?;
    let holder = spec.holder_identity.filter(|h| !h.is_empty())?;
    let duration = spec.lease_duration_seconds.unwrap_or(0);
    let (renewed, fresh) = match spec.renew_time {
        Some(t) => {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            let age_s = age.as_secs();
            (
                format!(", renewed {age_s}s ago"),
                age_s < i64::from(duration),
            )
        }
        None => (String::new(), false),
    };
    Some((format!("{holder}{renewed}"), fresh))
}

/// What `status` reports.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport {
    plan: String,
    run_id: String,
    state: String,
    lock: Option<String>,
    nodes: usize,
    done: Vec<String>,
    in_flight: Vec<(String, String)>,
    failed: Vec<(String, String)>,
    pending: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed: Option<ManagedPods>,
}

impl StatusReport {
    fn new(ck: &Checkpoint, lock: Option<(String, bool)>) -> Self {
        let mut done = Vec::new();
        let mut in_flight = Vec::new();
        let mut failed = Vec::new();
        let mut pending = 0;
        for (name, rec) in &ck.nodes {
            let states: Vec<StepState> = rec
                .states
                .chars()
                .map(|c| StepState::from_letter(c).unwrap_or(StepState::Pending))
                .collect();
            let step_name = |i: usize| {
                ck.chain
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("step {}", i + 1))
            };
            if rec.rolled_back.is_some() && states.iter().all(|s| *s == StepState::Pending) {
                in_flight.push((
                    name.clone(),
                    format!(
                        "rolled back to the old CNI; held until `cni-migrate resume --retry {name}`"
                    ),
                ));
            } else if let Some(i) = states.iter().position(|s| *s == StepState::Failed) {
                failed.push((
                    name.clone(),
                    format!(
                        "{} failed: {}",
                        step_name(i),
                        rec.message.clone().unwrap_or_default()
                    ),
                ));
            } else if !states.is_empty() && states.iter().all(|s| s.is_complete()) {
                done.push(name.clone());
            } else if let Some(i) = states.iter().position(|s| !s.is_complete())
                && states.iter().any(|s| *s != StepState::Pending)
            {
                let what = if states[i] == StepState::Running {
                    "running"
                } else {
                    "next"
                };
                in_flight.push((name.clone(), format!("{what}: {}", step_name(i))));
            } else {
                pending += 1;
            }
        }
        let all_global_done = ck.global.values().all(|g| g.state == "D" || g.state == "S");
        let state = if let Some(f) = &ck.failure {
            format!("stopped by a failure: {} failed: {}", f.step, f.reason)
        } else if let Some(g) = &ck.gate {
            format!("stopped at a gate: {g}")
        } else if ck.paused {
            "paused (no new node starts; `cni-migrate resume` goes on)".to_owned()
        } else if done.len() == ck.nodes.len() && all_global_done {
            "finished".to_owned()
        } else if lock.as_ref().is_some_and(|(_, fresh)| *fresh) {
            "running".to_owned()
        } else if lock.is_some() {
            "stopped: the run holding the lock stopped renewing it (crashed?); check it is gone, then \
             `cni-migrate resume --force-unlock`"
                .to_owned()
        } else {
            "stopped (no run holds the lock): `cni-migrate resume` goes on".to_owned()
        };
        Self {
            plan: ck.plan.clone(),
            run_id: ck.run_id.clone(),
            state,
            lock: lock.map(|(h, fresh)| if fresh { h } else { format!("{h} (stale)") }),
            nodes: ck.nodes.len(),
            done,
            in_flight,
            failed,
            pending,
            managed: None,
        }
    }

    fn text(&self, ck: &Checkpoint, store: &str) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let age = executor::runtime::unix_now().saturating_sub(ck.updated);
        let _ = writeln!(
            s,
            "migration {} (fingerprint {}), last run {}, checkpoint in {store}, updated {age}s ago",
            self.plan,
            ck.fingerprint.chars().take(12).collect::<String>(),
            self.run_id
        );
        let _ = writeln!(s, "state: {}", self.state);
        let _ = writeln!(s, "lock: {}", self.lock.as_deref().unwrap_or("free"));
        if let Some(m) = &self.managed {
            let _ = writeln!(
                s,
                "pods: {}{}",
                m.summary,
                if m.unmanaged.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (not managed: {}{})",
                        m.unmanaged.join(", "),
                        if m.total - m.managed > m.unmanaged.len() {
                            ", ..."
                        } else {
                            ""
                        }
                    )
                }
            );
        }
        let globals: Vec<String> = ck
            .global
            .iter()
            .map(|(id, g)| {
                let st = g
                    .state
                    .chars()
                    .next()
                    .and_then(StepState::from_letter)
                    .map(|s| format!("{s:?}").to_lowercase())
                    .unwrap_or_default();
                format!("{id} {st}")
            })
            .collect();
        let _ = writeln!(s, "cluster steps: {}", globals.join(", "));
        let _ = writeln!(
            s,
            "nodes: {} in all: {} done, {} in flight, {} failed, {} not started",
            self.nodes,
            self.done.len(),
            self.in_flight.len(),
            self.failed.len(),
            self.pending
        );
        for (n, why) in &self.failed {
            let _ = writeln!(s, "  FAILED     {n}: {why}");
        }
        for (n, what) in &self.in_flight {
            let _ = writeln!(s, "  in flight  {n}: {what}");
        }
        if self.done.len() <= 20 {
            for n in &self.done {
                let _ = writeln!(s, "  done       {n}");
            }
        }
        s
    }
}

/// `cni-migrate pause`: no new node is admitted; nodes in flight finish.
pub fn pause(args: StatusArgs) -> Result<u8, Failure> {
    let state = args.state.location()?;
    crate::runtime()?.block_on(async {
        let (store, _) = open_store(&args.kube, &state).await?;
        for _ in 0..10 {
            let Some(mut ck) = store.load().await.map_err(Failure::other)? else {
                return Err(Failure::bad_input(anyhow::anyhow!(
                    "nothing to pause: no migration is recorded in {}",
                    store.describe()
                )));
            };
            if ck.paused {
                println!("already paused");
                return Ok(exit::OK);
            }
            ck.paused = true;
            match store.save(&mut ck).await {
                Ok(()) => {
                    println!(
                        "paused: no new node starts; nodes in flight finish their steps. `cni-migrate resume` goes on"
                    );
                    return Ok(exit::OK);
                }
                Err(executor::checkpoint::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(Failure::other(e)),
            }
        }
        Err(Failure::other(anyhow::anyhow!(
            "the checkpoint kept changing under the pause; try again"
        )))
    })
}
