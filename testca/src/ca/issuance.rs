//! Issuance: the CSR key policy, the finalize-time CAA recheck, and the
//! certificate itself, recorded and counted against the rate limits.

use time::OffsetDateTime;

use super::Config;
use super::state::{CertRec, State};
use crate::CaaPolicy;
use crate::jws::Rejection;
use crate::pki::{CsrInfo, KeyKind, Pki};
use sturdy_acme::{ChallengeType, Identifier};
use sturdy_acme::{Problem, ProblemType};

/// CAA as configured for `name` (the closest configured ancestor wins).
fn caa_policy(config: &Config, name: &str) -> CaaPolicy {
    let mut candidate = name.trim_start_matches("*.");
    loop {
        if let Some(p) = config.caa.get(candidate) {
            return *p;
        }
        match candidate.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => candidate = parent,
            _ => return CaaPolicy::Allow,
        }
    }
}

impl super::Ca {
    /// The CAA check through the CA's DNS resolver (real records with
    /// [`ServerDns`](crate::ServerDns)) for `ids` issued to the
    /// account at `account_uri`, run before the state is locked: the
    /// refusal, if any. `used` names the challenge type each identifier was
    /// validated with (by identifier value, `*.` kept), judged against RFC
    /// 8657 `validationmethods`. `None` unless validation is real.
    pub(super) async fn caa_through_dns(
        &self,
        ids: &[Identifier],
        account_uri: String,
        used: &[(String, String)],
        config: &Config,
    ) -> Option<Box<Problem>> {
        let super::ValidationMode::Real { dns, .. } = &config.validation else {
            return None;
        };
        let names: Vec<String> = ids
            .iter()
            .filter(|i| i.kind == "dns")
            .map(|i| i.value.clone())
            .collect();
        let ctx = sturdy_acme::caa::CaaContext {
            ca_identities: vec![config.caa_identity.clone()],
            account_uri: Some(account_uri),
            validation_methods: [
                ChallengeType::Http01,
                ChallengeType::Dns01,
                ChallengeType::TlsAlpn01,
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
        };
        let reports = dns.caa(&names, &ctx).await;
        caa_failures(dns_caa_failures(ids, &reports, used)).err()
    }
}

impl State {
    /// The finalize-time CAA recheck, worded as Boulder words it.
    pub(super) fn recheck_caa(
        &mut self,
        ids: &[Identifier],
        config: &Config,
    ) -> Result<(), Box<Problem>> {
        let mut failures = Vec::new();
        for id in ids.iter().filter(|i| i.kind == "dns") {
            let name = id.base_name();
            let detail = match caa_policy(config, name) {
                CaaPolicy::Allow => continue,
                CaaPolicy::Forbid => format!(
                    "While processing CAA for {name}: CAA record for {name} prevents issuance"
                ),
                CaaPolicy::Timeout => format!(
                    "While processing CAA for {name}: DNS problem: query timed out looking up CAA for {name}"
                ),
                CaaPolicy::TimeoutTimes(n) => {
                    let seen = self.caa_timeouts_seen.entry(name.to_owned()).or_default();
                    if *seen >= n {
                        continue;
                    }
                    *seen += 1;
                    format!(
                        "While processing CAA for {name}: DNS problem: query timed out looking up CAA for {name}"
                    )
                }
            };
            let mut sub = Problem::new(ProblemType::Caa, detail);
            sub.identifier = Some(id.clone());
            sub.status = Some(403);
            failures.push(sub);
        }
        caa_failures(failures)
    }
}

/// The finalize refusal for CAA `failures` (one subproblem per identifier),
/// worded as Boulder words it; `Ok` when there are none.
pub(super) fn caa_failures(mut failures: Vec<Problem>) -> Result<(), Box<Problem>> {
    match failures.len() {
        0 => Ok(()),
        1 => {
            let sub = failures.remove(0);
            let mut p = Problem::new(
                ProblemType::Caa,
                format!(
                    "Error finalizing order :: rechecking caa: {}",
                    sub.detail.clone().unwrap_or_default()
                ),
            );
            p.status = Some(403);
            p.subproblems = vec![sub];
            Err(Box::new(p))
        }
        n => {
            let first = failures[0]
                .identifier
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default();
            let mut p = Problem::new(
                ProblemType::Caa,
                format!(
                    "Error finalizing order :: Rechecking CAA for {first:?} and {} more identifiers failed. Refer to sub-problems for more information",
                    n - 1
                ),
            );
            p.status = Some(403);
            p.subproblems = failures;
            Err(Box::new(p))
        }
    }
}

/// The CAA check through DNS (a [`DnsResolver`](crate::DnsResolver)
/// that reads real CAA records): one subproblem per identifier whose
/// verdict forbids issuing or could not be read, or whose records'
/// `validationmethods` exclude the challenge type it was validated with
/// (`used`).
pub(super) fn dns_caa_failures(
    ids: &[Identifier],
    reports: &[sturdy_acme::caa::CaaReport],
    used: &[(String, String)],
) -> Vec<Problem> {
    use sturdy_acme::caa::CaaVerdict;
    let mut failures = Vec::new();
    for report in reports {
        let method_excluded = used
            .iter()
            .find(|(name, _)| name == &report.name)
            .is_some_and(|(_, method)| !report.methods.contains(method));
        let prevents = |at: &str| {
            format!(
                "While processing CAA for {}: CAA record for {at} prevents issuance",
                report.name
            )
        };
        let detail = match &report.verdict {
            CaaVerdict::Forbidden { at, .. } => prevents(at),
            // Allowed, but for other validation methods only.
            CaaVerdict::Allowed { at, .. } if method_excluded => prevents(at),
            CaaVerdict::Unreachable { at, .. } => format!(
                "While processing CAA for {}: DNS problem: query timed out looking up CAA for {at}",
                report.name
            ),
            // A real CA asks one of the nameservers; this one refuses
            // whenever they disagree, so tests see the disagreement.
            CaaVerdict::Inconsistent { at, zone, .. } => format!(
                "While processing CAA for {}: DNS problem: the nameservers of {zone} serve different CAA records for {at}",
                report.name
            ),
            CaaVerdict::Failed { at, .. } => format!(
                "While processing CAA for {}: DNS problem: SERVFAIL looking up CAA for {at}",
                report.name
            ),
            CaaVerdict::Allowed { .. }
            | CaaVerdict::NoRecords
            | CaaVerdict::Undetermined { .. } => continue,
        };
        let mut sub = Problem::new(ProblemType::Caa, detail);
        sub.identifier = ids.iter().find(|i| i.value == report.name).cloned();
        sub.status = Some(403);
        failures.push(sub);
    }
    failures
}

/// The CSR key policy: ECDSA P-256/P-384 or RSA 2048..=8192 bits.
pub(super) fn check_csr_key(key: &KeyKind) -> Result<(), String> {
    match key {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => Ok(()),
        KeyKind::Rsa { bits } if (2048..=8192).contains(bits) => Ok(()),
        KeyKind::Rsa { bits } => Err(format!("key too small or too large: {bits} bits")),
        KeyKind::Ed25519 | KeyKind::Other(_) => {
            Err("key type not supported (ECDSA P-256/P-384 or RSA)".into())
        }
    }
}

/// How far before issuance a certificate's `notBefore` is set when the
/// order does not ask for one: Boulder's `GenerateValidity` backdates by
/// 90% of the profile's `maxValidityBackdate` (1 h 5 min in Boulder's
/// configurations), 58 min 30 s, to the second, so a client whose clock
/// runs a little behind still sees the new certificate as valid.
pub(crate) const BACKDATE: time::Duration = time::Duration::seconds(58 * 60 + 30);

/// The `notBefore` of a certificate issued now for an order that does not
/// ask for one: now less [`BACKDATE`], to the second.
pub(super) fn backdated_not_before() -> OffsetDateTime {
    super::now_utc() - BACKDATE
}

/// `not_before` plus the configured certificate lifetime, if that is a
/// date `time` can represent.
pub(super) fn default_not_after(
    not_before: OffsetDateTime,
    config: &Config,
) -> Option<OffsetDateTime> {
    let lifetime =
        time::Duration::try_from(config.certificate_lifetime).unwrap_or(time::Duration::days(90));
    not_before.checked_add(lifetime)
}

impl State {
    /// Issues a certificate for the CSR's identifiers (valid from
    /// `not_before` to `not_after`, default: the configured lifetime),
    /// spends the certificate rate limits and records it; returns its index.
    #[allow(
        clippy::too_many_arguments,
        reason = "one issuance path for v2 finalize and v1 new-cert"
    )]
    pub(super) fn issue_certificate(
        &mut self,
        pki: &Pki,
        acct: usize,
        order: Option<usize>,
        csr: &CsrInfo,
        not_before: OffsetDateTime,
        not_after: Option<OffsetDateTime>,
        config: &Config,
    ) -> Result<usize, Rejection> {
        let ids = csr.identifiers.clone();
        let profile = order.and_then(|o| self.orders[o].profile);
        let exemption = order.map(|o| self.orders[o].exemption).unwrap_or_default();
        let changed = config.changed_lifetime(profile.map(|p| p.name), super::now());
        let na = match (not_after, profile) {
            (Some(na), _) => na,
            (None, _) if changed.is_some() => changed
                .and_then(|l| time::Duration::try_from(l).ok())
                .and_then(|l| not_before.checked_add(l))
                .ok_or_else(|| Rejection::malformed("notBefore is too far in the future"))?,
            (None, Some(p)) => time::Duration::try_from(p.lifetime)
                .ok()
                .and_then(|l| not_before.checked_add(l))
                .ok_or_else(|| Rejection::malformed("notBefore is too far in the future"))?,
            (None, None) => default_not_after(not_before, config)
                .ok_or_else(|| Rejection::malformed("notBefore is too far in the future"))?,
        };
        let common_name = profile.is_none_or(|p| p.common_name);
        // v2 certificates name their revocation-list shard (by issuance
        // order, so the shards fill evenly).
        let crl_shard = order
            .and(config.crl_base.as_ref())
            .filter(|_| config.crl_shards > 0)
            .map(|_| (self.certs.len() % usize::from(config.crl_shards)) as u8);
        let crl_url = crl_shard
            .zip(config.crl_base.as_ref())
            .map(|(shard, base)| format!("{base}/{shard}"));
        let mut issued = pki
            .issue_with(csr, not_before, na, common_name, crl_url)
            .map_err(|e| {
                Rejection::new(
                    ProblemType::ServerInternal,
                    500,
                    format!("issuance failed: {e}"),
                )
            })?;
        if config.default_to_alternate_root
            && let Some(alternate) = issued.alternate_chain_pem.take()
        {
            issued.alternate_chain_pem = Some(std::mem::replace(&mut issued.chain_pem, alternate));
        }
        match exemption {
            // An ARI renewal spends nothing.
            super::records::Exemption::Ari => {}
            super::records::Exemption::ExactSetRenewal => {
                self.spend_duplicate_limit(&ids, &config.rate_limits)
            }
            super::records::Exemption::None => {
                self.spend_certificate_limits(&ids, &config.rate_limits)
            }
        }
        let cert_id = self.certs.len();
        self.certs.push(CertRec {
            account: acct,
            order,
            identifiers: ids,
            serial: issued.serial_hex.clone(),
            spki: csr.public_key_der.clone(),
            leaf_der: issued.leaf_der,
            chain_pem: issued.chain_pem,
            alternate_chain_pem: issued.alternate_chain_pem,
            issued_at: super::now(),
            revoked: None,
            revoked_at: None,
            crl_only: false,
            crl_shard,
            not_before: sturdy_acme::timestamp::from_unix(not_before.unix_timestamp()),
            not_after: sturdy_acme::timestamp::from_unix(na.unix_timestamp()),
        });
        self.remember_for_ari(cert_id);
        tracing::info!(?order, serial = %issued.serial_hex, "test CA issued a certificate");
        Ok(cert_id)
    }
}
