//! proptest generators for the domain model, shared by the property tests.
//!
//! The generators cover every field, with values chosen to stress the encodings rather
//! than to be valid jobs: empty and Unicode strings, negative numbers, nested free-form
//! config. Floats are dyadic fractions (exact in decimal text) so that JSON text round
//! trips compare equal; free-form values nest a few levels deep.

#![allow(dead_code)] // each test crate uses a different subset

use drover_core::model::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::collections::BTreeMap;

/// Generating a whole allocation (with its job) needs about 4 MiB of stack in a debug
/// build, more than the 2 MiB a test thread gets, so model properties run on their own
/// thread. (Decoding the same values needs less than 256 KiB.)
pub const PROPERTY_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Runs `test` against `cases` values of `strategy()` on a thread with a large stack,
/// shrinking failures as `proptest!` does, and fails the calling test with the minimal
/// failing input.
pub fn check<S, F>(cases: u32, strategy: fn() -> S, test: F)
where
    S: Strategy + 'static,
    F: Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
{
    let name = std::thread::current().name().unwrap_or("property").to_owned();
    let outcome = std::thread::Builder::new()
        .name(name)
        .stack_size(PROPERTY_STACK_BYTES)
        .spawn(move || {
            let config =
                ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
            TestRunner::new(config).run(&strategy(), test).map_err(|error| error.to_string())
        })
        .expect("spawn a property-test thread")
        .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => panic!("{failure}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9_.-]{0,10}",
        1 => "\\PC{0,12}",
        1 => Just("${attr.kernel.name}".to_owned()),
    ]
}

pub fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..3)
}

pub fn meta() -> impl Strategy<Value = Meta> {
    btree_map("[a-z_.]{1,8}", text(), 0..3)
}

pub fn duration() -> impl Strategy<Value = DurationNs> {
    prop_oneof![Just(0i64), 0i64..3_600_000_000_000, any::<i64>()].prop_map(DurationNs)
}

/// Exactly representable in decimal text, so JSON text keeps it bit for bit.
pub fn exact_float() -> impl Strategy<Value = f64> {
    (any::<i32>(), 0u32..8).prop_map(|(n, shift)| f64::from(n) / f64::from(1u32 << shift))
}

pub fn free_value() -> impl Strategy<Value = FreeValue> {
    let leaf = prop_oneof![
        Just(FreeValue::Null),
        any::<bool>().prop_map(FreeValue::Bool),
        any::<i64>().prop_map(FreeValue::Int),
        exact_float().prop_map(FreeValue::Float),
        text().prop_map(FreeValue::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(FreeValue::List),
            btree_map("[a-z_]{1,6}", inner, 0..4).prop_map(FreeValue::Map),
        ]
    })
}

pub fn config() -> impl Strategy<Value = BTreeMap<String, FreeValue>> {
    btree_map("[a-z_]{1,8}", free_value(), 0..4)
}

pub fn constraint() -> impl Strategy<Value = Constraint> {
    (text(), text(), prop::sample::select(CONSTRAINT_OPERATORS))
        .prop_map(|(l_target, r_target, op)| Constraint { l_target, r_target, operand: op.into() })
}

pub fn affinity() -> impl Strategy<Value = Affinity> {
    (constraint(), any::<i8>()).prop_map(|(c, weight)| Affinity {
        l_target: c.l_target,
        r_target: c.r_target,
        operand: c.operand,
        weight,
    })
}

pub fn spread() -> impl Strategy<Value = Spread> {
    let target = (text(), any::<u8>()).prop_map(|(value, percent)| SpreadTarget { value, percent });
    (text(), any::<i8>(), vec(target, 0..3)).prop_map(|(attribute, weight, spread_target)| Spread {
        attribute,
        weight,
        spread_target,
    })
}

