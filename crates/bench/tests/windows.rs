//! Maintenance windows on a paused clock: the executor over the in-memory fake cluster (the
//! one `exec-bench` uses), with the run clock set to a chosen Monday evening, so a day of
//! virtual time passes in seconds.
//!
//! A window that closes mid-run: the nodes in flight finish, nothing new starts, and admissions
//! go on when the window opens again the next evening. With `--exit-outside-window` the run
//! stops at a gate at once.

use std::sync::{Arc, Mutex};

use bench::fake::{Physics, Shape, Synthetic};
use cluster::Cluster;
use executor::{
    config::{RunConfig, Timing},
    events::{Event, EventKind, Observer},
    outcome::Outcome,
    session::{Intent, LockSpec, Session},
    store::ConfigMapStore,
};
use planner::spec::{WindowState, window_state};

#[derive(Default)]
struct Log(Mutex<Vec<Event>>);

impl Observer for Log {
    fn event(&self, e: &Event) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(e.clone());
    }
}

/// Monday 2026-12-07 20:59:00 UTC.
const MONDAY_2059: u64 = 1_796_677_140;

fn spec(windows: &str) -> planner::MigrationSpec {
    let yaml = format!(
        "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {{name: windows}}\n\
         target: {{ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], maskSize: 24, tunnel: {{port: 8473}}}}\n\
         rollout:\n  canary: 1\n  maxUnavailable: 3\n  windows: {windows}\n"
    );
    planner::MigrationSpec::from_yaml(&yaml, "windows-test").expect("spec")
}

fn run(spec: &planner::MigrationSpec, nodes: usize, exit_outside: bool) -> (Outcome, Vec<Event>) {
    let syn = Synthetic::new(&Shape {
        nodes,
        app_pods_per_node: 5,
        replicas: 10,
        pdbs: 0,
        seed: 7,
    })
    .expect("synthetic cluster");
    let plan = planner::plan(spec, &syn.snapshot);
    assert!(!plan.has_errors(), "{:?}", plan.findings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");
    let log = Log::default();
    let outcome = rt.block_on(async {
        let fake = Arc::new(syn.cluster(spec, Physics { api_latency: false }));
        let cluster: Arc<dyn Cluster> = fake;
        let store = Box::new(ConfigMapStore::new(cluster.clone()));
        let mut cfg = RunConfig::new("windows-test@localhost", Timing::real());
        cfg.helm.work_dir = work.path().to_path_buf();
        cfg.stop_before_finalize = true;
        cfg.clock_start = Some(MONDAY_2059);
        cfg.exit_outside_window = exit_outside;
        let session = Session::open(cluster.clone(), store, Intent::Apply)
            .await
            .expect("session");
        let locked = session
            .lock(LockSpec::None, &plan, &cfg.run_id.clone(), false)
            .await
            .expect("lock");
        let runner = locked.runner(&plan, cfg, &log);
        runner.run().await.expect("run")
    });
    let events = log
        .0
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (outcome, events)
}

fn times(events: &[Event], kind: &EventKind) -> Vec<(String, u64)> {
    events
        .iter()
        .filter(|e| &e.event == kind)
        .filter_map(|e| Some((e.node.clone()?, e.time)))
        .collect()
}

#[test]
fn a_window_that_closes_mid_run_lets_nodes_in_flight_finish_and_opens_again_the_next_day() {
    let spec = spec("[{start: \"21:00\", end: \"21:03\"}]");
    let windows = &spec.rollout.windows;
    let (outcome, events) = run(&spec, 16, false);
    assert!(
        matches!(&outcome, Outcome::Gate { message, .. } if message.contains("before the finale")),
        "every node migrated, then the finale gate: {outcome:?}"
    );
    // The prelude (Cilium's install among it) waited for the window too.
    let prelude: Vec<&Event> = events
        .iter()
        .filter(|e| e.event == EventKind::StepStarted && e.node.is_none())
        .collect();
    assert!(!prelude.is_empty());
    for e in &prelude {
        assert!(
            matches!(
                window_state(windows, e.time as i64),
                WindowState::OpenUntil(_)
            ),
            "{:?} started at {}, outside the window",
            e.step,
            e.time
        );
    }
    let admitted = times(&events, &EventKind::NodeAdmitted);
    let done = times(&events, &EventKind::NodeDone);
    assert_eq!(done.len(), 16, "every node migrated");
    for (node, t) in &admitted {
        assert!(
            matches!(window_state(windows, *t as i64), WindowState::OpenUntil(_)),
            "{node} admitted at {t}, outside the window"
        );
    }
    let close = MONDAY_2059 + 60 + 3 * 60;
    let next_open = MONDAY_2059 + 60 + 24 * 3600;
    // Nodes admitted before the close finished after it: in flight, they went on.
    let finished_late: Vec<&String> = done
        .iter()
        .filter(|(n, t)| {
            *t > close && *t < next_open && admitted.iter().any(|(a, at)| a == n && *at < close)
        })
        .map(|(n, _)| n)
        .collect();
    assert!(
        !finished_late.is_empty(),
        "some node was in flight when the window closed and finished after it: admitted {admitted:?}, done {done:?}"
    );
    assert!(
        admitted.iter().any(|(_, t)| *t >= next_open),
        "admissions went on the next evening: {admitted:?}"
    );
    assert!(
        admitted.iter().all(|(_, t)| *t < close || *t >= next_open),
        "nothing started between the windows: {admitted:?}"
    );
    let held: Vec<&Event> = events
        .iter()
        .filter(|e| e.event == EventKind::Held)
        .collect();
    assert!(
        held.iter().any(|e| e.reason.as_deref() == Some("window")
            && e.message.contains("Tue 2026-12-08 21:00 UTC")),
        "the hold says until when: {held:?}"
    );
    assert!(
        events.iter().any(|e| e.event == EventKind::Released),
        "the hold was released when the window opened"
    );
}

#[test]
fn exit_outside_window_stops_at_a_gate_before_any_node() {
    // The run starts at 20:59, a minute before the window.
    let spec = spec("[{days: [Mon], start: \"21:00\", end: \"23:00\"}]");
    let (outcome, events) = run(&spec, 4, true);
    match &outcome {
        Outcome::Gate { step, message } => {
            assert_eq!(step, "rollout");
            assert!(
                message.contains("outside the maintenance windows")
                    && message.contains("Mon 2026-12-07 21:00 UTC")
                    && message.contains("--exit-outside-window"),
                "{message}"
            );
        }
        other => panic!("expected a gate, got {other:?}"),
    }
    assert!(
        !events.iter().any(|e| e.event == EventKind::StepStarted),
        "nothing started, not even the prelude: {events:?}"
    );
}
