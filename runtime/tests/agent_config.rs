//! The agent's configuration files: what a good file says once merged and resolved, and
//! where a bad one is wrong (`file:line:col: message`).

use drover_runtime::agent::config::{FileConfig, parse, resolve, resolve_dev};
use std::fmt::Debug;

/// The one helper: parses each `(name, text)` in order, merges them and resolves the
/// whole for a cluster agent, rendering either the settings or every error.
fn check(files: &[(&str, &str)]) -> String {
    check_with(files, resolve)
}

/// [`check`] with the given resolution (a cluster agent's, or `-dev`'s).
fn check_with<T: Debug>(
    files: &[(&str, &str)],
    resolve: impl Fn(FileConfig, &str) -> Result<T, String>,
) -> String {
    let mut merged = FileConfig::default();
    for (name, text) in files {
        match parse(name, text) {
            Ok(config) => merged = merged.merge(config),
            Err(errors) => return format!("parse error:\n{errors}"),
        }
    }
    match resolve(merged, "host-1") {
        Ok(settings) => format!("{settings:#?}"),
        Err(message) => format!("refused:\n{message}"),
    }
}

const SERVER: &str = r#"
data_dir   = "/var/lib/drover"
bind_addr  = "10.0.0.1"
region     = "eu"
datacenter = "eu-west-1"
name       = "server-1"

ports {
  http = 5646
  rpc  = 5647
  serf = 5648
}

server {
  enabled          = true
  bootstrap_expect = 3
  encrypt          = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
  server_join {
    retry_join = ["10.0.0.2", "10.0.0.3:5648"]
  }
}

tls {
  rpc       = true
  ca_file   = "ca.pem"
  cert_file = "eu-server-drover.pem"
  key_file  = "eu-server-drover-key.pem"
}
"#;

#[test]
fn a_server_file_resolves_with_its_ports_and_join_targets() {
    insta::assert_snapshot!("server", check(&[("server.hcl", SERVER)]));
}

#[test]
fn a_later_file_wins_and_lists_are_replaced_whole() {
    let later = r#"
name = "server-9"
log_level = "DEBUG"
advertise { rpc = "192.0.2.1" }
server { retry_join = ["10.0.0.9"] }
client {
  enabled = true
  servers = ["10.0.0.1:5647"]
}
autopilot {
  cleanup_dead_servers      = false
  last_contact_threshold    = "1s"
  server_stabilization_time = "30s"
  max_trailing_logs         = 500
  min_quorum                = 5
}
"#;
    insta::assert_snapshot!("merged", check(&[("server.hcl", SERVER), ("later.hcl", later)]));
}

#[test]
fn a_client_file_takes_defaults_for_what_it_does_not_say() {
    let client = r#"
data_dir  = "/var/lib/drover"
bind_addr = "127.0.0.1"
client {
  enabled = true
  servers = ["127.0.0.1", "127.0.0.2:4647"]
}
tls {
  ca_file   = "ca.pem"
  cert_file = "c.pem"
  key_file  = "c-key.pem"
}
"#;
    insta::assert_snapshot!("client", check(&[("client.hcl", client)]));
}

#[test]
fn unknown_keys_and_bad_values_are_reported_where_they_are() {
    let bad = r#"
data_dir = 7
regoin   = "eu"
log_level = "verbose"
ports {
  http = 70000
  grpc = 1
}
server {
  enabled          = "yes"
  bootstrap_expet  = 3
  bootstrap_expect = 0
  encrypt          = "c2hvcnQ="
  server_join {
    retry_join = "10.0.0.2"
  }
}
client {
  servers = ["a", 3]
}
tls {
  rpc  = false
  http = "yes"
  verify_https_client = 1
}
telemetry {}
autopilot {
  cleanup_dead_servers      = "no"
  last_contact_threshold    = "0s"
  server_stabilization_time = "soon"
  max_trailing_logs         = -1
  enable_redundancy_zones   = true
  min_quorm                 = 3
}
"#;
    insta::assert_snapshot!("bad_values", check(&[("bad.hcl", bad)]));
}

#[test]
fn a_syntax_error_names_its_place() {
    insta::assert_snapshot!("syntax", check(&[("broken.hcl", "server {\n  enabled = \n")]));
}

#[test]
fn an_agent_without_tls_is_refused_with_the_commands_that_make_it() {
    let no_tls = r#"
data_dir = "/tmp/d"
bind_addr = "127.0.0.1"
server {
  enabled = true
  bootstrap_expect = 1
}
"#;
    insta::assert_snapshot!("no_tls", check(&[("server.hcl", no_tls)]));
}

