//! What the DaemonSet controller remembers of a template: its hash, the generation at which
//! it last changed, and which pods are of it (below both the model and the controller, so
//! neither imports the other for it).
//!
//! ```text
//! DaemonSet template ──hash──► changed? ──► generation = metadata.generation
//! pod ── label pod-template-generation == generation ──► current
//! ```

use std::{
    collections::{BTreeSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
};

use serde_json::Value;

/// The label carrying the template generation a DaemonSet pod was made from.
pub(super) const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// What the model remembers of a DaemonSet's template.
pub(super) struct Template {
    pub(super) hash: u64,
    /// `metadata.generation` at the last template change the model saw.
    pub(super) generation: i64,
    /// The generation the model first saw.
    pub(super) initial: i64,
    /// Whether the DaemonSet was settled when first seen (a dump's): it is left without a
    /// pod on the nodes there were when the model started, as the dump has it.
    pub(super) settled: bool,
    /// The nodes the model saw a pod of it on: one whose pod goes gets a new one.
    pub(super) had_pod: BTreeSet<String>,
}

impl Template {
    /// Whether a pod is of the current template (every pod is, until a change).
    pub(super) fn is_current(&self, pod: &Value) -> bool {
        self.generation == self.initial
            || pod["metadata"]["labels"][TEMPLATE_GENERATION]
                .as_str()
                .and_then(|g| g.parse::<i64>().ok())
                == Some(self.generation)
    }
}

/// The hash of a DaemonSet's pod template.
pub(super) fn template_hash(ds: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    ds["spec"]["template"].to_string().hash(&mut h);
    h.finish()
}
