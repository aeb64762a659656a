//! Who is in the migration: nodes that joined and left (reconciled against each run's plan),
//! which nodes are settled or migrated, and what the record says was already changed.

use planner::plan::Plan;

use super::{Checkpoint, FormerNode, NodeChanges, NodeRecord, StepState, rel, short_uid};

impl Checkpoint {
    /// What the recorded migration has already changed, in words (`2 of 3 node(s) done, 1 in
    /// flight, 3 cluster step(s) done`), or `None` when it has changed nothing yet. Messages
    /// that would otherwise say "nothing was changed" say this instead.
    pub fn progress(&self) -> Option<String> {
        let done = self.nodes.values().filter(|n| n.done()).count();
        let in_flight = self.nodes.values().filter(|n| n.in_flight()).count();
        let held = self.nodes.values().filter(|n| n.held()).count();
        let cluster = self
            .global
            .values()
            .filter(|g| g.state != StepState::Pending)
            .count();
        if done + in_flight + held + cluster == 0 {
            return None;
        }
        let mut parts = vec![format!("{done} of {} node(s) done", self.nodes.len())];
        if in_flight > 0 {
            parts.push(format!("{in_flight} in flight"));
        }
        if held > 0 {
            parts.push(format!("{held} rolled back"));
        }
        parts.push(format!("{cluster} cluster step(s) started or done"));
        Some(parts.join(", "))
    }

    /// Nothing more to do on the node: done, or it left the cluster.
    pub fn node_settled(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.done() || n.gone())
    }

    /// Whether `uid` is another node than the one recorded under `node` (a replacement under
    /// the same name); `false` when either UID is unknown.
    pub fn node_replaced_by(&self, node: &str, uid: &str) -> bool {
        self.nodes
            .get(node)
            .and_then(|r| r.uid.as_deref())
            .zip(short_uid(uid))
            .is_some_and(|(recorded, now)| recorded != now)
    }

    /// Migrated and still in the cluster.
    pub fn node_migrated(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.done() && !n.gone())
    }

    /// Records that `node` left the cluster; `false` when it had already.
    pub fn record_left(&mut self, node: &str, now: u64) -> bool {
        let at = rel(self.created, now);
        match self.nodes.get_mut(node) {
            Some(n) if n.left.is_none() => {
                n.left = Some(at);
                true
            }
            _ => false,
        }
    }

    /// Brings the record's node set in line with the plan's (the cluster's nodes now): a node
    /// of the plan without a record joins with a fresh record of pending steps; a node whose
    /// record says it left, or whose UID is not the recorded one, is a replacement: the old
    /// record is kept in `replaced` and the new node joins; a recorded node the plan no
    /// longer has left. The fingerprint does not cover the node set, so this is how a run
    /// learns of nodes that came and went. A record without a UID (an older checkpoint)
    /// adopts the node's.
    pub fn reconcile_nodes(&mut self, plan: &Plan, now: u64) -> NodeChanges {
        let at = rel(self.created, now);
        let mut changes = NodeChanges::default();
        for n in &plan.nodes {
            let uid = short_uid(&n.uid);
            let fresh = match self.nodes.get_mut(&n.name) {
                None => true,
                Some(r) if r.gone() => true,
                Some(r) if r.uid.is_some() && uid.is_some() && r.uid != uid => {
                    r.left = Some(at);
                    changes.replaced.push(n.name.clone());
                    true
                }
                Some(r) => {
                    if r.uid.is_none() {
                        r.uid.clone_from(&uid);
                    }
                    false
                }
            };
            if fresh {
                let mut record = NodeRecord::pending(plan.node_steps(&n.name).count());
                record.joined = Some(at);
                record.awaiting = plan.spec.rollout.new_nodes == planner::spec::NewNodes::Hold;
                record.uid = uid;
                if let Some(old) = self.nodes.insert(n.name.clone(), record) {
                    self.replaced.push(FormerNode {
                        name: n.name.clone(),
                        record: old,
                    });
                }
                changes.joined.push(n.name.clone());
            }
        }
        let planned: std::collections::BTreeSet<&str> =
            plan.nodes.iter().map(|n| n.name.as_str()).collect();
        for (name, record) in &mut self.nodes {
            if !planned.contains(name.as_str()) && record.left.is_none() {
                record.left = Some(at);
                changes.left.push(name.clone());
            }
        }
        changes
    }
}
