//! Cilium as far as the migration meets it: the agent starting on a node (the CiliumNode the
//! operator hands out, the CiliumNodeConfigs resolved at start, the tunnel port check, the CNI
//! configuration it writes), CiliumEndpoints, aws-node's NAT rules and the rollback's restore pod.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ENDPOINTS, Model};
use crate::annotations::*;

impl Model {
    /// What the Cilium agent does when its pod starts on a node: the operator gives the node a
    /// CiliumNode with a block of the cluster pool; the agent resolves `cilium-config` plus the
    /// CiliumNodeConfigs that select the node (by name order, later wins) only now, at start;
    /// a tunnel port the old overlay already uses makes it crash-loop; and it takes over the
    /// node's CNI only if the resolved config has it write its CNI configuration.
    pub(super) fn cilium_agent_starts(&mut self, node: &str, pod: &mut Value) {
        let Some(node_v) = self.node_value(node) else {
            return;
        };
        let mut config: BTreeMap<String, String> = self
            .store
            .get("/configmaps", "kube-system", "cilium-config")
            .and_then(|c| serde_json::from_value(c.value()["data"].clone()).ok())
            .unwrap_or_default();
        let (_, cncs, _) = self.store.list(
            "cilium.io/ciliumnodeconfigs",
            Some("kube-system"),
            None,
            None,
            &|_, _| true,
        );
        let labels = node_v["metadata"]["labels"].clone();
        let faults: Vec<String> = node_v["metadata"]["annotations"][FAULT_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(|f| f.trim().to_owned())
            .collect();
        let fault = |f: &str| faults.iter().any(|x| x == f);
        for (_, cnc) in cncs.into_iter().filter(|_| !fault("cnc-ignored")) {
            let cnc = cnc.value();
            let Some(sel) = cnc["spec"]["nodeSelector"].as_object() else {
                continue;
            };
            let ml = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if ml.iter().all(|(k, v)| labels[k.as_str()] == *v)
                && let Some(defaults) = cnc["spec"]["defaults"].as_object()
            {
                for (k, v) in defaults {
                    config.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
                }
            }
        }
        // ENI mode: the operator attaches an ENI and gives the CiliumNode its addresses, in
        // the node's own VPC subnet (above .200 of its /24, which the old pods do not use).
        if config.get("ipam").is_some_and(|m| m == "eni")
            && self.store.get("cilium.io/ciliumnodes", "", node).is_none()
        {
            let internal = node_v["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok());
            if let Some(ip) = internal {
                let [a, b, c, _] = ip.octets();
                let eni = format!("eni-{:08x}", u32::from(ip));
                let pool: serde_json::Map<String, Value> = (200..250u8)
                    .map(|h| (format!("{a}.{b}.{c}.{h}"), json!({"resource": eni})))
                    .collect();
                let cn = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": node},
                    "spec": {"eni": {"first-interface-index": 1}, "ipam": {"pool": pool}, "addresses": node_v["status"]["addresses"].clone()}});
                let _ = self.store.create("cilium.io/ciliumnodes", cn, false);
            }
        }
        // The operator: a CiliumNode with the next free block of the pool.
        if self.store.get("cilium.io/ciliumnodes", "", node).is_none()
            && config.get("ipam").is_none_or(|m| m != "eni")
            && let Some(block) = self.next_block(&config)
        {
            let cn = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": node},
                "spec": {"ipam": {"podCIDRs": [block]}, "addresses": node_v["status"]["addresses"].clone()}});
            let _ = self.store.create("cilium.io/ciliumnodes", cn, false);
        }
        let protocol = config
            .get("tunnel-protocol")
            .cloned()
            .unwrap_or_else(|| "vxlan".into());
        let port: u16 = config
            .get("tunnel-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(if protocol == "geneve" { 6081 } else { 8472 });
        let pod_name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        pod["metadata"]["annotations"][LEGACY_ROUTING_ANNOTATION] = json!(
            config
                .get("enable-host-legacy-routing")
                .cloned()
                .unwrap_or_else(|| "false".into())
        );
        let labelled = labels["io.cilium.migration/cilium-default"] == "true";
        if fault("agent-stuck") && labelled {
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
            pod["status"]["containerStatuses"] = json!([{"name": "cilium-agent", "ready": false, "started": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}}]);
            self.store.set_log("kube-system", &pod_name,
                "level=fatal msg=\"failed to start: unable to initialize datapath (simulated fault agent-stuck)\"\n");
            return;
        }
        if self.old_overlay_ports().contains(&port) {
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
            pod["status"]["containerStatuses"] = json!([{"name": "cilium-agent", "ready": false, "started": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}}]);
            self.store.set_log("kube-system", &pod_name, format!(
                "level=fatal msg=\"failed to start: creating vxlan device cilium_{protocol}: address already in use (UDP {port})\"\n"));
            return;
        }
        let writes_cni = config.get("custom-cni-conf").is_some_and(|v| v == "false")
            && config.contains_key("write-cni-conf-when-ready");
        self.store.set_log(
            "kube-system",
            &pod_name,
            format!("level=info msg=\"agent ready\" cni-conf-written={writes_cni}\n"),
        );
        let mut node_v = node_v;
        let was = node_v["metadata"]["annotations"][CNI_ANNOTATION].as_str() == Some("cilium");
        let mut changed = false;
        // The agent (re)loads the node's datapath: its BPF programs stay when it stops, and
        // established endpoints keep forwarding through them until the next agent replaces them.
        let loaded = pod["metadata"]["annotations"][LEGACY_ROUTING_ANNOTATION].clone();
        if node_v["metadata"]["annotations"][DATAPATH_ANNOTATION] != loaded {
            node_v["metadata"]["annotations"][DATAPATH_ANNOTATION] = loaded;
            changed = true;
        }
        // An agent that stops writing its CNI configuration leaves it in place.
        if writes_cni && !was {
            node_v["metadata"]["annotations"][CNI_ANNOTATION] = json!("cilium");
            changed = true;
        }
        // The operator removes Cilium's agent-not-ready taint once the node's agent is up.
        if let Some(taints) = node_v["spec"]["taints"].as_array_mut() {
            let before = taints.len();
            taints.retain(|t| t["key"] != "node.cilium.io/agent-not-ready");
            changed |= taints.len() != before;
        }
        if changed {
            let _ = self.store.update("/nodes", node_v, None, false);
        }
    }

    /// Notes the state of the VPC CNI's nat chains on a node.
    pub(super) fn set_vpc_nat(&mut self, node: &str, state: &str) {
        if let Some(mut n) = self.node_value(node)
            && n["metadata"]["annotations"][VPC_NAT_ANNOTATION] != state
        {
            n["metadata"]["annotations"][VPC_NAT_ANNOTATION] = json!(state);
            let _ = self.store.update("/nodes", n, None, false);
        }
    }

    /// The CiliumEndpoint of a pod started on a Cilium node.
    pub(super) fn endpoint(&mut self, pod: &Value, ip: &str, node: &str) {
        let cep = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
            "metadata": {"namespace": pod["metadata"]["namespace"], "name": pod["metadata"]["name"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}]},
            "status": {"state": "ready", "networking": {"node": node, "addressing": [{"ipv4": ip}]},
                "policy": {"ingress": {"enforcing": false}, "egress": {"enforcing": false}}}});
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let _ = self.store.delete(ENDPOINTS, ns, name, false);
        let _ = self.store.create(ENDPOINTS, cep, false);
    }

    /// What the rollback's restore pod does on a node: `*.cilium_bak` renamed back and
    /// `05-cilium.conflist` removed; its log says which.
    pub(super) fn restore_cni(&mut self, node: &str) -> String {
        let Some(mut node_v) = self.node_value(node) else {
            return String::new();
        };
        if node_v["metadata"]["annotations"][CNI_ANNOTATION] != "cilium" {
            return "nothing to restore: no 05-cilium.conflist\n".into();
        }
        if let Some(a) = node_v["metadata"]["annotations"].as_object_mut() {
            a.remove(CNI_ANNOTATION);
        }
        let _ = self.store.update("/nodes", node_v, None, false);
        "restored 10-old.conflist\nremoved 05-cilium.conflist\n".into()
    }

    /// The old overlay's UDP ports, as the model knows them (Flannel's net-conf, Calico VXLAN).
    pub(super) fn old_overlay_ports(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for ns in ["kube-flannel", "kube-system"] {
            if let Some(cm) = self.store.get("/configmaps", ns, "kube-flannel-cfg") {
                let conf: Value = serde_json::from_str(
                    cm.value()["data"]["net-conf.json"].as_str().unwrap_or("{}"),
                )
                .unwrap_or(Value::Null);
                let backend = conf["Backend"]["Type"]
                    .as_str()
                    .unwrap_or("vxlan")
                    .to_lowercase();
                let port = conf["Backend"]["Port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok());
                match backend.as_str() {
                    "vxlan" => out.push(port.unwrap_or(8472)),
                    "udp" => out.push(port.unwrap_or(8285)),
                    _ => {}
                }
            }
        }
        let (_, pools, _) = self.store.list(
            "crd.projectcalico.org/ippools",
            None,
            None,
            None,
            &|_, _| true,
        );
        if pools.iter().any(|(_, p)| {
            matches!(
                p.value()["spec"]["vxlanMode"].as_str(),
                Some("Always" | "CrossSubnet")
            )
        }) {
            let felix = self
                .store
                .get("crd.projectcalico.org/felixconfigurations", "", "default")
                .map(|f| f.value());
            out.push(
                felix
                    .and_then(|f| f["spec"]["vxlanPort"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(4789),
            );
        }
        out
    }

    /// The next unallocated block of the cluster pool.
    pub(super) fn next_block(&mut self, config: &BTreeMap<String, String>) -> Option<String> {
        let mask: u8 = config
            .get("cluster-pool-ipv4-mask-size")
            .and_then(|m| m.parse().ok())
            .unwrap_or(24);
        let pools: Vec<ipnet::Ipv4Net> = config
            .get("cluster-pool-ipv4-cidr")?
            .split([' ', ','])
            .filter_map(|c| c.parse().ok())
            .collect();
        let (_, used, _) = self
            .store
            .list("cilium.io/ciliumnodes", None, None, None, &|_, _| true);
        let used: Vec<String> = used
            .iter()
            .flat_map(|(_, cn)| {
                cn.value()["spec"]["ipam"]["podCIDRs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
            })
            .collect();
        pools
            .iter()
            .filter_map(|p| p.subnets(mask).ok())
            .flatten()
            .map(|b| b.to_string())
            .find(|b| !used.contains(b))
    }
}

impl Model {
    /// A pod bound to a node whose CNI is Cilium while no agent is Ready there: the kubelet's
    /// CNI ADD fails, so the pod stays `ContainerCreating` with the plugin's error, and its
    /// sandbox is retried until an agent is Ready (then it starts as any pod does).
    pub(super) fn wait_for_cni(&mut self, mut pod: Value, rv: u64, node: &str) {
        let namespace = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let uid = pod["metadata"]["uid"].clone();
        if !super::waiting_for_cni(&pod) {
            let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "ready": false, "started": false, "restartCount": 0,
                                "state": {"waiting": {"reason": "ContainerCreating", "message": super::CNI_ADD_FAILED}}}))
                .collect();
            let now = crate::store::now_rfc3339();
            pod["status"]["containerStatuses"] = json!(statuses);
            pod["status"]["conditions"] = json!([
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now}]);
            tracing::debug!(%namespace, %name, node, "CNI ADD fails: no Ready Cilium agent");
            let _ = self.store.update("/pods", pod, Some(rv), false);
        }
        let retry = self
            .opts
            .pod_start
            .max(std::time::Duration::from_millis(100));
        self.later.push((
            retry,
            super::Action::Start {
                namespace,
                name,
                uid,
            },
        ));
    }
}

