//! Preflight findings: what is wrong or risky, where, and how to fix it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::snapshot::ObjectRef;

/// How serious a finding is. Errors block `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks `apply`.
    Error,
    /// Worth a reviewer's attention; does not block.
    Warning,
    /// For the record.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// Stable finding codes. Tools and runbooks match on these; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingCode {
    /// The new pod CIDR overlaps the old pod network or a node's pod CIDR.
    PodCidrOverlapsExisting,
    /// The new pod CIDR overlaps the service CIDR.
    PodCidrOverlapsServiceCidr,
    /// The new pod CIDR contains a node address or overlaps a node network.
    PodCidrOverlapsNodeNetwork,
    /// The new pod CIDR has fewer `maskSize` blocks than nodes plus headroom.
    PodCidrTooSmall,
    /// Cilium's tunnel would use the old overlay's UDP port.
    TunnelPortCollision,
    /// The source CNI cannot be migrated by this procedure.
    SourceCniUnsupported,
    /// Calico without encapsulation (BGP routed): untested by the Cilium procedure.
    SourceCniUntestedBgp,
    /// NetworkPolicies exist; Cilium will not enforce them during the migration.
    NetworkPoliciesPresent,
    /// Calico's node address autodetection is first-found and may pick `cilium_host`.
    CalicoAutodetectFirstFound,
    /// The AWS VPC CNI would SNAT traffic to Cilium's pod CIDR.
    AwsCniSnatExclusionMissing,
    /// A PodDisruptionBudget can never allow a disruption, so a drain would block forever.
    PdbBlocksDrain,
    /// Pods without a controller would be lost by a drain.
    UnreplicatedPods,
    /// Pods with emptyDir volumes would lose their data in a drain.
    LocalStoragePods,
    /// An installed Cilium's `cilium-config` contradicts migration mode.
    CiliumConfigMismatch,
    /// IPv6 or dual-stack: the dual-overlay migration is IPv4-only here.
    Ipv6NotSupported,
    /// A managed platform (AKS, GKE, RKE2, k3s) that does not support this procedure as is.
    ManagedPlatform,
    /// The service CIDR could not be determined exactly.
    ServiceCidrUnknown,
    /// EKS: `aws-node` lacks the node selector `io.cilium/aws-node-enabled=true`, so it would
    /// keep managing ENIs beside Cilium.
    AwsNodeNotPatched,
    /// EKS: nodes on Amazon Linux 2 (`eth+`) and Amazon Linux 2023 (`ens+`) together, or an
    /// `egressMasqueradeInterfaces` pattern that does not fit every node.
    MixedInterfaceNaming,
    /// EKS: IPv6 or dual-stack with `eks-eni`, which is IPv4-only here.
    EniModeIpv4Only,
    /// EKS: nodes without `node.cilium.io/agent-not-ready=true:NoExecute` (new pods could
    /// start unmanaged).
    AgentNotReadyTaintMissing,
    /// EKS: nodes carrying `node.cilium.io/agent-not-ready=true:NoExecute` now.
    AgentNotReadyTaintPresent,
    /// EKS overlay: admission webhooks whose pods are on the pod network, which the EKS control
    /// plane cannot reach once they move to Cilium's overlay.
    OverlayWebhooksUnreachable,
    /// EKS overlay: the VPC CNI's nat rules must be flushed on each node before Cilium takes
    /// over.
    VpcCniIptablesLeftovers,
    /// EKS ENI: Cilium's operator needs EC2 permissions to manage ENIs.
    Ec2Permissions,
    /// Something adds, removes or replaces nodes on its own (cluster-autoscaler, Karpenter,
    /// managed node groups, Cluster API) while the migration runs.
    NodeAutoscalingActive,
    /// The final values turn `bpf.hostLegacyRouting` off, but without kube-proxy replacement
    /// Cilium keeps legacy host routing.
    HostRoutingStaysLegacy,
    /// An installed Cilium runs the netkit datapath, which refuses legacy host routing.
    NetkitDuringMigration,
    /// The final values restart every agent two at a time: hours on a large cluster.
    FinalRestartSlow,
    /// A distribution that re-applies its own CNI (k3s, RKE2, Talos, kubespray) unless its
    /// configuration is changed before the finale.
    DistributionReappliesCni,
    /// The old CNI's iptables chains, devices and routes stay on the nodes after the finale
    /// (no rolling reboot, and `finalize.cleanOldCni: false`).
    OldCniLeftovers,
}

impl FindingCode {
    /// The code as printed and serialized, e.g. `POD_CIDR_TOO_SMALL`.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// One preflight finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code.
    pub code: FindingCode,
    /// Severity.
    pub severity: Severity,
    /// What is wrong, with the facts that show it.
    pub message: String,
    /// The objects involved.
    pub objects: Vec<ObjectRef>,
    /// The concrete fix: a spec change, a command, a patch.
    pub fix: String,
}

impl Finding {
    /// Whether this finding blocks `apply`.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
