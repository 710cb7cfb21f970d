//! http-01 (RFC 8555 §8.3): the request to the challenge URL and a small,
//! capped HTTP/1.1 response reader (status line, headers, a body framed by
//! `Content-Length`, chunked or the end of the stream).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::{AFTER_CONNECT_TIMEOUT, CONNECT_TIMEOUT, io_reason, quote};
use sturdy_acme::Identifier;
use sturdy_acme::{Problem, ProblemType};

/// The largest http-01 response body accepted.
const MAX_HTTP_BODY: usize = 16 * 1024;
/// The largest http-01 response head (status line and headers) accepted.
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// How much longer than its content a chunked body may be on the wire.
const MAX_CHUNK_OVERHEAD: usize = 4 * 1024;
/// The longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// Validates an http-01 challenge: `GET /.well-known/acme-challenge/<token>`
/// from `connect_ip:port` with `Host: <identifier>`, expecting a 200 whose
/// body (trailing whitespace removed, as Boulder does) is the key
/// authorization.
///
/// The CA connects to `connect_ip` whatever the identifier (it stands for
/// the DNS resolution; for an `ip` identifier pass the address itself).
/// Redirects are not followed (a 3xx fails like any non-200), the body is
/// capped at 16 KiB, and the whole exchange must finish within `timeout`.
///
/// Failures: `connection` (refused, reset, timeouts, no or broken HTTP
/// response), `unauthorized` (non-200, oversized body, wrong content),
/// `malformed` (an identifier or token that cannot be requested).
pub(crate) async fn validate_http01(
    connect_ip: IpAddr,
    port: u16,
    identifier: &Identifier,
    token: &str,
    key_authorization: &str,
    timeout: Duration,
) -> Result<(), Problem> {
    let host = match (identifier.kind.as_str(), identifier.ip_addr()) {
        ("dns", _) if !identifier.is_wildcard() => identifier.value.clone(),
        ("ip", Some(IpAddr::V4(ip))) => ip.to_string(),
        ("ip", Some(IpAddr::V6(ip))) => format!("[{ip}]"),
        _ => {
            return Err(Problem::new(
                ProblemType::Malformed,
                format!("Identifier {identifier} cannot be validated with http-01"),
            ));
        }
    };
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Problem::new(
            ProblemType::Malformed,
            format!("Invalid http-01 token {token:?}"),
        ));
    }
    let path = format!("/.well-known/acme-challenge/{token}");
    let url = if port == 80 {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    };
    let connection = |reason: &str| {
        Problem::new(
            ProblemType::Connection,
            format!("{connect_ip}: Fetching {url}: {reason}"),
        )
    };
    tracing::debug!(%identifier, %connect_ip, port, %url, "http-01 validation");

    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::new(connect_ip, port);
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(connection(CONNECT_TIMEOUT)),
        Ok(Err(e)) => return Err(connection(&io_reason(&e))),
        Ok(Ok(stream)) => stream,
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sturdy-acme-test-ca\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(FetchError::Io)?;
        read_http_response(&mut stream).await
    };
    let response = match timeout_at(deadline, exchange).await {
        Err(_) => return Err(connection(AFTER_CONNECT_TIMEOUT)),
        Ok(Err(FetchError::Io(e))) => return Err(connection(&io_reason(&e))),
        Ok(Err(FetchError::Malformed(why))) => {
            return Err(connection(&format!(
                "Error getting validation data ({why})"
            )));
        }
        Ok(Err(FetchError::TooLarge)) => {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                format!(
                    "{connect_ip}: Invalid response from {url}: \
                     response body larger than {MAX_HTTP_BODY} bytes"
                ),
            ));
        }
        Ok(Ok(response)) => response,
    };
    if response.status != 200 {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!(
                "{connect_ip}: Invalid response from {url}: {}",
                response.status
            ),
        ));
    }
    let body = String::from_utf8_lossy(&response.body);
    let payload = body.trim_end();
    if payload != key_authorization {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!(
                "The key authorization file from the server did not match this challenge. \
                 Expected {key_authorization:?} (got {:?})",
                quote(payload)
            ),
        ));
    }
    Ok(())
}

/// A parsed HTTP response (status and body only).
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

/// Why an HTTP exchange failed after the connection was made.
enum FetchError {
    Io(io::Error),
    Malformed(String),
    TooLarge,
}

