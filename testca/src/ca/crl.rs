//! Revocation lists: the CA publishes one CRL per shard at
//! `{base}/crl/{shard}` (v2 certificates name theirs in their CRL
//! Distribution Points), signed by the intermediate, with an Issuing
//! Distribution Point naming the shard, as Let's Encrypt has since it ended
//! OCSP in 2025. A list is answered to a conditional GET with `304 Not
//! Modified` while it has not changed (`ETag`, `Last-Modified`). It
//! changes when a certificate of its shard is revoked, and once a day (a
//! new `thisUpdate`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use time::OffsetDateTime;

use super::Ca;
use super::state::State;
use crate::wire::{WireRequest, WireResponse};

/// How long a list is promised to hold (`nextUpdate - thisUpdate`).
const VALID_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
const DAY: u64 = 24 * 3600;

/// The shard a `/crl/{shard}` path asks for.
pub(super) fn crl_target(path: &str) -> Option<u8> {
    path.strip_prefix("/crl/")
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .and_then(|s| s.parse().ok())
}

/// A list as published: its number (a function of its content), its
/// `thisUpdate`, and its entries.
struct Content {
    number: u64,
    this_update: SystemTime,
    entries: Vec<(String, OffsetDateTime, u8)>,
}

impl State {
    /// What shard `shard`'s list holds now.
    fn crl_content(&self, shard: u8, now: SystemTime) -> Content {
        let entries: Vec<(String, SystemTime, u8)> = self
            .certs
            .iter()
            .filter(|c| c.crl_shard == Some(shard))
            .filter_map(|c| Some((c.serial.clone(), c.revoked_at?, c.revoked?)))
            .collect();
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let day = secs(now) / DAY;
        let latest = entries.iter().map(|e| e.1).max();
        let day_start = UNIX_EPOCH + Duration::from_secs(day * DAY);
        let this_update = latest.map_or(day_start, |l| l.max(day_start));
        Content {
            // Grows with every new day and every new entry.
            number: (day << 24) | (entries.len() as u64 & 0xff_ffff),
            this_update,
            entries: entries
                .into_iter()
                .map(|(serial, at, reason)| (serial, OffsetDateTime::from(at), reason))
                .collect(),
        }
    }
}

/// An HTTP-date (RFC 9110 §5.6.7).
fn http_date(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    OffsetDateTime::from(t).format(&format).unwrap_or_default()
}

impl Ca {
    /// The answer to a GET of shard `shard`'s list.
    pub(super) fn crl_response(&self, shard: u8, req: &WireRequest) -> WireResponse {
        let config = self.config();
        let plain = |status: StatusCode, body: &'static [u8]| WireResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
        };
        if req.method != http::Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, b"GET only\n");
        }
        let (Some(base), true) = (config.crl_base.as_ref(), shard < config.crl_shards) else {
            return plain(StatusCode::NOT_FOUND, b"no such list\n");
        };
        let now = super::now();
        let mut state = self.state();
        let content = state.crl_content(shard, now);
        let etag = format!("\"{shard}-{:x}\"", content.number);
        let mut headers = HeaderMap::new();
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        headers.insert("etag", value(&etag));
        headers.insert("last-modified", value(&http_date(content.this_update)));
        headers.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=3600"),
        );
        let unchanged = req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        if unchanged {
            state.crl_not_modified += 1;
            return WireResponse {
                status: StatusCode::NOT_MODIFIED,
                headers,
                body: Bytes::new(),
            };
        }
        let body = match state.crl_cache.get(&shard) {
            Some((number, der)) if *number == content.number => der.clone(),
            _ => {
                let this_update = OffsetDateTime::from(content.this_update);
                let next_update = OffsetDateTime::from(content.this_update + VALID_FOR);
                let url = format!("{base}/{shard}");
                match self.pki.crl(
                    &url,
                    content.number,
                    this_update,
                    next_update,
                    &content.entries,
                ) {
                    Ok(der) => {
                        let der = Bytes::from(der);
                        state.crl_cache.insert(shard, (content.number, der.clone()));
                        der
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "test CA: could not sign a revocation list");
                        return plain(StatusCode::INTERNAL_SERVER_ERROR, b"signing failed\n");
                    }
                }
            }
        };
        state.crl_downloads += 1;
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/pkix-crl"),
        );
        WireResponse {
            status: StatusCode::OK,
            headers,
            body,
        }
    }
}
