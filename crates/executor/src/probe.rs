//! The tool's own short-lived pods: the verification probe, the beacons it must reach, and
//! the rollback's restore pod. All run in `kube-system`, pinned to a node by `nodeName`
//! (the scheduler, cordons and taints do not apply), tolerating everything, with the image
//! of `rollout.verify.image`.
//!
//! ```text
//! beacon "old"    sleep, on a node not yet migrated (its IP is on the old overlay)
//! beacon "cilium" sleep, on a migrated node (or the node being verified, for the first)
//! probe           on the node being verified; prints, and exits:
//!                   ip=10.245.1.7
//!                   apiserver=ok
//!                   reach 10.244.2.5=ok          (one line per beacon)
//! restore-cni     on a node being rolled back: `*.cilium_bak` renamed back,
//!                 `05-cilium.conflist` removed; prints what it did
//! ```
//!
//! The probe's verdict is read from its log; its IP from the pod's status (the API server's
//! word, not the script's).

use std::{net::IpAddr, time::Duration};

use cluster::Cluster;
use k8s_openapi::api::core::v1::Pod;
use planner::snapshot::{PodInfo, PodPhase};
use serde_json::json;

use crate::{
    error::{StepError, cl},
    wait::{self, Check},
};

/// Where the tool's pods run.
pub const NAMESPACE: &str = "kube-system";
/// The label every pod of the tool carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "cni-migrate");
/// The probe's label (the simulated cluster runs the probe's checks for pods with it).
pub const PROBE_LABEL: &str = "cni-migrate.io/probe";
/// The beacons' label; its value is the overlay the beacon stands for.
pub const BEACON_LABEL: &str = "cni-migrate.io/beacon";
/// The restore pod's label.
pub const RESTORE_LABEL: &str = "cni-migrate.io/restore-cni";
/// The probe's targets (IPs, comma-separated), also given to its script as `$TARGETS`.
pub const TARGETS_ANNOTATION: &str = "cni-migrate.io/probe-targets";

/// The probe's script: IP, API server, each target.
const PROBE_SCRIPT: &str = r#"ip=$(ip -o -4 addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1)
echo "ip=$ip"
if [ "$(curl -sk --max-time 5 "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/healthz")" = ok ]; then echo apiserver=ok; else echo apiserver=fail; fi
for t in $TARGETS; do
  if ping -c 2 -W 2 "$t" >/dev/null 2>&1; then echo "reach $t=ok"; else echo "reach $t=fail"; fi
done"#;

/// Whether a pod is one of the tool's own.
pub fn is_ours(pod: &PodInfo) -> bool {
    pod.is_cni_migrate_pod()
}

fn base(kind: &str, node: &str, image: &str, labels: serde_json::Value) -> serde_json::Value {
    let mut labels = labels;
    labels[MANAGED_BY.0] = json!(MANAGED_BY.1);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("cni-migrate-{kind}-"),
            "namespace": NAMESPACE,
            "labels": labels,
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "containers": [{"name": kind, "image": image}],
        },
    })
}

fn typed(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap_or_default()
}

/// The probe pod for a node, reaching `targets`.
pub fn probe_pod(node: &str, image: &str, targets: &[IpAddr]) -> Pod {
    let list: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let mut v = base("probe", node, image, json!({PROBE_LABEL: "true"}));
    v["metadata"]["annotations"] = json!({TARGETS_ANNOTATION: list.join(",")});
    v["spec"]["activeDeadlineSeconds"] = json!(300);
    v["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c", PROBE_SCRIPT]);
    v["spec"]["containers"][0]["env"] = json!([{"name": "TARGETS", "value": list.join(" ")}]);
    typed(v)
}

/// A beacon standing for `overlay` (`old` or `cilium`) on a node.
pub fn beacon_pod(node: &str, image: &str, overlay: &str) -> Pod {
    let mut v = base("beacon", node, image, json!({BEACON_LABEL: overlay}));
    v["spec"]["containers"][0]["command"] = json!(["sleep", "infinity"]);
    typed(v)
}

/// The restore pod for a node being rolled back; `cni_conf_dir` is the node's CNI directory
/// (`target.cniConfDir`), mounted at `/host/etc/cni/net.d` where the script works.
pub fn restore_pod(node: &str, image: &str, cni_conf_dir: &str) -> Pod {
    let mut v = base("restore-cni", node, image, json!({RESTORE_LABEL: "true"}));
    v["spec"]["hostNetwork"] = json!(true);
    v["spec"]["activeDeadlineSeconds"] = json!(300);
    v["spec"]["containers"][0]["command"] =
        json!(["/bin/sh", "-c", planner::commands::RESTORE_CNI_SCRIPT]);
    v["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    v["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "cni-conf", "mountPath": "/host/etc/cni/net.d"}]);
    v["spec"]["volumes"] =
        json!([{"name": "cni-conf", "hostPath": {"path": cni_conf_dir, "type": "Directory"}}]);
    typed(v)
}

