//! The controllers that act on `spec.replicas` (what `kubectl scale` and the `scale`
//! subresource change), and the status they write, shaped as the recordings of a real
//! v1.36.2 controller-manager show it:
//!
//! - **Deployment**: the ReplicaSet whose template is the Deployment's (less the
//!   `pod-template-hash` label) carries `spec.replicas`; a changed template gets a new
//!   ReplicaSet (`NAME-HASH`) and the older ones are scaled to 0 (a rollout all at once:
//!   `maxSurge`/`maxUnavailable` of template changes are not modelled). Status: replicas,
//!   updated, ready, available counted from its ReplicaSets, the `Available` and `Progressing`
//!   conditions.
//! - **ReplicaSet**: as many live pods as `spec.replicas`: missing ones made from the template
//!   (`NAME-xxxxx`), extra ones deleted (not yet running first, then the newest). Status:
//!   `replicas` (live pods) and `terminatingReplicas` always, the rest left out when 0.
//! - **StatefulSet**: pods `NAME-0` … `NAME-(n-1)`, one at a time in ordinal order (the next
//!   only once the ones below are Ready, as `OrderedReady` does), removed from the highest
//!   ordinal down. A deleted pod's return (same name, new UID) is in `workloads`.
//!
//! Controllers loaded from a dump without a template make no pods.

use serde_json::{Value, json};

use super::{Model, is_pod_ready};
use crate::store::{Stored, now_rfc3339};

fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// Sets the non-zero fields of `fields` on `status` and removes the zero ones, except `keep`
/// (the fields a real controller always writes).
fn set_counts(status: &mut Value, fields: &[(&str, i64)], keep: &[&str]) {
    if !status.is_object() {
        *status = json!({});
    }
    for (k, n) in fields {
        if *n == 0 && !keep.contains(k) {
            if let Some(o) = status.as_object_mut() {
                o.remove(*k);
            }
        } else {
            status[*k] = json!(n);
        }
    }
}

/// A template without the label a Deployment's ReplicaSets add to it.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    t
}

/// The `pod-template-hash` of a template: ten lowercase letters and digits, stable.
fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| {
            let idx = (h >> (i * 6)) % ALPHABET.len() as u64;
            ALPHABET[usize::try_from(idx).unwrap_or(0)] as char
        })
        .collect()
}

