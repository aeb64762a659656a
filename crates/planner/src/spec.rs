//! The user's `MigrationSpec`: what to migrate to, and how fast.
//!
//! ```yaml
//! apiVersion: cni-migrate.io/v1alpha1
//! kind: MigrationSpec
//! metadata: {name: kind-flannel}
//! target:
//!   ciliumVersion: 1.17.3
//!   podCIDRs: [10.245.0.0/16]
//!   maskSize: 24
//!   tunnel: {protocol: vxlan, port: 8473}
//! rollout:
//!   canary: 1
//!   maxUnavailable: 1
//!   soak: 30s
//!   drain: {timeout: 10m, deleteEmptyDirData: false, allowUnreplicated: false}
//!   reboot: {command: ["docker", "restart", "{node}"]}
//!   verify: {image: nicolaka/netshoot:v0.13}
//! ```
//!
//! Parsing is strict: unknown fields are rejected with their path and the closest known field,
//! and every error names the file, line and column.

use std::{fmt, path::Path, str::FromStr, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{snapshot::IntOrString, yaml};

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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
}

/// A Cilium release version, `MAJOR.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CiliumVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl CiliumVersion {
    /// The `CiliumNodeConfig` API version this release serves and prefers: `cilium.io/v2` from
    /// 1.16, `cilium.io/v2alpha1` before.
    pub fn node_config_api_version(self) -> &'static str {
        if (self.major, self.minor) >= (1, 16) {
            "cilium.io/v2"
        } else {
            "cilium.io/v2alpha1"
        }
    }

    /// Whether this release is one the migration procedure supports (1.14 and later: the
    /// `routingMode`/`tunnelProtocol` values).
    pub fn is_supported(self) -> bool {
        (self.major, self.minor) >= (1, 14)
    }
}

impl fmt::Display for CiliumVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for CiliumVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches('v');
        let parts: Vec<&str> = t.split('.').collect();
        let bad =
            || format!("`{s}` is not a Cilium version: expected MAJOR.MINOR.PATCH such as 1.17.3");
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(Self {
            major: n(parts[0])?,
            minor: n(parts[1])?,
            patch: n(parts[2])?,
        })
    }
}

