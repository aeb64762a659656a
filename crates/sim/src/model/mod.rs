//! The model behind the API: a scheduler, kubelets and the workload controllers, reacting to
//! the store's change events the way the real components react to watches.
//!
//! ```text
//! store events ─► pod without a node ──────► scheduler: bind to a Ready, schedulable node
//!             ├─► pod bound, not running ──► kubelet: after `pod_start`, Running + Ready + an IP
//!             ├─► pod terminating ─────────► kubelet: not Ready (PodTerminating);
//!             │                              ReplicaSet: a replacement at once (new name)
//!             ├─► pod deleted ─────────────► StatefulSet: the same name, a new UID
//!             │                              DaemonSet: a new pod on the same node
//!             ├─► DaemonSet changed ───────► rolling update, status (see `daemonset`)
//!             ├─► budget or pod changed ───► disruption controller (see `budgets`)
//!             └─► node created / cordoned ─► node lifecycle: `not-ready` taint off once
//!                                            Ready, `unschedulable` taint on while cordoned
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

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use self::action::Action;
use crate::store::{Event, Store, now_rfc3339};

mod action;
mod budgets;
mod cilium;
mod daemonset;
mod kubelet;
mod replicas;
mod resync;
mod schedule;
mod template;
mod workloads;

/// How the model behaves.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// From binding to Running and Ready.
    pub pod_start: Duration,
    /// Spread of pod start times: each start takes `pod_start` times a log-normal factor of
    /// this sigma (0: every pod takes exactly `pod_start`), so starts vary as they do on real
    /// nodes (image pulls, probes).
    pub spread: f64,
    /// How often each Ready node's kubelet renews its Lease in `kube-node-lease` (the
    /// heartbeat; a real kubelet's is 10 s).
    pub heartbeat: Duration,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            pod_start: Duration::from_millis(200),
            spread: 0.0,
        }
    }
}

pub use crate::annotations::*;
const ENDPOINTS: &str = "cilium.io/ciliumendpoints";

fn is_pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The node's Ready condition alone (cordoning aside).
/// The kubelet's sandbox error on a node whose Cilium agent is not Ready (see
/// [`Model::wait_for_cni`]).
const CNI_ADD_FAILED: &str = "failed to setup network for sandbox: plugin type=\"cilium-cni\" failed (add): unable to connect to Cilium agent: the agent on this node is not Ready";

/// Whether a pod is held in `ContainerCreating` by a failing CNI ADD (its retries are the
/// model's, not the store events').
fn waiting_for_cni(pod: &Value) -> bool {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == CNI_ADD_FAILED
}

/// `flannel` or `calico` for a pod of the old CNI's agent DaemonSet.
fn old_cni_agent(pod: &Value) -> Option<&'static str> {
    let labels = &pod["metadata"]["labels"];
    if labels["app"] == "flannel" {
        Some("flannel")
    } else if labels["k8s-app"] == "calico-node" {
        Some("calico")
    } else {
        None
    }
}

fn is_ready_node_status(n: &Value) -> bool {
    n["status"]["conditions"]
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
        .map_or(&[][..], Vec::as_slice);
    schedule::tolerates(
        tolerations,
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["effect"] != "PreferNoSchedule"),
    )
}

/// The model's state: per-node IP counters, the DaemonSet templates seen, and actions to run
/// later.
struct Model {
    store: Arc<Store>,
    opts: ModelOptions,
    /// From a graceful deletion the model makes to the pod's disappearance.
    termination: Duration,
    next_ip: HashMap<String, u32>,
    rng: u64,
    templates: HashMap<(String, String), template::Template>,
    /// The nodes there were when the model started (a dump's).
    nodes_at_start: std::collections::BTreeSet<String>,
    later: Vec<(Duration, Action)>,
    /// Decoded nodes by name, with the resourceVersion they were decoded at.
    node_memo: std::cell::RefCell<HashMap<String, (u64, Arc<Value>)>>,
    /// The scheduler's view of the nodes, dropped when a node changes.
    candidates: std::cell::RefCell<Option<std::sync::Arc<Vec<schedule::Candidate>>>>,
    /// Decoded DaemonSet pods by DaemonSet and pod name, with their resourceVersions.
    daemonset_pod_memo: std::cell::RefCell<DaemonsetPods>,
    /// DaemonSets to reconcile once the events at hand are handled (a burst of their pods'
    /// events makes one reconcile, as a controller's work queue does).
    dirty_daemonsets: std::collections::BTreeSet<(String, String)>,
}

