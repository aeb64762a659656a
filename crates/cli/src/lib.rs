//! The `cni-migrate` command line (also `kubectl cni-migrate`).
//!
//! A thin layer: parse arguments, validate them into a configuration before any I/O, call the
//! libraries, print results on stdout and logs on stderr, and map outcomes to exit codes.
//!
//! | exit | meaning                                                          |
//! |------|------------------------------------------------------------------|
//! | 0    | done; for `plan`, no error findings                              |
//! | 1    | any other failure                                                |
//! | 2    | bad input: unreadable or invalid spec, dump or flags             |
//! | 3    | preflight found errors (the plan and its findings are printed)   |
//! | 4    | stopped at a gate or paused (`resume` goes on)                   |
//! | 5    | stopped by a failure (the message names node, step and reason)   |

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use planner::{
    MigrationSpec,
    render::{self, Format},
};

pub mod args;
pub mod failure;
pub mod job;
pub mod ops;
pub mod progress;
pub mod rbac;
pub mod rehearse;
pub mod run;
pub mod signal;
pub mod status;

pub use args::KubeArgs;
pub use failure::{Failure, exit};

/// Move a live Kubernetes cluster from Flannel, Calico or the AWS VPC CNI to Cilium, node by node.
#[derive(Debug, Parser)]
#[command(name = "cni-migrate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect the old CNI, preflight the spec and print the migration plan (changes nothing).
    Plan(PlanArgs),
    /// Run the migration: node by node, with a lock and a checkpoint in the cluster.
    Apply(run::ApplyArgs),
    /// Go on with a migration that stopped (crash, gate, pause or failure) where it stopped.
    Resume(run::ApplyArgs),
    /// Return a node (or `--all`, newest first) to the old CNI: cordon, drain, unlabel, restart
    /// the agent, restore the old CNI configuration, verify, uncordon. Refused once the finale
    /// has begun.
    Rollback(run::RollbackArgs),
    /// Print the checkpoint: which nodes are done, in flight or failed, and why.
    Status(status::StatusArgs),
    /// Stop admitting nodes; nodes in flight finish. `resume` goes on.
    Pause(status::StatusArgs),
    /// Rehearse the whole migration on a simulated cluster (embedded, a dump, or synthetic) and
    /// write a report: timeline, evictions, PDB waits, connectivity, what would stop the run.
    Rehearse(rehearse::RehearseArgs),
    /// Print the RBAC objects (ClusterRole, Role, bindings) with exactly what the tool uses.
    Rbac(rbac::RbacArgs),
    /// Print a Job (with its spec ConfigMap, ServiceAccount and RBAC) that runs the migration
    /// inside the cluster, for `kubectl apply -f -`.
    Job(job::JobArgs),
    /// Serve a simulated Kubernetes API server (for tests, rehearsals and trying things out).
    Sim(SimArgs),
}

/// `cni-migrate sim`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    /// A tool that talks to a simulated cluster.
    #[command(subcommand)]
    pub action: Option<SimAction>,
    /// Load the cluster from a `kubectl get ... -o json|yaml` dump.
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub from_dump: Option<PathBuf>,
    /// Generate a synthetic cluster, e.g. `nodes=5000,pods-per-node=30,cni=flannel`.
    #[arg(long, value_name = "PARAMS")]
    pub synthetic: Option<String>,
    /// Port on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write a kubeconfig for kubectl and kube-rs here.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Faults for the whole run, e.g.
    /// `error-500=0.05,error-429=0.05,conflict=0.05,latency=0ms-200ms,drop-watch=5s,not-ready=kind-worker@30s`;
    /// node faults of the model: `agent-stuck=NODE` (its agent crash-loops once the node is
    /// labelled), `cnc-ignored=NODE` (its agent does not see CiliumNodeConfigs); node churn:
    /// `node-join=NAME@30s` (a new Ready worker), `node-leave=NAME@60s` (a node deleted).
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
}

/// Tools for a simulated cluster.
#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// A stand-in for `helm upgrade --install cilium cilium/cilium ...`, with helm's arguments:
    /// renders cilium-config from the values and creates or rolls the agent DaemonSet.
    Helm {
        /// helm's arguments, e.g. `upgrade --install cilium cilium/cilium --namespace kube-system -f values.yaml --kubeconfig F`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// `cni-migrate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The MigrationSpec file.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Plan offline from a `kubectl get ... -o yaml|json` dump instead of a live cluster.
    #[arg(long, value_name = "FILE")]
    pub from_dump: Option<PathBuf>,
    /// The live cluster (when no dump is given).
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Output format: table, yaml, json, markdown, dot, mermaid, runbook.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "table",
        value_name = "FORMAT"
    )]
    pub output: String,
    /// Also write values-migration.yaml, values-final.yaml, ciliumnodeconfig.yaml, plan.md and
    /// plan.json into this directory.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Runs the command line and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            });
        }
    };
    init_tracing();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line.
///
/// # Errors
/// A [`Failure`] carrying the exit code.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Plan(args) => plan(args),
        Command::Apply(args) => run::apply(args, false),
        Command::Resume(args) => run::apply(args, true),
        Command::Rollback(args) => run::rollback(args),
        Command::Status(args) => status::status(args),
        Command::Pause(args) => status::pause(args),
        Command::Rbac(args) => rbac::print(&args),
        Command::Job(args) => job::print(&args),
        Command::Rehearse(args) => rehearse::rehearse(args),
        Command::Sim(args) => sim(args),
    }
}

