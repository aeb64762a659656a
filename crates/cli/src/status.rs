//! `cni-migrate status` and `cni-migrate pause`: the executor's status document, printed as text
//! or JSON, and a pause written into the checkpoint for the running run to pick up.

use clap::Args;
use cluster::KubeCluster;
use executor::{
    session::{self, Paused},
    status::{LockView, NodeState, RunState, Status},
};

use crate::{
    args::{KubeArgs, StateArgs, json_output, open_store, runtime},
    failure::{Failure, exit},
};

/// `cni-migrate status` and `cni-migrate pause`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Where the checkpoint lives.
    #[command(flatten)]
    pub state: StateArgs,
    /// Output: `text` or `json` (the documented status document, see the README).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: String,
    /// Keep watching: print each change of a node or cluster step as it lands in the
    /// checkpoint, until the run finishes or stops at a gate, a pause or a failure (wherever
    /// the run is: a terminal, a Job's pod, another machine).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With `--follow`: how often to read the checkpoint.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub interval: humantime::Duration,
}

/// `cni-migrate status`.
///
/// # Errors
/// Bad flags, or the checkpoint cannot be read.
pub fn status(args: StatusArgs) -> Result<u8, Failure> {
    let state = args.state.location()?;
    let json = json_output(&args.output)?;
    runtime()?.block_on(async {
        let (store, client) = open_store(&args.kube, &state).await?;
        let Some(ck) = store.load().await.map_err(Failure::other)? else {
            println!("no migration is recorded in {}", store.describe());
            return Ok(exit::OK);
        };
        if args.follow {
            return follow(&*store, client.as_ref(), ck, json, args.interval.into()).await;
        }
        let lock = lock_view(client.as_ref()).await;
        let mut status = Status::new(&ck, &store.describe(), lock);
        if let Some(c) = &client {
            status.pods = executor::status::managed_pods(&KubeCluster::new(c.clone())).await;
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).map_err(Failure::other)?
            );
        } else {
            print!("{}", text(&status));
        }
        Ok(exit::OK)
    })
}

/// The Lease as `status` shows it, when the cluster answers.
async fn lock_view(client: Option<&kube::Client>) -> Option<LockView> {
    let h = cluster::lease::holder(client?).await.ok().flatten()?;
    Some(LockView {
        holder: h.holder,
        fresh: h.fresh,
        renewed_seconds_ago: h.renewed_seconds_ago,
    })
}

/// Where each node and cluster step is, in one comparable line each.
fn positions(s: &Status) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for c in &s.cluster_steps {
        out.insert(
            c.id.clone(),
            serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
    }
    for n in &s.nodes {
        let state = serde_json::to_value(n.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let at = n.message.clone().unwrap_or_default();
        out.insert(
            n.name.clone(),
            if at.is_empty() {
                state
            } else {
                format!("{state}: {at}")
            },
        );
    }
    out
}

/// `status --follow`: the changes as they land, then the end.
async fn follow(
    store: &dyn executor::store::StateStore,
    client: Option<&kube::Client>,
    first: executor::checkpoint::Checkpoint,
    json: bool,
    every: std::time::Duration,
) -> Result<u8, Failure> {
    let mut seen = std::collections::BTreeMap::new();
    let mut ck = first;
    loop {
        let lock = lock_view(client).await;
        let status = Status::new(&ck, &store.describe(), lock);
        for (what, now) in positions(&status) {
            if seen.get(&what) != Some(&now) {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"time": status.updated, "object": what, "now": now})
                    );
                } else {
                    let at = humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(status.updated),
                    );
                    println!("{at} {what}: {now}");
                }
                seen.insert(what, now);
            }
        }
        let end = match status.state {
            RunState::Finished => Some(exit::OK),
            RunState::Gate | RunState::Paused => Some(exit::GATE),
            RunState::Failed => Some(exit::FAILED),
            _ => None,
        };
        if let Some(code) = end {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"time": status.updated, "state": status.state, "message": status.message})
                );
            } else {
                println!("{}", status.message);
            }
            return Ok(code);
        }
        tokio::time::sleep(every).await;
        ck = match store.load().await.map_err(Failure::other)? {
            Some(c) => c,
            None => {
                println!("the checkpoint in {} is gone", store.describe());
                return Ok(exit::OTHER);
            }
        };
    }
}

