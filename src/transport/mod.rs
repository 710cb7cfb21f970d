//! HTTP exchanges with the CA: the one place that sends requests, signs them,
//! handles nonces, caps and parses responses, turns failures into typed
//! [`Error`]s and logs every exchange.
//!
//! Each exchange is logged once at DEBUG under the `sturdy_acme::http`
//! target, with method, URL, endpoint, status, problem type, Retry-After,
//! where the nonce came from, the attempt number and the elapsed time.
//! Bodies are never logged (requests carry keys in JWKs and CSRs).
//!
//! The transport knows nothing of ACME dialects: the client's dialect hands
//! it a `WireShape` once the directory is read (the JWS header form, the
//! payload as sent, where a fresh nonce comes from, a timeout of its own
//! for one endpoint), and `Transport::post_once_with` is the one place it
//! is applied.

mod governor;
mod link;
mod nonce;
mod stats;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

pub use crate::protocol::Endpoint;
pub use governor::{GovernorPolicy, GovernorStats, RateGroup, RequestRates};
pub(crate) use link::links;
pub use stats::RequestStats;

use crate::crypto::AccountKey;
use crate::crypto::jws::{self, KeyId};
use crate::error::{Error, Problem, RequestInfo, Result, RetryAfter, TransportFailure};
use crate::retry::{Event, Events, RetryPolicy, Retrying, Rng};
mod http_client;
mod response;
mod shape;
mod wire;
use crate::wait::{Wait, Waits};
use governor::{Admission, Governor};
pub use http_client::{HttpAnswer, HttpClient, HttpRequest};
use nonce::NoncePool;
pub(crate) use response::Response;
use response::retry_after;
pub(crate) use shape::{Rfc8555Shape, WireShape};
use stats::{Counters, RoundTrip};

/// The media type of JWS request bodies.
const JOSE_JSON: &str = "application/jose+json";
/// The media type of a PEM certificate chain.
pub(crate) const PEM_CHAIN: &str = "application/pem-certificate-chain";
/// The largest revocation list read (a CA's shard during a mass
/// revocation can hold hundreds of thousands of entries).
const MAX_CRL_BODY: usize = 64 << 20;

/// The `Accept` header for a request, if it asks for a type.
fn accept_header(accept: Option<&str>) -> Vec<(http::HeaderName, &str)> {
    accept
        .map(|a| (http::header::ACCEPT, a))
        .into_iter()
        .collect()
}

/// Settings of the transport, set through [`ClientBuilder`](crate::ClientBuilder).
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) max_body: usize,
    pub(crate) nonce_pool_size: usize,
    pub(crate) allow_http: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) events: Events,
    pub(crate) governor: GovernorPolicy,
    /// The client's calendar, against which a `Retry-After` date is read.
    pub(crate) clock: crate::Clock,
}

/// The result of one exchange plus the nonce its response carried.
struct Exchange {
    result: Result<Response>,
    nonce: Option<String>,
}

/// How requests reach the CA.
#[derive(Debug)]
pub(crate) enum Http {
    /// Over the network.
    Network(reqwest::Client),
    /// Handed to the caller's [`HttpClient`] (an embedded test CA in this
    /// process, so a simulation on tokio's paused clock is not disturbed by
    /// I/O; a proxy; a recorder).
    Hook {
        /// The hook.
        client: std::sync::Arc<dyn HttpClient>,
        /// Headers every request carries (`User-Agent`, `Accept-Language`).
        headers: HeaderMap,
        /// The overall timeout of one exchange.
        timeout: Duration,
    },
}

/// Talks HTTP to one CA.
#[derive(Debug)]
pub(crate) struct Transport {
    http: Http,
    config: TransportConfig,
    nonces: NoncePool,
    new_nonce_url: OnceLock<String>,
    shape: OnceLock<Box<dyn WireShape>>,
    counters: Counters,
    round_trip: RoundTrip,
    rng: Rng,
    governor: Governor,
}

