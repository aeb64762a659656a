//! A Cilium already installed: its `cilium-config`, which preflight holds against migration
//! mode, and which makes Cilium the source when no other CNI is found.

use crate::{facts::ExistingCilium, snapshot::ClusterSnapshot};

/// The installed Cilium, from kube-system/cilium-config; `None` when there is none.
pub(super) fn detect_cilium(snap: &ClusterSnapshot) -> Option<ExistingCilium> {
    let cm = snap.configmap("kube-system", "cilium-config")?;
    Some(ExistingCilium {
        namespace: "kube-system".to_owned(),
        config: cm.data.clone().unwrap_or_default().into_iter().collect(),
        agent_daemonset: snap.daemonset("kube-system", "cilium").is_some(),
    })
}
