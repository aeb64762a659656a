//! The plan's fingerprint: what a checkpoint is matched against before a run resumes.
//!
//! ```text
//! spec + source overlay (cni, pod CIDRs, encapsulation, port) + service CIDRs + node names
//!   ─► canonical JSON ─► sha256 ─► "sha256:" + first 32 hex digits
//! ```

use sha2::{Digest, Sha256};

use crate::{facts::NetworkFacts, spec::MigrationSpec};

/// The fingerprint covers the spec, the source overlay, the service CIDR and the node set:
/// the facts a half-done migration relies on. It deliberately leaves out what a migration
/// itself changes (an installed Cilium, pods, cordons), so a resumed run matches.
pub fn fingerprint(spec: &MigrationSpec, facts: &NetworkFacts, nodes: &[&str]) -> String {
    let mut sorted: Vec<&str> = nodes.to_vec();
    sorted.sort_unstable();
    let doc = serde_json::json!({
        "spec": spec,
        "source": {
            "cni": facts.source.cni,
            "podCIDRs": facts.source.pod_cidrs,
            "encapsulation": facts.source.encapsulation,
            "port": facts.source.port,
        },
        "serviceCIDRs": facts.service.cidrs,
        "nodes": sorted,
    });
    let mut h = Sha256::new();
    h.update(doc.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..32])
}
