//! A link: one step before it is placed in the DAG (no id, no dependencies yet), and the two
//! ways links become [`Step`]s.
//!
//! ```text
//! Link { kind, timeout, description, commands }
//!   ├─ global(phase, deps)                 ─► Step  id = kind            (prelude, finale)
//!   └─ chain([links], node, prefix, deps)  ─► Steps id = PREFIX + kind, each depending on
//!                                                    the one before        (a node's chain)
//! ```
//!
//! The forward chain and the rollback chain are built from the same links, so a step reads and
//! times out the same way wherever it appears.

use super::types::{Phase, Step, StepKind};

/// A step before it is placed: what it does, how long it may take, how it reads, and what a
/// human would type instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Link {
    /// What the step does.
    pub(super) kind: StepKind,
    /// How long it may take before it fails, in seconds.
    pub(super) timeout_seconds: u64,
    /// One line a reviewer can read.
    pub(super) description: String,
    /// The kubectl / helm commands that do the same by hand.
    pub(super) commands: Vec<String>,
}

impl Link {
    /// A link of `kind`.
    pub(super) fn new(
        kind: StepKind,
        timeout_seconds: u64,
        description: String,
        commands: Vec<String>,
    ) -> Self {
        Self {
            kind,
            timeout_seconds,
            description,
            commands,
        }
    }

    /// The link as a step of the cluster as a whole: its id is its kind, it has no node.
    pub(super) fn global(self, phase: Phase, depends_on: Vec<String>) -> Step {
        Step {
            id: self.kind.as_str().to_owned(),
            kind: self.kind,
            node: None,
            depends_on,
            phase,
            timeout_seconds: self.timeout_seconds,
            description: self.description,
            commands: self.commands,
        }
    }
}

/// A node's links as steps, one after another: ids `{id_prefix}{kind}`, the first depending on
/// `first_deps`, each of the others on the step before it.
pub(super) fn chain(
    links: Vec<Link>,
    node: &str,
    id_prefix: &str,
    phase: Phase,
    first_deps: Vec<String>,
) -> Vec<Step> {
    let mut deps = first_deps;
    let mut steps = Vec::with_capacity(links.len());
    for link in links {
        let id = format!("{id_prefix}{}", link.kind.as_str());
        steps.push(Step {
            id: id.clone(),
            kind: link.kind,
            node: Some(node.to_owned()),
            depends_on: deps,
            phase,
            timeout_seconds: link.timeout_seconds,
            description: link.description,
            commands: link.commands,
        });
        deps = vec![id];
    }
    steps
}
