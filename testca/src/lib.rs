//! An embedded ACME test CA: a faithful RFC 8555 server
//! in your process that you can make misbehave on cue.
//!
//! [`TestCa`] starts on `127.0.0.1:0` over HTTPS with its own root and
//! intermediate, hands back its directory URL and root PEM, and shuts down
//! when dropped. It verifies every JWS (signature, algorithm, single-use
//! nonce, `url`, `jwk`/`kid` rules, POST-as-GET), rejects what Boulder and
//! Pebble reject with the same problem types and statuses, and issues real
//! X.509 certificates that verify against its root.
//!
//! It also behaves like a real CA where clients get hurt: Retry-After on
//! polls, asynchronous finalization, reuse of a pending order for the same
//! names, Let's Encrypt's rate limits ([`RateLimits`]), and CAA per domain
//! ([`CaaPolicy`]: allow, forbid, or the "Rechecking CAA ... query timed
//! out" DNS failure). A [fault script](FaultRule) makes the n-th request (or
//! a seeded fraction of requests) to an endpoint fail: an empty 500, a 503
//! with Retry-After, `badNonce`, 429, a dropped or slow response after the
//! action was committed, a truncated, invalid, endless or oversized body.
//! The [`Ledger`] records every certificate issued and every request per
//! endpoint, so a test can assert "exactly one certificate for this set".
//!
//! Its certificates are what Let's Encrypt issues now: the serverAuth EKU
//! only (no clientAuth since 2026), no OCSP URL, `notBefore` backdated as
//! Boulder backdates it (58 min 30 s); a CSR asking for OCSP Must-Staple is
//! refused at finalize (403 `unauthorized`, Boulder's words). As Boulder
//! does (RFC 8555 §7.6), an account holding valid authorizations for every
//! name of a certificate may revoke it (recorded as cessationOfOperation),
//! and a CAA recheck failing at finalize makes the order `invalid`.
//!
//! With [`Dialect::V1`] the same CA speaks ACME v1 instead, exactly as Let's
//! Encrypt's Boulder served it at `acme-v01` (directory keys `new-reg`,
//! `new-authz`, `new-cert`, ..., `resource` in every payload, DER
//! certificates, `urn:acme:error:*` problems), with the same validation,
//! rate limits, CAA, fault script and ledger; see [`TestCaBuilder::dialect`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sturdy_acme_testca::TestCa;
//! use sturdy_acme::{AccountKey, AccountOptions, CertificateKey, Csr, KeyAlgorithm, NewOrder};
//!
//! let ca = TestCa::start().await?; // every challenge is valid at once
//! let client = ca.client().await?;
//! let account = client
//!     .create_account(AccountKey::generate(KeyAlgorithm::Es256)?, &AccountOptions::agreeing_to_terms())
//!     .await?;
//! let mut order = account.new_order(&NewOrder::for_names(&["demo.example"])?).await?;
//! for authz in order.authorizations().await? {
//!     authz.challenges()[0].clone().respond().await?;
//! }
//! order.wait_ready().await?;
//! let key = CertificateKey::generate(Default::default())?;
//! order.finalize(Csr::Key(&key)).await?;
//! let chain = order.certificate().await?;
//! assert_eq!(ca.ledger().issued_for(&["demo.example"]), 1);
//! # let _ = chain; Ok(()) }
//! ```
//!
//! # Testing your integration
//!
//! What a service's own test suite wants: its real issuer code, real
//! challenge validation, the failures it must survive, and assertions on
//! what the CA actually did.
//!
//! 1. **Validate for real.** The default is [`ValidationMode::AlwaysValid`]
//!    (a warning says so at start): a solver that serves nothing passes.
//!    [`TestCaBuilder::with_http01_responder`] binds the crate's http-01
//!    responder and points the CA at it; [`TestCaBuilder::http01_port`],
//!    [`TestCaBuilder::tls_alpn01_port`] and [`TestCaBuilder::dns01_resolver`]
//!    point it at your own servers (every DNS name resolves to loopback; a
//!    type left unset fails as a real CA would).
//! 2. **Inject the failures that matter.** [`FaultRule`]s on an
//!    [`Endpoint`]: `badNonce`, 503 with Retry-After, 429,
//!    a response lost after the CA acted ([`Fault::DropAfterCommit`] on
//!    finalize is the founding story's lost certificate), CAA timeouts with
//!    [`CaaPolicy::Timeout`]. [`TestCa::set_faults`] changes them mid-test.
//! 3. **Assert on the CA's side.** [`TestCa::ledger`]: certificates issued
//!    (one per identifier set?), requests per endpoint (none on a second
//!    pass?), finalizations and what state they found.
//! 4. **Count your metrics against it.** The `Event::Exchange` events a
//!    client reports ([`ClientBuilder::on_event`](sturdy_acme::ClientBuilder::on_event))
//!    equal the ledger's requests per endpoint, faults included.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::Error> {
//! use std::sync::Arc;
//! use sturdy_acme::solver::http01::Http01Solver;
//! use sturdy_acme::store::FileStore;
//! use sturdy_acme_testca::{Fault, FaultRule, TestCa, Trigger};
//! use sturdy_acme::{CertificateSource, Endpoint, EnsureOptions, Issuer};
//!
//! // Real http-01, and the first finalize answer lost after the CA issued.
//! let (builder, responder) = TestCa::builder()
//!     .faults(vec![FaultRule::new(Endpoint::Finalize, Trigger::Nth(1), Fault::DropAfterCommit)])
//!     .with_http01_responder()
//!     .await?;
//! let ca = builder.start().await?;
//! let dir = std::env::temp_dir().join(format!("sturdy-doc-integration-{}", std::process::id()));
//! let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
//!     .solver(Arc::new(Http01Solver::for_responder(&responder)))
//!     .build();
//! issuer.ensure(&["customer.example"], &EnsureOptions::default()).await?;
//! assert_eq!(ca.ledger().issued_for(&["customer.example"]), 1); // not lost, not twice
//! let requests = ca.ledger().requests.values().sum::<u64>();
//! let again = issuer.ensure(&["customer.example"], &EnsureOptions::default()).await?;
//! assert_eq!(again.source, CertificateSource::Stored);
//! assert_eq!(ca.ledger().requests.values().sum::<u64>(), requests);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! (Over 800 lines: mostly documentation. `TestCa`, its builder and the
//! crate's guide are the product's front page; the CA's logic lives in
//! `ca/`, the server in `server.rs`.)

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// `ca` also holds `v1` (ca/v1/): the ACME v1 dialect.
mod ca;
mod codec;
pub mod command;
mod conformance;
mod edge_conformance;
mod faults;
mod in_process;
mod jws;
mod ledger_conformance;
mod limits;
pub mod management;
mod pki;
mod recorded;
mod server;
pub mod simulation;
mod store_conformance;
mod validation;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use ca::{RenewalInfoAnswer, ValidationMode};
pub use conformance::ConformanceFailure;
pub use edge_conformance::{check_requests, check_validations};
pub use faults::{CannedAnswer, Fault, FaultRule, RetryAfterForm, Trigger};
use in_process::InProcess;
pub use ledger_conformance::check_ledger_entries;
pub use store_conformance::{check_feed, check_store};
use sturdy_acme::RateLimits;
pub use validation::{CaaFuture, DnsFuture, DnsResolver, LookupError, ServerDns, StaticDns};

