//! What the model does after it fell behind the store's events (the broadcast channel dropped
//! some): what the real controllers do after a relist. Every object is looked at again as if it
//! had just changed, every DaemonSet reconciles, and what a missed deletion would have set off
//! is done from the state: pods bound to a node that is gone, and pods whose controller is gone,
//! are removed. Each reaction is idempotent (a start checks the pod's UID and phase, a bind that
//! the pod has no node, the controllers count), so looking twice does no harm.

use std::{collections::HashSet, time::Duration};

use super::{Model, action::Action};
use crate::store::Event;

/// The controllers whose deletion takes what they own along, by storage key.
const CONTROLLERS: [(&str, &str); 4] = [
    ("apps/deployments", "Deployment"),
    ("apps/daemonsets", "DaemonSet"),
    ("apps/replicasets", "ReplicaSet"),
    ("apps/statefulsets", "StatefulSet"),
];

/// The kinds the model reacts to, the nodes and controllers before the pods.
const KINDS: [&str; 7] = [
    "/nodes",
    "apps/daemonsets",
    "apps/deployments",
    "apps/replicasets",
    "apps/statefulsets",
    "policy/poddisruptionbudgets",
    "/pods",
];

impl Model {
    /// Every object looked at again; returns the reactions to schedule.
    pub(super) fn resync(&mut self) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        let (_, nodes, _) = self.store.list("/nodes", None, None, None, &|_, _| true);
        let nodes: HashSet<String> = nodes.into_iter().map(|((_, n), _)| n).collect();
        let mut controllers = HashSet::new();
        for key in KINDS {
            let (_, objects, _) = self.store.list(key, None, None, None, &|_, _| true);
            for ((namespace, name), object) in objects {
                let orphaned_by_node = key == "/pods"
                    && object
                        .node_name
                        .as_ref()
                        .is_some_and(|n| !n.is_empty() && !nodes.contains(n));
                let orphaned_by_controller =
                    object.controller.as_deref().is_some_and(|(kind, owner)| {
                        CONTROLLERS.iter().any(|(_, k)| k == kind)
                            && !controllers.contains(&(
                                kind.clone(),
                                namespace.clone(),
                                owner.clone(),
                            ))
                    });
                if orphaned_by_node || orphaned_by_controller {
                    let _ = self.store.delete(key, &namespace, &name, false);
                    continue;
                }
                if let Some((_, kind)) = CONTROLLERS.iter().find(|(k, _)| *k == key) {
                    controllers.insert(((*kind).to_owned(), namespace.clone(), name.clone()));
                }
                let event = Event {
                    rv: object.rv,
                    key: key.to_owned(),
                    type_: "MODIFIED",
                    namespace,
                    name,
                    object,
                };
                // Each budget is looked at once below, not once a pod.
                out.extend(
                    self.on_event(&event)
                        .into_iter()
                        .filter(|(_, a)| !matches!(a, Action::Budgets { .. })),
                );
                if key == "policy/poddisruptionbudgets" {
                    out.push((
                        Duration::ZERO,
                        Action::Budget {
                            namespace: event.namespace.clone(),
                            name: event.name.clone(),
                        },
                    ));
                }
            }
            if key == "apps/daemonsets" {
                self.all_daemonsets_later(Duration::ZERO);
                out.append(&mut self.later);
            }
        }
        out
    }
}
