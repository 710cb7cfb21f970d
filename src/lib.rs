//! # sturdy-acme
//!
//! An ACME client (RFC 8555) that keeps getting certificates when the
//! network, the CA or the customer's DNS misbehaves.
//!
//! ## The model
//!
//! A [`Client`] speaks to one CA. It is built from the CA's directory URL,
//! which it fetches once ([`Client::builder`]). Every request goes through a
//! single transport that signs it (JWS, `ring`), takes a nonce from a pool
//! fed by every response (asking `newNonce` only when the pool is empty),
//! re-sends on `badNonce` with the nonce the rejection carried, caps the
//! size of what it reads, turns every failure into a typed [`Error`] and logs
//! the exchange once (`tracing`, target `sturdy_acme::http`; never a body).
//!
//! An [`Account`] is an [`AccountKey`] plus the account URL the CA gave it.
//! Through it you create an [`Order`] for a set of identifiers (DNS names,
//! wildcards, IP addresses), answer one [`Challenge`] per [`Authorization`]
//! (http-01, dns-01 or tls-alpn-01: the challenge hands you its key
//! authorization, TXT value or validation certificate), wait for the order to
//! become ready, finalize it with a CSR made from a [`CertificateKey`], and
//! download the [`CertificateChain`] (choosing among alternate chains by
//! issuer if you like).
//!
//! The same API speaks ACME v1, the pre-RFC dialect Let's Encrypt's Boulder
//! served until 2021 (and that legacy integrations, private CAs and
//! appliances still speak): the [`Client`] detects it from the directory
//! ([`Client::dialect`]), and what v1 lacks is refused with
//! [`Error::Unsupported`]. A v1 `new-cert` whose answer is lost cannot be
//! read back from the CA; the client records every one, asks a
//! [`CertificateFinder`] before repeating, and refuses to repeat past the
//! CA's duplicate-certificate budget.
//!
//! Errors keep what a retry policy needs: the RFC 7807 [`Problem`] whole
//! (type, detail, subproblems with their identifiers), the HTTP status, the
//! parsed `Retry-After` and the request URL. [`Error::is_rate_limited`],
//! [`Error::retry_after`], [`Error::problem`] and [`Error::identifiers`]
//! answer the usual questions.
//!
//! | layer | module |
//! |---|---|
//! | typed protocol API | [`client`] |
//! | wire formats, no I/O | [`protocol`] |
//! | HTTP, JWS, nonces, logging | [`transport`] |
//! | keys, JWK, CSR, challenge values | [`crypto`] |
//! | errors and problems | [`error`] |
//! | challenge responders | [`solver`] |
//! | exactly-once issuance, journal, rate-limit ledger | [`issuer`] |
//! | retry policies per error class | [`retry`] |
//! | durable store (accounts, certificates, journals, leases) | [`store`] |
//! | embedded test CA (feature `testing`) | `testing` |
//!
//! ## Example
//!
//! ```no_run
//! use sturdy_acme::solver::http01::Http01Responder;
//! use sturdy_acme::{
//!     AccountKey, AccountOptions, CertificateKey, CertificateKeyType, ChallengeType, Client,
//!     Csr, KeyAlgorithm, NewOrder,
//! };
//!
//! # async fn run() -> Result<(), sturdy_acme::Error> {
//! let client = Client::new(sturdy_acme::client::LETS_ENCRYPT_STAGING).await?;
//! let account = client
//!     .create_account(
//!         AccountKey::generate(KeyAlgorithm::Es256)?,
//!         &AccountOptions::agreeing_to_terms().contact("admin@example.com"),
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
//! ## Feature flags
//!
//! - `testing`: [`testing::TestCa`], an embedded ACME test CA with fault
//!   injection, for your own integration tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod crypto;
pub mod error;
pub mod issuer;
pub mod protocol;
pub mod retry;
pub mod solver;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

#[cfg(feature = "v1")]
pub use client::CertificateFinder;
pub use client::{
    Account, AccountOptions, Authorization, CertificateChain, Challenge, Client, ClientBuilder,
    NewOrder, Order, PollPolicy, RevocationReason,
};
pub use crypto::{
    AccountKey, CertificateKey, CertificateKeyType, Csr, ExternalAccountKey, KeyAlgorithm,
};
pub use error::{Error, ErrorClass, Problem, ProblemType, Result, RetryAfter};
pub use issuer::{EnsureOptions, Ensured, Issuer};
pub use protocol::{ChallengeType, Dialect, Identifier, OrderStatus};
pub use transport::{Endpoint, RequestStats};

/// The README's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