use sturdy_acme::Endpoint;
use sturdy_acme::Identifier;
use sturdy_acme::{Client, ClientBuilder};
use sturdy_acme::{Error, Result};

/// Which ACME protocol the test CA speaks (a CA speaks exactly one): the
/// crate's [`Dialect`]. See
/// [`TestCaBuilder::dialect`] for what a [`Dialect::V1`] CA serves.
use sturdy_acme::Dialect;

/// What the CA answers for a domain's CAA check at finalize.
///
/// Example: [`TestCa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaaPolicy {
    /// CAA allows issuance (or there is no record).
    Allow,
    /// A CAA record forbids this CA: 403 `caa`, "CAA record for X prevents issuance".
    Forbid,
    /// The CAA lookup times out every time: 403 `caa`, "Rechecking CAA ... query timed out".
    Timeout,
    /// The CAA lookup times out this many times, then succeeds.
    TimeoutTimes(u32),
}

/// A certificate the CA issued.
///
/// Example: [`TestCa`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Its identifiers, sorted.
    pub identifiers: Vec<Identifier>,
    /// The account URL it was issued to (v1: the registration URL).
    pub account: String,
    /// The order URL (for a certificate issued through ACME v1's new-cert,
    /// which has no orders: the certificate URL).
    pub order: String,
    /// When.
    pub issued_at: SystemTime,
    /// The revocation reason, once revoked.
    pub revoked: Option<u8>,
    /// Issued for an ARI renewal (a `replaces` inside the replaced
    /// certificate's window): it spent no rate-limit token.
    pub ari_exempt: bool,
    /// The leaf certificate, DER (e.g. for a test
    /// [`CertificateFinder`](sturdy_acme::CertificateFinder) searching the CA's
    /// ledger as it would a Certificate Transparency log).
    pub leaf_der: Vec<u8>,
}

/// A signed request as the CA received it, decoded but not verified: what
/// went over the wire, for assertions on headers and payloads.
///
/// Example: [`TestCa`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedJws {
    /// The endpoint it counted as.
    pub endpoint: Endpoint,
    /// The request path.
    pub path: String,
    /// The JWS protected header.
    pub protected: serde_json::Value,
    /// The payload (None: empty, i.e. POST-as-GET, or not JSON).
    pub payload: Option<serde_json::Value>,
}

