//! Preflight: the spec checked against the facts.

use crate::{
    facts::NetworkFacts, findings::Finding, snapshot::ClusterSnapshot, spec::MigrationSpec,
};

/// Every finding, sorted by severity, then code, then objects.
pub fn preflight(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    facts: &NetworkFacts,
) -> Vec<Finding> {
    let _ = (spec, snapshot, facts);
    Vec::new()
}
