//! What detection learned about the cluster's network: the [`NetworkFacts`].
//!
//! Filled in by [`crate::detect::detect`]; read by preflight, the values generator and the
//! plan builder. Everything here is plain data and serializes into `plan.json`.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::snapshot::ObjectRef;

/// The CNI the cluster runs now.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CniKind {
    /// Flannel (manifest, Helm, or legacy `kube-system` install).
    Flannel,
    /// Calico (manifest install in `kube-system`, or operator install in `calico-system`).
    Calico,
    /// The AWS VPC CNI (`aws-node`).
    AwsVpcCni,
    /// Cilium is already the CNI (`cilium-config` present, no other CNI found).
    Cilium,
    /// Nothing recognised.
    #[default]
    Unknown,
}

impl fmt::Display for CniKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CniKind::Flannel => "flannel",
            CniKind::Calico => "calico",
            CniKind::AwsVpcCni => "aws-vpc-cni",
            CniKind::Cilium => "cilium",
            CniKind::Unknown => "unknown",
        })
    }
}

/// How the old overlay carries pod traffic between nodes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Encapsulation {
    /// VXLAN (UDP).
    Vxlan,
    /// IP-in-IP (IP protocol 4, no UDP port).
    Ipip,
    /// WireGuard (UDP).
    Wireguard,
    /// Direct routes via the host gateway (Flannel host-gw).
    HostGw,
    /// Flannel's userspace UDP backend.
    Udp,
    /// No encapsulation: routed natively (Calico BGP, AWS VPC CNI).
    None,
    /// Could not be determined.
    #[default]
    Unknown,
}

impl fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encapsulation::Vxlan => "vxlan",
            Encapsulation::Ipip => "ipip",
            Encapsulation::Wireguard => "wireguard",
            Encapsulation::HostGw => "host-gw",
            Encapsulation::Udp => "udp",
            Encapsulation::None => "none",
            Encapsulation::Unknown => "unknown",
        })
    }
}

/// Flannel specifics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlannelFacts {
    /// Namespace of the install (`kube-flannel` or `kube-system`).
    pub namespace: String,
    /// The `net-conf.json` as parsed.
    pub net_conf: FlannelNetConf,
    /// Flannel DaemonSets found (current name, legacy per-arch names, canal).
    pub daemonsets: Vec<String>,
    /// Whether this is Canal (Calico policy + Flannel networking).
    pub canal: bool,
}

/// Flannel's `net-conf.json`, keys matched case-insensitively as Go's `encoding/json` does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlannelNetConf {
    /// `Network` (IPv4 pod network).
    pub network: Option<IpNet>,
    /// `IPv6Network`.
    pub ipv6_network: Option<IpNet>,
    /// `EnableIPv4` (default true).
    pub enable_ipv4: bool,
    /// `EnableIPv6` (default false).
    pub enable_ipv6: bool,
    /// `SubnetLen` (default 24).
    pub subnet_len: Option<u8>,
    /// `Backend.Type`, lower-cased (default `vxlan`).
    pub backend: String,
    /// `Backend.Port` (vxlan, udp) or `Backend.ListenPort` (wireguard), when set.
    pub port: Option<u16>,
    /// `Backend.ListenPortV6` (wireguard), when set.
    pub port_v6: Option<u16>,
    /// `Backend.VNI` (vxlan), when set.
    pub vni: Option<u32>,
    /// `Backend.MTU`, when set.
    pub mtu: Option<u32>,
}

/// Which install method Calico uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalicoInstall {
    /// `calico.yaml` manifest: everything in `kube-system`.
    #[default]
    Manifest,
    /// Tigera operator: `Installation` `default`, components in `calico-system`.
    Operator,
}

/// One Calico IP pool (from an `IPPool` object or the `Installation`'s `calicoNetwork.ipPools`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPool {
    /// Pool name.
    pub name: String,
    /// `cidr`.
    pub cidr: IpNet,
    /// `vxlanMode` (`Never`, `Always`, `CrossSubnet`), or the Installation's encapsulation mapped.
    pub vxlan_mode: String,
    /// `ipipMode` (`Never`, `Always`, `CrossSubnet`).
    pub ipip_mode: String,
    /// `disabled`.
    pub disabled: bool,
    /// `blockSize`.
    pub block_size: Option<u8>,
    /// Where it was read: `IPPool` object or `Installation`.
    pub source: ObjectRef,
}

/// How calico-node picks the node's address (`nodeAddressAutodetectionV4` or the
/// `IP_AUTODETECTION_METHOD` env of a manifest install).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoAutodetect {
    /// The method as configured, e.g. `firstFound`, `kubernetes: NodeInternalIP`,
    /// `first-found`, `interface=eth0`, `can-reach=8.8.8.8`.
    pub method: String,
    /// Whether the method can pick up Cilium's `cilium_host` interface (first-found).
    pub first_found: bool,
    /// Where it was read.
    pub source: Option<ObjectRef>,
}

