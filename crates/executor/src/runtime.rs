//! The run: drives a plan through the cluster, node by node, pipelined, writing the checkpoint
//! after every transition so that a run killed at any moment resumes exactly where it stopped.
//!
//! ```text
//! resume in-flight nodes ─┐
//! prelude (in order) ─────┴► loop: observe (node readiness, PDB budgets) ─► scheduler::decide
//!                                   ├─ re-check the migrated nodes (recheck.rs) before admitting
//!                                   ├─ admit: record prior state, then start the node's chain
//!                                   ├─ a node finishes: its slot frees at once (no waves)
//!                                   ├─ a node fails: no new admissions, in-flight nodes go on
//!                                   │  to the end of their chains (the safe point), exit 5
//!                                   ├─ paused (by `cni-migrate pause`): the same, exit 4
//!                                   └─ a node joined (a LIST every pause check, when the
//!                                      caller re-plans): this plan's nodes go on; once none
//!                                      is in flight, Pass::Replan
//! finale (in order) ─► Finished, with a summary
//! ```
//!
//! Every step runs through [`Runner::run_step`]: skipped when the checkpoint has it done,
//! `Running` recorded before it acts, retried while its failures are retriable, `Done` or
//! `Failed` recorded after, with an event at each transition. What a step does is
//! [`crate::step::dispatch`]'s business. Intent is written before effects: a node's prior state
//! is in the checkpoint before it is cordoned, the agent UIDs before the label changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use cluster::Cluster;
use futures::{StreamExt as _, stream::FuturesUnordered};
use planner::{Plan, Step, StepKind, plan::Phase};
use tokio::time::Instant;

use crate::{
    checkpoint::{Checkpoint, FailureRecord, StepIndex, StepState},
    config::RunConfig,
    controls::Controls,
    error::StepError,
    events::{Event, EventKind, Observer, chain, unix_now},
    journal::Journal,
    node_events::NodeEvents,
    outcome::{Counters, Outcome, RunError, Summary},
    recheck::Recheck,
    scheduler,
    step::{self, Done, Shared, StepCtx},
    store::StateStore,
};

mod admit;
mod chain;
mod membership;

/// The longest the end of a pass waits for the node Events still queued.
const EVENTS_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// How one pass of [`Runner::run_pass`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// The run ended (finished, gate, pause, failure).
    Ended(Outcome),
    /// Nodes joined that the plan does not have, and no node is in flight: plan the cluster
    /// as it is now and run again over the same checkpoint (why, in words).
    Replan(String),
}

/// How [`Runner::run_step`] ended.
pub(crate) enum StepEnd {
    /// Done: what was done or seen (`None`: the checkpoint had it done already).
    Done(Option<String>),
    /// It needs a human.
    Gate(String),
    /// It failed, and why.
    Failed(String),
    /// Its node left the cluster: the chain stops, nothing failed.
    Left,
}

