//! The CLI's side of an `https://` agent: which CA to trust, which certificate to show,
//! which name to expect, as Nomad's global flags and environment say it
//! (`-ca-cert`/`NOMAD_CACERT`, `-ca-path`/`NOMAD_CAPATH`, `-client-cert`/`NOMAD_CLIENT_CERT`,
//! `-client-key`/`NOMAD_CLIENT_KEY`, `-tls-server-name`/`NOMAD_TLS_SERVER_NAME`,
//! `-tls-skip-verify`/`NOMAD_SKIP_VERIFY`), and TLS failures worded as Go's client words
//! them, so an operator's search for the message finds Nomad's answers.

use crate::flags::Parsed;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
use std::io::Read;
use std::sync::Arc;

/// The largest CA, certificate or key file read.
const PEM_FILE_LEN_MAX_BYTES: u64 = 1024 * 1024;
/// The most files read under a `-ca-path` directory.
const CA_PATH_FILES_MAX: usize = 1024;
/// Where the system's trusted CAs are, tried in order when no CA is given (Go's list
/// for Linux, so the CLI trusts what Nomad's would).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What the flags and the environment say about TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca_cert: Option<String>,
    /// A directory of PEM CA files; `ca_cert` wins when both are given, as in Nomad.
    pub ca_path: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub server_name: Option<String>,
    pub skip_verify: bool,
}

impl TlsOptions {
    /// Flags first, then `NOMAD_*`; `env` looks a variable up (non-empty values only).
    pub fn from_flags(
        flags: &Parsed,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsOptions, String> {
        let pick = |flag: &str, var: &str| flags.last(flag).map(str::to_owned).or_else(|| env(var));
        let skip_verify = match (flags.last("tls-skip-verify"), env("NOMAD_SKIP_VERIFY")) {
            (Some(flag), _) => flag == "true",
            (None, Some(text)) => parse_go_bool(&text).ok_or_else(|| {
                format!("Error initializing client: NOMAD_SKIP_VERIFY={text:?} is not a boolean")
            })?,
            (None, None) => false,
        };
        Ok(TlsOptions {
            ca_cert: pick("ca-cert", "NOMAD_CACERT"),
            ca_path: pick("ca-path", "NOMAD_CAPATH"),
            client_cert: pick("client-cert", "NOMAD_CLIENT_CERT"),
            client_key: pick("client-key", "NOMAD_CLIENT_KEY"),
            server_name: pick("tls-server-name", "NOMAD_TLS_SERVER_NAME"),
            skip_verify,
        })
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A ready TLS client: the configuration and the name the agent's certificate must hold.
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// Reads the files `options` name; `host` is the address's host, the name expected
    /// unless `-tls-server-name` gives another.
    pub fn new(options: &TlsOptions, host: &str) -> Result<TlsClient, String> {
        let init = |message: String| format!("Error initializing client: {message}");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| init(e.to_string()))?;
        let builder = if options.skip_verify {
            let algorithms = provider.signature_verification_algorithms;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipVerify(algorithms)))
        } else {
            builder.with_root_certificates(roots(options).map_err(init)?)
        };
        let config = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let (chain, key) = client_identity(cert, key).map_err(init)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| init(format!("Error loading client certificate {cert}: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(init(
                    "a client certificate needs its key: give both -client-cert and -client-key"
                        .into(),
                ));
            }
        };
        let name = options.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| init(format!("invalid TLS server name {name:?}")))?;
        Ok(TlsClient { config: Arc::new(config), server_name })
    }
}

/// A PEM file's bytes, bounded; `what` names it in the error as Go's loaders do.
fn read_pem(path: &str, what: &str) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{what}: open {path}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_LEN_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{what}: read {path}: {e}"))?;
    if bytes.len() as u64 > PEM_FILE_LEN_MAX_BYTES {
        return Err(format!("{what}: {path} is larger than {PEM_FILE_LEN_MAX_BYTES} bytes"));
    }
    Ok(bytes)
}

/// The CAs to trust: the given file's, else those of the given directory, else the
/// system's.
fn roots(options: &TlsOptions) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match (&options.ca_cert, &options.ca_path) {
        (Some(path), _) => {
            let bytes = read_pem(path, "Error loading CA File")?;
            let bad = || format!("Error loading CA File: Couldn't parse PEM in: {path}");
            if add_pem_certs(&mut roots, &bytes).is_err() || roots.is_empty() {
                return Err(bad());
            }
        }
        (None, Some(dir)) => add_ca_path(&mut roots, dir)?,
        (None, None) => {
            if let Some(bytes) = SYSTEM_CA_FILES.iter().find_map(|p| read_pem(p, "").ok()) {
                // One unreadable entry of a system bundle does not make the others useless.
                let certs = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok);
                roots.add_parsable_certificates(certs);
            }
        }
    }
    Ok(roots)
}

/// Adds every certificate of a PEM file, or refuses the file if one does not parse.
fn add_pem_certs(roots: &mut rustls::RootCertStore, bytes: &[u8]) -> Result<(), ()> {
    for cert in CertificateDer::pem_slice_iter(bytes) {
        roots.add(cert.map_err(drop)?).map_err(drop)?;
    }
    Ok(())
}

