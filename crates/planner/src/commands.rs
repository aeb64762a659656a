//! The kubectl, helm and shell command lines the plan shows beside its steps (and the executor
//! runs or prints): what a reviewer would type to do the same by hand.
//!
//! ```text
//! MigrationSpec, node name ─► command line (one string, quoted for a POSIX shell)
//!                                 │
//!                                 ├─► plan steps' `commands`, the runbook
//!                                 ├─► preflight fixes (aws-node patch, nat flush)
//!                                 └─► the executor (helm line at a gate, reboot hook)
//! ```
//!
//! Every word that comes from the spec or the cluster goes through [`shell_quote`], so a
//! command copied from a plan runs as shown.

use std::time::Duration;

use crate::{
    names::{AWS_NODE_LABEL, CILIUM_NAMESPACE, VPC_CNI_NAT_CHAINS},
    spec::MigrationSpec,
};

/// Whole seconds, at least one: kubectl reads `--timeout=0s` as "no deadline".
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Quotes one word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The reboot command for a node, `{node}` substituted, as a shell line.
pub fn reboot_command_line(command: &[String], node: &str) -> String {
    command
        .iter()
        .map(|w| shell_quote(&w.replace("{node}", node)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The arguments after the Helm program, for a values file: the one definition of the Helm
/// call, which the executor runs and [`helm_command`] prints.
pub fn helm_args(spec: &MigrationSpec, values_file: &str) -> Vec<String> {
    [
        "upgrade",
        "--install",
        "cilium",
        "cilium/cilium",
        "--namespace",
        CILIUM_NAMESPACE,
        "--version",
        &spec.target.cilium_version.to_string(),
        "-f",
        values_file,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The helm command line the executor runs (or a human runs at a gate) for a values file.
pub fn helm_command(spec: &MigrationSpec, values_file: &str) -> String {
    std::iter::once("helm".to_owned())
        .chain(helm_args(spec, values_file))
        .map(|w| shell_quote(&w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The probe the verify step runs, as the Cilium guide writes it.
pub fn verify_command(spec: &MigrationSpec, node: &str) -> String {
    let overrides = format!(
        r#"{{"spec": {{"nodeName": "{node}", "tolerations": [{{"operator": "Exists"}}]}}}}"#
    );
    format!(
        "kubectl -n {CILIUM_NAMESPACE} run --attach --rm --restart=Never verify-network --overrides={} --image {} -- /bin/bash -c {}",
        shell_quote(&overrides),
        shell_quote(&spec.rollout.verify.image),
        shell_quote("ip -br addr && curl -s -k https://$KUBERNETES_SERVICE_HOST/healthz && echo"),
    )
}

/// `kubectl drain` with the spec's drain options.
pub(crate) fn drain_command(spec: &MigrationSpec, node: &str) -> String {
    let mut cmd = format!("kubectl drain {node} --ignore-daemonsets");
    if spec.rollout.drain.delete_empty_dir_data {
        cmd.push_str(" --delete-emptydir-data");
    }
    if spec.rollout.drain.allow_unreplicated {
        cmd.push_str(" --force");
    }
    if let Some(g) = spec.rollout.drain.grace_period_seconds {
        cmd.push_str(&format!(" --grace-period={g}"));
    }
    cmd.push_str(&format!(
        " --timeout={}s",
        secs(spec.rollout.drain.timeout.0)
    ));
    cmd
}

/// The patch that confines aws-node to nodes labelled [`AWS_NODE_LABEL`]`=true`.
pub fn aws_node_patch() -> serde_json::Value {
    serde_json::json!({"spec": {"template": {"spec": {"nodeSelector": {AWS_NODE_LABEL: "true"}}}}})
}

/// The kubectl command of [`aws_node_patch`].
pub fn aws_node_patch_command() -> String {
    format!(
        "kubectl -n kube-system patch daemonset aws-node --type=strategic -p {}",
        shell_quote(&aws_node_patch().to_string())
    )
}

/// The nat flush of Cilium's EKS overlay guide, tolerant of chains already gone.
pub fn flush_vpc_cni_command() -> String {
    VPC_CNI_NAT_CHAINS
        .iter()
        .map(|c| format!("iptables -t nat -F {c}"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// What a rollback's restore pod runs in the node's CNI directory (mounted at
/// `/host/etc/cni/net.d`): the old CNI's files Cilium renamed to `*.cilium_bak` get their names
/// back, and Cilium's own configuration goes, so the kubelet picks the old CNI again. The
/// executor's restore pod runs this same script.
pub const RESTORE_CNI_SCRIPT: &str = r#"set -e; cd /host/etc/cni/net.d; for f in *.cilium_bak; do [ -e "$f" ] || continue; mv -f "$f" "${f%.cilium_bak}"; echo "restored ${f%.cilium_bak}"; done; for f in 05-cilium.conflist 05-cilium.conf; do if [ -e "$f" ]; then rm -f "$f"; echo "removed $f"; fi; done"#;

/// The rollback's CNI restore as one `kubectl run`: a privileged host-network pod pinned to the
/// node, with the node's CNI directory (`target.cniConfDir`) mounted, running
/// the restore script.
pub fn restore_cni_command(spec: &MigrationSpec, node: &str) -> String {
    let overrides = serde_json::json!({"spec": {
        "nodeName": node,
        "hostNetwork": true,
        "tolerations": [{"operator": "Exists"}],
        "containers": [{
            "name": "restore-cni",
            "image": spec.rollout.verify.image,
            "command": ["/bin/sh", "-c", RESTORE_CNI_SCRIPT],
            "securityContext": {"privileged": true},
            "volumeMounts": [{"name": "cni-conf", "mountPath": "/host/etc/cni/net.d"}],
        }],
        "volumes": [{
            "name": "cni-conf",
            "hostPath": {"path": spec.target.cni_conf_dir, "type": "Directory"},
        }],
    }});
    format!(
        "kubectl -n {CILIUM_NAMESPACE} run --attach --rm --restart=Never restore-cni --image {} --override-type=strategic --overrides={}",
        shell_quote(&spec.rollout.verify.image),
        shell_quote(&overrides.to_string()),
    )
}

/// The script of the old CNI's cleanup pod on a node (privileged, host network): it removes
/// exactly what the old CNI leaves behind when it is deleted without a reboot, prints
/// `removed WHAT` for each thing it removed and `failed WHAT` for each it could not, and
/// `done` at the end. Re-running it finds nothing to do.
///
/// - Flannel: the `FLANNEL-POSTRTG` (nat) and `FLANNEL-FWD` (filter) chains and the rules that
///   jump to them, the `flannel.1`, `flannel-wg` and `cni0` devices;
/// - Calico: every `cali-` chain in the raw, mangle, nat and filter tables and the rules that
///   jump to them, the `vxlan.calico` and `vxlan-v6.calico` devices, `tunl0` taken down;
/// - both: the routes left inside the old pod network (`old_cidrs`).
pub fn old_cni_cleanup_script(cni: &str, old_cidrs: &[String]) -> String {
    let (chains, links) = if cni == "calico" {
        ("cali-", "vxlan.calico vxlan-v6.calico")
    } else {
        ("FLANNEL-", "flannel.1 flannel-wg cni0")
    };
    let mut s = format!(
        r#"for t in iptables-legacy iptables-nft; do command -v $t >/dev/null 2>&1 || continue; for tb in raw mangle nat filter; do $t -t $tb -S 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j {chains}' | sed 's/^-A/-D/' | while read -r r; do eval $t -t $tb $r && echo "removed $t $tb rule $r" || echo "failed $t $tb rule $r"; done; for c in $($t -t $tb -S 2>/dev/null | sed -n 's/^-N \({chains}[^ ]*\)$//p'); do $t -t $tb -F $c; done; for c in $($t -t $tb -S 2>/dev/null | sed -n 's/^-N \({chains}[^ ]*\)$//p'); do if $t -t $tb -X $c; then echo "removed $t $tb chain $c"; else echo "failed $t $tb chain $c"; fi; done; done; done; for l in {links}; do if ip link show $l >/dev/null 2>&1; then if ip link delete $l; then echo "removed link $l"; else echo "failed link $l"; fi; fi; done; "#
    );
    if cni == "calico" {
        s.push_str(r#"if ip link show tunl0 >/dev/null 2>&1; then ip link set tunl0 down && ip addr flush dev tunl0 && echo "removed link tunl0 (down, addresses flushed)"; fi; "#);
    }
    for cidr in old_cidrs {
        s.push_str(&format!(
            r#"ip route show root {cidr} | while read -r r; do if ip route del $r; then echo "removed route $r"; else echo "failed route $r"; fi; done; "#
        ));
    }
    s.push_str("echo done");
    s
}
