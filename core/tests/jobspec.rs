//! Jobspec tests: every fixture under `fixtures/jobspec/valid` parses to the canonical Job
//! in its snapshot, every one under `fixtures/jobspec/invalid` fails with the report in its
//! snapshot; plus variables, functions and hostile bytes.

use drover_core::jobspec::{self, NESTING_DEPTH_MAX, ParseOptions, SOURCE_LEN_MAX_BYTES, VarFile};
use drover_core::model::Job;
use std::path::{Path, PathBuf};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobspec").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    files.sort();
    files
}

/// The one helper: parses a fixture and returns the canonical Job as pretty JSON, or the
/// rendered report.
fn check(path: &Path, options: &ParseOptions) -> Result<String, String> {
    let name = path.file_name().and_then(|n| n.to_str()).expect("file name");
    let bytes = std::fs::read(path).expect("fixture readable");
    match jobspec::parse(name, &bytes, options) {
        Ok(job) => Ok(serde_json::to_string_pretty(&job).expect("serialisable")),
        Err(report) => Err(report.to_string()),
    }
}

fn parse_str(text: &str, options: &ParseOptions) -> Result<Job, String> {
    jobspec::parse("test.hcl", text.as_bytes(), options).map_err(|r| r.to_string())
}

#[test]
fn valid_fixtures_parse_to_their_snapshots() {
    let files = fixtures("valid");
    assert!(files.len() >= 30, "only {} valid fixtures", files.len());
    let mut failures = Vec::new();
    for file in files {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("stem").to_owned();
        match check(&file, &ParseOptions::default()) {
            Ok(json) => insta::assert_snapshot!(format!("valid__{stem}"), json),
            Err(report) => failures.push(format!("{} should be valid:\n{report}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_fixtures_fail_with_their_snapshots() {
    let files = fixtures("invalid");
    assert!(files.len() >= 20, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for file in files {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("stem").to_owned();
        match check(&file, &ParseOptions::default()) {
            Ok(_) => failures.push(format!("{} should be invalid", file.display())),
            Err(report) => insta::assert_snapshot!(format!("invalid__{stem}"), report),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const VARS_JOB: &str = r#"
variable "count" {
  type    = number
  default = 1
}
variable "image" {
  default = "redis:6"
}
variable "dcs" {
  type    = list(string)
  default = ["dc1"]
}
job "j" {
  datacenters = var.dcs
  group "g" {
    count = var.count
    task "t" {
      driver = "docker"
      config {
        image = var.image
      }
    }
  }
}
"#;

fn image(job: &Job) -> String {
    job.task_groups[0].tasks[0].config["image"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn var_flags_override_var_files_which_override_defaults() {
    let defaults = parse_str(VARS_JOB, &ParseOptions::default()).expect("valid");
    assert_eq!(defaults.task_groups[0].count, 1);
    assert_eq!(image(&defaults), "redis:6");

    let file =
        VarFile { name: "prod.hcl".into(), contents: "count = 3\nimage = \"redis:7\"\n".into() };
    let json =
        VarFile { name: "more.json".into(), contents: r#"{"count": 4, "dcs": ["a", "b"]}"#.into() };
    let options = ParseOptions { vars: vec![], var_files: vec![file.clone(), json] };
    let job = parse_str(VARS_JOB, &options).expect("valid");
    assert_eq!(job.task_groups[0].count, 4, "the later var file wins");
    assert_eq!(image(&job), "redis:7");
    assert_eq!(job.datacenters, ["a", "b"]);

    let options = ParseOptions {
        vars: vec![
            ("count".into(), "5".into()),
            ("count".into(), "6".into()),
            ("dcs".into(), r#"["x"]"#.into()),
        ],
        var_files: vec![file],
    };
    let job = parse_str(VARS_JOB, &options).expect("valid");
    assert_eq!(job.task_groups[0].count, 6, "-var beats var files, and the last -var wins");
    assert_eq!(image(&job), "redis:7");
    assert_eq!(job.datacenters, ["x"]);
}

#[test]
fn var_errors_are_reported_with_their_source() {
    let options = ParseOptions {
        vars: vec![("nope".into(), "1".into()), ("count".into(), "many".into())],
        var_files: vec![VarFile {
            name: "bad.hcl".into(),
            contents: "\nimage = 1\ncuont = 2\n".into(),
        }],
    };
    let report = parse_str(VARS_JOB, &options).expect_err("invalid");
    insta::assert_snapshot!("var_errors", report);

    let json = VarFile { name: "bad.json".into(), contents: "{\"count\": [1]}".into() };
    let report = parse_str(VARS_JOB, &ParseOptions { vars: vec![], var_files: vec![json] })
        .expect_err("invalid");
    assert_eq!(report, "bad.json:1:2: variable \"count\": expected number, got a list");

    let broken = VarFile { name: "broken.json".into(), contents: "{\n  \"count\": }".into() };
    let report = parse_str(VARS_JOB, &ParseOptions { vars: vec![], var_files: vec![broken] })
        .expect_err("invalid");
    assert!(report.starts_with("broken.json:2:"), "{report}");
}

#[test]
fn var_flags_convert_to_the_declared_type() {
    let options = ParseOptions { vars: vec![("count".into(), "2".into())], var_files: vec![] };
    assert_eq!(parse_str(VARS_JOB, &options).expect("valid").task_groups[0].count, 2);
    let options =
        ParseOptions { vars: vec![("dcs".into(), "not a list".into())], var_files: vec![] };
    let report = parse_str(VARS_JOB, &options).expect_err("invalid");
    assert!(
        report.starts_with("-var dcs=not a list: variable \"dcs\": not a valid list(string) value"),
        "{report}"
    );
}

#[test]
fn functions_evaluate() {
    let job = r#"
job "f" {
  meta {
    a = format("%s/%d", upper("x"), length([1, 2]))
    b = join("-", concat(split(",", "a,b"), [lower("C")]))
    c = lookup(merge({ k = "v" }, { k = "w" }), "k", "none")
    d = tostring(tonumber("10") * 2)
    e = jsonencode([keys({ b = 1, a = 2 }), values({ b = 1, a = 2 })])
    f = replace(trimspace("  a.b  "), ".", "/")
    g = "${contains(["x"], "x")} ${element(["p", "q"], 3)} ${coalesce(null, "", "z")}"
    h = "${min(4, 2)} ${max(4, 2)} ${abs(-3)}"
  }
  group "g" {
    task "t" {
      driver = "docker"
      config {
        image = "x"
      }
    }
  }
}
"#;
    let job = parse_str(job, &ParseOptions::default()).expect("valid");
    let meta: Vec<String> = job.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        meta,
        [
            "a=X/2",
            "b=a-b-c",
            "c=w",
            "d=20",
            "e=[[\"a\",\"b\"],[2,1]]",
            "f=a/b",
            "g=true q z",
            "h=2 4 3",
        ]
    );
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    let options = ParseOptions::default();
    let bad_utf8 = jobspec::parse("x.hcl", b"job \"a\" {\n  meta { k = \"\xff\" }\n}", &options)
        .expect_err("invalid");
    assert_eq!(
        bad_utf8.to_string(),
        "x.hcl:2:15: invalid UTF-8 at byte 24; a jobspec must be UTF-8 text"
    );

    let nul = jobspec::parse("x.hcl", b"job \"a\" {\0}", &options).expect_err("invalid");
    assert_eq!(nul.to_string(), "x.hcl:1:10: NUL byte in the file; a jobspec must be text");

    let big = vec![b' '; SOURCE_LEN_MAX_BYTES + 1];
    let report = jobspec::parse("big.hcl", &big, &options).expect_err("invalid");
    assert!(report.to_string().starts_with("big.hcl:1:1: the file is 10485761 bytes"), "{report}");

    let deep = format!("job \"a\" {{ meta = {}1{} }}", "[".repeat(100_000), "]".repeat(100_000));
    let report = jobspec::parse("deep.hcl", deep.as_bytes(), &options).expect_err("invalid");
    assert!(report.to_string().contains("nested more than 64 levels"), "{report}");

    // Deep expressions without brackets: the evaluator's own depth bound answers.
    for expr in [
        "!".repeat(100_000) + "true",
        "-".repeat(100_000) + "1",
        "true ? 1 : ".repeat(100_000) + "1",
        "1".to_owned() + &" + 1".repeat(100_000),
        "var".to_owned() + &".x".repeat(100_000),
    ] {
        let text = format!("job \"a\" {{\n  meta = {{ k = {expr} }}\n}}\n# {}\n", "-".repeat(200));
        let report = jobspec::parse("unary.hcl", text.as_bytes(), &options).expect_err("invalid");
        let report = report.to_string();
        assert!(report.lines().any(|l| l.starts_with("unary.hcl:2:")), "{report}");
        eprintln!("{report}");
    }

    // Nesting just under the bound parses (and fails only for its content).
    let depth = NESTING_DEPTH_MAX - 3;
    let ok = format!(
        "job \"a\" {{ meta = {{ k = jsonencode({}1{}) }} }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let report = jobspec::parse("ok.hcl", ok.as_bytes(), &options).expect_err("no groups");
    assert!(report.to_string().contains("has no groups"), "{report}");

    // Arbitrary bytes never panic.
    for seed in 0u32..300 {
        let bytes: Vec<u8> = (0..200u32)
            .map(|i| (seed.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) as u8 % 128)
            .collect();
        let _ = jobspec::parse("fuzz.hcl", &bytes, &options);
    }
}

#[test]
fn report_lists_diagnostics_with_locations() {
    let text = "job \"a\" {\n  group \"g\" {\n    cout = 1\n    task \"t\" {\n      driver = \"x\"\n    }\n  }\n}\n";
    let report =
        jobspec::parse("r.hcl", text.as_bytes(), &ParseOptions::default()).expect_err("invalid");
    assert_eq!(report.diagnostics().len(), 1, "{report}");
    let d = &report.diagnostics()[0];
    assert_eq!((d.file.as_str(), d.line, d.column), ("r.hcl", 3, 5));
    assert_eq!(d.message, "unknown attribute \"cout\" in group \"g\"; did you mean \"count\"?");
}

#[test]
fn expensive_expressions_are_refused() {
    let mut locals = String::from("locals {\n  s0 = \"xxxxxxxxxxxxxxxx\"\n");
    for i in 1..40 {
        locals.push_str(&format!("  s{i} = \"${{local.s{}}}${{local.s{}}}\"\n", i - 1, i - 1));
    }
    locals.push_str("}\njob \"a\" {\n  meta {\n    k = local.s39\n  }\n}\n");
    let report = parse_str(&locals, &ParseOptions::default()).expect_err("too big");
    assert!(report.contains("value is larger than"), "{report}");

    let spin = "job \"a\" {\n  meta {\n    k = length([for a in range(1000) : [for b in range(1000) : [for c in range(1000) : c]]])\n  }\n}\n";
    let report = parse_str(spin, &ParseOptions::default()).expect_err("too slow");
    assert!(report.contains("too many steps"), "{report}");

    let wide = "job \"a\" {\n  meta {\n    k = format(\"%999999999d\", 1)\n  }\n}\n";
    let report = parse_str(wide, &ParseOptions::default()).expect_err("too wide");
    assert!(report.contains("at most 1024"), "{report}");
}

#[test]
fn mangled_fixtures_never_panic() {
    let options = ParseOptions::default();
    for file in fixtures("valid").into_iter().chain(fixtures("invalid")) {
        let bytes = std::fs::read(&file).expect("fixture");
        for cut in (0..bytes.len()).step_by(7) {
            let _ = jobspec::parse("cut.hcl", &bytes[..cut], &options);
            let mut flipped = bytes.clone();
            flipped[cut] = b"{}[]\"$%~=#\n"[cut % 11];
            let _ = jobspec::parse("flip.hcl", &flipped, &options);
        }
    }
}
