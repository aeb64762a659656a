//! The prelude: what happens once, before any node moves.
//!
//! ```text
//! preflight ─► [patch-aws-node] ─► cilium-installed ─► [node-config]
//!                 EKS profiles         helm, values-     overlay modes: the CiliumNodeConfig,
//!                                      migration.yaml    selecting no node yet
//! ```

use super::{
    eks,
    link::Link,
    node::pod_cidrs,
    types::{Phase, Step, StepKind},
};
use crate::{
    commands::helm_command,
    facts::NetworkFacts,
    names::{CILIUM_NAMESPACE, MIGRATION_LABEL, NODE_CONFIG_NAME},
    spec::{MigrationSpec, TargetMode},
    values,
};

/// The prelude's steps, and the id of the last one (what the first nodes wait for).
pub(super) fn steps(spec: &MigrationSpec, facts: &NetworkFacts) -> (Vec<Step>, &'static str) {
    let mode = spec.target.mode;
    let mut steps = vec![preflight().global(Phase::Prelude, vec![])];
    let mut installed_after = "preflight";
    if mode.is_eks() {
        steps.push(eks::patch_aws_node(mode).global(Phase::Prelude, vec!["preflight".to_owned()]));
        installed_after = "patch-aws-node";
    }
    steps.push(
        cilium_installed(spec, facts).global(Phase::Prelude, vec![installed_after.to_owned()]),
    );
    if !mode.is_overlay() {
        return (steps, "cilium-installed");
    }
    steps
        .push(node_config(spec, facts).global(Phase::Prelude, vec!["cilium-installed".to_owned()]));
    (steps, "node-config")
}

/// Re-check the findings against the live cluster.
fn preflight() -> Link {
    Link::new(
        StepKind::Preflight,
        60,
        "re-run every preflight check against the live cluster; any error stops here".to_owned(),
        vec![format!(
            "cni-migrate plan --spec <spec> # expect no error findings"
        )],
    )
}

/// Install Cilium with the migration values and wait for its agents.
fn cilium_installed(spec: &MigrationSpec, facts: &NetworkFacts) -> Link {
    let mode = spec.target.mode;
    let egress = if mode.is_eks() {
        format!(
            ", egress masqueraded on {}",
            values::egress_masquerade_interfaces(spec, facts)
        )
    } else {
        String::new()
    };
    Link::new(
        StepKind::CiliumInstalled,
        900,
        if mode == TargetMode::EksEni {
            format!(
                "install Cilium {} in ENI mode (ipam eni, native routing{egress}, policy enforcement off, no unmanaged-pod restarts): every agent writes its CNI configuration as it becomes Ready, so new pods on every node get ENI addresses from Cilium",
                spec.target.cilium_version
            )
        } else {
            format!(
                "install Cilium {} in migration mode (customConf, policy enforcement off, pool {}, {} port {}{egress}) and wait for the agents",
                spec.target.cilium_version,
                pod_cidrs(spec),
                spec.target.tunnel.protocol,
                spec.target.tunnel.effective_port()
            )
        },
        vec![
            "helm repo add cilium https://helm.cilium.io/".to_owned(),
            helm_command(spec, "values-migration.yaml"),
            format!("kubectl -n {CILIUM_NAMESPACE} rollout status ds/cilium --timeout=15m"),
        ],
    )
}

/// Apply the migration `CiliumNodeConfig`, which selects no node until the first is labelled.
fn node_config(spec: &MigrationSpec, facts: &NetworkFacts) -> Link {
    let (version, why) = values::node_config_api(spec, facts);
    Link::new(
        StepKind::NodeConfig,
        60,
        format!(
            "apply CiliumNodeConfig {CILIUM_NAMESPACE}/{NODE_CONFIG_NAME} ({version}: {why}), selecting nodes labelled {MIGRATION_LABEL}=true (none yet)"
        ),
        vec!["kubectl apply --server-side -f ciliumnodeconfig.yaml".to_owned()],
    )
}
