//! State store tests: EnforceIndex with Nomad's texts, version history, summaries,
//! copy-on-write snapshots, and byte snapshots (restore(snapshot(S)) == S, other
//! versions refused).

use drover_core::codec::{self, FrameKind};
use drover_core::model::{
    AllocClientStatus, AllocDeploymentStatus, Allocation, Deployment, DeploymentState,
    DeploymentStatus, DeploymentStatusUpdate, EvalStatus, Evaluation, Job, Node, NodeStatus,
    PlanResult, Task, TaskGroup, deployment_description,
};
use drover_core::state::{
    AllocClientUpdate, AutopilotConfig, AutopilotConfigRecord, Command, JOB_VERSIONS_RETAINED_MAX,
    SnapshotError, State,
};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000_000_000;

fn job(id: &str, image: &str) -> Job {
    let mut task = Task { name: "t".into(), driver: "docker".into(), ..Task::default() };
    task.config.insert("image".into(), serde_json::from_str(&format!("{image:?}")).unwrap());
    Job {
        id: id.into(),
        name: id.into(),
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 2,
            tasks: vec![task],
            ..TaskGroup::default()
        }],
        ..Job::default()
    }
}

fn register(state: &mut State, index: u64, job: Job, enforce: Option<u64>) -> Result<u64, String> {
    state
        .apply(index, NOW, Command::JobRegister { job, enforce_index: enforce, eval: None })
        .map(|o| o.job_modify_index)
        .map_err(|e| e.to_string())
}

#[test]
fn enforce_index_uses_nomads_texts() {
    let mut state = State::new();
    assert_eq!(
        register(&mut state, 1, job("web", "a"), Some(5)),
        Err("Enforcing job modify index 5: job does not exist".into())
    );
    assert_eq!(register(&mut state, 2, job("web", "a"), Some(0)), Ok(2));
    assert_eq!(
        register(&mut state, 3, job("web", "b"), Some(0)),
        Err("Enforcing job modify index 0: job already exists".into())
    );
    assert_eq!(
        register(&mut state, 4, job("web", "b"), Some(7)),
        Err("Enforcing job modify index 7: job exists with conflicting job modify index: 2".into())
    );
    assert_eq!(register(&mut state, 5, job("web", "b"), Some(2)), Ok(5));
    assert_eq!(state.job("default", "web").unwrap().version, 1);
    assert_eq!(state.latest_index(), 5, "refused entries still advance the index");
}

#[test]
fn versions_keep_the_newest_six_and_unchanged_specs_do_not_bump() {
    let mut state = State::new();
    for i in 0..9u64 {
        register(&mut state, i + 1, job("web", &format!("img:{i}")), None).unwrap();
    }
    let current = state.job("default", "web").unwrap().clone();
    assert_eq!(current.version, 8);
    register(&mut state, 20, job("web", "img:8"), None).unwrap();
    let again = state.job("default", "web").unwrap();
    assert_eq!(
        (again.version, again.job_modify_index, again.modify_index),
        (8, current.job_modify_index, 20)
    );
    let versions: Vec<u64> =
        state.job_versions("default", "web").iter().map(|j| j.version).collect();
    assert_eq!(versions.len(), JOB_VERSIONS_RETAINED_MAX);
    assert_eq!(versions, vec![8, 7, 6, 5, 4, 3]);
}

fn node(id: &str) -> Node {
    let mut node = Node { id: id.into(), status: NodeStatus::Ready, ..Node::default() };
    node.node_resources.cpu.cpu_shares = 4000;
    node.node_resources.memory.memory_mb = 8192;
    node
}

fn placement(id: &str, node: &str, index: u32) -> Allocation {
    let mut alloc = Allocation {
        id: id.into(),
        namespace: "default".into(),
        name: format!("web.g[{index}]"),
        node_id: node.into(),
        job_id: "web".into(),
        task_group: "g".into(),
        ..Allocation::default()
    };
    alloc.allocated_resources.shared.disk_mb = 10;
    alloc
}

