//! `drover-executor STATUS_DIR`: runs the task described in `STATUS_DIR/spec.json` to its
//! end (see `drover_runtime::driver::executor`). The `drover` binary offers the same as
//! `drover executor`; this standalone form lets the runtime's tests run real executors.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(status_dir) = std::env::args().nth(1) else {
        eprintln!("usage: drover-executor STATUS_DIR");
        return ExitCode::from(2);
    };
    match drover_runtime::driver::executor::run(Path::new(&status_dir)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drover-executor: {error}");
            ExitCode::FAILURE
        }
    }
}
