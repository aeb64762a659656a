//! Proof that a node moved (`verify`), or moved back (`verify-rollback`): API signals, the pods
//! started on it since, and a probe pod that must reach the API server and a beacon on each
//! overlay.
//!
//! ```text
//! verify NODE   agent fresh + Ready, CiliumNode CIDRs in the pool   (API, retried to timeout)
//!               CiliumNode CIDRs clash with no node's old pod CIDR   (API)
//!               pods created on NODE since its agent restarted: IPs in the pool
//!               (a node admitted without a drain: its workload pods on the old overlay,
//!               scheduled there before the agent restarted, are evicted first)
//!               probe on NODE: new-pool IP, API server, beacon "old" (unmigrated node),
//!                              beacon "cilium" (migrated node, or NODE itself at first)
//! verify-rollback NODE   probe on NODE: an old-overlay IP, API server, the beacons
//! ```
//!
//! Beacons stay where they are while their node qualifies, move when it no longer does, and
//! are removed when the node phase ends ([`remove_beacons`]).

use std::net::IpAddr;

use ipnet::IpNet;
use planner::snapshot::{NodeInfo, PodInfo, PodPhase};

use super::{
    ctx::{Done, StepCtx},
    node::drain_options,
};
use crate::{
    agent,
    checkpoint::NodeStatus,
    drain,
    error::{CidrsSeen, ProbeProblem, StepError, cl},
    probe::{self, ProbeLog},
    ranges::Ranges,
    wait::{self, Check},
};

