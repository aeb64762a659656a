//! The wire shapes the projections decode from: only the fields the tool reads, every one
//! optional and `null`-tolerant, everything else skipped by serde without allocating.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use super::{
    ContainerInfo, IntOrString, LabelSelector, NetworkPolicyInfo, NodeAddress, NodeInfo, OwnerRef,
    PdbInfo, PodInfo, PodPhase, ServiceInfo, Taint, WorkloadInfo,
};

/// Deserializes `null` (or an absent field, with `#[serde(default)]`) as the default value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawOwner {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    controller: Option<bool>,
}

/// Metadata of budgets, workloads, Services and NetworkPolicies: their labels are not read
/// (at 150,000 pods, the labels of 46,000 ReplicaSets and Deployments alone held 80 MB).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMeta {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    uid: String,
    #[serde(default, deserialize_with = "null_default")]
    owner_references: Vec<RawOwner>,
}

impl RawMeta {
    fn controller(&mut self) -> Option<OwnerRef> {
        let i = self
            .owner_references
            .iter()
            .position(|o| o.controller == Some(true))?;
        let o = self.owner_references.swap_remove(i);
        Some(OwnerRef {
            kind: o.kind,
            name: o.name,
            uid: o.uid,
        })
    }
}

/// Node metadata keeps every annotation (nodes are few).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawNodeMeta {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    uid: String,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCondition {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    status: String,
}

/// A string borrowed from the input where it can be (no allocation), `""` for `null`.
#[derive(Default)]
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Text<'de>, E> {
                Ok(Text::default())
            }
            fn visit_none<E>(self) -> Result<Text<'de>, E> {
                Ok(Text::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a pod's `Ready` condition is `True`, read without keeping the conditions (a pod
/// has five; decoding them as strings was a tenth of the allocations of a 150,000-pod dump).
#[derive(Default)]
struct ReadyFlag(bool);

impl<'de> Deserialize<'de> for ReadyFlag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Condition<'a> {
            #[serde(default, rename = "type", borrow)]
            type_: Text<'a>,
            #[serde(default, borrow)]
            status: Text<'a>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ReadyFlag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of conditions")
            }
            fn visit_unit<E>(self) -> Result<ReadyFlag, E> {
                Ok(ReadyFlag(false))
            }
            fn visit_none<E>(self) -> Result<ReadyFlag, E> {
                Ok(ReadyFlag(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ReadyFlag, A::Error> {
                let mut ready = false;
                while let Some(c) = seq.next_element::<Condition<'de>>()? {
                    ready |= c.type_.0 == "Ready" && c.status.0 == "True";
                }
                Ok(ReadyFlag(ready))
            }
        }
        d.deserialize_any(V)
    }
}

fn is_true(conditions: &[RawCondition], t: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == t && c.status == "True")
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNodeSpec {
    #[serde(default)]
    unschedulable: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    taints: Vec<Taint>,
    #[serde(default, rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(default, rename = "podCIDRs", deserialize_with = "null_default")]
    pod_cidrs: Vec<String>,
    #[serde(default, rename = "providerID")]
    provider_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNodeSystemInfo {
    #[serde(default)]
    os_image: Option<String>,
    #[serde(default)]
    kubelet_version: Option<String>,
    #[serde(default)]
    container_runtime_version: Option<String>,
    #[serde(default, rename = "bootID")]
    boot_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNodeStatus {
    #[serde(default, deserialize_with = "null_default")]
    addresses: Vec<NodeAddress>,
    #[serde(default, deserialize_with = "null_default")]
    conditions: Vec<RawCondition>,
    #[serde(default, deserialize_with = "null_default")]
    node_info: RawNodeSystemInfo,
}

/// A Node on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawNode {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawNodeMeta,
    #[serde(default, deserialize_with = "null_default")]
    spec: RawNodeSpec,
    #[serde(default, deserialize_with = "null_default")]
    status: RawNodeStatus,
}

impl From<RawNode> for NodeInfo {
    fn from(r: RawNode) -> Self {
        let RawNode {
            metadata: m,
            spec,
            status,
        } = r;
        let mut pod_cidrs = spec.pod_cidrs;
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(spec.pod_cidr);
        }
        NodeInfo {
            name: m.name,
            uid: m.uid,
            created: m.creation_timestamp,
            labels: m.labels,
            annotations: m.annotations,
            unschedulable: spec.unschedulable.unwrap_or(false),
            taints: spec.taints,
            pod_cidrs,
            provider_id: spec.provider_id,
            ready: is_true(&status.conditions, "Ready"),
            addresses: status.addresses,
            os_image: status.node_info.os_image,
            kubelet_version: status.node_info.kubelet_version,
            container_runtime: status.node_info.container_runtime_version,
            boot_id: status.node_info.boot_id,
        }
    }
}

