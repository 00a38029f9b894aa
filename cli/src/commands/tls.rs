//! `drover tls ca create` and `drover tls cert create`: the cluster's own CA and the
//! agents' certificates, written to the current directory (never over an existing file).

use super::{Io, dispatch, parse_flags};
use crate::flags::{FlagSpec, Parsed};
use drover_runtime::tls::{
    CA_CERT_FILE, CA_DAYS_DEFAULT, CA_KEY_FILE, CERT_DAYS_DEFAULT, CertSpec, DOMAIN_DEFAULT,
    PemPair, Role, create_ca, create_cert,
};
use std::io::Write;
use std::net::IpAddr;
use time::OffsetDateTime;

const TLS_HELP: &str = "\
Usage: drover tls <subcommand> <subcommand> [options]

  This command groups subcommands for creating the certificates agents use to
  verify each other.

  Create a CA:

      $ drover tls ca create

  Create a server certificate for region global:

      $ drover tls cert create -server -region global

Subcommands:
    ca      Create a certificate authority
    cert    Create agent certificates signed by the CA
";

const CA_HELP: &str = "\
Usage: drover tls ca create [options]

  Creates a certificate authority in the current directory:
  drover-agent-ca.pem and drover-agent-ca-key.pem.

CA Create Options:

  -days=<int>
    How long the CA is valid, in days. Defaults to 1825.

  -domain=<string>
    The domain agents' names end in. Defaults to \"drover\".
";

const CERT_HELP: &str = "\
Usage: drover tls cert create [options]

  Creates a certificate and key for an agent role, signed by the CA, in the
  current directory: <region>-<role>-<domain>.pem and its -key.pem.

Cert Create Options:

  -server, -client, -cli
    The role the certificate is for; exactly one.

  -region=<string>
    The region the agent belongs to. Defaults to \"global\".

  -ca=<path>, -key=<path>
    The CA certificate and key. Default to drover-agent-ca.pem and
    drover-agent-ca-key.pem.

  -days=<int>
    How long the certificate is valid, in days. Defaults to 365.

  -domain=<string>
    The domain agents' names end in. Defaults to \"drover\".

  -additional-dnsname=<string>, -additional-ipaddress=<ip>
    More names or addresses to add; may be repeated.
";

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, &[("ca", ca), ("cert", cert)], TLS_HELP, io)
}

fn ca(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, &[("create", ca_create)], CA_HELP, io)
}

fn cert(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, &[("create", cert_create)], CERT_HELP, io)
}

fn ca_create(args: &[String], io: &mut Io<'_>) -> u8 {
    let specs = [FlagSpec::value("days"), FlagSpec::value("domain")];
    let flags = match parse_flags(args, &specs, CA_HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    let result = days(&flags, CA_DAYS_DEFAULT).and_then(|days| {
        let domain = flags.last("domain").unwrap_or(DOMAIN_DEFAULT);
        create_ca(domain, days, OffsetDateTime::now_utc()).map_err(|e| e.to_string())
    });
    match result.and_then(|pair| save(&pair, CA_CERT_FILE, CA_KEY_FILE)) {
        Ok(()) => {
            let _ = writeln!(io.out, "==> CA certificate saved to: {CA_CERT_FILE}");
            let _ = writeln!(io.out, "==> CA certificate key saved to: {CA_KEY_FILE}");
            0
        }
        Err(message) => fail(io, &message),
    }
}

fn cert_create(args: &[String], io: &mut Io<'_>) -> u8 {
    let specs = [
        FlagSpec::bool("server"),
        FlagSpec::bool("client"),
        FlagSpec::bool("cli"),
        FlagSpec::value("region"),
        FlagSpec::value("ca"),
        FlagSpec::value("key"),
        FlagSpec::value("days"),
        FlagSpec::value("domain"),
        FlagSpec::repeated("additional-dnsname"),
        FlagSpec::repeated("additional-ipaddress"),
    ];
    let flags = match parse_flags(args, &specs, CERT_HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    let spec = match cert_spec(&flags) {
        Ok(spec) => spec,
        Err(message) => return fail(io, &message),
    };
    let ca_file = flags.last("ca").unwrap_or(CA_CERT_FILE);
    let key_file = flags.last("key").unwrap_or(CA_KEY_FILE);
    let (cert_file, cert_key_file) = spec.role.file_names(&spec.region, &spec.domain);
    let created = read_ca(ca_file, key_file)
        .and_then(|ca| {
            create_cert(&ca, &spec, OffsetDateTime::now_utc()).map_err(|e| e.to_string())
        })
        .and_then(|pair| save(&pair, &cert_file, &cert_key_file));
    if let Err(message) = created {
        return fail(io, &message);
    }
    let role = capitalised(spec.role.name());
    let _ = writeln!(io.out, "==> Using CA file {ca_file} and CA key {key_file}");
    let _ = writeln!(io.out, "==> {role} Certificate saved to {cert_file}");
    let _ = writeln!(io.out, "==> {role} Certificate key saved to {cert_key_file}");
    0
}

fn cert_spec(flags: &Parsed) -> Result<CertSpec, String> {
    let roles: Vec<Role> = [("server", Role::Server), ("client", Role::Client), ("cli", Role::Cli)]
        .into_iter()
        .filter(|(flag, _)| flags.is_set(flag))
        .map(|(_, role)| role)
        .collect();
    let [role] = roles[..] else {
        return Err("Exactly one of -server, -client or -cli must be given".into());
    };
    let extra_ips = flags
        .all("additional-ipaddress")
        .iter()
        .map(|text| text.parse::<IpAddr>().map_err(|_| format!("Invalid IP address: {text:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CertSpec {
        role,
        region: flags.last("region").unwrap_or("global").to_owned(),
        domain: flags.last("domain").unwrap_or(DOMAIN_DEFAULT).to_owned(),
        days: days(flags, CERT_DAYS_DEFAULT)?,
        extra_dns_names: flags.all("additional-dnsname").to_vec(),
        extra_ips,
    })
}

fn days(flags: &Parsed, default: u32) -> Result<u32, String> {
    match flags.last("days") {
        None => Ok(default),
        Some(text) => match text.parse::<u32>() {
            Ok(days) if days > 0 => Ok(days),
            _ => Err(format!("Invalid -days value {text:?}: must be a positive number of days")),
        },
    }
}

fn read_ca(cert_file: &str, key_file: &str) -> Result<PemPair, String> {
    let read = |file: &str| {
        std::fs::read_to_string(file).map_err(|e| format!("Error reading CA file {file:?}: {e}"))
    };
    Ok(PemPair { cert_pem: read(cert_file)?, key_pem: read(key_file)? })
}

/// Writes both files, refusing to replace either (a CA key overwritten is a cluster lost).
fn save(pair: &PemPair, cert_file: &str, key_file: &str) -> Result<(), String> {
    for file in [cert_file, key_file] {
        if std::path::Path::new(file).exists() {
            return Err(format!("File '{file}' already exists"));
        }
    }
    write_new(cert_file, &pair.cert_pem, 0o644)?;
    write_new(key_file, &pair.key_pem, 0o600)
}

fn write_new(file: &str, contents: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(file)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| format!("Error writing {file:?}: {e}"))
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn fail(io: &mut Io<'_>, message: &str) -> u8 {
    let _ = writeln!(io.err, "{message}");
    1
}