/// The nodes' own pod CIDRs (`spec.podCIDRs`: the old overlay's allocations), by node.
pub fn old_pod_cidrs(nodes: &[NodeInfo]) -> Vec<(String, IpNet)> {
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
pub fn clashes(cidrs: &[String], old: &[(String, IpNet)]) -> Vec<String> {
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

/// An RFC 3339 time as Unix seconds.
pub fn parse_time(t: Option<&str>) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(t?.trim_end_matches('Z')).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Pods that must be on Cilium: off the host network, running with an IP, not ours, and
/// created after `since` (Unix seconds).
pub fn must_be_on_cilium(p: &PodInfo, since: u64) -> bool {
    !p.host_network
        && !p.terminating
        && !p.phase.is_finished()
        && !p.pod_ips.is_empty()
        && !p.is_cni_migrate_pod()
        && parse_time(p.created.as_deref()).is_some_and(|c| c > since)
}

/// A pod's IPs, comma-separated.
pub fn ips(p: &PodInfo) -> String {
    p.pod_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The cheap per-node signals: a Ready agent restarted after the label, and the node's
/// CiliumNode pod CIDRs inside the new pool.
///
/// # Errors
/// [`StepError::AgentNotFresh`] or [`StepError::CiliumNodeCidrs`] explaining what was expected
/// and what was seen; an API failure.
pub async fn verify_basic(
    cluster: &dyn cluster::Cluster,
    pool: &Ranges,
    node: &str,
    old_agent_uids: &[String],
) -> Result<String, StepError> {
    Ok(verify_seen(cluster, pool, node, old_agent_uids).await?.said)
}

/// What the basic verification said, and what it read to say it (reused by the rest of the
/// verification instead of being read again).
pub struct Basic {
    /// What was seen, in words.
    pub said: String,
    /// Every pod on the node, as the check listed them.
    pub pods: Vec<PodInfo>,
    /// The CiliumNode's pod CIDRs (or ENI addresses).
    pub cidrs: Vec<String>,
}

/// [`verify_basic`], with what it read.
///
/// # Errors
/// As [`verify_basic`].
pub async fn verify_seen(
    cluster: &dyn cluster::Cluster,
    pool: &Ranges,
    node: &str,
    old_agent_uids: &[String],
) -> Result<Basic, StepError> {
    let all = cluster
        .pods_on_node(node)
        .await
        .map_err(cl(format!("listing agent pods on {node}")))?;
    let pods = agent::only_agents(all.clone());
    let Some(agent) = agent::fresh_ready_agent(&pods, old_agent_uids) else {
        return Err(StepError::AgentNotFresh {
            node: node.to_owned(),
            seen: if pods.is_empty() {
                "no agent pod".to_owned()
            } else {
                pods.iter()
                    .map(|p| {
                        format!(
                            "{} ready={} restarted={}",
                            p.key(),
                            p.ready,
                            !old_agent_uids.contains(&p.uid)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    };
    let cidrs = agent::cilium_node_cidrs(cluster, node)
        .await
        .map_err(cl(format!("reading CiliumNode {node}")))?;
    let unproven = |seen| StepError::CiliumNodeCidrs {
        node: node.to_owned(),
        pool: pool.to_string(),
        seen,
    };
    let c = match cidrs {
        None => return Err(unproven(CidrsSeen::NoCiliumNode)),
        Some(c) if c.is_empty() => return Err(unproven(CidrsSeen::NoneAllocated)),
        Some(c) => c,
    };
    let bad = agent::outside_pool(&c, pool);
    if !bad.is_empty() {
        return Err(unproven(CidrsSeen::Outside(bad)));
    }
    let said = if c.len() > 4 {
        // ENI mode: one host route per address.
        format!(
            "agent {} Ready; CiliumNode has {} addresses ({} .. {})",
            agent.key(),
            c.len(),
            c[0],
            c[c.len() - 1]
        )
    } else {
        format!(
            "agent {} Ready; CiliumNode pod CIDRs {} inside {pool}",
            agent.key(),
            c.join(",")
        )
    };
    Ok(Basic {
        said,
        pods: all,
        cidrs: c,
    })
}

/// The basic verification, given the verify timeout to converge (the CiliumNode may lag the
/// agent by a moment).
///
/// # Errors
/// The last failure seen at the deadline, or an API failure.
pub async fn wait_verified(ctx: &StepCtx<'_>, node: &str) -> Result<Basic, StepError> {
    let uids = ctx.ledger.agent_uids(node).await.unwrap_or_default();
    wait::until(
        ctx.verify_timeout(),
        ctx.timing().poll,
        || async {
            let pool = ctx.ranges().await?;
            match verify_seen(ctx.cluster, &pool, node, &uids).await {
                Ok(s) => Ok(Check::Done(s)),
                Err(e @ (StepError::AgentNotFresh { .. } | StepError::CiliumNodeCidrs { .. })) => {
                    tracing::debug!(node, error = %e, "not verified yet");
                    Ok(Check::Pending(e))
                }
                Err(e) => Err(e),
            }
        },
        |e| e,
    )
    .await
}

/// `verify`: the whole proof of a migrated node.
pub(super) async fn verify(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let (c, node) = (ctx.cluster, ctx.node);
    let basic = wait_verified(ctx, node).await?;
    let pool = &ctx.ranges().await?;
    let nodes = c.nodes().await.map_err(cl("listing nodes"))?;
    let clash = clashes(&basic.cidrs, &old_pod_cidrs(&nodes));
    if !clash.is_empty() {
        return Err(StepError::CidrClash {
            node: node.to_owned(),
            clashes: clash,
        });
    }
    let moved = restart_old_overlay_workloads(ctx, pool).await?;
    let since = ctx.on_cilium_since(node).await;
    // The pods the basic check listed a moment ago, unless pods were evicted since.
    let pods = if moved.is_empty() {
        basic.pods
    } else {
        c.pods_on_node(node)
            .await
            .map_err(cl(format!("listing pods on {node}")))?
    };
    let outside: Vec<String> = pods
        .iter()
        .filter(|p| must_be_on_cilium(p, since))
        .filter(|p| !p.pod_ips.iter().any(|ip| pool.contains(ip)))
        .map(|p| format!("{} ({})", p.key(), ips(p)))
        .collect();
    if !outside.is_empty() {
        return Err(StepError::PodsOffCilium {
            node: node.to_owned(),
            pool: pool.to_string(),
            pods: outside,
        });
    }
    let probe = probe_with_retries(ctx, true, Some(pods)).await?;
    Ok(Done::Done(format!("{}; {probe}{moved}", basic.said)))
}

/// On a node admitted without a drain (it joined empty), a workload pod scheduled there after
/// the admission and before the agent restarted runs on the old overlay: it is evicted, as a
/// drain evicts (PDBs honoured), and its controller starts it again on Cilium. What was done,
/// as a clause for the step's message (empty when nothing was).
async fn restart_old_overlay_workloads(
    ctx: &StepCtx<'_>,
    pool: &Ranges,
) -> Result<String, StepError> {
    let node = ctx.node;
    if !ctx.ledger.prior(node).await.is_some_and(|p| p.light) {
        return Ok(String::new());
    }
    let select = |p: &PodInfo| {
        planner::plan::evictable(p)
            && !p.host_network
            && !p.pod_ips.is_empty()
            && !p.pod_ips.iter().any(|ip| pool.contains(ip))
    };
    let report = drain::evict_where(ctx.cluster, node, &drain_options(ctx), &select).await?;
    ctx.ledger
        .count_evictions(node, &report.evicted, &report.pdb_waits);
    Ok(if report.evicted.is_empty() {
        String::new()
    } else {
        format!(
            "; evicted {} workload pod(s) scheduled onto it on the old overlay before its agent restarted: {}",
            report.evicted.len(),
            report.evicted.join(", ")
        )
    })
}

/// `verify-rollback`: the node hands out old-overlay addresses again, and they reach.
pub(super) async fn verify_rollback(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    probe_with_retries(ctx, false, None).await.map(Done::Done)
}

/// The probe, tried up to three times within the verify timeout (a fresh agent may need a
/// moment to program its routes). `on_cilium`: the node should hand out new-pool IPs (a
/// migrated node), or old ones (a rolled-back node).
/// `listed`: the node's pods as just listed (the first attempt looks for a leftover probe
/// among them instead of listing again).
async fn probe_with_retries(
    ctx: &StepCtx<'_>,
    on_cilium: bool,
    mut listed: Option<Vec<PodInfo>>,
) -> Result<String, StepError> {
    let mut attempt = 0;
    wait::until(
        ctx.verify_timeout(),
        ctx.timing().poll * 4,
        || {
            attempt += 1;
            let last = attempt >= 3;
            let listed = listed.take();
            async move {
                match probe(ctx, on_cilium, listed).await {
                    Ok(s) => Ok(Check::Done(s)),
                    Err(e @ (StepError::Probe { .. } | StepError::PodNotDone { .. })) if !last => {
                        tracing::debug!(node = ctx.node, error = %e, "probe failed; trying again");
                        Ok(Check::Pending(e))
                    }
                    Err(e) => Err(e),
                }
            }
        },
        |e| e,
    )
    .await
}

/// One probe run on the node, with the beacons in place.
async fn probe(
    ctx: &StepCtx<'_>,
    on_cilium: bool,
    listed: Option<Vec<PodInfo>>,
) -> Result<String, StepError> {
    let (c, node) = (ctx.cluster, ctx.node);
    let pool = &ctx.ranges().await?;
    let beacons = ensure_beacons(ctx, on_cilium).await?;
    match listed {
        Some(pods) => probe::remove_listed(c, &pods, Some(probe::PROBE_LABEL)).await?,
        None => probe::remove_on_node(c, node, Some(probe::PROBE_LABEL)).await?,
    };
    let targets: Vec<IpAddr> = beacons.iter().map(|b| b.ip).collect();
    let pod = probe::probe_pod(node, &ctx.spec().rollout.verify.image, &targets);
    let (done, log) = probe::run_to_completion(
        c,
        &pod,
        "probe",
        node,
        ctx.verify_timeout(),
        ctx.timing().poll,
    )
    .await?;
    let log = ProbeLog::parse(&log);
    let mut wrong = Vec::new();
    let ip = done.pod_ips.first().copied();
    match ip {
        Some(ip) if pool.contains(&ip) == on_cilium => {}
        Some(ip) if !on_cilium => wrong.push(ProbeProblem::StillInPool {
            ip: ip.to_string(),
            pool: pool.to_string(),
        }),
        Some(ip) => wrong.push(ProbeProblem::NotInPool {
            ip: ip.to_string(),
            pool: pool.to_string(),
        }),
        None => wrong.push(ProbeProblem::NoIp),
    }
    match log.apiserver.as_deref() {
        Some("ok") => {}
        Some(other) => wrong.push(ProbeProblem::ApiServer(other.to_owned())),
        None => wrong.push(ProbeProblem::NoReport(
            log.ip.clone().unwrap_or_else(|| "nothing".to_owned()),
        )),
    }
    for b in &beacons {
        let verdict = log
            .reach
            .iter()
            .find(|(t, _)| *t == b.ip.to_string())
            .map_or("no result", |(_, v)| v.as_str());
        if verdict != "ok" {
            wrong.push(ProbeProblem::Beacon {
                ip: b.ip.to_string(),
                node: b.node.clone(),
                overlay: b.overlay.to_owned(),
                verdict: verdict.to_owned(),
            });
        }
    }
    if !wrong.is_empty() {
        return Err(StepError::Probe {
            node: node.to_owned(),
            problems: wrong,
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

/// A beacon in place.
#[derive(Clone, Debug)]
struct Beacon {
    node: String,
    ip: IpAddr,
    overlay: &'static str,
}

/// The beacons a probe on the step's node must reach: one on a node not yet started (old
/// overlay) while there is one, and one on a migrated node (the node itself at first).
/// Beacons stay where they are while their node qualifies, and move when it no longer does.
async fn ensure_beacons(ctx: &StepCtx<'_>, on_cilium: bool) -> Result<Vec<Beacon>, StepError> {
    let _held = ctx.shared.beacons.lock().await;
    let (c, verifying) = (ctx.cluster, ctx.node);
    let spec = ctx.spec();
    let pool = &ctx.ranges().await?;
    let names: Vec<&str> = ctx.plan.nodes.iter().map(|n| n.name.as_str()).collect();
    let statuses = ctx.ledger.statuses(&names).await;
    let untouched = |n: &str| statuses.get(n) == Some(&NodeStatus::Pending);
    let done = |n: &str| statuses.get(n) == Some(&NodeStatus::Done);
    let migrated = |n: &str| (on_cilium && n == verifying) || done(n);
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
                p.is_cni_migrate_pod()
                    && p.labels.get(probe::BEACON_LABEL).map(String::as_str) == Some(overlay)
            })
            .collect();
        let keep = mine
            .iter()
            .find(|p| qualifies(p) && p.phase == PodPhase::Running && !p.terminating);
        for p in mine.iter().filter(|p| Some(**p) != keep.copied()) {
            let _ = c.delete_pod(&p.namespace, &p.name, None).await;
        }
        if let Some(p) = keep {
            if let (Some(node), Some(ip)) = (&p.node_name, p.pod_ips.first()) {
                if overlay == "old" {
                    ctx.shared.note_old_beacon(node);
                }
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
            ctx.plan
                .nodes
                .iter()
                .rev()
                .map(|n| n.name.as_str())
                .find(|n| *n != verifying && untouched(n))
        } else {
            ctx.plan
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .find(|n| *n != verifying && done(n))
                .or(on_cilium.then_some(verifying))
        };
        let Some(place) = place else {
            continue;
        };
        if overlay == "old" {
            ctx.shared.note_old_beacon(place);
        }
        let pod = probe::beacon_pod(place, &spec.rollout.verify.image, overlay);
        let running = probe::run_pod(
            c,
            &pod,
            &format!("{overlay}-overlay beacon"),
            place,
            false,
            ctx.verify_timeout(),
            ctx.timing().poll,
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

/// Removes every pod of the tool (the beacons, and a probe or restore pod whose own deletion
/// failed): the node phase is over. Best effort: a pod left behind is reported and removed
/// again by the final check. Returns how many were removed.
pub async fn remove_beacons(c: &dyn cluster::Cluster) -> usize {
    let selector = format!("{}={}", probe::MANAGED_BY.0, probe::MANAGED_BY.1);
    let mut n = 0;
    // A few rounds: a passing API failure (a 500, a 429) must not leave a pod of ours behind.
    for round in 0u32..5 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200) * round).await;
        }
        let pods = match c.pods(Some(probe::NAMESPACE), &selector).await {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the tool's pods to remove them");
                continue;
            }
        };
        let left: Vec<&PodInfo> = pods
            .iter()
            .filter(|p| p.is_cni_migrate_pod() && !p.terminating)
            .collect();
        if left.is_empty() {
            break;
        }
        for p in left {
            match c.delete_pod(&p.namespace, &p.name, None).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(pod = %p.key(), error = %e, "cannot remove a beacon"),
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashes_name_both_sides() {
        let old = vec![
            ("a".to_owned(), "10.244.0.0/24".parse().expect("net")),
            ("b".to_owned(), "10.245.0.0/24".parse().expect("net")),
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
            pod_ips: vec!["10.244.0.9".parse().expect("ip")],
            phase: PodPhase::Running,
            ..PodInfo::default()
        };
        let t = parse_time(Some("2026-12-03T10:00:00Z")).expect("time");
        assert!(!must_be_on_cilium(&pod("2026-12-03T10:00:00Z"), t));
        assert!(must_be_on_cilium(&pod("2026-12-03T10:00:01Z"), t));
        let mut host = pod("2026-12-03T10:00:01Z");
        host.host_network = true;
        assert!(!must_be_on_cilium(&host, t));
    }
}
