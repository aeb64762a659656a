//! `cni-migrate sim` serves a dump over HTTP, and `cni-migrate plan --kubeconfig` plans the
//! same migration from it as `--from-dump` does: the live discovery path, end to end, through
//! the real binary.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{binary, plans_dir, run};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cni-migrate sim` on a dump and waits for its kubeconfig.
fn start_sim(dump: &std::path::Path, kc: &std::path::Path) -> Child {
    let child = Child(
        Command::new(binary())
            .args([
                "sim",
                "--from-dump",
                &dump.to_string_lossy(),
                "--kubeconfig-out",
                &kc.to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("sim starts"),
    );
    let started = Instant::now();
    while !kc.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the simulated cluster did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn a_live_plan_matches_the_dump_plan() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    let dump = plans_dir().join("calico-operator-vxlan.dump.json");
    let spec = plans_dir().join("calico-operator-vxlan.yaml");
    let _sim = start_sim(&dump, &kc);
    let live = run(&[
        "plan",
        "--spec",
        &spec.to_string_lossy(),
        "--kubeconfig",
        &kc.to_string_lossy(),
        "-o",
        "json",
    ]);
    assert_eq!(
        live.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let offline = run(&[
        "plan",
        "--spec",
        &spec.to_string_lossy(),
        "--from-dump",
        &dump.to_string_lossy(),
        "-o",
        "json",
    ]);
    let mut live: Value = serde_json::from_slice(&live.stdout).expect("json");
    let offline: Value = serde_json::from_slice(&offline.stdout).expect("json");
    // One difference is expected: the CiliumNodeConfig version. Live, it is the one the
    // cluster's CRD serves (API discovery); the dump holds no CRD, so it is assumed from the
    // chart, and the step says so.
    let description = |plan: &Value| {
        plan["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "node-config"))
            .and_then(|s| s["description"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        description(&live).contains("(cilium.io/v2: served by the cluster's CiliumNodeConfig CRD)"),
        "{}",
        description(&live)
    );
    assert!(
        description(&offline).contains(
            "(cilium.io/v2: assumed from Cilium 1.17.3: the dump holds no CiliumNodeConfig CRD"
        ),
        "{}",
        description(&offline)
    );
    assert_eq!(
        live["facts"]["nodeConfigVersions"],
        serde_json::json!(["v2", "v2alpha1"])
    );
    if let Some(step) = live["steps"]
        .as_array_mut()
        .and_then(|s| s.iter_mut().find(|s| s["id"] == "node-config"))
    {
        step["description"] = Value::String(description(&offline));
    }
    for key in ["fingerprint", "source", "findings", "steps", "nodes"] {
        assert_eq!(
            live[key], offline[key],
            "{key} differs between live and dump planning"
        );
    }
}

#[test]
fn bad_sim_flags_are_bad_input() {
    let out = run(&["sim", "--synthetic", "nodes=lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nodes` needs a number"));
    let out = run(&["sim", "--from-dump", "plans/none.json"]);
    assert_eq!(out.status.code(), Some(2));
    // Node churn faults: the fault and its syntax named, before anything is served.
    for (faults, says) in [
        ("node-join=kind-worker9", "expected node-join=NAME@DELAY"),
        ("node-leave=@30s", "expected node-leave=NAME@DELAY"),
        ("node-leave=nobody@30s", "node-leave=nobody"),
        ("node-join=kind-worker@30s", "exists already"),
    ] {
        let out = run(&[
            "sim",
            "--from-dump",
            "plans/kind-flannel.dump.yaml",
            "--faults",
            faults,
        ]);
        assert_eq!(out.status.code(), Some(2), "{faults}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{faults}: {err}");
    }
    let out = run(&[
        "plan",
        "--spec",
        "plans/kind-flannel.yaml",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kubeconfig"));
}

#[test]
fn the_helm_stand_in_renders_what_preflight_expects_of_migration_mode() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    let out = dir.path().join("out");
    let dump = plans_dir().join("kind-flannel.dump.yaml");
    let spec = plans_dir().join("kind-flannel.yaml");
    let _sim = start_sim(&dump, &kc);
    let (spec_s, kc_s) = (
        spec.to_string_lossy().into_owned(),
        kc.to_string_lossy().into_owned(),
    );
    let plan = run(&[
        "plan",
        "--spec",
        &spec_s,
        "--kubeconfig",
        &kc_s,
        "--out-dir",
        &out.to_string_lossy(),
    ]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let values = out.join("values-migration.yaml");
    let helm = run(&[
        "sim",
        "helm",
        "upgrade",
        "--install",
        "cilium",
        "cilium/cilium",
        "--namespace",
        "kube-system",
        "--version",
        "1.17.3",
        "-f",
        &values.to_string_lossy(),
        "--kubeconfig",
        &kc_s,
    ]);
    assert_eq!(
        helm.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&helm.stderr)
    );
    assert!(String::from_utf8_lossy(&helm.stdout).contains("has been installed"));
    // Planning again sees Cilium installed beside Flannel, in exactly the migration mode the
    // plan asked for: no CILIUM_CONFIG_MISMATCH.
    let again = run(&[
        "plan",
        "--spec",
        &spec_s,
        "--kubeconfig",
        &kc_s,
        "-o",
        "json",
    ]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let json: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(json["source"]["cni"], "flannel");
    assert_eq!(json["facts"]["cilium"]["config"]["custom-cni-conf"], "true");
    // The installed Cilium passes as migration mode: nothing but the note on host routing
    // (kind-flannel keeps kube-proxy).
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(codes, ["HOST_ROUTING_STAYS_LEGACY"]);
    // A wrong values file is refused before anything is written.
    let bad = run(&[
        "sim",
        "helm",
        "upgrade",
        "--install",
        "cilium",
        "cilium/cilium",
        "-f",
        "/nonexistent.yaml",
        "--kubeconfig",
        &kc_s,
    ]);
    assert_eq!(bad.status.code(), Some(2));
}
