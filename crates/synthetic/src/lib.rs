//! Synthetic Kubernetes clusters whose objects look like real ones.
//!
//! ```text
//! Params { nodes, pods_per_node, cni, zones, seed } ──► objects(): an iterator of JSON objects
//!     nodes, namespaces, the CNI's objects, kubeadm-config, Services,
//!     Deployments / ReplicaSets / StatefulSets / PDBs, then pods, node by node
//!                                                  └──► write_list_json(): a `kind: List`,
//!                                                       streamed to any writer
//! ```
//!
//! Pods carry what real pods carry (labels, annotations, owner references, managedFields, two
//! containers with env, probes, resources and mounts, a projected service-account volume,
//! tolerations, and a full status), about 7 KB of JSON each, so benchmarks measure decoding
//! the way a real `kubectl get pods -o json` would make the tool decode. Nothing is held in
//! memory beyond the object being produced: 150,000 pods stream in constant memory.
//! Deterministic for a seed.

use std::{fmt, io::Write, str::FromStr};

use serde_json::{Value, json};

/// The old CNI of the synthetic cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cni {
    /// Flannel, VXLAN, 10.244.0.0/16, in `kube-flannel`.
    Flannel,
    /// Calico from the manifest, IPIP, in `kube-system`.
    Calico,
    /// Calico from the Tigera operator, VXLAN, in `calico-system`.
    CalicoOperator,
    /// The AWS VPC CNI.
    AwsVpcCni,
}

impl FromStr for Cni {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flannel" => Ok(Cni::Flannel),
            "calico" => Ok(Cni::Calico),
            "calico-operator" => Ok(Cni::CalicoOperator),
            "aws-vpc-cni" | "aws" => Ok(Cni::AwsVpcCni),
            _ => Err(format!(
                "unknown cni `{s}`: expected flannel, calico, calico-operator or aws-vpc-cni"
            )),
        }
    }
}

impl fmt::Display for Cni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cni::Flannel => "flannel",
            Cni::Calico => "calico",
            Cni::CalicoOperator => "calico-operator",
            Cni::AwsVpcCni => "aws-vpc-cni",
        })
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Nodes (the first `control_planes` are control-plane nodes).
    pub nodes: usize,
    /// Pods per node, DaemonSet pods included.
    pub pods_per_node: usize,
    /// Control-plane nodes.
    pub control_planes: usize,
    /// The old CNI.
    pub cni: Cni,
    /// Availability zones the nodes spread over.
    pub zones: usize,
    /// Replicas per application (Deployment); each gets a PDB.
    pub replicas: usize,
    /// Seed for every random choice.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            nodes: 3,
            pods_per_node: 10,
            control_planes: 1,
            cni: Cni::Flannel,
            zones: 3,
            replicas: 3,
            seed: 1,
        }
    }
}

/// Why a parameter string was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid synthetic cluster parameters `{input}`: {reason} (expected e.g. nodes=5000,pods-per-node=30,cni=flannel)"
)]
pub struct ParamsError {
    /// What was given.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

impl FromStr for Params {
    type Err = ParamsError;

    /// `nodes=5000,pods-per-node=30,cni=flannel,zones=3,replicas=3,control-planes=3,seed=7`.
    fn from_str(s: &str) -> Result<Self, ParamsError> {
        let err = |reason: String| ParamsError {
            input: s.to_owned(),
            reason,
        };
        let mut p = Params::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(format!("`{part}` is not key=value")))?;
            let num = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| err(format!("`{k}` needs a number, got `{v}`")))
            };
            match k {
                "nodes" => p.nodes = num(v)?,
                "pods-per-node" => p.pods_per_node = num(v)?,
                "control-planes" => p.control_planes = num(v)?,
                "zones" => p.zones = num(v)?.max(1),
                "replicas" => p.replicas = num(v)?.max(1),
                "seed" => {
                    p.seed = v
                        .parse()
                        .map_err(|_| err(format!("`seed` needs a number, got `{v}`")))?
                }
                "cni" => p.cni = v.parse().map_err(err)?,
                _ => return Err(err(format!("unknown key `{k}`"))),
            }
        }
        if p.nodes == 0 {
            return Err(err("nodes must be at least 1".into()));
        }
        p.control_planes = p.control_planes.min(p.nodes);
        Ok(p)
    }
}

