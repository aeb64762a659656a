//! A session: what `apply`, `resume` and `rollback` (and `rehearse` and the benchmarks) do
//! around a run. It reads the checkpoint, decides what the command may do, takes the lock,
//! reads the checkpoint again under it, and builds the [`Runner`].
//!
//! ```text
//! Session::open ─► load the checkpoint (retried) ─► judge(intent, recorded)
//!                    apply  + none ─► Start            apply  + recorded ─► refused (resume it)
//!                    resume + recorded ─► Continue     resume + none ─► refused
//!                    rollback + recorded ─► Continue   rollback + finished/none ─► refused
//!                    apply/resume + finished ─► Complete (nothing to do)
//!   caller plans (with the recorded old CNI), gates on preflight
//! Session::lock ─► Lease (LockGuard: renews every duration/3 in the background; released on
//!                  drop) ─► load and judge again (two runs that both saw nothing must not both
//!                  start) ─► fingerprint checked against the plan ─► Locked
//! Locked::runner ─► Runner over the checkpoint (`--retry` applied; rollback chains of the
//!                   nodes to roll back)
//! Locked::run ────► runners, one pass each: a pass that ends in Pass::Replan (nodes joined
//!                   mid-run, none in flight) ─► discover ─► plan again ─► next pass over the
//!                   same checkpoint (counters carried) ─► the Outcome and Summary
//! ```

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cluster::{
    Cluster,
    lease::{LeaseLock, LockError},
};
use planner::Plan;
use tokio::task::JoinHandle;

use crate::{
    checkpoint::{Checkpoint, CheckpointError},
    config::RunConfig,
    events::{Observer, unix_now},
    outcome::{Counters, Outcome, RunError, Summary},
    runtime::{Pass, Runner},
    store::{StateStore, StoreError},
    wait::Backoff,
};

/// What the command asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Start a migration.
    Apply,
    /// Go on with the recorded one (`--retry` these rolled-back nodes).
    Resume {
        /// Nodes to migrate again after a rollback.
        retry: Vec<String>,
    },
    /// Return a node (or every touched node) to the old CNI.
    Rollback {
        /// The node; `None` for `--all`.
        node: Option<String>,
    },
}

/// What the recorded checkpoint allows the command to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Allowed {
    /// Start a new migration.
    Start,
    /// Go on with the recorded one.
    Continue(Box<Checkpoint>),
    /// Nothing to do: the migration `plan` is complete.
    Complete {
        /// The plan's name.
        plan: String,
    },
}

/// Why a session cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `rollback` with no migration recorded.
    #[error("nothing to roll back: no migration is recorded in {store}")]
    NothingToRollBack {
        /// Where the checkpoint would be.
        store: String,
    },
    /// `rollback` after the finale removed the old CNI.
    #[error(
        "the migration `{plan}` is complete: the old CNI was removed, so there is nothing to roll back to"
    )]
    RollbackAfterFinish {
        /// The plan's name.
        plan: String,
    },
    /// `apply` with a migration recorded.
    #[error(
        "a migration (`{plan}`, last run {run_id}) is already recorded in {store}: continue it with `cni-migrate resume` (same flags), or see `cni-migrate status`"
    )]
    AlreadyRecorded {
        /// The plan's name.
        plan: String,
        /// The run that wrote it.
        run_id: String,
        /// Where.
        store: String,
    },
    /// `apply`, and another run started a migration between the first look and the lock.
    #[error(
        "another run (`{plan}`, {run_id}) started a migration in {store} meanwhile; see `cni-migrate status`"
    )]
    StartedMeanwhile {
        /// The plan's name.
        plan: String,
        /// The run that wrote it.
        run_id: String,
        /// Where.
        store: String,
    },
    /// `resume` with nothing recorded.
    #[error("nothing to resume: no checkpoint in {store}; start with `cni-migrate apply`")]
    NothingToResume {
        /// Where the checkpoint would be.
        store: String,
    },
    /// `resume`, and the checkpoint disappeared before the lock was taken.
    #[error("nothing to resume: the checkpoint in {store} is gone")]
    Gone {
        /// Where.
        store: String,
    },
    /// The checkpoint belongs to another plan.
    #[error(transparent)]
    Fingerprint(CheckpointError),
    /// The migration was completed by another run between the first look and the lock.
    #[error("the migration `{plan}` was completed by another run meanwhile; nothing to do")]
    CompletedMeanwhile {
        /// The plan's name.
        plan: String,
    },
    /// A `--retry` that does not apply.
    #[error("{0}")]
    Retry(String),
    /// The checkpoint could not be read.
    #[error("cannot read the checkpoint")]
    Store(#[source] StoreError),
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(LockError),
}