pub fn update() -> impl Strategy<Value = UpdateStrategy> {
    (
        (duration(), any::<i32>(), text(), duration(), duration()),
        (duration(), any::<i32>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(|((stagger, max_parallel, health_check, min_healthy, healthy), rest)| {
            let (progress_deadline, canary, auto_revert, auto_promote) = rest;
            UpdateStrategy {
                stagger,
                max_parallel,
                health_check,
                min_healthy_time: min_healthy,
                healthy_deadline: healthy,
                progress_deadline,
                canary,
                auto_revert,
                auto_promote,
            }
        })
}

pub fn migrate() -> impl Strategy<Value = MigrateStrategy> {
    (any::<i32>(), text(), duration(), duration()).prop_map(
        |(max_parallel, check, min, deadline)| MigrateStrategy {
            max_parallel,
            health_check: check,
            min_healthy_time: min,
            healthy_deadline: deadline,
        },
    )
}

pub fn restart() -> impl Strategy<Value = RestartPolicy> {
    (any::<i32>(), duration(), duration(), text(), any::<bool>()).prop_map(
        |(attempts, interval, delay, mode, render_templates)| RestartPolicy {
            attempts,
            interval,
            delay,
            mode,
            render_templates,
        },
    )
}

pub fn reschedule() -> impl Strategy<Value = ReschedulePolicy> {
    (any::<i32>(), duration(), duration(), text(), duration(), any::<bool>()).prop_map(
        |(attempts, interval, delay, delay_function, max_delay, unlimited)| ReschedulePolicy {
            attempts,
            interval,
            delay,
            delay_function,
            max_delay,
            unlimited,
        },
    )
}

pub fn periodic() -> impl Strategy<Value = PeriodicConfig> {
    (any::<bool>(), text(), texts(), text(), any::<bool>(), text()).prop_map(
        |(enabled, spec, specs, spec_type, prohibit_overlap, time_zone)| PeriodicConfig {
            enabled,
            spec,
            specs,
            spec_type,
            prohibit_overlap,
            time_zone,
        },
    )
}

pub fn parameterized() -> impl Strategy<Value = ParameterizedJobConfig> {
    (text(), texts(), texts()).prop_map(|(payload, meta_required, meta_optional)| {
        ParameterizedJobConfig { payload, meta_required, meta_optional }
    })
}

pub fn port() -> impl Strategy<Value = Port> {
    (text(), any::<i32>(), any::<i32>(), text()).prop_map(|(label, value, to, host_network)| Port {
        label,
        value,
        to,
        host_network,
    })
}

pub fn network() -> impl Strategy<Value = NetworkResource> {
    let dns = (texts(), texts(), texts()).prop_map(|(servers, searches, options)| DnsConfig {
        servers,
        searches,
        options,
    });
    (
        (text(), text(), text(), text(), option::of(dns)),
        (vec(port(), 0..3), vec(port(), 0..3), text(), any::<i32>()),
    )
        .prop_map(
            |((mode, device, cidr, ip, dns), (reserved_ports, dynamic_ports, hostname, mbits))| {
                NetworkResource {
                    mode,
                    device,
                    cidr,
                    ip,
                    dns,
                    reserved_ports,
                    dynamic_ports,
                    hostname,
                    mbits,
                }
            },
        )
}

pub fn resources() -> impl Strategy<Value = Resources> {
    (any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>(), vec(network(), 0..2))
        .prop_map(|(cpu_mhz, cores, memory_mb, memory_max_mb, disk_mb, networks)| Resources {
            cpu_mhz,
            cores,
            memory_mb,
            memory_max_mb,
            disk_mb,
            networks,
        })
}

pub fn check_restart() -> impl Strategy<Value = CheckRestart> {
    (any::<i32>(), duration(), any::<bool>())
        .prop_map(|(limit, grace, ignore_warnings)| CheckRestart { limit, grace, ignore_warnings })
}

pub fn service_check() -> impl Strategy<Value = ServiceCheck> {
    (
        (text(), text(), text(), texts(), text(), text()),
        (text(), text(), duration(), duration(), text(), text()),
        (btree_map("[A-Za-z-]{1,8}", texts(), 0..2), option::of(check_restart()), text(), text()),
    )
        .prop_map(|(first, second, third)| {
            let (name, check_type, command, args, path, protocol) = first;
            let (port_label, address_mode, interval, timeout, initial_status, method) = second;
            let (header, check_restart, task_name, on_update) = third;
            ServiceCheck {
                name,
                check_type,
                command,
                args,
                path,
                protocol,
                port_label,
                address_mode,
                interval,
                timeout,
                initial_status,
                method,
                header,
                check_restart,
                task_name,
                on_update,
            }
        })
}

pub fn service() -> impl Strategy<Value = Service> {
    (
        (text(), texts(), texts(), text(), text(), text()),
        (vec(service_check(), 0..2), option::of(check_restart()), meta(), text(), text(), text()),
    )
        .prop_map(|(first, second)| {
            let (name, tags, canary_tags, port_label, address_mode, address) = first;
            let (checks, check_restart, meta, task_name, on_update, provider) = second;
            Service {
                name,
                tags,
                canary_tags,
                port_label,
                address_mode,
                address,
                checks,
                check_restart,
                meta,
                task_name,
                on_update,
                provider,
            }
        })
}

pub fn template() -> impl Strategy<Value = Template> {
    (
        (text(), text(), text(), text(), text(), duration()),
        (text(), text(), text(), any::<bool>(), any::<bool>()),
        option::of(change_script()),
    )
        .prop_map(|(first, second, change_script)| {
            let (source_path, dest_path, embedded_tmpl, change_mode, change_signal, splay) = first;
            let (perms, left_delim, right_delim, envvars, err_missing_key) = second;
            Template {
                source_path,
                dest_path,
                embedded_tmpl,
                change_mode,
                change_signal,
                change_script,
                splay,
                perms,
                left_delim,
                right_delim,
                envvars,
                err_missing_key,
            }
        })
}

pub fn change_script() -> impl Strategy<Value = ChangeScript> {
    (text(), vec(text(), 0..2), duration(), any::<bool>()).prop_map(
        |(command, args, timeout, fail_on_error)| ChangeScript {
            command,
            args,
            timeout,
            fail_on_error,
        },
    )
}

pub fn vault() -> impl Strategy<Value = Vault> {
    (
        (vec(text(), 0..2), text(), text(), text()),
        (any::<bool>(), any::<bool>(), text(), text(), any::<bool>()),
    )
        .prop_map(|(first, second)| {
            let (policies, role, namespace, cluster) = first;
            let (env, disable_file, change_mode, change_signal, allow_token_expiration) = second;
            Vault {
                policies,
                role,
                namespace,
                cluster,
                env,
                disable_file,
                change_mode,
                change_signal,
                allow_token_expiration,
            }
        })
}

pub fn identity() -> impl Strategy<Value = WorkloadIdentity> {
    (
        (text(), vec(text(), 0..2), any::<bool>(), any::<bool>()),
        (text(), duration(), text(), text()),
    )
        .prop_map(|(first, second)| {
            let (name, audience, env, file) = first;
            let (filepath, ttl, change_mode, change_signal) = second;
            WorkloadIdentity {
                name,
                audience,
                env,
                file,
                filepath,
                ttl,
                change_mode,
                change_signal,
            }
        })
}

pub fn multiregion() -> impl Strategy<Value = Multiregion> {
    let strategy = (any::<i32>(), text())
        .prop_map(|(max_parallel, on_failure)| MultiregionStrategy { max_parallel, on_failure });
    let region = (text(), any::<i32>(), vec(text(), 0..2), text(), meta()).prop_map(
        |(name, count, datacenters, node_pool, meta)| MultiregionRegion {
            name,
            count,
            datacenters,
            node_pool,
            meta,
        },
    );
    (option::of(strategy), vec(region, 0..2))
        .prop_map(|(strategy, regions)| Multiregion { strategy, regions })
}

pub fn artifact() -> impl Strategy<Value = TaskArtifact> {
    (text(), meta(), meta(), text(), text(), any::<bool>()).prop_map(
        |(getter_source, getter_options, getter_headers, getter_mode, relative_dest, chown)| {
            TaskArtifact {
                getter_source,
                getter_options,
                getter_headers,
                getter_mode,
                relative_dest,
                chown,
            }
        },
    )
}

pub fn task() -> impl Strategy<Value = Task> {
    let lifecycle =
        (text(), any::<bool>()).prop_map(|(hook, sidecar)| TaskLifecycle { hook, sidecar });
    let log_config =
        (any::<i32>(), any::<i32>(), any::<bool>()).prop_map(|(max_files, size, disabled)| {
            LogConfig { max_files, max_file_size_mb: size, disabled }
        });
    let mount = (text(), text(), any::<bool>()).prop_map(|(volume, destination, read_only)| {
        VolumeMount { volume, destination, read_only }
    });
    (
        (text(), text(), text(), option::of(lifecycle), config(), vec(constraint(), 0..2)),
        (vec(affinity(), 0..2), meta(), vec(service(), 0..2), resources(), option::of(restart())),
        (meta(), duration(), log_config, vec(artifact(), 0..2), vec(template(), 0..2)),
        (vec(mount, 0..2), any::<bool>(), duration(), text()),
        (option::of(vault()), option::of(identity()), vec(identity(), 0..2)),
    )
        .prop_map(|(first, second, third, fourth, fifth)| {
            let (name, driver, user, lifecycle, config, constraints) = first;
            let (affinities, env, services, resources, restart_policy) = second;
            let (meta, kill_timeout, log_config, artifacts, templates) = third;
            let (volume_mounts, leader, shutdown_delay, kill_signal) = fourth;
            let (vault, identity, identities) = fifth;
            Task {
                name,
                driver,
                user,
                lifecycle,
                config,
                constraints,
                affinities,
                env,
                services,
                resources,
                restart_policy,
                meta,
                kill_timeout,
                log_config,
                artifacts,
                templates,
                volume_mounts,
                vault,
                identity,
                identities,
                leader,
                shutdown_delay,
                kill_signal,
            }
        })
}

pub fn task_group() -> impl Strategy<Value = TaskGroup> {
    let volume = (text(), text(), text(), any::<bool>()).prop_map(
        |(name, volume_type, source, read_only)| VolumeRequest {
            name,
            volume_type,
            source,
            read_only,
        },
    );
    let disk = (any::<bool>(), any::<bool>(), any::<i32>())
        .prop_map(|(sticky, migrate, size_mb)| EphemeralDisk { sticky, migrate, size_mb });
    let scaling = (option::of(any::<i64>()), any::<i64>(), any::<bool>(), text(), config())
        .prop_map(|(min, max, enabled, policy_type, policy)| ScalingPolicy {
            min,
            max,
            enabled,
            policy_type,
            policy,
        });
    (
        (text(), any::<i32>(), vec(constraint(), 0..2), vec(affinity(), 0..2), vec(spread(), 0..2)),
        (vec(task(), 0..3), btree_map("[a-z]{1,6}", volume, 0..2), option::of(restart())),
        (option::of(reschedule()), disk, option::of(update()), option::of(migrate())),
        (vec(network(), 0..2), meta(), vec(service(), 0..2), option::of(duration())),
        (option::of(duration()), option::of(scaling)),
    )
        .prop_map(|(first, second, third, fourth, fifth)| {
            let (name, count, constraints, affinities, spreads) = first;
            let (tasks, volumes, restart_policy) = second;
            let (reschedule_policy, ephemeral_disk, update, migrate) = third;
            let (networks, meta, services, shutdown_delay) = fourth;
            let (max_client_disconnect, scaling) = fifth;
            TaskGroup {
                name,
                count,
                constraints,
                affinities,
                spreads,
                tasks,
                volumes,
                restart_policy,
                reschedule_policy,
                ephemeral_disk,
                update,
                migrate,
                networks,
                meta,
                services,
                shutdown_delay,
                max_client_disconnect,
                scaling,
            }
        })
}

pub fn job_type() -> impl Strategy<Value = JobType> {
    prop::sample::select(JobType::ALL.to_vec())
}

pub fn job() -> impl Strategy<Value = Job> {
    (
        (text(), text(), text(), text(), job_type(), any::<i32>(), any::<bool>(), texts(), text()),
        (
            vec(constraint(), 0..2),
            vec(affinity(), 0..2),
            vec(spread(), 0..2),
            vec(task_group(), 0..3),
        ),
        (option::of(update()), option::of(periodic()), option::of(parameterized())),
        (
            option::of(reschedule()),
            option::of(migrate()),
            meta(),
            any::<bool>(),
            text(),
            any::<bool>(),
        ),
        (text(), text(), any::<bool>(), any::<u64>(), any::<i64>()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        option::of(multiregion()),
    )
        .prop_map(|(first, second, third, fourth, fifth, indexes, multiregion)| {
            let (region, namespace, id, name, job_type, priority, all_at_once, datacenters, pool) =
                first;
            let (constraints, affinities, spreads, task_groups) = second;
            let (update, periodic, parameterized_job) = third;
            let (reschedule, migrate, meta, stop, parent_id, dispatched) = fourth;
            let (status, status_description, stable, version, submit_time) = fifth;
            let (create_index, modify_index, job_modify_index) = indexes;
            Job {
                region,
                namespace,
                id,
                name,
                job_type,
                priority,
                all_at_once,
                datacenters,
                node_pool: pool,
                constraints,
                affinities,
                spreads,
                task_groups,
                update,
                periodic,
                parameterized_job,
                reschedule,
                migrate,
                multiregion,
                meta,
                stop,
                parent_id,
                dispatched,
                status,
                status_description,
                stable,
                version,
                submit_time,
                create_index,
                modify_index,
                job_modify_index,
            }
        })
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![Just(Timestamp::UNSET), any::<i64>().prop_map(Timestamp)]
}

/// A `VecMap` of up to `len` entries (drawn as a `BTreeMap`, so keys are distinct).
pub fn vec_map<V: std::fmt::Debug>(
    value: impl Strategy<Value = V>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = VecMap<String, V>> {
    btree_map(text(), value, len).prop_map(|map| map.into_iter().collect())
}

pub fn counts() -> impl Strategy<Value = VecMap<String, u64>> {
    vec_map(any::<u64>(), 0..3)
}

pub fn metric() -> impl Strategy<Value = AllocationMetric> {
    // Dyadic floats: serde_json's default float parser may be one ULP off on arbitrary ones.
    let score = (text(), vec_map(exact_float(), 0..3), exact_float())
        .prop_map(|(node_id, scores, norm_score)| NodeScoreMeta { node_id, scores, norm_score });
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), counts(), counts(), counts()),
        (any::<u64>(), counts(), counts(), texts(), vec_map(resources(), 0..2)),
        (vec(score, 0..3), duration(), any::<u64>()),
    )
        .prop_map(|(first, second, third)| {
            let (nodes_evaluated, nodes_filtered, nodes_in_pool, available, class, constraint) =
                first;
            let (nodes_exhausted, class_exhausted, dimension_exhausted, quota, resources) = second;
            let (score_meta_data, allocation_time, coalesced_failures) = third;
            AllocationMetric {
                nodes_evaluated,
                nodes_filtered,
                nodes_in_pool,
                nodes_available: available,
                class_filtered: class,
                constraint_filtered: constraint,
                nodes_exhausted,
                class_exhausted,
                dimension_exhausted,
                quota_exhausted: quota,
                resources_exhausted: resources,
                score_meta_data,
                allocation_time,
                coalesced_failures,
            }
        })
}

pub fn task_state() -> impl Strategy<Value = TaskState> {
    let event = (
        (text(), any::<i64>(), text(), meta(), text(), any::<bool>(), text(), text()),
        (text(), any::<i32>(), any::<i32>(), text(), duration(), text(), any::<i64>(), text()),
        (text(), text()),
    )
        .prop_map(|(first, second, (task_signal_reason, task_signal))| {
            let (event_type, time, display_message, details, message, fails_task, restart, setup) =
                first;
            let (
                driver_error,
                exit_code,
                signal,
                kill_reason,
                kill_timeout,
                kill_error,
                delay,
                sib,
            ) = second;
            TaskEvent {
                event_type,
                time,
                display_message,
                details,
                message,
                fails_task,
                restart_reason: restart,
                setup_error: setup,
                driver_error,
                exit_code,
                signal,
                kill_reason,
                kill_timeout,
                kill_error,
                start_delay: delay,
                failed_sibling: sib,
                task_signal_reason,
                task_signal,
            }
        });
    let state = prop::sample::select(vec![
        TaskStateKind::Pending,
        TaskStateKind::Running,
        TaskStateKind::Dead,
    ]);
    (state, any::<bool>(), any::<u64>(), timestamp(), timestamp(), timestamp(), vec(event, 0..3))
        .prop_map(|(state, failed, restarts, last_restart, started_at, finished_at, events)| {
            TaskState { state, failed, restarts, last_restart, started_at, finished_at, events }
        })
}

pub fn allocated_resources() -> impl Strategy<Value = AllocatedResources> {
    let task =
        (any::<i64>(), vec(any::<u32>(), 0..2), any::<i64>(), any::<i64>(), vec(network(), 0..2))
            .prop_map(|(cpu_shares, reserved_cores, memory_mb, memory_max_mb, networks)| {
                AllocatedTaskResources {
                    cpu: AllocatedCpuResources { cpu_shares, reserved_cores },
                    memory: AllocatedMemoryResources { memory_mb, memory_max_mb },
                    networks,
                }
            });
    let mapping = (text(), any::<i32>(), any::<i32>(), text())
        .prop_map(|(label, value, to, host_ip)| AllocatedPortMapping { label, value, to, host_ip });
    (vec_map(task, 0..3), any::<i64>(), vec(network(), 0..2), vec(mapping, 0..3)).prop_map(
        |(tasks, disk_mb, networks, ports)| AllocatedResources {
            tasks,
            shared: AllocatedSharedResources { disk_mb, networks, ports },
        },
    )
}

pub fn desired_status() -> impl Strategy<Value = AllocDesiredStatus> {
    prop::sample::select(vec![
        AllocDesiredStatus::Run,
        AllocDesiredStatus::Stop,
        AllocDesiredStatus::Evict,
    ])
}

pub fn client_status() -> impl Strategy<Value = AllocClientStatus> {
    prop::sample::select(vec![
        AllocClientStatus::Pending,
        AllocClientStatus::Running,
        AllocClientStatus::Complete,
        AllocClientStatus::Failed,
        AllocClientStatus::Lost,
        AllocClientStatus::Unknown,
    ])
}

pub fn allocation() -> impl Strategy<Value = Allocation> {
    let flag = || option::of(any::<bool>());
    let transition =
        (flag(), flag(), flag(), flag()).prop_map(|(migrate, reschedule, force, no_delay)| {
            DesiredTransition {
                migrate,
                reschedule,
                force_reschedule: force,
                no_shutdown_delay: no_delay,
            }
        });
    let deployment_status = (flag(), timestamp(), any::<bool>(), any::<u64>()).prop_map(
        |(healthy, timestamp, canary, modify_index)| AllocDeploymentStatus {
            healthy,
            timestamp,
            canary,
            modify_index,
        },
    );
    let reschedule_event = (any::<i64>(), text(), text(), duration()).prop_map(
        |(reschedule_time, prev_alloc_id, prev_node_id, delay)| RescheduleEvent {
            reschedule_time,
            prev_alloc_id,
            prev_node_id,
            delay,
        },
    );
    let tracker = vec(reschedule_event, 0..3).prop_map(|events| RescheduleTracker { events });
    (
        (text(), text(), text(), text(), text(), text(), text()),
        (option::weighted(0.3, job()), any::<u64>(), text(), allocated_resources(), metric()),
        (desired_status(), text(), transition, client_status(), text()),
        (
            btree_map(text(), task_state(), 0..3),
            text(),
            option::of(deployment_status),
            option::of(tracker),
        ),
        (text(), text(), text(), texts(), text()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(|(ids, job_part, desired, client, links, indexes)| {
            let (id, namespace, eval_id, name, node_id, node_name, job_id) = ids;
            let (job, job_version, task_group, allocated_resources, metrics) = job_part;
            let (
                desired_status,
                desired_description,
                desired_transition,
                client_status,
                client_description,
            ) = desired;
            let (task_states, deployment_id, deployment_status, reschedule_tracker) = client;
            let (previous_allocation, next_allocation, followup_eval_id, preempted, preempted_by) =
                links;
            let (create_index, modify_index, alloc_modify_index, create_time, modify_time) =
                indexes;
            Allocation {
                id,
                namespace,
                eval_id,
                name,
                node_id,
                node_name,
                job_id,
                job: job.map(Box::new),
                job_version,
                task_group,
                allocated_resources,
                metrics,
                desired_status,
                desired_description,
                desired_transition,
                client_status,
                client_description,
                // Derived from the indexes so the tuple strategies stay within their arity.
                client_report_seq: modify_index ^ create_index,
                task_states,
                deployment_id,
                deployment_status,
                reschedule_tracker,
                previous_allocation,
                next_allocation,
                followup_eval_id,
                preempted_allocations: preempted,
                preempted_by_allocation: preempted_by,
                create_index,
                modify_index,
                alloc_modify_index,
                create_time,
                modify_time,
            }
        })
}

pub fn eval_status() -> impl Strategy<Value = EvalStatus> {
    prop::sample::select(vec![
        EvalStatus::Blocked,
        EvalStatus::Pending,
        EvalStatus::Complete,
        EvalStatus::Failed,
        EvalStatus::Canceled,
    ])
}

pub fn scheduler_type() -> impl Strategy<Value = SchedulerType> {
    prop::sample::select(vec![
        SchedulerType::Service,
        SchedulerType::Batch,
        SchedulerType::System,
        SchedulerType::Sysbatch,
        SchedulerType::Core,
    ])
}

pub fn evaluation() -> impl Strategy<Value = Evaluation> {
    let stub = (
        text(),
        scheduler_type(),
        prop::sample::select(TriggeredBy::ALL.to_vec()),
        eval_status(),
        timestamp(),
    )
        .prop_map(|(id, scheduler, triggered_by, status, wait_until)| EvaluationStub {
            id,
            scheduler,
            triggered_by,
            status,
            wait_until,
            ..EvaluationStub::default()
        });
    (
        (text(), text(), any::<i32>(), scheduler_type(), prop::sample::select(TriggeredBy::ALL.to_vec())),
        (text(), any::<u64>(), text(), any::<u64>(), text(), eval_status(), text()),
        (duration(), timestamp(), text(), text(), text(), vec(stub, 0..2)),
        (btree_map(text(), metric(), 0..2), btree_map(text(), any::<bool>(), 0..3), text(), any::<bool>()),
        (any::<bool>(), btree_map(text(), any::<i64>(), 0..3), text(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(|(head, job_part, chain, blocked, plan, indexes)| {
            let (id, namespace, priority, scheduler, triggered_by) = head;
            let (job_id, job_modify_index, node_id, node_modify_index, deployment_id, status, desc) =
                job_part;
            let (wait, wait_until, next_eval, previous_eval, blocked_eval, related_evals) = chain;
            let (failed_tg_allocs, class_eligibility, quota_limit_reached, escaped) = blocked;
            let (annotate_plan, queued_allocations, leader_acl, snapshot_index) = plan;
            let (create_index, modify_index, create_time, modify_time) = indexes;
            Evaluation {
                id,
                namespace,
                priority,
                scheduler,
                triggered_by,
                job_id,
                job_modify_index,
                node_id,
                node_modify_index,
                deployment_id,
                status,
                status_description: desc,
                wait,
                wait_until,
                next_eval,
                previous_eval,
                blocked_eval,
                related_evals,
                failed_tg_allocs,
                class_eligibility,
                quota_limit_reached,
                escaped_computed_class: escaped,
                annotate_plan,
                queued_allocations,
                leader_acl,
                snapshot_index,
                create_index,
                modify_index,
                create_time,
                modify_time,
            }
        })
}

pub fn node() -> impl Strategy<Value = Node> {
    let driver = (meta(), any::<bool>(), any::<bool>(), text(), timestamp()).prop_map(
        |(attributes, detected, healthy, health_description, update_time)| DriverInfo {
            attributes,
            detected,
            healthy,
            health_description,
            update_time,
        },
    );
    let drain = (duration(), any::<bool>(), timestamp(), timestamp()).prop_map(
        |(deadline, ignore_system_jobs, force_deadline, started_at)| DrainStrategy {
            deadline,
            ignore_system_jobs,
            force_deadline,
            started_at,
        },
    );
    let status = prop::sample::select(vec![
        NodeStatus::Initializing,
        NodeStatus::Ready,
        NodeStatus::Down,
        NodeStatus::Disconnected,
    ]);
    let eligibility =
        prop::sample::select(vec![NodeEligibility::Eligible, NodeEligibility::Ineligible]);
    (
        (text(), text(), text(), text(), meta(), meta(), text(), text()),
        (any::<i64>(), any::<i64>(), any::<i64>(), vec(network(), 0..2), text()),
        (option::of(drain), eligibility, status, btree_map(text(), driver, 0..3), any::<u64>()),
    )
        .prop_map(|(first, second, third)| {
            let (id, datacenter, name, http_addr, attributes, meta, node_class, node_pool) = first;
            let (cpu, memory, disk, networks, reserved_ports) = second;
            let (drain_strategy, scheduling_eligibility, status, drivers, modify_index) = third;
            let mut node = Node {
                id,
                datacenter,
                name,
                http_addr,
                attributes,
                meta,
                node_class,
                node_pool,
                drain_strategy,
                scheduling_eligibility,
                status,
                drivers,
                modify_index,
                ..Node::default()
            };
            node.node_resources.cpu.cpu_shares = cpu;
            node.node_resources.memory.memory_mb = memory;
            node.node_resources.disk.disk_mb = disk;
            node.node_resources.networks = networks;
            node.reserved_resources.networks.reserved_host_ports = reserved_ports;
            node.compute_class();
            node
        })
}

pub fn plan() -> impl Strategy<Value = Plan> {
    let by_node = || btree_map(text(), vec(allocation(), 0..2), 0..2);
    let updates =
        (text(), text()).prop_map(|(deployment_id, status_description)| DeploymentStatusUpdate {
            deployment_id,
            status: DeploymentStatus::Failed,
            status_description,
        });
    (
        (text(), text(), any::<i32>(), any::<bool>(), option::weighted(0.5, job())),
        (by_node(), by_node(), by_node(), vec(updates, 0..2), any::<u64>()),
    )
        .prop_map(|(head, changes)| {
            let (eval_id, eval_token, priority, all_at_once, job) = head;
            let (
                node_update,
                node_allocation,
                node_preemptions,
                deployment_updates,
                snapshot_index,
            ) = changes;
            Plan {
                eval_id,
                eval_token,
                priority,
                all_at_once,
                job,
                node_update,
                node_allocation,
                node_preemptions,
                deployment_updates,
                snapshot_index,
                ..Plan::default()
            }
        })
}
