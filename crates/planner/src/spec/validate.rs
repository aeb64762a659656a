//! The checks on values that parse but make no sense: each returns the field's path and a
//! message that says what was expected and what to do.

use super::types::{API_VERSION, KIND, MigrationSpec};

impl MigrationSpec {
    /// Checks values that parse but make no sense. Returns the field path and the message.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
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
        super::controls::validate(
            &self.rollout.windows,
            &self.rollout.gates,
            self.rollout.health_budget.as_ref(),
        )
    }
}
