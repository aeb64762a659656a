//! The cluster as the planner sees it.
//!
//! ```text
//!  kubectl dump (JSON / YAML) ──► dump::load ──┐
//!                                              ├──► ClusterSnapshot ──► detect / preflight / plan
//!  live API, paged LISTs (cluster crate) ──────┘
//! ```
//!
//! Pods, nodes and the other objects that can number in the hundreds of thousands are decoded
//! straight into *projections*: structs of only the fields the tool needs. A full k8s-openapi
//! `Pod` costs ~60 KiB in memory; a [`PodInfo`] a few hundred bytes. Objects that are few
//! (ConfigMaps, DaemonSets, custom resources) are kept whole.
//!
//! Every projection deserializes from the ordinary Kubernetes JSON shape of its object, so the
//! dump loader and the live discovery in the `cluster` crate share one decoding path.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};

pub(crate) mod raw;
use serde::{Deserialize, Serialize};

/// A reference to one Kubernetes object, used in findings, steps and error messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Kind, e.g. `Node`, `PodDisruptionBudget`, `IPPool`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// A reference to a cluster-scoped object.
    pub fn cluster(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name` or `Kind/name`, close to kubectl's `kind/name -n namespace`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// The owner of an object that is its managing controller (`ownerReferences[].controller`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    /// Owner kind, e.g. `ReplicaSet`, `DaemonSet`, `StatefulSet`, `Node`.
    pub kind: String,
    /// Owner name.
    pub name: String,
    /// Owner UID.
    pub uid: String,
}

/// A label selector (`matchLabels` and `matchExpressions`), as used by PDBs and workloads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// `matchLabels`.
    #[serde(default, deserialize_with = "raw::null_default")]
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    #[serde(default, deserialize_with = "raw::null_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, deserialize_with = "raw::null_default")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether the selector matches the given labels, with Kubernetes semantics: an empty
    /// selector matches everything; an unknown operator matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// Whether the selector has no requirements at all (it then selects every object).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// An integer or a percentage string, as in `maxUnavailable: 1` or `maxUnavailable: "10%"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A plain count.
    Int(i64),
    /// A string, normally a percentage such as `"25%"`.
    String(String),
}

impl IntOrString {
    /// Resolves against a total with Kubernetes' rounding (`round_up` as the PDB controller does
    /// for `minAvailable`/`maxUnavailable`). `None` when the string is not a valid percentage.
    pub fn resolve(&self, total: i64, round_up: bool) -> Option<i64> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(s) => {
                if let Some(p) = s.trim().strip_suffix('%') {
                    let p: i64 = p.trim().parse().ok()?;
                    if !(0..=100).contains(&p) {
                        return None;
                    }
                    let num = p * total;
                    Some(if round_up {
                        (num + 99) / 100
                    } else {
                        num / 100
                    })
                } else {
                    s.trim().parse().ok()
                }
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// One entry of `status.addresses`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub address: String,
}

/// Projection of a Node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawNode")]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp` as sent (RFC 3339).
    pub created: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` (nodes are few, so all are kept).
    pub annotations: BTreeMap<String, String>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.podCIDRs`, or `spec.podCIDR` when the list is absent, as sent.
    pub pod_cidrs: Vec<String>,
    /// `spec.providerID`.
    pub provider_id: Option<String>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// `status.nodeInfo.osImage`.
    pub os_image: Option<String>,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion`.
    pub container_runtime: Option<String>,
    /// `status.nodeInfo.bootID`: changes when the machine reboots.
    pub boot_id: Option<String>,
}

impl NodeInfo {
    /// Whether the node carries a control-plane role label (`control-plane` or legacy `master`).
    pub fn is_control_plane(&self) -> bool {
        self.labels
            .contains_key("node-role.kubernetes.io/control-plane")
            || self.labels.contains_key("node-role.kubernetes.io/master")
    }

    /// The node's `InternalIP` addresses that parse as IPs.
    pub fn internal_ips(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect()
    }
}

/// Pod phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// `Pending`.
    Pending,
    /// `Running`.
    Running,
    /// `Succeeded`.
    Succeeded,
    /// `Failed`.
    Failed,
    /// `Unknown`, or no phase reported.
    #[default]
    #[serde(other)]
    Unknown,
}

impl PodPhase {
    /// Succeeded or Failed: such pods are always fine to delete in a drain.
    pub fn is_finished(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// One container, reduced to what detection needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// Image reference.
    #[serde(default)]
    pub image: String,
    /// `command` followed by `args` (used to read e.g. kube-apiserver flags of static pods).
    #[serde(default)]
    pub args: Vec<String>,
}

/// Projection of a Pod: what detection, preflight, drain and verification need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawPod")]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp` as sent (RFC 3339).
    pub created: Option<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The controlling owner reference, if any.
    pub owner: Option<OwnerRef>,
    /// Whether the pod is a static pod's mirror (`kubernetes.io/config.mirror` annotation).
    pub mirror: bool,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// Whether any volume is an `emptyDir` (kubectl drain calls this local storage).
    pub empty_dir: bool,
    /// `spec.terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `spec.priorityClassName`.
    pub priority_class: Option<String>,
    /// `spec.containers` (name, image, command+args), for pods in `kube-system` only (the static
    /// control-plane pods whose flags detection reads); empty for every other pod.
    pub containers: Vec<ContainerInfo>,
    /// `status.phase`.
    pub phase: PodPhase,
    /// `status.podIPs` (or `status.podIP`), parsed.
    pub pod_ips: Vec<IpAddr>,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// The first container's waiting reason, e.g. `CrashLoopBackOff`, when it is waiting.
    pub waiting_reason: Option<String>,
    /// Restarts of all containers together.
    pub restarts: i64,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A reference to this pod.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::namespaced("Pod", &self.namespace, &self.name)
    }

    /// Whether the pod is managed by a DaemonSet.
    pub fn is_daemonset_pod(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }

    /// One of cni-migrate's own short-lived pods (probe, beacon, restore): in `kube-system`
    /// with `app.kubernetes.io/managed-by=cni-migrate`. Never a workload to drain or count.
    pub fn is_cni_migrate_pod(&self) -> bool {
        self.namespace == "kube-system"
            && self
                .labels
                .get("app.kubernetes.io/managed-by")
                .is_some_and(|v| v == "cni-migrate")
    }
}

