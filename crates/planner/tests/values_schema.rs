//! The generated Helm values validate against Cilium 1.17.3's own `values.schema.json`, every key
//! exists in the chart's `values.yaml`, and the CiliumNodeConfig fits the CRD. These tests read
//! `../shared/fixtures/upstream/cilium` beside the repository and skip with a note when it is
//! absent.

use std::path::PathBuf;

use planner::{MigrationSpec, facts::NetworkFacts, values};
use serde_json::Value;

fn cilium_fixtures() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/upstream/cilium"
    ));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "note: {} is absent; skipping the Cilium schema tests",
            p.display()
        );
        None
    }
}

fn specs() -> Vec<MigrationSpec> {
    let plans = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans"));
    let mut out: Vec<MigrationSpec> = std::fs::read_dir(&plans)
        .expect("plans/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml") && !p.to_string_lossy().contains(".dump.")
        })
        .map(|p| MigrationSpec::from_file(&p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(out.len() >= 5);
    // And one with every optional value that changes the output.
    let mut s = out[0].clone();
    s.target.cni_conf_dir = "/var/lib/rancher/k3s/agent/etc/cni/net.d".into();
    s.finalize.host_legacy_routing = true;
    out.push(s);
    out
}

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                leaf_paths(
                    v,
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    out,
                );
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn generated_values_validate_against_the_cilium_schema() {
    let Some(dir) = cilium_fixtures() else { return };
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("values.schema.json")).expect("schema"),
    )
    .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("Cilium's schema compiles");
    // The validator bites: a quoted boolean, as some write-ups have it, is refused.
    let wrong: Value = serde_json::json!({"cni": {"customConf": "true"}, "tunnelPort": "8473"});
    assert_eq!(
        validator.iter_errors(&wrong).count(),
        2,
        "the schema must catch mistyped values"
    );
    for spec in specs() {
        for (name, text) in [
            (
                "values-migration.yaml",
                values::generate(&spec, &NetworkFacts::default()).values_migration,
            ),
            (
                "values-final.yaml",
                values::generate(&spec, &NetworkFacts::default()).values_final,
            ),
        ] {
            let instance: Value = serde_yaml::from_str(&text).expect("yaml");
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{} {name}: {errors:?}",
                spec.metadata.name
            );
        }
    }
}

#[test]
fn every_generated_key_exists_in_the_chart() {
    let Some(dir) = cilium_fixtures() else { return };
    let text = std::fs::read_to_string(dir.join("chart-1.17.3/values.yaml")).expect("values");
    let chart: Value = serde_yaml::from_str(&text).expect("yaml");
    // Top-level keys the chart documents commented out (no default, read by its templates when
    // set), such as `# egressMasqueradeInterfaces: ""`.
    let documented = |path: &str| {
        !path.contains('.') && text.lines().any(|l| l.starts_with(&format!("# {path}:")))
    };
    for spec in specs() {
        for v in [
            values::migration_values(&spec, &NetworkFacts::default()),
            values::final_values(&spec, &NetworkFacts::default()),
        ] {
            let mut paths = Vec::new();
            leaf_paths(&v, "", &mut paths);
            for path in paths {
                let found = path.split('.').try_fold(&chart, |node, key| node.get(key));
                assert!(
                    found.is_some() || documented(&path),
                    "{}: key {path} is not in Cilium 1.17.3's values.yaml",
                    spec.metadata.name
                );
            }
        }
    }
}

#[test]
fn node_config_fits_the_crd() {
    let Some(dir) = cilium_fixtures() else { return };
    let crd: Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("crds/v2/ciliumnodeconfigs.yaml")).expect("crd"),
    )
    .expect("yaml");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    for spec in specs() {
        let cnc = values::node_config_object(&spec, &planner::NetworkFacts::default());
        let version = cnc["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .trim_start_matches("cilium.io/");
        let served = versions
            .iter()
            .find(|v| v["name"] == version)
            .unwrap_or_else(|| panic!("{version} not in the CRD"));
        assert_eq!(served["served"], true);
        let schema = &served["schema"]["openAPIV3Schema"];
        let validator = jsonschema::validator_for(schema).expect("CRD schema compiles");
        let errors: Vec<String> = validator.iter_errors(&cnc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }
}