/// Reads more bytes into `buf`; `Ok(0)` at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, FetchError> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.map_err(FetchError::Io)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads one HTTP/1.x response: status line, headers, and a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length` or the end of the stream.
async fn read_http_response(stream: &mut TcpStream) -> Result<HttpResponse, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_owned());
    let mut buf = Vec::with_capacity(4096);
    let head_len = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err(malformed("response headers too large"));
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err(malformed(if buf.is_empty() {
                "the server closed the connection without a response"
            } else {
                "the connection closed in the response headers"
            }));
        }
    };
    let head = std::str::from_utf8(&buf[..head_len - 4])
        .map_err(|_| malformed("response headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or_default())
        .ok_or_else(|| malformed("malformed HTTP status line"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("malformed HTTP header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse::<usize>()
                .map_err(|_| malformed("malformed Content-Length"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }

    let mut raw = buf.split_off(head_len);
    let body = if chunked {
        loop {
            if let Some(body) = decode_chunked(&raw)? {
                break body;
            }
            if raw.len() > MAX_HTTP_BODY + MAX_CHUNK_OVERHEAD {
                return Err(FetchError::TooLarge);
            }
            if read_more(stream, &mut raw).await? == 0 {
                return Err(malformed("the connection closed in a chunked body"));
            }
        }
    } else if let Some(len) = content_length {
        if len > MAX_HTTP_BODY {
            return Err(FetchError::TooLarge);
        }
        while raw.len() < len {
            if read_more(stream, &mut raw).await? == 0 {
                return Err(FetchError::Malformed(format!(
                    "the connection closed after {} of {len} body bytes",
                    raw.len()
                )));
            }
        }
        raw.truncate(len);
        raw
    } else {
        loop {
            if raw.len() > MAX_HTTP_BODY {
                return Err(FetchError::TooLarge);
            }
            if read_more(stream, &mut raw).await? == 0 {
                break raw;
            }
        }
    };
    if body.len() > MAX_HTTP_BODY {
        return Err(FetchError::TooLarge);
    }
    Ok(HttpResponse { status, body })
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=999).contains(c))
}

/// Decodes a complete chunked body; `Ok(None)` while more input is needed.
/// Trailers after the last chunk are not waited for.
///
/// The sizes are the server's: a chunk that would take the body over
/// [`MAX_HTTP_BODY`] is `TooLarge` before any arithmetic on it, and a size
/// line longer than [`MAX_CHUNK_LINE`] is `Malformed`.
fn decode_chunked(mut raw: &[u8]) -> Result<Option<Vec<u8>>, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_owned());
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return if raw.len() > MAX_CHUNK_LINE {
                Err(malformed("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        if line_end > MAX_CHUNK_LINE {
            return Err(malformed("chunk size line too long"));
        }
        let line =
            std::str::from_utf8(&raw[..line_end]).map_err(|_| malformed("malformed chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| malformed("malformed chunk size"))?;
        if size == 0 {
            return Ok(Some(body));
        }
        // body.len() <= MAX_HTTP_BODY, so neither this nor the offsets
        // below (all within MAX_HTTP_BODY + MAX_CHUNK_LINE + 4) overflow.
        if size > MAX_HTTP_BODY - body.len() {
            return Err(FetchError::TooLarge);
        }
        let data_start = line_end + 2;
        let data_end = data_start + size;
        let Some(data) = raw.get(data_start..data_end) else {
            return Ok(None);
        };
        match raw.get(data_end..data_end + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(malformed("malformed chunk")),
        }
        body.extend_from_slice(data);
        raw = &raw[data_end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::test_support::*;
    use sturdy_acme::solver::http01::Http01Responder;
    use tokio::net::TcpListener;

    async fn http01(port: u16, id: &Identifier, token: &str) -> Result<(), Problem> {
        validate_http01(LOCALHOST, port, id, token, KA, TIMEOUT).await
    }

    #[tokio::test]
    async fn http01_succeeds_against_the_responder() {
        let responder = Http01Responder::bind((LOCALHOST, 0).into()).await.unwrap();
        let port = responder.local_addr().port();
        responder.tokens().insert("tok-123", KA);
        http01(port, &dns("example.test"), "tok-123").await.unwrap();
        http01(port, &Identifier::ip(LOCALHOST), "tok-123")
            .await
            .unwrap();
        // Trailing whitespace is ignored.
        responder.tokens().insert("tok-123", format!("{KA}\r\n"));
        http01(port, &dns("example.test"), "tok-123").await.unwrap();
    }

    #[tokio::test]
    async fn http01_sends_host_and_path() {
        let body = KA;
        let server = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
        .await;
        http01(server.port, &dns("Host.example.test"), "tok-123")
            .await
            .unwrap();
        http01(
            server.port,
            &Identifier::ip("::1".parse().unwrap()),
            "tok-123",
        )
        .await
        .unwrap();
        let requests = server.requests.lock().unwrap().clone();
        assert!(
            requests[0].starts_with("GET /.well-known/acme-challenge/tok-123 HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        assert!(requests[0].contains("\r\nHost: host.example.test\r\n"));
        assert!(requests[0].contains("\r\nConnection: close\r\n"));
        assert!(
            requests[1].contains("\r\nHost: [::1]\r\n"),
            "{}",
            requests[1]
        );
    }

    #[tokio::test]
    async fn http01_reads_chunked_and_unframed_bodies() {
        let chunked = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                &KA[..5],
                KA.len() - 5,
                &KA[5..]
            )
            .into_bytes(),
        )
        .await;
        http01(chunked.port, &dns("example.test"), "tok-123")
            .await
            .unwrap();
        let unframed = raw_server(format!("HTTP/1.0 200 OK\r\n\r\n{KA}\n").into_bytes()).await;
        http01(unframed.port, &dns("example.test"), "tok-123")
            .await
            .unwrap();
    }

    /// A responder announcing a chunk of 2^64-1 bytes fails validation as
    /// an oversized body (it used to panic the validation task, leaving the
    /// challenge `processing` for ever).
    #[tokio::test]
    async fn http01_hostile_chunk_size_is_refused() {
        let server = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n\
                 ffffffffffffffff\r\n{}\r\n0\r\n\r\n",
                &KA[..5],
                &KA[5..]
            )
            .into_bytes(),
        )
        .await;
        let p = http01(server.port, &dns("example.test"), "tok-123")
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized, "{p}");
        assert!(detail(&p).contains("response body larger than"), "{p}");
    }

    #[tokio::test]
    async fn http01_failures() {
        let responder = Http01Responder::bind((LOCALHOST, 0).into()).await.unwrap();
        let port = responder.local_addr().port();
        let id = dns("example.test");

        // Unknown token: 404.
        let p = http01(port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            format!(
                "127.0.0.1: Invalid response from \
                 http://example.test:{port}/.well-known/acme-challenge/tok-123: 404"
            )
        );
        assert_eq!(p.status, None);

        // Wrong content.
        responder.tokens().insert("tok-123", "tok-123.other");
        let p = http01(port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "The key authorization file from the server did not match this challenge. \
             Expected \"tok-123.thumbprint\" (got \"tok-123.other\")"
        );
        // Leading whitespace is not forgiven (Boulder trims only the end).
        responder.tokens().insert("tok-123", format!(" {KA}"));
        assert!(http01(port, &id, "tok-123").await.is_err());

        // Nothing listening.
        let closed = closed_port().await;
        let p = http01(closed, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert_eq!(
            detail(&p),
            format!(
                "127.0.0.1: Fetching http://example.test:{closed}/.well-known/acme-challenge/tok-123: \
                 Connection refused"
            )
        );

        // A server that never answers.
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let silent = listener.local_addr().unwrap().port();
        let task = silent_server(listener);
        let p = validate_http01(
            LOCALHOST,
            silent,
            &id,
            "tok-123",
            KA,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        task.abort();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(
            detail(&p).ends_with("Timeout after connect (your server may be slow or overloaded)"),
            "{p}"
        );

        // Malformed input.
        let p = http01(port, &id, "../etc").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
        let p = http01(port, &dns("*.example.test"), "tok-123")
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
    }

    #[tokio::test]
    async fn http01_bad_responses() {
        let id = dns("example.test");
        let redirect = raw_server(
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let p = http01(redirect.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert!(detail(&p).ends_with(": 302"), "{p}");

        let big = "a".repeat(MAX_HTTP_BODY + 1);
        let oversized = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            )
            .into_bytes(),
        )
        .await;
        let p = http01(oversized.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert!(detail(&p).contains("larger than 16384 bytes"), "{p}");
        let unframed = raw_server(format!("HTTP/1.1 200 OK\r\n\r\n{big}").into_bytes()).await;
        let p = http01(unframed.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);

        let garbage = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()).await;
        let p = http01(garbage.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(detail(&p).contains("Error getting validation data"), "{p}");

        let empty = raw_server(Vec::new()).await;
        let p = http01(empty.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);

        let truncated =
            raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()).await;
        let p = http01(truncated.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(detail(&p).contains("after 5 of 100 body bytes"), "{p}");
    }

    #[test]
    fn chunked_decoding() {
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
                .ok()
                .flatten(),
            Some(b"abcde".to_vec())
        );
        assert!(matches!(decode_chunked(b"3\r\nab"), Ok(None)));
        assert!(matches!(
            decode_chunked(b"3\r\nabcXY"),
            Err(FetchError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(b"zz\r\n"),
            Err(FetchError::Malformed(_))
        ));
        // A hostile chunk size: refused, no overflow (it used to panic
        // once a first chunk was in).
        for raw in [
            &b"ffffffffffffffff\r\nabc"[..],
            b"5\r\nhello\r\nffffffffffffffff\r\nabc",
            b"5\r\nhello\r\nfffffffffffffffb\r\nabc",
        ] {
            assert!(matches!(decode_chunked(raw), Err(FetchError::TooLarge)));
        }
        assert!(matches!(
            decode_chunked(b"10000000000000000\r\n"),
            Err(FetchError::Malformed(_))
        ));
        // An endless size line (leading zeros, extensions) is refused
        // without waiting for its end.
        let long_line = format!("{}5;x={}", "0".repeat(600), "y".repeat(600));
        assert!(matches!(
            decode_chunked(long_line.as_bytes()),
            Err(FetchError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(format!("{long_line}\r\nhello\r\n0\r\n\r\n").as_bytes()),
            Err(FetchError::Malformed(_))
        ));
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 404"), Some(404));
        assert_eq!(parse_status_line("HTTP/2 200"), None);
        assert_eq!(parse_status_line("HTTP/1.1 20x OK"), None);
    }
}
