//! The generated artifacts: Helm values for the migration and for the end, and the
//! CiliumNodeConfig, exactly as Cilium's migration procedure needs them.
//!
//! ```text
//! values-migration.yaml  Cilium beside the old CNI: writes no CNI config (cni.customConf),
//!                        never deletes one (cni.uninstall=false), enforces no policy, routes
//!                        through the host stack (bpf.hostLegacyRouting), restarts no unmanaged
//!                        pod, own cluster pool and tunnel port
//! ciliumnodeconfig.yaml  per labelled node: write 05-cilium.conflist and take the CNI over
//! values-final.yaml      Cilium the only CNI: customConf=false, policy enforced, unmanaged
//!                        pods restarted, host routing as the spec says
//! ```
//!
//! Each file says what generated it, so nobody mistakes it for a hand-written one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    facts::NetworkFacts,
    names::{CILIUM_NAMESPACE, MIGRATION_LABEL, NODE_CONFIG_NAME},
    spec::{MigrationSpec, TargetMode},
};

/// The files `plan --out-dir` writes besides the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifacts {
    /// `values-migration.yaml`.
    pub values_migration: String,
    /// `values-final.yaml`.
    pub values_final: String,
    /// `ciliumnodeconfig.yaml`.
    pub node_config: String,
}

/// The `egressMasqueradeInterfaces` pattern of an EKS profile: the spec's, else the one that
/// fits every node's OS, else `eth+` (preflight reports `MIXED_INTERFACE_NAMING` then).
pub fn egress_masquerade_interfaces(spec: &MigrationSpec, facts: &NetworkFacts) -> String {
    spec.target
        .eni
        .as_ref()
        .and_then(|e| e.egress_masquerade_interfaces.clone())
        .or_else(|| facts.eks.as_ref().and_then(|e| e.interface_pattern.clone()))
        .unwrap_or_else(|| "eth+".to_owned())
}

/// The Helm values during the migration (Cilium in secondary mode).
pub fn migration_values(spec: &MigrationSpec, facts: &NetworkFacts) -> Value {
    let t = &spec.target;
    if t.mode == TargetMode::EksEni {
        // Cilium's EKS ENI install: pods take VPC addresses from ENIs Cilium's operator
        // attaches and route natively, so old and new pods reach each other without a second
        // overlay; Cilium writes its CNI configuration on every node at once (the old pods
        // keep running until restarted), enforces no policy and restarts nothing itself.
        return json!({
            "eni": {"enabled": true},
            "ipam": {"mode": "eni"},
            "routingMode": "native",
            "egressMasqueradeInterfaces": egress_masquerade_interfaces(spec, facts),
            "cni": {"customConf": false, "exclusive": true, "uninstall": false},
            "operator": {"unmanagedPodWatcher": {"restart": false}},
            "policyEnforcementMode": "never",
            "bpf": {"hostLegacyRouting": true},
        });
    }
    let mut v = json!({
        "operator": {"unmanagedPodWatcher": {"restart": false}},
        "routingMode": "tunnel",
        "tunnelProtocol": t.tunnel.protocol.to_string(),
        "tunnelPort": t.tunnel.effective_port(),
        "cni": {"customConf": true, "uninstall": false},
        "ipam": {
            "mode": "cluster-pool",
            "operator": {
                "clusterPoolIPv4PodCIDRList": t.pod_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "clusterPoolIPv4MaskSize": t.mask_size,
            },
        },
        "policyEnforcementMode": "never",
        "bpf": {"hostLegacyRouting": true},
    });
    // The kubelet's CNI directory, when it is not the default (k3s, some distributions).
    if t.cni_conf_dir != "/etc/cni/net.d" {
        v["cni"]["confPath"] = json!(t.cni_conf_dir);
    }
    // EKS overlay: egress leaves SNATed to the node's VPC address on its ENIs.
    if t.mode == TargetMode::EksOverlay {
        v["egressMasqueradeInterfaces"] = json!(egress_masquerade_interfaces(spec, facts));
    }
    v
}

/// The Helm values after the migration (Cilium the only CNI).
pub fn final_values(spec: &MigrationSpec, facts: &NetworkFacts) -> Value {
    let mut v = migration_values(spec, facts);
    v["operator"]["unmanagedPodWatcher"]["restart"] = json!(true);
    v["cni"]["customConf"] = json!(false);
    v["policyEnforcementMode"] = json!("default");
    v["bpf"]["hostLegacyRouting"] = json!(spec.finalize.host_legacy_routing);
    v
}

