//! Detection on the real upstream manifests in `../shared/fixtures/upstream/` (Flannel, Calico,
//! the Tigera operator, the AWS VPC CNI). These tests read `../shared` beside the repository and
//! skip with a note when it is absent, so a clone passes anywhere.

use std::path::PathBuf;

use planner::{
    detect::detect,
    dump,
    facts::{CalicoInstall, CniKind, Encapsulation},
    snapshot::ClusterSnapshot,
};

fn fixtures() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/upstream"
    ));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "note: {} is absent; skipping the upstream-manifest detection tests",
            p.display()
        );
        None
    }
}

fn load(files: &[&str]) -> Option<ClusterSnapshot> {
    let dir = fixtures()?;
    let mut text = String::new();
    for f in files {
        let body = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        text.push_str(&body);
        text.push_str("\n---\n");
    }
    Some(dump::load_str(&text, &files.join("+")).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn current_flannel_manifest_is_flannel_vxlan_8472_in_kube_flannel() {
    let Some(snap) = load(&["flannel/kube-flannel.yml"]) else {
        return;
    };
    let facts = detect(&snap);
    let s = &facts.source;
    assert_eq!(s.cni, CniKind::Flannel);
    assert_eq!(s.pod_cidrs, vec!["10.244.0.0/16".parse().unwrap()]);
    assert_eq!(s.encapsulation, Encapsulation::Vxlan);
    assert_eq!(s.port, Some(8472));
    let names: Vec<String> = s.objects.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "DaemonSet/kube-flannel/kube-flannel-ds",
            "ConfigMap/kube-flannel/kube-flannel-cfg",
            "Namespace/kube-flannel"
        ]
    );
}

#[test]
fn legacy_flannel_manifest_lives_in_kube_system_with_per_arch_daemonsets() {
    for f in [
        "flannel/kube-flannel-v0.11.0.yml",
        "flannel/kube-flannel-v0.12.0.yml",
    ] {
        let Some(snap) = load(&[f]) else { return };
        let facts = detect(&snap);
        let fl = facts.source.flannel.as_ref().expect("flannel facts");
        assert_eq!(fl.namespace, "kube-system", "{f}");
        assert!(
            fl.daemonsets.iter().any(|d| d == "kube-flannel-ds-amd64"),
            "{f}: {:?}",
            fl.daemonsets
        );
        assert_eq!(facts.source.port, Some(8472), "{f}");
        assert!(
            !facts.source.objects.iter().any(|o| o.kind == "Namespace"),
            "{f}: kube-system must never be deleted"
        );
    }
}

#[test]
fn calico_manifest_is_ipip_on_the_default_pool_with_first_found_autodetection() {
    let Some(snap) = load(&["calico/calico.yaml"]) else {
        return;
    };
    let facts = detect(&snap);
    let s = &facts.source;
    assert_eq!(s.cni, CniKind::Calico);
    let c = s.calico.as_ref().expect("calico");
    assert_eq!(c.install, CalicoInstall::Manifest);
    assert_eq!(s.encapsulation, Encapsulation::Ipip);
    assert_eq!(s.port, None);
    assert_eq!(s.pod_cidrs, vec!["192.168.0.0/16".parse().unwrap()]);
    assert!(
        c.autodetect.first_found,
        "the manifest leaves IP_AUTODETECTION_METHOD unset: {:?}",
        c.autodetect
    );
    assert!(c.bgp);
}

#[test]
fn calico_vxlan_manifest_is_vxlan_on_4789() {
    let Some(snap) = load(&["calico/calico-vxlan.yaml"]) else {
        return;
    };
    let facts = detect(&snap);
    assert_eq!(facts.source.cni, CniKind::Calico);
    assert_eq!(facts.source.encapsulation, Encapsulation::Vxlan);
    assert_eq!(facts.source.port, Some(4789));
    assert_eq!(facts.source.vni, Some(4096));
    assert!(
        !facts.source.calico.as_ref().expect("calico").bgp,
        "calico_backend is vxlan"
    );
}

#[test]
fn tigera_operator_installation_is_an_operator_install() {
    let Some(snap) = load(&["calico/custom-resources.yaml"]) else {
        return;
    };
    let facts = detect(&snap);
    let c = facts.source.calico.as_ref().expect("calico");
    assert_eq!(c.install, CalicoInstall::Operator);
    assert_eq!(c.namespace, "calico-system");
    assert_eq!(
        facts.source.encapsulation,
        Encapsulation::Vxlan,
        "VXLANCrossSubnet"
    );
    assert_eq!(facts.source.port, Some(4789));
    assert!(
        c.autodetect.first_found,
        "no nodeAddressAutodetectionV4 means firstFound"
    );
}

#[test]
fn aws_vpc_cni_manifest_is_detected_with_its_env() {
    let Some(snap) = load(&["aws-vpc-cni/aws-k8s-cni.yaml"]) else {
        return;
    };
    let facts = detect(&snap);
    assert_eq!(facts.source.cni, CniKind::AwsVpcCni);
    assert_eq!(facts.source.encapsulation, Encapsulation::None);
    let aws = facts.source.aws.as_ref().expect("aws");
    assert!(!aws.external_snat);
    assert_eq!(
        aws.env
            .get("AWS_VPC_K8S_CNI_VETHPREFIX")
            .map(String::as_str),
        Some("eni")
    );
}

#[test]
fn the_crd_manifests_load_without_being_mistaken_for_objects() {
    let Some(snap) = load(&[
        "calico/crds/crd.projectcalico.org_ippools.yaml",
        "cilium/crds/v2/ciliumnodeconfigs.yaml",
        "tigera-operator/operator.tigera.io_installations.yaml",
    ]) else {
        return;
    };
    assert!(snap.custom.is_empty() && snap.daemonsets.is_empty());
    assert_eq!(detect(&snap).source.cni, CniKind::Unknown);
    // Cilium's own CiliumNodeConfig CRD tells which versions the cluster would serve.
    let served = snap
        .node_config_versions
        .expect("the CRD's served versions");
    assert!(served.iter().any(|v| v == "v2"), "{served:?}");
}
