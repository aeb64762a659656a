//! Calico, installed from the manifest or by the Tigera operator.
//!
//! ```text
//! Installation "default" (operator) │ calico-node DaemonSet (calico-system: operator,
//! calico-config ConfigMap           │ kube-system: manifest) │ IPPool objects
//!   ├─ pools:         IPPool objects > the Installation's ipPools > calico-node's env
//!   ├─ Felix:         FelixConfiguration "default", FELIX_* env, linuxDataplane: BPF
//!   │                 (VXLAN port and VNI, eBPF, WireGuard)
//!   ├─ encapsulation: VXLAN > IP-in-IP > none (BGP), from the enabled pools' modes
//!   ├─ autodetection: nodeAddressAutodetectionV4 / IP_AUTODETECTION_METHOD (the cilium_host trap)
//!   ├─ BGP:           calicoNetwork.bgp, calico_backend, CALICO_NETWORKING_BACKEND
//!   └─ removal:       what deleting Calico means for this kind of install
//!   ▼
//! SourceCni { cni: calico, pod CIDRs of the enabled pools, encapsulation, port, VNI,
//!             CalicoFacts }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use serde_json::Value;

use super::common::{cm_data, ds_env, ds_ref, str_at};
use crate::{
    facts::{
        CalicoAutodetect, CalicoFacts, CalicoInstall, CalicoPool, CniKind, Encapsulation, SourceCni,
    },
    snapshot::{ClusterSnapshot, CustomObject, ObjectRef},
};

/// Calico's VXLAN port and VNI when nothing sets them.
const DEFAULT_VXLAN_PORT: u16 = 4789;
const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Calico's WireGuard port when Felix does not set one.
const DEFAULT_WIREGUARD_PORT: u16 = 51820;

/// Where Calico shows itself in a snapshot.
struct Install<'a> {
    /// The operator's `Installation` named `default`.
    installation: Option<&'a CustomObject>,
    /// calico-node, in calico-system (operator) or kube-system (manifest).
    node_ds: Option<&'a DaemonSet>,
    /// The manifest's kube-system/calico-config.
    calico_config: Option<&'a ConfigMap>,
    /// IPPool objects, of either API group.
    crd_pools: Vec<&'a CustomObject>,
    /// Installed by the Tigera operator.
    operator: bool,
    /// calico-node's env.
    env: BTreeMap<String, String>,
}

impl<'a> Install<'a> {
    /// Calico's objects in the snapshot; `None` when there are none.
    fn find(snap: &'a ClusterSnapshot) -> Option<Self> {
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
        let env = node_ds
            .map(|d| ds_env(d, Some("calico-node")))
            .unwrap_or_default();
        Some(Self {
            installation,
            node_ds,
            calico_config,
            crd_pools,
            operator,
            env,
        })
    }
}

/// Calico, from whatever of its objects the snapshot has; `None` when it has none.
pub(super) fn detect_calico(snap: &ClusterSnapshot) -> Option<SourceCni> {
    let found = Install::find(snap)?;
    let mut source = SourceCni {
        cni: CniKind::Calico,
        ..SourceCni::default()
    };
    let mut calico = CalicoFacts {
        install: if found.operator {
            CalicoInstall::Operator
        } else {
            CalicoInstall::Manifest
        },
        namespace: if found.operator {
            "calico-system"
        } else {
            "kube-system"
        }
        .to_owned(),
        vxlan_port: DEFAULT_VXLAN_PORT,
        vxlan_vni: DEFAULT_VXLAN_VNI,
        ..CalicoFacts::default()
    };
    source.evidence.push(if found.operator {
        "Calico installed by the Tigera operator (Installation default / calico-system)".to_owned()
    } else {
        "Calico installed from the manifest (calico-node in kube-system)".to_owned()
    });
    calico.pools = pools(&found, &mut source.evidence);
    let wireguard = felix(snap, &found, &mut calico);
    let enabled: Vec<&CalicoPool> = calico.pools.iter().filter(|p| !p.disabled).collect();
    source.pod_cidrs = enabled.iter().map(|p| p.cidr).collect();
    source.pod_cidrs.sort();
    source.pod_cidrs.dedup();
    encapsulation(&enabled, &calico, wireguard, &mut source);
    calico.autodetect = autodetect(&found);
    calico.bgp = bgp(&found);
    source.objects.extend(removal_objects(snap, &found));
    source.calico = Some(calico);
    Some(source)
}

