//! The plan: a DAG of steps, and the node order the executor admits nodes in.
//!
//! ```text
//! prelude:  preflight ─► cilium-installed ─► node-config
//!                                               │
//! canaries: cordon ─► drain ─► label ─► restart-agent ─► [reboot] ─► verify ─► uncordon   (one at a time)
//!                                               │
//! the rest: the same chain per node, each depending on the last canary; the executor keeps at
//!           most `maxInFlight` of them in flight, in `nodes` order
//!                                               │
//! finale:   final-values ─► delete-node-config ─► remove-old-cni ─► [reboot per node] ─► final-verify
//! ```
//!
//! The EKS profiles (`target.mode`) change the chain:
//!
//! ```text
//! eks-overlay: preflight ─► patch-aws-node ─► cilium-installed ─► node-config
//!              per node: cordon ─► drain ─► label ─► stop-aws-node ─► restart-agent ─► [reboot]
//!                        ─► restart-unmanaged-pods ─► verify ─► uncordon
//! eks-eni:     preflight ─► patch-aws-node ─► cilium-installed (takes every node's CNI over)
//!              per node: restart-unmanaged-pods ─► verify
//!              finale without delete-node-config (there is no CiliumNodeConfig)
//! ```
//!
//! ```text
//! plan.rs       build: the Plan from spec, snapshot, facts and findings
//!  ├─ types        Plan, Step, StepKind, Phase, PlannedNode (the JSON interface)
//!  ├─ order        node admission order, canaries
//!  ├─ dag          the steps wired: prelude ─► canaries ─► the rest ─► finale
//!  │   ├─ prelude     preflight, cilium-installed, node-config
//!  │   ├─ chain       a node's links per target.mode
//!  │   │   ├─ node       cordon, drain, label, restart-agent, reboot, verify, uncordon
//!  │   │   └─ eks        patch-aws-node, stop-aws-node, restart-unmanaged-pods, ENI verify
//!  │   └─ finale      final-values … final-verify
//!  ├─ rollback     a node's rollback chain, as steps (not part of Plan.steps)
//!  ├─ fingerprint  what a checkpoint is matched against
//!  └─ link         a step before it is placed; chains of links as steps
//! ```
//!
//! The names and command lines the steps share with the values and the preflight live below
//! all of them, in [`crate::names`] and [`crate::commands`]; they are re-exported here under
//! the paths the other crates use.

mod chain;
mod dag;
mod eks;
mod finale;
mod fingerprint;
mod link;
mod node;
mod order;
mod prelude;
mod rollback;
mod types;

pub use fingerprint::{fingerprint, legacy_fingerprint};
pub use rollback::rollback_chain;
pub use types::{Phase, Plan, PlanSummary, PlannedNode, SourceSummary, Step, StepKind};

pub use crate::{
    commands::{
        aws_node_patch, aws_node_patch_command, helm_command, reboot_command_line, shell_quote,
        verify_command,
    },
    eviction::evictable,
    names::{AWS_NODE_LABEL, CILIUM_NAMESPACE, MIGRATION_LABEL, NODE_CONFIG_NAME},
};
use crate::{
    facts::NetworkFacts,
    findings::{Finding, Severity},
    snapshot::ClusterSnapshot,
    spec::MigrationSpec,
    values,
};

