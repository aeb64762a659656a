//! The DaemonSet controller: one pod per selected node, a template change rolled node by node
//! within `maxUnavailable`, and the status as the real controller writes it.
//!
//! ```text
//! template change ──(a beat later, as the real controller)──► reconcile
//! reconcile, per eligible node:
//!     no pod at all (not even a terminating one) ──► create one of the current template
//!     old pod not Ready ───────────────────────────► delete it
//!     old pod Ready ──► delete it while nodes without an available pod < maxUnavailable
//! then the status, from each node's oldest pod (a terminating one still counts):
//!     currentNumberScheduled, numberMisscheduled, desiredNumberScheduled, numberReady: always
//!     observedGeneration, updatedNumberScheduled, numberAvailable, numberUnavailable: left out at 0
//! ```
//!
//! A pod is of the current template when its `pod-template-generation` label is the generation
//! at which the model last saw the template change; until a change, every pod counts as
//! current (a dump's pods carry labels the model did not write). Deletions are graceful: the
//! pod gets a `deletionTimestamp`, its kubelet marks it not Ready, and it goes after the
//! model's termination time.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use serde_json::{Value, json};

use super::{
    Model, ds_selects, has_node_selector, is_pod_ready,
    template::{TEMPLATE_GENERATION, Template, template_hash},
    tolerates_all_taints,
};

/// The taints the DaemonSet controller's tolerations cover on every pod it makes.
const AUTO_TOLERATIONS: [&str; 6] = [
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
];

fn name_of(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn is_terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

/// A DaemonSet's pods by the node they are bound to.
fn by_node(pods: &[Arc<Value>]) -> HashMap<&str, Vec<&Value>> {
    let mut out: HashMap<&str, Vec<&Value>> = HashMap::new();
    for p in pods {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            out.entry(n).or_default().push(p);
        }
    }
    out
}

impl Model {
    /// The DaemonSet's pods, each decoded once per resourceVersion (a rollout on a large
    /// cluster reconciles after every few of its pods' changes).
    pub(super) fn daemonset_pods(&self, namespace: &str, name: &str) -> Vec<Arc<Value>> {
        let (_, pods, _) = self
            .store
            .pods_of_controller(namespace, "DaemonSet", name, &|_, _| true);
        let mut memo = self.daemonset_pod_memo.borrow_mut();
        let old = memo
            .remove(&(namespace.to_owned(), name.to_owned()))
            .unwrap_or_default();
        let mut fresh = HashMap::with_capacity(pods.len());
        let out = pods
            .into_iter()
            .map(|((_, pod), s)| {
                let v = match old.get(&pod) {
                    Some((rv, v)) if *rv == s.rv => Arc::clone(v),
                    _ => Arc::new(s.value()),
                };
                fresh.insert(pod, (s.rv, Arc::clone(&v)));
                v
            })
            .collect();
        memo.insert((namespace.to_owned(), name.to_owned()), fresh);
        out
    }

    /// Whether the template changed since the status was written (the status then lags).
    pub(super) fn template_changed(ds: &Value) -> bool {
        ds["status"]["observedGeneration"] != ds["metadata"]["generation"]
    }

    /// The nodes there are, the nodes the DaemonSet selects and the nodes it should run on
    /// (selected, taints tolerated with the tolerations the controller adds), in name order.
    fn eligible_nodes(&self, ds: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
        let nodes = self.nodes();
        let mut template_pod = json!({"spec": ds["spec"]["template"]["spec"].clone()});
        let mut tolerations = template_pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tolerations.extend(
            AUTO_TOLERATIONS
                .iter()
                .map(|key| json!({"key": key, "operator": "Exists"})),
        );
        template_pod["spec"]["tolerations"] = json!(tolerations);
        let (mut all, mut selected, mut eligible) = (Vec::new(), Vec::new(), Vec::new());
        for (name, node) in nodes {
            if ds_selects(ds, &node) {
                if tolerates_all_taints(&template_pod, &node) {
                    eligible.push(name.clone());
                }
                selected.push(name.clone());
            }
            all.push(name);
        }
        (all, selected, eligible)
    }

