//! How a run ends on the terminal: the outcome printed and mapped to the exit code, the
//! rollback of nodes one after another, the summary.

use executor::{
    outcome::{Outcome, RollbackEnd, Summary},
    runtime::Runner,
};

use crate::failure::{Failure, exit};

/// Prints how the run ended and maps it to the exit code.
pub(super) fn report(
    outcome: Result<Outcome, executor::outcome::RunError>,
    resume_cmd: &str,
    json: bool,
) -> Result<u8, Failure> {
    match outcome {
        Ok(Outcome::Finished(summary)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "summary", "summary": summary,
                        "throttledSeconds": cluster::telemetry::throttled().as_secs_f64()})
                );
            } else {
                print_summary(&summary);
                let throttled = cluster::telemetry::throttled();
                if !throttled.is_zero() {
                    println!(
                        "  waited {:.1}s in all for the client rate limit (--qps, --burst) and the API server's Retry-After",
                        throttled.as_secs_f64()
                    );
                }
            }
            Ok(exit::OK)
        }
        Ok(Outcome::Gate { step, message }) => {
            eprintln!("stopped at a gate ({step}): {message}\nthen: {resume_cmd}");
            Ok(exit::GATE)
        }
        Ok(Outcome::Paused) => {
            eprintln!("paused; continue with: {resume_cmd}");
            Ok(exit::GATE)
        }
        Ok(Outcome::Failed { step, node, reason }) => {
            let on = node.map(|n| format!(" on node {n}")).unwrap_or_default();
            eprintln!(
                "error: step {step}{on} failed: {reason}\n\
                 the node is left as the checkpoint records it (cordoned nodes stay cordoned; nothing was forced).\n\
                 see `cni-migrate status`; fix the cause, then: {resume_cmd}"
            );
            Ok(exit::FAILED)
        }
        Err(e) => Err(Failure {
            code: exit::FAILED,
            error: anyhow::Error::new(e).context(format!(
                "the run stopped; see `cni-migrate status`, then: {resume_cmd}"
            )),
        }),
    }
}

/// Rolls back the nodes, one after another; stops at the first failure.
pub(super) async fn rollback_nodes(
    runner: &Runner<'_>,
    nodes: &[String],
    json: bool,
) -> Result<u8, Failure> {
    if nodes.is_empty() {
        println!("no node was touched by the migration: nothing to roll back");
        return Ok(exit::OK);
    }
    let mut back = Vec::new();
    for n in nodes {
        let end = runner.rollback(n).await.map_err(|e| Failure {
            code: exit::FAILED,
            error: anyhow::Error::new(e).context(format!("rolling back {n}")),
        })?;
        if json {
            let (result, message) = match &end {
                RollbackEnd::Done(m) => ("done", m.clone()),
                RollbackEnd::Nothing(m) => ("nothing", m.clone()),
                RollbackEnd::Refused(m) => ("refused", m.clone()),
                RollbackEnd::Failed { step, reason } => ("failed", format!("{step}: {reason}")),
            };
            println!(
                "{}",
                serde_json::json!({"event": "rollback", "node": n, "result": result, "message": message})
            );
        }
        match end {
            RollbackEnd::Done(m) => {
                if !json {
                    println!("{n}: back on the old CNI: {m}");
                }
                back.push(n.clone());
            }
            RollbackEnd::Nothing(m) => println!("{m}"),
            RollbackEnd::Refused(reason) => {
                return Err(Failure::bad_input(anyhow::anyhow!(reason)));
            }
            RollbackEnd::Failed { step, reason } => {
                eprintln!(
                    "error: rollback of {n} failed at {step}: {reason}\n\
                     the node is left as it is (cordoned); fix the cause and run the rollback again"
                );
                return Ok(exit::FAILED);
            }
        }
    }
    if !back.is_empty() {
        eprintln!(
            "rolled back {}; they are held: `cni-migrate resume --retry NODE` migrates one again",
            back.join(", ")
        );
    }
    Ok(exit::OK)
}

fn print_summary(s: &Summary) {
    println!(
        "\nmigration finished: {} node(s) in {}s",
        s.nodes, s.seconds
    );
    if !s.node_seconds.is_empty() {
        let total: u64 = s.node_seconds.values().sum();
        let max = s.node_seconds.values().max().copied().unwrap_or(0);
        println!(
            "  per node: {}s on average, {max}s the longest",
            total / s.node_seconds.len() as u64
        );
    }
    let evicted: usize = s.evicted.values().sum();
    println!("  pods evicted by this run: {evicted}");
    for (pdb, secs) in &s.pdb_waits {
        println!("  waited {secs}s on PodDisruptionBudget {pdb}");
    }
    for w in &s.warnings {
        println!("  warning from the plan: {w}");
    }
}
