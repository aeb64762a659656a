//! The cluster-wide steps around the node phase: `preflight`, the migration CiliumNodeConfig
//! (`node-config`, `delete-node-config`), `remove-old-cni` and `final-verify`.
//!
//! ```text
//! preflight            the plan's error findings stop the run (a rehearsal notes them)
//! node-config          server-side apply of CiliumNodeConfig kube-system/cilium-default
//! delete-node-config   only once cilium-config shows the final values
//! remove-old-cni       the old CNI's objects deleted, namespaces last; for the Tigera operator,
//!                      wait for it to remove calico-system before deleting the operator
//! final-verify         every pod off the host network in Cilium's ranges with a CiliumEndpoint,
//!                      policy enforcement on; the tool's leftover pods removed
//! ```

use planner::{
    Severity,
    plan::{CILIUM_NAMESPACE, NODE_CONFIG_NAME},
};

use super::{
    ctx::{Done, StepCtx},
    helm::cilium_config_differences,
    verify::remove_beacons,
};
use crate::{
    endpoints::{Endpoints, on_pod_network},
    error::{StepError, cl},
    probe,
    wait::{self, Check},
};

/// `preflight`: the plan's error findings stop the run.
pub(super) async fn preflight(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let codes: Vec<String> = ctx
        .plan
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.code.to_string())
        .collect();
    if codes.is_empty() {
        return Ok(Done::Done(format!(
            "no error findings ({} warnings)",
            ctx.plan.summary.warnings
        )));
    }
    if ctx.config.ignore_preflight {
        return Ok(Done::Done(format!(
            "preflight errors {} ignored for this rehearsal: a real run stops here",
            codes.join(", ")
        )));
    }
    Err(StepError::Preflight { codes })
}

/// `node-config`: the migration CiliumNodeConfig, applied unless it is in place.
pub(super) async fn node_config(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let c = ctx.cluster;
    let object = planner::values::node_config_object(ctx.spec(), &ctx.plan.facts);
    let api_version = object["apiVersion"].as_str().unwrap_or("cilium.io/v2");
    let existing = c
        .custom(
            api_version,
            "ciliumnodeconfigs",
            Some(CILIUM_NAMESPACE),
            NODE_CONFIG_NAME,
        )
        .await
        .map_err(cl("reading the CiliumNodeConfig"))?;
    if let Some(e) = existing
        && e.object["spec"] == object["spec"]
    {
        return Ok(Done::Done(format!(
            "CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} is in place"
        )));
    }
    c.apply("ciliumnodeconfigs", &object)
        .await
        .map_err(cl(format!(
            "applying CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}"
        )))?;
    Ok(Done::Done(format!(
        "CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} applied"
    )))
}

/// `delete-node-config`: only once the final values are live (else nodes would fall back to
/// the migration values' defaults).
pub(super) async fn delete_node_config(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let c = ctx.cluster;
    let diffs = cilium_config_differences(c, &planner::values::final_config(ctx.spec())).await?;
    if !diffs.is_empty() {
        return Err(StepError::FinalValuesNotLive { diffs });
    }
    let (api_version, _) = planner::values::node_config_api(ctx.spec(), &ctx.plan.facts);
    let existed = c
        .delete(
            &api_version,
            "ciliumnodeconfigs",
            Some(CILIUM_NAMESPACE),
            NODE_CONFIG_NAME,
        )
        .await
        .map_err(cl("deleting the CiliumNodeConfig"))?;
    Ok(Done::Done(if existed {
        format!("deleted CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}")
    } else {
        format!("CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} is gone")
    }))
}

/// The API version and plural of the old CNI's object kinds.
pub fn resource_of(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "DaemonSet" => ("apps/v1", "daemonsets"),
        "Deployment" => ("apps/v1", "deployments"),
        "ConfigMap" => ("v1", "configmaps"),
        "Namespace" => ("v1", "namespaces"),
        "ServiceAccount" => ("v1", "serviceaccounts"),
        "Installation" => ("operator.tigera.io/v1", "installations"),
        "IPPool" => ("crd.projectcalico.org/v1", "ippools"),
        "FelixConfiguration" => ("crd.projectcalico.org/v1", "felixconfigurations"),
        _ => return None,
    })
}