impl Transport {
    /// The transport for the CA whose directory is `directory_url` (which
    /// names its default request rates).
    /// Emits an event to the subscribers.
    pub(crate) fn emit(&self, event: Event) {
        self.config.events.emit(event);
    }

    pub(crate) fn new(http: Http, config: TransportConfig, directory_url: &str) -> Self {
        let rates = config
            .governor
            .rates()
            .unwrap_or_else(|| RequestRates::for_directory(directory_url));
        let governor = Governor::new(config.governor, rates);
        Self {
            http,
            // Room for a nonce per request in flight: the pool, not
            // newNonce, feeds a full pipeline.
            nonces: NoncePool::new(config.nonce_pool_size.max(governor.max_in_flight())),
            governor,
            rng: Rng::new(config.retry.seed()),
            config,
            new_nonce_url: OnceLock::new(),
            shape: OnceLock::new(),
            counters: Counters::default(),
            round_trip: RoundTrip::default(),
        }
    }

    /// The retry state for one logical request to `url`: every retry loop,
    /// here and in the client's state-reading recoveries, goes through it.
    pub(crate) fn retrying(&self, endpoint: Endpoint, url: &str) -> Retrying<'_> {
        Retrying::new(
            &self.config.retry,
            &self.config.events,
            &self.rng,
            self.config.clock,
            endpoint,
            url,
        )
    }

    /// Sets where fresh nonces come from (once, after the directory is read).
    pub(crate) fn set_new_nonce_url(&self, url: String) {
        let _ = self.new_nonce_url.set(url);
    }

    /// Sets how requests are shaped (once, after the directory is read;
    /// RFC 8555 until then).
    pub(crate) fn set_shape(&self, shape: Box<dyn WireShape>) {
        let _ = self.shape.set(shape);
    }

    fn shape(&self) -> &dyn WireShape {
        match self.shape.get() {
            Some(shape) => shape.as_ref(),
            None => &Rfc8555Shape,
        }
    }

    pub(crate) fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// The quickest answered exchange with the CA so far (where a fresh
    /// client places its first polls).
    pub(crate) fn round_trip(&self) -> Option<Duration> {
        self.round_trip.get()
    }

    pub(crate) fn governor_stats(&self) -> GovernorStats {
        self.governor.stats()
    }

    /// A plain GET (the directory; ACME v1 resources), retried per the
    /// policy.
    pub(crate) async fn get(&self, endpoint: Endpoint, url: &str) -> Result<Response> {
        self.get_parsed(endpoint, url, None, |_| Ok(()))
            .await
            .map(|(_, r)| r)
    }

    /// A conditional GET (RFC 9110 §13): `validators` are sent as
    /// `If-None-Match` / `If-Modified-Since`; a `304 Not Modified` is a
    /// success (the caller's copy is current). Plain HTTP is allowed for
    /// [`Endpoint::Crl`] (revocation lists are signed, and RFC 5280 serves
    /// them over HTTP).
    pub(crate) async fn get_conditional(
        &self,
        endpoint: Endpoint,
        url: &str,
        validators: &[(http::HeaderName, &str)],
    ) -> Result<Response> {
        self.check_url_for(endpoint, url)?;
        self.get_loop(endpoint, url, validators, &[304], |_| Ok(()))
            .await
            .map(|(_, r)| r)
    }

    /// Like [`Transport::get`], with the body parsed inside the retry loop:
    /// an answer cut short is retried; a success answer read in full that
    /// does not parse is a protocol error, returned at once
    /// ([`Error::is_unusable_answer`]).
    pub(crate) async fn get_parsed<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        accept: Option<&str>,
        parse: impl Fn(&Response) -> Result<T>,
    ) -> Result<(T, Response)> {
        self.check_url(url)?;
        self.get_loop(endpoint, url, &accept_header(accept), &[], parse)
            .await
    }

    /// The one GET retry loop: through the governor, each answer (and
    /// `also_ok` statuses) parsed inside it.
    async fn get_loop<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        headers: &[(http::HeaderName, &str)],
        also_ok: &[u16],
        parse: impl Fn(&Response) -> Result<T>,
    ) -> Result<(T, Response)> {
        let mut retrying = self.retrying(endpoint, url);
        loop {
            let admission = self.governor.admit(endpoint).await?;
            let ex = self
                .exchange(
                    endpoint,
                    http::Method::GET,
                    url,
                    None,
                    headers,
                    "none",
                    retrying.next_attempt(),
                    also_ok,
                    admission.queued,
                )
                .await;
            drop(admission);
            self.keep_nonce(ex.nonce);
            match ex.result.and_then(|r| parse(&r).map(|t| (t, r))) {
                Ok(r) => return Ok(r),
                Err(e) => retrying.pause_or_fail(e).await?,
            }
        }
    }

    /// A signed POST for an idempotent request (POST-as-GET, account
    /// updates, newAccount): re-sent per the retry policy.
    pub(crate) async fn post(
        &self,
        endpoint: Endpoint,
        url: &str,
        key: &AccountKey,
        key_id: KeyId<'_>,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<Response> {
        self.post_parsed(endpoint, url, key, key_id, payload, accept, |_| Ok(()))
            .await
            .map(|(_, r)| r)
    }

    /// Like [`Transport::post`], with the body parsed inside the retry loop,
    /// so an answer cut short is retried like any other transient failure,
    /// and a success answer read in full that is not the expected JSON is a
    /// protocol error, returned at once ([`Error::is_unusable_answer`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn post_parsed<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        key: &AccountKey,
        key_id: KeyId<'_>,
        payload: Option<&Value>,
        accept: Option<&str>,
        parse: impl Fn(&Response) -> Result<T>,
    ) -> Result<(T, Response)> {
        let mut retrying = self.retrying(endpoint, url);
        loop {
            let result = self
                .post_once(&mut retrying, key, key_id, payload, accept)
                .await
                .and_then(|r| parse(&r).map(|t| (t, r)));
            match result {
                Ok(r) => return Ok(r),
                Err(e) => retrying.pause_or_fail(e).await?,
            }
        }
    }

    /// A signed POST (or POST-as-GET when `payload` is `None`) sent once:
    /// only `badNonce` answers are re-sent (with the nonce the rejection
    /// carried), since they prove the request was not processed. For
    /// requests that are not idempotent; the caller resolves an unknown
    /// outcome by reading state.
    ///
    /// `retrying` is the logical request this attempt belongs to (its
    /// endpoint and URL, and the attempt count every exchange reports).
    pub(crate) async fn post_once(
        &self,
        retrying: &mut Retrying<'_>,
        key: &AccountKey,
        key_id: KeyId<'_>,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<Response> {
        self.post_once_with(retrying, key, key_id, payload, accept, &[])
            .await
    }

    /// [`Transport::post_once`], also accepting the error statuses in
    /// `also_ok` as answers (ACME v1's new-reg answers a known key with a
    /// 409 whose `Location` is the registration).
    pub(crate) async fn post_once_with(
        &self,
        retrying: &mut Retrying<'_>,
        key: &AccountKey,
        key_id: KeyId<'_>,
        payload: Option<&Value>,
        accept: Option<&str>,
        also_ok: &[u16],
    ) -> Result<Response> {
        let endpoint = retrying.endpoint();
        let url = &retrying.url().to_owned();
        self.check_url(url)?;
        let shape = self.shape();
        let header = shape.header();
        let payload = shape.payload(endpoint, url, payload)?;
        let (mut admission, mut nonce, mut source) = self.admit_with_nonce(endpoint, url).await?;
        let mut bad_nonces = 0;
        loop {
            let body = jws::sign(key, key_id, Some(&nonce), url, payload.as_deref(), header)?;
            let body = serde_json::to_vec(&body).expect("JSON values always serialize");
            let ex = self
                .exchange(
                    endpoint,
                    http::Method::POST,
                    url,
                    Some(body),
                    &accept_header(accept),
                    source,
                    retrying.next_attempt(),
                    also_ok,
                    admission.queued,
                )
                .await;
            match ex.result {
                Err(e)
                    if e.is_bad_nonce()
                        && bad_nonces + 1 < self.config.retry.bad_nonce_attempts() =>
                {
                    bad_nonces += 1;
                    retrying.bad_nonce(&e);
                    match ex.nonce {
                        Some(n) if nonce::is_valid_nonce(&n) => (nonce, source) = (n, "badNonce"),
                        // No nonce in the rejection: back through the
                        // governor, which hands one from the pool or
                        // fetches it (the one nonce-fetching loop).
                        _ => {
                            drop(admission);
                            (admission, nonce, source) =
                                self.admit_with_nonce(endpoint, url).await?;
                        }
                    }
                }
                result => {
                    drop(admission);
                    self.keep_nonce(ex.nonce);
                    return result;
                }
            }
        }
    }

    fn keep_nonce(&self, nonce: Option<String>) {
        if let Some(n) = nonce {
            self.nonces.put(n);
        }
    }

    /// Where a fresh nonce for a request to `target` comes from: newNonce,
    /// or (ACME v1, which has none) `target` itself, whatever its status.
    fn nonce_source<'a>(&'a self, target: &'a str) -> Result<(&'a str, bool)> {
        match self.new_nonce_url.get().filter(|u| !u.is_empty()) {
            Some(url) => Ok((url.as_str(), false)),
            None if self.shape().nonce_from_request_url() => Ok((target, true)),
            None => Err(Error::Unsupported("no newNonce URL known".into())),
        }
    }

    /// The governor's admission for a request to `endpoint`, with a nonce:
    /// from the pool, else fetched inside the admission (so requests
    /// waiting their turn fetch none). A failed fetch gives the place up
    /// for its backoff.
    async fn admit_with_nonce(
        &self,
        endpoint: Endpoint,
        target: &str,
    ) -> Result<(Admission<'_>, String, &'static str)> {
        let (url, any_status) = self.nonce_source(target)?;
        let mut retrying = None;
        loop {
            let admission = self.governor.admit(endpoint).await?;
            if let Some(n) = self.nonces.take() {
                return Ok((admission, n, "pool"));
            }
            let retrying = retrying.get_or_insert_with(|| self.retrying(Endpoint::NewNonce, url));
            // A pause the CA asked for on newNonce holds the fetch too.
            self.governor.wait_unpaused(Endpoint::NewNonce).await?;
            self.governor.pace(Endpoint::NewNonce).await;
            match self.fresh_nonce_once(retrying, url, any_status).await {
                Ok(n) => return Ok((admission, n, "fetched")),
                Err(e) => {
                    drop(admission);
                    retrying.pause_or_fail(e).await?;
                }
            }
        }
    }

    async fn fresh_nonce_once(
        &self,
        retrying: &mut Retrying<'_>,
        url: &str,
        any_status: bool,
    ) -> Result<String> {
        let ex = self
            .exchange(
                Endpoint::NewNonce,
                http::Method::HEAD,
                url,
                None,
                &[],
                "none",
                retrying.next_attempt(),
                &[],
                Duration::ZERO,
            )
            .await;
        // Boulder's v1 answered HEAD on a POST-only URL with a 405 that
        // carried a nonce, as every v1 response did.
        let valid = ex.nonce.filter(|n| nonce::is_valid_nonce(n));
        match (ex.result, valid) {
            (Ok(_), Some(n)) => Ok(n),
            (Err(_), Some(n)) if any_status => Ok(n),
            (Err(e), _) => Err(e),
            (Ok(response), None) => Err(Error::InvalidResponse {
                request: response.info(),
                reason: "newNonce answered without a valid Replay-Nonce".into(),
            }),
        }
    }

    /// Refuses URLs that are not HTTPS (plain HTTP only when the directory was).
    fn check_url(&self, url: &str) -> Result<()> {
        self.check_url_for(Endpoint::Other, url)
    }

    /// [`Transport::check_url`], with plain HTTP also allowed for a
    /// revocation list.
    fn check_url_for(&self, endpoint: Endpoint, url: &str) -> Result<()> {
        let http_ok = self.config.allow_http || endpoint == Endpoint::Crl;
        let ok = match url::Url::parse(url) {
            Ok(u) => u.scheme() == "https" || (u.scheme() == "http" && http_ok),
            Err(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidResponse {
                request: Box::new(RequestInfo {
                    method: "POST",
                    url: url.chars().take(200).collect(),
                    status: None,
                    retry_after: None,
                }),
                reason: "the CA handed out a URL that is not a valid HTTPS URL".into(),
            })
        }
    }

    /// One HTTP exchange: send, read the capped body, classify, log once.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        endpoint: Endpoint,
        method: http::Method,
        url: &str,
        body: Option<Vec<u8>>,
        extra_headers: &[(http::HeaderName, &str)],
        nonce_source: &'static str,
        attempt: u32,
        also_ok: &[u16],
        queued: Duration,
    ) -> Exchange {
        let started = Instant::now();
        let method_name: &'static str = match method {
            http::Method::GET => "GET",
            http::Method::HEAD => "HEAD",
            _ => "POST",
        };
        self.counters.count(endpoint);
        // A revocation list may be far larger than any ACME answer.
        let max_body = if endpoint == Endpoint::Crl {
            self.config.max_body.max(MAX_CRL_BODY)
        } else {
            self.config.max_body
        };
        let own_timeout = match method {
            http::Method::POST => self.shape().post_timeout(endpoint),
            _ => None,
        };
        // Boxed: the HTTP exchange's state is allocated only while it runs,
        // so the thousands of requests waiting for the governor do not each
        // carry room for one.
        let ex = match &self.http {
            Http::Network(http) => {
                let mut request = http.request(method, url);
                if let Some(timeout) = own_timeout {
                    request = request.timeout(timeout);
                }
                if let Some(body) = body {
                    request = request
                        .header(http::header::CONTENT_TYPE, JOSE_JSON)
                        .body(body);
                }
                for (name, value) in extra_headers {
                    request = request.header(name, *value);
                }
                Box::pin(self.send(request, method_name, url, also_ok, max_body)).await
            }
            Http::Hook {
                client,
                headers: common,
                timeout,
            } => {
                let timeout = own_timeout.unwrap_or(*timeout);
                let max = max_body;
                let mut headers = common.clone();
                if body.is_some() {
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(JOSE_JSON),
                    );
                }
                for (name, value) in extra_headers {
                    if let Ok(value) = http::HeaderValue::from_str(value) {
                        headers.insert(name.clone(), value);
                    }
                }
                let answer = client.exchange(HttpRequest {
                    method,
                    url,
                    headers,
                    body: body.map(Bytes::from),
                    timeout,
                    max_body: max,
                });
                let request = |status: Option<u16>, headers: Option<&HeaderMap>| {
                    Box::new(RequestInfo {
                        method: method_name,
                        url: url.to_owned(),
                        status,
                        retry_after: headers.and_then(|h| retry_after(h, self.config.clock.now())),
                    })
                };
                // The hook is told the timeout and the cap; the client holds
                // it to both, so a hook that ignores them cannot hang a
                // request (and its governor slot) or hand over any body.
                let answer = tokio::time::timeout(timeout, Box::pin(answer))
                    .await
                    .unwrap_or_else(|_| HttpAnswer::Failed {
                        failure: TransportFailure::Timeout,
                        reason: format!("no answer within {timeout:?}"),
                    });
                match answer {
                    HttpAnswer::Answered {
                        status,
                        headers,
                        body,
                    } if body.len() <= max => {
                        self.answered(method_name, url, also_ok, status, headers, body)
                    }
                    HttpAnswer::Answered {
                        status, headers, ..
                    } => Exchange {
                        nonce: None,
                        result: Err(Error::ResponseTooLarge {
                            request: request(Some(status), Some(&headers)),
                            limit: max,
                        }),
                    },
                    HttpAnswer::TooLarge { status, headers } => Exchange {
                        nonce: None,
                        result: Err(Error::ResponseTooLarge {
                            request: request(Some(status), Some(&headers)),
                            limit: max,
                        }),
                    },
                    HttpAnswer::Failed { failure, reason } => Exchange {
                        nonce: None,
                        result: Err(Error::Transport {
                            request: request(None, None),
                            failure,
                            source: reason.into(),
                        }),
                    },
                }
            }
        };

        let elapsed_ms = started.elapsed().as_millis() as u64;
        // An answer (an error status included) measures the round trip; a
        // failure below HTTP does not.
        if ex
            .result
            .as_ref()
            .map_or_else(|e| e.status().is_some(), |_| true)
        {
            self.round_trip.record(started.elapsed());
        }
        let (status, problem, retry_after, failure) = match &ex.result {
            Ok(r) => (Some(r.status), None, r.retry_after(), None),
            Err(e) => (
                e.status(),
                e.problem_type().map(|p| p.to_string()),
                e.retry_after(),
                Some(e.to_string()),
            ),
        };
        self.config.events.emit(Event::Exchange {
            method: method_name,
            url: url.to_owned(),
            endpoint,
            status,
            problem: problem.clone(),
            retry_after: retry_after.map(|r| r.delay()),
            attempt,
            elapsed: started.elapsed(),
            queued,
        });
        tracing::debug!(
            target: "sturdy_acme::http",
            method = method_name,
            url,
            endpoint = endpoint.as_str(),
            status,
            problem,
            retry_after_s = retry_after.map(|r| r.delay().as_secs()),
            nonce = nonce_source,
            attempt,
            elapsed_ms,
            queued_ms = queued.as_millis() as u64,
            failure,
            "ACME exchange"
        );
        self.pause_on(endpoint, url, &ex);
        ex
    }

    /// Remembers the pause a failed answer asks for (see [`crate::wait`]),
    /// for every request of this client.
    fn pause_on(&self, endpoint: Endpoint, url: &str, ex: &Exchange) {
        let Err(e) = &ex.result else {
            return;
        };
        let now = self.config.clock.now();
        let Some(wait) = Wait::of(e, now) else {
            return;
        };
        let Some(pause) = wait.pause(endpoint) else {
            return;
        };
        if self.governor.waits.pause(pause, wait.delay) {
            let delay = wait.asked.min(crate::wait::MAX_PAUSE);
            tracing::warn!(
                target: "sturdy_acme::http",
                endpoint = pause.endpoint().map(|e| e.as_str()),
                url,
                status = wait.status,
                retry_after_s = delay.as_secs(),
                "the CA asked for a pause: holding every request to it until then"
            );
            self.config.events.emit(Event::Paused {
                endpoint: pause.endpoint(),
                status: wait.status.unwrap_or_default(),
                until: now + wait.delay.min(crate::wait::MAX_PAUSE),
                delay,
                error: e.to_string(),
            });
        }
    }

    /// The pauses and limits this client is under.
    pub(crate) fn waits(&self) -> &Waits {
        &self.governor.waits
    }

    /// Sets how long a pause may hold one request (`None`: as long as the
    /// CA asks).
    pub(crate) fn set_pause_hold_limit(&self, limit: Option<std::time::Duration>) {
        self.governor.set_hold_limit(limit);
    }
}
