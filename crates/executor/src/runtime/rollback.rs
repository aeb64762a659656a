//! `cni-migrate rollback`: a node back to the old CNI.
//!
//! ```text
//! refuse once the finale began (Cilium is then the primary CNI everywhere)
//! record: node held (rolled back), its steps Pending again, prior state kept   ─► checkpoint
//! cordon ─► drain (same safety as apply) ─► label off ─► restart agent (it no longer
//! manages the CNI) ─► restore pod (*.cilium_bak back, 05-cilium.conflist gone) ─► reboot hook
//! ─► probe: an old-overlay IP, API server, beacons ─► uncordon if we cordoned ─► checkpoint
//! ```
//!
//! The agent restarts before the CNI files are restored, not after: an agent still running
//! with `cni-exclusive` would rename the restored configuration away again. Every step
//! observes first, so running `rollback` again after a crash is safe; the node stays held
//! until `resume --retry NODE`.

use planner::{StepKind, plan::MIGRATION_LABEL};

use super::{EventKind, RunError, Runner, chain};
use crate::{
    agent,
    drain::{self, DrainOptions},
    probe,
    steps::{self, StepError},
};

/// How a node's rollback ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackEnd {
    /// Back on the old CNI; what was seen.
    Done(String),
    /// Nothing to do; why.
    Nothing(String),
    /// A step failed; the node is left as it is (cordoned), and `rollback` may run again.
    Failed {
        /// The rollback step (`cordon`, `drain`, ...).
        step: String,
        /// Why.
        reason: String,
    },
}

