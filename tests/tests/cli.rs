//! End-to-end tests of the `drover` CLI: real processes, real files, transcripts as snapshots.
//!
//! Each test writes its files into a scratch directory, runs a sequence of commands, and
//! snapshots the whole transcript (command, exit code, stdout, stderr), so a change in any
//! message or exit code shows up as a readable diff.

use drover_tests::Scratch;

/// Writes `files` into a fresh scratch directory, runs each command line in order, and
/// snapshots the joined transcripts under `name`.
fn check(name: &str, files: &[(&str, &[u8])], commands: &[&[&str]]) {
    let scratch = Scratch::new(name);
    for (file, contents) in files {
        std::fs::write(scratch.path.join(file), contents).expect("write fixture");
    }
    let transcript: Vec<String> =
        commands.iter().map(|args| scratch.drover(args).to_string()).collect();
    insta::assert_snapshot!(name, transcript.join("\n\n"));
}

#[test]
fn quick_start() {
    // The README's steps, verbatim in spirit: init, validate, print the API JSON.
    check(
        "quick_start",
        &[],
        &[
            &["job", "init"],
            &["job", "validate", "example.nomad.hcl"],
            &["job", "init"],
            &["job", "init", "-short", "short.nomad.hcl"],
            &["validate", "short.nomad.hcl"],
        ],
    );
}

#[test]
fn run_output_prints_the_api_json_that_validates_again() {
    let scratch = Scratch::new("run-output");
    assert_eq!(scratch.drover(&["job", "init"]).code, 0);
    let output = scratch.drover(&["job", "run", "-output", "example.nomad.hcl"]);
    assert_eq!(output.code, 0, "{output}");
    std::fs::write(scratch.path.join("example.json"), &output.stdout).unwrap();
    // The API form round-trips: validating it as JSON succeeds and prints it unchanged.
    let again = scratch.drover(&["job", "run", "-output", "example.json"]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(again.stdout, output.stdout);
    insta::assert_snapshot!("run_output_example_json", output.stdout);
}

const BROKEN_JOB: &str = r#"job "web" {
  group "frontend" {
    cout = 3
    task "nginx" {
      driver = "docker"
      resources {
        memory = 4
      }
    }
  }
}
"#;

#[test]
fn invalid_jobs_are_reported_with_locations() {
    check(
        "invalid_jobs",
        &[("broken.nomad.hcl", BROKEN_JOB.as_bytes()), ("notjson.json", b"{\"Job\": ")],
        &[
            &["job", "validate", "broken.nomad.hcl"],
            &["job", "run", "-output", "broken.nomad.hcl"],
            &["job", "validate", "notjson.json"],
            &["job", "validate", "missing.nomad.hcl"],
        ],
    );
}

const VARIABLES_JOB: &str = r#"variable "image" {
  type    = string
  default = "nginx:1.27"
}

variable "count" {
  type = number
}

job "web" {
  group "frontend" {
    count = var.count
    task "nginx" {
      driver = "docker"
      config {
        image = var.image
      }
    }
  }
}
"#;

#[test]
fn variables_come_from_flags_and_files() {
    check(
        "variables",
        &[
            ("web.nomad.hcl", VARIABLES_JOB.as_bytes()),
            ("prod.hcl", b"count = 5\nimage = \"nginx:1.28\"\n"),
        ],
        &[
            &["job", "validate", "web.nomad.hcl"],
            &["job", "validate", "-var", "count=2", "web.nomad.hcl"],
            &["job", "validate", "-var-file=prod.hcl", "web.nomad.hcl"],
            &["job", "validate", "-var", "nope=1", "-var", "count=1", "web.nomad.hcl"],
            &["job", "validate", "-var", "count", "web.nomad.hcl"],
        ],
    );
}

#[test]
fn variable_values_land_in_the_job() {
    let scratch = Scratch::new("variable-values");
    std::fs::write(scratch.path.join("web.nomad.hcl"), VARIABLES_JOB).unwrap();
    std::fs::write(scratch.path.join("prod.hcl"), "count = 5\nimage = \"nginx:1.28\"\n").unwrap();
    // A -var given after the var file wins over it, as in Nomad.
    let args =
        ["job", "run", "-output", "-var-file", "prod.hcl", "-var", "count=7", "web.nomad.hcl"];
    let output = scratch.drover(&args);
    assert_eq!(output.code, 0, "{output}");
    let job: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON output");
    let group = &job["Job"]["TaskGroups"][0];
    assert_eq!(group["Count"], 7);
    assert_eq!(group["Tasks"][0]["Config"]["image"], "nginx:1.28");
}

#[test]
fn usage_errors_and_help() {
    check(
        "usage",
        &[],
        &[
            &["--help"],
            &["job", "-help"],
            &["job"],
            &["jobs"],
            &["job", "validate"],
            &["job", "validate", "-bogus", "x.hcl"],
            &["job", "run", "--help"],
            &["version"],
        ],
    );
}