impl Serialize for CiliumVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CiliumVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_yaml::Value::deserialize(d)?;
        let text = match &raw {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a version string such as \"1.17.3\"",
                ));
            }
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written as `30s`, `10m`, `1h30m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_yaml::Value::deserialize(d)?;
        match &raw {
            serde_yaml::Value::String(s) => humantime::parse_duration(s.trim())
                .map(HumanDuration)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a duration ({e}): write it like 30s, 10m or 1h30m"
                    ))
                }),
            serde_yaml::Value::Number(n) if n.as_u64() == Some(0) => Ok(HumanDuration::default()),
            _ => Err(serde::de::Error::custom(
                "expected a duration with a unit, like 30s, 10m or 1h30m",
            )),
        }
    }
}

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid spec: parse error, unknown field, wrong type or bad value.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Line, from 1 (0 when unknown).
        line: usize,
        /// Column, from 1 (0 when unknown).
        column: usize,
        /// The field's path, e.g. `rollout.drain.timeout` (`.` for the document).
        field: String,
        /// What was expected, and what to do.
        message: String,
    },
}

impl MigrationSpec {
    /// Reads and validates a spec file.
    ///
    /// # Errors
    /// [`SpecError::Read`] when the file cannot be read; [`SpecError::Invalid`] naming the file,
    /// line, column and field otherwise.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates a spec from YAML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`SpecError::Invalid`] naming the origin, line, column and field.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SpecError> {
        let spec: MigrationSpec = yaml::from_str_with_path(text).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.inner();
            let loc = yaml::location(inner);
            let mut message = strip_location(&inner.to_string());
            if let Some(hint) = unknown_field_hint(&message) {
                message = hint;
            }
            let (line, column) = match loc {
                Some(l) => (l.line, l.column),
                None => locate(text, &field).unwrap_or((0, 0)),
            };
            SpecError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        spec.validate().map_err(|(field, message)| {
            let (line, column) = locate(text, &field).unwrap_or((0, 0));
            SpecError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        Ok(spec)
    }

    /// Checks values that parse but make no sense. Returns the field path and the message.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, msg: String| Err((field.to_owned(), msg));
        if self.api_version != API_VERSION {
            return err(
                "apiVersion",
                format!("expected `{API_VERSION}`, found `{}`", self.api_version),
            );
        }
        if self.kind != KIND {
            return err("kind", format!("expected `{KIND}`, found `{}`", self.kind));
        }
        if self.metadata.name.trim().is_empty() {
            return err("metadata.name", "must not be empty".to_owned());
        }
        if !self.target.cilium_version.is_supported() {
            return err(
                "target.ciliumVersion",
                format!(
                    "Cilium {} is too old: the dual-overlay migration needs 1.14 or later",
                    self.target.cilium_version
                ),
            );
        }
        let mode = self.target.mode;
        if !mode.is_overlay() && !self.target.pod_cidrs.is_empty() {
            return err(
                "target.podCIDRs",
                "not used in eks-eni: Cilium gives pods VPC addresses from the nodes' ENIs; \
                 remove target.podCIDRs (or use mode: eks-overlay for a cluster pool)"
                    .to_owned(),
            );
        }
        if mode.is_overlay() && self.target.pod_cidrs.is_empty() {
            return err(
                "target.podCIDRs",
                "at least one CIDR is required, e.g. [10.245.0.0/16]".to_owned(),
            );
        }
        if !mode.is_eks() && self.target.eni.is_some() {
            return err(
                "target.eni",
                format!(
                    "only used with mode eks-eni or eks-overlay (this spec's mode is {mode}): remove it or set target.mode"
                ),
            );
        }
        if let Some(pattern) = self
            .target
            .eni
            .as_ref()
            .and_then(|e| e.egress_masquerade_interfaces.as_deref())
            && (pattern.trim().is_empty() || pattern.contains(char::is_whitespace))
        {
            return err(
                "target.eni.egressMasqueradeInterfaces",
                format!("`{pattern}` is not an interface pattern: write one such as eth+ or ens+"),
            );
        }
        for (i, cidr) in self.target.pod_cidrs.iter().enumerate() {
            if cidr.trunc() != *cidr {
                return err(
                    &format!("target.podCIDRs[{i}]"),
                    format!("{cidr} has host bits set: write it as {}", cidr.trunc()),
                );
            }
            let max = cidr.max_prefix_len();
            if self.target.mask_size <= cidr.prefix_len() || self.target.mask_size > max {
                return err(
                    "target.maskSize",
                    format!(
                        "{} does not fit {cidr}: it must be longer than /{} and at most /{max}",
                        self.target.mask_size,
                        cidr.prefix_len()
                    ),
                );
            }
        }
        if self.target.tunnel.port == Some(0) {
            return err(
                "target.tunnel.port",
                "must be between 1 and 65535".to_owned(),
            );
        }
        if self
            .target
            .headroom
            .resolve(100, true)
            .is_none_or(|h| h < 0)
        {
            return err(
                "target.headroom",
                format!("`{}` is not a count or a percentage", self.target.headroom),
            );
        }
        if !self.target.cni_conf_dir.starts_with('/') {
            return err("target.cniConfDir", "must be an absolute path".to_owned());
        }
        match self.rollout.max_unavailable.resolve(100, false) {
            Some(n) if n >= 1 => {}
            Some(_) => {
                return err(
                    "rollout.maxUnavailable",
                    format!(
                        "`{}` would allow no node in flight: use a count of at least 1 or a \
                         percentage (rounded down, at least one node is always allowed)",
                        self.rollout.max_unavailable
                    ),
                );
            }
            None => {
                return err(
                    "rollout.maxUnavailable",
                    format!(
                        "`{}` is neither a count nor a percentage such as \"10%\"",
                        self.rollout.max_unavailable
                    ),
                );
            }
        }
        if self.rollout.drain.timeout.0.is_zero() {
            return err(
                "rollout.drain.timeout",
                "must be more than 0s: a drain without a deadline can hang on a PDB forever"
                    .to_owned(),
            );
        }
        if self
            .rollout
            .drain
            .grace_period_seconds
            .is_some_and(|g| g < 0)
        {
            return err(
                "rollout.drain.gracePeriodSeconds",
                "must be 0 or more".to_owned(),
            );
        }
        if let Some(reboot) = &self.rollout.reboot {
            if reboot.command.is_empty() || reboot.command[0].trim().is_empty() {
                return err(
                    "rollout.reboot.command",
                    "must name a program, e.g. [\"docker\", \"restart\", \"{node}\"]".to_owned(),
                );
            }
            if !reboot.command.iter().any(|a| a.contains("{node}")) {
                return err(
                    "rollout.reboot.command",
                    "must contain `{node}` somewhere, or every node would run the same command"
                        .to_owned(),
                );
            }
        }
        if self.finalize.rolling_reboot && self.rollout.reboot.is_none() {
            return err(
                "finalize.rollingReboot",
                "needs rollout.reboot.command to know how to reboot a node".to_owned(),
            );
        }
        if self.rollout.verify.image.trim().is_empty() {
            return err("rollout.verify.image", "must not be empty".to_owned());
        }
        Ok(())
    }
}

/// serde_yaml appends " at line L column C" to its messages; the CLI prints the location
/// in front instead.
fn strip_location(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // serde_yaml also puts the path in front ("rollout: unknown field"); the error names the
    // full path already.
    match msg.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && !head.contains(' ') && !head.contains('`') => {
            rest.to_owned()
        }
        _ => msg.to_owned(),
    }
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a message that also
/// suggests the closest known field.
fn unknown_field_hint(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&field.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(match best {
        Some((_, k)) => format!("unknown field `{field}`: did you mean `{k}`? (known: {list})"),
        None => format!("unknown field `{field}` (known: {list})"),
    })
}

