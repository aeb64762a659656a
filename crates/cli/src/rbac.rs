//! `cni-migrate rbac`: the ServiceAccount, ClusterRole, Roles and bindings granting exactly what
//! the tool uses.
//!
//! ```text
//! RULES (data) ──► render ──► ServiceAccount? · ClusterRole + binding · Role + binding per ns
//!      ▲                      └─ --helm-role: cni-migrate-helm (what `helm upgrade` of the
//!      │                         Cilium chart needs; secrets, RBAC objects: broad, opt-in)
//! permissions(method, uri) ◄── requests recorded in full migrations (tests/rbac.rs)
//!                               a server-side apply that can create needs `patch` and `create`
//! ```
//!
//! The rules are data ([`RULES`]) and [`permissions`] maps any request the tool sends to the
//! permissions it needs; a test records every request of full migrations against the simulated
//! cluster and checks both directions: every request is granted, and every grant is used.
//! Secrets are never read by the tool, so they are never granted (the opt-in Helm role grants
//! them: Helm keeps its releases in Secrets).

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;

use crate::{Failure, exit};

/// One grant: API group, resource (with `/subresource`), verbs, and the namespace of a Role
/// (`None`: the ClusterRole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource, e.g. `pods/eviction`.
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// `Some(ns)`: a Role in that namespace; `None`: cluster-wide.
    pub namespace: Option<&'static str>,
    /// Why the tool needs it.
    pub why: &'static str,
}

/// Everything the tool is allowed to do.
pub const RULES: &[Rule] = &[
    Rule {
        group: "",
        resource: "nodes",
        verbs: &["get", "list", "patch", "watch"],
        namespace: None,
        why: "discovery, readiness and node churn (one watch of every node), cordon/uncordon, the migration label, scale-down annotations while held",
    },
    Rule {
        group: "",
        resource: "pods",
        verbs: &["delete", "list", "watch"],
        namespace: None,
        why: "discovery, drain progress (a watch of the node's pods), the re-check of migrated nodes' new pods (one watch of every pod), restarting the Cilium agent pod",
    },
    Rule {
        group: "",
        resource: "pods",
        verbs: &["create"],
        namespace: Some("kube-system"),
        why: "the verification probe and its beacons; the rollback's restore pod (privileged, the host's CNI directory mounted); followed by a watch, or a LIST by their labels",
    },
    Rule {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        namespace: Some("kube-system"),
        why: "the probe's report; a crash-looping agent's last log line",
    },
    Rule {
        group: "",
        resource: "pods/eviction",
        verbs: &["create"],
        namespace: None,
        why: "draining through the eviction API (PDBs honoured)",
    },
    Rule {
        group: "",
        resource: "services",
        verbs: &["list"],
        namespace: None,
        why: "discovery (the service CIDR)",
    },
    Rule {
        group: "",
        resource: "namespaces",
        verbs: &["delete", "list"],
        namespace: None,
        why: "discovery; removing the kube-flannel namespace at the end",
    },
    Rule {
        group: "",
        resource: "configmaps",
        verbs: &["delete", "get", "list"],
        namespace: None,
        why: "the old CNI's and Cilium's configuration; removing the old CNI's; the checkpoint's parts (read, listed, stale ones deleted)",
    },
    Rule {
        group: "",
        resource: "configmaps",
        verbs: &["create", "update"],
        namespace: Some("kube-system"),
        why: "the checkpoint, kube-system/cni-migrate-state, and its parts past 768 KiB",
    },
    Rule {
        group: "",
        resource: "events",
        verbs: &["create"],
        namespace: Some("default"),
        why: "an Event on the Node for each step",
    },
    Rule {
        group: "apps",
        resource: "daemonsets",
        verbs: &["delete", "get", "list", "patch", "watch"],
        namespace: None,
        why: "the Cilium agent's rollout (watched); removing the old CNI's DaemonSet; EKS: aws-node's node selector (server-side apply)",
    },
    Rule {
        group: "apps",
        resource: "deployments",
        verbs: &["delete", "list"],
        namespace: None,
        why: "discovery; removing the old CNI's Deployments (tigera-operator, calico-kube-controllers)",
    },
    Rule {
        group: "apps",
        resource: "replicasets",
        verbs: &["list"],
        namespace: None,
        why: "discovery",
    },
    Rule {
        group: "apps",
        resource: "statefulsets",
        verbs: &["list"],
        namespace: None,
        why: "discovery",
    },
    Rule {
        group: "policy",
        resource: "poddisruptionbudgets",
        verbs: &["list"],
        namespace: None,
        why: "PDB-aware scheduling and drain reports",
    },
    Rule {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: &["list"],
        namespace: None,
        why: "discovery (policies not enforced during the migration)",
    },
    Rule {
        group: "networking.k8s.io",
        resource: "servicecidrs",
        verbs: &["list"],
        namespace: None,
        why: "discovery (the service CIDR)",
    },
    Rule {
        group: "admissionregistration.k8s.io",
        resource: "validatingwebhookconfigurations",
        verbs: &["list"],
        namespace: None,
        why: "discovery (EKS overlay: webhooks the control plane must reach)",
    },
    Rule {
        group: "admissionregistration.k8s.io",
        resource: "mutatingwebhookconfigurations",
        verbs: &["list"],
        namespace: None,
        why: "discovery (EKS overlay: webhooks the control plane must reach)",
    },
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["create", "get", "update"],
        namespace: Some("kube-system"),
        why: "the run lock, kube-system/cni-migrate",
    },
    Rule {
        group: "cilium.io",
        resource: "ciliumnodes",
        verbs: &["get", "list"],
        namespace: None,
        why: "the pod CIDRs Cilium gave each node",
    },
    Rule {
        group: "cilium.io",
        resource: "ciliumendpoints",
        verbs: &["list"],
        namespace: None,
        why: "the final check: every pod off the host network is managed by Cilium",
    },
    Rule {
        group: "cilium.io",
        resource: "ciliumnodeconfigs",
        verbs: &["create", "delete", "get", "list", "patch"],
        namespace: None,
        why: "the migration CiliumNodeConfig (server-side apply: `create` the first time, `patch` after), deleted at the end",
    },
    Rule {
        group: "crd.projectcalico.org",
        resource: "ippools",
        verbs: &["list"],
        namespace: None,
        why: "discovery (Calico's pools)",
    },
    Rule {
        group: "crd.projectcalico.org",
        resource: "felixconfigurations",
        verbs: &["list"],
        namespace: None,
        why: "discovery (Calico's VXLAN port)",
    },
    Rule {
        group: "projectcalico.org",
        resource: "ippools",
        verbs: &["list"],
        namespace: None,
        why: "Calico's pools (API server install)",
    },
    Rule {
        group: "projectcalico.org",
        resource: "felixconfigurations",
        verbs: &["list"],
        namespace: None,
        why: "Calico's VXLAN port (API server install)",
    },
    Rule {
        group: "operator.tigera.io",
        resource: "installations",
        verbs: &["delete", "list"],
        namespace: None,
        why: "the Tigera operator's Installation; removed with Calico",
    },
];

