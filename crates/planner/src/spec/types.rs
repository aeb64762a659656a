//! The spec's shape: every section and field, their defaults, and `target.mode`.
//!
//! ```text
//! MigrationSpec ─┬─ metadata: SpecMetadata
//!                ├─ target:   Target { mode: TargetMode, ciliumVersion, podCIDRs, maskSize,
//!                │                     tunnel: Tunnel, headroom, cniConfDir, eni: Eni }
//!                ├─ rollout:  Rollout { canary, maxUnavailable, soak, drain: Drain,
//!                │                      reboot: Reboot, verify: Verify }
//!                └─ finalize: Finalize
//! ```
//!
//! Every struct denies unknown fields, so a typo is an error rather than a default.

use std::{fmt, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    controls::{Gates, HealthBudget, Window},
    scalars::{CiliumVersion, HumanDuration},
};
use crate::snapshot::IntOrString;

/// The spec's `apiVersion`.
pub const API_VERSION: &str = "cni-migrate.io/v1alpha1";
/// The spec's `kind`.
pub const KIND: &str = "MigrationSpec";

/// A migration spec, as written by the user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationSpec {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Name of the migration (shows up in checkpoints, events and reports).
    pub metadata: SpecMetadata,
    /// What the cluster moves to.
    pub target: Target,
    /// How nodes are moved.
    #[serde(default)]
    pub rollout: Rollout,
    /// How the migration is finished.
    #[serde(default)]
    pub finalize: Finalize,
}

/// `metadata`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecMetadata {
    /// Name.
    pub name: String,
}

/// `target`: the Cilium install the cluster moves to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Which migration: the dual overlay (default) or one of the EKS profiles.
    #[serde(default)]
    pub mode: TargetMode,
    /// Cilium version, e.g. `1.17.3`.
    pub cilium_version: CiliumVersion,
    /// Cilium's cluster-pool CIDRs: new, and disjoint from everything in use. Not used in
    /// `eks-eni`, where pods take VPC addresses from the nodes' ENIs.
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Vec<IpNet>,
    /// Per-node block size (`clusterPoolIPv4MaskSize`).
    #[serde(default = "default_mask_size")]
    pub mask_size: u8,
    /// Cilium's overlay.
    #[serde(default)]
    pub tunnel: Tunnel,
    /// Spare per-node blocks the pool must have beyond the current node count: a count or a
    /// percentage of the nodes (at least one block is always required).
    #[serde(default = "default_headroom")]
    pub headroom: IntOrString,
    /// The kubelet's CNI configuration directory on the hosts.
    #[serde(default = "default_cni_conf_dir")]
    pub cni_conf_dir: String,
    /// EKS settings (`eks-eni` and `eks-overlay` only).
    #[serde(default)]
    pub eni: Option<Eni>,
}

/// `target.mode`: which of Cilium's procedures the plan follows.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// Cilium beside the old CNI on its own pool and tunnel; nodes move one at a time through
    /// the CiliumNodeConfig.
    #[default]
    DualOverlay,
    /// EKS with Cilium managing ENIs (`ipam.mode=eni`, native routing): pods keep VPC
    /// addresses, so both CNIs' pods route natively; Cilium takes every node's CNI over at
    /// install and the old pods are restarted node by node.
    EksEni,
    /// EKS with Cilium's cluster-pool overlay beside the VPC CNI, egress SNAT to the node's VPC
    /// address; nodes move one at a time as in the dual overlay.
    EksOverlay,
}

impl TargetMode {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::DualOverlay => "dual-overlay",
            TargetMode::EksEni => "eks-eni",
            TargetMode::EksOverlay => "eks-overlay",
        }
    }

    /// Whether Cilium runs its own overlay (a cluster pool and a tunnel) during the migration.
    pub fn is_overlay(self) -> bool {
        !matches!(self, TargetMode::EksEni)
    }

    /// Whether this is one of the EKS profiles.
    pub fn is_eks(self) -> bool {
        matches!(self, TargetMode::EksEni | TargetMode::EksOverlay)
    }
}

impl fmt::Display for TargetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `target.eni`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Eni {
    /// Cilium's `egressMasqueradeInterfaces`, e.g. `eth+` (Amazon Linux 2) or `ens+` (Amazon
    /// Linux 2023); omitted means chosen from the nodes' `osImage`.
    #[serde(default)]
    pub egress_masquerade_interfaces: Option<String>,
}

fn default_mask_size() -> u8 {
    24
}

fn default_headroom() -> IntOrString {
    IntOrString::String("10%".to_owned())
}

fn default_cni_conf_dir() -> String {
    "/etc/cni/net.d".to_owned()
}

/// `target.tunnel`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tunnel {
    /// `vxlan` or `geneve`.
    #[serde(default)]
    pub protocol: TunnelProtocol,
    /// UDP port; omitted means Cilium's default for the protocol.
    #[serde(default)]
    pub port: Option<u16>,
}

impl Tunnel {
    /// The port Cilium will actually use.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.protocol.default_port())
    }
}

/// Cilium's tunnel protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelProtocol {
    /// VXLAN, default port 8472.
    #[default]
    Vxlan,
    /// Geneve, default port 6081.
    Geneve,
}

impl TunnelProtocol {
    /// Cilium's default UDP port for the protocol (`pkg/defaults/defaults.go`).
    pub fn default_port(self) -> u16 {
        match self {
            TunnelProtocol::Vxlan => 8472,
            TunnelProtocol::Geneve => 6081,
        }
    }
}