/// The status as a person reads it.
fn text(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let age = executor::events::unix_now().saturating_sub(s.updated);
    let _ = writeln!(
        out,
        "migration {} (fingerprint {}), last run {}, checkpoint in {}, updated {age}s ago",
        s.plan,
        s.fingerprint.chars().take(12).collect::<String>(),
        s.run_id,
        s.checkpoint
    );
    let _ = writeln!(out, "state: {}", s.message);
    let lock = s.lock.as_ref().map_or_else(
        || "free".to_owned(),
        |l| {
            format!(
                "{}{}{}",
                l.holder,
                l.renewed_seconds_ago
                    .map(|a| format!(", renewed {a}s ago"))
                    .unwrap_or_default(),
                if l.fresh { "" } else { " (stale)" }
            )
        },
    );
    let _ = writeln!(out, "lock: {lock}");
    if let Some(m) = &s.pods {
        let more = if m.total - m.managed > m.unmanaged.len() {
            ", ..."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "pods: {}{}",
            m.summary,
            if m.unmanaged.is_empty() {
                String::new()
            } else {
                format!(" (not managed: {}{more})", m.unmanaged.join(", "))
            }
        );
    }
    let globals: Vec<String> = s
        .cluster_steps
        .iter()
        .map(|g| format!("{} {}", g.id, g.state.as_str()))
        .collect();
    let _ = writeln!(out, "cluster steps: {}", globals.join(", "));
    let c = &s.counts;
    let _ = writeln!(
        out,
        "nodes: {} in all: {} done, {} in flight, {} failed, {} not started{}",
        c.nodes,
        c.done,
        c.in_flight,
        c.failed,
        c.pending,
        [
            (c.rolled_back, "rolled back"),
            (c.joined, "joined mid-migration"),
            (c.left, "left the cluster"),
            (c.replaced, "replaced under the same name"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!(", {n} {what}"))
        .collect::<String>()
    );
    let line = |state: NodeState| s.nodes.iter().filter(move |n| n.state == state);
    for n in line(NodeState::Failed) {
        let _ = writeln!(
            out,
            "  FAILED     {}: {} failed: {}",
            n.name,
            n.step.as_deref().unwrap_or("a step"),
            n.message.as_deref().unwrap_or_default()
        );
    }
    for n in line(NodeState::InFlight).chain(line(NodeState::RolledBack)) {
        let _ = writeln!(
            out,
            "  in flight  {}: {}",
            n.name,
            n.message.as_deref().unwrap_or_default()
        );
    }
    for n in line(NodeState::Left) {
        let _ = writeln!(
            out,
            "  left       {}: {}",
            n.name,
            n.message.as_deref().unwrap_or_default()
        );
    }
    for n in &s.replaced {
        let _ = writeln!(
            out,
            "  replaced   {}{}: {}",
            n.name,
            n.uid
                .as_deref()
                .map(|u| format!(" (UID {u})"))
                .unwrap_or_default(),
            n.message.as_deref().unwrap_or_default()
        );
    }
    for n in s
        .nodes
        .iter()
        .filter(|n| n.joined.is_some() && n.state != NodeState::Left)
    {
        let _ = writeln!(
            out,
            "  joined     {}{}: {}",
            n.name,
            n.uid
                .as_deref()
                .map(|u| format!(" (UID {u})"))
                .unwrap_or_default(),
            serde_json::to_value(n.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    if c.done <= 20 {
        for n in line(NodeState::Done) {
            let _ = writeln!(out, "  done       {}", n.name);
        }
    }
    out
}

/// `cni-migrate pause`: no new node is admitted; nodes in flight finish.
///
/// # Errors
/// Nothing recorded, or the checkpoint cannot be written.
pub fn pause(args: StatusArgs) -> Result<u8, Failure> {
    let state = args.state.location()?;
    runtime()?.block_on(async {
        let (store, _) = open_store(&args.kube, &state).await?;
        match session::pause(&*store).await {
            Ok(Paused::Already) => println!("already paused"),
            Ok(Paused::Now) => println!(
                "paused: no new node starts; nodes in flight finish their steps. `cni-migrate resume` goes on"
            ),
            Err(session::SessionError::NothingToResume { store }) => {
                return Err(Failure::bad_input(anyhow::anyhow!(
                    "nothing to pause: no migration is recorded in {store}"
                )));
            }
            Err(e) => return Err(Failure::other(e)),
        }
        Ok(exit::OK)
    })
}