/// The CAs of every file under `dir`, its tree walked in name order as Go's `filepath.Walk`
/// does (symbolic links to directories not followed); each file must hold PEM
/// certificates and one at least, as Nomad's `-ca-path` requires.
fn add_ca_path(roots: &mut rustls::RootCertStore, dir: &str) -> Result<(), String> {
    let mut files = Vec::new();
    ca_path_files(std::path::Path::new(dir), &mut files)?;
    for file in files {
        let file = file.display().to_string();
        let bytes = read_pem(&file, "Error loading file from CAPath")?;
        let before = roots.len();
        if add_pem_certs(roots, &bytes).is_err() || roots.len() == before {
            return Err(format!("Error loading CA Path: Couldn't parse PEM in: {file}"));
        }
    }
    if roots.is_empty() {
        return Err(format!("Error loading CA Path: no CA file in {dir}"));
    }
    Ok(())
}

/// The files under `dir`, in name order, subdirectories walked in place; at most
/// [`CA_PATH_FILES_MAX`].
fn ca_path_files(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    let unreadable = |e: std::io::Error| format!("Error loading CA Path: {}: {e}", dir.display());
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    for path in entries {
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            ca_path_files(&path, files)?;
        } else if files.len() == CA_PATH_FILES_MAX {
            return Err(format!(
                "Error loading CA Path: more than {CA_PATH_FILES_MAX} files under {}",
                dir.display()
            ));
        } else {
            files.push(path);
        }
    }
    Ok(())
}

type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &str, key: &str) -> Result<ClientIdentity, String> {
    let what = "Error loading client certificate";
    let cert_bytes = read_pem(cert, what)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{what}: Couldn't parse PEM in: {cert}"))?;
    if chain.is_empty() {
        return Err(format!("{what}: tls: failed to find any PEM data in certificate input"));
    }
    let key_bytes = read_pem(key, "Error loading client key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| {
        format!("Error loading client key: tls: failed to find any PEM data in key input: {key}")
    })?;
    Ok((chain, key))
}

/// `-tls-skip-verify`: any certificate is accepted, its signatures still checked so the
/// handshake stays well formed.
#[derive(Debug)]
struct SkipVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A transport error's text: a TLS failure as Go's client words it, anything else as is.
pub fn describe(error: &std::io::Error) -> String {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return error.to_string();
    };
    let verify = |why: &str| format!("tls: failed to verify certificate: x509: {why}");
    match tls {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => verify("certificate signed by unknown authority"),
            CertificateError::NotValidForNameContext { expected, presented } => {
                let names: Vec<&str> = presented.iter().map(|name| bare_name(name)).collect();
                let expected = expected.to_str();
                verify(&format!("certificate is valid for {}, not {expected}", names.join(", ")))
            }
            CertificateError::NotValidForName => verify("certificate is not valid for this name"),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                verify("certificate has expired or is not yet valid")
            }
            other => verify(&format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => format!("remote error: tls: {}", alert_text(*alert)),
        // The first bytes were no TLS record: an agent speaking plain HTTP.
        rustls::Error::InvalidMessage(_) => {
            "http: server gave HTTP response to HTTPS client".to_owned()
        }
        other => format!("tls: {other}"),
    }
}

/// A presented name without rustls's wrapping: `DnsName("localhost")` → `localhost`,
/// `IpAddress(127.0.0.1)` → `127.0.0.1`.
fn bare_name(name: &str) -> &str {
    let inner = name
        .strip_prefix("DnsName(")
        .or_else(|| name.strip_prefix("IpAddress("))
        .and_then(|rest| rest.strip_suffix(')'));
    inner.map_or(name, |inner| inner.trim_matches('"'))
}

