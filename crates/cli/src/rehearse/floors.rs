//! Where a rehearsal's estimate sits: the node phase next to two floors no schedule can beat.
//!
//! ```text
//! node bound   Σ over nodes of (its last step's end − its first step's start) / nodes in flight
//! churn floor  each eviction is a deletion and a creation: 2 × evictions / 20 a second (the
//!              churn the Kubernetes SLOs assume)
//! ```
//!
//! Both in real-time seconds (wall time times the speed). A node phase far above both says the
//! time went to what neither counts: budgets that let one pod go at a time, admissions held.

use std::collections::BTreeMap;

use serde::Serialize;

/// Pod churn (creations and deletions a second) the Kubernetes SLOs assume.
pub const CHURN_PER_SECOND: f64 = 20.0;

/// The node phase and its floors, in real-time seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Floors {
    /// From the first node step's start to the last one's end.
    pub node_phase_seconds: f64,
    /// The nodes' own durations summed, over the nodes in flight.
    pub node_bound_seconds: f64,
    /// Evictions and the creations they cause at [`CHURN_PER_SECOND`].
    pub churn_floor_seconds: f64,
    /// Nodes counted.
    pub nodes: usize,
    /// Evictions counted.
    pub evictions: usize,
}

/// The floors of node steps given as `(node, start ms, end ms)` of wall time, at `speed`, with
/// `in_flight` nodes at most in flight and `evictions` pods evicted.
#[allow(clippy::cast_precision_loss)] // seconds for display
pub fn floors(
    spans: impl IntoIterator<Item = (String, u64, u64)>,
    speed: f64,
    in_flight: usize,
    evictions: usize,
) -> Floors {
    let mut by_node: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (node, start, end) in spans {
        let e = by_node.entry(node).or_insert((start, end));
        e.0 = e.0.min(start);
        e.1 = e.1.max(end);
    }
    let real = |ms: u64| ms as f64 / 1000.0 * speed;
    let phase = match (
        by_node.values().map(|s| s.0).min(),
        by_node.values().map(|s| s.1).max(),
    ) {
        (Some(a), Some(b)) => real(b.saturating_sub(a)),
        _ => 0.0,
    };
    let sum: u64 = by_node.values().map(|(a, b)| b.saturating_sub(*a)).sum();
    Floors {
        node_phase_seconds: phase,
        node_bound_seconds: real(sum) / in_flight.max(1) as f64,
        churn_floor_seconds: 2.0 * evictions as f64 / CHURN_PER_SECOND,
        nodes: by_node.len(),
        evictions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floors_come_from_the_nodes_own_spans_and_the_evictions() {
        let spans = [
            ("a".to_owned(), 0, 1_000),
            ("a".to_owned(), 1_000, 3_000),
            ("b".to_owned(), 1_000, 2_000),
            ("c".to_owned(), 4_000, 6_000),
        ];
        let f = floors(spans, 10.0, 2, 100);
        assert_eq!(f.nodes, 3);
        assert!((f.node_phase_seconds - 60.0).abs() < 1e-9, "{f:?}");
        // a 3 s, b 1 s, c 2 s of wall time: 60 s of real time over 2 in flight.
        assert!((f.node_bound_seconds - 30.0).abs() < 1e-9, "{f:?}");
        assert!((f.churn_floor_seconds - 10.0).abs() < 1e-9, "{f:?}");
        assert_eq!(floors(Vec::new(), 10.0, 0, 0), Floors::default());
    }
}
