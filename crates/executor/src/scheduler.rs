//! Which nodes to admit now: a pure function of the plan, the checkpoint, what was observed and
//! the time.
//!
//! ```text
//! failure recorded or paused ─► admit nothing (in-flight nodes go on to a safe point)
//! prelude not done ───────────► admit nothing
//! canaries ───────────────────► one at a time, in plan order
//! after the last canary ──────► wait `soak` from its finish
//! the rest ───────────────────► up to maxInFlight at once, pipelined (a finished node frees
//!                               its slot at once), in plan order, skipping NotReady nodes and
//!                               nodes whose drain needs a budget in-flight drains are spending
//!                               while another candidate is free
//! ```

use std::collections::{BTreeMap, BTreeSet};

use planner::plan::{Phase, Plan};

use crate::checkpoint::Checkpoint;

/// What was observed in the cluster just before deciding.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Disruptions each PDB (`namespace/name`) allows now.
    pub pdb_allowed: BTreeMap<String, i64>,
    /// The PDBs each node's drain will need (from the pods on it).
    pub node_pdbs: BTreeMap<String, Vec<String>>,
    /// Nodes that are not Ready.
    pub not_ready: BTreeSet<String>,
    /// A node to admit after every other one (it hosts the old overlay's beacon, which the
    /// verification of every migrated node probes: moving it costs each verification that
    /// waits for it a pod start).
    pub last: Option<String>,
}

/// The decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Nodes to start now, in order.
    pub admit: Vec<String>,
    /// Nodes that could have been admitted and why they were not.
    pub waiting: Vec<(String, String)>,
    /// When set, nothing is admitted before this Unix time (the soak).
    pub not_before: Option<u64>,
    /// Why nothing at all may be admitted now (paused, failed, prelude pending).
    pub stopped: Option<String>,
}

/// Whether the node's drain is still to come or under way (so it may still spend budgets).
fn drain_pending(plan: &Plan, ck: &Checkpoint, node: &str) -> bool {
    let Some(rec) = ck.node(node) else {
        return false;
    };
    plan.node_steps(node)
        .zip(&rec.steps)
        .any(|(step, s)| step.kind == planner::StepKind::Drain && !s.state.is_complete())
}

/// When the node finished, as Unix seconds (its last step's finish).
fn finished_at(ck: &Checkpoint, node: &str) -> Option<u64> {
    let (_, last) = ck.node(node)?.span()?;
    Some(ck.created + u64::from(last))
}

