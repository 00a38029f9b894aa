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
