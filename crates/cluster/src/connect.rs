//! Building a `kube::Client` the way kubectl picks its cluster: `--kubeconfig`, else
//! `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster service account; `--context`
//! selects a context, else the current one.

use std::path::PathBuf;

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
    config.default_retry = false;
    kube::Client::try_from(config).map_err(ClusterError::Client)
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
            Err(source) => kube::Config::incluster()
                .map_err(|_| ClusterError::Kubeconfig { path: None, source }),
        },
    }
}