/// Calico specifics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoFacts {
    /// Manifest or operator.
    pub install: CalicoInstall,
    /// Namespace of calico-node (`kube-system` or `calico-system`).
    pub namespace: String,
    /// IP pools, enabled and disabled.
    pub pools: Vec<CalicoPool>,
    /// FelixConfiguration `vxlanPort` (default 4789).
    pub vxlan_port: u16,
    /// FelixConfiguration `vxlanVNI` (default 4096).
    pub vxlan_vni: u32,
    /// FelixConfiguration `wireguardListeningPort`, when WireGuard is enabled.
    pub wireguard_port: Option<u16>,
    /// FelixConfiguration `bpfEnabled`.
    pub bpf_enabled: bool,
    /// Node address autodetection.
    pub autodetect: CalicoAutodetect,
    /// Whether BGP is in use (`bgp: Enabled`, or `calico_backend: bird`).
    pub bgp: bool,
}

/// AWS VPC CNI specifics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCniFacts {
    /// Env of the `aws-node` container, as configured in the DaemonSet (literal values only).
    pub env: BTreeMap<String, String>,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT` is `true`.
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS`, parsed.
    pub exclude_snat_cidrs: Vec<IpNet>,
    /// `ENABLE_IPv6` is `true`.
    pub ipv6: bool,
    /// The aws-node DaemonSet's node selector (used by the EKS profiles).
    pub node_selector: BTreeMap<String, String>,
}

/// The old CNI and its overlay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceCni {
    /// Which CNI.
    pub cni: CniKind,
    /// The old pod network's CIDRs: Flannel's `Network` (and `IPv6Network`), Calico's enabled
    /// IP pools, the AWS CNI's pod ranges when known.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// The encapsulation the old overlay uses.
    pub encapsulation: Encapsulation,
    /// The old overlay's UDP port, when it has one.
    pub port: Option<u16>,
    /// VXLAN VNI, when known.
    pub vni: Option<u32>,
    /// MTU, when configured.
    pub mtu: Option<u32>,
    /// The objects the detection is based on, and that removing the old CNI deletes.
    pub objects: Vec<ObjectRef>,
    /// Human-readable notes on how the detection was made.
    pub evidence: Vec<String>,
    /// Flannel details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel: Option<FlannelFacts>,
    /// Calico details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico: Option<CalicoFacts>,
    /// AWS VPC CNI details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsCniFacts>,
}

/// An existing Cilium install.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExistingCilium {
    /// Namespace of `cilium-config`.
    pub namespace: String,
    /// `cilium-config` data.
    pub config: BTreeMap<String, String>,
    /// Whether the agent DaemonSet `cilium` exists.
    pub agent_daemonset: bool,
}

/// How the service CIDR was learned, most reliable first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceCidrSource {
    /// The `networking.k8s.io` `ServiceCIDR` object named `kubernetes`.
    ServiceCidrObject,
    /// `kube-system/kubeadm-config` `ClusterConfiguration.networking.serviceSubnet`.
    KubeadmConfig,
    /// The kube-apiserver static pod's `--service-cluster-ip-range`.
    ApiServerFlag,
    /// Only the `default/kubernetes` Service ClusterIP is known: an address, not a prefix.
    KubernetesServiceIp,
    /// Nothing found.
    #[default]
    Unknown,
}

impl fmt::Display for ServiceCidrSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceCidrSource::ServiceCidrObject => "the ServiceCIDR object",
            ServiceCidrSource::KubeadmConfig => "kubeadm-config",
            ServiceCidrSource::ApiServerFlag => "kube-apiserver --service-cluster-ip-range",
            ServiceCidrSource::KubernetesServiceIp => "the kubernetes Service IP only",
            ServiceCidrSource::Unknown => "nowhere: unknown",
        })
    }
}

/// The service network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCidr {
    /// The CIDRs (one per family), or host routes (/32, /128) of the `kubernetes` Service IP
    /// when that is all that is known.
    pub cidrs: Vec<IpNet>,
    /// How they were learned.
    pub source: ServiceCidrSource,
    /// The `default/kubernetes` Service ClusterIP, when present.
    pub kubernetes_service_ip: Option<IpAddr>,
}

/// IP families in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpFamilies {
    /// IPv4 is in use.
    pub ipv4: bool,
    /// IPv6 is in use.
    pub ipv6: bool,
}

/// A node's network identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetwork {
    /// Node name.
    pub node: String,
    /// InternalIP addresses.
    pub internal_ips: Vec<IpAddr>,
    /// Networks the node sits on, when a prefix length is known (e.g. from Calico's
    /// `projectcalico.org/IPv4Address` annotation); otherwise host routes of its addresses.
    pub networks: Vec<IpNet>,
    /// `spec.podCIDRs`.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
}

