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
    /// `--in-cluster` outside a pod, or without the ServiceAccount's files.
    #[error("--in-cluster: {0}")]
    InCluster(String),
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
    /// The API server refused a request because of RBAC (HTTP 403). Never retried: the
    /// message names what is missing (the server's own words: verb, resource, API group,
    /// namespace) and what to do.
    #[error(
        "{verb} {what} is forbidden{}: grant it by re-applying `cni-migrate rbac ... | kubectl apply -f -` \
         (the ServiceAccount's rules) or use a kubeconfig with more rights; retrying will not help",
        denied(.source).map(|m| format!(" ({m})")).unwrap_or_default()
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

/// What the authorizer refused, in the API server's words, from a 403: `User "..." cannot create
/// resource "ciliumnodeconfigs" in API group "cilium.io" in the namespace "kube-system"`.
pub fn denied(err: &kube::Error) -> Option<String> {
    match err {
        kube::Error::Api(status) if status.code == 403 => {
            let m = status.message.as_str();
            Some(
                m.split_once(" is forbidden: ")
                    .map_or(m, |(_, why)| why)
                    .to_owned(),
            )
        }
        _ => None,
    }
}

/// The HTTP status of a kube error, when it is an API error.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 403 of the real API server for the first server-side apply of the CiliumNodeConfig
    /// (rbac-denials.json): not retriable, and the message says what is missing and what to do.
    #[test]
    fn a_403_is_final_and_names_what_is_missing() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "ciliumnodeconfigs.cilium.io \"cilium-default\" is forbidden: User \"system:serviceaccount:kube-system:cni-migrate\" cannot create resource \"ciliumnodeconfigs\" in API group \"cilium.io\" in the namespace \"kube-system\"",
            "reason": "Forbidden",
            "details": {"name": "cilium-default", "group": "cilium.io", "kind": "ciliumnodeconfigs"},
            "code": 403
        }))
        .expect("a Status");
        let source = kube::Error::Api(Box::new(status));
        assert!(!is_retriable(&source));
        let e = ClusterError::Forbidden {
            verb: "apply",
            what: "ciliumnodeconfigs cilium-default".into(),
            source,
        };
        assert!(!e.is_retriable());
        let s = e.to_string();
        assert!(
            s.contains("cannot create resource \"ciliumnodeconfigs\" in API group \"cilium.io\" in the namespace \"kube-system\"")
                && s.contains("cni-migrate rbac"),
            "{s}"
        );
    }
}
