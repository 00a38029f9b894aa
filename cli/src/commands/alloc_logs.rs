//! `drover alloc logs <alloc> [task]`: a task's stdout or stderr, whole, the tail, or
//! followed as it is written.

use super::{Io, api_command, report, resolve_prefix};
use crate::api::Client;
use crate::flags::FlagSpec;
use drover_core::model::Allocation;
use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HELP: &str = "\
Usage: drover alloc logs [options] <allocation> <task>
Alias: drover logs

  Streams the stdout/stderr of the given allocation and task.

Logs Specific Options:

  -stderr
    Display stderr logs.

  -f
    Causes the output to not stop when the end of the logs are reached, but
    rather to wait for additional output.

  -tail
    Show the logs contents with offsets relative to the end of the logs. If no
    offset is given, -n is defaulted to 10.

  -n
    Sets the tail location in best-efforted number of lines relative to the end
    of the logs.

  -c
    Sets the tail location in number of bytes relative to the end of the logs.
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("stderr"),
    FlagSpec::bool("f"),
    FlagSpec::bool("tail"),
    FlagSpec::value("n"),
    FlagSpec::value("c"),
];

/// Lines shown by `-tail` without `-n` or `-c` (Nomad's default).
const TAIL_LINES_DEFAULT: u64 = 10;
/// Bytes read from the end per line asked for by `-n`: lines longer than this are cut.
const TAIL_BYTES_PER_LINE: u64 = 1024;
/// The most bytes `-n` reads from the end, whatever the number of lines.
const TAIL_LEN_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The read size while streaming.
const READ_CHUNK_LEN_BYTES: usize = 16 * 1024;
/// How long a followed `-n` tail gathers what arrives first before it is cut to the last
/// lines (Nomad's line limit reader waits as long).
const TAIL_FOLLOW_GATHER_MS: u64 = 1_000;
/// Chunks read ahead of what is written: as many as a `-n` tail reads at most, so the
/// whole tail is gathered within the window.
const CHUNKS_AHEAD_MAX: usize = TAIL_LEN_MAX_BYTES as usize / READ_CHUNK_LEN_BYTES;

/// Where to start reading and how much of it to show.
pub(super) struct Window {
    /// Bytes before the end to start at; `None` starts at the beginning.
    pub from_end_bytes: Option<u64>,
    /// With `-n`: keep only the last this many lines.
    pub last_lines: Option<usize>,
}

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let (prefix, task) = match flags.args.as_slice() {
            [alloc] => (alloc, None),
            [alloc, task] => (alloc, Some(task.clone())),
            _ => {
                return Err("This command takes one or two arguments: <allocation> <task>\n\
                     For additional help try 'drover alloc logs -help'"
                    .to_owned());
            }
        };
        let window = window(&flags)?;
        let alloc_id = resolve_prefix(&client, "/v1/allocations", prefix, "allocation")?;
        let task = match task {
            Some(task) => task,
            None => only_task(&client, &alloc_id)?,
        };
        let stream = if flags.is_set("stderr") { "stderr" } else { "stdout" };
        let follow = flags.is_set("f");
        let mut params = vec![
            ("task", task),
            ("type", stream.to_owned()),
            ("plain", "true".to_owned()),
            ("follow", follow.to_string()),
        ];
        if let Some(offset) = window.from_end_bytes {
            params.push(("origin", "end".to_owned()));
            params.push(("offset", offset.to_string()));
        }
        let body = client
            .stream(&format!("/v1/client/fs/logs/{alloc_id}"), &params, follow)
            .map_err(|error| format!("Error reading file: {error}"))?;
        copy_out(body, window.last_lines, follow, io)
    })
}

pub(super) fn window(flags: &crate::flags::Parsed) -> Result<Window, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        flags
            .last(name)
            .map(|text| text.parse::<u64>().map_err(|_| format!("Invalid -{name} value {text:?}")))
            .transpose()
    };
    let (lines, bytes) = (number("n")?, number("c")?);
    if !flags.is_set("tail") {
        return Ok(Window { from_end_bytes: None, last_lines: None });
    }
    if let Some(bytes) = bytes {
        return Ok(Window { from_end_bytes: Some(bytes), last_lines: None });
    }
    let lines = lines.unwrap_or(TAIL_LINES_DEFAULT);
    let from_end = lines.saturating_mul(TAIL_BYTES_PER_LINE).min(TAIL_LEN_MAX_BYTES);
    Ok(Window { from_end_bytes: Some(from_end), last_lines: usize::try_from(lines).ok() })
}

/// The allocation's one task; with several, the operator must name one.
fn only_task(client: &Client, alloc_id: &str) -> Result<String, String> {
    let (alloc, _) = client
        .get::<Allocation>(&format!("/v1/allocation/{alloc_id}"), &[], None)
        .map_err(|error| format!("Error querying allocation: {error}"))?;
    let tasks: Vec<String> = match alloc.group() {
        Some(group) => group.tasks.iter().map(|t| t.name.clone()).collect(),
        None => alloc.task_states.keys().cloned().collect(),
    };
    match tasks.as_slice() {
        [one] => Ok(one.clone()),
        _ => {
            let list: String = tasks.iter().map(|t| format!("  * {t}\n")).collect();
            Err(format!(
                "Allocation {:?} is running the following tasks:\n{list}\nPlease specify the task.",
                crate::output::short_id(alloc_id)
            ))
        }
    }
}