/// `remove-old-cni`.
pub(super) async fn remove_old_cni(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let c = ctx.cluster;
    let mut removed = Vec::new();
    let mut gone = Vec::new();
    let mut objects = ctx.plan.facts.source.objects.clone();
    // Namespaces last, and only Flannel's own.
    objects.sort_by_key(|o| o.kind == "Namespace");
    for o in objects {
        let Some((api_version, plural)) = resource_of(&o.kind) else {
            continue;
        };
        if o.kind == "Namespace" && o.name != "kube-flannel" {
            continue;
        }
        let what = format!(
            "{} {}{}",
            o.kind,
            o.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            o.name
        );
        let existed = c
            .delete(api_version, plural, o.namespace.as_deref(), &o.name)
            .await
            .map_err(cl(format!("deleting {what}")))?;
        if existed {
            removed.push(what);
        } else {
            gone.push(what);
        }
        if o.kind == "Installation" {
            // The operator removes calico-system itself; deleting the operator before it has
            // would leave calico-node running on every node.
            wait_gone(
                ctx,
                ("apps/v1", "daemonsets"),
                Some("calico-system"),
                "calico-node",
                "the Tigera operator to remove calico-system after the Installation was deleted",
            )
            .await?;
        }
    }
    Ok(Done::Done(if removed.is_empty() && gone.is_empty() {
        "no old CNI objects are known".into()
    } else if removed.is_empty() {
        format!("already removed: {}", gone.join(", "))
    } else {
        format!("removed {}", removed.join(", "))
    }))
}

async fn wait_gone(
    ctx: &StepCtx<'_>,
    (api_version, plural): (&str, &str),
    namespace: Option<&str>,
    name: &str,
    what: &str,
) -> Result<(), StepError> {
    let waited = ctx.verify_timeout();
    wait::until(
        waited,
        ctx.timing().poll,
        || async {
            let o = ctx
                .cluster
                .custom(api_version, plural, namespace, name)
                .await
                .map_err(cl(format!("reading {plural} {name}")))?;
            Ok(if o.is_none() {
                Check::Done(())
            } else {
                Check::Pending(())
            })
        },
        |()| StepError::StillThere {
            what: what.to_owned(),
            object: format!(
                "{plural} {}{name}",
                namespace.map(|n| format!("{n}/")).unwrap_or_default()
            ),
            waited,
        },
    )
    .await
}

/// `final-verify`: every pod off the host network in Cilium's ranges with a CiliumEndpoint,
/// policy enforcement on.
pub(super) async fn final_verify(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    let c = ctx.cluster;
    let beacons = remove_beacons(c).await;
    wait::until(
        ctx.verify_timeout(),
        ctx.timing().poll,
        || async {
            let pool = ctx.ranges().await?;
            let pods = c.pods(None, "").await.map_err(cl("listing pods"))?;
            let checked: Vec<&planner::snapshot::PodInfo> = pods
                .iter()
                .filter(|p| on_pod_network(p) && !p.is_cni_migrate_pod())
                .collect();
            let outside: Vec<String> = checked
                .iter()
                .filter(|p| !p.pod_ips.iter().any(|ip| pool.contains(ip)))
                .map(|p| format!("{} ({})", p.key(), super::verify::ips(p)))
                .collect();
            let without = pods_without_endpoints(ctx, &checked).await?;
            let policy = cilium_config_differences(
                c,
                &[("enable-policy", "default".to_owned())]
                    .into_iter()
                    .collect(),
            )
            .await?;
            let no_endpoint = without.clone().unwrap_or_default();
            if outside.is_empty() && no_endpoint.is_empty() && policy.is_empty() {
                return Ok(Check::Done(format!(
                    "all {} pod(s) off the host network have an IP in Cilium's ranges and {}; policy enforcement is on{}",
                    checked.len(),
                    if without.is_some() {
                        "a CiliumEndpoint"
                    } else {
                        "(CiliumEndpointSlices are on: per-pod endpoints not compared)"
                    },
                    if beacons > 0 {
                        format!("; removed {beacons} beacon pod(s)")
                    } else {
                        String::new()
                    }
                )));
            }
            Ok(Check::Pending(StepError::FinalCheck {
                outside,
                pool: pool.to_string(),
                no_endpoint,
                policy,
            }))
        },
        |e| e,
    )
    .await
    .map(Done::Done)
}

/// The CiliumEndpoint part of the final check: the pods given without an endpoint holding
/// their IP. `None` when CiliumEndpointSlices replace per-pod endpoints (nothing to compare).
async fn pods_without_endpoints(
    ctx: &StepCtx<'_>,
    pods: &[&planner::snapshot::PodInfo],
) -> Result<Option<Vec<String>>, StepError> {
    let c = ctx.cluster;
    let slices = c
        .configmap(CILIUM_NAMESPACE, "cilium-config")
        .await
        .map_err(cl("reading kube-system/cilium-config"))?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("enable-cilium-endpoint-slice").cloned())
        .is_some_and(|v| v == "true");
    if slices {
        return Ok(None);
    }
    let eps = Endpoints::list(c)
        .await
        .map_err(cl("listing CiliumEndpoints"))?;
    Ok(Some(
        pods.iter()
            .filter(|p| !eps.covers(p))
            .map(|p| p.key())
            .collect(),
    ))
}

