//! Which pod can reach which, by the rules of the dual overlay.
//!
//! ```text
//! pod A ──► its overlay: Cilium if its IP is in Cilium's cluster pool, else the old CNI's
//!   same overlay        reachable (on Cilium: both nodes have a datapath loaded)
//!   across overlays     reachable only through the host routing stack: the Cilium side's
//!                       datapath runs with enable-host-legacy-routing=true (cilium-config plus
//!                       its node's CiliumNodeConfigs, as its agent resolved them), and the old
//!                       pod's IP is outside Cilium's pool (else routes to one network shadow
//!                       the other)
//!   hostNetwork pods    on the node's own address: reachable from both overlays
//! ```
//!
//! As on a real node, an agent restart does not stop established endpoints: the BPF programs
//! the last agent loaded stay attached and keep forwarding with that agent's configuration
//! until the next agent replaces them. What a restart stops is the start of new pods on the
//! node (their CNI ADD fails until an agent is Ready: the model keeps them `ContainerCreating`)
//! and policy and identity updates (not modelled). A node whose agent has never been Ready has
//! no datapath: its Cilium pods cannot exist, and nothing on Cilium reaches it.
//!
//! The verification probe's log is written from these rules: a pod labelled
//! `cni-migrate.io/probe=true` reports its IP, whether it reached the API server, and each
//! target named in its `cni-migrate.io/probe-targets` annotation (pod IPs, comma-separated):
//!
//! ```text
//! ip=10.245.1.7
//! apiserver=ok
//! reach 10.244.2.5=ok
//! reach 10.245.0.9=fail (cross-overlay traffic needs bpf.hostLegacyRouting)
//! ```

use std::{
    cell::{OnceCell, RefCell},
    collections::HashMap,
    net::IpAddr,
};

use ipnet::IpNet;
use serde_json::Value;

use crate::store::Store;

/// The overlay a pod is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    /// The node's own network.
    Host,
    /// Cilium.
    Cilium,
    /// The old CNI.
    Old,
}

fn cilium_config(store: &Store) -> Value {
    store
        .get("/configmaps", "kube-system", "cilium-config")
        .map(|c| c.value()["data"].clone())
        .unwrap_or(Value::Null)
}

fn cilium_pool(config: &Value) -> Vec<IpNet> {
    config["cluster-pool-ipv4-cidr"]
        .as_str()
        .unwrap_or_default()
        .split([' ', ','])
        .filter_map(|c| c.parse().ok())
        .collect()
}

fn pod_ip(pod: &Value) -> Option<IpAddr> {
    pod["status"]["podIP"].as_str()?.parse().ok()
}

/// One look at the datapath: `cilium-config` and each node's facts are read once, however
/// many pairs are judged (the rehearsal's prober judges hundreds in a round, 20 rounds a
/// second at 20 times real speed, and decoding them again for each pair was a fifth of the
/// rehearsal's CPU).
pub struct View<'a> {
    store: &'a Store,
    config: OnceCell<Value>,
    pool: OnceCell<Vec<IpNet>>,
    agent_ready: RefCell<HashMap<String, bool>>,
    datapath: RefCell<HashMap<String, Option<String>>>,
    legacy: RefCell<HashMap<String, bool>>,
}

impl<'a> View<'a> {
    /// A look at the store as it is now.
    pub fn new(store: &'a Store) -> Self {
        Self {
            store,
            config: OnceCell::new(),
            pool: OnceCell::new(),
            agent_ready: RefCell::default(),
            datapath: RefCell::default(),
            legacy: RefCell::default(),
        }
    }

    fn config(&self) -> &Value {
        self.config.get_or_init(|| cilium_config(self.store))
    }

    fn pool(&self) -> &[IpNet] {
        self.pool.get_or_init(|| cilium_pool(self.config()))
    }

    /// The overlay of a pod: the one it started on (the model notes it), else by its IP.
    pub fn overlay(&self, pod: &Value) -> Overlay {
        if pod["spec"]["hostNetwork"] == true {
            return Overlay::Host;
        }
        match pod["metadata"]["annotations"][crate::annotations::OVERLAY_ANNOTATION].as_str() {
            Some("cilium") => return Overlay::Cilium,
            Some("old") => return Overlay::Old,
            _ => {}
        }
        match pod_ip(pod) {
            Some(ip) if self.pool().iter().any(|p| p.contains(&ip)) => Overlay::Cilium,
            _ => Overlay::Old,
        }
    }

    fn agent_ready(&self, node: &str) -> bool {
        *self
            .agent_ready
            .borrow_mut()
            .entry(node.to_owned())
            .or_insert_with(|| agent_ready(self.store, node))
    }

    fn datapath(&self, node: &str) -> Option<String> {
        self.datapath
            .borrow_mut()
            .entry(node.to_owned())
            .or_insert_with(|| datapath(self.store, node))
            .clone()
    }

    /// Whether the node's datapath routes through the host stack: the Ready agent's resolved
    /// configuration, else what the last agent loaded, else `cilium-config` (agents the
    /// model did not start).
    fn host_legacy_routing(&self, node: &str) -> bool {
        if let Some(known) = self.legacy.borrow().get(node) {
            return *known;
        }
        let resolved = ready_agent(self.store, node)
            .and_then(|a| {
                a["metadata"]["annotations"][crate::annotations::LEGACY_ROUTING_ANNOTATION]
                    .as_str()
                    .map(str::to_owned)
            })
            .or_else(|| self.datapath(node));
        let legacy = match resolved {
            Some(v) => v == "true",
            None => self.config()["enable-host-legacy-routing"].as_str() == Some("true"),
        };
        self.legacy.borrow_mut().insert(node.to_owned(), legacy);
        legacy
    }