impl SessionError {
    /// Whether the user asked for something the recorded state does not allow (exit 2: bad
    /// input, nothing changed), rather than something failing.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, SessionError::Store(_) | SessionError::Lock(_))
    }
}

/// What a command may do, given what is recorded. `locked`: judged again under the lock, where
/// a difference from the first look means another run moved meanwhile.
///
/// # Errors
/// [`SessionError`] explaining what the user asked for that the record does not allow.
pub fn judge(
    intent: &Intent,
    recorded: Option<Checkpoint>,
    store: &str,
    locked: bool,
) -> Result<Allowed, SessionError> {
    let store = store.to_owned();
    match (intent, recorded) {
        (Intent::Rollback { .. }, None) => Err(SessionError::NothingToRollBack { store }),
        (Intent::Rollback { .. }, Some(ck)) if ck.finished() => {
            Err(SessionError::RollbackAfterFinish { plan: ck.plan })
        }
        (Intent::Apply | Intent::Resume { .. }, Some(ck)) if ck.finished() => {
            Ok(Allowed::Complete { plan: ck.plan })
        }
        (Intent::Apply, Some(ck)) if locked => Err(SessionError::StartedMeanwhile {
            plan: ck.plan,
            run_id: ck.run_id,
            store,
        }),
        (Intent::Apply, Some(ck)) => Err(SessionError::AlreadyRecorded {
            plan: ck.plan,
            run_id: ck.run_id,
            store,
        }),
        (Intent::Apply, None) => Ok(Allowed::Start),
        (Intent::Resume { .. }, None) if locked => Err(SessionError::Gone { store }),
        (Intent::Resume { .. }, None) => Err(SessionError::NothingToResume { store }),
        (Intent::Resume { .. } | Intent::Rollback { .. }, Some(ck)) => {
            Ok(Allowed::Continue(Box::new(ck)))
        }
    }
}

/// How the run is locked.
pub enum LockSpec {
    /// The Lease; `force` takes over a stale one (never a fresh one).
    Lease {
        /// The lock, with its holder identity and duration.
        lock: LeaseLock,
        /// `--force-unlock`.
        force: bool,
    },
    /// No lock: a rehearsal or a benchmark, alone on its cluster.
    None,
}

/// A held Lease: renewed every third of its duration in the background, released when
/// dropped (or, to see the outcome, by [`LockGuard::release`]). When it is lost, `lost` is
/// raised and the runner stops admitting nodes.
pub struct LockGuard {
    lock: Arc<tokio::sync::Mutex<LeaseLock>>,
    lost: Arc<AtomicBool>,
    renew: JoinHandle<()>,
    released: bool,
}

impl LockGuard {
    /// Takes the Lease, retrying the API's passing failures.
    ///
    /// # Errors
    /// [`LockError`]: held by another run, stale without `force`, or the API failing.
    pub async fn acquire(mut lock: LeaseLock, force: bool) -> Result<Self, LockError> {
        let mut backoff = Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(10),
        );
        // With `force`, a Lease another run holds is waited out once: a run killed without
        // warning (SIGKILL, its node gone) holds it until it goes stale, and the next pod of a
        // Job starts before that. A holder that renews it meanwhile is alive: refused then.
        let mut waited = false;
        loop {
            match lock.acquire(force).await {
                Ok(()) => break,
                Err(LockError::Held {
                    holder, expires_in, ..
                }) if force && !waited => {
                    waited = true;
                    tracing::warn!(
                        %holder,
                        "the lock is held by {holder}; waiting {}s for it to go stale before taking it over (--force-unlock)",
                        expires_in + 1
                    );
                    tokio::time::sleep(Duration::from_secs(expires_in + 1)).await;
                }
                Err(LockError::Cluster(c)) if c.is_retriable() => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(error = %c, "cannot take the lock yet; retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(LockError::Cluster(c)),
                },
                Err(e) => return Err(e),
            }
        }
        let every = lock.renew_every();
        let lock = Arc::new(tokio::sync::Mutex::new(lock));
        let lost = Arc::new(AtomicBool::new(false));
        let renew = tokio::spawn(renew(lock.clone(), lost.clone(), every));
        Ok(Self {
            lock,
            lost,
            renew,
            released: false,
        })
    }

    /// Raised when the lock was lost.
    pub fn lost(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Releases the Lease (unless it was lost: then it is someone else's).
    ///
    /// # Errors
    /// The API failing past a few retries.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.renew.abort();
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        release(&self.lock).await
    }
}

