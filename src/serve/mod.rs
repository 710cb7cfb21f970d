//! Serving what the store holds: a rustls certificate resolver
//! ([`CertificateResolver`]) that an edge fills from the store's
//! [change feed](crate::store::feed) ([`FeedFollower`]), so edges never
//! talk to the CA and learn of every new, renewed or revoked certificate
//! within one wake-up of its commit.
//!
//! - **SNI → certificate**: the exact name, then the wildcard one label up
//!   (`*.example.com` for `www.example.com`), then the default
//!   ([`CertificateResolver::set_default`]). Names are matched in lower
//!   case, without a trailing dot. When two stored certificates cover one
//!   name (two CAs, or `{a, b}` and `{a}`), the one issued last serves it.
//! - **No lock on the handshake path**: the table is split in shards, each
//!   an [`ArcSwap`](arc_swap::ArcSwap) read without locking; a change builds the shards it
//!   touches anew and swaps them in one step each, so a handshake sees a
//!   certificate before or after a change, never a torn one. Changes are
//!   applied in batches ([`CertificateResolver::apply`]): one copy per
//!   touched shard per batch.
//! - **Keys parsed once**, when a certificate is installed, into rustls's
//!   signing key; never logged (the resolver's `Debug` shows counts).
//! - **A revoked certificate is not served**: its names fall to another
//!   certificate that covers them, or to the default.
//! - **tls-alpn-01 through any edge**: a handshake offering `acme-tls/1`
//!   gets the validation certificate an issuer published through the
//!   store ([`TlsAlpn01Publisher`](crate::solver::tls_alpn01::TlsAlpn01Publisher),
//!   [`store::validation`](crate::store::validation)) and nothing else;
//!   no other handshake ever gets one. The server's `alpn_protocols` must
//!   list `acme-tls/1`.
//! - **On-demand issuance, guarded** ([`OnDemand`]): a name nothing serves
//!   is answered with the default certificate, and, if the service's
//!   policy says yes and the edge's rate allows, requested from the issuer
//!   fleet through the store (one request per name across every edge);
//!   the edge never talks to the CA.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sturdy_acme::serve::{CertificateResolver, FeedFollower};
//! use sturdy_acme::store::MemoryStore;
//!
//! let store = MemoryStore::new();
//! let resolver = Arc::new(CertificateResolver::new());
//! let follower = FeedFollower::new(store.clone(), Arc::clone(&resolver));
//! // What the store holds now (nothing yet), then every change after it.
//! follower.sync_once(Duration::ZERO).await?;
//! assert_eq!(resolver.certificates(), 0);
//! // A rustls server takes it as its resolver:
//! let config = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
//!     .with_safe_default_protocol_versions()?
//!     .with_no_client_auth()
//!     .with_cert_resolver(resolver);
//! # drop(config);
//! # Ok(()) }
//! ```

mod follow;
mod on_demand;
mod resolver;

pub use follow::{FeedFollower, FeedStatus};
pub use on_demand::{OnDemand, OnDemandPolicy, OnDemandSettings, OnDemandStatus};
pub use resolver::{CertificateResolver, ServeError, Update};