/// The label of the pod that flushes the VPC CNI's nat chains on a node (EKS overlay).
pub const FLUSH_LABEL: &str = "cni-migrate.io/flush-vpc-cni";

/// The flush script: each VPC CNI nat chain flushed in whichever iptables backend holds it;
/// one line per chain (`flushed BACKEND CHAIN`, `failed BACKEND CHAIN`), then `done`.
fn flush_script() -> String {
    format!(
        r#"for t in iptables-legacy iptables-nft; do command -v $t >/dev/null 2>&1 || continue; for c in {}; do if $t -t nat -S $c >/dev/null 2>&1; then if $t -t nat -F $c; then echo "flushed $t $c"; else echo "failed $t $c"; fi; fi; done; done; echo done"#,
        planner::preflight::VPC_CNI_NAT_CHAINS.join(" ")
    )
}

/// The pod that flushes the VPC CNI's nat chains on a node: host network, privileged (it
/// changes the node's iptables), image from `rollout.verify.image` (which has iptables).
pub fn flush_pod(node: &str, image: &str) -> Pod {
    let mut v = base("flush-vpc-cni", node, image, json!({FLUSH_LABEL: "true"}));
    v["spec"]["hostNetwork"] = json!(true);
    v["spec"]["activeDeadlineSeconds"] = json!(300);
    v["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c", flush_script()]);
    v["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    typed(v)
}

/// The label of the finale's cleanup pods (the old CNI's leftovers on a node).
pub const CLEANUP_LABEL: &str = "cni-migrate.io/clean-old-cni";

/// A privileged host-network pod on `node` that runs the old CNI's cleanup `script`
/// (`planner::commands::old_cni_cleanup_script`) and exits.
pub fn cleanup_pod(node: &str, image: &str, script: &str) -> Pod {
    let mut v = base("clean-old-cni", node, image, json!({CLEANUP_LABEL: "true"}));
    v["spec"]["hostNetwork"] = json!(true);
    v["spec"]["activeDeadlineSeconds"] = json!(300);
    v["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c", script]);
    v["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    typed(v)
}

/// What the probe printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeLog {
    /// `ip=`.
    pub ip: Option<String>,
    /// `apiserver=ok`, or what followed `apiserver=`.
    pub apiserver: Option<String>,
    /// `reach IP=VERDICT`, in order.
    pub reach: Vec<(String, String)>,
}

impl ProbeLog {
    /// Parses the probe's log; unknown lines are ignored.
    pub fn parse(text: &str) -> Self {
        let mut out = ProbeLog::default();
        for line in text.lines().map(str::trim) {
            if let Some(ip) = line.strip_prefix("ip=") {
                out.ip = Some(ip.to_owned());
            } else if let Some(v) = line.strip_prefix("apiserver=") {
                out.apiserver = Some(v.to_owned());
            } else if let Some(rest) = line.strip_prefix("reach ")
                && let Some((ip, verdict)) = rest.split_once('=')
            {
                out.reach.push((ip.to_owned(), verdict.to_owned()));
            }
        }
        out
    }
}

/// Deletes the tool's pods on a node that match `label` (leftovers of an interrupted run).
///
/// # Errors
/// An API failure.
pub async fn remove_on_node<C: Cluster + ?Sized>(
    cluster: &C,
    node: &str,
    label: Option<&str>,
) -> Result<usize, StepError> {
    let pods = cluster
        .pods_on_node(node)
        .await
        .map_err(cl(format!("listing pods on {node}")))?;
    remove_listed(cluster, &pods, label).await
}

/// [`remove_on_node`] among pods just listed.
///
/// # Errors
/// An API failure.
pub async fn remove_listed<C: Cluster + ?Sized>(
    cluster: &C,
    pods: &[PodInfo],
    label: Option<&str>,
) -> Result<usize, StepError> {
    let mut n = 0;
    for p in pods
        .iter()
        .filter(|p| is_ours(p) && label.is_none_or(|l| p.labels.contains_key(l)))
    {
        cluster
            .delete_pod(&p.namespace, &p.name, None)
            .await
            .map_err(cl(format!("deleting pod {}", p.key())))?;
        n += 1;
    }
    Ok(n)
}

