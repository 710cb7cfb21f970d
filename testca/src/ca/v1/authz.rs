//! v1 authorizations: new-authz (one identifier each), the authorization
//! and challenge URLs.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{MUST_AGREE, expired, prefixed, problem_json, rfc3339};
use crate::ca::authorizations::{challenge_kinds, fresh_challenges};
use crate::ca::identifiers::check_identifiers;
use crate::ca::state::{AuthzRec, State};
use crate::ca::{Answer, Ca, Config, header, now_utc};
use crate::jws::Rejection;
use crate::wire::WireResponse;
use sturdy_acme::ProblemType;
use sturdy_acme::{AuthorizationStatus, ChallengeStatus, Identifier};

impl Ca {
    fn v1_authz_json(&self, state: &State, id: usize) -> Value {
        let a = &state.authzs[id];
        let challenges: Vec<Value> = (0..a.challenges.len())
            .map(|c| self.v1_challenge_json(state, id, c))
            .collect();
        let combinations: Vec<[usize; 1]> = (0..a.challenges.len()).map(|c| [c]).collect();
        json!({
            "identifier": a.identifier,
            "status": a.status.as_str(),
            "expires": rfc3339(a.expires),
            "challenges": challenges,
            "combinations": combinations,
        })
    }

    fn v1_challenge_json(&self, state: &State, authz: usize, c: usize) -> Value {
        let a = &state.authzs[authz];
        let ch = &a.challenges[c];
        let status = match (a.status, ch.status) {
            (AuthorizationStatus::Invalid, _) | (_, ChallengeStatus::Invalid) => "invalid",
            (_, ChallengeStatus::Valid) => "valid",
            // Boulder v1 never showed `processing`.
            // Boulder v1 never showed `processing`; a status this CA does
            // not model reads as still pending.
            _ => "pending",
        };
        let mut m = Map::new();
        m.insert("type".into(), json!(ch.kind.as_str()));
        m.insert("status".into(), json!(status));
        m.insert("uri".into(), json!(self.v1_challenge_url(authz, c)));
        m.insert("token".into(), json!(ch.token));
        if ch.status != ChallengeStatus::Pending {
            let thumbprint = &state.accounts[a.account].key.thumbprint;
            m.insert(
                "keyAuthorization".into(),
                json!(format!("{}.{thumbprint}", ch.token)),
            );
        }
        if let Some(error) = &ch.error {
            m.insert("error".into(), problem_json(error));
        }
        Value::Object(m)
    }