/// Projection of a PodDisruptionBudget (`policy/v1`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawPdb")]
pub struct PdbInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.selector`; `None` when absent (selects nothing in policy/v1).
    pub selector: Option<LabelSelector>,
    /// `spec.minAvailable`.
    pub min_available: Option<IntOrString>,
    /// `spec.maxUnavailable`.
    pub max_unavailable: Option<IntOrString>,
    /// `status.currentHealthy`.
    pub current_healthy: Option<i64>,
    /// `status.desiredHealthy`.
    pub desired_healthy: Option<i64>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: Option<i64>,
    /// `status.expectedPods`.
    pub expected_pods: Option<i64>,
}

impl PdbInfo {
    /// A reference to this PDB.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::namespaced("PodDisruptionBudget", &self.namespace, &self.name)
    }
}

/// Projection of a Deployment, ReplicaSet or StatefulSet. Items of a LIST carry no `kind`:
/// whoever lists them sets it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawWorkload")]
pub struct WorkloadInfo {
    /// `Deployment`, `ReplicaSet` or `StatefulSet`.
    pub kind: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The controlling owner (a ReplicaSet's Deployment).
    pub owner: Option<OwnerRef>,
    /// `spec.replicas` (Kubernetes defaults it to 1 when absent).
    pub replicas: Option<i64>,
    /// `status.readyReplicas`.
    pub ready_replicas: Option<i64>,
}

/// Projection of a Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawService")]
pub struct ServiceInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type` (`ClusterIP` when absent).
    pub type_: String,
    /// `spec.clusterIPs`, or `spec.clusterIP` when the list is absent; `None` entries dropped.
    pub cluster_ips: Vec<String>,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
}

/// Projection of a NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawNetworkPolicy")]
pub struct NetworkPolicyInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// A custom resource (or any object of a kind the planner keeps whole without a typed model).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomObject {
    /// `apiVersion`, e.g. `crd.projectcalico.org/v1`.
    pub api_version: String,
    /// `kind`, e.g. `IPPool`.
    pub kind: String,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The whole object.
    pub object: serde_json::Value,
}

impl CustomObject {
    /// The API group of `api_version` (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// A reference to this object.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// `spec` of the object, if any.
    pub fn spec(&self) -> Option<&serde_json::Value> {
        self.object.get("spec")
    }
}

