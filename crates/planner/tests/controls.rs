//! The spec's operational controls: windows, the Prometheus gate, the health budget. Their
//! errors name the file, line and field; their arithmetic (open, closed until, calendar end)
//! holds across midnight and daylight-saving changes; they leave the fingerprint alone.

use planner::{
    MigrationSpec,
    spec::{SpecError, WindowState, calendar_end, window_state},
};

const BASE: &str = r#"apiVersion: cni-migrate.io/v1alpha1
kind: MigrationSpec
metadata: {name: controls}
target:
  ciliumVersion: 1.17.3
  podCIDRs: [10.245.0.0/16]
  maskSize: 24
rollout:
  canary: 1
"#;

fn spec(extra: &str) -> Result<MigrationSpec, SpecError> {
    MigrationSpec::from_yaml(&format!("{BASE}{extra}"), "spec.yaml")
}

fn refused(extra: &str) -> (usize, String, String) {
    match spec(extra) {
        Err(SpecError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected a refusal for {extra:?}, got {other:?}"),
    }
}

/// Unix seconds of a civil time in a zone.
fn at(civil: &str, tz: &str) -> i64 {
    let dt: jiff::civil::DateTime = civil.parse().expect("civil time");
    dt.in_tz(tz).expect("zone").timestamp().as_second()
}

#[test]
fn a_full_set_of_controls_parses() {
    let s = spec(
        r#"  windows:
    - {days: [Mon, Tue, Wed, Thu], start: "22:00", end: "04:00", timeZone: Europe/Berlin}
    - start: "12:00"
      end: "13:00"
  gates:
    prometheus:
      url: http://prometheus.monitoring:9090
      query: 'sum(ALERTS{severity="critical"}) > 0'
      alerts: {matchRegexp: "^Kube", firingOnly: true}
      holdTimeout: 30m
  healthBudget: {maxNotReadyNodes: "2%", maxFailedNodes: 1}
"#,
    )
    .expect("valid");
    assert_eq!(s.rollout.windows.len(), 2);
    assert_eq!(
        s.rollout.windows[1].days.len(),
        7,
        "days default to every day"
    );
    assert_eq!(s.rollout.windows[1].time_zone, "UTC");
    assert_eq!(s.rollout.max_failed_nodes(), 1);
    let b = s.rollout.health_budget.expect("budget");
    assert_eq!(b.not_ready_limit(500), Some(10));
    assert_eq!(
        s.rollout
            .gates
            .prometheus
            .expect("gate")
            .hold_timeout
            .0
            .as_secs(),
        1800
    );
}

#[test]
fn bad_controls_are_refused_by_line_and_field() {
    let (line, field, message) = refused(
        r#"  windows:
    - {start: "22:00", end: "04:00"}
    - {start: "22:00", end: "04:00", timeZone: Europe/Berlln}
"#,
    );
    assert_eq!(field, "rollout.windows[1].timeZone");
    assert_eq!(line, 12, "{message}");
    assert!(
        message.contains("Europe/Berlln") && message.contains("IANA"),
        "{message}"
    );

    let (_, field, message) = refused("  windows: [{start: \"25:00\", end: \"04:00\"}]\n");
    assert!(field.starts_with("rollout.windows[0]"), "{field}");
    assert!(message.contains("HH:MM"), "{message}");

    let (_, field, message) = refused("  windows: [{start: 2200, end: \"04:00\"}]\n");
    assert!(field.starts_with("rollout.windows[0]"), "{field}");
    assert!(message.contains("22:00"), "{message}");

    let (_, field, message) =
        refused("  windows: [{days: [Mon, Fry], start: \"22:00\", end: \"04:00\"}]\n");
    assert!(field.starts_with("rollout.windows[0].days"), "{field}");
    assert!(message.contains("Fri"), "{message}");

    let (_, field, _) = refused("  windows: [{start: \"22:00\", end: \"22:00\"}]\n");
    assert_eq!(field, "rollout.windows[0].end");

    let (line, field, message) =
        refused("  gates:\n    prometheus: {url: \"prometheus:9090\", query: up}\n");
    assert_eq!((line, field.as_str()), (11, "rollout.gates.prometheus.url"));
    assert!(message.contains("http"), "{message}");

    let (_, field, message) = refused("  gates:\n    prometheus: {url: \"http://p:9090\"}\n");
    assert_eq!(field, "rollout.gates.prometheus");
    assert!(
        message.contains("query") && message.contains("alerts"),
        "{message}"
    );

    let (_, field, _) = refused(
        "  gates:\n    prometheus: {url: \"http://p:9090\", alerts: {matchRegexp: \"(\"}}\n",
    );
    assert_eq!(field, "rollout.gates.prometheus.alerts.matchRegexp");

    let (_, field, message) = refused("  healthBudget: {maxNotReadyNodes: lots}\n");
    assert_eq!(field, "rollout.healthBudget.maxNotReadyNodes");
    assert!(message.contains("percentage"), "{message}");

    let (_, field, message) = refused("  healthBudget: {maxFailedNode: 1}\n");
    assert!(field.starts_with("rollout.healthBudget"), "{field}");
    assert!(message.contains("maxFailedNodes"), "{message}");
}

#[test]
fn windows_open_close_and_cross_midnight() {
    let s = spec(
        "  windows: [{days: [Mon, Tue], start: \"22:00\", end: \"04:00\", timeZone: Europe/Berlin}]\n",
    )
    .expect("valid");
    let w = &s.rollout.windows;
    // Monday 2026-12-07, Berlin is UTC+1 in winter.
    let mon_2130 = at("2026-12-07T21:30", "Europe/Berlin");
    assert_eq!(
        window_state(w, mon_2130),
        WindowState::ClosedUntil(Some(at("2026-12-07T22:00", "Europe/Berlin")))
    );
    // Tuesday 03:00 is inside Monday's window, which closes Tuesday 04:00.
    let tue_0300 = at("2026-12-08T03:00", "Europe/Berlin");
    assert_eq!(
        window_state(w, tue_0300),
        WindowState::OpenUntil(at("2026-12-08T04:00", "Europe/Berlin"))
    );
    // Wednesday 03:00 is inside Tuesday's; Thursday 03:00 is in none (Wednesday has no window).
    assert!(matches!(
        window_state(w, at("2026-12-09T03:00", "Europe/Berlin")),
        WindowState::OpenUntil(_)
    ));
    assert_eq!(
        window_state(w, at("2026-12-10T03:00", "Europe/Berlin")),
        WindowState::ClosedUntil(Some(at("2026-12-14T22:00", "Europe/Berlin")))
    );
    // Six hours of work from Monday 21:30: 6 h in Monday's window, then the rest... of none.
    assert_eq!(
        calendar_end(w, mon_2130, 6 * 3600),
        Some(at("2026-12-08T04:00", "Europe/Berlin"))
    );
    // Eight hours: 6 on Monday night, 2 on Tuesday night.
    assert_eq!(
        calendar_end(w, mon_2130, 8 * 3600),
        Some(at("2026-12-09T00:00", "Europe/Berlin"))
    );
    assert_eq!(window_state(&[], mon_2130), WindowState::Always);
}

#[test]
fn windows_follow_daylight_saving_time() {
    let s = spec(
        "  windows: [{days: [Sun], start: \"01:00\", end: \"05:00\", timeZone: Europe/Berlin}]\n",
    )
    .expect("valid");
    // 2027-03-28: clocks jump from 02:00 to 03:00 in Berlin, so this window lasts 3 hours.
    let open = at("2027-03-28T01:00", "Europe/Berlin");
    let WindowState::OpenUntil(close) = window_state(&s.rollout.windows, open) else {
        panic!("open at 01:00");
    };
    assert_eq!(close - open, 3 * 3600);
}

#[test]
fn controls_are_not_part_of_the_fingerprint() {
    let facts = planner::NetworkFacts::default();
    let plain = spec("").expect("valid");
    let controlled = spec(
        "  windows: [{start: \"22:00\", end: \"04:00\"}]\n  healthBudget: {maxFailedNodes: 2}\n",
    )
    .expect("valid");
    assert_eq!(
        planner::plan::fingerprint(&plain, &facts),
        planner::plan::fingerprint(&controlled, &facts)
    );
    let mut other = plain.clone();
    other.rollout.canary = 2;
    assert_ne!(
        planner::plan::fingerprint(&plain, &facts),
        planner::plan::fingerprint(&other, &facts)
    );
}
