//! What the EKS profiles need to know about the nodes and the control plane's reach.
//!
//! ```text
//! nodes ─► OS family (osImage) ─► the interface pattern for egress masquerading (eth+ / ens+)
//!       ─► node group (EKS, eksctl, Karpenter labels) ─► which carry the agent-not-ready taint
//! admission webhooks ─► their Services ─► are the pods behind them on the host network?
//!   ▼
//! EksFacts
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    facts::{EksFacts, NodeGroup, OsFamily, WebhookService},
    names::AGENT_NOT_READY_TAINT,
    snapshot::{ClusterSnapshot, ObjectRef},
};

/// Labels that name a node's group, most specific first.
const NODE_GROUP_LABELS: &[&str] = &[
    "eks.amazonaws.com/nodegroup",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name",
];

/// The EKS facts of the snapshot's nodes and webhooks.
pub(super) fn detect_eks(snap: &ClusterSnapshot) -> EksFacts {
    let mut os_families: BTreeMap<OsFamily, Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, NodeGroup> = BTreeMap::new();
    for n in &snap.nodes {
        let family = OsFamily::from_os_image(n.os_image.as_deref().unwrap_or_default());
        os_families.entry(family).or_default().push(n.name.clone());
        let name = NODE_GROUP_LABELS
            .iter()
            .find_map(|l| n.labels.get(*l).map(|v| format!("{l}={v}")))
            .unwrap_or_else(|| "(no node group label)".to_owned());
        let g = groups.entry(name.clone()).or_insert_with(|| NodeGroup {
            name,
            ..NodeGroup::default()
        });
        g.nodes.push(n.name.clone());
        if n.taints.iter().any(|t| {
            t.key == AGENT_NOT_READY_TAINT
                && t.effect == "NoExecute"
                && t.value.as_deref() == Some("true")
        }) {
            g.tainted.push(n.name.clone());
        }
    }
    let patterns: BTreeSet<Option<&str>> =
        os_families.keys().map(|f| f.interface_pattern()).collect();
    let interface_pattern = match patterns.iter().collect::<Vec<_>>().as_slice() {
        [Some(p)] => Some((*p).to_owned()),
        _ => None,
    };
    EksFacts {
        os_families,
        interface_pattern,
        node_groups: groups.into_values().collect(),
        webhooks: detect_webhooks(snap),
    }
}

/// Admission webhooks that call a Service, and whether the pods behind it are on the host
/// network.
fn detect_webhooks(snap: &ClusterSnapshot) -> Vec<WebhookService> {
    let mut out = Vec::new();
    for c in snap.custom.iter().filter(|c| {
        matches!(
            c.kind.as_str(),
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"
        )
    }) {
        for w in c.object["webhooks"].as_array().into_iter().flatten() {
            let svc = &w["clientConfig"]["service"];
            let (Some(ns), Some(name)) = (svc["namespace"].as_str(), svc["name"].as_str()) else {
                continue;
            };
            let selector = snap
                .services
                .iter()
                .find(|s| s.namespace == ns && s.name == name)
                .map(|s| s.selector.clone())
                .unwrap_or_default();
            let backing: Vec<_> = snap
                .pods
                .iter()
                .filter(|p| {
                    p.namespace == ns
                        && !selector.is_empty()
                        && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .collect();
            out.push(WebhookService {
                configuration: ObjectRef::cluster(&c.kind, &c.name),
                webhook: w["name"].as_str().unwrap_or_default().to_owned(),
                service: format!("{ns}/{name}"),
                host_network: !backing.is_empty() && backing.iter().all(|p| p.host_network),
                failure_policy: w["failurePolicy"].as_str().unwrap_or("Fail").to_owned(),
            });
        }
    }
    out.sort_by(|a, b| (&a.configuration, &a.webhook).cmp(&(&b.configuration, &b.webhook)));
    out
}