/// What the CA did, for assertions.
///
/// Example: [`TestCa`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Every certificate issued, in order.
    pub certificates: Vec<IssuedCertificate>,
    /// Requests received per endpoint (faulted ones included).
    pub requests: BTreeMap<Endpoint, u64>,
    /// When requests arrived, oldest first: the latest 100 000.
    pub arrivals: Vec<(Endpoint, std::time::SystemTime)>,
    /// The most requests the CA was handling at once.
    pub peak_in_flight: u64,
    /// The finalize requests received (faulted ones included), oldest
    /// first, with the order's status when each arrived: the latest 10 000
    /// (see [`TestCaBuilder::recorded_finalizations_limit`]).
    pub finalizations: Vec<FinalizeRecord>,
}

/// A finalize request as the CA received it.
///
/// Example: [`TestCa`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizeRecord {
    /// The order URL (for a certificate issued through ACME v1's new-cert,
    /// which has no orders: the certificate URL).
    pub order: String,
    /// The order's status when the request arrived.
    pub status_before: sturdy_acme::OrderStatus,
}

impl Ledger {
    /// Certificates issued for exactly this set of names (any order, any case).
    pub fn issued_for<S: AsRef<str>>(&self, names: &[S]) -> usize {
        let mut wanted: Vec<String> = names
            .iter()
            .map(|n| n.as_ref().trim_end_matches('.').to_ascii_lowercase())
            .collect();
        wanted.sort();
        wanted.dedup();
        self.certificates
            .iter()
            .filter(|c| {
                let mut have: Vec<String> = c.identifiers.iter().map(|i| i.value.clone()).collect();
                have.sort();
                have == wanted
            })
            .count()
    }

    /// Requests received for `endpoint`.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or(0)
    }
}

/// Configures and starts a [`TestCa`].
///
/// Example: [`TestCa`], and real validation in
/// [`TestCaBuilder::with_http01_responder`].
#[derive(Debug, Clone)]
pub struct TestCaBuilder {
    config: ca::Config,
    faults: Vec<FaultRule>,
    bind: SocketAddr,
    name: String,
    in_process_host: String,
}

impl TestCaBuilder {
    /// The host of an in-process CA's URLs (default
    /// `in-process.test-ca.invalid`, see [`TestCaBuilder::start_in_process`]):
    /// two in-process CAs behind one client library (a CA set, a
    /// simulation with two CAs) need two, as the store keys records by the
    /// directory URL.
    pub fn in_process_host(mut self, host: impl Into<String>) -> Self {
        self.in_process_host = host.into();
        self
    }

    /// How challenges are validated (default: always valid).
    pub fn validation(mut self, mode: ValidationMode) -> Self {
        self.config.validation = mode;
        self
    }

    /// Really validates http-01 challenges, by fetching
    /// `http://127.0.0.1:port/.well-known/acme-challenge/<token>` (every DNS
    /// name resolves to loopback). Switches the CA from always-valid to real
    /// validation: a challenge type with no port or resolver set is then
    /// not served, and fails as a real CA would (`connection` for http-01
    /// and tls-alpn-01, `dns` for dns-01).
    pub fn http01_port(mut self, port: u16) -> Self {
        if let ValidationMode::Real { http_port, .. } = self.real_mode() {
            *http_port = port;
        }
        self
    }

    /// Really validates tls-alpn-01 challenges on `127.0.0.1:port`; see
    /// [`TestCaBuilder::http01_port`].
    pub fn tls_alpn01_port(mut self, port: u16) -> Self {
        if let ValidationMode::Real { tls_port, .. } = self.real_mode() {
            *tls_port = port;
        }
        self
    }

    /// Really validates dns-01 challenges, looking the TXT records up in
    /// `dns` (e.g. a [`StaticDns`] your solver writes); see
    /// [`TestCaBuilder::http01_port`].
    pub fn dns01_resolver(mut self, resolver: Arc<dyn DnsResolver>) -> Self {
        if let ValidationMode::Real { dns, .. } = self.real_mode() {
            *dns = resolver;
        }
        self
    }