/// splitmix64: small, fast, deterministic.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }

    /// A kubectl-style five-character suffix that is unique for every `n` below 27^5: the
    /// index scrambled by a bijection, so names look random but never collide.
    fn unique_suffix(n: usize) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        // 27^5; 1_000_003 is coprime to 3, so multiplying by it permutes the residues.
        let mut x = (n as u64).wrapping_mul(1_000_003) % 14_348_907;
        (0..5)
            .map(|_| {
                let c = char::from(ALPHA[usize::try_from(x % 27).unwrap_or(0)]);
                x /= 27;
                c
            })
            .collect()
    }

    fn uid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

const TS: &str = "2026-11-20T09:00:00Z";

/// The old CNI's pod network (Flannel's grows to a /9 beyond 256 nodes, one /24 a node).
pub fn pod_network(p: &Params) -> &'static str {
    match p.cni {
        Cni::Flannel if p.nodes > 256 => "10.128.0.0/9",
        Cni::Flannel => "10.244.0.0/16",
        Cni::Calico => "10.233.64.0/18",
        Cni::CalicoOperator => "192.168.0.0/16",
        Cni::AwsVpcCni => "10.0.0.0/8",
    }
}

/// Flannel's per-node /24.
fn flannel_node_cidr(p: &Params, node: usize) -> String {
    if p.nodes > 256 {
        format!("10.{}.{}.0/24", 128 + node / 256, node % 256)
    } else {
        format!("10.244.{}.0/24", node % 256)
    }
}

/// The name of node `i`.
pub fn node_name(p: &Params, i: usize) -> String {
    if i < p.control_planes {
        format!("cp-{i}")
    } else {
        format!("node-{:05}", i - p.control_planes)
    }
}

/// The node's InternalIP: 172.20.x.y (disjoint from every synthetic pod network).
pub fn node_ip(i: usize) -> String {
    format!(
        "172.{}.{}.{}",
        20 + i / 62_500,
        (i / 250) % 250,
        i % 250 + 2
    )
}

/// The address of pod number `k` on a node, in the old pod network.
fn pod_ip(p: &Params, node: usize, k: usize) -> String {
    match p.cni {
        Cni::Flannel => {
            let cidr = flannel_node_cidr(p, node);
            let base = cidr.trim_end_matches(".0/24");
            format!("{base}.{}", k % 250 + 2)
        }
        Cni::AwsVpcCni => {
            let g = node * p.pods_per_node.max(1) + k;
            format!("10.{}.{}.{}", 1 + g / 62_500, (g / 250) % 250, g % 250 + 2)
        }
        // Calico hands out /26 (operator) or /24 (manifest) blocks; close enough for a model.
        Cni::Calico => format!(
            "10.233.{}.{}",
            64 + (node / 4) % 64,
            (node % 4) * 64 + k % 62 + 1
        ),
        Cni::CalicoOperator => format!(
            "192.168.{}.{}",
            (node / 4) % 256,
            (node % 4) * 64 + k % 62 + 1
        ),
    }
}

fn node_object(p: &Params, i: usize, rng: &mut Rng) -> Value {
    let name = node_name(p, i);
    let zone = format!("zone-{}", i % p.zones.max(1));
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": zone,
        "topology.kubernetes.io/region": "region-1", "node.kubernetes.io/instance-type": "m6i.2xlarge"
    });
    let cp = i < p.control_planes;
    if cp {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let mut spec = json!({});
    if matches!(p.cni, Cni::Flannel) {
        let cidr = flannel_node_cidr(p, i);
        spec["podCIDR"] = json!(cidr);
        spec["podCIDRs"] = json!([cidr]);
    }
    if cp {
        spec["taints"] =
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": rng.uid(), "resourceVersion": "1000", "creationTimestamp": TS, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": node_ip(i)}, {"type": "Hostname", "address": name}],
            "allocatable": {"cpu": "7910m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": TS, "lastTransitionTime": TS},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": TS, "lastTransitionTime": TS},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": TS, "lastTransitionTime": TS},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": TS, "lastTransitionTime": TS}],
            "nodeInfo": {"architecture": "amd64", "bootID": rng.uid(), "containerRuntimeVersion": "containerd://1.7.24", "kernelVersion": "6.1.0-28-amd64",
                         "kubeProxyVersion": "v1.32.2", "kubeletVersion": "v1.32.2", "machineID": rng.hex(32), "operatingSystem": "linux",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": rng.uid()},
            "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320_368}]
        }
    })
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}, "status": {"phase": "Active"}})
}

