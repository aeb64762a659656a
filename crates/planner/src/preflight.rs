//! Preflight: the spec checked against the facts, before anything changes.
//!
//! Every check is a small function from (spec, snapshot, facts) to findings. Each finding
//! carries the concrete facts in its message (CIDRs, ports, counts, names), the objects
//! involved, and the fix. Errors block `apply`.
//!
//! Scale: at 150,000 pods and 5,000 nodes every check is linear in pods and nodes; PDBs are
//! matched against the pods of their own namespace only.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::{
    facts::{CalicoInstall, CniKind, Encapsulation, NetworkFacts, Platform, ServiceCidrSource},
    findings::{Finding, FindingCode, Severity},
    plan::evictable,
    snapshot::{ClusterSnapshot, ObjectRef, PdbIndex, PdbInfo, PodInfo},
    spec::MigrationSpec,
};

mod eks;

pub use eks::{EC2_ACTIONS, VPC_CNI_NAT_CHAINS, flush_command as flush_vpc_cni_command};

/// How many objects a finding lists before it says "and N more" (a 150,000-pod cluster must
/// not produce a 150,000-entry finding).
pub const MAX_OBJECTS: usize = 50;
/// How many names a message spells out.
const MAX_NAMED: usize = 10;

fn finding(
    code: FindingCode,
    severity: Severity,
    message: String,
    objects: Vec<ObjectRef>,
    fix: String,
) -> Finding {
    Finding {
        code,
        severity,
        message,
        objects,
        fix,
    }
}