    /// A pod of the DaemonSet was on `node` (it is gone now, or going).
    pub(super) fn daemonset_had_pod(
        &mut self,
        namespace: &str,
        name: &str,
        ds: &Value,
        node: &str,
    ) {
        self.remember_template(namespace, name, ds);
        if let Some(t) = self
            .templates
            .get_mut(&(namespace.to_owned(), name.to_owned()))
        {
            t.had_pod.insert(node.to_owned());
        }
    }

    /// The templates of the DaemonSets there are when the model starts (a dump's): a change
    /// made after is then seen as one.
    pub(super) fn remember_daemonsets(&mut self) {
        let (_, dss, _) = self
            .store
            .list("apps/daemonsets", None, None, None, &|_, _| true);
        for ((namespace, name), s) in dss {
            self.remember_template(&namespace, &name, &s.value());
        }
    }

    fn remember_template(&mut self, namespace: &str, name: &str, ds: &Value) {
        let hash = template_hash(ds);
        let generation = ds["metadata"]["generation"].as_i64().unwrap_or(1);
        let t = self
            .templates
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert_with(|| Template {
                hash,
                generation,
                initial: generation,
                // A DaemonSet its controller has not seen yet (new, or changed) is not a
                // dump's settled one: every node gets a pod.
                settled: !Self::template_changed(ds),
                had_pod: BTreeSet::new(),
            });
        if t.hash != hash {
            t.hash = hash;
            t.generation = generation.max(t.generation + 1);
        }
    }

    /// `maxUnavailable` of a RollingUpdate (default 1, a percentage of the desired nodes
    /// rounded up, at least 1); `None` for OnDelete.
    fn max_unavailable(ds: &Value, desired: usize) -> Option<usize> {
        let strategy = &ds["spec"]["updateStrategy"];
        if strategy["type"] == "OnDelete" {
            return None;
        }
        let n = match &strategy["rollingUpdate"]["maxUnavailable"] {
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            Value::String(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.parse::<usize>().ok())
                .map(|p| (p * desired).div_ceil(100)),
            _ => None,
        };
        Some(n.unwrap_or(1).max(1))
    }