    /// Binds the crate's own [`Http01Responder`](sturdy_acme::solver::http01::Http01Responder)
    /// on a free loopback port and validates http-01 against it: hand
    /// [`Http01Solver::for_responder`](sturdy_acme::solver::http01::Http01Solver::for_responder)
    /// to the issuer and real validation just works. Keep the responder
    /// alive as long as the CA.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    ///
    /// let (builder, responder) = TestCa::builder().with_http01_responder().await?;
    /// let ca = builder.start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-http01-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::for_responder(&responder)))
    ///     .build();
    /// issuer.ensure(&["really.validated.test"], &EnsureOptions::default()).await?;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn with_http01_responder(
        self,
    ) -> Result<(Self, sturdy_acme::solver::http01::Http01Responder)> {
        let responder = sturdy_acme::solver::http01::Http01Responder::bind(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        )))
        .await?;
        let port = responder.local_addr().port();
        Ok((self.http01_port(port), responder))
    }

    /// The real-validation settings, switching to them (nothing served)
    /// from always-valid.
    fn real_mode(&mut self) -> &mut ValidationMode {
        if matches!(self.config.validation, ValidationMode::AlwaysValid) {
            self.config.validation = ValidationMode::Real {
                http_port: 0,
                tls_port: 0,
                dns: Arc::new(StaticDns::new()),
            };
        }
        &mut self.config.validation
    }

    /// Real validation: http-01 on `127.0.0.1:http_port`, tls-alpn-01 on
    /// `127.0.0.1:tls_port`, dns-01 TXT records from `dns`. Port 0 means
    /// not served (that challenge type fails with `connection`). The named
    /// setters ([`TestCaBuilder::http01_port`],
    /// [`TestCaBuilder::tls_alpn01_port`], [`TestCaBuilder::dns01_resolver`])
    /// say the same without positional ports.
    pub fn real_validation(self, http_port: u16, tls_port: u16, dns: Arc<dyn DnsResolver>) -> Self {
        self.validation(ValidationMode::Real {
            http_port,
            tls_port,
            dns,
        })
    }

    /// Validation happens this long after a challenge is answered (default 0).
    pub fn validation_delay(mut self, delay: Duration) -> Self {
        self.config.validation_delay = delay;
        self
    }

    /// Finalize answers `processing`; the order turns `valid` after `delay`
    /// (default 0: finalize answers `valid`).
    pub fn finalize_processing(mut self, delay: Duration) -> Self {
        self.config.finalize_processing = delay;
        self
    }

    /// Send `Retry-After: secs` on pending or processing orders and authorizations.
    pub fn poll_retry_after(mut self, secs: u64) -> Self {
        self.config.poll_retry_after = Some(secs);
        self
    }

    /// The rate limits to enforce (default none).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.config.rate_limits = limits;
        self
    }

    /// CAA behaviour for a domain and its subdomains.
    pub fn caa(mut self, domain: &str, policy: CaaPolicy) -> Self {
        self.config.caa.insert(domain.to_ascii_lowercase(), policy);
        self
    }

    /// Fault rules (see [`FaultRule`]).
    pub fn faults(mut self, rules: Vec<FaultRule>) -> Self {
        self.faults = rules;
        self
    }

    /// Adds an external account binding key (kid, base64url HMAC key). A
    /// binding MAC'd with it by HS256, HS384 or HS512 is accepted (RFC 8555
    /// lets the CA choose; Pebble accepts these three).
    pub fn eab_key(mut self, kid: &str, hmac_b64url: &str) -> Result<Self> {
        let key = crate::codec::b64_decode(hmac_b64url)
            .ok_or_else(|| Error::InvalidInput("EAB key is not base64url".into()))?;
        self.config.eab_keys.0.insert(kid.to_owned(), key);
        Ok(self)
    }

    /// Require an external account binding on newAccount.
    pub fn eab_required(mut self, required: bool) -> Self {
        self.config.eab_required = required;
        self
    }

    /// Serve ACME Renewal Information (RFC 9773; off by default, as in
    /// Pebble 2.4): `renewalInfo` in the directory (GET or HEAD),
    /// `replaces` validated as Boulder does (another CA's CertID 404,
    /// another account's certificate 403, no shared identifier 400, already
    /// replaced by a pending, ready, processing or valid order 409
    /// `alreadyReplaced`; the exact wording is in the module docs of the
    /// CA's renewal code) and an ARI renewal inside its window exempt from
    /// every rate limit. `renew_after`:
    /// - `Some(d)`, `d > 0`: every certificate's window opens `d` after
    ///   issuance and lasts exactly an hour;
    /// - `Some(Duration::ZERO)`: "renew now": Boulder's window for a
    ///   revoked certificate, from an hour ago to half an hour ago whenever
    ///   asked, so a client picking a random moment in it (RFC 9773 §4.2)
    ///   always finds it past; a `replaces` naming such a certificate is
    ///   still exempt until the certificate expires;
    /// - `None`: Boulder's window (a third of the lifetime before expiry,
    ///   half for 10 days or less, ± a hundredth of it).
    ///
    /// `Retry-After` on each answer: 21600 s, as Pebble sends (see
    /// [`TestCaBuilder::renewal_info_retry_after`]).
    pub fn renewal_info(mut self, renew_after: Option<Duration>) -> Self {
        self.config.renewal_info = Some(ca::AriPolicy {
            renew_after,
            retry_after_secs: 21600,
        });
        self
    }

    /// The `Retry-After` seconds `renewalInfo` answers carry (with
    /// [`TestCaBuilder::renewal_info`]).
    pub fn renewal_info_retry_after(mut self, secs: u64) -> Self {
        if let Some(policy) = &mut self.config.renewal_info {
            policy.retry_after_secs = secs;
        }
        self
    }

    /// Whether a CAA recheck failing at finalize makes the order `invalid`
    /// with the `caa` problem as its error (default `true`: Boulder since
    /// 2026, `CAARechecksFailOrder`, boulder#8610; the finalize request
    /// gets the problem, or `processing` under
    /// [`TestCaBuilder::finalize_processing`]). `false`: the older Boulder,
    /// whose recheck ran before processing: the finalize request gets the
    /// problem and the order stays `ready` for another finalize.
    pub fn caa_recheck_fails_order(mut self, fails: bool) -> Self {
        self.config.caa_recheck_fails_order = fails;
        self
    }

    /// The CAA identity the CA announces in its directory
    /// (`caaIdentities`) and checks CAA records against (default
    /// `sturdy-acme.test`): two test CAs with different identities play
    /// two CAs a customer's CAA records tell apart.
    pub fn caa_identity(mut self, identity: impl Into<String>) -> Self {
        self.config.caa_identity = identity.into().to_ascii_lowercase();
        self
    }

    /// Offer Let's Encrypt's certificate profiles (`meta.profiles`):
    /// `classic` (90 days, at most 100 names; the default), `tlsserver`
    /// (45 days, 25 names) and `shortlived` (160 hours, 25 names, the only
    /// one allowing IP addresses); anything else is `invalidProfile`. As
    /// Boulder answers: an IP address under `classic` or `tlsserver` is
    /// `rejectedIdentifier`, too many names `malformed`.
    pub fn profiles(mut self, enabled: bool) -> Self {
        self.config.profiles = enabled;
        self
    }

    /// Offer an alternate chain (leaf + cross-signed intermediate, to an alternate root).
    pub fn alternate_chain(mut self, enabled: bool) -> Self {
        self.config.alternate_chain = enabled;
        self
    }

    /// How many shards its revocation lists are cut into (default 4; 0:
    /// certificates name no revocation list). A v2 certificate names its
    /// shard's list, `{base}/crl/{shard}`, in its CRL Distribution Points.
    pub fn crl_shards(mut self, shards: u8) -> Self {
        self.config.crl_shards = shards;
        self
    }

    /// Accept EdDSA account keys (Boulder and Pebble do not; default false).
    pub fn accept_eddsa(mut self, accept: bool) -> Self {
        self.config.accept_eddsa = accept;
        self
    }

    /// Hand back an existing pending/ready order for the same account and
    /// names, as Boulder does (default true).
    pub fn reuse_pending_orders(mut self, reuse: bool) -> Self {
        self.config.reuse_pending_orders = reuse;
        self
    }

    /// Reuse an account's valid authorizations in new orders (default true).
    pub fn reuse_valid_authorizations(mut self, reuse: bool) -> Self {
        self.config.reuse_valid_authorizations = reuse;
        self
    }

    /// How long a validated authorization stays valid for reuse (default
    /// 30 days, Let's Encrypt's `classic` until 2027-02-10; 10 days then,
    /// 7 hours from 2028-02-16).
    pub fn authorization_reuse(mut self, reuse: Duration) -> Self {
        self.config.authorization_reuse = reuse;
        self
    }

    /// The certificate lifetime for orders without a profile (default 90
    /// days).
    pub fn certificate_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.certificate_lifetime = lifetime;
        self
    }

    /// Refuse these domains (and their subdomains) with `rejectedIdentifier`.
    pub fn blocked_domains(mut self, domains: &[&str]) -> Self {
        self.config.blocked_domains = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        self
    }

    /// Page size of the account's orders list (default 10).
    pub fn orders_per_page(mut self, n: usize) -> Self {
        self.config.orders_per_page = n;
        self
    }

    /// The protocol to speak (default [`Dialect::V2`]).
    ///
    /// A [`Dialect::V1`] CA serves the pre-RFC ACME v1 API as Let's
    /// Encrypt's Boulder served it at `acme-v01.api.letsencrypt.org` until
    /// 2021, and nothing else: the
    /// directory (at `/directory`) has `new-reg`, `new-authz`, `new-cert`,
    /// `revoke-cert`, `key-change` and `meta.terms-of-service`, and no
    /// `newNonce`.
    ///
    /// * JWS: flattened, protected header `{alg, jwk, nonce}`; `url` is not
    ///   required (and ignored), `kid` is refused; every payload carries the
    ///   `resource` of its endpoint (`new-reg`, `reg`, `new-authz`, `authz`,
    ///   `challenge`, `new-cert`, `revoke-cert`, `key-change`). The account
    ///   is the JWK. `Content-Type` is not checked, `Content-Length` is
    ///   required.
    /// * Every response carries a `Replay-Nonce` (errors, 404s and 405s
    ///   too; not the fault script's bare 500s and 503s); `HEAD` on any URL
    ///   gives one (there is no new-nonce).
    /// * Errors are `application/problem+json` with `urn:acme:error:*`
    ///   types and Boulder's statuses (409 for a registered key, 404, 405,
    ///   411, 429 without `Retry-After`).
    /// * new-reg 201 (`Location`, `Link` next and terms-of-service), then
    ///   agreement through the registration URL (202); new-authz per
    ///   identifier (201); challenge answers 202 with `Link` up; plain `GET`
    ///   for authorizations; new-cert 201 with the DER leaf, `Location` and
    ///   `Link` up to the DER intermediate; revoke-cert 200.
    ///
    /// Fault rules and the [`Ledger`] use the [`Endpoint`]s `new-reg` →
    /// `NewAccount`, `reg` → `Account`, `new-authz` → `NewOrder`, `authz` →
    /// `Authorization`, `challenge` → `Challenge`, `new-cert` → `Finalize`,
    /// `cert` and `issuer-cert` → `Certificate`, `revoke-cert` → `Revoke`,
    /// `key-change` → `KeyChange`, `directory` → `Directory`, any `HEAD`
    /// → `NewNonce`. A certificate issued through new-cert is in
    /// [`Ledger::certificates`] with the registration URL as `account` and
    /// its certificate URL as `order`.
    ///
    /// The crate's [`Client`] detects the dialect from the directory, so
    /// [`TestCa::client`] works with a v1 CA too.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.config.dialect = dialect;
        self
    }

    /// How many signed requests [`TestCa::recorded_jws`] keeps: the latest
    /// `max_entries` (default 4096; 0 records none) that fit in about
    /// `max_bytes` of memory together (default 16 MiB, estimated from the
    /// decoded JSON, which takes more room than its text). A request too
    /// large to fit on its own is not recorded.
    pub fn recorded_jws_limit(mut self, max_entries: usize, max_bytes: usize) -> Self {
        self.config.recorded_jws_entries = max_entries;
        self.config.recorded_jws_bytes = max_bytes;
        self
    }

    /// How many finalize requests [`Ledger::finalizations`] keeps: the
    /// latest `max_entries` (default 10 000; 0 records none).
    pub fn recorded_finalizations_limit(mut self, max_entries: usize) -> Self {
        self.config.recorded_finalizations = max_entries;
        self
    }

    /// Delays every answer by `latency` (default none): a CA across the
    /// internet, or a busy one, so requests overlap as they do in
    /// production ([`Ledger::peak_in_flight`] counts them).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// How many connections the CA serves at once (default 512; at least
    /// 1). When all are taken it accepts no more until one ends; newcomers
    /// wait in the listen backlog. Idle keep-alive connections count until
    /// the [header read timeout](Self::header_read_timeout) closes them.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.server.max_connections = n.max(1);
        self
    }

    /// How long a client may take to send a request head, from the
    /// connection's start or the end of the previous response, so it also
    /// closes idle keep-alive connections (default 30 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.server.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to send a request body once its head is
    /// in (default 30 s); the connection is closed, without an answer, when
    /// it runs out.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.server.body_read_timeout = timeout;
        self
    }

    /// Address to listen on (default `127.0.0.1:0`; must be loopback).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Starts the CA.
    pub async fn start(self) -> Result<TestCa> {
        if !self.bind.ip().is_loopback() {
            return Err(Error::InvalidInput(format!(
                "the test CA listens on loopback only, not {}",
                self.bind
            )));
        }
        let bind = self.bind;
        let (ca, handler, tls, limits) = self.into_ca()?;
        let server = server::HttpsServer::start(bind, Some(tls), handler, limits).await?;
        let addr = server.local_addr();
        ca.set_base(format!("https://{addr}"));
        tracing::info!(directory = %ca.directory_url(), "test CA listening");
        Ok(TestCa {
            ca,
            front: Front::Https(server),
        })
    }

    /// Starts the CA without a listening socket: only the clients from
    /// [`TestCa::client_builder`] reach it, each request handed to the CA in
    /// the calling task. For simulations on tokio's paused clock (where a
    /// socket's wait would let the clock jump past every timeout) and for
    /// scale runs that should not measure the loopback stack. Its URLs are
    /// under `https://in-process.test-ca.invalid` (or
    /// [`TestCaBuilder::in_process_host`]); challenges are not
    /// validated over the network, so use [`ValidationMode::AlwaysValid`]
    /// (the default) or a DNS resolver.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{AccountKey, AccountOptions, Endpoint, KeyAlgorithm};
    ///
    /// let ca = TestCa::builder().start_in_process()?;
    /// let client = ca.client().await?;
    /// let key = AccountKey::generate(KeyAlgorithm::Es256)?;
    /// client.create_account(key, &AccountOptions::agreeing_to_terms()).await?;
    /// assert_eq!(ca.ledger().requests_to(Endpoint::NewAccount), 1);
    /// # Ok(()) }
    /// ```
    pub fn start_in_process(self) -> Result<TestCa> {
        let base = format!("https://{}", self.in_process_host);
        let (ca, handler, _, _) = self.into_ca()?;
        ca.set_base(base.clone());
        Ok(TestCa {
            ca,
            front: Front::InProcess(InProcess::new(handler, base)),
        })
    }

    /// The CA, its request handler, and the listener's TLS settings and
    /// limits.
    #[allow(clippy::type_complexity)]
    fn into_ca(
        self,
    ) -> Result<(
        Arc<ca::Ca>,
        server::Handler,
        Arc<rustls::ServerConfig>,
        server::ServerLimits,
    )> {
        let pki =
            pki::Pki::generate(&self.name, self.config.alternate_chain).map_err(Error::Crypto)?;
        let tls = pki.listener_tls_config();
        let limits = self.config.server;
        let ca = Arc::new(ca::Ca::new(
            self.config,
            pki,
            faults::FaultScript::new(self.faults),
        ));
        if matches!(ca.validation_mode(), ValidationMode::AlwaysValid) {
            tracing::warn!(
                "test CA: every challenge is valid without being checked (ValidationMode::AlwaysValid, \
                 the default); a broken solver passes. TestCaBuilder::http01_port, tls_alpn01_port, \
                 dns01_resolver or with_http01_responder turn real validation on"
            );
        }
        let handler_ca = Arc::clone(&ca);
        let handler: server::Handler = Arc::new(move |req| {
            let ca = Arc::clone(&handler_ca);
            Box::pin(async move { ca.handle(req).await })
        });
        Ok((ca, handler, tls, limits))
    }
}

