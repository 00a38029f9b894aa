//! The CLI's one client of an agent's HTTP API.
//!
//! Where to talk and as whom comes from the global flags, then the environment, as in
//! Nomad: `-address`, `DROVER_ADDR`, `NOMAD_ADDR` (default `http://127.0.0.1:4646`);
//! `-region`/`NOMAD_REGION`, `-namespace`/`NOMAD_NAMESPACE`, `-token`/`NOMAD_TOKEN`;
//! for an `https://` address, the TLS flags and variables `tls` reads.
//! Answers decode into `core::model`'s types; a refusal reads as Nomad's api package
//! words it: `Unexpected response code: 404 (job not found)`.

mod http;
mod tls;

pub use http::Body;
use tls::{TlsClient, TlsOptions};

use crate::flags::Parsed;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Where the CLI looks for an agent when nothing says otherwise.
pub const ADDRESS_DEFAULT: &str = "http://127.0.0.1:4646";
/// The largest JSON answer read: far past any job or list this CLI prints.
const ANSWER_LEN_MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long a plain request may wait for its answer.
const READ_TIMEOUT_MS: u64 = 60_000;
/// A blocking query may legitimately stay silent for its whole wait; this much more is
/// allowed before the agent counts as gone.
const BLOCKING_SLACK_MS: u64 = 30_000;

/// The answer to a write that may create an evaluation (Nomad's `JobRegisterResponse`,
/// `JobDeregisterResponse` and kin).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EvalWrite {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub job_modify_index: u64,
    pub warnings: String,
}

/// `GET /v1/agent/members` (Nomad's `ServerMembers`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerMembers {
    pub members: Vec<AgentMember>,
}

/// One server as gossip knows it; `Tags` carry its region, datacenter, build and Raft
/// version.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentMember {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub status: String,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Why a call failed.
#[derive(Debug)]
pub enum ApiError {
    /// No answer: the agent could not be reached or spoke something else than HTTP.
    Transport { method: String, url: String, message: String },
    /// The agent refused, with its plain-text reason.
    Status { code: u16, message: String },
    /// The agent answered with JSON of another shape than expected.
    Decode(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport { method, url, message } => {
                write!(f, "{method} {url:?}: {message}")
            }
            ApiError::Status { code, message } => {
                write!(f, "Unexpected response code: {code} ({})", message.trim_end())
            }
            ApiError::Decode(message) => write!(f, "cannot decode the answer: {message}"),
        }
    }
}

/// An agent's address and the caller's scope.
#[derive(Clone, Debug)]
pub struct Client {
    address: String,
    host: String,
    port: u16,
    /// Set for an `https://` address.
    tls: Option<TlsClient>,
    region: Option<String>,
    namespace: Option<String>,
    token: Option<String>,
}

/// What a read answers with besides its rows: the `X-Nomad-Index` to block on next.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryMeta {
    pub last_index: u64,
}

/// A blocking query's condition: answer once the index passes `index`, or after `wait`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Blocking {
    pub index: u64,
    pub wait_ms: u64,
}

