//! `drover eval status <eval>`: one evaluation and, when it could not place everything,
//! why.

use super::{Io, api_command_with_args, print_json, report, resolve_prefix};
use crate::flags::FlagSpec;
use crate::output::{display_id, key_values, now_ns, time_ago};
use drover_core::model::Evaluation;

const HELP: &str = "\
Usage: drover eval status [options] <evaluation>

  Display information about evaluations. This command can be used to inspect the
  current status of an evaluation as well as determine the reason an evaluation
  did not place all allocations.

Eval Status Options:

  -json
    Output the evaluation in its JSON format.

  -verbose
    Show full information.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command_with_args(args, FLAGS, HELP, &["<evaluation>"], io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let eval_id = resolve_prefix(&client, "/v1/evaluations", &flags.args[0], "evaluation")?;
        let (eval, _) = client
            .get::<Evaluation>(&format!("/v1/evaluation/{eval_id}"), &[], None)
            .map_err(|error| format!("Error querying evaluation: {error}"))?;
        if flags.is_set("json") {
            return print_json(&eval, io);
        }
        let verbose = flags.is_set("verbose");
        let now = now_ns();
        let mut fields = vec![
            ("ID", display_id(&eval.id, verbose)),
            ("Create Time", time_ago(eval.create_time, now)),
            ("Modify Time", time_ago(eval.modify_time, now)),
            ("Status", eval.status.as_str().to_owned()),
            ("Status Description", description(&eval)),
            ("Type", eval.scheduler.as_str().to_owned()),
            ("TriggeredBy", eval.triggered_by.as_str().to_owned()),
        ];
        if !eval.job_id.is_empty() {
            fields.push(("Job ID", eval.job_id.clone()));
        }
        if !eval.node_id.is_empty() {
            fields.push(("Node ID", display_id(&eval.node_id, verbose)));
        }
        if !eval.deployment_id.is_empty() {
            fields.push(("Deployment ID", display_id(&eval.deployment_id, verbose)));
        }
        fields.push(("Namespace", eval.namespace.clone()));
        fields.push(("Priority", eval.priority.to_string()));
        fields.push(("Placement Failures", (!eval.failed_tg_allocs.is_empty()).to_string()));
        let _ = write!(io.out, "{}", key_values(&fields));
        if !eval.failed_tg_allocs.is_empty() {
            let _ = writeln!(io.out, "\nFailed Placements");
            for (group, metric) in &eval.failed_tg_allocs {
                let count = metric.coalesced_failures + 1;
                let _ = writeln!(
                    io.out,
                    "Task Group {group:?} (failed to place {count} allocation(s)):"
                );
                for line in crate::monitor::metric_lines(metric) {
                    let _ = writeln!(io.out, "  {line}");
                }
            }
            if !eval.blocked_eval.is_empty() {
                let blocked = display_id(&eval.blocked_eval, verbose);
                let _ = writeln!(
                    io.out,
                    "\nEvaluation {blocked:?} waiting for additional capacity to place remainder"
                );
            }
        }
        Ok(0)
    })
}

/// The server's description, or the status itself, as Nomad shows an empty one.
fn description(eval: &Evaluation) -> String {
    if eval.status_description.is_empty() {
        eval.status.as_str().to_owned()
    } else {
        eval.status_description.clone()
    }
}