/// How clients reach a [`TestCa`].
#[derive(Debug)]
enum Front {
    /// Its HTTPS server on loopback.
    Https(server::HttpsServer),
    /// In-process only ([`TestCaBuilder::start_in_process`]).
    InProcess(InProcess),
}

/// A running embedded ACME CA. Stops when dropped.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme_testca::{Fault, FaultRule, TestCa, Trigger};
/// use sturdy_acme::{AccountKey, AccountOptions, Endpoint, KeyAlgorithm};
///
/// // The first newAccount answer is lost after the CA created the account.
/// let ca = TestCa::builder()
///     .faults(vec![FaultRule::new(Endpoint::NewAccount, Trigger::Nth(1), Fault::DropAfterCommit)])
///     .start()
///     .await?;
/// let client = ca.client().await?;
/// let account = client
///     .create_account(AccountKey::generate(KeyAlgorithm::Es256)?, &AccountOptions::agreeing_to_terms())
///     .await?; // retried: newAccount is idempotent for a key
/// assert!(account.url().starts_with(&ca.directory_url().replace("/dir", "")));
/// assert_eq!(ca.ledger().requests_to(Endpoint::NewAccount), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestCa {
    ca: Arc<ca::Ca>,
    front: Front,
}

impl TestCa {
    /// A builder with the defaults: **always-valid challenges** (every
    /// challenge answered is valid at once and nothing is contacted, so a
    /// solver that serves nothing passes; a warning says so when the CA
    /// starts), no rate limits, no faults. For real validation use
    /// [`TestCaBuilder::with_http01_responder`] or the named setters.
    pub fn builder() -> TestCaBuilder {
        TestCaBuilder {
            config: ca::Config::default(),
            faults: Vec::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "sturdy-acme Test".into(),
            in_process_host: "in-process.test-ca.invalid".into(),
        }
    }

