//! `cni-migrate status` and `cni-migrate pause`: the executor's status document, printed as text
//! or JSON, and a pause written into the checkpoint for the running run to pick up.

use clap::Args;
use cluster::KubeCluster;
use executor::{
    session::{self, Paused},
    status::{LockView, NodeState, Status},
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
        let lock = match &client {
            Some(c) => cluster::lease::holder(c)
                .await
                .ok()
                .flatten()
                .map(|h| LockView {
                    holder: h.holder,
                    fresh: h.fresh,
                    renewed_seconds_ago: h.renewed_seconds_ago,
                }),
            None => None,
        };
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
        if c.rolled_back > 0 {
            format!(", {} rolled back", c.rolled_back)
        } else {
            String::new()
        }
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
