//! The operational controls asked before each admission: maintenance windows, the Prometheus
//! alert gate and the health budget (`rollout.windows`, `rollout.gates`, `rollout.healthBudget`).
//!
//! ```text
//! admission with candidates ─► window ─┬─ outside: hold ("until Mon 22:00 Europe/Berlin"),
//!                                      │  or with --exit-outside-window: halt (a gate, exit 4)
//!                                      ▼
//!                             health budget: NotReady nodes (a LIST of nodes, cached for the
//!                             pause-check period) over maxNotReadyNodes ─► hold
//!                                      ▼
//!                             Prometheus: a query result or a matching alert ─► hold;
//!                             no answer ─► hold, saying so (never read as healthy);
//!                             held longer than holdTimeout ─► halt, naming what held it
//!                                      ▼
//!                                    open ─► the re-check of the migrated nodes, the scheduler
//! ```
//!
//! A hold admits nothing; nodes in flight finish. A halt ends the run at a gate once they have.
//! The windows also hold the prelude's and the finale's steps (the runtime asks
//! [`Controls::window`] before each).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use planner::spec::{
    HealthBudget, PrometheusGate, Rollout, Window, WindowState, describe_instant, window_state,
};

use crate::prometheus::{Answer, Prometheus};

/// Why admissions are held (a label for metrics, a word for humans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldReason {
    /// Outside every maintenance window.
    Window,
    /// More nodes NotReady than the health budget allows.
    HealthBudget,
    /// Prometheus answered with a result or an alert.
    Prometheus,
    /// Prometheus could not be asked.
    PrometheusUnreachable,
}

impl HoldReason {
    /// Every reason, for whoever labels by them.
    pub const ALL: [HoldReason; 4] = [
        HoldReason::Window,
        HoldReason::HealthBudget,
        HoldReason::Prometheus,
        HoldReason::PrometheusUnreachable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Window => "window",
            HoldReason::HealthBudget => "health-budget",
            HoldReason::Prometheus => "prometheus",
            HoldReason::PrometheusUnreachable => "prometheus-unreachable",
        }
    }
}

/// What the controls say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admissions may go on.
    Open,
    /// Nothing is admitted now (why); nodes in flight go on.
    Hold(HoldReason, String),
    /// The run stops at a gate once the nodes in flight finish (what to do).
    Halt(HoldReason, String),
}

/// The controls of one run.
pub struct Controls {
    windows: Vec<Window>,
    exit_outside_window: bool,
    budget: Option<HealthBudget>,
    prometheus: Option<(PrometheusGate, Prometheus)>,
    /// When the Prometheus gate started holding (run-clock seconds), and why.
    held_since: Mutex<Option<u64>>,
    /// The last health reading, and when it was taken.
    health: Mutex<Option<(Instant, Option<String>)>>,
    health_every: Duration,
}

impl Controls {
    /// The controls of a spec's rollout.
    pub fn new(rollout: &Rollout, exit_outside_window: bool, health_every: Duration) -> Self {
        Self {
            windows: rollout.windows.clone(),
            exit_outside_window,
            budget: rollout.health_budget.clone(),
            prometheus: rollout
                .gates
                .prometheus
                .clone()
                .map(|g| (g.clone(), Prometheus::new(&g))),
            held_since: Mutex::new(None),
            health: Mutex::new(None),
            health_every,
        }
    }

    /// Whether any control is set (none: nothing to ask).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
            && self.prometheus.is_none()
            && self
                .budget
                .as_ref()
                .is_none_or(|b| b.max_not_ready_nodes.is_none())
    }

    /// Asks every control, cheapest first; `now` is the run clock's Unix seconds.
    pub async fn check(&self, now: u64, cluster: &dyn cluster::Cluster) -> Verdict {
        if let Some(v) = self.window(now) {
            return v;
        }
        if let Some(v) = self.health(cluster).await {
            return v;
        }
        self.alerts(now).await
    }

    /// The window verdict, or `None` inside one.
    pub fn window(&self, now: u64) -> Option<Verdict> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        match window_state(&self.windows, now) {
            WindowState::Always | WindowState::OpenUntil(_) => None,
            WindowState::ClosedUntil(next) => {
                let until = next.map_or_else(
                    || "no window opens within a week".to_owned(),
                    |t| format!("the next opens {}", describe_instant(&self.windows, t)),
                );
                Some(if self.exit_outside_window {
                    Verdict::Halt(
                        HoldReason::Window,
                        format!(
                            "outside the maintenance windows ({until}); stopped as asked \
                             (--exit-outside-window): `cni-migrate resume` inside a window goes on"
                        ),
                    )
                } else {
                    Verdict::Hold(
                        HoldReason::Window,
                        format!(
                            "outside the maintenance windows: no node starts until {}",
                            until.trim_start_matches("the next opens ")
                        ),
                    )
                })
            }
        }
    }

    async fn health(&self, cluster: &dyn cluster::Cluster) -> Option<Verdict> {
        let budget = self.budget.as_ref()?;
        budget.max_not_ready_nodes.as_ref()?;
        let cached = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|(at, _)| at.elapsed() < self.health_every);
        let reading = match cached {
            Some((_, r)) => r,
            None => {
                let r = match cluster.nodes().await {
                    Ok(nodes) => {
                        let limit = budget.not_ready_limit(nodes.len()).unwrap_or(usize::MAX);
                        let not_ready: Vec<&str> = nodes
                            .iter()
                            .filter(|n| !n.ready)
                            .map(|n| n.name.as_str())
                            .collect();
                        (not_ready.len() > limit).then(|| {
                            let shown: Vec<&str> = not_ready.iter().take(5).copied().collect();
                            format!(
                                "{} node(s) NotReady ({}{}), more than healthBudget.maxNotReadyNodes allows ({limit}): no node starts until they recover",
                                not_ready.len(),
                                shown.join(", "),
                                if not_ready.len() > 5 { ", ..." } else { "" }
                            )
                        })
                    }
                    // Unknown health is not health.
                    Err(e) => Some(format!(
                        "cannot list the nodes to check healthBudget.maxNotReadyNodes ({e}): no node starts until they can be counted"
                    )),
                };
                *self
                    .health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), r.clone()));
                r
            }
        };
        reading.map(|why| Verdict::Hold(HoldReason::HealthBudget, why))
    }

    async fn alerts(&self, now: u64) -> Verdict {
        let Some((gate, client)) = &self.prometheus else {
            return Verdict::Open;
        };
        let (reason, why) = match client.ask().await {
            Answer::Clear => {
                *self
                    .held_since
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                return Verdict::Open;
            }
            Answer::Held(why) => (HoldReason::Prometheus, why),
            Answer::Unreachable(why) => (
                HoldReason::PrometheusUnreachable,
                format!("{why}: holding admissions (no answer is not a healthy answer)"),
            ),
        };
        let since = *self
            .held_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(now);
        let held = Duration::from_secs(now.saturating_sub(since));
        if held >= gate.hold_timeout.0 {
            return Verdict::Halt(
                reason,
                format!(
                    "the Prometheus gate held admissions for {} (rollout.gates.prometheus.holdTimeout {}): {why}; \
                     once it clears, `cni-migrate resume` goes on",
                    humantime::format_duration(held),
                    gate.hold_timeout
                ),
            );
        }
        Verdict::Hold(reason, format!("Prometheus gate: {why}"))
    }
}
