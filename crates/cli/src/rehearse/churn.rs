//! The rehearsal's account of nodes that joined and left: what the `node-join` and
//! `node-leave` faults did to the model, and what the run did about each node (from the
//! checkpoint it left: migrated with or without a drain, recorded gone and where its chain
//! stopped, replaced under the same name).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use executor::checkpoint::{Checkpoint, NodeRecord, NodeStatus};
use serde::Serialize;

/// What a `node-join` / `node-leave` fault did, when (model time).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultFired {
    /// The fault's delay, in model seconds.
    pub at_seconds: f64,
    /// What happened, or why it could not.
    pub what: String,
}

/// What the run did about a node that joined or left.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeChurn {
    /// The node.
    pub node: String,
    /// `joined`, `left` or `replaced`.
    pub change: String,
    /// What the run did, in words.
    pub outcome: String,
}

/// Where the faults' reports land while the rehearsal runs.
pub type Fired = Arc<Mutex<Vec<FaultFired>>>;

/// A callback for [`sim::churn::spawn`] that records into `fired` (and prints as it goes).
pub fn recorder(
    fired: &Fired,
) -> impl Fn(Duration, Result<String, String>) + Send + Sync + 'static {
    let fired = fired.clone();
    move |at, r| {
        let what = r.unwrap_or_else(|e| format!("fault {e}"));
        println!("{:>9} fault: {what}", format!("@{}s", at.as_secs()));
        fired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(FaultFired {
                at_seconds: at.as_secs_f64(),
                what,
            });
    }
}

fn stopped_at(ck: &Checkpoint, rec: &NodeRecord) -> String {
    if rec.done() {
        return "after it was migrated".into();
    }
    match rec.status_ignoring_left() {
        NodeStatus::Pending | NodeStatus::Awaiting => "before its chain started".into(),
        _ => {
            let at = rec
                .steps
                .iter()
                .position(|s| !s.state.is_complete())
                .unwrap_or_default();
            let step = ck.chain.get(at).map_or("?", String::as_str);
            format!("mid-chain: its chain stopped at step {step}")
        }
    }
}

fn joined_outcome(rec: &NodeRecord) -> String {
    let light = rec.prior.as_ref().is_some_and(|p| p.light);
    match rec.status() {
        NodeStatus::Done if light => {
            "migrated without drain (it ran no workload pods: label, agent restart, verification; no cordon or drain)".into()
        }
        NodeStatus::Done => "migrated with the full chain (cordoned, drained, verified, uncordoned)".into(),
        NodeStatus::Awaiting => "held (rollout.newNodes: hold): not migrated".into(),
        NodeStatus::Failed { .. } => format!(
            "failed: {}",
            rec.message.clone().unwrap_or_else(|| "a step failed".into())
        ),
        NodeStatus::InFlight { .. } => "in flight when the run stopped".into(),
        _ => "not migrated when the run stopped".into(),
    }
}

/// Every node that joined, left or was replaced during the run, and what the run did.
pub fn outcomes(ck: &Checkpoint) -> Vec<NodeChurn> {
    let mut out = Vec::new();
    for f in &ck.replaced {
        out.push(NodeChurn {
            node: f.name.clone(),
            change: "replaced".into(),
            outcome: format!(
                "replaced under the same name (a new UID): the old node recorded gone, not failed, {}",
                stopped_at(ck, &f.record)
            ),
        });
    }
    for (name, rec) in &ck.nodes {
        if rec.gone() {
            out.push(NodeChurn {
                node: name.clone(),
                change: "left".into(),
                outcome: format!("recorded gone, not failed, {}", stopped_at(ck, rec)),
            });
        } else if rec.joined.is_some() {
            out.push(NodeChurn {
                node: name.clone(),
                change: "joined".into(),
                outcome: joined_outcome(rec),
            });
        }
    }
    out
}

/// The report's section, in Markdown.
pub fn markdown(fired: &[FaultFired], nodes: &[NodeChurn]) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("## Nodes that joined and left\n\n");
    if fired.is_empty() && nodes.is_empty() {
        md.push_str("None: the node set did not change.\n\n");
        return md;
    }
    for f in fired {
        let _ = writeln!(md, "- at {:.0} s (model time): {}", f.at_seconds, f.what);
    }
    if !fired.is_empty() {
        md.push('\n');
    }
    md.push_str("| node | change | what the run did |\n|---|---|---|\n");
    for n in nodes {
        let _ = writeln!(md, "| {} | {} | {} |", n.node, n.change, n.outcome);
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use executor::checkpoint::{FormerNode, NodePrior, StepRecord, StepState};

    use super::*;

    fn record(states: &str) -> NodeRecord {
        let steps = states
            .chars()
            .map(|c| StepRecord {
                state: match c {
                    'D' => StepState::Done,
                    'S' => StepState::Skipped,
                    'R' => StepState::Running,
                    _ => StepState::Pending,
                },
                started: None,
                finished: None,
            })
            .collect();
        NodeRecord {
            steps,
            ..NodeRecord::default()
        }
    }

    #[test]
    fn each_change_says_what_the_run_did() {
        let mut ck: Checkpoint = serde_json::from_value(serde_json::json!({
            "version": 1, "fingerprint": "f", "plan": "p", "run_id": "r", "created": 0,
            "updated": 0, "generation": 0, "cilium_version": "1.17.3", "global": {},
            "chain": ["cordon", "drain", "label", "restart-agent", "verify", "uncordon"],
            "nodes": {}
        }))
        .expect("a checkpoint");
        let mut light = record("SSDDDS");
        light.joined = Some(30);
        light.prior = Some(NodePrior {
            light: true,
            ..NodePrior::default()
        });
        ck.nodes.insert("empty".into(), light);
        let mut full = record("DDDDDD");
        full.joined = Some(30);
        full.prior = Some(NodePrior::default());
        ck.nodes.insert("busy".into(), full);
        let mut gone = record("DRPPPP");
        gone.left = Some(60);
        ck.nodes.insert("spot".into(), gone);
        ck.nodes.insert("steady".into(), record("DDDDDD"));
        let mut old = record("DDDDDD");
        old.left = Some(90);
        ck.replaced.push(FormerNode {
            name: "same".into(),
            record: old,
        });
        let said: Vec<(String, String, String)> = outcomes(&ck)
            .into_iter()
            .map(|n| (n.node, n.change, n.outcome))
            .collect();
        let of = |node: &str| {
            said.iter()
                .find(|(n, _, _)| n == node)
                .map(|(_, c, o)| (c.as_str(), o.as_str()))
                .unwrap_or_else(|| panic!("{node} in {said:?}"))
        };
        assert!(of("empty").1.starts_with("migrated without drain"));
        assert!(of("busy").1.starts_with("migrated with the full chain"));
        assert_eq!(of("spot").0, "left");
        assert!(
            of("spot").1.contains("its chain stopped at step drain"),
            "{said:?}"
        );
        assert_eq!(of("same").0, "replaced");
        assert!(of("same").1.contains("after it was migrated"), "{said:?}");
        assert!(!said.iter().any(|(n, _, _)| n == "steady"));
        let md = markdown(
            &[FaultFired {
                at_seconds: 60.0,
                what: "node spot left".into(),
            }],
            &outcomes(&ck),
        );
        assert!(
            md.contains("- at 60 s (model time): node spot left"),
            "{md}"
        );
        assert!(md.contains("| spot | left | recorded gone"), "{md}");
    }
}