/// The pools, sorted by name: IPPool objects first; else the Installation's; else, for a
/// manifest install, the one calico-node creates from its env.
fn pools(found: &Install<'_>, evidence: &mut Vec<String>) -> Vec<CalicoPool> {
    let mut pools = crd_pools(&found.crd_pools, evidence);
    if pools.is_empty()
        && let Some(inst) = found.installation
    {
        pools = installation_pools(inst);
    }
    if pools.is_empty() && !found.operator {
        pools.extend(manifest_pool(found, evidence));
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    pools
}

/// IPPool objects (the first of each name: both API groups may list the same pool).
fn crd_pools(objects: &[&CustomObject], evidence: &mut Vec<String>) -> Vec<CalicoPool> {
    let mut pools = Vec::new();
    let mut seen = BTreeSet::new();
    for p in objects {
        if !seen.insert(p.name.clone()) {
            continue;
        }
        let spec = p.spec().cloned().unwrap_or(Value::Null);
        let Some(cidr) = spec
            .get("cidr")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<IpNet>().ok())
        else {
            evidence.push(format!("IPPool {} has no valid cidr; ignored", p.name));
            continue;
        };
        pools.push(CalicoPool {
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
    pools
}

/// The operator Installation's `calicoNetwork.ipPools`, their `encapsulation` read as the
/// VXLAN and IP-in-IP modes an IPPool would have.
fn installation_pools(inst: &CustomObject) -> Vec<CalicoPool> {
    let mut pools = Vec::new();
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
        pools.push(CalicoPool {
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
    pools
}

/// The default pool calico-node creates from `CALICO_IPV4POOL_*` when no IPPool exists yet.
fn manifest_pool(found: &Install<'_>, evidence: &mut Vec<String>) -> Option<CalicoPool> {
    let env = &found.env;
    let cidr_text = env
        .get("CALICO_IPV4POOL_CIDR")
        .map_or("192.168.0.0/16", String::as_str);
    let cidr = cidr_text.parse::<IpNet>().ok()?;
    evidence.push(format!(
        "no IPPool objects: pool {cidr} from calico-node's env{}",
        if env.contains_key("CALICO_IPV4POOL_CIDR") {
            ""
        } else {
            " default (CALICO_IPV4POOL_CIDR unset)"
        }
    ));
    Some(CalicoPool {
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
        source: found.node_ds.map_or_else(
            || ObjectRef::namespaced("DaemonSet", "kube-system", "calico-node"),
            ds_ref,
        ),
    })
}

/// Felix's settings (VXLAN port and VNI, eBPF, WireGuard) into `calico`, from the
/// FelixConfiguration, then calico-node's env, then the Installation's dataplane. Returns
/// whether WireGuard is on.
fn felix(snap: &ClusterSnapshot, found: &Install<'_>, calico: &mut CalicoFacts) -> bool {
    let config = snap
        .custom_of("crd.projectcalico.org", "FelixConfiguration")
        .chain(snap.custom_of("projectcalico.org", "FelixConfiguration"))
        .find(|f| f.name == "default");
    let mut wireguard = false;
    if let Some(f) = config {
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
                    .unwrap_or(DEFAULT_WIREGUARD_PORT),
            );
        }
    }
    if let Some(p) = found
        .env
        .get("FELIX_VXLANPORT")
        .and_then(|p| p.parse().ok())
    {
        calico.vxlan_port = p;
    }
    if found
        .env
        .get("FELIX_BPFENABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        calico.bpf_enabled = true;
    }
    if let Some(inst) = found.installation
        && str_at(&inst.object, &["spec", "calicoNetwork", "linuxDataplane"]) == Some("BPF")
    {
        calico.bpf_enabled = true;
    }
    wireguard
}

/// Whether a pool's `vxlanMode` / `ipipMode` turns the encapsulation on.
fn mode_enabled(mode: &str) -> bool {
    matches!(mode, "Always" | "CrossSubnet")
}

/// The overlay the enabled pools use (VXLAN if any pool does, else IP-in-IP, else none: BGP),
/// its port and VNI, and WireGuard's port when the overlay has none.
fn encapsulation(
    enabled: &[&CalicoPool],
    calico: &CalicoFacts,
    wireguard: bool,
    source: &mut SourceCni,
) {
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
            calico.wireguard_port.unwrap_or(DEFAULT_WIREGUARD_PORT)
        ));
        if source.port.is_none() {
            source.port = calico.wireguard_port;
        }
    }
}