impl Runner<'_> {
    /// Whether the finale has begun, and what it has done (rollback is refused then).
    pub async fn finale_begun(&self) -> Option<String> {
        let ck = self.ck.lock().await.clone();
        let step = self
            .plan
            .steps
            .iter()
            .find(|s| s.kind == StepKind::FinalValues)?;
        let g = ck.global.get(&step.id)?;
        if g.state == "P" {
            return None;
        }
        let removed = ck
            .global
            .get("remove-old-cni")
            .is_some_and(|r| r.state == "D");
        Some(if removed {
            format!(
                "the finale removed the old CNI ({}): there is nothing to roll back to",
                self.plan.facts.source.cni
            )
        } else {
            "the finale has begun (final-values): Cilium is the primary CNI on every node, so one node cannot go back alone".to_owned()
        })
    }

    /// The nodes `rollback --all` returns, newest first: every node the checkpoint shows
    /// touched (a step left Pending) and not already rolled back.
    pub async fn rollback_candidates(&self) -> Vec<String> {
        let ck = self.ck.lock().await.clone();
        let mut touched: Vec<(u32, String)> = ck
            .nodes
            .iter()
            .filter(|(_, r)| r.rolled_back.is_none() && r.states.chars().any(|c| c != 'P'))
            .map(|(n, r)| (r.span().map_or(0, |(_, last)| last), n.clone()))
            .collect();
        touched.sort_by(|a, b| b.cmp(a));
        touched.into_iter().map(|(_, n)| n).collect()
    }

    /// Rolls one node back. A failed step is a [`RollbackEnd::Failed`]; [`RunError`] only when
    /// the checkpoint cannot be kept.
    pub async fn rollback(&self, node: &str) -> Result<RollbackEnd, RunError> {
        if let Some(why) = self.finale_begun().await {
            return Ok(RollbackEnd::Failed {
                step: "refused".into(),
                reason: format!("cannot roll back {node}: {why}"),
            });
        }
        if !self.plan.spec.target.mode.is_overlay() {
            return Ok(RollbackEnd::Failed {
                step: "refused".into(),
                reason: format!(
                    "cannot roll back {node} alone in eks-eni: Cilium took every node's CNI over at install and aws-node no longer runs anywhere; to go back, restore aws-node's node selector (kubectl -n kube-system patch daemonset aws-node --type=json -p '[{{\"op\":\"remove\",\"path\":\"/spec/template/spec/nodeSelector/io.cilium~1aws-node-enabled\"}}]'), uninstall Cilium (helm uninstall cilium -n kube-system) and restart the pods Cilium started"
                ),
            });
        }
        let c = &*self.cluster;
        let rec = self.ck.lock().await.nodes.get(node).cloned();
        let Some(rec) = rec else {
            return Ok(RollbackEnd::Failed {
                step: "refused".into(),
                reason: format!("{node} is not a node of plan {}", self.plan.name),
            });
        };
        let live = match c.node(node).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Ok(RollbackEnd::Failed {
                    step: "refused".into(),
                    reason: format!("node {node} does not exist"),
                });
            }
            Err(e) => {
                return Ok(RollbackEnd::Failed {
                    step: "refused".into(),
                    reason: format!("cannot read node {node}: {}", chain(&e)),
                });
            }
        };
        let labelled = live
            .labels
            .get(MIGRATION_LABEL)
            .is_some_and(|v| v == "true");
        let untouched = rec.states.chars().all(|c| c == 'P') && rec.rolled_back.is_none();
        if untouched && !labelled {
            return Ok(RollbackEnd::Nothing(format!(
                "{node} was not migrated (no step ran, no {MIGRATION_LABEL} label): nothing to roll back"
            )));
        }
        // Intent first: held, steps Pending again, prior state kept (observed now if the run
        // never recorded it).
        let prior = match rec.prior.is_some() {
            true => self.ck.lock().await.prior(node).unwrap_or_default(),
            false => match steps::observe_prior(c, node).await {
                Ok(p) => p,
                Err(e) => {
                    return Ok(RollbackEnd::Failed {
                        step: "observe".into(),
                        reason: chain(&e),
                    });
                }
            },
        };
        {
            let mut ck = self.ck.lock().await;
            ck.record_prior(node, &prior);
            let t = u32::try_from(self.now().saturating_sub(ck.created)).unwrap_or(u32::MAX);
            if let Some(r) = ck.nodes.get_mut(node) {
                r.states = "P".repeat(r.states.chars().count());
                r.times.clear();
                r.agent_uids.clear();
                r.message = None;
                r.rolled_back.get_or_insert(t);
            }
            if ck.failure.as_ref().is_some_and(|f| {
                self.index
                    .node_step(&f.step)
                    .is_some_and(|(n, _)| n == node)
            }) {
                ck.failure = None;
            }
            self.save(&mut ck).await?;
        }
        self.emit(
            EventKind::NodeAdmitted,
            None,
            Some(node),
            format!("rolling back {node} to {}", self.plan.facts.source.cni),
        );
        let mut seen = Vec::new();
        for step in [
            "cordon",
            "drain",
            "label",
            "restart-agent",
            "restore-cni",
            "start-aws-node",
            "reboot",
            "verify",
            "uncordon",
        ] {
            let id = format!("rollback/{node}/{step}");
            self.emit(EventKind::StepStarted, None, Some(node), id.clone());
            match self.rollback_step(node, step, &prior).await {
                Ok(message) => {
                    self.emit(
                        EventKind::StepDone,
                        None,
                        Some(node),
                        format!("{id}: {message}"),
                    );
                    seen.push(message);
                }
                Err(e) => {
                    let reason = chain(&e);
                    self.emit(
                        EventKind::StepFailed,
                        None,
                        Some(node),
                        format!("{id}: {reason}"),
                    );
                    return Ok(RollbackEnd::Failed {
                        step: step.to_owned(),
                        reason,
                    });
                }
            }
        }
        self.remove_beacons().await;
        self.emit(
            EventKind::NodeDone,
            None,
            Some(node),
            format!(
                "{node} is back on {}; `cni-migrate resume --retry {node}` migrates it again",
                self.plan.facts.source.cni
            ),
        );
        Ok(RollbackEnd::Done(seen.join("; ")))
    }

    async fn rollback_step(
        &self,
        node: &str,
        step: &str,
        prior: &steps::NodePrior,
    ) -> Result<String, StepError> {
        let c = &*self.cluster;
        let spec = &self.plan.spec;
        let t = &self.cfg.timing;
        match step {
            "cordon" => steps::cordon(c, node).await,
            "drain" => {
                probe::remove_on_node(c, node, None).await?;
                let mut opts = DrainOptions::from_spec(&spec.rollout.drain);
                opts.retry_delay = t.drain_retry;
                opts.poll = t.drain_poll;
                opts.node_check = t.poll.max(t.drain_poll);
                let report = drain::drain(c, node, &opts).await?;
                self.count_evictions(node, &report.evicted, &report.pdb_waits);
                Ok(format!("evicted {} pod(s)", report.evicted.len()))
            }
            "label" => steps::label(c, node, false).await,
            "restart-agent" => {
                let uids = steps::agent_uids(c, node).await?;
                agent::restart_agent(c, node, &uids, t.agent_timeout, t.poll)
                    .await
                    .map_err(StepError::from)
            }
            "start-aws-node" => {
                if spec.target.mode != planner::spec::TargetMode::EksOverlay {
                    return Ok("not an EKS overlay migration: no aws-node to bring back".into());
                }
                crate::eks::start_aws_node(c, node, t.agent_timeout, t.poll).await
            }
            "restore-cni" => {
                probe::remove_on_node(c, node, Some(probe::RESTORE_LABEL)).await?;
                let pod = probe::restore_pod(node, &spec.rollout.verify.image);
                let (done, log) = probe::run_to_completion(
                    c,
                    &pod,
                    "CNI restore",
                    node,
                    spec.rollout.verify.timeout.0,
                    t.poll,
                )
                .await?;
                let said = log.lines().map(str::trim).filter(|l| !l.is_empty());
                let said: Vec<&str> = said.collect();
                if done.phase != planner::snapshot::PodPhase::Succeeded {
                    return Err(StepError::Verify {
                        node: node.to_owned(),
                        reason: format!(
                            "expected the restore pod {} to succeed, saw it {:?}: {}",
                            done.key(),
                            done.phase,
                            said.join(" / ")
                        ),
                    });
                }
                Ok(if said.is_empty() {
                    "the CNI directory needed nothing".to_owned()
                } else {
                    said.join(", ")
                })
            }
            "reboot" => match &spec.rollout.reboot {
                None => Ok("no reboot hook in the spec".to_owned()),
                Some(r) => steps::reboot(c, node, &r.command, r.timeout.0, t.poll).await,
            },
            "verify" => self.probe_with_retries(node, false).await,
            "uncordon" => steps::uncordon(c, node, prior).await,
            other => Err(StepError::Verify {
                node: node.to_owned(),
                reason: format!("unknown rollback step {other}"),
            }),
        }
    }

    /// Lets rolled-back nodes be admitted again (`resume --retry NODE`).
    ///
    /// # Errors
    /// A message naming the node when it was not rolled back.
    pub async fn retry(&self, nodes: &[String]) -> Result<(), String> {
        let mut ck = self.ck.lock().await;
        for n in nodes {
            match ck.nodes.get_mut(n) {
                Some(r) if r.rolled_back.is_some() => r.rolled_back = None,
                Some(_) => return Err(format!("--retry {n}: {n} was not rolled back")),
                None => {
                    return Err(format!(
                        "--retry {n}: {n} is not a node of plan {}",
                        self.plan.name
                    ));
                }
            }
        }
        Ok(())
    }
}
