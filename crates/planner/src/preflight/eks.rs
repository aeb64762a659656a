//! The EKS profiles' checks (`target.mode: eks-eni` and `eks-overlay`).
//!
//! ```text
//! AWS_NODE_NOT_PATCHED           aws-node would keep managing ENIs (the plan patches it)
//! MIXED_INTERFACE_NAMING         eth+ (AL2) and ens+ (AL2023) nodes, or a pattern that misses some
//! ENI_MODE_IPV4_ONLY             IPv6 / dual-stack with eks-eni
//! AGENT_NOT_READY_TAINT_MISSING  node groups whose new nodes could start pods before Cilium
//! AGENT_NOT_READY_TAINT_PRESENT  nodes tainted now: the taint's return evicts everything
//! OVERLAY_WEBHOOKS_UNREACHABLE   eks-overlay: webhooks the EKS control plane cannot reach
//! VPC_CNI_IPTABLES_LEFTOVERS     eks-overlay: the VPC CNI's nat chains, flushed per node
//! EC2_PERMISSIONS                eks-eni: what Cilium's operator must be allowed
//! ```

use super::common::{MAX_OBJECTS, finding, named};
use crate::{
    commands::{aws_node_patch_command, flush_vpc_cni_command},
    facts::{NetworkFacts, OsFamily},
    findings::{Finding, FindingCode, Severity},
    names::{AGENT_NOT_READY_TAINT, AWS_NODE_LABEL, VPC_CNI_NAT_CHAINS},
    snapshot::ObjectRef,
    spec::{MigrationSpec, TargetMode},
};

/// The EC2 actions Cilium's operator calls in ENI mode.
pub const EC2_ACTIONS: &[&str] = &[
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:CreateNetworkInterface",
    "ec2:AttachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:DeleteNetworkInterface",
    "ec2:CreateTags",
];

/// Every EKS check that applies to the spec's mode.
pub(super) fn checks(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let mode = spec.target.mode;
    aws_node(spec, facts, out);
    interfaces(spec, facts, out);
    if mode == TargetMode::EksEni
        && (facts.ip_families.ipv6 || facts.source.aws.as_ref().is_some_and(|a| a.ipv6))
    {
        out.push(finding(
            FindingCode::EniModeIpv4Only,
            Severity::Error,
            "the cluster uses IPv6 (node, pod or service addresses, or aws-node's ENABLE_IPv6): Cilium's ENI mode is migrated here for IPv4 only".to_owned(),
            vec![ObjectRef::namespaced("DaemonSet", "kube-system", "aws-node")],
            "keep IPv6 clusters on the VPC CNI, or build a new IPv4 cluster with Cilium in ENI mode and move workloads".to_owned(),
        ));
    }
    taints(facts, out);
    if mode == TargetMode::EksOverlay {
        webhooks(facts, out);
        out.push(finding(
            FindingCode::VpcCniIptablesLeftovers,
            Severity::Warning,
            format!(
                "the VPC CNI leaves nat rules on every node ({}) that would SNAT or mark Cilium's overlay traffic once aws-node stops there; they must be flushed on each node before its Cilium agent takes over",
                VPC_CNI_NAT_CHAINS.join(", ")
            ),
            vec![ObjectRef::namespaced("DaemonSet", "kube-system", "aws-node")],
            format!(
                "nothing to do by hand: each node's stop-aws-node step removes the label {AWS_NODE_LABEL} so aws-node leaves the node, then flushes the chains from a privileged host-network pod (on the node: {})",
                flush_vpc_cni_command()
            ),
        ));
    }
    if mode == TargetMode::EksEni {
        out.push(finding(
            FindingCode::Ec2Permissions,
            Severity::Warning,
            format!(
                "in ENI mode Cilium's operator attaches ENIs and assigns their addresses itself; without these EC2 permissions new pods get no address: {}",
                EC2_ACTIONS.join(", ")
            ),
            vec![ObjectRef::namespaced("Deployment", "kube-system", "cilium-operator")],
            "grant them to the operator's IAM role (IRSA: annotate the cilium-operator ServiceAccount with eks.amazonaws.com/role-arn) or to the node role; `aws iam simulate-principal-policy --action-names ...` shows what is missing".to_owned(),
        ));
    }
}