/// Whether annotations contain `kubernetes.io/config.mirror`, without keeping the map.
#[derive(Default)]
struct MirrorFlag(bool);

impl<'de> Deserialize<'de> for MirrorFlag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MirrorFlag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> Result<MirrorFlag, E> {
                Ok(MirrorFlag(false))
            }
            fn visit_none<E>(self) -> Result<MirrorFlag, E> {
                Ok(MirrorFlag(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MirrorFlag, A::Error> {
                let mut found = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    found |= key == "kubernetes.io/config.mirror";
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(MirrorFlag(found))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodMetaFull {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    uid: String,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: MirrorFlag,
    #[serde(default, deserialize_with = "null_default")]
    owner_references: Vec<RawOwner>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolume {
    #[serde(default)]
    empty_dir: Option<IgnoredAny>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    image: String,
    #[serde(default, deserialize_with = "null_default")]
    command: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    args: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    host_network: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    volumes: Vec<RawVolume>,
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    priority_class_name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    containers: Vec<RawContainer>,
}

/// [`RawPodSpec`] without the containers, skipped unread: only kube-system pods keep theirs,
/// and kubectl writes `metadata` (the namespace) before `spec`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpecNoContainers {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    host_network: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    volumes: Vec<RawVolume>,
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    priority_class_name: Option<String>,
}

impl From<RawPodSpecNoContainers> for RawPodSpec {
    fn from(s: RawPodSpecNoContainers) -> Self {
        Self {
            node_name: s.node_name,
            host_network: s.host_network,
            volumes: s.volumes,
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            priority_class_name: s.priority_class_name,
            containers: Vec::new(),
        }
    }
}

#[derive(Default, Deserialize)]
struct RawPodIp {
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Default, Deserialize)]
struct RawWaiting {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct RawContainerState {
    #[serde(default)]
    waiting: Option<RawWaiting>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainerStatus {
    #[serde(default)]
    restart_count: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    state: RawContainerState,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodStatus {
    #[serde(default)]
    phase: Option<PodPhase>,
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", deserialize_with = "null_default")]
    pod_ips: Vec<RawPodIp>,
    #[serde(default)]
    conditions: ReadyFlag,
    #[serde(default, deserialize_with = "null_default")]
    container_statuses: Vec<RawContainerStatus>,
}

/// A Pod on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawPod {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawPodMetaFull,
    #[serde(default, deserialize_with = "null_default")]
    spec: RawPodSpec,
    #[serde(default, deserialize_with = "null_default")]
    status: RawPodStatus,
}

impl From<RawPod> for PodInfo {
    fn from(r: RawPod) -> Self {
        let RawPod {
            metadata: mut m,
            spec,
            status,
        } = r;
        let owner = m
            .owner_references
            .iter()
            .position(|o| o.controller == Some(true))
            .map(|i| m.owner_references.swap_remove(i))
            .map(|o| OwnerRef {
                kind: o.kind,
                name: o.name,
                uid: o.uid,
            });
        let mut pod_ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .filter_map(|p| p.ip.as_deref()?.parse().ok())
            .collect();
        if pod_ips.is_empty()
            && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
        {
            pod_ips.push(ip);
        }
        let namespace = m.namespace.unwrap_or_default();
        // Only static control-plane pods' flags are ever read (kube-apiserver's service range):
        // other pods' containers are dropped here, a good share of a projection's memory at
        // 150,000 pods.
        let keep_containers = namespace == "kube-system";
        PodInfo {
            namespace,
            name: m.name,
            uid: m.uid,
            created: m.creation_timestamp,
            terminating: m.deletion_timestamp.is_some(),
            labels: m.labels,
            owner,
            mirror: m.annotations.0,
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            host_network: spec.host_network.unwrap_or(false),
            empty_dir: spec.volumes.iter().any(|v| v.empty_dir.is_some()),
            grace_period_seconds: spec.termination_grace_period_seconds,
            priority_class: spec.priority_class_name,
            // Not a filter over the source: an in-place collect would keep the decoded
            // containers' whole allocation alive behind an empty Vec.
            containers: if !keep_containers {
                Vec::new()
            } else {
                spec.containers
                    .into_iter()
                    .map(|c| {
                        let mut args = c.command;
                        args.extend(c.args);
                        ContainerInfo {
                            name: c.name,
                            image: c.image,
                            args,
                        }
                    })
                    .collect()
            },
            phase: status.phase.unwrap_or_default(),
            pod_ips,
            ready: status.conditions.0,
            waiting_reason: status
                .container_statuses
                .iter()
                .find_map(|c| c.state.waiting.as_ref().and_then(|w| w.reason.clone())),
            restarts: status
                .container_statuses
                .iter()
                .filter_map(|c| c.restart_count)
                .sum(),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPdbSpec {
    #[serde(default)]
    selector: Option<LabelSelector>,
    #[serde(default)]
    min_available: Option<IntOrString>,
    #[serde(default)]
    max_unavailable: Option<IntOrString>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPdbStatus {
    #[serde(default)]
    current_healthy: Option<i64>,
    #[serde(default)]
    desired_healthy: Option<i64>,
    #[serde(default)]
    disruptions_allowed: Option<i64>,
    #[serde(default)]
    expected_pods: Option<i64>,
}

/// A PodDisruptionBudget on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawPdb {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawMeta,
    #[serde(default, deserialize_with = "null_default")]
    spec: RawPdbSpec,
    #[serde(default, deserialize_with = "null_default")]
    status: RawPdbStatus,
}

impl From<RawPdb> for PdbInfo {
    fn from(r: RawPdb) -> Self {
        PdbInfo {
            namespace: r.metadata.namespace.unwrap_or_default(),
            name: r.metadata.name,
            selector: r.spec.selector,
            min_available: r.spec.min_available,
            max_unavailable: r.spec.max_unavailable,
            current_healthy: r.status.current_healthy,
            desired_healthy: r.status.desired_healthy,
            disruptions_allowed: r.status.disruptions_allowed,
            expected_pods: r.status.expected_pods,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWorkloadSpec {
    #[serde(default)]
    replicas: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWorkloadStatus {
    #[serde(default)]
    ready_replicas: Option<i64>,
}

/// A Deployment, ReplicaSet or StatefulSet on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawWorkload {
    #[serde(default, deserialize_with = "null_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawMeta,
    #[serde(default, deserialize_with = "null_default")]
    spec: RawWorkloadSpec,
    #[serde(default, deserialize_with = "null_default")]
    status: RawWorkloadStatus,
}

impl From<RawWorkload> for WorkloadInfo {
    fn from(r: RawWorkload) -> Self {
        let RawWorkload {
            kind,
            metadata: mut m,
            spec,
            status,
        } = r;
        WorkloadInfo {
            kind,
            owner: m.controller(),
            namespace: m.namespace.unwrap_or_default(),
            name: m.name,
            uid: m.uid,
            replicas: spec.replicas,
            ready_replicas: status.ready_replicas,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServiceSpec {
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs", deserialize_with = "null_default")]
    cluster_ips: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    selector: BTreeMap<String, String>,
}

/// A Service on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawService {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawMeta,
    #[serde(default, deserialize_with = "null_default")]
    spec: RawServiceSpec,
}

impl From<RawService> for ServiceInfo {
    fn from(r: RawService) -> Self {
        let mut ips = r.spec.cluster_ips;
        if ips.is_empty() {
            ips.extend(r.spec.cluster_ip);
        }
        ips.retain(|ip| !ip.is_empty() && ip != "None");
        ServiceInfo {
            namespace: r.metadata.namespace.unwrap_or_default(),
            name: r.metadata.name,
            type_: r.spec.type_.unwrap_or_else(|| "ClusterIP".to_owned()),
            cluster_ips: ips,
            selector: r.spec.selector,
        }
    }
}

/// A NetworkPolicy on the wire.
#[derive(Default, Deserialize)]
pub(crate) struct RawNetworkPolicy {
    #[serde(default, deserialize_with = "null_default")]
    metadata: RawMeta,
}

impl From<RawNetworkPolicy> for NetworkPolicyInfo {
    fn from(r: RawNetworkPolicy) -> Self {
        NetworkPolicyInfo {
            namespace: r.metadata.namespace.unwrap_or_default(),
            name: r.metadata.name,
        }
    }
}

/// A projected object being decoded field by field (the dump loader's streaming path): each
/// top-level field is decoded into its wire shape as it arrives, the rest skipped.
pub(crate) enum Parts {
    Node(RawNode),
    Pod(RawPod),
    Pdb(RawPdb),
    Workload(RawWorkload),
    Service(RawService),
    NetworkPolicy(RawNetworkPolicy),
}

impl Parts {
    /// Parts for a kind, if it is a projected kind (`group` decides for NetworkPolicy).
    pub(crate) fn for_kind(kind: &str, group: &str) -> Option<Parts> {
        Some(match kind {
            "Node" => Parts::Node(RawNode::default()),
            "Pod" => Parts::Pod(RawPod::default()),
            "PodDisruptionBudget" => Parts::Pdb(RawPdb::default()),
            "Deployment" | "ReplicaSet" | "StatefulSet" => Parts::Workload(RawWorkload {
                kind: kind.to_owned(),
                ..RawWorkload::default()
            }),
            "Service" => Parts::Service(RawService::default()),
            "NetworkPolicy" if group == "networking.k8s.io" => {
                Parts::NetworkPolicy(RawNetworkPolicy::default())
            }
            _ => return None,
        })
    }

    /// Decodes one top-level field; fields the projection does not read are skipped.
    pub(crate) fn set<'de, D: Deserializer<'de>>(
        &mut self,
        key: &str,
        d: D,
    ) -> Result<(), D::Error> {
        match (self, key) {
            (Parts::Node(n), "metadata") => n.metadata = null_default(d)?,
            (Parts::Node(n), "spec") => n.spec = null_default(d)?,
            (Parts::Node(n), "status") => n.status = null_default(d)?,
            (Parts::Pod(p), "metadata") => p.metadata = null_default(d)?,
            (Parts::Pod(p), "spec")
                if p.metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| ns != "kube-system") =>
            {
                p.spec = null_default::<_, RawPodSpecNoContainers>(d)?.into();
            }
            (Parts::Pod(p), "spec") => p.spec = null_default(d)?,
            (Parts::Pod(p), "status") => p.status = null_default(d)?,
            (Parts::Pdb(p), "metadata") => p.metadata = null_default(d)?,
            (Parts::Pdb(p), "spec") => p.spec = null_default(d)?,
            (Parts::Pdb(p), "status") => p.status = null_default(d)?,
            (Parts::Workload(w), "metadata") => w.metadata = null_default(d)?,
            (Parts::Workload(w), "spec") => w.spec = null_default(d)?,
            (Parts::Workload(w), "status") => w.status = null_default(d)?,
            (Parts::Service(s), "metadata") => s.metadata = null_default(d)?,
            (Parts::Service(s), "spec") => s.spec = null_default(d)?,
            (Parts::NetworkPolicy(p), "metadata") => p.metadata = null_default(d)?,
            _ => {
                IgnoredAny::deserialize(d)?;
            }
        }
        Ok(())
    }

    /// `namespace/name` (or `name`), for error messages, once metadata has been read.
    pub(crate) fn name(&self) -> String {
        let (ns, name) = match self {
            Parts::Node(n) => (None, n.metadata.name.as_str()),
            Parts::Pod(p) => (p.metadata.namespace.as_deref(), p.metadata.name.as_str()),
            Parts::Pdb(p) => (p.metadata.namespace.as_deref(), p.metadata.name.as_str()),
            Parts::Workload(w) => (w.metadata.namespace.as_deref(), w.metadata.name.as_str()),
            Parts::Service(s) => (s.metadata.namespace.as_deref(), s.metadata.name.as_str()),
            Parts::NetworkPolicy(p) => (p.metadata.namespace.as_deref(), p.metadata.name.as_str()),
        };
        let name = if name.is_empty() { "?" } else { name };
        match ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        }
    }

    /// Adds the finished projection to the snapshot.
    pub(crate) fn push_into(self, snap: &mut super::ClusterSnapshot) {
        match self {
            Parts::Node(n) => snap.nodes.push(n.into()),
            Parts::Pod(p) => snap.pods.push(p.into()),
            Parts::Pdb(p) => snap.pdbs.push(p.into()),
            Parts::Workload(w) => snap.workloads.push(w.into()),
            Parts::Service(s) => snap.services.push(s.into()),
            Parts::NetworkPolicy(p) => snap.network_policies.push(p.into()),
        }
    }
}
