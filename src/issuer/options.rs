//! What a certificate is ordered with ([`CertificateOptions`], shared by an
//! [`ensure`](super::Issuer::ensure) and a renewer's
//! [`CertificateSpec`](crate::renewer::CertificateSpec)) and what one
//! `ensure` call adds ([`EnsureOptions`]).
//!
//! Both are value types in the crate's one settings style: private fields,
//! `with_*` setters, getters of the field's name, `#[non_exhaustive]` so
//! they can grow.

use std::time::Duration;

use crate::client::ChainPreference;
use crate::crypto::CertificateKeyType;
use crate::protocol::ChallengeType;

/// How a certificate is ordered: its key, profile, chain and challenges.
///
/// ```
/// use sturdy_acme::{CertificateKeyType, CertificateOptions, ChallengeType};
///
/// let options = CertificateOptions::default()
///     .with_key_type(CertificateKeyType::P384)
///     .with_profile(Some("tlsserver".into()))
///     .with_challenge_types(vec![ChallengeType::Dns01]);
/// assert_eq!(options.profile(), Some("tlsserver"));
/// assert_eq!(options.preferred_chain(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateOptions {
    pub(crate) key_type: CertificateKeyType,
    pub(crate) challenge_types: Vec<ChallengeType>,
    pub(crate) preferred_chain: Option<ChainPreference>,
    pub(crate) profile: Option<String>,
    pub(crate) profile_fallback: Option<String>,
    pub(crate) allowed_cas: Vec<String>,
}

impl CertificateOptions {
    /// The certificate key type (P-256 by default).
    pub fn key_type(&self) -> CertificateKeyType {
        self.key_type
    }

    /// Sets [`CertificateOptions::key_type`].
    pub fn with_key_type(mut self, key_type: CertificateKeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Challenge types in order of preference (empty, the default: the
    /// solvers' order).
    pub fn challenge_types(&self) -> &[ChallengeType] {
        &self.challenge_types
    }

    /// Sets [`CertificateOptions::challenge_types`].
    pub fn with_challenge_types(mut self, types: Vec<ChallengeType>) -> Self {
        self.challenge_types = types;
        self
    }

    /// The root whose chain is preferred among those the CA offers, by
    /// name or by key ([`ChainPreference`]), if any.
    pub fn preferred_chain(&self) -> Option<&ChainPreference> {
        self.preferred_chain.as_ref()
    }

    /// Sets [`CertificateOptions::preferred_chain`].
    pub fn with_preferred_chain(mut self, preference: Option<ChainPreference>) -> Self {
        self.preferred_chain = preference;
        self
    }

    /// The certificate profile asked for (`meta.profiles`: Let's Encrypt's
    /// `classic`, `tlsserver`, `shortlived`); `None`: the CA's default.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// Sets [`CertificateOptions::profile`].
    pub fn with_profile(mut self, profile: Option<String>) -> Self {
        self.profile = profile;
        self
    }

    /// The profile asked for instead when [`CertificateOptions::profile`]
    /// is no longer offered (a CA withdrew it: its directory no longer
    /// lists it, or it answers `invalidProfile`), so renewals go on rather
    /// than fail; `None`, the default: the CA's default profile. Either way
    /// [`Event::ProfileFallback`](crate::Event::ProfileFallback) says so.
    pub fn profile_fallback(&self) -> Option<&str> {
        self.profile_fallback.as_deref()
    }

    /// Sets [`CertificateOptions::profile_fallback`].
    pub fn with_profile_fallback(mut self, profile: Option<String>) -> Self {
        self.profile_fallback = profile;
        self
    }

    /// The CAs of a [`CaSet`](crate::ca_set::CaSet) this certificate may
    /// be issued by, by their names in the set (empty, the default: any).
    /// An issuer used on its own ignores it.
    pub fn allowed_cas(&self) -> &[String] {
        &self.allowed_cas
    }

    /// Sets [`CertificateOptions::allowed_cas`].
    pub fn with_allowed_cas<I, N>(mut self, cas: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.allowed_cas = cas.into_iter().map(Into::into).collect();
        self
    }
}

/// What one [`Issuer::ensure`](super::Issuer::ensure) is asked for beyond
/// the names: how the certificate is ordered, and how this call behaves.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{CertificateKeyType, CertificateOptions, CertificateSource, EnsureOptions, Issuer};
///
/// let ca = TestCa::start().await?;
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
/// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
///     .solver(Arc::new(Http01Solver::unserved()))
///     .build();
/// let options = EnsureOptions::from(CertificateOptions::default().with_key_type(CertificateKeyType::P384));
/// let first = issuer.ensure(&["p384.example"], &options).await?;
/// // `force_new` orders again although the stored one is still good.
/// let again = issuer.ensure(&["p384.example"], &options.with_force_new(true)).await?;
/// assert_eq!(again.source, CertificateSource::New);
/// assert_ne!(again.certificate.serial, first.certificate.serial);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnsureOptions {
    pub(crate) certificate: CertificateOptions,
    pub(crate) force_new: bool,
    pub(crate) lease_wait: Option<Duration>,
    pub(crate) recheck_renewal_info: bool,
    /// Set by a CA set: what its choice, its CAA pre-flight and its lease
    /// add to the one CA's issuance.
    pub(crate) within_set: Option<WithinSet>,
}

/// What a [`CaSet`](crate::ca_set::CaSet) hands the issuer of the CA it
/// chose: the choice to journal, the validation methods its CAA pre-flight
/// left (so the issuer does not ask the DNS again), and the set's lease,
/// which every fence of the issuance checks too.
#[derive(Clone)]
pub(crate) struct WithinSet {
    pub(crate) choice: crate::store::CaChoice,
    pub(crate) caa_methods: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub(crate) set_lease: std::sync::Arc<super::fence::LeaseState>,
}

impl std::fmt::Debug for WithinSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithinSet")
            .field("choice", &self.choice)
            .field("caa_methods", &self.caa_methods)
            .finish_non_exhaustive()
    }
}