    /// One pod per eligible node; pods of an older template are replaced node by node, at
    /// most `maxUnavailable` nodes at a time.
    pub(super) fn reconcile_daemonset(&mut self, namespace: &str, name: &str) {
        let Some(ds) = self
            .store
            .get("apps/daemonsets", namespace, name)
            .map(|s| s.value())
        else {
            return;
        };
        let (all_nodes, selected, eligible) = self.eligible_nodes(&ds);
        let (selected, eligible): (HashSet<String>, HashSet<String>) = (
            selected.into_iter().collect(),
            eligible.into_iter().collect(),
        );
        self.remember_template(namespace, name, &ds);
        let pods = self.daemonset_pods(namespace, name);
        let by_node = by_node(&pods);
        let max_unavailable = Self::max_unavailable(&ds, eligible.len());
        let key = (namespace.to_owned(), name.to_owned());
        let mut unavailable = 0;
        let mut old_ready = Vec::new();
        let mut to_delete = Vec::new();
        let mut to_create = Vec::new();
        for node in &all_nodes {
            let on_node: Vec<&Value> = by_node.get(node.as_str()).cloned().unwrap_or_default();
            // A node the DaemonSet no longer selects loses its pod; one whose taints it does
            // not tolerate gets none, and keeps what it has.
            if !selected.contains(node) {
                to_delete.extend(
                    on_node
                        .iter()
                        .filter(|p| !is_terminating(p))
                        .map(|p| name_of(p)),
                );
                continue;
            }
            if !eligible.contains(node) {
                continue;
            }
            let Some(t) = self.templates.get_mut(&key) else {
                return;
            };
            if !on_node.is_empty() {
                t.had_pod.insert(node.clone());
            }
            let t = &*t;
            if on_node.is_empty() {
                // Dumps may leave a DaemonSet without a pod on a node (a DaemonSet without a
                // node selector stays so until its template changes); a new node gets one.
                if t.settled
                    && t.generation == t.initial
                    && self.nodes_at_start.contains(node)
                    && !t.had_pod.contains(node)
                    && !has_node_selector(&ds)
                {
                    continue;
                }
                to_create.push(node.clone());
                unavailable += 1;
                continue;
            }
            let live: Vec<&&Value> = on_node.iter().filter(|p| !is_terminating(p)).collect();
            if !live.iter().any(|p| is_pod_ready(p)) {
                unavailable += 1;
            }
            let has_current = live.iter().any(|p| t.is_current(p));
            for old in live.iter().filter(|p| !t.is_current(p)) {
                if has_current || !is_pod_ready(old) {
                    to_delete.push(name_of(old));
                } else {
                    old_ready.push(name_of(old));
                }
            }
        }
        if let Some(max) = max_unavailable {
            to_delete.extend(old_ready.into_iter().take(max.saturating_sub(unavailable)));
        }
        for pod in to_delete {
            self.delete_gracefully(namespace, &pod);
        }
        let generation = self.templates.get(&key).map_or(1, |t| t.generation);
        for node in to_create {
            let mut labels = if ds["spec"]["template"]["metadata"]["labels"].is_object() {
                ds["spec"]["template"]["metadata"]["labels"].clone()
            } else {
                json!({})
            };
            labels[TEMPLATE_GENERATION] = json!(generation.to_string());
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": format!("{name}-"), "namespace": namespace, "labels": labels,
                             "annotations": ds["spec"]["template"]["metadata"]["annotations"].clone(),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": ds["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
                "spec": ds["spec"]["template"]["spec"].clone(),
                "status": {"phase": "Pending"}});
            pod["spec"]["nodeName"] = json!(node);
            let _ = self.store.create("/pods", pod, false);
        }
        self.daemonset_status(namespace, name);
    }

    /// The status from each eligible node's oldest pod, zero-valued optional fields left out.
    pub(super) fn daemonset_status(&mut self, namespace: &str, name: &str) {
        let Some(s) = self.store.get("apps/daemonsets", namespace, name) else {
            return;
        };
        let mut ds = s.value();
        let key = (namespace.to_owned(), name.to_owned());
        let (_, _, eligible) = self.eligible_nodes(&ds);
        let pods = self.daemonset_pods(namespace, name);
        let by_node = by_node(&pods);
        let (mut scheduled, mut ready, mut updated) = (0u64, 0u64, 0u64);
        for node in &eligible {
            let mut on_node: Vec<&Value> = by_node.get(node.as_str()).cloned().unwrap_or_default();
            on_node.sort_by_key(|p| {
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            });
            let Some(oldest) = on_node.first() else {
                continue;
            };
            scheduled += 1;
            if is_pod_ready(oldest) {
                ready += 1;
            }
            if self
                .templates
                .get(&key)
                .is_none_or(|t| t.is_current(oldest))
            {
                updated += 1;
            }
        }
        let eligible: HashSet<&str> = eligible.iter().map(String::as_str).collect();
        let misscheduled = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str())
            .filter(|n| !eligible.contains(n))
            .collect::<BTreeSet<_>>()
            .len();
        let desired = eligible.len() as u64;
        // minReadySeconds is not modelled: a Ready pod is available.
        let available = ready;
        let mut status = json!({"currentNumberScheduled": scheduled, "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired, "numberReady": ready});
        for (field, value) in [
            ("observedGeneration", ds["metadata"]["generation"].clone()),
            ("updatedNumberScheduled", json!(updated)),
            ("numberAvailable", json!(available)),
            (
                "numberUnavailable",
                json!(desired.saturating_sub(available)),
            ),
        ] {
            if value.as_i64().is_some_and(|v| v != 0) {
                status[field] = value;
            }
        }
        if ds["status"] == status {
            return;
        }
        ds["status"] = status;
        let _ = self.store.update("apps/daemonsets", ds, Some(s.rv), false);
    }
}