impl fmt::Display for TunnelProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelProtocol::Vxlan => "vxlan",
            TunnelProtocol::Geneve => "geneve",
        })
    }
}

/// `rollout`: how nodes are admitted, drained, rebooted and verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Nodes migrated first, alone, before the soak.
    #[serde(default = "default_canary")]
    pub canary: u32,
    /// Nodes in flight at once after the canaries: a count or a percentage of the nodes.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
    /// Wait after the canaries (and re-verification) before the rest.
    #[serde(default)]
    pub soak: HumanDuration,
    /// Drain options.
    #[serde(default)]
    pub drain: Drain,
    /// Reboot hook, run per node after the agent restart.
    #[serde(default)]
    pub reboot: Option<Reboot>,
    /// Verification probe.
    #[serde(default)]
    pub verify: Verify,
    /// What happens to nodes that join the cluster while the migration runs.
    #[serde(default, skip_serializing_if = "NewNodes::is_migrate")]
    pub new_nodes: NewNodes,
    /// Maintenance windows: nodes are admitted only inside one (always, when none is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// Gates asked before each admission (Prometheus).
    #[serde(default, skip_serializing_if = "Gates::is_empty")]
    pub gates: Gates,
    /// How much unhealth the run tolerates (NotReady nodes, failed nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_budget: Option<HealthBudget>,
}

/// `rollout.newNodes`: nodes that join while the migration runs (autoscalers, node groups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewNodes {
    /// Migrated like every other node (admission, canary and `maxUnavailable` rules apply).
    #[default]
    Migrate,
    /// Held: the run stops at a gate naming them; `resume --retry NODE` migrates one.
    Hold,
}

impl NewNodes {
    /// The default (left out of the spec's serialized form, so fingerprints of specs written
    /// before the field existed do not change).
    pub fn is_migrate(&self) -> bool {
        *self == NewNodes::Migrate
    }
}

fn default_canary() -> u32 {
    1
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            canary: default_canary(),
            max_unavailable: default_max_unavailable(),
            soak: HumanDuration::default(),
            drain: Drain::default(),
            reboot: None,
            verify: Verify::default(),
            new_nodes: NewNodes::default(),
            windows: Vec::new(),
            gates: Gates::default(),
            health_budget: None,
        }
    }
}

impl Rollout {
    /// `maxUnavailable` resolved against the node count: at least 1, at most `nodes`.
    pub fn max_in_flight(&self, nodes: usize) -> usize {
        let total = i64::try_from(nodes).unwrap_or(i64::MAX);
        let n = self.max_unavailable.resolve(total, false).unwrap_or(1);
        usize::try_from(n.clamp(1, total.max(1))).unwrap_or(1)
    }

    /// `healthBudget.maxFailedNodes` (0 without a budget: the first failure stops the run).
    pub fn max_failed_nodes(&self) -> usize {
        self.health_budget
            .as_ref()
            .map_or(0, |b| b.max_failed_nodes as usize)
    }
}

/// `rollout.drain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drain {
    /// Global deadline for one node's drain.
    #[serde(default = "default_drain_timeout")]
    pub timeout: HumanDuration,
    /// Evict pods with emptyDir volumes (their data is lost), like `--delete-emptydir-data`.
    #[serde(default)]
    pub delete_empty_dir_data: bool,
    /// Evict pods no controller will recreate (they are lost), like kubectl's `--force`.
    #[serde(default)]
    pub allow_unreplicated: bool,
    /// Override every pod's termination grace period (seconds); omitted keeps each pod's own.
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
}

fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            timeout: default_drain_timeout(),
            delete_empty_dir_data: false,
            allow_unreplicated: false,
            grace_period_seconds: None,
        }
    }
}

/// `rollout.reboot`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reboot {
    /// The command, as an argument vector; `{node}` is replaced by the node name.
    pub command: Vec<String>,
    /// How long the node may take to come back Ready.
    #[serde(default = "default_reboot_timeout")]
    pub timeout: HumanDuration,
}

fn default_reboot_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(900))
}

/// `rollout.verify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verify {
    /// Image of the probe pod (needs `ip`, `curl` and `sh`).
    #[serde(default = "default_verify_image")]
    pub image: String,
    /// How long verification may take per node.
    #[serde(default = "default_verify_timeout")]
    pub timeout: HumanDuration,
}

fn default_verify_image() -> String {
    "nicolaka/netshoot:v0.13".to_owned()
}

fn default_verify_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            image: default_verify_image(),
            timeout: default_verify_timeout(),
        }
    }
}

/// `finalize`: the switch to Cilium as the only CNI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Finalize {
    /// Keep `bpf.hostLegacyRouting: true` after the migration (false switches to eBPF host
    /// routing, which briefly interrupts each node as its agent restarts).
    #[serde(default)]
    pub host_legacy_routing: bool,
    /// Reboot every node once more at the end, through the reboot hook, to clear the old CNI's
    /// interfaces and iptables rules.
    #[serde(default)]
    pub rolling_reboot: bool,
    /// Without a rolling reboot: remove the old CNI's leftovers on every node once it is
    /// removed (Flannel's and Calico's iptables chains, devices and routes), with a privileged
    /// host-network pod per node (default true; false leaves them until each node reboots).
    #[serde(default = "yes")]
    pub clean_old_cni: bool,
}

fn yes() -> bool {
    true
}

impl Default for Finalize {
    fn default() -> Self {
        Self {
            host_legacy_routing: false,
            rolling_reboot: false,
            clean_old_cni: true,
        }
    }
}