fn container(name: &str, image: &str, rng: &mut Rng) -> Value {
    let env: Vec<Value> = ["LOG_LEVEL", "HTTP_PORT", "OTEL_EXPORTER_OTLP_ENDPOINT", "FEATURE_FLAGS", "CACHE_TTL", "REGION", "DB_POOL_SIZE", "GOMAXPROCS"]
        .iter()
        .map(|k| json!({"name": k, "value": format!("{}-{}", k.to_lowercase(), rng.hex(8))}))
        .chain(std::iter::once(json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}})))
        .collect();
    json!({
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["--config=/etc/app/config.yaml", "--port=8080", "--metrics-port=9090"],
        "env": env,
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"mountPath": "/etc/app", "name": "config", "readOnly": true},
                         {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": true}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
    })
}

/// What a pod belongs to.
enum Owner<'a> {
    ReplicaSet {
        name: &'a str,
        app: &'a str,
        hash: &'a str,
    },
    StatefulSet {
        name: &'a str,
        index: usize,
    },
    DaemonSet {
        name: &'a str,
    },
    Bare,
}

#[allow(clippy::too_many_lines, clippy::too_many_arguments)] // one realistic pod, spelled out
fn pod(
    p: &Params,
    node: usize,
    k: usize,
    namespace: &str,
    name: &str,
    owner: &Owner<'_>,
    empty_dir: bool,
    rng: &mut Rng,
) -> Value {
    let node_name = node_name(p, node);
    let host_network = matches!(owner, Owner::DaemonSet { .. });
    let ip = if host_network {
        node_ip(node)
    } else {
        pod_ip(p, node, k)
    };
    let (labels, owner_refs) = match owner {
        Owner::ReplicaSet { name, app, hash } => (
            json!({"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop", "pod-template-hash": hash, "version": "v2"}),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rng.uid(), "controller": true, "blockOwnerDeletion": true}]),
        ),
        Owner::StatefulSet { name, index } => (
            json!({"app": name, "statefulset.kubernetes.io/pod-name": format!("{name}-{index}"), "apps.kubernetes.io/pod-index": index.to_string(), "controller-revision-hash": format!("{name}-{}", rng.hex(10))}),
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": rng.uid(), "controller": true, "blockOwnerDeletion": true}]),
        ),
        Owner::DaemonSet { name, .. } => (
            json!({"k8s-app": name, "controller-revision-hash": rng.hex(10), "pod-template-generation": "1"}),
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": rng.uid(), "controller": true, "blockOwnerDeletion": true}]),
        ),
        Owner::Bare => (json!({"run": name}), json!([])),
    };
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}}),
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}),
    ];
    if empty_dir {
        volumes.push(json!({"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}));
    }
    let containers = if host_network {
        vec![container(
            match owner {
                Owner::DaemonSet { name, .. } => name,
                _ => "agent",
            },
            "registry.example/agent:v1.0.0",
            rng,
        )]
    } else {
        vec![
            container("app", "registry.example/shop/app:v2.14.3", rng),
            container("sidecar", "registry.example/proxy:v1.31.2", rng),
        ]
    };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or_default();
            json!({"name": c["name"], "image": image, "imageID": format!("{image}@sha256:{}", rng.hex(64)),
                   "containerID": format!("containerd://{}", rng.hex(64)), "ready": true, "restartCount": 0, "started": true,
                   "state": {"running": {"startedAt": TS}}, "lastState": {},
                   "volumeMounts": [{"mountPath": "/etc/app", "name": "config", "readOnly": true, "recursiveReadOnly": "Disabled"}]})
        })
        .collect();
    let managed = json!([
        {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager", "operation": "Update", "time": TS,
         "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}, "k:{\"uid\":\"x\"}": {}}},
                      "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:args": {}, "f:env": {}, "f:image": {}, "f:livenessProbe": {}, "f:ports": {}, "f:readinessProbe": {}, "f:resources": {}}},
                                 "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {}}}},
        {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet", "operation": "Update", "subresource": "status", "time": TS,
         "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                                                    "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                                   "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"x\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}}}
    ]);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": rng.uid(), "resourceVersion": (100_000 + rng.below(900_000)).to_string(),
            "creationTimestamp": TS, "generateName": format!("{name}-"), "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "kubectl.kubernetes.io/restartedAt": TS},
            "ownerReferences": owner_refs, "managedFields": managed
        },
        "spec": {
            "nodeName": node_name, "hostNetwork": host_network, "containers": containers, "volumes": volumes,
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {"fsGroup": 2000, "runAsUser": 1000},
            "serviceAccount": "default", "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
            "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels.clone()}, "topologyKey": "kubernetes.io/hostname"}}]}}
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable", "startTime": TS,
            "hostIP": node_ip(node), "hostIPs": [{"ip": node_ip(node)}], "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": TS},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": TS},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": TS},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": TS},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": TS}],
            "containerStatuses": statuses
        }
    })
}