fn place(state: &mut State, index: u64, allocs: Vec<Allocation>) {
    let mut result = PlanResult::default();
    for alloc in allocs {
        result.node_allocation.entry(alloc.node_id.clone()).or_default().push(alloc);
    }
    let job = state.job("default", "web").map(|j| (**j).clone());
    state
        .apply(index, NOW + index as i64, Command::PlanApply { result, job, evals: vec![] })
        .unwrap();
}

#[test]
fn summaries_follow_client_status_and_match_a_recount() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    place(&mut state, 3, vec![placement("a1", "n1", 0), placement("a2", "n1", 1)]);
    let update = |id: &str, status| AllocClientUpdate {
        alloc_id: id.into(),
        client_status: status,
        client_description: String::new(),
        report_seq: 1,
        ..AllocClientUpdate::default()
    };
    let updates =
        vec![update("a1", AllocClientStatus::Running), update("a2", AllocClientStatus::Failed)];
    state.apply(4, NOW, Command::AllocClientUpdate { updates, evals: vec![] }).unwrap();
    let summary = state.job_summary("default", "web").unwrap();
    let group = &summary.summary["g"];
    assert_eq!((group.starting, group.running, group.failed), (0, 1, 1));
    let allocs = state.job_allocs("default", "web");
    assert_eq!(**summary, summary.recompute(allocs.iter().map(|a| a.as_ref())));
    assert_eq!(state.job("default", "web").unwrap().status, "running");
    let usage = state.node_allocs("n1").unwrap().used;
    assert_eq!(usage.disk_mb, 10, "only the live allocation holds resources");
}

/// A worker must not plan an evaluation on a state older than the job's last plan: were
/// an evaluation handed out again after its plan committed (the answer lost), it would
/// place the same allocations twice (a simulation found it).
#[test]
fn a_plan_raises_its_jobs_wait_index_and_a_restore_keeps_it() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    assert_eq!(state.job_wait_index("default", "web"), 0, "no evaluation, no plan yet");
    place(&mut state, 3, vec![placement("a1", "n1", 0), placement("a2", "n1", 1)]);
    assert_eq!(state.job_wait_index("default", "web"), 3);
    let report = |state: &mut State, index, id: &str, client_status| {
        let update = AllocClientUpdate {
            alloc_id: id.into(),
            client_status,
            report_seq: index,
            ..AllocClientUpdate::default()
        };
        let command = Command::AllocClientUpdate { updates: vec![update], evals: vec![] };
        state.apply(index, NOW, command).unwrap();
    };
    report(&mut state, 4, "a1", AllocClientStatus::Running);
    assert_eq!(state.job_wait_index("default", "web"), 3, "a client's report is no plan");
    let restored = |state: &State| {
        let bytes = state.to_snapshot_bytes().unwrap();
        State::from_snapshot_bytes(&bytes, 1 << 20).unwrap()
    };
    assert_eq!(restored(&state).job_wait_index("default", "web"), 3);
    assert_eq!(restored(&state), state);

    // A later plan stops a2; GC then reaps it: the index falls back to what is left, as a
    // restore derives it.
    let mut stop = placement("a2", "n1", 1);
    stop.desired_status = drover_core::model::AllocDesiredStatus::Stop;
    let mut result = PlanResult::default();
    result.node_update.insert("n1".into(), vec![stop]);
    let job = state.job("default", "web").map(|j| (**j).clone());
    state.apply(5, NOW, Command::PlanApply { result, job, evals: vec![] }).unwrap();
    assert_eq!(state.job_wait_index("default", "web"), 5, "a plan's stops count too");
    report(&mut state, 6, "a2", AllocClientStatus::Complete);
    let reap = Command::Reap {
        eval_ids: vec![],
        alloc_ids: vec!["a2".into()],
        jobs: vec![],
        node_ids: vec![],
    };
    state.apply(7, NOW, reap).unwrap();
    assert!(state.alloc("a2").is_none());
    assert_eq!(state.job_wait_index("default", "web"), 3, "a1's plan is the newest left");
    assert_eq!(restored(&state), state);
}

