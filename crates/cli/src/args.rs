//! What every command shares: the cluster flags as kubectl has them, where the checkpoint
//! lives (`--state`), `-o text|json`, the async runtime and the connection.

use std::{path::PathBuf, sync::Arc};

use clap::Args;
use cluster::{Cluster, KubeCluster};
use executor::store::{ConfigMapStore, FileStore, StateStore};

use crate::failure::Failure;

/// The cluster flags, as kubectl has them.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Connect as the pod's ServiceAccount (what `cni-migrate job` runs): the API server at
    /// $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, token and CA from
    /// /var/run/secrets/kubernetes.io/serviceaccount (or $CNI_MIGRATE_SERVICEACCOUNT_DIR);
    /// --kubeconfig, $KUBECONFIG and --context are ignored.
    #[arg(long)]
    pub in_cluster: bool,
    /// Client-side rate limit shared by every request: requests a second (0: none). A 429
    /// with Retry-After from the API server pauses every request until then.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QPS)]
    pub qps: f64,
    /// How many requests may go at once above `--qps` after a quiet spell.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BURST)]
    pub burst: u32,
}

/// `--qps` by default: above what a 1,000-node run at 10 in flight sends today (22 requests a
/// second on average in exec-bench), so the default does not slow it down.
pub const DEFAULT_QPS: f64 = 30.0;
/// `--burst` by default.
pub const DEFAULT_BURST: u32 = 60;

impl KubeArgs {
    /// Sets the process's rate limit from `--qps` and `--burst` (`--qps 0`: none). The first
    /// call wins; `unlimited_by_default` leaves the default `--qps` unset (the simulated
    /// cluster's fast pacing).
    ///
    /// # Errors
    /// Bad input for a negative or non-finite `--qps`.
    pub fn rate_limit(&self, unlimited_by_default: bool) -> Result<(), Failure> {
        if !self.qps.is_finite() || self.qps < 0.0 {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "--qps {}: expected requests a second, 0 or more (0: no limit)",
                self.qps
            )));
        }
        #[allow(clippy::float_cmp)] // the flag's own default, not arithmetic
        let defaulted = self.qps == DEFAULT_QPS && self.burst == DEFAULT_BURST;
        let qps = if self.qps == 0.0 || (unlimited_by_default && defaulted) {
            f64::INFINITY
        } else {
            self.qps
        };
        cluster::telemetry::set_rate_limit(qps, self.burst);
        Ok(())
    }
}

/// Where the checkpoint lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    /// `kube-system/cni-migrate-state`.
    ConfigMap,
    /// A local file.
    File(PathBuf),
}

impl std::str::FromStr for StateLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "configmap" => Ok(Self::ConfigMap),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(Self::File(PathBuf::from(p))),
                _ => Err(format!(
                    "--state {s}: expected `configmap` (kube-system/cni-migrate-state) or `file:PATH`"
                )),
            },
        }
    }
}

/// The state flags shared by every executor command.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// Where the checkpoint lives: `configmap` (kube-system/cni-migrate-state) or `file:PATH`.
    #[arg(long, value_name = "configmap|file:PATH", default_value = "configmap")]
    pub state: String,
}

impl StateArgs {
    /// The parsed `--state`.
    ///
    /// # Errors
    /// Bad input, saying what is expected.
    pub fn location(&self) -> Result<StateLocation, Failure> {
        self.state
            .parse()
            .map_err(|e: String| Failure::bad_input(anyhow::anyhow!(e)))
    }
}

/// `-o text|json`: whether JSON was asked for.
///
/// # Errors
/// Bad input for any other format.
pub fn json_output(output: &str) -> Result<bool, Failure> {
    match output {
        "text" => Ok(false),
        "json" => Ok(true),
        other => Err(Failure::bad_input(anyhow::anyhow!(
            "-o {other}: expected text or json"
        ))),
    }
}

/// The multi-threaded runtime the commands run on.
///
/// # Errors
/// When it cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::other(anyhow::Error::new(e).context("cannot start the async runtime"))
        })
}

/// A client for the cluster the flags name.
///
/// # Errors
/// Bad input: no usable kubeconfig or context.
pub async fn connect(kube: &KubeArgs) -> Result<kube::Client, Failure> {
    // One-shot commands (plan, status, pause) are limited only when `--qps` is given; the long
    // runs set their limit before they connect (`run.rs`), and the first setting wins.
    kube.rate_limit(true)?;
    if kube.in_cluster {
        return cluster::connect_in_cluster()
            .await
            .map_err(Failure::bad_input);
    }
    let args = cluster::ClusterArgs {
        kubeconfig: kube.kubeconfig.clone(),
        context: kube.context.clone(),
    };
    cluster::connect(&args).await.map_err(Failure::bad_input)
}

/// The checkpoint store `--state` names.
pub fn store_for(state: &StateLocation, cluster: Arc<dyn Cluster>) -> Box<dyn StateStore> {
    match state {
        StateLocation::ConfigMap => Box::new(ConfigMapStore::new(cluster)),
        StateLocation::File(p) => Box::new(FileStore::new(p.clone())),
    }
}

/// The checkpoint store `--state` names, and a client when the cluster is reachable (a file
/// store works without one).
///
/// # Errors
/// The ConfigMap store without a reachable cluster.
pub async fn open_store(
    kube: &KubeArgs,
    state: &StateLocation,
) -> Result<(Box<dyn StateStore>, Option<kube::Client>), Failure> {
    match (state, connect(kube).await) {
        (_, Ok(c)) => Ok((
            store_for(state, Arc::new(KubeCluster::new(c.clone()))),
            Some(c),
        )),
        (StateLocation::File(p), Err(_)) => Ok((Box::new(FileStore::new(p.clone())), None)),
        (StateLocation::ConfigMap, Err(e)) => Err(e),
    }
}