fn daemonset(name: &str, namespace: &str, nodes: usize, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": {"k8s-app": name}, "generation": 1},
        "spec": {"selector": {"matchLabels": {"k8s-app": name}},
                 "template": {"metadata": {"labels": {"k8s-app": name}},
                              "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}],
                                       "containers": [{"name": name, "image": format!("registry.example/{name}:v1"), "env": env}]}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}},
        "status": {"currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberAvailable": nodes, "numberMisscheduled": 0,
                   "numberReady": nodes, "observedGeneration": 1, "updatedNumberScheduled": nodes}
    })
}

/// The CNI's objects and DaemonSet name/namespace.
fn cni_objects(p: &Params) -> (Vec<Value>, &'static str, &'static str) {
    match p.cni {
        Cni::Flannel => (
            vec![
                namespace("kube-flannel"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
                       "data": {"net-conf.json": format!("{{\n  \"Network\": \"{}\",\n  \"EnableNFTables\": false,\n  \"Backend\": {{\n    \"Type\": \"vxlan\"\n  }}\n}}\n", pod_network(p)),
                                "cni-conf.json": "{\"name\": \"cbr0\", \"cniVersion\": \"0.3.1\", \"plugins\": [{\"type\": \"flannel\"}]}"}}),
                daemonset("kube-flannel-ds", "kube-flannel", p.nodes, &[]),
            ],
            "kube-flannel-ds",
            "kube-flannel",
        ),
        Cni::Calico => (
            vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config", "namespace": "kube-system"}, "data": {"calico_backend": "bird", "veth_mtu": "1440"}}),
                daemonset(
                    "calico-node",
                    "kube-system",
                    p.nodes,
                    &[
                        ("CALICO_IPV4POOL_CIDR", "10.233.64.0/18"),
                        ("CALICO_IPV4POOL_IPIP", "Always"),
                        ("IP_AUTODETECTION_METHOD", "kubernetes-internal-ip"),
                    ],
                ),
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-pool"},
                       "spec": {"cidr": "10.233.64.0/18", "ipipMode": "Always", "vxlanMode": "Never", "natOutgoing": true, "blockSize": 24}}),
            ],
            "calico-node",
            "kube-system",
        ),
        Cni::CalicoOperator => (
            vec![
                namespace("calico-system"),
                namespace("tigera-operator"),
                json!({"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
                       "spec": {"calicoNetwork": {"ipPools": [{"cidr": "192.168.0.0/16", "encapsulation": "VXLAN", "blockSize": 26}],
                                                  "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"}}}}),
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
                       "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Always", "natOutgoing": true, "blockSize": 26}}),
                daemonset(
                    "calico-node",
                    "calico-system",
                    p.nodes,
                    &[("IP_AUTODETECTION_METHOD", "kubernetes-internal-ip")],
                ),
            ],
            "calico-node",
            "calico-system",
        ),
        Cni::AwsVpcCni => (
            vec![daemonset(
                "aws-node",
                "kube-system",
                p.nodes,
                &[
                    ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "false"),
                    ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.245.0.0/16"),
                ],
            )],
            "aws-node",
            "kube-system",
        ),
    }
}