/// How Calico picks node addresses: with `firstFound` it may pick Cilium's `cilium_host`
/// once Cilium creates it, and break node routing cluster-wide.
fn autodetect(found: &Install<'_>) -> CalicoAutodetect {
    match found.installation {
        Some(inst) => operator_autodetect(inst),
        None => manifest_autodetect(found),
    }
}

/// `nodeAddressAutodetectionV4` of the operator's Installation.
fn operator_autodetect(inst: &CustomObject) -> CalicoAutodetect {
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
}

/// calico-node's `IP_AUTODETECTION_METHOD` (and `IP`) in a manifest install.
fn manifest_autodetect(found: &Install<'_>) -> CalicoAutodetect {
    let method = found.env.get("IP_AUTODETECTION_METHOD").cloned();
    let ip = found.env.get("IP").map(String::as_str);
    let first_found = match method.as_deref() {
        None => ip.is_none_or(|ip| ip == "autodetect"),
        Some(m) => m.trim() == "first-found",
    };
    CalicoAutodetect {
        method: method
            .unwrap_or_else(|| "first-found (default: IP_AUTODETECTION_METHOD not set)".to_owned()),
        first_found,
        source: found.node_ds.map(ds_ref),
    }
}

/// Whether Calico runs BGP (bird).
fn bgp(found: &Install<'_>) -> bool {
    match found.installation {
        Some(inst) => {
            str_at(&inst.object, &["spec", "calicoNetwork", "bgp"]).is_none_or(|b| b == "Enabled")
        }
        None => {
            found
                .calico_config
                .and_then(|c| cm_data(c, "calico_backend"))
                .is_some_and(|b| b == "bird")
                || found
                    .env
                    .get("CALICO_NETWORKING_BACKEND")
                    .is_some_and(|b| b == "bird")
        }
    }
}

/// What removing Calico deletes: the operator, its Installation and namespaces; or the
/// manifest's DaemonSet, controllers and ConfigMap.
fn removal_objects(snap: &ClusterSnapshot, found: &Install<'_>) -> Vec<ObjectRef> {
    let mut objects = Vec::new();
    let deployment = |ns: &str, name: &str| {
        snap.workloads
            .iter()
            .any(|w| w.kind == "Deployment" && w.namespace == ns && w.name == name)
    };
    if found.operator {
        if let Some(inst) = found.installation {
            objects.push(inst.object_ref());
        }
        if deployment("tigera-operator", "tigera-operator") {
            objects.push(ObjectRef::namespaced(
                "Deployment",
                "tigera-operator",
                "tigera-operator",
            ));
        }
        for ns in ["calico-system", "calico-apiserver", "tigera-operator"] {
            if snap.namespaces.iter().any(|n| n == ns) {
                objects.push(ObjectRef::cluster("Namespace", ns));
            }
        }
    } else {
        if let Some(ds) = found.node_ds {
            objects.push(ds_ref(ds));
        }
        if deployment("kube-system", "calico-kube-controllers") {
            objects.push(ObjectRef::namespaced(
                "Deployment",
                "kube-system",
                "calico-kube-controllers",
            ));
        }
        if found.calico_config.is_some() {
            objects.push(ObjectRef::namespaced(
                "ConfigMap",
                "kube-system",
                "calico-config",
            ));
        }
    }
    objects
}
