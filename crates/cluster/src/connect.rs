//! Building a `kube::Client` the way kubectl picks its cluster: `--kubeconfig`, else
//! `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster service account; `--context`
//! selects a context, else the current one.
//!
//! The in-cluster configuration is kube-rs's, read from where the ServiceAccount volume is
//! mounted: `/var/run/secrets/kubernetes.io/serviceaccount`, or `$CNI_MIGRATE_SERVICEACCOUNT_DIR`
//! for a pod that mounts its token elsewhere (a projected volume of its own).

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::ClusterError;

/// The cluster flags every command shares.
#[derive(Clone, Debug, Default)]
pub struct ClusterArgs {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
}

/// Loads the configuration and builds a client.
///
/// kube's built-in retry layer is turned off: it retries 429 with long backoff, which would hide
/// an eviction refused by a PodDisruptionBudget inside a silent wait. Callers retry on their own
/// terms (see [`crate::is_retriable`]).
///
/// # Errors
/// [`ClusterError::Kubeconfig`] when no usable configuration is found;
/// [`ClusterError::Client`] when the client cannot be built from it.
pub async fn connect(args: &ClusterArgs) -> Result<kube::Client, ClusterError> {
    let mut config = load_config(args).await?;
    configure(&mut config);
    crate::telemetry::client(config).map_err(ClusterError::Client)
}

/// What the tool sends as its `User-Agent`: `cni-migrate/VERSION`, so that audit logs (and the
/// default field manager of non-apply writes) name who acted.
pub const USER_AGENT: &str = concat!("cni-migrate/", env!("CARGO_PKG_VERSION"));

/// The tool's settings on a loaded configuration: kube's retry layer off (see [`connect`]) and
/// the [`USER_AGENT`] header on every request.
pub fn configure(config: &mut kube::Config) {
    config.default_retry = false;
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
}

/// Loads the configuration only (tests and the simulated cluster use it to inspect the URL).
///
/// # Errors
/// [`ClusterError::Kubeconfig`] when no usable configuration is found.
pub async fn load_config(args: &ClusterArgs) -> Result<kube::Config, ClusterError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                    path: Some(path.display().to_string()),
                    source,
                })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    path: Some(path.display().to_string()),
                    source,
                })
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|source| ClusterError::Kubeconfig { path: None, source }),
        None => match kube::Config::from_kubeconfig(&options).await {
            Ok(config) => Ok(config),
            Err(source) => match in_cluster_config().await {
                Err(ClusterError::InCluster(_)) => {
                    Err(ClusterError::Kubeconfig { path: None, source })
                }
                other => other,
            },
        },
    }
}

/// Where this pod's ServiceAccount files are: `$CNI_MIGRATE_SERVICEACCOUNT_DIR`, else the
/// standard mount.
fn service_account_dir() -> PathBuf {
    std::env::var_os("CNI_MIGRATE_SERVICEACCOUNT_DIR")
        .map_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR), PathBuf::from)
}

/// The in-cluster configuration only (`--in-cluster`): no kubeconfig is read, even where one
/// is found.
///
/// # Errors
/// [`ClusterError::InCluster`] outside a pod (no `KUBERNETES_SERVICE_HOST`/`_PORT`) or without
/// the token; [`ClusterError::Kubeconfig`] when the files do not make a configuration.
pub async fn in_cluster_config() -> Result<kube::Config, ClusterError> {
    let dir = service_account_dir();
    let kubeconfig = in_cluster(&dir).ok_or_else(|| {
        ClusterError::InCluster(format!(
            "not inside a pod: expected KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in the environment and a ServiceAccount token in {} (set CNI_MIGRATE_SERVICEACCOUNT_DIR where the pod mounts it elsewhere)",
            dir.display()
        ))
    })?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClusterError::Kubeconfig {
            path: Some(dir.display().to_string()),
            source,
        })
}

/// A client from the in-cluster configuration only (see [`in_cluster_config`]), set up as
/// [`connect`] sets it up.
///
/// # Errors
/// As [`in_cluster_config`]; [`ClusterError::Client`] when the client cannot be built.
pub async fn connect_in_cluster() -> Result<kube::Client, ClusterError> {
    let mut config = in_cluster_config().await?;
    configure(&mut config);
    crate::telemetry::client(config).map_err(ClusterError::Client)
}

/// Where Kubernetes mounts a pod's ServiceAccount token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The in-cluster configuration as a kubeconfig, the way kube-rs builds it: the API server at
/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the CA and the token file (read
/// again as it is rotated) from `dir`, its namespace. `None` outside a pod (no service host, or
/// no token in `dir`).
fn in_cluster(dir: &Path) -> Option<Kubeconfig> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok()?;
    let token = dir.join("token");
    if !token.is_file() {
        return None;
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "default".to_owned());
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority": dir.join("ca.crt").display().to_string()}}],
        "users": [{"name": "service-account", "user": {"tokenFile": token.display().to_string()}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": namespace}}],
    });
    serde_json::from_value(config).ok()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Over real HTTP: the request head a server receives names the tool.
    #[tokio::test]
    async fn every_request_carries_the_tools_user_agent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url: http::Uri = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("url");
        let mut config = kube::Config::new(url);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("x"),
        ));
        configure(&mut config);
        assert!(!config.default_retry);
        let client = kube::Client::try_from(config).expect("client");
        let request = tokio::spawn(async move { client.apiserver_version().await });
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the request head ended");
            head.extend_from_slice(&buf[..n]);
        }
        drop(socket);
        request.abort();
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let agents: Vec<&str> = head
            .lines()
            .filter_map(|l| l.strip_prefix("user-agent: "))
            .collect();
        assert_eq!(agents, [USER_AGENT.to_lowercase().as_str()], "{head}");
    }
}