/// Decoded pods of each DaemonSet (see [`Model::daemonset_pods`]).
type DaemonsetPods = HashMap<(String, String), HashMap<String, (u64, Arc<Value>)>>;

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
    /// Deletes a pod as a controller does: a `deletionTimestamp` now, gone after the
    /// termination time (at once when it has no node or the time is zero).
    fn delete_gracefully(&mut self, namespace: &str, name: &str) {
        let Some(s) = self.store.get("/pods", namespace, name) else {
            return;
        };
        let mut pod = s.value();
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        if self.termination.is_zero() || pod["spec"]["nodeName"].is_null() {
            let _ = self.store.delete("/pods", namespace, name, false);
            return;
        }
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let uid = pod["metadata"]["uid"].clone();
        if self.store.update("/pods", pod, Some(s.rv), false).is_ok() {
            self.later.push((
                self.termination,
                Action::Remove {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid,
                },
            ));
        }
    }

    /// The kubelet's answer to a `deletionTimestamp`: the pod is no longer Ready.
    fn mark_terminating(&mut self, namespace: &str, name: &str) {
        let Some(s) = self.store.get("/pods", namespace, name) else {
            return;
        };
        let mut pod = s.value();
        if pod["metadata"]["deletionTimestamp"].is_null() || !is_pod_ready(&pod) {
            return;
        }
        let now = now_rfc3339();
        if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
            for c in conditions.iter_mut() {
                if c["type"] == "Ready" {
                    *c = json!({"type": "Ready", "status": "False", "reason": "PodTerminating", "lastTransitionTime": now});
                } else if c["type"] == "ContainersReady" {
                    *c = json!({"type": "ContainersReady", "status": "False", "lastTransitionTime": now});
                }
            }
        }
        let _ = self.store.update("/pods", pod, Some(s.rv), false);
    }

    /// The node lifecycle controller: a Ready node loses the `not-ready` taint it was created
    /// with; every DaemonSet then looks at it again.
    fn node_ready_untaint(&mut self, name: &str) {
        let Some(s) = self.store.get("/nodes", "", name) else {
            return;
        };
        let mut node = s.value();
        let Some(taints) = node["spec"]["taints"].as_array() else {
            return;
        };
        if !is_ready_node_status(&node) || !taints.iter().any(|t| t["key"] == NOT_READY_TAINT) {
            return;
        }
        let kept: Vec<Value> = taints
            .iter()
            .filter(|t| t["key"] != NOT_READY_TAINT)
            .cloned()
            .collect();
        if let Some(spec) = node["spec"].as_object_mut() {
            if kept.is_empty() {
                spec.remove("taints");
            } else {
                spec.insert("taints".into(), json!(kept));
            }
        }
        if self.store.update("/nodes", node, Some(s.rv), false).is_ok() {
            self.all_daemonsets_later(Duration::ZERO);
        }
    }

    /// The node lifecycle controller: a cordoned node carries the `unschedulable` taint, an
    /// uncordoned one loses it.
    fn unschedulable_taint(&mut self, name: &str) {
        let Some(s) = self.store.get("/nodes", "", name) else {
            return;
        };
        let mut node = s.value();
        let cordoned = node["spec"]["unschedulable"] == true;
        let mut taints: Vec<Value> = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = taints.iter().any(|t| t["key"] == UNSCHEDULABLE_TAINT);
        if cordoned == has {
            return;
        }
        if cordoned {
            taints.push(json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_rfc3339()}));
        } else {
            taints.retain(|t| t["key"] != UNSCHEDULABLE_TAINT);
        }
        if let Some(spec) = node["spec"].as_object_mut() {
            if taints.is_empty() {
                spec.remove("taints");
            } else {
                spec.insert("taints".into(), json!(taints));
            }
        }
        let _ = self.store.update("/nodes", node, Some(s.rv), false);
    }

    fn all_daemonsets_later(&mut self, delay: Duration) {
        let (_, dss, _) = self
            .store
            .list("apps/daemonsets", None, None, None, &|_, _| true);
        for ((namespace, name), _) in dss {
            self.later
                .push((delay, Action::Daemonset { namespace, name }));
        }
    }

    fn node_value(&self, name: &str) -> Option<Value> {
        self.store.get("/nodes", "", name).map(|s| s.value())
    }

    /// A node, decoded and shared, for a reader that changes nothing.
    fn node_shared(&self, name: &str) -> Option<Arc<Value>> {
        self.store.get("/nodes", "", name).map(|s| s.shared())
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
            .node_shared(node)
            .is_some_and(|v| v["metadata"]["annotations"][CNI_ANNOTATION] == "cilium");
        if on_cilium
            && let Some(cn) = self.store.get("cilium.io/ciliumnodes", "", node)
            && let Some(pool) = cn.shared()["spec"]["ipam"]["pool"].as_object()
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
            self.node_shared(node)
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
        let candidates = self
            .candidates
            .borrow_mut()
            .get_or_insert_with(|| {
                std::sync::Arc::new(
                    self.nodes()
                        .iter()
                        .filter_map(|(name, n)| schedule::Candidate::of(name, n))
                        .collect(),
                )
            })
            .clone();
        let tolerations = pod["spec"]["tolerations"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let fits: Vec<&str> = candidates
            .iter()
            .filter(|c| c.tolerated_by(tolerations))
            .map(|c| c.name.as_str())
            .collect();
        let load = self.store.pod_counts(&fits);
        fits.into_iter()
            .zip(load)
            .min_by_key(|(name, load)| (*load, *name))
            .map(|(name, _)| name.to_owned())
    }

    fn on_event(&mut self, e: &Event) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        if e.key == "/nodes" {
            self.candidates.borrow_mut().take();
        }
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
                        uid: e.object.shared()["metadata"]["uid"].clone(),
                    },
                ));
            }
            // The Tigera operator removes what it installed when its Installation goes.
            if e.key == "operator.tigera.io/installations" {
                out.push((Duration::ZERO, Action::TigeraUninstall));
            }
        }
        if e.key == "apps/daemonsets" && e.type_ != "DELETED" {
            // The real controller writes the status after the change, not with it: a reader
            // sees `observedGeneration` behind `generation` for a moment.
            let delay = if Self::template_changed(&e.object.shared()) {
                STATUS_LAG
            } else {
                Duration::ZERO
            };
            out.push((
                delay,
                Action::Daemonset {
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                },
            ));
            return out;
        }
        // The Deployment, ReplicaSet and StatefulSet controllers follow their objects (a
        // status they wrote themselves changes nothing: they write only what differs).
        if e.type_ != "DELETED" {
            let (ns, name) = (e.namespace.clone(), e.name.clone());
            match e.key.as_str() {
                "apps/deployments" => {
                    out.push((
                        Duration::ZERO,
                        Action::Deployment {
                            namespace: ns,
                            name,
                        },
                    ));
                    return out;
                }
                "apps/replicasets" => {
                    out.push((
                        Duration::ZERO,
                        Action::ReplicaSet {
                            namespace: ns,
                            name,
                        },
                    ));
                    return out;
                }
                "apps/statefulsets" => {
                    out.push((
                        Duration::ZERO,
                        Action::StatefulSet {
                            namespace: ns,
                            name,
                        },
                    ));
                    return out;
                }
                _ => {}
            }
        }
        // The disruption controller follows a budget's spec.
        if e.key == "policy/poddisruptionbudgets" && e.type_ != "DELETED" {
            let pdb = e.object.value();
            if pdb["status"]["observedGeneration"] != pdb["metadata"]["generation"] {
                out.push((
                    Duration::ZERO,
                    Action::Budget {
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                    },
                ));
            }
            return out;
        }
        if e.key == "/nodes" && e.type_ != "DELETED" {
            let node = e.object.value();
            let has_taint = |key: &str| {
                node["spec"]["taints"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["key"] == key))
            };
            if (node["spec"]["unschedulable"] == true) != has_taint(UNSCHEDULABLE_TAINT) {
                out.push((
                    Duration::ZERO,
                    Action::Unschedulable {
                        name: e.name.clone(),
                    },
                ));
            }
            if has_taint(NOT_READY_TAINT) {
                out.push((
                    NODE_MONITOR_DELAY,
                    Action::Untaint {
                        name: e.name.clone(),
                    },
                ));
            }
        }
        // The scheduler looks at its unschedulable pods again when a node comes or changes (it
        // may be Ready now, uncordoned, untainted): a pod that found no node stays Pending only
        // until one fits.
        if e.key == "/nodes" && e.type_ != "DELETED" {
            let (_, pending, _) = self.store.pods_on_node("", &|_, s| !s.terminating);
            for ((namespace, name), _) in pending {
                out.push((Duration::ZERO, Action::Bind { namespace, name }));
            }
        }
        // A new node: every DaemonSet looks at it.
        if e.key == "/nodes" && e.type_ == "ADDED" {
            let (_, dss, _) = self
                .store
                .list("apps/daemonsets", None, None, None, &|_, _| true);
            for ((namespace, name), _) in dss {
                out.push((Duration::ZERO, Action::Daemonset { namespace, name }));
            }
            return out;
        }
        // The DaemonSet controller follows node labels for DaemonSets with a node selector.
        if e.key == "/nodes" && e.type_ == "MODIFIED" {
            let (_, dss, _) = self
                .store
                .list("apps/daemonsets", None, None, None, &|_, s| {
                    has_node_selector(&s.shared())
                });
            for ((namespace, name), _) in dss {
                out.push((Duration::ZERO, Action::Daemonset { namespace, name }));
            }
            return out;
        }
        // The pod garbage collector: a deleted node's pods go with it.
        if e.key == "/nodes" && e.type_ == "DELETED" {
            out.push((
                Duration::ZERO,
                Action::Orphans {
                    node: e.name.clone(),
                },
            ));
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
        // A DaemonSet follows its pods (the rolling update goes on, the status follows).
        let pod = e.object.shared();
        if let Some(owner) = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true && o["kind"] == "DaemonSet")
        {
            out.push((
                Duration::ZERO,
                Action::Daemonset {
                    namespace: e.namespace.clone(),
                    name: owner["name"].as_str().unwrap_or_default().to_owned(),
                },
            ));
        }
        if e.type_ == "MODIFIED" && !pod["metadata"]["deletionTimestamp"].is_null() {
            // The kubelet marks a terminating pod not Ready; a ReplicaSet makes the
            // replacement at once, while the old pod still terminates.
            if is_pod_ready(&pod) {
                out.push((
                    KUBELET_SYNC,
                    Action::MarkTerminating {
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                    },
                ));
            }
            let owned_by_rs = pod["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["controller"] == true && o["kind"] == "ReplicaSet");
            if owned_by_rs {
                out.push((Duration::ZERO, Action::Replace { pod: pod.clone() }));
            }
        }
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
                } else if !running && !waiting_for_cni(&pod) {
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
                out.push((Duration::ZERO, Action::Replace { pod: pod.clone() }));
            }
            _ => {}
        }
        // A ReplicaSet or StatefulSet follows its pods: as they come, go, turn Ready or start
        // terminating (its status; a StatefulSet's next ordinal).
        let moved = e.type_ != "MODIFIED"
            || is_pod_ready(&pod)
            || !pod["metadata"]["deletionTimestamp"].is_null();
        let owner = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
            .and_then(|o| Some((o["kind"].as_str()?, o["name"].as_str()?.to_owned())));
        if let (true, Some((kind, name))) = (moved, owner) {
            let namespace = e.namespace.clone();
            match kind {
                "ReplicaSet" => out.push((Duration::ZERO, Action::ReplicaSet { namespace, name })),
                "StatefulSet" => {
                    out.push((Duration::ZERO, Action::StatefulSet { namespace, name }))
                }
                _ => {}
            }
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
                // Bound already: nothing to decode.
                if s.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
                    return;
                }
                let mut pod = s.value();
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
            } => self.start_pod(&namespace, &name, &uid),
            Action::Replace { pod } => self.replace(&pod),
            Action::Orphans { node } => {
                let (_, pods, _) = self.store.pods_on_node(&node, &|_, _| true);
                for ((namespace, name), _) in pods {
                    let _ = self.store.delete("/pods", &namespace, &name, false);
                }
            }
            Action::DropEndpoint {
                namespace,
                name,
                uid,
            } => {
                let owned = self
                    .store
                    .get(ENDPOINTS, &namespace, &name)
                    .is_some_and(|c| c.shared()["metadata"]["ownerReferences"][0]["uid"] == uid);
                if owned {
                    let _ = self.store.delete(ENDPOINTS, &namespace, &name, false);
                }
            }
            Action::Budgets { namespace, labels } => self.budgets(&namespace, &labels),
            Action::Budget { namespace, name } => self.budget(&namespace, &name),
            Action::Daemonset { namespace, name } => {
                self.dirty_daemonsets.insert((namespace, name));
            }
            Action::Deployment { namespace, name } => self.reconcile_deployment(&namespace, &name),
            Action::ReplicaSet { namespace, name } => self.reconcile_replicaset(&namespace, &name),
            Action::StatefulSet { namespace, name } => {
                self.reconcile_statefulset(&namespace, &name);
            }
            Action::Remove {
                namespace,
                name,
                uid,
            } => {
                if self
                    .store
                    .get("/pods", &namespace, &name)
                    .is_some_and(|s| s.shared()["metadata"]["uid"] == uid)
                {
                    let _ = self.store.delete("/pods", &namespace, &name, false);
                }
            }
            Action::MarkTerminating { namespace, name } => {
                self.mark_terminating(&namespace, &name);
            }
            Action::Untaint { name } => self.node_ready_untaint(&name),
            Action::Unschedulable { name } => self.unschedulable_taint(&name),
        }
    }
}