async fn renew(lock: Arc<tokio::sync::Mutex<LeaseLock>>, lost: Arc<AtomicBool>, every: Duration) {
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        // After a failed renewal, try again sooner: a passing 500 or 429 must not cost the
        // Lease (it is lost only once renewals kept failing for two periods).
        let pause = if failing_since.is_some() {
            every / 4
        } else {
            every
        };
        tokio::time::sleep(pause).await;
        match lock.lock().await.renew().await {
            Ok(()) => failing_since = None,
            Err(LockError::Lost { holder }) => {
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
}

async fn release(lock: &tokio::sync::Mutex<LeaseLock>) -> Result<(), LockError> {
    Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .retry(
        || async { lock.lock().await.release().await },
        |e| matches!(e, LockError::Cluster(c) if c.is_retriable()),
    )
    .await
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renew.abort();
        if self.released || self.lost.load(Ordering::SeqCst) {
            return;
        }
        // An early return or a panic: release here, or the next run waits out the Lease.
        let lock = self.lock.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| {
                if let Err(e) = handle.block_on(release(&lock)) {
                    eprintln!("warning: cannot release the lock: {e}");
                }
            });
        } else {
            handle.spawn(async move {
                if let Err(e) = release(&lock).await {
                    eprintln!("warning: cannot release the lock: {e}");
                }
            });
        }
    }
}

/// A command's session, before the lock.
pub struct Session {
    cluster: Arc<dyn Cluster>,
    store: Box<dyn StateStore>,
    intent: Intent,
    allowed: Allowed,
}

impl Session {
    /// Reads the checkpoint and judges what `intent` may do.
    ///
    /// # Errors
    /// [`SessionError`]: the record does not allow it, or cannot be read.
    pub async fn open(
        cluster: Arc<dyn Cluster>,
        store: Box<dyn StateStore>,
        intent: Intent,
    ) -> Result<Self, SessionError> {
        let recorded = load(&*store).await?;
        let allowed = judge(&intent, recorded, &store.describe(), false)?;
        Ok(Self {
            cluster,
            store,
            intent,
            allowed,
        })
    }

    /// What the command may do.
    pub fn allowed(&self) -> &Allowed {
        &self.allowed
    }

    /// The checkpoint as first read, when there is one.
    pub fn recorded(&self) -> Option<&Checkpoint> {
        match &self.allowed {
            Allowed::Continue(ck) => Some(ck),
            _ => None,
        }
    }

    /// Where the checkpoint lives, for messages.
    pub fn store(&self) -> String {
        self.store.describe()
    }

    /// The plan for this session: a run under way plans with the old CNI it recorded when it
    /// started (the finale removes it; a resumed run must still know what it was).
    pub fn plan(&self, spec: &planner::MigrationSpec, snapshot: &planner::ClusterSnapshot) -> Plan {
        match self.recorded().and_then(|ck| ck.source.as_ref()) {
            Some(source) => planner::plan_in_progress(spec, snapshot, source),
            None => planner::plan(spec, snapshot),
        }
    }

    /// Takes the lock, reads the checkpoint again under it, and checks it belongs to `plan`
    /// (`ignore_fingerprint`: a mismatch is a warning, see [`Locked::warning`]).
    ///
    /// # Errors
    /// [`SessionError`]: the lock is held, another run moved meanwhile, or the checkpoint
    /// belongs to another plan.
    pub async fn lock(
        self,
        lock: LockSpec,
        plan: &Plan,
        run_id: &str,
        ignore_fingerprint: bool,
    ) -> Result<Locked, SessionError> {
        let guard = match lock {
            LockSpec::Lease { lock, force } => Some(
                LockGuard::acquire(lock, force)
                    .await
                    .map_err(SessionError::Lock)?,
            ),
            LockSpec::None => None,
        };
        // Errors from here on drop the guard, which releases the Lease.
        let recorded = load(&*self.store).await?;
        let checkpoint = match judge(&self.intent, recorded, &self.store.describe(), true)? {
            Allowed::Start => Checkpoint::new(plan, run_id, unix_now()),
            Allowed::Continue(ck) => *ck,
            Allowed::Complete { plan } => return Err(SessionError::CompletedMeanwhile { plan }),
        };
        let warning = match checkpoint.verify_fingerprint(plan) {
            Ok(()) => None,
            Err(e) if ignore_fingerprint => Some(e),
            Err(e) => return Err(SessionError::Fingerprint(e)),
        };
        let mut checkpoint = checkpoint;
        if let Intent::Resume { retry } = &self.intent {
            for n in retry {
                checkpoint.retry(n).map_err(SessionError::Retry)?;
            }
        }
        Ok(Locked {
            cluster: self.cluster,
            store: self.store,
            intent: self.intent,
            checkpoint,
            guard,
            warning,
        })
    }
}

