//! Preflight: the spec checked against the facts, before anything changes.
//!
//! Every check is a small function from (spec, snapshot, facts) to findings. Each finding
//! carries the concrete facts in its message (CIDRs, ports, counts, names), the objects
//! involved, and the fix. Errors block `apply`.
//!
//! Scale: at 150,000 pods and 5,000 nodes every check is linear in pods and nodes; PDBs are
//! matched against the pods of their own namespace only.
//!
//! ```text
//! preflight.rs   preflight(): runs the checks that apply to target.mode, sorts the findings
//!  ├─ source       the old CNI (SOURCE_CNI_*, CALICO_AUTODETECT_FIRST_FOUND, AWS_CNI_SNAT_*)
//!  ├─ pool         the new pool and tunnel, overlay modes (POD_CIDR_*, TUNNEL_PORT_COLLISION)
//!  ├─ workloads    policies, pods and PDBs the drains meet
//!  ├─ cluster      an installed Cilium, IPv6, managed platforms and distributions that
//!  │               re-apply their CNI, the service range
//!  ├─ datapath     what recent Cilium releases changed (HOST_ROUTING_STAYS_LEGACY, netkit)
//!  ├─ churn        who adds and removes nodes mid-migration (NODE_AUTOSCALING_ACTIVE)
//!  ├─ finale       how long the final restart of every agent takes (FINAL_RESTART_SLOW)
//!  ├─ eks          the EKS profiles' checks
//!  └─ common       finding(), list limits (MAX_OBJECTS)
//! ```

mod churn;
mod cluster;
mod common;
mod datapath;
mod eks;
mod finale;
mod pool;
mod source;
mod workloads;

pub use common::MAX_OBJECTS;
pub use eks::EC2_ACTIONS;

pub use crate::{commands::flush_vpc_cni_command, names::VPC_CNI_NAT_CHAINS};
use crate::{
    facts::NetworkFacts, findings::Finding, snapshot::ClusterSnapshot, spec::MigrationSpec,
};

