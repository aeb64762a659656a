//! A node's forward chain, per `target.mode`: which links, in which order.
//!
//! ```text
//! dual-overlay: cordon ─► drain ─► label ─► restart-agent ─► [reboot] ─► verify ─► uncordon
//! eks-overlay:  cordon ─► drain ─► label ─► stop-aws-node ─► restart-agent ─► [reboot]
//!               ─► restart-unmanaged-pods ─► verify ─► uncordon
//! eks-eni:      restart-unmanaged-pods ─► verify
//! ```
//!
//! In eks-eni Cilium takes every node over at install, so there is nothing to cordon, drain,
//! label or restart on a node: only its old pods move.

use super::{
    eks,
    link::Link,
    node,
    types::{PlannedNode, StepKind},
};
use crate::spec::{MigrationSpec, TargetMode};

/// The kind of the last link of every node's chain: what the rest of the plan waits for.
pub(super) fn last_kind(mode: TargetMode) -> StepKind {
    if mode.is_overlay() {
        StepKind::Uncordon
    } else {
        StepKind::Verify
    }
}

/// The node's links, in order.
pub(super) fn node_links(spec: &MigrationSpec, node: &PlannedNode) -> Vec<Link> {
    match spec.target.mode {
        TargetMode::DualOverlay | TargetMode::EksOverlay => overlay_links(spec, node),
        TargetMode::EksEni => vec![
            eks::restart_unmanaged_pods(spec, node),
            eks::verify_eni(spec, &node.name),
        ],
    }
}

/// The overlay chain: the node moves to Cilium's overlay through the `CiliumNodeConfig`; in
/// eks-overlay aws-node leaves it first and its VPC-addressed pods are restarted after.
fn overlay_links(spec: &MigrationSpec, node: &PlannedNode) -> Vec<Link> {
    let name = node.name.as_str();
    let eks_overlay = spec.target.mode == TargetMode::EksOverlay;
    let mut links = vec![
        node::cordon(node),
        node::drain(spec, node),
        node::label(name),
    ];
    if eks_overlay {
        links.push(eks::stop_aws_node(name));
    }
    links.push(node::restart_agent(name));
    if let Some(reboot) = &spec.rollout.reboot {
        links.push(node::reboot(name, reboot));
    }
    if eks_overlay {
        links.push(eks::restart_unmanaged_pods(spec, node));
    }
    links.push(node::verify(spec, name));
    links.push(node::uncordon(node));
    links
}