    /// Whether traffic from `a` reaches `b`; `Err` says why not.
    ///
    /// # Errors
    /// The reason the traffic is dropped.
    pub fn reach(&self, a: &Value, b: &Value) -> Result<(), String> {
        let (oa, ob) = (self.overlay(a), self.overlay(b));
        if pod_ip(a).is_none() || pod_ip(b).is_none() {
            return Err("a pod has no IP".into());
        }
        for (pod, o) in [(a, oa), (b, ob)] {
            if o == Overlay::Cilium {
                let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
                if !self.agent_ready(node) && self.datapath(node).is_none() {
                    return Err(format!(
                        "no Cilium datapath on {node}: its agent has never been Ready"
                    ));
                }
            }
        }
        if oa == ob || oa == Overlay::Host || ob == Overlay::Host {
            return Ok(());
        }
        // ENI mode: both sides hold VPC addresses and the VPC routes between them.
        if self.config()["ipam"] == "eni" {
            return Ok(());
        }
        let cilium_side = if oa == Overlay::Cilium { a } else { b };
        let cilium_node = cilium_side["spec"]["nodeName"].as_str().unwrap_or_default();
        if !self.host_legacy_routing(cilium_node) {
            return Err(format!(
                "cross-overlay traffic needs bpf.hostLegacyRouting, which is off on {cilium_node}"
            ));
        }
        // The two pod networks must be disjoint, or routes to one shadow the other.
        let old_ip = if oa == Overlay::Old {
            pod_ip(a)
        } else {
            pod_ip(b)
        };
        if let Some(ip) = old_ip
            && self.pool().iter().any(|p| p.contains(&ip))
        {
            return Err("the Cilium pool overlaps the old pod network".into());
        }
        Ok(())
    }
}

/// The overlay of a pod: the one it started on (the model notes it), else by its IP.
pub fn overlay(store: &Store, pod: &Value) -> Overlay {
    View::new(store).overlay(pod)
}

/// The node's Ready agent pod, if any.
fn ready_agent(store: &Store, node: &str) -> Option<Value> {
    ready_agent_stored(store, node).map(|s| s.value())
}

/// The node's Ready agent pod as stored, from the node index (the node's pods, not every
/// agent's), nothing decoded.
fn ready_agent_stored(store: &Store, node: &str) -> Option<crate::store::Stored> {
    let (_, agents, _) = store.pods_on_node(node, &|(ns, _), s| {
        ns == "kube-system"
            && s.labels.get("k8s-app").is_some_and(|a| a == "cilium")
            && s.ready
            && !s.terminating
    });
    agents.into_iter().next().map(|(_, s)| s)
}

/// Whether a Cilium agent is Ready on the node (a CNI ADD there succeeds).
pub fn agent_ready(store: &Store, node: &str) -> bool {
    ready_agent_stored(store, node).is_some()
}

/// The datapath loaded on the node (its `enable-host-legacy-routing`), by an agent Ready now or
/// before; `None` when no agent has been Ready there.
fn datapath(store: &Store, node: &str) -> Option<String> {
    store.get("/nodes", "", node).and_then(|n| {
        n.value()["metadata"]["annotations"][crate::annotations::DATAPATH_ANNOTATION]
            .as_str()
            .map(str::to_owned)
    })
}

/// Whether traffic from `a` reaches `b`; `Err` says why not.
///
/// # Errors
/// The reason the traffic is dropped.
pub fn reach(store: &Store, a: &Value, b: &Value) -> Result<(), String> {
    View::new(store).reach(a, b)
}

/// The probe's log for a pod, from the rules above.
pub fn probe_log(store: &Store, probe: &Value) -> String {
    let view = View::new(store);
    let mut out = format!("ip={}\n", probe["status"]["podIP"].as_str().unwrap_or(""));
    let node = probe["spec"]["nodeName"].as_str().unwrap_or_default();
    let no_datapath = view.overlay(probe) == Overlay::Cilium
        && !view.agent_ready(node)
        && view.datapath(node).is_none();
    out.push_str(if no_datapath {
        "apiserver=fail (no Cilium datapath on the node)\n"
    } else {
        "apiserver=ok\n"
    });
    let targets = probe["metadata"]["annotations"]["cni-migrate.io/probe-targets"]
        .as_str()
        .unwrap_or_default();
    for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        // The pod with the IP, found by what the store keeps beside each pod: the probe is
        // one of thousands, and decoding every pod for each target would be its whole cost.
        let (_, found, _) = store.list("/pods", None, None, None, &|_, s| {
            s.pod_ip.as_deref() == Some(t)
        });
        let target = found.first().map(|(_, s)| s.value());
        let verdict = match target {
            None => "fail (no pod has this IP)".to_owned(),
            Some(tp) => match view.reach(probe, &tp) {
                Ok(()) => "ok".to_owned(),
                Err(why) => format!("fail ({why})"),
            },
        };
        out.push_str(&format!("reach {t}={verdict}\n"));
    }
    out
}

/// Ground truth for tests and reports: every ordered pair of running, non-hostNetwork pods
/// given, with whether the first reaches the second.
pub fn matrix(store: &Store, pods: &[Value]) -> Vec<(String, String, Result<(), String>)> {
    let key = |p: &Value| {
        format!(
            "{}/{}",
            p["metadata"]["namespace"].as_str().unwrap_or(""),
            p["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    let view = View::new(store);
    let mut out = Vec::new();
    for a in pods {
        for b in pods {
            if key(a) != key(b) {
                out.push((key(a), key(b), view.reach(a, b)));
            }
        }
    }
    out
}