/// How many nodes the cleanup runs on at once: a tenth of the cluster, at least 10 and at most
/// 100 (the pods are short and disturb nothing; a 5,000-node cluster takes 50 rounds).
fn cleanup_width(nodes: usize) -> usize {
    (nodes / 10).clamp(10, 100)
}

/// `clean-old-cni`: the old CNI's leftovers (iptables chains, devices, routes) removed on every
/// Linux node by a privileged host-network pod running the plan's script, a bounded number at a
/// time. Every node is tried; the step fails naming the nodes whose cleanup failed, and running
/// it again is safe (the script removes only what is still there).
pub(super) async fn clean_old_cni(ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    use futures::StreamExt as _;
    let c = ctx.cluster;
    let cni = ctx.plan.facts.source.cni.to_string().to_lowercase();
    let cidrs: Vec<String> = ctx
        .plan
        .facts
        .source
        .pod_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    let script = planner::commands::old_cni_cleanup_script(&cni, &cidrs);
    let image = ctx.spec().rollout.verify.image.clone();
    let t = ctx.timing();
    let nodes: Vec<String> = c
        .nodes()
        .await
        .map_err(cl("listing the nodes"))?
        .into_iter()
        .filter(|n| {
            n.labels
                .get("kubernetes.io/os")
                .is_none_or(|os| os == "linux")
        })
        .map(|n| n.name)
        .collect();
    let width = cleanup_width(nodes.len());
    let results: Vec<(String, Result<String, StepError>)> = futures::stream::iter(nodes)
        .map(|node| {
            let (script, image) = (&script, &image);
            async move {
                let outcome = async {
                    probe::remove_on_node(c, &node, Some(probe::CLEANUP_LABEL)).await?;
                    let pod = probe::cleanup_pod(&node, image, script);
                    let (_, log) = probe::run_to_completion(
                        c,
                        &pod,
                        "old CNI cleanup",
                        &node,
                        t.agent_timeout,
                        t.poll,
                    )
                    .await?;
                    let failed: Vec<&str> = log
                        .lines()
                        .filter_map(|l| l.strip_prefix("failed "))
                        .collect();
                    let unfinished = !log.lines().any(|l| l.trim() == "done");
                    if !failed.is_empty() || unfinished {
                        return Err(StepError::OldCniCleanup {
                            nodes: vec![node.clone()],
                            seen: vec![if failed.is_empty() {
                                format!("the pod ended without finishing: {:?}", log.trim())
                            } else {
                                format!("failed {}", failed.join(", "))
                            }],
                        });
                    }
                    Ok(log
                        .lines()
                        .filter_map(|l| l.strip_prefix("removed "))
                        .collect::<Vec<_>>()
                        .join(", "))
                }
                .await;
                (node, outcome)
            }
        })
        .buffer_unordered(width)
        .collect()
        .await;
    let mut failed = Vec::new();
    let mut seen = Vec::new();
    let mut cleaned = Vec::new();
    let mut clean = 0;
    for (node, outcome) in results {
        match outcome {
            Ok(removed) if removed.is_empty() => clean += 1,
            Ok(removed) => cleaned.push(format!("{node}: removed {removed}")),
            // A passing API failure: the whole step is retried (it is safe to run again).
            Err(e) if e.is_retriable() => return Err(e),
            Err(StepError::OldCniCleanup { seen: what, .. }) => {
                seen.push(format!("{node}: {}", what.join("; ")));
                failed.push(node);
            }
            Err(why) => {
                seen.push(format!("{node}: {why}"));
                failed.push(node);
            }
        }
    }
    if !failed.is_empty() {
        failed.sort();
        seen.sort();
        return Err(StepError::OldCniCleanup {
            nodes: failed,
            seen,
        });
    }
    cleaned.sort();
    let mut message = format!(
        "{cni}'s leftovers removed from {} node(s), {clean} had none left",
        cleaned.len()
    );
    if !cleaned.is_empty() {
        const SHOWN: usize = 5;
        message.push_str(&format!(
            ": {}{}",
            cleaned
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
            if cleaned.len() > SHOWN {
                format!("; and {} more", cleaned.len() - SHOWN)
            } else {
                String::new()
            }
        ));
    }
    Ok(Done::Done(message))
}
