//! How a run is configured: its pacing ([`Timing`]), Helm, where values files go, and the test
//! hook that kills the process at a chosen step.
//!
//! ```text
//! RunConfig ─┬─ timing      poll, drain pacing, retry budget, timeouts (real or fast)
//!            ├─ helm        the command line, or None (stop at the Helm gates)
//!            ├─ work_dir    where values-migration.yaml / values-final.yaml are written
//!            └─ crash_at    tests only: SIGKILL right after a step reaches a state
//! ```

use std::{path::PathBuf, time::Duration};

use crate::checkpoint::StepState;

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
    /// How long Cilium's configuration may take to be live after Helm returns, and how long the
    /// agent DaemonSet's rollout may go without progress (it may take longer in all).
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

    /// The backoff of a step's retries, under its budget.
    pub fn backoff(&self) -> crate::wait::Backoff {
        crate::wait::Backoff::new(self.retry_base, self.retry_max, self.retry_budget)
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

/// How to run Helm, when the tool runs it at all.
#[derive(Clone, Debug, Default)]
pub struct Helm {
    /// The Helm command line (`helm`, or `cni-migrate sim helm`); `None` stops at the Helm
    /// gates with the exact command to run.
    pub command: Option<Vec<String>>,
    /// Appended to every Helm command (`--kubeconfig F`, `--kube-context C`).
    pub extra: Vec<String>,
    /// Where the values files for Helm are written.
    pub work_dir: PathBuf,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// This run's identity, `run-id@host`.
    pub run_id: String,
    /// Helm.
    pub helm: Helm,
    /// Pacing.
    pub timing: Timing,
    /// Stop at a gate before the finale (the old CNI stays until `resume`).
    pub stop_before_finalize: bool,
    /// Record a Kubernetes Event on the Node for each transition.
    pub node_events: bool,
    /// For rehearsals only: go on past preflight errors, to show what they lead to.
    pub ignore_preflight: bool,
    /// Test hook: kill the process at this point.
    pub crash_at: Option<CrashPoint>,
    /// Outside every maintenance window, stop at a gate (exit 4) instead of waiting.
    pub exit_outside_window: bool,
    /// The Unix second the run's clock starts at (`None`: now). Tests and rehearsals set it to
    /// put a run at a chosen moment against its maintenance windows.
    pub clock_start: Option<u64>,
}

impl RunConfig {
    /// A configuration with the given identity and pacing, no Helm, events on.
    pub fn new(run_id: impl Into<String>, timing: Timing) -> Self {
        Self {
            run_id: run_id.into(),
            helm: Helm::default(),
            timing,
            stop_before_finalize: false,
            node_events: true,
            ignore_preflight: false,
            crash_at: None,
            exit_outside_window: false,
            clock_start: None,
        }
    }
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
