//! The plan's fingerprint: what a checkpoint is matched against before a run resumes.
//!
//! ```text
//! spec + source overlay (cni, pod CIDRs, encapsulation, port) + service CIDRs
//!   ─► canonical JSON (with "v": 2) ─► sha256 ─► "sha256:" + first 32 hex digits
//! ```
//!
//! The operational controls (`rollout.windows`, `gates`, `healthBudget`) are not part of it:
//! they may change between `resume`s. The node set is not part of it either: nodes join and leave while a migration runs (autoscalers,
//! node groups, spot interruptions), and the checkpoint records them as they come and go.
//! Checkpoints written before that (version 1 fingerprints, which hashed the node names too)
//! are still matched through [`legacy_fingerprint`].

use sha2::{Digest, Sha256};

use crate::{facts::NetworkFacts, spec::MigrationSpec};

fn hash(doc: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(doc.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..32])
}

/// The spec without its operational controls (windows, gates, health budget): they say when
/// and how carefully nodes move, not what the migration does, so an SRE may change them
/// between `resume`s. Specs without them serialize as before (the fields are left out when
/// unset), so older fingerprints still match.
fn without_controls(spec: &MigrationSpec) -> MigrationSpec {
    let mut spec = spec.clone();
    spec.rollout.windows.clear();
    spec.rollout.gates = crate::spec::Gates::default();
    spec.rollout.health_budget = None;
    spec
}

fn source(facts: &NetworkFacts) -> serde_json::Value {
    serde_json::json!({
        "cni": facts.source.cni,
        "podCIDRs": facts.source.pod_cidrs,
        "encapsulation": facts.source.encapsulation,
        "port": facts.source.port,
    })
}

/// The fingerprint covers the spec, the source overlay and the service CIDR: the facts a
/// half-done migration relies on. It deliberately leaves out what a migration itself changes
/// (an installed Cilium, pods, cordons) and the node set, so a resumed run matches.
pub fn fingerprint(spec: &MigrationSpec, facts: &NetworkFacts) -> String {
    hash(&serde_json::json!({
        "v": 2,
        "spec": without_controls(spec),
        "source": source(facts),
        "serviceCIDRs": facts.service.cidrs,
    }))
}

/// The fingerprint as version 1 computed it, with the node names: a checkpoint written then
/// matches when its own node names give this.
pub fn legacy_fingerprint(spec: &MigrationSpec, facts: &NetworkFacts, nodes: &[&str]) -> String {
    let mut sorted: Vec<&str> = nodes.to_vec();
    sorted.sort_unstable();
    hash(&serde_json::json!({
        "spec": without_controls(spec),
        "source": source(facts),
        "serviceCIDRs": facts.service.cidrs,
        "nodes": sorted,
    }))
}
