//! The Helm steps: Cilium installed in migration mode (`cilium-installed`), and its final values
//! (`final-values`). Helm is not re-implemented: the tool writes the values file and either runs
//! the user's Helm or stops at a gate with the exact command; either way the step is done only
//! when `cilium-config` shows the values and the agent DaemonSet has rolled out.
//!
//! ```text
//! observe cilium-config ─► matches? ─► wait for the agents' rollout ─► done
//!        │ differs
//!        ▼
//! write values-*.yaml ─► no --helm ─► gate: "run `helm upgrade --install cilium ...`"
//!        │ --helm
//!        ▼
//! helm upgrade --install cilium cilium/cilium --namespace kube-system --version V -f FILE
//!        ─► wait for cilium-config ─► wait for the rollout ─► done
//! ```
//!
//! A rollout is complete only when the DaemonSet's controller has seen its latest spec
//! (`observedGeneration` ≥ `generation`) and every scheduled pod is updated and available. The
//! API server omits status numbers that are 0, so an absent number is read as 0, never as done.

use std::{collections::BTreeMap, time::Duration};

use planner::plan::{CILIUM_NAMESPACE, shell_quote};
use serde_json::Value;

use super::ctx::{Done, StepCtx};
use crate::{
    error::{StepError, cl},
    wait::{self, Check},
};

pub use planner::commands::helm_args;

/// A command line as a shell would read it.
fn shown(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares `cilium-config` with expectations; returns the differences as `key: expected X,
/// found Y` (empty when everything matches).
///
/// # Errors
/// An API failure.
pub async fn cilium_config_differences(
    cluster: &dyn cluster::Cluster,
    expected: &BTreeMap<&'static str, String>,
) -> Result<Vec<String>, StepError> {
    let cm = cluster
        .configmap(CILIUM_NAMESPACE, "cilium-config")
        .await
        .map_err(cl("reading kube-system/cilium-config"))?;
    let Some(cm) = cm else {
        return Ok(vec![
            "kube-system/cilium-config does not exist: Cilium is not installed".to_owned(),
        ]);
    };
    let data = cm.data.unwrap_or_default();
    Ok(expected
        .iter()
        .filter_map(|(k, want)| {
            let got = data.get(*k).map(String::as_str).unwrap_or("<absent>");
            (got.trim() != want.as_str()).then(|| format!("{k}: expected {want}, found {got}"))
        })
        .collect())
}

/// Whether a DaemonSet has rolled out: `Ok(())`, or what its status shows instead. Absent
/// numbers are 0 (the API server omits zero values).
pub fn rollout_complete(ds: &Value) -> Result<(), String> {
    let num = |v: &Value| v.as_i64().unwrap_or(0);
    let st = &ds["status"];
    let generation = num(&ds["metadata"]["generation"]);
    let observed = num(&st["observedGeneration"]);
    let desired = num(&st["desiredNumberScheduled"]);
    let updated = num(&st["updatedNumberScheduled"]);
    let available = num(&st["numberAvailable"]);
    let ready = num(&st["numberReady"]);
    if observed >= generation && updated >= desired && available >= desired {
        return Ok(());
    }
    Err(format!(
        "{ready}/{desired} Ready, {updated} updated, {available} available{}",
        if observed < generation {
            format!(" (the controller has seen generation {observed} of {generation})")
        } else {
            String::new()
        }
    ))
}

/// How far a DaemonSet's rollout got: observed generation, updated and available pods
/// (absent numbers are 0).
fn rollout_progress(ds: &Value) -> [i64; 3] {
    let st = &ds["status"];
    [
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
    ]
    .map(|field| st[field].as_i64().unwrap_or(0))
}

/// Waits for the agent DaemonSet to be rolled out. Without `required`, a missing DaemonSet is
/// fine (the install is checked through `cilium-config`).
///
/// A rollout replaces a few agents at a time (the chart's `maxUnavailable` is 2), so on a
/// large cluster it takes as long as it takes: the wait fails only when the rollout made no
/// progress (no newer generation observed, no more pods updated or available under the same
/// generation than seen before) for `install_timeout`, as `kubectl rollout status` judges a
/// Deployment by its progress deadline.
async fn wait_agents_rolled_out(ctx: &StepCtx<'_>, required: bool) -> Result<(), StepError> {
    let timing = ctx.timing();
    agents_rolled_out(ctx.cluster, required, timing.install_timeout, timing.poll).await
}

/// As [`wait_agents_rolled_out`]: fails once the rollout made no progress for `stall`. The
/// DaemonSet is watched (one LIST and one WATCH, its state judged at each change; a watch quiet
/// for `15 × poll`, or until the stall's deadline, is looked at once with a GET); where the
/// cluster cannot watch, or after the watch failed, it is read every `poll`.
///
/// # Errors
/// [`StepError::RolloutIncomplete`], [`StepError::AgentDaemonSetMissing`] (when `required`),
/// or the API's failure.
pub async fn agents_rolled_out(
    c: &dyn cluster::Cluster,
    required: bool,
    stall: Duration,
    poll: Duration,
) -> Result<(), StepError> {
    use futures::StreamExt as _;
    let get = || async {
        c.custom("apps/v1", "daemonsets", Some(CILIUM_NAMESPACE), "cilium")
            .await
            .map(|ds| ds.map(|ds| ds.object))
            .map_err(cl("reading DaemonSet kube-system/cilium"))
    };
    let mut watch = c.watch_object("apps/v1", "daemonsets", Some(CILIUM_NAMESPACE), "cilium");
    let mut progress = Progress::new();
    let quiet = poll * 15;
    loop {
        let ds = match watch.as_mut() {
            Some(stream) => {
                let wake = (tokio::time::Instant::now() + quiet).min(progress.since + stall);
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(ds)) => ds,
                        Some(Err(e)) => {
                            tracing::info!(error = %e, "the agent DaemonSet's watch failed; polling instead");
                            watch = None;
                            continue;
                        }
                        None => {
                            watch = None;
                            continue;
                        }
                    },
                    () = tokio::time::sleep_until(wake) => get().await?,
                }
            }
            None => get().await?,
        };
        let Some(ds) = ds else {
            return if required {
                Err(StepError::AgentDaemonSetMissing)
            } else {
                Ok(())
            };
        };
        let seen = match rollout_complete(&ds) {
            Ok(()) => return Ok(()),
            Err(seen) => seen,
        };
        progress.observe(rollout_progress(&ds));
        if progress.since.elapsed() >= stall {
            return Err(StepError::RolloutIncomplete {
                waited: stall,
                seen,
            });
        }
        if watch.is_none() {
            tokio::time::sleep(poll.min(stall)).await;
        }
    }
}

