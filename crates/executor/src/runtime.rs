//! The run: drives a plan through the cluster, node by node, pipelined, writing the checkpoint
//! after every transition so that a run killed at any moment resumes exactly where it stopped.
//!
//! ```text
//! resume in-flight nodes ─┐
//! prelude (in order) ─────┴► loop: observe (node readiness, PDB budgets) ─► scheduler::decide
//!                                   ├─ admit: record prior state, then start the node's chain
//!                                   ├─ a node finishes: its slot frees at once (no waves)
//!                                   ├─ a node fails: no new admissions, in-flight nodes go on
//!                                   │  to the end of their chains (the safe point), exit 5
//!                                   └─ paused (by `cni-migrate pause`): the same, exit 4
//! finale (in order) ─► Finished, with a summary
//! ```
//!
//! Every step is *observe, act, wait* (see [`crate::steps`]), so re-running a step that was
//! `Running` when the process died is safe. Intent is written before effects: a node's prior
//! state is in the checkpoint before it is cordoned, the agent UIDs before the label goes on.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cluster::Cluster;
use futures::{StreamExt as _, stream::FuturesUnordered};
use planner::{
    Plan, Severity, Step, StepKind,
    plan::{NODE_CONFIG_NAME, Phase},
};
use serde::Serialize;
use tokio::{sync::Mutex, time::Instant};

mod rollback;
mod verify;

pub use rollback::RollbackEnd;

use crate::{
    agent,
    checkpoint::{
        Checkpoint, CheckpointError, FailureRecord, NodeRecord, StepIndex, StepState, StoreError,
    },
    drain::{self, DrainOptions},
    scheduler::{self, Observations},
    steps::{self, StepError, cl},
    store::StateStore,
};

/// How long things wait and how often they look. Real runs use [`Timing::real`]; tests against
/// the simulated cluster use [`Timing::fast`].
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often waits (agent Ready, node Ready, Helm rollouts) look again.
    pub poll: Duration,
    /// Pause between evictions a PDB refused (kubectl: 5 s).
    pub drain_retry: Duration,
    /// How often a drain looks for evicted pods being gone.
    pub drain_poll: Duration,
    /// How often the scheduler looks again when nothing finished.
    pub tick: Duration,
    /// How often the checkpoint is re-read for a `pause` from another machine.
    pub pause_check: Duration,
    /// First pause before retrying a step that failed for a retriable reason.
    pub retry_base: Duration,
    /// Longest pause between retries.
    pub retry_max: Duration,
    /// How long a step keeps retrying retriable failures before it fails.
    pub retry_budget: Duration,
    /// How long a restarted agent may take to be Ready.
    pub agent_timeout: Duration,
    /// How long Cilium may take to be installed or upgraded after Helm returns.
    pub install_timeout: Duration,
    /// How long a passing re-check of the migrated nodes stands for the admissions after it
    /// (three LISTs of every node, CiliumNode and agent per admission would be quadratic at
    /// 5,000 nodes); a regression is looked at again every tick.
    pub recheck_every: Duration,
    /// How often the re-check before an admission also lists every pod (to see that pods
    /// scheduled on migrated nodes since get new-pool IPs); the other signals are re-checked
    /// before every admission.
    pub recheck_pods: Duration,
    /// How long a regression on a migrated node may last before the run stops (an agent pod
    /// being replaced is not a regression); no node is admitted meanwhile.
    pub regression_grace: Duration,
}

impl Timing {
    /// The pacing of a real cluster.
    pub fn real() -> Self {
        Self {
            poll: Duration::from_secs(2),
            drain_retry: Duration::from_secs(5),
            drain_poll: Duration::from_secs(1),
            tick: Duration::from_secs(2),
            pause_check: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            retry_budget: Duration::from_secs(300),
            agent_timeout: Duration::from_secs(300),
            install_timeout: Duration::from_secs(600),
            recheck_every: Duration::from_secs(20),
            recheck_pods: Duration::from_secs(60),
            regression_grace: Duration::from_secs(30),
        }
    }

    /// The pacing for the simulated cluster, whose pods start in milliseconds.
    pub fn fast() -> Self {
        Self {
            poll: Duration::from_millis(50),
            drain_retry: Duration::from_millis(200),
            drain_poll: Duration::from_millis(50),
            tick: Duration::from_millis(100),
            pause_check: Duration::from_millis(200),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            retry_budget: Duration::from_secs(60),
            agent_timeout: Duration::from_secs(10),
            install_timeout: Duration::from_secs(60),
            recheck_every: Duration::ZERO,
            recheck_pods: Duration::ZERO,
            regression_grace: Duration::from_millis(300),
        }
    }
}

/// Where a test asks the process to kill itself (SIGKILL), to prove resumption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashPoint {
    /// The step id.
    pub step: String,
    /// Right after the checkpoint records this state for it.
    pub state: StepState,
}

impl std::str::FromStr for CrashPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (step, when) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("crash point `{s}`: expected STEP@started or STEP@done"))?;
        let state = match when {
            "started" => StepState::Running,
            "done" => StepState::Done,
            other => {
                return Err(format!(
                    "crash point `{s}`: `{other}` is not started or done"
                ));
            }
        };
        Ok(Self {
            step: step.to_owned(),
            state,
        })
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// This run's identity, `run-id@host`.
    pub run_id: String,
    /// The Helm command line (`helm`, or `cni-migrate sim helm`); `None` stops at gates.
    pub helm: Option<Vec<String>>,
    /// Appended to every Helm command (`--kubeconfig F`, `--kube-context C`).
    pub helm_extra: Vec<String>,
    /// Where the values files for Helm are written.
    pub work_dir: PathBuf,
    /// Pacing.
    pub timing: Timing,
    /// Stop at a gate before the finale (the old CNI stays until `resume`).
    pub stop_before_finalize: bool,
    /// Record a Kubernetes Event on the Node for each transition.
    pub node_events: bool,
    /// Test hook: kill the process at this point.
    pub crash_at: Option<CrashPoint>,
}

/// What happened, for the terminal, JSON lines and Node events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The run started or resumed.
    RunStarted,
    /// A node was admitted.
    NodeAdmitted,
    /// A step started.
    StepStarted,
    /// A step finished.
    StepDone,
    /// A step failed.
    StepFailed,
    /// A step hit a retriable error and will try again.
    Retrying,
    /// Every step of a node is done.
    NodeDone,
    /// Nothing can be admitted now, and why.
    Waiting,
    /// The run stopped at a gate.
    Gate,
    /// The run stopped because it was paused.
    Paused,
    /// The run stopped because of a failure.
    Stopped,
    /// Every step is done.
    Finished,
}

/// One event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unix seconds.
    pub time: u64,
    /// What.
    pub event: EventKind,
    /// The node, for node events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The step id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The step kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<StepKind>,
    /// What was seen or done.
    pub message: String,
}

