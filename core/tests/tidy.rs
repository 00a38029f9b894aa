//! Tidy: the architecture invariants that a compiler cannot check, checked as a test.
//!
//! `core` must stay sans-IO (no clock, thread, file, socket, async runtime or unseeded
//! randomness), every source file in the workspace opens with a `//!` header saying what it
//! is, and no test is switched off.

use std::path::{Path, PathBuf};

/// Names whose presence in `core/src` means the core reached for the outside world.
const CORE_BANNED: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "std::thread",
    "std::fs",
    "std::net",
    "std::process",
    "tokio",
    "async_std",
    "smol::",
    "madsim",
    "getrandom",
    "OsRng",
    "async fn",
];

/// Crates `core` must never depend on.
const CORE_BANNED_DEPENDENCIES: &[&str] =
    &["tokio", "madsim", "quinn", "bollard", "axum", "getrandom", "async-std", "smol", "rand"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("core has a parent").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "fuzz" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for member in ["core", "runtime", "sim", "cli", "tests"] {
        rust_files(&root.join(member), &mut files);
    }
    files.sort();
    assert!(files.len() > 5, "tidy found too few sources under {}", root.display());
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}

#[test]
fn core_is_sans_io() {
    let mut offences = Vec::new();
    let mut core_files = Vec::new();
    rust_files(&workspace_root().join("core/src"), &mut core_files);
    for file in core_files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for banned in CORE_BANNED {
                if code.contains(banned) {
                    offences.push(format!("{}:{}: uses `{banned}`", relative(&file), number + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "core must stay sans-IO:\n{}", offences.join("\n"));
}

#[test]
fn core_depends_on_no_runtime() {
    let manifest = std::fs::read_to_string(workspace_root().join("core/Cargo.toml")).unwrap();
    let dependencies: String =
        manifest.split("\n[").filter(|section| section.starts_with("dependencies]")).collect();
    // `name = ...` or `name.workspace = true`: the crate name is what precedes `=` or `.`.
    let names: Vec<&str> = dependencies
        .lines()
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .collect();
    let offences: Vec<_> =
        CORE_BANNED_DEPENDENCIES.iter().filter(|dep| names.contains(dep)).collect();
    assert!(offences.is_empty(), "core/Cargo.toml depends on {offences:?}");
}

#[test]
fn every_source_file_has_a_header() {
    let missing: Vec<_> = workspace_sources()
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|file| relative(&file))
        .collect();
    assert!(missing.is_empty(), "files without a `//!` header:\n{}", missing.join("\n"));
}

#[test]
fn no_test_is_switched_off() {
    // Spelled in pieces so this file does not match itself.
    let patterns = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    let mut offences = Vec::new();
    for file in workspace_sources() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            if patterns.iter().any(|p| line.trim_start().starts_with(p)) {
                offences.push(format!("{}:{}", relative(&file), number + 1));
            }
        }
    }
    assert!(offences.is_empty(), "switched-off tests:\n{}", offences.join("\n"));
}
