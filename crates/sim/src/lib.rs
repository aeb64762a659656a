//! A simulated Kubernetes API server over real HTTP on 127.0.0.1, with a store of objects
//! behind it: the test bed of cni-migrate's executor, the engine of `cni-migrate rehearse`,
//! and the scale benchmarks' cluster.
//!
//! ```text
//!   kube-rs / kubectl ──HTTP──► server (routing, discovery, verbs, Status, watch, faults)
//!                                   │
//!                                   ▼
//!                                 Store (serialized objects + indexes, event log) ◄── model
//! ```
//!
//! It is a test double for the API server: the product always talks to a real cluster
//! through `kube`, and the tests exercise that same code against this server.

pub mod annotations;
pub mod churn;
pub mod datapath;
pub mod helm;
pub mod model;
pub mod ownership;
pub mod patch;
pub mod registry;
pub mod selectors;
pub mod server;
pub mod store;
pub mod tls;

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{Router, extract::State as AxState};
use serde_json::Value;
pub use server::Faults;
pub use store::Store;

/// Why the simulated cluster could not start or load.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or serving failed.
    #[error("cannot serve on 127.0.0.1:{port}")]
    Bind {
        /// The port asked for (0 = any).
        port: u16,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A dump file could not be read.
    #[error("cannot read dump {path}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A dump could not be parsed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A fault names a node the cluster does not have.
    #[error("faults: {0}")]
    Fault(String),
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A token was asked for a ServiceAccount the cluster does not have.
    #[error("no ServiceAccount {namespace}/{name} in the simulated cluster (apply it first)")]
    NoServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Every URL goes to [`server::handle`].
fn router(state: &Arc<server::State>) -> Router {
    Router::new()
        .fallback(
            |AxState(state): AxState<Arc<server::State>>, method, uri, headers, body| {
                server::handle(state, method, uri, headers, body)
            },
        )
        .with_state(state.clone())
}

/// A running simulated API server.
pub struct Sim {
    addr: SocketAddr,
    state: Arc<server::State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// `true` once stopped: the TLS listeners end with it.
    stopping: tokio::sync::watch::Sender<bool>,
    model: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Starts a server on 127.0.0.1 (`port` 0 picks a free one) over an empty store.
    ///
    /// # Errors
    /// [`SimError::Bind`] when the port cannot be bound.
    pub async fn start(port: u16) -> Result<Sim, SimError> {
        let store = Arc::new(Store::new());
        let state = Arc::new(server::State::new(store, 0x5eed));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| SimError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { port, source })?;
        let app = router(&state);
        // Without TCP_NODELAY a response written in several pieces can wait on the client's
        // delayed ACK (~40 ms a request).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sim {
            addr,
            state,
            shutdown: Some(tx),
            stopping: tokio::sync::watch::channel(false).0,
            model: None,
        })
    }

    /// Serves the same API over TLS as well, on another port, for as long as the sim runs
    /// (see [`tls`]).
    ///
    /// # Errors
    /// [`tls::TlsError`] when the certificates or the listener cannot be made.
    pub async fn serve_tls(&self) -> Result<tls::TlsEndpoint, tls::TlsError> {
        let mut stopping = self.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        tls::serve(router(&self.state), stopped).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store (ground truth, and the model's handle).
    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// Sets the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .state
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// How long gracefully deleted pods stay terminating (`None`: deleted at once).
    pub fn set_pod_termination(&self, delay: Option<Duration>) {
        *self
            .state
            .pod_termination
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = delay;
    }

    /// Spreads termination times log-normally (sigma) around the termination delay.
    pub fn set_termination_spread(&self, sigma: f64) {
        *self
            .state
            .termination_spread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sigma;
    }

    /// Every request served so far, as `(VERB, path?query)`.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// When each request of [`Sim::requests`] arrived.
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every eviction the disruption controller granted, as `namespace/name`, in order.
    pub fn evictions(&self) -> Vec<String> {
        self.state
            .evicted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A kubeconfig for kubectl and kube-rs pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Sim::kubeconfig`] to a file.
    ///
    /// # Errors
    /// [`SimError::Kubeconfig`] when the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| SimError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` with a fresh
    /// token (its requests are checked against the cluster's RBAC objects, see
    /// [`server::auth`]).
    ///
    /// # Errors
    /// [`SimError::NoServiceAccount`] when it does not exist; [`SimError::Kubeconfig`] when the
    /// file cannot be written.
    pub fn write_kubeconfig_for(
        &self,
        namespace: &str,
        service_account: &str,
        path: &Path,
    ) -> Result<(), SimError> {
        if self
            .state
            .store
            .get("/serviceaccounts", namespace, service_account)
            .is_none()
        {
            return Err(SimError::NoServiceAccount {
                namespace: namespace.into(),
                name: service_account.into(),
            });
        }
        let token = server::auth::issue(namespace, service_account);
        let text = self.kubeconfig().replace(
            "- name: sim\n  user: {}\n",
            &format!("- name: sim\n  user:\n    token: {token}\n"),
        );
        std::fs::write(path, text).map_err(|source| SimError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Adds one object (any kind the registry serves; others are skipped). Returns whether it
    /// was stored.
    pub fn insert(&self, mut object: Value) -> bool {
        let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let Some(r) = registry::by_kind(&api_version, &kind) else {
            return false;
        };
        object["apiVersion"] = Value::String(r.api_version());
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.state
            .store
            .create(&r.storage_key(), object, false)
            .is_ok()
    }

    /// Loads every object of a `kubectl get -o json|yaml` dump (a List, several documents, or
    /// single objects). Returns how many were stored.
    ///
    /// # Errors
    /// [`SimError::Read`] / [`SimError::Parse`] naming the file.
    pub fn load_dump(&self, path: &Path) -> Result<usize, SimError> {
        let origin = path.display().to_string();
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|source| SimError::Read {
                path: origin.clone(),
                source,
            })?;
        let docs: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
            serde_json::Deserializer::from_str(&text)
                .into_iter::<Value>()
                .collect::<Result<_, _>>()
                .map_err(|e| SimError::Parse {
                    path: origin.clone(),
                    message: e.to_string(),
                })?
        } else {
            let mut out = Vec::new();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| {
                    SimError::Parse {
                        path: origin.clone(),
                        message: e.to_string(),
                    }
                })?;
                if !v.is_null() {
                    out.push(v);
                }
            }
            out
        };
        let mut n = 0;
        for doc in docs {
            let items = match doc {
                Value::Array(a) => a,
                Value::Object(ref o) if o.get("items").is_some_and(Value::is_array) => {
                    o["items"].as_array().cloned().unwrap_or_default()
                }
                other => vec![other],
            };
            for item in items {
                n += usize::from(self.insert(item));
            }
        }
        Ok(n)
    }

    /// Loads a synthetic cluster (see the `synthetic` crate). Returns how many objects.
    pub fn load_synthetic(&self, params: &synthetic::Params) -> usize {
        synthetic::objects(params)
            .map(|o| usize::from(self.insert(o)))
            .sum()
    }

    /// Starts the model (scheduler, kubelets, workload controllers) behind the API; gracefully
    /// deleted pods then take `termination` to go away.
    pub fn start_model(&mut self, opts: model::ModelOptions, termination: Duration) {
        self.set_pod_termination(Some(termination));
        if self.model.is_none() {
            self.model = Some(model::start(self.state.store.clone(), opts, termination));
        }
    }

    /// Adds one of the model's node faults (`agent-stuck`, `cnc-ignored`; see [`model`]).
    ///
    /// # Errors
    /// The node does not exist.
    pub fn set_node_fault(&self, node: &str, fault: &str) -> Result<(), store::StoreError> {
        let store = self.store();
        let Some(n) = store.get("/nodes", "", node) else {
            return Err(store::StoreError::NotFound {
                kind: "nodes".into(),
                name: node.into(),
            });
        };
        let mut n = n.value();
        let mut faults: Vec<String> = n["metadata"]["annotations"][model::FAULT_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        if !faults.iter().any(|f| f == fault) {
            faults.push(fault.to_owned());
        }
        n["metadata"]["annotations"][model::FAULT_ANNOTATION] = serde_json::json!(faults.join(","));
        store.update("/nodes", n, None, false).map(|_| ())
    }

    /// Sets a node's Ready condition (a fault: the node going NotReady, and back).
    ///
    /// # Errors
    /// When the node does not exist.
    pub fn set_node_ready(&self, node: &str, ready: bool) -> Result<(), store::StoreError> {
        node_ready_in(&self.state.store, node, ready)
    }

    /// Stops serving.
    pub fn stop(&mut self) {
        if let Some(m) = self.model.take() {
            m.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.stopping.send_replace(true);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `cni-migrate sim` serves.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// A dump to load.
    pub from_dump: Option<PathBuf>,
    /// A synthetic cluster to generate instead.
    pub synthetic: Option<synthetic::Params>,
    /// Port (0 = any free one).
    pub port: u16,
    /// Where to write a kubeconfig.
    pub kubeconfig_out: Option<PathBuf>,
    /// How long gracefully deleted pods stay terminating.
    pub pod_termination: Option<Duration>,
    /// Faults for the whole run.
    pub faults: Faults,
}

/// Sets a node's Ready condition in a store: what [`Sim::set_node_ready`] does, for a task
/// that holds only the store (a fault that fires later).
///
/// # Errors
/// When the node does not exist.
pub fn node_ready_in(store: &Store, node: &str, ready: bool) -> Result<(), store::StoreError> {
    let s = store
        .get("/nodes", "", node)
        .ok_or_else(|| store::StoreError::NotFound {
            kind: "nodes".into(),
            name: node.into(),
        })?;
    let mut v = s.value();
    let status = if ready { "True" } else { "Unknown" };
    match v["status"]["conditions"].as_array_mut() {
        Some(conds) => {
            for c in conds.iter_mut().filter(|c| c["type"] == "Ready") {
                c["status"] = Value::String(status.into());
                c["lastTransitionTime"] = Value::String(store::now_rfc3339());
            }
        }
        None => {
            v["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": status}])
        }
    }
    store.update("/nodes", v, None, false).map(|_| ())
}

/// Serves until interrupted (Ctrl-C), printing the URL.
///
/// # Errors
/// When the server cannot start or the cluster cannot be loaded.
pub async fn serve(opts: ServeOptions) -> Result<(), SimError> {
    let mut sim = Sim::start(opts.port).await?;
    let loaded = match (&opts.from_dump, &opts.synthetic) {
        (Some(path), _) => sim.load_dump(path)?,
        (None, Some(p)) => sim.load_synthetic(p),
        (None, None) => 0,
    };
    // The model starts after loading: the loaded objects are the cluster as it is, not changes
    // to react to.
    sim.start_model(
        model::ModelOptions::default(),
        opts.pod_termination.unwrap_or(Duration::from_millis(500)),
    );
    if let Some(path) = &opts.kubeconfig_out {
        sim.write_kubeconfig(path)?;
    }
    let sim = Arc::new(sim);
    for (node, after) in opts.faults.not_ready.clone() {
        let sim = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Err(e) = sim.set_node_ready(&node, false) {
                eprintln!("fault not-ready={node}: {e}");
            } else {
                eprintln!("fault: node {node} is NotReady");
            }
        });
    }
    for (node, fault) in &opts.faults.node_faults {
        sim.set_node_fault(node, fault).map_err(|e| {
            SimError::Fault(format!(
                "{fault}={node}: {e}; name a node of the loaded cluster"
            ))
        })?;
        eprintln!("fault: node {node} has {fault}");
    }
    churn::check(sim.store(), &opts.faults).map_err(SimError::Fault)?;
    churn::spawn(sim.store(), &opts.faults, 1.0, |_, r| match r {
        Ok(what) => eprintln!("fault: {what}"),
        Err(e) => eprintln!("fault {e}"),
    });
    sim.set_faults(opts.faults.clone());
    println!(
        "serving a simulated cluster of {loaded} objects at {}",
        sim.url()
    );
    if let Some(path) = &opts.kubeconfig_out {
        println!(
            "kubeconfig: {} (try: kubectl --kubeconfig {} get nodes)",
            path.display(),
            path.display()
        );
    }
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