/// Creates a pod and waits for it to be Running (`until_done` false) or finished (true).
///
/// # Errors
/// [`StepError::Verify`] when it does not get there within `timeout`, naming its state.
pub async fn run_pod<C: Cluster + ?Sized>(
    cluster: &C,
    pod: &Pod,
    what: &str,
    node: &str,
    until_done: bool,
    timeout: Duration,
    poll: Duration,
) -> Result<PodInfo, StepError> {
    let created = cluster
        .create_pod(pod)
        .await
        .map_err(cl(format!("creating the {what} on {node}")))?;
    let failed = |state: String| StepError::PodNotDone {
        node: node.to_owned(),
        what: what.to_owned(),
        pod: created.key(),
        until_done,
        waited: timeout,
        state,
    };
    let judge = |seen: Option<PodInfo>| match seen {
        None => Check::Done(Err("deleted".to_owned())),
        Some(p) if until_done && p.phase.is_finished() => Check::Done(Ok(p)),
        Some(p) if !until_done && p.phase == PodPhase::Running && !p.pod_ips.is_empty() => {
            Check::Done(Ok(p))
        }
        Some(p) if !until_done && p.phase.is_finished() => {
            Check::Pending(format!("{:?} (it exited)", p.phase))
        }
        Some(p) => Check::Pending(format!(
            "{:?}{}",
            p.phase,
            p.waiting_reason
                .as_deref()
                .map(|r| format!(", waiting: {r}"))
                .unwrap_or_default()
        )),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    // The pod's own labels select it and its kind (a LIST needs no `get` grant).
    let selector = created
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    // One watch of the pod; a LIST every poll where the cluster cannot watch, or after the
    // watch failed, for the time left.
    let watched = match cluster.watch_pods(
        Some(&created.namespace),
        &format!("metadata.name={}", created.name),
    ) {
        Some(stream) => {
            wait::watched(
                stream,
                deadline,
                poll * 15,
                "not seen yet".to_owned(),
                |pods: Vec<PodInfo>| judge(pods.into_iter().find(|p| p.uid == created.uid)),
                || async { cluster.pods(Some(&created.namespace), &selector).await.ok() },
            )
            .await
        }
        None => None,
    };
    let waited: Result<Result<PodInfo, String>, String> = match watched {
        Some(w) => w,
        None => {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            wait::looked(left, poll, || async {
                let seen = cluster
                    .pods(Some(&created.namespace), &selector)
                    .await
                    .map_err(cl(format!("reading pod {}", created.key())))?;
                Ok::<_, StepError>(judge(seen.into_iter().find(|p| p.uid == created.uid)))
            })
            .await?
        }
    };
    match waited {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(state)) | Err(state) => {
            delete_own(cluster, &created).await;
            Err(failed(state))
        }
    }
}

/// Deletes one of the tool's pods, retrying API failures a few times (a pod left behind is
/// swept again when the node phase ends). Whether it is gone.
pub async fn delete_own<C: Cluster + ?Sized>(cluster: &C, pod: &PodInfo) -> bool {
    for attempt in 0..4u32 {
        match cluster.delete_pod(&pod.namespace, &pod.name, None).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::debug!(pod = %pod.key(), error = %e, attempt, "cannot delete the tool's pod yet");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
        }
    }
    false
}

/// Runs a pod to completion on a node, then reads its log and deletes it (best effort).
///
/// # Errors
/// As [`run_pod`], or the log cannot be read.
pub async fn run_to_completion<C: Cluster + ?Sized>(
    cluster: &C,
    pod: &Pod,
    what: &str,
    node: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(PodInfo, String), StepError> {
    let done = run_pod(cluster, pod, what, node, true, timeout, poll).await?;
    let log = cluster.pod_log(&done.namespace, &done.name).await;
    delete_own(cluster, &done).await;
    let log = log.map_err(cl(format!("reading the log of {}", done.key())))?;
    Ok((done, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_log_parses_what_the_script_prints() {
        let log = ProbeLog::parse(
            "ip=10.245.1.7\napiserver=ok\nreach 10.244.2.5=ok\nreach 10.245.0.9=fail (no route)\nnoise\n",
        );
        assert_eq!(log.ip.as_deref(), Some("10.245.1.7"));
        assert_eq!(log.apiserver.as_deref(), Some("ok"));
        assert_eq!(
            log.reach,
            vec![
                ("10.244.2.5".into(), "ok".into()),
                ("10.245.0.9".into(), "fail (no route)".into())
            ]
        );
        assert_eq!(ProbeLog::parse(""), ProbeLog::default());
    }

    #[test]
    fn pods_are_pinned_tolerant_and_ours() {
        let p = probe_pod("n1", "img:1", &["10.244.0.5".parse().unwrap()]);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
        assert_eq!(spec.containers[0].image.as_deref(), Some("img:1"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[TARGETS_ANNOTATION],
            "10.244.0.5"
        );
        let r = restore_pod("n1", "img:1", "/var/lib/rancher/k3s/agent/etc/cni/net.d");
        let c = &r.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        assert_eq!(
            r.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
                .host_path
                .as_ref()
                .unwrap()
                .path,
            "/var/lib/rancher/k3s/agent/etc/cni/net.d",
            "the node's CNI directory is target.cniConfDir, not a hard-coded path"
        );
    }
}
