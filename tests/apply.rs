//! End-to-end: the real `cni-migrate` binary migrates simulated clusters (the examples in
//! `plans/`), survives SIGKILL at every step boundary and at random moments, completes under
//! injected API faults, refuses a second concurrent run, and stops cleanly on a blocking PDB or
//! a node going NotReady.

mod support;

use std::time::Duration;

use support::cluster::{assert_migrated, env, events, show, step_ids};

const LIMIT: Duration = Duration::from_secs(120);

fn same(s: String) -> String {
    s
}

fn pool_of(spec: &std::path::Path) -> String {
    let text = std::fs::read_to_string(spec).expect("spec");
    let spec = planner::MigrationSpec::from_yaml(&text, "spec").expect("spec parses");
    spec.target.pod_cidrs[0].to_string()
}

async fn migrates_completely(example: &str) {
    let env = env(example, &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ev = events(&out);
    assert!(
        ev.iter().any(|e| e["event"] == "finished"),
        "no finished event: {}",
        show(&out)
    );
    assert!(ev.iter().any(|e| e["event"] == "summary"));
    assert_migrated(&env, &before_nodes, &before_pods, &pool_of(&env.spec)).await;
    let ck = env.checkpoint().await.expect("a checkpoint");
    assert!(ck.failure.is_none() && ck.gate.is_none());
    // The old CNI's objects are gone, and so is the migration CiliumNodeConfig.
    let plan = planner::plan(
        &planner::MigrationSpec::from_file(&env.spec).expect("spec"),
        &planner::dump::load_path(&support::plans_dir().join(format!(
            "{example}.{}",
            if support::plans_dir().join(format!("{example}.dump.json")).exists() {
                "dump.json"
            } else {
                "dump.yaml"
            }
        )))
        .expect("dump"),
    );
    use cluster::Cluster as _;
    for o in &plan.facts.source.objects {
        if o.kind == "DaemonSet" {
            let left = env
                .cluster
                .custom("apps/v1", "daemonsets", o.namespace.as_deref(), &o.name)
                .await
                .expect("get");
            assert!(left.is_none(), "{} {} still exists", o.kind, o.name);
        }
    }
    // Flannel's and Calico's leftovers (chains, devices, routes) are gone from every node that
    // ran the old CNI: the finale's cleanup pods removed them, and said what they removed.
    if matches!(
        plan.facts.source.cni,
        planner::facts::CniKind::Flannel | planner::facts::CniKind::Calico
    ) {
        let cleaned = ev
            .iter()
            .find(|e| e["step"] == "clean-old-cni" && e["event"] == "step-done")
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(cleaned.contains("leftovers removed from"), "{}", show(&out));
        let (_, nodes, _) = env
            .sim
            .store()
            .list("/nodes", None, None, None, &|_, _| true);
        for ((_, name), n) in nodes {
            let left =
                n.value()["metadata"]["annotations"][sim::model::LEFTOVERS_ANNOTATION].clone();
            assert_eq!(left, "cleaned", "{name}: the old CNI's leftovers");
            assert!(cleaned.contains(&format!("{name}: removed")), "{cleaned}");
        }
    }
    // A second apply finds the migration complete and changes nothing.
    let again = env.run("apply", &[], LIMIT).await;
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_flannel_migrates_completely() {
    migrates_completely("kind-flannel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_operator_vxlan_migrates_completely() {
    migrates_completely("calico-operator-vxlan").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_manifest_ipip_migrates_completely() {
    migrates_completely("calico-manifest-ipip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_aws_vpc_cni_migrates_completely() {
    migrates_completely("eks-aws-vpc-cni").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_errors_changes_nothing_and_exits_3() {
    let env = env("pdb-blocks-drain", &same).await;
    let before = env.nodes().await;
    let out = env.run("apply", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PDB_BLOCKS_DRAIN"));
    assert_eq!(env.nodes().await, before);
    assert!(env.checkpoint().await.is_none());
    assert!(
        !env.sim.requests().iter().any(|(verb, _)| verb != "GET"),
        "only reads"
    );
}

/// Kills the run at `point` (SIGKILL, from the test hook), resumes it, and checks the end state
/// equals an uninterrupted run's.
async fn crash_then_resume(point: String) {
    let env = env("kind-flannel", &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    // The dead run's Lease goes stale after a second; resuming needs --force-unlock, as a
    // human would after checking `cni-migrate status`.
    env.killed_at(&point).await;
    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{point}: resume failed: {}",
        show(&resumed)
    );
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_boundary_then_resume_ends_as_an_uninterrupted_run() {
    let probe = env("kind-flannel", &same).await;
    let ids = step_ids(&probe.spec, &probe.kubeconfig);
    drop(probe);
    assert!(ids.len() > 20, "{ids:?}");
    let points: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("{id}@started"), format!("{id}@done")])
        .collect();
    // A few at a time: each run mostly waits.
    for batch in points.chunks(6) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .map(|p| tokio::spawn(crash_then_resume(p)))
            .collect();
        for h in handles {
            h.await.expect("no panic");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_resume_ends_as_an_uninterrupted_run() {
    // Deterministic "random" moments spread over a run of a few seconds.
    let delays_ms = [350u64, 900, 1600, 2300, 3100, 4200];
    let mut handles = Vec::new();
    for d in delays_ms {
        handles.push(tokio::spawn(async move {
            let env = env("kind-flannel", &same).await;
            let before_nodes = env.nodes().await;
            let before_pods = env.workload_pods().await;
            let mut child = env.command("apply", &[]).spawn().expect("spawn");
            tokio::time::sleep(Duration::from_millis(d)).await;
            let finished_already = child.try_wait().expect("wait").is_some();
            if !finished_already {
                child.kill().await.expect("SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
            assert_eq!(
                resumed.status.code(),
                Some(0),
                "after {d}ms: {}",
                show(&resumed)
            );
            assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
        }));
    }
    for h in handles {
        h.await.expect("no panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_completes_under_injected_api_faults() {
    let env = env("kind-flannel", &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    // The same spec `cni-migrate sim --faults` takes.
    env.sim.set_faults(
        "error-500=0.05,error-429=0.05,conflict=0.05,latency=0ms-200ms,drop-watch=1s"
            .parse()
            .expect("a faults spec"),
    );
    let out = env.run("apply", &[], Duration::from_secs(300)).await;
    env.sim.set_faults(sim::Faults::default());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // At 5% each, hundreds of requests met dozens of injected 500s, 429s and conflicts (some
    // retried inside discovery and the checkpoint store, others by the steps).
    let served = env.sim.requests().len();
    assert!(
        served > 300,
        "only {served} requests: the faults were hardly exercised"
    );
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_runs_exactly_one_proceeds() {
    let env = env("kind-flannel", &same).await;
    let a = env.command("apply", &[]).output();
    let b = env.command("apply", &[]).output();
    let (a, b) = tokio::join!(a, b);
    let (a, b) = (a.expect("a"), b.expect("b"));
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.iter().filter(|c| **c == Some(0)).count() == 1,
        "exactly one run finishes: {}\n{}",
        show(&a),
        show(&b)
    );
    let loser = if a.status.code() == Some(0) { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.contains("holds the lock")
            || err.contains("already recorded")
            || err.contains("meanwhile"),
        "the refusal names the holder or the recorded run: {err}"
    );
    if err.contains("holds the lock") {
        assert!(err.contains('@'), "names the holder run-id@host: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_pdb_times_out_the_drain_naming_it_and_leaves_the_node_cordoned() {
    let env = env("kind-flannel", &|s: String| {
        s.replace("timeout: 10m", "timeout: 2s")
    })
    .await;
    let mut run = env.watch("apply", &[]);
    // Once the canary is done, the shop's frontend budget is frozen (maxUnavailable 0), which
    // the plan could not see.
    if run.until(|l| l.contains("\"node-done\"")).await.is_some() {
        let api: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
            kube::Api::namespaced(env.cluster.client().clone(), "shop");
        api.patch(
            "frontend",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"maxUnavailable": 0}})),
        )
        .await
        .expect("freeze the frontend budget");
    }
    let (status, seen) = run.finish().await;
    assert_eq!(status.code(), Some(5), "{}", seen.join("\n"));
    let failed: Vec<&String> = seen.iter().filter(|l| l.contains("step-failed")).collect();
    assert_eq!(failed.len(), 1, "{}", seen.join("\n"));
    assert!(
        failed[0].contains("PodDisruptionBudget(s) shop/frontend")
            && failed[0].contains("shop/frontend-"),
        "names the PDB and the pods: {}",
        failed[0]
    );
    let ck = env.checkpoint().await.expect("checkpoint");
    let f = ck.failure.expect("failure recorded");
    assert!(f.step.ends_with("/drain"), "{}", f.step);
    let node = f.step.trim_end_matches("/drain").to_owned();
    let nodes = env.nodes().await;
    assert_eq!(
        nodes[&node],
        (true, false),
        "{node} stays cordoned and unlabelled"
    );
    // No other node was started after the failure.
    let started_after: Vec<&String> = seen
        .iter()
        .skip_while(|l| !l.contains("step-failed"))
        .filter(|l| l.contains("node-admitted"))
        .collect();
    assert!(started_after.is_empty(), "{started_after:?}");
    // `status` explains it from the checkpoint alone.
    let st = env.cli(&["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("FAILED") && text.contains(&node) && text.contains("shop/frontend"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_going_not_ready_mid_drain_stops_the_run_cleanly() {
    // Slow terminations keep the drain waiting long enough to pull the node out from under it.
    let env = env("kind-flannel", &same).await;
    env.sim.set_pod_termination(Some(Duration::from_secs(3)));
    let mut run = env.watch("apply", &[]);
    let mut victim = None;
    if let Some(line) = run
        .until(|l| l.contains("\"step-started\"") && l.contains("\"kind\":\"drain\""))
        .await
    {
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        let node = v["node"].as_str().expect("node").to_owned();
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.sim.set_node_ready(&node, false).expect("not ready");
        victim = Some(node);
    }
    let (status, seen) = run.finish().await;
    let victim = victim.expect("a drain started");
    assert_eq!(status.code(), Some(5), "{}", seen.join("\n"));
    let failed = seen
        .iter()
        .find(|l| l.contains("step-failed"))
        .expect("a failure event");
    assert!(
        failed.contains(&victim) && failed.contains("NotReady"),
        "{failed}"
    );
    assert_eq!(
        env.nodes().await[&victim],
        (true, false),
        "left cordoned, recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_admissions_and_resume_finishes() {
    let env = env("kind-flannel", &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    let mut run = env.watch("apply", &[]);
    if run
        .until(|l| l.contains("\"node-admitted\""))
        .await
        .is_some()
    {
        let p = env.cli(&["pause"]);
        assert!(p.status.success(), "{}", show(&p));
    }
    let (status, seen) = run.finish().await;
    assert_eq!(status.code(), Some(4), "{}", seen.join("\n"));
    let admitted = seen
        .iter()
        .filter(|l| l.contains("\"node-admitted\""))
        .count();
    assert_eq!(
        admitted,
        1,
        "only the node in flight went on: {}",
        seen.join("\n")
    );
    let ck = env.checkpoint().await.expect("checkpoint");
    assert!(ck.paused);
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_helm_the_run_stops_at_a_gate_and_resume_checks_cilium_config() {
    let env = env("kind-flannel", &same).await;
    let mut cmd = env.gated("apply");
    let out = cmd.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("helm upgrade --install cilium cilium/cilium")
            && err.contains("cni-migrate resume"),
        "{err}"
    );
    // Resuming without installing anything stops at the same gate.
    let mut again = env.gated("resume");
    let out2 = again.output().await.expect("runs");
    assert_eq!(out2.status.code(), Some(4), "{}", show(&out2));
    // A human installs Cilium; resume sees it in cilium-config and goes on.
    let values = env.dir.path().join("values/values-migration.yaml");
    assert!(
        err.contains(&values.display().to_string()),
        "the gate names the values file: {err}"
    );
    let helm = std::process::Command::new(support::binary())
        .args([
            "sim",
            "helm",
            "upgrade",
            "--install",
            "cilium",
            "cilium/cilium",
            "--namespace",
            "kube-system",
            "-f",
        ])
        .arg(&values)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()
        .expect("helm");
    assert!(helm.status.success(), "{}", show(&helm));
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_yes_and_without_a_terminal_apply_refuses() {
    let env = env("kind-flannel", &same).await;
    let mut cmd = tokio::process::Command::new(support::binary());
    cmd.args(["apply", "--sim-timing", "--spec"])
        .arg(&env.spec)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .stdin(std::process::Stdio::null());
    let out = cmd.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(env.checkpoint().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_before_finalize_keeps_the_old_cni_until_resume_with_a_file_checkpoint() {
    use cluster::Cluster as _;
    let env = env("kind-flannel", &same).await;
    let state = env.dir.path().join("state.json");
    let state_flag = format!("file:{}", state.display());
    let out = env
        .run(
            "apply",
            &["--state", &state_flag, "--stop-before", "finalize"],
            LIMIT,
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop-before finalize"));
    assert!(state.exists(), "the checkpoint is in the file");
    assert!(env.checkpoint().await.is_none(), "and not in the ConfigMap");
    let nodes = env.nodes().await;
    assert!(
        nodes
            .values()
            .all(|(cordoned, labelled)| !cordoned && *labelled),
        "{nodes:?}"
    );
    let flannel = env
        .cluster
        .custom(
            "apps/v1",
            "daemonsets",
            Some("kube-flannel"),
            "kube-flannel-ds",
        )
        .await
        .expect("get");
    assert!(flannel.is_some(), "the old CNI stays until the finale");
    // Each step's end left an Event on its Node, and the drain's start too.
    let (_, events, _) = env
        .sim
        .store()
        .list("/events", None, None, None, &|_, _| true);
    let on_nodes = events
        .iter()
        .filter(|(_, e)| e.value()["involvedObject"]["kind"] == "Node")
        .count();
    assert!(on_nodes >= 3 * (7 + 1), "{on_nodes} node events");
    let st = std::process::Command::new(support::binary())
        .args(["status", "--state", &state_flag, "-o", "json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["state"], "gate", "{v}");
    assert_eq!(
        v["nodes"]
            .as_array()
            .map(|n| n.iter().filter(|n| n["state"] == "done").count()),
        Some(3)
    );
    let resumed = env.run("resume", &["--state", &state_flag], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    let flannel = env
        .cluster
        .custom(
            "apps/v1",
            "daemonsets",
            Some("kube-flannel"),
            "kube-flannel-ds",
        )
        .await
        .expect("get");
    assert!(flannel.is_none(), "the finale removed the old CNI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_checkpoint_of_another_plan_and_says_why() {
    let env = env("kind-flannel", &same).await;
    let out = env
        .run("apply", &["--stop-before", "finalize"], LIMIT)
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let changed = std::fs::read_to_string(&env.spec)
        .expect("spec")
        .replace("10.245.0.0/16", "10.246.0.0/16");
    std::fs::write(&env.spec, changed).expect("write");
    let out = env.run("resume", &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another plan") && err.contains("--ignore-fingerprint"),
        "{err}"
    );
}

/// A resume refused by preflight must not claim that nothing changed when the checkpoint shows
/// a node drained: it says what the recorded run did and points at `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_says_what_the_recorded_run_changed() {
    let env = env("kind-flannel", &same).await;
    env.killed_at("kind-worker/drain@done").await;
    // A budget that now allows no disruption at all: preflight refuses the resume.
    let stored = env
        .sim
        .store()
        .get("policy/poddisruptionbudgets", "shop", "frontend")
        .expect("the example's frontend budget");
    let mut pdb = stored.value();
    pdb["spec"]["maxUnavailable"] = serde_json::json!(0);
    env.sim
        .store()
        .update("policy/poddisruptionbudgets", pdb, Some(stored.rv), false)
        .expect("update");
    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(3), "{}", show(&resumed));
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(!err.contains("nothing was changed"), "{err}");
    assert!(
        err.contains("this run changed nothing, but the migration recorded in")
            && err.contains("node(s) done")
            && err.contains("cni-migrate status"),
        "{err}"
    );
}

/// On a resumed run the plan sees the node the tool cordoned as "cordoned before"; the
/// uncordon step's announcement must come from the recorded prior state its action reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_uncordon_says_what_it_does() {
    let env = env("kind-flannel", &same).await;
    env.killed_at("kind-worker/drain@done").await;
    let resumed = env.run("resume", &["--force-unlock"], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    let ev = events(&resumed);
    let said = |kind: &str, event: &str| {
        ev.iter()
            .find(|e| e["step"] == format!("kind-worker/{kind}") && e["event"] == event)
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(said("uncordon", "step-started"), "uncordon kind-worker");
    assert_eq!(said("uncordon", "step-done"), "uncordoned kind-worker");
}

/// SIGTERM (a drained node, a deleted Job pod, `kill`) and SIGINT (Ctrl-C) stop the run and
/// release its Lease: the next `resume` goes on at once, without `--force-unlock`, and ends as
/// an uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_release_the_lock_and_resume_goes_on_at_once() {
    let env = env("kind-flannel", &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let mut run = env.watch(if code == 143 { "apply" } else { "resume" }, &[]);
        assert!(
            run.until(|l| l.contains("\"step-started\"") && l.contains("/drain\""))
                .await
                .is_some(),
            "a drain starts"
        );
        run.signal(signal);
        let (status, lines) = run.finish().await;
        assert_eq!(
            status.code(),
            Some(code),
            "SIG{signal}: {}",
            lines.join("\n")
        );
    }
    let resumed = env.run("resume", &[], LIMIT).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
}

/// `apply --or-resume` (what an in-cluster Job's every pod runs): the first starts the
/// migration, the next, after its predecessor died, goes on with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_or_resume_starts_then_goes_on_with_the_recorded_migration() {
    let env = env("kind-flannel", &same).await;
    let before_nodes = env.nodes().await;
    let before_pods = env.workload_pods().await;
    env.killed_in("apply", &["--or-resume"], "kind-worker/drain@done")
        .await;
    let plain = env.run("apply", &["--force-unlock"], LIMIT).await;
    assert_ne!(
        plain.status.code(),
        Some(0),
        "plain apply refuses a recorded migration"
    );
    let next = env
        .run("apply", &["--or-resume", "--force-unlock"], LIMIT)
        .await;
    assert_eq!(next.status.code(), Some(0), "{}", show(&next));
    assert!(String::from_utf8_lossy(&next.stderr).contains("going on with it (--or-resume)"));
    assert_migrated(&env, &before_nodes, &before_pods, "10.245.0.0/16").await;
    let done = env.run("apply", &["--or-resume"], LIMIT).await;
    assert_eq!(done.status.code(), Some(0), "{}", show(&done));
    assert!(String::from_utf8_lossy(&done.stdout).contains("already complete"));
}

/// `status --follow` from another process: each node's progress as it lands in the
/// checkpoint, until the run stops at its gate (exit 4, as the run's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follow_shows_the_progress_until_the_run_stops() {
    let env = env("kind-flannel", &same).await;
    let mut run = env.watch("apply", &["--stop-before", "finalize"]);
    assert!(
        run.until(|l| l.contains("\"node-admitted\""))
            .await
            .is_some(),
        "the run admits a node"
    );
    let follow = tokio::process::Command::new(support::binary())
        .args(["status", "--follow", "--interval", "100ms", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .output();
    let (followed, (status, _)) = tokio::join!(tokio::time::timeout(LIMIT, follow), run.finish());
    assert_eq!(status.code(), Some(4));
    let followed = followed.expect("in time").expect("runs");
    assert_eq!(followed.status.code(), Some(4), "{}", show(&followed));
    let text = String::from_utf8_lossy(&followed.stdout);
    for node in ["kind-worker", "kind-worker2", "kind-control-plane"] {
        assert!(text.contains(&format!("{node}: done")), "{text}");
    }
    assert!(
        text.contains("kind-worker: in-flight"),
        "the progress, not only the end: {text}"
    );
}