impl Client {
    /// The client the global flags and the environment describe.
    pub fn from_flags(flags: &Parsed) -> Result<Client, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let address = flags
            .last("address")
            .map(str::to_owned)
            .or_else(|| env("DROVER_ADDR"))
            .or_else(|| env("NOMAD_ADDR"))
            .unwrap_or_else(|| ADDRESS_DEFAULT.to_owned());
        let pick = |flag: &str, var: &str| flags.last(flag).map(str::to_owned).or_else(|| env(var));
        let (scheme, host, port) = parse_address(&address)?;
        let tls = match scheme {
            Scheme::Http => None,
            Scheme::Https => Some(TlsClient::new(&TlsOptions::from_flags(flags, &env)?, &host)?),
        };
        Ok(Client {
            address: address.trim_end_matches('/').to_owned(),
            host,
            port,
            tls,
            region: pick("region", "NOMAD_REGION"),
            namespace: pick("namespace", "NOMAD_NAMESPACE"),
            token: pick("token", "NOMAD_TOKEN"),
        })
    }

    /// A read of `path`, decoded; `blocking` makes it a blocking query.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
        blocking: Option<Blocking>,
    ) -> Result<(T, QueryMeta), ApiError> {
        let mut params = params.to_vec();
        let mut timeout_ms = READ_TIMEOUT_MS;
        if let Some(blocking) = blocking.filter(|b| b.index > 0) {
            params.push(("index", blocking.index.to_string()));
            params.push(("wait", format!("{}ms", blocking.wait_ms)));
            timeout_ms = blocking.wait_ms + BLOCKING_SLACK_MS;
        }
        let response = self.call("GET", path, &params, None, Some(timeout_ms))?;
        let index = response.header("X-Nomad-Index").and_then(|v| v.parse().ok()).unwrap_or(0);
        let value = read_json(response)?;
        Ok((decode(value)?, QueryMeta { last_index: index }))
    }

    /// A write (`PUT`, `POST` or `DELETE`) of `body`, its answer decoded.
    pub fn write<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let response = self.call(method, path, params, bytes.as_deref(), Some(READ_TIMEOUT_MS))?;
        decode(read_json(response)?)
    }

    /// A streamed answer (a task's log), read as it arrives; with `follow` the read never
    /// times out.
    pub fn stream(
        &self,
        path: &str,
        params: &[(&str, String)],
        follow: bool,
    ) -> Result<Body, ApiError> {
        let timeout = (!follow).then_some(READ_TIMEOUT_MS);
        Ok(self.call("GET", path, params, None, timeout)?.body)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        body: Option<&[u8]>,
        timeout_ms: Option<u64>,
    ) -> Result<http::Response, ApiError> {
        let target = self.target(path, params);
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            headers.push(("X-Nomad-Token", token.clone()));
        }
        let request = http::Request {
            method,
            target: &target,
            headers: &headers,
            body,
            read_timeout: timeout_ms.map(Duration::from_millis),
        };
        let transport = |message: String| ApiError::Transport {
            method: title_case(method),
            url: format!("{}{target}", self.address),
            message,
        };
        let endpoint = http::Endpoint { host: &self.host, port: self.port, tls: self.tls.as_ref() };
        let response = http::send(&endpoint, &request).map_err(|e| transport(tls::describe(&e)))?;
        if response.status == 200 {
            return Ok(response);
        }
        let code = response.status;
        let body = response
            .body
            .read_bounded(ANSWER_LEN_MAX_BYTES)
            .map_err(|e| transport(tls::describe(&e)))?;
        Err(ApiError::Status { code, message: String::from_utf8_lossy(&body).into_owned() })
    }

    /// `path?region=…&namespace=…&params…`, every value percent-encoded.
    fn target(&self, path: &str, params: &[(&str, String)]) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(region) = &self.region {
            pairs.push(("region", region));
        }
        if let Some(namespace) = &self.namespace {
            pairs.push(("namespace", namespace));
        }
        pairs.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let query: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{k}={}", encode_component(v))).collect();
        if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
    }
}

/// `Get`, as Go's net/http names the method in its errors.
fn title_case(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// `http://host:port` → (scheme, host, port); no scheme is `http`.
fn parse_address(address: &str) -> Result<(Scheme, String, u16), String> {
    let bad = |why: &str| format!("Error parsing address {address:?}: {why}");
    let (scheme, rest, port_default) = match address.split_once("://") {
        None => (Scheme::Http, address, 80),
        Some(("http", rest)) => (Scheme::Http, rest, 80),
        Some(("https", rest)) => (Scheme::Https, rest, 443),
        Some((other, _)) => return Err(bad(&format!("unsupported scheme {other:?}"))),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, port.parse::<u16>().map_err(|_| bad("the port is not a number"))?)
        }
        _ => (authority, port_default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((scheme, host.to_owned(), port))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn read_json(response: http::Response) -> Result<Value, ApiError> {
    let bytes = response
        .body
        .read_bounded(ANSWER_LEN_MAX_BYTES)
        .map_err(|e| ApiError::Decode(e.to_string()))?;
    // Some writes answer with an empty body (`operator raft remove-peer`).
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
}

/// Decodes an answer into `core::model`'s types, where `null` means unset.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    drover_core::model::decode_api_json(value).map_err(|e| ApiError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_why_not() {
        let check = |address: &str| match parse_address(address) {
            Ok((scheme, host, port)) => format!("{scheme:?} {host} {port}"),
            Err(error) => error,
        };
        assert_eq!(check("http://127.0.0.1:4646"), "Http 127.0.0.1 4646");
        assert_eq!(check("http://localhost:4646/"), "Http localhost 4646");
        assert_eq!(check("127.0.0.1:9"), "Http 127.0.0.1 9");
        assert_eq!(check("http://[::1]:4646"), "Http ::1 4646");
        assert_eq!(check("http://example"), "Http example 80");
        assert_eq!(
            check("http://h:x"),
            r#"Error parsing address "http://h:x": the port is not a number"#
        );
        assert_eq!(check("https://h:1"), "Https h 1");
        assert_eq!(check("https://example"), "Https example 443");
        assert_eq!(
            check("ftp://h:1"),
            r#"Error parsing address "ftp://h:1": unsupported scheme "ftp""#
        );
    }

    #[test]
    fn scope_and_values_are_encoded_into_the_target() {
        let flags = crate::flags::parse(
            &["-region=eu".into(), "-namespace=a b".into(), "-address=http://h:1".into()],
            &[],
        )
        .unwrap();
        let client = Client::from_flags(&flags).unwrap();
        let target = client.target("/v1/job/x%2Fy", &[("prefix", "é/&".into())]);
        assert_eq!(target, "/v1/job/x%2Fy?region=eu&namespace=a%20b&prefix=%C3%A9%2F%26");
    }

    #[test]
    fn refusals_read_as_nomads() {
        let error = ApiError::Status { code: 404, message: "job not found\n".into() };
        assert_eq!(error.to_string(), "Unexpected response code: 404 (job not found)");
    }
}
