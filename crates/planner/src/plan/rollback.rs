//! A node's rollback chain, as ordinary steps the executor runs like any other: the node goes
//! back to the old CNI while the rest of the migration stays where it is.
//!
//! ```text
//! cordon ─► drain ─► unlabel ─► restart-agent ─► restore-cni ─► [start-aws-node] ─► [reboot]
//!                                                                 eks-overlay     rollout.reboot
//!        ─► verify-rollback ─► uncordon
//! ```
//!
//! The agent restarts before the CNI files are restored, not after: an agent still running
//! with `cni-exclusive` would rename the restored configuration away again. There is no chain
//! in eks-eni: Cilium took every node's CNI over at install, so one node cannot go back alone.
//! The chain is not part of [`Plan::steps`], so plans, their fingerprint and their outputs do
//! not change; ids are `rollback/NODE/KIND`.

use super::{
    link::{self, Link},
    node,
    types::{Phase, Plan, Step, StepKind},
};
use crate::{
    commands::{restore_cni_command, secs, verify_command},
    names::{AWS_NODE_LABEL, MIGRATION_LABEL},
    spec::TargetMode,
};

/// The steps that take `node` back to the old CNI, in order, each depending on the one before
/// (the first on nothing). Empty for a node not in the plan, and in eks-eni.
pub fn rollback_chain(plan: &Plan, node: &str) -> Vec<Step> {
    let spec = &plan.spec;
    let mode = spec.target.mode;
    if !mode.is_overlay() {
        return Vec::new();
    }
    let Some(planned) = plan.nodes.iter().find(|n| n.name == node) else {
        return Vec::new();
    };
    let old_cni = plan.facts.source.cni.to_string();
    let mut links = vec![
        node::cordon(planned),
        node::drain(spec, planned),
        unlabel(node),
        restart_agent(node),
        restore_cni(plan, node, &old_cni),
    ];
    if mode == TargetMode::EksOverlay {
        links.push(start_aws_node(node));
    }
    if let Some(reboot) = &spec.rollout.reboot {
        links.push(node::reboot(node, reboot));
    }
    links.push(verify_rollback(plan, node, &old_cni));
    links.push(node::uncordon(planned));
    link::chain(
        links,
        node,
        &format!("rollback/{node}/"),
        Phase::Rollback,
        Vec::new(),
    )
}

/// Take the node out of the `CiliumNodeConfig`'s selection.
fn unlabel(name: &str) -> Link {
    Link::new(
        StepKind::Unlabel,
        60,
        format!(
            "remove the label {MIGRATION_LABEL} from {name} so the CiliumNodeConfig no longer applies to it: the next Cilium agent there no longer takes the node's CNI over"
        ),
        vec![format!("kubectl label node {name} {MIGRATION_LABEL}-")],
    )
}

/// Restart the agent without the `CiliumNodeConfig`.
fn restart_agent(name: &str) -> Link {
    Link::new(
        StepKind::RestartAgent,
        300,
        format!(
            "delete the Cilium agent pod on {name}; wait for a new one, created after the label was removed, to be Ready: it no longer manages the node's CNI configuration. This comes before restore-cni because an agent still running with cni-exclusive would rename the restored configuration away again"
        ),
        node::restart_agent_commands(name),
    )
}

/// Put the old CNI's configuration back in the node's CNI directory.
fn restore_cni(plan: &Plan, name: &str, old_cni: &str) -> Link {
    let spec = &plan.spec;
    Link::new(
        StepKind::RestoreCni,
        secs(spec.rollout.verify.timeout.0),
        format!(
            "from a privileged host-network pod on {name}, rename the configuration files Cilium set aside in {} (*.cilium_bak) back and remove 05-cilium.conflist, so new pods on {name} get their network from {old_cni} again",
            spec.target.cni_conf_dir
        ),
        vec![restore_cni_command(spec, name)],
    )
}

/// eks-overlay: bring aws-node back to the node.
fn start_aws_node(name: &str) -> Link {
    Link::new(
        StepKind::StartAwsNode,
        300,
        format!(
            "label {name} {AWS_NODE_LABEL}=true so aws-node runs there again, and wait for its aws-node pod to be Ready: it rewrites the VPC CNI's configuration and nat chains, and new pods on {name} get VPC addresses again"
        ),
        vec![
            format!("kubectl label node {name} --overwrite {AWS_NODE_LABEL}=true"),
            "kubectl -n kube-system rollout status ds/aws-node --timeout=300s".to_owned(),
        ],
    )
}

