//! The test CA's settings ([`Config`]) and how it validates challenges
//! ([`ValidationMode`]): below the CA's core and its state, which both read
//! them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::records::AriPolicy;
use crate::CaaPolicy;
use crate::Dialect;
use crate::limits::RateLimits;
use crate::recorded;
use crate::server::ServerLimits;
use crate::validation::DnsResolver;

/// The CAA identity the test CA announces (`meta.caaIdentities`, v1 and
/// v2) and checks CAA records against, unless
/// [`TestCaBuilder::caa_identity`](crate::TestCaBuilder::caa_identity)
/// names another.
pub(crate) const CAA_IDENTITY: &str = "sturdy-acme.test";

/// How the test CA validates challenges.
///
/// Example: [`TestCaBuilder::real_validation`](crate::TestCaBuilder::real_validation).
#[derive(Debug, Clone)]
pub enum ValidationMode {
    /// Every challenge answered is valid at once, nothing is contacted.
    AlwaysValid,
    /// Real validation: http-01 on `127.0.0.1:http_port`, tls-alpn-01 on
    /// `127.0.0.1:tls_port` (every DNS name resolves to 127.0.0.1; only
    /// loopback IP identifiers can be validated), dns-01 through `dns`.
    Real {
        /// Port for http-01.
        http_port: u16,
        /// Port for tls-alpn-01.
        tls_port: u16,
        /// TXT lookups for dns-01.
        dns: Arc<dyn DnsResolver>,
    },
}

/// The test CA's settings (see [`TestCaBuilder`](super::TestCaBuilder)).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) validation: ValidationMode,
    pub(crate) validation_delay: Duration,
    pub(crate) finalize_processing: Duration,
    pub(crate) poll_retry_after: Option<u64>,
    pub(crate) rate_limits: RateLimits,
    pub(crate) caa: HashMap<String, CaaPolicy>,
    pub(crate) eab_required: bool,
    pub(crate) eab_keys: EabKeys,
    pub(crate) alternate_chain: bool,
    /// New issuance's default chain leads to the alternate root (a chain
    /// change, as Let's Encrypt's move to its Gen Y hierarchy); the other
    /// chain is then the alternate.
    pub(crate) default_to_alternate_root: bool,
    pub(crate) accept_eddsa: bool,
    pub(crate) reuse_pending_orders: bool,
    pub(crate) reuse_valid_authorizations: bool,
    pub(crate) certificate_lifetime: Duration,
    pub(crate) orders_per_page: usize,
    pub(crate) blocked_domains: Vec<String>,
    pub(crate) dialect: Dialect,
    /// Signed requests kept for [`TestCa::recorded_jws`](super::TestCa::recorded_jws):
    /// at most this many (0: none) ...
    pub(crate) recorded_jws_entries: usize,
    /// ... taking at most about this much memory.
    pub(crate) recorded_jws_bytes: usize,
    /// Finalize requests kept for [`Ledger::finalizations`].
    pub(crate) recorded_finalizations: usize,
    /// The HTTP server's connection and read limits.
    pub(crate) server: ServerLimits,
    /// Added to every answer (a CA far away, or a busy one).
    pub(crate) latency: Duration,
    /// `renewalInfo` (RFC 9773), off by default (as in Pebble 2.4).
    pub(crate) renewal_info: Option<AriPolicy>,
    /// The profiles `classic`, `tlsserver`, `shortlived` (off by default).
    pub(crate) profiles: bool,
    /// Profiles withdrawn at run time: no longer listed, refused with
    /// `invalidProfile`.
    pub(crate) withdrawn_profiles: Vec<String>,
    /// A failed CAA recheck at finalize makes the order `invalid` (Boulder
    /// since 2026, `CAARechecksFailOrder`; default); else the order stays
    /// `ready` (Boulder before).
    pub(crate) caa_recheck_fails_order: bool,
    /// The CAA identity announced (`caaIdentities`) and checked.
    pub(crate) caa_identity: String,
    /// Where its revocation lists are served (`{base}/crl`), known once
    /// the server listens; v2 certificates name `{crl_base}/{shard}`.
    pub(crate) crl_base: Option<String>,
    /// How many shards its revocation lists are cut into (0: certificates
    /// name no list).
    pub(crate) crl_shards: u8,
    /// Lifetimes that change on a date (Let's Encrypt's 90 → 64 → 45
    /// days), applied to certificates issued from then on.
    pub(crate) lifetime_changes: Vec<LifetimeChange>,
    /// How long a validated authorization can be reused (Let's Encrypt:
    /// 30 days, 10 days from 2027-02-10, 7 hours from 2028-02-16).
    pub(crate) authorization_reuse: Duration,
}

/// A certificate lifetime that changes on a date.
#[derive(Debug, Clone)]
pub(crate) struct LifetimeChange {
    /// From when (the CA's clock).
    pub(crate) from: std::time::SystemTime,
    /// For which profile (`None`: the default, and `classic`).
    pub(crate) profile: Option<String>,
    /// The new lifetime.
    pub(crate) lifetime: Duration,
}

impl Config {
    /// The lifetime changed on a date that applies now to an order with
    /// `profile`, if any (the latest change in force).
    pub(crate) fn changed_lifetime(
        &self,
        profile: Option<&str>,
        now: std::time::SystemTime,
    ) -> Option<Duration> {
        self.lifetime_changes
            .iter()
            .filter(|c| c.from <= now)
            .filter(|c| match (c.profile.as_deref(), profile) {
                (None, None | Some("classic")) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            })
            .max_by_key(|c| c.from)
            .map(|c| c.lifetime)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            validation: ValidationMode::AlwaysValid,
            validation_delay: Duration::ZERO,
            finalize_processing: Duration::ZERO,
            poll_retry_after: None,
            rate_limits: RateLimits::default(),
            caa: HashMap::new(),
            eab_required: false,
            eab_keys: EabKeys::default(),
            alternate_chain: false,
            default_to_alternate_root: false,
            accept_eddsa: false,
            reuse_pending_orders: true,
            reuse_valid_authorizations: true,
            certificate_lifetime: Duration::from_secs(90 * 24 * 3600),
            orders_per_page: 10,
            blocked_domains: Vec::new(),
            dialect: Dialect::V2,
            recorded_jws_entries: recorded::DEFAULT_JWS_ENTRIES,
            recorded_jws_bytes: recorded::DEFAULT_JWS_BYTES,
            recorded_finalizations: recorded::DEFAULT_FINALIZATIONS,
            server: ServerLimits::default(),
            latency: Duration::ZERO,
            renewal_info: None,
            profiles: false,
            withdrawn_profiles: Vec::new(),
            caa_recheck_fails_order: true,
            caa_identity: CAA_IDENTITY.into(),
            crl_base: None,
            crl_shards: 4,
            lifetime_changes: Vec::new(),
            authorization_reuse: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The EAB HMAC keys by key id; `Debug` shows the ids only.
#[derive(Clone, Default)]
pub(crate) struct EabKeys(pub(crate) HashMap<String, Vec<u8>>);

impl std::fmt::Debug for EabKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}
