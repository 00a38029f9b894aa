//! drover-tests: end-to-end tests that run the real `drover` binary.
//!
//! The tests live in `tests/tests/`; this library finds (or builds) the binary and runs it
//! in a scratch directory, rendering each invocation as text for snapshot comparison.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `drover` binary of this build profile, built once per test process if missing.
pub fn drover_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // Test executables live in target/<profile>/deps; the binary one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let binary = profile_dir.join(format!("drover{}", std::env::consts::EXE_SUFFIX));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = profile_dir.parent().expect("target dir");
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "drover-cli", "--bin", "drover", "--target-dir"]);
        build.arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        // Always ask cargo: it is a no-op when the binary is fresh and rebuilds it when not.
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building drover failed");
        assert!(binary.exists(), "no drover binary at {}", binary.display());
        binary
    })
}

/// A scratch directory that is removed when dropped.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("drover-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch { path }
    }

    /// Runs `drover args...` in this directory; the transcript shows the command, its exit
    /// code, stdout and stderr, with the scratch path replaced so snapshots are stable.
    pub fn drover(&self, args: &[&str]) -> Transcript {
        self.drover_with_env(args, &[])
    }

    /// [`Scratch::drover`] with environment variables set (`NOMAD_ADDR` to reach an agent).
    pub fn drover_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Transcript {
        let output = Command::new(drover_binary())
            .args(args)
            .current_dir(&self.path)
            .env_remove("NOMAD_ADDR")
            .env_remove("DROVER_ADDR")
            .envs(env.iter().copied())
            .output()
            .expect("drover runs");
        let scrub = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes).replace(&self.path.display().to_string(), "$SCRATCH")
        };
        Transcript {
            command: format!("drover {}", args.join(" ")),
            code: output.status.code().unwrap_or(-1),
            stdout: scrub(&output.stdout),
            stderr: scrub(&output.stderr),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub struct Transcript {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "exit: {}", self.code)?;
        writeln!(f, "--- stdout\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr.trim_end())
    }
}

// ------------------------------------------------------------------------ agents

/// How long an agent may take to say it is ready.
const AGENT_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A `drover agent -dev` on an ephemeral loopback port (`-http-port 0`, the port read
/// from its ready line), interrupted (SIGINT) when dropped.
pub struct DevAgent {
    child: Option<std::process::Child>,
    pub http_addr: String,
    /// The agent's stdout up to and including its ready line.
    pub banner: String,
    /// What the rest of stdout said, collected by a thread until the agent exits.
    rest: std::sync::mpsc::Receiver<String>,
}

impl DevAgent {
    pub fn start() -> DevAgent {
        DevAgent::start_binary(drover_binary())
    }

    /// Starts the agent of the given `drover` binary.
    pub fn start_binary(binary: &Path) -> DevAgent {
        DevAgent::spawn(binary, None, &[])
    }

    /// Starts the agent in `dir` with `more` arguments (`-config dev.hcl`).
    pub fn start_in(dir: &Path, more: &[&str]) -> DevAgent {
        DevAgent::spawn(drover_binary(), Some(dir), more)
    }

    fn spawn(binary: &Path, dir: Option<&Path>, more: &[&str]) -> DevAgent {
        let mut args: Vec<String> =
            ["agent", "-dev", "-node", "e2e-node", "-http-port", "0"].map(str::to_owned).to_vec();
        args.extend(more.iter().map(|arg| (*arg).to_owned()));
        let (child, banner, lines_rx) = spawn_agent(binary, dir, &args, "agent: ready");
        // `agent: ready: HTTP API on http://127.0.0.1:PORT, node registered (...)`.
        let ready = banner.lines().find(|l| l.contains("agent: ready")).unwrap_or_default();
        let http_addr = ready
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(addr, _)| addr.to_owned())
            .unwrap_or_else(|| panic!("no API address in the ready line: {ready}"));
        assert!(!http_addr.ends_with(":0"), "the port the API listens on: {ready}");
        DevAgent { child: Some(child), http_addr, banner, rest: lines_rx }
    }

    /// One HTTP/1.1 request to the agent's API.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http_request(&self.http_addr, method, path, body)
    }

    /// The agent's resident memory in KiB (`VmRSS`), 0 when it cannot be read.
    pub fn rss_kib(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        status
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Interrupts the agent and waits for it: its exit code and the rest of its stdout.
    pub fn stop(mut self) -> (i32, String) {
        self.interrupt()
    }

    fn interrupt(&mut self) -> (i32, String) {
        let Some(mut child) = self.child.take() else { return (-1, String::new()) };
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let status = child.wait().expect("the agent exits");
        let rest: Vec<String> = self.rest.try_iter().collect();
        (status.code().unwrap_or(-1), rest.join("\n"))
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// Spawns `binary args...` (in `dir` if given) and reads its stdout until a line holds
/// `marker`: the child, what it said so far, and the rest of its lines.
fn spawn_agent(
    binary: &Path,
    dir: Option<&Path>,
    args: &[String],
    marker: &str,
) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut command = Command::new(binary);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .env_remove("NOMAD_ADDR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("drover agent starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + AGENT_READY_TIMEOUT;
    let mut said = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = lines_rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent {args:?} did not get to {marker:?}; it said:\n{said}")
        };
        said.push_str(&line);
        said.push('\n');
        if line.contains(marker) {
            return (child, said, lines_rx);
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// An HTTP answer: status, headers (lowercase names) and the body, de-chunked.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn http_request(addr: &str, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    try_http_request(addr, method, path, body)
        .unwrap_or_else(|| panic!("no complete answer from {addr} to {method} {path}"))
}

/// [`http_request`] to an agent that may be dead or die mid-answer: `None` unless a
/// whole answer came back.
pub fn try_http_request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<HttpResponse> {
    use std::io::{Read, Write};
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    // An agent may answer before reading the whole body; the answer is what counts.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let response = try_parse_response(&raw)?;
    // A body cut short by a dying agent is no answer.
    let declared = response.header("content-length").and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|len| len != response.body.len()) {
        return None;
    }
    Some(response)
}

/// Writes `head` and `body` (a server may answer before reading all of the body, so a
/// failed body write is not an error) and reads the answer.
pub fn http_exchange(addr: &str, head: &[u8], body: &[u8]) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    stream.write_all(head).expect("write the request head");
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    try_parse_response(raw).expect("a complete HTTP head")
}