/// The server-side applies that may create their object (the API server authorises an apply of a
/// missing object as `create`, of an existing one as `patch`): `(group, resource)`. The EKS
/// step's apply of `aws-node` only runs when the DaemonSet exists, so it needs `patch` only.
pub const APPLY_CAN_CREATE: &[(&str, &str)] = &[("cilium.io", "ciliumnodeconfigs")];

/// A permission: `(group, resource, verb, namespace)`.
pub type Permission = (String, String, String, Option<String>);

/// Every permission a request needs: [`permission`], and `create` too for a server-side apply
/// (a PATCH naming a `fieldManager`) of a resource in [`APPLY_CAN_CREATE`].
pub fn permissions(method: &str, uri: &str) -> Vec<Permission> {
    let Some(p) = permission(method, uri) else {
        return Vec::new();
    };
    let apply = method == "PATCH"
        && uri
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("fieldManager=")));
    let creates = apply && APPLY_CAN_CREATE.iter().any(|(g, r)| *g == p.0 && *r == p.1);
    let mut out = vec![p.clone()];
    if creates {
        out.push((p.0, p.1, "create".to_owned(), p.3));
    }
    out
}

/// The permission a request needs: `(group, resource, verb, namespace)`, where the namespace is
/// that of a namespaced request (a cluster-wide grant covers it too). `None` for discovery and
/// non-resource URLs, which every authenticated user may read.
pub fn permission(method: &str, uri: &str) -> Option<(String, String, String, Option<String>)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    // The simulated API server's authorizer reads requests the way the real one does: one
    // reading of a URL for both.
    let a = sim::server::auth::Attributes::of(method, path, query)?;
    let resource = match &a.sub {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.clone(),
    };
    // A Namespace is cluster-scoped: the grant that matters is the cluster-wide one.
    let namespace = if a.resource == "namespaces" {
        None
    } else {
        a.namespace
    };
    Some((a.group, resource, a.verb, namespace))
}

/// Whether the rules grant a permission.
pub fn granted(group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
    RULES.iter().any(|r| {
        r.group == group
            && r.resource == resource
            && r.verbs.contains(&verb)
            && match r.namespace {
                None => true,
                Some(ns) => namespace == Some(ns),
            }
    })
}

