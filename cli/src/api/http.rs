//! A small HTTP/1.1 client over `std::net::TcpStream`: one request per connection, a
//! `Content-Length` or chunked body, bounded header and body sizes, and timeouts.
//!
//! The CLI talks to one agent at a time with short JSON exchanges and, for `alloc logs
//! -f`, one long stream; that needs no async runtime nor connection pool, and the bounds
//! keep a wrong address (a port that is not an agent) from making the CLI read forever.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::tls::TlsClient;

/// The longest status line plus headers read before the answer is refused.
const HEADERS_LEN_MAX_BYTES: usize = 64 * 1024;
/// The largest chunk-size line of a chunked body.
const CHUNK_LINE_LEN_MAX_BYTES: usize = 1024;
/// How long a connection may take to open.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// A request about to be sent.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query, already encoded: `/v1/job/web?namespace=default`.
    pub target: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: Option<&'a [u8]>,
    /// The longest silence while waiting for the answer; `None` waits forever (a followed
    /// log stream).
    pub read_timeout: Option<Duration>,
}

/// An answer whose head is read; the body is read through [`Response::body`].
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Where a request goes: `host:port`, over TLS when `tls` is given.
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: Option<&'a TlsClient>,
}

/// A connection to the agent, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf),
            Stream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buf),
            Stream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

/// Sends `request` to `endpoint` and reads the answer's head.
pub fn send(endpoint: &Endpoint<'_>, request: &Request<'_>) -> io::Result<Response> {
    let Endpoint { host, port, tls } = *endpoint;
    let tcp = connect(host, port)?;
    tcp.set_read_timeout(request.read_timeout)?;
    tcp.set_write_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))?;
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            let connection =
                rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                    .map_err(io::Error::other)?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
        }
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: drover/{}\r\nConnection: close\r\n",
        request.method,
        request.target,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = request.body.unwrap_or_default();
    if request.body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_head(BufReader::new(stream))
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads one CRLF-terminated line of at most `limit` bytes, without the line end.
fn read_line(reader: &mut impl BufRead, limit: usize) -> io::Result<String> {
    let mut line = Vec::new();
    let read = reader.take(limit as u64 + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed"));
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid(format!("a line longer than {limit} bytes")));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("a header line that is not UTF-8"))
}

fn read_head(mut reader: BufReader<Stream>) -> io::Result<Response> {
    let mut budget = HEADERS_LEN_MAX_BYTES;
    let status_line = read_line(&mut reader, budget)?;
    budget = budget.saturating_sub(status_line.len() + 2);
    let status = parse_status_line(&status_line)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader, budget)?;
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            break;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| invalid(format!("a malformed header {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse::<u64>().map_err(|_| invalid("a bad Content-Length")))
        .transpose()?;
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked { left_in_chunk: 0, finished: false },
        (false, Some(length)) => Framing::Length { left: length },
        (false, None) => Framing::UntilClose,
    };
    Ok(Response { status, headers, body: Body { reader, framing } })
}

/// `HTTP/1.1 404 Not Found` → 404.
fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut words = line.split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP answer: {line:?}")));
    }
    code.parse().map_err(|_| invalid(format!("a bad status line {line:?}")))
}

enum Framing {
    Length { left: u64 },
    Chunked { left_in_chunk: u64, finished: bool },
    UntilClose,
}

/// An answer's body as a byte stream, whatever its framing.
pub struct Body {
    reader: BufReader<Stream>,
    framing: Framing,
}

impl Body {
    /// The whole body, refused past `limit_bytes`.
    pub fn read_bounded(mut self, limit_bytes: usize) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        (&mut self).take(limit_bytes as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > limit_bytes {
            return Err(invalid(format!("an answer larger than {limit_bytes} bytes")));
        }
        Ok(bytes)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::UntilClose => self.reader.read(buf),
            Framing::Length { left } => {
                if *left == 0 || buf.is_empty() {
                    return Ok(0);
                }
                read_counted(&mut self.reader, buf, left, "the body was cut short")
            }
            Framing::Chunked { left_in_chunk, finished } => {
                if *finished || buf.is_empty() {
                    return Ok(0);
                }
                if *left_in_chunk == 0 {
                    let line = read_line(&mut self.reader, CHUNK_LINE_LEN_MAX_BYTES)?;
                    // Chunk extensions (`;name=value`) carry nothing we need.
                    let size_text = line.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size_text, 16)
                        .map_err(|_| invalid(format!("a bad chunk size {line:?}")))?;
                    if size == 0 {
                        *finished = true;
                        return Ok(0);
                    }
                    *left_in_chunk = size;
                }
                let read =
                    read_counted(&mut self.reader, buf, left_in_chunk, "a chunk was cut short")?;
                if *left_in_chunk == 0 {
                    let end = read_line(&mut self.reader, CHUNK_LINE_LEN_MAX_BYTES)?;
                    if !end.is_empty() {
                        return Err(invalid("a chunk not followed by its line end"));
                    }
                }
                Ok(read)
            }
        }
    }
}

/// Reads at most `left` bytes into `buf` and counts them off; the connection closing
/// before then is the error `cut_short`.
fn read_counted(
    reader: &mut impl Read,
    buf: &mut [u8],
    left: &mut u64,
    cut_short: &'static str,
) -> io::Result<usize> {
    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    let read = reader.read(&mut buf[..want])?;
    if read == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, cut_short));
    }
    *left -= read as u64;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answer` once on a fresh port and returns what the client read, as text.
    fn check(answer: &'static [u8], limit_bytes: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream.write_all(answer).unwrap();
        });
        let request = Request {
            method: "GET",
            target: "/v1/jobs",
            headers: &[],
            body: None,
            read_timeout: Some(Duration::from_secs(5)),
        };
        let endpoint = Endpoint { host: "127.0.0.1", port, tls: None };
        let outcome = send(&endpoint, &request).and_then(|response| {
            let status = response.status;
            let index = response.header("x-nomad-index").unwrap_or("-").to_owned();
            let body = response.body.read_bounded(limit_bytes)?;
            Ok(format!("{status} index={index} {:?}", String::from_utf8_lossy(&body)))
        });
        server.join().unwrap();
        outcome.unwrap_or_else(|error| format!("error: {error}"))
    }

    #[test]
    fn reads_every_framing_and_refuses_what_is_out_of_bounds() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Nomad-Index: 7\r\n\r\n[]", 100, r#"200 index=7 "[]""#),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
                100,
                r#"200 index=- "hello""#,
            ),
            (b"HTTP/1.1 404 Not Found\r\n\r\njob not found", 100, r#"404 index=- "job not found""#),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345", 4, "error: an answer larger than 4 bytes"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12", 100, "error: the body was cut short"),
            (b"SSH-2.0-OpenSSH\r\n", 100, r#"error: not an HTTP answer: "SSH-2.0-OpenSSH""#),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100, r#"error: a bad chunk size "zz""#),
            (b"", 100, "error: the connection closed"),
        ];
        for (answer, limit, expect) in cases {
            assert_eq!(check(answer, *limit), *expect);
        }
    }
}
