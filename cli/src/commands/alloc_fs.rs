//! `drover alloc fs [-stat] [-f] [-tail] [-job] <alloc|job> [path]`: lists a directory of
//! an allocation, describes one entry, or prints a file, whole, its end, or followed as it
//! grows, on the client that runs it, as Nomad's `alloc fs` does.

use super::alloc_logs::{Window, copy_out, window};
use super::{Io, api_command, report, resolve_prefix};
use crate::api::{Client, encode_component};
use crate::flags::FlagSpec;
use crate::output::{table, time_text};
use drover_core::model::{AllocClientStatus, AllocFileInfo, Allocation};
use std::hash::{BuildHasher, Hasher};

const HELP: &str = "\
Usage: drover alloc fs [options] <allocation> <path>
Alias: drover fs

  fs displays either the contents of an allocation directory for the passed
  allocation, or displays the file at the given path. The path is relative to
  the root of the alloc dir and defaults to root if unspecified.

FS Specific Options:

  -H
    Machine friendly output.

  -verbose
    Show full information.

  -job <job-id>
    Use a random allocation from the specified job ID.

  -stat
    Show file stat information instead of displaying the file, or listing the directory.

  -f
    Causes the output to not stop when the end of the file is reached, but rather to
    wait for additional output.

  -tail
    Show the files contents with offsets relative to the end of the file. If no
    offset is given, -n is defaulted to 10.

  -n
    Sets the tail location in best-efforted number of lines relative to the end
    of the file.

  -c
    Sets the tail location in number of bytes relative to the end of the file.
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("H"),
    FlagSpec::bool("verbose"),
    FlagSpec::bool("job"),
    FlagSpec::bool("stat"),
    FlagSpec::bool("f"),
    FlagSpec::bool("tail"),
    FlagSpec::value("n"),
    FlagSpec::value("c"),
];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let by_job = flags.is_set("job");
        let (named, path) = match flags.args.as_slice() {
            [named] => (named.clone(), "/"),
            [named, path] => (named.clone(), path.as_str()),
            [] if by_job => return Err(usage("A job ID is required")),
            [] => return Err(usage("An allocation ID is required")),
            _ => {
                return Err(usage(
                    "This command takes one or two arguments: <allocation> [<path>]",
                ));
            }
        };
        let prefix = if by_job { job_alloc(&client, &named)? } else { named };
        if prefix.chars().count() == 1 {
            return Err("Alloc ID must contain at least two characters.".to_owned());
        }
        let window = window(&flags)?;
        let alloc_id = resolve_prefix(&client, "/v1/allocations", &prefix, "allocation")?;
        let fs = AllocFs { client: &client, alloc_id: encode_component(&alloc_id) };
        let file: AllocFileInfo = fs.get("stat", path).map_err(|error| error.to_string())?;
        let size = |size: u64| if flags.is_set("H") { size.to_string() } else { ibytes(size) };
        if flags.is_set("stat") {
            let mut rows = vec![crate::output::cells(&[
                "Mode",
                "Size",
                "Modified Time",
                "Content Type",
                "Name",
            ])];
            rows.push(vec![
                file.file_mode.clone(),
                size(file.size),
                modified(&file),
                file.content_type.clone(),
                name(&file),
            ]);
            let _ = io.out.write_all(table(&rows).as_bytes());
            return Ok(0);
        }
        if file.is_dir {
            let files: Vec<AllocFileInfo> =
                fs.get("ls", path).map_err(|error| format!("Error listing alloc dir: {error}"))?;
            let mut rows = vec![crate::output::cells(&["Mode", "Size", "Modified Time", "Name"])];
            rows.extend(
                files.iter().map(|f| vec![f.file_mode.clone(), size(f.size), modified(f), name(f)]),
            );
            let _ = io.out.write_all(table(&rows).as_bytes());
            return Ok(0);
        }
        print_file(&fs, path, file.size, &window, flags.is_set("f"), io)
    })
}

