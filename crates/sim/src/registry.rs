//! The resources the simulated API server serves: the discovery documents are built from this
//! table, and every request is resolved against it.

/// One served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural name in the URL.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names kubectl accepts.
    pub short: &'static [&'static str],
    /// Subresources (`status`, `eviction`, `log`).
    pub subresources: &'static [&'static str],
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this resource are stored under: versions of one group and kind
    /// share storage (CiliumNodeConfig v2 and v2alpha1 are the same objects).
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A Namespace cannot be deleted as a collection.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

impl Resource {
    /// The verbs discovery lists for the resource: all of them, except that Namespaces have no
    /// `deletecollection` (as on a real server). Secrets are not served at all.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.group.is_empty() && self.plural == "namespaces" {
            NAMESPACE_VERBS
        } else {
            ALL_VERBS
        }
    }
}

macro_rules! r {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, [$($short:expr),*], [$($sub:expr),*]) => {
        Resource { group: $g, version: $v, plural: $p, singular: $s, kind: $k, namespaced: $ns, short: &[$($short),*], subresources: &[$($sub),*] }
    };
}

/// Every served resource. Secrets are deliberately absent: the tool must never read them.
pub const RESOURCES: &[Resource] = &[
    r!("", "v1", "nodes", "node", "Node", false, ["no"], ["status"]),
    r!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        ["po"],
        ["status", "eviction", "log"]
    ),
    r!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        ["cm"],
        []
    ),
    r!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        ["svc"],
        ["status"]
    ),
    r!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        ["ns"],
        ["status"]
    ),
    r!("", "v1", "events", "event", "Event", true, ["ev"], []),
    r!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        ["sa"],
        ["token"]
    ),
    r!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        ["ds"],
        ["status"]
    ),
    r!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        ["deploy"],
        ["status", "scale"]
    ),
    r!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        ["rs"],
        ["status", "scale"]
    ),
    r!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        ["sts"],
        ["status", "scale"]
    ),
    r!(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        [],
        []
    ),
    r!("batch", "v1", "jobs", "job", "Job", true, [], ["status"]),
    r!(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        ["pc"],
        []
    ),
    r!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        ["pdb"],
        ["status"]
    ),
    r!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        [],
        []
    ),
    r!(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        ["ev"],
        []
    ),
    r!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        ["netpol"],
        []
    ),
    r!(
        "cilium.io",
        "v2",
        "ciliumnodeconfigs",
        "ciliumnodeconfig",
        "CiliumNodeConfig",
        true,
        [],
        []
    ),
    r!(
        "cilium.io",
        "v2alpha1",
        "ciliumnodeconfigs",
        "ciliumnodeconfig",
        "CiliumNodeConfig",
        true,
        [],
        []
    ),
    r!(
        "cilium.io",
        "v2",
        "ciliumnodes",
        "ciliumnode",
        "CiliumNode",
        false,
        ["cn", "ciliumn"],
        ["status"]
    ),
    r!(
        "cilium.io",
        "v2",
        "ciliumendpoints",
        "ciliumendpoint",
        "CiliumEndpoint",
        true,
        ["cep", "ciliumep"],
        []
    ),
    r!(
        "crd.projectcalico.org",
        "v1",
        "ippools",
        "ippool",
        "IPPool",
        false,
        [],
        []
    ),
    r!(
        "crd.projectcalico.org",
        "v1",
        "felixconfigurations",
        "felixconfiguration",
        "FelixConfiguration",
        false,
        [],
        []
    ),
    r!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        [],
        []
    ),
    r!(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        [],
        []
    ),
    r!(
        "operator.tigera.io",
        "v1",
        "installations",
        "installation",
        "Installation",
        false,
        [],
        ["status"]
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        [],
        []
    ),
];

/// The preferred version of each group, in the order `/apis` lists them.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// Resolves a URL's group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Resolves an object's apiVersion and kind (for loading dumps).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .or_else(|| {
            RESOURCES
                .iter()
                .find(|r| r.group == group && r.kind == kind)
        })
        // Old API versions of the same kind (extensions/v1beta1 DaemonSets, policy/v1beta1 PDBs).
        .or_else(|| {
            RESOURCES
                .iter()
                .find(|r| r.kind == kind && matches!(group, "extensions" | "apps" | "policy"))
        })
}
