//! Flannel (and Canal, which keeps Flannel's net-conf.json in its own ConfigMap).
//!
//! ```text
//! kube-flannel-cfg (kube-flannel, then kube-system), canal-config, rke2-canal-config
//!   └─ net-conf.json: Network, IPv6Network, EnableIPv4/6, SubnetLen,
//!                     Backend.{Type, Port | ListenPort, ListenPortV6, VNI, MTU}
//!      keys matched case-insensitively, as Go's encoding/json does
//! kube-flannel-ds*, canal, rke2-canal DaemonSets (none: embedded Flannel, k3s)
//!   ▼
//! SourceCni { cni: flannel, pod CIDRs, encapsulation from the backend, port (or the backend's
//!             default), VNI, MTU, objects to remove }
//! ```

use std::str::FromStr;

use ipnet::IpNet;
use serde_json::Value;

use super::common::cm_data;
use crate::{
    facts::{CniKind, Encapsulation, FlannelFacts, FlannelNetConf, SourceCni},
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

/// Flannel, from its net-conf.json and DaemonSets; `None` when there is no Flannel ConfigMap.
pub(super) fn detect_flannel(snap: &ClusterSnapshot) -> Option<SourceCni> {
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