fn cidrs(list: &[IpNet]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn named(list: &[String]) -> String {
    if list.len() <= MAX_NAMED {
        list.join(", ")
    } else {
        format!(
            "{} and {} more",
            list[..MAX_NAMED].join(", "),
            list.len() - MAX_NAMED
        )
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Every finding, sorted by severity, then code, then objects.
pub fn preflight(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    facts: &NetworkFacts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    source_cni(spec, facts, &mut out);
    // Only an overlay has a pool and a tunnel to keep disjoint.
    if spec.target.mode.is_overlay() {
        overlaps_existing(spec, snapshot, facts, &mut out);
        overlaps_service(spec, facts, &mut out);
        overlaps_nodes(spec, facts, &mut out);
        too_small(spec, snapshot, &mut out);
        tunnel_port(spec, facts, &mut out);
    }
    if spec.target.mode.is_eks() {
        eks::checks(spec, facts, &mut out);
    }
    network_policies(snapshot, &mut out);
    calico_checks(facts, &mut out);
    aws_snat(spec, facts, &mut out);
    pods_and_pdbs(spec, snapshot, &mut out);
    cilium_config(spec, facts, &mut out);
    ipv6(spec, facts, &mut out);
    platform(facts, &mut out);
    service_unknown(facts, &mut out);
    out.sort_by(|a, b| {
        (a.severity, a.code, &a.objects, &a.message)
            .cmp(&(b.severity, b.code, &b.objects, &b.message))
    });
    out
}

fn source_cni(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let s = &facts.source;
    if spec.target.mode.is_eks() && !matches!(s.cni, CniKind::AwsVpcCni | CniKind::Cilium) {
        out.push(finding(
            FindingCode::SourceCniUnsupported,
            Severity::Error,
            format!(
                "target.mode {} migrates from the AWS VPC CNI (aws-node), but the cluster runs {}",
                spec.target.mode, s.cni
            ),
            s.objects.clone(),
            "use target.mode: dual-overlay (the default) for Flannel and Calico".to_owned(),
        ));
        return;
    }
    let unsupported = |message: String, fix: &str| {
        finding(
            FindingCode::SourceCniUnsupported,
            Severity::Error,
            message,
            s.objects.clone(),
            fix.to_owned(),
        )
    };
    match s.cni {
        CniKind::Unknown => out.push(unsupported(
            "no supported CNI was found (Flannel, Calico or the AWS VPC CNI): the dual-overlay migration needs to know the old overlay to keep it disjoint".to_owned(),
            "make sure the dump includes ConfigMaps and DaemonSets of kube-system, kube-flannel and calico-system (and Calico's custom resources), or migrate by replacing nodes instead",
        )),
        CniKind::Cilium => out.push(unsupported(
            "Cilium is already the cluster's CNI (cilium-config exists and no other CNI was found): there is nothing to migrate".to_owned(),
            "nothing to do; if a migration was interrupted after the old CNI was removed, finish it with `cni-migrate resume`",
        )),
        CniKind::Flannel => {
            let backend = s.flannel.as_ref().map_or("", |f| f.net_conf.backend.as_str());
            if matches!(backend, "alloc" | "tencent-vpc" | "ipsec") || s.encapsulation == Encapsulation::Unknown {
                out.push(unsupported(
                    format!("Flannel's backend `{backend}` does not route pods through the Linux routing stack as the migration needs (supported: vxlan, udp, wireguard, host-gw, ipip)"),
                    "move Flannel to the vxlan backend first, or migrate by replacing nodes",
                ));
            }
            if s.pod_cidrs.is_empty() {
                out.push(unsupported(
                    "Flannel's pod network (net-conf.json `Network`) could not be read, so disjointness cannot be proven".to_owned(),
                    "fix kube-flannel-cfg's net-conf.json (see the detection notes), then plan again",
                ));
            }
        }
        CniKind::Calico => {
            if let Some(c) = &s.calico
                && c.bpf_enabled
            {
                out.push(unsupported(
                    "Calico runs its eBPF dataplane, which does not use the Linux routing stack the dual overlay relies on".to_owned(),
                    "switch Calico back to the iptables dataplane (linuxDataplane: Iptables / bpfEnabled: false) first",
                ));
            }
            if s.pod_cidrs.is_empty() {
                out.push(unsupported(
                    "no enabled Calico IP pool was found, so disjointness cannot be proven".to_owned(),
                    "include Calico's IPPool objects (ippools.crd.projectcalico.org) in the dump",
                ));
            }
            if s.encapsulation == Encapsulation::None {
                out.push(finding(
                    FindingCode::SourceCniUntestedBgp,
                    Severity::Warning,
                    "Calico routes pods with BGP and no encapsulation: Cilium's migration procedure has not been tested with BGP routing".to_owned(),
                    s.calico.iter().flat_map(|c| c.pools.iter().map(|p| p.source.clone())).collect(),
                    "rehearse on a copy of the cluster first (`cni-migrate rehearse`), or switch the pools to VXLAN before migrating".to_owned(),
                ));
            }
        }
        CniKind::AwsVpcCni => {}
    }
}

fn overlaps_existing(
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

fn overlaps_service(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
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

fn overlaps_nodes(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
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

fn too_small(spec: &MigrationSpec, snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
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

fn tunnel_port(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
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

fn network_policies(snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let calico_policies: Vec<&crate::snapshot::CustomObject> = snap
        .custom
        .iter()
        .filter(|o| o.group().contains("projectcalico.org") && o.kind.ends_with("NetworkPolicy"))
        .collect();
    if snap.network_policies.is_empty() && calico_policies.is_empty() {
        return;
    }
    let namespaces: BTreeSet<&str> = snap
        .network_policies
        .iter()
        .map(|p| p.namespace.as_str())
        .collect();
    let mut objects: Vec<ObjectRef> = snap
        .network_policies
        .iter()
        .map(|p| ObjectRef::namespaced("NetworkPolicy", &p.namespace, &p.name))
        .chain(calico_policies.iter().map(|o| o.object_ref()))
        .collect();
    objects.truncate(MAX_OBJECTS);
    out.push(finding(
        FindingCode::NetworkPoliciesPresent,
        Severity::Warning,
        format!(
            "{} NetworkPolicy object(s) in {} namespace(s){}: Cilium enforces no policy during the migration (policyEnforcementMode: never), and the old CNI stops enforcing them on migrated nodes",
            snap.network_policies.len(),
            namespaces.len(),
            if calico_policies.is_empty() { String::new() } else { format!(" and {} Calico policy object(s)", calico_policies.len()) }
        ),
        objects,
        "plan the migration window accordingly (policies are enforced again by Cilium after finalize); convert Calico-specific policies to CiliumNetworkPolicies before finalize".to_owned(),
    ));
}

fn calico_checks(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(c) = &facts.source.calico else {
        return;
    };
    if !c.autodetect.first_found {
        return;
    }
    let fix = match c.install {
        CalicoInstall::Operator => r#"kubectl patch installations.operator.tigera.io default --type=merge --patch '{"spec": {"calicoNetwork": {"nodeAddressAutodetectionV4": {"firstFound": false, "kubernetes": "NodeInternalIP"}}}}'"#.to_owned(),
        CalicoInstall::Manifest => format!("kubectl -n {} set env daemonset/calico-node IP_AUTODETECTION_METHOD=kubernetes-internal-ip", c.namespace),
    };
    out.push(finding(
        FindingCode::CalicoAutodetectFirstFound,
        Severity::Error,
        format!(
            "Calico picks node addresses with `{}`: once Cilium creates its cilium_host interface on a node, Calico may choose it and break node routing cluster-wide (a known outage of this migration)",
            c.autodetect.method
        ),
        c.autodetect.source.iter().cloned().collect(),
        fix,
    ));
}

fn aws_snat(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(aws) = &facts.source.aws else { return };
    if aws.external_snat {
        return;
    }
    let missing: Vec<&IpNet> = spec
        .target
        .pod_cidrs
        .iter()
        .filter(|new| !aws.exclude_snat_cidrs.iter().any(|ex| ex.contains(*new)))
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut list: Vec<String> = aws
        .exclude_snat_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    list.extend(missing.iter().map(ToString::to_string));
    out.push(finding(
        FindingCode::AwsCniSnatExclusionMissing,
        Severity::Error,
        format!(
            "the AWS VPC CNI SNATs traffic leaving the VPC's pod addresses, and {} is not in AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: traffic between VPC pods and Cilium pods would be masqueraded and break",
            missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        vec![ObjectRef::namespaced("DaemonSet", "kube-system", "aws-node")],
        format!("kubectl -n kube-system set env daemonset/aws-node AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS={}", list.join(",")),
    ));
}

/// What a PDB allows at most, structurally: `None` when it cannot be told.
fn pdb_blocks_forever(pdb: &PdbInfo, matching: usize) -> Option<String> {
    let n = i64::try_from(matching).unwrap_or(i64::MAX);
    if let Some(max) = &pdb.max_unavailable {
        return match max.resolve(n, true) {
            Some(0) => Some(format!("maxUnavailable: {max} allows no disruption at all")),
            _ => None,
        };
    }
    if let Some(min) = &pdb.min_available {
        return match min.resolve(n, true) {
            Some(m) if m >= n && n > 0 => Some(format!(
                "minAvailable: {min} needs all {n} of its pods available, so no pod may ever be evicted"
            )),
            _ => None,
        };
    }
    None
}

fn pods_and_pdbs(spec: &MigrationSpec, snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let mut unreplicated: Vec<&PodInfo> = Vec::new();
    let mut local: Vec<&PodInfo> = Vec::new();
    let mut by_ns: BTreeMap<&str, Vec<&PodInfo>> = BTreeMap::new();
    for p in snap.pods.iter().filter(|p| p.node_name.is_some()) {
        if !evictable(p) {
            continue;
        }
        if p.owner.is_none() {
            unreplicated.push(p);
        }
        if p.empty_dir {
            local.push(p);
        }
        by_ns.entry(p.namespace.as_str()).or_default().push(p);
    }
    let pods_finding = |code, allowed: bool, pods: &[&PodInfo], what: &str, flag: &str| {
        let names: Vec<String> = pods.iter().map(|p| p.key()).collect();
        finding(
            code,
            if allowed {
                Severity::Warning
            } else {
                Severity::Error
            },
            format!(
                "{} pod(s) {what}: {}{}",
                pods.len(),
                named(&names),
                if allowed {
                    format!(" (allowed by {flag}: the drain will evict them)")
                } else {
                    format!("; the drain refuses them unless {flag} is set")
                }
            ),
            pods.iter()
                .take(MAX_OBJECTS)
                .map(|p| p.object_ref())
                .collect(),
            if allowed {
                "make sure losing them is acceptable".to_owned()
            } else {
                format!(
                    "run them under a controller, or set {flag}: true if losing them is acceptable"
                )
            },
        )
    };
    if !unreplicated.is_empty() {
        out.push(pods_finding(
            FindingCode::UnreplicatedPods,
            spec.rollout.drain.allow_unreplicated,
            &unreplicated,
            "have no controller and would not come back after a drain",
            "rollout.drain.allowUnreplicated",
        ));
    }
    if !local.is_empty() {
        out.push(pods_finding(
            FindingCode::LocalStoragePods,
            spec.rollout.drain.delete_empty_dir_data,
            &local,
            "use emptyDir volumes whose data a drain deletes",
            "rollout.drain.deleteEmptyDirData",
        ));
    }
    // Pods per budget, from one pass over the pods through the index.
    let index = PdbIndex::new(&snap.pdbs);
    let mut covered: BTreeMap<(&str, &str), (&PdbInfo, Vec<&PodInfo>)> = BTreeMap::new();
    for pods in by_ns.values() {
        for p in pods {
            for pdb in index.for_pod(p) {
                covered
                    .entry((pdb.namespace.as_str(), pdb.name.as_str()))
                    .or_insert((pdb, Vec::new()))
                    .1
                    .push(p);
            }
        }
    }
    for (pdb, pods) in covered.into_values() {
        if let Some(why) = pdb_blocks_forever(pdb, pods.len()) {
            let names: Vec<String> = pods.iter().map(|p| p.key()).collect();
            let mut objects = vec![pdb.object_ref()];
            objects.extend(pods.iter().take(MAX_OBJECTS).map(|p| p.object_ref()));
            out.push(finding(
                FindingCode::PdbBlocksDrain,
                Severity::Error,
                format!(
                    "PodDisruptionBudget {}/{}: {why}; every drain of a node running {} would wait until its timeout",
                    pdb.namespace,
                    pdb.name,
                    named(&names)
                ),
                objects,
                format!(
                    "relax the budget (e.g. kubectl -n {} patch pdb {} --type=merge -p '{{\"spec\":{{\"maxUnavailable\":1,\"minAvailable\":null}}}}') or add replicas for the migration window",
                    pdb.namespace, pdb.name
                ),
            ));
        }
    }
}

fn cilium_config(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(c) = &facts.cilium else { return };
    // Only a Cilium running *beside* an old CNI must be in migration mode.
    if matches!(facts.source.cni, CniKind::Cilium | CniKind::Unknown) {
        return;
    }
    let cfg = &c.config;
    let mut diffs = Vec::new();
    for (key, expected) in crate::values::migration_config(spec) {
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

fn ipv6(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
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
    if spec.target.mode == crate::spec::TargetMode::EksEni {
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

fn platform(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(p) = &facts.platform else { return };
    let why = match p.platform {
        Platform::Eks => return,
        Platform::Aks => {
            "AKS manages the CNI itself and re-images every node pool at once when switching to Cilium (az aks update --network-dataplane cilium); a node-by-node migration fights the platform"
        }
        Platform::Gke => {
            "GKE's dataplane is managed (Dataplane V2 is GKE's Cilium); migrate with GKE's own Dataplane V2 migration"
        }
        Platform::Rke2 => {
            "RKE2 deploys its CNI from its own HelmCharts and does not support switching the CNI of a running cluster"
        }
        Platform::K3s => {
            "k3s embeds Flannel in its own binary (no DaemonSet to remove) and keeps CNI configuration in /var/lib/rancher/k3s/agent/etc/cni/net.d"
        }
    };
    out.push(finding(
        FindingCode::ManagedPlatform,
        Severity::Warning,
        format!("{} detected ({}): {why}", p.platform, p.evidence),
        vec![],
        match p.platform {
            Platform::K3s => "restart k3s with --flannel-backend=none after finalize, and set target.cniConfDir: /var/lib/rancher/k3s/agent/etc/cni/net.d".to_owned(),
            _ => "use the platform's supported path, or rehearse thoroughly before running this on it".to_owned(),
        },
    ));
}

fn service_unknown(facts: &NetworkFacts, out: &mut Vec<Finding>) {
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::{
        detect::detect,
        dump::load_str,
        snapshot::{
            IntOrString, LabelSelector, NetworkPolicyInfo, NodeAddress, NodeInfo, OwnerRef,
            PodPhase,
        },
    };

    const SPEC: &str = "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
        target: {ciliumVersion: 1.17.3, podCIDRs: [10.245.0.0/16], maskSize: 24, tunnel: {protocol: vxlan, port: 8473}}\n";

    fn spec(edit: &dyn Fn(&mut MigrationSpec)) -> MigrationSpec {
        let mut s = MigrationSpec::from_yaml(SPEC, "t").unwrap();
        edit(&mut s);
        s
    }

    /// A healthy kind-like Flannel cluster: three nodes, kubeadm service range, one
    /// replicated app with a sane PDB.
    fn base() -> ClusterSnapshot {
        let text = r#"{"kind": "List", "items": [
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
           "data": {"net-conf.json": "{\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}"}},
          {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"},
           "spec": {"selector": {"matchLabels": {"app": "flannel"}}, "template": {"metadata": {"labels": {"app": "flannel"}}, "spec": {"containers": [{"name": "f", "image": "f"}]}}}},
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
           "data": {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.96.0.0/16\n"}},
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.1"}}
        ]}"#;
        let mut snap = load_str(text, "t").unwrap();
        for (i, name) in ["n1", "n2", "n3"].iter().enumerate() {
            snap.nodes.push(NodeInfo {
                name: (*name).into(),
                ready: true,
                pod_cidrs: vec![format!("10.244.{i}.0/24")],
                addresses: vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("172.18.0.{}", i + 2),
                }],
                ..NodeInfo::default()
            });
        }
        for i in 0..3 {
            snap.pods
                .push(app_pod(&format!("web-{i}"), &format!("n{}", i + 1)));
        }
        snap.pdbs.push(pdb(Some(IntOrString::Int(1)), None));
        snap
    }

    fn app_pod(name: &str, node: &str) -> PodInfo {
        PodInfo {
            namespace: "shop".into(),
            name: name.into(),
            node_name: Some(node.into()),
            phase: PodPhase::Running,
            labels: [("app".to_owned(), "web".to_owned())].into(),
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "rs".into(),
            }),
            ..PodInfo::default()
        }
    }

    fn pdb(max_unavailable: Option<IntOrString>, min_available: Option<IntOrString>) -> PdbInfo {
        PdbInfo {
            namespace: "shop".into(),
            name: "web".into(),
            selector: Some(LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                ..LabelSelector::default()
            }),
            max_unavailable,
            min_available,
            ..PdbInfo::default()
        }
    }

    fn codes(spec: &MigrationSpec, snap: &ClusterSnapshot) -> Vec<(FindingCode, Severity)> {
        let facts = detect(snap);
        preflight(spec, snap, &facts)
            .into_iter()
            .map(|f| (f.code, f.severity))
            .collect()
    }

    fn no_edit(_: &mut MigrationSpec) {}
    fn no_snap(_: &mut ClusterSnapshot) {}

    #[test]
    fn a_healthy_flannel_cluster_has_no_findings() {
        assert_eq!(codes(&spec(&no_edit), &base()), vec![]);
    }

    fn set_cidr(c: &'static str) -> impl Fn(&mut MigrationSpec) {
        move |s| s.target.pod_cidrs = vec![c.parse().unwrap()]
    }

    #[rstest]
    #[case::overlaps_flannel(FindingCode::PodCidrOverlapsExisting, Severity::Error, &set_cidr("10.244.128.0/17"), &no_snap)]
    #[case::overlaps_service(FindingCode::PodCidrOverlapsServiceCidr, Severity::Error, &set_cidr("10.96.0.0/12"), &no_snap)]
    #[case::overlaps_nodes(FindingCode::PodCidrOverlapsNodeNetwork, Severity::Error, &set_cidr("172.18.0.0/16"), &no_snap)]
    #[case::too_small(FindingCode::PodCidrTooSmall, Severity::Error, &set_cidr("10.245.0.0/23"), &no_snap)]
    #[case::default_port_collides_with_flannel(FindingCode::TunnelPortCollision, Severity::Error, &|s: &mut MigrationSpec| s.target.tunnel.port = None, &no_snap)]
    #[case::explicit_port_collides(FindingCode::TunnelPortCollision, Severity::Error, &|s: &mut MigrationSpec| s.target.tunnel.port = Some(8472), &no_snap)]
    #[case::no_cni(FindingCode::SourceCniUnsupported, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| { s.configmaps.retain(|c| c.metadata.name.as_deref() != Some("kube-flannel-cfg")); })]
    #[case::policies(FindingCode::NetworkPoliciesPresent, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.network_policies.push(NetworkPolicyInfo { namespace: "shop".into(), name: "deny".into() }))]
    #[case::pdb_max_zero(FindingCode::PdbBlocksDrain, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.pdbs = vec![pdb(Some(IntOrString::Int(0)), None)])]
    #[case::pdb_min_all(FindingCode::PdbBlocksDrain, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.pdbs = vec![pdb(None, Some(IntOrString::Int(3)))])]
    #[case::pdb_min_100_percent(FindingCode::PdbBlocksDrain, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.pdbs = vec![pdb(None, Some(IntOrString::String("100%".into())))])]
    #[case::unreplicated(FindingCode::UnreplicatedPods, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.pods[0].owner = None)]
    #[case::unreplicated_allowed(FindingCode::UnreplicatedPods, Severity::Warning, &|s: &mut MigrationSpec| s.rollout.drain.allow_unreplicated = true, &|s: &mut ClusterSnapshot| s.pods[0].owner = None)]
    #[case::local_storage(FindingCode::LocalStoragePods, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.pods[0].empty_dir = true)]
    #[case::local_storage_allowed(FindingCode::LocalStoragePods, Severity::Warning, &|s: &mut MigrationSpec| s.rollout.drain.delete_empty_dir_data = true, &|s: &mut ClusterSnapshot| s.pods[0].empty_dir = true)]
    #[case::ipv6_cluster(FindingCode::Ipv6NotSupported, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[0].addresses.push(NodeAddress { type_: "InternalIP".into(), address: "fd00::2".into() }))]
    #[case::service_unknown(FindingCode::ServiceCidrUnknown, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.configmaps.retain(|c| c.metadata.name.as_deref() != Some("kubeadm-config")))]
    #[case::k3s(FindingCode::ManagedPlatform, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[0].kubelet_version = Some("v1.31.1+k3s1".into()))]
    fn each_finding_fires(
        #[case] code: FindingCode,
        #[case] severity: Severity,
        #[case] edit_spec: &dyn Fn(&mut MigrationSpec),
        #[case] edit_snap: &dyn Fn(&mut ClusterSnapshot),
    ) {
        let mut snap = base();
        edit_snap(&mut snap);
        let found = codes(&spec(edit_spec), &snap);
        assert!(
            found.contains(&(code, severity)),
            "expected {code} {severity}, got {found:?}"
        );
    }

    #[rstest]
    #[case::adjacent_cidr_is_disjoint(FindingCode::PodCidrOverlapsExisting, &set_cidr("10.245.0.0/16"), &no_snap)]
    #[case::big_enough_pool(FindingCode::PodCidrTooSmall, &set_cidr("10.245.0.0/22"), &no_snap)]
    #[case::geneve_never_collides_with_vxlan(FindingCode::TunnelPortCollision, &|s: &mut MigrationSpec| { s.target.tunnel.protocol = crate::spec::TunnelProtocol::Geneve; s.target.tunnel.port = None; }, &no_snap)]
    #[case::pdb_with_budget(FindingCode::PdbBlocksDrain, &no_edit, &|s: &mut ClusterSnapshot| s.pdbs = vec![pdb(None, Some(IntOrString::Int(2)))])]
    #[case::pdb_without_pods(FindingCode::PdbBlocksDrain, &no_edit, &|s: &mut ClusterSnapshot| { s.pdbs = vec![pdb(Some(IntOrString::Int(0)), None)]; s.pods.clear(); })]
    #[case::daemonset_pods_are_not_unreplicated(FindingCode::UnreplicatedPods, &no_edit, &|s: &mut ClusterSnapshot| s.pods[0].owner = Some(OwnerRef { kind: "DaemonSet".into(), name: "d".into(), uid: "d".into() }))]
    #[case::finished_pods_do_not_count(FindingCode::LocalStoragePods, &no_edit, &|s: &mut ClusterSnapshot| { s.pods[0].empty_dir = true; s.pods[0].phase = PodPhase::Succeeded; })]
    #[case::mirror_pods_do_not_count(FindingCode::UnreplicatedPods, &no_edit, &|s: &mut ClusterSnapshot| { s.pods[0].owner = None; s.pods[0].mirror = true; })]
    fn each_finding_stays_quiet(
        #[case] code: FindingCode,
        #[case] edit_spec: &dyn Fn(&mut MigrationSpec),
        #[case] edit_snap: &dyn Fn(&mut ClusterSnapshot),
    ) {
        let mut snap = base();
        edit_snap(&mut snap);
        let found = codes(&spec(edit_spec), &snap);
        assert!(
            !found.iter().any(|(c, _)| *c == code),
            "{code} must not fire: {found:?}"
        );
    }

    fn calico_snapshot(installation: &str) -> ClusterSnapshot {
        let mut snap = base();
        snap.configmaps
            .retain(|c| c.metadata.name.as_deref() != Some("kube-flannel-cfg"));
        snap.daemonsets.clear();
        let extra = load_str(installation, "t").unwrap();
        snap.custom = extra.custom;
        snap
    }

    const INSTALL: &str = r#"{"kind": "List", "items": [
        {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
         "spec": {"calicoNetwork": {"ipPools": [{"cidr": "192.168.0.0/16", "encapsulation": "ENCAP"}] AUTODETECT}}}]}"#;

    #[test]
    fn calico_first_found_autodetection_is_an_error_with_the_exact_patch() {
        let snap = calico_snapshot(&INSTALL.replace("ENCAP", "VXLAN").replace("AUTODETECT", ""));
        let facts = detect(&snap);
        let f = preflight(&spec(&no_edit), &snap, &facts);
        let hit = f
            .iter()
            .find(|f| f.code == FindingCode::CalicoAutodetectFirstFound)
            .expect("fires");
        assert!(hit.fix.contains(r#""nodeAddressAutodetectionV4": {"firstFound": false, "kubernetes": "NodeInternalIP"}"#), "{}", hit.fix);
        let pinned = calico_snapshot(&INSTALL.replace("ENCAP", "VXLAN").replace(
            "AUTODETECT",
            r#", "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"}"#,
        ));
        assert!(
            !codes(&spec(&no_edit), &pinned)
                .iter()
                .any(|(c, _)| *c == FindingCode::CalicoAutodetectFirstFound)
        );
    }

    #[test]
    fn calico_without_encapsulation_is_untested_bgp() {
        let pinned = r#", "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"}"#;
        let snap = calico_snapshot(
            &INSTALL
                .replace("ENCAP", "None")
                .replace("AUTODETECT", pinned),
        );
        assert!(
            codes(&spec(&no_edit), &snap)
                .contains(&(FindingCode::SourceCniUntestedBgp, Severity::Warning))
        );
        let snap = calico_snapshot(
            &INSTALL
                .replace("ENCAP", "IPIP")
                .replace("AUTODETECT", pinned),
        );
        assert_eq!(codes(&spec(&no_edit), &snap), vec![]);
    }

    fn aws_snapshot(exclude: &str) -> ClusterSnapshot {
        let mut snap = base();
        snap.configmaps
            .retain(|c| c.metadata.name.as_deref() != Some("kube-flannel-cfg"));
        let ds = format!(
            r#"{{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {{"name": "aws-node", "namespace": "kube-system"}},
               "spec": {{"selector": {{"matchLabels": {{"k8s-app": "aws-node"}}}}, "template": {{"metadata": {{"labels": {{"k8s-app": "aws-node"}}}},
               "spec": {{"containers": [{{"name": "aws-node", "image": "i", "env": [{{"name": "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "value": "{exclude}"}}]}}]}}}}}}}}"#
        );
        snap.daemonsets = load_str(&ds, "t").unwrap().daemonsets;
        snap
    }

    #[test]
    fn aws_cni_must_exclude_the_new_pool_from_snat() {
        let f = preflight(
            &spec(&no_edit),
            &aws_snapshot("10.0.0.0/24"),
            &detect(&aws_snapshot("10.0.0.0/24")),
        );
        let hit = f
            .iter()
            .find(|f| f.code == FindingCode::AwsCniSnatExclusionMissing)
            .expect("fires");
        assert!(
            hit.fix
                .ends_with("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS=10.0.0.0/24,10.245.0.0/16"),
            "{}",
            hit.fix
        );
        assert!(
            !codes(&spec(&no_edit), &aws_snapshot("10.245.0.0/16"))
                .iter()
                .any(|(c, _)| *c == FindingCode::AwsCniSnatExclusionMissing)
        );
    }

    #[test]
    fn an_installed_cilium_must_be_in_migration_mode() {
        let mut snap = base();
        let cm = |data: &str| {
            load_str(&format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "cilium-config", "namespace": "kube-system"}}, "data": {data}}}"#), "t").unwrap().configmaps
        };
        snap.configmaps.extend(cm(
            r#"{"custom-cni-conf": "false", "enable-policy": "default", "ipam": "cluster-pool"}"#,
        ));
        let facts = detect(&snap);
        let f = preflight(&spec(&no_edit), &snap, &facts);
        let hit = f
            .iter()
            .find(|f| f.code == FindingCode::CiliumConfigMismatch)
            .expect("fires");
        assert!(
            hit.message
                .contains("custom-cni-conf: expected true, found false"),
            "{}",
            hit.message
        );
        snap.configmaps
            .retain(|c| c.metadata.name.as_deref() != Some("cilium-config"));
        snap.configmaps.extend(cm(r#"{"custom-cni-conf": "true", "enable-policy": "never", "ipam": "cluster-pool", "cluster-pool-ipv4-cidr": "10.245.0.0/16",
            "tunnel-protocol": "vxlan", "tunnel-port": "8473", "routing-mode": "tunnel", "enable-host-legacy-routing": "true", "unmanaged-pod-watcher-interval": "0"}"#));
        assert_eq!(
            codes(&spec(&no_edit), &snap),
            vec![],
            "a Cilium installed by the plan's own values passes"
        );
    }

    #[test]
    fn ipv6_target_is_refused_and_eks_is_not_a_managed_platform_finding() {
        let s = spec(&|s| s.target.pod_cidrs = vec!["fd00:245::/104".parse().unwrap()]);
        let mut s = s;
        s.target.mask_size = 120;
        assert!(codes(&s, &base()).contains(&(FindingCode::Ipv6NotSupported, Severity::Error)));
        let mut snap = base();
        snap.nodes[0].provider_id = Some("aws:///x/i-1".into());
        snap.nodes[0].kubelet_version = Some("v1.31.4-eks-1".into());
        assert!(
            !codes(&spec(&no_edit), &snap)
                .iter()
                .any(|(c, _)| *c == FindingCode::ManagedPlatform)
        );
    }

    #[test]
    fn findings_on_huge_clusters_stay_small() {
        let mut snap = base();
        for i in 0..5000 {
            let mut p = app_pod(&format!("bare-{i}"), "n1");
            p.owner = None;
            p.labels.clear();
            snap.pods.push(p);
        }
        let facts = detect(&snap);
        let f = preflight(&spec(&no_edit), &snap, &facts);
        let hit = f
            .iter()
            .find(|f| f.code == FindingCode::UnreplicatedPods)
            .expect("fires");
        assert_eq!(hit.objects.len(), MAX_OBJECTS);
        assert!(
            hit.message.contains("5000 pod(s)") && hit.message.contains("and 4990 more"),
            "{}",
            hit.message
        );
    }
}
