//! How a run shows its progress: progress bars on a terminal (one for the nodes overall, one
//! per node in flight), plain lines otherwise, or JSON lines with `-o json`.

use std::{
    io::{IsTerminal as _, Write as _},
    sync::Mutex,
    time::Duration,
};

use executor::events::{Event, EventKind, Observer};

/// The observer for the output asked for.
pub fn observer(json: bool, nodes: usize) -> Box<dyn Observer> {
    if json {
        Box::new(JsonLines)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new(nodes))
    } else {
        Box::new(Plain)
    }
}

/// JSON lines on stdout.
struct JsonLines;

impl Observer for JsonLines {
    fn event(&self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// One event as a line of text.
pub fn plain_line(e: &Event) -> String {
    let what = match e.event {
        EventKind::RunStarted => "start",
        EventKind::NodeAdmitted => "admit",
        EventKind::StepStarted => "begin",
        EventKind::StepDone => "done",
        EventKind::StepFailed => "FAILED",
        EventKind::StepSkipped => "skip",
        EventKind::Retrying => "retry",
        EventKind::NodeDone => "node done",
        EventKind::NodeJoined => "joined",
        EventKind::NodeLeft => "left",
        EventKind::Waiting => "wait",
        EventKind::Held => "hold",
        EventKind::Released => "release",
        EventKind::Gate => "gate",
        EventKind::Paused => "paused",
        EventKind::Stopped => "stopped",
        EventKind::Finished => "finished",
    };
    let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(e.time));
    match &e.step {
        Some(step) => format!("{at} {what:<9} {step}: {}", e.message),
        None => format!("{at} {what:<9} {}", e.message),
    }
}

/// Plain lines on stdout.
struct Plain;

impl Observer for Plain {
    fn event(&self, e: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", plain_line(e));
        let _ = out.flush();
    }
}

/// Progress bars on a terminal: one for the nodes overall, one per node in flight.
struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    nodes: Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(total: usize) -> Self {
        let multi = indicatif::MultiProgress::new();
        let overall = multi.add(indicatif::ProgressBar::new(total as u64));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} nodes {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("migrated");
        Self {
            multi,
            overall,
            nodes: Mutex::new(std::collections::BTreeMap::new()),
        }
    }
}

impl Observer for Bars {
    fn event(&self, e: &Event) {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let node_bar = |nodes: &mut std::collections::BTreeMap<String, indicatif::ProgressBar>,
                        name: &str| {
            nodes
                .entry(name.to_owned())
                .or_insert_with(|| {
                    let b = self.multi.add(indicatif::ProgressBar::new_spinner());
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>12} {spinner} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(name.to_owned());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                })
                .clone()
        };
        match (&e.event, &e.node) {
            (EventKind::NodeDone | EventKind::NodeLeft, Some(n)) => {
                if let Some(b) = nodes.remove(n) {
                    b.finish_and_clear();
                }
                self.overall.inc(1);
                let _ = self.multi.println(plain_line(e));
            }
            (EventKind::StepStarted | EventKind::StepDone | EventKind::Retrying, Some(n)) => {
                let b = node_bar(&mut nodes, n);
                b.set_message(format!(
                    "{} {}",
                    e.kind.map(|k| k.as_str()).unwrap_or_default(),
                    e.message
                ));
            }
            (EventKind::NodeAdmitted, Some(n)) => {
                node_bar(&mut nodes, n).set_message(e.message.clone());
            }
            (EventKind::RunStarted, _) => {
                let _ = self.multi.println(plain_line(e));
            }
            _ => {
                self.overall.set_message(e.message.clone());
                let _ = self.multi.println(plain_line(e));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for b in self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            b.finish_and_clear();
        }
        self.overall.finish();
    }
}
