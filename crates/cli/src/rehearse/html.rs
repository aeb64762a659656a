//! The rehearsal's report as one self-contained HTML page, for a change-review board: the
//! verdict and what would have stopped the run first, in a coloured box; then the Markdown
//! report rendered by pulldown-cmark (its tables as tables, severities coloured), with the
//! timeline drawn inline (a lane per node, a legend of step kinds, time ticks, a title on
//! hover for every bar) and the connectivity shown as loss over time with the phases marked.
//!
//! ```text
//! report.md ──pulldown-cmark events──► ![timeline](timeline.svg)  ─► the timeline, inline
//!                                  ├─► "## Connectivity" heading  ─► + the loss chart
//!                                  ├─► first heading              ─► + the verdict box
//!                                  └─► a cell "error"/"warning"   ─► a coloured badge
//! ```

use std::fmt::Write as _;

use planner::plan::StepKind;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{Report, colour, escape, human};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.verdict{border-radius:6px;padding:.8em 1.2em;margin:1em 0;border:2px solid}\
.verdict.ok{background:#e8f6ec;border-color:#4c9f70}.verdict.stop{background:#fbeaea;border-color:#c04040}\
.verdict h2{margin:.2em 0 .4em}.sev{font-weight:bold;padding:1px 6px;border-radius:3px;color:#fff}\
.sev-error{background:#c04040}.sev-warning{background:#d08a1a}.sev-info{background:#6c8ec0}\
figure{margin:1em 0}figcaption{font-size:90%;color:#555}code{background:#f3f3f3;padding:0 3px}";

/// Every kind of step, in the order the legend shows them, with its name.
const KINDS: &[(StepKind, &str)] = &[
    (StepKind::Preflight, "preflight / verify"),
    (StepKind::CiliumInstalled, "Cilium install / final values"),
    (StepKind::NodeConfig, "CiliumNodeConfig / old CNI"),
    (StepKind::Cordon, "cordon / uncordon"),
    (StepKind::Drain, "drain"),
    (StepKind::Label, "label / aws-node"),
    (StepKind::RestartAgent, "agent restart"),
    (StepKind::Reboot, "reboot"),
];

/// Real-time seconds of a wall-time millisecond count.
#[allow(clippy::cast_precision_loss)] // display only
fn real(ms: u64, speed: f64) -> f64 {
    ms as f64 / 1000.0 * speed
}

/// A tick step (in real seconds) that gives about eight ticks over `total`.
fn tick_step(total: f64) -> f64 {
    const STEPS: &[f64] = &[
        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| total / s <= 8.0)
        .unwrap_or(28_800.0)
}

impl Report {
    /// The timeline (see [`timeline`]).
    pub(super) fn timeline_svg(&self, lanes: &[String]) -> String {
        timeline(self, lanes)
    }

    /// The whole HTML page (see [`page`]).
    pub(super) fn html_page(&self, markdown: &str, timeline_svg: &str) -> String {
        page(self, markdown, timeline_svg)
    }
}

/// The timeline: a lane per node (the cluster's own steps first), a bar per step with its id
/// and duration as its title, time ticks in real-time estimates, and a legend.
fn timeline(report: &Report, lanes: &[String]) -> String {
    let mut rows: Vec<&str> = vec!["cluster"];
    rows.extend(lanes.iter().map(String::as_str));
    let total = report
        .steps
        .iter()
        .map(|s| s.end_ms.unwrap_or(s.start_ms))
        .max()
        .unwrap_or(1)
        .max(1);
    let (label_w, chart_w, row_h, top) = (220.0, 900.0, 22.0, 24.0);
    #[allow(clippy::cast_precision_loss)]
    let x = |ms: u64| label_w + chart_w * (ms as f64) / (total as f64);
    #[allow(clippy::cast_precision_loss)]
    let lanes_h = row_h * rows.len() as f64;
    let legend_y = top + lanes_h + 52.0;
    let height = legend_y + 24.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        label_w + chart_w + 20.0
    );
    svg.push_str("<title>Timeline: one lane per node, one bar per step</title>");
    for (i, row) in rows.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = top + row_h * i as f64;
        let fill = if i % 2 == 0 { "#f7f7f7" } else { "#ffffff" };
        let _ = write!(
            svg,
            r#"<g class="lane"><rect x="0" y="{y}" width="{}" height="{row_h}" fill="{fill}"/><text x="4" y="{}">{}</text>"#,
            label_w + chart_w,
            y + 15.0,
            escape(row)
        );
        for s in report.steps.iter().filter(|s| match &s.node {
            Some(n) => n == row,
            None => i == 0,
        }) {
            let x0 = x(s.start_ms);
            let x1 = x(s.end_ms.unwrap_or(total)).max(x0 + 1.5);
            let secs = real(s.end_ms.unwrap_or(total) - s.start_ms, report.speed);
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"{}><title>{}{}: ~{} from {}</title></rect>"#,
                y + 3.0,
                x1 - x0,
                row_h - 6.0,
                colour(s.kind),
                if s.failed {
                    r#" stroke="red" stroke-width="2""#
                } else {
                    ""
                },
                escape(&s.id),
                if s.failed { " (failed)" } else { "" },
                human(secs),
                human(real(s.start_ms, report.speed)),
            );
        }
        svg.push_str("</g>");
    }
    // Ticks, in real-time estimates.
    let total_real = real(total, report.speed);
    let step = tick_step(total_real);
    let axis_y = top + lanes_h;
    let _ = write!(
        svg,
        r##"<line x1="{label_w}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#888"/>"##,
        label_w + chart_w
    );
    let mut t = 0.0;
    while t <= total_real + 1e-9 {
        let tx = label_w + chart_w * t / total_real.max(1e-9);
        let _ = write!(
            svg,
            r##"<g class="tick"><line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{}" stroke="#ddd"/><text x="{tx:.1}" y="{}" text-anchor="middle">{}</text></g>"##,
            axis_y + 4.0,
            axis_y + 16.0,
            human(t)
        );
        t += step;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">time (real-time estimate)</text>"#,
        label_w + chart_w,
        axis_y + 30.0
    );
    // The legend.
    let mut lx = 4.0;
    svg.push_str(r#"<g class="legend">"#);
    for (kind, name) in KINDS {
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            legend_y - 10.0,
            colour(*kind),
            lx + 16.0,
            legend_y,
            escape(name)
        );
        #[allow(clippy::cast_precision_loss)]
        let width = name.len() as f64 * 6.2 + 34.0;
        lx += width;
    }
    svg.push_str("</g></svg>");
    svg
}

/// Loss over time: the share of probes lost in each round, with the cluster's steps and each
/// node's migration marked as bands under the line.
fn loss_chart(report: &Report) -> String {
    let series = &report.connectivity.series;
    let (left, width, height, top) = (60.0, 1000.0, 160.0, 10.0);
    let end = series
        .last()
        .map(|s| s.0)
        .into_iter()
        .chain(report.steps.iter().filter_map(|s| s.end_ms))
        .max()
        .unwrap_or(1)
        .max(1);
    #[allow(clippy::cast_precision_loss)]
    let x = |ms: u64| left + width * ms as f64 / end as f64;
    let y = |share: f64| top + height * (1.0 - share);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="loss" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        left + width + 20.0,
        top + height + 60.0
    );
    svg.push_str("<title>Probes lost over time, with the phases of the run</title>");
    // Bands: the cluster's steps, and each node from its first step to its last.
    let mut bands: Vec<(String, u64, u64, &str)> = report
        .steps
        .iter()
        .filter(|s| s.node.is_none())
        .map(|s| {
            (
                s.kind.to_string(),
                s.start_ms,
                s.end_ms.unwrap_or(end),
                colour(s.kind),
            )
        })
        .collect();
    let mut nodes: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
    for s in report.steps.iter() {
        if let Some(n) = &s.node {
            let e = nodes.entry(n.as_str()).or_insert((s.start_ms, 0));
            e.0 = e.0.min(s.start_ms);
            e.1 = e.1.max(s.end_ms.unwrap_or(end));
        }
    }
    bands.extend(
        nodes
            .into_iter()
            .map(|(n, (a, b))| (n.to_owned(), a, b, "#e0a040")),
    );
    for (i, (label, a, b, fill)) in bands.iter().enumerate() {
        let (xa, xb) = (x(*a), x(*b).max(x(*a) + 1.0));
        #[allow(clippy::cast_precision_loss)]
        let ly = top + height + 14.0 + 12.0 * (i % 3) as f64;
        let _ = write!(
            svg,
            r#"<g class="phase"><rect x="{xa:.1}" y="{top}" width="{:.1}" height="{height}" fill="{fill}" opacity="0.15"><title>{}</title></rect><text x="{xa:.1}" y="{ly}">{}</text></g>"#,
            xb - xa,
            escape(label),
            escape(label)
        );
    }
    // Axes: 0 and 100 %.
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#888"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#888"/><text x="{}" y="{}" text-anchor="end">100%</text><text x="{}" y="{}" text-anchor="end">0%</text>"##,
        y(0.0),
        left + width,
        y(0.0),
        y(0.0),
        left - 4.0,
        y(1.0) + 8.0,
        left - 4.0,
        y(0.0)
    );
    let points: Vec<String> = series
        .iter()
        .map(|(ms, n, lost)| {
            #[allow(clippy::cast_precision_loss)]
            let share = if *n == 0 {
                0.0
            } else {
                *lost as f64 / *n as f64
            };
            format!("{:.1},{:.1}", x(*ms), y(share))
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline class="series" fill="none" stroke="#c04040" stroke-width="1.5" points="{}"/>"##,
        points.join(" ")
    );
    svg.push_str("</svg>");
    svg
}

