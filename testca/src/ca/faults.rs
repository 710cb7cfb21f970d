//! What the fault script's faults look like on the wire: the answers that
//! replace the CA's before it acts, and what becomes of its response after.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{JSON, header};
use crate::faults::{CannedAnswer, Fault};
use crate::jws::Rejection;
use crate::wire::{Reply, WireResponse};
use sturdy_acme::ProblemType;

/// The response a [`Fault::Canned`] script asks for.
fn canned(answer: &CannedAnswer) -> WireResponse {
    let mut headers = HeaderMap::new();
    if let Some(ct) = answer
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert("content-type", ct);
    }
    WireResponse {
        status: StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body: Bytes::from(answer.body.clone()),
    }
}

/// An empty 500.
fn empty_500() -> WireResponse {
    WireResponse {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// The answer to a fault that replaces the CA's (nothing is done):
/// `problem` renders a problem in the dialect, `bad_nonce` is its wording
/// of a bad nonce.
pub(super) fn before_commit(
    fault: &Fault,
    bad_nonce: &str,
    problem: impl Fn(&Rejection) -> WireResponse,
) -> Reply {
    let mut json = HeaderMap::new();
    json.insert("content-type", HeaderValue::from_static(JSON));
    match fault {
        Fault::Empty500 => Reply::Normal(empty_500()),
        Fault::Unavailable { retry_after } => {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", header(&retry_after.header_value()));
            Reply::Normal(WireResponse {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers,
                body: Bytes::new(),
            })
        }
        Fault::BadNonce => Reply::Normal(problem(&Rejection::new(
            ProblemType::BadNonce,
            400,
            bad_nonce,
        ))),
        Fault::RateLimited { retry_after_secs } => {
            let mut r = problem(&Rejection::new(
                ProblemType::RateLimited,
                429,
                "too many requests (fault script)",
            ));
            r.headers
                .insert("retry-after", header(&retry_after_secs.to_string()));
            Reply::Normal(r)
        }
        Fault::EndlessBody => Reply::Endless {
            status: StatusCode::OK,
            headers: json,
        },
        Fault::OversizedBody { bytes } => Reply::Oversized {
            status: StatusCode::OK,
            headers: json,
            len: *bytes,
        },
        Fault::Canned(answer) => Reply::Normal(canned(answer)),
        _ => Reply::Drop,
    }
}

/// What becomes of `response` (the CA acted) under a fault that commits.
pub(super) fn after_commit(fault: Fault, response: WireResponse) -> Reply {
    match fault {
        Fault::Empty500AfterCommit => Reply::Normal(empty_500()),
        Fault::DropAfterCommit => Reply::Drop,
        Fault::SlowAfterCommit { delay_ms } => {
            Reply::Delayed(Duration::from_millis(delay_ms), response)
        }
        Fault::TruncatedAfterCommit => Reply::Truncated(response),
        Fault::InvalidJsonAfterCommit => Reply::Normal(WireResponse {
            status: StatusCode::OK,
            headers: response.headers,
            body: Bytes::from_static(b"{\"status\": \"val"),
        }),
        Fault::CannedAfterCommit(answer) => Reply::Normal(canned(&answer)),
        Fault::BodyAfterCommit { body } => Reply::Normal(WireResponse {
            body: Bytes::from(body),
            ..response
        }),
        Fault::InvalidOrderStaysPending => Reply::Normal(pending_if_invalid(response)),
        _ => Reply::Normal(response),
    }
}

/// `response` with an `invalid` order in its body answered as `pending`,
/// without its `error` (any other body unchanged).
fn pending_if_invalid(mut response: WireResponse) -> WireResponse {
    let Ok(serde_json::Value::Object(mut order)) = serde_json::from_slice(&response.body) else {
        return response;
    };
    if order.get("status").and_then(|s| s.as_str()) == Some("invalid")
        && order.contains_key("authorizations")
    {
        order.insert("status".into(), "pending".into());
        order.remove("error");
        response.body = Bytes::from(serde_json::Value::Object(order).to_string());
    }
    response
}
