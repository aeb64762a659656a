//! The cluster around the migration: an installed Cilium, IP families, a managed platform, a
//! service range that cannot be seen.
//!
//! ```text
//! CILIUM_CONFIG_MISMATCH  a Cilium beside the old CNI, not in migration mode
//! IPV6_NOT_SUPPORTED      IPv6 anywhere (eks-eni says so as ENI_MODE_IPV4_ONLY)
//! MANAGED_PLATFORM        AKS, GKE: the platform owns the CNI
//! DISTRIBUTION_REAPPLIES_CNI  k3s, RKE2, Talos, kubespray: the exact change before the finale
//! SERVICE_CIDR_UNKNOWN    only the kubernetes Service IP, or nothing, is known
//! ```

use ipnet::IpNet;

use super::common::finding;
use crate::{
    facts::{CniKind, NetworkFacts, Platform, ServiceCidrSource},
    findings::{Finding, FindingCode, Severity},
    snapshot::ObjectRef,
    spec::{MigrationSpec, TargetMode},
    values,
};

/// A Cilium already installed beside the old CNI must be in migration mode.
pub(super) fn cilium_config(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(c) = &facts.cilium else { return };
    // Only a Cilium running *beside* an old CNI must be in migration mode.
    if matches!(facts.source.cni, CniKind::Cilium | CniKind::Unknown) {
        return;
    }
    let cfg = &c.config;
    let mut diffs = Vec::new();
    for (key, expected) in values::migration_config(spec) {
        let found = cfg.get(key).map(String::as_str).unwrap_or("<absent>");
        if found.trim() != expected {
            diffs.push(format!("{key}: expected {expected}, found {found}"));
        }
    }
    let routing = if spec.target.mode.is_overlay() {
        "tunnel"
    } else {
        "native"
    };
    if let Some(port) = cfg.get("tunnel-port")
        && spec.target.mode.is_overlay()
        && port.trim() != spec.target.tunnel.effective_port().to_string()
    {
        diffs.push(format!(
            "tunnel-port: expected {}, found {port}",
            spec.target.tunnel.effective_port()
        ));
    }
    if spec.target.mode.is_overlay() && cfg.get("routing-mode").is_some_and(|m| m != routing) {
        diffs.push(format!(
            "routing-mode: expected {routing}, found {}",
            cfg["routing-mode"]
        ));
    }
    if diffs.is_empty() {
        return;
    }
    out.push(finding(
        FindingCode::CiliumConfigMismatch,
        Severity::Error,
        format!(
            "Cilium is already installed beside {} but its cilium-config contradicts migration mode: {}",
            facts.source.cni,
            diffs.join("; ")
        ),
        vec![ObjectRef::namespaced("ConfigMap", &c.namespace, "cilium-config")],
        format!(
            "upgrade Cilium with the generated values: helm upgrade cilium cilium/cilium --namespace kube-system --version {} -f values-migration.yaml",
            spec.target.cilium_version
        ),
    ));
}