/// Finds the line and column of a field path such as `rollout.drain.timeout` or
/// `target.podCIDRs[1]` in block or flow YAML, by following indentation. A best effort for
/// errors found after parsing, when the YAML parser no longer knows where a value came from.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let keys: Vec<&str> = path
        .split('.')
        .map(|k| k.split('[').next().unwrap_or(k))
        .filter(|k| !k.is_empty())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for key in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start().trim_start_matches("- ");
            if i > start && !trimmed.is_empty() && !trimmed.starts_with('#') && indent < min_indent
            {
                break;
            }
            // Block style `key:` at the start of the line, or flow style `{..., key: ...}`.
            if trimmed.starts_with(&format!("{key}:")) {
                hit = Some((i, indent));
                break;
            }
            if let Some(col) = line.find(&format!("{key}:")) {
                let before = line[..col].chars().last();
                if matches!(before, Some('{' | ' ' | ',')) && line[..col].contains('{') {
                    hit = Some((i, col));
                    break;
                }
            }
        }
        let (i, col) = hit?;
        found = Some((i + 1, col + 1));
        start = i;
        min_indent = col + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"apiVersion: cni-migrate.io/v1alpha1
kind: MigrationSpec
metadata: {name: kind-flannel}
target:
  ciliumVersion: 1.17.3
  podCIDRs: [10.245.0.0/16]
  maskSize: 24
  tunnel: {protocol: vxlan, port: 8473}
rollout:
  canary: 1
  maxUnavailable: 1
  soak: 30s
  drain: {timeout: 10m, deleteEmptyDirData: false, allowUnreplicated: false}
  reboot: {command: ["docker", "restart", "{node}"]}
  verify: {image: nicolaka/netshoot:v0.13}