fn owner_ref(controller: &Value, kind: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": controller["metadata"]["name"],
           "uid": controller["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn replicas(v: &Value) -> i64 {
    v["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

impl Model {
    fn write_status(&mut self, key: &str, ns: &str, name: &str, status: Value) {
        let Some(s) = self.store.get(key, ns, name) else {
            return;
        };
        let mut v = s.value();
        if v["status"] == status {
            return;
        }
        v["status"] = status;
        let _ = self.store.update(key, v, Some(s.rv), false);
    }

    fn pods_of(&self, ns: &str, kind: &str, name: &str) -> Vec<Value> {
        let (_, pods, _) = self.store.pods_of_controller(ns, kind, name, &|_, _| true);
        pods.into_iter().map(|(_, s)| s.value()).collect()
    }

    /// A controller's pods as stored (name and what the store keeps beside the object),
    /// nothing decoded.
    fn pods_stored(&self, ns: &str, kind: &str, name: &str) -> Vec<(String, Stored)> {
        let (_, pods, _) = self.store.pods_of_controller(ns, kind, name, &|_, _| true);
        pods.into_iter().map(|((_, pod), s)| (pod, s)).collect()
    }

    fn new_pod(controller: &Value, kind: &str) -> Option<Value> {
        let template = &controller["spec"]["template"];
        template["spec"]["containers"].as_array()?;
        Some(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": controller["metadata"]["namespace"], "labels": template["metadata"]["labels"],
                         "annotations": template["metadata"]["annotations"], "ownerReferences": [owner_ref(controller, kind)]},
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }))
    }

    /// The ReplicaSets a Deployment owns.
    fn replica_sets_of(&self, ns: &str, deployment: &Value) -> Vec<Value> {
        let uid = &deployment["metadata"]["uid"];
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        // Only the ReplicaSets whose controller has the Deployment's name are decoded.
        let (_, sets, _) =
            self.store
                .controlled("apps/replicasets", ns, "Deployment", name, &|_, _| true);
        sets.into_iter()
            .map(|(_, s)| s.value())
            .filter(|v| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["uid"] == *uid)
            })
            .collect()
    }

    /// The Deployment controller (see the module's text).
    pub(super) fn reconcile_deployment(&mut self, ns: &str, name: &str) {
        let Some(d) = self
            .store
            .get("apps/deployments", ns, name)
            .map(|s| s.value())
        else {
            return;
        };
        let sets = self.replica_sets_of(ns, &d);
        let template = &d["spec"]["template"];
        let want = replicas(&d);
        let current = sets
            .iter()
            .find(|rs| without_hash(&rs["spec"]["template"]) == *template)
            .or_else(|| {
                // A dump's ReplicaSets may carry no template: the newest is the current one.
                sets.iter()
                    .filter(|rs| rs["spec"]["template"].is_null())
                    .max_by_key(|rs| {
                        rs["metadata"]["creationTimestamp"]
                            .as_str()
                            .map(str::to_owned)
                    })
            })
            .cloned();
        let keep = match current {
            Some(mut rs) => {
                let rs_name = rs["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if replicas(&rs) != want {
                    rs["spec"]["replicas"] = json!(want);
                    let _ = self.store.update("apps/replicasets", rs, None, false);
                }
                rs_name
            }
            None if template["spec"]["containers"].is_array() => {
                let hash = template_hash(template);
                let mut t = template.clone();
                t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs_name = format!("{name}-{hash}");
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": ns, "labels": t["metadata"]["labels"],
                                 "ownerReferences": [owner_ref(&d, "Deployment")]},
                    "spec": {"replicas": want, "selector": selector, "template": t},
                });
                let _ = self.store.create("apps/replicasets", rs, false);
                rs_name
            }
            None => return,
        };
        for rs in &sets {
            let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
            if rs_name != keep && replicas(rs) != 0 {
                let mut rs = rs.clone();
                rs["spec"]["replicas"] = json!(0);
                let _ = self.store.update("apps/replicasets", rs, None, false);
            }
        }
        self.deployment_status(ns, name, Some(&keep));
    }

    fn deployment_status(&mut self, ns: &str, name: &str, current: Option<&str>) {
        let Some(d) = self
            .store
            .get("apps/deployments", ns, name)
            .map(|s| s.value())
        else {
            return;
        };
        let sets = self.replica_sets_of(ns, &d);
        let count = |rs: &Value, f: &str| rs["status"][f].as_i64().unwrap_or(0);
        let (mut total, mut ready, mut available, mut updated, mut terminating) = (0, 0, 0, 0, 0);
        for rs in &sets {
            total += count(rs, "replicas");
            ready += count(rs, "readyReplicas");
            available += count(rs, "availableReplicas");
            terminating += count(rs, "terminatingReplicas");
            if rs["metadata"]["name"].as_str() == current {
                updated += count(rs, "replicas");
            }
        }
        let want = replicas(&d);
        let mut status = d["status"].clone();
        set_counts(
            &mut status,
            &[
                (
                    "observedGeneration",
                    d["metadata"]["generation"].as_i64().unwrap_or(1),
                ),
                ("replicas", total),
                ("updatedReplicas", updated),
                ("readyReplicas", ready),
                ("availableReplicas", available),
                ("unavailableReplicas", (want - available).max(0)),
                ("terminatingReplicas", terminating),
            ],
            &["terminatingReplicas"],
        );
        // maxUnavailable 25% of the replicas, rounded down, as the default strategy.
        let max_unavailable = d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"]
            .as_i64()
            .unwrap_or(want / 4);
        let minimum = available >= want - max_unavailable;
        let progressed = updated == want && available >= want;
        let now = now_rfc3339();
        let condition = |type_: &str, ok: bool, reason: &str, message: String| {
            json!({"type": type_, "status": if ok { "True" } else { "False" }, "reason": reason,
                   "message": message, "lastUpdateTime": now, "lastTransitionTime": now})
        };
        let wanted = [
            if minimum {
                condition(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                )
            } else {
                condition(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                )
            },
            condition(
                "Progressing",
                true,
                if progressed {
                    "NewReplicaSetAvailable"
                } else {
                    "ReplicaSetUpdated"
                },
                format!(
                    "ReplicaSet \"{}\" {}",
                    current.unwrap_or(name),
                    if progressed {
                        "has successfully progressed."
                    } else {
                        "is progressing."
                    }
                ),
            ),
        ];
        // A condition keeps its times while its status and reason stay.
        let old = status["conditions"].as_array().cloned().unwrap_or_default();
        let conditions: Vec<Value> = wanted
            .into_iter()
            .map(|c| {
                old.iter()
                    .find(|o| {
                        o["type"] == c["type"]
                            && o["status"] == c["status"]
                            && o["reason"] == c["reason"]
                    })
                    .cloned()
                    .unwrap_or(c)
            })
            .collect();
        status["conditions"] = json!(conditions);
        self.write_status("apps/deployments", ns, name, status);
    }

    /// The ReplicaSet controller (see the module's text).
    pub(super) fn reconcile_replicaset(&mut self, ns: &str, name: &str) {
        let Some(rs) = self
            .store
            .get("apps/replicasets", ns, name)
            .map(|s| s.value())
        else {
            return;
        };
        // What the store keeps beside each pod (terminating, phase, Ready) is all this needs:
        // the pods are decoded only to pick which to delete on a scale-down.
        let pods = self.pods_stored(ns, "ReplicaSet", name);
        let live: Vec<&(String, Stored)> = pods.iter().filter(|(_, p)| !p.terminating).collect();
        let want = usize::try_from(replicas(&rs)).unwrap_or(0);
        if live.len() < want {
            if let Some(pod) = Self::new_pod(&rs, "ReplicaSet") {
                for _ in live.len()..want {
                    let mut p = pod.clone();
                    p["metadata"]["generateName"] = json!(format!("{name}-"));
                    let _ = self.store.create("/pods", p, false);
                }
            }
        } else if live.len() > want {
            // Not yet running first, then not Ready, then the newest.
            let mut live: Vec<(String, bool, bool, Option<String>)> = live
                .iter()
                .map(|(pod, s)| {
                    let created = s.shared()["metadata"]["creationTimestamp"]
                        .as_str()
                        .map(str::to_owned);
                    (
                        pod.clone(),
                        s.phase.as_deref() == Some("Running"),
                        s.ready,
                        created,
                    )
                })
                .collect();
            live.sort_by(|a, b| {
                (a.1, a.2, std::cmp::Reverse(&a.3)).cmp(&(b.1, b.2, std::cmp::Reverse(&b.3)))
            });
            let extra: Vec<String> = live[..live.len() - want]
                .iter()
                .map(|(pod, ..)| pod.clone())
                .collect();
            for pod in extra {
                self.delete_gracefully(ns, &pod);
            }
        }
        let pods = self.pods_stored(ns, "ReplicaSet", name);
        let live: Vec<&Stored> = pods
            .iter()
            .map(|(_, p)| p)
            .filter(|p| !p.terminating)
            .collect();
        let ready = live.iter().filter(|p| p.ready).count();
        let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
        let mut status = rs["status"].clone();
        set_counts(
            &mut status,
            &[
                ("replicas", n(live.len())),
                ("fullyLabeledReplicas", n(live.len())),
                ("readyReplicas", n(ready)),
                ("availableReplicas", n(ready)),
                (
                    "observedGeneration",
                    rs["metadata"]["generation"].as_i64().unwrap_or(1),
                ),
                ("terminatingReplicas", n(pods.len() - live.len())),
            ],
            &["replicas", "terminatingReplicas"],
        );
        self.write_status("apps/replicasets", ns, name, status);
        // The Deployment's status follows its ReplicaSets.
        if let Some(owner) = rs["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true && o["kind"] == "Deployment")
            .and_then(|o| o["name"].as_str())
        {
            self.later.push((
                std::time::Duration::ZERO,
                super::Action::Deployment {
                    namespace: ns.to_owned(),
                    name: owner.to_owned(),
                },
            ));
        }
    }

    /// The StatefulSet controller (see the module's text).
    pub(super) fn reconcile_statefulset(&mut self, ns: &str, name: &str) {
        let Some(sts) = self
            .store
            .get("apps/statefulsets", ns, name)
            .map(|s| s.value())
        else {
            return;
        };
        let want = replicas(&sts);
        let pods = self.pods_of(ns, "StatefulSet", name);
        let ordinal = |p: &Value| {
            p["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix(&format!("{name}-")))
                .and_then(|o| o.parse::<i64>().ok())
        };
        // Scale down: the highest ordinal first, one at a time.
        if let Some(top) = pods
            .iter()
            .filter(|p| ordinal(p).is_some_and(|o| o >= want) && !terminating(p))
            .max_by_key(|p| ordinal(p))
            .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        {
            self.delete_gracefully(ns, &top);
        } else if let Some(pod) = Self::new_pod(&sts, "StatefulSet") {
            // Scale up: the lowest missing ordinal, once every one below it is Ready.
            for i in 0..want {
                match pods.iter().find(|p| ordinal(p) == Some(i)) {
                    Some(p) if is_pod_ready(p) && !terminating(p) => {}
                    Some(_) => break,
                    None => {
                        let mut p = pod;
                        p["metadata"]["name"] = json!(format!("{name}-{i}"));
                        p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] =
                            json!(format!("{name}-{i}"));
                        let _ = self.store.create("/pods", p, false);
                        break;
                    }
                }
            }
        }
        let pods = self.pods_of(ns, "StatefulSet", name);
        let live = pods.iter().filter(|p| !terminating(p)).count();
        let ready = pods
            .iter()
            .filter(|p| is_pod_ready(p) && !terminating(p))
            .count();
        let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
        let mut status = sts["status"].clone();
        set_counts(
            &mut status,
            &[
                (
                    "observedGeneration",
                    sts["metadata"]["generation"].as_i64().unwrap_or(1),
                ),
                ("replicas", n(pods.len())),
                ("readyReplicas", n(ready)),
                ("availableReplicas", n(ready)),
                ("currentReplicas", n(live)),
                ("updatedReplicas", n(live)),
                ("collisionCount", 0),
            ],
            &["replicas", "collisionCount"],
        );
        self.write_status("apps/statefulsets", ns, name, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_are_left_out_except_those_always_written() {
        let mut s = json!({"readyReplicas": 2});
        set_counts(
            &mut s,
            &[
                ("replicas", 0),
                ("readyReplicas", 0),
                ("availableReplicas", 1),
            ],
            &["replicas"],
        );
        assert_eq!(s, json!({"replicas": 0, "availableReplicas": 1}));
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        let h = template_hash(&t);
        assert_eq!(h.len(), 10);
        assert_eq!(h, template_hash(&t), "stable");
        let mut hashed = t.clone();
        hashed["metadata"]["labels"]["pod-template-hash"] = json!(h);
        assert_eq!(without_hash(&hashed), t);
    }
}
