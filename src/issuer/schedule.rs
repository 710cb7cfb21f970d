//! When a stored certificate is due: the lifetime rule, the CA's renewal
//! information (ARI, refreshed under the lease) and the rate-limit
//! exemption a renewal of it has.

use super::*;

impl<S: Store> Issuer<S> {
    /// When `cert` is due for renewal: at once when it was revoked; at the
    /// time chosen in the CA's suggested window when its renewal
    /// information said one ([`StoredCertificate::renewal`]); else at 2/3
    /// of its lifetime, or 1/2 when the lifetime is 10 days or less (or the
    /// fraction set with [`IssuerBuilder::renew_after_fraction`]).
    ///
    /// ```
    /// # use std::time::{Duration, UNIX_EPOCH};
    /// # use sturdy_acme::store::StoredCertificate;
    /// # async fn run(issuer: sturdy_acme::Issuer<sturdy_acme::store::FileStore>, mut cert: StoredCertificate) {
    /// // A 160-hour (shortlived) certificate is renewed after 80 hours.
    /// cert.not_before = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    /// cert.not_after = cert.not_before + Duration::from_secs(160 * 3600);
    /// assert_eq!(issuer.renewal_due_at(&cert), cert.not_before + Duration::from_secs(80 * 3600));
    /// # }
    /// ```
    pub fn renewal_due_at(&self, cert: &StoredCertificate) -> SystemTime {
        if cert.revoked.is_some() {
            return cert.not_before.min(self.now());
        }
        let lifetime = cert
            .not_after
            .duration_since(cert.not_before)
            .unwrap_or_default();
        if let Some(at) = cert.renewal.as_ref().and_then(|r| r.renew_at) {
            // Never later than 90% of the lifetime, whatever was stored.
            let latest = cert
                .not_after
                .checked_sub(lifetime / 10)
                .unwrap_or(cert.not_after);
            return at.min(latest);
        }
        self.lifetime_due_at(cert)
    }

    /// When the lifetime rule alone would renew `cert`: 2/3 of its
    /// lifetime, 1/2 for 10 days or less, or the fraction set.
    fn lifetime_due_at(&self, cert: &StoredCertificate) -> SystemTime {
        let lifetime = cert
            .not_after
            .duration_since(cert.not_before)
            .unwrap_or_default();
        let fraction =
            self.inner
                .renew_after
                .unwrap_or(if lifetime <= Duration::from_secs(10 * 24 * 3600) {
                    0.5
                } else {
                    2.0 / 3.0
                });
        cert.not_before + lifetime.mul_f64(fraction)
    }

    /// When an [`Issuer::ensure`] for `cert`'s set would next do more than
    /// return it: its renewal time, or sooner the time to ask the CA's
    /// renewal information again (when the CA offers it). A renewer sleeps
    /// until then.
    pub fn next_check_at(&self, cert: &StoredCertificate) -> SystemTime {
        let due = self.renewal_due_at(cert).min(cert.not_after);
        if cert.revoked.is_some() || !self.inner.client.offers_renewal_info() {
            return due;
        }
        match &cert.renewal {
            Some(r) => due.min(r.check_again_at),
            None => self.now(),
        }
    }

    /// The profile an order for `options` asks for: the one wanted while
    /// the CA offers it, else the fallback (if offered), else the CA's
    /// default. With the profile wanted, when it fell back.
    pub(super) fn profile_to_ask(
        &self,
        options: &EnsureOptions,
    ) -> (Option<String>, Option<String>) {
        let client = &self.inner.client;
        let Some(wanted) = options.certificate.profile.clone() else {
            return (None, None);
        };
        if client.offers_profile(&wanted) {
            return (Some(wanted), None);
        }
        let fallback = options
            .certificate
            .profile_fallback
            .clone()
            .filter(|f| client.offers_profile(f));
        (fallback, Some(wanted))
    }