/// Check the node is back on the old CNI.
fn verify_rollback(plan: &Plan, name: &str, old_cni: &str) -> Link {
    let spec = &plan.spec;
    let old_pool = if plan.facts.source.pod_cidrs.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            plan.facts
                .source
                .pod_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Link::new(
        StepKind::VerifyRollback,
        secs(spec.rollout.verify.timeout.0),
        format!(
            "check a probe pod pinned to {name} gets an address of {old_cni}{old_pool} rather than of Cilium's pool {}, and reaches the API server and a beacon pod on each overlay",
            node::pod_cidrs(spec)
        ),
        vec![verify_command(spec, name)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        facts::NetworkFacts,
        snapshot::{ClusterSnapshot, NodeInfo},
        spec::MigrationSpec,
    };

    fn spec(target: &str, rollout: &str) -> MigrationSpec {
        let text = format!(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\n\
             target: {{ciliumVersion: 1.17.3{target}}}\n\
             rollout: {{canary: 1{rollout}}}\n"
        );
        MigrationSpec::from_yaml(&text, "t").unwrap()
    }

    const OVERLAY: &str = ", podCIDRs: [10.245.0.0/16]";
    const REBOOT: &str = r#", reboot: {command: ["docker", "restart", "{node}"]}"#;

    fn plan(spec: &MigrationSpec) -> Plan {
        let snap = ClusterSnapshot {
            nodes: ["w1", "w2"]
                .iter()
                .map(|n| NodeInfo {
                    name: (*n).to_owned(),
                    ready: true,
                    ..NodeInfo::default()
                })
                .collect(),
            ..ClusterSnapshot::default()
        };
        crate::plan::build(spec, &snap, &NetworkFacts::default(), vec![])
    }

    fn kinds(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(|s| s.kind.as_str()).collect()
    }

    #[test]
    fn dual_overlay_rollback_restarts_the_agent_before_restoring_the_cni() {
        let p = plan(&spec(OVERLAY, ""));
        let chain = rollback_chain(&p, "w2");
        assert_eq!(
            kinds(&chain),
            [
                "cordon",
                "drain",
                "unlabel",
                "restart-agent",
                "restore-cni",
                "verify-rollback",
                "uncordon"
            ]
        );
        for s in &chain {
            assert_eq!(s.id, format!("rollback/w2/{}", s.kind));
            assert_eq!(s.node.as_deref(), Some("w2"));
            assert_eq!(s.phase, Phase::Rollback);
            assert!(s.timeout_seconds > 0, "{}", s.id);
            assert!(
                !s.description.is_empty() && !s.commands.is_empty(),
                "{}",
                s.id
            );
        }
        assert!(chain[0].depends_on.is_empty());
        for pair in chain.windows(2) {
            assert_eq!(pair[1].depends_on, [pair[0].id.clone()]);
        }
        assert_eq!(chain[2].id, "rollback/w2/unlabel");
        assert_eq!(
            chain[2].commands,
            ["kubectl label node w2 io.cilium.migration/cilium-default-"]
        );
        assert!(chain[4].commands[0].contains("cilium_bak"));
    }

    #[test]
    fn the_rollback_chain_is_not_part_of_the_plan() {
        let p = plan(&spec(OVERLAY, REBOOT));
        assert!(!rollback_chain(&p, "w1").is_empty());
        assert!(p.steps.iter().all(|s| s.phase != Phase::Rollback));
        assert!(!p.steps.iter().any(|s| s.id.starts_with("rollback/")));
    }

    #[test]
    fn reboot_and_eks_overlay_add_their_steps() {
        let p = plan(&spec(OVERLAY, REBOOT));
        assert_eq!(
            kinds(&rollback_chain(&p, "w1")),
            [
                "cordon",
                "drain",
                "unlabel",
                "restart-agent",
                "restore-cni",
                "reboot",
                "verify-rollback",
                "uncordon"
            ]
        );
        let p = plan(&spec(&format!(", mode: eks-overlay{OVERLAY}"), REBOOT));
        let chain = rollback_chain(&p, "w1");
        assert_eq!(
            kinds(&chain),
            [
                "cordon",
                "drain",
                "unlabel",
                "restart-agent",
                "restore-cni",
                "start-aws-node",
                "reboot",
                "verify-rollback",
                "uncordon"
            ]
        );
        assert_eq!(chain[5].id, "rollback/w1/start-aws-node");
        assert_eq!(chain[5].depends_on, ["rollback/w1/restore-cni"]);
        assert_eq!(chain[6].depends_on, ["rollback/w1/start-aws-node"]);
        assert!(chain[5].commands[0].contains("io.cilium/aws-node-enabled=true"));
    }

    #[test]
    fn no_rollback_chain_for_an_unknown_node_or_in_eks_eni() {
        let p = plan(&spec(OVERLAY, ""));
        assert!(rollback_chain(&p, "nope").is_empty());
        let p = plan(&spec(", mode: eks-eni", REBOOT));
        assert!(!p.nodes.is_empty());
        assert!(rollback_chain(&p, "w1").is_empty());
    }

    #[test]
    fn rollback_kinds_are_kebab_case_in_json_too() {
        for kind in [
            StepKind::Unlabel,
            StepKind::RestoreCni,
            StepKind::StartAwsNode,
            StepKind::VerifyRollback,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(
            serde_json::to_value(Phase::Rollback).unwrap(),
            serde_json::json!("rollback")
        );
        assert!(!StepKind::VerifyRollback.mutates() && StepKind::RestoreCni.mutates());
    }
}