"#;

    #[test]
    fn target_mode_rules() {
        let parse = |target: &str| {
            MigrationSpec::from_yaml(
                &format!(
                    "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\ntarget:\n{target}"
                ),
                "spec.yaml",
            )
        };
        let s = parse("  mode: eks-eni\n  ciliumVersion: 1.17.3\n").unwrap();
        assert_eq!(s.target.mode, TargetMode::EksEni);
        assert!(s.target.pod_cidrs.is_empty());
        assert_eq!(
            parse("  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n")
                .unwrap()
                .target
                .mode,
            TargetMode::DualOverlay
        );
        let err = |target: &str| parse(target).unwrap_err().to_string();
        let e = err("  mode: eks-eni\n  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n");
        assert!(
            e.starts_with("spec.yaml:7:") && e.contains("target.podCIDRs: not used in eks-eni"),
            "{e}"
        );
        let e = err("  mode: eks-overlay\n  ciliumVersion: 1.17.3\n");
        assert!(e.contains("target.podCIDRs: at least one CIDR"), "{e}");
        let e = err(
            "  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n  eni: {egressMasqueradeInterfaces: eth+}\n",
        );
        assert!(
            e.contains("target.eni: only used with mode eks-eni or eks-overlay"),
            "{e}"
        );
        let e = err(
            "  mode: eks-eni\n  ciliumVersion: 1.17.3\n  eni: {egressMasqueradeInterfaces: \"eth0 eth1\"}\n",
        );
        assert!(e.contains("target.eni.egressMasqueradeInterfaces"), "{e}");
        let e = err("  mode: eks\n  ciliumVersion: 1.17.3\n");
        assert!(e.contains("target.mode") && e.contains("eks-eni"), "{e}");
    }

    #[test]
    fn the_issue_example_parses() {
        let spec = MigrationSpec::from_yaml(GOOD, "spec.yaml").unwrap();
        assert_eq!(spec.target.cilium_version.to_string(), "1.17.3");
        assert_eq!(spec.target.tunnel.effective_port(), 8473);
        assert_eq!(spec.rollout.soak.0, Duration::from_secs(30));
        assert_eq!(spec.rollout.drain.timeout.0, Duration::from_secs(600));
        assert_eq!(
            spec.target.cilium_version.node_config_api_version(),
            "cilium.io/v2"
        );
    }

    #[test]
    fn omitted_port_means_cilium_default_for_the_protocol() {
        let text = GOOD.replace("{protocol: vxlan, port: 8473}", "{protocol: geneve}");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.target.tunnel.effective_port(), 6081);
        let text = GOOD.replace("  tunnel: {protocol: vxlan, port: 8473}\n", "");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.target.tunnel.effective_port(), 8472);
    }

    #[test]
    fn unknown_field_names_path_line_and_suggestion() {
        let text = GOOD.replace("maxUnavailable: 1", "maxUnavaliable: 1");
        let err = MigrationSpec::from_yaml(&text, "plans/x.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("plans/x.yaml:11:"), "{err}");
        assert!(err.contains("rollout.maxUnavaliable"), "{err}");
        assert!(err.contains("did you mean `maxUnavailable`"), "{err}");
    }

    #[test]
    fn bad_duration_names_field() {
        let text = GOOD.replace("soak: 30s", "soak: thirty");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rollout.soak"), "{err}");
        assert!(err.contains("30s, 10m"), "{err}");
    }

    #[test]
    fn validation_errors_are_located() {
        let text = GOOD.replace("maskSize: 24", "maskSize: 12");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:7:3: target.maskSize:"), "{err}");
        let text = GOOD.replace("port: 8473", "port: 0");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:8:"), "{err}");
        assert!(err.contains("target.tunnel.port"), "{err}");
    }

    #[test]
    fn wrong_api_version_and_kind_are_refused() {
        let err = MigrationSpec::from_yaml(&GOOD.replace("v1alpha1", "v9"), "s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("apiVersion") && err.contains("cni-migrate.io/v1alpha1"),
            "{err}"
        );
        let err = MigrationSpec::from_yaml(&GOOD.replace("kind: MigrationSpec", "kind: Plan"), "s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn percent_max_unavailable_resolves_with_a_floor_of_one() {
        let text = GOOD.replace("maxUnavailable: 1", "maxUnavailable: \"10%\"");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.rollout.max_in_flight(1000), 100);
        assert_eq!(spec.rollout.max_in_flight(3), 1);
        let bad = GOOD.replace("maxUnavailable: 1", "maxUnavailable: \"ten%\"");
        assert!(MigrationSpec::from_yaml(&bad, "s").is_err());
    }

    #[test]
    fn reboot_command_must_mention_node() {
        let text = GOOD.replace(r#"["docker", "restart", "{node}"]"#, r#"["reboot"]"#);
        let err = MigrationSpec::from_yaml(&text, "s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rollout.reboot.command") && err.contains("{node}"),
            "{err}"
        );
    }

    #[test]
    fn old_cilium_is_refused_and_cnc_version_follows_release() {
        let text = GOOD.replace("1.17.3", "1.13.4");
        assert!(MigrationSpec::from_yaml(&text, "s").is_err());
        let v: CiliumVersion = "1.15.7".parse().unwrap();
        assert_eq!(v.node_config_api_version(), "cilium.io/v2alpha1");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = MigrationSpec::from_yaml(&text, "fuzz");
        }

        #[test]
        fn mutated_valid_specs_never_panic(cut in 0usize..800, insert in "[ -~\\n]{0,12}") {
            let mut text = GOOD.to_owned();
            let at = text.char_indices().map(|(i, _)| i).nth(cut % GOOD.len()).unwrap_or(0);
            text.insert_str(at, &insert);
            let _ = MigrationSpec::from_yaml(&text, "fuzz");
        }

        #[test]
        fn any_value_in_any_field_is_an_error_or_a_valid_spec(
            field in proptest::sample::select(vec!["maskSize: 24", "canary: 1", "soak: 30s", "port: 8473", "ciliumVersion: 1.17.3", "maxUnavailable: 1"]),
            value in "[ -~]{0,16}",
        ) {
            let key = field.split(':').next().unwrap_or_default();
            let text = GOOD.replace(field, &format!("{key}: {value}"));
            if let Ok(spec) = MigrationSpec::from_yaml(&text, "fuzz") {
                proptest::prop_assert!(spec.validate().is_ok());
            }
        }
    }

    #[test]
    fn empty_and_garbage_inputs_are_errors_not_panics() {
        for text in ["", "---", "[]", "{", "apiVersion: [", "\u{0}", "target: 5"] {
            assert!(MigrationSpec::from_yaml(text, "s").is_err(), "{text:?}");
        }
    }
}
