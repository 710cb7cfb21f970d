//! # sturdy-acme
//!
//! An ACME client (RFC 8555, and the pre-RFC ACME v1) that keeps getting
//! certificates when the network, the CA or the customer's DNS misbehaves,
//! and never loses or double-orders one.
//!
//! ## The model
//!
//! Two layers, used together or apart:
//!
//! - **The issuer** ([`Issuer`]) is what a service runs: [`Issuer::ensure`]
//!   returns a valid certificate for a set of names, from its [`store`]
//!   when one is not due for renewal, else by resuming the journal of an
//!   interrupted order, else by ordering, answering challenges through its
//!   [`solver`]s, finalizing and downloading. Every step is journalled in
//!   the store before the request that depends on it, leases fence
//!   concurrent issuers, and a client-side ledger counts the CA's rate
//!   limits, so a timeout, a crash or a restart resumes the same order and
//!   the CA issues one certificate. [`store::FileStore`] is the embedded
//!   store for one machine; `PostgresStore` (crate `sturdy-acme-postgres`)
//!   is the one a fleet of machines shares; [`store::Store`] is the trait
//!   others implement.
//! - **The renewer** ([`renewer::Renewer`]) keeps a standing set of
//!   certificates valid on top of the issuer: each one looked at when its
//!   renewal comes, the most urgent first, new ones paced by the rate-limit
//!   ledger's tokens so the CA never answers 429, failures backed off by
//!   their class, its specs kept in the store for restarts and for every
//!   node sharing it.
//! - **The client** ([`Client`]) speaks to one CA, built from its directory
//!   URL. Through an [`Account`] you create an [`Order`], answer one
//!   [`Challenge`] per [`Authorization`] (http-01, dns-01, tls-alpn-01),
//!   finalize with a CSR from a [`CertificateKey`] and download the
//!   [`CertificateChain`]. The dialect (RFC 8555 or ACME v1, cargo feature
//!   `v1`) is detected from the directory; the same types speak both.
//!
//! Every request goes through one transport: JWS signing (`ring`), a nonce
//! pool, size caps, and one log line per exchange (`tracing` target
//! `sturdy_acme::http`: method, URL, status, problem type, Retry-After;
//! never a body). Every failure is a typed [`Error`] keeping the CA's RFC
//! 7807 [`Problem`], the HTTP status and `Retry-After`; [`Error::class`]
//! ([`ErrorClass`]) decides the retry: `badNonce`, 429s, CAA, validation,
//! other 4xx, 5xx and timeouts each have their own [`RetryPolicy`].
//! [`ClientBuilder::on_event`] reports every exchange and every retry
//! decision ([`Event`]) for metrics. Requests that are not idempotent
//! (newOrder, finalize, v1 new-cert) are never repeated blindly: after an
//! unknown outcome the client reads state, or stops with
//! [`Error::OutcomeUnknown`].
//!
//! DNS is its own layer: [`dns`] asks one named nameserver one question and
//! times the answer; on it, [`solver::dns01::Rfc2136Solver`] publishes
//! dns-01 records by RFC 2136 UPDATE and waits for every authoritative
//! nameserver, and [`caa`] reads the names' CAA records at the domain's own
//! nameservers before the issuer orders ([`IssuerBuilder::dns`]), so a
//! forbidding record or a customer's nameserver that times out is known,
//! and named, before a newOrder is spent.
//!
//! `docs/ARCHITECTURE.md` in the repository maps each concern (nonces,
//! retry decisions, exchange logging, journal writes, the dialect) to the
//! module that owns it.
//!
//! ## Example
//!
//! Issuing through the issuer against the embedded test CA (crate
//! `sturdy-acme-testca`, a dev-dependency) with real http-01 validation (the CA fetches the token from
//! the crate's own responder on loopback), twice: the second call returns
//! the stored certificate without a request.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::Error> {
//! use std::sync::Arc;
//! use sturdy_acme::solver::http01::Http01Solver;
//! use sturdy_acme::store::FileStore;
//! use sturdy_acme_testca::TestCa;
//! use sturdy_acme::{CertificateSource, EnsureOptions, Issuer};
//!
//! let (builder, responder) = TestCa::builder().with_http01_responder().await?;
//! let ca = builder.start().await?;
//! let dir = std::env::temp_dir().join(format!("sturdy-acme-doc-{}", std::process::id()));
//! let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
//!     .solver(Arc::new(Http01Solver::for_responder(&responder)))
//!     .build();
//!
//! let first = issuer.ensure(&["www.example.com"], &EnsureOptions::default()).await?;
//! assert_eq!(first.source, CertificateSource::New);
//! let again = issuer.ensure(&["www.example.com"], &EnsureOptions::default()).await?;
//! assert_eq!(again.source, CertificateSource::Stored);
//! assert_eq!(again.certificate.serial, first.certificate.serial);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! The client alone, against a real CA:
//!
//! ```no_run
//! use sturdy_acme::solver::http01::Http01Responder;
//! use sturdy_acme::{
//!     AccountKey, AccountOptions, CertificateKey, CertificateKeyType, ChallengeType, Client,
//!     Csr, KeyAlgorithm, NewOrder,
//! };
//!
//! # async fn run() -> Result<(), sturdy_acme::Error> {
//! let client = Client::new(sturdy_acme::LETS_ENCRYPT_STAGING).await?;
//! let account = client
//!     .create_account(
//!         AccountKey::generate(KeyAlgorithm::Es256)?,
//!         &AccountOptions::agreeing_to_terms().with_contact("admin@example.com"),
//!     )
//!     .await?;
//!
//! let mut order = account
//!     .new_order(&NewOrder::for_names(&["example.com", "www.example.com"])?)
//!     .await?;
//! let responder = Http01Responder::bind("0.0.0.0:80".parse().unwrap()).await?;
//! for authz in order.authorizations().await? {
//!     let mut challenge = authz
//!         .challenge(&ChallengeType::Http01)
//!         .expect("the CA offers http-01");
//!     responder
//!         .tokens()
//!         .insert(challenge.token()?, challenge.key_authorization()?);
//!     challenge.respond().await?;
//! }
//! order.wait_ready().await?;
//!
//! let key = CertificateKey::generate(CertificateKeyType::P256)?;
//! order.finalize(Csr::Key(&key)).await?;
//! let chain = order.certificate().await?;
//! println!("{}", chain.pem());
//! # Ok(()) }
//! ```
//!
//! ## Paths
//!
//! Every public name has one path: the protocol client, keys, errors, the
//! issuer, retry policies and wire vocabulary at the crate root; the
//! pluggable parts in their modules ([`store`], [`solver`], [`dns`],
//! [`caa`], [`renewer`]);
//! [`timestamp`] and [`challenge`] hold free functions.
//!
//! ## Feature flags
//!
//! - `v1` (default): ACME v1. Without it a v1 directory is refused with a
//!   clear error, and the v1-only knobs ([`ClientBuilder::new_cert_budget`]
//!   and the like) are gone.
//! - `ring` (default) or `aws-lc-rs`: rustls's crypto provider for every
//!   TLS connection ([`tls_provider`]); `aws-lc-rs` prefers the
//!   post-quantum X25519MLKEM768.
//!
//! The embedded test CA (`sturdy-acme-testca`, with fault injection, for
//! your own integration tests) and the PostgreSQL store
//! (`sturdy-acme-postgres`) are crates of their own.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod ca_set;
pub mod caa;
mod client;
mod clock;
pub mod crl;
mod crypto;
pub mod dns;
mod error;
mod issuer;
mod protocol;
pub mod renewer;
mod retry;
pub mod serve;
pub mod solver;
pub mod store;
mod transport;
mod wait;