/// Receives the run's events.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);
}

/// An observer that drops everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Event) {}
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step is done.
    Finished(Summary),
    /// Stopped at a gate: something outside the tool must happen, then `resume`.
    Gate {
        /// The step.
        step: String,
        /// What to do.
        message: String,
    },
    /// Paused: in-flight nodes finished, no new ones started.
    Paused,
    /// A step failed; admissions stopped and in-flight nodes reached a safe point.
    Failed {
        /// The step id.
        step: String,
        /// Its node.
        node: Option<String>,
        /// Why.
        reason: String,
    },
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Nodes migrated.
    pub nodes: usize,
    /// Seconds from the first step to the last, of this run and any it resumed.
    pub seconds: u64,
    /// Per node: seconds from its first step's start to its last step's finish.
    pub node_seconds: BTreeMap<String, u64>,
    /// Pods evicted by this process, per node.
    pub evicted: BTreeMap<String, usize>,
    /// Seconds spent waiting on each PDB by this process.
    pub pdb_waits: BTreeMap<String, u64>,
    /// Milliseconds spent waiting on each PDB by this process.
    pub pdb_wait_ms: BTreeMap<String, u64>,
    /// The pods this process evicted, per node (`namespace/name`).
    pub evicted_pods: BTreeMap<String, Vec<String>>,
    /// The plan's warnings, by code.
    pub warnings: Vec<String>,
}

/// Why a run could not go on at all (distinct from a step failing, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The checkpoint refused a transition (a bug, or a checkpoint edited by hand).
    #[error("the checkpoint refused a transition")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint could not be written.
    #[error("cannot write the checkpoint")]
    Store(#[from] StoreError),
    /// Another run took over the checkpoint.
    #[error("another run ({0}) wrote the checkpoint: this run stops; check `cni-migrate status`")]
    Superseded(String),
    /// The Lease was lost.
    #[error("the lock was lost; stopping without admitting more nodes: {0}")]
    LockLost(String),
}

/// What a step's execution came to.
enum Done {
    /// Its effect holds; what was done or seen.
    Done(String),
    /// It needs a human: stop at a gate with this message.
    Gate(String),
}

/// Counters for the summary.
#[derive(Default)]
struct Stats {
    evicted: BTreeMap<String, usize>,
    evicted_pods: BTreeMap<String, Vec<String>>,
    pdb_waits: BTreeMap<String, Duration>,
}

/// The run of one plan.
pub struct Runner<'a> {
    plan: &'a Plan,
    index: StepIndex<'a>,
    cluster: Arc<dyn Cluster>,
    store: &'a dyn StateStore,
    cfg: RunConfig,
    observer: &'a dyn Observer,
    ck: Mutex<Checkpoint>,
    lock_lost: Arc<AtomicBool>,
    start: Instant,
    base: u64,
    stats: std::sync::Mutex<Stats>,
    ignore_preflight: bool,
    /// Held while beacons are placed or moved (nodes verify concurrently).
    beacons: Mutex<()>,
    recheck: std::sync::Mutex<Recheck>,
}

/// The re-check's memory between admissions.
#[derive(Default)]
struct Recheck {
    /// When every pod was last listed.
    pods_listed: Option<Instant>,
    /// When the last re-check found nothing.
    passed: Option<Instant>,
    /// Regressions seen, by `node: signal`, with when they were first seen.
    suspects: BTreeMap<String, Instant>,
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<'a> Runner<'a> {
    /// A runner over a checkpoint (new, or loaded and checked against the plan by the caller).
    /// `lock_lost` is raised by whoever renews the Lease when it is lost.
    pub fn new(
        plan: &'a Plan,
        cluster: Arc<dyn Cluster>,
        store: &'a dyn StateStore,
        checkpoint: Checkpoint,
        cfg: RunConfig,
        observer: &'a dyn Observer,
        lock_lost: Arc<AtomicBool>,
    ) -> Self {
        Self {
            plan,
            index: StepIndex::new(plan),
            cluster,
            store,
            cfg,
            observer,
            ck: Mutex::new(checkpoint),
            lock_lost,
            start: Instant::now(),
            base: unix_now(),
            stats: std::sync::Mutex::new(Stats::default()),
            ignore_preflight: false,
            beacons: Mutex::new(()),
            recheck: std::sync::Mutex::new(Recheck::default()),
        }
    }

    /// For rehearsals only: go on past preflight errors, to show what they lead to.
    #[must_use]
    pub fn ignoring_preflight(mut self) -> Self {
        self.ignore_preflight = true;
        self
    }

    /// Unix seconds on the run's clock (tokio's, so a paused test clock drives it too).
    fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_secs()
    }

    fn emit(&self, event: EventKind, step: Option<&Step>, node: Option<&str>, message: String) {
        self.observer.event(&Event {
            time: self.now(),
            event,
            node: node
                .map(str::to_owned)
                .or_else(|| step.and_then(|s| s.node.clone())),
            step: step.map(|s| s.id.clone()),
            kind: step.map(|s| s.kind),
            message,
        });
    }

    async fn node_event(&self, step: &Step, reason: &str, message: &str, warning: bool) {
        if !self.cfg.node_events || step.phase != Phase::Node {
            return;
        }
        if let Some(node) = &step.node
            && let Err(e) = self
                .cluster
                .node_event(node, reason, message, warning)
                .await
        {
            tracing::debug!(node, error = %e, "cannot record an event on the node");
        }
    }

    /// A copy of the checkpoint as it is now.
    pub async fn checkpoint(&self) -> Checkpoint {
        self.ck.lock().await.clone()
    }