#[test]
fn flags_take_one_or_two_dashes_and_either_value_form() {
    // Go's flag package, which Nomad uses, reads all of these the same way.
    check(
        "flag_spellings",
        &[("web.nomad.hcl", VARIABLES_JOB.as_bytes()), ("prod.hcl", b"count = 5\n")],
        &[
            &["job", "validate", "--var", "count=2", "web.nomad.hcl"],
            &["job", "validate", "--var=count=2", "web.nomad.hcl"],
            &["job", "validate", "-var-file", "prod.hcl", "web.nomad.hcl"],
            &["job", "validate", "--var-file=prod.hcl", "web.nomad.hcl"],
            &["job", "validate", "-var-file", "absent.hcl", "web.nomad.hcl"],
            &["job", "validate", "-var=count=2", "web.nomad.hcl", "extra"],
            &[
                "job",
                "run",
                "--output=false",
                "-address=http://127.0.0.1:1",
                "-var",
                "count=1",
                "web.nomad.hcl",
            ],
            &["job", "init", "--short=maybe"],
        ],
    );
}

#[test]
fn hostile_files_get_located_errors() {
    let deep = format!("job \"a\" {{\n  meta = {}1{}\n}}\n", "[".repeat(80), "]".repeat(80));
    // One byte over the 10 MiB a job file may have.
    let big = vec![b'#'; 10 * 1024 * 1024 + 1];
    check(
        "hostile_files",
        &[
            ("utf8.hcl", b"job \"a\" {\n  meta {\n    k = \"\xff\"\n  }\n}\n"),
            ("nul.hcl", b"job \"a\" {\n\0}\n"),
            ("deep.hcl", deep.as_bytes()),
            ("big.hcl", &big),
            ("empty.hcl", b""),
            ("vars-only.hcl", b"variable \"x\" {\n  default = 1\n}\n"),
        ],
        &[
            &["job", "validate", "utf8.hcl"],
            &["job", "validate", "nul.hcl"],
            &["job", "validate", "deep.hcl"],
            &["job", "validate", "big.hcl"],
            &["job", "validate", "empty.hcl"],
            &["job", "validate", "vars-only.hcl"],
        ],
    );
}

#[test]
fn json_jobs_validate_and_print() {
    let scratch = Scratch::new("json-jobs");
    assert_eq!(scratch.drover(&["job", "init", "-short"]).code, 0);
    let output = scratch.drover(&["job", "run", "-output", "example.nomad.hcl"]);
    assert_eq!(output.code, 0, "{output}");
    // `-json` reads API JSON whatever the file is called, wrapped or bare.
    std::fs::write(scratch.path.join("wrapped.txt"), &output.stdout).unwrap();
    let document: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    std::fs::write(scratch.path.join("bare.txt"), document["Job"].to_string()).unwrap();
    for file in ["wrapped.txt", "bare.txt"] {
        let again = scratch.drover(&["job", "run", "-output", "-json", file]);
        assert_eq!((again.code, again.stdout.as_str()), (0, output.stdout.as_str()), "{again}");
        let validated = scratch.drover(&["job", "validate", "-json", file]);
        assert_eq!(validated.stdout, "Job validation successful\n", "{validated}");
    }
    // Without -json a JSON file is read as HCL, which it is not.
    let as_hcl = scratch.drover(&["job", "validate", "bare.txt"]);
    assert_eq!(as_hcl.code, 1, "{as_hcl}");
}

#[test]
fn tls_makes_a_ca_and_role_certificates_and_never_overwrites() {
    check(
        "tls",
        &[],
        &[
            &["tls", "ca", "create"],
            &["tls", "cert", "create", "-server", "-region", "eu"],
            &["tls", "cert", "create", "-client", "-additional-ipaddress", "10.0.0.9"],
            &["tls", "cert", "create", "-cli"],
            &["tls", "ca", "create"],
            &["tls", "cert", "create", "-server", "-region", "eu"],
            &["tls", "cert", "create"],
            &["tls", "cert", "create", "-client", "-server"],
            &["tls", "cert", "create", "-client", "-region", "x", "-additional-ipaddress", "nope"],
            &["tls", "cert", "create", "-client", "-region", "y", "-ca", "missing.pem"],
            &["tls", "ca", "create", "-days", "0"],
        ],
    );
}

#[test]
fn tls_keys_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("tls-modes");
    assert_eq!(scratch.drover(&["tls", "ca", "create"]).code, 0);
    assert_eq!(scratch.drover(&["tls", "cert", "create", "-server"]).code, 0);
    for (file, mode) in [
        ("drover-agent-ca.pem", 0o644),
        ("drover-agent-ca-key.pem", 0o600),
        ("global-server-drover.pem", 0o644),
        ("global-server-drover-key.pem", 0o600),
    ] {
        let metadata = std::fs::metadata(scratch.path.join(file)).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, mode, "{file}");
    }
}
