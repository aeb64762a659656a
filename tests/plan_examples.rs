//! Every example in `plans/` plans as expected through the real binary: exit code, detected
//! source, findings, every output format, `--out-dir`; and the plans and artifacts are pinned by
//! insta snapshots.

use std::collections::BTreeSet;

mod support;

use serde_json::Value;
use support::{examples, run};

/// What each example must give.
struct Expect {
    name: &'static str,
    exit: i32,
    cni: &'static str,
    pod_cidrs: &'static [&'static str],
    encapsulation: &'static str,
    port: Option<u64>,
    codes: &'static [&'static str],
}

const EXPECT: &[Expect] = &[
    Expect {
        name: "calico-manifest-ipip",
        exit: 0,
        cni: "calico",
        pod_cidrs: &["10.233.64.0/18"],
        encapsulation: "ipip",
        port: None,
        codes: &["HOST_ROUTING_STAYS_LEGACY", "LOCAL_STORAGE_PODS"],
    },
    Expect {
        name: "calico-operator-vxlan",
        exit: 0,
        cni: "calico",
        pod_cidrs: &["192.168.0.0/16"],
        encapsulation: "vxlan",
        port: Some(4789),
        codes: &["HOST_ROUTING_STAYS_LEGACY", "NETWORK_POLICIES_PRESENT"],
    },
    Expect {
        name: "eks-aws-vpc-cni",
        exit: 0,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
        ],
    },
    Expect {
        name: "eks-eni-al2-tainted",
        exit: 0,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
            "AWS_NODE_NOT_PATCHED",
            "AGENT_NOT_READY_TAINT_MISSING",
            "AGENT_NOT_READY_TAINT_PRESENT",
            "EC2_PERMISSIONS",
        ],
    },
    Expect {
        name: "eks-eni-al2023",
        exit: 0,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
            "AWS_NODE_NOT_PATCHED",
            "AGENT_NOT_READY_TAINT_MISSING",
            "EC2_PERMISSIONS",
        ],
    },
    Expect {
        name: "eks-mixed-os",
        exit: 3,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
            "AWS_NODE_NOT_PATCHED",
            "MIXED_INTERFACE_NAMING",
            "AGENT_NOT_READY_TAINT_MISSING",
            "EC2_PERMISSIONS",
        ],
    },
    Expect {
        name: "eks-overlay-al2",
        exit: 0,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
            "AWS_NODE_NOT_PATCHED",
            "AGENT_NOT_READY_TAINT_MISSING",
            "VPC_CNI_IPTABLES_LEFTOVERS",
        ],
    },
    Expect {
        name: "eks-overlay-webhook",
        exit: 3,
        cni: "aws-vpc-cni",
        pod_cidrs: &[],
        encapsulation: "none",
        port: None,
        codes: &[
            "HOST_ROUTING_STAYS_LEGACY",
            "NODE_AUTOSCALING_ACTIVE",
            "SERVICE_CIDR_UNKNOWN",
            "AWS_NODE_NOT_PATCHED",
            "AGENT_NOT_READY_TAINT_MISSING",
            "VPC_CNI_IPTABLES_LEFTOVERS",
            "OVERLAY_WEBHOOKS_UNREACHABLE",
        ],
    },
    Expect {
        name: "kind-flannel",
        exit: 0,
        cni: "flannel",
        pod_cidrs: &["10.244.0.0/16"],
        encapsulation: "vxlan",
        port: Some(8472),
        codes: &["HOST_ROUTING_STAYS_LEGACY"],
    },
    Expect {
        name: "pdb-blocks-drain",
        exit: 3,
        cni: "flannel",
        pod_cidrs: &["10.244.0.0/16"],
        encapsulation: "vxlan",
        port: Some(8472),
        codes: &["HOST_ROUTING_STAYS_LEGACY", "PDB_BLOCKS_DRAIN"],
    },
];