/// Every finding, sorted by severity, then code, then objects.
pub fn preflight(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    facts: &NetworkFacts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    source::source_cni(spec, facts, &mut out);
    // Only an overlay has a pool and a tunnel to keep disjoint.
    if spec.target.mode.is_overlay() {
        pool::overlaps_existing(spec, snapshot, facts, &mut out);
        pool::overlaps_service(spec, facts, &mut out);
        pool::overlaps_nodes(spec, facts, &mut out);
        pool::too_small(spec, snapshot, &mut out);
        pool::tunnel_port(spec, facts, &mut out);
    }
    if spec.target.mode.is_eks() {
        eks::checks(spec, facts, &mut out);
    }
    workloads::network_policies(snapshot, &mut out);
    source::calico_checks(facts, &mut out);
    source::aws_snat(spec, facts, &mut out);
    workloads::pods_and_pdbs(spec, snapshot, &mut out);
    cluster::cilium_config(spec, facts, &mut out);
    cluster::ipv6(spec, facts, &mut out);
    cluster::platform(facts, &mut out);
    datapath::host_routing(spec, snapshot, &mut out);
    datapath::netkit(facts, &mut out);
    datapath::old_cni_leftovers(spec, facts, &mut out);
    cluster::service_unknown(facts, &mut out);
    churn::node_autoscaling(snapshot, &mut out);
    finale::final_restart(snapshot, &mut out);
    out.sort_by(|a, b| {
        (a.severity, a.code, &a.objects, &a.message)
            .cmp(&(b.severity, b.code, &b.objects, &b.message))
    });
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::{
        detect::detect,
        dump::load_str,
        findings::{FindingCode, Severity},
        snapshot::{
            IntOrString, LabelSelector, NetworkPolicyInfo, NodeAddress, NodeInfo, OwnerRef,
            PdbInfo, PodInfo, PodPhase,
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

    /// Right after a StatefulSet pod's eviction (or a crash mid-drain) only one of its two
    /// pods exists: the controller recreates it once the old one is gone. `minAvailable: 1`
    /// still allows an eviction once both run, so it is no finding.
    fn one_of_two_statefulset_pods(s: &mut ClusterSnapshot) {
        s.pods.truncate(1);
        s.pods[0].owner = Some(OwnerRef {
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "sts".into(),
        });
        s.workloads.push(crate::snapshot::WorkloadInfo {
            kind: "StatefulSet".into(),
            namespace: "shop".into(),
            name: "web".into(),
            replicas: Some(2),
            ..Default::default()
        });
        s.pdbs = vec![pdb(None, Some(IntOrString::Int(1)))];
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

    /// The spec that keeps legacy host routing (what a cluster without kube-proxy
    /// replacement gets anyway), so the plan has nothing to say about it.
    fn legacy_routing(s: &mut MigrationSpec) {
        s.finalize.host_legacy_routing = true;
    }

    #[test]
    fn a_healthy_flannel_cluster_has_no_findings() {
        assert_eq!(codes(&spec(&legacy_routing), &base()), vec![]);
    }

    /// An object of the snapshot, as a dump has it.
    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("a valid object")
    }

    fn set_cidr(c: &'static str) -> impl Fn(&mut MigrationSpec) {
        move |s| s.target.pod_cidrs = vec![c.parse().unwrap()]
    }

    #[rstest]
    #[case::cluster_autoscaler(FindingCode::NodeAutoscalingActive, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| { let mut p = app_pod("cluster-autoscaler-1", "n1"); p.namespace = "kube-system".into(); p.labels = [("app.kubernetes.io/name".to_owned(), "cluster-autoscaler".to_owned())].into(); s.pods.push(p); })]
    #[case::karpenter_nodes(FindingCode::NodeAutoscalingActive, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| { s.nodes[0].labels.insert("karpenter.sh/nodepool".into(), "default".into()); })]
    #[case::eks_node_groups(FindingCode::NodeAutoscalingActive, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| { s.nodes[1].labels.insert("eks.amazonaws.com/nodegroup".into(), "ng-1".into()); })]
    #[case::cluster_api(FindingCode::NodeAutoscalingActive, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| { s.nodes[2].annotations.insert("cluster.x-k8s.io/machine".into(), "md-0-abc".into()); })]
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
    #[case::k3s(FindingCode::DistributionReappliesCni, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[0].kubelet_version = Some("v1.31.1+k3s1".into()))]
    #[case::rke2(FindingCode::DistributionReappliesCni, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[1].kubelet_version = Some("v1.31.1+rke2r1".into()))]
    #[case::talos(FindingCode::DistributionReappliesCni, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[0].os_image = Some("Talos (v1.9.2)".into()))]
    #[case::kubespray(FindingCode::DistributionReappliesCni, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.daemonsets.push(object(serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "nodelocaldns", "namespace": "kube-system"}}))))]
    #[case::aks(FindingCode::ManagedPlatform, Severity::Warning, &no_edit, &|s: &mut ClusterSnapshot| s.nodes[0].provider_id = Some("azure:///subscriptions/x".into()))]
    #[case::old_cni_leftovers(FindingCode::OldCniLeftovers, Severity::Warning, &|s: &mut MigrationSpec| s.finalize.clean_old_cni = false, &no_snap)]
    #[case::host_routing_stays_legacy(FindingCode::HostRoutingStaysLegacy, Severity::Warning, &no_edit, &no_snap)]
    #[case::netkit(FindingCode::NetkitDuringMigration, Severity::Error, &no_edit, &|s: &mut ClusterSnapshot| s.configmaps.push(object(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"}, "data": {"datapath-mode": "netkit"}}))))]
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
    #[case::pdb_of_a_workload_between_pods(FindingCode::PdbBlocksDrain, &no_edit, &one_of_two_statefulset_pods)]
    #[case::pdb_expecting_more_pods(FindingCode::PdbBlocksDrain, &no_edit, &|s: &mut ClusterSnapshot| { s.pdbs = vec![PdbInfo { expected_pods: Some(4), ..pdb(None, Some(IntOrString::Int(3))) }]; })]
    #[case::daemonset_pods_are_not_unreplicated(FindingCode::UnreplicatedPods, &no_edit, &|s: &mut ClusterSnapshot| s.pods[0].owner = Some(OwnerRef { kind: "DaemonSet".into(), name: "d".into(), uid: "d".into() }))]
    #[case::finished_pods_do_not_count(FindingCode::LocalStoragePods, &no_edit, &|s: &mut ClusterSnapshot| { s.pods[0].empty_dir = true; s.pods[0].phase = PodPhase::Succeeded; })]
    #[case::mirror_pods_do_not_count(FindingCode::UnreplicatedPods, &no_edit, &|s: &mut ClusterSnapshot| { s.pods[0].owner = None; s.pods[0].mirror = true; })]
    #[case::old_cni_cleaned_by_default(FindingCode::OldCniLeftovers, &no_edit, &no_snap)]
    #[case::legacy_routing_kept_by_the_spec(FindingCode::HostRoutingStaysLegacy, &legacy_routing, &no_snap)]
    #[case::veth_datapath(FindingCode::NetkitDuringMigration, &no_edit, &|s: &mut ClusterSnapshot| s.configmaps.push(object(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"}, "data": {"datapath-mode": "veth"}}))))]
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
        assert_eq!(codes(&spec(&legacy_routing), &snap), vec![]);
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
            codes(&spec(&legacy_routing), &snap),
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
