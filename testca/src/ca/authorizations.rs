//! Authorizations and their challenges: creation, reuse, deactivation, and
//! validation (started by the first challenge answered, at once or in a
//! task, then recorded).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;
use time::OffsetDateTime;

use super::state::{AuthzRec, ChallRec, State};
use super::{Ca, Config, ValidationMode, now_utc};
use crate::codec::b64;
use crate::jws::Rejection;
use crate::validation;
use sturdy_acme::{AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier};
use sturdy_acme::{Problem, ProblemType};

/// The challenges offered for `id`: dns-01 only for a wildcard, no dns-01
/// for an IP address.
pub(super) fn challenge_kinds(id: &Identifier) -> &'static [ChallengeType] {
    if id.is_wildcard() {
        &[ChallengeType::Dns01]
    } else if id.kind == "ip" {
        &[ChallengeType::Http01, ChallengeType::TlsAlpn01]
    } else {
        &[
            ChallengeType::Http01,
            ChallengeType::Dns01,
            ChallengeType::TlsAlpn01,
        ]
    }
}

/// Pending challenges of these kinds, each with a fresh 32-byte token.
pub(super) fn fresh_challenges(rng: &dyn SecureRandom, kinds: &[ChallengeType]) -> Vec<ChallRec> {
    kinds
        .iter()
        .map(|k| {
            let mut token = [0u8; 32];
            rng.fill(&mut token).expect("system RNG");
            ChallRec {
                kind: k.clone(),
                token: b64(token),
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
            }
        })
        .collect()
}

/// A validation to run: what to check, where, with which key authorization.
#[derive(Debug, Clone)]
pub(super) struct ValidationJob {
    pub(super) kind: ChallengeType,
    /// The identifier as asked for (with its `*.` for a wildcard).
    pub(super) identifier: Identifier,
    pub(super) token: String,
    pub(super) key_authorization: String,
}

impl State {
    /// A new pending authorization; returns its id.
    pub(super) fn create_authz(
        &mut self,
        acct: usize,
        identifier: Identifier,
        wildcard: bool,
        expires: OffsetDateTime,
        challenges: Vec<ChallRec>,
    ) -> usize {
        self.authzs_by_key
            .entry((acct, identifier.clone(), wildcard))
            .or_default()
            .push(self.authzs.len());
        self.authzs.push(AuthzRec {
            account: acct,
            identifier,
            wildcard,
            status: AuthorizationStatus::Pending,
            expires,
            challenges,
        });
        self.authzs.len() - 1
    }

    /// The first authorization of `acct` for `identifier` (a base name)
    /// with this wildcard flag and status, expiring after `after`.
    pub(super) fn find_authz(
        &self,
        acct: usize,
        identifier: &Identifier,
        wildcard: bool,
        status: AuthorizationStatus,
        after: OffsetDateTime,
    ) -> Option<usize> {
        let candidates = self
            .authzs_by_key
            .get(&(acct, identifier.clone(), wildcard))?;
        candidates.iter().copied().find(|&id| {
            let a = &self.authzs[id];
            a.status == status && a.expires > after
        })
    }

