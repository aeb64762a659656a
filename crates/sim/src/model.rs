//! The model behind the API: a scheduler, kubelets and the workload controllers, reacting to
//! the store's change events the way the real components react to watches.
//!
//! ```text
//! store events ─► pod without a node ──────► scheduler: bind to a Ready, schedulable node
//!             ├─► pod bound, not running ──► kubelet: after `pod_start`, Running + Ready + an IP
//!             └─► pod deleted ─────────────► ReplicaSet: a replacement (new name)
//!                                            StatefulSet: the same name, a new UID
//!                                            DaemonSet: a new pod on the same node
//! ```
//!
//! Also: the garbage collector (a deleted DaemonSet, Deployment, ReplicaSet or StatefulSet takes
//! what it owned along), the Tigera operator's uninstall (deleting the `Installation`
//! removes calico-system's DaemonSets and Deployments), and Cilium's CiliumEndpoints (one per
//! pod started on a node whose CNI is Cilium, gone with the pod).
//!
//! A node's CNI directory is its annotation `sim.cni-migrate.io/cni` (`cilium` once an agent
//! wrote `05-cilium.conflist`). As on a real node, an agent that no longer writes it does not
//! remove it (`cni.uninstall=false`): only the restore pod a rollback runs (label
//! `cni-migrate.io/restore-cni=true`) puts the old configuration back.
//!
//! Ways a node can fail, set as the node's annotation `sim.cni-migrate.io/fault` (comma list):
//! - `agent-stuck`: a Cilium agent starting on the node once it carries the migration label
//!   crash-loops (an agent that never comes back);
//! - `cnc-ignored`: the node's agent does not see CiliumNodeConfigs (it stays on the old CNI
//!   though its CiliumNode looks right).
//!
//! Cilium's operator is modelled as far as the migration meets it: a CiliumNode per agent (a
//! block of the cluster pool, or in ENI mode fifty addresses of the node's own /24 above .200),
//! and the `node.cilium.io/agent-not-ready` taint removed once the node's agent is up. aws-node
//! marks the node annotation `sim.cni-migrate.io/vpc-cni-nat` `present` where it starts; the
//! tool's flush pod (label `cni-migrate.io/flush-vpc-cni=true`) sets it to `flushed`. The
//! DaemonSet controller honours `nodeSelector` and follows node label changes.
//!
//! Per-node agent configuration (a CiliumNodeConfig that turns `enable-host-legacy-routing`
//! off, say) is resolved at agent start and kept on the agent pod, where the datapath reads it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::store::{Event, Store, now_rfc3339};

/// How the model behaves.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// From binding to Running and Ready.
    pub pod_start: Duration,
    /// Spread of pod start times: each start takes `pod_start` times a log-normal factor of
    /// this sigma (0: every pod takes exactly `pod_start`), so starts vary as they do on real
    /// nodes (image pulls, probes).
    pub spread: f64,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            pod_start: Duration::from_millis(200),
            spread: 0.0,
        }
    }
}

/// The node annotation that stands for its CNI directory.
pub const CNI_ANNOTATION: &str = "sim.cni-migrate.io/cni";
/// The node annotation listing its faults.
pub const FAULT_ANNOTATION: &str = "sim.cni-migrate.io/fault";
/// The node annotation for the VPC CNI's nat chains: `present` once aws-node started on the
/// node, `flushed` once the tool's flush pod ran there.
pub const VPC_NAT_ANNOTATION: &str = "sim.cni-migrate.io/vpc-cni-nat";
/// The pod annotation naming the overlay a pod started on (`cilium` or `old`).
pub const OVERLAY_ANNOTATION: &str = "sim.cni-migrate.io/overlay";
/// The agent pod annotation holding its resolved `enable-host-legacy-routing`.
pub const LEGACY_ROUTING_ANNOTATION: &str = "sim.cni-migrate.io/enable-host-legacy-routing";
const ENDPOINTS: &str = "cilium.io/ciliumendpoints";

