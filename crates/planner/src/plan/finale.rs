//! The finale: what happens once every node has moved.
//!
//! ```text
//! every node's last step ─► final-values ─► [delete-node-config] ─► remove-old-cni
//!                           ─► [final-reboot/NODE, one after another | clean-old-cni] ─► final-verify
//! ```
//!
//! The CiliumNodeConfig goes only once the final values are live (until then it is what keeps
//! the migrated nodes on Cilium); eks-eni has none. The final reboots run when
//! `finalize.rollingReboot` is set; without them, `clean-old-cni` removes Flannel's or Calico's
//! leftovers on every node (unless `finalize.cleanOldCni: false`, which preflight reports as
//! `OLD_CNI_LEFTOVERS`).

use super::{
    link::Link,
    types::{Phase, PlannedNode, Step, StepKind},
};
use crate::{
    commands::{helm_command, old_cni_cleanup_script, reboot_command_line, secs, shell_quote},
    facts::{CniKind, NetworkFacts},
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
    } else if let Some(cni) = cleans_old_cni(spec, facts) {
        steps.push(clean_old_cni(spec, facts, cni).global(Phase::Finale, vec![last]));
        last = "clean-old-cni".to_owned();
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

/// The old CNI whose leftovers the finale removes (`flannel`, `calico`), or `None`: a rolling
/// reboot clears them, the spec opts out (`finalize.cleanOldCni: false`), or the old CNI
/// leaves nothing a pod can remove (the VPC CNI's nat chains are flushed node by node already).
fn cleans_old_cni(spec: &MigrationSpec, facts: &NetworkFacts) -> Option<&'static str> {
    if (spec.finalize.rolling_reboot && spec.rollout.reboot.is_some())
        || !spec.finalize.clean_old_cni
    {
        return None;
    }
    match facts.source.cni {
        CniKind::Flannel => Some("flannel"),
        CniKind::Calico => Some("calico"),
        _ => None,
    }
}

/// The old CNI's leftovers go, on every node.
fn clean_old_cni(spec: &MigrationSpec, facts: &NetworkFacts, cni: &str) -> Link {
    let cidrs: Vec<String> = facts
        .source
        .pod_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    let script = old_cni_cleanup_script(cni, &cidrs);
    let what = if cni == "calico" {
        "its cali- iptables chains, vxlan.calico, tunl0"
    } else {
        "FLANNEL-POSTRTG and FLANNEL-FWD, flannel.1, cni0"
    };
    Link::new(
        StepKind::CleanOldCni,
        1800,
        format!(
            "remove {cni}'s leftovers on every node ({what}, routes inside {}), a privileged host-network pod per node, several at a time; idempotent, each removal logged",
            if cidrs.is_empty() {
                "the old pod network".to_owned()
            } else {
                cidrs.join(", ")
            }
        ),
        vec![format!(
            "for n in $(kubectl get nodes -o name); do kubectl debug \"$n\" --profile=sysadmin --image {} -- sh -c {}; done",
            spec.rollout.verify.image,
            shell_quote(&script)
        )],
    )
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
