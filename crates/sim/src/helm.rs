//! A stand-in for `helm upgrade --install cilium cilium/cilium`: renders the Helm values into
//! `kube-system/cilium-config` the way Cilium's chart does for the keys the migration uses,
//! and creates (or rolls) the agent DaemonSet and the operator Deployment, so an end-to-end run
//! needs no real Helm. It takes helm's own argument shape, so the executor can call either.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{Value, json};

/// Why the stand-in refused.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// Arguments helm would not accept either.
    #[error(
        "{0} (usage: helm upgrade --install cilium cilium/cilium --namespace kube-system [--version V] -f VALUES [--kubeconfig F] [--kube-context C])"
    )]
    Usage(String),
    /// A values file could not be read or parsed.
    #[error("cannot read values file {path}: {message}")]
    Values {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What `helm upgrade --install` was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelmArgs {
    /// Release name.
    pub release: String,
    /// Chart reference.
    pub chart: String,
    /// Namespace.
    pub namespace: String,
    /// Chart version.
    pub version: Option<String>,
    /// Values files, in order.
    pub values: Vec<PathBuf>,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-context`.
    pub context: Option<String>,
}

/// Parses helm's arguments (after the program name): `upgrade --install RELEASE CHART ...`.
///
/// # Errors
/// [`HelmError::Usage`] for anything else.
pub fn parse_args(args: &[String]) -> Result<HelmArgs, HelmError> {
    let mut out = HelmArgs {
        namespace: "default".into(),
        ..HelmArgs::default()
    };
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| HelmError::Usage(format!("{flag} needs a value")))
        };
        match a.as_str() {
            "--install" | "-i" | "--wait" | "--atomic" | "--reuse-values" => {}
            "--namespace" | "-n" => out.namespace = value(a)?,
            "--version" => out.version = Some(value(a)?),
            "-f" | "--values" => out.values.push(PathBuf::from(value(a)?)),
            "--kubeconfig" => out.kubeconfig = Some(PathBuf::from(value(a)?)),
            "--kube-context" => out.context = Some(value(a)?),
            "--timeout" => {
                value(a)?;
            }
            s if s.starts_with("--namespace=") => {
                out.namespace = s["--namespace=".len()..].to_owned()
            }
            s if s.starts_with("--version=") => {
                out.version = Some(s["--version=".len()..].to_owned())
            }
            s if s.starts_with('-') => {
                return Err(HelmError::Usage(format!("unsupported flag {s}")));
            }
            s => positional.push(s.to_owned()),
        }
    }
    match positional.as_slice() {
        [cmd, release, chart] if cmd == "upgrade" => {
            out.release = release.clone();
            out.chart = chart.clone();
            Ok(out)
        }
        _ => Err(HelmError::Usage(format!(
            "expected `upgrade --install RELEASE CHART`, got {positional:?}"
        ))),
    }
}

/// Merges values files like helm: later files override earlier keys, maps merge deeply.
///
/// # Errors
/// [`HelmError::Values`] naming the file.
pub fn load_values(paths: &[PathBuf]) -> Result<Value, HelmError> {
    let mut merged = json!({});
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|e| HelmError::Values {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        let v: Value = serde_yaml::from_str(&text).map_err(|e| HelmError::Values {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        json_patch::merge(&mut merged, &v);
    }
    Ok(merged)
}

fn b(v: &Value, default: bool) -> bool {
    v.as_bool().unwrap_or(default)
}

/// Renders `cilium-config` from values, for the keys the migration uses, as the 1.17 chart does
/// (`templates/cilium-configmap.yaml`).
pub fn render_cilium_config(values: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let custom = b(&values["cni"]["customConf"], false);
    let install = b(&values["cni"]["install"], true);
    m.insert("custom-cni-conf".into(), custom.to_string());
    if !custom && install {
        let dir = values["cni"]["hostConfDirMountPath"]
            .as_str()
            .unwrap_or("/host/etc/cni/net.d");
        m.insert(
            "write-cni-conf-when-ready".into(),
            format!("{dir}/05-cilium.conflist"),
        );
        m.insert(
            "cni-exclusive".into(),
            b(&values["cni"]["exclusive"], true).to_string(),
        );
    }
    if b(&values["cni"]["uninstall"], false) {
        m.insert("cni-uninstall".into(), "true".into());
    }
    m.insert(
        "enable-policy".into(),
        values["policyEnforcementMode"]
            .as_str()
            .unwrap_or("default")
            .to_lowercase(),
    );
    m.insert(
        "ipam".into(),
        values["ipam"]["mode"]
            .as_str()
            .unwrap_or("cluster-pool")
            .to_owned(),
    );
    let pool: Vec<String> = values["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| vec!["10.0.0.0/8".to_owned()]);
    m.insert("cluster-pool-ipv4-cidr".into(), pool.join(" "));
    m.insert(
        "cluster-pool-ipv4-mask-size".into(),
        values["ipam"]["operator"]["clusterPoolIPv4MaskSize"]
            .as_u64()
            .unwrap_or(24)
            .to_string(),
    );
    m.insert(
        "routing-mode".into(),
        values["routingMode"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("tunnel")
            .to_owned(),
    );
    m.insert(
        "tunnel-protocol".into(),
        values["tunnelProtocol"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("vxlan")
            .to_owned(),
    );
    if let Some(p) = values["tunnelPort"].as_u64().filter(|p| *p != 0) {
        m.insert("tunnel-port".into(), p.to_string());
    }
    m.insert(
        "enable-host-legacy-routing".into(),
        b(&values["bpf"]["hostLegacyRouting"], false).to_string(),
    );
    m.insert(
        "unmanaged-pod-watcher-interval".into(),
        if b(&values["operator"]["unmanagedPodWatcher"]["restart"], true) {
            "15s".into()
        } else {
            "0".into()
        },
    );
    m
}

/// The objects an install or upgrade writes: `cilium-config`, the `cilium` DaemonSet and the
/// `cilium-operator` Deployment. `revision` goes into the DaemonSet template so an upgrade rolls
/// the agents.
pub fn manifests(namespace: &str, version: &str, values: &Value, revision: u64) -> Vec<Value> {
    let config = render_cilium_config(values);
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cilium-config", "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "Helm"},
                            "annotations": {"meta.helm.sh/release-name": "cilium", "meta.helm.sh/release-namespace": namespace}},
               "data": config}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "cilium", "namespace": namespace, "labels": {"k8s-app": "cilium", "app.kubernetes.io/managed-by": "Helm"}},
               "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
                        "template": {"metadata": {"labels": {"k8s-app": "cilium"}, "annotations": {"cni-migrate.io/helm-revision": revision.to_string()}},
                                     "spec": {"hostNetwork": true, "priorityClassName": "system-node-critical", "tolerations": [{"operator": "Exists"}],
                                              "containers": [{"name": "cilium-agent", "image": format!("quay.io/cilium/cilium:v{version}")}]}}},
               "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "cilium-operator", "namespace": namespace, "labels": {"io.cilium/app": "operator", "name": "cilium-operator"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"io.cilium/app": "operator"}},
                        "template": {"metadata": {"labels": {"io.cilium/app": "operator", "name": "cilium-operator"}},
                                     "spec": {"hostNetwork": true, "containers": [{"name": "cilium-operator", "image": format!("quay.io/cilium/operator-generic:v{version}")}]}}},
               "status": {"replicas": 1, "readyReplicas": 1}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_executors_helm_command_line() {
        let a = parse_args(&args("upgrade --install cilium cilium/cilium --namespace kube-system --version 1.17.3 -f v.yaml --kubeconfig k")).unwrap();
        assert_eq!(
            (a.release.as_str(), a.chart.as_str(), a.namespace.as_str()),
            ("cilium", "cilium/cilium", "kube-system")
        );
        assert_eq!(a.version.as_deref(), Some("1.17.3"));
        assert_eq!(a.values, [PathBuf::from("v.yaml")]);
        assert!(parse_args(&args("install cilium")).is_err());
        assert!(parse_args(&args("upgrade --install cilium cilium/cilium --frobnicate")).is_err());
    }

    #[test]
    fn migration_values_render_no_cni_writing_and_no_policy() {
        let values = json!({"cni": {"customConf": true, "uninstall": false}, "policyEnforcementMode": "never",
            "ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": ["10.245.0.0/16"], "clusterPoolIPv4MaskSize": 24}},
            "routingMode": "tunnel", "tunnelProtocol": "vxlan", "tunnelPort": 8473, "bpf": {"hostLegacyRouting": true},
            "operator": {"unmanagedPodWatcher": {"restart": false}}});
        let c = render_cilium_config(&values);
        assert_eq!(c["custom-cni-conf"], "true");
        assert!(!c.contains_key("write-cni-conf-when-ready") && !c.contains_key("cni-exclusive"));
        assert_eq!(c["enable-policy"], "never");
        assert_eq!(c["cluster-pool-ipv4-cidr"], "10.245.0.0/16");
        assert_eq!(c["tunnel-port"], "8473");
        assert_eq!(c["unmanaged-pod-watcher-interval"], "0");
        let mut fin = values;
        fin["cni"]["customConf"] = json!(false);
        let c = render_cilium_config(&fin);
        assert_eq!(
            c["write-cni-conf-when-ready"],
            "/host/etc/cni/net.d/05-cilium.conflist"
        );
        assert_eq!(c["cni-exclusive"], "true");
    }
}