/// The custom resource kinds the planner keeps, by `(group, kind)`.
///
/// Calico: `IPPool`, `FelixConfiguration` in `crd.projectcalico.org` and `projectcalico.org`;
/// Tigera operator: `Installation` in `operator.tigera.io`; Cilium: `CiliumNode`,
/// `CiliumNodeConfig`, `CiliumEndpoint` in `cilium.io`; also `ServiceCIDR` in
/// `networking.k8s.io` (the service range, when the API server serves it).
pub const KEPT_CUSTOM_KINDS: &[(&str, &str)] = &[
    ("crd.projectcalico.org", "IPPool"),
    ("crd.projectcalico.org", "FelixConfiguration"),
    ("projectcalico.org", "IPPool"),
    ("projectcalico.org", "FelixConfiguration"),
    ("operator.tigera.io", "Installation"),
    ("cilium.io", "CiliumNode"),
    ("cilium.io", "CiliumNodeConfig"),
    ("cilium.io", "CiliumEndpoint"),
    ("networking.k8s.io", "ServiceCIDR"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
];

/// Everything the planner knows about a cluster.
///
/// Built by [`crate::dump::load`] from a `kubectl get -o yaml|json` dump, or by discovery in the
/// `cluster` crate. Collections are sorted by (namespace, name) after loading so that everything
/// downstream is deterministic.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterSnapshot {
    /// Nodes.
    pub nodes: Vec<NodeInfo>,
    /// Pods.
    pub pods: Vec<PodInfo>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<PdbInfo>,
    /// Deployments, ReplicaSets and StatefulSets.
    pub workloads: Vec<WorkloadInfo>,
    /// DaemonSets, whole.
    pub daemonsets: Vec<DaemonSet>,
    /// ConfigMaps, whole.
    pub configmaps: Vec<ConfigMap>,
    /// Services.
    pub services: Vec<ServiceInfo>,
    /// NetworkPolicies (`networking.k8s.io/v1`).
    pub network_policies: Vec<NetworkPolicyInfo>,
    /// Kept custom resources (see [`KEPT_CUSTOM_KINDS`]).
    pub custom: Vec<CustomObject>,
    /// The versions of `ciliumnodeconfigs.cilium.io` the cluster serves (`v2`, `v2alpha1`),
    /// when known: from API discovery on a live cluster (empty when Cilium's CRDs are not
    /// installed), from the CustomResourceDefinition in a dump; `None` when the dump has none.
    pub node_config_versions: Option<Vec<String>>,
    /// Namespaces that exist (names only).
    pub namespaces: Vec<String>,
}

impl ClusterSnapshot {
    /// A ConfigMap by namespace and name.
    pub fn configmap(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.configmaps.iter().find(|cm| {
            cm.metadata.namespace.as_deref() == Some(namespace)
                && cm.metadata.name.as_deref() == Some(name)
        })
    }

    /// A DaemonSet by namespace and name.
    pub fn daemonset(&self, namespace: &str, name: &str) -> Option<&DaemonSet> {
        self.daemonsets.iter().find(|ds| {
            ds.metadata.namespace.as_deref() == Some(namespace)
                && ds.metadata.name.as_deref() == Some(name)
        })
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Custom objects of one group (API version without its `/version`) and kind.
    pub fn custom_of<'a>(
        &'a self,
        group: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a CustomObject> + 'a {
        self.custom
            .iter()
            .filter(move |o| o.kind == kind && o.group() == group)
    }

    /// Sorts every collection by (namespace, name) so that iteration order never depends on the
    /// order of the input.
    pub fn normalize(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.pdbs
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.workloads.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
        });
        self.daemonsets.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        self.configmaps.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        self.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.network_policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.custom.sort_by(|a, b| {
            (&a.api_version, &a.kind, &a.namespace, &a.name).cmp(&(
                &b.api_version,
                &b.kind,
                &b.namespace,
                &b.name,
            ))
        });
        self.namespaces.sort();
        self.namespaces.dedup();
    }
}

/// Finds the PodDisruptionBudgets that cover a pod without testing every PDB of the cluster:
/// budgets are indexed by namespace and by one of their `matchLabels` pairs, and only the
/// candidates a pod's own labels point at are checked with the full selector. Linear in pods
/// times labels, where the naive pairing is pods times PDBs (150,000 x 16,000 in the
/// benchmark cluster).
pub struct PdbIndex<'a> {
    by_label: std::collections::HashMap<(&'a str, &'a str, &'a str), Vec<&'a PdbInfo>>,
    by_namespace: std::collections::HashMap<&'a str, Vec<&'a PdbInfo>>,
}

impl<'a> PdbIndex<'a> {
    /// Indexes the budgets. A budget without a selector (or an empty one) covers nothing in
    /// policy/v1 and is left out.
    pub fn new(pdbs: &'a [PdbInfo]) -> Self {
        let mut by_label: std::collections::HashMap<(&str, &str, &str), Vec<&PdbInfo>> =
            std::collections::HashMap::new();
        let mut by_namespace: std::collections::HashMap<&str, Vec<&PdbInfo>> =
            std::collections::HashMap::new();
        for pdb in pdbs {
            let Some(sel) = &pdb.selector else { continue };
            if sel.is_empty() {
                continue;
            }
            match sel.match_labels.iter().next() {
                Some((k, v)) => by_label
                    .entry((pdb.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(pdb),
                None => by_namespace
                    .entry(pdb.namespace.as_str())
                    .or_default()
                    .push(pdb),
            }
        }
        Self {
            by_label,
            by_namespace,
        }
    }

    /// The budgets whose selector matches the pod.
    pub fn for_pod(&self, pod: &PodInfo) -> Vec<&'a PdbInfo> {
        let ns = pod.namespace.as_str();
        let mut out: Vec<&'a PdbInfo> = pod
            .labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(&(ns, k.as_str(), v.as_str())))
            .flatten()
            .chain(self.by_namespace.get(ns).into_iter().flatten())
            .copied()
            .filter(|pdb| {
                pdb.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&pod.labels))
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        out
    }
}
