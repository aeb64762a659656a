//! The old CNI: is it one the migration knows, and is it set up so the two CNIs can share the
//! cluster for a while?
//!
//! ```text
//! SOURCE_CNI_UNSUPPORTED        no known CNI, Cilium already, Flannel or Calico in a mode the
//!                               dual overlay cannot live beside, an EKS profile without aws-node
//! SOURCE_CNI_UNTESTED_BGP       Calico routing with BGP and no encapsulation
//! CALICO_AUTODETECT_FIRST_FOUND Calico may pick cilium_host as the node address
//! AWS_CNI_SNAT_EXCLUSION_MISSING the VPC CNI would SNAT traffic to the new pool
//! ```

use ipnet::IpNet;

use super::common::finding;
use crate::{
    facts::{CalicoInstall, CniKind, Encapsulation, NetworkFacts},
    findings::{Finding, FindingCode, Severity},
    snapshot::ObjectRef,
    spec::MigrationSpec,
};

/// The old CNI is one the migration supports, in a supported mode.
pub(super) fn source_cni(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let s = &facts.source;
    if spec.target.mode.is_eks() && !matches!(s.cni, CniKind::AwsVpcCni | CniKind::Cilium) {
        out.push(finding(
            FindingCode::SourceCniUnsupported,
            Severity::Error,
            format!(
                "target.mode {} migrates from the AWS VPC CNI (aws-node), but the cluster runs {}",
                spec.target.mode, s.cni
            ),
            s.objects.clone(),
            "use target.mode: dual-overlay (the default) for Flannel and Calico".to_owned(),
        ));
        return;
    }
    let unsupported = |message: String, fix: &str| {
        finding(
            FindingCode::SourceCniUnsupported,
            Severity::Error,
            message,
            s.objects.clone(),
            fix.to_owned(),
        )
    };
    match s.cni {
        CniKind::Unknown => out.push(unsupported(
            "no supported CNI was found (Flannel, Calico or the AWS VPC CNI): the dual-overlay migration needs to know the old overlay to keep it disjoint".to_owned(),
            "make sure the dump includes ConfigMaps and DaemonSets of kube-system, kube-flannel and calico-system (and Calico's custom resources), or migrate by replacing nodes instead",
        )),
        CniKind::Cilium => out.push(unsupported(
            "Cilium is already the cluster's CNI (cilium-config exists and no other CNI was found): there is nothing to migrate".to_owned(),
            "nothing to do; if a migration was interrupted after the old CNI was removed, finish it with `cni-migrate resume`",
        )),
        CniKind::Flannel => {
            let backend = s.flannel.as_ref().map_or("", |f| f.net_conf.backend.as_str());
            if matches!(backend, "alloc" | "tencent-vpc" | "ipsec") || s.encapsulation == Encapsulation::Unknown {
                out.push(unsupported(
                    format!("Flannel's backend `{backend}` does not route pods through the Linux routing stack as the migration needs (supported: vxlan, udp, wireguard, host-gw, ipip)"),
                    "move Flannel to the vxlan backend first, or migrate by replacing nodes",
                ));
            }
            if s.pod_cidrs.is_empty() {
                out.push(unsupported(
                    "Flannel's pod network (net-conf.json `Network`) could not be read, so disjointness cannot be proven".to_owned(),
                    "fix kube-flannel-cfg's net-conf.json (see the detection notes), then plan again",
                ));
            }
        }
        CniKind::Calico => {
            if let Some(c) = &s.calico
                && c.bpf_enabled
            {
                out.push(unsupported(
                    "Calico runs its eBPF dataplane, which does not use the Linux routing stack the dual overlay relies on".to_owned(),
                    "switch Calico back to the iptables dataplane (linuxDataplane: Iptables / bpfEnabled: false) first",
                ));
            }
            if s.pod_cidrs.is_empty() {
                out.push(unsupported(
                    "no enabled Calico IP pool was found, so disjointness cannot be proven".to_owned(),
                    "include Calico's IPPool objects (ippools.crd.projectcalico.org) in the dump",
                ));
            }
            if s.encapsulation == Encapsulation::None {
                out.push(finding(
                    FindingCode::SourceCniUntestedBgp,
                    Severity::Warning,
                    "Calico routes pods with BGP and no encapsulation: Cilium's migration procedure has not been tested with BGP routing".to_owned(),
                    s.calico.iter().flat_map(|c| c.pools.iter().map(|p| p.source.clone())).collect(),
                    "rehearse on a copy of the cluster first (`cni-migrate rehearse`), or switch the pools to VXLAN before migrating".to_owned(),
                ));
            }
        }
        CniKind::AwsVpcCni => {}
    }
}

/// Calico's node address autodetection must not be free to pick Cilium's interface.
pub(super) fn calico_checks(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(c) = &facts.source.calico else {
        return;
    };
    if !c.autodetect.first_found {
        return;
    }
    let fix = match c.install {
        CalicoInstall::Operator => r#"kubectl patch installations.operator.tigera.io default --type=merge --patch '{"spec": {"calicoNetwork": {"nodeAddressAutodetectionV4": {"firstFound": false, "kubernetes": "NodeInternalIP"}}}}'"#.to_owned(),
        CalicoInstall::Manifest => format!("kubectl -n {} set env daemonset/calico-node IP_AUTODETECTION_METHOD=kubernetes-internal-ip", c.namespace),
    };
    out.push(finding(
        FindingCode::CalicoAutodetectFirstFound,
        Severity::Error,
        format!(
            "Calico picks node addresses with `{}`: once Cilium creates its cilium_host interface on a node, Calico may choose it and break node routing cluster-wide (a known outage of this migration)",
            c.autodetect.method
        ),
        c.autodetect.source.iter().cloned().collect(),
        fix,
    ));
}

/// The VPC CNI must leave traffic to the new pool unmasqueraded.
pub(super) fn aws_snat(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(aws) = &facts.source.aws else { return };
    if aws.external_snat {
        return;
    }
    let missing: Vec<&IpNet> = spec
        .target
        .pod_cidrs
        .iter()
        .filter(|new| !aws.exclude_snat_cidrs.iter().any(|ex| ex.contains(*new)))
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut list: Vec<String> = aws
        .exclude_snat_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    list.extend(missing.iter().map(ToString::to_string));
    out.push(finding(
        FindingCode::AwsCniSnatExclusionMissing,
        Severity::Error,
        format!(
            "the AWS VPC CNI SNATs traffic leaving the VPC's pod addresses, and {} is not in AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: traffic between VPC pods and Cilium pods would be masqueraded and break",
            missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        vec![ObjectRef::namespaced("DaemonSet", "kube-system", "aws-node")],
        format!("kubectl -n kube-system set env daemonset/aws-node AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS={}", list.join(",")),
    ));
}
