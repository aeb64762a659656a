//! Proof that a node moved: the per-node verification (API signals, pods, the probe and its
//! beacons), the re-check of every migrated node before each admission, and the final check.
//!
//! ```text
//! verify NODE   agent fresh + Ready, CiliumNode CIDRs in the pool   (API, retried to timeout)
//!               CiliumNode CIDRs clash with no node's old pod CIDR   (API)
//!               pods created on NODE since its agent restarted: IPs in the pool
//!               probe on NODE: new-pool IP, API server, beacon "old" (unmigrated node),
//!                              beacon "cilium" (migrated node, or NODE itself at first)
//! before each admission, for every migrated node (3 LISTs: nodes, CiliumNodes, agents, at
//! most every `recheck_every`; every pod at most every `recheck_pods`): label, Ready agent,
//! CiliumNode CIDRs, new pods
//!               a regression holds admissions; lasting `regression_grace`, it stops the run
//! ```

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use planner::{StepKind, plan::MIGRATION_LABEL, snapshot::PodInfo};
use tokio::time::Instant;

use super::{EventKind, RunError, Runner, chain};
use crate::{
    agent::{self, AGENT_NAMESPACE, AGENT_SELECTOR},
    checkpoint::{Checkpoint, FailureRecord},
    probe::{self, ProbeLog, Ranges},
    scheduler,
    steps::{StepError, cl},
};

/// The nodes' own pod CIDRs (`spec.podCIDRs`: the old overlay's allocations), by node.
pub(crate) fn old_pod_cidrs(nodes: &[planner::snapshot::NodeInfo]) -> Vec<(String, IpNet)> {
    nodes
        .iter()
        .flat_map(|n| {
            n.pod_cidrs
                .iter()
                .filter_map(|c| c.parse::<IpNet>().ok())
                .map(|c| (n.name.clone(), c))
        })
        .collect()
}

/// The CiliumNode CIDRs that overlap a node's own pod CIDR, explained.
pub(crate) fn clashes(cidrs: &[String], old: &[(String, IpNet)]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cidrs {
        let Ok(net) = c.parse::<IpNet>() else {
            continue;
        };
        for (node, o) in old {
            if net.contains(o) || o.contains(&net) {
                out.push(format!("{net} overlaps {node}'s pod CIDR {o}"));
            }
        }
    }
    out
}

fn parse_time(t: Option<&str>) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(t?.trim_end_matches('Z')).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Pods that must be on Cilium: off the host network, running with an IP, not ours, and
/// created after `since` (Unix seconds).
fn must_be_on_cilium(p: &PodInfo, since: u64) -> bool {
    !p.host_network
        && !p.terminating
        && !p.phase.is_finished()
        && !p.pod_ips.is_empty()
        && !probe::is_ours(p)
        && parse_time(p.created.as_deref()).is_some_and(|c| c > since)
}

