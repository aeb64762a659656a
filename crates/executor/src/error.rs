//! Why a step failed: one [`StepError`], a variant per way a step can fail, each carrying what
//! was expected and what was seen, so a failure names the node, the object and what to do.
//!
//! ```text
//! StepError ─┬─ the node:      NodeGone · NodeNotReady · RebootHook
//!            ├─ the API:       Cluster (retriable when the server failed for a passing reason)
//!            ├─ Helm:          Helm (retriable unless refused by RBAC) · NoHelmCommand ·
//!            │                 WriteValues · ConfigNotLive · AgentDaemonSetMissing ·
//!            │                 RolloutIncomplete
//!            ├─ drain, agent:  Drain(DrainError) · Agent(AgentError)
//!            ├─ proof:         AgentNotFresh · CiliumNodeCidrs · CidrClash · PodsOffCilium ·
//!            │                 Probe · PodNotDone · RestoreFailed · FinalCheck
//!            ├─ EKS:           AwsNodeNotConfined · AwsNodeStayed · AwsNodeNotBack · NatFlush
//!            └─ the run:       Preflight · FinalValuesNotLive · StillThere · OldCniCleanup · Record
//! ```

use std::time::Duration;

use cluster::ClusterError;

use crate::{agent::AgentError, drain::DrainError};

/// What a node's CiliumNode showed instead of pod CIDRs inside Cilium's ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrsSeen {
    /// There is no CiliumNode for the node.
    NoCiliumNode,
    /// The CiliumNode has no pod CIDRs yet.
    NoneAllocated,
    /// These CIDRs lie outside the ranges.
    Outside(Vec<String>),
}

/// One thing the verification probe's report got wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeProblem {
    /// A node being migrated still hands out old-overlay addresses.
    NotInPool {
        /// The probe's IP.
        ip: String,
        /// Cilium's ranges.
        pool: String,
    },
    /// A node being rolled back still hands out Cilium addresses.
    StillInPool {
        /// The probe's IP.
        ip: String,
        /// Cilium's ranges.
        pool: String,
    },
    /// The probe pod got no IP.
    NoIp,
    /// The probe did not reach the API server.
    ApiServer(String),
    /// The probe's log has no report.
    NoReport(String),
    /// A beacon was not reached.
    Beacon {
        /// Its IP.
        ip: String,
        /// Its node.
        node: String,
        /// `old` or `cilium`.
        overlay: String,
        /// What the probe printed for it.
        verdict: String,
    },
}

impl std::fmt::Display for ProbeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeProblem::NotInPool { ip, pool } => write!(
                f,
                "expected the probe's IP in {pool}, saw {ip} (the node still hands out old-overlay addresses: is the CiliumNodeConfig applied to it? see the agent's log)"
            ),
            ProbeProblem::StillInPool { ip, pool } => write!(
                f,
                "expected the probe's IP outside Cilium's pool {pool} (back on the old overlay), saw {ip}: the node still runs pods on Cilium (is 05-cilium.conflist still in /etc/cni/net.d?)"
            ),
            ProbeProblem::NoIp => f.write_str("expected the probe pod to have an IP, saw none"),
            ProbeProblem::ApiServer(seen) => write!(
                f,
                "expected the probe to reach the API server (healthz ok), saw {seen}"
            ),
            ProbeProblem::NoReport(seen) => {
                write!(f, "expected the probe's report in its log, saw {seen:?}")
            }
            ProbeProblem::Beacon {
                ip,
                node,
                overlay,
                verdict,
            } => write!(
                f,
                "expected the probe to reach beacon {ip} on {node} ({overlay} overlay), saw {verdict}"
            ),
        }
    }
}

fn joined(v: &[impl std::fmt::Display], sep: &str) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// The first ten of a list, and `...` when there are more.
fn few(v: &[String]) -> String {
    let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
    format!(
        "{}{}",
        shown.join(", "),
        if v.len() > 10 { ", ..." } else { "" }
    )
}

