//! The DAG: the prelude, every node's chain and the finale, wired together.
//!
//! ```text
//! prelude end ─► canary 1 ─► canary 2 ─► … ─► last canary ──┐
//!                    │           │                 │         │
//!                    └───────────┴─────────────────┴─► every other node's chain (all of them
//!                                                      wait for every canary; the executor
//!                                                      admits `maxInFlight` at a time)
//! every node's last step ─► finale
//! ```
//!
//! With no canary, every node waits for the prelude only; with no node, the finale does.

use std::collections::BTreeMap;

use petgraph::{algo::toposort, graph::DiGraph};

use super::{
    chain, finale, link, prelude,
    types::{Phase, PlannedNode, Step},
};
use crate::{facts::NetworkFacts, spec::MigrationSpec};

/// Every step of the plan, in an order that respects every dependency.
pub(super) fn build_steps(
    spec: &MigrationSpec,
    facts: &NetworkFacts,
    nodes: &[PlannedNode],
) -> Vec<Step> {
    let (mut steps, prelude_end) = prelude::steps(spec, facts);
    let last_kind = chain::last_kind(spec.target.mode);
    let canary_ends: Vec<String> = nodes
        .iter()
        .filter(|n| n.canary)
        .map(|n| format!("{}/{last_kind}", n.name))
        .collect();
    let mut prev_canary_end: Option<String> = None;
    for node in nodes {
        let entry_deps: Vec<String> = if node.canary {
            // Canaries go one at a time: each waits for the one before.
            vec![
                prev_canary_end
                    .clone()
                    .unwrap_or_else(|| prelude_end.to_owned()),
            ]
        } else if canary_ends.is_empty() {
            vec![prelude_end.to_owned()]
        } else {
            canary_ends.clone()
        };
        steps.extend(link::chain(
            chain::node_links(spec, node),
            &node.name,
            &format!("{}/", node.name),
            Phase::Node,
            entry_deps,
        ));
        if node.canary {
            prev_canary_end = Some(format!("{}/{last_kind}", node.name));
        }
    }
    let all_nodes_done: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/{last_kind}", n.name))
        .collect();
    let after_nodes = if all_nodes_done.is_empty() {
        vec![prelude_end.to_owned()]
    } else {
        all_nodes_done
    };
    steps.extend(finale::steps(spec, facts, nodes, after_nodes));
    steps
}

/// Whether every dependency names a step and the steps form no cycle.
pub(super) fn steps_are_acyclic(steps: &[Step]) -> bool {
    let mut g: DiGraph<(), ()> = DiGraph::new();
    let idx: BTreeMap<&str, _> = steps
        .iter()
        .map(|s| (s.id.as_str(), g.add_node(())))
        .collect();
    for s in steps {
        for d in &s.depends_on {
            match (idx.get(d.as_str()), idx.get(s.id.as_str())) {
                (Some(&a), Some(&b)) => {
                    g.add_edge(a, b, ());
                }
                _ => return false,
            }
        }
    }
    toposort(&g, None).is_ok()
}
