//! The pure planning core of cni-migrate.
//!
//! ```text
//!  dump / discovery ─► ClusterSnapshot ─► detect ─► NetworkFacts ─┐
//!  MigrationSpec ─────────────────────────────────────────────────┴─► preflight ─► Findings
//!                                                                          │
//!                    values (Helm values, CiliumNodeConfig) ◄──────────────┤
//!                                                                          ▼
//!                                              plan::build ─► Plan (petgraph DAG) ─► render
//!
//!  below them all: names (labels, object names), commands (kubectl / helm lines),
//!                  eviction (what a drain evicts): what plan, values and preflight share,
//!                  so that none of them imports another for it
//! ```
//!
//! Data in, data out: no I/O beyond parsing what it is handed, no clock, no randomness, and a
//! deterministic order everywhere. Everything that touches a cluster lives in other crates.

pub mod commands;
pub mod detect;
pub mod dump;
pub mod eviction;
pub mod facts;
pub mod findings;
pub mod names;
pub mod plan;
pub mod preflight;
pub mod render;
pub mod snapshot;
pub mod spec;
pub mod values;
pub mod yaml;

pub use facts::NetworkFacts;
pub use findings::{Finding, FindingCode, Severity};
pub use plan::{Plan, Step, StepKind};
pub use snapshot::ClusterSnapshot;
pub use spec::MigrationSpec;

/// Detects, preflights and builds the plan in one call.
pub fn plan(spec: &MigrationSpec, snapshot: &ClusterSnapshot) -> Plan {
    let facts = detect::detect(snapshot);
    let findings = preflight::preflight(spec, snapshot, &facts);
    plan::build(spec, snapshot, &facts, findings)
}

/// The plan of a migration that is under way, as recorded when it started: the old CNI is the
/// one the run found then (the finale removes it, and a resumed run must still know what it
/// was), and the findings the migration itself brings about (Cilium in its final mode, the old
/// CNI gone) do not block; they are kept as notes.
pub fn plan_in_progress(
    spec: &MigrationSpec,
    snapshot: &ClusterSnapshot,
    recorded_source: &facts::SourceCni,
) -> Plan {
    let mut facts = detect::detect(snapshot);
    facts.source = recorded_source.clone();
    let mut findings = preflight::preflight(spec, snapshot, &facts);
    for f in &mut findings {
        if f.severity == Severity::Error
            && matches!(
                f.code,
                FindingCode::CiliumConfigMismatch | FindingCode::SourceCniUnsupported
            )
        {
            f.severity = Severity::Info;
            f.message = format!(
                "expected while the migration is under way (its own changes): {}",
                f.message
            );
        }
    }
    plan::build(spec, snapshot, &facts, findings)
}