/// A locked session: the run may go.
pub struct Locked {
    cluster: Arc<dyn Cluster>,
    store: Box<dyn StateStore>,
    intent: Intent,
    checkpoint: Checkpoint,
    guard: Option<LockGuard>,
    warning: Option<CheckpointError>,
}

impl Locked {
    /// The fingerprint mismatch that `--ignore-fingerprint` let through.
    pub fn warning(&self) -> Option<&CheckpointError> {
        self.warning.as_ref()
    }

    /// The checkpoint the run starts from.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Where the checkpoint lives, for messages.
    pub fn store(&self) -> String {
        self.store.describe()
    }

    /// The nodes a rollback returns: the one asked for, or every touched node, newest first.
    pub fn rollback_targets(&self) -> Vec<String> {
        match &self.intent {
            Intent::Rollback { node: Some(n) } => vec![n.clone()],
            Intent::Rollback { node: None } => self.checkpoint.rollback_candidates(),
            _ => Vec::new(),
        }
    }

    /// The runner of this session.
    pub fn runner<'a>(
        &'a self,
        plan: &'a Plan,
        cfg: RunConfig,
        observer: &'a dyn Observer,
    ) -> Runner<'a> {
        let lost = self
            .guard
            .as_ref()
            .map_or_else(|| Arc::new(AtomicBool::new(false)), LockGuard::lost);
        Runner::new(
            plan,
            self.cluster.clone(),
            &*self.store,
            self.checkpoint.clone(),
            cfg,
            observer,
            lost,
        )
        .with_rollback(&self.rollback_targets())
    }

    /// The plan of the cluster as it is now, for this run: with the old CNI it recorded.
    pub fn plan(&self, spec: &planner::MigrationSpec, snapshot: &planner::ClusterSnapshot) -> Plan {
        match &self.checkpoint.source {
            Some(source) => planner::plan_in_progress(spec, snapshot, source),
            None => planner::plan(spec, snapshot),
        }
    }

    /// Runs the migration, planning again whenever nodes join mid-run: the runner goes on with
    /// the nodes it planned and, once none is in flight, this asks `discover` for the cluster
    /// as it is now, plans it (same spec, same recorded old CNI) and goes on over the same
    /// checkpoint, so a joined node is admitted under the same rules as any other. Returns
    /// how the run ended and what it did (over every pass).
    ///
    /// # Errors
    /// As [`Runner::run`].
    pub async fn run<F, Fut>(
        &mut self,
        plan: &Plan,
        cfg: RunConfig,
        observer: &dyn Observer,
        discover: F,
    ) -> (Result<Outcome, RunError>, Summary)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<planner::ClusterSnapshot>>,
    {
        let mut owned: Option<Plan> = None;
        let mut counters = Counters::default();
        loop {
            let current = owned.as_ref().unwrap_or(plan);
            let runner = self.runner(current, cfg.clone(), observer).replanning();
            *runner
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = counters;
            let pass = runner.run_pass().await;
            let summary = runner.summary().await;
            counters = runner
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let checkpoint = runner.checkpoint().await;
            drop(runner);
            self.checkpoint = checkpoint;
            let why = match pass {
                Ok(Pass::Replan(why)) => why,
                Ok(Pass::Ended(outcome)) => return (Ok(outcome), summary),
                Err(e) => return (Err(e), summary),
            };
            let stop = |message: String| {
                let outcome = Outcome::Gate {
                    step: "final-values".into(),
                    message: format!("{why}, but {message}; `cni-migrate resume` plans again"),
                };
                (Ok(outcome), summary.clone())
            };
            let Some(snapshot) = discover().await else {
                return stop("the cluster cannot be read now".into());
            };
            let next = self.plan(&current.spec, &snapshot);
            if let Err(e) = self.checkpoint.verify_fingerprint(&next) {
                return stop(format!("the plan of the cluster now differs: {e}"));
            }
            let same = |a: &Plan, b: &Plan| {
                let key = |n: &planner::plan::PlannedNode| (n.name.clone(), n.uid.clone());
                a.nodes.iter().map(key).eq(b.nodes.iter().map(key))
            };
            if same(current, &next) {
                return stop("its plan has the same nodes".into());
            }
            owned = Some(next);
        }
    }

    /// Whether the lock was lost during the run.
    pub fn lock_lost(&self) -> bool {
        self.guard
            .as_ref()
            .is_some_and(|g| g.lost.load(Ordering::SeqCst))
    }

    /// Ends the session: the Lease is released (unless it was lost).
    ///
    /// # Errors
    /// The Lease could not be released (the next run waits for it to go stale).
    pub async fn release(self) -> Result<(), LockError> {
        match self.guard {
            Some(g) => g.release().await,
            None => Ok(()),
        }
    }
}