#[test]
fn snapshots_are_immutable() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    let before = state.snapshot();
    place(&mut state, 3, vec![placement("a1", "n1", 0)]);
    assert!(before.alloc("a1").is_none() && state.alloc("a1").is_some());
    assert!(before.node_allocs("n1").is_none());
    assert_eq!(before.latest_index(), 2);
}

#[test]
fn allocations_of_one_job_version_share_one_job_through_apply_and_snapshots() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    // One placement carries its job (as an in-place update from an older planner may),
    // the other relies on the plan's: neither is kept per allocation.
    let carrying = Allocation {
        job: Some(Box::new((**state.job("default", "web").unwrap()).clone())),
        ..placement("a1", "n1", 0)
    };
    place(&mut state, 3, vec![carrying, placement("a2", "n1", 1)]);
    let shared = |state: &State| {
        let (a1, a2) = (state.alloc("a1").unwrap(), state.alloc("a2").unwrap());
        assert!(a1.job.is_none() && a2.job.is_none(), "no job copy per allocation");
        let (j1, j2) = (state.alloc_job(a1).unwrap(), state.alloc_job(a2).unwrap());
        let version = state.job_version("default", "web", 0).unwrap();
        assert!(std::sync::Arc::ptr_eq(&j1, &j2) && std::sync::Arc::ptr_eq(&j1, &version));
    };
    shared(&state);
    let bytes = state.to_snapshot_bytes().unwrap();
    let restored = State::from_snapshot_bytes(&bytes, 1 << 20).unwrap();
    assert_eq!(restored, state);
    shared(&restored);
}

#[test]
fn byte_snapshots_refuse_other_versions_and_damage() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    let bytes = state.to_snapshot_bytes().unwrap();
    assert_eq!(State::from_snapshot_bytes(&bytes, 1 << 20).unwrap(), state);
    let other = codec::encode(FrameKind::SNAPSHOT, &(99u32, Vec::<u8>::new())).unwrap();
    let refused = State::from_snapshot_bytes(&other, 1 << 20).unwrap_err();
    assert_eq!(
        refused,
        SnapshotError::UnsupportedVersion {
            found: 99,
            supported: drover_core::state::SNAPSHOT_FORMAT_VERSION
        }
    );
    assert!(refused.to_string().contains("format version 99"));
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert!(matches!(State::from_snapshot_bytes(&damaged, 1 << 20), Err(SnapshotError::Codec(_))));
}

/// A random sequence of writes: jobs, nodes, placements, client updates, evaluations.
fn build(ops: &[(u8, u8)]) -> State {
    let mut state = State::new();
    let mut index = 0;
    for (n, &(op, arg)) in ops.iter().enumerate() {
        index += 1;
        let command = match op % 5 {
            0 => Command::JobRegister {
                job: job("web", &format!("img:{}", arg % 3)),
                enforce_index: None,
                eval: None,
            },
            1 => Command::NodeRegister { node: node(&format!("n{}", arg % 4)) },
            2 if state.job("default", "web").is_some()
                && state.node(&format!("n{}", arg % 4)).is_some() =>
            {
                let mut result = PlanResult::default();
                let alloc =
                    placement(&format!("a{n}"), &format!("n{}", arg % 4), u32::from(arg % 3));
                result.node_allocation.insert(alloc.node_id.clone(), vec![alloc]);
                Command::PlanApply {
                    result,
                    job: state.job("default", "web").map(|j| (**j).clone()),
                    evals: vec![],
                }
            }
            3 => {
                let Some(alloc) = state.allocs().next().cloned() else { continue };
                let status = [
                    AllocClientStatus::Running,
                    AllocClientStatus::Complete,
                    AllocClientStatus::Failed,
                ][usize::from(arg % 3)];
                let update = AllocClientUpdate {
                    alloc_id: alloc.id.clone(),
                    client_status: status,
                    client_description: "x".into(),
                    report_seq: alloc.client_report_seq + 1,
                    ..AllocClientUpdate::default()
                };
                Command::AllocClientUpdate { updates: vec![update], evals: vec![] }
            }
            _ => Command::EvalUpsert {
                evals: vec![Evaluation {
                    id: format!("e{}", arg % 5),
                    job_id: "web".into(),
                    status: [EvalStatus::Pending, EvalStatus::Blocked, EvalStatus::Complete]
                        [usize::from(arg / 5 % 3)],
                    ..Evaluation::default()
                }],
            },
        };
        let _ = state.apply(index, NOW + index as i64, command);
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn restore_of_snapshot_is_identity(ops in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..40)) {
        let state = build(&ops);
        let bytes = state.to_snapshot_bytes().unwrap();
        let restored = State::from_snapshot_bytes(&bytes, 16 << 20).unwrap();
        prop_assert_eq!(&restored, &state);
        for node in state.nodes() {
            prop_assert_eq!(restored.node_allocs(&node.id), state.node_allocs(&node.id));
        }
        prop_assert!(blocked_evals(&state).len() <= 1, "{:?}", blocked_evals(&state));
        if let Some(summary) = state.job_summary("default", "web") {
            let allocs = state.job_allocs("default", "web");
            prop_assert_eq!(&**summary, &summary.recompute(allocs.iter().map(|a| a.as_ref())));
        }
    }
}