/// An alert's name as Go prints it (`certificate required`, `bad certificate`).
fn alert_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => "certificate required".into(),
        AlertDescription::BadCertificate => "bad certificate".into(),
        AlertDescription::UnknownCA => "unknown certificate authority".into(),
        AlertDescription::CertificateExpired => "expired certificate".into(),
        AlertDescription::HandshakeFailure => "handshake failure".into(),
        AlertDescription::ProtocolVersion => "protocol version not supported".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a client for `options` against host `h`, and renders the outcome.
    fn check(options: TlsOptions) -> String {
        match TlsClient::new(&options, "127.0.0.1") {
            Ok(client) => format!("ok: expects {}", client.server_name.to_str()),
            Err(message) => message,
        }
    }

    #[test]
    fn bad_files_and_half_identities_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let garbage = garbage.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        let opts = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| TlsOptions {
            ca_cert: ca.map(str::to_owned),
            client_cert: cert.map(str::to_owned),
            client_key: key.map(str::to_owned),
            ..TlsOptions::default()
        };
        let rendered = [
            check(opts(Some(&missing), None, None)),
            check(opts(Some(&garbage), None, None)),
            check(opts(None, Some(&garbage), None)),
            check(opts(None, Some(&garbage), Some(&garbage))),
            check(TlsOptions {
                server_name: Some("server.global.drover".into()),
                ..opts(None, None, None)
            }),
            check(TlsOptions { skip_verify: true, ..opts(None, None, None) }),
        ]
        .join("\n")
        .replace(&dir.path().display().to_string(), "DIR");
        assert_eq!(
            rendered,
            "Error initializing client: Error loading CA File: open DIR/missing.pem: No such file or directory (os error 2)\n\
             Error initializing client: Error loading CA File: Couldn't parse PEM in: DIR/garbage.pem\n\
             Error initializing client: a client certificate needs its key: give both -client-cert and -client-key\n\
             Error initializing client: Error loading client certificate: tls: failed to find any PEM data in certificate input\n\
             ok: expects server.global.drover\n\
             ok: expects 127.0.0.1"
        );
    }

    #[test]
    fn a_ca_path_trusts_every_file_of_its_tree_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let ca = |domain: &str| drover_runtime::tls::create_ca(domain, 1, now).unwrap().cert_pem;
        let cas = dir.path().join("cas");
        std::fs::create_dir_all(cas.join("more")).unwrap();
        std::fs::write(cas.join("a.pem"), ca("one")).unwrap();
        std::fs::write(cas.join("more/b.pem"), format!("{}{}", ca("two"), ca("three"))).unwrap();
        let path = |p: &std::path::Path| Some(p.display().to_string());
        let options = TlsOptions { ca_path: path(&cas), ..TlsOptions::default() };
        assert_eq!(roots(&options).unwrap().len(), 3, "every file, subdirectories included");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::create_dir(&garbage).unwrap();
        std::fs::write(garbage.join("a.pem"), ca("one")).unwrap();
        std::fs::write(garbage.join("notes.txt"), "not a certificate").unwrap();
        let file = cas.join("a.pem");
        let rendered = [
            check(TlsOptions {
                ca_path: path(&dir.path().join("missing")),
                ..TlsOptions::default()
            }),
            check(TlsOptions { ca_path: path(&empty), ..TlsOptions::default() }),
            check(TlsOptions { ca_path: path(&garbage), ..TlsOptions::default() }),
            // The CA file wins over the directory, as in Nomad.
            check(TlsOptions {
                ca_cert: path(&file),
                ca_path: path(&garbage),
                ..TlsOptions::default()
            }),
        ]
        .join("\n")
        .replace(&dir.path().display().to_string(), "DIR");
        assert_eq!(
            rendered,
            "Error initializing client: Error loading CA Path: DIR/missing: No such file or directory (os error 2)\n\
             Error initializing client: Error loading CA Path: no CA file in DIR/empty\n\
             Error initializing client: Error loading CA Path: Couldn't parse PEM in: DIR/garbage/notes.txt\n\
             ok: expects 127.0.0.1"
        );
        let flags = crate::flags::parse(&["-ca-path".to_owned(), "flag".to_owned()], &[]).unwrap();
        let env = |name: &str| (name == "NOMAD_CAPATH").then(|| "env".to_owned());
        let none = |_: &str| None;
        assert_eq!(TlsOptions::from_flags(&flags, &env).unwrap().ca_path.as_deref(), Some("flag"));
        let unflagged = Parsed::default();
        assert_eq!(
            TlsOptions::from_flags(&unflagged, &env).unwrap().ca_path.as_deref(),
            Some("env")
        );
        assert_eq!(TlsOptions::from_flags(&unflagged, &none).unwrap().ca_path, None);
    }

    #[test]
    fn an_agent_speaking_plain_http_to_a_tls_client_is_named() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        });
        let options = TlsOptions { skip_verify: true, ..TlsOptions::default() };
        let tls = TlsClient::new(&options, "127.0.0.1").unwrap();
        let endpoint = super::super::http::Endpoint { host: "127.0.0.1", port, tls: Some(&tls) };
        let request = super::super::http::Request {
            method: "GET",
            target: "/v1/jobs",
            headers: &[],
            body: None,
            read_timeout: Some(std::time::Duration::from_secs(5)),
        };
        let error = super::super::http::send(&endpoint, &request).err().expect("no answer");
        server.join().unwrap();
        assert_eq!(describe(&error), "http: server gave HTTP response to HTTPS client");
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
    }

    #[test]
    fn skip_verify_reads_as_go_reads_a_boolean() {
        let flags = Parsed::default();
        let with = |value: &'static str| {
            move |name: &str| (name == "NOMAD_SKIP_VERIFY").then(|| value.to_owned())
        };
        assert!(TlsOptions::from_flags(&flags, &with("1")).unwrap().skip_verify);
        assert!(!TlsOptions::from_flags(&flags, &with("False")).unwrap().skip_verify);
        assert_eq!(
            TlsOptions::from_flags(&flags, &with("yes")).unwrap_err(),
            "Error initializing client: NOMAD_SKIP_VERIFY=\"yes\" is not a boolean"
        );
    }
}