fn plan_json(spec: &str, dump: &str) -> (i32, Value, String) {
    let out = run(&["plan", "--spec", spec, "--from-dump", dump, "-o", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("plan -o json is not JSON ({e}); stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[test]
fn every_example_plans_as_expected() {
    let found = examples();
    let names: BTreeSet<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    let expected: BTreeSet<&str> = EXPECT.iter().map(|e| e.name).collect();
    assert_eq!(
        names, expected,
        "plans/ and this table must list the same examples"
    );
    for (name, spec, dump) in &found {
        let e = EXPECT.iter().find(|e| e.name == name).expect("listed");
        let (code, json, stderr) = plan_json(&spec.to_string_lossy(), &dump.to_string_lossy());
        assert_eq!(code, e.exit, "{name}: exit code; stderr: {stderr}");
        let source = &json["source"];
        assert_eq!(source["cni"], e.cni, "{name}");
        let cidrs: Vec<&str> = source["podCIDRs"]
            .as_array()
            .expect("podCIDRs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(cidrs, e.pod_cidrs, "{name}");
        assert_eq!(source["encapsulation"], e.encapsulation, "{name}");
        assert_eq!(source["port"].as_u64(), e.port, "{name}");
        let codes: BTreeSet<&str> = json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["code"].as_str())
            .collect();
        let want: BTreeSet<&str> = e.codes.iter().copied().collect();
        assert_eq!(codes, want, "{name}: finding codes");
        for f in json["findings"].as_array().expect("findings") {
            for key in ["code", "severity", "message", "objects", "fix"] {
                assert!(f.get(key).is_some(), "{name}: finding without {key}: {f}");
            }
        }
        assert!(
            json["fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("sha256:")),
            "{name}"
        );
        let steps = json["steps"].as_array().expect("steps");
        assert!(
            steps
                .iter()
                .all(|s| s.get("node").is_some() && s["dependsOn"].is_array()),
            "{name}"
        );
        let nodes = json["nodes"].as_array().expect("nodes").len();
        let per_node = steps.iter().filter(|s| s["phase"] == "node").count();
        let reboot = usize::from(!json["spec"]["rollout"]["reboot"].is_null());
        let chain = match json["spec"]["target"]["mode"].as_str() {
            // restart-unmanaged-pods, verify
            Some("eks-eni") => 2,
            // + stop-aws-node, restart-unmanaged-pods
            Some("eks-overlay") => 8 + reboot,
            _ => 6 + reboot,
        };
        assert_eq!(per_node, nodes * chain, "{name}: every node has its chain");
    }
}

#[test]
fn plans_and_artifacts_match_snapshots() {
    for (name, spec, dump) in examples() {
        let spec = planner::MigrationSpec::from_file(&spec).expect("spec");
        let snapshot = planner::dump::load_path(&dump).expect("dump");
        let plan = planner::plan(&spec, &snapshot);
        let table = planner::render::render(&plan, planner::render::Format::Table).expect("table");
        insta::assert_snapshot!(format!("{name}__table"), table);
        insta::assert_snapshot!(
            format!("{name}__values_migration"),
            plan.artifacts.values_migration
        );
        insta::assert_snapshot!(format!("{name}__values_final"), plan.artifacts.values_final);
        insta::assert_snapshot!(
            format!("{name}__ciliumnodeconfig"),
            plan.artifacts.node_config
        );
        let mut json = serde_json::to_value(&plan).expect("json");
        // The artifacts have snapshots of their own.
        json.as_object_mut().expect("object").remove("artifacts");
        insta::assert_yaml_snapshot!(format!("{name}__plan"), json);
    }
}

#[test]
fn every_output_format_renders_and_the_runbook_is_valid_bash() {
    let (_, spec, dump) = examples()
        .into_iter()
        .find(|(n, _, _)| n == "kind-flannel")
        .expect("kind-flannel");
    let (spec, dump) = (
        spec.to_string_lossy().into_owned(),
        dump.to_string_lossy().into_owned(),
    );
    for format in [
        "table", "yaml", "json", "markdown", "dot", "mermaid", "runbook",
    ] {
        let out = run(&["plan", "--spec", &spec, "--from-dump", &dump, "-o", format]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.len() > 200, "{format} output is suspiciously short");
        match format {
            "yaml" => assert!(text.contains("fingerprint: sha256:")),
            "markdown" => {
                assert!(text.contains("## Findings") && text.contains("## Node order"));
                assert!(text.contains("kubectl drain kind-worker --ignore-daemonsets"));
            }
            "dot" => assert!(text.starts_with("digraph") && text.contains("->")),
            "mermaid" => assert!(text.starts_with("flowchart TD") && text.contains("-->")),
            "runbook" => {
                assert!(text.contains("set -euo pipefail"));
                assert!(text.contains("node_kind_worker()"));
                let dir = tempfile::tempdir().expect("tmp");
                let path = dir.path().join("runbook.sh");
                std::fs::write(&path, text.as_bytes()).expect("write");
                let check = std::process::Command::new("bash")
                    .arg("-n")
                    .arg(&path)
                    .output()
                    .expect("bash");
                assert!(
                    check.status.success(),
                    "bash -n: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
            _ => {}
        }
    }
}

#[test]
fn out_dir_gets_every_artifact() {
    let (_, spec, dump) = examples()
        .into_iter()
        .find(|(n, _, _)| n == "kind-flannel")
        .expect("kind-flannel");
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("out");
    let out = run(&[
        "plan",
        "--spec",
        &spec.to_string_lossy(),
        "--from-dump",
        &dump.to_string_lossy(),
        "--out-dir",
        &out_dir.to_string_lossy(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "values-migration.yaml",
        "values-final.yaml",
        "ciliumnodeconfig.yaml",
        "plan.md",
        "plan.json",
    ] {
        let body = std::fs::read_to_string(out_dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!body.trim().is_empty(), "{f} is empty");
    }
    let plan: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("plan.json")).expect("plan.json"),
    )
    .expect("json");
    assert_eq!(plan["source"]["cni"], "flannel");
}

#[test]
fn bad_inputs_exit_2_and_name_the_problem() {
    let (_, spec, dump) = examples()
        .into_iter()
        .find(|(n, _, _)| n == "kind-flannel")
        .expect("kind-flannel");
    let (spec, dump) = (
        spec.to_string_lossy().into_owned(),
        dump.to_string_lossy().into_owned(),
    );
    let dir = tempfile::tempdir().expect("tmp");

    let out = run(&[
        "plan",
        "--spec",
        "plans/does-not-exist.yaml",
        "--from-dump",
        &dump,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plans/does-not-exist.yaml"));

    let bad_spec = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&spec)
        .expect("spec")
        .replace("maskSize: 24", "maskSiz: 24");
    std::fs::write(&bad_spec, text).expect("write");
    let out = run(&[
        "plan",
        "--spec",
        &bad_spec.to_string_lossy(),
        "--from-dump",
        &dump,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:") && err.contains("target.maskSiz") && err.contains("maskSize"),
        "{err}"
    );

    let bad_dump = dir.path().join("dump.json");
    std::fs::write(
        &bad_dump,
        r#"{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": 5}}]}"#,
    )
    .expect("write");
    let out = run(&[
        "plan",
        "--spec",
        &spec,
        "--from-dump",
        &bad_dump.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dump.json") && err.contains("Node"), "{err}");

    let out = run(&["plan", "--spec", &spec, "--from-dump", &dump, "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("markdown"));

    let out = run(&["plan", "--from-dump", &dump]);
    assert_eq!(out.status.code(), Some(2), "missing --spec is bad input");
}

/// The example dumps hold what a real API server accepts: its ServiceAccount admission refuses
/// a mirror (static) pod that names a service account or mounts a service account token
/// ("mirror pods may not reference service accounts"), so the dumps' static pods do neither.
#[test]
fn mirror_pods_in_the_example_dumps_are_what_a_real_api_server_accepts() {
    let dir = support::plans_dir();
    let mut mirrors = 0;
    for entry in std::fs::read_dir(&dir).expect("plans/") {
        let path = entry.expect("entry").path();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: Value = if name.ends_with(".dump.json") {
            serde_json::from_str(&text).expect("json")
        } else if name.ends_with(".dump.yaml") {
            serde_yaml::from_str(&text).expect("yaml")
        } else {
            continue;
        };
        for pod in doc["items"].as_array().expect("a List").iter() {
            if pod["kind"] != "Pod"
                || pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null()
            {
                continue;
            }
            mirrors += 1;
            let spec = &pod["spec"];
            let who = format!("{name}: pod {}", pod["metadata"]["name"]);
            assert!(
                spec["serviceAccountName"].is_null() && spec["serviceAccount"].is_null(),
                "{who} names a service account"
            );
            let projected_token = spec["volumes"].as_array().into_iter().flatten().any(|v| {
                v["projected"]["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| !s["serviceAccountToken"].is_null())
            });
            assert!(!projected_token, "{who} mounts a service account token");
        }
    }
    assert!(mirrors > 0, "the examples have static pods to check");
}
