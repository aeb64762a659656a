//! Nodes that join and leave the simulated cluster on their own, as a node group, an
//! autoscaler or a spot interruption would: the `node-join` and `node-leave` faults.
//!
//! ```text
//! node-join=NAME   a copy of a worker under NAME: its own pod CIDR and address, Ready, not
//!                  cordoned, not labelled, none of the sim's invisible node state (old CNI)
//!                  ─► the model's DaemonSet controller puts a pod of every DaemonSet on it
//! node-leave=NAME  the Node deleted ─► the pod garbage collector deletes its pods ─► the
//!                  ReplicaSet and StatefulSet controllers recreate theirs on other nodes
//! ```

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use std::{sync::Arc, time::Duration};

use crate::{
    server::Faults,
    store::{self, Store},
};

/// Checks the `node-join` and `node-leave` faults against the loaded cluster before anything
/// runs: a node that joins must not exist yet; a node that leaves must exist, or join first.
///
/// # Errors
/// A message naming the fault and what is wrong with it.
pub fn check(store: &Store, faults: &Faults) -> Result<(), String> {
    for (name, _) in &faults.node_join {
        if store.get("/nodes", "", name).is_some() {
            return Err(format!(
                "node-join={name}: a node {name} exists already; name a new node"
            ));
        }
    }
    for (name, at) in &faults.node_leave {
        let joins_before = faults.node_join.iter().any(|(j, t)| j == name && t < at);
        if store.get("/nodes", "", name).is_none() && !joins_before {
            return Err(format!(
                "node-leave={name}: no node {name} in the cluster (nor a node-join of it before)"
            ));
        }
    }
    Ok(())
}

/// Starts the `node-join` and `node-leave` faults: each fires after its delay divided by
/// `speed`, and `said` hears what happened (or why it could not), with the fault's delay.
pub fn spawn(
    store: &Arc<Store>,
    faults: &Faults,
    speed: f64,
    said: impl Fn(Duration, Result<String, String>) + Send + Sync + 'static,
) {
    let said = Arc::new(said);
    let all = faults
        .node_join
        .iter()
        .map(|(n, t)| (n.clone(), *t, true))
        .chain(
            faults
                .node_leave
                .iter()
                .map(|(n, t)| (n.clone(), *t, false)),
        );
    for (name, after, join) in all {
        let store = store.clone();
        let said = said.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after.div_f64(speed)).await;
            let r = if join {
                node_join_in(&store, &name)
            } else {
                node_leave_in(&store, &name)
            };
            said(after, r);
        });
    }
}

fn pod_cidrs(node: &Value) -> Vec<Ipv4Net> {
    node["spec"]["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&node["spec"]["podCIDR"]))
        .filter_map(|c| c.as_str()?.parse().ok())
        .collect()
}

fn internal_ip(node: &Value) -> Option<std::net::Ipv4Addr> {
    node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()
}

/// Creates node `name`, a copy of the first Ready worker (by name) with its own pod CIDR (the
/// first free block of the worker's size in the /16 around it) and address (the first free
/// one in the worker's /24). Returns what was created, in words.
///
/// # Errors
/// A message naming the node: it exists already, or there is no worker to copy.
pub fn node_join_in(store: &Store, name: &str) -> Result<String, String> {
    if store.get("/nodes", "", name).is_some() {
        return Err(format!("node-join={name}: a node {name} exists already"));
    }
    let (_, nodes, _) = store.list("/nodes", None, None, None, &|_, _| true);
    let nodes: Vec<Value> = nodes.into_iter().map(|(_, s)| s.value()).collect();
    let worker = |n: &&Value| {
        let labels = &n["metadata"]["labels"];
        labels["node-role.kubernetes.io/control-plane"].is_null()
            && labels["node-role.kubernetes.io/master"].is_null()
    };
    let template = nodes
        .iter()
        .find(worker)
        .or_else(|| nodes.first())
        .ok_or_else(|| format!("node-join={name}: the cluster has no node to copy"))?;
    let mut node = template.clone();
    let meta = node["metadata"]
        .as_object_mut()
        .ok_or_else(|| format!("node-join={name}: the node to copy has no metadata"))?;
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.remove(k);
    }
    meta.insert("name".into(), json!(name));
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        labels.insert("kubernetes.io/hostname".into(), json!(name));
        labels.retain(|k, _| !k.starts_with("io.cilium"));
    }
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        // The sim's invisible state (the CNI directory, faults) and what tools wrote.
        annotations.retain(|k, _| {
            !k.starts_with("sim.cni-migrate.io/")
                && !k.contains("cilium")
                && !k.starts_with("cluster-autoscaler")
                && !k.starts_with("karpenter")
        });
    }
    if let Some(spec) = node["spec"].as_object_mut() {
        spec.remove("unschedulable");
        spec.remove("providerID");
        if let Some(taints) = spec.get_mut("taints").and_then(Value::as_array_mut) {
            taints.retain(|t| t["key"] != "node.kubernetes.io/unschedulable");
        }
    }
    let taken: Vec<Ipv4Net> = nodes.iter().flat_map(pod_cidrs).collect();
    if let Some(mine) = pod_cidrs(template).first() {
        let around = Ipv4Net::new(mine.network(), mine.prefix_len().saturating_sub(8).max(8))
            .map(|n| n.trunc())
            .map_err(|e| format!("node-join={name}: {e}"))?;
        let free = around
            .subnets(mine.prefix_len())
            .map_err(|e| format!("node-join={name}: {e}"))?
            .find(|c| !taken.iter().any(|t| t.contains(c) || c.contains(t)))
            .ok_or_else(|| format!("node-join={name}: no free pod CIDR in {around}"))?;
        node["spec"]["podCIDR"] = json!(free.to_string());
        node["spec"]["podCIDRs"] = json!([free.to_string()]);
    }
    if let Some(ip) = internal_ip(template) {
        let used: Vec<_> = nodes.iter().filter_map(internal_ip).collect();
        let net = Ipv4Net::new(ip, 24)
            .map(|n| n.trunc())
            .map_err(|e| format!("node-join={name}: {e}"))?;
        let free = net
            .hosts()
            .skip(1)
            .find(|h| !used.contains(h))
            .ok_or_else(|| format!("node-join={name}: no free address in {net}"))?;
        node["status"]["addresses"] = json!([
            {"type": "InternalIP", "address": free.to_string()},
            {"type": "Hostname", "address": name},
        ]);
    }
    let now = store::now_rfc3339();
    node["status"]["conditions"] = json!([{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    }]);
    node["status"]["nodeInfo"]["bootID"] = json!(format!("{name}-boot-1"));
    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or("-").to_owned();
    store
        .create("/nodes", node, false)
        .map_err(|e| format!("node-join={name}: {e}"))?;
    Ok(format!("node {name} joined (pod CIDR {cidr})"))
}

/// Deletes node `name`: the model's pod garbage collector deletes its pods and the workload
/// controllers recreate theirs elsewhere.
///
/// # Errors
/// A message naming the node when it does not exist.
pub fn node_leave_in(store: &Store, name: &str) -> Result<String, String> {
    store
        .delete("/nodes", "", name, false)
        .map_err(|e| format!("node-leave={name}: {e}"))?;
    Ok(format!("node {name} left (deleted; its pods go with it)"))
}
