//! `cni-migrate job`: everything to run the migration inside the cluster, for `kubectl apply
//! -f -`. A migration of a large cluster runs for hours; run from a laptop it dies with the
//! VPN. The checkpoint and the lock already live in the cluster, so the cluster can keep the
//! process alive: a Job whose every pod runs `apply --or-resume` and carries on where the last
//! one stopped.
//!
//! ```text
//! ConfigMap  NS/cni-migrate-spec      the spec, mounted at /etc/cni-migrate/spec.yaml
//! ServiceAccount NS/cni-migrate       the identity the run acts as
//! RBAC                                `cni-migrate rbac`'s least-privilege rules, bound to it
//!                                     (and `--helm-role`'s, when Helm runs in the pod)
//! Job NS/cni-migrate                  one pod at a time: apply --or-resume (or rollback --all)
//!   host network       it must depend on neither overlay
//!   tolerates every taint (node.cilium.io/agent-not-ready included), system-cluster-critical
//!   prefers control-plane nodes, then migrated ones: rarely on a node being drained
//!   SIGTERM (its node drained, its pod evicted) ─► the run stops, releases the Lease, exits
//!     143; the eviction's DisruptionTarget condition does not count against backoffLimit
//!   exit 2, 3, 4, 5 (bad input, preflight, gate, failure) fail the Job: a human decides
//! ```

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::failure::{Failure, exit};

/// Where the spec is mounted in the Job's pod.
const SPEC_DIR: &str = "/etc/cni-migrate";

/// `cni-migrate job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The MigrationSpec file (it goes into a ConfigMap).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The image with the `cni-migrate` binary (and `helm`, with `--helm`); see `Containerfile`.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The namespace of the Job, its ConfigMap and its ServiceAccount.
    #[arg(long, default_value = "kube-system", value_name = "NS")]
    pub namespace: String,
    /// The Helm command inside the image (without it the run stops at the Helm gate, and
    /// `status` shows the command to run).
    #[arg(long, value_name = "CMD")]
    pub helm: Option<String>,
    /// `finalize`: every node migrated, the old CNI kept until the Job runs again.
    #[arg(long, value_name = "PHASE")]
    pub stop_before: Option<String>,
    /// Run `rollback --all` instead of the migration.
    #[arg(long)]
    pub rollback: bool,
    /// The longest the Job may run (its `activeDeadlineSeconds`).
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub deadline: humantime::Duration,
    /// The pod's priority class: it must outrank the workloads it evicts.
    #[arg(long, default_value = "system-cluster-critical", value_name = "NAME")]
    pub priority_class: String,
    /// Serve the run's Prometheus metrics on this port of the pod (host network: the node's
    /// port), with the `prometheus.io/scrape` annotations.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Notify the webhook URLs in this Secret's key `url` (comma-separated): the URLs stay out
    /// of the Job's spec.
    #[arg(long, value_name = "SECRET")]
    pub notify_secret: Option<String>,
}

