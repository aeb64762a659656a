//! Detecting the old CNI and the cluster's network facts from a [`ClusterSnapshot`].
//!
//! ```text
//! ConfigMaps, DaemonSets, Calico / Cilium CRs, Nodes, Services, static pods
//!        │
//!        ├─ Flannel: kube-flannel-cfg (kube-flannel | kube-system), net-conf.json (keys any case)
//!        ├─ Calico: calico-node in kube-system (manifest) or calico-system (operator),
//!        │          IPPools, FelixConfiguration, Installation
//!        ├─ AWS VPC CNI: aws-node DaemonSet and its env
//!        ├─ Cilium: cilium-config (the source only when nothing else is there)
//!        ├─ service CIDR: ServiceCIDR object > kubeadm-config > apiserver flag > Service IP
//!        └─ nodes: InternalIPs, networks, pod CIDRs; IP families; managed platform
//!        ▼
//!   NetworkFacts (deterministic; detection never fails: what it cannot tell is Unknown, with a
//!   note in `evidence`)
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    str::FromStr,
};

use ipnet::IpNet;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use serde_json::Value;

use crate::{
    facts::{
        AwsCniFacts, CalicoAutodetect, CalicoFacts, CalicoInstall, CalicoPool, CniKind, EksFacts,
        Encapsulation, ExistingCilium, FlannelFacts, FlannelNetConf, IpFamilies, NetworkFacts,
        NodeGroup, NodeNetwork, OsFamily, Platform, PlatformFacts, ServiceCidr, ServiceCidrSource,
        SourceCni, WebhookService,
    },
    snapshot::{ClusterSnapshot, ObjectRef},
};

/// Why a `net-conf.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetConfError {
    /// Not JSON at all.
    #[error("net-conf.json is not valid JSON: {0}")]
    Json(String),
    /// Not a JSON object.
    #[error("net-conf.json must be a JSON object, found {0}")]
    NotObject(&'static str),
    /// A key has the wrong type or value.
    #[error("net-conf.json key `{key}`: expected {expected}, found {found}")]
    Field {
        /// The key, as written.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Looks a key up case-insensitively, as Go's `encoding/json` matches struct fields.
fn get_ci<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<(&'a str, &'a Value)> {
    obj.get_key_value(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        .map(|(k, v)| (k.as_str(), v))
}

fn ci_cidr(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<IpNet>, NetConfError> {
    match get_ci(obj, key) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((k, Value::String(s))) if s.is_empty() => {
            let _ = k;
            Ok(None)
        }
        Some((k, Value::String(s))) => {
            IpNet::from_str(s.trim())
                .map(Some)
                .map_err(|_| NetConfError::Field {
                    key: k.to_owned(),
                    expected: "a CIDR such as 10.244.0.0/16",
                    found: format!("\"{s}\""),
                })
        }
        Some((k, v)) => Err(NetConfError::Field {
            key: k.to_owned(),
            expected: "a CIDR string",
            found: kind_of(v).into(),
        }),
    }
}

fn ci_bool(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
) -> Result<bool, NetConfError> {
    match get_ci(obj, key) {
        None | Some((_, Value::Null)) => Ok(default),
        Some((_, Value::Bool(b))) => Ok(*b),
        Some((k, v)) => Err(NetConfError::Field {
            key: k.to_owned(),
            expected: "true or false",
            found: kind_of(v).into(),
        }),
    }
}

fn ci_uint(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    max: u64,
) -> Result<Option<u64>, NetConfError> {
    match get_ci(obj, key) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((k, Value::Number(n))) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => Err(NetConfError::Field {
                key: k.to_owned(),
                expected: "a whole number in range",
                found: n.to_string(),
            }),
        },
        Some((k, v)) => Err(NetConfError::Field {
            key: k.to_owned(),
            expected: "a number",
            found: kind_of(v).into(),
        }),
    }
}

/// Flannel's default port for a backend, when it has one.
pub fn flannel_default_port(backend: &str) -> Option<u16> {
    match backend {
        "vxlan" => Some(8472),
        "udp" => Some(8285),
        "wireguard" => Some(51820),
        _ => None,
    }
}

/// Parses Flannel's `net-conf.json`, matching keys case-insensitively at every level.
///
/// # Errors
/// [`NetConfError`] naming the key, what was expected and what was found.
pub fn parse_net_conf(text: &str) -> Result<FlannelNetConf, NetConfError> {
    let v: Value = serde_json::from_str(text).map_err(|e| NetConfError::Json(e.to_string()))?;
    let Value::Object(obj) = &v else {
        return Err(NetConfError::NotObject(kind_of(&v)));
    };
    let mut conf = FlannelNetConf {
        network: ci_cidr(obj, "Network")?,
        ipv6_network: ci_cidr(obj, "IPv6Network")?,
        enable_ipv4: ci_bool(obj, "EnableIPv4", true)?,
        enable_ipv6: ci_bool(obj, "EnableIPv6", false)?,
        subnet_len: ci_uint(obj, "SubnetLen", 128)?.and_then(|v| u8::try_from(v).ok()),
        backend: "vxlan".to_owned(),
        ..FlannelNetConf::default()
    };
    match get_ci(obj, "Backend") {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Object(b))) => {
            match get_ci(b, "Type") {
                None | Some((_, Value::Null)) => {}
                Some((_, Value::String(t))) => conf.backend = t.trim().to_lowercase(),
                Some((k, v)) => {
                    return Err(NetConfError::Field {
                        key: format!("Backend.{k}"),
                        expected: "a backend name such as vxlan",
                        found: kind_of(v).into(),
                    });
                }
            }
            let port_key = if conf.backend == "wireguard" {
                "ListenPort"
            } else {
                "Port"
            };
            conf.port = ci_uint(b, port_key, 65535)?
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            conf.port_v6 = ci_uint(b, "ListenPortV6", 65535)?
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            conf.vni = ci_uint(b, "VNI", u64::from(u32::MAX))?.and_then(|v| u32::try_from(v).ok());
            conf.mtu = ci_uint(b, "MTU", u64::from(u32::MAX))?.and_then(|v| u32::try_from(v).ok());
        }
        Some((k, v)) => {
            return Err(NetConfError::Field {
                key: k.to_owned(),
                expected: "an object such as {\"Type\": \"vxlan\"}",
                found: kind_of(v).into(),
            });
        }
    }
    Ok(conf)
}