/// The slots of app pods on nodes before `node` taken by a StatefulSet replica (every tenth
/// node) or a bare debug pod (every 97th), when nodes have room for them.
fn taken_before(p: &Params, node: usize) -> usize {
    match p.pods_per_node.saturating_sub(2) {
        0 => 0,
        1 => node.div_ceil(10),
        _ => node.div_ceil(10) + node.div_ceil(97),
    }
}

/// How many application pods the cluster has.
fn app_pods(p: &Params) -> usize {
    p.nodes * p.pods_per_node.saturating_sub(2) - taken_before(p, p.nodes)
}

/// How many application Deployments the cluster has.
fn apps(p: &Params) -> usize {
    app_pods(p).div_ceil(p.replicas.max(1))
}

/// How many pods app `a` has (app pod `i` belongs to app `i % apps`): `replicas`, fewer for
/// the last apps when the pods do not divide evenly. Its Deployment, ReplicaSet and budget say
/// the same, as on a settled cluster.
fn replicas_of(p: &Params, a: usize) -> usize {
    app_pods(p).saturating_sub(a).div_ceil(apps(p).max(1))
}

/// Every object of the cluster, in a stable order: cluster objects first, then pods node by
/// node. Constant memory: objects are produced one at a time.
pub fn objects(p: &Params) -> impl Iterator<Item = Value> + '_ {
    let mut rng = Rng(p.seed);
    let mut head: Vec<Value> = Vec::new();
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "shop",
    ] {
        head.push(namespace(ns));
    }
    head.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
                     "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443, "targetPort": 6443}], "type": "ClusterIP"}}));
    head.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                     "data": {"ClusterConfiguration": format!("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: {}\n  serviceSubnet: 10.96.0.0/16\n", pod_network(p))}}));
    for i in 0..p.nodes {
        head.push(node_object(p, i, &mut rng));
    }
    let (cni, _, _) = cni_objects(p);
    head.extend(cni);
    // One StatefulSet with a replica on every tenth node, guarded by a PDB.
    let db_replicas = p.nodes.div_ceil(10);
    head.push(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop", "uid": rng.uid(), "labels": {"app": "db"}},
                     "spec": {"replicas": db_replicas, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}}, "status": {"readyReplicas": db_replicas}}));
    head.push(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db", "namespace": "shop"},
                     "spec": {"selector": {"matchLabels": {"app": "db"}}, "maxUnavailable": 1},
                     "status": {"currentHealthy": db_replicas, "desiredHealthy": db_replicas.saturating_sub(1), "disruptionsAllowed": 1, "expectedPods": db_replicas}}));
    head.push(daemonset("kube-proxy", "kube-system", p.nodes, &[]));
    let n_apps = apps(p);
    for a in 0..n_apps {
        let app = format!("app-{a:05}");
        let replicas = replicas_of(p, a);
        let rs = format!("{app}-7d9c5b8f6d");
        head.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": "shop", "uid": rng.uid(), "labels": {"app": app}},
                         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}}, "status": {"readyReplicas": replicas}}));
        head.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": rs, "namespace": "shop", "uid": rng.uid(), "labels": {"app": app},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": rng.uid(), "controller": true}]},
                         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app, "pod-template-hash": "7d9c5b8f6d"}}}, "status": {"readyReplicas": replicas}}));
        // What the disruption controller would say of all `replicas` pods healthy.
        let (budget, desired) = if a % 3 == 0 {
            (json!({"minAvailable": "50%"}), replicas.div_ceil(2))
        } else {
            (json!({"maxUnavailable": 1}), replicas.saturating_sub(1))
        };
        let mut pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": app, "namespace": "shop"},
                             "spec": {"selector": {"matchLabels": {"app": app}}},
                             "status": {"currentHealthy": replicas, "desiredHealthy": desired, "disruptionsAllowed": replicas - desired, "expectedPods": replicas}});
        if let (Some(spec), Some(b)) = (pdb["spec"].as_object_mut(), budget.as_object()) {
            spec.extend(b.clone());
        }
        head.push(pdb);
    }
    let params = p;
    let (_, cni_ds, cni_ns) = cni_objects(p);
    let app_pods_per_node = p.pods_per_node.saturating_sub(2);
    let pods = (0..p.nodes).flat_map(move |node| {
        let mut rng = Rng(params.seed ^ (node as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut out = Vec::with_capacity(params.pods_per_node);
        if params.pods_per_node >= 1 {
            let s = Rng::unique_suffix(node);
            out.push(pod(
                params,
                node,
                0,
                cni_ns,
                &format!("{cni_ds}-{s}"),
                &Owner::DaemonSet { name: cni_ds },
                false,
                &mut rng,
            ));
        }
        if params.pods_per_node >= 2 {
            let s = Rng::unique_suffix(node);
            out.push(pod(
                params,
                node,
                1,
                "kube-system",
                &format!("kube-proxy-{s}"),
                &Owner::DaemonSet { name: "kube-proxy" },
                false,
                &mut rng,
            ));
        }
        // App pods are numbered across the cluster, skipping the special slots.
        let mut next_app = node * app_pods_per_node - taken_before(params, node);
        for k in 0..app_pods_per_node {
            let global = node * app_pods_per_node + k;
            // Every tenth node runs a StatefulSet replica; every 97th a bare debug pod.
            if k + 1 == app_pods_per_node && node.is_multiple_of(10) {
                let index = node / 10;
                out.push(pod(
                    params,
                    node,
                    k + 2,
                    "shop",
                    &format!("db-{index}"),
                    &Owner::StatefulSet { name: "db", index },
                    false,
                    &mut rng,
                ));
                continue;
            }
            if k + 2 == app_pods_per_node && node.is_multiple_of(97) {
                let name = format!("debug-{}", Rng::unique_suffix(node));
                out.push(pod(
                    params,
                    node,
                    k + 2,
                    "default",
                    &name,
                    &Owner::Bare,
                    false,
                    &mut rng,
                ));
                continue;
            }
            let app = format!("app-{:05}", next_app % n_apps.max(1));
            next_app += 1;
            let rs = format!("{app}-7d9c5b8f6d");
            let name = format!("{rs}-{}", Rng::unique_suffix(global));
            let empty_dir = global.is_multiple_of(17);
            out.push(pod(
                params,
                node,
                k + 2,
                "shop",
                &name,
                &Owner::ReplicaSet {
                    name: &rs,
                    app: &app,
                    hash: "7d9c5b8f6d",
                },
                empty_dir,
                &mut rng,
            ));
        }
        out
    });
    head.into_iter().chain(pods)
}

/// Streams the cluster as a `kind: List` in kubectl's JSON layout.
///
/// # Errors
/// When the writer fails.
pub fn write_list_json(p: &Params, mut w: impl Write) -> std::io::Result<()> {
    w.write_all(b"{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n")?;
    for (i, obj) in objects(p).enumerate() {
        if i > 0 {
            w.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut w, &obj)?;
    }
    w.write_all(b"\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn params_parse_and_refuse_nonsense() {
        let p: Params = "nodes=5000,pods-per-node=30,cni=calico-operator"
            .parse()
            .unwrap();
        assert_eq!(
            (p.nodes, p.pods_per_node, p.cni),
            (5000, 30, Cni::CalicoOperator)
        );
        assert!("nodes=0".parse::<Params>().is_err());
        assert!(
            "nodes=x"
                .parse::<Params>()
                .unwrap_err()
                .to_string()
                .contains("`nodes` needs a number")
        );
        assert!(
            "cni=weave"
                .parse::<Params>()
                .unwrap_err()
                .to_string()
                .contains("unknown cni")
        );
        assert!("colour=blue".parse::<Params>().is_err());
    }

    #[test]
    fn generation_is_deterministic_and_pods_are_realistically_sized() {
        let p: Params = "nodes=20,pods-per-node=30,seed=3".parse().unwrap();
        let a: Vec<Value> = objects(&p).collect();
        let b: Vec<Value> = objects(&p).collect();
        assert_eq!(a, b);
        let pods: Vec<&Value> = a.iter().filter(|o| o["kind"] == "Pod").collect();
        assert_eq!(pods.len(), 20 * 30);
        let bytes: usize = pods
            .iter()
            .map(|p| serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0))
            .sum();
        let avg = bytes / pods.len();
        assert!((6_000..=8_500).contains(&avg), "average pod is {avg} bytes");
    }

    /// A settled cluster: each app's Deployment, ReplicaSet and budget count the pods it has
    /// (the StatefulSet and debug pods take some nodes' slots; the last apps may have fewer
    /// pods), so no budget claims a pod that is not there.
    #[test]
    fn every_app_has_the_pods_its_controllers_and_budget_count() {
        for spec in [
            "nodes=100,pods-per-node=30",
            "nodes=97,pods-per-node=3,replicas=2",
            "nodes=11,pods-per-node=4",
        ] {
            let p: Params = spec.parse().unwrap();
            let objects: Vec<Value> = objects(&p).collect();
            let mut pods: BTreeMap<String, u64> = BTreeMap::new();
            for o in objects
                .iter()
                .filter(|o| o["kind"] == "Pod" && o["metadata"]["namespace"] == "shop")
            {
                if let Some(app) = o["metadata"]["labels"]["app"]
                    .as_str()
                    .filter(|a| a.starts_with("app-"))
                {
                    *pods.entry(app.to_owned()).or_default() += 1;
                }
            }
            assert_eq!(pods.len(), apps(&p), "{spec}");
            for o in &objects {
                let Some(name) = o["metadata"]["name"]
                    .as_str()
                    .filter(|n| n.starts_with("app-"))
                else {
                    continue;
                };
                let app = name.split('-').take(2).collect::<Vec<_>>().join("-");
                let have = pods[&app];
                match o["kind"].as_str() {
                    Some("Deployment" | "ReplicaSet") => {
                        assert_eq!(o["spec"]["replicas"], have, "{spec}: {name}")
                    }
                    Some("PodDisruptionBudget") => {
                        assert_eq!(o["status"]["expectedPods"], have, "{spec}: {name}");
                        assert_eq!(o["status"]["currentHealthy"], have, "{spec}: {name}");
                    }
                    _ => {}
                }
            }
        }
    }

    /// The JSON loader cuts the dump into objects and parses each from its bytes; the same
    /// text read as YAML (JSON is YAML) goes through a whole-document parser. Both must give
    /// the same snapshot, and so the same findings and fingerprint.
    #[test]
    fn the_sliced_json_loader_plans_the_same_as_a_whole_document_parse() {
        let spec = planner::MigrationSpec::from_yaml(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
             target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n\
             rollout: {drain: {deleteEmptyDirData: true}}\n",
            "t",
        )
        .unwrap();
        for cni in ["flannel", "calico-operator"] {
            let p: Params = format!("nodes=9,pods-per-node=8,cni={cni},control-planes=3")
                .parse()
                .unwrap();
            let mut buf = Vec::new();
            write_list_json(&p, &mut buf).unwrap();
            let sliced = planner::dump::load_reader(buf.as_slice(), cni).unwrap();
            let text = String::from_utf8(buf).unwrap();
            let whole = planner::dump::load_str(&format!("---\n{text}"), cni).unwrap();
            assert_eq!(
                serde_json::to_value(&sliced).unwrap(),
                serde_json::to_value(&whole).unwrap(),
                "{cni}"
            );
            let (a, b) = (planner::plan(&spec, &sliced), planner::plan(&spec, &whole));
            assert_eq!(a.fingerprint, b.fingerprint);
            assert_eq!(
                serde_json::to_value(&a.findings).unwrap(),
                serde_json::to_value(&b.findings).unwrap()
            );
            assert!(!a.findings.is_empty());
        }
    }

    #[test]
    fn the_dump_plans_like_a_real_cluster() {
        for cni in ["flannel", "calico", "calico-operator", "aws-vpc-cni"] {
            let p: Params = format!("nodes=12,pods-per-node=12,cni={cni},control-planes=3")
                .parse()
                .unwrap();
            let mut buf = Vec::new();
            write_list_json(&p, &mut buf).unwrap();
            let snap = planner::dump::load_reader(buf.as_slice(), cni).unwrap();
            assert_eq!(snap.nodes.len(), 12);
            assert_eq!(snap.pods.len(), 12 * 12);
            let facts = planner::detect::detect(&snap);
            assert_eq!(
                facts.source.cni.to_string(),
                if cni == "calico-operator" {
                    "calico"
                } else {
                    cni
                },
                "{cni}"
            );
            assert!(
                snap.pods
                    .iter()
                    .filter(|p| !p.host_network)
                    .all(|p| !p.pod_ips.is_empty())
            );
            assert_eq!(
                snap.nodes.iter().filter(|n| n.is_control_plane()).count(),
                3
            );
        }
    }
}
