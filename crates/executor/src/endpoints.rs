//! Which pods Cilium manages: a pod off the host network is Cilium's when a CiliumEndpoint of
//! its name holds one of its IPs (what `cilium status` counts). Used by the EKS restart of
//! unmanaged pods, the final check and `cni-migrate status`.

use std::{collections::BTreeMap, net::IpAddr};

use cluster::{Cluster, ClusterError};
use planner::snapshot::PodInfo;

/// CiliumEndpoint IPs by pod (`namespace`, `name`).
#[derive(Clone, Debug, Default)]
pub struct Endpoints(BTreeMap<(String, String), Vec<IpAddr>>);

impl Endpoints {
    /// Every CiliumEndpoint in the cluster.
    ///
    /// # Errors
    /// An API failure.
    pub async fn list(cluster: &dyn Cluster) -> Result<Self, ClusterError> {
        let eps = cluster.cilium_endpoints().await?;
        Ok(Self(
            eps.into_iter()
                .map(|e| ((e.namespace, e.name), e.ips))
                .collect(),
        ))
    }

    /// Whether the pod has an endpoint holding one of its IPs.
    pub fn covers(&self, p: &PodInfo) -> bool {
        self.0
            .get(&(p.namespace.clone(), p.name.clone()))
            .is_some_and(|ips| p.pod_ips.iter().any(|ip| ips.contains(ip)))
    }
}

/// A pod that needs an endpoint: off the host network, running with an IP, not finishing.
pub fn on_pod_network(p: &PodInfo) -> bool {
    !p.host_network && !p.terminating && !p.phase.is_finished() && !p.pod_ips.is_empty()
}
