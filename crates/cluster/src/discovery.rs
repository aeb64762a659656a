//! Discovery: everything the planner needs, read with paged LISTs.
//!
//! Each resource is listed 500 objects a page (kube-rs' reflector default and the API server's
//! sweet spot); every page is decoded straight into the planner's projections. A resource the
//! server does not serve (404: the CRD is not installed) is simply empty. An expired continue
//! token (410) restarts that resource's list, at most twice.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use kube::core::{Request, params::ListParams};
use planner::snapshot::{
    ClusterSnapshot, CustomObject, NetworkPolicyInfo, NodeInfo, PdbInfo, PodInfo, ServiceInfo,
    WorkloadInfo,
};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{ClusterError, is_retriable, status_code};

/// Objects per LIST page.
pub const PAGE_SIZE: u32 = 500;

/// Namespaces whose ConfigMaps detection reads (the CNIs' and kubeadm's). ConfigMaps elsewhere
/// are never needed, and a cluster with thousands of namespaces has thousands of them.
pub const CONFIGMAP_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-flannel",
    "calico-system",
    "tigera-operator",
];

#[derive(Deserialize)]
struct ListPage<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct NameOnly {
    metadata: NameMeta,
}

#[derive(Deserialize)]
struct NameMeta {
    name: String,
}

/// Lists every object at `path` (e.g. `/api/v1/pods`), page by page, decoding each page into
/// `T`. Returns an empty list when the server does not serve the resource (404).
///
/// # Errors
/// [`ClusterError::Forbidden`] on 403; [`ClusterError::Api`] on other failures that persist
/// through retries.
pub async fn list_all<T: DeserializeOwned>(
    client: &kube::Client,
    path: &str,
) -> Result<Vec<T>, ClusterError> {
    list_with(client, path, &ListParams::default()).await
}

/// [`list_all`] with label and field selectors from `base` (its limit and continue token are
/// managed here).
///
/// # Errors
/// As [`list_all`].
pub async fn list_with<T: DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    base: &ListParams,
) -> Result<Vec<T>, ClusterError> {
    list_versioned(client, path, base)
        .await
        .map(|(items, _)| items)
}

/// [`list_with`], with the list's resourceVersion (the first page's: every page is of that one
/// snapshot), from which a watch goes on; empty for a resource the server does not serve.
///
/// # Errors
/// As [`list_all`].
pub async fn list_versioned<T: DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    base: &ListParams,
) -> Result<(Vec<T>, String), ClusterError> {
    let mut restarts = 0;
    'restart: loop {
        // Pages are kept apart and joined once at the exact size: a vector grown by doubling
        // holds the old and the new buffer at once (132 MB rather than 50 at 150,000 pods).
        let mut pages: Vec<Vec<T>> = Vec::new();
        let mut token: Option<String> = None;
        let mut version: Option<String> = None;
        loop {
            let mut params = base.clone().limit(PAGE_SIZE);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let request =
                Request::new(path)
                    .list(&params)
                    .map_err(|source| ClusterError::BuildRequest {
                        what: path.to_owned(),
                        source,
                    })?;
            let page: ListPage<T> = match with_retries(client, request, path).await {
                Ok(page) => page,
                Err(e) if status_code(&e) == Some(404) => return Ok((Vec::new(), String::new())),
                Err(e) if status_code(&e) == Some(410) && restarts < 2 => {
                    tracing::info!(path, "continue token expired; listing again from the start");
                    restarts += 1;
                    continue 'restart;
                }
                Err(source) if status_code(&source) == Some(403) => {
                    return Err(ClusterError::Forbidden {
                        verb: "list",
                        what: path.to_owned(),
                        source,
                    });
                }
                Err(source) => {
                    return Err(ClusterError::Api {
                        verb: "list",
                        what: path.to_owned(),
                        source,
                    });
                }
            };
            pages.push(page.items);
            version.get_or_insert(page.metadata.resource_version);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => {
                    let mut out = Vec::with_capacity(pages.iter().map(Vec::len).sum());
                    for p in pages {
                        out.extend(p);
                    }
                    return Ok((out, version.unwrap_or_default()));
                }
            }
        }
    }
}