fn aws_node(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(aws) = &facts.source.aws else { return };
    if aws.node_selector.get(AWS_NODE_LABEL).map(String::as_str) == Some("true") {
        return;
    }
    let how = match spec.target.mode {
        TargetMode::EksOverlay => format!(
            "the plan's patch-aws-node step first labels every node {AWS_NODE_LABEL}=true (so aws-node keeps running on nodes not yet migrated), then adds the node selector; each node's stop-aws-node step removes the label as the node moves"
        ),
        _ => "the plan's patch-aws-node step adds the node selector before Cilium is installed, which stops aws-node on every node (running pods keep their addresses; new pods get theirs from Cilium)".to_owned(),
    };
    out.push(finding(
        FindingCode::AwsNodeNotPatched,
        Severity::Warning,
        format!(
            "DaemonSet kube-system/aws-node has no node selector {AWS_NODE_LABEL}=true, so it would keep managing ENIs and pod addresses beside Cilium; {how}"
        ),
        vec![ObjectRef::namespaced("DaemonSet", "kube-system", "aws-node")],
        aws_node_patch_command(),
    ));
}

fn interfaces(spec: &MigrationSpec, facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(eks) = &facts.eks else { return };
    let given = spec
        .target
        .eni
        .as_ref()
        .and_then(|e| e.egress_masquerade_interfaces.as_deref());
    let families = || {
        eks.os_families
            .iter()
            .map(|(f, nodes)| {
                format!(
                    "{f} ({}, {} node(s): {})",
                    f.interface_pattern().unwrap_or("unknown naming"),
                    nodes.len(),
                    named(nodes)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let objects = |filter: &dyn Fn(OsFamily) -> bool| {
        eks.os_families
            .iter()
            .filter(|(f, _)| filter(**f))
            .flat_map(|(_, nodes)| nodes.iter())
            .take(MAX_OBJECTS)
            .map(|n| ObjectRef::cluster("Node", n))
            .collect::<Vec<_>>()
    };
    if let Some(pattern) = given {
        // A pattern given: every node's interfaces must match it.
        let prefix = pattern.trim_end_matches('+');
        let misses = |f: OsFamily| f.interface_pattern().is_none_or(|p| !p.starts_with(prefix));
        if eks.os_families.keys().any(|f| misses(*f)) {
            out.push(finding(
                FindingCode::MixedInterfaceNaming,
                Severity::Error,
                format!(
                    "target.eni.egressMasqueradeInterfaces `{pattern}` does not fit every node: {}",
                    families()
                ),
                objects(&misses),
                "set the pattern that fits every node's interfaces, or move every node to one OS family (replace the other node groups) before migrating".to_owned(),
            ));
        }
        return;
    }
    if eks.interface_pattern.is_none() && !eks.os_families.is_empty() {
        let mixed = eks
            .os_families
            .keys()
            .filter_map(|f| f.interface_pattern())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1;
        out.push(finding(
            FindingCode::MixedInterfaceNaming,
            Severity::Error,
            if mixed {
                format!(
                    "nodes name their interfaces differently, so no egressMasqueradeInterfaces pattern fits them all (mixing is not supported): {}",
                    families()
                )
            } else {
                format!(
                    "the nodes' OS does not tell how their interfaces are named, so egressMasqueradeInterfaces cannot be chosen: {}",
                    families()
                )
            },
            objects(&|f| f != OsFamily::AmazonLinux2),
            if mixed {
                "move every node group to one AMI family (Amazon Linux 2: eth+, Amazon Linux 2023: ens+) before migrating".to_owned()
            } else {
                "set target.eni.egressMasqueradeInterfaces to the pattern of the nodes' ENIs (`ip -br link` on a node), e.g. eth+ or ens+".to_owned()
            },
        ));
    }
}

fn taints(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(eks) = &facts.eks else { return };
    let taint = format!("{AGENT_NOT_READY_TAINT}=true:NoExecute");
    let missing: Vec<String> = eks
        .node_groups
        .iter()
        .filter(|g| g.tainted.len() < g.nodes.len())
        .map(|g| {
            format!(
                "{} ({} of {} node(s) untainted)",
                g.name,
                g.nodes.len() - g.tainted.len(),
                g.nodes.len()
            )
        })
        .collect();
    if !missing.is_empty() {
        let nodes: Vec<ObjectRef> = eks
            .node_groups
            .iter()
            .flat_map(|g| g.nodes.iter().filter(|n| !g.tainted.contains(n)))
            .take(MAX_OBJECTS)
            .map(|n| ObjectRef::cluster("Node", n))
            .collect();
        out.push(finding(
            FindingCode::AgentNotReadyTaintMissing,
            Severity::Warning,
            format!(
                "node groups whose nodes join without {taint}: {}. A node that joins during or after the migration (scale-up, replacement) can start pods before its Cilium agent is ready, and those pods stay unmanaged by Cilium until restarted. The trade-off, as Cilium's docs describe it: with the taint nothing but tolerating pods starts until the agent is up and the operator removes the taint; but NoExecute also evicts, at once and without regard to PDBs, every running pod that does not tolerate it whenever the taint comes back on a node",
                missing.join("; ")
            ),
            nodes,
            format!(
                "add the taint to the node groups' launch configuration so new nodes register with it (eksctl: taints: [{{key: {AGENT_NOT_READY_TAINT}, value: \"true\", effect: NoExecute}}]; managed node groups: aws eks update-nodegroup-config --taints 'addOrUpdateTaints=[{{key={AGENT_NOT_READY_TAINT},value=true,effect=NO_EXECUTE}}]'); existing nodes need no taint"
            ),
        ));
    }
    let present: Vec<String> = eks
        .node_groups
        .iter()
        .filter(|g| !g.tainted.is_empty())
        .map(|g| format!("{} ({}: {})", g.name, g.tainted.len(), named(&g.tainted)))
        .collect();
    if !present.is_empty() {
        out.push(finding(
            FindingCode::AgentNotReadyTaintPresent,
            Severity::Warning,
            format!(
                "nodes carry {taint} now: {}. Until a Cilium agent is ready on them and the operator removes the taint, only pods that tolerate it run there; if the taint comes back later (a re-registered node, the operator re-tainting nodes whose agent is down), every pod on the node that does not tolerate it is evicted at once, PDBs or not",
                present.join("; ")
            ),
            eks.node_groups
                .iter()
                .flat_map(|g| g.tainted.iter())
                .take(MAX_OBJECTS)
                .map(|n| ObjectRef::cluster("Node", n))
                .collect(),
            format!(
                "expected on node groups set up for Cilium; keep Cilium's operator removing it (the default) and keep operator.setNodeTaints off unless every workload tolerates the eviction; to clear it by hand: kubectl taint nodes NODE {AGENT_NOT_READY_TAINT}:NoExecute-"
            ),
        ));
    }
}

fn webhooks(facts: &NetworkFacts, out: &mut Vec<Finding>) {
    let Some(eks) = &facts.eks else { return };
    let bad: Vec<_> = eks.webhooks.iter().filter(|w| !w.host_network).collect();
    if bad.is_empty() {
        return;
    }
    let blocking = bad.iter().any(|w| w.failure_policy == "Fail");
    out.push(finding(
        FindingCode::OverlayWebhooksUnreachable,
        if blocking { Severity::Error } else { Severity::Warning },
        format!(
            "the EKS control plane reaches pods only on VPC addresses, so these admission webhooks become unreachable once their pods move to Cilium's overlay{}: {}",
            if blocking {
                " (failurePolicy Fail: the API requests they match would be refused, evictions and pod creation included)"
            } else {
                ""
            },
            bad.iter()
                .map(|w| format!(
                    "{} {} webhook {} -> service {} (failurePolicy {})",
                    w.configuration.kind, w.configuration.name, w.webhook, w.service, w.failure_policy
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        bad.iter().map(|w| w.configuration.clone()).take(MAX_OBJECTS).collect(),
        "run each webhook's pods with hostNetwork: true (on a port free on the nodes), or use target.mode: eks-eni, where pods keep VPC addresses".to_owned(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect, dump, preflight::preflight};

    fn node(name: &str, os: &str, group: &str, tainted: bool) -> String {
        let taints = if tainted {
            r#","taints":[{"key":"node.cilium.io/agent-not-ready","value":"true","effect":"NoExecute"}]"#
        } else {
            ""
        };
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"eks.amazonaws.com/nodegroup":"{group}"}}}},"spec":{{"providerID":"aws:///eu-west-1a/i-0{name}"{taints}}},"status":{{"nodeInfo":{{"osImage":"{os}"}},"addresses":[{{"type":"InternalIP","address":"192.168.1.{}"}}]}}}}"#,
            name.len()
        )
    }

    fn cluster(nodes: &[String], extra: &str, aws_selector: &str) -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{},{{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{{"namespace":"kube-system","name":"aws-node"}},"spec":{{"selector":{{"matchLabels":{{"k8s-app":"aws-node"}}}},"template":{{"metadata":{{"labels":{{"k8s-app":"aws-node"}}}},"spec":{{"nodeSelector":{{{aws_selector}}},"containers":[{{"name":"aws-node","image":"x","env":[{{"name":"AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS","value":"10.245.0.0/16"}}]}}]}}}}}}}}{extra}]}}"#,
            nodes.join(",")
        )
    }

    fn spec(mode: &str, extra: &str) -> MigrationSpec {
        let pods = if mode == "eks-eni" {
            ""
        } else {
            ", podCIDRs: [10.245.0.0/16]"
        };
        MigrationSpec::from_yaml(
            &format!(
                "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: t}}\ntarget: {{mode: {mode}, ciliumVersion: 1.17.3{pods}{extra}}}\n"
            ),
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn findings(spec: &MigrationSpec, text: &str) -> Vec<Finding> {
        let snap = dump::load_str(text, "test").expect("dump");
        let facts = detect::detect(&snap);
        preflight(spec, &snap, &facts)
    }

    fn codes(f: &[Finding]) -> Vec<FindingCode> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn one_os_family_picks_its_pattern_and_a_mix_is_an_error() {
        let al2 = vec![node("a", "Amazon Linux 2", "g", false)];
        let text = cluster(&al2, "", "");
        let s = spec("eks-eni", "");
        assert!(!codes(&findings(&s, &text)).contains(&FindingCode::MixedInterfaceNaming));
        let snap = dump::load_str(&text, "t").unwrap();
        let facts = detect::detect(&snap);
        assert_eq!(
            crate::values::egress_masquerade_interfaces(&s, &facts),
            "eth+"
        );

        let mixed = vec![
            node("a", "Amazon Linux 2", "old", false),
            node("b", "Amazon Linux 2023.6.20250115", "new", false),
        ];
        let f = findings(&s, &cluster(&mixed, "", ""));
        let m = f
            .iter()
            .find(|f| f.code == FindingCode::MixedInterfaceNaming)
            .expect("mixed naming found");
        assert!(m.is_error());
        assert!(
            m.message.contains("eth+") && m.message.contains("ens+"),
            "{}",
            m.message
        );
        // A pattern given that misses the AL2023 node is an error too, naming it.
        let given = spec("eks-eni", ", eni: {egressMasqueradeInterfaces: eth+}");
        let f = findings(&given, &cluster(&mixed, "", ""));
        let m = f
            .iter()
            .find(|f| f.code == FindingCode::MixedInterfaceNaming)
            .expect("pattern misses a node");
        assert_eq!(m.objects, vec![ObjectRef::cluster("Node", "b")]);
    }

    #[test]
    fn taints_are_reported_by_node_group_both_ways() {
        let nodes = vec![
            node("a", "Amazon Linux 2", "tainted", true),
            node("b", "Amazon Linux 2", "tainted", true),
            node("c", "Amazon Linux 2", "plain", false),
        ];
        let f = findings(&spec("eks-overlay", ""), &cluster(&nodes, "", ""));
        let missing = f
            .iter()
            .find(|f| f.code == FindingCode::AgentNotReadyTaintMissing)
            .expect("missing");
        assert!(
            missing
                .message
                .contains("eks.amazonaws.com/nodegroup=plain (1 of 1")
        );
        assert!(!missing.message.contains("nodegroup=tainted"));
        let present = f
            .iter()
            .find(|f| f.code == FindingCode::AgentNotReadyTaintPresent)
            .expect("present");
        assert!(
            present.message.contains("nodegroup=tainted (2: a, b)"),
            "{}",
            present.message
        );
    }

    #[test]
    fn a_patched_aws_node_needs_no_patch_and_eni_lists_ec2_permissions() {
        let nodes = vec![node("a", "Amazon Linux 2", "g", false)];
        let s = spec("eks-eni", "");
        let unpatched = codes(&findings(&s, &cluster(&nodes, "", "")));
        assert!(unpatched.contains(&FindingCode::AwsNodeNotPatched));
        assert!(unpatched.contains(&FindingCode::Ec2Permissions));
        assert!(!unpatched.contains(&FindingCode::VpcCniIptablesLeftovers));
        let patched = codes(&findings(
            &s,
            &cluster(&nodes, "", r#""io.cilium/aws-node-enabled":"true""#),
        ));
        assert!(!patched.contains(&FindingCode::AwsNodeNotPatched));
        // The pool checks do not apply to ENI mode (no pool).
        assert!(!patched.contains(&FindingCode::PodCidrTooSmall));
        let overlay = codes(&findings(
            &spec("eks-overlay", ""),
            &cluster(&nodes, "", ""),
        ));
        assert!(overlay.contains(&FindingCode::VpcCniIptablesLeftovers));
        assert!(!overlay.contains(&FindingCode::Ec2Permissions));
    }

    #[test]
    fn webhooks_on_the_pod_network_block_the_overlay_only_when_they_fail_closed() {
        let nodes = vec![node("a", "Amazon Linux 2", "g", false)];
        let hook = |policy: &str, host: bool| {
            format!(
                r#",{{"apiVersion":"v1","kind":"Service","metadata":{{"namespace":"w","name":"hook"}},"spec":{{"selector":{{"app":"hook"}}}}}},{{"apiVersion":"v1","kind":"Pod","metadata":{{"namespace":"w","name":"hook-1","labels":{{"app":"hook"}}}},"spec":{{"nodeName":"a","hostNetwork":{host},"containers":[{{"name":"c","image":"x"}}]}},"status":{{"phase":"Running","podIP":"192.168.1.50"}}}},{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration","metadata":{{"name":"vh"}},"webhooks":[{{"name":"h.example.com","failurePolicy":"{policy}","clientConfig":{{"service":{{"namespace":"w","name":"hook"}}}}}}]}}"#
            )
        };
        let s = spec("eks-overlay", "");
        let sev = |text: String| {
            findings(&s, &text)
                .into_iter()
                .find(|f| f.code == FindingCode::OverlayWebhooksUnreachable)
                .map(|f| f.severity)
        };
        assert_eq!(
            sev(cluster(&nodes, &hook("Fail", false), "")),
            Some(Severity::Error)
        );
        assert_eq!(
            sev(cluster(&nodes, &hook("Ignore", false), "")),
            Some(Severity::Warning)
        );
        assert_eq!(sev(cluster(&nodes, &hook("Fail", true), "")), None);
        // ENI mode keeps VPC addresses: nothing to report.
        assert!(
            !codes(&findings(
                &spec("eks-eni", ""),
                &cluster(&nodes, &hook("Fail", false), "")
            ))
            .contains(&FindingCode::OverlayWebhooksUnreachable)
        );
    }

    #[test]
    fn eni_mode_is_ipv4_only_and_migrates_only_from_the_vpc_cni() {
        let v6 = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Node","metadata":{"name":"a"},"spec":{"providerID":"aws:///x/i-1"},"status":{"nodeInfo":{"osImage":"Amazon Linux 2"},"addresses":[{"type":"InternalIP","address":"2600:1f18::5"}]}},{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"namespace":"kube-system","name":"aws-node"},"spec":{"selector":{},"template":{"spec":{"containers":[{"name":"aws-node","image":"x","env":[{"name":"ENABLE_IPv6","value":"true"}]}]}}}}]}"#;
        let f = findings(&spec("eks-eni", ""), v6);
        let c = codes(&f);
        assert!(c.contains(&FindingCode::EniModeIpv4Only), "{c:?}");
        assert!(!c.contains(&FindingCode::Ipv6NotSupported));
        let flannel = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"kube-flannel","name":"kube-flannel-cfg"},"data":{"net-conf.json":"{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}"}}]}"#;
        let f = findings(&spec("eks-eni", ""), flannel);
        assert!(
            f.iter()
                .any(|f| f.code == FindingCode::SourceCniUnsupported
                    && f.message.contains("eks-eni")),
            "{f:?}"
        );
    }
}
