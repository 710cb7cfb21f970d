//! Challenge solvers: what makes the CA's validation succeed.
//!
//! A [`Solver`] presents the answer to one challenge type before the issuer
//! tells the CA to validate, and cleans it up afterwards. Built in:
//! [`http01::Http01Solver`] (a token map served by the standalone
//! [`http01::Http01Responder`] or by your own server) and
//! [`tls_alpn01::TlsAlpn01Solver`] (validation certificates served by a
//! rustls certificate resolver) and [`dns01::Rfc2136Solver`] (TXT records
//! by RFC 2136 dynamic update, waited for at every authoritative
//! nameserver). For another DNS provider's API, implement [`Solver`].

pub mod dns01;
pub mod http01;
pub mod tls_alpn01;

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::protocol::{ChallengeType, Identifier};

/// A boxed future, so that solvers can be trait objects.
pub type SolverFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Everything needed to answer one challenge.
///
/// Example: [`Solver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChallengeAnswer {
    /// The identifier being validated (without `*.`).
    pub identifier: Identifier,
    /// The challenge type.
    pub kind: ChallengeType,
    /// The token.
    pub token: String,
    /// The key authorization (`token.thumbprint`): the http-01 body.
    pub key_authorization: String,
    /// The dns-01 record name (`_acme-challenge.<name>.`).
    pub dns_name: String,
    /// The dns-01 TXT value.
    pub dns_value: String,
}

/// Presents and removes challenge answers of one type.
///
/// # Example
///
/// A dns-01 solver for your DNS provider (here an in-memory map):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use sturdy_acme::ChallengeType;
/// use sturdy_acme::solver::{ChallengeAnswer, Solver, SolverFuture};
///
/// #[derive(Default)]
/// struct MyDns(Mutex<HashMap<String, Vec<String>>>);
///
/// impl Solver for MyDns {
///     fn challenge_type(&self) -> ChallengeType {
///         ChallengeType::Dns01
///     }
///     fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
///         let mut zone = self.0.lock().unwrap();
///         zone.entry(answer.dns_name.clone()).or_default().push(answer.dns_value.clone());
///         Box::pin(async { Ok(()) })
///     }
///     fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
///         if let Some(values) = self.0.lock().unwrap().get_mut(&answer.dns_name) {
///             values.retain(|v| v != &answer.dns_value);
///         }
///         Box::pin(async { Ok(()) })
///     }
/// }
/// # let _ = std::sync::Arc::new(MyDns::default()) as std::sync::Arc<dyn Solver>;
/// ```
pub trait Solver: Send + Sync {
    /// The challenge type it answers.
    fn challenge_type(&self) -> ChallengeType;

    /// Makes the answer visible to the CA (serve the token, publish the TXT
    /// record, install the certificate). Called before the challenge is
    /// answered; must be done when the future completes.
    ///
    /// The issuer presents the answers of one order side by side, except
    /// that answers sharing a record name (a wildcard and its apex share
    /// `_acme-challenge.<name>`) are presented one after another, so a
    /// solver that rewrites a whole TXT record set through a provider's API
    /// does not race with itself. Different orders may still present at
    /// one name concurrently: add a value, never replace the set.
    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a>;

    /// Removes the answer once the authorization is decided.
    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a>;
}
