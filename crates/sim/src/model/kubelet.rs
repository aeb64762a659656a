//! The kubelet starting a pod: its IP (the node's podCIDR, Cilium's pool, or the node's own
//! address for host-network pods), its CNI (a pod on a node whose Cilium agent is not Ready
//! waits, as CNI ADD fails), its status, and what the tool's own pods do on the node when they
//! run (the probe's checks, the cleanup, the restore, the VPC CNI flush).

use serde_json::{Value, json};

use super::{CNI_ANNOTATION, Model, OVERLAY_ANNOTATION, VPC_NAT_ANNOTATION, old_cni_agent};
use crate::store::now_rfc3339;

impl Model {
    /// The kubelet starts the pod (see the module's text); a pod that changed meanwhile (another
    /// UID, running already, terminating) is left as it is.
    pub(super) fn start_pod(&mut self, namespace: &str, name: &str, uid: &Value) {
        let Some(s) = self.store.get("/pods", namespace, name) else {
            return;
        };
        if s.phase.as_deref() == Some("Running") || s.terminating {
            return;
        }
        let mut pod = s.value();
        if pod["metadata"]["uid"] != *uid
            || pod["status"]["phase"] == "Running"
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            return;
        }
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ip = if pod["spec"]["hostNetwork"] == true {
            self.node_shared(&node)
                .and_then(|n| {
                    n["status"]["addresses"]
                        .as_array()?
                        .iter()
                        .find(|a| a["type"] == "InternalIP")?["address"]
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_default()
        } else {
            self.allocate_ip(&node)
        };
        let on_cilium = pod["spec"]["hostNetwork"] != true
            && self
                .node_shared(&node)
                .is_some_and(|v| v["metadata"]["annotations"][CNI_ANNOTATION] == "cilium");
        if on_cilium && !crate::datapath::agent_ready(&self.store, &node) {
            self.wait_for_cni(pod, s.rv, &node);
            return;
        }
        if pod["spec"]["hostNetwork"] != true {
            pod["metadata"]["annotations"][OVERLAY_ANNOTATION] =
                json!(if on_cilium { "cilium" } else { "old" });
        }
        let now = now_rfc3339();
        pod["status"]["phase"] = json!("Running");
        pod["status"]["podIP"] = json!(ip);
        pod["status"]["podIPs"] = json!([{"ip": ip}]);
        pod["status"]["startTime"] = json!(now);
        pod["status"]["conditions"] = json!([
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]);
        let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}))
                .collect();
        pod["status"]["containerStatuses"] = json!(statuses);
        if pod["metadata"]["labels"]["k8s-app"] == "cilium" {
            self.cilium_agent_starts(&node, &mut pod);
        }
        let probe = pod["metadata"]["labels"]["cni-migrate.io/probe"] == "true";
        let restore = pod["metadata"]["labels"]["cni-migrate.io/restore-cni"] == "true";
        let flush = pod["metadata"]["labels"]["cni-migrate.io/flush-vpc-cni"] == "true";
        if pod["metadata"]["labels"]["k8s-app"] == "aws-node" {
            // aws-node (re)writes its nat chains on the node it starts on.
            self.set_vpc_nat(&node, "present");
        }
        // Flannel and calico-node write their chains, devices and routes.
        if let Some(cni) = old_cni_agent(&pod) {
            self.set_leftovers(&node, cni);
        }
        let cleanup = pod["metadata"]["labels"]["cni-migrate.io/clean-old-cni"] == "true";
        let Ok(mut pod) = self.store.update("/pods", pod, Some(s.rv), false) else {
            return;
        };
        if on_cilium {
            self.endpoint(&pod, &ip, &node);
        }
        if flush {
            let was = self.node_shared(&node).and_then(|n| {
                n["metadata"]["annotations"][VPC_NAT_ANNOTATION]
                    .as_str()
                    .map(str::to_owned)
            });
            let log = if was.as_deref() == Some("present") {
                "flushed iptables-legacy AWS-SNAT-CHAIN-0\nflushed iptables-legacy AWS-SNAT-CHAIN-1\nflushed iptables-legacy AWS-CONNMARK-CHAIN-0\nflushed iptables-legacy AWS-CONNMARK-CHAIN-1\ndone\n"
            } else {
                "done\n"
            };
            self.set_vpc_nat(&node, "flushed");
            self.store.set_log(namespace, name, log.to_owned());
            pod["status"]["phase"] = json!("Succeeded");
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "reason": "PodCompleted"}]);
            let _ = self.store.update("/pods", pod, None, false);
            return;
        }
        if cleanup {
            let log = self.clean_leftovers(&node);
            self.store.set_log(namespace, name, log);
            pod["status"]["phase"] = json!("Succeeded");
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "reason": "PodCompleted"}]);
            let _ = self.store.update("/pods", pod, None, false);
            return;
        }
        if probe || restore {
            // The verification probe runs its checks and exits; the restore pod puts
            // the old CNI configuration back and exits.
            let log = if probe {
                crate::datapath::probe_log(&self.store, &pod)
            } else {
                self.restore_cni(&node)
            };
            self.store.set_log(namespace, name, log);
            pod["status"]["phase"] = json!("Succeeded");
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "reason": "PodCompleted"}]);
            let _ = self.store.update("/pods", pod, None, false);
        }
    }
}