    /// Starts a CA with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// The directory URL.
    pub fn directory_url(&self) -> String {
        self.ca.directory_url()
    }

    /// The protocol it speaks.
    pub fn dialect(&self) -> Dialect {
        self.ca.dialect()
    }

    /// The address it listens on (`127.0.0.1:0` for a CA started with
    /// [`TestCaBuilder::start_in_process`], which listens nowhere).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.front {
            Front::Https(server) => server.local_addr(),
            Front::InProcess(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The root certificate (PEM): it signs the HTTPS listener's certificate
    /// and the issuing intermediate, so trust it for both.
    pub fn root_pem(&self) -> String {
        self.ca.pki.root_pem()
    }

    /// The alternate root (PEM), when an alternate chain is offered.
    pub fn alternate_root_pem(&self) -> Option<String> {
        self.ca.pki.alternate_root_pem()
    }

    /// A client builder for this CA (trusting only its root).
    pub fn client_builder(&self) -> ClientBuilder {
        let builder = Client::builder(self.directory_url())
            .root_certificates_pem(self.root_pem())
            .built_in_roots(false);
        match &self.front {
            Front::Https(_) => builder,
            Front::InProcess(ca) => builder.http_client(Arc::new(ca.clone())),
        }
    }

    /// A client for this CA.
    pub async fn client(&self) -> Result<Client> {
        self.client_builder().build().await
    }

    /// What happened so far.
    pub fn ledger(&self) -> Ledger {
        self.ca.ledger()
    }

    /// The signed requests received so far (both dialects, faulted ones
    /// included), oldest first: the latest 4096 that fit in about 16 MiB
    /// (see [`TestCaBuilder::recorded_jws_limit`]).
    pub fn recorded_jws(&self) -> Vec<RecordedJws> {
        self.ca.recorded_jws()
    }

    /// Scripts the `renewalInfo` answer for the certificate with this
    /// serial (hex, as [`IssuedCertificate::serial`]), with its
    /// `Retry-After` seconds (`None`: the default).
    pub fn set_renewal_info(
        &self,
        serial: &str,
        answer: RenewalInfoAnswer,
        retry_after_secs: Option<u64>,
    ) {
        self.ca.set_renewal_info(serial, answer, retry_after_secs);
    }

    /// A mass-revocation drill, as Let's Encrypt ran on 2026-03-19: the
    /// renewal windows of `share` (0 to 1) of the live certificates move
    /// into the past, to `(now - 1 h, now + end_after)`, with this
    /// `explanationURL`. A client that rechecks its renewal information
    /// replaces them at once, as exempt ARI renewals. The draw is seeded:
    /// one seed moves the same certificates every run. Returns their
    /// serials.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::time::Duration;
    /// use sturdy_acme_testca::TestCa;
    ///
    /// let ca = TestCa::start().await?;
    /// // Nothing issued yet: nothing to move.
    /// assert!(ca.drill_renewal_windows(0.1, 7, Duration::from_secs(86_400), None).is_empty());
    /// # Ok(()) }
    /// ```
    pub fn drill_renewal_windows(
        &self,
        share: f64,
        seed: u64,
        end_after: Duration,
        explanation_url: Option<String>,
    ) -> Vec<String> {
        self.ca
            .drill_renewal_windows(share, seed, end_after, explanation_url)
    }

    /// Replaces the fault script (counters restart).
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.ca.faults.replace(rules);
    }

