//! Every request the tool sends, seen once: a tower layer on the kube client that tells an
//! [`ApiObserver`] the verb, the object, the answer's code and the step that made it (metrics
//! count them by verb and code; the audit trail lists the mutating ones).
//!
//! ```text
//! executor: in_step("node-1/cordon", step future) ─► task-local STEP
//! kube::Client ─► Buffer ─► TelemetryLayer ─► HTTP
//!                              └─ the response future runs in the caller's task: it reads
//!                                 STEP, awaits the answer, and tells the observer
//! ```
//!
//! kube's `Buffer` calls the layer from its worker task but hands the response future back to
//! the caller, so the task-local of the step is read where it was set.
//!
//! The same layer is the client-side rate limit (`--qps`, `--burst`): one token bucket for
//! every request of the process, waited for in the caller's task before the request goes out.
//! A 429 with `Retry-After` (API Priority and Fairness says when to come back) pauses the whole
//! bucket until then, so the caller's retry, and everybody else's request, waits it out; an
//! eviction refused by a PodDisruptionBudget is a 429 without `Retry-After` and pauses nothing
//! (the drain has its own pacing). Time spent waiting is added up ([`throttled`]).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use http::{Method, Request, Response};
use kube::client::Body;
use serde::Serialize;

tokio::task_local! {
    static STEP: String;
}

/// Runs `fut` as the work of `step`: every request it sends is attributed to the step.
pub async fn in_step<F: Future>(step: &str, fut: F) -> F::Output {
    STEP.scope(step.to_owned(), fut).await
}

/// The step the current task works for, if any.
pub fn current_step() -> Option<String> {
    STEP.try_with(Clone::clone).ok()
}

/// One request and its answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCall {
    /// The Kubernetes verb: get, list, watch, create, update, patch, apply, delete,
    /// deletecollection.
    pub verb: &'static str,
    /// The API group (empty for the core group).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `eviction`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// The namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name (for a create, from the body sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The HTTP status of the answer; 0 when none came (a connection error).
    pub code: u16,
    /// The step that made the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Seconds the request took.
    #[serde(skip)]
    pub seconds: f64,
}

impl ApiCall {
    /// Whether the request changes something.
    pub fn mutating(&self) -> bool {
        matches!(
            self.verb,
            "create" | "update" | "patch" | "apply" | "delete" | "deletecollection"
        )
    }

    /// The object, `resource[/subresource] namespace/name`, for humans.
    pub fn object(&self) -> String {
        let mut s = self.resource.clone();
        if !self.group.is_empty() {
            s = format!("{s}.{}", self.group);
        }
        if let Some(sub) = &self.subresource {
            s = format!("{s}/{sub}");
        }
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => format!("{s} {ns}/{n}"),
            (None, Some(n)) => format!("{s} {n}"),
            (Some(ns), None) => format!("{s} in {ns}"),
            (None, None) => s,
        }
    }

    /// Parses a request's method, path, query and content type.
    pub fn of(method: &Method, path: &str, query: &str, content_type: Option<&str>) -> Self {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
            _ => (String::new(), &segs[..0]),
        };
        let mut call = ApiCall {
            group,
            ..ApiCall::default()
        };
        let rest: &[&str] = match rest {
            ["namespaces", ns, resource, tail @ ..]
                if !matches!(*resource, "status" | "finalize") =>
            {
                call.namespace = Some((*ns).to_owned());
                call.resource = (*resource).to_owned();
                tail
            }
            [resource, tail @ ..] => {
                call.resource = (*resource).to_owned();
                tail
            }
            [] => {
                call.resource = path.to_owned();
                &[]
            }
        };
        call.name = rest.first().map(|s| (*s).to_owned());
        call.subresource = rest.get(1).map(|s| (*s).to_owned());
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        call.verb = match *method {
            Method::GET if watch => "watch",
            Method::GET if call.name.is_none() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH if content_type.is_some_and(|c| c.contains("apply-patch")) => "apply",
            Method::PATCH => "patch",
            Method::DELETE if call.name.is_none() => "deletecollection",
            Method::DELETE => "delete",
            _ => "other",
        };
        call
    }
}

/// Told of every request.
pub trait ApiObserver: Send + Sync {
    /// One request, answered (or failed).
    fn call(&self, call: &ApiCall);
}