/// A managed platform or distribution that changes how (or whether) the migration can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Amazon EKS.
    Eks,
    /// Azure AKS.
    Aks,
    /// Google GKE.
    Gke,
    /// Rancher RKE2.
    Rke2,
    /// k3s.
    K3s,
    /// Talos Linux.
    Talos,
    /// A cluster deployed by kubespray.
    Kubespray,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::Eks => "EKS",
            Platform::Aks => "AKS",
            Platform::Gke => "GKE",
            Platform::Rke2 => "RKE2",
            Platform::K3s => "k3s",
            Platform::Talos => "Talos",
            Platform::Kubespray => "kubespray",
        })
    }
}

/// The platform and how it was recognised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformFacts {
    /// Which platform.
    pub platform: Platform,
    /// What gave it away (a provider ID, a label, a kubelet version suffix).
    pub evidence: String,
}

/// A node's OS family, as far as its interface naming goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsFamily {
    /// Amazon Linux 2: interfaces `eth0`, `eth1`, ...
    AmazonLinux2,
    /// Amazon Linux 2023: predictable names, `ens5`, `ens6`, ...
    AmazonLinux2023,
    /// Bottlerocket: `eth0`, ...
    Bottlerocket,
    /// Ubuntu EKS images: `ens5`, ...
    Ubuntu,
    /// Anything else (the pattern cannot be chosen for it).
    Other,
}

impl OsFamily {
    /// From `status.nodeInfo.osImage`.
    pub fn from_os_image(image: &str) -> Self {
        let i = image.trim();
        if i.starts_with("Amazon Linux 2023") {
            OsFamily::AmazonLinux2023
        } else if i.starts_with("Amazon Linux 2") {
            OsFamily::AmazonLinux2
        } else if i.starts_with("Bottlerocket") {
            OsFamily::Bottlerocket
        } else if i.starts_with("Ubuntu") {
            OsFamily::Ubuntu
        } else {
            OsFamily::Other
        }
    }

    /// The `egressMasqueradeInterfaces` pattern that fits the family's interface names.
    pub fn interface_pattern(self) -> Option<&'static str> {
        match self {
            OsFamily::AmazonLinux2 | OsFamily::Bottlerocket => Some("eth+"),
            OsFamily::AmazonLinux2023 | OsFamily::Ubuntu => Some("ens+"),
            OsFamily::Other => None,
        }
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OsFamily::AmazonLinux2 => "Amazon Linux 2",
            OsFamily::AmazonLinux2023 => "Amazon Linux 2023",
            OsFamily::Bottlerocket => "Bottlerocket",
            OsFamily::Ubuntu => "Ubuntu",
            OsFamily::Other => "another OS",
        })
    }
}

/// One node group (EKS managed node group, eksctl node group, Karpenter node pool).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroup {
    /// The group's name, and the label it was read from (`label=value`); `(no node group
    /// label)` for nodes without one.
    pub name: String,
    /// Its nodes.
    pub nodes: Vec<String>,
    /// Those of its nodes that carry `node.cilium.io/agent-not-ready=true:NoExecute` now.
    pub tainted: Vec<String>,
}

/// An admission webhook served by a Service in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookService {
    /// The `ValidatingWebhookConfiguration` or `MutatingWebhookConfiguration`.
    pub configuration: ObjectRef,
    /// The webhook's name inside it.
    pub webhook: String,
    /// The Service it calls (`namespace/name`).
    pub service: String,
    /// Whether every pod behind the Service runs on the host network (reachable from the EKS
    /// control plane whatever the pod network is).
    pub host_network: bool,
    /// `failurePolicy` (`Fail` blocks API requests while the webhook is unreachable).
    pub failure_policy: String,
}

/// What the EKS profiles need to know.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EksFacts {
    /// Nodes per OS family.
    pub os_families: BTreeMap<OsFamily, Vec<String>>,
    /// The `egressMasqueradeInterfaces` pattern that fits every node, when one does.
    pub interface_pattern: Option<String>,
    /// Node groups, by name.
    pub node_groups: Vec<NodeGroup>,
    /// Admission webhooks backed by in-cluster Services.
    pub webhooks: Vec<WebhookService>,
}

/// Everything detection learned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFacts {
    /// The old CNI.
    pub source: SourceCni,
    /// An existing Cilium install (before or during a migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cilium: Option<ExistingCilium>,
    /// The service network.
    pub service: ServiceCidr,
    /// Per node: addresses, networks and pod CIDRs, sorted by node name.
    pub nodes: Vec<NodeNetwork>,
    /// IP families in use (from node addresses, pod IPs, the service CIDR and the old CNI).
    pub ip_families: IpFamilies,
    /// A managed platform or distribution, when recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformFacts>,
    /// EKS specifics, on EKS or with the AWS VPC CNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksFacts>,
    /// The versions of `ciliumnodeconfigs.cilium.io` the cluster serves, when known (see
    /// [`crate::values::node_config_api`] for the one the plan uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_config_versions: Option<Vec<String>>,
}