impl Model {
    /// Notes the old CNI's leftovers on a node (its agent started there).
    pub(super) fn set_leftovers(&mut self, node: &str, cni: &str) {
        if let Some(mut n) = self.node_value(node)
            && n["metadata"]["annotations"][LEFTOVERS_ANNOTATION] != cni
        {
            n["metadata"]["annotations"][LEFTOVERS_ANNOTATION] = json!(cni);
            let _ = self.store.update("/nodes", n, None, false);
        }
    }

    /// What the tool's cleanup pod does on a node: the old CNI's chains, devices and routes
    /// removed (its log says which), or nothing when none are left.
    pub(super) fn clean_leftovers(&mut self, node: &str) -> String {
        let Some(mut n) = self.node_value(node) else {
            return "done\n".into();
        };
        let log = match n["metadata"]["annotations"][LEFTOVERS_ANNOTATION].as_str() {
            Some("flannel") => {
                "removed iptables-nft nat rule -D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\nremoved iptables-nft nat chain FLANNEL-POSTRTG\nremoved iptables-nft filter chain FLANNEL-FWD\nremoved link flannel.1\nremoved link cni0\ndone\n"
            }
            Some("calico") => {
                "removed iptables-nft filter chain cali-INPUT\nremoved iptables-nft nat chain cali-nat-outgoing\nremoved link vxlan.calico\nremoved link tunl0 (down, addresses flushed)\ndone\n"
            }
            _ => "done\n",
        };
        if n["metadata"]["annotations"][LEFTOVERS_ANNOTATION].is_string() {
            n["metadata"]["annotations"][LEFTOVERS_ANNOTATION] = json!("cleaned");
            let _ = self.store.update("/nodes", n, None, false);
        }
        log.to_owned()
    }
}
