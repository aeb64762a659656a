//! The user's `MigrationSpec`: what to migrate to, and how fast.
//!
//! ```yaml
//! apiVersion: cni-migrate.io/v1alpha1
//! kind: MigrationSpec
//! metadata: {name: kind-flannel}
//! target:
//!   ciliumVersion: 1.17.3
//!   podCIDRs: [10.245.0.0/16]
//!   maskSize: 24
//!   tunnel: {protocol: vxlan, port: 8473}
//! rollout:
//!   canary: 1
//!   maxUnavailable: 1
//!   soak: 30s
//!   drain: {timeout: 10m, deleteEmptyDirData: false, allowUnreplicated: false}
//!   reboot: {command: ["docker", "restart", "{node}"]}
//!   verify: {image: nicolaka/netshoot:v0.13}
//! ```
//!
//! Parsing is strict: unknown fields are rejected with their path and the closest known field,
//! and every error names the file, line and column.
//!
//! ```text
//! spec.rs        re-exports; the tests
//!  ├─ types        MigrationSpec and its sections, defaults, TargetMode
//!  ├─ scalars      CiliumVersion, HumanDuration
//!  ├─ load         from_file / from_yaml, SpecError, error locations and hints
//!  ├─ validate     the checks after parsing
//!  └─ controls     windows, the Prometheus gate, the health budget (and the window arithmetic)
//! ```

mod controls;
mod load;
mod scalars;
mod types;
mod validate;

pub use controls::{
    AlertFilter, ClockTime, Day, Gates, HealthBudget, PrometheusGate, Window, WindowState,
    calendar_end, describe_instant, window_state,
};
pub use load::SpecError;
pub use scalars::{CiliumVersion, HumanDuration};
pub use types::{
    API_VERSION, Drain, Eni, Finalize, KIND, MigrationSpec, NewNodes, Reboot, Rollout,
    SpecMetadata, Target, TargetMode, Tunnel, TunnelProtocol, Verify,
};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GOOD: &str = r#"apiVersion: cni-migrate.io/v1alpha1
kind: MigrationSpec
metadata: {name: kind-flannel}
target:
  ciliumVersion: 1.17.3
  podCIDRs: [10.245.0.0/16]
  maskSize: 24
  tunnel: {protocol: vxlan, port: 8473}
rollout:
  canary: 1
  maxUnavailable: 1
  soak: 30s
  drain: {timeout: 10m, deleteEmptyDirData: false, allowUnreplicated: false}
  reboot: {command: ["docker", "restart", "{node}"]}
  verify: {image: nicolaka/netshoot:v0.13}
