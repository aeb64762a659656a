//! What recent Cilium releases changed about the datapath the migration ends with.
//!
//! ```text
//! HOST_ROUTING_STAYS_LEGACY  the final values turn bpf.hostLegacyRouting off, but without
//!                            kube-proxy replacement Cilium keeps legacy host routing (1.19 only
//!                            logs it): the plan says which routing the cluster ends with
//! NETKIT_DURING_MIGRATION    an installed Cilium with the netkit datapath refuses the legacy
//!                            host routing the migration needs (cilium/cilium PR #46032)
//! OLD_CNI_LEFTOVERS          Flannel's or Calico's chains, devices and routes stay on the
//!                            nodes: no rolling reboot and `finalize.cleanOldCni: false`
//! ```

use super::common::finding;
use crate::{
    facts::{CniKind, NetworkFacts},
    findings::{Finding, FindingCode, Severity},
    snapshot::{ClusterSnapshot, ObjectRef},
    spec::MigrationSpec,
};

/// The final values set `bpf.hostLegacyRouting: false` and nothing enables kube-proxy
/// replacement: Cilium silently keeps legacy host routing.
pub(super) fn host_routing(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    out: &mut Vec<Finding>,
) {
    if spec.finalize.host_legacy_routing {
        return;
    }
    let kube_proxy = snapshot
        .daemonsets
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("kube-proxy"));
    let runs = kube_proxy.map_or_else(
        || "kube-proxy's rules stay the service path (the final values do not enable kubeProxyReplacement)".to_owned(),
        |_| "kube-proxy runs (DaemonSet kube-system/kube-proxy) and the final values do not enable kubeProxyReplacement".to_owned(),
    );
    out.push(finding(
        FindingCode::HostRoutingStaysLegacy,
        Severity::Warning,
        format!(
            "the cluster will end with legacy host routing: the final values set bpf.hostLegacyRouting: false, but eBPF host routing needs kube-proxy replacement and BPF masquerading, and {runs}; Cilium then keeps legacy host routing without an error (1.19 and later only log it)"
        ),
        kube_proxy
            .map(|_| vec![ObjectRef::namespaced("DaemonSet", "kube-system", "kube-proxy")])
            .unwrap_or_default(),
        "set finalize.hostLegacyRouting: true so the plan says what the cluster gets; for eBPF host routing later, a second change after the finale: helm upgrade with kubeProxyReplacement=true, bpf.masquerade=true and k8sServiceHost/k8sServicePort set to the API server's address (kube-proxy will be gone), restart the agents node by node, then delete the kube-proxy DaemonSet and clear its KUBE-* iptables rules on each node (a reboot, or kube-proxy --cleanup)".to_owned(),
    ));
}

/// An installed Cilium on the netkit datapath cannot run the migration's legacy host routing.
pub(super) fn netkit(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(c) = &facts.cilium else { return };
    let Some(mode) = c
        .config
        .get("datapath-mode")
        .map(|m| m.trim())
        .filter(|m| m.starts_with("netkit"))
    else {
        return;
    };
    out.push(finding(
        FindingCode::NetkitDuringMigration,
        Severity::Error,
        format!(
            "the installed Cilium runs the {mode} datapath (cilium-config datapath-mode: {mode}); with netkit the agent refuses legacy host routing and does not start, and the migration needs legacy host routing between the overlays"
        ),
        vec![ObjectRef::namespaced("ConfigMap", &c.namespace, "cilium-config")],
        "install Cilium with bpf.datapathMode=veth for the migration (helm upgrade ... --set bpf.datapathMode=veth), and switch to netkit only after the finale, with eBPF host routing (kube-proxy replacement) in place".to_owned(),
    ));
}

/// The user opted out of the finale's cleanup and no rolling reboot clears the old CNI's
/// leftovers: they stay until each node reboots.
pub(super) fn old_cni_leftovers(
    spec: &MigrationSpec,
    facts: &NetworkFacts,
    out: &mut Vec<Finding>,
) {
    let rebooted = spec.finalize.rolling_reboot && spec.rollout.reboot.is_some();
    if rebooted || spec.finalize.clean_old_cni {
        return;
    }
    let what = match facts.source.cni {
        CniKind::Flannel => {
            "Flannel's FLANNEL-POSTRTG masquerade chain keeps SNATing cross-node pod traffic (which breaks NetworkPolicy matching on source addresses), and flannel.1, cni0 and its routes stay"
        }
        CniKind::Calico => {
            "Calico's cali- iptables chains, vxlan.calico or tunl0 and its routes stay, and its chains can still drop or mark traffic"
        }
        _ => return,
    };
    out.push(finding(
        FindingCode::OldCniLeftovers,
        Severity::Warning,
        format!(
            "finalize.cleanOldCni is false and no rolling reboot runs: after the old CNI is removed, {what} on every node until it reboots"
        ),
        vec![],
        "remove finalize.cleanOldCni: false (the finale then removes them node by node with a privileged host-network pod), or set finalize.rollingReboot: true with a reboot hook, or reboot every node after the migration".to_owned(),
    ));
}