    pub(super) fn v1_new_authz(&self, acct: usize, payload: &Value, config: &Config) -> Answer {
        self.v1_require_agreement(acct, MUST_AGREE)?;
        const PREFIX: &str = "Error creating new authz :: ";
        let identifier: Identifier = payload
            .get("identifier")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Rejection::malformed("Error unmarshaling JSON"))?;
        if identifier.kind != "dns" {
            return Err(Rejection::malformed(format!(
                "{PREFIX}Invalid identifier type"
            )));
        }
        if identifier.value.contains('*') {
            return Err(Rejection::malformed(format!(
                "{PREFIX}Wildcard names not supported"
            )));
        }
        let identifier = check_identifiers(vec![identifier], config)
            .map_err(|r| prefixed(PREFIX, r))?
            .remove(0);
        let mut state = self.state();
        if let Some(l) = &config.rate_limits.failed_authorizations
            && state.failed_authorizations_exceeded(acct, &identifier.value, l)
        {
            return Err(Rejection::new(
                ProblemType::RateLimited,
                429,
                format!("{PREFIX}too many failed authorizations recently"),
            ));
        }
        // Boulder's RA: a valid authorization expiring more than a day out,
        // else a pending one, else a new one.
        let utc = now_utc();
        let find = |status: AuthorizationStatus, until: OffsetDateTime| {
            state.find_authz(acct, &identifier, false, status, until)
        };
        let reused = config
            .reuse_valid_authorizations
            .then(|| find(AuthorizationStatus::Valid, utc + time::Duration::days(1)))
            .flatten()
            .or_else(|| {
                config
                    .reuse_pending_orders
                    .then(|| find(AuthorizationStatus::Pending, utc))
                    .flatten()
            });
        let id = match reused {
            Some(id) => id,
            None => {
                let challenges = fresh_challenges(&self.rng, challenge_kinds(&identifier));
                let expires = utc + time::Duration::days(7);
                state.create_authz(acct, identifier, false, expires, challenges)
            }
        };
        let body = self.v1_authz_json(&state, id);
        drop(state);
        let mut response = self.v1_json(StatusCode::CREATED, &body);
        response
            .headers
            .insert("location", header(&self.v1_authz_url(id)));
        Ok(Self::v1_with_link(
            response,
            &self.url("/acme/new-cert"),
            "next",
        ))
    }

    /// The authorization, checked to exist and not to have expired.
    fn v1_live_authz<'s>(&self, state: &'s State, id: usize) -> Result<&'s AuthzRec, Rejection> {
        let a = state
            .authzs
            .get(id)
            .ok_or_else(|| Rejection::new(ProblemType::Malformed, 404, "No such authorization"))?;
        if expired(a) {
            return Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "Expired authorization",
            ));
        }
        Ok(a)
    }

    pub(super) fn v1_authz_get(&self, id: usize) -> Answer {
        let state = self.state();
        self.v1_live_authz(&state, id)?;
        let body = self.v1_authz_json(&state, id);
        let pending = state.authzs[id].status == AuthorizationStatus::Pending;
        drop(state);
        let mut response = Self::v1_with_link(
            self.v1_json(StatusCode::OK, &body),
            &self.url("/acme/new-cert"),
            "next",
        );
        if pending && let Some(secs) = self.config().poll_retry_after {
            response
                .headers
                .insert("retry-after", header(&secs.to_string()));
        }
        Ok(response)
    }

    /// Deactivation: `{"resource":"authz","status":"deactivated"}`.
    pub(super) fn v1_authz_post(&self, id: usize, acct: usize, payload: &Value) -> Answer {
        let mut state = self.state();
        let a = self.v1_live_authz(&state, id)?;
        if a.account != acct {
            return Err(Rejection::unauthorized(
                "User registration ID doesn't match registration ID in authorization",
            ));
        }
        if payload.get("status").and_then(Value::as_str) != Some("deactivated") {
            return Err(Rejection::malformed("Invalid status value"));
        }
        state.deactivate_authz(id).map_err(|status| {
            Rejection::malformed(format!(
                "Unable to deactivate authorization :: authorization is {}",
                status.as_str()
            ))
        })?;
        let body = self.v1_authz_json(&state, id);
        drop(state);
        Ok(Self::v1_with_link(
            self.v1_json(StatusCode::OK, &body),
            &self.url("/acme/new-cert"),
            "next",
        ))
    }

    /// Challenge `c` of authorization `authz`, checked to exist.
    fn v1_live_challenge<'s>(
        &self,
        state: &'s State,
        authz: usize,
        c: usize,
    ) -> Result<&'s AuthzRec, Rejection> {
        let no_such = || Rejection::new(ProblemType::Malformed, 404, "No such challenge");
        let a = state.authzs.get(authz).ok_or_else(no_such)?;
        if c >= a.challenges.len() {
            return Err(no_such());
        }
        self.v1_live_authz(state, authz)
    }

    /// A challenge as v1 answers it: 202 (even to a GET), `Location` and `Link` up.
    fn v1_challenge_response(&self, authz: usize, c: usize) -> WireResponse {
        let body = {
            let state = self.state();
            self.v1_challenge_json(&state, authz, c)
        };
        let mut response = self.v1_json(StatusCode::ACCEPTED, &body);
        response
            .headers
            .insert("location", header(&self.v1_challenge_url(authz, c)));
        Self::v1_with_link(response, &self.v1_authz_url(authz), "up")
    }

    pub(super) fn v1_challenge_get(&self, authz: usize, c: usize) -> Answer {
        self.v1_live_challenge(&self.state(), authz, c)?;
        Ok(self.v1_challenge_response(authz, c))
    }

    /// `{"resource":"challenge","type":...[,"keyAuthorization":...]}`: the
    /// body beyond `resource` is ignored, the CA computes the key
    /// authorization itself (certbot >= 0.32 sends none).
    pub(super) fn v1_challenge_post(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        acct: usize,
        config: &Config,
    ) -> Answer {
        self.v1_require_agreement(
            acct,
            "Registration didn't agree to subscriber agreement before any further actions",
        )?;
        let pending = {
            let state = self.state();
            let a = self.v1_live_challenge(&state, authz, c)?;
            if a.account != acct {
                return Err(Rejection::unauthorized(
                    "User registration ID doesn't match registration ID in authorization",
                ));
            }
            a.status == AuthorizationStatus::Pending
        };
        // An authorization that is no longer pending is just shown.
        if pending {
            self.answer_challenge(authz, c, config)?;
        }
        Ok(self.v1_challenge_response(authz, c))
    }
}