/// The objects, as YAML documents.
///
/// # Errors
/// Bad input (the spec does not load, a flag is out of range), naming it.
pub fn render(args: &JobArgs) -> Result<String, Failure> {
    let text = std::fs::read_to_string(&args.spec)
        .map_err(|e| Failure::bad_input(anyhow::anyhow!("--spec {}: {e}", args.spec.display())))?;
    let spec = planner::MigrationSpec::from_yaml(&text, &args.spec.display().to_string())
        .map_err(Failure::bad_input)?;
    if let Some(phase) = args.stop_before.as_deref()
        && phase != "finalize"
    {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--stop-before {phase}: the only phase to stop before is `finalize`"
        )));
    }
    if args.rollback && args.stop_before.is_some() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--stop-before belongs to the migration, not to --rollback"
        )));
    }
    if args.image.trim().is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--image is empty: name the image that holds cni-migrate"
        )));
    }
    let deadline = args.deadline.as_secs();
    if deadline < 600 {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "--deadline {}: at least 10m (a migration takes longer)",
            args.deadline
        )));
    }
    let ns = args.namespace.as_str();
    let name = "cni-migrate";
    let labels =
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/component": "migration"});
    let spec_file = format!("{SPEC_DIR}/spec.yaml");
    let mut command: Vec<String> = if args.rollback {
        ["rollback", "--all"].map(str::to_owned).to_vec()
    } else {
        ["apply", "--or-resume"].map(str::to_owned).to_vec()
    };
    // One pod at a time: a stale Lease is a predecessor that died without releasing it (a
    // fresh one, say a human's run from a laptop, is never taken over).
    command.extend(
        [
            "--in-cluster",
            "--yes",
            "-o",
            "json",
            "--spec",
            &spec_file,
            "--work-dir",
            "/work",
            "--force-unlock",
        ]
        .map(str::to_owned),
    );
    if let Some(h) = &args.helm {
        command.extend(["--helm".to_owned(), h.clone()]);
    }
    if let Some(p) = &args.stop_before {
        command.extend(["--stop-before".to_owned(), p.clone()]);
    }
    if let Some(port) = args.metrics_port {
        command.extend(["--metrics-addr".to_owned(), format!("0.0.0.0:{port}")]);
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cni-migrate-spec", "namespace": ns, "labels": labels},
        "data": {"spec.yaml": text},
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 10,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 86_400,
            // Evictions (its node drained) do not count; the tool's own verdicts end the Job.
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": name, "operator": "In",
                    "values": [exit::BAD_INPUT, exit::PREFLIGHT, exit::GATE, exit::FAILED]}},
            ]},
            "template": {
                "metadata": {"labels": labels, "annotations": args.metrics_port.map_or_else(
                    || json!({}),
                    |p| json!({"prometheus.io/scrape": "true", "prometheus.io/port": p.to_string(),
                        "prometheus.io/path": "/metrics"}),
                )},
                "spec": pod_spec(args, name, command),
            },
        },
    });
    let mut out = format!(
        "# cni-migrate {} as a Job in {ns}: its pod runs `{}`; every new pod carries on where the\n\
         # last one stopped. Follow it with `cni-migrate status` or `kubectl -n {ns} logs -f job/{name}`.\n\
         # Migrating {}: Cilium {}.\n",
        if args.rollback {
            "rollback --all"
        } else {
            "migration"
        },
        if args.rollback {
            "rollback --all"
        } else {
            "apply --or-resume"
        },
        spec.metadata.name,
        spec.target.cilium_version,
    );
    out.push_str("---\n");
    out.push_str(&planner::yaml::to_string(&config_map).map_err(Failure::other)?);
    // The ServiceAccount and its least-privilege RBAC; with `--helm`, Helm runs in the pod
    // with the same identity, so the chart's role comes too (`rbac --helm-role`).
    out.push_str(&crate::rbac::render(
        &json!({"kind": "ServiceAccount", "namespace": ns, "name": name}),
        args.helm.is_some(),
    ));
    out.push_str("---\n");
    out.push_str(&planner::yaml::to_string(&job).map_err(Failure::other)?);
    Ok(out)
}

fn pod_spec(args: &JobArgs, name: &str, command: Vec<String>) -> Value {
    let mut env = vec![
        json!({"name": "HOME", "value": "/work"}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
    ];
    if let Some(secret) = &args.notify_secret {
        env.push(json!({"name": "CNI_MIGRATE_NOTIFY",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}}}));
    }
    let ports = args.metrics_port.map_or_else(
        || json!([]),
        |p| json!([{"name": "metrics", "containerPort": p, "protocol": "TCP"}]),
    );
    json!({
        "serviceAccountName": name,
        "restartPolicy": "Never",
        // Neither overlay may be in its way: the pod lives through both.
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": args.priority_class,
        "terminationGracePeriodSeconds": 30,
        "tolerations": [{"operator": "Exists"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}},
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": planner::plan::MIGRATION_LABEL, "operator": "In", "values": ["true"]}]}},
        ]}},
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65_532, "runAsGroup": 65_532,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": name,
            "image": args.image,
            "args": command,
            // The run knows its own pod: a drain of its node evicts it last.
            "env": env,
            "ports": ports,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "spec", "mountPath": SPEC_DIR, "readOnly": true},
                {"name": "work", "mountPath": "/work"},
            ],
        }],
        "volumes": [
            {"name": "spec", "configMap": {"name": "cni-migrate-spec"}},
            {"name": "work", "emptyDir": {}},
        ],
    })
}

/// Prints the objects.
///
/// # Errors
/// Bad input, naming it.
pub fn print(args: &JobArgs) -> Result<u8, Failure> {
    print!("{}", render(args)?);
    Ok(exit::OK)
}
