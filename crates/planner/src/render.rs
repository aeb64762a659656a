//! Rendering a [`Plan`] for people and for other tools.
//!
//! | format     | for                                                                  |
//! |------------|----------------------------------------------------------------------|
//! | `table`    | a terminal: summary, findings, node order, steps                     |
//! | `yaml`     | machines and diffing                                                 |
//! | `json`     | machines: the stable interface (`fingerprint`, `source`, `findings`, `steps`) |
//! | `markdown` | a change-review board: every step with its kubectl equivalent         |
//! | `dot`      | Graphviz                                                             |
//! | `mermaid`  | Markdown renderers that draw Mermaid                                 |
//! | `runbook`  | a bash script of the equivalent kubectl/helm commands, runnable by hand |

use std::{fmt::Write as _, str::FromStr};

use crate::{
    findings::Severity,
    plan::{Phase, Plan, Step},
    spec::TargetMode,
};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// A change-review document.
    Markdown,
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// Bash runbook.
    Runbook,
}

impl Format {
    /// Every format, by name.
    pub const ALL: &'static [(&'static str, Format)] = &[
        ("table", Format::Table),
        ("yaml", Format::Yaml),
        ("json", Format::Json),
        ("markdown", Format::Markdown),
        ("dot", Format::Dot),
        ("mermaid", Format::Mermaid),
        ("runbook", Format::Runbook),
    ];
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown output format `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Why a plan could not be rendered (only serialization can fail).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// JSON serialization failed.
    #[error("cannot serialize the plan as JSON")]
    Json(#[source] serde_json::Error),
    /// YAML serialization failed.
    #[error("cannot serialize the plan as YAML")]
    Yaml(#[source] crate::yaml::Error),
}

/// Renders the plan in a format.
///
/// # Errors
/// Only when serialization to JSON or YAML fails, which the plan's types do not allow in
/// practice.
pub fn render(plan: &Plan, format: Format) -> Result<String, RenderError> {
    Ok(match format {
        Format::Table => table(plan),
        Format::Yaml => crate::yaml::to_string(plan).map_err(RenderError::Yaml)?,
        Format::Json => {
            let mut s = serde_json::to_string_pretty(plan).map_err(RenderError::Json)?;
            s.push('\n');
            s
        }
        Format::Markdown => markdown(plan),
        Format::Dot => dot(plan),
        Format::Mermaid => mermaid(plan),
        Format::Runbook => runbook(plan),
    })
}

/// The target in one line: the pool and tunnel, or ENI mode; the EKS mode when there is one.
fn target_line(plan: &Plan) -> String {
    let s = &plan.spec.target;
    let egress = crate::values::egress_masquerade_interfaces(&plan.spec, &plan.facts);
    match s.mode {
        TargetMode::EksEni => format!(
            "mode eks-eni: pods on VPC addresses from ENIs, native routing, egress masqueraded on {egress}"
        ),
        mode => format!(
            "{}pods {} (/{} per node), {} port {}{}",
            if mode == TargetMode::EksOverlay {
                "mode eks-overlay: "
            } else {
                ""
            },
            cidrs(&s.pod_cidrs),
            s.mask_size,
            s.tunnel.protocol,
            s.tunnel.effective_port(),
            if mode == TargetMode::EksOverlay {
                format!(", egress SNATed to the node's address on {egress}")
            } else {
                String::new()
            }
        ),
    }
}

fn cidrs(list: &[ipnet::IpNet]) -> String {
    if list.is_empty() {
        return "-".to_owned();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn port(p: Option<u16>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn table(plan: &Plan) -> String {
    let mut out = String::new();
    let s = &plan.spec.target;
    let f = &plan.facts;
    let _ = writeln!(out, "PLAN {}  ({})", plan.name, plan.fingerprint);
    let _ = writeln!(
        out,
        "from  {}: pods {}, {} port {}",
        f.source.cni,
        cidrs(&f.source.pod_cidrs),
        f.source.encapsulation,
        port(f.source.port)
    );
    let _ = writeln!(
        out,
        "to    cilium {}: {}",
        s.cilium_version,
        target_line(plan)
    );
    let _ = writeln!(
        out,
        "      services {} (from {}), {} node(s), {} canary, {} in flight, {} pod(s) to evict",
        cidrs(&f.service.cidrs),
        f.service.source,
        plan.summary.nodes,
        plan.summary.canaries,
        plan.summary.max_in_flight,
        plan.summary.pods_to_evict
    );
    for (what, line) in controls(&plan.spec.rollout) {
        let _ = writeln!(out, "      {what}: {line}");
    }
    out.push('\n');
    if plan.findings.is_empty() {
        out.push_str("FINDINGS: none\n");
    } else {
        let _ = writeln!(
            out,
            "FINDINGS: {} error(s), {} warning(s)",
            plan.summary.errors, plan.summary.warnings
        );
        let mut rows = vec![vec!["SEVERITY".into(), "CODE".into(), "MESSAGE".into()]];
        for finding in &plan.findings {
            rows.push(vec![
                finding.severity.to_string(),
                finding.code.to_string(),
                finding.message.clone(),
            ]);
            rows.push(vec![
                String::new(),
                String::new(),
                format!("fix: {}", finding.fix),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    out.push('\n');
    let mut rows = vec![vec![
        "ORDER".into(),
        "NODE".into(),
        "ROLE".into(),
        "CANARY".into(),
        "EVICT".into(),
        "NOTES".into(),
    ]];
    for n in &plan.nodes {
        rows.push(vec![
            n.order.to_string(),
            n.name.clone(),
            n.role.clone(),
            if n.canary {
                "yes".into()
            } else {
                String::new()
            },
            n.pods_to_evict.to_string(),
            node_notes(n).join("; "),
        ]);
    }
    out.push_str(&columns(&rows));
    out.push('\n');
    let mut rows = vec![vec!["STEP".into(), "KIND".into(), "AFTER".into()]];
    for step in &plan.steps {
        rows.push(vec![
            step.id.clone(),
            step.kind.to_string(),
            step.depends_on.join(","),
        ]);
    }
    out.push_str(&columns(&rows));
    out
}

fn node_notes(n: &crate::plan::PlannedNode) -> Vec<String> {
    let mut notes = Vec::new();
    if !n.critical_pods.is_empty() {
        notes.push(format!("last: hosts {}", n.critical_pods.join(", ")));
    }
    if !n.pdbs.is_empty() {
        notes.push(format!("PDBs {}", n.pdbs.join(", ")));
    }
    if n.cordoned {
        notes.push("already cordoned: stays cordoned".to_owned());
    }
    if n.already_labelled {
        notes.push("already labelled".to_owned());
    }
    if n.not_ready {
        notes.push("NotReady now".to_owned());
    }
    notes
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let s = &plan.spec;
    let f = &plan.facts;
    let _ = writeln!(
        out,
        "# Change plan: migrate `{}` to Cilium {}\n",
        plan.name, s.target.cilium_version
    );
    let _ = writeln!(out, "Plan fingerprint: `{}`\n", plan.fingerprint);
    out.push_str("## Summary\n\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| Old CNI | {} ({} {}, port {}) |",
        f.source.cni,
        cidrs(&f.source.pod_cidrs),
        f.source.encapsulation,
        port(f.source.port)
    );
    let _ = writeln!(
        out,
        "| New CNI | Cilium {}, {} |",
        s.target.cilium_version,
        target_line(plan)
    );
    let _ = writeln!(
        out,
        "| Service CIDR | {} (learned from {}) |",
        cidrs(&f.service.cidrs),
        f.service.source
    );
    let _ = writeln!(
        out,
        "| Nodes | {} ({} canary, then up to {} in flight) |",
        plan.summary.nodes, plan.summary.canaries, plan.summary.max_in_flight
    );
    let _ = writeln!(out, "| Soak after canaries | {} |", s.rollout.soak);
    for (what, line) in controls(&s.rollout) {
        let mut what = what.to_owned();
        what[..1].make_ascii_uppercase();
        let _ = writeln!(out, "| {what} | {line} |");
    }
    let _ = writeln!(
        out,
        "| Pods evicted by drains | {} |",
        plan.summary.pods_to_evict
    );
    let _ = writeln!(
        out,
        "| Drain | timeout {}, emptyDir data {}, unreplicated pods {} |",
        s.rollout.drain.timeout,
        if s.rollout.drain.delete_empty_dir_data {
            "deleted"
        } else {
            "refused"
        },
        if s.rollout.drain.allow_unreplicated {
            "evicted (lost)"
        } else {
            "refused"
        }
    );
    let _ = writeln!(
        out,
        "| Reboot hook | {} |",
        s.rollout.reboot.as_ref().map_or_else(
            || "none".to_owned(),
            |r| format!("`{}`", r.command.join(" "))
        )
    );
    let _ = writeln!(
        out,
        "| Verdict | {} |\n",
        if plan.has_errors() {
            format!(
                "**blocked**: {} error finding(s) must be fixed before `apply`",
                plan.summary.errors
            )
        } else {
            "ready to apply".to_owned()
        }
    );
    if !f.source.evidence.is_empty() {
        out.push_str("How the old CNI was detected:\n\n");
        for e in &f.source.evidence {
            let _ = writeln!(out, "- {e}");
        }
        out.push('\n');
    }

    out.push_str("## Findings\n\n");
    if plan.findings.is_empty() {
        out.push_str("None.\n\n");
    }
    for finding in &plan.findings {
        let icon = match finding.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let _ = writeln!(
            out,
            "### {icon} `{}`\n\n{}\n",
            finding.code, finding.message
        );
        if !finding.objects.is_empty() {
            let objs: Vec<String> = finding.objects.iter().map(|o| format!("`{o}`")).collect();
            let _ = writeln!(out, "Objects: {}\n", objs.join(", "));
        }
        let _ = writeln!(out, "Fix: {}\n", finding.fix);
    }

    out.push_str("## Artifacts\n\n");
    for (name, body) in [
        ("values-migration.yaml", &plan.artifacts.values_migration),
        ("values-final.yaml", &plan.artifacts.values_final),
        ("ciliumnodeconfig.yaml", &plan.artifacts.node_config),
    ] {
        let _ = writeln!(out, "`{name}`:\n\n```yaml\n{}```\n", ensure_newline(body));
    }

    out.push_str("## Node order\n\n| # | Node | Role | Canary | Pods evicted | Notes |\n|---|---|---|---|---|---|\n");
    for n in &plan.nodes {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            n.order,
            n.name,
            n.role,
            if n.canary { "yes" } else { "" },
            n.pods_to_evict,
            md_escape(&node_notes(n).join("; "))
        );
    }
    out.push('\n');

    out.push_str("## Steps\n\nEvery step checks first whether its effect already holds, so any step can be re-run.\n\n");
    for (phase, title) in [
        (Phase::Prelude, "Prelude"),
        (Phase::Node, "Per node"),
        (Phase::Finale, "Finale"),
    ] {
        let _ = writeln!(out, "### {title}\n");
        for step in plan.steps.iter().filter(|s| s.phase == phase) {
            step_markdown(&mut out, step);
        }
    }
    out
}

fn step_markdown(out: &mut String, step: &Step) {
    let after = if step.depends_on.is_empty() {
        String::new()
    } else {
        format!(
            " (after {})",
            step.depends_on
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = writeln!(out, "#### `{}`{after}\n", step.id);
    let _ = writeln!(
        out,
        "{} (timeout {}s)\n",
        step.description, step.timeout_seconds
    );
    let _ = writeln!(out, "```sh\n{}\n```\n", step.commands.join("\n"));
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_owned()
    } else {
        format!("{s}\n")
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_id(&plan.name));
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    let mut current_node: Option<&str> = None;
    for step in &plan.steps {
        let in_node = step.phase == Phase::Node;
        let this = if in_node { step.node.as_deref() } else { None };
        if this != current_node {
            if current_node.is_some() {
                out.push_str("  }\n");
            }
            if let Some(n) = this {
                let _ = writeln!(
                    out,
                    "  subgraph {} {{\n    label={};",
                    dot_id(&format!("cluster_{n}")),
                    dot_id(n)
                );
            }
            current_node = this;
        }
        let indent = if current_node.is_some() { "    " } else { "  " };
        let _ = writeln!(
            out,
            "{indent}{} [label={}];",
            dot_id(&step.id),
            dot_id(step.kind.as_str())
        );
    }
    if current_node.is_some() {
        out.push_str("  }\n");
    }
    for step in &plan.steps {
        for d in &step.depends_on {
            let _ = writeln!(out, "  {} -> {};", dot_id(d), dot_id(&step.id));
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut current_node: Option<&str> = None;
    for step in &plan.steps {
        let this = if step.phase == Phase::Node {
            step.node.as_deref()
        } else {
            None
        };
        if this != current_node {
            if current_node.is_some() {
                out.push_str("  end\n");
            }
            if let Some(n) = this {
                let _ = writeln!(
                    out,
                    "  subgraph {}[\"{}\"]",
                    mermaid_id(&format!("node_{n}")),
                    n
                );
            }
            current_node = this;
        }
        let _ = writeln!(out, "  {}[\"{}\"]", mermaid_id(&step.id), step.kind);
    }
    if current_node.is_some() {
        out.push_str("  end\n");
    }
    for step in &plan.steps {
        for d in &step.depends_on {
            let _ = writeln!(out, "  {} --> {}", mermaid_id(d), mermaid_id(&step.id));
        }
    }
    out
}

fn shell_fn_name(node: &str) -> String {
    format!(
        "node_{}",
        node.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    )
}

fn heredoc(out: &mut String, path: &str, body: &str) {
    let _ = writeln!(
        out,
        "  cat > \"$ARTIFACTS/{path}\" <<'CNI_MIGRATE_EOF'\n{}CNI_MIGRATE_EOF",
        ensure_newline(body)
    );
}

fn runbook(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/usr/bin/env bash");
    let _ = writeln!(
        out,
        "# Runbook generated by cni-migrate for `{}` (plan {}).",
        plan.name, plan.fingerprint
    );
    out.push_str(
        "# The same steps `cni-migrate apply` runs, as kubectl and helm commands, to run by hand.\n\
         # Run one function at a time and check its result: `./runbook.sh prelude`, then\n\
         # `./runbook.sh node_<name>` for each node in order, then `./runbook.sh finale`.\n\
         # With no argument it runs everything in order and stops at the first failure.\n",
    );
    if plan.has_errors() {
        let _ = writeln!(
            out,
            "# WARNING: the plan has {} error finding(s); fix them before running this.",
            plan.summary.errors
        );
    }
    out.push_str("set -euo pipefail\n\nARTIFACTS=\"${ARTIFACTS:-./cni-migrate-artifacts}\"\n\n");
    out.push_str("write_artifacts() {\n  mkdir -p \"$ARTIFACTS\"\n");
    heredoc(
        &mut out,
        "values-migration.yaml",
        &plan.artifacts.values_migration,
    );
    heredoc(&mut out, "values-final.yaml", &plan.artifacts.values_final);
    heredoc(
        &mut out,
        "ciliumnodeconfig.yaml",
        &plan.artifacts.node_config,
    );
    out.push_str("}\n\n");

    let fix_paths = |c: &str| {
        c.replace(
            " -f values-migration.yaml",
            " -f \"$ARTIFACTS/values-migration.yaml\"",
        )
        .replace(
            " -f values-final.yaml",
            " -f \"$ARTIFACTS/values-final.yaml\"",
        )
        .replace(
            " -f ciliumnodeconfig.yaml",
            " -f \"$ARTIFACTS/ciliumnodeconfig.yaml\"",
        )
    };
    let emit_steps = |out: &mut String, steps: &mut dyn Iterator<Item = &Step>| {
        for step in steps {
            let _ = writeln!(
                out,
                "  echo \"==> {}: {}\"",
                step.id,
                step.description
                    .replace('"', "'")
                    .replace('$', "\\$")
                    .replace('`', "'")
            );
            for c in &step.commands {
                if c.starts_with('#') {
                    let _ = writeln!(out, "  {c}");
                } else if step.kind == crate::plan::StepKind::Preflight {
                    let _ = writeln!(out, "  # {c}");
                } else {
                    let _ = writeln!(out, "  {}", fix_paths(c));
                }
            }
        }
    };

    out.push_str("prelude() {\n  write_artifacts\n");
    emit_steps(
        &mut out,
        &mut plan.steps.iter().filter(|s| s.phase == Phase::Prelude),
    );
    out.push_str("}\n\n");
    for n in &plan.nodes {
        let _ = writeln!(out, "{}() {{", shell_fn_name(&n.name));
        emit_steps(&mut out, &mut plan.node_steps(&n.name));
        out.push_str("}\n\n");
    }
    out.push_str("finale() {\n  write_artifacts\n");
    emit_steps(
        &mut out,
        &mut plan.steps.iter().filter(|s| s.phase == Phase::Finale),
    );
    out.push_str("}\n\n");
    out.push_str("all() {\n  prelude\n");
    let last_canary = plan.nodes.iter().rposition(|n| n.canary);
    for (i, n) in plan.nodes.iter().enumerate() {
        let _ = writeln!(out, "  {}", shell_fn_name(&n.name));
        if Some(i) == last_canary && i + 1 < plan.nodes.len() && !plan.spec.rollout.soak.0.is_zero()
        {
            let _ = writeln!(
                out,
                "  echo \"==> soak {}\"; sleep {}",
                plan.spec.rollout.soak,
                plan.spec.rollout.soak.0.as_secs()
            );
        }
    }
    out.push_str("  finale\n}\n\n\"${1:-all}\"\n");
    out
}

