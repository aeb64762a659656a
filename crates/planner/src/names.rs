//! The names the parts of a migration must agree on: the label that moves a node, the objects
//! the plan creates, the labels and taints Cilium's EKS guide uses, the VPC CNI's nat chains.
//!
//! ```text
//!            names  (constants only; depends on nothing)
//!              ▲
//!   ┌──────────┼───────────┬───────────┐
//! commands   values    preflight      plan      (and the executor and simulator, by re-export)
//! ```
//!
//! They live here, below everything that uses them, so that the plan, the generated values and
//! the preflight checks can share them without importing each other.

/// The label that selects nodes for the migration `CiliumNodeConfig`.
pub const MIGRATION_LABEL: &str = "io.cilium.migration/cilium-default";
/// Name (and namespace) of the migration `CiliumNodeConfig`.
pub const NODE_CONFIG_NAME: &str = "cilium-default";
/// Namespace of Cilium's objects.
pub const CILIUM_NAMESPACE: &str = "kube-system";
/// The node label Cilium's EKS guide puts in aws-node's node selector: aws-node runs only
/// where a node carries it.
pub const AWS_NODE_LABEL: &str = "io.cilium/aws-node-enabled";
/// The taint Cilium's EKS guide puts on node groups so no pod starts before the agent.
pub const AGENT_NOT_READY_TAINT: &str = "node.cilium.io/agent-not-ready";

/// The VPC CNI's nat chains Cilium's EKS overlay guide flushes on each node.
pub const VPC_CNI_NAT_CHAINS: &[&str] = &[
    "AWS-SNAT-CHAIN-0",
    "AWS-SNAT-CHAIN-1",
    "AWS-CONNMARK-CHAIN-0",
    "AWS-CONNMARK-CHAIN-1",
];

/// The node annotation that keeps cluster-autoscaler from scaling a node down.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// The node annotation that keeps Karpenter from disrupting a node.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