async fn load(store: &dyn StateStore) -> Result<Option<Checkpoint>, SessionError> {
    Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(2),
        Duration::from_secs(15),
    )
    .retry(|| store.load(), StoreError::is_retriable)
    .await
    .map_err(SessionError::Store)
}

/// What `pause` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paused {
    /// The pause is recorded: no new node starts; nodes in flight finish.
    Now,
    /// It was paused already.
    Already,
}

/// `cni-migrate pause`: records the pause in the checkpoint, which the running run picks up.
///
/// # Errors
/// Nothing recorded ([`SessionError::NothingToResume`] names the store), or the store failing.
pub async fn pause(store: &dyn StateStore) -> Result<Paused, SessionError> {
    for _ in 0..10 {
        let Some(mut ck) = load(store).await? else {
            return Err(SessionError::NothingToResume {
                store: store.describe(),
            });
        };
        if ck.paused {
            return Ok(Paused::Already);
        }
        ck.paused = true;
        match store.save(&mut ck).await {
            Ok(()) => return Ok(Paused::Now),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(SessionError::Store(e)),
        }
    }
    Err(SessionError::Store(StoreError::Conflict {
        expected: 0,
        found: 0,
    }))
}

#[cfg(test)]
mod tests {
    use planner::snapshot::{ClusterSnapshot, NodeInfo};

    use super::*;

    fn checkpoint(finished: bool) -> Checkpoint {
        let spec = planner::MigrationSpec::from_yaml(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
             target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n",
            "t",
        )
        .expect("spec");
        let snap = ClusterSnapshot {
            nodes: vec![NodeInfo {
                name: "n0".into(),
                ready: true,
                ..NodeInfo::default()
            }],
            ..ClusterSnapshot::default()
        };
        let plan = planner::plan(&spec, &snap);
        let mut ck = Checkpoint::new(&plan, "r@h", 1);
        if finished {
            let idx = crate::checkpoint::StepIndex::new(&plan.steps);
            for s in &plan.steps {
                ck.transition(&idx, &s.id, crate::checkpoint::StepState::Running, 2, None)
                    .expect("start");
                ck.transition(&idx, &s.id, crate::checkpoint::StepState::Done, 3, None)
                    .expect("done");
            }
        }
        ck
    }

    #[test]
    fn what_each_command_may_do_with_what_is_recorded() {
        let resume = Intent::Resume { retry: Vec::new() };
        let rollback = Intent::Rollback { node: None };
        assert_eq!(
            judge(&Intent::Apply, None, "s", false).ok(),
            Some(Allowed::Start)
        );
        assert!(matches!(
            judge(&Intent::Apply, Some(checkpoint(false)), "s", false),
            Err(SessionError::AlreadyRecorded { .. })
        ));
        assert!(matches!(
            judge(&Intent::Apply, Some(checkpoint(false)), "s", true),
            Err(SessionError::StartedMeanwhile { .. })
        ));
        assert!(matches!(
            judge(&Intent::Apply, Some(checkpoint(true)), "s", false),
            Ok(Allowed::Complete { .. })
        ));
        assert!(matches!(
            judge(&resume, None, "s", false),
            Err(SessionError::NothingToResume { .. })
        ));
        assert!(matches!(
            judge(&resume, None, "s", true),
            Err(SessionError::Gone { .. })
        ));
        assert!(matches!(
            judge(&resume, Some(checkpoint(false)), "s", false),
            Ok(Allowed::Continue(_))
        ));
        assert!(matches!(
            judge(&resume, Some(checkpoint(true)), "s", false),
            Ok(Allowed::Complete { .. })
        ));
        assert!(matches!(
            judge(&rollback, None, "s", false),
            Err(SessionError::NothingToRollBack { .. })
        ));
        assert!(matches!(
            judge(&rollback, Some(checkpoint(true)), "s", false),
            Err(SessionError::RollbackAfterFinish { .. })
        ));
        assert!(
            judge(&rollback, Some(checkpoint(false)), "s", false)
                .is_ok_and(|a| matches!(a, Allowed::Continue(_)))
        );
        assert!(SessionError::Gone { store: "s".into() }.is_bad_input());
    }
}