/// The migration is tested for IPv4 only.
pub(super) fn ipv6(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let v6_target: Vec<&IpNet> = spec
        .target
        .pod_cidrs
        .iter()
        .filter(|c| matches!(c, IpNet::V6(_)))
        .collect();
    if !facts.ip_families.ipv6 && v6_target.is_empty() {
        return;
    }
    // eks-eni says so in its own words (ENI_MODE_IPV4_ONLY).
    if spec.target.mode == TargetMode::EksEni {
        return;
    }
    out.push(finding(
        FindingCode::Ipv6NotSupported,
        Severity::Error,
        if v6_target.is_empty() {
            "the cluster uses IPv6 (node, pod or service addresses): the dual-overlay migration is supported for IPv4 only, and changing IP families has not been tested".to_owned()
        } else {
            format!("target.podCIDRs has IPv6 ranges ({}): the migration is supported for IPv4 only", v6_target.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        },
        vec![],
        "migrate an IPv4-only cluster, or build a new cluster with Cilium and move workloads".to_owned(),
    ));
}

/// Managed platforms own their CNI; distributions re-apply theirs unless told not to.
pub(super) fn platform(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(p) = &facts.platform else { return };
    let managed = match p.platform {
        Platform::Eks => return,
        Platform::Aks => Some(
            "AKS manages the CNI itself and re-images every node pool at once when switching to Cilium (az aks update --network-dataplane cilium); a node-by-node migration fights the platform",
        ),
        Platform::Gke => Some(
            "GKE's dataplane is managed (Dataplane V2 is GKE's Cilium); migrate with GKE's own Dataplane V2 migration",
        ),
        Platform::Rke2 | Platform::K3s | Platform::Talos | Platform::Kubespray => None,
    };
    if let Some(why) = managed {
        out.push(finding(
            FindingCode::ManagedPlatform,
            Severity::Warning,
            format!("{} detected ({}): {why}", p.platform, p.evidence),
            vec![],
            "use the platform's supported path, or rehearse thoroughly before running this on it"
                .to_owned(),
        ));
        return;
    }
    // What the distribution re-applies, and the exact change that stops it, before the finale
    // removes the old CNI (else the next restart, upgrade or playbook run brings it back).
    let (what, change) = match p.platform {
        Platform::K3s => (
            "k3s runs Flannel inside its own binary (no DaemonSet to remove) and starts it again at every restart; its CNI configuration is in /var/lib/rancher/k3s/agent/etc/cni/net.d",
            "set target.cniConfDir: /var/lib/rancher/k3s/agent/etc/cni/net.d; run `apply --stop-before finalize`, then (every pod is on Cilium by then) add `flannel-backend: none` and `disable-network-policy: true` to /etc/rancher/k3s/config.yaml on every server, restart k3s on the servers, then the agents, and `resume`",
        ),
        Platform::Rke2 => (
            "RKE2 deploys its CNI (rke2-canal, rke2-calico or rke2-cilium) from its own HelmChart objects and re-deploys it when rke2-server restarts",
            "run `apply --stop-before finalize`, then set `cni: none` in /etc/rancher/rke2/config.yaml on every server, restart rke2-server on each, and `resume`; RKE2 documents switching the CNI of a running cluster as unsupported, so rehearse it first",
        ),
        Platform::Talos => (
            "Talos applies the CNI named in its machine configuration (cluster.network.cni, Flannel by default) at bootstrap and on every upgrade",
            "run `apply --stop-before finalize`, then patch every control-plane node's machine configuration, and `resume`: talosctl patch mc --patch '[{\"op\": \"add\", \"path\": \"/cluster/network/cni\", \"value\": {\"name\": \"none\"}}]'",
        ),
        _ => (
            "kubespray installs the CNI named by kube_network_plugin on every cluster.yml, scale.yml or upgrade-cluster.yml run",
            "before the finale (and before any playbook run during the migration), set `kube_network_plugin: cni` in your inventory's group_vars/k8s_cluster/k8s-cluster.yml (kubespray then installs no CNI of its own) and keep it so for every later playbook run",
        ),
    };
    out.push(finding(
        FindingCode::DistributionReappliesCni,
        Severity::Warning,
        format!(
            "{} detected ({}): {what}; unless its configuration changes, the old CNI comes back after the finale removes it",
            p.platform, p.evidence
        ),
        vec![],
        change.to_owned(),
    ));
}

/// The service range overlap check is only as good as what the dump shows of it.
pub(super) fn service_unknown(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let s = &facts.service;
    let message = match s.source {
        ServiceCidrSource::KubernetesServiceIp => format!(
            "the service CIDR is not visible (no ServiceCIDR object, kubeadm-config or kube-apiserver pod): only the kubernetes Service IP {} is known, so overlap with the service range is checked against that address alone",
            s.kubernetes_service_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default()
        ),
        ServiceCidrSource::Unknown => {
            "the service CIDR could not be determined at all (no kubernetes Service in the dump)"
                .to_owned()
        }
        _ => return,
    };
    out.push(finding(
        FindingCode::ServiceCidrUnknown,
        Severity::Warning,
        message,
        vec![ObjectRef::namespaced("Service", "default", "kubernetes")],
        "confirm the service range from the control plane (EKS: `aws eks describe-cluster --query cluster.kubernetesNetworkConfig`) and make sure target.podCIDRs is outside it".to_owned(),
    ));
}
