//! The nodes: their networks and pod CIDRs, the cluster's IP families, and a managed platform.
//!
//! ```text
//! Node InternalIPs, Calico's projectcalico.org/IPv4Address (its prefix is the node network),
//! spec.podCIDRs ─► NodeNetwork per node
//! node, pod, service and old pool addresses ─► IpFamilies
//! providerID, kubelet version, labels, rke2-* DaemonSets ─► k3s, RKE2, AKS, GKE or EKS
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    facts::{IpFamilies, NodeNetwork, Platform, PlatformFacts, ServiceCidr, SourceCni},
    snapshot::ClusterSnapshot,
};

/// Each node's addresses, networks and pod CIDRs.
pub(super) fn detect_nodes(snap: &ClusterSnapshot) -> Vec<NodeNetwork> {
    snap.nodes
        .iter()
        .map(|n| {
            let internal_ips = n.internal_ips();
            let mut networks: Vec<IpNet> = [
                "projectcalico.org/IPv4Address",
                "projectcalico.org/IPv6Address",
            ]
            .iter()
            .filter_map(|k| n.annotations.get(*k))
            .filter_map(|a| a.parse::<IpNet>().ok())
            .map(|net| net.trunc())
            .collect();
            for ip in &internal_ips {
                if !networks.iter().any(|net| net.contains(ip)) {
                    networks.push(IpNet::from(*ip));
                }
            }
            networks.sort();
            NodeNetwork {
                node: n.name.clone(),
                internal_ips,
                networks,
                pod_cidrs: n.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
            }
        })
        .collect()
}

/// Which IP families appear anywhere: nodes, pods, services, the old pool.
pub(super) fn detect_families(
    snap: &ClusterSnapshot,
    source: &SourceCni,
    service: &ServiceCidr,
    nodes: &[NodeNetwork],
) -> IpFamilies {
    let mut f = IpFamilies::default();
    let mut see = |ip: IpAddr| match ip {
        IpAddr::V4(_) => f.ipv4 = true,
        IpAddr::V6(_) => f.ipv6 = true,
    };
    for n in nodes {
        n.internal_ips.iter().copied().for_each(&mut see);
        n.pod_cidrs.iter().map(IpNet::addr).for_each(&mut see);
    }
    service.cidrs.iter().map(IpNet::addr).for_each(&mut see);
    source.pod_cidrs.iter().map(IpNet::addr).for_each(&mut see);
    for p in snap.pods.iter().filter(|p| !p.host_network) {
        p.pod_ips.iter().copied().for_each(&mut see);
    }
    if source.aws.as_ref().is_some_and(|a| a.ipv6) {
        f.ipv6 = true;
    }
    f
}

/// A managed platform or distribution, from the first node (or DaemonSet) that gives it away.
pub(super) fn detect_platform(snap: &ClusterSnapshot) -> Option<PlatformFacts> {
    let found = |platform, evidence: String| Some(PlatformFacts { platform, evidence });
    for n in &snap.nodes {
        let provider = n.provider_id.as_deref().unwrap_or_default();
        let kubelet = n.kubelet_version.as_deref().unwrap_or_default();
        if kubelet.contains("+k3s") || n.annotations.keys().any(|k| k.starts_with("k3s.io/")) {
            return found(
                Platform::K3s,
                format!("node {} runs kubelet {kubelet} / k3s annotations", n.name),
            );
        }
        if kubelet.contains("+rke2") {
            return found(
                Platform::Rke2,
                format!("node {} runs kubelet {kubelet}", n.name),
            );
        }
        let os = n.os_image.as_deref().unwrap_or_default();
        if os.starts_with("Talos") {
            return found(Platform::Talos, format!("node {} runs {os}", n.name));
        }
        if provider.starts_with("azure://")
            || n.labels
                .keys()
                .any(|k| k.starts_with("kubernetes.azure.com/"))
        {
            return found(
                Platform::Aks,
                format!(
                    "node {} has providerID {provider} / kubernetes.azure.com labels",
                    n.name
                ),
            );
        }
        if n.labels.contains_key("cloud.google.com/gke-nodepool")
            || (provider.starts_with("gce://") && kubelet.contains("-gke."))
        {
            return found(
                Platform::Gke,
                format!("node {} is in a GKE node pool", n.name),
            );
        }
        if provider.starts_with("aws://")
            && (n.labels.keys().any(|k| k.starts_with("eks.amazonaws.com/"))
                || kubelet.contains("-eks-"))
        {
            return found(
                Platform::Eks,
                format!(
                    "node {} has providerID {provider} and EKS labels / kubelet {kubelet}",
                    n.name
                ),
            );
        }
    }
    let daemonsets = || {
        snap.daemonsets
            .iter()
            .filter_map(|d| d.metadata.name.as_deref())
    };
    if let Some(n) = daemonsets().find(|n| n.starts_with("rke2-")) {
        return found(Platform::Rke2, format!("DaemonSet {n}"));
    }
    // kubespray names NodeLocal DNSCache `nodelocaldns` (upstream: node-local-dns).
    daemonsets().find(|n| *n == "nodelocaldns").and_then(|n| {
        found(
            Platform::Kubespray,
            format!("DaemonSet kube-system/{n} (kubespray's name for NodeLocal DNSCache)"),
        )
    })
}