fn ips(p: &PodInfo) -> String {
    p.pod_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Runner<'_> {
    /// Cilium's ranges: the spec's pool for an overlay; in ENI mode, every address of every
    /// CiliumNode's ENI pool (there is no pool to name in advance).
    pub(super) async fn pool(&self) -> Result<Ranges, StepError> {
        let spec = &self.plan.spec;
        if spec.target.mode.is_overlay() {
            return Ok(Ranges::new(spec.target.pod_cidrs.iter().copied()));
        }
        let cns = self
            .cluster
            .cilium_nodes()
            .await
            .map_err(cl("listing CiliumNodes"))?;
        Ok(Ranges::new(cns.iter().flat_map(|cn| {
            cn.pod_cidrs.iter().filter_map(|c| c.parse().ok())
        })))
    }

    /// Since when (Unix seconds) a node's new pods must be on Cilium: its agent restart; in
    /// ENI mode, where the restart-unmanaged-pods step moved every pod, all of them.
    pub(super) fn on_cilium_since(&self, ck: &Checkpoint, node: &str) -> u64 {
        if self.plan.spec.target.mode.is_overlay() {
            self.restarted_at(ck, node).unwrap_or(u64::MAX)
        } else {
            0
        }
    }

    /// When the node's agent restart finished (Unix seconds), from the checkpoint.
    pub(super) fn restarted_at(&self, ck: &Checkpoint, node: &str) -> Option<u64> {
        let idx = self
            .plan
            .node_steps(node)
            .position(|s| s.kind == StepKind::RestartAgent)?;
        let t = *ck.nodes.get(node)?.times.get(idx * 2 + 1)?;
        (t > 0).then(|| ck.created + u64::from(t))
    }

    /// The whole per-node verification, after the basic API signals passed.
    pub(super) async fn verify_node(&self, node: &str, basic: String) -> Result<String, StepError> {
        let c = &*self.cluster;
        let pool = &self.pool().await?;
        let nodes = c.nodes().await.map_err(cl("listing nodes"))?;
        let cidrs = agent::cilium_node_cidrs(c, node)
            .await
            .map_err(cl(format!("reading CiliumNode {node}")))?
            .unwrap_or_default();
        let clash = clashes(&cidrs, &old_pod_cidrs(&nodes));
        if !clash.is_empty() {
            return Err(StepError::Verify {
                node: node.to_owned(),
                reason: format!(
                    "expected CiliumNode {node}'s pod CIDRs to overlap no node's own pod CIDR (the old overlay), saw {}: pods on the two overlays would share addresses",
                    clash.join("; ")
                ),
            });
        }
        let since = {
            let ck = self.ck.lock().await;
            self.on_cilium_since(&ck, node)
        };
        let pods = c
            .pods_on_node(node)
            .await
            .map_err(cl(format!("listing pods on {node}")))?;
        let outside: Vec<String> = pods
            .iter()
            .filter(|p| must_be_on_cilium(p, since))
            .filter(|p| !p.pod_ips.iter().any(|ip| pool.contains(ip)))
            .map(|p| format!("{} ({})", p.key(), ips(p)))
            .collect();
        if !outside.is_empty() {
            return Err(StepError::Verify {
                node: node.to_owned(),
                reason: format!(
                    "expected every pod started on {node} since its agent restarted to have an IP in {}, saw {}",
                    pool,
                    outside.join(", ")
                ),
            });
        }
        let probe = self.probe_with_retries(node, true).await?;
        Ok(format!("{basic}; {probe}"))
    }

    /// The probe, tried up to three times within the verify timeout (a fresh agent may need a
    /// moment to program its routes). `on_cilium`: the node should hand out new-pool IPs
    /// (a migrated node), or old ones (a rolled-back node).
    pub(super) async fn probe_with_retries(
        &self,
        node: &str,
        on_cilium: bool,
    ) -> Result<String, StepError> {
        let deadline = Instant::now() + self.plan.spec.rollout.verify.timeout.0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.probe(node, on_cilium).await {
                Ok(s) => return Ok(s),
                Err(e @ StepError::Verify { .. }) if attempt < 3 && Instant::now() < deadline => {
                    tracing::debug!(node, error = %e, "probe failed; trying again");
                    tokio::time::sleep(self.cfg.timing.poll * 4).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One probe run on the node, with the beacons in place.
    async fn probe(&self, node: &str, on_cilium: bool) -> Result<String, StepError> {
        let c = &*self.cluster;
        let spec = &self.plan.spec;
        let pool = &self.pool().await?;
        let beacons = self.ensure_beacons(node, on_cilium).await?;
        probe::remove_on_node(c, node, Some(probe::PROBE_LABEL)).await?;
        let targets: Vec<IpAddr> = beacons.iter().map(|b| b.ip).collect();
        let pod = probe::probe_pod(node, &spec.rollout.verify.image, &targets);
        let (done, log) = probe::run_to_completion(
            c,
            &pod,
            "probe",
            node,
            spec.rollout.verify.timeout.0,
            self.cfg.timing.poll,
        )
        .await?;
        let log = ProbeLog::parse(&log);
        let mut wrong = Vec::new();
        let ip = done.pod_ips.first().copied();
        match ip {
            Some(ip) if pool.contains(&ip) == on_cilium => {}
            Some(ip) if !on_cilium => wrong.push(format!(
                "expected the probe's IP outside Cilium's pool {} (back on the old overlay), saw {ip}: the node still runs pods on Cilium (is 05-cilium.conflist still in /etc/cni/net.d?)",
                pool
            )),
            Some(ip) => wrong.push(format!(
                "expected the probe's IP in {}, saw {ip} (the node still hands out old-overlay addresses: is the CiliumNodeConfig applied to it? see the agent's log)",
                pool
            )),
            None => wrong.push("expected the probe pod to have an IP, saw none".to_owned()),
        }
        match log.apiserver.as_deref() {
            Some("ok") => {}
            Some(other) => wrong.push(format!(
                "expected the probe to reach the API server (healthz ok), saw {other}"
            )),
            None => wrong.push(format!(
                "expected the probe's report in its log, saw {:?}",
                log.ip.as_deref().unwrap_or("nothing")
            )),
        }
        for b in &beacons {
            let verdict = log
                .reach
                .iter()
                .find(|(t, _)| *t == b.ip.to_string())
                .map_or("no result", |(_, v)| v.as_str());
            if verdict != "ok" {
                wrong.push(format!(
                    "expected the probe to reach beacon {} on {} ({} overlay), saw {verdict}",
                    b.ip, b.node, b.overlay
                ));
            }
        }
        if !wrong.is_empty() {
            return Err(StepError::Verify {
                node: node.to_owned(),
                reason: wrong.join("; "),
            });
        }
        let reached: Vec<String> = beacons
            .iter()
            .map(|b| format!("{} on {} ({})", b.ip, b.node, b.overlay))
            .collect();
        Ok(format!(
            "probe got {} and reached the API server{}",
            ip.map(|i| i.to_string()).unwrap_or_default(),
            if reached.is_empty() {
                String::new()
            } else {
                format!(" and {}", reached.join(", "))
            }
        ))
    }

    /// The beacons a probe on `verifying` must reach: one on a node not yet started (old
    /// overlay) while there is one, and one on a migrated node (`verifying` itself at first).
    /// Beacons stay where they are while their node qualifies, and move when it no longer does.
    async fn ensure_beacons(
        &self,
        verifying: &str,
        on_cilium: bool,
    ) -> Result<Vec<Beacon>, StepError> {
        let _held = self.beacons.lock().await;
        let c = &*self.cluster;
        let spec = &self.plan.spec;
        let pool = &self.pool().await?;
        let ck = self.ck.lock().await.clone();
        let untouched = |n: &str| {
            !scheduler::node_done(&ck, n)
                && !scheduler::node_in_flight(&ck, n)
                && !scheduler::held(&ck, n)
        };
        let migrated = |n: &str| (on_cilium && n == verifying) || scheduler::node_done(&ck, n);
        let existing = c
            .pods(Some(probe::NAMESPACE), probe::BEACON_LABEL)
            .await
            .map_err(cl("listing the beacons"))?;
        let mut out = Vec::new();
        // In ENI mode every node's new pods are on Cilium from the install: there is no old
        // overlay to place a beacon on (the old pods keep their VPC routes).
        let overlays: &[&'static str] = if spec.target.mode.is_overlay() {
            &["old", "cilium"]
        } else {
            &["cilium"]
        };
        for &overlay in overlays {
            let qualifies = |p: &PodInfo| {
                let Some(n) = p.node_name.as_deref() else {
                    return false;
                };
                let on_pool = p.pod_ips.iter().any(|ip| pool.contains(ip));
                if overlay == "old" {
                    untouched(n) && !on_pool
                } else {
                    migrated(n) && on_pool
                }
            };
            let mine: Vec<&PodInfo> = existing
                .iter()
                .filter(|p| {
                    probe::is_ours(p)
                        && p.labels.get(probe::BEACON_LABEL).map(String::as_str) == Some(overlay)
                })
                .collect();
            let keep = mine.iter().find(|p| {
                qualifies(p) && p.phase == planner::snapshot::PodPhase::Running && !p.terminating
            });
            for p in mine.iter().filter(|p| Some(**p) != keep.copied()) {
                let _ = c.delete_pod(&p.namespace, &p.name, None).await;
            }
            if let Some(p) = keep {
                if let (Some(node), Some(ip)) = (&p.node_name, p.pod_ips.first()) {
                    out.push(Beacon {
                        node: node.clone(),
                        ip: *ip,
                        overlay,
                    });
                }
                continue;
            }
            // Old: the last node in the plan not yet started (it moves rarely). Cilium: a
            // migrated node other than this one, else this one.
            let place = if overlay == "old" {
                self.plan
                    .nodes
                    .iter()
                    .rev()
                    .map(|n| n.name.as_str())
                    .find(|n| *n != verifying && untouched(n))
            } else {
                self.plan
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .find(|n| *n != verifying && scheduler::node_done(&ck, n))
                    .or(on_cilium.then_some(verifying))
            };
            let Some(place) = place else {
                continue;
            };
            let pod = probe::beacon_pod(place, &spec.rollout.verify.image, overlay);
            let running = probe::run_pod(
                c,
                &pod,
                &format!("{overlay}-overlay beacon"),
                place,
                false,
                spec.rollout.verify.timeout.0,
                self.cfg.timing.poll,
            )
            .await?;
            if let Some(ip) = running.pod_ips.first() {
                out.push(Beacon {
                    node: place.to_owned(),
                    ip: *ip,
                    overlay,
                });
            }
        }
        Ok(out)
    }

    /// Removes every pod of the tool (the beacons, and a probe or restore pod whose own
    /// deletion failed): the node phase is over. Best effort: a pod left behind is reported and
    /// removed again by the final check.
    pub(super) async fn remove_beacons(&self) -> usize {
        let c = &*self.cluster;
        let selector = format!("{}={}", probe::MANAGED_BY.0, probe::MANAGED_BY.1);
        let Ok(pods) = c.pods(Some(probe::NAMESPACE), &selector).await else {
            return 0;
        };
        let mut n = 0;
        for p in pods.iter().filter(|p| probe::is_ours(p)) {
            match c.delete_pod(&p.namespace, &p.name, None).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(pod = %p.key(), error = %e, "cannot remove a beacon"),
            }
        }
        n
    }

    /// The re-check of every migrated node before an admission. `Some(why)` holds admissions
    /// (a regression not yet lasting, or one that stopped the run: it is then the checkpoint's
    /// failure).
    pub(super) async fn recheck(&self, ck: &Checkpoint) -> Result<Option<String>, RunError> {
        let migrated: Vec<&str> = self
            .plan
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| scheduler::node_done(ck, n))
            .collect();
        if migrated.is_empty() {
            return Ok(None);
        }
        {
            let r = self
                .recheck
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if r.suspects.is_empty()
                && r.passed
                    .is_some_and(|t| t.elapsed() < self.cfg.timing.recheck_every)
            {
                return Ok(None);
            }
        }
        let found = match self.regressions(ck, &migrated).await {
            Ok(f) => f,
            Err(e) => {
                // Not knowing is not a regression, but it is no proof either: hold.
                return Ok(Some(format!(
                    "cannot re-check the migrated nodes before admitting another ({}); trying again",
                    chain(&e)
                )));
            }
        };
        let now = Instant::now();
        let lasting = {
            let mut r = self
                .recheck
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.suspects
                .retain(|k, _| found.iter().any(|(n, s)| format!("{n}: {s}") == *k));
            r.passed = found.is_empty().then_some(now);
            let mut lasting = None;
            for (node, signal) in &found {
                let first = *r.suspects.entry(format!("{node}: {signal}")).or_insert(now);
                if lasting.is_none()
                    && now.duration_since(first) >= self.cfg.timing.regression_grace
                {
                    lasting = Some((node.clone(), signal.clone()));
                }
            }
            lasting
        };
        if let Some((node, signal)) = lasting {
            let reason = format!(
                "regression on migrated node {node}: {signal} (seen for {}s or more)",
                self.cfg.timing.regression_grace.as_secs()
            );
            let step = format!("{node}/verify");
            {
                let mut ck = self.ck.lock().await;
                if ck.failure.is_none() {
                    ck.failure = Some(FailureRecord {
                        step: step.clone(),
                        reason: reason.clone(),
                        at: u32::try_from(self.now().saturating_sub(ck.created))
                            .unwrap_or(u32::MAX),
                    });
                    self.save(&mut ck).await?;
                }
            }
            self.emit(EventKind::StepFailed, None, Some(&node), reason.clone());
            if let Some(s) = self.index.step(&step) {
                self.node_event(s, "MigrationRegressed", &reason, true)
                    .await;
            }
            return Ok(Some(format!("stopped: {reason}")));
        }
        Ok(found.first().map(|(node, signal)| {
            format!("holding admissions: migrated node {node}: {signal}; looking again")
        }))
    }

    /// What no longer holds on the migrated nodes, as (node, signal: expected vs seen).
    async fn regressions(
        &self,
        ck: &Checkpoint,
        migrated: &[&str],
    ) -> Result<Vec<(String, String)>, StepError> {
        let c = &*self.cluster;
        let pool = &self.pool().await?;
        let nodes = c.nodes().await.map_err(cl("listing nodes"))?;
        let cns = c.cilium_nodes().await.map_err(cl("listing CiliumNodes"))?;
        let agents = c
            .pods(Some(AGENT_NAMESPACE), AGENT_SELECTOR)
            .await
            .map_err(cl("listing the Cilium agents"))?;
        let old = old_pod_cidrs(&nodes);
        let by_name: BTreeMap<&str, &planner::snapshot::NodeInfo> =
            nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut out = Vec::new();
        for &m in migrated {
            let Some(n) = by_name.get(m) else {
                // A node removed from the cluster is not a network regression.
                continue;
            };
            if self.plan.spec.target.mode.is_overlay()
                && n.labels.get(MIGRATION_LABEL).is_none_or(|v| v != "true")
            {
                out.push((
                    m.to_owned(),
                    format!("expected the label {MIGRATION_LABEL}=true, saw it gone"),
                ));
            }
            let mine: Vec<&PodInfo> = agents
                .iter()
                .filter(|p| p.node_name.as_deref() == Some(m))
                .collect();
            if !mine.iter().any(|p| p.ready && !p.terminating) {
                out.push((
                    m.to_owned(),
                    format!(
                        "expected a Ready Cilium agent, saw {}",
                        if mine.is_empty() {
                            "none".to_owned()
                        } else {
                            mine.iter()
                                .map(|p| {
                                    format!(
                                        "{} ready={}{}",
                                        p.key(),
                                        p.ready,
                                        p.waiting_reason
                                            .as_deref()
                                            .map(|r| format!(" ({r})"))
                                            .unwrap_or_default()
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
            }
            match cns.iter().find(|cn| cn.name == m) {
                None => out.push((
                    m.to_owned(),
                    format!("expected CiliumNode {m} with pod CIDRs in {pool}, saw none"),
                )),
                Some(cn) => {
                    let bad = agent::outside_pool(&cn.pod_cidrs, pool);
                    if !bad.is_empty() || cn.pod_cidrs.is_empty() {
                        out.push((
                            m.to_owned(),
                            format!(
                                "expected CiliumNode pod CIDRs inside {pool}, saw {}",
                                if cn.pod_cidrs.is_empty() {
                                    "none".to_owned()
                                } else {
                                    cn.pod_cidrs.join(",")
                                }
                            ),
                        ));
                    }
                    let clash = clashes(&cn.pod_cidrs, &old);
                    if !clash.is_empty() {
                        out.push((
                            m.to_owned(),
                            format!(
                                "expected its CiliumNode CIDRs to overlap no node's own pod CIDR, saw {}",
                                clash.join("; ")
                            ),
                        ));
                    }
                }
            }
        }
        let due = {
            let r = self
                .recheck
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.pods_listed
                .is_none_or(|t| t.elapsed() >= self.cfg.timing.recheck_pods)
        };
        if due {
            let pods = c.pods(None, "").await.map_err(cl("listing pods"))?;
            self.recheck
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pods_listed = Some(Instant::now());
            for &m in migrated {
                let since = self.on_cilium_since(ck, m);
                let outside: Vec<String> = pods
                    .iter()
                    .filter(|p| p.node_name.as_deref() == Some(m) && must_be_on_cilium(p, since))
                    .filter(|p| !p.pod_ips.iter().any(|ip| pool.contains(ip)))
                    .take(5)
                    .map(|p| format!("{} ({})", p.key(), ips(p)))
                    .collect();
                if !outside.is_empty() {
                    out.push((
                        m.to_owned(),
                        format!(
                            "expected pods started since the migration to have IPs in {pool}, saw {}",
                            outside.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The CiliumEndpoint part of the final check: every pod given has an endpoint with its
    /// IP. `None` when CiliumEndpointSlices replace per-pod endpoints (nothing to compare).
    pub(super) async fn pods_without_endpoints(
        &self,
        pods: &[&PodInfo],
    ) -> Result<Option<Vec<String>>, StepError> {
        let c = &*self.cluster;
        let slices = c
            .configmap(AGENT_NAMESPACE, "cilium-config")
            .await
            .map_err(cl("reading kube-system/cilium-config"))?
            .and_then(|cm| cm.data)
            .and_then(|d| d.get("enable-cilium-endpoint-slice").cloned())
            .is_some_and(|v| v == "true");
        if slices {
            return Ok(None);
        }
        let eps = c
            .cilium_endpoints()
            .await
            .map_err(cl("listing CiliumEndpoints"))?;
        let by_pod: BTreeMap<(&str, &str), &cluster::EndpointInfo> = eps
            .iter()
            .map(|e| ((e.namespace.as_str(), e.name.as_str()), e))
            .collect();
        Ok(Some(
            pods.iter()
                .filter(|p| {
                    by_pod
                        .get(&(p.namespace.as_str(), p.name.as_str()))
                        .is_none_or(|e| !p.pod_ips.iter().any(|ip| e.ips.contains(ip)))
                })
                .map(|p| p.key())
                .collect(),
        ))
    }
}

/// A beacon in place.
#[derive(Clone, Debug)]
struct Beacon {
    node: String,
    ip: IpAddr,
    overlay: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashes_name_both_sides() {
        let old = vec![
            ("a".to_owned(), "10.244.0.0/24".parse().unwrap()),
            ("b".to_owned(), "10.245.0.0/24".parse().unwrap()),
        ];
        assert!(clashes(&["10.245.1.0/24".into()], &old).is_empty());
        assert_eq!(
            clashes(&["10.245.0.0/24".into()], &old),
            vec!["10.245.0.0/24 overlaps b's pod CIDR 10.245.0.0/24".to_owned()]
        );
    }

    #[test]
    fn only_pods_created_after_the_restart_must_be_on_cilium() {
        let pod = |created: &str| PodInfo {
            created: Some(created.to_owned()),
            pod_ips: vec!["10.244.0.9".parse().unwrap()],
            phase: planner::snapshot::PodPhase::Running,
            ..PodInfo::default()
        };
        let t = parse_time(Some("2026-12-03T10:00:00Z")).unwrap();
        assert!(!must_be_on_cilium(&pod("2026-12-03T10:00:00Z"), t));
        assert!(must_be_on_cilium(&pod("2026-12-03T10:00:01Z"), t));
        let mut host = pod("2026-12-03T10:00:01Z");
        host.host_network = true;
        assert!(!must_be_on_cilium(&host, t));
    }
}