impl PartialEq for WithinSet {
    fn eq(&self, other: &Self) -> bool {
        self.choice == other.choice
            && self.caa_methods == other.caa_methods
            && std::sync::Arc::ptr_eq(&self.set_lease, &other.set_lease)
    }
}

impl Eq for WithinSet {}

impl From<CertificateOptions> for EnsureOptions {
    fn from(certificate: CertificateOptions) -> Self {
        Self {
            certificate,
            ..Self::default()
        }
    }
}

impl EnsureOptions {
    /// How the certificate is ordered.
    pub fn certificate(&self) -> &CertificateOptions {
        &self.certificate
    }

    /// Sets [`EnsureOptions::certificate`].
    pub fn with_certificate(mut self, certificate: CertificateOptions) -> Self {
        self.certificate = certificate;
        self
    }

    /// Whether a new certificate is ordered even if a stored one is still
    /// good (a deliberate duplicate; the rate-limit ledger still applies).
    /// Default false.
    pub fn force_new(&self) -> bool {
        self.force_new
    }

    /// Sets [`EnsureOptions::force_new`].
    pub fn with_force_new(mut self, force_new: bool) -> Self {
        self.force_new = force_new;
        self
    }

    /// How long to wait while another process holds this set's lease
    /// (`None`, the default: [`IssuerBuilder::lease_wait`](super::IssuerBuilder::lease_wait));
    /// `Some(Duration::ZERO)` tries once and fails with
    /// [`StoreError::LeaseHeld`](crate::store::StoreError) at once, as a
    /// renewer sharing the work with other nodes wants.
    pub fn lease_wait(&self) -> Option<Duration> {
        self.lease_wait
    }

    /// Sets [`EnsureOptions::lease_wait`].
    pub fn with_lease_wait(mut self, wait: Option<Duration>) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Whether the CA's renewal information is fetched again now, whatever
    /// the stored schedule says (an operator who read the CA's
    /// announcement of a mass revocation). Default false.
    pub fn recheck_renewal_info(&self) -> bool {
        self.recheck_renewal_info
    }

    /// Sets [`EnsureOptions::recheck_renewal_info`].
    pub fn with_recheck_renewal_info(mut self, recheck: bool) -> Self {
        self.recheck_renewal_info = recheck;
        self
    }
}