fn final_check(
    outside: &[String],
    pool: &str,
    no_endpoint: &[String],
    policy: &[String],
) -> String {
    let mut reason = Vec::new();
    if !outside.is_empty() {
        reason.push(format!(
            "expected every pod off the host network in {pool}, saw {} outside: {}",
            outside.len(),
            few(outside)
        ));
    }
    if !no_endpoint.is_empty() {
        reason.push(format!(
            "expected a CiliumEndpoint for every pod off the host network, saw {} without one (Cilium does not manage them; restart them): {}",
            no_endpoint.len(),
            few(no_endpoint)
        ));
    }
    reason.extend(policy.iter().cloned());
    reason.join("; ")
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The node does not exist (any more).
    #[error("node {node} does not exist")]
    NodeGone {
        /// Node.
        node: String,
    },
    /// The node did not come back Ready.
    #[error("node {node} is not Ready {}s after the reboot hook", .waited.as_secs())]
    NodeNotReady {
        /// Node.
        node: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The reboot hook failed.
    #[error("reboot hook `{command}` for node {node} failed: {reason}")]
    RebootHook {
        /// Node.
        node: String,
        /// The command as run.
        command: String,
        /// Exit status or spawn error.
        reason: String,
    },
    /// The API failed.
    #[error("{what} failed talking to the API server")]
    Cluster {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: ClusterError,
    },
    /// The Helm command failed.
    #[error("`{command}` failed: {reason}")]
    Helm {
        /// The command as run.
        command: String,
        /// Exit status and stderr, or why it could not start.
        reason: String,
        /// Whether running it again may succeed (`helm upgrade --install` with the same values
        /// is idempotent; a refusal by RBAC will not go away by itself).
        retriable: bool,
    },
    /// `--helm` named no command.
    #[error("--helm is empty: give the helm command, e.g. --helm helm")]
    NoHelmCommand,
    /// A values file could not be written.
    #[error("cannot write {path}")]
    WriteValues {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Helm ran, but `cilium-config` does not show the values.
    #[error("`{command}` ran, but {}s later cilium-config still differs: {}", .waited.as_secs(), .diffs.join("; "))]
    ConfigNotLive {
        /// The command as run.
        command: String,
        /// How long we waited.
        waited: Duration,
        /// `key: expected X, found Y`.
        diffs: Vec<String>,
    },
    /// The agent DaemonSet is not there.
    #[error("expected the Cilium agent DaemonSet kube-system/cilium, found none")]
    AgentDaemonSetMissing,
    /// The agent DaemonSet's rollout stopped making progress.
    #[error("the Cilium agent DaemonSet's rollout made no progress for {}s: {seen}", .waited.as_secs())]
    RolloutIncomplete {
        /// How long it made none.
        waited: Duration,
        /// Its status as last seen.
        seen: String,
    },
    /// An agent step failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A drain failed.
    #[error(transparent)]
    Drain(#[from] DrainError),
    /// No fresh Ready agent on the node.
    #[error(
        "verification of node {node} failed: expected a Ready Cilium agent created after the label, saw: {seen}"
    )]
    AgentNotFresh {
        /// Node.
        node: String,
        /// The agent pods seen.
        seen: String,
    },
    /// The node's CiliumNode has no pod CIDRs inside Cilium's ranges.
    #[error("verification of node {node} failed: {}", match .seen {
        CidrsSeen::NoCiliumNode => format!("expected CiliumNode {node} with pod CIDRs in {pool}, saw no CiliumNode"),
        CidrsSeen::NoneAllocated => format!("expected CiliumNode {node} pod CIDRs in {pool}, saw none allocated"),
        CidrsSeen::Outside(bad) => format!("expected CiliumNode {node} pod CIDRs inside {pool}, saw {}", bad.join(",")),
    })]
    CiliumNodeCidrs {
        /// Node.
        node: String,
        /// Cilium's ranges.
        pool: String,
        /// What was seen.
        seen: CidrsSeen,
    },
    /// The node's Cilium CIDRs overlap a node's own (old overlay) pod CIDR.
    #[error("verification of node {node} failed: expected CiliumNode {node}'s pod CIDRs to overlap no node's own pod CIDR (the old overlay), saw {}: pods on the two overlays would share addresses", .clashes.join("; "))]
    CidrClash {
        /// Node.
        node: String,
        /// `CIDR overlaps NODE's pod CIDR C`.
        clashes: Vec<String>,
    },
    /// Pods started on the node since its agent restarted are not on Cilium.
    #[error("verification of node {node} failed: expected every pod started on {node} since its agent restarted to have an IP in {pool}, saw {}", .pods.join(", "))]
    PodsOffCilium {
        /// Node.
        node: String,
        /// Cilium's ranges.
        pool: String,
        /// `ns/name (ips)`.
        pods: Vec<String>,
    },
    /// The probe's report shows what does not hold.
    #[error("verification of node {node} failed: {}", joined(.problems, "; "))]
    Probe {
        /// Node.
        node: String,
        /// What was wrong.
        problems: Vec<ProbeProblem>,
    },
    /// One of the tool's pods did not run (or finish) in time.
    #[error("verification of node {node} failed: expected the {what} pod {pod} to {} within {}s, saw it {state}{}",
        if *.until_done { "finish" } else { "run" }, .waited.as_secs(),
        if .state.contains("ImagePull") || .state.contains("ErrImage") { " (is rollout.verify.image pullable on the node?)" } else { "" })]
    PodNotDone {
        /// Node.
        node: String,
        /// What the pod is for (`probe`, `CNI restore`, ...).
        what: String,
        /// `ns/name`.
        pod: String,
        /// Waiting for it to finish (or only to run).
        until_done: bool,
        /// How long we waited.
        waited: Duration,
        /// Its phase and waiting reason as last seen.
        state: String,
    },
    /// The rollback's restore pod failed.
    #[error(
        "verification of node {node} failed: expected the restore pod {pod} to succeed, saw it {phase}: {log}"
    )]
    RestoreFailed {
        /// Node.
        node: String,
        /// `ns/name`.
        pod: String,
        /// Its phase.
        phase: String,
        /// What it printed.
        log: String,
    },
    /// The final check found pods not on Cilium or policy enforcement off.
    #[error("the final check failed: {}", final_check(.outside, .pool, .no_endpoint, .policy))]
    FinalCheck {
        /// Pods off the host network with an IP outside Cilium's ranges (`ns/name (ips)`).
        outside: Vec<String>,
        /// Cilium's ranges.
        pool: String,
        /// Pods off the host network without a CiliumEndpoint holding their IP.
        no_endpoint: Vec<String>,
        /// cilium-config entries that differ from policy enforcement on.
        policy: Vec<String>,
    },
    /// aws-node stayed on nodes it should have left.
    #[error("expected aws-node pods to leave every node without {label}=true within {}s, saw {} still there: {}", .waited.as_secs(), .stray.len(), .stray.join(", "))]
    AwsNodeNotConfined {
        /// The node label that keeps aws-node.
        label: String,
        /// How long we waited.
        waited: Duration,
        /// The aws-node pods left.
        stray: Vec<String>,
    },
    /// aws-node stayed on a node whose label was removed.
    #[error("verification of node {node} failed: expected aws-node to leave {node} once its label {label} was removed, saw {} still there after {}s (does aws-node select {label}=true? see the patch-aws-node step)", .pods.join(", "), .waited.as_secs())]
    AwsNodeStayed {
        /// Node.
        node: String,
        /// The label.
        label: String,
        /// The aws-node pods seen.
        pods: Vec<String>,
        /// How long we waited.
        waited: Duration,
    },
    /// aws-node did not come back to a node being rolled back.
    #[error("verification of node {node} failed: expected a Ready aws-node pod on {node} within {}s of labelling it {label}=true, saw {}", .waited.as_secs(), if .seen.is_empty() { "none".to_owned() } else { .seen.join(", ") })]
    AwsNodeNotBack {
        /// Node.
        node: String,
        /// The label.
        label: String,
        /// How long we waited.
        waited: Duration,
        /// The aws-node pods seen.
        seen: Vec<String>,
    },
    /// The VPC CNI's nat chains were not flushed.
    #[error(
        "verification of node {node} failed: expected the VPC CNI's nat chains flushed on {node}, saw {seen}"
    )]
    NatFlush {
        /// Node.
        node: String,
        /// What the flush pod printed.
        seen: String,
    },
    /// The old CNI's leftovers could not be removed from some nodes.
    #[error(
        "the old CNI's leftovers were not removed from {}: {}; the step is safe to run again (`resume`), or reboot those nodes",
        .nodes.join(", "),
        .seen.join("; ")
    )]
    OldCniCleanup {
        /// The nodes whose cleanup failed.
        nodes: Vec<String>,
        /// What each cleanup pod printed or why it did not run.
        seen: Vec<String>,
    },
    /// Preflight found errors.
    #[error("preflight found errors: {}", .codes.join(", "))]
    Preflight {
        /// The error findings' codes.
        codes: Vec<String>,
    },
    /// The CiliumNodeConfig was about to be deleted before the final values are live.
    #[error("the CiliumNodeConfig may only be deleted once the final values are live; cilium-config: {}", .diffs.join("; "))]
    FinalValuesNotLive {
        /// `key: expected X, found Y`.
        diffs: Vec<String>,
    },
    /// An object an operator should have removed is still there.
    #[error("waited {}s for {what}, but {object} is still there; check the operator's logs", .waited.as_secs())]
    StillThere {
        /// What was awaited.
        what: String,
        /// `plural ns/name`.
        object: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The intent could not be recorded before acting.
    #[error("cannot record {what} of node {node} before {before}: {reason}")]
    Record {
        /// Node.
        node: String,
        /// What was to be recorded.
        what: String,
        /// The action it precedes.
        before: String,
        /// Why not.
        reason: String,
    },
}

