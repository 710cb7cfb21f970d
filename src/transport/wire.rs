//! One exchange on the wire: the request sent through the `Http` in use
//! (reqwest or a hook), the answer read within its cap and turned into a
//! `Response` or a typed error.

use super::*;

impl Transport {
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        method: &'static str,
        url: &str,
        also_ok: &[u16],
        max: usize,
    ) -> Exchange {
        let info = |status: Option<u16>, retry_after: Option<RetryAfter>| {
            Box::new(RequestInfo {
                method,
                url: url.to_owned(),
                status,
                retry_after,
            })
        };
        let transport_error = |status, source: reqwest::Error| {
            // A connect failure (timed out or refused) means the request
            // was never written: checked first.
            let failure = if source.is_connect() {
                TransportFailure::Connect
            } else if source.is_timeout() {
                TransportFailure::Timeout
            } else if source.is_body() || source.is_request() || source.is_decode() {
                TransportFailure::Reset
            } else {
                TransportFailure::Other
            };
            Error::Transport {
                request: info(status, None),
                failure,
                source: Box::new(source),
            }
        };

        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Exchange {
                    result: Err(transport_error(None, e)),
                    nonce: None,
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let nonce = headers
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = retry_after(&headers, self.config.clock.now());
        let fail = |result| Exchange {
            result,
            nonce: nonce.clone(),
        };

        // Read the body, refusing to buffer more than the cap.
        if response.content_length().is_some_and(|n| n > max as u64) {
            return fail(Err(Error::ResponseTooLarge {
                request: info(Some(status), retry_after),
                limit: max,
            }));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return fail(Err(Error::ResponseTooLarge {
                            request: info(Some(status), retry_after),
                            limit: max,
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return fail(Err(transport_error(Some(status), e))),
            }
        }

        self.answered(method, url, also_ok, status, headers, body.into())
    }

    /// The exchange for an answer read in full: the response, or the error
    /// its status and body say.
    pub(super) fn answered(
        &self,
        method: &'static str,
        url: &str,
        also_ok: &[u16],
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    ) -> Exchange {
        let nonce = headers
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = retry_after(&headers, self.config.clock.now());
        if (200..300).contains(&status) || also_ok.contains(&status) {
            return Exchange {
                result: Ok(Response {
                    method,
                    url: url.to_owned(),
                    status,
                    headers,
                    body,
                    retry_after,
                }),
                nonce,
            };
        }
        let request = Box::new(RequestInfo {
            method,
            url: url.to_owned(),
            status: Some(status),
            retry_after,
        });
        let result = match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.get("type").is_some() || v.get("detail").is_some() => {
                match serde_json::from_value::<Problem>(v) {
                    Ok(problem) => Err(Error::Problem {
                        request,
                        problem: Box::new(problem),
                    }),
                    Err(e) => Err(Error::InvalidResponse {
                        request,
                        reason: format!("malformed problem document: {e}"),
                    }),
                }
            }
            _ => Err(Error::Status {
                request,
                body: excerpt(&body, &headers),
            }),
        };
        Exchange { result, nonce }
    }
}

/// A short printable description of a non-problem error body.
fn excerpt(body: &[u8], headers: &HeaderMap) -> String {
    if body.is_empty() {
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        return format!("empty body; headers: [{}]", names.join(", "));
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{} bytes: {clean:?}", body.len())
}