/// An allocation of `job`, picked at random as Nomad picks it: among the running ones,
/// or among all when none runs.
fn job_alloc(client: &Client, job: &str) -> Result<String, String> {
    let url = format!("/v1/job/{}/allocations", encode_component(job));
    let (allocs, _) = client.get::<Vec<Allocation>>(&url, &[], None).map_err(|error| {
        format!("Error fetching allocations: error querying job {job:?}: {error}")
    })?;
    let running: Vec<&Allocation> =
        allocs.iter().filter(|a| a.client_status == AllocClientStatus::Running).collect();
    let candidates = if running.is_empty() { allocs.iter().collect() } else { running };
    if candidates.is_empty() {
        return Err(format!(
            "Error fetching allocations: job {job:?} doesn't exist or it has no allocations"
        ));
    }
    // The standard library's per-process random hash keys: randomness enough to spread
    // operators over a job's allocations, with no generator to depend on.
    let draw = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let picked = usize::try_from(draw % candidates.len() as u64).unwrap_or_default();
    Ok(candidates[picked].id.clone())
}

fn usage(problem: &str) -> String {
    format!("{problem}\nFor additional help try 'drover alloc fs -help'")
}

/// The client's `fs` endpoints for one allocation.
struct AllocFs<'a> {
    client: &'a Client,
    /// The allocation's ID, encoded for a URL path.
    alloc_id: String,
}

impl AllocFs<'_> {
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
    ) -> Result<T, crate::api::ApiError> {
        let url = format!("/v1/client/fs/{endpoint}/{}", self.alloc_id);
        Ok(self.client.get(&url, &[("path", path.to_owned())], None)?.0)
    }
}

/// The file whole, or with `-tail` its end; with `-f` followed from there as it grows.
fn print_file(
    fs: &AllocFs<'_>,
    path: &str,
    size: u64,
    window: &Window,
    follow: bool,
    io: &mut Io<'_>,
) -> Result<u8, String> {
    let mut params = vec![("path", path.to_owned())];
    let failed =
        if window.from_end_bytes.is_some() { "Error tailing file" } else { "Error reading file" };
    let endpoint = match (follow, window.from_end_bytes) {
        (true, from_end) => {
            let origin = if from_end.is_some() { "end" } else { "start" };
            params.push(("origin", origin.to_owned()));
            params.push(("offset", from_end.unwrap_or(0).to_string()));
            params.push(("follow", "true".to_owned()));
            params.push(("plain", "true".to_owned()));
            "stream"
        }
        (false, None) => "cat",
        (false, Some(from_end)) => {
            params.push(("offset", size.saturating_sub(from_end).to_string()));
            params.push(("limit", "-1".to_owned()));
            "readat"
        }
    };
    let url = format!("/v1/client/fs/{endpoint}/{}", fs.alloc_id);
    let body = fs.client.stream(&url, &params, follow).map_err(|e| format!("{failed}: {e}"))?;
    copy_out(body, window.last_lines, follow, io)
}

/// An entry's name, a directory's with a `/` after it.
fn name(file: &AllocFileInfo) -> String {
    if file.is_dir { format!("{}/", file.name) } else { file.name.clone() }
}

/// When an entry was last modified; nothing for a time at or before the epoch.
fn modified(file: &AllocFileInfo) -> String {
    if file.mod_time.0 < 1_000_000_000 { String::new() } else { time_text(file.mod_time.0) }
}

/// A size as Nomad prints it (go-humanize's `IBytes`): `13 B`, `4.0 KiB`, `12 MiB`.
fn ibytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = ((size as f64).ln() / 1024f64.ln()).floor();
    let value = ((size as f64) / 1024f64.powf(exponent) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[(exponent as usize).min(UNITS.len() - 1)];
    if value < 10.0 { format!("{value:.1} {unit}") } else { format!("{value:.0} {unit}") }
}

#[cfg(test)]
mod tests {
    use super::ibytes;

    #[test]
    fn sizes_read_as_nomad_prints_them() {
        let printed: Vec<String> =
            [0, 9, 13, 1000, 1023, 1024, 1536, 10_240, 4_194_304, 5_000_000_000]
                .into_iter()
                .map(ibytes)
                .collect();
        assert_eq!(
            printed,
            [
                "0 B", "9 B", "13 B", "1000 B", "1023 B", "1.0 KiB", "1.5 KiB", "10 KiB",
                "4.0 MiB", "4.7 GiB"
            ]
        );
    }
}
