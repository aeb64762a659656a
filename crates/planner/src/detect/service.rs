//! The service CIDR, from the most reliable source the snapshot has.
//!
//! ```text
//! ServiceCIDR "kubernetes" > kubeadm-config serviceSubnet > kube-apiserver
//! --service-cluster-ip-range > the kubernetes Service's IP alone (a /32) > unknown
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

use super::common::cm_data;
use crate::{
    facts::{ServiceCidr, ServiceCidrSource},
    snapshot::ClusterSnapshot,
};

/// CIDRs, comma-separated; what does not parse is skipped.
fn parse_cidr_list(text: &str) -> Vec<IpNet> {
    text.split(',')
        .filter_map(|c| c.trim().parse::<IpNet>().ok())
        .collect()
}

/// The service CIDR and where it was found.
pub(super) fn detect_service_cidr(snap: &ClusterSnapshot) -> ServiceCidr {
    let kubernetes_service_ip = snap
        .services
        .iter()
        .find(|s| s.namespace == "default" && s.name == "kubernetes")
        .and_then(|s| s.cluster_ips.first())
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let found = |cidrs: Vec<IpNet>, source| ServiceCidr {
        cidrs,
        source,
        kubernetes_service_ip,
    };
    if let Some(obj) = snap
        .custom_of("networking.k8s.io", "ServiceCIDR")
        .find(|o| o.name == "kubernetes")
    {
        let cidrs: Vec<IpNet> = obj.object["spec"]["cidrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str()?.parse().ok())
            .collect();
        if !cidrs.is_empty() {
            return found(cidrs, ServiceCidrSource::ServiceCidrObject);
        }
    }
    if let Some(cc) = snap
        .configmap("kube-system", "kubeadm-config")
        .and_then(|cm| cm_data(cm, "ClusterConfiguration"))
        && let Ok(v) = crate::yaml::from_str::<serde_yaml::Value>(cc)
        && let Some(subnet) = v
            .get("networking")
            .and_then(|n| n.get("serviceSubnet"))
            .and_then(|s| s.as_str())
    {
        let cidrs = parse_cidr_list(subnet);
        if !cidrs.is_empty() {
            return found(cidrs, ServiceCidrSource::KubeadmConfig);
        }
    }
    for pod in snap.pods.iter().filter(|p| {
        p.namespace == "kube-system"
            && (p
                .labels
                .get("component")
                .is_some_and(|c| c == "kube-apiserver")
                || p.name.starts_with("kube-apiserver"))
    }) {
        for c in &pod.containers {
            for (i, arg) in c.args.iter().enumerate() {
                let value = if let Some(v) = arg.strip_prefix("--service-cluster-ip-range=") {
                    Some(v)
                } else if arg == "--service-cluster-ip-range" {
                    c.args.get(i + 1).map(String::as_str)
                } else {
                    None
                };
                if let Some(v) = value {
                    let cidrs = parse_cidr_list(v);
                    if !cidrs.is_empty() {
                        return found(cidrs, ServiceCidrSource::ApiServerFlag);
                    }
                }
            }
        }
    }
    match kubernetes_service_ip {
        Some(ip) => found(
            vec![IpNet::from(ip)],
            ServiceCidrSource::KubernetesServiceIp,
        ),
        None => found(Vec::new(), ServiceCidrSource::Unknown),
    }
}