fn is_ready_node(n: &Value) -> bool {
    n["spec"]["unschedulable"] != true
        && n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether a DaemonSet's `nodeSelector` selects a node.
fn ds_selects(ds: &Value, node: &Value) -> bool {
    ds["spec"]["template"]["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| node["metadata"]["labels"][k.as_str()] == *v)
}

fn has_node_selector(ds: &Value) -> bool {
    ds["spec"]["template"]["spec"]["nodeSelector"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
}

fn tolerates_all_taints(pod: &Value, node: &Value) -> bool {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] != "PreferNoSchedule")
        .all(|t| {
            tolerations.iter().any(|tol| {
                (tol["operator"] == "Exists" && (tol["key"].is_null() || tol["key"] == t["key"]))
                    || (tol["key"] == t["key"] && tol["value"] == t["value"])
            })
        })
}

/// The model's state: per-node IP counters.
struct Model {
    store: Arc<Store>,
    opts: ModelOptions,
    next_ip: HashMap<String, u32>,
    rng: u64,
}

/// A median-preserving log-normal factor of `sigma`, clamped to [0.2, 5], from a xorshift state.
pub fn lognormal_factor(state: &mut u64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return 1.0;
    }
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        #[allow(clippy::cast_precision_loss)] // a uniform draw in (0, 1)
        let u = ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        u
    };
    let (u1, u2) = (next(), next());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (sigma * z).exp().clamp(0.2, 5.0)
}

impl Model {
    fn node_value(&self, name: &str) -> Option<Value> {
        self.store.get("/nodes", "", name).map(|s| s.value())
    }

