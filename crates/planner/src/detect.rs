//! Detecting the old CNI and the cluster's network facts from a [`ClusterSnapshot`].
//!
//! ```text
//! ConfigMaps, DaemonSets, Calico / Cilium CRs, Nodes, Services, static pods
//!        │
//!        ├─ Flannel: kube-flannel-cfg (kube-flannel | kube-system), net-conf.json (keys any case)
//!        ├─ Calico: calico-node in kube-system (manifest) or calico-system (operator),
//!        │          IPPools, FelixConfiguration, Installation
//!        ├─ AWS VPC CNI: aws-node DaemonSet and its env
//!        ├─ Cilium: cilium-config (the source only when nothing else is there)
//!        ├─ service CIDR: ServiceCIDR object > kubeadm-config > apiserver flag > Service IP
//!        └─ nodes: InternalIPs, networks, pod CIDRs; IP families; managed platform
//!        ▼
//!   NetworkFacts (deterministic; detection never fails: what it cannot tell is Unknown, with a
//!   note in `evidence`)
//! ```
//!
//! ```text
//! detect.rs   detect(): the source CNI (first found wins), then what every plan needs
//!  ├─ flannel   net-conf.json (parse_net_conf), Flannel and Canal
//!  ├─ calico    pools, Felix, encapsulation, autodetection, BGP, what removal deletes
//!  ├─ aws       the VPC CNI (aws-node)
//!  ├─ cilium    an installed Cilium (the source only when nothing else is there)
//!  ├─ service   the service CIDR
//!  ├─ nodes     node networks, IP families, managed platform
//!  ├─ eks       OS families, node groups and taints, webhooks (EKS only)
//!  └─ common    ConfigMap / DaemonSet readers
//! ```

mod aws;
mod calico;
mod cilium;
mod common;
mod eks;
mod flannel;
mod nodes;
mod service;

pub use flannel::{NetConfError, flannel_default_port, parse_net_conf};

pub use crate::names::AGENT_NOT_READY_TAINT;
use crate::{
    facts::{CniKind, NetworkFacts, Platform},
    snapshot::ClusterSnapshot,
};

/// Detects everything. Never fails: what cannot be told is `Unknown`, with a note.
pub fn detect(snapshot: &ClusterSnapshot) -> NetworkFacts {
    let mut source = flannel::detect_flannel(snapshot)
        .or_else(|| calico::detect_calico(snapshot))
        .or_else(|| aws::detect_aws(snapshot))
        .unwrap_or_default();
    let cilium = cilium::detect_cilium(snapshot);
    if source.cni == CniKind::Unknown {
        if let Some(c) = &cilium {
            source.cni = CniKind::Cilium;
            source.evidence.push(format!(
                "ConfigMap {}/cilium-config exists and no other CNI was found",
                c.namespace
            ));
        } else {
            source.evidence.push(
                "no Flannel (kube-flannel-cfg), Calico (calico-node), AWS VPC CNI (aws-node) or Cilium (cilium-config) objects found"
                    .to_owned(),
            );
        }
    }
    let service = service::detect_service_cidr(snapshot);
    let nodes = nodes::detect_nodes(snapshot);
    let ip_families = nodes::detect_families(snapshot, &source, &service, &nodes);
    let platform = nodes::detect_platform(snapshot);
    let eks = (source.cni == CniKind::AwsVpcCni
        || platform
            .as_ref()
            .is_some_and(|p| p.platform == Platform::Eks))
    .then(|| eks::detect_eks(snapshot));
    NetworkFacts {
        source,
        cilium,
        service,
        nodes,
        ip_families,
        platform,
        eks,
        node_config_versions: snapshot.node_config_versions.clone(),
    }
}

#[cfg(test)]
mod tests {
    use ipnet::IpNet;
    use rstest::rstest;

    use super::*;
    use crate::{
        dump::load_str,
        facts::ServiceCidrSource,
        snapshot::{ContainerInfo, NodeAddress, NodeInfo, PodInfo, ServiceInfo},
    };

