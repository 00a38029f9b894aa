//! Reading a job from the command line: an HCL jobspec or a JSON document, plus `-var` and
//! `-var-file` values.
//!
//! Core reads no files, so this is where bytes come off the disk (or stdin for `-`), bounded
//! in size before they are read, and get handed to `jobspec::parse` or the JSON decoder.

use drover_core::jobspec::{self, ParseOptions, VarFile};
use drover_core::model::{self, Job};
use std::io::Read;

/// The largest job or variable file read: the jobspec's own bound, checked before reading so
/// a wrong path cannot make the CLI swallow a disk.
const JOB_FILE_LEN_MAX_BYTES: u64 = jobspec::SOURCE_LEN_MAX_BYTES as u64;

/// Where the job comes from and what to substitute into it.
pub struct JobSource<'a> {
    pub path: &'a str,
    pub vars: &'a [String],
    pub var_files: &'a [String],
    /// `-json`: the file is API JSON even without a `.json` extension.
    pub json: bool,
}

/// Loads, parses, canonicalizes and validates a job. The error is the full text to print.
/// Every failure reads as Nomad's does: `Error getting job struct: <why>`.
pub fn load(source: &JobSource<'_>) -> Result<Job, String> {
    load_unprefixed(source).map_err(|report| format!("Error getting job struct: {report}"))
}

fn load_unprefixed(source: &JobSource<'_>) -> Result<Job, String> {
    let bytes = read_bounded(source.path)
        .map_err(|error| format!("Error getting jobfile from {:?}: {error}", source.path))?;
    let name = if source.path == "-" { "<stdin>" } else { source.path };
    if source.json || source.path.ends_with(".json") {
        load_json(name, &bytes)
    } else {
        load_hcl(name, &bytes, source)
    }
}

fn load_hcl(name: &str, bytes: &[u8], source: &JobSource<'_>) -> Result<Job, String> {
    let mut options = ParseOptions::default();
    for var in source.vars {
        let Some((key, value)) = var.split_once('=') else {
            return Err(format!("-var {var:?} is not of the form NAME=VALUE"));
        };
        options.vars.push((key.to_owned(), value.to_owned()));
    }
    for path in source.var_files {
        let contents = read_bounded(path)
            .map_err(|error| format!("Error reading variable file {path:?}: {error}"))?;
        let contents = String::from_utf8(contents)
            .map_err(|_| format!("variable file {path:?} is not valid UTF-8"))?;
        options.var_files.push(VarFile { name: path.clone(), contents });
    }
    jobspec::parse(name, bytes, &options)
        .map_err(|report| format!("Error parsing job file from {name}:\n{report}"))
}

fn load_json(name: &str, bytes: &[u8]) -> Result<Job, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{name}: not valid UTF-8"))?;
    let job = model::job_from_json_str(text).map_err(|e| format!("{name}: {e}"))?;
    let errors = model::validate_job(&job);
    if errors.is_empty() {
        return Ok(job);
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("{name}: {e}")).collect();
    Err(format!("Error parsing job file from {name}:\n{}", lines.join("\n")))
}

/// Reads a file (or stdin for `-`), refusing more than [`JOB_FILE_LEN_MAX_BYTES`]. The
/// error says why, and the caller says which file.
fn read_bounded(path: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let limit = JOB_FILE_LEN_MAX_BYTES + 1;
    let read = if path == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|error| error.to_string())?;
    if bytes.len() as u64 > JOB_FILE_LEN_MAX_BYTES {
        return Err(format!(
            "larger than {} MiB; a job file that big is almost surely not a job",
            JOB_FILE_LEN_MAX_BYTES / 1024 / 1024
        ));
    }
    Ok(bytes)
}