fn blocked_evals(state: &State) -> Vec<String> {
    state.evals().filter(|e| e.status == EvalStatus::Blocked).map(|e| e.id.clone()).collect()
}

fn blocked(id: &str) -> Evaluation {
    Evaluation {
        id: id.into(),
        job_id: "web".into(),
        status: EvalStatus::Blocked,
        ..Evaluation::default()
    }
}

/// A job keeps one blocked evaluation, in every state: writing a newer one cancels the
/// older in the same entry, an older one written again after a newer is cancelled
/// itself, and a restored snapshot goes on from the same blocked evaluation.
#[test]
fn a_job_keeps_one_blocked_evaluation() {
    let mut state = State::new();
    let upsert = |eval: Evaluation| Command::EvalUpsert { evals: vec![eval] };
    state.apply(1, NOW, upsert(blocked("b1"))).unwrap();
    state.apply(2, NOW, upsert(blocked("b2"))).unwrap();
    assert_eq!(blocked_evals(&state), ["b2"]);
    let b1 = state.eval("b1").unwrap();
    assert_eq!((b1.status, b1.modify_index), (EvalStatus::Canceled, 2));

    state.apply(3, NOW, upsert(blocked("b1"))).unwrap();
    assert_eq!(blocked_evals(&state), ["b2"]);
    assert_eq!(state.eval("b1").unwrap().status, EvalStatus::Canceled);

    let bytes = state.to_snapshot_bytes().unwrap();
    let mut restored = State::from_snapshot_bytes(&bytes, 1 << 20).unwrap();
    restored.apply(4, NOW, upsert(blocked("b3"))).unwrap();
    assert_eq!(blocked_evals(&restored), ["b3"]);
    assert_eq!(restored.eval("b2").unwrap().status, EvalStatus::Canceled);

    let done = Evaluation { status: EvalStatus::Complete, ..blocked("b3") };
    restored.apply(5, NOW, upsert(done)).unwrap();
    restored.apply(6, NOW, upsert(blocked("b4"))).unwrap();
    assert_eq!(blocked_evals(&restored), ["b4"]);
    assert_eq!(restored.eval("b3").unwrap().status, EvalStatus::Complete);
}

fn periodic(id: &str) -> Job {
    let periodic =
        drover_core::model::PeriodicConfig { spec: "0 * * * * * *".into(), ..Default::default() };
    Job { job_type: drover_core::model::JobType::Batch, periodic: Some(periodic), ..job(id, "a") }
}

