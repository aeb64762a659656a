//! `cni-migrate rehearse` on every example in `plans/`: the report's numbers agree with the
//! model's ground truth, and a spec whose tunnel port collides with Flannel's shows the
//! crash-looping agent and the stop, not a success.

mod support;

use std::{collections::BTreeSet, path::Path};

use support::cluster::show;

fn rehearse(
    spec: &Path,
    dump: Option<&Path>,
    dir: &Path,
) -> (std::process::Output, serde_json::Value) {
    rehearse_with(spec, dump, dir, &[])
}

/// [`rehearse`] with more arguments (`--faults ...`).
fn rehearse_with(
    spec: &Path,
    dump: Option<&Path>,
    dir: &Path,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut args = vec![
        "rehearse".to_owned(),
        "--spec".to_owned(),
        spec.display().to_string(),
        "--speed".to_owned(),
        "120".to_owned(),
        "--report".to_owned(),
        dir.display().to_string(),
    ];
    if let Some(d) = dump {
        args.push("--from-dump".into());
        args.push(d.display().to_string());
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = support::run(&refs);
    let json = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}): {}", show(&out)));
    (
        out,
        serde_json::from_str(&json).expect("report.json parses"),
    )
}

fn total_evicted(report: &serde_json::Value) -> usize {
    report["evicted"]
        .as_object()
        .expect("evicted")
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn every_example_rehearses_and_the_report_matches_the_model() {
    for (name, spec, dump) in support::examples() {
        let dir = tempfile::tempdir().expect("tmp");
        let (out, report) = rehearse(&spec, Some(&dump), dir.path());
        for f in ["report.md", "report.html", "timeline.svg", "report.json"] {
            assert!(dir.path().join(f).exists(), "{name}: no {f}");
        }
        let html = std::fs::read_to_string(dir.path().join("report.html")).expect("html");
        assert!(
            html.contains("<svg") && !html.contains("<script src") && !html.contains("<link "),
            "{name}: self-contained"
        );
        // The same evictions: the tool's drain reports and the model's deletions agree.
        assert_eq!(
            total_evicted(&report),
            report["groundTruthEvicted"].as_u64().expect("n") as usize,
            "{name}: evictions reported vs pods the model deleted"
        );
        // Loss only where the model says traffic cannot pass: every lost probe has a reason,
        // and the reasons add up to the losses.
        let c = &report["connectivity"];
        let lost: u64 = c["phases"]
            .as_object()
            .expect("phases")
            .values()
            .map(|v| v[1].as_u64().unwrap_or(0))
            .sum();
        let reasons: u64 = c["reasons"]
            .as_object()
            .expect("reasons")
            .values()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum();
        assert_eq!(lost, reasons, "{name}");
        assert!(
            c["samples"].as_u64().unwrap_or(0) > 0,
            "{name}: the prober ran"
        );
        assert!(report["estimatedSeconds"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(!report["criticalPath"].as_array().expect("path").is_empty());
        // The node phase next to its floors: never below the nodes' own bound, the
        // evictions counted as the drains reported them.
        let f = &report["floors"];
        let num = |k: &str| f[k].as_f64().unwrap_or(-1.0);
        assert!(
            num("nodePhaseSeconds") > 0.0
                && num("nodeBoundSeconds") > 0.0
                && num("nodePhaseSeconds") >= num("nodeBoundSeconds"),
            "{name}: {f}"
        );
        assert_eq!(
            f["evictions"].as_u64().unwrap_or(0) as usize,
            total_evicted(&report),
            "{name}: {f}"
        );
        assert!(
            std::fs::read_to_string(dir.path().join("report.md"))
                .expect("md")
                .contains("the floors no schedule beats"),
            "{name}"
        );
        if name == "pdb-blocks-drain" {
            // Its budget can never allow a disruption: the rehearsal shows the drain stuck.
            assert_eq!(out.status.code(), Some(5), "{name}: {}", show(&out));
            let stops = report["wouldStop"].to_string();
            assert!(
                stops.contains("PDB_BLOCKS_DRAIN") && stops.contains("timed out"),
                "{stops}"
            );
        } else {
            // Plans with error findings rehearse to the end (the errors are ignored for the
            // rehearsal) and exit 3, as `plan` does.
            let want = if ["eks-mixed-os", "eks-overlay-webhook"].contains(&name.as_str()) {
                3
            } else {
                0
            };
            assert_eq!(out.status.code(), Some(want), "{name}: {}", show(&out));
            assert_eq!(report["outcome"], "finished", "{name}");
            // With bpf.hostLegacyRouting on, the overlays reach each other, and an agent
            // restart leaves established endpoints forwarding: no loss for either reason.
            assert!(
                !c["reasons"].to_string().contains("hostLegacyRouting"),
                "{name}: {}",
                c["reasons"]
            );
            if name == "kind-flannel" {
                // The final switch restarts every agent: its probes all pass.
                let fv = &c["phases"]["final-values"];
                assert!(
                    fv[0].as_u64().unwrap_or(0) > 0,
                    "{name}: final-values probed: {c}"
                );
                assert_eq!(fv[1], 0, "{name}: loss in final-values: {c}");
            }
        }
    }
}

#[test]
fn a_tunnel_port_colliding_with_flannels_shows_the_crash_looping_agent_and_stops() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec_text = std::fs::read_to_string(support::plans_dir().join("kind-flannel.yaml"))
        .expect("spec")
        .replace("port: 8473", "port: 8472");
    let spec = dir.path().join("collide.yaml");
    std::fs::write(&spec, spec_text).expect("write");
    let report_dir = dir.path().join("report");
    let (out, report) = rehearse(&spec, None, &report_dir);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_ne!(report["outcome"], "finished");
    let stops = report["wouldStop"].to_string();
    assert!(stops.contains("TUNNEL_PORT_COLLISION"), "{stops}");
    let agents = report["crashLoopingAgents"].as_array().expect("agents");
    assert!(!agents.is_empty(), "{}", show(&out));
    assert!(
        agents[0][1]
            .as_str()
            .unwrap_or_default()
            .contains("address already in use")
    );
    let md = std::fs::read_to_string(report_dir.join("report.md")).expect("md");
    assert!(md.contains("crash-looping"), "{md}");
}

#[test]
fn with_only_a_spec_rehearse_uses_the_embedded_kind_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    let (out, report) = rehearse(
        &support::plans_dir().join("kind-flannel.yaml"),
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(report["plan"], "kind-flannel");
    assert!(String::from_utf8_lossy(&out.stdout).contains("embedded"));
}

/// `rehearse --faults` takes `sim`'s syntax: a node whose agent never comes back stops the
/// rehearsal on that node, and the report says which faults were active; a bad fault is bad
/// input, named, before anything runs.
#[test]
fn faults_are_injected_and_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec_path = support::plans_dir().join("kind-flannel.yaml");
    let spec = spec_path.display().to_string();
    let report_dir = dir.path().join("report");
    let report_arg = report_dir.display().to_string();
    let (out, report) = rehearse_with(
        &spec_path,
        None,
        &report_dir,
        &["--faults", "agent-stuck=kind-worker"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(report["faults"], "agent-stuck=kind-worker");
    assert!(report["wouldStop"].to_string().contains("kind-worker"));
    let md = std::fs::read_to_string(report_dir.join("report.md")).expect("md");
    assert!(
        md.contains("Faults injected: `agent-stuck=kind-worker`"),
        "{md}"
    );
    let bad = support::run(&["rehearse", "--spec", &spec, "--faults", "error-500=2"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--faults error-500=2"));
    let nobody = support::run(&[
        "rehearse",
        "--spec",
        &spec,
        "--report",
        &report_arg,
        "--faults",
        "agent-stuck=nobody",
    ]);
    assert_eq!(nobody.status.code(), Some(2), "{}", show(&nobody));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nobody"));
}

/// The HTML report, parsed: one self-contained page whose verdict box comes first, findings
/// in a table with coloured severities, the timeline inline with a lane per node, a legend,
/// time ticks and a title on every bar, the loss chart under Connectivity with the phases
/// marked, and the evictions and PDB waits as tables. Where Debian's Chromium is installed, a
/// headless screenshot of it is taken (and must be a PNG); elsewhere that part is skipped
/// with a note.
#[test]
fn the_html_report_is_a_page_with_its_parts_in_place() {
    use scraper::{Html, Selector};
    let sel = |s: &str| Selector::parse(s).expect("selector");
    let dir = tempfile::tempdir().expect("tmp");
    let plans = support::plans_dir();
    let (out, report) = rehearse(
        &plans.join("pdb-blocks-drain.yaml"),
        Some(&plans.join("pdb-blocks-drain.dump.yaml")),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let text = std::fs::read_to_string(dir.path().join("report.html")).expect("html");
    let page = Html::parse_document(&text);
    assert!(page.errors.is_empty(), "parse errors: {:?}", page.errors);
    for external in ["script[src]", "link", "img"] {
        assert_eq!(
            page.select(&sel(external)).count(),
            0,
            "no external asset: {external}"
        );
    }
    // The verdict first: before any h2, red because the drain would time out.
    let body_children: Vec<(String, bool)> = page
        .select(&sel("body > *"))
        .map(|e| {
            let v = e.value();
            let verdict = v.classes().any(|c| c == "verdict");
            (v.name().to_owned(), verdict)
        })
        .collect();
    let verdict_at = body_children
        .iter()
        .position(|(name, verdict)| name == "section" && *verdict)
        .expect("a verdict box");
    let first_h2 = body_children
        .iter()
        .position(|(name, _)| name == "h2")
        .expect("sections");
    assert!(verdict_at < first_h2, "{body_children:?}");
    let verdict = page
        .select(&sel("section.verdict.stop"))
        .next()
        .expect("a red verdict");
    let said: String = verdict.text().collect();
    assert!(
        said.contains("PDB_BLOCKS_DRAIN") || said.contains("timed out"),
        "{said}"
    );
    // Findings: a table whose severity cells carry a coloured badge.
    assert!(
        page.select(&sel("table td span.sev.sev-error")).count() >= 1,
        "an error badge"
    );
    // The timeline: a lane per node and one for the cluster, a legend, ticks, titled bars.
    let timeline = page
        .select(&sel("svg.timeline"))
        .next()
        .expect("the timeline, inline");
    let lanes = timeline.select(&sel("g.lane")).count();
    let nodes = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["node"].as_str())
        .collect::<BTreeSet<_>>()
        .len();
    assert!(
        lanes > nodes,
        "{lanes} lanes for {nodes} nodes and the cluster"
    );
    assert!(timeline.select(&sel("g.legend rect")).count() >= 6);
    assert!(timeline.select(&sel("g.tick")).count() >= 2);
    let bars = timeline.select(&sel("rect.bar")).count();
    assert_eq!(bars, report["steps"].as_array().expect("steps").len());
    assert_eq!(timeline.select(&sel("rect.bar > title")).count(), bars);
    // Connectivity: the loss chart with the phases marked.
    let chart = page
        .select(&sel("svg.loss"))
        .next()
        .expect("the loss chart");
    assert!(chart.select(&sel("polyline.series")).next().is_some());
    assert!(chart.select(&sel("g.phase")).count() >= 2);
    // Evictions and PDB waits as tables.
    let headings: Vec<String> = page
        .select(&sel("h2"))
        .map(|h| h.text().collect())
        .collect();
    for h in [
        "Pods evicted per node",
        "Time waiting on PodDisruptionBudgets",
        "Connectivity",
        "Findings",
    ] {
        let at = headings
            .iter()
            .position(|x| x == h)
            .unwrap_or_else(|| panic!("no section {h}: {headings:?}"));
        let _ = at;
    }
    assert!(
        page.select(&sel("table")).count() >= 5,
        "the report's tables are tables"
    );
    screenshot(&dir.path().join("report.html"));
}

/// A headless Chromium screenshot of the page, where Debian's `chromium` is installed.
fn screenshot(page: &Path) {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("note: no Chromium on this machine; the report's screenshot is skipped");
        return;
    };
    let png = page.with_extension("png");
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2400",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "{}", show(&out));
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("CNI_MIGRATE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
}

/// `rehearse --faults node-join=...,node-leave=...`: the model grows and loses a node while
/// the run goes on; the run migrates the new node and records the other as gone, and the
/// report (Markdown, JSON, the summary on stdout) says what happened and what the run did.
#[test]
fn nodes_joining_and_leaving_are_rehearsed_and_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec_path = support::plans_dir().join("kind-flannel.yaml");
    let spec = spec_path.display().to_string();
    let report_dir = dir.path().join("report");
    let report_arg = report_dir.display().to_string();
    let faults = "node-join=kind-worker9@30s,node-leave=kind-worker2@60s";
    let (out, report) = rehearse_with(&spec_path, None, &report_dir, &["--faults", faults]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let fired = report["nodeFaults"].to_string();
    assert!(
        fired.contains("node kind-worker9 joined") && fired.contains("node kind-worker2 left"),
        "{fired}"
    );
    let churn = report["nodeChurn"].as_array().expect("nodeChurn");
    let of = |node: &str| {
        churn
            .iter()
            .find(|c| c["node"] == node)
            .unwrap_or_else(|| panic!("{node} in {churn:?}"))
    };
    assert_eq!(of("kind-worker9")["change"], "joined");
    assert!(
        of("kind-worker9")["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("migrated")),
        "{churn:?}"
    );
    assert_eq!(of("kind-worker2")["change"], "left");
    assert!(
        of("kind-worker2")["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("recorded gone")),
        "{churn:?}"
    );
    let md = std::fs::read_to_string(report_dir.join("report.md")).expect("md");
    assert!(md.contains("## Nodes that joined and left"), "{md}");
    assert!(md.contains("| kind-worker9 | joined | migrated"), "{md}");
    assert!(md.contains("| kind-worker2 | left | recorded gone"), "{md}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node kind-worker9 joined: migrated"),
        "{stdout}"
    );
    assert!(
        stdout.contains("node kind-worker2 left: recorded gone"),
        "{stdout}"
    );
    for (bad, says) in [
        ("node-join=kind-worker9", "expected node-join=NAME@DELAY"),
        ("node-leave=nobody@10s", "node-leave=nobody"),
        ("node-join=kind-worker@10s", "exists already"),
    ] {
        let out = support::run(&[
            "rehearse",
            "--spec",
            &spec,
            "--report",
            &report_arg,
            "--faults",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bad}: {err}");
    }
}