impl Admission {
    /// Why nothing was admitted, in a sentence (empty when there is nothing to say).
    pub fn explain(&self, now: u64) -> String {
        if let Some(s) = &self.stopped {
            return s.clone();
        }
        if let Some(t) = self.not_before {
            return format!(
                "soaking after the canaries: the next node starts in {}s",
                t.saturating_sub(now)
            );
        }
        self.waiting
            .iter()
            .map(|(n, w)| format!("{n}: {w}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// With nothing in flight: rolled-back nodes wait for `resume --retry`, so the run stops at a
/// gate once they are all that is left, or at once when a canary was rolled back. The gate's
/// message, when it must stop.
pub fn rolled_back_wait(plan: &Plan, ck: &Checkpoint) -> Option<String> {
    let left: Vec<&str> = plan
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !ck.node_settled(n))
        .collect();
    let held: Vec<&str> = left.iter().copied().filter(|n| ck.held(n)).collect();
    let canary_held = plan.nodes.iter().any(|n| n.canary && ck.held(&n.name));
    (!held.is_empty() && (held.len() == left.len() || canary_held)).then(|| {
        let (new, back): (Vec<&str>, Vec<&str>) = held
            .iter()
            .partition(|n| ck.node(n).is_some_and(|r| r.awaiting));
        let mut parts = Vec::new();
        if !back.is_empty() {
            parts.push(format!(
                "node(s) {} were rolled back and wait",
                back.join(", ")
            ));
        }
        if !new.is_empty() {
            parts.push(format!(
                "node(s) {} joined after the migration started and wait (rollout.newNodes: hold)",
                new.join(", ")
            ));
        }
        format!(
            "{}: `cni-migrate resume --retry {}` migrates them",
            parts.join("; "),
            held.join(" --retry ")
        )
    })
}

/// Decides which nodes to admit now.
pub fn decide(plan: &Plan, ck: &Checkpoint, obs: &Observations, now: u64) -> Admission {
    let mut out = Admission {
        admit: Vec::new(),
        waiting: Vec::new(),
        not_before: None,
        stopped: None,
    };
    if let Some(f) = &ck.failure {
        out.stopped = Some(format!(
            "stopped by the failure of {}: {}",
            f.step, f.reason
        ));
        return out;
    }
    if ck.paused {
        out.stopped = Some("paused: resume to admit more nodes".into());
        return out;
    }
    let prelude_done = plan
        .steps
        .iter()
        .filter(|s| s.phase == Phase::Prelude)
        .all(|s| ck.global_state(&s.id).is_complete());
    if !prelude_done {
        out.stopped =
            Some("the prelude (preflight, Cilium install, CiliumNodeConfig) is not done".into());
        return out;
    }
    let in_flight: Vec<&str> = plan
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| ck.node_in_flight(n))
        .collect();

    // Canaries, one at a time; a canary rolled back stops the rollout.
    if let Some(canary) = plan
        .nodes
        .iter()
        .filter(|n| n.canary)
        .find(|n| !ck.node_settled(&n.name))
    {
        if ck.held(&canary.name) {
            out.stopped = Some(format!(
                "canary {} was rolled back: no other node starts until `cni-migrate resume --retry {}`",
                canary.name, canary.name
            ));
            return out;
        }
        if in_flight.is_empty() {
            if obs.not_ready.contains(&canary.name) {
                out.waiting.push((canary.name.clone(), "NotReady".into()));
            } else {
                out.admit.push(canary.name.clone());
            }
        }
        return out;
    }
    // Soak after the last canary.
    let soak = plan.spec.rollout.soak.0.as_secs();
    if soak > 0
        && let Some(last) = plan
            .nodes
            .iter()
            .filter(|n| n.canary)
            .filter_map(|n| finished_at(ck, &n.name))
            .max()
        && now < last + soak
    {
        out.not_before = Some(last + soak);
        return out;
    }
    let slots = plan.summary.max_in_flight.saturating_sub(in_flight.len());
    // Budgets that in-flight drains may still spend.
    let mut spent: BTreeMap<String, i64> = BTreeMap::new();
    for n in &in_flight {
        if drain_pending(plan, ck, n) {
            for pdb in obs.node_pdbs.get(*n).into_iter().flatten() {
                *spent.entry(pdb.clone()).or_default() += 1;
            }
        }
    }
    let last = obs.last.as_deref();
    let ordered = plan
        .nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != last)
        .chain(plan.nodes.iter().filter(|n| Some(n.name.as_str()) == last));
    for node in ordered.filter(|n| !n.canary) {
        if out.admit.len() >= slots {
            break;
        }
        let name = node.name.as_str();
        if ck.node_settled(name) || ck.node_in_flight(name) {
            continue;
        }
        if ck.held(name) {
            out.waiting.push((
                name.to_owned(),
                "rolled back (resume --retry to migrate it again)".into(),
            ));
            continue;
        }
        if obs.not_ready.contains(name) {
            out.waiting.push((name.to_owned(), "NotReady".into()));
            continue;
        }
        let needs = obs.node_pdbs.get(name).cloned().unwrap_or_default();
        let blocked: Vec<&String> = needs
            .iter()
            .filter(|pdb| {
                spent.get(pdb.as_str()).copied().unwrap_or(0) > 0
                    && obs.pdb_allowed.get(*pdb).copied().unwrap_or(0)
                        - spent.get(pdb.as_str()).copied().unwrap_or(0)
                        <= 0
            })
            .collect();
        if !blocked.is_empty() {
            out.waiting.push((
                name.to_owned(),
                format!(
                    "PDB {} is being spent by nodes in flight",
                    blocked
                        .iter()
                        .map(|b| b.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        }
        for pdb in &needs {
            *spent.entry(pdb.clone()).or_default() += 1;
        }
        out.admit.push(name.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use planner::snapshot::{ClusterSnapshot, NodeInfo};

    use super::*;
    use crate::checkpoint::{StepIndex, StepState};

    fn plan(nodes: usize, canary: u32, max: &str, soak: &str) -> Plan {
        let spec = planner::MigrationSpec::from_yaml(
            &format!(
                "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\n\
                 target: {{ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {{port: 8473}}}}\n\
                 rollout: {{canary: {canary}, maxUnavailable: {max}, soak: {soak}}}\n"
            ),
            "t",
        )
        .expect("spec");
        let snap = ClusterSnapshot {
            nodes: (0..nodes)
                .map(|i| NodeInfo {
                    name: format!("n{i:02}"),
                    ready: true,
                    ..NodeInfo::default()
                })
                .collect(),
            ..ClusterSnapshot::default()
        };
        planner::plan(&spec, &snap)
    }

    fn finish(ck: &mut Checkpoint, idx: &StepIndex, id: &str, now: u64) {
        ck.transition(idx, id, StepState::Running, now, None)
            .expect("start");
        ck.transition(idx, id, StepState::Done, now, None)
            .expect("done");
    }

    fn finish_node(ck: &mut Checkpoint, idx: &StepIndex, plan: &Plan, node: &str, now: u64) {
        let ids: Vec<String> = plan.node_steps(node).map(|s| s.id.clone()).collect();
        for id in ids {
            finish(ck, idx, &id, now);
        }
    }

    fn start_node(ck: &mut Checkpoint, idx: &StepIndex, plan: &Plan, node: &str, now: u64) {
        let first = plan.node_steps(node).next().expect("chain").id.clone();
        ck.transition(idx, &first, StepState::Running, now, None)
            .expect("start");
    }

    fn ready(plan: &Plan, idx: &StepIndex) -> Checkpoint {
        let mut ck = Checkpoint::new(plan, "r", 1000);
        for id in ["preflight", "cilium-installed", "node-config"] {
            finish(&mut ck, idx, id, 1000);
        }
        ck
    }

    #[test]
    fn nothing_before_the_prelude_then_canaries_one_at_a_time() {
        let p = plan(6, 2, "2", "0s");
        let idx = StepIndex::new(&p.steps);
        let ck = Checkpoint::new(&p, "r", 1000);
        assert!(
            decide(&p, &ck, &Observations::default(), 1000)
                .stopped
                .is_some()
        );
        let mut ck = ready(&p, &idx);
        assert_eq!(
            decide(&p, &ck, &Observations::default(), 1000).admit,
            ["n00"]
        );
        start_node(&mut ck, &idx, &p, "n00", 1001);
        assert!(
            decide(&p, &ck, &Observations::default(), 1001)
                .admit
                .is_empty(),
            "a canary runs alone"
        );
        finish_node(&mut ck, &idx, &p, "n00", 1010);
        assert_eq!(
            decide(&p, &ck, &Observations::default(), 1010).admit,
            ["n01"]
        );
    }

    #[test]
    fn soak_then_pipelined_up_to_max_in_flight() {
        let p = plan(6, 1, "2", "60s");
        let idx = StepIndex::new(&p.steps);
        let mut ck = ready(&p, &idx);
        finish_node(&mut ck, &idx, &p, "n00", 1100);
        let d = decide(&p, &ck, &Observations::default(), 1120);
        assert!(d.admit.is_empty());
        assert_eq!(d.not_before, Some(1160));
        let d = decide(&p, &ck, &Observations::default(), 1160);
        assert_eq!(d.admit, ["n01", "n02"]);
        start_node(&mut ck, &idx, &p, "n01", 1160);
        start_node(&mut ck, &idx, &p, "n02", 1160);
        assert!(
            decide(&p, &ck, &Observations::default(), 1161)
                .admit
                .is_empty(),
            "both slots taken"
        );
        // One node finishes: its slot is free at once, no wave barrier.
        let ids: Vec<String> = p.node_steps("n01").map(|s| s.id.clone()).collect();
        ck.transition(&idx, &ids[0], StepState::Done, 1165, None)
            .expect("done");
        for id in &ids[1..] {
            finish(&mut ck, &idx, id, 1170);
        }
        assert_eq!(
            decide(&p, &ck, &Observations::default(), 1170).admit,
            ["n03"]
        );
    }

    #[test]
    fn a_budget_spent_in_flight_sends_the_next_node_past_it() {
        let p = plan(5, 1, "2", "0s");
        let idx = StepIndex::new(&p.steps);
        let mut ck = ready(&p, &idx);
        finish_node(&mut ck, &idx, &p, "n00", 1100);
        start_node(&mut ck, &idx, &p, "n01", 1101);
        let obs = Observations {
            pdb_allowed: [("shop/web".to_owned(), 1)].into(),
            node_pdbs: [
                ("n01".to_owned(), vec!["shop/web".to_owned()]),
                ("n02".to_owned(), vec!["shop/web".to_owned()]),
            ]
            .into(),
            not_ready: ["n03".to_owned()].into(),
            last: None,
        };
        let d = decide(&p, &ck, &obs, 1102);
        assert_eq!(
            d.admit,
            ["n04"],
            "n02 would wait on shop/web, n03 is NotReady"
        );
        assert!(
            d.waiting
                .iter()
                .any(|(n, why)| n == "n02" && why.contains("shop/web"))
        );
        assert!(
            d.waiting
                .iter()
                .any(|(n, why)| n == "n03" && why == "NotReady")
        );
    }

    #[test]
    fn the_old_beacons_node_is_admitted_after_every_other() {
        let p = plan(5, 1, "2", "0s");
        let idx = StepIndex::new(&p.steps);
        let mut ck = ready(&p, &idx);
        finish_node(&mut ck, &idx, &p, "n00", 1100);
        let mut obs = Observations {
            last: Some("n01".to_owned()),
            ..Observations::default()
        };
        assert_eq!(decide(&p, &ck, &obs, 1101).admit, ["n02", "n03"]);
        for n in ["n02", "n03", "n04"] {
            finish_node(&mut ck, &idx, &p, n, 1102);
        }
        assert_eq!(
            decide(&p, &ck, &obs, 1103).admit,
            ["n01"],
            "last, not never"
        );
        obs.last = None;
        assert_eq!(decide(&p, &ck, &obs, 1103).admit, ["n01"]);
    }

    #[test]
    fn a_failure_or_a_pause_stops_admissions() {
        let p = plan(4, 1, "2", "0s");
        let idx = StepIndex::new(&p.steps);
        let mut ck = ready(&p, &idx);
        ck.paused = true;
        assert!(
            decide(&p, &ck, &Observations::default(), 1)
                .stopped
                .is_some_and(|s| s.contains("paused"))
        );
        ck.paused = false;
        ck.failure = Some(crate::checkpoint::FailureRecord {
            step: "n00/drain".into(),
            reason: "PDB".into(),
            at: 5,
        });
        let d = decide(&p, &ck, &Observations::default(), 1);
        assert!(d.admit.is_empty() && d.stopped.is_some_and(|s| s.contains("n00/drain")));
    }
}