    #[rstest]
    #[case::doc_style(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#,
        "vxlan",
        Some(8472),
        None
    )]
    #[case::lowercase_keys(
        r#"{"network": "10.244.0.0/16", "backend": {"type": "VXLAN", "port": 4790, "vni": 7}}"#,
        "vxlan",
        Some(4790),
        Some(7)
    )]
    #[case::shouting_keys(
        r#"{"NETWORK": "10.244.0.0/16", "BACKEND": {"TYPE": "udp"}}"#,
        "udp",
        Some(8285),
        None
    )]
    #[case::wireguard(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#,
        "wireguard",
        Some(51820),
        None
    )]
    #[case::wireguard_port(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "ListenPort": 51999}}"#,
        "wireguard",
        Some(51999),
        None
    )]
    #[case::host_gw(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}"#,
        "host-gw",
        None,
        None
    )]
    #[case::ipip(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}"#,
        "ipip",
        None,
        None
    )]
    #[case::missing_backend_means_vxlan(
        r#"{"Network": "10.244.0.0/16"}"#,
        "vxlan",
        Some(8472),
        None
    )]
    fn net_conf_backends_and_default_ports(
        #[case] text: &str,
        #[case] backend: &str,
        #[case] port: Option<u16>,
        #[case] vni: Option<u32>,
    ) {
        let conf = parse_net_conf(text).unwrap();
        assert_eq!(conf.backend, backend);
        assert_eq!(conf.network, Some("10.244.0.0/16".parse().unwrap()));
        assert_eq!(
            conf.port.or_else(|| flannel_default_port(&conf.backend)),
            port
        );
        assert_eq!(conf.vni, vni);
    }

    #[rstest]
    #[case::not_json("{", "not valid JSON")]
    #[case::array("[]", "must be a JSON object")]
    #[case::bad_cidr(r#"{"Network": "10.244.0.0/33"}"#, "`Network`")]
    #[case::bad_type(r#"{"Network": 5}"#, "a CIDR string")]
    #[case::bad_port(r#"{"Backend": {"Type": "vxlan", "Port": 70000}}"#, "`Port`")]
    #[case::bad_backend(r#"{"Backend": "vxlan"}"#, "`Backend`")]
    fn net_conf_errors_name_the_key(#[case] text: &str, #[case] needle: &str) {
        let err = parse_net_conf(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }

    #[test]
    fn ipv6_flannel_counts_as_dual_stack() {
        let conf = parse_net_conf(r#"{"Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56", "EnableIPv6": true}"#).unwrap();
        assert!(conf.enable_ipv6 && conf.ipv6_network.is_some());
    }

    fn flannel_snapshot(net_conf: &str) -> ClusterSnapshot {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"}, "data": {"net-conf.json": net_conf}});
        load_str(&cm.to_string(), "t").unwrap()
    }

    #[test]
    fn broken_net_conf_is_a_note_not_a_failure() {
        let facts = detect(&flannel_snapshot("{ nope"));
        assert_eq!(facts.source.cni, CniKind::Flannel);
        assert!(
            facts
                .source
                .evidence
                .iter()
                .any(|e| e.contains("not valid JSON")),
            "{:?}",
            facts.source.evidence
        );
    }

    #[test]
    fn cilium_alongside_flannel_keeps_flannel_as_the_source() {
        let mut snap = flannel_snapshot(r#"{"Network": "10.244.0.0/16"}"#);
        let cilium = load_str(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"}, "data": {"custom-cni-conf": "true"}}"#, "t").unwrap();
        snap.configmaps.extend(cilium.configmaps.clone());
        let facts = detect(&snap);
        assert_eq!(facts.source.cni, CniKind::Flannel);
        assert_eq!(
            facts.cilium.as_ref().unwrap().config["custom-cni-conf"],
            "true"
        );
        assert_eq!(detect(&cilium).source.cni, CniKind::Cilium);
        assert_eq!(
            detect(&ClusterSnapshot::default()).source.cni,
            CniKind::Unknown
        );
    }

    fn apiserver(args: &[&str]) -> PodInfo {
        PodInfo {
            namespace: "kube-system".into(),
            name: "kube-apiserver-cp".into(),
            labels: [("component".to_owned(), "kube-apiserver".to_owned())].into(),
            containers: vec![ContainerInfo {
                name: "kube-apiserver".into(),
                image: String::new(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            }],
            ..PodInfo::default()
        }
    }

    #[test]
    fn service_cidr_sources_in_order_of_reliability() {
        let svc = ServiceInfo {
            namespace: "default".into(),
            name: "kubernetes".into(),
            type_: "ClusterIP".into(),
            cluster_ips: vec!["10.96.0.1".into()],
            ..ServiceInfo::default()
        };
        let mut snap = ClusterSnapshot {
            services: vec![svc],
            ..ClusterSnapshot::default()
        };
        let s = detect(&snap).service;
        assert_eq!(
            (s.source, s.cidrs.len()),
            (ServiceCidrSource::KubernetesServiceIp, 1)
        );
        assert_eq!(s.cidrs[0].prefix_len(), 32);

        snap.pods.push(apiserver(&[
            "kube-apiserver",
            "--service-cluster-ip-range",
            "10.96.0.0/16,fd00::/108",
        ]));
        let s = detect(&snap).service;
        assert_eq!(s.source, ServiceCidrSource::ApiServerFlag);
        assert_eq!(s.cidrs.len(), 2);

        let kubeadm = load_str(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.100.0.0/16\n  podSubnet: 10.244.0.0/16\n"}}"#, "t").unwrap();
        snap.configmaps = kubeadm.configmaps;
        assert_eq!(
            detect(&snap).service.source,
            ServiceCidrSource::KubeadmConfig
        );
        assert_eq!(
            detect(&snap).service.cidrs,
            vec!["10.100.0.0/16".parse::<IpNet>().unwrap()]
        );

        let obj = load_str(r#"{"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.99.0.0/16"]}}"#, "t").unwrap();
        snap.custom = obj.custom;
        assert_eq!(
            detect(&snap).service.source,
            ServiceCidrSource::ServiceCidrObject
        );
        assert_eq!(
            detect(&ClusterSnapshot::default()).service.source,
            ServiceCidrSource::Unknown
        );
    }

    fn node(provider: &str, kubelet: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            provider_id: Some(provider.into()),
            kubelet_version: Some(kubelet.into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            addresses: vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "10.0.0.5".into(),
            }],
            ..NodeInfo::default()
        }
    }

    #[rstest]
    #[case::aks(node("azure:///subscriptions/x", "v1.30.1", &[("kubernetes.azure.com/cluster", "c")]), Some(Platform::Aks))]
    #[case::gke(node("gce://p/z/n", "v1.30.1-gke.100", &[("cloud.google.com/gke-nodepool", "p")]), Some(Platform::Gke))]
    #[case::eks(node("aws:///eu-west-1a/i-1", "v1.31.4-eks-aeac579", &[]), Some(Platform::Eks))]
    #[case::rke2(node("", "v1.30.1+rke2r1", &[]), Some(Platform::Rke2))]
    #[case::k3s(node("k3s://n", "v1.30.1+k3s1", &[]), Some(Platform::K3s))]
    #[case::kubeadm(node("", "v1.32.2", &[]), None)]
    fn managed_platforms_are_recognised(#[case] n: NodeInfo, #[case] want: Option<Platform>) {
        let snap = ClusterSnapshot {
            nodes: vec![n],
            ..ClusterSnapshot::default()
        };
        assert_eq!(detect(&snap).platform.map(|p| p.platform), want);
    }

    #[test]
    fn node_networks_use_calico_prefixes_when_known() {
        let mut n = node("", "v1.32.2", &[]);
        n.annotations
            .insert("projectcalico.org/IPv4Address".into(), "10.0.0.5/24".into());
        let snap = ClusterSnapshot {
            nodes: vec![
                n,
                NodeInfo {
                    name: "m".into(),
                    addresses: vec![NodeAddress {
                        type_: "InternalIP".into(),
                        address: "fd00::9".into(),
                    }],
                    ..NodeInfo::default()
                },
            ],
            ..ClusterSnapshot::default()
        };
        let facts = detect(&snap);
        assert_eq!(
            facts.nodes[0].networks,
            vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            facts.nodes[1].networks,
            vec!["fd00::9/128".parse::<IpNet>().unwrap()]
        );
        assert!(facts.ip_families.ipv4 && facts.ip_families.ipv6);
    }

    proptest::proptest! {
        #[test]
        fn net_conf_parser_never_panics(text in "\\PC{0,200}") {
            let _ = parse_net_conf(&text);
        }

        #[test]
        fn detect_never_panics_on_any_net_conf(network in "[0-9a-f:./]{0,20}", backend in "[a-zA-Z-]{0,10}", port in proptest::num::i64::ANY) {
            let text = format!(r#"{{"Network": "{network}", "Backend": {{"Type": "{backend}", "Port": {port}}}}}"#);
            let _ = detect(&flannel_snapshot(&text));
        }
    }
}
