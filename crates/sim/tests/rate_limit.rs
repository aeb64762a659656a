//! The client-side rate limit of the `cluster` crate's telemetry layer, measured where it
//! matters: the arrival times of requests at the simulated API server, over real HTTP. And a
//! 429 with `Retry-After` (API Priority and Fairness) holds every request back until then,
//! while an eviction's 429 (no `Retry-After`) holds nothing.

use std::{sync::Arc, time::Duration};

use cluster::telemetry::{ApiCall, ApiObserver, Limiter, TelemetryLayer};
use sim::{Faults, Sim};

struct Nobody;

impl ApiObserver for Nobody {
    fn call(&self, _: &ApiCall) {}
}

async fn client(sim: &Sim, limiter: Arc<Limiter>) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc).expect("kubeconfig");
    let mut config = cluster::connect::load_config(&cluster::ClusterArgs {
        kubeconfig: Some(kc),
        context: None,
    })
    .await
    .expect("config");
    cluster::configure(&mut config);
    let client = kube::client::ClientBuilder::try_from(config)
        .expect("builder")
        .with_layer(&TelemetryLayer::new(Arc::new(Nobody)).limited(limiter))
        .build();
    (client, dir)
}

/// The most requests that arrived within any window of `window` after the first.
fn busiest(times: &[std::time::Instant], window: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut best = 0;
    let mut j = 0;
    for i in 0..t.len() {
        while t[i].duration_since(t[j]) >= window {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arrive_no_faster_than_the_limit() {
    let sim = Sim::start(0).await.expect("sim");
    let (qps, burst) = (20.0, 5);
    let (client, _dir) = client(&sim, Arc::new(Limiter::new(qps, burst))).await;
    let before = sim.request_times().len();
    let started = std::time::Instant::now();
    // 45 GETs from 15 tasks at once: the burst goes at once, the rest at 20 a second.
    let mut tasks = Vec::new();
    for _ in 0..15 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let _ = c.apiserver_version().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let took = started.elapsed();
    let times: Vec<std::time::Instant> = sim.request_times()[before..].to_vec();
    assert_eq!(times.len(), 45, "every request reached the server");
    // (45 - 5) / 20 = 2 s at least.
    assert!(took >= Duration::from_millis(1950), "took {took:?}");
    // Over any second at the server: at most qps + burst (the bucket refills while it drains).
    let max = busiest(&times, Duration::from_secs(1));
    assert!(max <= 25 + 1, "{max} requests arrived within one second");
    // And the limit is not a trickle either: it ran near the rate asked.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_every_request_until_then() {
    let sim = Sim::start(0).await.expect("sim");
    // No rate limit to speak of: only the Retry-After holds requests back.
    let limiter = Arc::new(Limiter::new(f64::INFINITY, 100));
    let (client, _dir) = client(&sim, limiter.clone()).await;
    sim.set_faults(Faults {
        error_429: 1.0,
        ..Faults::default()
    });
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "default");
    let first = api.get_opt("x").await;
    assert!(
        matches!(&first, Err(kube::Error::Api(s)) if s.code == 429),
        "{first:?}"
    );
    sim.set_faults(Faults::default());
    let at = std::time::Instant::now();
    let before = sim.request_times().len();
    let second = api.get_opt("x").await;
    assert!(matches!(second, Ok(None)), "{second:?}");
    let waited = at.elapsed();
    // The sim's Retry-After is 1 s: the next request left no sooner.
    assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
    assert_eq!(sim.request_times().len(), before + 1);
    assert!(cluster::telemetry::throttled() >= Duration::from_millis(900));
}

/// The run's Lease never waits for the limit or a `Retry-After` pause: a renewal held back past
/// the Lease's duration would lose the lock and stop the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_goes_through_a_pause_and_a_spent_bucket() {
    let sim = Sim::start(0).await.expect("sim");
    let limiter = Arc::new(Limiter::new(1.0, 1));
    let (client, _dir) = client(&sim, limiter.clone()).await;
    let _ = client.apiserver_version().await; // the bucket's only token
    limiter.pause_for(Duration::from_secs(3));
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "kube-system");
    let t = std::time::Instant::now();
    for _ in 0..5 {
        let _ = leases.get_opt("cni-migrate").await.expect("read the lease");
    }
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the Lease waited: {:?}",
        t.elapsed()
    );
    // Anything else waits for the pause.
    let t = std::time::Instant::now();
    let _ = client.apiserver_version().await;
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}