    /// The next pod IP on a node: from its podCIDR when it has one, else a per-node /24 of
    /// 10.250.0.0/16.
    fn allocate_ip(&mut self, node: &str) -> String {
        let n = {
            let n = self.next_ip.entry(node.to_owned()).or_insert(100);
            *n += 1;
            *n
        };
        let host = n % 250 + 2;
        let on_cilium = self
            .node_value(node)
            .is_some_and(|v| v["metadata"]["annotations"][CNI_ANNOTATION] == "cilium");
        if on_cilium
            && let Some(cn) = self.store.get("cilium.io/ciliumnodes", "", node)
            && let Some(pool) = cn.value()["spec"]["ipam"]["pool"].as_object()
            && !pool.is_empty()
        {
            // ENI mode: the next address of the node's ENI pool.
            let ips: Vec<&String> = pool.keys().collect();
            let i = usize::try_from(n).unwrap_or(0) % ips.len();
            return ips[i].clone();
        }
        let cidr = if on_cilium {
            self.store
                .get("cilium.io/ciliumnodes", "", node)
                .and_then(|cn| {
                    cn.value()["spec"]["ipam"]["podCIDRs"][0]
                        .as_str()
                        .map(str::to_owned)
                })
        } else {
            self.node_value(node)
                .and_then(|v| v["spec"]["podCIDR"].as_str().map(str::to_owned))
        };
        match cidr.as_deref().and_then(|c| c.strip_suffix(".0/24")) {
            Some(prefix) => format!("{prefix}.{host}"),
            None => {
                let idx = node
                    .bytes()
                    .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)))
                    % 250;
                format!("10.250.{idx}.{host}")
            }
        }
    }

    fn pick_node(&self, pod: &Value) -> Option<String> {
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let (_, pods, _) = self.store.list("/pods", None, None, None, &|_, _| true);
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for (_, p) in &pods {
            if let Some(n) = &p.node_name {
                *load.entry(n.clone()).or_default() += 1;
            }
        }
        nodes
            .iter()
            .map(|(_, n)| n.value())
            .filter(|n| is_ready_node(n) && tolerates_all_taints(pod, n))
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()))
    }

    fn on_event(&mut self, e: &Event) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        if e.type_ == "DELETED" {
            // The garbage collector: what a deleted controller owned goes with it.
            if matches!(
                e.key.as_str(),
                "apps/daemonsets" | "apps/deployments" | "apps/replicasets" | "apps/statefulsets"
            ) {
                out.push((
                    Duration::ZERO,
                    Action::Collect {
                        namespace: e.namespace.clone(),
                        uid: e.object.value()["metadata"]["uid"].clone(),
                    },
                ));
            }
            // The Tigera operator removes what it installed when its Installation goes.
            if e.key == "operator.tigera.io/installations" {
                out.push((Duration::ZERO, Action::TigeraUninstall));
            }
        }
        if e.key == "apps/daemonsets" && e.type_ != "DELETED" {
            out.push((
                Duration::ZERO,
                Action::Daemonset {
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                },
            ));
            return out;
        }
        // The DaemonSet controller follows node labels for DaemonSets with a node selector.
        if e.key == "/nodes" && e.type_ == "MODIFIED" {
            let (_, dss, _) = self
                .store
                .list("apps/daemonsets", None, None, None, &|_, s| {
                    has_node_selector(&s.value())
                });
            for ((namespace, name), _) in dss {
                out.push((Duration::ZERO, Action::Daemonset { namespace, name }));
            }
            return out;
        }
        if e.key != "/pods" {
            return out;
        }
        // The disruption controller: budgets in the pod's namespace follow their pods.
        out.push((
            Duration::ZERO,
            Action::Budgets {
                namespace: e.namespace.clone(),
                labels: (*e.object.labels).clone(),
            },
        ));
        // A DaemonSet's status follows its pods.
        let pod_v = e.object.value();
        if let Some(owner) = pod_v["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true && o["kind"] == "DaemonSet")
        {
            out.push((
                Duration::ZERO,
                Action::DaemonsetStatus {
                    namespace: e.namespace.clone(),
                    name: owner["name"].as_str().unwrap_or_default().to_owned(),
                },
            ));
        }
        let pod = e.object.value();
        match e.type_ {
            "ADDED" | "MODIFIED" if pod["metadata"]["deletionTimestamp"].is_null() => {
                let running = pod["status"]["phase"] == "Running"
                    || pod["status"]["phase"] == "Succeeded"
                    || pod["status"]["phase"] == "Failed";
                if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                    out.push((
                        Duration::ZERO,
                        Action::Bind {
                            namespace: e.namespace.clone(),
                            name: e.name.clone(),
                        },
                    ));
                } else if !running {
                    let factor = lognormal_factor(&mut self.rng, self.opts.spread);
                    out.push((
                        self.opts.pod_start.mul_f64(factor),
                        Action::Start {
                            namespace: e.namespace.clone(),
                            name: e.name.clone(),
                            uid: pod["metadata"]["uid"].clone(),
                        },
                    ));
                }
            }
            "DELETED" => {
                out.push((
                    Duration::ZERO,
                    Action::DropEndpoint {
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                        uid: pod["metadata"]["uid"].clone(),
                    },
                ));
                out.push((Duration::ZERO, Action::Replace { pod }));
            }
            _ => {}
        }
        out
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::Collect { namespace, uid } => {
                for key in ["apps/replicasets", "/pods"] {
                    let (_, owned, _) =
                        self.store.list(key, Some(&namespace), None, None, &|_, s| {
                            s.value()["metadata"]["ownerReferences"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|o| o["uid"] == uid)
                        });
                    for ((ns, name), _) in owned {
                        let _ = self.store.delete(key, &ns, &name, false);
                    }
                }
            }
            Action::TigeraUninstall => {
                for key in ["apps/daemonsets", "apps/deployments"] {
                    let (_, objects, _) =
                        self.store
                            .list(key, Some("calico-system"), None, None, &|_, _| true);
                    for ((ns, name), _) in objects {
                        let _ = self.store.delete(key, &ns, &name, false);
                    }
                }
            }
            Action::Bind { namespace, name } => {
                let Some(s) = self.store.get("/pods", &namespace, &name) else {
                    return;
                };
                let mut pod = s.value();
                if !pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                    return;
                }
                let Some(node) = self.pick_node(&pod) else {
                    return;
                };
                pod["spec"]["nodeName"] = json!(node);
                pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}]);
                let _ = self.store.update("/pods", pod, Some(s.rv), false);
            }
            Action::Start {
                namespace,
                name,
                uid,
            } => {
                let Some(s) = self.store.get("/pods", &namespace, &name) else {
                    return;
                };
                let mut pod = s.value();
                if pod["metadata"]["uid"] != uid
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
                    self.node_value(&node)
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
                        .node_value(&node)
                        .is_some_and(|v| v["metadata"]["annotations"][CNI_ANNOTATION] == "cilium");
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
                let Ok(mut pod) = self.store.update("/pods", pod, Some(s.rv), false) else {
                    return;
                };
                if on_cilium {
                    self.endpoint(&pod, &ip, &node);
                }
                if flush {
                    let was = self.node_value(&node).and_then(|n| {
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
                    self.store.set_log(&namespace, &name, log.to_owned());
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
                    self.store.set_log(&namespace, &name, log);
                    pod["status"]["phase"] = json!("Succeeded");
                    pod["status"]["conditions"] =
                        json!([{"type": "Ready", "status": "False", "reason": "PodCompleted"}]);
                    let _ = self.store.update("/pods", pod, None, false);
                }
            }
            Action::Replace { pod } => self.replace(&pod),
            Action::DropEndpoint {
                namespace,
                name,
                uid,
            } => {
                let owned = self
                    .store
                    .get(ENDPOINTS, &namespace, &name)
                    .is_some_and(|c| c.value()["metadata"]["ownerReferences"][0]["uid"] == uid);
                if owned {
                    let _ = self.store.delete(ENDPOINTS, &namespace, &name, false);
                }
            }
            Action::Budgets { namespace, labels } => self.budgets(&namespace, &labels),
            Action::Daemonset { namespace, name } => self.reconcile_daemonset(&namespace, &name),
            Action::DaemonsetStatus { namespace, name } => self.daemonset_status(&namespace, &name),
        }
    }

    /// What the Cilium agent does when its pod starts on a node: the operator gives the node a
    /// CiliumNode with a block of the cluster pool; the agent resolves `cilium-config` plus the
    /// CiliumNodeConfigs that select the node (by name order, later wins) only now, at start;
    /// a tunnel port the old overlay already uses makes it crash-loop; and it takes over the
    /// node's CNI only if the resolved config has it write its CNI configuration.
    fn cilium_agent_starts(&mut self, node: &str, pod: &mut Value) {
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
    fn set_vpc_nat(&mut self, node: &str, state: &str) {
        if let Some(mut n) = self.node_value(node)
            && n["metadata"]["annotations"][VPC_NAT_ANNOTATION] != state
        {
            n["metadata"]["annotations"][VPC_NAT_ANNOTATION] = json!(state);
            let _ = self.store.update("/nodes", n, None, false);
        }
    }

    /// The CiliumEndpoint of a pod started on a Cilium node.
    fn endpoint(&mut self, pod: &Value, ip: &str, node: &str) {
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
    fn restore_cni(&mut self, node: &str) -> String {
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
    fn old_overlay_ports(&self) -> Vec<u16> {
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
    fn next_block(&mut self, config: &BTreeMap<String, String>) -> Option<String> {
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

    /// PodDisruptionBudget status as the disruption controller keeps it: expected pods (from
    /// the controllers' scale when known), healthy pods, desired healthy, disruptions allowed.
    fn budgets(&mut self, namespace: &str, pod_labels: &BTreeMap<String, String>) {
        // Only the budgets that select the pod that changed.
        let (_, pdbs, _) = self.store.list(
            "policy/poddisruptionbudgets",
            Some(namespace),
            None,
            None,
            &|_, s| {
                let v = s.value();
                v["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|ml| {
                        !ml.is_empty()
                            && ml.iter().all(|(k, val)| {
                                pod_labels.get(k).map(String::as_str) == val.as_str()
                            })
                    })
            },
        );
        for (_, stored) in pdbs {
            let mut pdb = stored.value();
            let Some(ml) = pdb["spec"]["selector"]["matchLabels"].as_object().cloned() else {
                continue;
            };
            if ml.is_empty() {
                continue;
            }
            let (_, members, _) = self
                .store
                .list("/pods", Some(namespace), None, None, &|_, s| {
                    ml.iter()
                        .all(|(k, v)| s.labels.get(k).map(String::as_str) == v.as_str())
                });
            let members: Vec<Value> = members.into_iter().map(|(_, s)| s.value()).collect();
            let mut scale = 0;
            let mut seen = std::collections::BTreeSet::new();
            for m in &members {
                for o in m["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| o["controller"] == true)
                {
                    let key = match o["kind"].as_str() {
                        Some("ReplicaSet") => "apps/replicasets",
                        Some("StatefulSet") => "apps/statefulsets",
                        _ => continue,
                    };
                    let name = o["name"].as_str().unwrap_or_default().to_owned();
                    if seen.insert((key, name.clone())) {
                        scale += self
                            .store
                            .get(key, namespace, &name)
                            .and_then(|c| c.value()["spec"]["replicas"].as_i64())
                            .unwrap_or(0);
                    }
                }
            }
            let expected = i64::try_from(members.len()).unwrap_or(0).max(scale);
            let healthy = i64::try_from(
                members
                    .iter()
                    .filter(|p| {
                        p["metadata"]["deletionTimestamp"].is_null()
                            && p["status"]["conditions"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                    .count(),
            )
            .unwrap_or(0);
            let resolve = |v: &Value, round_up: bool| -> Option<i64> {
                match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => {
                        let p: i64 = s.trim().strip_suffix('%')?.parse().ok()?;
                        Some(if round_up {
                            (p * expected + 99) / 100
                        } else {
                            p * expected / 100
                        })
                    }
                    _ => None,
                }
            };
            let desired = match pdb["spec"].get("maxUnavailable") {
                Some(max) if !max.is_null() => expected - resolve(max, true).unwrap_or(0),
                _ => resolve(&pdb["spec"]["minAvailable"], true).unwrap_or(1),
            };
            let status = json!({"currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": (healthy - desired).max(0),
                "expectedPods": expected, "observedGeneration": pdb["metadata"]["generation"].clone()});
            if pdb["status"]["currentHealthy"] == status["currentHealthy"]
                && pdb["status"]["disruptionsAllowed"] == status["disruptionsAllowed"]
                && pdb["status"]["expectedPods"] == status["expectedPods"]
                && pdb["status"]["desiredHealthy"] == status["desiredHealthy"]
            {
                continue;
            }
            pdb["status"] = status;
            let _ = self
                .store
                .update("policy/poddisruptionbudgets", pdb, Some(stored.rv), false);
        }
    }

    fn daemonset_pods(&self, namespace: &str, name: &str) -> Vec<Value> {
        let (_, pods, _) = self
            .store
            .list("/pods", Some(namespace), None, None, &|_, _| true);
        pods.into_iter()
            .map(|(_, s)| s.value())
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| {
                        o["controller"] == true && o["kind"] == "DaemonSet" && o["name"] == name
                    })
            })
            .collect()
    }

    fn revision(v: &Value) -> Value {
        v["spec"]["template"]["metadata"]["annotations"]["cni-migrate.io/helm-revision"].clone()
    }

    /// One pod per eligible node; pods of an older template revision are replaced (all at once:
    /// the rolling pace is not modelled).
    fn reconcile_daemonset(&mut self, namespace: &str, name: &str) {
        let Some(ds) = self
            .store
            .get("apps/daemonsets", namespace, name)
            .map(|s| s.value())
        else {
            return;
        };
        let revision = Self::revision(&ds);
        let pods = self.daemonset_pods(namespace, name);
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let template_pod = json!({"spec": ds["spec"]["template"]["spec"].clone()});
        for (_, n) in nodes {
            let node = n.value();
            let node_name = node["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !tolerates_all_taints(&template_pod, &node) {
                continue;
            }
            let mine: Vec<&Value> = pods
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] == node_name.as_str()
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .collect();
            // A node the node selector leaves out loses its pod.
            if !ds_selects(&ds, &node) {
                for old in &mine {
                    let _ = self.store.delete(
                        "/pods",
                        namespace,
                        old["metadata"]["name"].as_str().unwrap_or_default(),
                        false,
                    );
                }
                continue;
            }
            // Dumps carry DaemonSets without our revision annotation: their pods are current
            // (a node newly selected still gets one).
            if revision.is_null() && (!mine.is_empty() || !has_node_selector(&ds)) {
                continue;
            }
            let current = mine
                .iter()
                .any(|p| p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] == revision);
            for old in mine.iter().filter(|p| {
                p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] != revision
            }) {
                let _ = self.store.delete(
                    "/pods",
                    namespace,
                    old["metadata"]["name"].as_str().unwrap_or_default(),
                    false,
                );
            }
            if current {
                continue;
            }
            let labels = if ds["spec"]["template"]["metadata"]["labels"].is_null() {
                json!({})
            } else {
                ds["spec"]["template"]["metadata"]["labels"].clone()
            };
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": format!("{name}-"), "namespace": namespace, "labels": labels,
                             "annotations": ds["spec"]["template"]["metadata"]["annotations"].clone(),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": ds["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
                "spec": ds["spec"]["template"]["spec"].clone(),
                "status": {"phase": "Pending"}});
            pod["spec"]["nodeName"] = json!(node_name);
            let _ = self.store.create("/pods", pod, false);
        }
        self.daemonset_status(namespace, name);
    }

    fn daemonset_status(&mut self, namespace: &str, name: &str) {
        let Some(s) = self.store.get("apps/daemonsets", namespace, name) else {
            return;
        };
        let mut ds = s.value();
        let revision = Self::revision(&ds);
        let pods: Vec<Value> = self
            .daemonset_pods(namespace, name)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let template_pod = json!({"spec": ds["spec"]["template"]["spec"].clone()});
        let desired = nodes
            .iter()
            .filter(|(_, n)| {
                tolerates_all_taints(&template_pod, &n.value()) && ds_selects(&ds, &n.value())
            })
            .count();
        let ready = pods
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        let updated = pods
            .iter()
            .filter(|p| {
                revision.is_null()
                    || p["metadata"]["annotations"]["cni-migrate.io/helm-revision"] == revision
            })
            .count();
        let status = json!({"currentNumberScheduled": pods.len(), "desiredNumberScheduled": desired, "numberAvailable": ready, "numberReady": ready,
            "numberMisscheduled": 0, "updatedNumberScheduled": updated, "observedGeneration": ds["metadata"]["generation"].clone()});
        if ds["status"] == status {
            return;
        }
        ds["status"] = status;
        let _ = self.store.update("apps/daemonsets", ds, Some(s.rv), false);
    }

    /// The workload controllers' answer to a deleted pod.
    fn replace(&mut self, pod: &Value) {
        let Some(owner) = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
            .cloned()
        else {
            return;
        };
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let owner_name = owner["name"].as_str().unwrap_or_default().to_owned();
        let kind = owner["kind"].as_str().unwrap_or_default();
        let (key, owner_key_ns) = match kind {
            "ReplicaSet" => ("apps/replicasets", ns.clone()),
            "StatefulSet" => ("apps/statefulsets", ns.clone()),
            "DaemonSet" => ("apps/daemonsets", ns.clone()),
            _ => return,
        };
        // A controller that no longer exists recreates nothing.
        let Some(controller) = self
            .store
            .get(key, &owner_key_ns, &owner_name)
            .map(|s| s.value())
        else {
            return;
        };
        let (_, siblings, _) = self.store.list("/pods", Some(&ns), None, None, &|_, s| {
            let v = s.value();
            v["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| {
                    o["controller"] == true && o["name"] == owner_name.as_str() && o["kind"] == kind
                })
                && v["metadata"]["deletionTimestamp"].is_null()
        });
        let mut fresh = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "labels": pod["metadata"]["labels"].clone(), "ownerReferences": [owner]},
            "spec": controller["spec"]["template"]["spec"].clone(),
            "status": {"phase": "Pending"},
        });
        if fresh["spec"].is_null() {
            // Dumps and synthetic clusters may carry controllers without a template: reuse the
            // deleted pod's own spec.
            fresh["spec"] = pod["spec"].clone();
        }
        if let Some(spec) = fresh["spec"].as_object_mut() {
            spec.remove("nodeName");
        }
        match kind {
            "ReplicaSet" => {
                let want = controller["spec"]["replicas"].as_u64().unwrap_or(1);
                if u64::try_from(siblings.len()).unwrap_or(u64::MAX) >= want {
                    return;
                }
                fresh["metadata"]["generateName"] = json!(format!("{owner_name}-"));
            }
            "StatefulSet" => {
                fresh["metadata"]["name"] = pod["metadata"]["name"].clone();
            }
            _ => {
                let node = pod["spec"]["nodeName"].clone();
                let node_v = node.as_str().and_then(|n| self.node_value(n));
                // A node the DaemonSet no longer selects gets no replacement.
                let exists = node_v.as_ref().is_some_and(|n| ds_selects(&controller, n));
                // One pod per node: a rolling update may already have made the new one.
                let has_one = siblings
                    .iter()
                    .any(|(_, s)| s.value()["spec"]["nodeName"] == node);
                if !exists || has_one {
                    return;
                }
                fresh["spec"]["nodeName"] = node;
                fresh["metadata"]["generateName"] = json!(format!("{owner_name}-"));
                // The current template's annotations carry its revision: the replacement is
                // current, not a pod for the rollout to replace again.
                let annotations = &controller["spec"]["template"]["metadata"]["annotations"];
                if !annotations.is_null() {
                    fresh["metadata"]["annotations"] = annotations.clone();
                }
                let labels = &controller["spec"]["template"]["metadata"]["labels"];
                if !labels.is_null() {
                    fresh["metadata"]["labels"] = labels.clone();
                }
            }
        }
        let _ = self.store.create("/pods", fresh, false);
    }
}