/// The furthest a rollout got, and since when.
struct Progress {
    best: Option<[i64; 3]>,
    since: tokio::time::Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            best: None,
            since: tokio::time::Instant::now(),
        }
    }

    /// Progress: a newer generation observed (its counts start over), or more pods updated or
    /// available than seen before under the same generation.
    fn observe(&mut self, now: [i64; 3]) {
        match &mut self.best {
            Some(b) if now[0] > b[0] => {
                *b = now;
                self.since = tokio::time::Instant::now();
            }
            Some(b) if now[0] == b[0] && (now[1] > b[1] || now[2] > b[2]) => {
                b[1] = b[1].max(now[1]);
                b[2] = b[2].max(now[2]);
                self.since = tokio::time::Instant::now();
            }
            Some(_) => {}
            None => self.best = Some(now),
        }
    }
}

/// A Helm step: observe `cilium-config`; if it does not hold the expected entries, run Helm
/// (when given) and wait for the config and the agent DaemonSet, or stop at a gate.
async fn helm_step(
    ctx: &StepCtx<'_>,
    expected: &BTreeMap<&'static str, String>,
    file: &str,
    values: &str,
    what: &str,
    restart_agents: bool,
) -> Result<Done, StepError> {
    let c = ctx.cluster;
    let diffs = cilium_config_differences(c, expected).await?;
    if diffs.is_empty() {
        wait_agents_rolled_out(ctx, restart_agents).await?;
        return Ok(Done::Done(format!("{what}: cilium-config matches")));
    }
    let work_dir = &ctx.config.helm.work_dir;
    let path = work_dir.join(file);
    // Runs of the same plan share the directory: each writes its own temporary file and
    // renames it into place (the content is the same).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "{}.{}.tmp~",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(work_dir)
        .and_then(|()| std::fs::write(&tmp, values))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| StepError::WriteValues {
            path: path.display().to_string(),
            source,
        })?;
    let args = helm_args(ctx.spec(), &path.display().to_string());
    let Some(helm) = &ctx.config.helm.command else {
        let line = shown(
            &std::iter::once("helm".to_owned())
                .chain(args)
                .collect::<Vec<_>>(),
        );
        return Ok(Done::Gate(format!(
            "{what} is not live ({}). Run `{line}` (values written to {}), then `cni-migrate resume`; \
             or pass --helm to let cni-migrate run it",
            diffs.join("; "),
            path.display()
        )));
    };
    let (program, first) = helm.split_first().ok_or(StepError::NoHelmCommand)?;
    let mut argv: Vec<String> = first.to_vec();
    argv.extend(args);
    argv.extend(ctx.config.helm.extra.iter().cloned());
    let command = shown(
        &std::iter::once(program.clone())
            .chain(argv.iter().cloned())
            .collect::<Vec<_>>(),
    );
    let output = tokio::process::Command::new(program)
        .args(&argv)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| StepError::Helm {
            command: command.clone(),
            reason: format!("cannot start it: {e}"),
            retriable: false,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let refusal = refused(&stderr);
        return Err(StepError::Helm {
            command,
            reason: format!(
                "{}: {stderr}{}",
                output.status,
                refusal.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            retriable: refusal.is_none(),
        });
    }
    let waited = ctx.timing().install_timeout;
    wait::until(
        waited,
        ctx.timing().poll,
        || async {
            let diffs = cilium_config_differences(c, expected).await?;
            Ok(if diffs.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(diffs)
            })
        },
        |diffs| StepError::ConfigNotLive {
            command: command.clone(),
            waited,
            diffs,
        },
    )
    .await?;
    wait_agents_rolled_out(ctx, restart_agents).await?;
    Ok(Done::Done(format!("ran `{command}`; {what} live")))
}

