//! The new pool and tunnel (overlay modes only): disjoint from every address in use, big enough
//! for every node, on a port the old overlay does not use.
//!
//! ```text
//! POD_CIDR_OVERLAPS_EXISTING      the old pod network, disabled Calico pools, node pod CIDRs,
//!                                 an installed Cilium's pool, pods already on such addresses
//! POD_CIDR_OVERLAPS_SERVICE_CIDR  the service range, the kubernetes Service IP
//! POD_CIDR_OVERLAPS_NODE_NETWORK  node addresses and networks
//! POD_CIDR_TOO_SMALL              per-node blocks for every node plus headroom
//! TUNNEL_PORT_COLLISION           Cilium's tunnel port against the old overlay's ports
//! ```

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::common::{MAX_OBJECTS, cidrs, finding, named, overlaps};
use crate::{
    facts::{Encapsulation, NetworkFacts},
    findings::{Finding, FindingCode, Severity},
    snapshot::{ClusterSnapshot, ObjectRef},
    spec::MigrationSpec,
};

/// The new pool shares no address with what is in use.
pub(super) fn overlaps_existing(
    spec: &MigrationSpec,
    snap: &ClusterSnapshot,
    facts: &NetworkFacts,
    out: &mut Vec<Finding>,
) {
    let mut hits: Vec<(IpNet, String, ObjectRef)> = Vec::new();
    let source_obj = facts.source.objects.first().cloned();
    for new in &spec.target.pod_cidrs {
        for old in &facts.source.pod_cidrs {
            if overlaps(new, old) {
                hits.push((
                    *new,
                    format!("the {} pod network {old}", facts.source.cni),
                    source_obj
                        .clone()
                        .unwrap_or_else(|| ObjectRef::cluster("Cluster", "pod-network")),
                ));
            }
        }
        if let Some(c) = &facts.source.calico {
            for p in c.pools.iter().filter(|p| p.disabled) {
                if overlaps(new, &p.cidr) {
                    hits.push((
                        *new,
                        format!(
                            "disabled Calico pool {} ({}), which may still hold addresses",
                            p.name, p.cidr
                        ),
                        p.source.clone(),
                    ));
                }
            }
        }
        let mut nodes_hit = Vec::new();
        for n in &facts.nodes {
            if n.pod_cidrs.iter().any(|c| overlaps(new, c)) {
                nodes_hit.push(n.node.clone());
            }
        }
        if !nodes_hit.is_empty() {
            hits.push((
                *new,
                format!("the spec.podCIDRs of node(s) {}", named(&nodes_hit)),
                ObjectRef::cluster("Node", &nodes_hit[0]),
            ));
        }
        if let Some(c) = &facts.cilium
            && let Some(pool) = c.config.get("cluster-pool-ipv4-cidr")
        {
            for existing in pool
                .split([' ', ','])
                .filter_map(|p| p.parse::<IpNet>().ok())
            {
                if overlaps(new, &existing) && !spec.target.pod_cidrs.contains(&existing) {
                    hits.push((
                        *new,
                        format!("an installed Cilium's cluster pool {existing}"),
                        ObjectRef::namespaced("ConfigMap", "kube-system", "cilium-config"),
                    ));
                }
            }
        }
        // Pods running outside the old pool's known ranges (e.g. VPC addresses) that fall in
        // the new pool would collide too.
        let in_use = snap
            .pods
            .iter()
            .filter(|p| !p.host_network)
            .filter(|p| p.pod_ips.iter().any(|ip| new.contains(ip)))
            .filter(|p| p.labels.get("k8s-app").is_none_or(|a| a != "cilium"))
            .count();
        if in_use > 0 && facts.cilium.is_none() {
            hits.push((
                *new,
                format!("{in_use} running pod(s) already using addresses in it"),
                ObjectRef::cluster("Pod", "*"),
            ));
        }
    }
    if hits.is_empty() {
        return;
    }
    let what: Vec<String> = hits
        .iter()
        .map(|(n, w, _)| format!("{n} overlaps {w}"))
        .collect();
    let mut objects: Vec<ObjectRef> = hits.into_iter().map(|(_, _, o)| o).collect();
    objects.sort();
    objects.dedup();
    out.push(finding(
        FindingCode::PodCidrOverlapsExisting,
        Severity::Error,
        format!("the new pod CIDR is not disjoint from addresses in use: {}", what.join("; ")),
        objects,
        format!("choose target.podCIDRs outside {} (for example the next free /16, as the Cilium guide uses 10.245.0.0/16 beside 10.244.0.0/16)", cidrs(&facts.source.pod_cidrs)),
    ));
}

/// The new pool stays clear of the Services.
pub(super) fn overlaps_service(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let svc = &facts.service;
    let mut hits = Vec::new();
    for new in &spec.target.pod_cidrs {
        for s in &svc.cidrs {
            if overlaps(new, s) {
                hits.push(format!("{new} overlaps the service range {s}"));
            }
        }
        if let Some(ip) = svc.kubernetes_service_ip
            && new.contains(&ip)
            && !hits.iter().any(|h| h.starts_with(&new.to_string()))
        {
            hits.push(format!("{new} contains the kubernetes Service IP {ip}"));
        }
    }
    if !hits.is_empty() {
        out.push(finding(
            FindingCode::PodCidrOverlapsServiceCidr,
            Severity::Error,
            format!(
                "the new pod CIDR collides with Services: {}",
                hits.join("; ")
            ),
            vec![ObjectRef::namespaced("Service", "default", "kubernetes")],
            format!(
                "choose target.podCIDRs outside the service range {}",
                cidrs(&svc.cidrs)
            ),
        ));
    }
}

