//! The finale: what happens once every node has moved.
//!
//! ```text
//! every node's last step ─► final-values ─► [delete-node-config] ─► remove-old-cni
//!                           ─► [final-reboot/NODE, one after another] ─► final-verify
//! ```
//!
//! The CiliumNodeConfig goes only once the final values are live (until then it is what keeps
//! the migrated nodes on Cilium); eks-eni has none. The final reboots run when
//! `finalize.rollingReboot` is set.

use super::{
    link::Link,
    types::{Phase, PlannedNode, Step, StepKind},
};
use crate::{
    commands::{helm_command, reboot_command_line, secs},
    facts::NetworkFacts,
    names::{CILIUM_NAMESPACE, NODE_CONFIG_NAME},
    spec::{MigrationSpec, Reboot},
};

/// The finale's steps, the first depending on `after_nodes`.
pub(super) fn steps(
    spec: &MigrationSpec,
    facts: &NetworkFacts,
    nodes: &[PlannedNode],
    after_nodes: Vec<String>,
) -> Vec<Step> {
    let overlay = spec.target.mode.is_overlay();
    let mut steps = vec![final_values(spec).global(Phase::Finale, after_nodes)];
    let before_removal = if overlay {
        steps.push(delete_node_config().global(Phase::Finale, vec!["final-values".to_owned()]));
        "delete-node-config"
    } else {
        "final-values"
    };
    steps.push(remove_old_cni(facts).global(Phase::Finale, vec![before_removal.to_owned()]));
    let mut last = "remove-old-cni".to_owned();
    if let (true, Some(reboot)) = (spec.finalize.rolling_reboot, &spec.rollout.reboot) {
        for node in nodes {
            let step = final_reboot(&node.name, reboot, last);
            last = step.id.clone();
            steps.push(step);
        }
    }
    steps.push(final_verify(overlay).global(Phase::Finale, vec![last]));
    steps
}

/// Cilium becomes the primary CNI.
fn final_values(spec: &MigrationSpec) -> Link {
    Link::new(
        StepKind::FinalValues,
        1200,
        format!(
            "switch Cilium to primary CNI: cni.customConf=false, policyEnforcementMode=default, operator.unmanagedPodWatcher.restart=true, bpf.hostLegacyRouting={}; restart the agents and wait for them",
            spec.finalize.host_legacy_routing
        ),
        vec![
            helm_command(spec, "values-final.yaml"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout restart daemonset cilium"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium --timeout=20m"),
        ],
    )
}

/// The migration `CiliumNodeConfig` goes.
fn delete_node_config() -> Link {
    Link::new(
        StepKind::DeleteNodeConfig,
        60,
        format!(
            "delete CiliumNodeConfig {CILIUM_NAMESPACE}/{NODE_CONFIG_NAME} (only now that the final values are live)"
        ),
        vec![format!(
            "kubectl delete -n {CILIUM_NAMESPACE} ciliumnodeconfig {NODE_CONFIG_NAME}"
        )],
    )
}

/// The old CNI's objects go.
fn remove_old_cni(facts: &NetworkFacts) -> Link {
    Link::new(
        StepKind::RemoveOldCni,
        300,
        format!("remove the old CNI ({})", facts.source.cni),
        remove_old_cni_commands(facts),
    )
}

/// One kubectl delete per object of the old CNI, its namespaces last.
fn remove_old_cni_commands(facts: &NetworkFacts) -> Vec<String> {
    let mut cmds: Vec<String> = facts
        .source
        .objects
        .iter()
        .filter(|o| o.kind != "Namespace")
        .map(|o| {
            let kind = o.kind.to_lowercase();
            match &o.namespace {
                Some(ns) => format!(
                    "kubectl delete -n {ns} {kind} {} --ignore-not-found",
                    o.name
                ),
                None => format!("kubectl delete {kind} {} --ignore-not-found", o.name),
            }
        })
        .collect();
    cmds.extend(
        facts
            .source
            .objects
            .iter()
            .filter(|o| o.kind == "Namespace")
            .map(|o| format!("kubectl delete namespace {} --ignore-not-found", o.name)),
    );
    if cmds.is_empty() {
        cmds.push("# no objects of the old CNI were detected: nothing to delete".to_owned());
    }
    cmds
}

/// One node's reboot at the end, after `after`.
fn final_reboot(name: &str, reboot: &Reboot, after: String) -> Step {
    Step {
        id: format!("final-reboot/{name}"),
        kind: StepKind::Reboot,
        node: Some(name.to_owned()),
        depends_on: vec![after],
        phase: Phase::Finale,
        timeout_seconds: secs(reboot.timeout.0),
        description: format!("reboot {name} to clear the old CNI's interfaces and iptables rules"),
        commands: vec![
            reboot_command_line(&reboot.command, name),
            format!(
                "kubectl wait --for=condition=Ready node/{name} --timeout={}s",
                secs(reboot.timeout.0)
            ),
        ],
    }
}

/// Every pod on Cilium, policies enforced.
fn final_verify(overlay: bool) -> Link {
    Link::new(
        StepKind::FinalVerify,
        600,
        if overlay {
            "every non-hostNetwork pod has an IP in the new pool and a CiliumEndpoint; policy enforcement is on".to_owned()
        } else {
            "every non-hostNetwork pod has a CiliumEndpoint with its address and an address of its node's CiliumNode; policy enforcement is on".to_owned()
        },
        vec![
            format!(
                "kubectl -n {CILIUM_NAMESPACE} get configmap cilium-config -o jsonpath='{{.data.enable-policy}}'"
            ),
            "kubectl get pods -A -o wide --field-selector=status.phase=Running".to_owned(),
            "kubectl get ciliumendpoints -A".to_owned(),
        ],
    )
}