/// The run of one plan.
pub struct Runner<'a> {
    pub(crate) plan: &'a Plan,
    /// The rollback chains of the nodes this run may roll back.
    pub(crate) rollback: BTreeMap<String, Vec<Step>>,
    pub(crate) cluster: Arc<dyn Cluster>,
    cfg: RunConfig,
    pub(crate) observer: &'a dyn Observer,
    pub(crate) journal: Journal<'a>,
    lock_lost: Arc<AtomicBool>,
    start: Instant,
    base: u64,
    pub(crate) stats: std::sync::Mutex<Counters>,
    shared: Shared,
    node_events: NodeEvents,
    recheck: Recheck,
    controls: Controls,
    /// What a control holds admissions for now (told to the observer when it changes).
    held: std::sync::Mutex<Option<(crate::controls::HoldReason, String)>>,
    /// A control stopped the run: it ends at a gate once no node is in flight.
    halt: std::sync::Mutex<Option<String>>,
    /// The caller re-plans when nodes join mid-run ([`Runner::replanning`]).
    replan: bool,
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
        let controls = Controls::new(
            &plan.spec.rollout,
            cfg.exit_outside_window,
            cfg.timing.pause_check,
        );
        let base = cfg.clock_start.unwrap_or_else(unix_now);
        let journal = Journal::new(
            store,
            checkpoint,
            StepIndex::new(&plan.steps),
            cfg.timing.clone(),
            cfg.crash_at.clone(),
        )
        .observed(observer);
        // Node reads (before every step, during drains, admissions, verification) from one
        // watch of the nodes, where the cluster can watch.
        let cluster = cluster::NodeCached::wrap(cluster);
        Self {
            plan,
            rollback: BTreeMap::new(),
            node_events: NodeEvents::new(cluster.clone()),
            cfg,
            observer,
            journal,
            lock_lost,
            start: Instant::now(),
            base,
            stats: std::sync::Mutex::new(Counters::default()),
            shared: Shared::default(),
            recheck: Recheck::watching(cluster.clone()),
            cluster,
            controls,
            held: std::sync::Mutex::new(None),
            halt: std::sync::Mutex::new(None),
            replan: false,
        }
    }

    /// Unix seconds on the run's clock (tokio's, so a paused test clock drives it too).
    pub(crate) fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_secs()
    }

    pub(crate) fn emit(
        &self,
        event: EventKind,
        step: Option<&Step>,
        node: Option<&str>,
        message: String,
    ) {
        self.observer.event(&Event {
            time: self.now(),
            event,
            node: node
                .map(str::to_owned)
                .or_else(|| step.and_then(|s| s.node.clone())),
            step: step.map(|s| s.id.clone()),
            kind: step.map(|s| s.kind),
            reason: None,
            message,
        });
    }

    /// Queues an Event on the step's node ([`NodeEvents`]: the step does not wait for it).
    fn node_event(&self, step: &Step, reason: &'static str, message: &str, warning: bool) {
        if !self.cfg.node_events || !matches!(step.phase, Phase::Node | Phase::Rollback) {
            return;
        }
        if let Some(node) = &step.node {
            self.node_events
                .post(&step.id, node, reason, message, warning);
        }
    }

    /// What a step is given.
    pub(crate) fn ctx<'s>(&'s self, node: &'s str) -> StepCtx<'s> {
        StepCtx {
            cluster: &*self.cluster,
            plan: self.plan,
            config: &self.cfg,
            node,
            ledger: self,
            shared: &self.shared,
        }
    }

    /// A copy of the checkpoint as it is now.
    pub async fn checkpoint(&self) -> Checkpoint {
        self.journal.ck.lock().await.clone()
    }

    async fn transition(
        &self,
        step: &Step,
        to: StepState,
        message: Option<String>,
    ) -> Result<(), RunError> {
        self.journal.transition(step, to, self.now(), message).await
    }

    /// Runs the plan from wherever the checkpoint is.
    ///
    /// # Errors
    /// [`RunError`] when the checkpoint cannot be kept or the lock is lost; a failing step is
    /// an [`Outcome::Failed`], not an error.
    pub async fn run(&self) -> Result<Outcome, RunError> {
        let pass = self.run_pass().await;
        self.node_events.flush(EVENTS_FLUSH).await;
        match pass? {
            Pass::Ended(outcome) => Ok(outcome),
            // Only a runner built `replanning` asks for a new plan.
            Pass::Replan(message) => Ok(Outcome::Gate {
                step: String::new(),
                message,
            }),
        }
    }

    /// Runs the plan from wherever the checkpoint is, until it ends or (when
    /// [`Runner::replanning`]) nodes joined that this plan does not have: then, with no node in
    /// flight, [`Pass::Replan`] asks the caller for a plan of the cluster as it is now.
    ///
    /// # Errors
    /// As [`Runner::run`].
    pub async fn run_pass(&self) -> Result<Pass, RunError> {
        let pass = self.run_pass_inner().await;
        self.node_events.flush(EVENTS_FLUSH).await;
        pass
    }

    async fn run_pass_inner(&self) -> Result<Pass, RunError> {
        let (done, changes) = {
            let mut ck = self.journal.ck.lock().await;
            ck.run_id.clone_from(&self.cfg.run_id);
            ck.failure = None;
            ck.gate = None;
            ck.paused = false;
            // The plan is the cluster's nodes now: the record learns who came and went.
            let changes = ck.reconcile_nodes(self.plan, self.now());
            self.journal.save(&mut ck).await?;
            let done = self
                .plan
                .nodes
                .iter()
                .filter(|n| ck.node_done(&n.name))
                .count();
            (done, changes)
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
        self.announce(&changes);
        for step in self.plan.steps.iter().filter(|s| s.phase == Phase::Prelude) {
            if let Some(stop) = self.in_window(step).await? {
                return Ok(Pass::Ended(stop));
            }
            if let Some(stop) = self.run_global(step).await? {
                return Ok(Pass::Ended(stop));
            }
        }
        if let Some(stop) = self.run_nodes().await? {
            return Ok(stop);
        }
        step::verify::remove_beacons(&*self.cluster).await;
        for step in self.plan.steps.iter().filter(|s| s.phase == Phase::Finale) {
            if step.kind == StepKind::FinalValues
                && self.cfg.stop_before_finalize
                && !self
                    .journal
                    .state(&*self.journal.ck.lock().await, step)
                    .is_complete()
            {
                let message = "every node is migrated; stopped before the finale as asked \
                               (--stop-before finalize): soak the cluster, then `cni-migrate resume` \
                               finalizes (final Helm values, CiliumNodeConfig deleted, old CNI removed)"
                    .to_owned();
                return self.gate(step, message).await.map(Pass::Ended);
            }
            if matches!(step.kind, StepKind::FinalValues | StepKind::RemoveOldCni)
                && !self
                    .journal
                    .state(&*self.journal.ck.lock().await, step)
                    .is_complete()
                && let Some(stop) = self.world_check(step).await?
            {
                return Ok(stop);
            }
            if let Some(stop) = self.in_window(step).await? {
                return Ok(Pass::Ended(stop));
            }
            if let Some(stop) = self.run_global(step).await? {
                return Ok(Pass::Ended(stop));
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
        Ok(Pass::Ended(Outcome::Finished(summary)))
    }

    async fn gate(&self, step: &Step, message: String) -> Result<Outcome, RunError> {
        let mut ck = self.journal.ck.lock().await;
        ck.gate = Some(format!("{}: {message}", step.id));
        self.journal.save(&mut ck).await?;
        drop(ck);
        self.emit(EventKind::Gate, Some(step), None, message.clone());
        Ok(Outcome::Gate {
            step: step.id.clone(),
            message,
        })
    }

    /// What this process did so far (also after a failure or a gate).
    pub async fn summary(&self) -> Summary {
        let ck = self.journal.ck.lock().await;
        Summary::of(&ck, self.plan, &self.counters())
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A prelude or finale step. `Some` when the run must stop.
    async fn run_global(&self, step: &Step) -> Result<Option<Outcome>, RunError> {
        match self.run_step(step).await? {
            StepEnd::Done(_) | StepEnd::Left => Ok(None),
            StepEnd::Gate(message) => Ok(Some(self.gate(step, message).await?)),
            StepEnd::Failed(reason) => Ok(Some(Outcome::Failed {
                step: step.id.clone(),
                node: None,
                reason,
            })),
        }
    }

    /// Runs one step to its end: skipped when the checkpoint has it done, retried while its
    /// failures are retriable and the retry budget lasts, recorded at every transition.
    pub(crate) async fn run_step(&self, step: &Step) -> Result<StepEnd, RunError> {
        self.run_step_in(step, false).await
    }

    /// [`Runner::run_step`]; `followed` when the next step of a node's chain starts at once:
    /// then this step's `Done` is written with that step's `Running` (one write, not two).
    async fn run_step_in(&self, step: &Step, followed: bool) -> Result<StepEnd, RunError> {
        let state = self.journal.state(&*self.journal.ck.lock().await, step);
        if state.is_complete() {
            return Ok(StepEnd::Done(None));
        }
        if state != StepState::Running {
            self.transition(step, StepState::Running, None).await?;
        }
        let node = step.node.as_deref().unwrap_or_default();
        let description = step::describe(step.kind, &self.ctx(node), &step.description).await;
        self.emit(
            EventKind::StepStarted,
            Some(step),
            None,
            description.clone(),
        );
        if Self::announces_start(step) {
            self.node_event(step, "MigrationStepStarted", &description, false);
        }
        let mut backoff = self.cfg.timing.backoff();
        loop {
            if self.lock_lost.load(Ordering::SeqCst) {
                return Err(RunError::LockLost(format!(
                    "step {} was under way and is left Running; resume re-runs it",
                    step.id
                )));
            }
            let ctx = self.ctx(node);
            let err = match cluster::telemetry::in_step(&step.id, step::dispatch(step.kind, &ctx))
                .await
            {
                Ok(Done::Done(detail)) => {
                    if followed {
                        let now = self.now();
                        self.journal
                            .transition_unsaved(step, StepState::Done, now, None)
                            .await?;
                    } else {
                        self.transition(step, StepState::Done, None).await?;
                    }
                    self.emit(EventKind::StepDone, Some(step), None, detail.clone());
                    self.node_event(step, "MigrationStepDone", &detail, false);
                    return Ok(StepEnd::Done(Some(detail)));
                }
                Ok(Done::Gate(message)) => return Ok(StepEnd::Gate(message)),
                Err(e) => e,
            };
            if err.is_retriable()
                && let Some(delay) = backoff.next_delay()
            {
                let message = format!("{}; retrying in {}ms", chain(&err), delay.as_millis());
                self.emit(EventKind::Retrying, Some(step), None, message);
                tokio::time::sleep(delay).await;
                continue;
            }
            if step.phase == Phase::Node && self.node_is_gone(node).await {
                self.node_left(node, &err).await?;
                return Ok(StepEnd::Left);
            }
            return self.fail(step, &err).await;
        }
    }

    /// Records a step's failure; outside a rollback it also stops admissions.
    async fn fail(&self, step: &Step, err: &StepError) -> Result<StepEnd, RunError> {
        let reason = chain(err);
        let mut ck = self.journal.ck.lock().await;
        let now = self.now();
        ck.transition(
            &self.journal.index,
            &step.id,
            StepState::Failed,
            now,
            Some(reason.clone()),
        )?;
        let tolerated = self.failure_tolerated(&ck, step);
        if ck.failure.is_none() && step.phase != Phase::Rollback && tolerated.is_none() {
            ck.failure = Some(FailureRecord {
                step: step.id.clone(),
                reason: reason.clone(),
                at: u32::try_from(now.saturating_sub(ck.created)).unwrap_or(u32::MAX),
            });
        }
        self.journal.save(&mut ck).await?;
        drop(ck);
        self.emit(EventKind::StepFailed, Some(step), None, reason.clone());
        if let Some((failed, allowed)) = tolerated {
            self.emit(
                EventKind::Waiting,
                Some(step),
                None,
                format!(
                    "{failed} failed node(s), within healthBudget.maxFailedNodes ({allowed}): other nodes go on; the failed ones stay as they are for `resume` or `rollback`"
                ),
            );
        }
        self.node_event(step, "MigrationStepFailed", &reason, true);
        Ok(StepEnd::Failed(reason))
    }

    /// The node phase. `Some` when the run must stop.
    ///
    /// The node chains run as futures of this one task, so every wait of the scheduler itself
    /// goes through [`drive`], which keeps polling them meanwhile: a chain holding the
    /// checkpoint's lock across a slow write must never wait on a scheduler that waits on it.
    async fn run_nodes(&self) -> Result<Option<Pass>, RunError> {
        let mut in_flight = FuturesUnordered::new();
        let mut finished: Vec<(String, Result<(), RunError>)> = Vec::new();
        let mut running: BTreeSet<String> = BTreeSet::new();
        // Nodes a crashed or stopped run left half-way go first: they hold their slots.
        {
            let ck = self.journal.ck.lock().await.clone();
            for n in self
                .plan
                .nodes
                .iter()
                .filter(|n| ck.node_in_flight(&n.name))
            {
                running.insert(n.name.clone());
                self.emit(
                    EventKind::NodeAdmitted,
                    None,
                    Some(&n.name),
                    format!("resuming {} where it stopped", n.name),
                );
                in_flight.push(self.run_node(n.name.clone()));
            }
        }
        let mut last_wait = String::new();
        let mut last_pause_check = Instant::now();
        let mut joining: Option<String> = None;
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
                if joining.is_none() {
                    joining = drive(&mut in_flight, &mut finished, self.watch_joins()).await;
                }
            }
            let ck = drive(&mut in_flight, &mut finished, async {
                self.journal.ck.lock().await.clone()
            })
            .await;
            for (node, _) in &finished {
                running.remove(node);
            }
            let all_done = self.plan.nodes.iter().all(|n| ck.node_settled(&n.name));
            if in_flight.is_empty() && finished.is_empty() {
                if let Some(stop) = self.stop_now(&ck, all_done).await? {
                    return Ok(Some(Pass::Ended(stop)));
                }
                if let Some(why) = joining.take() {
                    step::verify::remove_beacons(&*self.cluster).await;
                    return Ok(Some(Pass::Replan(why)));
                }
                if all_done {
                    return Ok(None);
                }
            }
            let limit = self.plan.summary.max_in_flight.max(1);
            let free = limit.saturating_sub(running.len());
            if free > 0 && ck.failure.is_none() && !ck.paused && !all_done && !self.halted() {
                let decision = drive(
                    &mut in_flight,
                    &mut finished,
                    self.decide(&ck, &running, free),
                )
                .await?;
                let mut admitted = false;
                for node in decision.admit.iter().cloned() {
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
                    in_flight.push(self.run_node(node));
                    admitted = true;
                }
                if !admitted && in_flight.is_empty() {
                    let why = decision.explain(self.now());
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

    /// With nothing in flight: whether the node phase stops here (a failure, a pause, or only
    /// rolled-back nodes left).
    async fn stop_now(&self, ck: &Checkpoint, all_done: bool) -> Result<Option<Outcome>, RunError> {
        if let Some(f) = &ck.failure {
            let node = self
                .journal
                .index
                .node_step(&f.step)
                .map(|(n, _, _)| n.to_owned());
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
        if let Some(stop) = self.halted_or_failed(ck).await? {
            return Ok(Some(stop));
        }
        match scheduler::rolled_back_wait(self.plan, ck) {
            Some(message) => {
                let step = self
                    .plan
                    .steps
                    .iter()
                    .find(|s| s.kind == StepKind::FinalValues)
                    .unwrap_or(&self.plan.steps[0]);
                Ok(Some(self.gate(step, message).await?))
            }
            None => Ok(None),
        }
    }
}
