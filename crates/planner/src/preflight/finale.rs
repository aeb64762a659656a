//! How long the finale takes.
//!
//! ```text
//! FINAL_RESTART_SLOW   the final values restart every Cilium agent, the chart's
//!                      updateStrategy.rollingUpdate.maxUnavailable (2) at a time: on a large
//!                      cluster that restart alone takes hours, after every node has migrated
//! ```

use super::common::finding;
use crate::{
    findings::{Finding, FindingCode, Severity},
    snapshot::ClusterSnapshot,
};

/// Agents the chart's DaemonSet replaces at once (`updateStrategy.rollingUpdate.maxUnavailable`).
const CHART_MAX_UNAVAILABLE: usize = 2;
/// An agent's restart to Ready on a healthy cluster, seconds: the low and the high end.
const RESTART_SECONDS: (usize, usize) = (10, 30);
/// The restart's high end past which the plan says so.
const WORTH_SAYING_SECONDS: usize = 30 * 60;

/// Minutes, or hours past two.
#[allow(clippy::cast_precision_loss)] // display only
fn human(seconds: usize) -> String {
    let minutes = seconds.div_ceil(60);
    if minutes >= 120 {
        format!("{:.1} h", seconds as f64 / 3600.0)
    } else {
        format!("{minutes} min")
    }
}

/// The final values' restart of every agent, two at a time, takes long on this many nodes.
pub(super) fn final_restart(snapshot: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let nodes = snapshot.nodes.len();
    let rounds = nodes.div_ceil(CHART_MAX_UNAVAILABLE);
    let (low, high) = (rounds * RESTART_SECONDS.0, rounds * RESTART_SECONDS.1);
    if high <= WORTH_SAYING_SECONDS {
        return;
    }
    out.push(finding(
        FindingCode::FinalRestartSlow,
        Severity::Warning,
        format!(
            "the final values restart all {nodes} Cilium agents {CHART_MAX_UNAVAILABLE} at a time (the chart's updateStrategy.rollingUpdate.maxUnavailable): {rounds} rounds, about {} to {} at {}-{} s an agent, after every node has migrated (a rehearsal of 1,000 nodes spent 3.3 h there)",
            human(low),
            human(high),
            RESTART_SECONDS.0,
            RESTART_SECONDS.1
        ),
        Vec::new(),
        "if the cluster can have that share of its agents restarting at once (a restarting agent holds back new pods on its node, not established traffic), add updateStrategy: {rollingUpdate: {maxUnavailable: 10%}} to values-final.yaml before final-values: ten rounds, whatever the node count".to_owned(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::NodeInfo;

    fn cluster(nodes: usize) -> ClusterSnapshot {
        ClusterSnapshot {
            nodes: (0..nodes)
                .map(|i| NodeInfo {
                    name: format!("n{i}"),
                    ..NodeInfo::default()
                })
                .collect(),
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn a_large_cluster_hears_how_long_the_final_restart_takes() {
        let mut out = Vec::new();
        final_restart(&cluster(119), &mut out);
        assert!(out.is_empty(), "60 rounds of 30 s: under half an hour");
        final_restart(&cluster(1000), &mut out);
        let f = &out[0];
        assert_eq!(
            (f.code, f.severity),
            (FindingCode::FinalRestartSlow, Severity::Warning)
        );
        assert!(
            f.message.contains("500 rounds") && f.message.contains("84 min to 4.2 h"),
            "{}",
            f.message
        );
        assert!(f.fix.contains("maxUnavailable: 10%"), "{}", f.fix);
    }
}