/// Builds the plan. Pure: the same inputs give the same plan, byte for byte.
pub fn build(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    facts: &NetworkFacts,
    mut findings: Vec<Finding>,
) -> Plan {
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.objects, &a.message)
            .cmp(&(b.severity, b.code, &b.objects, &b.message))
    });
    let artifacts = values::generate(spec, facts);
    let nodes = order::order_nodes(spec, snapshot);
    let max_in_flight = spec.rollout.max_in_flight(nodes.len());
    let steps = dag::build_steps(spec, facts, &nodes);
    debug_assert!(dag::steps_are_acyclic(&steps));

    let summary = PlanSummary {
        nodes: nodes.len(),
        canaries: nodes.iter().filter(|n| n.canary).count(),
        max_in_flight,
        pods_to_evict: nodes.iter().map(|n| n.pods_to_evict).sum(),
        errors: findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
        steps: steps.len(),
    };
    let source = SourceSummary {
        cni: facts.source.cni,
        pod_cidrs: facts
            .source
            .pod_cidrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        encapsulation: facts.source.encapsulation,
        port: facts.source.port,
    };
    Plan {
        api_version: crate::spec::API_VERSION.to_owned(),
        kind: "Plan".to_owned(),
        name: spec.metadata.name.clone(),
        fingerprint: fingerprint(spec, facts),
        source,
        summary,
        findings,
        spec: spec.clone(),
        facts: facts.clone(),
        artifacts,
        nodes,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::{dag::steps_are_acyclic, *};
    use crate::snapshot::{NodeInfo, OwnerRef, PodInfo, PodPhase};

    fn spec(canary: u32, max: &str) -> MigrationSpec {
        let text = format!(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\n\
             target: {{ciliumVersion: 1.17.3, podCIDRs: [10.245.0.0/16], tunnel: {{port: 8473}}}}\n\
             rollout: {{canary: {canary}, maxUnavailable: {max}}}\n"
        );
        MigrationSpec::from_yaml(&text, "t").unwrap()
    }

    fn node(name: &str, cp: bool) -> NodeInfo {
        let mut n = NodeInfo {
            name: name.to_owned(),
            ready: true,
            ..NodeInfo::default()
        };
        if cp {
            n.labels.insert(
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new(),
            );
        }
        n
    }

    fn pod(name: &str, node: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: "kube-system".to_owned(),
            name: name.to_owned(),
            node_name: Some(node.to_owned()),
            phase: PodPhase::Running,
            owner: Some(OwnerRef {
                kind: "ReplicaSet".to_owned(),
                name: "rs".to_owned(),
                uid: "u".to_owned(),
            }),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..PodInfo::default()
        }
    }

    fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            nodes: vec![
                node("cp", true),
                node("w3", false),
                node("w1", false),
                node("w2", false),
            ],
            pods: vec![
                pod("coredns-1", "w1", &[("k8s-app", "kube-dns")]),
                pod("app", "w2", &[("app", "x")]),
            ],
            ..ClusterSnapshot::default()
        }
    }

    /// Flannel's or Calico's leftovers are cleaned in the finale, unless a rolling reboot
    /// clears them or the spec opts out; the VPC CNI leaves nothing for it.
    #[test]
    fn the_finale_cleans_the_old_cnis_leftovers_unless_told_otherwise() {
        let mut facts = NetworkFacts::default();
        facts.source.cni = crate::facts::CniKind::Flannel;
        facts.source.pod_cidrs = vec!["10.244.0.0/16".parse().unwrap()];
        let plan = build(&spec(1, "1"), &snapshot(), &facts, vec![]);
        let clean = plan.step("clean-old-cni").expect("a cleanup step");
        assert_eq!(clean.depends_on, ["remove-old-cni"]);
        assert!(
            clean.description.contains("10.244.0.0/16"),
            "{}",
            clean.description
        );
        assert!(
            clean.commands[0].contains("FLANNEL-"),
            "{}",
            clean.commands[0]
        );
        assert_eq!(
            plan.step("final-verify").unwrap().depends_on,
            ["clean-old-cni"]
        );
        let mut opted_out = spec(1, "1");
        opted_out.finalize.clean_old_cni = false;
        assert!(
            build(&opted_out, &snapshot(), &facts, vec![])
                .step("clean-old-cni")
                .is_none()
        );
        facts.source.cni = crate::facts::CniKind::AwsVpcCni;
        assert!(
            build(&spec(1, "1"), &snapshot(), &facts, vec![])
                .step("clean-old-cni")
                .is_none()
        );
        facts.source.cni = crate::facts::CniKind::Calico;
        let calico = build(&spec(1, "1"), &snapshot(), &facts, vec![]);
        assert!(calico.step("clean-old-cni").unwrap().commands[0].contains("cali-"));
    }

    #[test]
    fn workers_first_control_plane_then_critical_last() {
        let plan = build(&spec(1, "1"), &snapshot(), &NetworkFacts::default(), vec![]);
        let order: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(order, ["w2", "w3", "cp", "w1"]);
        assert!(plan.nodes[0].canary && !plan.nodes[1].canary);
        assert_eq!(
            plan.nodes[3].critical_pods,
            ["coredns (kube-system/coredns-1)"]
        );
    }

    #[test]
    fn canaries_chain_one_after_another_and_gate_the_rest() {
        let plan = build(&spec(2, "1"), &snapshot(), &NetworkFacts::default(), vec![]);
        assert_eq!(plan.step("w2/cordon").unwrap().depends_on, ["node-config"]);
        assert_eq!(plan.step("w3/cordon").unwrap().depends_on, ["w2/uncordon"]);
        assert_eq!(
            plan.step("cp/cordon").unwrap().depends_on,
            ["w2/uncordon", "w3/uncordon"]
        );
        let fin = plan.step("final-values").unwrap();
        assert_eq!(fin.depends_on.len(), 4);
        assert!(steps_are_acyclic(&plan.steps));
        let kinds: Vec<&str> = plan.node_steps("cp").map(|s| s.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "cordon",
                "drain",
                "label",
                "restart-agent",
                "verify",
                "uncordon"
            ]
        );
    }

    #[test]
    fn plan_is_deterministic_whatever_the_input_order() {
        let a = build(
            &spec(1, "\"50%\""),
            &snapshot(),
            &NetworkFacts::default(),
            vec![],
        );
        let mut s = snapshot();
        s.nodes.reverse();
        s.pods.reverse();
        let b = build(&spec(1, "\"50%\""), &s, &NetworkFacts::default(), vec![]);
        assert_eq!(a, b);
        assert_eq!(a.summary.max_in_flight, 2);
    }

    #[test]
    fn fingerprint_changes_with_the_spec_not_the_nodes() {
        let facts = NetworkFacts::default();
        let a = fingerprint(&spec(1, "1"), &facts);
        assert_ne!(a, fingerprint(&spec(2, "1"), &facts));
        // Version 1 hashed the node names; a checkpoint written then still matches through it.
        let old = legacy_fingerprint(&spec(1, "1"), &facts, &["a", "b"]);
        assert_eq!(old, legacy_fingerprint(&spec(1, "1"), &facts, &["b", "a"]));
        assert_ne!(old, legacy_fingerprint(&spec(1, "1"), &facts, &["a"]));
        assert_ne!(old, a);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("kind-worker"), "kind-worker");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            reboot_command_line(&["ssh".into(), "{node}".into(), "sudo reboot".into()], "n1"),
            "ssh n1 'sudo reboot'"
        );
    }
}