fn try_parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Some(HttpResponse { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(rest.len());
        body.extend_from_slice(&rest[start..end]);
        rest = &rest[(end + 2).min(rest.len())..];
    }
    body
}

/// A `drover agent` of a real cluster (not `-dev`), run from `dir` with `args`, killed
/// with SIGKILL when dropped (these tests are about surviving exactly that).
pub struct ClusterAgent {
    child: std::process::Child,
    pub http_addr: String,
    pub args: Vec<String>,
    dir: PathBuf,
    /// Everything the agent wrote to stdout so far, its log included.
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ClusterAgent {
    /// Starts `drover agent args...` in `dir`; returns once it says it started.
    pub fn start(dir: &Path, http_addr: &str, args: &[String]) -> ClusterAgent {
        let (child, said, lines_rx) =
            spawn_agent(drover_binary(), Some(dir), args, "agent: started");
        let output = std::sync::Arc::new(std::sync::Mutex::new(said));
        // The rest of stdout is read as it comes, so the agent never blocks on a full pipe.
        let collected = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            for line in lines_rx {
                let mut output = collected.lock().expect("not poisoned");
                output.push_str(&line);
                output.push('\n');
            }
        });
        ClusterAgent {
            child,
            http_addr: http_addr.to_owned(),
            args: args.to_vec(),
            dir: dir.to_owned(),
            output,
        }
    }

    /// What the agent wrote to stdout so far.
    pub fn said(&self) -> String {
        self.output.lock().expect("not poisoned").clone()
    }

    /// The same agent started again, same directory and arguments.
    pub fn restart(&self) -> ClusterAgent {
        ClusterAgent::start(&self.dir, &self.http_addr, &self.args)
    }

    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http_request(&self.http_addr, method, path, body)
    }

    /// The leader's RPC address as this agent sees it, if it knows one.
    pub fn leader(&self) -> Option<String> {
        let answer = try_http_request(&self.http_addr, "GET", "/v1/status/leader", b"")?;
        let leader: String = serde_json::from_slice(&answer.body).ok()?;
        (answer.status == 200 && !leader.is_empty()).then_some(leader)
    }

    /// `kill -9`: no shutdown, no flush, nothing.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClusterAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it gives a value or `timeout` passes.
pub fn poll_until<T>(
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A raw_exec service whose task prints a line and then sleeps; `marker` makes its
/// command line findable in /proc.
pub fn sleeper_hcl(id: &str, marker: &str) -> String {
    format!(
        r#"job "{id}" {{
  group "g" {{
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo hello; sleep 1000 # {marker}"]
      }}
      resources {{
        cpu    = 100
        memory = 64
      }}
    }}
  }}
}}
"#
    )
}
