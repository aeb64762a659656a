//! The [`Cluster`] trait: the domain verbs the executor uses, and [`KubeCluster`], their
//! implementation over `kube::Client`.
//!
//! The executor reaches the cluster only through this trait (no raw-client back door), so the
//! set of requests the tool can make is this file, and `cni-migrate rbac` can be kept in sync
//! with it by a test that records every request against the simulated API server.
//!
//! Verbs observe and act; they never wait. Waiting (for a pod to be gone, an agent to be
//! Ready) is the executor's job, under its own deadlines.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    Api,
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams},
    core::Request,
};
use planner::snapshot::{CustomObject, NodeInfo, PdbInfo, PodInfo};
use serde_json::json;

use crate::{
    ClusterError,
    discovery::{list_all, list_with},
    status_code,
    watch::Change,
};

/// The field manager the tool uses for server-side apply and records on its writes.
pub const FIELD_MANAGER: &str = "cni-migrate";

/// What an eviction request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Accepted: the pod is being deleted gracefully.
    Evicted,
    /// The pod no longer exists.
    Gone,
    /// Refused for now (429): a PodDisruptionBudget has no disruption left. Retry later.
    Blocked {
        /// The API server's message (names the budget).
        message: String,
    },
    /// Refused because the pod is covered by more than one PDB (500), which never resolves by
    /// waiting.
    Misconfigured {
        /// The API server's message.
        message: String,
    },
}

/// A CiliumNode, as far as verification needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CiliumNodeInfo {
    /// `metadata.name` (the node's name).
    pub name: String,
    /// `spec.ipam.podCIDRs`; in ENI mode (no pod CIDRs), the addresses of `spec.ipam.pool`
    /// as host routes (`/32`, `/128`): Cilium's ranges on the node either way.
    pub pod_cidrs: Vec<String>,
}

/// A CiliumNode's ranges from its `spec.ipam`: the pod CIDRs, or in ENI mode the pool's
/// addresses as host routes.
pub fn cilium_node_ranges(ipam: &serde_json::Value) -> Vec<String> {
    let cidrs: Vec<String> = ipam["podCIDRs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !cidrs.is_empty() {
        return cidrs;
    }
    host_routes(ipam["pool"].as_object().into_iter().flat_map(|m| m.keys()))
}

fn host_routes<'a>(ips: impl Iterator<Item = &'a String>) -> Vec<String> {
    ips.filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| match ip {
            std::net::IpAddr::V4(_) => format!("{ip}/32"),
            std::net::IpAddr::V6(_) => format!("{ip}/128"),
        })
        .collect()
}

impl<'de> serde::Deserialize<'de> for CiliumNodeInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            metadata: Meta,
            #[serde(default)]
            spec: Spec,
        }
        #[derive(serde::Deserialize, Default)]
        struct Meta {
            #[serde(default)]
            name: String,
        }
        #[derive(serde::Deserialize, Default)]
        struct Spec {
            #[serde(default)]
            ipam: Ipam,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Ipam {
            #[serde(default, rename = "podCIDRs")]
            pod_cidrs: Vec<String>,
            #[serde(default)]
            pool: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        }
        let r = Raw::deserialize(d)?;
        let pod_cidrs = if r.spec.ipam.pod_cidrs.is_empty() {
            host_routes(r.spec.ipam.pool.keys())
        } else {
            r.spec.ipam.pod_cidrs
        };
        Ok(CiliumNodeInfo {
            name: r.metadata.name,
            pod_cidrs,
        })
    }
}

/// A CiliumEndpoint, as far as verification needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name` (the pod's name).
    pub name: String,
    /// `status.networking.addressing[].ipv4` and `ipv6`.
    pub ips: Vec<std::net::IpAddr>,
}