fn launch(
    state: &mut State,
    index: u64,
    parent: &Job,
    secs: i64,
    forced: bool,
) -> Result<(), String> {
    let command =
        drover_core::server::launch_command(parent, secs, format!("e{index}"), NOW, forced);
    state.apply(index, NOW, command).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn periodic_launches_are_recorded_once_and_the_record_never_moves_back() {
    let mut state = State::new();
    let parent = periodic("report");
    register(&mut state, 1, parent.clone(), None).unwrap();
    assert_eq!(state.periodic_launch("default", "report"), Some(NOW), "registration is recorded");
    assert_eq!(state.job("default", "report").unwrap().status, "running");
    let t = NOW / 1_000_000_000 + 40;
    launch(&mut state, 2, &parent, t, false).unwrap();
    let child = state.job("default", &format!("report/periodic-{t}")).unwrap();
    assert_eq!(child.parent_id, "report");
    assert!(child.periodic.is_none());
    assert_eq!(
        launch(&mut state, 3, &parent, t, false),
        Err(format!(
            "periodic launch of report/periodic-{t} refused: a job with this ID was already launched"
        ))
    );
    let refused = launch(&mut state, 4, &parent, t - 10, false).unwrap_err();
    assert!(refused.contains("is not after the last launch"), "{refused}");
    // A forced launch stamped by a clock behind the record launches, but keeps the record.
    launch(&mut state, 5, &parent, t - 10, true).unwrap();
    assert_eq!(state.periodic_launch("default", "report"), Some(t * 1_000_000_000));
    let restored =
        State::from_snapshot_bytes(&state.to_snapshot_bytes().unwrap(), 1 << 24).unwrap();
    assert_eq!(restored, state, "the launch table survives a snapshot");
    let purge = Command::JobDeregister {
        namespace: "default".into(),
        job_id: "report".into(),
        purge: true,
        eval: None,
    };
    state.apply(6, NOW, purge).unwrap();
    assert_eq!(state.periodic_launch("default", "report"), None);
    let orphan = launch(&mut state, 7, &parent, t + 60, false).unwrap_err();
    assert!(orphan.contains("periodic job report not found"), "{orphan}");
}

#[test]
fn autopilot_config_is_set_whole_and_checked_against_its_modify_index() {
    let mut state = State::new();
    let set = |state: &mut State, index: u64, min_quorum: usize, cas_index: Option<u64>| {
        let config = AutopilotConfig { min_quorum, ..AutopilotConfig::default() };
        let command = Command::AutopilotSetConfig { config, cas_index };
        state.apply(index, NOW, command).unwrap().updated
    };
    let agent_block = AutopilotConfig { min_quorum: 3, ..AutopilotConfig::default() };
    assert_eq!(state.autopilot_config(), None);
    assert_eq!(
        state.autopilot_config_or(agent_block),
        AutopilotConfigRecord { config: agent_block, create_index: 0, modify_index: 0 },
        "until an operator sets one, the agent's block stands, at index 0"
    );
    assert!(!set(&mut state, 1, 5, Some(7)), "nothing stored: only cas=0 matches");
    assert_eq!(state.autopilot_config(), None);
    assert!(set(&mut state, 2, 5, Some(0)));
    assert!(!set(&mut state, 3, 4, Some(0)), "a stale check-and-set writes nothing");
    assert!(set(&mut state, 4, 4, Some(2)));
    assert!(set(&mut state, 5, 1, None), "without a check a write always lands");
    let stored = *state.autopilot_config().unwrap();
    assert_eq!((stored.config.min_quorum, stored.create_index, stored.modify_index), (1, 2, 5));
    assert_eq!(state.autopilot_config_or(agent_block), stored);
    assert_eq!(state.table_indexes().autopilot_config, 5);
    let restored =
        State::from_snapshot_bytes(&state.to_snapshot_bytes().unwrap(), 1 << 20).unwrap();
    assert_eq!(restored, state, "the configuration survives a snapshot");
}

/// A deployment of `web` whose group `g` placed canaries `c1` and `c2`, and whose group
/// `h` needs none; `c1` healthy, `c2` not yet judged.
fn canary_deployment(state: &mut State) {
    register(state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    place(state, 3, vec![placement("c1", "n1", 0), placement("c2", "n1", 1)]);
    let healthy = AllocDeploymentStatus { healthy: Some(true), ..Default::default() };
    let update = AllocClientUpdate {
        alloc_id: "c1".into(),
        client_status: AllocClientStatus::Running,
        deployment_status: Some(healthy),
        report_seq: 1,
        ..AllocClientUpdate::default()
    };
    state
        .apply(4, NOW, Command::AllocClientUpdate { updates: vec![update], evals: vec![] })
        .unwrap();
    let canaries = DeploymentState {
        desired_canaries: 2,
        desired_total: 2,
        placed_canaries: vec!["c1".into(), "c2".into()],
        ..DeploymentState::default()
    };
    let deployment = Deployment {
        id: "d1".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        task_groups: [("g".to_owned(), canaries), ("h".to_owned(), DeploymentState::default())]
            .into_iter()
            .collect(),
        status_description: deployment_description::RUNNING_NEEDS_PROMOTION.into(),
        ..Deployment::default()
    };
    state.apply(5, NOW, Command::DeploymentUpsert { deployment }).unwrap();
}

/// Applies `command` and tells what came of it: the refusal, or the deployment's status
/// and which groups are promoted.
fn check_deployment(state: &mut State, index: u64, command: Command) -> String {
    match state.apply(index, NOW, command) {
        Err(error) => format!("refused: {error}"),
        Ok(_) => {
            let d = state.deployment("d1").unwrap();
            let promoted: Vec<&str> =
                d.task_groups.iter().filter(|(_, s)| s.promoted).map(|(g, _)| g.as_str()).collect();
            format!("{} ({}) promoted={promoted:?}", d.status.as_str(), d.status_description)
        }
    }
}

#[test]
fn deployment_promotion_and_status_changes_follow_nomads_rules() {
    let mut state = State::new();
    canary_deployment(&mut state);
    let promote = |groups: &[&str]| Command::DeploymentPromote {
        deployment_id: "d1".into(),
        all: groups.is_empty(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        eval: None,
    };
    let status = |status, description: &str| Command::DeploymentStatusChange {
        update: DeploymentStatusUpdate {
            deployment_id: "d1".into(),
            status,
            status_description: description.into(),
        },
        eval: None,
    };
    let steps = [
        check_deployment(&mut state, 6, promote(&[])),
        check_deployment(&mut state, 7, promote(&["h"])),
        check_deployment(&mut state, 8, status(DeploymentStatus::Paused, "Deployment is paused")),
        {
            let healthy = AllocDeploymentStatus { healthy: Some(true), ..Default::default() };
            let update = AllocClientUpdate {
                alloc_id: "c2".into(),
                client_status: AllocClientStatus::Running,
                deployment_status: Some(healthy),
                report_seq: 1,
                ..AllocClientUpdate::default()
            };
            let healthy = Command::AllocClientUpdate { updates: vec![update], evals: vec![] };
            state.apply(9, NOW, healthy).unwrap();
            check_deployment(&mut state, 10, promote(&["g"]))
        },
        check_deployment(
            &mut state,
            11,
            status(DeploymentStatus::Running, "Deployment is running"),
        ),
        check_deployment(&mut state, 12, promote(&[])),
        check_deployment(
            &mut state,
            13,
            status(DeploymentStatus::Failed, "Deployment marked as failed"),
        ),
        check_deployment(&mut state, 14, promote(&[])),
        {
            let missing = Command::DeploymentPromote {
                deployment_id: "nope".into(),
                all: true,
                groups: vec![],
                eval: None,
            };
            check_deployment(&mut state, 15, missing)
        },
    ];
    insta::assert_snapshot!("deployment_rules", steps.join("\n"));
}

/// A client's health verdict counts only for the deployment it judged: a report sent
/// before the client heard of an in-place update into a newer deployment is dropped (it
/// once flagged the updated allocation as that deployment's canary, so the scheduler
/// placed another beside it), and the canary flag stays the servers' to set.
#[test]
fn a_health_verdict_counts_only_for_the_deployment_it_judged() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    let canary = Allocation {
        deployment_id: "d1".into(),
        deployment_status: Some(AllocDeploymentStatus { canary: true, ..Default::default() }),
        ..placement("a1", "n1", 0)
    };
    place(&mut state, 3, vec![canary]);
    let moved = Allocation {
        deployment_id: "d2".into(),
        deployment_status: None,
        ..(**state.alloc("a1").unwrap()).clone()
    };
    place(&mut state, 4, vec![moved]);
    let report = |deployment_id: &str, report_seq| AllocClientUpdate {
        alloc_id: "a1".into(),
        client_status: AllocClientStatus::Running,
        deployment_status: Some(AllocDeploymentStatus {
            healthy: Some(true),
            canary: true,
            ..Default::default()
        }),
        deployment_id: deployment_id.into(),
        report_seq,
        ..AllocClientUpdate::default()
    };
    let apply = |state: &mut State, index, update| {
        let command = Command::AllocClientUpdate { updates: vec![update], evals: vec![] };
        state.apply(index, NOW, command).unwrap();
        state.alloc("a1").unwrap().deployment_status.clone()
    };
    assert_eq!(apply(&mut state, 5, report("d1", 1)), None, "a verdict for d1 is stale in d2");
    let judged = apply(&mut state, 6, report("d2", 2)).expect("a verdict for d2 counts");
    assert_eq!((judged.healthy, judged.canary), (Some(true), false));
}

/// A finished allocation never runs again: a client's report that it runs, arriving after
/// the one that finished it (delayed or duplicated on the way), changes nothing. It once
/// brought a completed batch allocation back to life beside its replacement (seed 565).
#[test]
fn a_stale_report_does_not_revive_a_finished_allocation() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    place(&mut state, 3, vec![placement("a1", "n1", 0)]);
    let statuses =
        [AllocClientStatus::Running, AllocClientStatus::Complete, AllocClientStatus::Running];
    // The last report even claims to be the newest: a finished allocation stays finished.
    let seen = report_in_turn(&mut state, statuses.into_iter().zip([1, 2, 3]));
    let expected =
        [AllocClientStatus::Running, AllocClientStatus::Complete, AllocClientStatus::Complete];
    assert_eq!(seen, expected);
}

/// A client's report older than the one the servers hold (its sequence number no
/// higher) changes nothing: a running allocation's "pending", sent before it started and
/// held up on the way, once set it back to pending for good (seed 60346).
#[test]
fn a_report_older_than_the_one_held_changes_nothing() {
    let mut state = State::new();
    register(&mut state, 1, job("web", "a"), None).unwrap();
    state.apply(2, NOW, Command::NodeRegister { node: node("n1") }).unwrap();
    place(&mut state, 3, vec![placement("a1", "n1", 0)]);
    let reports = [
        (AllocClientStatus::Running, 2),
        (AllocClientStatus::Pending, 1),
        (AllocClientStatus::Pending, 2),
        (AllocClientStatus::Pending, 3),
    ];
    let seen = report_in_turn(&mut state, reports.into_iter());
    let expected = [
        AllocClientStatus::Running,
        AllocClientStatus::Running,
        AllocClientStatus::Running,
        AllocClientStatus::Pending,
    ];
    assert_eq!(seen, expected, "only a newer report (a restart's pending) counts");
    assert_eq!(state.alloc("a1").unwrap().client_report_seq, 3);
}

/// Applies a client's reports of `a1`, (status, sequence number) each, from index 4 on,
/// and returns the status the servers hold after each.
fn report_in_turn(
    state: &mut State,
    reports: impl Iterator<Item = (AllocClientStatus, u64)>,
) -> Vec<AllocClientStatus> {
    reports
        .zip(4..)
        .map(|((client_status, report_seq), index)| {
            let update = AllocClientUpdate {
                alloc_id: "a1".into(),
                client_status,
                report_seq,
                ..AllocClientUpdate::default()
            };
            let command = Command::AllocClientUpdate { updates: vec![update], evals: vec![] };
            state.apply(index, NOW, command).unwrap();
            state.alloc("a1").unwrap().client_status
        })
        .collect()
}
