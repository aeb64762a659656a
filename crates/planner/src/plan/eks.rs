//! The links only the EKS profiles have: aws-node confined before Cilium arrives, stopped on a
//! node as it moves (eks-overlay), and the pods Cilium does not manage restarted on each node.
//!
//! ```text
//! eks-overlay: prelude: preflight ─► patch-aws-node ─► cilium-installed ─► node-config
//!              node:    cordon ─► drain ─► label ─► stop-aws-node ─► restart-agent ─► [reboot]
//!                       ─► restart-unmanaged-pods ─► verify ─► uncordon
//! eks-eni:     prelude: preflight ─► patch-aws-node ─► cilium-installed
//!              node:    restart-unmanaged-pods ─► verify (ENI addresses, CiliumEndpoints)
//! ```

use super::{
    link::Link,
    node::honouring,
    types::{PlannedNode, StepKind},
};
use crate::{
    commands::{aws_node_patch_command, flush_vpc_cni_command, secs, verify_command},
    names::AWS_NODE_LABEL,
    spec::{MigrationSpec, TargetMode},
};

/// Confine aws-node to labelled nodes: in eks-overlay every node is labelled first, so aws-node
/// keeps running until each node migrates; in eks-eni no node is, so it stops everywhere.
pub(super) fn patch_aws_node(mode: TargetMode) -> Link {
    let overlay = mode == TargetMode::EksOverlay;
    Link::new(
        StepKind::PatchAwsNode,
        300,
        if overlay {
            format!(
                "label every node {AWS_NODE_LABEL}=true, then give DaemonSet kube-system/aws-node that node selector: aws-node keeps running on every node until the node migrates"
            )
        } else {
            format!(
                "give DaemonSet kube-system/aws-node the node selector {AWS_NODE_LABEL}=true (no node has the label): aws-node stops managing ENIs everywhere; running pods keep their addresses"
            )
        },
        if overlay {
            vec![
                format!("kubectl label nodes --all --overwrite {AWS_NODE_LABEL}=true"),
                aws_node_patch_command(),
                "kubectl -n kube-system rollout status ds/aws-node".to_owned(),
            ]
        } else {
            vec![
                aws_node_patch_command(),
                "kubectl -n kube-system rollout status ds/aws-node".to_owned(),
            ]
        },
    )
}

/// eks-overlay: take aws-node off the node and flush the nat chains it leaves behind.
pub(super) fn stop_aws_node(name: &str) -> Link {
    Link::new(
        StepKind::StopAwsNode,
        300,
        format!(
            "remove {name}'s label {AWS_NODE_LABEL} so aws-node leaves it, wait for its aws-node pod to be gone, then flush the VPC CNI's nat chains from a privileged host-network pod"
        ),
        vec![
            format!("kubectl label node {name} {AWS_NODE_LABEL}-"),
            format!(
                "kubectl -n kube-system wait --for=delete pod --field-selector spec.nodeName={name} -l k8s-app=aws-node --timeout=300s"
            ),
            format!("# on {name} (SSM or SSH): {}", flush_vpc_cni_command()),
        ],
    )
}

/// Evict the node's pods that still run on the VPC CNI, so their replacements start on Cilium.
pub(super) fn restart_unmanaged_pods(spec: &MigrationSpec, node: &PlannedNode) -> Link {
    let name = node.name.as_str();
    Link::new(
        StepKind::RestartUnmanagedPods,
        secs(spec.rollout.drain.timeout.0),
        format!(
            "evict the pods on {name} that Cilium does not manage (not hostNetwork, and no CiliumEndpoint or an address outside Cilium's ranges), DaemonSet pods included, through the eviction API{}; their replacements start on Cilium",
            honouring(node)
        ),
        vec![
            format!(
                "kubectl get pods -A -o wide --field-selector spec.nodeName={name}  # compare with: kubectl get ciliumendpoints -A"
            ),
            r#"kubectl create --raw /api/v1/namespaces/NS/pods/POD/eviction -f - <<< '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"namespace":"NS","name":"POD"}}'  # per unmanaged pod"#.to_owned(),
        ],
    )
}

/// eks-eni: check the node's pods are on Cilium's ENI addresses.
pub(super) fn verify_eni(spec: &MigrationSpec, name: &str) -> Link {
    Link::new(
        StepKind::Verify,
        secs(spec.rollout.verify.timeout.0),
        format!(
            "check the agent on {name} is Ready, its CiliumNode has ENI addresses, every non-hostNetwork pod on it has a CiliumEndpoint with its address, and a probe pod pinned to it gets a Cilium address and reaches the API server and a beacon pod on another node"
        ),
        vec![
            format!("kubectl get ciliumnode {name} -o jsonpath='{{.spec.ipam.pool}}'"),
            verify_command(spec, name),
        ],
    )
}