    /// Whether `cert` was ordered with another profile than an order for
    /// `options` would ask for now, and than the one the options want
    /// (never for a certificate whose profile was not recorded). A
    /// certificate of a profile the CA withdrew is not changed: it is still
    /// valid and renews under the fallback at its own time.
    pub(crate) fn profile_changed(
        &self,
        cert: &StoredCertificate,
        options: &EnsureOptions,
    ) -> bool {
        use crate::store::AskedProfile;
        !cert.profile.is_unknown()
            && cert.profile != AskedProfile::from(self.profile_to_ask(options).0)
            && cert.profile != AskedProfile::from(options.certificate.profile.clone())
    }

    /// What `cert` means for an ensure with `options`: as [`judge`](Self::judge),
    /// except that a certificate ordered with another profile than the
    /// options now ask for is due at once, and an ensure asked to recheck
    /// the renewal information rechecks it on a certificate otherwise
    /// usable.
    pub(super) fn judge_for(&self, cert: &StoredCertificate, options: &EnsureOptions) -> Verdict {
        if cert.revoked.is_none() && self.profile_changed(cert, options) {
            return Verdict::Due;
        }
        match self.judge(cert) {
            Verdict::Usable
                if options.recheck_renewal_info
                    && cert.revoked.is_none()
                    && self.inner.client.offers_renewal_info() =>
            {
                Verdict::Recheck
            }
            other => other,
        }
    }

    /// What `cert` means for an ensure now.
    pub(super) fn judge(&self, cert: &StoredCertificate) -> Verdict {
        let now = self.now();
        // An expired certificate is renewed, not polled for (RFC 9773).
        if now >= cert.not_after {
            return Verdict::Due;
        }
        if cert.revoked.is_none()
            && self.inner.client.offers_renewal_info()
            && cert
                .renewal
                .as_ref()
                .is_none_or(|r| now >= r.check_again_at)
        {
            return Verdict::Recheck;
        }
        if now >= self.renewal_due_at(cert) {
            Verdict::Due
        } else {
            Verdict::Usable
        }
    }