/// The verdict: finished and nothing would have stopped the run, or what would have.
fn verdict(report: &Report) -> String {
    let ok = report.outcome == "finished" && report.would_stop.is_empty();
    let mut html = format!(
        r#"<section class="verdict {}"><h2>{}</h2><p>Outcome: <strong>{}</strong>; estimated real duration <strong>{}</strong>.</p>"#,
        if ok { "ok" } else { "stop" },
        if ok {
            "Verdict: the migration would run to the end"
        } else {
            "Verdict: the run would stop"
        },
        escape(&report.outcome),
        escape(&human(report.estimated_seconds)),
    );
    if let Some(f) = &report.faults {
        let _ = write!(html, "<p>Faults injected: <code>{}</code></p>", escape(f));
    }
    if report.would_stop.is_empty() {
        html.push_str("<p>Nothing would have stopped the run.</p>");
    } else {
        html.push_str("<p>What would have stopped the run:</p><ul>");
        for w in &report.would_stop {
            let _ = write!(html, "<li>{}</li>", escape(w));
        }
        html.push_str("</ul>");
    }
    html.push_str("</section>");
    html
}

/// The whole page, from the report and its Markdown.
fn page(report: &Report, markdown: &str, timeline_svg: &str) -> String {
    let mut events: Vec<Event<'_>> = Vec::new();
    let mut first_heading_done = false;
    let mut heading_text = String::new();
    let mut in_heading = false;
    let mut in_cell = false;
    let mut in_image = false;
    let mut drop_paragraph_end = false;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                in_heading = true;
                heading_text.clear();
                events.push(event);
            }
            Event::End(TagEnd::Heading(level)) => {
                in_heading = false;
                events.push(event);
                if !first_heading_done && level == HeadingLevel::H1 {
                    first_heading_done = true;
                    events.push(Event::Html(verdict(report).into()));
                }
                if heading_text == "Connectivity" {
                    events.push(Event::Html(
                        format!(
                            "<figure>{}<figcaption>Share of probes lost in each round (red), over the run's phases: the cluster's steps and each node's migration as bands.</figcaption></figure>",
                            loss_chart(report)
                        )
                        .into(),
                    ));
                }
            }
            Event::Start(Tag::Image { ref dest_url, .. })
                if dest_url.as_ref() == "timeline.svg" =>
            {
                in_image = true;
                // A figure cannot sit in a paragraph: the image's own paragraph goes.
                if matches!(events.last(), Some(Event::Start(Tag::Paragraph))) {
                    events.pop();
                    drop_paragraph_end = true;
                }
                events.push(Event::Html(
                    format!("<figure>{timeline_svg}<figcaption>Hover a bar for its step and duration.</figcaption></figure>").into(),
                ));
            }
            Event::End(TagEnd::Image) if in_image => in_image = false,
            Event::End(TagEnd::Paragraph) if drop_paragraph_end => drop_paragraph_end = false,
            _ if in_image => {}
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                events.push(event);
            }
            Event::End(TagEnd::TableCell) => {
                in_cell = false;
                events.push(event);
            }
            Event::Text(ref t) if in_cell && matches!(t.as_ref(), "error" | "warning" | "info") => {
                events.push(Event::Html(
                    format!(r#"<span class="sev sev-{t}">{t}</span>"#).into(),
                ));
            }
            Event::Text(ref t) if in_heading => {
                heading_text.push_str(t);
                events.push(event);
            }
            other => events.push(other),
        }
    }
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, events.into_iter());
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Rehearsal of {}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(&report.plan)
    )
}