impl<'de> serde::Deserialize<'de> for EndpointInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            metadata: Meta,
            #[serde(default)]
            status: Status,
        }
        #[derive(serde::Deserialize, Default)]
        struct Meta {
            #[serde(default)]
            name: String,
            #[serde(default)]
            namespace: String,
        }
        #[derive(serde::Deserialize, Default)]
        struct Status {
            #[serde(default)]
            networking: Networking,
        }
        #[derive(serde::Deserialize, Default)]
        struct Networking {
            #[serde(default)]
            addressing: Vec<Address>,
        }
        #[derive(serde::Deserialize, Default)]
        struct Address {
            #[serde(default)]
            ipv4: Option<String>,
            #[serde(default)]
            ipv6: Option<String>,
        }
        let r = Raw::deserialize(d)?;
        Ok(EndpointInfo {
            namespace: r.metadata.namespace,
            name: r.metadata.name,
            ips: r
                .status
                .networking
                .addressing
                .iter()
                .flat_map(|a| [a.ipv4.as_deref(), a.ipv6.as_deref()])
                .flatten()
                .filter_map(|ip| ip.parse().ok())
                .collect(),
        })
    }
}

/// The domain verbs of the executor.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// A node, or `None` when it does not exist.
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ClusterError>;
    /// Sets `spec.unschedulable` (cordon / uncordon).
    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ClusterError>;
    /// Sets a node label, or removes it with `None`.
    async fn set_node_label(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ClusterError>;
    /// Sets (`Some`) or removes (`None`) annotations of a node, in one merge patch.
    async fn set_node_annotations(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), ClusterError>;
    /// Every pod bound to a node (field selector `spec.nodeName`).
    async fn pods_on_node(&self, node: &str) -> Result<Vec<PodInfo>, ClusterError>;
    /// Pods in a namespace (or all) matching a field selector (`spec.nodeName=N`,
    /// `metadata.name=P`), as a stream of snapshots: the first from one LIST, then one for each
    /// change, from one WATCH. `None` when this cluster cannot watch (the caller polls).
    fn watch_pods(
        &self,
        _namespace: Option<&str>,
        _field_selector: &str,
    ) -> Option<futures::stream::BoxStream<'static, Result<Vec<PodInfo>, ClusterError>>> {
        None
    }
    /// Every pod, as a stream of changes: the LIST first, then one for each change, from one
    /// WATCH; the stream ends after an error it yields. `None` when this cluster cannot watch.
    fn watch_pod_changes(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, Result<Change<PodInfo>, ClusterError>>> {
        None
    }
    /// Every node, as a stream of changes: the LIST first, then one for each change, from one
    /// WATCH; the stream ends after an error it yields. `None` when this cluster cannot watch.
    fn watch_nodes(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, Result<Change<NodeInfo>, ClusterError>>> {
        None
    }
    /// Pods in a namespace (or all, with `None`) matching a label selector.
    async fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<PodInfo>, ClusterError>;
    /// One pod, or `None` when it does not exist.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError>;
    /// Asks the eviction API (policy/v1) to evict a pod.
    async fn evict(
        &self,
        namespace: &str,
        name: &str,
        grace_period_seconds: Option<i64>,
    ) -> Result<Eviction, ClusterError>;
    /// Deletes a pod, only if it still has `uid` when given. Returns whether it existed.
    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError>;
    /// Creates a pod (the verification probe, beacons).
    async fn create_pod(&self, pod: &Pod) -> Result<PodInfo, ClusterError>;
    /// A pod's log (its main container).
    async fn pod_log(&self, namespace: &str, name: &str) -> Result<String, ClusterError>;
    /// Every PodDisruptionBudget.
    async fn pdbs(&self) -> Result<Vec<PdbInfo>, ClusterError>;
    /// A ConfigMap, or `None`.
    async fn configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError>;
    /// Creates (`resource_version` `None`) or replaces (only while it still has that
    /// `resource_version`) a ConfigMap with these labels, data and binary data. Returns the new
    /// resourceVersion, or `None` when another writer got there first (409).
    async fn write_configmap(
        &self,
        namespace: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        data: &std::collections::BTreeMap<String, String>,
        binary_data: &std::collections::BTreeMap<String, Vec<u8>>,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, ClusterError>;
    /// The ConfigMaps of a namespace that match a label selector (`key=value,...`).
    async fn configmaps_labelled(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError>;
    /// A custom object by API version, plural, namespace and name, or `None`.
    async fn custom(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<CustomObject>, ClusterError>;
    /// One object by API version, plural, namespace and name, whole, as a stream of its states
    /// (`None` while it does not exist): the first from one LIST, then one for each change, from
    /// one WATCH; the stream ends after an error it yields. `None` when this cluster cannot
    /// watch (the caller polls [`Cluster::custom`]).
    fn watch_object(
        &self,
        _api_version: &str,
        _plural: &str,
        _namespace: Option<&str>,
        _name: &str,
    ) -> Option<futures::stream::BoxStream<'static, Result<Option<serde_json::Value>, ClusterError>>>
    {
        None
    }
    /// Server-side applies an object (it names its own apiVersion, kind, namespace and name),
    /// with the tool's field manager. `plural` is the resource's plural name.
    async fn apply(&self, plural: &str, object: &serde_json::Value) -> Result<(), ClusterError>;
    /// Deletes any object; returns whether it existed.
    async fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ClusterError>;
    /// Every node.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError>;
    /// Every CiliumNode: its name and `spec.ipam.podCIDRs`.
    async fn cilium_nodes(&self) -> Result<Vec<CiliumNodeInfo>, ClusterError>;
    /// Every CiliumEndpoint: its namespace, name (the pod's) and addresses.
    async fn cilium_endpoints(&self) -> Result<Vec<EndpointInfo>, ClusterError>;
    /// Records a Kubernetes Event on a node (best effort for the caller).
    async fn node_event(
        &self,
        node: &str,
        reason: &str,
        message: &str,
        warning: bool,
    ) -> Result<(), ClusterError>;
}

/// [`Cluster`] over a `kube::Client`.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
}

impl KubeCluster {
    /// Wraps a client (build it with [`crate::connect`], which turns kube's own 429 retries off).
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }
}

fn api_err(
    verb: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| {
        if status_code(&source) == Some(403) {
            ClusterError::Forbidden { verb, what, source }
        } else {
            ClusterError::Api { verb, what, source }
        }
    }
}

/// `/api/v1` for the core group, `/apis/GROUP/VERSION` otherwise.
fn base_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

fn object_path(api_version: &str, plural: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{}/namespaces/{ns}/{plural}", base_path(api_version)),
        None => format!("{}/{plural}", base_path(api_version)),
    }
}

fn none_if_404<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn node(&self, name: &str) -> Result<Option<NodeInfo>, ClusterError> {
        let req = Request::new("/api/v1/nodes")
            .get(name, &kube::api::GetParams::default())
            .map_err(|source| ClusterError::BuildRequest {
                what: format!("node {name}"),
                source,
            })?;
        none_if_404(self.client.request::<NodeInfo>(req).await)
            .map_err(api_err("get", format!("node {name}")))
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"unschedulable": if unschedulable { json!(true) } else { json!(null) }}});
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_err("patch", format!("node {node}")))
    }

    async fn set_node_label(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let patch = json!({"metadata": {"labels": {key: value}}});
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_err("patch", format!("node {node}")))
    }

    async fn set_node_annotations(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let patch = json!({"metadata": {"annotations": map}});
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_err("patch", format!("node {node}")))
    }

    async fn pods_on_node(&self, node: &str) -> Result<Vec<PodInfo>, ClusterError> {
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        list_with(&self.client, "/api/v1/pods", &params).await
    }

    fn watch_pods(
        &self,
        namespace: Option<&str>,
        field_selector: &str,
    ) -> Option<futures::stream::BoxStream<'static, Result<Vec<PodInfo>, ClusterError>>> {
        Some(crate::watch::pods(
            self.client.clone(),
            namespace,
            field_selector,
        ))
    }

    fn watch_pod_changes(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, Result<Change<PodInfo>, ClusterError>>> {
        Some(crate::watch::changes::<PodInfo>(
            self.client.clone(),
            "/api/v1/pods".to_owned(),
            "",
        ))
    }

    fn watch_nodes(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, Result<Change<NodeInfo>, ClusterError>>> {
        Some(crate::watch::nodes(self.client.clone()))
    }

    async fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<PodInfo>, ClusterError> {
        let base = match namespace {
            Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
            None => "/api/v1/pods".to_owned(),
        };
        let params = ListParams::default().labels(label_selector);
        list_with(&self.client, &base, &params).await
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        let req = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .get(name, &kube::api::GetParams::default())
            .map_err(|source| ClusterError::BuildRequest {
                what: format!("pod {namespace}/{name}"),
                source,
            })?;
        none_if_404(self.client.request::<PodInfo>(req).await)
            .map_err(api_err("get", format!("pod {namespace}/{name}")))
    }

    async fn evict(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Eviction, ClusterError> {
        // Built by hand: policy/v1 with `deleteOptions`, exactly what kubectl sends.
        let mut body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        });
        if let Some(g) = grace {
            body["deleteOptions"] = json!({"gracePeriodSeconds": g});
        }
        let what = format!("pod {namespace}/{name}");
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{namespace}/pods/{name}/eviction"
        ))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(|e| ClusterError::BuildRequest {
            what: what.clone(),
            source: kube::core::request::Error::BuildRequest(e),
        })?;
        match self.client.request::<serde_json::Value>(req).await {
            Ok(_) => Ok(Eviction::Evicted),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Eviction::Gone),
            Err(kube::Error::Api(status)) if status.code == 429 => Ok(Eviction::Blocked {
                message: status.message.clone(),
            }),
            Err(kube::Error::Api(status))
                if status.code == 500 && status.message.contains("more than one") =>
            {
                Ok(Eviction::Misconfigured {
                    message: status.message.clone(),
                })
            }
            Err(e) => Err(api_err("evict", what)(e)),
        }
    }

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut params = DeleteParams::default();
        if let Some(uid) = uid {
            params.preconditions = Some(kube::api::Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            });
        }
        match api.delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            // The precondition failed: the pod with that UID is already gone and a new one
            // took its name.
            Err(e) if status_code(&e) == Some(409) && uid.is_some() => Ok(false),
            Err(e) => Err(api_err("delete", format!("pod {namespace}/{name}"))(e)),
        }
    }

    async fn create_pod(&self, pod: &Pod) -> Result<PodInfo, ClusterError> {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let what = format!("pod {ns}/{name}");
        let req = Request::new(format!("/api/v1/namespaces/{ns}/pods"))
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                },
                serde_json::to_vec(pod).unwrap_or_default(),
            )
            .map_err(|source| ClusterError::BuildRequest {
                what: what.clone(),
                source,
            })?;
        self.client
            .request::<PodInfo>(req)
            .await
            .map_err(api_err("create", what))
    }

    async fn pod_log(&self, namespace: &str, name: &str) -> Result<String, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        api.logs(name, &LogParams::default())
            .await
            .map_err(api_err("get", format!("log of pod {namespace}/{name}")))
    }

    async fn pdbs(&self) -> Result<Vec<PdbInfo>, ClusterError> {
        list_all(&self.client, "/apis/policy/v1/poddisruptionbudgets").await
    }

    async fn configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(api_err("get", format!("configmap {namespace}/{name}")))
    }

    async fn write_configmap(
        &self,
        namespace: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        data: &std::collections::BTreeMap<String, String>,
        binary_data: &std::collections::BTreeMap<String, Vec<u8>>,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, ClusterError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("configmap {namespace}/{name}");
        let mut cm = configmap_object(namespace, name, labels, data, binary_data, resource_version);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let result = match resource_version {
            None => api
                .create(&params, &cm)
                .await
                .map_err(api_err("create", what)),
            Some(_) => {
                cm.metadata.resource_version = resource_version.map(str::to_owned);
                api.replace(name, &params, &cm)
                    .await
                    .map_err(api_err("update", what))
            }
        };
        match result {
            Ok(written) => Ok(Some(written.metadata.resource_version.unwrap_or_default())),
            Err(ClusterError::Api { source, .. }) if status_code(&source) == Some(409) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn configmaps_labelled(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|list| list.items)
            .map_err(api_err(
                "list",
                format!("configmaps in {namespace} ({selector})"),
            ))
    }

    async fn custom(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<CustomObject>, ClusterError> {
        let what = format!("{plural} {name}");
        let req = Request::new(object_path(api_version, plural, namespace))
            .get(name, &kube::api::GetParams::default())
            .map_err(|source| ClusterError::BuildRequest {
                what: what.clone(),
                source,
            })?;
        let value = none_if_404(self.client.request::<serde_json::Value>(req).await)
            .map_err(api_err("get", what))?;
        Ok(value.map(|object| CustomObject {
            api_version: object["apiVersion"]
                .as_str()
                .unwrap_or(api_version)
                .to_owned(),
            kind: object["kind"].as_str().unwrap_or_default().to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            object,
        }))
    }

    fn watch_object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<futures::stream::BoxStream<'static, Result<Option<serde_json::Value>, ClusterError>>>
    {
        Some(crate::watch::object(
            self.client.clone(),
            object_path(api_version, plural, namespace),
            name,
        ))
    }

    async fn apply(&self, plural: &str, object: &serde_json::Value) -> Result<(), ClusterError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str();
        let what = format!("{plural} {name}");
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let req = Request::new(object_path(api_version, plural, namespace))
            .patch(name, &params, &Patch::Apply(object))
            .map_err(|source| ClusterError::BuildRequest {
                what: what.clone(),
                source,
            })?;
        self.client
            .request::<serde_json::Value>(req)
            .await
            .map(|_| ())
            .map_err(api_err("apply", what))
    }

    async fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ClusterError> {
        let what = format!("{plural} {name}");
        let req = Request::new(object_path(api_version, plural, namespace))
            .delete(name, &DeleteParams::default())
            .map_err(|source| ClusterError::BuildRequest {
                what: what.clone(),
                source,
            })?;
        match self.client.request::<serde_json::Value>(req).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(api_err("delete", what)(e)),
        }
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        list_all(&self.client, "/api/v1/nodes").await
    }

    async fn cilium_nodes(&self) -> Result<Vec<CiliumNodeInfo>, ClusterError> {
        list_all(&self.client, "/apis/cilium.io/v2/ciliumnodes").await
    }

    async fn cilium_endpoints(&self) -> Result<Vec<EndpointInfo>, ClusterError> {
        list_all(&self.client, "/apis/cilium.io/v2/ciliumendpoints").await
    }

    async fn node_event(
        &self,
        node: &str,
        reason: &str,
        message: &str,
        warning: bool,
    ) -> Result<(), ClusterError> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": format!("{node}.cni-migrate."), "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        let req = Request::new("/api/v1/namespaces/default/events")
            .create(
                &PostParams::default(),
                serde_json::to_vec(&event).unwrap_or_default(),
            )
            .map_err(|source| ClusterError::BuildRequest {
                what: format!("event on node {node}"),
                source,
            })?;
        self.client
            .request::<serde_json::Value>(req)
            .await
            .map(|_| ())
            .map_err(api_err("create", format!("event on node {node}")))
    }
}

/// A ConfigMap as `write_configmap` sends it: empty `data` or `binaryData` left out.
pub fn configmap_object(
    namespace: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    data: &std::collections::BTreeMap<String, String>,
    binary_data: &std::collections::BTreeMap<String, Vec<u8>>,
    resource_version: Option<&str>,
) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            resource_version: resource_version.map(str::to_owned),
            ..Default::default()
        },
        data: (!data.is_empty()).then(|| data.clone()),
        binary_data: (!binary_data.is_empty()).then(|| {
            binary_data
                .iter()
                .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
                .collect()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(
            object_path("v1", "pods", Some("kube-system")),
            "/api/v1/namespaces/kube-system/pods"
        );
        assert_eq!(
            object_path("cilium.io/v2", "ciliumnodes", None),
            "/apis/cilium.io/v2/ciliumnodes"
        );
    }
}