    /// Checks that authorization `id` exists and belongs to account `acct`.
    pub(super) fn owned_authz(&self, id: usize, acct: usize) -> Result<(), Rejection> {
        match self.authzs.get(id) {
            None => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "No such authorization",
            )),
            Some(a) if a.account != acct => Err(Rejection::unauthorized(
                "Account does not own this authorization",
            )),
            Some(_) => Ok(()),
        }
    }

    /// Deactivates a pending or valid authorization; `Err(status)` for any
    /// other status.
    pub(super) fn deactivate_authz(&mut self, id: usize) -> Result<(), AuthorizationStatus> {
        let authz = &mut self.authzs[id];
        if !matches!(
            authz.status,
            AuthorizationStatus::Pending | AuthorizationStatus::Valid
        ) {
            return Err(authz.status);
        }
        authz.status = AuthorizationStatus::Deactivated;
        Ok(())
    }

    /// The client answered challenge `c` of (existing) authorization
    /// `authz`: the first challenge answered of a pending authorization
    /// turns `processing` and is to be validated (the job); answering again,
    /// or another challenge, changes nothing.
    pub(super) fn start_validation(
        &mut self,
        authz: usize,
        c: usize,
    ) -> Result<Option<ValidationJob>, Rejection> {
        let acct = self.authzs[authz].account;
        let thumbprint = self.accounts[acct].key.thumbprint.clone();
        let a = &mut self.authzs[authz];
        if a.status != AuthorizationStatus::Pending
            && a.challenges[c].status == ChallengeStatus::Pending
        {
            return Err(Rejection::malformed(format!(
                "Unable to update challenge :: authorization must be pending, is {}",
                a.status.as_str()
            )));
        }
        if a.challenges[c].status != ChallengeStatus::Pending
            || a.challenges
                .iter()
                .any(|ch| ch.status != ChallengeStatus::Pending)
        {
            return Ok(None);
        }
        a.challenges[c].status = ChallengeStatus::Processing;
        let identifier = if a.wildcard {
            Identifier {
                kind: a.identifier.kind.clone(),
                value: format!("*.{}", a.identifier.value),
            }
        } else {
            a.identifier.clone()
        };
        Ok(Some(ValidationJob {
            kind: a.challenges[c].kind.clone(),
            identifier,
            token: a.challenges[c].token.clone(),
            key_authorization: format!("{}.{thumbprint}", a.challenges[c].token),
        }))
    }

    /// The outcome of validating challenge `c` of authorization `authz`
    /// (ignored unless the authorization is still pending): valid for the
    /// configured reuse period (30 days by default), or invalid with the problem (spending a failed validation).
    pub(super) fn record_validation(
        &mut self,
        authz: usize,
        c: usize,
        result: Result<(), Problem>,
        config: &Config,
    ) {
        let now = now_utc();
        let acct = self.authzs[authz].account;
        let value = self.authzs[authz].identifier.value.clone();
        let a = &mut self.authzs[authz];
        if a.status != AuthorizationStatus::Pending {
            return;
        }
        match result {
            Ok(()) => {
                a.challenges[c].status = ChallengeStatus::Valid;
                a.challenges[c].validated = Some(now);
                a.status = AuthorizationStatus::Valid;
                a.expires = now
                    + time::Duration::try_from(config.authorization_reuse)
                        .unwrap_or(time::Duration::days(30));
            }
            Err(mut problem) => {
                problem.status = Some(400);
                tracing::info!(identifier = %value, %problem, "test CA: validation failed");
                a.challenges[c].status = ChallengeStatus::Invalid;
                a.challenges[c].error = Some(problem);
                a.status = AuthorizationStatus::Invalid;
                if let Some(l) = &config.rate_limits.failed_authorizations {
                    self.spend_failed_authorization(acct, &value, l);
                }
            }
        }
    }
}

impl Ca {
    /// Answers challenge `c` of (existing) authorization `authz` and runs
    /// the validation it starts, if any: at once when every challenge is
    /// valid without delay, else in a task.
    pub(super) fn answer_challenge(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        config: &Config,
    ) -> Result<(), Rejection> {
        let Some(job) = self.state().start_validation(authz, c)? else {
            return Ok(());
        };
        match &config.validation {
            ValidationMode::AlwaysValid if config.validation_delay.is_zero() => {
                self.state().record_validation(authz, c, Ok(()), config);
            }
            mode => {
                let ca = Arc::clone(self);
                let mode = mode.clone();
                let delay = config.validation_delay;
                let config = config.clone();
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let result = validate(&mode, &job).await;
                    ca.state().record_validation(authz, c, result, &config);
                });
            }
        }
        Ok(())
    }
}

/// Validates `job` as `mode` says (always valid, or really).
async fn validate(mode: &ValidationMode, job: &ValidationJob) -> Result<(), Problem> {
    let ValidationMode::Real {
        http_port,
        tls_port,
        dns,
    } = mode
    else {
        return Ok(());
    };
    let identifier = &job.identifier;
    let key_authorization = job.key_authorization.as_str();
    let connect_ip = match identifier.ip_addr() {
        Some(ip) if ip.is_loopback() => ip,
        Some(ip) => {
            return Err(Problem::new(
                ProblemType::Connection,
                format!("the test CA only validates loopback addresses, not {ip}"),
            ));
        }
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let timeout = Duration::from_secs(10);
    match &job.kind {
        ChallengeType::Http01 => {
            validation::validate_http01(
                connect_ip,
                *http_port,
                identifier,
                &job.token,
                key_authorization,
                timeout,
            )
            .await
        }
        ChallengeType::TlsAlpn01 => {
            validation::validate_tls_alpn01(
                connect_ip,
                *tls_port,
                identifier,
                key_authorization,
                timeout,
            )
            .await
        }
        ChallengeType::Dns01 => {
            validation::validate_dns01(dns.as_ref(), identifier, key_authorization).await
        }
        other => Err(Problem::new(
            ProblemType::Malformed,
            format!("challenge type {other} is not supported"),
        )),
    }
}