/// From a pod's `deletionTimestamp` to its kubelet marking it not Ready (the controllers
/// react first, as on a real cluster).
const KUBELET_SYNC: Duration = Duration::from_millis(20);
/// How long a changed DaemonSet's status lags behind its `generation`.
const STATUS_LAG: Duration = Duration::from_millis(50);
/// From a Ready node's creation to the removal of its `not-ready` taint.
const NODE_MONITOR_DELAY: Duration = Duration::from_millis(100);

/// Starts the model on a store; it runs until the returned task is aborted. Pods the model
/// deletes itself (a DaemonSet's rolling update) take `termination` to go.
pub fn start(store: Arc<Store>, opts: ModelOptions, termination: Duration) -> JoinHandle<()> {
    let mut rx = store.subscribe();
    let (tx, mut actions) = tokio::sync::mpsc::unbounded_channel::<Action>();
    let (_, nodes, _) = store.list("/nodes", None, None, None, &|_, _| true);
    let nodes_at_start = nodes.into_iter().map(|((_, n), _)| n).collect();
    let mut model = Model {
        nodes_at_start,
        store,
        opts,
        termination,
        next_ip: HashMap::new(),
        rng: 0x9e37_79b9_7f4a_7c15,
        templates: HashMap::new(),
        later: Vec::new(),
        node_memo: std::cell::RefCell::default(),
        candidates: std::cell::RefCell::default(),
        daemonset_pod_memo: std::cell::RefCell::default(),
        dirty_daemonsets: std::collections::BTreeSet::new(),
    };
    model.remember_daemonsets();
    // The old CNI's agents already running have written their chains, devices and routes.
    let (_, pods, _) = model.store.list("/pods", None, None, None, &|_, _| true);
    for (_, p) in pods {
        let pod = p.value();
        if let (Some(cni), Some(node)) = (old_cni_agent(&pod), pod["spec"]["nodeName"].as_str())
            && pod["status"]["phase"] == "Running"
        {
            model.set_leftovers(node, cni);
        }
    }
    let schedule = move |model: &mut Model, actions: Vec<(Duration, Action)>| {
        let mut queue = actions;
        while !queue.is_empty() {
            for (delay, action) in queue {
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
            queue = std::mem::take(&mut model.later);
        }
    };
    let period = model.opts.heartbeat.max(Duration::from_millis(10));
    let kubelets = Arc::clone(&model.store);
    tokio::spawn(async move {
        // The kubelets renew their Leases on their own task, beside the model, and stop with it.
        let _heartbeats = AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                Model::heartbeats(&kubelets);
            }
        }));
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let mut last_daemonsets = std::time::Instant::now();
        loop {
            let t0 = std::time::Instant::now();
            tokio::select! {
                // Due actions first (a pod to start, to remove): behind a backlog of events
                // they would wait for all of it, and the pods with them.
                biased;
                Some(action) = actions.recv() => {
                    let mut next = Some(action);
                    for _ in 0..BATCH {
                        let Some(action) = next.take() else { break };
                        schedule(&mut model, vec![(Duration::ZERO, action)]);
                        next = actions.try_recv().ok();
                    }
                },
                ev = rx.recv() => {
                    let mut next = ev.map_err(|e| match e {
                        RecvError::Lagged(n) => TryRecvError::Lagged(n),
                        RecvError::Closed => TryRecvError::Closed,
                    });
                    // What is ready is handled before the DaemonSets it touched reconcile, for
                    // a slice of time at most, so that due actions are not held back.
                    for handled in 1..=BATCH {
                        match next {
                            Ok(e) => {
                                let out = model.on_event(&e);
                                schedule(&mut model, out);
                            }
                            Err(TryRecvError::Lagged(n)) => {
                                tracing::warn!(n, "the model fell behind the store's events: it looks at every object again");
                                let out = model.resync();
                                schedule(&mut model, out);
                            }
                            Err(TryRecvError::Closed) => return,
                            Err(TryRecvError::Empty) => break,
                        }
                        if handled == BATCH || t0.elapsed() >= SLICE {
                            break;
                        }
                        next = rx.try_recv();
                    }
                },
            }
            // A reconcile looks at every node: while events keep coming it runs at most every
            // DAEMONSET_EVERY, with all that changed meanwhile; at once when the model is idle.
            if !rx.is_empty() && last_daemonsets.elapsed() < DAEMONSET_EVERY {
                continue;
            }
            if !model.dirty_daemonsets.is_empty() {
                last_daemonsets = std::time::Instant::now();
            }
            while !model.dirty_daemonsets.is_empty() {
                for (namespace, name) in std::mem::take(&mut model.dirty_daemonsets) {
                    model.reconcile_daemonset(&namespace, &name);
                }
                let later = std::mem::take(&mut model.later);
                schedule(&mut model, later);
            }
        }
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many ready events the model handles before its DaemonSets reconcile.
const BATCH: usize = 4096;
/// How often, at most, the DaemonSets reconcile while events keep coming.
const DAEMONSET_EVERY: Duration = Duration::from_millis(200);
/// How long the model handles events before it looks at its due actions again.
const SLICE: Duration = Duration::from_millis(50);
