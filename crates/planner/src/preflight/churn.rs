//! Who changes the node set while the migration runs.
//!
//! ```text
//! NODE_AUTOSCALING_ACTIVE   cluster-autoscaler (its pods or status ConfigMap), Karpenter (its
//!                           pods, nodes it launched), EKS managed node groups, Cluster API
//!                           Machines: nodes will join, leave and be replaced mid-migration
//! ```
//!
//! Linear in nodes and pods; each source is named once with up to `MAX_OBJECTS` objects.

use super::common::{MAX_OBJECTS, finding};
use crate::{
    findings::{Finding, FindingCode, Severity},
    names::{DO_NOT_DISRUPT, SCALE_DOWN_DISABLED},
    snapshot::{ClusterSnapshot, ObjectRef},
};

/// One thing that changes nodes, and what shows it.
struct Source {
    what: &'static str,
    objects: Vec<ObjectRef>,
    count: usize,
}

impl Source {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            objects: Vec::new(),
            count: 0,
        }
    }

    fn saw(&mut self, object: ObjectRef) {
        self.count += 1;
        if self.objects.len() < MAX_OBJECTS {
            self.objects.push(object);
        }
    }
}

/// `NODE_AUTOSCALING_ACTIVE`, when anything in the snapshot adds or removes nodes by itself.
pub(super) fn node_autoscaling(snap: &ClusterSnapshot, out: &mut Vec<Finding>) {
    let mut autoscaler = Source::new("cluster-autoscaler");
    let mut karpenter = Source::new("Karpenter");
    let mut node_groups = Source::new("EKS managed node groups");
    let mut capi = Source::new("Cluster API");
    for p in &snap.pods {
        let name = |k: &str| p.labels.get(k).map(String::as_str);
        let app = name("app.kubernetes.io/name")
            .or(name("app"))
            .or(name("k8s-app"));
        match app {
            Some("cluster-autoscaler" | "aws-cluster-autoscaler") => autoscaler.saw(p.object_ref()),
            Some("karpenter") => karpenter.saw(p.object_ref()),
            _ => {}
        }
    }
    for c in &snap.configmaps {
        if c.metadata.name.as_deref() == Some("cluster-autoscaler-status") {
            autoscaler.saw(ObjectRef::namespaced(
                "ConfigMap",
                c.metadata.namespace.as_deref().unwrap_or_default(),
                "cluster-autoscaler-status",
            ));
        }
    }
    for n in &snap.nodes {
        let node = || ObjectRef::cluster("Node", &n.name);
        if n.labels.contains_key("karpenter.sh/nodepool")
            || n.labels.contains_key("karpenter.sh/provisioner-name")
        {
            karpenter.saw(node());
        }
        if n.labels.contains_key("eks.amazonaws.com/nodegroup") {
            node_groups.saw(node());
        }
        if n.annotations.contains_key("cluster.x-k8s.io/machine") {
            capi.saw(node());
        }
    }
    let sources: Vec<Source> = [autoscaler, karpenter, node_groups, capi]
        .into_iter()
        .filter(|s| s.count > 0)
        .collect();
    if sources.is_empty() {
        return;
    }
    let named: Vec<String> = sources
        .iter()
        .map(|s| format!("{} ({} object(s))", s.what, s.count))
        .collect();
    let mut objects: Vec<ObjectRef> = sources.into_iter().flat_map(|s| s.objects).collect();
    objects.truncate(MAX_OBJECTS);
    out.push(finding(
        FindingCode::NodeAutoscalingActive,
        Severity::Warning,
        format!(
            "nodes may join, leave or be replaced while the migration runs: {}. The run migrates \
             nodes that join (recorded as joined, full chain), records nodes that leave as gone \
             rather than failed, and does not switch Cilium to its final mode or remove the old \
             CNI while a Ready node is unmigrated; and from cordon to uncordon it annotates each \
             node it holds `{SCALE_DOWN_DISABLED}=true` and `{DO_NOT_DISRUPT}=true` (unless the \
             node had them), so a scale-down does not compete with its drain",
            named.join(", ")
        ),
        objects,
        format!(
            "nothing is required; to keep every node (not only those in flight) from scale-down \
             for the whole window, annotate them (`kubectl annotate nodes --all \
             {SCALE_DOWN_DISABLED}=true {DO_NOT_DISRUPT}=true`) and remove the annotations after \
             finalize, or pause scale-down"
        ),
    ));
}