enum Action {
    /// Garbage collection of what a deleted controller owned.
    Collect {
        namespace: String,
        uid: Value,
    },
    /// The Tigera operator's uninstall of calico-system.
    TigeraUninstall,
    Budgets {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    Daemonset {
        namespace: String,
        name: String,
    },
    DaemonsetStatus {
        namespace: String,
        name: String,
    },
    Bind {
        namespace: String,
        name: String,
    },
    Start {
        namespace: String,
        name: String,
        uid: Value,
    },
    Replace {
        pod: Value,
    },
    /// Cilium removes a deleted pod's CiliumEndpoint.
    DropEndpoint {
        namespace: String,
        name: String,
        uid: Value,
    },
}

/// Starts the model on a store; it runs until the returned task is aborted.
pub fn start(store: Arc<Store>, opts: ModelOptions) -> JoinHandle<()> {
    let mut rx = store.subscribe();
    let (tx, mut actions) = tokio::sync::mpsc::unbounded_channel::<Action>();
    let mut model = Model {
        store,
        opts,
        next_ip: HashMap::new(),
        rng: 0x9e37_79b9_7f4a_7c15,
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        for (delay, action) in model.on_event(&e) {
                            if delay.is_zero() {
                                model.run(action);
                            } else {
                                let tx = tx.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    let _ = tx.send(action);
                                });
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(n, "model lagged behind the store's events"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                Some(action) = actions.recv() => model.run(action),
            }
        }
    })
}