/// What `helm upgrade --install cilium cilium/cilium` needs (printed with `--helm-role` as
/// ClusterRole and Role `cni-migrate-helm`): the chart's objects, Helm's release Secrets in the
/// Cilium namespace, and `bind`/`escalate` on RBAC objects because the chart creates the agent's
/// and operator's (cluster) roles. This is close to cluster-admin: prefer `--helm-kubeconfig`.
pub const HELM_RULES: &[Rule] = &[
    Rule {
        group: "",
        resource: "nodes",
        verbs: &["get", "list"],
        namespace: None,
        why: "Helm's lookups",
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resource: "clusterroles",
        verbs: HELM_VERBS_ESCALATE,
        namespace: None,
        why: "the chart's ClusterRoles (bind/escalate: they grant what this role does not)",
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resource: "clusterrolebindings",
        verbs: HELM_VERBS,
        namespace: None,
        why: "the chart's ClusterRoleBindings",
    },
    Rule {
        group: "apiextensions.k8s.io",
        resource: "customresourcedefinitions",
        verbs: &["get", "list", "watch"],
        namespace: None,
        why: "Helm checks the CRDs the chart's objects use",
    },
    Rule {
        group: "",
        resource: "secrets",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "Helm's release records (sh.helm.release.v1.cilium.*) and the chart's certificates",
    },
    Rule {
        group: "",
        resource: "configmaps",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "cilium-config and the chart's other ConfigMaps",
    },
    Rule {
        group: "",
        resource: "serviceaccounts",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "the agent's and operator's ServiceAccounts",
    },
    Rule {
        group: "",
        resource: "services",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "hubble-peer and the chart's Services",
    },
    Rule {
        group: "apps",
        resource: "daemonsets",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "the cilium (and cilium-envoy) DaemonSets",
    },
    Rule {
        group: "apps",
        resource: "deployments",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "cilium-operator (and hubble-relay)",
    },
    Rule {
        group: "policy",
        resource: "poddisruptionbudgets",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "the operator's PodDisruptionBudget",
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resource: "roles",
        verbs: HELM_VERBS_ESCALATE,
        namespace: Some("kube-system"),
        why: "the chart's Roles (bind/escalate as for ClusterRoles)",
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resource: "rolebindings",
        verbs: HELM_VERBS,
        namespace: Some("kube-system"),
        why: "the chart's RoleBindings",
    },
];

const HELM_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const HELM_VERBS_ESCALATE: &[&str] = &[
    "bind", "create", "delete", "escalate", "get", "list", "patch", "update", "watch",
];

/// `cni-migrate rbac`.
#[derive(Debug, Args, Clone)]
pub struct RbacArgs {
    /// Bind to this ServiceAccount (`NAMESPACE/NAME`), printed too (default
    /// `kube-system/cni-migrate`).
    #[arg(long, value_name = "NS/NAME", conflicts_with_all = ["user", "group"])]
    pub service_account: Option<String>,
    /// Bind to this user.
    #[arg(long, value_name = "NAME", conflicts_with = "group")]
    pub user: Option<String>,
    /// Bind to this group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Also print `cni-migrate-helm`, what `helm upgrade` of the Cilium chart needs when Helm
    /// runs with the tool's credentials (broad: Secrets, RBAC objects). Without it, give Helm
    /// its own credentials with `apply --helm-kubeconfig`.
    #[arg(long)]
    pub helm_role: bool,
}

fn meta(name: &str, ns: Option<&str>) -> serde_json::Value {
    let mut m =
        serde_json::json!({"name": name, "labels": {"app.kubernetes.io/name": "cni-migrate"}});
    if let Some(ns) = ns {
        m["namespace"] = ns.into();
    }
    m
}

/// The ClusterRole (rules without a namespace), a Role per namespace, and their bindings.
fn role_docs(name: &str, rules: &[Rule], subject: &serde_json::Value) -> Vec<serde_json::Value> {
    use serde_json::json;
    let rules_of = |ns: Option<&str>| -> Vec<serde_json::Value> {
        rules
            .iter()
            .filter(|r| r.namespace == ns)
            .map(|r| json!({"apiGroups": [r.group], "resources": [r.resource], "verbs": r.verbs}))
            .collect()
    };
    let mut docs = vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(name, None),
            "rules": rules_of(None),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        }),
    ];
    let namespaces: BTreeSet<&str> = rules.iter().filter_map(|r| r.namespace).collect();
    for ns in namespaces {
        docs.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(name, Some(ns)),
            "rules": rules_of(Some(ns)),
        }));
        docs.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(name, Some(ns)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        }));
    }
    docs
}