    /// Fetches the CA's renewal information for `cert` and stores the
    /// schedule it gives (under the issuance's lease). An answer that
    /// cannot be used falls back to the lifetime rule until the next check
    /// (6 hours), logged once per certificate.
    pub(super) async fn refresh_renewal_info(
        &self,
        key: &IdentifierSetKey,
        mut cert: StoredCertificate,
    ) -> Result<StoredCertificate> {
        let now = self.now();
        let fallback = |why: String, cert: &StoredCertificate| {
            let recheck = now + crate::protocol::renewal_info::DEFAULT_RECHECK;
            // A window already known stays (and its chosen time) until an
            // answer replaces it.
            if let Some(old) = cert.renewal.as_ref().filter(|r| r.window_start.is_some()) {
                tracing::warn!(set = %key, reason = %why, "renewal information unavailable; keeping the window known so far until the next check");
                return RenewalSchedule {
                    check_again_at: recheck,
                    ..old.clone()
                };
            }
            if cert.renewal.is_none() {
                tracing::warn!(set = %key, reason = %why, "no usable renewal information; renewing by the certificate's lifetime until the next check");
            }
            RenewalSchedule {
                window_start: None,
                window_end: None,
                renew_at: None,
                check_again_at: recheck,
                explanation_url: None,
                requested_early: false,
            }
        };
        let lifetime = cert
            .not_after
            .duration_since(cert.not_before)
            .unwrap_or_default();
        let schedule = match CertId::from_pem(&cert.chain_pem) {
            Err(why) => fallback(why, &cert),
            Ok(id) => match self.inner.client.renewal_info(&id).await {
                Ok(info) => {
                    // Heard again within the configured bound, whatever
                    // the CA's Retry-After says.
                    let check_again_at = info.check_again_at.min(now + self.inner.ari_recheck_max);
                    // The CA wants it replaced well before the lifetime
                    // rule would: its window moved into the past (a mass
                    // revocation, an incident). Renewed at once, not at a
                    // random time in the window, while the window lasts
                    // (the renewal is then an exempt ARI renewal).
                    let requested_early = cert.revoked.is_none()
                        && info.window_start <= now
                        && now < info.window_end
                        && info.window_start + lifetime / 10 < self.lifetime_due_at(&cert);
                    // The chosen time stays while the window does.
                    let renew_at = match &cert.renewal {
                        Some(old)
                            if old.window_start == Some(info.window_start)
                                && old.window_end == Some(info.window_end)
                                && old.renew_at.is_some() =>
                        {
                            old.renew_at
                        }
                        _ if requested_early => Some(now),
                        _ => Some(info.renewal_time(
                            if self.inner.renew_at_window_start {
                                0.0
                            } else if let Some(seed) = self.inner.window_seed {
                                // By the set and the certificate's start (a
                                // serial is the CA's random draw).
                                crate::protocol::renewal_info::seeded_fraction(
                                    seed,
                                    &format!(
                                        "{key}|{}",
                                        crate::protocol::timestamp::to_unix(cert.not_before)
                                    ),
                                )
                            } else {
                                crate::protocol::renewal_info::random_fraction()
                            },
                            now,
                        )),
                    };
                    if let Some(url) = &info.explanation_url {
                        tracing::info!(set = %key, explanation = %url, "the CA explains this certificate's renewal window");
                    }
                    if requested_early && !cert.renewal.as_ref().is_some_and(|r| r.requested_early)
                    {
                        tracing::warn!(set = %key, serial = %cert.serial, window_start = %timestamp::DisplayTime(info.window_start), "the CA asks for this certificate's replacement now (its renewal window moved into the past): renewing at once");
                    }
                    RenewalSchedule {
                        window_start: Some(info.window_start),
                        window_end: Some(info.window_end),
                        renew_at,
                        check_again_at,
                        explanation_url: info.explanation_url,
                        requested_early,
                    }
                }
                Err(e) => fallback(e.to_string(), &cert),
            },
        };
        // A window a broken or hostile CA puts at or past the expiry would
        // let the certificate expire: never later than 90% of its life.
        let latest = cert
            .not_after
            .checked_sub(lifetime / 10)
            .unwrap_or(cert.not_after);
        let mut schedule = schedule;
        if let Some(at) = schedule.renew_at
            && at > latest
        {
            tracing::warn!(set = %key, "the CA's suggested window ends too close to (or after) the expiry; renewing at 90% of the lifetime instead");
            schedule.renew_at = Some(latest.max(now));
        }
        cert.renewal = Some(schedule);
        self.fence(key).await?;
        self.inner.store.save_certificate(key, &cert).await?;
        Ok(cert)
    }

    /// Which renewal exemption an order renewing `previous` has, as Let's
    /// Encrypt counts them.
    pub(super) fn exemption(
        &self,
        previous: Option<&StoredCertificate>,
        journal: &Journal,
    ) -> Exemption {
        let Some(prev) = previous.filter(|p| p.revoked.is_none()) else {
            return Exemption::None;
        };
        let now = self.now();
        let in_window = prev.renewal.as_ref().is_some_and(
            |r| matches!((r.window_start, r.window_end), (Some(s), Some(e)) if s <= now && now < e),
        );
        if journal.replaces.is_some() && self.inner.client.offers_renewal_info() && in_window {
            return Exemption::Ari;
        }
        if limits::RateLimits::renews_exact_set(prev.not_before, now) {
            return Exemption::ExactSetRenewal;
        }
        Exemption::None
    }
}

/// What a stored certificate means for an ensure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not due: returned as it is.
    Usable,
    /// Due for renewal.
    Due,
    /// The CA's renewal information is to be fetched (again) first.
    Recheck,
}