/// When Helm's stderr shows a refusal by the API server (403 `forbidden`, 401 `Unauthorized`),
/// which does not go away by retrying: what to do about it. `None`: another failure.
fn refused(stderr: &str) -> Option<&'static str> {
    if stderr.contains("is forbidden: ") || stderr.contains(" forbidden") {
        Some(
            "refused by RBAC, not retried: Helm's credentials lack the verb and resource named \
             above; pass --helm-kubeconfig with credentials that may upgrade the Cilium chart, or \
             grant `cni-migrate rbac --helm-role`",
        )
    } else if stderr.contains("Unauthorized") {
        Some("Helm's credentials were not accepted (401), not retried: check its kubeconfig")
    } else {
        None
    }
}

/// `cilium-installed`: Cilium in migration mode.
pub(super) async fn cilium_installed(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let expected = planner::values::migration_config(ctx.spec());
    helm_step(
        ctx,
        &expected,
        "values-migration.yaml",
        &ctx.plan.artifacts.values_migration,
        "Cilium in migration mode",
        false,
    )
    .await
}

/// `final-values`: Cilium's final values (the agents restart with them).
pub(super) async fn final_values(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let expected = planner::values::final_config(ctx.spec());
    helm_step(
        ctx,
        &expected,
        "values-final.yaml",
        &ctx.plan.artifacts.values_final,
        "Cilium's final values",
        true,
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Right after a template change the real API server shows the old generation observed and
    /// omits `updatedNumberScheduled` (it is 0) while `numberReady` still counts the old pods.
    #[test]
    fn a_rollout_is_complete_only_when_observed_updated_and_available() {
        let just_changed = json!({"metadata": {"generation": 2}, "status": {
            "observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
            "numberReady": 3, "numberAvailable": 3}});
        assert!(rollout_complete(&just_changed).is_err());
        let observed_none_updated = json!({"metadata": {"generation": 2}, "status": {
            "observedGeneration": 2, "desiredNumberScheduled": 3, "numberReady": 3,
            "numberAvailable": 3}});
        let seen = rollout_complete(&observed_none_updated).expect_err("nothing updated");
        assert!(seen.contains("0 updated"), "{seen}");
        let rolling = json!({"metadata": {"generation": 2}, "status": {
            "observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberReady": 2, "numberAvailable": 2, "numberUnavailable": 1}});
        assert!(rollout_complete(&rolling).is_err());
        let created = json!({"metadata": {"generation": 1}, "status": {}});
        assert!(rollout_complete(&created).is_err(), "nothing observed yet");
        let done = json!({"metadata": {"generation": 2}, "status": {
            "observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberReady": 3, "numberAvailable": 3}});
        assert_eq!(rollout_complete(&done), Ok(()));
    }

    /// What helm prints when the chart's upgrade is refused under least privilege.
    #[test]
    fn a_refusal_by_rbac_is_not_retried() {
        let stderr = "Error: UPGRADE FAILED: failed to create resource: configmaps \"cilium-config\" is forbidden: \
            User \"system:serviceaccount:kube-system:cni-migrate\" cannot patch resource \"configmaps\" \
            in API group \"\" in the namespace \"kube-system\"";
        assert!(refused(stderr).is_some_and(|h| h.contains("--helm-kubeconfig")));
        let query = "Error: query: failed to query with labels: secrets is forbidden: User \"u\" cannot list resource \"secrets\"";
        assert!(refused(query).is_some());
        assert!(refused("Error: Kubernetes cluster unreachable: Unauthorized").is_some());
        assert!(
            refused("Error: UPGRADE FAILED: timed out waiting for the condition").is_none(),
            "a passing failure is retried"
        );
    }

    #[test]
    fn the_helm_command_is_built_once() {
        let spec = planner::MigrationSpec::from_yaml(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
             target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n",
            "t",
        )
        .expect("spec");
        let line = shown(
            &std::iter::once("helm".to_owned())
                .chain(helm_args(&spec, "/tmp/values-migration.yaml"))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            line,
            planner::plan::helm_command(&spec, "/tmp/values-migration.yaml")
        );
    }
}