fn reasons(rules: &[Rule], out: &mut String) {
    let mut why: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in rules {
        let group = if r.group.is_empty() {
            String::new()
        } else {
            format!("{}/", r.group)
        };
        why.entry(format!("{group}{}", r.resource))
            .or_default()
            .push(r.why);
    }
    for (res, reasons) in why {
        out.push_str(&format!("#   {res}: {}\n", reasons.join("; ")));
    }
}

/// Renders the objects as YAML documents: the ServiceAccount when the subject is one, the
/// tool's roles, and with `helm_role` the Helm roles.
pub fn render(subject: &serde_json::Value, helm_role: bool) -> String {
    let mut docs = Vec::new();
    if subject["kind"] == "ServiceAccount" {
        docs.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(
                subject["name"].as_str().unwrap_or_default(),
                subject["namespace"].as_str(),
            ),
        }));
    }
    docs.extend(role_docs("cni-migrate", RULES, subject));
    let mut out = String::from(
        "# RBAC for cni-migrate: exactly the requests it makes (Secrets are never read).\n",
    );
    reasons(RULES, &mut out);
    if helm_role {
        docs.extend(role_docs("cni-migrate-helm", HELM_RULES, subject));
        out.push_str(
            "# cni-migrate-helm: what `helm upgrade --install cilium` needs when it runs with these\n\
             # credentials (--helm without --helm-kubeconfig). Broad (Helm's release Secrets; bind and\n\
             # escalate on RBAC objects): delete it after the migration.\n",
        );
        reasons(HELM_RULES, &mut out);
    } else {
        out.push_str(
            "# Helm is not granted here: `cilium-config` and the chart's objects are refused to this\n\
             # subject. Run Helm with its own credentials (apply --helm-kubeconfig PATH), or print the\n\
             # separate role cni-migrate-helm with `cni-migrate rbac --helm-role`.\n",
        );
    }
    for d in docs {
        out.push_str("---\n");
        out.push_str(&planner::yaml::to_string(&d).unwrap_or_default());
    }
    out
}

/// Prints the RBAC objects.
pub fn print(args: &RbacArgs) -> Result<u8, Failure> {
    let subject = if let Some(u) = &args.user {
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})
    } else if let Some(g) = &args.group {
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g})
    } else {
        let sa = args
            .service_account
            .clone()
            .unwrap_or_else(|| "kube-system/cni-migrate".to_owned());
        let (ns, name) = sa
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
            .ok_or_else(|| {
                Failure::bad_input(anyhow::anyhow!(
                    "--service-account {sa}: expected NAMESPACE/NAME"
                ))
            })?;
        serde_json::json!({"kind": "ServiceAccount", "namespace": ns, "name": name})
    };
    print!("{}", render(&subject, args.helm_role));
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_permissions() {
        assert_eq!(
            permission("POST", "/api/v1/namespaces/shop/pods/web-1/eviction"),
            Some((
                "".into(),
                "pods/eviction".into(),
                "create".into(),
                Some("shop".into())
            ))
        );
        assert_eq!(
            permission(
                "GET",
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500"
            ),
            Some(("".into(), "pods".into(), "list".into(), None))
        );
        assert_eq!(
            permission(
                "PATCH",
                "/apis/cilium.io/v2/namespaces/kube-system/ciliumnodeconfigs/cilium-default?fieldManager=cni-migrate"
            ),
            Some((
                "cilium.io".into(),
                "ciliumnodeconfigs".into(),
                "patch".into(),
                Some("kube-system".into())
            ))
        );
        assert_eq!(
            permission("DELETE", "/api/v1/namespaces/kube-flannel"),
            Some(("".into(), "namespaces".into(), "delete".into(), None))
        );
        assert_eq!(permission("GET", "/version"), None);
        assert_eq!(permission("GET", "/apis"), None);
    }

    #[test]
    fn an_apply_that_can_create_needs_create() {
        let uri = "/apis/cilium.io/v2/namespaces/kube-system/ciliumnodeconfigs/cilium-default?fieldManager=cni-migrate&force=true";
        let verbs: Vec<String> = permissions("PATCH", uri).into_iter().map(|p| p.2).collect();
        assert_eq!(verbs, ["patch", "create"]);
        assert!(granted(
            "cilium.io",
            "ciliumnodeconfigs",
            "create",
            Some("kube-system")
        ));
        let merge = permissions("PATCH", "/api/v1/nodes/n1");
        assert_eq!(merge.len(), 1);
    }

    #[test]
    fn secrets_are_never_granted() {
        assert!(RULES.iter().all(|r| !r.resource.starts_with("secrets")));
        assert!(!granted("", "secrets", "get", None));
    }
}