fn cm_data<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.data.as_ref()?.get(key).map(String::as_str)
}

fn ds_env(ds: &DaemonSet, container: Option<&str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return env;
    };
    for c in &spec.containers {
        if container.is_some_and(|n| n != c.name) {
            continue;
        }
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                env.insert(e.name.clone(), v.clone());
            }
        }
    }
    env
}

fn ds_ref(ds: &DaemonSet) -> ObjectRef {
    ObjectRef::namespaced(
        "DaemonSet",
        ds.metadata.namespace.as_deref().unwrap_or_default(),
        ds.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Detects everything. Never fails: what cannot be told is `Unknown`, with a note.
pub fn detect(snapshot: &ClusterSnapshot) -> NetworkFacts {
    let mut source = detect_flannel(snapshot)
        .or_else(|| detect_calico(snapshot))
        .or_else(|| detect_aws(snapshot))
        .unwrap_or_default();
    let cilium = detect_cilium(snapshot);
    if source.cni == CniKind::Unknown {
        if let Some(c) = &cilium {
            source.cni = CniKind::Cilium;
            source.evidence.push(format!(
                "ConfigMap {}/cilium-config exists and no other CNI was found",
                c.namespace
            ));
        } else {
            source.evidence.push(
                "no Flannel (kube-flannel-cfg), Calico (calico-node), AWS VPC CNI (aws-node) or Cilium (cilium-config) objects found"
                    .to_owned(),
            );
        }
    }
    let service = detect_service_cidr(snapshot);
    let nodes = detect_nodes(snapshot);
    let ip_families = detect_families(snapshot, &source, &service, &nodes);
    let platform = detect_platform(snapshot);
    let eks = (source.cni == CniKind::AwsVpcCni
        || platform
            .as_ref()
            .is_some_and(|p| p.platform == Platform::Eks))
    .then(|| detect_eks(snapshot));
    NetworkFacts {
        source,
        cilium,
        service,
        nodes,
        ip_families,
        platform,
        eks,
    }
}

/// The taint Cilium's EKS guide puts on node groups so no pod starts before the agent.
pub const AGENT_NOT_READY_TAINT: &str = "node.cilium.io/agent-not-ready";

/// Labels that name a node's group, most specific first.
const NODE_GROUP_LABELS: &[&str] = &[
    "eks.amazonaws.com/nodegroup",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name",
];

fn detect_eks(snap: &ClusterSnapshot) -> EksFacts {
    let mut os_families: BTreeMap<OsFamily, Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, NodeGroup> = BTreeMap::new();
    for n in &snap.nodes {
        let family = OsFamily::from_os_image(n.os_image.as_deref().unwrap_or_default());
        os_families.entry(family).or_default().push(n.name.clone());
        let name = NODE_GROUP_LABELS
            .iter()
            .find_map(|l| n.labels.get(*l).map(|v| format!("{l}={v}")))
            .unwrap_or_else(|| "(no node group label)".to_owned());
        let g = groups.entry(name.clone()).or_insert_with(|| NodeGroup {
            name,
            ..NodeGroup::default()
        });
        g.nodes.push(n.name.clone());
        if n.taints.iter().any(|t| {
            t.key == AGENT_NOT_READY_TAINT
                && t.effect == "NoExecute"
                && t.value.as_deref() == Some("true")
        }) {
            g.tainted.push(n.name.clone());
        }
    }
    let patterns: BTreeSet<Option<&str>> =
        os_families.keys().map(|f| f.interface_pattern()).collect();
    let interface_pattern = match patterns.iter().collect::<Vec<_>>().as_slice() {
        [Some(p)] => Some((*p).to_owned()),
        _ => None,
    };
    EksFacts {
        os_families,
        interface_pattern,
        node_groups: groups.into_values().collect(),
        webhooks: detect_webhooks(snap),
    }
}

/// Admission webhooks that call a Service, and whether the pods behind it are on the host
/// network.
fn detect_webhooks(snap: &ClusterSnapshot) -> Vec<WebhookService> {
    let mut out = Vec::new();
    for c in snap.custom.iter().filter(|c| {
        matches!(
            c.kind.as_str(),
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"
        )
    }) {
        for w in c.object["webhooks"].as_array().into_iter().flatten() {
            let svc = &w["clientConfig"]["service"];
            let (Some(ns), Some(name)) = (svc["namespace"].as_str(), svc["name"].as_str()) else {
                continue;
            };
            let selector = snap
                .services
                .iter()
                .find(|s| s.namespace == ns && s.name == name)
                .map(|s| s.selector.clone())
                .unwrap_or_default();
            let backing: Vec<_> = snap
                .pods
                .iter()
                .filter(|p| {
                    p.namespace == ns
                        && !selector.is_empty()
                        && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .collect();
            out.push(WebhookService {
                configuration: ObjectRef::cluster(&c.kind, &c.name),
                webhook: w["name"].as_str().unwrap_or_default().to_owned(),
                service: format!("{ns}/{name}"),
                host_network: !backing.is_empty() && backing.iter().all(|p| p.host_network),
                failure_policy: w["failurePolicy"].as_str().unwrap_or("Fail").to_owned(),
            });
        }
    }
    out.sort_by(|a, b| (&a.configuration, &a.webhook).cmp(&(&b.configuration, &b.webhook)));
    out
}

fn detect_flannel(snap: &ClusterSnapshot) -> Option<SourceCni> {
    // Plain Flannel first; Canal (Calico policy + Flannel networking) keeps its net-conf in
    // canal-config / rke2-canal-config.
    let candidates = [
        ("kube-flannel", "kube-flannel-cfg", false),
        ("kube-system", "kube-flannel-cfg", false),
        ("kube-system", "canal-config", true),
        ("kube-system", "rke2-canal-config", true),
    ];
    let (ns, cm_name, canal, cm) = candidates.iter().find_map(|(ns, name, canal)| {
        snap.configmap(ns, name).map(|cm| (*ns, *name, *canal, cm))
    })?;
    let mut source = SourceCni {
        cni: CniKind::Flannel,
        ..SourceCni::default()
    };
    source.evidence.push(format!(
        "ConfigMap {ns}/{cm_name} holds Flannel's net-conf.json"
    ));
    let net_conf = match cm_data(cm, "net-conf.json") {
        Some(text) => match parse_net_conf(text) {
            Ok(c) => c,
            Err(e) => {
                source
                    .evidence
                    .push(format!("{ns}/{cm_name}: {e}; overlay facts unknown"));
                FlannelNetConf::default()
            }
        },
        None => {
            source.evidence.push(format!(
                "{ns}/{cm_name} has no net-conf.json key; overlay facts unknown"
            ));
            FlannelNetConf::default()
        }
    };
    let mut daemonsets: Vec<String> = snap
        .daemonsets
        .iter()
        .filter(|ds| ds.metadata.namespace.as_deref() == Some(ns))
        .filter_map(|ds| ds.metadata.name.clone())
        .filter(|n| {
            n == "kube-flannel-ds"
                || n.starts_with("kube-flannel-ds-")
                || n == "canal"
                || n == "rke2-canal"
        })
        .collect();
    daemonsets.sort();
    if daemonsets.is_empty() {
        source.evidence.push(format!(
            "no Flannel DaemonSet in {ns}: embedded Flannel (k3s) or a partial dump"
        ));
    }
    source
        .pod_cidrs
        .extend(net_conf.network.filter(|_| net_conf.enable_ipv4));
    source
        .pod_cidrs
        .extend(net_conf.ipv6_network.filter(|_| net_conf.enable_ipv6));
    if !net_conf.backend.is_empty() || net_conf.network.is_some() {
        source.encapsulation = match net_conf.backend.as_str() {
            "vxlan" => Encapsulation::Vxlan,
            "udp" => Encapsulation::Udp,
            "wireguard" => Encapsulation::Wireguard,
            "host-gw" => Encapsulation::HostGw,
            "ipip" => Encapsulation::Ipip,
            _ => Encapsulation::Unknown,
        };
    }
    source.port = net_conf
        .port
        .or_else(|| flannel_default_port(&net_conf.backend));
    source.vni = match net_conf.backend.as_str() {
        "vxlan" => Some(net_conf.vni.unwrap_or(1)),
        _ => None,
    };
    source.mtu = net_conf.mtu;
    source.evidence.push(format!(
        "backend {}{}",
        if net_conf.backend.is_empty() {
            "unknown"
        } else {
            &net_conf.backend
        },
        match (net_conf.port, source.port) {
            (Some(p), _) => format!(", port {p} (configured)"),
            (None, Some(p)) => format!(", port {p} (Flannel's default for the backend)"),
            _ => String::new(),
        }
    ));
    source.objects.extend(
        daemonsets
            .iter()
            .map(|d| ObjectRef::namespaced("DaemonSet", ns, d)),
    );
    source
        .objects
        .push(ObjectRef::namespaced("ConfigMap", ns, cm_name));
    if ns == "kube-flannel" {
        source
            .objects
            .push(ObjectRef::cluster("Namespace", "kube-flannel"));
    }
    source.flannel = Some(FlannelFacts {
        namespace: ns.to_owned(),
        net_conf,
        daemonsets,
        canal,
    });
    Some(source)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn mode_enabled(mode: &str) -> bool {
    matches!(mode, "Always" | "CrossSubnet")
}

fn detect_calico(snap: &ClusterSnapshot) -> Option<SourceCni> {
    let installation = snap
        .custom_of("operator.tigera.io", "Installation")
        .find(|o| o.name == "default");
    let node_ds = snap
        .daemonset("calico-system", "calico-node")
        .or_else(|| snap.daemonset("kube-system", "calico-node"));
    let calico_config = snap.configmap("kube-system", "calico-config");
    let crd_pools: Vec<_> = snap
        .custom_of("crd.projectcalico.org", "IPPool")
        .chain(snap.custom_of("projectcalico.org", "IPPool"))
        .collect();
    if installation.is_none()
        && node_ds.is_none()
        && calico_config.is_none()
        && crd_pools.is_empty()
    {
        return None;
    }
    let operator = installation.is_some()
        || node_ds.is_some_and(|d| d.metadata.namespace.as_deref() == Some("calico-system"));
    let namespace = if operator {
        "calico-system"
    } else {
        "kube-system"
    };
    let mut source = SourceCni {
        cni: CniKind::Calico,
        ..SourceCni::default()
    };
    let mut calico = CalicoFacts {
        install: if operator {
            CalicoInstall::Operator
        } else {
            CalicoInstall::Manifest
        },
        namespace: namespace.to_owned(),
        vxlan_port: 4789,
        vxlan_vni: 4096,
        ..CalicoFacts::default()
    };
    source.evidence.push(if operator {
        "Calico installed by the Tigera operator (Installation default / calico-system)".to_owned()
    } else {
        "Calico installed from the manifest (calico-node in kube-system)".to_owned()
    });
    let env = node_ds
        .map(|d| ds_env(d, Some("calico-node")))
        .unwrap_or_default();

    // Pools: IPPool objects first; then the Installation; then the manifest's env.
    let mut seen = std::collections::BTreeSet::new();
    for p in &crd_pools {
        if !seen.insert(p.name.clone()) {
            continue;
        }
        let spec = p.spec().cloned().unwrap_or(Value::Null);
        let Some(cidr) = spec
            .get("cidr")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<IpNet>().ok())
        else {
            source
                .evidence
                .push(format!("IPPool {} has no valid cidr; ignored", p.name));
            continue;
        };
        calico.pools.push(CalicoPool {
            name: p.name.clone(),
            cidr,
            vxlan_mode: spec
                .get("vxlanMode")
                .and_then(Value::as_str)
                .unwrap_or("Never")
                .to_owned(),
            ipip_mode: spec
                .get("ipipMode")
                .and_then(Value::as_str)
                .unwrap_or("Never")
                .to_owned(),
            disabled: spec
                .get("disabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            block_size: spec
                .get("blockSize")
                .and_then(Value::as_u64)
                .and_then(|b| u8::try_from(b).ok()),
            source: p.object_ref(),
        });
    }
    if calico.pools.is_empty()
        && let Some(inst) = installation
    {
        for (i, pool) in inst.object["spec"]["calicoNetwork"]["ipPools"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(cidr) = pool
                .get("cidr")
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<IpNet>().ok())
            else {
                continue;
            };
            let enc = pool
                .get("encapsulation")
                .and_then(Value::as_str)
                .unwrap_or("IPIP");
            let (vxlan, ipip) = match enc {
                "VXLAN" => ("Always", "Never"),
                "VXLANCrossSubnet" => ("CrossSubnet", "Never"),
                "IPIP" => ("Never", "Always"),
                "IPIPCrossSubnet" => ("Never", "CrossSubnet"),
                _ => ("Never", "Never"),
            };
            calico.pools.push(CalicoPool {
                name: pool
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("pool-{i}"), str::to_owned),
                cidr,
                vxlan_mode: vxlan.to_owned(),
                ipip_mode: ipip.to_owned(),
                disabled: pool
                    .get("disableNewAllocations")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                block_size: pool
                    .get("blockSize")
                    .and_then(Value::as_u64)
                    .and_then(|b| u8::try_from(b).ok()),
                source: inst.object_ref(),
            });
        }
    }
    if calico.pools.is_empty() && !operator {
        let cidr_text = env
            .get("CALICO_IPV4POOL_CIDR")
            .map_or("192.168.0.0/16", String::as_str);
        if let Ok(cidr) = cidr_text.parse::<IpNet>() {
            calico.pools.push(CalicoPool {
                name: "default-ipv4-ippool".to_owned(),
                cidr,
                vxlan_mode: env
                    .get("CALICO_IPV4POOL_VXLAN")
                    .cloned()
                    .unwrap_or_else(|| "Never".to_owned()),
                ipip_mode: env
                    .get("CALICO_IPV4POOL_IPIP")
                    .cloned()
                    .unwrap_or_else(|| "Always".to_owned()),
                disabled: false,
                block_size: None,
                source: node_ds.map_or_else(
                    || ObjectRef::namespaced("DaemonSet", "kube-system", "calico-node"),
                    ds_ref,
                ),
            });
            source.evidence.push(format!(
                "no IPPool objects: pool {cidr} from calico-node's env{}",
                if env.contains_key("CALICO_IPV4POOL_CIDR") {
                    ""
                } else {
                    " default (CALICO_IPV4POOL_CIDR unset)"
                }
            ));
        }
    }
    calico.pools.sort_by(|a, b| a.name.cmp(&b.name));
    let enabled: Vec<&CalicoPool> = calico.pools.iter().filter(|p| !p.disabled).collect();
    source.pod_cidrs = enabled.iter().map(|p| p.cidr).collect();
    source.pod_cidrs.sort();
    source.pod_cidrs.dedup();

    // Felix.
    let felix = snap
        .custom_of("crd.projectcalico.org", "FelixConfiguration")
        .chain(snap.custom_of("projectcalico.org", "FelixConfiguration"))
        .find(|f| f.name == "default");
    let mut wireguard = false;
    if let Some(f) = felix {
        let spec = f.spec().cloned().unwrap_or(Value::Null);
        if let Some(p) = spec
            .get("vxlanPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        {
            calico.vxlan_port = p;
        }
        if let Some(v) = spec
            .get("vxlanVNI")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
        {
            calico.vxlan_vni = v;
        }
        calico.bpf_enabled = spec
            .get("bpfEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        wireguard = spec
            .get("wireguardEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if wireguard {
            calico.wireguard_port = Some(
                spec.get("wireguardListeningPort")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(51820),
            );
        }
    }
    if let Some(p) = env.get("FELIX_VXLANPORT").and_then(|p| p.parse().ok()) {
        calico.vxlan_port = p;
    }
    if env
        .get("FELIX_BPFENABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        calico.bpf_enabled = true;
    }
    if let Some(inst) = installation
        && str_at(&inst.object, &["spec", "calicoNetwork", "linuxDataplane"]) == Some("BPF")
    {
        calico.bpf_enabled = true;
    }

    if enabled.iter().any(|p| mode_enabled(&p.vxlan_mode)) {
        source.encapsulation = Encapsulation::Vxlan;
        source.port = Some(calico.vxlan_port);
        source.vni = Some(calico.vxlan_vni);
        source.evidence.push(format!(
            "VXLAN on UDP {} (VNI {})",
            calico.vxlan_port, calico.vxlan_vni
        ));
    } else if enabled.iter().any(|p| mode_enabled(&p.ipip_mode)) {
        source.encapsulation = Encapsulation::Ipip;
        source
            .evidence
            .push("IP-in-IP (IP protocol 4, no UDP port)".to_owned());
    } else if enabled.is_empty() {
        source.encapsulation = Encapsulation::Unknown;
        source
            .evidence
            .push("no enabled Calico IP pool found".to_owned());
    } else {
        source.encapsulation = Encapsulation::None;
        source
            .evidence
            .push("no encapsulation: pods are routed by BGP".to_owned());
    }
    if wireguard {
        source.evidence.push(format!(
            "WireGuard enabled on UDP {}",
            calico.wireguard_port.unwrap_or(51820)
        ));
        if source.port.is_none() {
            source.port = calico.wireguard_port;
        }
    }

    // Node address autodetection: the cilium_host trap.
    calico.autodetect = if let Some(inst) = installation {
        let ad = &inst.object["spec"]["calicoNetwork"]["nodeAddressAutodetectionV4"];
        let method = match ad.as_object() {
            None => "firstFound (default: nodeAddressAutodetectionV4 not set)".to_owned(),
            Some(m) if m.is_empty() => {
                "firstFound (default: nodeAddressAutodetectionV4 empty)".to_owned()
            }
            Some(m) => m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        // The operator defaults to firstFound when nothing else is set; any other method
        // (kubernetes, interface, skipInterface, canReach, cidrs) replaces it.
        let other = ad
            .as_object()
            .is_some_and(|m| m.iter().any(|(k, v)| k != "firstFound" && !v.is_null()));
        let first_found = ad
            .get("firstFound")
            .and_then(Value::as_bool)
            .unwrap_or(!other);
        CalicoAutodetect {
            method,
            first_found,
            source: Some(inst.object_ref()),
        }
    } else {
        let method = env.get("IP_AUTODETECTION_METHOD").cloned();
        let ip = env.get("IP").map(String::as_str);
        let first_found = match method.as_deref() {
            None => ip.is_none_or(|ip| ip == "autodetect"),
            Some(m) => m.trim() == "first-found",
        };
        CalicoAutodetect {
            method: method.unwrap_or_else(|| {
                "first-found (default: IP_AUTODETECTION_METHOD not set)".to_owned()
            }),
            first_found,
            source: node_ds.map(ds_ref),
        }
    };

    calico.bgp = match installation {
        Some(inst) => {
            str_at(&inst.object, &["spec", "calicoNetwork", "bgp"]).is_none_or(|b| b == "Enabled")
        }
        None => {
            calico_config
                .and_then(|c| cm_data(c, "calico_backend"))
                .is_some_and(|b| b == "bird")
                || env
                    .get("CALICO_NETWORKING_BACKEND")
                    .is_some_and(|b| b == "bird")
        }
    };

    // What removing Calico deletes.
    if operator {
        if let Some(inst) = installation {
            source.objects.push(inst.object_ref());
        }
        if snap.workloads.iter().any(|w| {
            w.kind == "Deployment"
                && w.namespace == "tigera-operator"
                && w.name == "tigera-operator"
        }) {
            source.objects.push(ObjectRef::namespaced(
                "Deployment",
                "tigera-operator",
                "tigera-operator",
            ));
        }
        for ns in ["calico-system", "calico-apiserver", "tigera-operator"] {
            if snap.namespaces.iter().any(|n| n == ns) {
                source.objects.push(ObjectRef::cluster("Namespace", ns));
            }
        }
    } else {
        if let Some(ds) = node_ds {
            source.objects.push(ds_ref(ds));
        }
        if snap.workloads.iter().any(|w| {
            w.kind == "Deployment"
                && w.namespace == "kube-system"
                && w.name == "calico-kube-controllers"
        }) {
            source.objects.push(ObjectRef::namespaced(
                "Deployment",
                "kube-system",
                "calico-kube-controllers",
            ));
        }
        if calico_config.is_some() {
            source.objects.push(ObjectRef::namespaced(
                "ConfigMap",
                "kube-system",
                "calico-config",
            ));
        }
    }
    source.calico = Some(calico);
    Some(source)
}

fn detect_aws(snap: &ClusterSnapshot) -> Option<SourceCni> {
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

fn detect_cilium(snap: &ClusterSnapshot) -> Option<ExistingCilium> {
    let cm = snap.configmap("kube-system", "cilium-config")?;
    Some(ExistingCilium {
        namespace: "kube-system".to_owned(),
        config: cm.data.clone().unwrap_or_default().into_iter().collect(),
        agent_daemonset: snap.daemonset("kube-system", "cilium").is_some(),
    })
}

fn parse_cidr_list(text: &str) -> Vec<IpNet> {
    text.split(',')
        .filter_map(|c| c.trim().parse::<IpNet>().ok())
        .collect()
}

fn detect_service_cidr(snap: &ClusterSnapshot) -> ServiceCidr {
    let kubernetes_service_ip = snap
        .services
        .iter()
        .find(|s| s.namespace == "default" && s.name == "kubernetes")
        .and_then(|s| s.cluster_ips.first())
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let found = |cidrs: Vec<IpNet>, source| ServiceCidr {
        cidrs,
        source,
        kubernetes_service_ip,
    };
    if let Some(obj) = snap
        .custom_of("networking.k8s.io", "ServiceCIDR")
        .find(|o| o.name == "kubernetes")
    {
        let cidrs: Vec<IpNet> = obj.object["spec"]["cidrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str()?.parse().ok())
            .collect();
        if !cidrs.is_empty() {
            return found(cidrs, ServiceCidrSource::ServiceCidrObject);
        }
    }
    if let Some(cc) = snap
        .configmap("kube-system", "kubeadm-config")
        .and_then(|cm| cm_data(cm, "ClusterConfiguration"))
        && let Ok(v) = crate::yaml::from_str::<serde_yaml::Value>(cc)
        && let Some(subnet) = v
            .get("networking")
            .and_then(|n| n.get("serviceSubnet"))
            .and_then(|s| s.as_str())
    {
        let cidrs = parse_cidr_list(subnet);
        if !cidrs.is_empty() {
            return found(cidrs, ServiceCidrSource::KubeadmConfig);
        }
    }
    for pod in snap.pods.iter().filter(|p| {
        p.namespace == "kube-system"
            && (p
                .labels
                .get("component")
                .is_some_and(|c| c == "kube-apiserver")
                || p.name.starts_with("kube-apiserver"))
    }) {
        for c in &pod.containers {
            for (i, arg) in c.args.iter().enumerate() {
                let value = if let Some(v) = arg.strip_prefix("--service-cluster-ip-range=") {
                    Some(v)
                } else if arg == "--service-cluster-ip-range" {
                    c.args.get(i + 1).map(String::as_str)
                } else {
                    None
                };
                if let Some(v) = value {
                    let cidrs = parse_cidr_list(v);
                    if !cidrs.is_empty() {
                        return found(cidrs, ServiceCidrSource::ApiServerFlag);
                    }
                }
            }
        }
    }
    match kubernetes_service_ip {
        Some(ip) => found(
            vec![IpNet::from(ip)],
            ServiceCidrSource::KubernetesServiceIp,
        ),
        None => found(Vec::new(), ServiceCidrSource::Unknown),
    }
}

fn detect_nodes(snap: &ClusterSnapshot) -> Vec<NodeNetwork> {
    snap.nodes
        .iter()
        .map(|n| {
            let internal_ips = n.internal_ips();
            let mut networks: Vec<IpNet> = [
                "projectcalico.org/IPv4Address",
                "projectcalico.org/IPv6Address",
            ]
            .iter()
            .filter_map(|k| n.annotations.get(*k))
            .filter_map(|a| a.parse::<IpNet>().ok())
            .map(|net| net.trunc())
            .collect();
            for ip in &internal_ips {
                if !networks.iter().any(|net| net.contains(ip)) {
                    networks.push(IpNet::from(*ip));
                }
            }
            networks.sort();
            NodeNetwork {
                node: n.name.clone(),
                internal_ips,
                networks,
                pod_cidrs: n.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
            }
        })
        .collect()
}

fn detect_families(
    snap: &ClusterSnapshot,
    source: &SourceCni,
    service: &ServiceCidr,
    nodes: &[NodeNetwork],
) -> IpFamilies {
    let mut f = IpFamilies::default();
    let mut see = |ip: IpAddr| match ip {
        IpAddr::V4(_) => f.ipv4 = true,
        IpAddr::V6(_) => f.ipv6 = true,
    };
    for n in nodes {
        n.internal_ips.iter().copied().for_each(&mut see);
        n.pod_cidrs.iter().map(IpNet::addr).for_each(&mut see);
    }
    service.cidrs.iter().map(IpNet::addr).for_each(&mut see);
    source.pod_cidrs.iter().map(IpNet::addr).for_each(&mut see);
    for p in snap.pods.iter().filter(|p| !p.host_network) {
        p.pod_ips.iter().copied().for_each(&mut see);
    }
    if source.aws.as_ref().is_some_and(|a| a.ipv6) {
        f.ipv6 = true;
    }
    f
}

fn detect_platform(snap: &ClusterSnapshot) -> Option<PlatformFacts> {
    let found = |platform, evidence: String| Some(PlatformFacts { platform, evidence });
    for n in &snap.nodes {
        let provider = n.provider_id.as_deref().unwrap_or_default();
        let kubelet = n.kubelet_version.as_deref().unwrap_or_default();
        if kubelet.contains("+k3s") || n.annotations.keys().any(|k| k.starts_with("k3s.io/")) {
            return found(
                Platform::K3s,
                format!("node {} runs kubelet {kubelet} / k3s annotations", n.name),
            );
        }
        if kubelet.contains("+rke2") {
            return found(
                Platform::Rke2,
                format!("node {} runs kubelet {kubelet}", n.name),
            );
        }
        if provider.starts_with("azure://")
            || n.labels
                .keys()
                .any(|k| k.starts_with("kubernetes.azure.com/"))
        {
            return found(
                Platform::Aks,
                format!(
                    "node {} has providerID {provider} / kubernetes.azure.com labels",
                    n.name
                ),
            );
        }
        if n.labels.contains_key("cloud.google.com/gke-nodepool")
            || (provider.starts_with("gce://") && kubelet.contains("-gke."))
        {
            return found(
                Platform::Gke,
                format!("node {} is in a GKE node pool", n.name),
            );
        }
        if provider.starts_with("aws://")
            && (n.labels.keys().any(|k| k.starts_with("eks.amazonaws.com/"))
                || kubelet.contains("-eks-"))
        {
            return found(
                Platform::Eks,
                format!(
                    "node {} has providerID {provider} and EKS labels / kubelet {kubelet}",
                    n.name
                ),
            );
        }
    }
    snap.daemonsets
        .iter()
        .filter_map(|d| d.metadata.name.as_deref())
        .find(|n| n.starts_with("rke2-"))
        .and_then(|n| found(Platform::Rke2, format!("DaemonSet {n}")))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::{
        dump::load_str,
        snapshot::{ContainerInfo, NodeAddress, NodeInfo, PodInfo, ServiceInfo},
    };

    #[rstest]
    #[case::doc_style(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#,
        "vxlan",
        Some(8472),
        None
    )]
    #[case::lowercase_keys(
        r#"{"network": "10.244.0.0/16", "backend": {"type": "VXLAN", "port": 4790, "vni": 7}}"#,
        "vxlan",
        Some(4790),
        Some(7)
    )]
    #[case::shouting_keys(
        r#"{"NETWORK": "10.244.0.0/16", "BACKEND": {"TYPE": "udp"}}"#,
        "udp",
        Some(8285),
        None
    )]
    #[case::wireguard(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#,
        "wireguard",
        Some(51820),
        None
    )]
    #[case::wireguard_port(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "ListenPort": 51999}}"#,
        "wireguard",
        Some(51999),
        None
    )]
    #[case::host_gw(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}"#,
        "host-gw",
        None,
        None
    )]
    #[case::ipip(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}"#,
        "ipip",
        None,
        None
    )]
    #[case::missing_backend_means_vxlan(
        r#"{"Network": "10.244.0.0/16"}"#,
        "vxlan",
        Some(8472),
        None
    )]
    fn net_conf_backends_and_default_ports(
        #[case] text: &str,
        #[case] backend: &str,
        #[case] port: Option<u16>,
        #[case] vni: Option<u32>,
    ) {
        let conf = parse_net_conf(text).unwrap();
        assert_eq!(conf.backend, backend);
        assert_eq!(conf.network, Some("10.244.0.0/16".parse().unwrap()));
        assert_eq!(
            conf.port.or_else(|| flannel_default_port(&conf.backend)),
            port
        );
        assert_eq!(conf.vni, vni);
    }

    #[rstest]
    #[case::not_json("{", "not valid JSON")]
    #[case::array("[]", "must be a JSON object")]
    #[case::bad_cidr(r#"{"Network": "10.244.0.0/33"}"#, "`Network`")]
    #[case::bad_type(r#"{"Network": 5}"#, "a CIDR string")]
    #[case::bad_port(r#"{"Backend": {"Type": "vxlan", "Port": 70000}}"#, "`Port`")]
    #[case::bad_backend(r#"{"Backend": "vxlan"}"#, "`Backend`")]
    fn net_conf_errors_name_the_key(#[case] text: &str, #[case] needle: &str) {
        let err = parse_net_conf(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }

    #[test]
    fn ipv6_flannel_counts_as_dual_stack() {
        let conf = parse_net_conf(r#"{"Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56", "EnableIPv6": true}"#).unwrap();
        assert!(conf.enable_ipv6 && conf.ipv6_network.is_some());
    }

    fn flannel_snapshot(net_conf: &str) -> ClusterSnapshot {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"}, "data": {"net-conf.json": net_conf}});
        load_str(&cm.to_string(), "t").unwrap()
    }

    #[test]
    fn broken_net_conf_is_a_note_not_a_failure() {
        let facts = detect(&flannel_snapshot("{ nope"));
        assert_eq!(facts.source.cni, CniKind::Flannel);
        assert!(
            facts
                .source
                .evidence
                .iter()
                .any(|e| e.contains("not valid JSON")),
            "{:?}",
            facts.source.evidence
        );
    }

    #[test]
    fn cilium_alongside_flannel_keeps_flannel_as_the_source() {
        let mut snap = flannel_snapshot(r#"{"Network": "10.244.0.0/16"}"#);
        let cilium = load_str(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": "kube-system"}, "data": {"custom-cni-conf": "true"}}"#, "t").unwrap();
        snap.configmaps.extend(cilium.configmaps.clone());
        let facts = detect(&snap);
        assert_eq!(facts.source.cni, CniKind::Flannel);
        assert_eq!(
            facts.cilium.as_ref().unwrap().config["custom-cni-conf"],
            "true"
        );
        assert_eq!(detect(&cilium).source.cni, CniKind::Cilium);
        assert_eq!(
            detect(&ClusterSnapshot::default()).source.cni,
            CniKind::Unknown
        );
    }

    fn apiserver(args: &[&str]) -> PodInfo {
        PodInfo {
            namespace: "kube-system".into(),
            name: "kube-apiserver-cp".into(),
            labels: [("component".to_owned(), "kube-apiserver".to_owned())].into(),
            containers: vec![ContainerInfo {
                name: "kube-apiserver".into(),
                image: String::new(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            }],
            ..PodInfo::default()
        }
    }

    #[test]
    fn service_cidr_sources_in_order_of_reliability() {
        let svc = ServiceInfo {
            namespace: "default".into(),
            name: "kubernetes".into(),
            type_: "ClusterIP".into(),
            cluster_ips: vec!["10.96.0.1".into()],
            ..ServiceInfo::default()
        };
        let mut snap = ClusterSnapshot {
            services: vec![svc],
            ..ClusterSnapshot::default()
        };
        let s = detect(&snap).service;
        assert_eq!(
            (s.source, s.cidrs.len()),
            (ServiceCidrSource::KubernetesServiceIp, 1)
        );
        assert_eq!(s.cidrs[0].prefix_len(), 32);

        snap.pods.push(apiserver(&[
            "kube-apiserver",
            "--service-cluster-ip-range",
            "10.96.0.0/16,fd00::/108",
        ]));
        let s = detect(&snap).service;
        assert_eq!(s.source, ServiceCidrSource::ApiServerFlag);
        assert_eq!(s.cidrs.len(), 2);

        let kubeadm = load_str(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.100.0.0/16\n  podSubnet: 10.244.0.0/16\n"}}"#, "t").unwrap();
        snap.configmaps = kubeadm.configmaps;
        assert_eq!(
            detect(&snap).service.source,
            ServiceCidrSource::KubeadmConfig
        );
        assert_eq!(
            detect(&snap).service.cidrs,
            vec!["10.100.0.0/16".parse::<IpNet>().unwrap()]
        );

        let obj = load_str(r#"{"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.99.0.0/16"]}}"#, "t").unwrap();
        snap.custom = obj.custom;
        assert_eq!(
            detect(&snap).service.source,
            ServiceCidrSource::ServiceCidrObject
        );
        assert_eq!(
            detect(&ClusterSnapshot::default()).service.source,
            ServiceCidrSource::Unknown
        );
    }

    fn node(provider: &str, kubelet: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            provider_id: Some(provider.into()),
            kubelet_version: Some(kubelet.into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            addresses: vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "10.0.0.5".into(),
            }],
            ..NodeInfo::default()
        }
    }

    #[rstest]
    #[case::aks(node("azure:///subscriptions/x", "v1.30.1", &[("kubernetes.azure.com/cluster", "c")]), Some(Platform::Aks))]
    #[case::gke(node("gce://p/z/n", "v1.30.1-gke.100", &[("cloud.google.com/gke-nodepool", "p")]), Some(Platform::Gke))]
    #[case::eks(node("aws:///eu-west-1a/i-1", "v1.31.4-eks-aeac579", &[]), Some(Platform::Eks))]
    #[case::rke2(node("", "v1.30.1+rke2r1", &[]), Some(Platform::Rke2))]
    #[case::k3s(node("k3s://n", "v1.30.1+k3s1", &[]), Some(Platform::K3s))]
    #[case::kubeadm(node("", "v1.32.2", &[]), None)]
    fn managed_platforms_are_recognised(#[case] n: NodeInfo, #[case] want: Option<Platform>) {
        let snap = ClusterSnapshot {
            nodes: vec![n],
            ..ClusterSnapshot::default()
        };
        assert_eq!(detect(&snap).platform.map(|p| p.platform), want);
    }

    #[test]
    fn node_networks_use_calico_prefixes_when_known() {
        let mut n = node("", "v1.32.2", &[]);
        n.annotations
            .insert("projectcalico.org/IPv4Address".into(), "10.0.0.5/24".into());
        let snap = ClusterSnapshot {
            nodes: vec![
                n,
                NodeInfo {
                    name: "m".into(),
                    addresses: vec![NodeAddress {
                        type_: "InternalIP".into(),
                        address: "fd00::9".into(),
                    }],
                    ..NodeInfo::default()
                },
            ],
            ..ClusterSnapshot::default()
        };
        let facts = detect(&snap);
        assert_eq!(
            facts.nodes[0].networks,
            vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            facts.nodes[1].networks,
            vec!["fd00::9/128".parse::<IpNet>().unwrap()]
        );
        assert!(facts.ip_families.ipv4 && facts.ip_families.ipv6);
    }

    proptest::proptest! {
        #[test]
        fn net_conf_parser_never_panics(text in "\\PC{0,200}") {
            let _ = parse_net_conf(&text);
        }

        #[test]
        fn detect_never_panics_on_any_net_conf(network in "[0-9a-f:./]{0,20}", backend in "[a-zA-Z-]{0,10}", port in proptest::num::i64::ANY) {
            let text = format!(r#"{{"Network": "{network}", "Backend": {{"Type": "{backend}", "Port": {port}}}}}"#);
            let _ = detect(&flannel_snapshot(&text));
        }
    }
}