/// Sends a request, retrying retriable failures (429, 5xx, 409, transport) up to five times
/// with capped exponential backoff.
async fn with_retries<T: DeserializeOwned>(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
    what: &str,
) -> Result<T, kube::Error> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.request::<T>(clone_request(&request)).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 6 && is_retriable(&e) => {
                tracing::debug!(what, attempt, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The versions of `ciliumnodeconfigs.cilium.io` the API server serves, from API discovery
/// (which every authenticated user may read): empty when Cilium's CRDs are not installed.
async fn node_config_versions(client: &kube::Client) -> Result<Vec<String>, ClusterError> {
    let mut out = Vec::new();
    for version in ["v2", "v2alpha1"] {
        let path = format!("/apis/cilium.io/{version}");
        let request =
            http::Request::get(&path)
                .body(Vec::new())
                .map_err(|e| ClusterError::BuildRequest {
                    what: path.clone(),
                    source: kube::core::request::Error::BuildRequest(e),
                })?;
        match with_retries::<serde_json::Value>(client, request, &path).await {
            Ok(list) => {
                let served = list["resources"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|r| r["name"] == "ciliumnodeconfigs"));
                if served {
                    out.push(version.to_owned());
                }
            }
            Err(e) if status_code(&e) == Some(404) => {}
            Err(source) => {
                return Err(ClusterError::Api {
                    verb: "get",
                    what: path,
                    source,
                });
            }
        }
    }
    Ok(out)
}

fn clone_request(r: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut out = http::Request::new(r.body().clone());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.headers_mut() = r.headers().clone();
    out
}

/// Reads everything the planner needs from a live cluster.
///
/// # Errors
/// The first LIST that fails for a reason other than "not served".
pub async fn discover(client: &kube::Client) -> Result<ClusterSnapshot, ClusterError> {
    let mut snap = ClusterSnapshot {
        nodes: list_all::<NodeInfo>(client, "/api/v1/nodes").await?,
        pods: list_all::<PodInfo>(client, "/api/v1/pods").await?,
        pdbs: list_all::<PdbInfo>(client, "/apis/policy/v1/poddisruptionbudgets").await?,
        daemonsets: list_all::<DaemonSet>(client, "/apis/apps/v1/daemonsets").await?,
        services: list_all::<ServiceInfo>(client, "/api/v1/services").await?,
        network_policies: list_all::<NetworkPolicyInfo>(
            client,
            "/apis/networking.k8s.io/v1/networkpolicies",
        )
        .await?,
        namespaces: list_all::<NameOnly>(client, "/api/v1/namespaces")
            .await?
            .into_iter()
            .map(|n| n.metadata.name)
            .collect(),
        ..ClusterSnapshot::default()
    };
    // Items of a LIST of built-in types carry no `kind`: set it from what was listed.
    for (kind, path) in [
        ("Deployment", "/apis/apps/v1/deployments"),
        ("ReplicaSet", "/apis/apps/v1/replicasets"),
        ("StatefulSet", "/apis/apps/v1/statefulsets"),
    ] {
        let mut items = list_all::<WorkloadInfo>(client, path).await?;
        for w in &mut items {
            w.kind = kind.to_owned();
        }
        snap.workloads.extend(items);
    }
    for ns in CONFIGMAP_NAMESPACES {
        let items: Vec<ConfigMap> =
            list_all(client, &format!("/api/v1/namespaces/{ns}/configmaps")).await?;
        snap.configmaps.extend(items);
    }
    for (api_version, kind, plural) in [
        ("crd.projectcalico.org/v1", "IPPool", "ippools"),
        (
            "crd.projectcalico.org/v1",
            "FelixConfiguration",
            "felixconfigurations",
        ),
        ("projectcalico.org/v3", "IPPool", "ippools"),
        (
            "projectcalico.org/v3",
            "FelixConfiguration",
            "felixconfigurations",
        ),
        ("operator.tigera.io/v1", "Installation", "installations"),
        ("cilium.io/v2", "CiliumNode", "ciliumnodes"),
        ("cilium.io/v2", "CiliumNodeConfig", "ciliumnodeconfigs"),
        (
            "cilium.io/v2alpha1",
            "CiliumNodeConfig",
            "ciliumnodeconfigs",
        ),
        ("networking.k8s.io/v1", "ServiceCIDR", "servicecidrs"),
        ("networking.k8s.io/v1beta1", "ServiceCIDR", "servicecidrs"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    ] {
        let values: Vec<serde_json::Value> =
            list_all(client, &format!("/apis/{api_version}/{plural}")).await?;
        for object in values {
            let meta = &object["metadata"];
            let name = meta["name"].as_str().unwrap_or_default().to_owned();
            let namespace = meta["namespace"].as_str().map(str::to_owned);
            // The same object served under two versions is kept once (the first, preferred).
            if snap
                .custom
                .iter()
                .any(|c| c.kind == kind && c.name == name && c.namespace == namespace)
            {
                continue;
            }
            snap.custom.push(CustomObject {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                namespace,
                name,
                object,
            });
        }
    }
    snap.node_config_versions = Some(node_config_versions(client).await?);
    snap.normalize();
    // The LISTs grew these by doubling: give the slack back before planning (a third of the
    // pods' vector at 150,000 pods).
    snap.pods.shrink_to_fit();
    snap.workloads.shrink_to_fit();
    snap.nodes.shrink_to_fit();
    snap.pdbs.shrink_to_fit();
    Ok(snap)
}