    /// Saves under the checkpoint's lock, merging a `pause` written by another process and
    /// retrying the store's retriable failures.
    async fn save(&self, ck: &mut Checkpoint) -> Result<(), RunError> {
        let deadline = Instant::now() + self.cfg.timing.retry_budget;
        let mut delay = self.cfg.timing.retry_base;
        loop {
            let r = self.store.save(ck).await;
            tracing::debug!(result = ?r.as_ref().map_err(ToString::to_string), "runner save");
            match r {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    let stored = self.load_retrying().await?;
                    let Some(stored) = stored else {
                        // Deleted under us: write ours again from scratch.
                        ck.generation = 0;
                        continue;
                    };
                    if stored.run_id != ck.run_id {
                        return Err(RunError::Superseded(stored.run_id));
                    }
                    ck.paused = stored.paused;
                    ck.generation = stored.generation;
                }
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::warn!(error = %e, "checkpoint write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.timing.retry_max);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn load_retrying(&self) -> Result<Option<Checkpoint>, RunError> {
        let deadline = Instant::now() + self.cfg.timing.retry_budget;
        let mut delay = self.cfg.timing.retry_base;
        loop {
            match self.store.load().await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.timing.retry_max);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn maybe_crash(&self, step: &Step, state: StepState) {
        if let Some(c) = &self.cfg.crash_at
            && c.step == step.id
            && c.state == state
        {
            eprintln!("test hook: killing this process at {}", step.id);
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    async fn transition(
        &self,
        step: &Step,
        to: StepState,
        message: Option<String>,
    ) -> Result<(), RunError> {
        let mut ck = self.ck.lock().await;
        ck.transition(&self.index, &step.id, to, self.now(), message)?;
        self.save(&mut ck).await?;
        drop(ck);
        self.maybe_crash(step, to);
        Ok(())
    }

    fn state(&self, ck: &Checkpoint, step: &Step) -> StepState {
        ck.state(&self.index, &step.id)
            .unwrap_or(StepState::Pending)
    }

    /// Runs the plan from wherever the checkpoint is.
    ///
    /// # Errors
    /// [`RunError`] when the checkpoint cannot be kept or the lock is lost; a failing step is
    /// an [`Outcome::Failed`], not an error.
    pub async fn run(&self) -> Result<Outcome, RunError> {
        {
            let mut ck = self.ck.lock().await;
            ck.run_id.clone_from(&self.cfg.run_id);
            ck.failure = None;
            ck.gate = None;
            ck.paused = false;
            self.save(&mut ck).await?;
        }
        let done = {
            let ck = self.ck.lock().await;
            self.plan
                .nodes
                .iter()
                .filter(|n| scheduler::node_done(&ck, &n.name))
                .count()
        };
        self.emit(
            EventKind::RunStarted,
            None,
            None,
            format!(
                "run {} of plan {} ({} nodes, {done} done; at most {} in flight)",
                self.cfg.run_id,
                self.plan.name,
                self.plan.nodes.len(),
                self.plan.summary.max_in_flight
            ),
        );

        for step in self.plan.steps.iter().filter(|s| s.phase == Phase::Prelude) {
            if let Some(stop) = self.run_global(step).await? {
                return Ok(stop);
            }
        }
        if let Some(stop) = self.run_nodes().await? {
            return Ok(stop);
        }
        self.remove_beacons().await;
        for step in self.plan.steps.iter().filter(|s| s.phase == Phase::Finale) {
            if step.kind == StepKind::FinalValues && self.cfg.stop_before_finalize {
                let state = self.state(&*self.ck.lock().await, step);
                if !state.is_complete() {
                    let message = "every node is migrated; stopped before the finale as asked \
                                   (--stop-before finalize): soak the cluster, then `cni-migrate resume` \
                                   finalizes (final Helm values, CiliumNodeConfig deleted, old CNI removed)"
                        .to_owned();
                    return self.gate_outcome(step, message).await;
                }
            }
            if let Some(stop) = self.run_global(step).await? {
                return Ok(stop);
            }
        }
        let summary = self.summary().await;
        self.emit(
            EventKind::Finished,
            None,
            None,
            format!(
                "migration finished: {} nodes in {}s",
                summary.nodes, summary.seconds
            ),
        );
        Ok(Outcome::Finished(summary))
    }

    async fn gate(&self, step: &Step, message: String) -> Result<Option<Outcome>, RunError> {
        Ok(Some(self.gate_outcome(step, message).await?))
    }

    async fn gate_outcome(&self, step: &Step, message: String) -> Result<Outcome, RunError> {
        let mut ck = self.ck.lock().await;
        ck.gate = Some(format!("{}: {message}", step.id));
        self.save(&mut ck).await?;
        drop(ck);
        self.emit(EventKind::Gate, Some(step), None, message.clone());
        Ok(Outcome::Gate {
            step: step.id.clone(),
            message,
        })
    }

    /// What this process did so far (also after a failure or a gate).
    pub async fn summary(&self) -> Summary {
        let ck = self.ck.lock().await.clone();
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut node_seconds = BTreeMap::new();
        let mut last = 0u32;
        for (name, rec) in &ck.nodes {
            if let Some((first, end)) = rec.span() {
                last = last.max(end);
                node_seconds.insert(name.clone(), u64::from(end - first));
            }
        }
        for g in ck.global.values() {
            last = last.max(g.finished.unwrap_or(0));
        }
        Summary {
            nodes: ck
                .nodes
                .keys()
                .filter(|n| scheduler::node_done(&ck, n))
                .count(),
            seconds: u64::from(last),
            node_seconds,
            evicted: stats.evicted.clone(),
            evicted_pods: stats.evicted_pods.clone(),
            pdb_wait_ms: stats
                .pdb_waits
                .iter()
                .map(|(k, v)| (k.clone(), u64::try_from(v.as_millis()).unwrap_or(u64::MAX)))
                .collect(),
            pdb_waits: stats
                .pdb_waits
                .iter()
                .map(|(k, v)| (k.clone(), v.as_secs()))
                .collect(),
            warnings: self
                .plan
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .map(|f| format!("{}: {}", f.code, f.message))
                .collect(),
        }
    }

    /// A prelude or finale step. `Some` when the run must stop.
    async fn run_global(&self, step: &Step) -> Result<Option<Outcome>, RunError> {
        match self.run_step(step).await? {
            StepEnd::Done => Ok(None),
            StepEnd::Gate(message) => self.gate(step, message).await,
            StepEnd::Failed(reason) => Ok(Some(Outcome::Failed {
                step: step.id.clone(),
                node: None,
                reason,
            })),
        }
    }

    /// Runs one step to its end: skipped when the checkpoint has it done, retried while its
    /// failures are retriable and the retry budget lasts, recorded at every transition.
    async fn run_step(&self, step: &Step) -> Result<StepEnd, RunError> {
        let state = self.state(&*self.ck.lock().await, step);
        if state.is_complete() {
            return Ok(StepEnd::Done);
        }
        if state != StepState::Running {
            self.transition(step, StepState::Running, None).await?;
        }
        self.emit(
            EventKind::StepStarted,
            Some(step),
            None,
            step.description.clone(),
        );
        self.node_event(step, "MigrationStepStarted", &step.description, false)
            .await;
        let deadline = Instant::now() + self.cfg.timing.retry_budget;
        let mut delay = self.cfg.timing.retry_base;
        loop {
            if self.lock_lost.load(Ordering::SeqCst) {
                return Err(RunError::LockLost(format!(
                    "step {} was under way and is left Running; resume re-runs it",
                    step.id
                )));
            }
            match self.execute(step).await {
                Ok(Done::Done(detail)) => {
                    self.transition(step, StepState::Done, None).await?;
                    self.emit(EventKind::StepDone, Some(step), None, detail.clone());
                    self.node_event(step, "MigrationStepDone", &detail, false)
                        .await;
                    return Ok(StepEnd::Done);
                }
                Ok(Done::Gate(message)) => return Ok(StepEnd::Gate(message)),
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    self.emit(
                        EventKind::Retrying,
                        Some(step),
                        None,
                        format!("{}; retrying in {}ms", chain(&e), delay.as_millis()),
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.timing.retry_max);
                }
                Err(e) => {
                    let reason = chain(&e);
                    let mut ck = self.ck.lock().await;
                    ck.transition(
                        &self.index,
                        &step.id,
                        StepState::Failed,
                        self.now(),
                        Some(reason.clone()),
                    )?;
                    if ck.failure.is_none() {
                        ck.failure = Some(FailureRecord {
                            step: step.id.clone(),
                            reason: reason.clone(),
                            at: u32::try_from(self.now().saturating_sub(ck.created))
                                .unwrap_or(u32::MAX),
                        });
                    }
                    self.save(&mut ck).await?;
                    drop(ck);
                    self.emit(EventKind::StepFailed, Some(step), None, reason.clone());
                    self.node_event(step, "MigrationStepFailed", &reason, true)
                        .await;
                    return Ok(StepEnd::Failed(reason));
                }
            }
        }
    }

    /// The node phase. `Some` when the run must stop.
    ///
    /// The node chains run as futures of this one task, so every wait of the scheduler itself
    /// goes through [`drive`], which keeps polling them meanwhile: a chain holding the
    /// checkpoint's lock across a slow write must never wait on a scheduler that waits on it.
    async fn run_nodes(&self) -> Result<Option<Outcome>, RunError> {
        let mut in_flight = FuturesUnordered::new();
        let mut finished: Vec<(String, Result<(), RunError>)> = Vec::new();
        let mut running: BTreeSet<String> = BTreeSet::new();
        // Nodes a crashed or stopped run left half-way go first: they hold their slots.
        {
            let ck = self.ck.lock().await.clone();
            for n in &self.plan.nodes {
                if scheduler::node_in_flight(&ck, &n.name) {
                    running.insert(n.name.clone());
                    self.emit(
                        EventKind::NodeAdmitted,
                        None,
                        Some(&n.name),
                        format!("resuming {} where it stopped", n.name),
                    );
                    in_flight.push(self.run_node_owned(n.name.clone()));
                }
            }
        }
        let mut last_wait = String::new();
        let mut last_pause_check = Instant::now();
        loop {
            for (node, result) in finished.drain(..) {
                running.remove(&node);
                result?;
            }
            if self.lock_lost.load(Ordering::SeqCst) {
                return Err(RunError::LockLost(
                    "no node was admitted after the lock was lost".into(),
                ));
            }
            if last_pause_check.elapsed() >= self.cfg.timing.pause_check {
                last_pause_check = Instant::now();
                drive(&mut in_flight, &mut finished, self.check_pause()).await?;
            }
            let ck = drive(&mut in_flight, &mut finished, async {
                self.ck.lock().await.clone()
            })
            .await;
            for (node, _) in &finished {
                running.remove(node);
            }
            let all_done = self
                .plan
                .nodes
                .iter()
                .all(|n| scheduler::node_done(&ck, &n.name));
            if in_flight.is_empty() && finished.is_empty() {
                if let Some(f) = &ck.failure {
                    let node = self.index.node_step(&f.step).map(|(n, _)| n);
                    self.emit(
                        EventKind::Stopped,
                        None,
                        node.as_deref(),
                        format!(
                            "stopped: {} failed: {}; no new node was started after it",
                            f.step, f.reason
                        ),
                    );
                    return Ok(Some(Outcome::Failed {
                        step: f.step.clone(),
                        node,
                        reason: f.reason.clone(),
                    }));
                }
                if ck.paused {
                    self.emit(
                        EventKind::Paused,
                        None,
                        None,
                        "paused: nodes in flight finished, no new node started; `cni-migrate resume` goes on".into(),
                    );
                    return Ok(Some(Outcome::Paused));
                }
                if all_done {
                    return Ok(None);
                }
                // Rolled-back nodes wait for `resume --retry`: stop once they are all that is
                // left, or at once when a canary was rolled back.
                let left: Vec<&str> = self
                    .plan
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| !scheduler::node_done(&ck, n))
                    .collect();
                let held: Vec<&str> = left
                    .iter()
                    .copied()
                    .filter(|n| scheduler::held(&ck, n))
                    .collect();
                let canary_held = self
                    .plan
                    .nodes
                    .iter()
                    .any(|n| n.canary && scheduler::held(&ck, &n.name));
                if !held.is_empty() && (held.len() == left.len() || canary_held) {
                    let step = self
                        .plan
                        .steps
                        .iter()
                        .find(|s| s.kind == StepKind::FinalValues)
                        .unwrap_or(&self.plan.steps[0]);
                    let message = format!(
                        "node(s) {} were rolled back and wait: `cni-migrate resume --retry {}` migrates them again",
                        held.join(", "),
                        held.join(" --retry ")
                    );
                    return Ok(Some(self.gate_outcome(step, message).await?));
                }
            }
            let limit = self.plan.summary.max_in_flight.max(1);
            let free = limit.saturating_sub(running.len());
            if free > 0 && ck.failure.is_none() && !ck.paused && !all_done {
                // Observations only ever remove candidates: when the plan and checkpoint alone
                // admit nothing (soaking, a canary in flight), spare the API the reads.
                let unobserved =
                    scheduler::decide(self.plan, &ck, &Observations::default(), self.now());
                // Before a new node starts, the migrated ones must still hold up.
                let held = if unobserved.admit.is_empty() {
                    None
                } else {
                    drive(&mut in_flight, &mut finished, self.recheck(&ck)).await?
                };
                let decision = if unobserved.admit.is_empty() {
                    unobserved
                } else if let Some(why) = held {
                    scheduler::Admission {
                        admit: Vec::new(),
                        waiting: Vec::new(),
                        not_before: None,
                        stopped: Some(why),
                    }
                } else {
                    let obs = drive(
                        &mut in_flight,
                        &mut finished,
                        self.observe(&ck, &running, free),
                    )
                    .await;
                    scheduler::decide(self.plan, &ck, &obs, self.now())
                };
                let mut admitted = false;
                for node in decision.admit {
                    if running.contains(&node) {
                        continue;
                    }
                    if running.len() >= limit {
                        break;
                    }
                    if !drive(&mut in_flight, &mut finished, self.admit(&node)).await? {
                        continue;
                    }
                    running.insert(node.clone());
                    in_flight.push(self.run_node_owned(node));
                    admitted = true;
                }
                if !admitted && in_flight.is_empty() {
                    let why = decision
                        .stopped
                        .clone()
                        .or_else(|| {
                            decision.not_before.map(|t| {
                                format!(
                                    "soaking after the canaries: the next node starts in {}s",
                                    t.saturating_sub(self.now())
                                )
                            })
                        })
                        .unwrap_or_else(|| {
                            decision
                                .waiting
                                .iter()
                                .map(|(n, w)| format!("{n}: {w}"))
                                .collect::<Vec<_>>()
                                .join("; ")
                        });
                    if why != last_wait && !why.is_empty() {
                        self.emit(EventKind::Waiting, None, None, why.clone());
                        last_wait = why;
                    }
                }
            }
            // Wait for a node to finish, or a tick; the chains go on either way.
            let tick = tokio::time::sleep(self.cfg.timing.tick);
            tokio::pin!(tick);
            if in_flight.is_empty() {
                tick.await;
            } else {
                tokio::select! {
                    r = in_flight.next() => {
                        if let Some(r) = r {
                            finished.push(r);
                        }
                    }
                    () = &mut tick => {}
                }
            }
        }
    }

    /// Picks up a `pause` another process wrote into the checkpoint.
    async fn check_pause(&self) -> Result<(), RunError> {
        let stored = match self.store.load().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot re-read the checkpoint for a pause");
                return Ok(());
            }
        };
        let Some(stored) = stored else {
            return Ok(());
        };
        let mut ck = self.ck.lock().await;
        if stored.run_id != ck.run_id {
            return Err(RunError::Superseded(stored.run_id));
        }
        if stored.generation > ck.generation {
            if stored.paused && !ck.paused {
                self.emit(
                    EventKind::Waiting,
                    None,
                    None,
                    "pause requested: no new node starts; nodes in flight finish".into(),
                );
            }
            ck.paused = stored.paused;
            ck.generation = stored.generation;
        }
        Ok(())
    }

    /// What the scheduler needs: budgets and node readiness for the next candidates only (one
    /// GET per candidate, not a LIST of every node per tick).
    async fn observe(
        &self,
        ck: &Checkpoint,
        running: &BTreeSet<String>,
        free: usize,
    ) -> Observations {
        let mut obs = Observations::default();
        for n in &self.plan.nodes {
            obs.node_pdbs.insert(n.name.clone(), n.pdbs.clone());
        }
        let needs_budgets = self.plan.nodes.iter().any(|n| !n.pdbs.is_empty());
        if needs_budgets {
            match self.cluster.pdbs().await {
                Ok(pdbs) => {
                    for p in pdbs {
                        obs.pdb_allowed.insert(
                            format!("{}/{}", p.namespace, p.name),
                            p.disruptions_allowed.unwrap_or(0),
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list PDBs; admitting without budgets")
                }
            }
        }
        let mut ready_found = 0;
        let wanted = free + 1;
        let candidates = self.plan.nodes.iter().filter(|n| {
            !running.contains(&n.name)
                && !scheduler::node_done(ck, &n.name)
                && !scheduler::node_in_flight(ck, &n.name)
        });
        for n in candidates {
            if ready_found >= wanted {
                break;
            }
            match self.cluster.node(&n.name).await {
                Ok(Some(info)) if info.ready => ready_found += 1,
                Ok(_) => {
                    obs.not_ready.insert(n.name.clone());
                }
                Err(e) => {
                    tracing::debug!(node = %n.name, error = %e, "cannot read node; not admitting it now");
                    obs.not_ready.insert(n.name.clone());
                }
            }
        }
        obs
    }

    /// Records the node's prior state before anything changes on it (only the first time).
    /// `false` when it cannot be observed now: the node is not admitted (a guess could make the
    /// tool uncordon a node someone else cordoned).
    async fn admit(&self, node: &str) -> Result<bool, RunError> {
        let recorded = self.ck.lock().await.prior(node).is_some();
        let mut message = format!("admitted {node}");
        if !recorded {
            let deadline = Instant::now() + self.cfg.timing.retry_budget;
            let mut delay = self.cfg.timing.retry_base;
            let prior = loop {
                match steps::observe_prior(&*self.cluster, node).await {
                    Ok(p) => break p,
                    Err(e) if e.is_retriable() && Instant::now() < deadline => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.cfg.timing.retry_max);
                    }
                    Err(e) => {
                        self.emit(
                            EventKind::Waiting,
                            None,
                            Some(node),
                            format!(
                                "not admitting {node}: cannot observe its state ({})",
                                chain(&e)
                            ),
                        );
                        return Ok(false);
                    }
                }
            };
            if prior.cordoned {
                message.push_str(" (cordoned before the migration: it stays cordoned)");
            }
            let mut ck = self.ck.lock().await;
            ck.record_prior(node, &prior);
            self.save(&mut ck).await?;
        }
        self.emit(EventKind::NodeAdmitted, None, Some(node), message);
        Ok(true)
    }

    async fn run_node_owned(&self, node: String) -> (String, Result<(), RunError>) {
        let r = self.run_node_inner(&node).await;
        (node, r)
    }

    async fn run_node_inner(&self, node: &str) -> Result<(), RunError> {
        if self.ck.lock().await.prior(node).is_none() && !self.admit(node).await? {
            return Ok(());
        }
        let chain: Vec<&Step> = self.plan.node_steps(node).collect();
        for step in &chain {
            match self.run_step(step).await? {
                StepEnd::Done => {}
                // Node steps have no gates; a failure is recorded and stops admissions.
                StepEnd::Gate(_) | StepEnd::Failed(_) => return Ok(()),
            }
        }
        let ck = self.ck.lock().await.clone();
        let secs = ck
            .nodes
            .get(node)
            .and_then(NodeRecord::span)
            .map_or(0, |(first, last)| last - first);
        self.emit(
            EventKind::NodeDone,
            None,
            Some(node),
            format!("{node} migrated in {secs}s"),
        );
        Ok(())
    }

    /// Executes one step: observe, act, wait.
    async fn execute(&self, step: &Step) -> Result<Done, StepError> {
        let c = &*self.cluster;
        let spec = &self.plan.spec;
        let node = step.node.as_deref().unwrap_or_default();
        match step.kind {
            StepKind::Preflight => {
                let errors: Vec<String> = self
                    .plan
                    .findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| f.code.to_string())
                    .collect();
                if !errors.is_empty() && self.ignore_preflight {
                    return Ok(Done::Done(format!(
                        "preflight errors {} ignored for this rehearsal: a real run stops here",
                        errors.join(", ")
                    )));
                }
                if errors.is_empty() {
                    Ok(Done::Done(format!(
                        "no error findings ({} warnings)",
                        self.plan.summary.warnings
                    )))
                } else {
                    Err(StepError::Verify {
                        node: "cluster".into(),
                        reason: format!("preflight found errors: {}", errors.join(", ")),
                    })
                }
            }
            StepKind::PatchAwsNode => crate::eks::patch_aws_node(
                c,
                spec.target.mode,
                self.cfg.timing.agent_timeout,
                self.cfg.timing.poll,
            )
            .await
            .map(Done::Done),
            StepKind::StopAwsNode => crate::eks::stop_aws_node(
                c,
                node,
                &spec.rollout.verify.image,
                self.cfg.timing.agent_timeout,
                self.cfg.timing.poll,
            )
            .await
            .map(Done::Done),
            StepKind::RestartUnmanagedPods => {
                let mut opts = DrainOptions::from_spec(&spec.rollout.drain);
                opts.retry_delay = self.cfg.timing.drain_retry;
                opts.poll = self.cfg.timing.drain_poll;
                opts.node_check = self.cfg.timing.poll.max(self.cfg.timing.drain_poll);
                // The agent must be Ready on the node first, or the replacements would start
                // unmanaged again.
                let uids = self.agent_uids(node).await;
                self.wait_verified(node, &uids).await?;
                let ranges = self.pool().await?;
                let report = crate::eks::restart_unmanaged(c, node, &opts, &ranges).await?;
                self.count_evictions(node, &report.evicted, &report.pdb_waits);
                Ok(Done::Done(if report.evicted.is_empty() {
                    format!("every pod on {node} off the host network is managed by Cilium")
                } else {
                    format!(
                        "restarted {} pod(s) Cilium did not manage: {}",
                        report.evicted.len(),
                        report.evicted.join(", ")
                    )
                }))
            }
            StepKind::CiliumInstalled => {
                let expected = planner::values::migration_config(spec);
                self.helm_step(
                    &expected,
                    "values-migration.yaml",
                    &self.plan.artifacts.values_migration,
                    "Cilium in migration mode",
                    false,
                )
                .await
            }
            StepKind::NodeConfig => {
                let object = planner::values::node_config_object(spec);
                let api_version = object["apiVersion"].as_str().unwrap_or("cilium.io/v2");
                let existing = c
                    .custom(
                        api_version,
                        "ciliumnodeconfigs",
                        Some("kube-system"),
                        NODE_CONFIG_NAME,
                    )
                    .await
                    .map_err(cl("reading the CiliumNodeConfig"))?;
                if let Some(e) = existing
                    && e.object["spec"] == object["spec"]
                {
                    return Ok(Done::Done(format!(
                        "CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} is in place"
                    )));
                }
                steps::apply_node_config(c, &object).await.map(Done::Done)
            }
            StepKind::Cordon => steps::cordon(c, node).await.map(Done::Done),
            StepKind::Drain => {
                let mut opts = DrainOptions::from_spec(&spec.rollout.drain);
                opts.retry_delay = self.cfg.timing.drain_retry;
                opts.poll = self.cfg.timing.drain_poll;
                opts.node_check = self.cfg.timing.poll.max(self.cfg.timing.drain_poll);
                // A beacon on the node moves elsewhere when it is next needed.
                crate::probe::remove_on_node(c, node, None).await?;
                let report = match drain::drain(c, node, &opts).await {
                    Ok(r) => r,
                    Err(e) => {
                        // What a failed drain did evict still counts in the summary.
                        if let drain::DrainError::Timeout { evicted, .. } = &e {
                            self.count_evictions(node, evicted, &BTreeMap::new());
                        }
                        return Err(e.into());
                    }
                };
                self.count_evictions(node, &report.evicted, &report.pdb_waits);
                let waits = if report.pdb_waits.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; waited on {}",
                        report
                            .pdb_waits
                            .iter()
                            .map(|(p, d)| format!("PDB {p} {}s", d.as_secs()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                Ok(Done::Done(format!(
                    "evicted {} pod(s){waits}",
                    report.evicted.len()
                )))
            }
            StepKind::Label => {
                let recorded = !self
                    .ck
                    .lock()
                    .await
                    .nodes
                    .get(node)
                    .map(|r| r.agent_uids.is_empty())
                    .unwrap_or(true);
                if !recorded {
                    let mut uids = steps::agent_uids(c, node).await?;
                    if uids.is_empty() {
                        uids.push(NO_AGENT.to_owned());
                    }
                    let mut ck = self.ck.lock().await;
                    if let Some(rec) = ck.nodes.get_mut(node) {
                        rec.agent_uids = uids;
                    }
                    self.save(&mut ck).await.map_err(|e| StepError::Verify {
                        node: node.to_owned(),
                        reason: format!("cannot record the agent pods before labelling: {e}"),
                    })?;
                }
                steps::label(c, node, true).await.map(Done::Done)
            }
            StepKind::RestartAgent => {
                let uids = self.agent_uids(node).await;
                agent::restart_agent(
                    c,
                    node,
                    &uids,
                    self.cfg.timing.agent_timeout,
                    self.cfg.timing.poll,
                )
                .await
                .map(Done::Done)
                .map_err(StepError::from)
            }
            StepKind::Reboot => {
                let Some(reboot) = &spec.rollout.reboot else {
                    return Ok(Done::Done("no reboot hook in the spec".into()));
                };
                steps::reboot(
                    c,
                    node,
                    &reboot.command,
                    reboot.timeout.0,
                    self.cfg.timing.poll,
                )
                .await
                .map(Done::Done)
            }
            StepKind::Verify => {
                let uids = self.agent_uids(node).await;
                let basic = self.wait_verified(node, &uids).await?;
                self.verify_node(node, basic).await.map(Done::Done)
            }
            StepKind::Uncordon => {
                let prior = self.ck.lock().await.prior(node).unwrap_or_default();
                steps::uncordon(c, node, &prior).await.map(Done::Done)
            }
            StepKind::FinalValues => {
                let expected = planner::values::final_config(spec);
                self.helm_step(
                    &expected,
                    "values-final.yaml",
                    &self.plan.artifacts.values_final,
                    "Cilium's final values",
                    true,
                )
                .await
            }
            StepKind::DeleteNodeConfig => {
                let diffs =
                    steps::cilium_config_differences(c, &planner::values::final_config(spec))
                        .await?;
                if !diffs.is_empty() {
                    return Err(StepError::Verify {
                        node: "cluster".into(),
                        reason: format!(
                            "the CiliumNodeConfig may only be deleted once the final values are live; cilium-config: {}",
                            diffs.join("; ")
                        ),
                    });
                }
                let api_version = spec.target.cilium_version.node_config_api_version();
                let existed = c
                    .delete(
                        api_version,
                        "ciliumnodeconfigs",
                        Some("kube-system"),
                        NODE_CONFIG_NAME,
                    )
                    .await
                    .map_err(cl("deleting the CiliumNodeConfig"))?;
                Ok(Done::Done(if existed {
                    format!("deleted CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}")
                } else {
                    format!("CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} is gone")
                }))
            }
            StepKind::RemoveOldCni => self.remove_old_cni().await.map(Done::Done),
            StepKind::FinalVerify => self.final_verify().await.map(Done::Done),
            // The planner's rollback chain (`planner::plan::rollback_chain`): no plan's steps
            // contain these, and `rollback` still runs its own chain (runtime/rollback.rs).
            StepKind::Unlabel
            | StepKind::RestoreCni
            | StepKind::StartAwsNode
            | StepKind::VerifyRollback => Err(StepError::Verify {
                node: node.to_owned(),
                reason: format!(
                    "{} is a rollback step: `cni-migrate rollback` runs it, not a plan's run",
                    step.id
                ),
            }),
        }
    }

    /// Adds a drain's evictions and PDB waits to the summary's counters.
    fn count_evictions(&self, node: &str, evicted: &[String], waits: &BTreeMap<String, Duration>) {
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *stats.evicted.entry(node.to_owned()).or_default() += evicted.len();
        stats
            .evicted_pods
            .entry(node.to_owned())
            .or_default()
            .extend(evicted.iter().cloned());
        for (pdb, d) in waits {
            *stats.pdb_waits.entry(pdb.clone()).or_default() += *d;
        }
    }

    async fn agent_uids(&self, node: &str) -> Vec<String> {
        self.ck
            .lock()
            .await
            .nodes
            .get(node)
            .map(|r| {
                r.agent_uids
                    .iter()
                    .filter(|u| *u != NO_AGENT)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The basic verification, given the verify timeout to converge (the CiliumNode may lag
    /// the agent by a moment).
    async fn wait_verified(&self, node: &str, uids: &[String]) -> Result<String, StepError> {
        let deadline = Instant::now() + self.plan.spec.rollout.verify.timeout.0;
        loop {
            let pool = self.pool().await?;
            match steps::verify_basic(&*self.cluster, &pool, node, uids).await {
                Ok(s) => return Ok(s),
                Err(e @ StepError::Verify { .. }) if Instant::now() < deadline => {
                    tracing::debug!(node, error = %e, "not verified yet");
                    tokio::time::sleep(self.cfg.timing.poll).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A Helm step: observe `cilium-config`; if it does not hold the expected entries, run
    /// Helm (when given) and wait for the config and the agent DaemonSet, or stop at a gate.
    async fn helm_step(
        &self,
        expected: &BTreeMap<&'static str, String>,
        file: &str,
        values: &str,
        what: &str,
        restart_agents: bool,
    ) -> Result<Done, StepError> {
        let c = &*self.cluster;
        let diffs = steps::cilium_config_differences(c, expected).await?;
        if diffs.is_empty() {
            self.wait_agents_rolled_out(restart_agents).await?;
            return Ok(Done::Done(format!("{what}: cilium-config matches")));
        }
        let path = self.cfg.work_dir.join(file);
        // Runs of the same plan share the directory: each writes its own temporary file and
        // renames it into place (the content is the same).
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "{}.{}.tmp~",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&self.cfg.work_dir)
            .and_then(|()| std::fs::write(&tmp, values))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| StepError::Verify {
                node: "cluster".into(),
                reason: format!("cannot write {}: {e}", path.display()),
            })?;
        let helm_line = planner::plan::helm_command(&self.plan.spec, &path.display().to_string());
        let Some(helm) = &self.cfg.helm else {
            return Ok(Done::Gate(format!(
                "{what} is not live ({}). Run `{helm_line}` (values written to {}), then `cni-migrate resume`; \
                 or pass --helm to let cni-migrate run it",
                diffs.join("; "),
                path.display()
            )));
        };
        let (program, first) = helm.split_first().ok_or_else(|| StepError::Verify {
            node: "cluster".into(),
            reason: "--helm is empty".into(),
        })?;
        let version = self.plan.spec.target.cilium_version.to_string();
        let mut args: Vec<String> = first.to_vec();
        args.extend(
            [
                "upgrade",
                "--install",
                "cilium",
                "cilium/cilium",
                "--namespace",
                "kube-system",
                "--version",
                &version,
                "-f",
            ]
            .map(str::to_owned),
        );
        args.push(path.display().to_string());
        args.extend(self.cfg.helm_extra.iter().cloned());
        let shown = std::iter::once(program.clone())
            .chain(args.iter().cloned())
            .map(|w| planner::plan::shell_quote(&w))
            .collect::<Vec<_>>()
            .join(" ");
        let output = tokio::process::Command::new(program)
            .args(&args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| StepError::Helm {
                command: shown.clone(),
                reason: format!("cannot start it: {e}"),
            })?;
        if !output.status.success() {
            return Err(StepError::Helm {
                command: shown,
                reason: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        let deadline = Instant::now() + self.cfg.timing.install_timeout;
        loop {
            let diffs = steps::cilium_config_differences(c, expected).await?;
            if diffs.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(StepError::Verify {
                    node: "cluster".into(),
                    reason: format!(
                        "`{shown}` ran, but {}s later cilium-config still differs: {}",
                        self.cfg.timing.install_timeout.as_secs(),
                        diffs.join("; ")
                    ),
                });
            }
            tokio::time::sleep(self.cfg.timing.poll).await;
        }
        self.wait_agents_rolled_out(restart_agents).await?;
        Ok(Done::Done(format!("ran `{shown}`; {what} live")))
    }

    /// Waits for the agent DaemonSet to be rolled out: every scheduled pod updated and Ready.
    async fn wait_agents_rolled_out(&self, required: bool) -> Result<(), StepError> {
        let c = &*self.cluster;
        let deadline = Instant::now() + self.cfg.timing.install_timeout;
        loop {
            let ds = c
                .custom("apps/v1", "daemonsets", Some("kube-system"), "cilium")
                .await
                .map_err(cl("reading DaemonSet kube-system/cilium"))?;
            let Some(ds) = ds else {
                if required {
                    return Err(StepError::Verify {
                        node: "cluster".into(),
                        reason:
                            "expected the Cilium agent DaemonSet kube-system/cilium, found none"
                                .into(),
                    });
                }
                return Ok(());
            };
            let st = &ds.object["status"];
            let desired = st["desiredNumberScheduled"].as_i64().unwrap_or(-1);
            let ready = st["numberReady"].as_i64().unwrap_or(0);
            let updated = st["updatedNumberScheduled"].as_i64().unwrap_or(desired);
            let generation = ds.object["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = st["observedGeneration"].as_i64().unwrap_or(generation);
            if desired >= 0 && ready >= desired && updated >= desired && observed >= generation {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::Verify {
                    node: "cluster".into(),
                    reason: format!(
                        "the Cilium agent DaemonSet did not roll out in {}s: {ready}/{desired} Ready, {updated} updated",
                        self.cfg.timing.install_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(self.cfg.timing.poll).await;
        }
    }

    async fn remove_old_cni(&self) -> Result<String, StepError> {
        let c = &*self.cluster;
        let mut removed = Vec::new();
        let mut gone = Vec::new();
        let mut objects = self.plan.facts.source.objects.clone();
        // Namespaces last, and only Flannel's own.
        objects.sort_by_key(|o| o.kind == "Namespace");
        for o in objects {
            let Some((api_version, plural)) = resource_of(&o.kind) else {
                continue;
            };
            if o.kind == "Namespace" && o.name != "kube-flannel" {
                continue;
            }
            let what = format!(
                "{} {}{}",
                o.kind,
                o.namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                o.name
            );
            let existed = c
                .delete(api_version, plural, o.namespace.as_deref(), &o.name)
                .await
                .map_err(cl(format!("deleting {what}")))?;
            if existed {
                removed.push(what);
            } else {
                gone.push(what);
            }
            if o.kind == "Installation" {
                // The operator removes calico-system itself; deleting the operator before it
                // has would leave calico-node running on every node.
                self.wait_gone("apps/v1", "daemonsets", Some("calico-system"), "calico-node", "the Tigera operator to remove calico-system after the Installation was deleted")
                    .await?;
            }
        }
        Ok(if removed.is_empty() && gone.is_empty() {
            "no old CNI objects are known".into()
        } else if removed.is_empty() {
            format!("already removed: {}", gone.join(", "))
        } else {
            format!("removed {}", removed.join(", "))
        })
    }

    async fn wait_gone(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        what: &str,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + self.plan.spec.rollout.verify.timeout.0;
        loop {
            let o = self
                .cluster
                .custom(api_version, plural, namespace, name)
                .await
                .map_err(cl(format!("reading {plural} {name}")))?;
            if o.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::Verify {
                    node: "cluster".into(),
                    reason: format!(
                        "waited {}s for {what}, but {plural} {}{name} is still there; check the operator's logs",
                        self.plan.spec.rollout.verify.timeout.0.as_secs(),
                        namespace.map(|n| format!("{n}/")).unwrap_or_default()
                    ),
                });
            }
            tokio::time::sleep(self.cfg.timing.poll).await;
        }
    }

    async fn final_verify(&self) -> Result<String, StepError> {
        let c = &*self.cluster;
        let deadline = Instant::now() + self.plan.spec.rollout.verify.timeout.0;
        let beacons = self.remove_beacons().await;
        loop {
            let pool = &self.pool().await?;
            let pods = c.pods(None, "").await.map_err(cl("listing pods"))?;
            let checked: Vec<&planner::snapshot::PodInfo> = pods
                .iter()
                .filter(|p| {
                    !p.host_network
                        && !p.terminating
                        && !p.phase.is_finished()
                        && !p.pod_ips.is_empty()
                        && !crate::probe::is_ours(p)
                })
                .collect();
            let outside: Vec<String> = checked
                .iter()
                .filter(|p| !p.pod_ips.iter().any(|ip| pool.contains(ip)))
                .map(|p| {
                    format!(
                        "{} ({})",
                        p.key(),
                        p.pod_ips
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .collect();
            let unmanaged = self.pods_without_endpoints(&checked).await?;
            let policy = steps::cilium_config_differences(
                c,
                &[("enable-policy", "default".to_owned())]
                    .into_iter()
                    .collect(),
            )
            .await?;
            let no_endpoint = unmanaged.clone().unwrap_or_default();
            if outside.is_empty() && no_endpoint.is_empty() && policy.is_empty() {
                return Ok(format!(
                    "all {} pod(s) off the host network have an IP in Cilium's ranges and {}; policy enforcement is on{}",
                    checked.len(),
                    if unmanaged.is_some() {
                        "a CiliumEndpoint"
                    } else {
                        "(CiliumEndpointSlices are on: per-pod endpoints not compared)"
                    },
                    if beacons > 0 {
                        format!("; removed {beacons} beacon pod(s)")
                    } else {
                        String::new()
                    }
                ));
            }
            if Instant::now() >= deadline {
                let few = |v: &[String]| {
                    let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
                    format!(
                        "{}{}",
                        shown.join(", "),
                        if v.len() > 10 { ", ..." } else { "" }
                    )
                };
                let mut reason = Vec::new();
                if !outside.is_empty() {
                    reason.push(format!(
                        "expected every pod off the host network in {}, saw {} outside: {}",
                        pool,
                        outside.len(),
                        few(&outside)
                    ));
                }
                if !no_endpoint.is_empty() {
                    reason.push(format!(
                        "expected a CiliumEndpoint for every pod off the host network, saw {} without one (Cilium does not manage them; restart them): {}",
                        no_endpoint.len(),
                        few(&no_endpoint)
                    ));
                }
                reason.extend(policy);
                return Err(StepError::Verify {
                    node: "cluster".into(),
                    reason: reason.join("; "),
                });
            }
            tokio::time::sleep(self.cfg.timing.poll).await;
        }
    }
}

/// Awaits `fut` while polling the node chains in flight, collecting those that finish.
async fn drive<T, N>(
    in_flight: &mut FuturesUnordered<N>,
    finished: &mut Vec<(String, Result<(), RunError>)>,
    fut: impl std::future::Future<Output = T>,
) -> T
where
    N: std::future::Future<Output = (String, Result<(), RunError>)>,
{
    tokio::pin!(fut);
    loop {
        if in_flight.is_empty() {
            return fut.await;
        }
        tokio::select! {
            biased;
            out = &mut fut => return out,
            r = in_flight.next() => {
                if let Some(r) = r {
                    finished.push(r);
                }
            }
        }
    }
}

/// How [`Runner::run_step`] ended.
enum StepEnd {
    Done,
    Gate(String),
    Failed(String),
}

/// Marks "no agent pod was on the node when the label went on" in the checkpoint.
const NO_AGENT: &str = "-";

/// An error and its sources, `: `-joined, as the CLI prints them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The API version and plural of the old CNI's object kinds.
pub fn resource_of(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "DaemonSet" => ("apps/v1", "daemonsets"),
        "Deployment" => ("apps/v1", "deployments"),
        "ConfigMap" => ("v1", "configmaps"),
        "Namespace" => ("v1", "namespaces"),
        "ServiceAccount" => ("v1", "serviceaccounts"),
        "Installation" => ("operator.tigera.io/v1", "installations"),
        "IPPool" => ("crd.projectcalico.org/v1", "ippools"),
        "FelixConfiguration" => ("crd.projectcalico.org/v1", "felixconfigurations"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_parse() {
        assert_eq!(
            "kind-worker/drain@done".parse::<CrashPoint>(),
            Ok(CrashPoint {
                step: "kind-worker/drain".into(),
                state: StepState::Done
            })
        );
        assert!("x@later".parse::<CrashPoint>().is_err());
        assert!("x".parse::<CrashPoint>().is_err());
    }
}
