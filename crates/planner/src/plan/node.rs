//! The links of a node's chain in the overlay migrations (dual-overlay and eks-overlay), each
//! with its description and kubectl equivalent; the rollback chain reuses the ones that read
//! the same backwards.
//!
//! ```text
//! cordon ─► drain ─► label ─► restart-agent ─► [reboot] ─► verify ─► uncordon
//!   │         │        │            │              │          │         │
//!   │         │        │            │              │          │         └ only if the tool
//!   │         │        │            │              │          │           cordoned the node
//!   │         │        │            │              │          └ agent Ready, pod CIDRs in the
//!   │         │        │            │              │            new pool, probe on Cilium
//!   │         │        │            │              └ rollout.reboot, when the spec has one
//!   │         │        │            └ the new agent writes 05-cilium.conflist
//!   │         │        └ the CiliumNodeConfig selects the node
//!   │         └ eviction API, PDBs honoured
//!   └ recorded, so uncordon leaves a node cordoned before the migration alone
//! ```

use super::{
    link::Link,
    types::{PlannedNode, StepKind},
};
use crate::{
    commands::{drain_command, reboot_command_line, secs, verify_command},
    names::{CILIUM_NAMESPACE, MIGRATION_LABEL},
    spec::{MigrationSpec, Reboot},
};

/// Cordon the node, or record that it already is.
pub(super) fn cordon(node: &PlannedNode) -> Link {
    let name = node.name.as_str();
    Link::new(
        StepKind::Cordon,
        60,
        if node.cordoned {
            format!("{name} is already cordoned: record it, and leave it cordoned at the end")
        } else {
            format!("cordon {name}, recording that the tool cordoned it")
        },
        vec![format!("kubectl cordon {name}")],
    )
}

/// Evict the node's pods through the eviction API.
pub(super) fn drain(spec: &MigrationSpec, node: &PlannedNode) -> Link {
    let name = node.name.as_str();
    Link::new(
        StepKind::Drain,
        secs(spec.rollout.drain.timeout.0),
        format!(
            "evict {} pod(s) from {name} through the eviction API{}, waiting for each to be gone (404 or new UID)",
            node.pods_to_evict,
            honouring(node)
        ),
        vec![drain_command(spec, name)],
    )
}

/// `, honouring PDBs a, b` when PDBs cover the node's pods.
pub(super) fn honouring(node: &PlannedNode) -> String {
    if node.pdbs.is_empty() {
        String::new()
    } else {
        format!(", honouring PDBs {}", node.pdbs.join(", "))
    }
}

/// Label the node so the migration `CiliumNodeConfig` selects it.
pub(super) fn label(name: &str) -> Link {
    Link::new(
        StepKind::Label,
        60,
        format!("label {name} {MIGRATION_LABEL}=true so the CiliumNodeConfig applies to it"),
        vec![format!(
            "kubectl label node {name} --overwrite {MIGRATION_LABEL}=true"
        )],
    )
}

/// The kubectl lines that restart the node's Cilium agent and wait for the DaemonSet.
pub(super) fn restart_agent_commands(name: &str) -> Vec<String> {
    vec![
        format!(
            "kubectl -n {CILIUM_NAMESPACE} delete pod --field-selector spec.nodeName={name} -l k8s-app=cilium"
        ),
        format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium -w"),
    ]
}

/// Restart the node's Cilium agent so it reads the `CiliumNodeConfig`.
pub(super) fn restart_agent(name: &str) -> Link {
    Link::new(
        StepKind::RestartAgent,
        300,
        format!(
            "delete the Cilium agent pod on {name}; wait for a new one, created after the label, to be Ready (it writes 05-cilium.conflist)"
        ),
        restart_agent_commands(name),
    )
}

/// Run the reboot hook on the node and wait for it to be Ready.
pub(super) fn reboot(name: &str, reboot: &Reboot) -> Link {
    Link::new(
        StepKind::Reboot,
        secs(reboot.timeout.0),
        format!("reboot {name} with the reboot hook and wait for it to be Ready"),
        vec![
            reboot_command_line(&reboot.command, name),
            format!(
                "kubectl wait --for=condition=Ready node/{name} --timeout={}s",
                secs(reboot.timeout.0)
            ),
        ],
    )
}

/// Check the node runs on Cilium's overlay.
pub(super) fn verify(spec: &MigrationSpec, name: &str) -> Link {
    Link::new(
        StepKind::Verify,
        secs(spec.rollout.verify.timeout.0),
        format!(
            "check the agent on {name} is Ready, its CiliumNode pod CIDRs lie in {} and clash with no node's own, and a probe pod pinned to it gets a new-pool IP and reaches the API server and a beacon pod on each overlay",
            pod_cidrs(spec)
        ),
        vec![
            format!("kubectl get ciliumnode {name} -o jsonpath='{{.spec.ipam.podCIDRs}}'"),
            verify_command(spec, name),
        ],
    )
}

/// The target pool, comma-separated.
pub(super) fn pod_cidrs(spec: &MigrationSpec) -> String {
    spec.target
        .pod_cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Uncordon the node, unless it was cordoned before the migration.
pub(super) fn uncordon(node: &PlannedNode) -> Link {
    let name = node.name.as_str();
    Link::new(
        StepKind::Uncordon,
        60,
        if node.cordoned {
            format!("leave {name} cordoned: it was cordoned before the migration")
        } else {
            format!("uncordon {name}")
        },
        vec![if node.cordoned {
            format!("# {name} was cordoned before the migration: leave it")
        } else {
            format!("kubectl uncordon {name}")
        }],
    )
}
