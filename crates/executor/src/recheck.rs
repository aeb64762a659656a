//! The re-check of every migrated node before another node is admitted: a node proven once
//! must still hold up, or no new node starts.
//!
//! ```text
//! before an admission, for every migrated node (3 LISTs: nodes, CiliumNodes, agents, at most
//! every `recheck_every`; the pods from one watch of every pod (recheck/pods.rs), or, while
//! that watch does not answer, a LIST of every pod at most every `recheck_pods`):
//!     label still on · a Ready agent · CiliumNode CIDRs in the pool, clashing with no node's
//!     own · pods started since the migration in the pool
//! a regression ─► hold admissions, look again every tick
//!              └► lasting `regression_grace` ─► the run stops, naming the node and the signal
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError},
};

use planner::{plan::MIGRATION_LABEL, snapshot::PodInfo};
use tokio::time::Instant;

use crate::{
    agent::{self, AGENT_NAMESPACE, AGENT_SELECTOR},
    error::{StepError, cl},
    events::chain,
    step::{
        StepCtx,
        verify::{clashes, ips, must_be_on_cilium, old_pod_cidrs},
    },
};

mod pods;

pub use pods::PodWatch;

/// What the re-check concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every migrated node holds up.
    Clear,
    /// Hold admissions for now, and why.
    Hold(String),
    /// A regression lasted past the grace period: the run must stop.
    Regressed {
        /// The node.
        node: String,
        /// What no longer holds.
        reason: String,
    },
}

/// The re-check's memory between admissions.
#[derive(Default)]
struct Memory {
    /// When every pod was last listed.
    pods_listed: Option<Instant>,
    /// When the last re-check found nothing.
    passed: Option<Instant>,
    /// Regressions seen, by `node: signal`, with when they were first seen.
    suspects: BTreeMap<String, Instant>,
}

/// The re-check, remembering what it saw between admissions.
#[derive(Default)]
pub struct Recheck {
    memory: std::sync::Mutex<Memory>,
    /// The cluster whose pods are watched (`None`: every pod is listed).
    cluster: Option<Arc<dyn cluster::Cluster>>,
    /// The watch of every pod, and when it started.
    watch: std::sync::Mutex<Option<(PodWatch, Instant)>>,
}

impl Recheck {
    /// A re-check that watches `cluster`'s pods (from its first look), listing every pod only
    /// while the watch does not answer.
    pub fn watching(cluster: Arc<dyn cluster::Cluster>) -> Self {
        Self {
            cluster: Some(cluster),
            ..Self::default()
        }
    }

    /// The pods of each migrated node (with the time it moved to Cilium) that must be on
    /// Cilium and have no IP in `pool`, from the watch; `None` when the watch cannot answer
    /// (not started, its LIST not in, broken, or a node moved before what it keeps).
    fn watched_outside(
        &self,
        since: &[(&str, u64)],
        pool: &crate::ranges::Ranges,
    ) -> Option<Vec<(String, Vec<String>)>> {
        let cluster = self.cluster.as_ref()?;
        let floor = since.iter().map(|(_, s)| *s).min()?;
        let mut w = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if w.as_ref().is_none_or(|(pw, _)| floor < pw.floor()) {
            *w = PodWatch::start(cluster.clone(), floor).map(|pw| (pw, Instant::now()));
        }
        let (pw, _) = w.as_ref()?;
        let found = pw.on_nodes_since(since)?;
        Some(
            found
                .into_iter()
                .filter_map(|(node, pods)| {
                    let outside: Vec<String> = pods
                        .into_iter()
                        .filter(|(_, ips)| !ips.iter().any(|ip| pool.contains(ip)))
                        .take(5)
                        .map(|(key, ips)| {
                            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                            format!("{key} ({})", ips.join(","))
                        })
                        .collect();
                    (!outside.is_empty()).then_some((node, outside))
                })
                .collect(),
        )
    }

    /// Whether the watch of every pod started less than `within` ago and is not live yet (its
    /// LIST is on its way: a LIST of our own would fetch the same again).
    fn watch_starting(&self, within: std::time::Duration) -> bool {
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(pw, started)| !pw.live() && started.elapsed() < within)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-checks the migrated nodes (`ctx.node` is unused).
    pub async fn check(&self, ctx: &StepCtx<'_>, migrated: &[&str]) -> Verdict {
        if migrated.is_empty() {
            return Verdict::Clear;
        }
        let t = ctx.timing();
        {
            let m = self.memory();
            if m.suspects.is_empty() && m.passed.is_some_and(|p| p.elapsed() < t.recheck_every) {
                return Verdict::Clear;
            }
        }
        let found = match self.regressions(ctx, migrated).await {
            Ok(f) => f,
            // Not knowing is not a regression, but it is no proof either: hold.
            Err(e) => {
                return Verdict::Hold(format!(
                    "cannot re-check the migrated nodes before admitting another ({}); trying again",
                    chain(&e)
                ));
            }
        };
        let now = Instant::now();
        let mut m = self.memory();
        m.suspects
            .retain(|k, _| found.iter().any(|(n, s)| format!("{n}: {s}") == *k));
        m.passed = found.is_empty().then_some(now);
        for (node, signal) in &found {
            let first = *m.suspects.entry(format!("{node}: {signal}")).or_insert(now);
            if now.duration_since(first) >= t.regression_grace {
                return Verdict::Regressed {
                    node: node.clone(),
                    reason: format!(
                        "regression on migrated node {node}: {signal} (seen for {}s or more)",
                        t.regression_grace.as_secs()
                    ),
                };
            }
        }
        match found.first() {
            None => Verdict::Clear,
            Some((node, signal)) => Verdict::Hold(format!(
                "holding admissions: migrated node {node}: {signal}; looking again"
            )),
        }
    }

    /// What no longer holds on the migrated nodes, as (node, signal: expected vs seen).
    async fn regressions(
        &self,
        ctx: &StepCtx<'_>,
        migrated: &[&str],
    ) -> Result<Vec<(String, String)>, StepError> {
        let c = ctx.cluster;
        let pool = &ctx.ranges().await?;
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
            if ctx.spec().target.mode.is_overlay()
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
                    format!("expected a Ready Cilium agent, saw {}", agents_seen(&mine)),
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
        let mut since = Vec::with_capacity(migrated.len());
        for &m in migrated {
            since.push((m, ctx.on_cilium_since(m).await));
        }
        if let Some(found) = self.watched_outside(&since, pool) {
            for (m, outside) in found {
                out.push((
                    m,
                    format!(
                        "expected pods started since the migration to have IPs in {pool}, saw {}",
                        outside.join(", ")
                    ),
                ));
            }
            return Ok(out);
        }
        let due = self
            .memory()
            .pods_listed
            .is_none_or(|t| t.elapsed() >= ctx.timing().recheck_pods);
        if due && !self.watch_starting(ctx.timing().recheck_pods) {
            let pods = c.pods(None, "").await.map_err(cl("listing pods"))?;
            self.memory().pods_listed = Some(Instant::now());
            for &(m, since) in &since {
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
}

fn agents_seen(mine: &[&PodInfo]) -> String {
    if mine.is_empty() {
        return "none".to_owned();
    }
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