"#;

    #[test]
    fn target_mode_rules() {
        let parse = |target: &str| {
            MigrationSpec::from_yaml(
                &format!(
                    "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\ntarget:\n{target}"
                ),
                "spec.yaml",
            )
        };
        let s = parse("  mode: eks-eni\n  ciliumVersion: 1.17.3\n").unwrap();
        assert_eq!(s.target.mode, TargetMode::EksEni);
        assert!(s.target.pod_cidrs.is_empty());
        assert_eq!(
            parse("  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n")
                .unwrap()
                .target
                .mode,
            TargetMode::DualOverlay
        );
        let err = |target: &str| parse(target).unwrap_err().to_string();
        let e = err("  mode: eks-eni\n  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n");
        assert!(
            e.starts_with("spec.yaml:7:") && e.contains("target.podCIDRs: not used in eks-eni"),
            "{e}"
        );
        let e = err("  mode: eks-overlay\n  ciliumVersion: 1.17.3\n");
        assert!(e.contains("target.podCIDRs: at least one CIDR"), "{e}");
        let e = err(
            "  ciliumVersion: 1.17.3\n  podCIDRs: [10.245.0.0/16]\n  eni: {egressMasqueradeInterfaces: eth+}\n",
        );
        assert!(
            e.contains("target.eni: only used with mode eks-eni or eks-overlay"),
            "{e}"
        );
        let e = err(
            "  mode: eks-eni\n  ciliumVersion: 1.17.3\n  eni: {egressMasqueradeInterfaces: \"eth0 eth1\"}\n",
        );
        assert!(e.contains("target.eni.egressMasqueradeInterfaces"), "{e}");
        let e = err("  mode: eks\n  ciliumVersion: 1.17.3\n");
        assert!(e.contains("target.mode") && e.contains("eks-eni"), "{e}");
    }

    #[test]
    fn the_issue_example_parses() {
        let spec = MigrationSpec::from_yaml(GOOD, "spec.yaml").unwrap();
        assert_eq!(spec.target.cilium_version.to_string(), "1.17.3");
        assert_eq!(spec.target.tunnel.effective_port(), 8473);
        assert_eq!(spec.rollout.soak.0, Duration::from_secs(30));
        assert_eq!(spec.rollout.drain.timeout.0, Duration::from_secs(600));
        assert_eq!(
            spec.target.cilium_version.node_config_api_version(),
            "cilium.io/v2"
        );
    }

    #[test]
    fn omitted_port_means_cilium_default_for_the_protocol() {
        let text = GOOD.replace("{protocol: vxlan, port: 8473}", "{protocol: geneve}");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.target.tunnel.effective_port(), 6081);
        let text = GOOD.replace("  tunnel: {protocol: vxlan, port: 8473}\n", "");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.target.tunnel.effective_port(), 8472);
    }

    #[test]
    fn unknown_field_names_path_line_and_suggestion() {
        let text = GOOD.replace("maxUnavailable: 1", "maxUnavaliable: 1");
        let err = MigrationSpec::from_yaml(&text, "plans/x.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("plans/x.yaml:11:"), "{err}");
        assert!(err.contains("rollout.maxUnavaliable"), "{err}");
        assert!(err.contains("did you mean `maxUnavailable`"), "{err}");
    }

    #[test]
    fn bad_duration_names_field() {
        let text = GOOD.replace("soak: 30s", "soak: thirty");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rollout.soak"), "{err}");
        assert!(err.contains("30s, 10m"), "{err}");
    }

    #[test]
    fn validation_errors_are_located() {
        let text = GOOD.replace("maskSize: 24", "maskSize: 12");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:7:3: target.maskSize:"), "{err}");
        let text = GOOD.replace("port: 8473", "port: 0");
        let err = MigrationSpec::from_yaml(&text, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:8:"), "{err}");
        assert!(err.contains("target.tunnel.port"), "{err}");
    }

    #[test]
    fn wrong_api_version_and_kind_are_refused() {
        let err = MigrationSpec::from_yaml(&GOOD.replace("v1alpha1", "v9"), "s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("apiVersion") && err.contains("cni-migrate.io/v1alpha1"),
            "{err}"
        );
        let err = MigrationSpec::from_yaml(&GOOD.replace("kind: MigrationSpec", "kind: Plan"), "s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn percent_max_unavailable_resolves_with_a_floor_of_one() {
        let text = GOOD.replace("maxUnavailable: 1", "maxUnavailable: \"10%\"");
        let spec = MigrationSpec::from_yaml(&text, "s").unwrap();
        assert_eq!(spec.rollout.max_in_flight(1000), 100);
        assert_eq!(spec.rollout.max_in_flight(3), 1);
        let bad = GOOD.replace("maxUnavailable: 1", "maxUnavailable: \"ten%\"");
        assert!(MigrationSpec::from_yaml(&bad, "s").is_err());
    }

    #[test]
    fn reboot_command_must_mention_node() {
        let text = GOOD.replace(r#"["docker", "restart", "{node}"]"#, r#"["reboot"]"#);
        let err = MigrationSpec::from_yaml(&text, "s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rollout.reboot.command") && err.contains("{node}"),
            "{err}"
        );
    }

    #[test]
    fn old_cilium_is_refused_and_cnc_version_follows_release() {
        let text = GOOD.replace("1.17.3", "1.13.4");
        assert!(MigrationSpec::from_yaml(&text, "s").is_err());
        let v: CiliumVersion = "1.15.7".parse().unwrap();
        assert_eq!(v.node_config_api_version(), "cilium.io/v2alpha1");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = MigrationSpec::from_yaml(&text, "fuzz");
        }

        #[test]
        fn mutated_valid_specs_never_panic(cut in 0usize..800, insert in "[ -~\\n]{0,12}") {
            let mut text = GOOD.to_owned();
            let at = text.char_indices().map(|(i, _)| i).nth(cut % GOOD.len()).unwrap_or(0);
            text.insert_str(at, &insert);
            let _ = MigrationSpec::from_yaml(&text, "fuzz");
        }

        #[test]
        fn any_value_in_any_field_is_an_error_or_a_valid_spec(
            field in proptest::sample::select(vec!["maskSize: 24", "canary: 1", "soak: 30s", "port: 8473", "ciliumVersion: 1.17.3", "maxUnavailable: 1"]),
            value in "[ -~]{0,16}",
        ) {
            let key = field.split(':').next().unwrap_or_default();
            let text = GOOD.replace(field, &format!("{key}: {value}"));
            if let Ok(spec) = MigrationSpec::from_yaml(&text, "fuzz") {
                proptest::prop_assert!(spec.validate().is_ok());
            }
        }
    }

    #[test]
    fn empty_and_garbage_inputs_are_errors_not_panics() {
        for text in ["", "---", "[]", "{", "apiVersion: [", "\u{0}", "target: 5"] {
            assert!(MigrationSpec::from_yaml(text, "s").is_err(), "{text:?}");
        }
    }
}