#[test]
fn what_a_mode_needs_is_asked_for() {
    let tls = "tls {\n ca_file = \"a\"\n cert_file = \"b\"\n key_file = \"c\"\n}\n";
    let cases = [
        ("no mode", "data_dir = \"/d\"\n"),
        ("no data dir", "server {\n enabled = true\n bootstrap_expect = 1\n}\n"),
        ("no bootstrap_expect", "data_dir = \"/d\"\nserver { enabled = true }\n"),
        ("client without servers", "data_dir = \"/d\"\nclient { enabled = true }\n"),
        (
            "client with a gossip key",
            "data_dir = \"/d\"\nclient {\n enabled = true\n servers = [\"a\"]\n}\nserver { encrypt = \"AAECAwQFBgcICQoLDA0ODw==\" }\n",
        ),
        (
            "nothing to advertise",
            "data_dir = \"/d\"\nserver {\n enabled = true\n bootstrap_expect = 1\n}\n",
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(what, text)| format!("{what}: {}", check(&[("a.hcl", text), ("tls.hcl", tls)])))
        .collect();
    insta::assert_snapshot!("modes", rendered.join("\n"));
}

#[test]
fn tls_http_serves_the_api_over_https_and_may_ask_for_client_certificates() {
    let files = "tls {\n ca_file = \"a\"\n cert_file = \"b\"\n key_file = \"c\"\n}\n";
    let server = "data_dir = \"/d\"\nbind_addr = \"127.0.0.1\"\nserver {\n enabled = true\n bootstrap_expect = 1\n}\n";
    let cases = [
        ("not said", ""),
        ("http", "tls { http = true }"),
        ("mutual", "tls {\n http = true\n verify_https_client = true\n}"),
        ("mutual said off", "tls {\n http = true\n verify_https_client = false\n}"),
        ("verify without http", "tls { verify_https_client = true }"),
        ("tls13 only", "tls {\n http = true\n tls_min_version = \"tls13\"\n}"),
        ("tls12 said", "tls {\n http = true\n tls_min_version = \"tls12\"\n}"),
        ("tls11", "tls {\n http = true\n tls_min_version = \"tls11\"\n}"),
        ("unknown version", "tls {\n http = true\n tls_min_version = \"ssl3\"\n}"),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(what, text)| {
            let whole = check(&[("server.hcl", server), ("files.hcl", files), ("http.hcl", text)]);
            // Only what decides the API's transport, or the refusal.
            let kept: Vec<&str> = whole
                .lines()
                .skip_while(|l| {
                    !l.contains("http_tls") && !l.starts_with("refused") && !l.contains("error")
                })
                .take_while(|l| !l.starts_with("    autopilot"))
                .map(str::trim)
                .collect();
            format!("{what}: {}", kept.join(" "))
        })
        .collect();
    insta::assert_snapshot!("http_tls", rendered.join("\n"));
}

#[test]
fn an_ephemeral_http_port_is_for_dev_only() {
    // As `-http-port 0` leaves it: a file cannot say port 0.
    let mut flags = FileConfig::default();
    flags.ports.http = Some(0);
    let server = parse("server.hcl", SERVER).expect("the server file parses");
    let refused = resolve(server.merge(flags.clone()), "host-1").expect_err("refused");
    assert!(refused.starts_with("-http-port 0 (an ephemeral port) is for -dev only"), "{refused}");
    let dev = resolve_dev(flags, "host-1").expect("-dev takes it");
    assert_eq!(dev.http_bind, "127.0.0.1:0");
}

#[test]
fn a_node_advertises_an_http_address_other_agents_can_dial() {
    let client = "data_dir = \"/d\"\nclient {\n enabled = true\n servers = [\"10.0.0.1\"]\n}\ntls {\n ca_file = \"a\"\n cert_file = \"b\"\n key_file = \"c\"\n}\n";
    let cases = [
        ("bound to one address", "bind_addr = \"10.0.0.7\""),
        (
            "bound to every interface",
            "advertise {\n rpc  = \"192.0.2.1\"\n serf = \"192.0.2.1\"\n}",
        ),
        (
            "bound to every IPv6 interface",
            "bind_addr = \"::\"\nadvertise {\n rpc  = \"2001:db8::1\"\n serf = \"2001:db8::1\"\n}",
        ),
        (
            "said",
            "advertise {\n rpc  = \"192.0.2.1\"\n serf = \"192.0.2.1\"\n http = \"203.0.113.5\"\n}",
        ),
        ("said with a port", "bind_addr = \"10.0.0.7\"\nadvertise { http = \"203.0.113.5:80\" }"),
        ("its own port", "bind_addr = \"10.0.0.7\"\nports { http = 8646 }"),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(what, text)| {
            let whole = check(&[("client.hcl", client), ("addrs.hcl", text)]);
            let advertised =
                whole.lines().find(|l| l.contains("http_advertise") || l.starts_with("refused"));
            format!("{what}: {}", advertised.unwrap_or(&whole).trim())
        })
        .collect();
    insta::assert_snapshot!("http_advertise", rendered.join("\n"));
}

#[test]
fn dev_takes_a_file_over_its_defaults_and_refuses_what_it_cannot_honour() {
    let https = r#"
name = "laptop"
ports { http = 6646 }
tls {
  http      = true
  ca_file   = "ca.pem"
  cert_file = "global-server-drover.pem"
  key_file  = "global-server-drover-key.pem"
}
autopilot { server_stabilization_time = "5s" }
"#;
    insta::assert_snapshot!("dev_https", check_with(&[("dev.hcl", https)], resolve_dev));
    insta::assert_snapshot!("dev_defaults", check_with(&[], resolve_dev));
    let cluster = r#"
server {
  enabled          = true
  bootstrap_expect = 3
  server_join { retry_join = ["10.0.0.2"] }
}
client { servers = ["10.0.0.2"] }
ports { rpc = 5647 }
advertise { http = "10.0.0.1" }
"#;
    let refused = [
        check_with(&[("cluster.hcl", cluster)], resolve_dev),
        check_with(&[("half.hcl", "tls {\n  http = true\n}\n")], resolve_dev),
        check_with(&[("verify.hcl", "tls {\n  verify_https_client = true\n}\n")], resolve_dev),
    ];
    insta::assert_snapshot!("dev_refused", refused.join("\n\n"));
}