/// The `cilium-config` entries the chart renders from the migration values: how the executor's
/// gate and preflight tell that an installed Cilium is in migration mode.
pub fn migration_config(spec: &MigrationSpec) -> std::collections::BTreeMap<&'static str, String> {
    if spec.target.mode == TargetMode::EksEni {
        return [
            ("custom-cni-conf", "false".to_owned()),
            ("enable-policy", "never".to_owned()),
            ("ipam", "eni".to_owned()),
            ("routing-mode", "native".to_owned()),
            ("enable-host-legacy-routing", "true".to_owned()),
            ("unmanaged-pod-watcher-interval", "0".to_owned()),
        ]
        .into_iter()
        .collect();
    }
    [
        ("custom-cni-conf", "true".to_owned()),
        ("enable-policy", "never".to_owned()),
        ("ipam", "cluster-pool".to_owned()),
        (
            "cluster-pool-ipv4-cidr",
            spec.target
                .pod_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("tunnel-protocol", spec.target.tunnel.protocol.to_string()),
        ("enable-host-legacy-routing", "true".to_owned()),
        ("unmanaged-pod-watcher-interval", "0".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// The `cilium-config` entries the chart renders from the final values.
pub fn final_config(spec: &MigrationSpec) -> std::collections::BTreeMap<&'static str, String> {
    [
        ("custom-cni-conf", "false".to_owned()),
        ("enable-policy", "default".to_owned()),
        (
            "enable-host-legacy-routing",
            spec.finalize.host_legacy_routing.to_string(),
        ),
    ]
    .into_iter()
    .collect()
}

/// The `CiliumNodeConfig` API version the plan uses, and why: the one the cluster serves
/// (`cilium.io/v2` preferred; `v2alpha1` where only it is served, as on clusters whose stored
/// version it was, cilium/cilium#40110 and #47774), else the one the target chart installs
/// (Cilium not installed yet, or a dump that holds no CustomResourceDefinition).
pub fn node_config_api(spec: &MigrationSpec, facts: &NetworkFacts) -> (String, String) {
    let chart = spec.target.cilium_version.node_config_api_version();
    let version = spec.target.cilium_version;
    match facts.node_config_versions.as_deref() {
        Some(served) if served.iter().any(|v| v == "v2") => (
            "cilium.io/v2".to_owned(),
            "served by the cluster's CiliumNodeConfig CRD".to_owned(),
        ),
        Some(served) if served.iter().any(|v| v == "v2alpha1") => (
            "cilium.io/v2alpha1".to_owned(),
            "the cluster's CiliumNodeConfig CRD serves only v2alpha1".to_owned(),
        ),
        Some(_) => (
            chart.to_owned(),
            format!(
                "no CiliumNodeConfig CRD in the cluster yet: Cilium {version} installs {chart}"
            ),
        ),
        None => (
            chart.to_owned(),
            format!(
                "assumed from Cilium {version}: the dump holds no CiliumNodeConfig CRD (add `kubectl get crd ciliumnodeconfigs.cilium.io -o json` to it to check)"
            ),
        ),
    }
}

/// The migration `CiliumNodeConfig`, in the API version [`node_config_api`] picks.
pub fn node_config_object(spec: &MigrationSpec, facts: &NetworkFacts) -> Value {
    let dir = spec.target.cni_conf_dir.trim_end_matches('/');
    json!({
        "apiVersion": node_config_api(spec, facts).0,
        "kind": "CiliumNodeConfig",
        "metadata": {"namespace": CILIUM_NAMESPACE, "name": NODE_CONFIG_NAME},
        "spec": {
            "nodeSelector": {"matchLabels": {MIGRATION_LABEL: "true"}},
            "defaults": {
                "write-cni-conf-when-ready": format!("/host{dir}/05-cilium.conflist"),
                "custom-cni-conf": "false",
                "cni-chaining-mode": "none",
                "cni-exclusive": "true",
            },
        },
    })
}

fn yaml_with_header(header: &str, value: &Value) -> String {
    let body = crate::yaml::to_string(value).unwrap_or_default();
    format!("{header}{body}")
}

/// Generates the three artifacts as YAML.
pub fn generate(spec: &MigrationSpec, facts: &NetworkFacts) -> Artifacts {
    let who = format!(
        "# Generated by cni-migrate for migration `{}` to Cilium {}.\n",
        spec.metadata.name, spec.target.cilium_version
    );
    Artifacts {
        values_migration: yaml_with_header(
            &format!(
                "{who}# Helm values while Cilium runs beside the old CNI (Cilium's migration guide, values-migration.yaml).\n# Install: helm upgrade --install cilium cilium/cilium --namespace {CILIUM_NAMESPACE} --version {} -f values-migration.yaml\n",
                spec.target.cilium_version
            ),
            &migration_values(spec, facts),
        ),
        values_final: yaml_with_header(
            &format!(
                "{who}# Helm values once every node is migrated: Cilium the only CNI, policies enforced.\n# Apply: helm upgrade cilium cilium/cilium --namespace {CILIUM_NAMESPACE} --version {} -f values-final.yaml\n",
                spec.target.cilium_version
            ),
            &final_values(spec, facts),
        ),
        node_config: if !spec.target.mode.is_overlay() {
            format!(
                "{who}# Not used in eks-eni: Cilium takes every node's CNI over at install, so no CiliumNodeConfig\n# selects nodes one by one (the old pods are restarted per node instead).\n"
            )
        } else {
            yaml_with_header(
                &format!(
                    "{who}# Applies only to nodes labelled {MIGRATION_LABEL}=true, once their agent restarts.\n# Apply: kubectl apply --server-side -f ciliumnodeconfig.yaml\n"
                ),
                &node_config_object(spec, facts),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> MigrationSpec {
        let text = format!(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\n\
             target: {{ciliumVersion: 1.17.3, podCIDRs: [10.245.0.0/16], tunnel: {{port: 8473}}{extra}}}\n"
        );
        MigrationSpec::from_yaml(&text, "t").unwrap()
    }

    #[test]
    fn migration_values_are_the_guides() {
        let v = migration_values(&spec(""), &NetworkFacts::default());
        assert_eq!(
            v["cni"]["customConf"], true,
            "customConf must be true during the migration"
        );
        assert_eq!(v["cni"]["uninstall"], false);
        assert_eq!(v["policyEnforcementMode"], "never");
        assert_eq!(v["bpf"]["hostLegacyRouting"], true);
        assert_eq!(v["operator"]["unmanagedPodWatcher"]["restart"], false);
        assert_eq!(v["tunnelPort"], 8473);
        assert_eq!(
            v["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"][0],
            "10.245.0.0/16"
        );
        assert!(v["cni"].get("confPath").is_none());
    }

    #[test]
    fn final_values_flip_exactly_four_keys() {
        let s = spec("");
        let m = migration_values(&s, &NetworkFacts::default());
        let f = final_values(&s, &NetworkFacts::default());
        assert_eq!(f["cni"]["customConf"], false);
        assert_eq!(f["policyEnforcementMode"], "default");
        assert_eq!(f["operator"]["unmanagedPodWatcher"]["restart"], true);
        assert_eq!(f["bpf"]["hostLegacyRouting"], false);
        let mut f2 = f.clone();
        f2["cni"]["customConf"] = m["cni"]["customConf"].clone();
        f2["policyEnforcementMode"] = m["policyEnforcementMode"].clone();
        f2["operator"] = m["operator"].clone();
        f2["bpf"] = m["bpf"].clone();
        assert_eq!(f2, m);
    }

    #[test]
    fn node_config_version_and_path_follow_the_spec() {
        let unknown = NetworkFacts::default();
        let v = node_config_object(
            &spec(", cniConfDir: /var/lib/rancher/k3s/agent/etc/cni/net.d"),
            &unknown,
        );
        assert_eq!(v["apiVersion"], "cilium.io/v2");
        assert_eq!(
            v["spec"]["defaults"]["write-cni-conf-when-ready"],
            "/host/var/lib/rancher/k3s/agent/etc/cni/net.d/05-cilium.conflist"
        );
        let old = spec("").target.cilium_version;
        assert_eq!(old.node_config_api_version(), "cilium.io/v2");
        let mut s = spec("");
        s.target.cilium_version = "1.15.7".parse().unwrap();
        assert_eq!(
            node_config_object(&s, &unknown)["apiVersion"],
            "cilium.io/v2alpha1"
        );
        for (_, val) in node_config_object(&s, &unknown)["spec"]["defaults"]
            .as_object()
            .unwrap()
        {
            assert!(val.is_string(), "CiliumNodeConfig defaults must be strings");
        }
    }

    /// The version comes from what the cluster serves, then from the chart; the reason says
    /// which.
    #[test]
    fn node_config_version_follows_what_the_cluster_serves() {
        let s = spec("");
        let served = |v: &[&str]| NetworkFacts {
            node_config_versions: Some(v.iter().map(|x| (*x).to_owned()).collect()),
            ..NetworkFacts::default()
        };
        let (v, why) = node_config_api(&s, &served(&["v2", "v2alpha1"]));
        assert_eq!(v, "cilium.io/v2");
        assert!(why.contains("served by the cluster"), "{why}");
        // A 1.17 chart, but a cluster whose CRD serves only v2alpha1 (cilium/cilium#40110).
        let (v, why) = node_config_api(&s, &served(&["v2alpha1"]));
        assert_eq!(v, "cilium.io/v2alpha1");
        assert!(why.contains("only v2alpha1"), "{why}");
        assert_eq!(
            node_config_object(&s, &served(&["v2alpha1"]))["apiVersion"],
            "cilium.io/v2alpha1"
        );
        let (v, why) = node_config_api(&s, &served(&[]));
        assert_eq!(v, "cilium.io/v2");
        assert!(
            why.contains("no CiliumNodeConfig CRD in the cluster yet"),
            "{why}"
        );
        let (v, why) = node_config_api(&s, &NetworkFacts::default());
        assert_eq!(v, "cilium.io/v2");
        assert!(why.contains("assumed from Cilium 1.17.3"), "{why}");
    }

    #[test]
    fn artifacts_are_yaml_with_a_header() {
        let a = generate(&spec(""), &NetworkFacts::default());
        for text in [&a.values_migration, &a.values_final, &a.node_config] {
            assert!(text.starts_with("# Generated by cni-migrate"));
            let _: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        }
    }
}
