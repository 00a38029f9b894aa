//! Property tests for the model's JSON form.
//!
//! - Any job survives serde's JSON round trip unchanged (text and `Value`).
//! - Canonicalization is a fixed point: a canonical job written as API JSON and read back
//!   is the same job, so `drover job run -output` piped into `drover job run -json` is
//!   lossless.
//! - Allocations, evaluations and nodes, timestamps included, survive their JSON round trip.

mod model_strategies;

use drover_core::model::{
    Allocation, Evaluation, Job, JobType, Node, Timestamp, computed_class, job_from_api_json,
    job_from_json_str, job_to_api_json,
};
use model_strategies::{allocation, check, evaluation, job, node};
use proptest::prelude::*;

#[test]
fn any_job_survives_serde_json() {
    check(64, job, |job| {
        let text = serde_json::to_string(&job).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Job>(&text).unwrap(), &job);
        let value = serde_json::to_value(&job).unwrap();
        prop_assert_eq!(&serde_json::from_value::<Job>(value).unwrap(), &job);
        Ok(())
    });
}

#[test]
fn canonical_jobs_are_a_fixed_point() {
    check(64, job, |job| {
        let canonical = job_from_api_json(serde_json::to_value(&job).unwrap())
            .expect("a serialised job always canonicalizes");
        let api = job_to_api_json(&canonical);
        let again = job_from_api_json(api.clone()).unwrap();
        prop_assert_eq!(&again, &canonical);
        let text = serde_json::to_string(&api).unwrap();
        prop_assert_eq!(&job_from_json_str(&text).unwrap(), &canonical);
        Ok(())
    });
}

#[test]
fn canonical_jobs_have_nomads_invariants() {
    check(64, job, |job| {
        let canonical = job_from_api_json(serde_json::to_value(&job).unwrap()).unwrap();
        prop_assert!(!canonical.datacenters.is_empty());
        let deploys = matches!(canonical.job_type, JobType::Service | JobType::System);
        for group in &canonical.task_groups {
            prop_assert!(group.restart_policy.is_some());
            prop_assert!(group.tasks.iter().all(|t| t.restart_policy.is_some()));
            prop_assert_eq!(group.update.is_some(), deploys);
            prop_assert_eq!(group.migrate.is_some(), canonical.job_type == JobType::Service);
        }
        Ok(())
    });
}

#[test]
fn allocations_survive_json() {
    check(48, allocation, |alloc| {
        let text = serde_json::to_string(&alloc).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Allocation>(&text).unwrap(), &alloc);
        Ok(())
    });
}

#[test]
fn evaluations_survive_json() {
    check(64, evaluation, |eval| {
        let text = serde_json::to_string(&eval).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Evaluation>(&text).unwrap(), &eval);
        Ok(())
    });
}

#[test]
fn nodes_survive_json_and_keep_their_class() {
    check(64, node, |node| {
        let text = serde_json::to_string(&node).unwrap();
        let back = serde_json::from_str::<Node>(&text).unwrap();
        prop_assert_eq!(&computed_class(&back), &node.computed_class);
        prop_assert_eq!(&back, &node);
        Ok(())
    });
}

proptest! {
    #[test]
    fn timestamps_survive_rfc3339(nanos in any::<i64>()) {
        let text = Timestamp(nanos).to_rfc3339();
        prop_assert_eq!(Timestamp::parse_rfc3339(&text), Ok(Timestamp(nanos)));
    }

    #[test]
    fn timestamp_parsing_never_panics(text in "\\PC{0,40}") {
        let _ = Timestamp::parse_rfc3339(&text);
    }

    #[test]
    fn job_parsing_never_panics_on_arbitrary_json(text in "\\PC{0,200}") {
        let _ = job_from_json_str(&text);
    }
}
