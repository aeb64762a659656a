//! The run's journal: the checkpoint in memory, written to its store after every transition,
//! so that intent is recorded before effects and a crash at any moment resumes where it
//! stopped.
//!
//! ```text
//! transition(step, to) ─► checkpoint state machine ─► save ─► (test hook: SIGKILL here)
//! transition_unsaved(step, Done) ─► in memory only; the next save of any step writes it
//!   (the next step's Running, in the same write), then the test hook
//! save ─► store.save at the generation read ─┬─ ok
//!                                            ├─ conflict: re-read; another run's ─► Superseded
//!                                            │            a `pause` ─► merged, written again
//!                                            └─ retriable failure ─► backoff, within budget
//! refresh_pause ─► re-read: a `pause` written by `cni-migrate pause` from any machine (no
//!                  read when a write of ours was accepted since: it would have met the pause)
//! ```

use std::time::Duration;

use planner::Step;
use tokio::sync::Mutex;

use crate::{
    checkpoint::{Checkpoint, StepIndex, StepState},
    config::{CrashPoint, Timing},
    events::Observer,
    outcome::RunError,
    store::{StateStore, StoreError},
};

/// The checkpoint and where it is kept.
pub struct Journal<'a> {
    store: &'a dyn StateStore,
    /// The checkpoint as this run knows it (held across a write: one writer at a time).
    pub ck: Mutex<Checkpoint>,
    /// The steps the checkpoint may record.
    pub index: StepIndex,
    timing: Timing,
    crash_at: Option<CrashPoint>,
    /// Told of every write (metrics: checkpoint writes and size).
    observer: Option<&'a dyn Observer>,
    /// Transitions made in memory and not written yet that the test hook waits for.
    unsaved: std::sync::Mutex<Vec<(Step, StepState)>>,
    /// A transition is in memory and not written yet.
    dirty: std::sync::atomic::AtomicBool,
    /// When a write of ours was last accepted.
    written_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// A write met a `pause` written by another process (a conflict, merged).
    met_pause: std::sync::atomic::AtomicBool,
}

impl<'a> Journal<'a> {
    /// A journal over a checkpoint.
    pub fn new(
        store: &'a dyn StateStore,
        checkpoint: Checkpoint,
        index: StepIndex,
        timing: Timing,
        crash_at: Option<CrashPoint>,
    ) -> Self {
        Self {
            store,
            ck: Mutex::new(checkpoint),
            index,
            timing,
            crash_at,
            observer: None,
            unsaved: std::sync::Mutex::default(),
            dirty: std::sync::atomic::AtomicBool::new(false),
            written_at: std::sync::Mutex::default(),
            met_pause: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Tells `observer` of every checkpoint write.
    #[must_use]
    pub fn observed(mut self, observer: &'a dyn Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// A step's state (`Pending` for a step the checkpoint does not know).
    pub fn state(&self, ck: &Checkpoint, step: &Step) -> StepState {
        ck.state(&self.index, &step.id)
            .unwrap_or(StepState::Pending)
    }

    /// Saves, merging a `pause` written by another process and retrying the store's
    /// retriable failures.
    ///
    /// # Errors
    /// [`RunError::Superseded`] when another run wrote the checkpoint; the store's failures.
    pub async fn save(&self, ck: &mut Checkpoint) -> Result<(), RunError> {
        self.dirty.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut backoff = self.timing.backoff();
        loop {
            match self.store.save(ck).await {
                Ok(()) => {
                    *self
                        .written_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(tokio::time::Instant::now());
                    if let Some(o) = self.observer {
                        o.checkpoint_saved(self.store.last_size());
                    }
                    let written = std::mem::take(
                        &mut *self
                            .unsaved
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
                    for (step, state) in written {
                        self.maybe_crash(&step, state);
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    let Some(stored) = self.load().await? else {
                        // Deleted under us: write ours again from scratch.
                        ck.generation = 0;
                        continue;
                    };
                    if stored.run_id != ck.run_id {
                        return Err(RunError::Superseded(stored.run_id));
                    }
                    if stored.paused && !ck.paused {
                        self.met_pause
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    ck.paused = stored.paused;
                    ck.generation = stored.generation;
                }
                Err(e) if e.is_retriable() => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(error = %e, "checkpoint write failed; retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn load(&self) -> Result<Option<Checkpoint>, RunError> {
        Ok(self
            .timing
            .backoff()
            .retry(|| self.store.load(), StoreError::is_retriable)
            .await?)
    }

    /// Moves a step to `to` and saves; then the test hook may kill the process.
    ///
    /// # Errors
    /// The checkpoint refusing the transition, or the save failing.
    pub async fn transition(
        &self,
        step: &Step,
        to: StepState,
        now: u64,
        message: Option<String>,
    ) -> Result<(), RunError> {
        let mut ck = self.ck.lock().await;
        ck.transition(&self.index, &step.id, to, now, message)?;
        self.save(&mut ck).await?;
        drop(ck);
        self.maybe_crash(step, to);
        Ok(())
    }

    /// Notes that the checkpoint (whose lock the caller holds) changed in memory and is not
    /// written yet: the next save, or [`Journal::flush`], writes it.
    pub fn unsaved(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes what [`Journal::transition_unsaved`] left in memory, if anything.
    ///
    /// # Errors
    /// The save failing.
    pub async fn flush(&self) -> Result<(), RunError> {
        let mut ck = self.ck.lock().await;
        if !self.dirty.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.save(&mut ck).await
    }

    /// Moves a step to `to` in memory only: the next save (of any step) writes it. For a
    /// step's end when the next step of its chain starts at once: its `Running` is written
    /// before it acts, and carries this in the same write. A crash before that write re-runs
    /// the step on resume (steps are idempotent), which is what resuming a step recorded as
    /// running does anyway.
    ///
    /// # Errors
    /// The checkpoint refusing the transition.
    pub async fn transition_unsaved(
        &self,
        step: &Step,
        to: StepState,
        now: u64,
        message: Option<String>,
    ) -> Result<(), RunError> {
        let mut ck = self.ck.lock().await;
        ck.transition(&self.index, &step.id, to, now, message)?;
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(ck);
        if self
            .crash_at
            .as_ref()
            .is_some_and(|c| c.step == step.id && c.state == to)
        {
            self.unsaved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((step.clone(), to));
        }
        Ok(())
    }

    fn maybe_crash(&self, step: &Step, state: StepState) {
        if let Some(c) = &self.crash_at
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

    /// Picks up a `pause` another process wrote into the checkpoint: `true` when it newly
    /// paused the run.
    ///
    /// # Errors
    /// [`RunError::Superseded`] when another run wrote the checkpoint.
    ///
    /// No read when a write of ours was accepted within `fresh`: a `pause` (or another run)
    /// written before it made it conflict, and was merged (or stopped this run) then.
    pub async fn refresh_pause(&self, fresh: Duration) -> Result<bool, RunError> {
        let met = || {
            self.met_pause
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        };
        let recent = self
            .written_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < fresh);
        if recent {
            return Ok(met());
        }
        let stored = match self.store.load().await {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::debug!(error = %e, "cannot re-read the checkpoint for a pause");
                return Ok(false);
            }
        };
        let mut ck = self.ck.lock().await;
        if stored.run_id != ck.run_id {
            return Err(RunError::Superseded(stored.run_id));
        }
        let mut newly = met();
        if stored.generation > ck.generation {
            newly |= stored.paused && !ck.paused;
            ck.paused = stored.paused;
            ck.generation = stored.generation;
        }
        Ok(newly)
    }
}