impl StepError {
    /// Whether running the step again later may succeed without anyone changing anything.
    pub fn is_retriable(&self) -> bool {
        match self {
            StepError::Cluster { source, .. } => source.is_retriable(),
            StepError::Drain(d) => d.is_retriable(),
            StepError::Helm { retriable, .. } => *retriable,
            StepError::Agent(a) => a.is_retriable(),
            _ => false,
        }
    }
}

/// Wraps a cluster error with what was being done.
pub fn cl(what: impl Into<String>) -> impl FnOnce(ClusterError) -> StepError {
    let what = what.into();
    move |source| StepError::Cluster { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_expected_and_what_was_seen() {
        let e = StepError::CiliumNodeCidrs {
            node: "n1".into(),
            pool: "10.245.0.0/16".into(),
            seen: CidrsSeen::Outside(vec!["10.244.1.0/24".into()]),
        };
        assert_eq!(
            e.to_string(),
            "verification of node n1 failed: expected CiliumNode n1 pod CIDRs inside 10.245.0.0/16, saw 10.244.1.0/24"
        );
        let e = StepError::PodNotDone {
            node: "n1".into(),
            what: "probe".into(),
            pod: "kube-system/p".into(),
            until_done: true,
            waited: Duration::from_secs(5),
            state: "Pending, waiting: ErrImagePull".into(),
        };
        assert!(e.to_string().ends_with(
            "to finish within 5s, saw it Pending, waiting: ErrImagePull (is rollout.verify.image pullable on the node?)"
        ));
        let e = StepError::FinalCheck {
            outside: (0..12).map(|i| format!("ns/p{i} (10.244.0.{i})")).collect(),
            pool: "10.245.0.0/16".into(),
            no_endpoint: Vec::new(),
            policy: vec!["enable-policy: expected default, found never".into()],
        };
        let s = e.to_string();
        assert!(
            s.contains("saw 12 outside: ns/p0") && s.contains(", ...; enable-policy"),
            "{s}"
        );
        assert!(
            !StepError::Helm {
                command: "helm".into(),
                reason: "forbidden".into(),
                retriable: false
            }
            .is_retriable()
        );
    }
}
