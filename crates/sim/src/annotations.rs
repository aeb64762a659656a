//! The annotations the simulated cluster keeps its invisible state in: a node's CNI directory,
//! its faults, aws-node's NAT chains, the overlay a pod started on, an agent's resolved config,
//! the Cilium datapath loaded on a node.

/// The node annotation that stands for its CNI directory.
pub const CNI_ANNOTATION: &str = "sim.cni-migrate.io/cni";
/// The node annotation listing its faults.
pub const FAULT_ANNOTATION: &str = "sim.cni-migrate.io/fault";
/// The node annotation for the VPC CNI's nat chains: `present` once aws-node started on the
/// node, `flushed` once the tool's flush pod ran there.
pub const VPC_NAT_ANNOTATION: &str = "sim.cni-migrate.io/vpc-cni-nat";
/// The pod annotation naming the overlay a pod started on (`cilium` or `old`).
pub const OVERLAY_ANNOTATION: &str = "sim.cni-migrate.io/overlay";
/// The agent pod annotation holding its resolved `enable-host-legacy-routing`.
pub const LEGACY_ROUTING_ANNOTATION: &str = "sim.cni-migrate.io/enable-host-legacy-routing";
/// The node annotation for the Cilium datapath loaded on it (the BPF programs, which outlive
/// the agent that loaded them): the `enable-host-legacy-routing` that agent resolved. Absent
/// until an agent has been Ready on the node.
pub const DATAPATH_ANNOTATION: &str = "sim.cni-migrate.io/datapath-legacy-routing";
/// The node annotation for the old CNI's leftovers (iptables chains, devices, routes):
/// `flannel` or `calico` once that CNI's agent started on the node, `cleaned` once the tool's
/// cleanup pod ran there. Only a reboot or the cleanup removes them, not deleting the CNI.
pub const LEFTOVERS_ANNOTATION: &str = "sim.cni-migrate.io/old-cni-leftovers";
