use planner::snapshot::{ClusterSnapshot, NodeInfo};

use super::*;

fn plan(nodes: usize) -> Plan {
    let spec = planner::MigrationSpec::from_yaml(
        "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
         target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n\
         rollout: {reboot: {command: [reboot, \"{node}\"]}}\n",
        "t",
    )
    .expect("spec");
    let snap = ClusterSnapshot {
        nodes: (0..nodes)
            .map(|i| NodeInfo {
                name: format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i / 250, i % 250),
                uid: format!("{i:08x}-1a2b-4c3d-8e9f-0a1b2c3d4e5f"),
                ready: true,
                ..NodeInfo::default()
            })
            .collect(),
        ..ClusterSnapshot::default()
    };
    planner::plan(&spec, &snap)
}

#[test]
fn five_thousand_finished_nodes_fit_a_configmap() {
    let p = plan(5000);
    let idx = StepIndex::new(&p.steps);
    let mut c = Checkpoint::new(&p, "run-1@host", 1_700_000_000);
    let mut now = 1_700_000_000;
    for s in &p.steps {
        now += 7;
        c.transition(&idx, &s.id, StepState::Running, now, None)
            .expect("start");
        let node = s.node.as_deref().unwrap_or_default();
        if s.kind == planner::StepKind::Cordon {
            c.record_prior(node, &NodePrior::default());
        }
        if s.kind == planner::StepKind::Label {
            c.record_agent_uids(node, vec!["5f0c3b8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f".into()]);
        }
        c.transition(&idx, &s.id, StepState::Done, now + 30, None)
            .expect("done");
    }
    let size = c.to_compressed().len();
    eprintln!(
        "checkpoint for 5,000 finished nodes: {size} bytes compressed, {} of JSON",
        c.to_json().len()
    );
    assert!(size <= 256 * 1024, "{size} bytes: more than 256 KiB");
    assert_eq!(Checkpoint::from_json(&c.to_json()).expect("round trip"), c);
    assert_eq!(
        Checkpoint::from_compressed(&c.to_compressed()).expect("round trip"),
        c
    );
}

#[test]
fn steps_start_only_after_their_dependencies_and_never_leave_done() {
    let p = plan(2);
    let idx = StepIndex::new(&p.steps);
    let mut c = Checkpoint::new(&p, "r", 100);
    let first_node = &p.nodes[0].name;
    let drain = format!("{first_node}/drain");
    let err = c
        .transition(&idx, &drain, StepState::Running, 101, None)
        .expect_err("cordon not done");
    assert!(
        err.to_string().contains(&format!("{first_node}/cordon")),
        "{err}"
    );
    for id in ["preflight", "cilium-installed", "node-config"] {
        c.transition(&idx, id, StepState::Running, 101, None)
            .expect("start");
        c.transition(&idx, id, StepState::Done, 102, None)
            .expect("done");
    }
    let cordon = format!("{first_node}/cordon");
    c.transition(&idx, &cordon, StepState::Running, 103, None)
        .expect("start");
    c.transition(&idx, &cordon, StepState::Done, 104, None)
        .expect("done");
    assert!(
        c.transition(&idx, &cordon, StepState::Running, 105, None)
            .is_err(),
        "done is final"
    );
    c.transition(&idx, &drain, StepState::Running, 105, None)
        .expect("start");
    c.transition(
        &idx,
        &drain,
        StepState::Failed,
        106,
        Some("PDB shop/payments".into()),
    )
    .expect("fail");
    assert_eq!(
        c.nodes[first_node].message.as_deref(),
        Some("PDB shop/payments")
    );
    c.transition(&idx, &drain, StepState::Running, 107, None)
        .expect("a failed step may be retried");
    assert!(matches!(
        c.transition(&idx, "nope", StepState::Running, 1, None),
        Err(CheckpointError::UnknownStep(_))
    ));
}

#[test]
fn prior_state_is_recorded_once() {
    let p = plan(1);
    let mut c = Checkpoint::new(&p, "r", 1);
    let n = &p.nodes[0].name;
    assert!(c.record_prior(
        n,
        &NodePrior {
            cordoned: true,
            labelled: false,
            guarded: false,
            light: false,
        }
    ));
    assert!(
        !c.record_prior(
            n,
            &NodePrior {
                cordoned: false,
                labelled: true,
                guarded: false,
                light: false,
            }
        ),
        "a resumed run must not overwrite it"
    );
    assert_eq!(
        c.prior(n),
        Some(NodePrior {
            cordoned: true,
            labelled: false,
            guarded: false,
            light: false,
        })
    );
}

#[test]
fn other_versions_and_other_plans_are_refused_with_reasons() {
    let p = plan(3);
    let c = Checkpoint::new(&p, "r", 1);
    assert!(c.to_json().starts_with("{\"version\":2,"));
    let future = c.to_json().replace("\"version\":2", "\"version\":9");
    assert_eq!(
        Checkpoint::from_json(&future),
        Err(CheckpointError::Version { found: 9 })
    );
    assert!(matches!(
        Checkpoint::from_json("{"),
        Err(CheckpointError::Malformed(_))
    ));
    assert!(matches!(
        Checkpoint::from_compressed(b"not zlib"),
        Err(CheckpointError::Malformed(m)) if m.contains("does not inflate")
    ));
    // The node set is not the plan's identity: nodes come and go during a migration.
    c.verify_fingerprint(&plan(4))
        .expect("a node more is the same migration");
    c.verify_fingerprint(&p).expect("same plan");
    let mut other = plan(3);
    other.spec.target.cilium_version = "1.18.1".parse().expect("version");
    other.fingerprint = planner::plan::fingerprint(&other.spec, &other.facts);
    let err = c.verify_fingerprint(&other).expect_err("another target");
    assert!(err.to_string().contains("target Cilium"), "{err}");
    // A checkpoint written with a version 1 fingerprint (node names included) still matches.
    let mut old = c.clone();
    let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    old.fingerprint = planner::plan::legacy_fingerprint(&p.spec, &p.facts, &names);
    old.verify_fingerprint(&p).expect("a version 1 fingerprint");
}

/// A resumed run learns who came and went: a new node gets a fresh record marked joined, a
/// recorded node the cluster no longer has is marked left (and counts as settled, not failed).
#[test]
fn nodes_that_join_and_leave_are_reconciled_into_the_record() {
    let three = plan(3);
    let mut c = Checkpoint::new(&three, "r", 1_000);
    let four = plan(4);
    let changes = c.reconcile_nodes(&four, 1_060);
    assert_eq!(changes.joined, [four.nodes[3].name.clone()]);
    assert!(changes.left.is_empty());
    let joined = c.node(&four.nodes[3].name).expect("recorded");
    assert_eq!(joined.joined, Some(60));
    assert_eq!(
        joined.steps.len(),
        four.node_steps(&four.nodes[3].name).count()
    );
    let two = plan(2);
    let changes = c.reconcile_nodes(&two, 1_120);
    assert_eq!(changes.left.len(), 2);
    let gone = &changes.left[0];
    assert!(c.node_settled(gone) && !c.node_migrated(gone) && !c.node_in_flight(gone));
    assert_eq!(c.node(gone).expect("kept").status(), NodeStatus::Left);
    // Stored and read back.
    let back = Checkpoint::from_json(&c.to_json()).expect("reads");
    assert_eq!(back, c);
    // A node that comes back under the same name starts over.
    let changes = c.reconcile_nodes(&four, 1_180);
    assert_eq!(changes.joined.len(), 2);
    assert!(!c.node(gone).expect("fresh").gone());
    assert_eq!(c.replaced.len(), 2, "the old records are kept");
}

/// A node deleted and created again under the same name has a new UID: the old record is
/// kept as replaced (gone), the new node joins with a fresh record and its own UID.
#[test]
fn a_node_replaced_under_the_same_name_is_recorded_gone_and_its_successor_joins() {
    let p = plan(2);
    let mut c = Checkpoint::new(&p, "r", 1_000);
    let name = p.nodes[1].name.clone();
    let old_uid = c.node(&name).and_then(|r| r.uid.clone()).expect("a UID");
    assert_eq!(old_uid.len(), 8, "the first 8 characters");
    let mut replaced = p.clone();
    replaced.nodes[1].uid = "ffffffff-0000-4000-8000-000000000000".into();
    assert!(c.node_replaced_by(&name, &replaced.nodes[1].uid));
    assert!(!c.node_replaced_by(&name, &p.nodes[1].uid));
    let changes = c.reconcile_nodes(&replaced, 1_090);
    assert_eq!(changes.replaced, std::slice::from_ref(&name));
    assert_eq!(changes.joined, std::slice::from_ref(&name));
    let new = c.node(&name).expect("the successor");
    assert_eq!(new.uid.as_deref(), Some("ffffffff"));
    assert_eq!(new.joined, Some(90));
    assert_eq!(c.replaced.len(), 1);
    assert_eq!(c.replaced[0].record.uid.as_deref(), Some(old_uid.as_str()));
    assert_eq!(c.replaced[0].record.status(), NodeStatus::Left);
    assert_eq!(Checkpoint::from_json(&c.to_json()).expect("reads"), c);
}

/// A checkpoint written before UIDs were recorded still reads and resumes: its records
/// adopt the UIDs the next run finds, and nothing counts as replaced.
#[test]
fn a_checkpoint_without_uids_reads_and_adopts_them() {
    let p = plan(2);
    let mut c = Checkpoint::new(&p, "r", 1_000);
    for r in c.nodes.values_mut() {
        r.uid = None;
    }
    let text = c.to_json();
    assert!(!text.contains("\"i\":"), "{text}");
    let mut back = Checkpoint::from_json(&text).expect("reads");
    let changes = back.reconcile_nodes(&p, 1_010);
    assert!(changes.is_empty(), "{changes:?}");
    assert!(back.replaced.is_empty());
    for n in &p.nodes {
        assert_eq!(
            back.node(&n.name).and_then(|r| r.uid.as_deref()),
            Some(&n.uid[..8])
        );
    }
}

/// A node record as format 1 wrote it (absolute times) reads into the same typed record, and
/// writes back in format 2 (times as differences, trailing nones left out), which reads back
/// the same.
#[test]
fn the_stored_encoding_reads_and_writes_back_unchanged() {
    let format1 = r#"{"s":"DDRPPPP","t":[3,9,9,41,42,0,0,0,0,0,0,0,0,0],"p":"c","u":["-"]}"#;
    let stored = r#"{"s":"DDRPPPP","d":[3,6,0,32,1],"p":"c","u":["-"]}"#;
    let old: NodeRecord = serde_json::from_str(format1).expect("reads");
    assert_eq!(old, serde_json::from_str(stored).expect("reads"));
    let rec: NodeRecord = serde_json::from_str(stored).expect("reads");
    assert_eq!(rec.steps.len(), 7);
    assert_eq!(rec.steps[1].state, StepState::Done);
    assert_eq!(rec.steps[2].state, StepState::Running);
    assert_eq!(rec.steps[2].started, Some(42));
    assert_eq!(rec.steps[2].finished, None);
    assert_eq!(
        rec.prior,
        Some(NodePrior {
            cordoned: true,
            labelled: false,
            guarded: false,
            light: false,
        })
    );
    assert_eq!(
        rec.agent_uids,
        Some(Vec::new()),
        "`-`: no agent when labelled"
    );
    assert_eq!(
        rec.status(),
        NodeStatus::InFlight {
            step: 2,
            running: true
        }
    );
    assert_eq!(serde_json::to_string(&rec).expect("writes"), stored);
    let global: GlobalStep = serde_json::from_str(r#"{"s":"D","a":1,"b":2}"#).expect("reads");
    assert_eq!(global.state, StepState::Done);
    assert_eq!(
        serde_json::to_string(&global).expect("writes"),
        r#"{"s":"D","a":1,"b":2}"#
    );
}

#[test]
fn a_rollback_holds_the_node_resets_its_chain_and_clears_its_failure() {
    let p = plan(2);
    let idx = StepIndex::new(&p.steps);
    let mut c = Checkpoint::new(&p, "r", 100);
    for id in ["preflight", "cilium-installed", "node-config"] {
        c.transition(&idx, id, StepState::Running, 101, None)
            .expect("start");
        c.transition(&idx, id, StepState::Done, 101, None)
            .expect("done");
    }
    let n = p.nodes[0].name.clone();
    let cordon = format!("{n}/cordon");
    c.transition(&idx, &cordon, StepState::Running, 102, None)
        .expect("start");
    c.transition(&idx, &cordon, StepState::Failed, 103, Some("x".into()))
        .expect("fail");
    c.failure = Some(FailureRecord {
        step: cordon.clone(),
        reason: "x".into(),
        at: 3,
    });
    assert_eq!(c.nodes[&n].status(), NodeStatus::Failed { step: 0 });
    let chain: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    assert!(c.begin_rollback(&n, &chain, 110));
    assert_eq!(c.rollback_chain, chain);
    let rec = &c.nodes[&n];
    assert!(rec.held() && !rec.started() && rec.rollback.len() == 8);
    assert_eq!(rec.status(), NodeStatus::RolledBack);
    assert!(c.failure.is_none());
    assert!(c.held(&n));
    c.retry(&n).expect("held");
    assert!(!c.held(&n) && c.nodes[&n].rollback.is_empty());
    assert!(c.retry(&n).is_err(), "not rolled back any more");
    assert!(c.retry("nope").is_err());
}

/// A format 1 checkpoint (as the release before compression wrote it: `"version":1`, absolute
/// times) reads, and is format 2 from then on.
#[test]
fn a_format_1_checkpoint_reads_as_format_2() {
    let p = plan(2);
    let c = Checkpoint::new(&p, "r", 1_000);
    let node = &p.nodes[0].name;
    let v1 = c
        .to_json()
        .replace("\"version\":2", "\"version\":1")
        .replacen(
            &format!("\"{node}\":{{\"s\":\"PPPP"),
            &format!("\"{node}\":{{\"t\":[5,9,0,0],\"s\":\"DDPP"),
            1,
        );
    assert!(v1.contains("\"t\":[5,9"), "{v1}");
    let back = Checkpoint::from_json(&v1).expect("format 1 reads");
    assert_eq!(back.version, VERSION);
    let rec = back.node(node).expect("recorded");
    assert_eq!(
        (rec.steps[0].started, rec.steps[0].finished),
        (Some(5), Some(9))
    );
    assert_eq!(rec.steps[1].state, StepState::Done);
}

mod roundtrip {
    use proptest::prelude::*;

    use super::super::{NodePrior, NodeRecord, StepRecord, StepState};

    fn state() -> impl Strategy<Value = StepState> {
        prop_oneof![
            Just(StepState::Pending),
            Just(StepState::Running),
            Just(StepState::Done),
            Just(StepState::Failed),
            Just(StepState::Skipped),
        ]
    }

    fn time() -> impl Strategy<Value = Option<u32>> {
        prop_oneof![
            Just(None),
            (1u32..200_000).prop_map(Some),
            (1u32..).prop_map(Some)
        ]
    }

    fn step() -> impl Strategy<Value = StepRecord> {
        (state(), time(), time()).prop_map(|(state, started, finished)| StepRecord {
            state,
            started,
            finished,
        })
    }

    fn record() -> impl Strategy<Value = NodeRecord> {
        (
            (
                proptest::collection::vec(step(), 0..12),
                proptest::option::of(any::<[bool; 4]>()),
                proptest::option::of(proptest::collection::vec("[a-f0-9]{8}", 0..3)),
                proptest::option::of(".{0,40}"),
            ),
            (
                proptest::option::of(1u32..),
                proptest::collection::vec(step(), 0..9),
                proptest::option::of(1u32..),
                proptest::option::of(1u32..),
                any::<bool>(),
                proptest::option::of("[a-f0-9]{8}"),
            ),
        )
            .prop_map(
                |(
                    (steps, prior, agent_uids, message),
                    (rb, rollback, joined, left, awaiting, uid),
                )| {
                    NodeRecord {
                        steps,
                        prior: prior.map(|[cordoned, labelled, guarded, light]| NodePrior {
                            cordoned,
                            labelled,
                            guarded,
                            light,
                        }),
                        agent_uids,
                        message,
                        rolled_back: rb,
                        rollback,
                        joined,
                        left,
                        awaiting,
                        uid,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn a_node_record_reads_back_as_written(rec in record()) {
            let text = serde_json::to_string(&rec).expect("writes");
            let back: NodeRecord = serde_json::from_str(&text).expect("reads");
            prop_assert_eq!(back, rec);
        }

        #[test]
        fn a_checkpoint_reads_back_from_json_and_compressed(
            recs in proptest::collection::btree_map("[a-z0-9.-]{1,30}", record(), 0..20),
            generation in any::<u64>(),
            paused in any::<bool>(),
        ) {
            let mut c = super::super::Checkpoint::new(&super::plan(1), "r", 1_000);
            c.nodes = recs;
            c.generation = generation;
            c.paused = paused;
            prop_assert_eq!(&super::super::Checkpoint::from_json(&c.to_json()).expect("json"), &c);
            prop_assert_eq!(
                &super::super::Checkpoint::from_compressed(&c.to_compressed()).expect("bytes"),
                &c
            );
        }
    }
}