fn plan(args: PlanArgs) -> Result<u8, Failure> {
    let PlanArgs {
        spec,
        from_dump,
        kube,
        output,
        out_dir,
    } = args;
    let format: Format = output
        .parse()
        .map_err(|e: String| Failure::bad_input(anyhow::anyhow!(e)))?;
    let spec = MigrationSpec::from_file(&spec).map_err(Failure::bad_input)?;
    let snapshot = match from_dump {
        Some(dump) => planner::dump::load_path(&dump).map_err(Failure::bad_input)?,
        // One thread: discovery is one LIST after another, and a single malloc arena keeps the
        // freed page buffers for the next page instead of stranding them per thread.
        None => single_threaded_runtime()?.block_on(async {
            let args = cluster::ClusterArgs {
                kubeconfig: kube.kubeconfig,
                context: kube.context,
            };
            let client = cluster::connect(&args).await.map_err(Failure::bad_input)?;
            cluster::discover(&client).await.map_err(Failure::other)
        })?,
    };
    let plan = planner::plan(&spec, &snapshot);
    // The plan holds what it needs: let the 150,000 pods go before rendering it.
    drop(snapshot);
    if let Some(dir) = out_dir {
        write_out_dir(&plan, &dir).map_err(Failure::other)?;
    }
    let text = render::render(&plan, format).map_err(Failure::other)?;
    print!("{text}");
    if plan.has_errors() {
        eprintln!(
            "preflight found {} error(s): fix them before `cni-migrate apply` (see the findings above)",
            plan.summary.errors
        );
        return Ok(exit::PREFLIGHT);
    }
    Ok(exit::OK)
}

fn single_threaded_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::other)
}

fn sim(args: SimArgs) -> Result<u8, Failure> {
    let SimArgs {
        action,
        from_dump,
        synthetic,
        port,
        kubeconfig_out,
        faults,
    } = args;
    let faults = match faults {
        Some(f) => f
            .parse::<sim::Faults>()
            .map_err(|e| Failure::bad_input(anyhow::anyhow!(e)))?,
        None => sim::Faults::default(),
    };
    if let Some(SimAction::Helm { args }) = action {
        return sim_helm(&args);
    }
    let synthetic = match synthetic {
        Some(s) => Some(s.parse::<synthetic::Params>().map_err(Failure::bad_input)?),
        None => None,
    };
    if let Some(d) = &from_dump
        && !d.exists()
    {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "dump {} does not exist",
            d.display()
        )));
    }
    let opts = sim::ServeOptions {
        from_dump,
        synthetic,
        port,
        kubeconfig_out,
        pod_termination: None,
        faults,
    };
    args::runtime()?
        .block_on(sim::serve(opts))
        .map_err(|e| match e {
            // A fault naming a node the cluster cannot have is bad input, like a bad spec.
            sim::SimError::Fault(_) => Failure::bad_input(anyhow::Error::new(e)),
            e => Failure::other(e),
        })?;
    Ok(exit::OK)
}

fn sim_helm(args: &[String]) -> Result<u8, Failure> {
    let h = sim::helm::parse_args(args).map_err(Failure::bad_input)?;
    if h.release != "cilium" {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "the stand-in only installs the `cilium` release, not `{}`",
            h.release
        )));
    }
    let values = sim::helm::load_values(&h.values).map_err(Failure::bad_input)?;
    args::runtime()?.block_on(async {
        use cluster::Cluster as _;
        let args = cluster::ClusterArgs { kubeconfig: h.kubeconfig.clone(), context: h.context.clone() };
        let client = cluster::connect(&args).await.map_err(Failure::bad_input)?;
        let c = cluster::KubeCluster::new(client);
        let existing = retrying()
            .retry(
                || c.custom("apps/v1", "daemonsets", Some(&h.namespace), "cilium"),
                cluster::ClusterError::is_retriable,
            )
            .await
            .map_err(Failure::other)?;
        let revision = existing
            .as_ref()
            .and_then(|d| d.object["spec"]["template"]["metadata"]["annotations"]["cni-migrate.io/helm-revision"].as_str()?.parse::<u64>().ok())
            .map_or(1, |r| r + 1);
        let version = h.version.clone().unwrap_or_else(|| "1.17.3".to_owned());
        for object in sim::helm::manifests(&h.namespace, &version, &values, revision) {
            let plural = match object["kind"].as_str() {
                Some("ConfigMap") => "configmaps",
                Some("DaemonSet") => "daemonsets",
                _ => "deployments",
            };
            retrying()
                .retry(|| c.apply(plural, &object), cluster::ClusterError::is_retriable)
                .await
                .map_err(Failure::other)?;
        }
        println!(
            "Release \"cilium\" has been {}. Happy Helming!\nNAME: cilium\nNAMESPACE: {}\nREVISION: {revision}",
            if existing.is_some() { "upgraded" } else { "installed" },
            h.namespace
        );
        Ok(exit::OK)
    })
}

/// The Helm stand-in's retries of the API's passing failures.
fn retrying() -> executor::wait::Backoff {
    executor::wait::Backoff::new(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(15),
    )
}

fn write_out_dir(plan: &planner::Plan, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let files = [
        (
            "values-migration.yaml",
            plan.artifacts.values_migration.clone(),
        ),
        ("values-final.yaml", plan.artifacts.values_final.clone()),
        ("ciliumnodeconfig.yaml", plan.artifacts.node_config.clone()),
        ("plan.md", render::render(plan, Format::Markdown)?),
        ("plan.json", render::render(plan, Format::Json)?),
    ];
    for (name, body) in files {
        let path = dir.join(name);
        write_atomically(&path, body.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
