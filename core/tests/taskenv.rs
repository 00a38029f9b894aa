//! A task's environment and runtime interpolation: Nomad's variable names for an
//! allocation with ports, limits and meta (snapshot), and `${...}` resolution rules.

use drover_core::model::{
    AllocatedPortMapping, AllocatedTaskResources, Allocation, FreeValue, Job, Node, Task, TaskGroup,
};
use drover_core::taskenv::{
    TaskDirs, TaskEnvInput, cpuset_list, env_name, interpolate, interpolate_config, task_env,
};
use std::collections::BTreeMap;
use std::fmt::Write;

fn node() -> Node {
    let mut node = Node {
        id: "5a1e0c7e-0000-4000-8000-000000000001".into(),
        name: "client-1".into(),
        datacenter: "dc2".into(),
        node_class: "edge".into(),
        ..Node::default()
    };
    node.attributes.insert("kernel.name".into(), "linux".into());
    node.meta.insert("rack".into(), "r7".into());
    node
}

fn fixture() -> (Allocation, Job, Task) {
    let mut task = Task { name: "server".into(), driver: "raw_exec".into(), ..Task::default() };
    task.meta.insert("version".into(), "task-wins".into());
    task.env.insert("LISTEN".into(), "${NOMAD_ADDR_http}".into());
    task.env.insert("WHERE".into(), "${node.datacenter}/${meta.rack}/${attr.kernel.name}".into());
    task.env.insert("UNKNOWN".into(), "${attr.nope} and ${NOMAD_NOPE}".into());
    let mut group =
        TaskGroup { name: "web".into(), tasks: vec![task.clone()], ..TaskGroup::default() };
    group.meta.insert("tier".into(), "front".into());
    let mut job =
        Job { id: "shop".into(), name: "shop".into(), task_groups: vec![group], ..Job::default() };
    job.meta.insert("version".into(), "job-loses".into());
    job.meta.insert("team-name".into(), "payments".into());
    let mut alloc = Allocation {
        id: "8f2b6d4c-1111-4222-8333-444455556666".into(),
        name: "shop.web[2]".into(),
        namespace: "default".into(),
        job_id: "shop".into(),
        task_group: "web".into(),
        ..Allocation::default()
    };
    let mut resources = AllocatedTaskResources::default();
    resources.cpu.cpu_shares = 500;
    resources.cpu.reserved_cores = vec![3, 0, 1, 2, 7];
    resources.memory.memory_mb = 256;
    resources.memory.memory_max_mb = 512;
    alloc.allocated_resources.tasks.insert("server".into(), resources);
    let port = |label: &str, value, to| AllocatedPortMapping {
        label: label.into(),
        value,
        to,
        host_ip: "10.0.0.5".into(),
    };
    alloc.allocated_resources.shared.ports =
        vec![port("http", 23456, 8080), port("db-admin", 5432, 0)];
    (alloc, job, task)
}

/// The one helper: renders the environment of the fixture task as `KEY=value` lines.
fn check(name: &str) {
    let (alloc, job, task) = fixture();
    let dirs = TaskDirs {
        alloc_dir: "/var/lib/drover/alloc/8f2b6d4c/alloc".into(),
        task_dir: "/var/lib/drover/alloc/8f2b6d4c/server/local".into(),
        secrets_dir: "/var/lib/drover/alloc/8f2b6d4c/server/secrets".into(),
    };
    let node = node();
    let input = TaskEnvInput {
        alloc: &alloc,
        job: &job,
        task: &task,
        node: &node,
        region: "eu",
        dirs: &dirs,
    };
    let mut out = String::new();
    for (key, value) in task_env(&input) {
        writeln!(out, "{key}={value}").unwrap();
    }
    insta::assert_snapshot!(name, out);
}

#[test]
fn a_task_sees_nomads_variables() {
    check("task_env");
}

#[test]
fn interpolation_resolves_node_and_env_and_leaves_the_rest() {
    let node = node();
    let env = BTreeMap::from([("NOMAD_PORT_http".to_string(), "8080".to_string())]);
    let cases = [
        ("--port=${NOMAD_PORT_http}", "--port=8080"),
        ("${node.unique.name}@${node.class}", "client-1@edge"),
        ("${attr.kernel.name}-${meta.rack}", "linux-r7"),
        ("${NOMAD_MISSING} ${attr.missing}", "${NOMAD_MISSING} ${attr.missing}"),
        ("unterminated ${NOMAD_PORT_http", "unterminated ${NOMAD_PORT_http"),
        ("$${literal} {} $", "$${literal} {} $"),
        ("", ""),
    ];
    for (text, expected) in cases {
        assert_eq!(interpolate(text, &env, &node), expected, "{text}");
    }
}

#[test]
fn config_strings_are_interpolated_at_every_depth() {
    let node = node();
    let env = BTreeMap::from([("NOMAD_TASK_DIR".to_string(), "/t".to_string())]);
    let config = BTreeMap::from([
        ("command".to_string(), FreeValue::String("${NOMAD_TASK_DIR}/run".into())),
        (
            "args".to_string(),
            FreeValue::List(vec![FreeValue::String("${meta.rack}".into()), FreeValue::Int(3)]),
        ),
        (
            "${NOMAD_TASK_DIR}".to_string(),
            FreeValue::Map(BTreeMap::from([(
                "k".to_string(),
                FreeValue::String("${node.datacenter}".into()),
            )])),
        ),
    ]);
    let out = interpolate_config(&config, &env, &node);
    assert_eq!(out["command"], FreeValue::String("/t/run".into()));
    assert_eq!(
        out["args"],
        FreeValue::List(vec![FreeValue::String("r7".into()), FreeValue::Int(3)])
    );
    let FreeValue::Map(inner) = &out["${NOMAD_TASK_DIR}"] else { panic!("keys stay as written") };
    assert_eq!(inner["k"], FreeValue::String("dc2".into()));
}

#[test]
fn names_and_core_lists_follow_nomads_spelling() {
    assert_eq!(env_name("db-admin.v2"), "db_admin_v2");
    assert_eq!(cpuset_list(&[14, 0, 1, 2, 7, 12, 13]), "0-2,7,12-14");
    assert_eq!(cpuset_list(&[]), "");
}
