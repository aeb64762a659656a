//! The AWS VPC CNI: the aws-node DaemonSet and its env.
//!
//! ```text
//! kube-system/aws-node ─► env: AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, AWS_VPC_K8S_CNI_EXTERNALSNAT,
//!                              ENABLE_IPv6
//!                      ─► nodeSelector (patched for Cilium's EKS guide or not)
//!   ▼
//! SourceCni { cni: aws-vpc-cni, no encapsulation, no pod CIDRs (the VPC's subnets are not in
//!             the Kubernetes API) }
//! ```

use ipnet::IpNet;

use super::common::{ds_env, ds_ref};
use crate::{
    facts::{AwsCniFacts, CniKind, Encapsulation, SourceCni},
    snapshot::ClusterSnapshot,
};

/// The VPC CNI, from aws-node; `None` when there is no aws-node DaemonSet.
pub(super) fn detect_aws(snap: &ClusterSnapshot) -> Option<SourceCni> {
    let ds = snap.daemonset("kube-system", "aws-node")?;
    let env = ds_env(ds, Some("aws-node"));
    let truthy = |k: &str| env.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut exclude = Vec::new();
    let mut evidence = vec![
        "DaemonSet kube-system/aws-node (AWS VPC CNI): pods get VPC addresses, no overlay"
            .to_owned(),
    ];
    for part in env
        .get("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
    {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.parse::<IpNet>() {
            Ok(n) => exclude.push(n),
            Err(_) => evidence.push(format!(
                "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS entry `{part}` is not a CIDR; ignored"
            )),
        }
    }
    evidence
        .push("pod CIDRs are the VPC's subnets, which the Kubernetes API does not show".to_owned());
    let node_selector = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    Some(SourceCni {
        cni: CniKind::AwsVpcCni,
        encapsulation: Encapsulation::None,
        objects: vec![ds_ref(ds)],
        evidence,
        aws: Some(AwsCniFacts {
            external_snat: truthy("AWS_VPC_K8S_CNI_EXTERNALSNAT"),
            exclude_snat_cidrs: exclude,
            ipv6: truthy("ENABLE_IPv6"),
            node_selector,
            env,
        }),
        ..SourceCni::default()
    })
}