// The protocol client.
pub use client::{
    Account, AccountOptions, Authorization, CertificateChain, ChainPreference, Challenge, Client,
    ClientBuilder, DEFAULT_ACCEPT_LANGUAGE, Danger, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
    MAX_ALTERNATE_CHAINS, NewOrder, Order, PollPolicy, RawAnswer, ReplacesRefusal,
    RevocationReason, USER_AGENT,
};
#[cfg(feature = "v1")]
pub use client::{CertificateFinder, FindFuture};
// Keys, CSRs and challenge values.
pub use clock::{Clock, PinnedCalendar};
pub use crypto::{
    AccountKey, CertificateKey, CertificateKeyType, Csr, ExternalAccountKey, KeyAlgorithm,
    challenge, thumbprint_of_jwk, tls_provider,
};
// Errors and what a retry policy needs from them.
pub use error::{
    CaaCause, DatabaseErrorKind, Error, ErrorClass, MAX_RETRY_AFTER, RateLimitScope, RequestInfo,
    Result, RetryAfter, StoreError, TransportFailure,
};
// Exactly-once issuance.
pub use issuer::{
    CertificateOptions, CertificateSource, CertificateStatus, EnsureOptions, Ensured, Headroom,
    Issuer, IssuerBuilder, IssuerStep, Limit, RateLimits, RevokeWith, registered_domain,
};
// Wire vocabulary and resources.
pub use protocol::{
    AccountResource, AccountStatus, AuthorizationResource, AuthorizationStatus, CertId,
    ChallengeResource, ChallengeStatus, ChallengeType, Dialect, Directory, DirectoryMeta, Endpoint,
    Identifier, IdentifierSet, InvalidIdentifier, OrderResource, OrderStatus, Problem, ProblemType,
    RenewalInfo, timestamp,
};
// Retry policies and events.
pub use retry::{Backoff, Event, Jitter, RetryPolicy};
pub use transport::{
    GovernorPolicy, GovernorStats, HttpAnswer, HttpClient, HttpRequest, RateGroup, RequestRates,
    RequestStats,
};

/// The README's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
