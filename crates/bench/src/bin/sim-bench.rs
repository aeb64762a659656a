//! Serves a synthetic 5,000-node, 150,000-pod cluster (realistic ~7 KB pods) from the
//! simulated API server and prints: load time, peak memory, a paged LIST of every pod, the
//! median latency of a LIST by `spec.nodeName`, and how long a change takes to reach many
//! watchers. Targets (2-core machine): field-selected LIST under 5 ms median, under 2 GiB.
//!
//! ```text
//! cargo run --release -p cni-migrate-bench --bin sim-bench -- [--nodes 5000] [--pods-per-node 30]
//!     [--samples 200] [--watchers 100]
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{median, mib, peak_rss, rss, secs};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} needs a number")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = arg("--nodes", 5000)?;
    let ppn = arg("--pods-per-node", 30)?;
    let samples = arg("--samples", 200)?.max(1);
    let watchers = arg("--watchers", 100)?;
    let params: synthetic::Params =
        format!("nodes={nodes},pods-per-node={ppn},cni=flannel,control-planes=3").parse()?;

    let sim = sim::Sim::start(0).await?;
    let t = Instant::now();
    let objects = sim.load_synthetic(&params);
    println!(
        "loaded {objects} objects ({} pods) in {}; RSS {} (peak {})",
        sim.store().count("/pods"),
        secs(t.elapsed()),
        rss().map_or_else(|| "n/a".into(), mib),
        peak_rss().map_or_else(|| "n/a".into(), mib)
    );

    let dir = tempfile::tempdir()?;
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc)?;
    let client = cluster::connect(&cluster::ClusterArgs {
        kubeconfig: Some(kc),
        context: None,
    })
    .await?;

    // A paged LIST of every pod, decoded into the planner's projection (what `plan` does).
    let t = Instant::now();
    let pods: Vec<planner::snapshot::PodInfo> =
        cluster::discovery::list_all(&client, "/api/v1/pods").await?;
    let all = t.elapsed();
    println!(
        "LIST all pods, 500 a page, into projections: {} pods in {}",
        pods.len(),
        secs(all)
    );
    if pods.len() != nodes * ppn {
        bail!("expected {} pods, listed {}", nodes * ppn, pods.len());
    }
    drop(pods);

    // LIST by spec.nodeName, full k8s-openapi Pods as a controller would.
    let api: Api<Pod> = Api::all(client.clone());
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let node = synthetic::node_name(&params, (i * 7919) % nodes);
        let t = Instant::now();
        let l = api
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        lat.push(t.elapsed());
        if l.items.len() != ppn {
            bail!("{node}: expected {ppn} pods, got {}", l.items.len());
        }
    }
    let med = median(lat.clone());
    lat.sort();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
    println!(
        "LIST pods by spec.nodeName ({ppn} pods each, {samples} samples): median {:.2} ms, p99 {:.2} ms (target < 5 ms median: {})",
        med.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if med < Duration::from_millis(5) {
            "met"
        } else {
            "MISSED"
        }
    );

    // Watch fan-out: many watchers on nodes, one change, time until every watcher saw it.
    let nodes_api: Api<Node> = Api::all(client.clone());
    let rv = nodes_api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        streams.push(
            nodes_api
                .watch(&WatchParams::default().timeout(60), &rv)
                .await?
                .boxed(),
        );
    }
    let target = synthetic::node_name(&params, 0);
    let t = Instant::now();
    nodes_api
        .patch(
            &target,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"bench": "1"}}})),
        )
        .await?;
    let waits = futures::future::join_all(streams.into_iter().map(|mut s| async move {
        loop {
            match s.try_next().await {
                Ok(Some(WatchEvent::Modified(_))) => return Some(Instant::now()),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }))
    .await;
    let got: Vec<Duration> = waits.into_iter().flatten().map(|at| at - t).collect();
    println!(
        "watch fan-out: {} of {watchers} watchers saw the change; median {:.2} ms, last {:.2} ms",
        got.len(),
        median(got.clone()).as_secs_f64() * 1e3,
        got.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let peak = peak_rss().unwrap_or(0);
    println!(
        "peak RSS of the whole benchmark (sim + client): {} (target < 2 GiB: {})",
        mib(peak),
        if peak < 2 << 30 { "met" } else { "MISSED" }
    );
    Ok(())
}
