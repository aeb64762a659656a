//! Why talking to the cluster failed, and whether trying again may help.

/// Why talking to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig could not be read or has no usable context.
    #[error("cannot load kubeconfig{}", .path.as_ref().map(|p| format!(" {p}")).unwrap_or_default())]
    Kubeconfig {
        /// The file, when given explicitly.
        path: Option<String>,
        /// What kube said.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client could not be built from the configuration.
    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),
    /// A request could not be built (a bug in the path or parameters).
    #[error("cannot build the request for {what}")]
    BuildRequest {
        /// What was requested.
        what: String,
        /// The error.
        #[source]
        source: kube::core::request::Error,
    },
    /// The API server refused a request.
    #[error("{verb} {what} failed")]
    Api {
        /// `list`, `get`, ...
        verb: &'static str,
        /// The resource, e.g. `pods` or `kube-system/configmaps`.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// The API server refused a request because of RBAC.
    #[error(
        "{verb} {what} is forbidden for this user: grant it (see `cni-migrate rbac`) or use a kubeconfig with more rights"
    )]
    Forbidden {
        /// `list`, `get`, ...
        verb: &'static str,
        /// The resource.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    /// Whether retrying the same request may succeed (server overload, conflicts, timeouts).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClusterError::Api { source, .. } => is_retriable(source),
            _ => false,
        }
    }
}

/// Whether a kube error is worth retrying: 429, 5xx, 409, or a transport failure.
pub fn is_retriable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 409 | 500..=599),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The HTTP status of a kube error, when it is an API error.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