/// The rollout's operational controls, one line each, only those set: maintenance windows,
/// the Prometheus gate, the health budget.
fn controls(r: &crate::spec::Rollout) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !r.windows.is_empty() {
        let list: Vec<String> = r.windows.iter().map(ToString::to_string).collect();
        out.push((
            "windows",
            format!("{} (nodes are admitted only inside one)", list.join("; ")),
        ));
    }
    if let Some(p) = &r.gates.prometheus {
        let mut what = Vec::new();
        if let Some(q) = &p.query {
            what.push(format!("query `{q}` empty"));
        }
        if let Some(a) = &p.alerts {
            what.push(format!(
                "no {}alert{}",
                if a.firing_only { "firing " } else { "" },
                a.match_regexp
                    .as_deref()
                    .map(|re| format!(" matching `{re}`"))
                    .unwrap_or_default()
            ));
        }
        out.push((
            "alert gate",
            format!(
                "{}: admit only with {}; held over {} stops the run",
                p.url,
                what.join(" and "),
                p.hold_timeout
            ),
        ));
    }
    if let Some(b) = &r.health_budget {
        let not_ready = b
            .max_not_ready_nodes
            .as_ref()
            .map_or_else(|| "any number of".to_owned(), |n| format!("at most {n}"));
        out.push((
            "health budget",
            format!(
                "admit with {not_ready} NotReady node(s); stop after more than {} failed node(s)",
                b.max_failed_nodes
            ),
        ));
    }
    out
}