/// Writes the stream to stdout as it arrives. Keeping only the last lines, it writes
/// those of the whole stream once it ended, or, following, those of what arrived within
/// [`TAIL_FOLLOW_GATHER_MS`], then what comes after as it arrives (Nomad's line limit).
pub(super) fn copy_out(
    body: impl Read + Send + 'static,
    last_lines: Option<usize>,
    follow: bool,
    io: &mut Io<'_>,
) -> Result<u8, String> {
    let Some(lines) = last_lines else { return copy_all(body, io) };
    if !follow {
        let mut bytes = Vec::new();
        body.take(TAIL_LEN_MAX_BYTES).read_to_end(&mut bytes).map_err(read_failed)?;
        let _ = io.out.write_all(last_lines_of(&bytes, lines));
        return Ok(0);
    }
    let mut chunks = ChunkReader::spawn(body);
    let deadline = Instant::now() + Duration::from_millis(TAIL_FOLLOW_GATHER_MS);
    let mut gathered = Vec::new();
    while gathered.len() < TAIL_LEN_MAX_BYTES as usize {
        let Some(chunk) = chunks.next_before(deadline) else { break };
        gathered.extend_from_slice(&chunk.map_err(read_failed)?);
    }
    let _ = io.out.write_all(last_lines_of(&gathered, lines));
    copy_all(chunks, io)
}

fn read_failed(error: std::io::Error) -> String {
    format!("Error reading file: {error}")
}

/// Writes the stream to stdout as it arrives, until it ends or stdout is closed.
fn copy_all(mut body: impl Read, io: &mut Io<'_>) -> Result<u8, String> {
    let mut buffer = vec![0u8; READ_CHUNK_LEN_BYTES];
    loop {
        let read = body.read(&mut buffer).map_err(read_failed)?;
        if read == 0 {
            return Ok(0);
        }
        if io.out.write_all(&buffer[..read]).and_then(|()| io.out.flush()).is_err() {
            // The reader went away (a closed pipe): nothing more to show.
            return Ok(0);
        }
    }
}

/// A stream read on a thread of its own, so what arrived by a deadline can be told
/// apart from what comes later; itself a reader of the chunks still to come.
struct ChunkReader {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    pending: std::io::Cursor<Vec<u8>>,
}

impl ChunkReader {
    fn spawn(mut body: impl Read + Send + 'static) -> ChunkReader {
        let (sender, chunks) = mpsc::sync_channel(CHUNKS_AHEAD_MAX);
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; READ_CHUNK_LEN_BYTES];
            loop {
                let chunk = match body.read(&mut buffer) {
                    // The end: the sender dropped tells the reader.
                    Ok(0) => return,
                    Ok(read) => Ok(buffer[..read].to_vec()),
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => Err(error),
                };
                let failed = chunk.is_err();
                if sender.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        ChunkReader { chunks, pending: std::io::Cursor::new(Vec::new()) }
    }

    /// The next chunk if it arrives before `deadline`; `None` past it or at the end.
    fn next_before(&mut self, deadline: Instant) -> Option<std::io::Result<Vec<u8>>> {
        self.chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.pending.read(buf)?;
        if read > 0 || buf.is_empty() {
            return Ok(read);
        }
        match self.chunks.recv() {
            Ok(chunk) => {
                self.pending = std::io::Cursor::new(chunk?);
                self.pending.read(buf)
            }
            // The reading thread ended with the stream.
            Err(mpsc::RecvError) => Ok(0),
        }
    }
}

/// The last `count` lines of `bytes` (a final line without its newline counts).
fn last_lines_of(bytes: &[u8], count: usize) -> &[u8] {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(count.saturating_sub(1))
        .map_or(0, |(at, _)| at + 1);
    if count == 0 { &bytes[bytes.len()..] } else { &bytes[start..] }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `copy_out` writes of a stream that sends `first`, then, well after the gather
    /// window, `later`, then ends.
    fn followed(first: &'static str, later: &'static str, last_lines: Option<usize>) -> String {
        let (mut agent, body) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write as _;
            agent.write_all(first.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(TAIL_FOLLOW_GATHER_MS + 300));
            agent.write_all(later.as_bytes()).unwrap();
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io { out: &mut out, err: &mut err, tty: false };
        assert_eq!(copy_out(body, last_lines, true, &mut io), Ok(0));
        writer.join().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_followed_tail_keeps_the_last_lines_of_what_came_first_then_everything() {
        assert_eq!(followed("a\nb\nc\n", "d\ne\n", Some(2)), "b\nc\nd\ne\n");
        assert_eq!(followed("a\nb\n", "c\n", None), "a\nb\nc\n");
    }

    #[test]
    fn keeps_the_last_lines() {
        let text = b"a\nb\nc\n";
        assert_eq!(last_lines_of(text, 2), b"b\nc\n");
        assert_eq!(last_lines_of(text, 3), text);
        assert_eq!(last_lines_of(text, 9), text);
        assert_eq!(last_lines_of(b"a\nb", 1), b"b");
        assert_eq!(last_lines_of(text, 0), b"");
        assert_eq!(last_lines_of(b"", 2), b"");
    }
}