    /// Changes the CAA behaviour for a domain.
    pub fn set_caa(&self, domain: &str, policy: CaaPolicy) {
        self.ca.set_caa(domain, policy);
    }

    /// The rate limits it enforces (announced in its directory's `meta` as
    /// `sturdyRateLimits` when not empty).
    pub fn enforced_rate_limits(&self) -> RateLimits {
        self.ca.rate_limits()
    }

    /// A chain change for new issuance (as Let's Encrypt's move to its Gen Y
    /// hierarchy in 2026): with `true`, a new certificate's default chain
    /// leads to the alternate root (the cross-signed intermediate), and the
    /// chain to the first root becomes its alternate. Needs
    /// [`TestCaBuilder::alternate_chain`]; certificates already issued keep
    /// their chains.
    pub fn set_default_to_alternate_root(&self, alternate: bool) {
        self.ca
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .default_to_alternate_root = alternate;
    }

    /// Withdraws a certificate profile at run time (as a CA retires one):
    /// the directory no longer lists it and a newOrder asking for it is
    /// refused with `invalidProfile`. A client that read the directory
    /// before still asks for it.
    pub fn withdraw_profile(&self, name: &str) {
        self.ca
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .withdrawn_profiles
            .push(name.to_owned());
    }

    /// Changes the lifetime of certificates issued from `from` on (the
    /// CA's clock) for `profile` (`None`: the default and `classic`), as
    /// Let's Encrypt's `classic` goes to 64 days on 2027-02-10 and 45 days
    /// on 2028-02-16. Certificates issued before keep theirs. The latest
    /// change in force wins.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    /// use sturdy_acme_testca::TestCa;
    ///
    /// let ca = TestCa::start().await?;
    /// ca.change_lifetime_on(SystemTime::now(), None, Duration::from_secs(64 * 86_400));
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-lifetime-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .build();
    /// let cert = issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?.certificate;
    /// let lifetime = cert.not_after.duration_since(cert.not_before).unwrap();
    /// assert_eq!(lifetime.as_secs() / 86_400, 64);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn change_lifetime_on(&self, from: SystemTime, profile: Option<&str>, lifetime: Duration) {
        self.ca
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lifetime_changes
            .push(ca::LifetimeChange {
                from,
                profile: profile.map(str::to_owned),
                lifetime,
            });
    }

    /// A revocation behind the client's back (a third party's
    /// key-compromise report, a CA's own finding): the unrevoked
    /// certificate with hex serial `serial` is revoked for RFC 5280 reason
    /// code `reason` and listed in its revocation list, while its renewal
    /// information stays as it was, so only a client that reads the CRL
    /// notices. False if no unrevoked certificate has that serial.
    ///
    /// Example: [`sturdy_acme::crl`].
    pub fn revoke_quietly(&self, serial: &str, reason: u8) -> bool {
        self.ca.revoke_quietly(serial, reason)
    }

    /// [`TestCa::revoke_quietly`] for a seeded `share` of the live
    /// certificates (the newest of each identifier set, unrevoked and
    /// unexpired; one seed picks the same ones every run). Returns their
    /// serials.
    pub fn revoke_share_quietly(&self, share: f64, seed: u64, reason: u8) -> Vec<String> {
        self.ca.revoke_share_quietly(share, seed, reason)
    }

    /// The most of each kind of rate-limit bucket spent at once, as a
    /// share of its capacity (`orders`: new orders per account, `domain`:
    /// certificates per registered domain, `set`: per exact set, ...):
    /// 1.0 means a bucket was emptied.
    pub fn peak_limit_use(&self) -> BTreeMap<String, f64> {
        self.ca.limit_peaks()
    }

    /// Revocation lists served so far: `(in full, 304 Not Modified)`.
    pub fn crl_served(&self) -> (u64, u64) {
        self.ca.crl_served()
    }

    /// Changes the rate limits.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.ca
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate_limits = limits;
    }

    /// Stops serving (also done on drop; nothing to stop in-process).
    pub fn shutdown(&self) {
        if let Front::Https(server) = &self.front {
            server.shutdown();
        }
    }
}

#[cfg(test)]
mod hostile_tests;

/// The README's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
