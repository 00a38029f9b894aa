//! The JSON fixture corpus: Nomad-API documents parse, survive a round trip, and keep the
//! canonical form pinned by snapshots.
//!
//! Job documents (`job-*.json`) go through the canonicalize step, both wrapped
//! (`{"Job": …}` with nulls, as `nomad job run -output` writes them) and bare. Nodes,
//! allocations, evaluations and deployments are decoded after dropping nulls, which is
//! how Nomad spells "unset" in every object.

use drover_core::model::{
    AllocClientStatus, AllocDesiredStatus, Allocation, Deployment, DeploymentStatus, DrainDeadline,
    DurationNs, EvalStatus, Evaluation, FreeValue, Job, JobType, Node, NodeEligibility, NodeStatus,
    SchedulerType, TaskStateKind, Timestamp, TriggeredBy, computed_class, decode_api_json,
    job_from_api_json, job_from_json_str, job_to_api_json,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json")
}

/// `(file stem, text)` of every fixture whose name starts with `prefix`, sorted by name.
fn fixtures(prefix: &str) -> Vec<(String, String)> {
    let mut found: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter_map(|path| {
            let stem = path.file_stem()?.to_str()?.to_owned();
            stem.starts_with(prefix).then(|| (stem, std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    found.sort();
    found
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_dir().join(format!("{name}.json"))).expect("fixture exists")
}

fn job(name: &str) -> Job {
    job_from_json_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Decodes an API object the way the API layer does: nulls mean "unset".
fn from_api<T: DeserializeOwned>(name: &str, text: &str) -> T {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    decode_api_json(value).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `{"Job": …}` rather than a bare Job object.
fn is_wrapped(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v.get("Job").is_some())
}

#[test]
fn the_corpus_covers_every_job_shape() {
    let jobs: Vec<Job> = fixtures("job-").iter().map(|(name, _)| job(name)).collect();
    assert!(jobs.len() >= 10, "only {} job fixtures", jobs.len());
    for job_type in JobType::ALL {
        assert!(jobs.iter().any(|j| j.job_type == job_type), "no {job_type:?} job");
    }
    assert!(jobs.iter().any(|j| j.periodic.is_some()), "no periodic job");
    assert!(jobs.iter().any(|j| j.parameterized_job.is_some()), "no parameterized job");
    let drivers: Vec<&str> = jobs
        .iter()
        .flat_map(|j| &j.task_groups)
        .flat_map(|g| &g.tasks)
        .map(|t| t.driver.as_str())
        .collect();
    for driver in ["docker", "raw_exec", "exec", "java"] {
        assert!(drivers.contains(&driver), "no {driver} task");
    }
    let wrapped = fixtures("job-").iter().filter(|(_, text)| is_wrapped(text)).count();
    assert!(wrapped >= 3 && wrapped < jobs.len(), "want both wrapped and bare documents");
}

#[test]
fn job_documents_round_trip_through_the_api_form() {
    for (name, text) in fixtures("job-") {
        let parsed = job_from_json_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let api = job_to_api_json(&parsed);
        let from_value = job_from_api_json(api.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_value, parsed, "{name}: re-parsing the API form changed the job");
        let pretty = serde_json::to_string_pretty(&api).unwrap();
        let from_text = job_from_json_str(&pretty).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_text, parsed, "{name}: re-parsing the API text changed the job");
        insta::assert_json_snapshot!(name.as_str(), api);
    }
}

#[test]
fn nomad_defaults_fill_an_export_with_nulls() {
    let job = job("job-example-short");
    assert_eq!((job.region.as_str(), job.namespace.as_str()), ("global", "default"));
    assert_eq!((job.job_type, job.priority), (JobType::Service, 50));
    assert_eq!(job.datacenters, ["*"]);
    let group = &job.task_groups[0];
    assert_eq!(group.count, 1);
    assert_eq!(group.ephemeral_disk.size_mb, 300);
    let restart = group.restart_policy.as_ref().expect("service restart default");
    assert_eq!((restart.attempts, restart.interval), (2, DurationNs::from_mins(30)));
    assert_eq!(group.update.as_ref().expect("service update default").max_parallel, 1);
    assert!(group.migrate.is_some());
    let task = &group.tasks[0];
    assert_eq!(task.kill_timeout, DurationNs::from_secs(5));
    assert_eq!((task.resources.cpu_mhz, task.resources.memory_mb), (500, 256));
    assert_eq!(task.config["ports"], FreeValue::List(vec![FreeValue::String("db".into())]));
    assert_eq!(group.networks[0].dynamic_ports[0].to, 6379);
}

#[test]
fn per_type_defaults_and_merges_apply() {
    let batch = job("job-batch-raw-exec");
    let group = &batch.task_groups[0];
    assert!(group.update.is_none() && group.migrate.is_none(), "batch jobs get no update");
    let restart = group.restart_policy.as_ref().unwrap();
    assert_eq!((restart.attempts, restart.mode.as_str()), (1, "delay"));
    assert_eq!(restart.interval, DurationNs::from_hours(24), "batch default interval kept");
    let reschedule = group.reschedule_policy.as_ref().unwrap();
    assert_eq!((reschedule.attempts, reschedule.delay_function.as_str()), (3, "fibonacci"));

    let system = job("job-system-exec");
    assert!(system.task_groups[0].reschedule_policy.is_none(), "system jobs never reschedule");
    assert_eq!(system.task_groups[0].update.as_ref().unwrap().max_parallel, 2);

    let canary = job("job-canary-update");
    let web = &canary.task_groups[0];
    let update = web.update.as_ref().unwrap();
    assert_eq!((update.max_parallel, update.canary, update.auto_promote), (3, 2, true));
    assert_eq!(web.services[0].name, "frontend-web", "group services default to job-group");
    assert_eq!(web.services[0].checks[0].on_update, "ignore_warnings");

    let shop = job("job-multi-group-lifecycle");
    let api_task = &shop.task_groups[1].tasks[0];
    assert_eq!((api_task.resources.cores, api_task.resources.cpu_mhz), (2, 0));
    assert_eq!(
        api_task.config["args"],
        FreeValue::List(vec![
            FreeValue::String("-listen".into()),
            FreeValue::String(":${NOMAD_PORT_http}".into()),
            FreeValue::String("-ratio".into()),
            FreeValue::Float(0.75),
            FreeValue::String("-workers".into()),
            FreeValue::Int(8),
        ])
    );
    assert_eq!(shop.task_groups[0].tasks[0].lifecycle.as_ref().unwrap().hook, "prestart");
}

/// Decodes every fixture of a kind, checks JSON and text round trips, and snapshots it.
fn round_trip_kind<T: DeserializeOwned + Serialize + PartialEq + Debug>(prefix: &str) -> Vec<T> {
    let mut decoded = Vec::new();
    for (name, text) in fixtures(prefix) {
        let object: T = from_api(&name, &text);
        let value = serde_json::to_value(&object).unwrap();
        let again: T = from_api(&name, &value.to_string());
        assert_eq!(again, object, "{name}: JSON round trip changed the object");
        insta::assert_json_snapshot!(name.as_str(), value);
        decoded.push(object);
    }
    assert!(!decoded.is_empty(), "no {prefix} fixtures");
    decoded
}

#[test]
fn nodes_round_trip() {
    let nodes: Vec<Node> = round_trip_kind("node-");
    let dev = &nodes[0];
    assert_eq!(
        (dev.status, dev.scheduling_eligibility),
        (NodeStatus::Ready, NodeEligibility::Eligible)
    );
    assert!(dev.is_schedulable() && dev.driver_healthy("docker") && !dev.driver_healthy("java"));
    let updated = dev.drivers["raw_exec"].update_time;
    assert_eq!(updated, Timestamp::parse_rfc3339("2024-05-31T16:08:20Z").unwrap());
    assert!(computed_class(dev).starts_with("v1:"));
    let draining = &nodes[1];
    let drain = draining.drain_strategy.as_ref().unwrap();
    assert!(drain.ignore_system_jobs && !draining.is_schedulable());
    assert_eq!(
        drain.deadline_time(),
        DrainDeadline::At(Timestamp::parse_rfc3339("2024-06-01T11:00:00Z").unwrap())
    );
    assert_eq!(draining.reserved_resources.networks.ports().unwrap().len(), 102);
    assert_eq!(draining.schedulable_capacity().memory_mb, 31744);
}

#[test]
fn allocations_round_trip() {
    let allocs: Vec<Allocation> = round_trip_kind("alloc-");
    let failed = &allocs[0];
    assert_eq!(failed.index(), Some(1));
    assert_eq!(
        (failed.desired_status, failed.client_status),
        (AllocDesiredStatus::Stop, AllocClientStatus::Failed)
    );
    assert!(failed.is_terminal() && failed.desired_transition.reschedule == Some(true));
    let render = &failed.task_states["render"];
    assert!(render.failed && render.state == TaskStateKind::Dead && render.events.len() == 4);
    assert_eq!(
        failed.reschedule_tracker.as_ref().unwrap().events[0].delay,
        DurationNs::from_secs(5)
    );
    let running = &allocs[1];
    assert_eq!(running.index(), Some(0));
    assert!(!running.is_terminal() && running.deployment_healthy() == Some(true));
    assert_eq!(running.group().unwrap().tasks[0].name, "redis");
    assert_eq!(running.allocated_resources.shared.ports[0].value, 24617);
    assert_eq!(running.allocated_resources.comparable().cpu_shares, 500);
    assert_eq!(running.task_states["redis"].finished_at, Timestamp::UNSET);
    assert_eq!(running.metrics.score_meta_data[0].scores["binpack"], 0.1372);
}

#[test]
fn evaluations_round_trip() {
    let evals: Vec<Evaluation> = round_trip_kind("eval-");
    let blocked = &evals[0];
    assert!(blocked.should_block() && !blocked.is_terminal());
    assert_eq!(blocked.triggered_by, TriggeredBy::QueuedAllocs);
    let metric = &blocked.failed_tg_allocs["api"];
    assert_eq!((metric.nodes_filtered, metric.dimension_exhausted["memory"]), (9, 2));
    assert_eq!(metric.resources_exhausted["ledger"].memory_mb, 1536);
    let complete = &evals[1];
    assert!(complete.is_terminal() && complete.status == EvalStatus::Complete);
    assert_eq!(complete.scheduler, SchedulerType::Service);
    let delayed = &evals[2];
    assert_eq!(delayed.triggered_by, TriggeredBy::AllocFailure);
    assert_eq!(delayed.wait_until.to_rfc3339(), "2024-06-02T03:01:07.5Z");
    assert_eq!(delayed.related_evals[0].status, EvalStatus::Complete);
}

#[test]
fn deployments_round_trip() {
    let deployments: Vec<Deployment> = round_trip_kind("deployment-");
    let canary = &deployments[0];
    assert_eq!(canary.status, DeploymentStatus::Running);
    assert!(canary.requires_promotion() && !canary.is_complete() && canary.has_auto_revert());
    assert_eq!(canary.task_groups["web"].placed_canaries.len(), 2);
}

#[test]
fn unknown_enum_values_are_errors_that_name_the_field() {
    let text = fixture("eval-complete").replace("job-register", "job-registered");
    let value: Value = serde_json::from_str(&text).unwrap();
    let error = decode_api_json::<Evaluation>(value).unwrap_err();
    assert_eq!(error.path, "TriggeredBy");
    assert!(error.message.contains("job-registered"), "{error}");
}