static GLOBAL: OnceLock<Arc<dyn ApiObserver>> = OnceLock::new();
static LIMIT: OnceLock<Arc<Limiter>> = OnceLock::new();
static THROTTLED_MICROS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A token bucket: `qps` tokens a second, at most `burst` saved; a request takes one, waiting
/// for it when there is none. A `Retry-After` pauses it.
pub struct Limiter {
    qps: f64,
    burst: f64,
    state: std::sync::Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: tokio::time::Instant,
    paused_until: Option<tokio::time::Instant>,
}

impl Limiter {
    /// A bucket of `qps` a second and `burst` at once (at least 0.01 and 1; an infinite `qps`
    /// limits nothing but still honours `Retry-After`).
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: qps.max(0.01),
            burst,
            state: std::sync::Mutex::new(Bucket {
                tokens: burst,
                last: tokio::time::Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Takes a token, waiting for it (and for a `Retry-After` pause); returns how long it
    /// waited. Tokens are reserved in order, so waiters are served first come, first served.
    pub async fn acquire(&self) -> std::time::Duration {
        let wait = {
            let mut b = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = if self.qps.is_finite() {
                (b.tokens + elapsed * self.qps).min(self.burst)
            } else {
                self.burst
            };
            b.last = now;
            b.tokens -= 1.0;
            let for_token = if b.tokens >= 0.0 {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs_f64(-b.tokens / self.qps)
            };
            let for_pause = b
                .paused_until
                .map(|u| u.saturating_duration_since(now))
                .unwrap_or_default();
            for_token.max(for_pause)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            THROTTLED_MICROS.fetch_add(
                u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        wait
    }

    /// Holds every request back for `d` (a `Retry-After`).
    pub fn pause_for(&self, d: std::time::Duration) {
        let until = tokio::time::Instant::now() + d;
        let mut b = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.paused_until.is_none_or(|u| u < until) {
            b.paused_until = Some(until);
        }
    }
}

/// Whether a request is the run's Lease (`coordination.k8s.io` leases): it never waits for the
/// rate limit or a `Retry-After` pause. A renewal held back past the Lease's duration loses
/// the lock and stops the run, which costs far more than one request over the limit.
fn renews_the_lock(path: &str) -> bool {
    path.starts_with("/apis/coordination.k8s.io/") && path.contains("/leases")
}

/// Sets the process's rate limit (the CLI does, once, from `--qps` and `--burst`); clients
/// built by [`crate::connect`] wait for it. A second call is ignored.
pub fn set_rate_limit(qps: f64, burst: u32) {
    let _ = LIMIT.set(Arc::new(Limiter::new(qps, burst)));
}

/// Time the process's requests spent waiting for the rate limit (and `Retry-After`s).
pub fn throttled() -> std::time::Duration {
    std::time::Duration::from_micros(THROTTLED_MICROS.load(std::sync::atomic::Ordering::Relaxed))
}

/// A `Retry-After` header: seconds (an HTTP date is read as 1 s).
fn retry_after(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    Some(std::time::Duration::from_secs(
        v.trim().parse::<u64>().unwrap_or(1).clamp(1, 60),
    ))
}

/// Installs the process's observer (the CLI does, once); clients built by [`crate::connect`]
/// report to it. A second call is ignored.
pub fn install(observer: Arc<dyn ApiObserver>) {
    let _ = GLOBAL.set(observer);
}

/// The layer: reports to `observer`, or to the installed one when `None`; waits for `limiter`,
/// or for the process's when `None`.
#[derive(Clone, Default)]
pub struct TelemetryLayer {
    observer: Option<Arc<dyn ApiObserver>>,
    limiter: Option<Arc<Limiter>>,
}

impl TelemetryLayer {
    /// A layer reporting to `observer`.
    pub fn new(observer: Arc<dyn ApiObserver>) -> Self {
        Self {
            observer: Some(observer),
            limiter: None,
        }
    }

    /// The same, with its own rate limit.
    #[must_use]
    pub fn limited(mut self, limiter: Arc<Limiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// A layer reporting to the observer [`install`]ed in the process, if any, under the
    /// process's rate limit, if any.
    pub fn global() -> Self {
        Self {
            observer: None,
            limiter: None,
        }
    }
}

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            observer: self.observer.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`TelemetryLayer`] makes.
#[derive(Clone)]
pub struct TelemetryService<S> {
    inner: S,
    observer: Option<Arc<dyn ApiObserver>>,
    limiter: Option<Arc<Limiter>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<Body>> for TelemetryService<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let observer = self.observer.clone().or_else(|| GLOBAL.get().cloned());
        let limiter = self.limiter.clone().or_else(|| LIMIT.get().cloned());
        let waits = !renews_the_lock(req.uri().path());
        let Some(observer) = observer else {
            let fut = self.inner.call(req);
            return Box::pin(async move {
                if let Some(l) = limiter.as_ref().filter(|_| waits) {
                    l.acquire().await;
                }
                let result = fut.await;
                if let (Some(l), Ok(r)) = (&limiter, &result)
                    && r.status() == http::StatusCode::TOO_MANY_REQUESTS
                    && let Some(d) = retry_after(r.headers())
                {
                    l.pause_for(d);
                }
                result
            });
        };
        let mut call = ApiCall::of(
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or_default(),
            req.headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let body = (call.verb == "create" && call.name.is_none())
            .then(|| req.body().try_clone())
            .flatten();
        let fut = self.inner.call(req);
        Box::pin(async move {
            if let Some(l) = limiter.as_ref().filter(|_| waits) {
                l.acquire().await;
            }
            let start = Instant::now();
            call.step = current_step();
            if let Some(body) = body
                && let Ok(bytes) = body.collect_bytes().await
            {
                call.name = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/metadata/name")
                            .or_else(|| v.pointer("/metadata/generateName"))
                            .and_then(|n| n.as_str())
                            .map(str::to_owned)
                    });
            }
            let result = fut.await;
            call.code = result.as_ref().map_or(0, |r| r.status().as_u16());
            if let (Some(l), Ok(r)) = (&limiter, &result)
                && r.status() == http::StatusCode::TOO_MANY_REQUESTS
                && let Some(d) = retry_after(r.headers())
            {
                l.pause_for(d);
            }
            call.seconds = start.elapsed().as_secs_f64();
            observer.call(&call);
            result
        })
    }
}

/// Builds a client from a configuration with the [`TelemetryLayer`] reporting to the
/// installed observer.
///
/// # Errors
/// kube's, when the configuration does not make a client.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&TelemetryLayer::global())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_verb_and_object() {
        let c = ApiCall::of(
            &Method::POST,
            "/api/v1/namespaces/shop/pods/web-0/eviction",
            "",
            None,
        );
        assert_eq!(
            (c.verb, c.resource.as_str(), c.subresource.as_deref()),
            ("create", "pods", Some("eviction"))
        );
        assert_eq!(c.object(), "pods/eviction shop/web-0");
        assert!(c.mutating());
        let c = ApiCall::of(
            &Method::PATCH,
            "/api/v1/nodes/n1",
            "",
            Some("application/merge-patch+json"),
        );
        assert_eq!((c.verb, c.object().as_str()), ("patch", "nodes n1"));
        let c = ApiCall::of(
            &Method::GET,
            "/api/v1/pods",
            "fieldSelector=spec.nodeName%3Dn1",
            None,
        );
        assert_eq!((c.verb, c.resource.as_str()), ("list", "pods"));
        assert!(!c.mutating());
        let c = ApiCall::of(&Method::GET, "/api/v1/pods", "watch=true", None);
        assert_eq!(c.verb, "watch");
        let c = ApiCall::of(
            &Method::PATCH,
            "/apis/cilium.io/v2/namespaces/kube-system/ciliumnodeconfigs/x",
            "fieldManager=cni-migrate",
            Some("application/apply-patch+yaml"),
        );
        assert_eq!(c.verb, "apply");
        let c = ApiCall::of(
            &Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/cni-migrate",
            "",
            None,
        );
        assert_eq!(
            c.object(),
            "leases.coordination.k8s.io kube-system/cni-migrate"
        );
        let c = ApiCall::of(
            &Method::DELETE,
            "/api/v1/namespaces/kube-system/pods",
            "labelSelector=x",
            None,
        );
        assert_eq!(c.verb, "deletecollection");
        let c = ApiCall::of(&Method::GET, "/api/v1/namespaces/kube-system", "", None);
        assert_eq!(
            (c.verb, c.resource.as_str(), c.name.as_deref()),
            ("get", "namespaces", Some("kube-system"))
        );
    }
}
