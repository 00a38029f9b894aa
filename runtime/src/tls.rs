//! The cluster's own certificate authority, as `drover tls ca create` and
//! `drover tls cert create` make it (Nomad's `nomad tls` commands, with drover's names).
//!
//! Agents find each other by role and region in the certificate: a server's certificate
//! names `server.<region>.<domain>`, a client's `client.<region>.<domain>`, so an agent
//! that verifies `server.global.drover` knows it talks to a server of region `global`, not
//! merely to someone holding a certificate from the same CA.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fmt;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

pub const DOMAIN_DEFAULT: &str = "drover";
pub const CA_DAYS_DEFAULT: u32 = 1825;
pub const CERT_DAYS_DEFAULT: u32 = 365;
pub const CA_CERT_FILE: &str = "drover-agent-ca.pem";
pub const CA_KEY_FILE: &str = "drover-agent-ca-key.pem";

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    Cli,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }

    /// The name peers verify: `server.global.drover`.
    pub fn dns_name(self, region: &str, domain: &str) -> String {
        format!("{}.{region}.{domain}", self.name())
    }

    /// `global-server-drover.pem`, `global-server-drover-key.pem`.
    pub fn file_names(self, region: &str, domain: &str) -> (String, String) {
        let stem = format!("{region}-{}-{domain}", self.name());
        (format!("{stem}.pem"), format!("{stem}-key.pem"))
    }
}

#[derive(Clone, Debug)]
pub struct CertSpec {
    pub role: Role,
    pub region: String,
    pub domain: String,
    pub days: u32,
    pub extra_dns_names: Vec<String>,
    pub extra_ips: Vec<IpAddr>,
}

#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn error(context: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError(format!("{context}: {e}"))
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, days: u32) {
    // A minute of slack for peers whose clocks run a little behind ours.
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// A new CA for the cluster, valid `days` from `now`, named by `domain`.
pub fn create_ca(domain: &str, days: u32, now: OffsetDateTime) -> Result<PemPair, TlsError> {
    let key = KeyPair::generate().map_err(error("generate the CA key"))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(error("CA parameters"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("drover agent CA ({domain})"));
    name.push(DnType::OrganizationName, "drover");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, days);
    let cert = params.self_signed(&key).map_err(error("sign the CA"))?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A certificate for one agent role, signed by `ca`.
pub fn create_cert(
    ca: &PemPair,
    spec: &CertSpec,
    now: OffsetDateTime,
) -> Result<PemPair, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(error("read the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(error("read the CA certificate"))?;
    let key = KeyPair::generate().map_err(error("generate the key"))?;
    let role_name = spec.role.dns_name(&spec.region, &spec.domain);
    let mut names = vec![role_name.clone()];
    if spec.role != Role::Cli {
        names.push("localhost".into());
    }
    names.extend(spec.extra_dns_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(error("certificate names"))?;
    if spec.role != Role::Cli {
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    }
    params.subject_alt_names.extend(spec.extra_ips.iter().copied().map(SanType::IpAddress));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, role_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Servers dial each other and clients dial servers: both ends of a connection.
    params.extended_key_usages = match spec.role {
        Role::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, spec.days);
    let cert = params.signed_by(&key, &issuer).map_err(error("sign the certificate"))?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }

    #[test]
    fn a_server_certificate_chains_to_the_ca_and_names_its_role_and_region() {
        let now = OffsetDateTime::now_utc();
        let ca = create_ca(DOMAIN_DEFAULT, CA_DAYS_DEFAULT, now).unwrap();
        let spec = CertSpec {
            role: Role::Server,
            region: "eu".into(),
            domain: DOMAIN_DEFAULT.into(),
            days: CERT_DAYS_DEFAULT,
            extra_dns_names: vec!["nomad.example.com".into()],
            extra_ips: vec![IpAddr::from([10, 0, 0, 7])],
        };
        let server = create_cert(&ca, &spec, now).unwrap();
        let ca_der = der(&ca.cert_pem);
        let server_der = der(&server.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&server_der).unwrap();
        assert!(ca_cert.is_ca());
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "server.eu.drover",
                "localhost",
                "nomad.example.com",
                "[127, 0, 0, 1]",
                "[10, 0, 0, 7]"
            ]
        );
        let days = (cert.validity().not_after.timestamp() - now.unix_timestamp()) / 86_400;
        assert_eq!(days, 365);
        assert_eq!(Role::Server.file_names("eu", "drover").0, "eu-server-drover.pem");
    }

    #[test]
    fn a_certificate_from_a_damaged_ca_is_an_error() {
        let now = OffsetDateTime::now_utc();
        let broken = PemPair { cert_pem: "not a pem".into(), key_pem: "nor this".into() };
        let spec = CertSpec {
            role: Role::Client,
            region: "global".into(),
            domain: DOMAIN_DEFAULT.into(),
            days: 1,
            extra_dns_names: vec![],
            extra_ips: vec![],
        };
        let error = create_cert(&broken, &spec, now).unwrap_err();
        assert!(error.to_string().starts_with("read the CA key"), "{error}");
    }
}