/// The new pool stays clear of the nodes' own addresses.
pub(super) fn overlaps_nodes(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let mut hit_nodes = Vec::new();
    let mut nets = BTreeSet::new();
    for n in &facts.nodes {
        for new in &spec.target.pod_cidrs {
            let ip_hit = n.internal_ips.iter().any(|ip| new.contains(ip));
            let net_hit: Vec<&IpNet> = n.networks.iter().filter(|net| overlaps(new, net)).collect();
            if ip_hit || !net_hit.is_empty() {
                hit_nodes.push(n.node.clone());
                nets.extend(net_hit.into_iter().map(ToString::to_string));
            }
        }
    }
    if hit_nodes.is_empty() {
        return;
    }
    hit_nodes.dedup();
    out.push(finding(
        FindingCode::PodCidrOverlapsNodeNetwork,
        Severity::Error,
        format!(
            "the new pod CIDR {} overlaps the network of {} node(s) ({}): {}",
            cidrs(&spec.target.pod_cidrs),
            hit_nodes.len(),
            named(&hit_nodes),
            nets.into_iter().collect::<Vec<_>>().join(", ")
        ),
        hit_nodes.iter().take(MAX_OBJECTS).map(|n| ObjectRef::cluster("Node", n)).collect(),
        "choose target.podCIDRs outside every node's network; pods would otherwise shadow node addresses".to_owned(),
    ));
}

/// The new pool has a block for every node, and headroom.
pub(super) fn too_small(spec: &MigrationSpec, snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let mask = u32::from(spec.target.mask_size);
    let blocks: u128 = spec
        .target
        .pod_cidrs
        .iter()
        .map(|c| {
            let bits = mask.saturating_sub(u32::from(c.prefix_len()));
            if bits >= 64 {
                u128::from(u64::MAX)
            } else {
                1u128 << bits
            }
        })
        .sum();
    let nodes = snap.nodes.len();
    let nodes_i = i64::try_from(nodes).unwrap_or(i64::MAX);
    let headroom = spec
        .target
        .headroom
        .resolve(nodes_i, true)
        .unwrap_or(0)
        .max(1);
    let needed = u128::try_from(nodes_i.saturating_add(headroom)).unwrap_or(u128::MAX);
    if blocks >= needed {
        return;
    }
    // The largest per-node mask that would fit, keeping the pool.
    let fits = (u32::from(
        spec.target
            .pod_cidrs
            .iter()
            .map(IpNet::prefix_len)
            .min()
            .unwrap_or(0),
    )..=128)
        .rev()
        .find(|m| {
            let total: u128 = spec
                .target
                .pod_cidrs
                .iter()
                .map(|c| {
                    1u128
                        .checked_shl(m.saturating_sub(u32::from(c.prefix_len())))
                        .unwrap_or(u128::MAX)
                })
                .sum();
            *m <= u32::from(spec.target.pod_cidrs[0].max_prefix_len()) && total >= needed
        });
    out.push(finding(
        FindingCode::PodCidrTooSmall,
        Severity::Error,
        format!(
            "{} holds {blocks} per-node block(s) of /{mask}, but {nodes} node(s) plus headroom {headroom} need {needed}",
            cidrs(&spec.target.pod_cidrs)
        ),
        vec![],
        match fits {
            Some(m) if m > mask => format!("use a larger pool, or raise target.maskSize to /{m} (fewer pod IPs per node: {} each)", (1u128 << (32u32.saturating_sub(m).min(127))).saturating_sub(2)),
            _ => "use a larger pool in target.podCIDRs".to_owned(),
        },
    ));
}

/// Cilium's tunnel port is not one the old overlay uses.
pub(super) fn tunnel_port(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let ours = spec.target.tunnel.effective_port();
    let mut theirs: Vec<u16> = facts.source.port.into_iter().collect();
    if let Some(f) = &facts.source.flannel {
        theirs.extend(f.net_conf.port_v6);
        if f.net_conf.backend == "wireguard"
            && f.net_conf.port_v6.is_none()
            && f.net_conf.enable_ipv6
        {
            theirs.push(51821);
        }
    }
    if let Some(c) = &facts.source.calico {
        if facts.source.encapsulation == Encapsulation::Vxlan {
            theirs.push(c.vxlan_port);
        }
        theirs.extend(c.wireguard_port);
    }
    if !theirs.contains(&ours) {
        return;
    }
    let defaulted = spec.target.tunnel.port.is_none();
    out.push(finding(
        FindingCode::TunnelPortCollision,
        Severity::Error,
        format!(
            "Cilium's {} tunnel would use UDP {ours}{}, which the old {} overlay already uses: the agent cannot create its tunnel device (\"address already in use\") and crash-loops",
            spec.target.tunnel.protocol,
            if defaulted { " (Cilium's default)" } else { "" },
            facts.source.cni
        ),
        facts.source.objects.iter().take(2).cloned().collect(),
        format!(
            "set target.tunnel.port to a free port such as {}, or use target.tunnel.protocol: geneve (port 6081)",
            if ours == 8473 { 8474 } else { 8473 }
        ),
    ));
}
