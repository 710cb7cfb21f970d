//! v2 authorizations and challenges: the resources, deactivation, and the
//! challenge answer that starts validation.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;

use crate::ca::link;
use crate::ca::state::State;
use crate::ca::{Answer, Ca, Config};
use crate::jws::{self, Rejection};
use sturdy_acme::ProblemType;
use sturdy_acme::{AuthorizationResource, AuthorizationStatus, ChallengeResource};

impl Ca {
    fn authz_resource(&self, state: &State, id: usize) -> AuthorizationResource {
        let a = &state.authzs[id];
        AuthorizationResource {
            identifier: a.identifier.clone(),
            status: a.status,
            expires: Some(a.expires),
            challenges: (0..a.challenges.len())
                .map(|c| self.challenge_resource(state, id, c))
                .collect(),
            wildcard: a.wildcard,
            extra: Default::default(),
        }
    }

    fn challenge_resource(&self, state: &State, authz: usize, c: usize) -> ChallengeResource {
        let ch = &state.authzs[authz].challenges[c];
        ChallengeResource {
            kind: ch.kind.clone(),
            url: self.url(&format!("/acme/chall/{authz}/{c}")),
            status: ch.status,
            token: Some(ch.token.clone()),
            validated: ch.validated,
            error: ch.error.clone(),
            extra: Default::default(),
        }
    }

    pub(super) fn authz(&self, id: usize, acct: usize, parsed: &jws::Parsed) -> Answer {
        let mut state = self.state();
        state.owned_authz(id, acct)?;
        if let Some(payload) = &parsed.payload {
            if payload.get("status").and_then(Value::as_str) != Some("deactivated") {
                return Err(Rejection::malformed("only deactivation is allowed"));
            }
            state
                .deactivate_authz(id)
                .map_err(|_| Rejection::malformed("authorization is not pending or valid"))?;
        }
        let body = self.authz_resource(&state, id);
        let pending = body.status == AuthorizationStatus::Pending;
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.authz_url(id))),
            pending,
        ))
    }

    pub(super) async fn challenge(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        acct: usize,
        parsed: &jws::Parsed,
        config: &Config,
    ) -> Answer {
        {
            let state = self.state();
            state.owned_authz(authz, acct)?;
            if c >= state.authzs[authz].challenges.len() {
                return Err(Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "No such challenge",
                ));
            }
        }
        if parsed.payload.is_some() {
            self.answer_challenge(authz, c, config)?;
        }
        let state = self.state();
        let body = self.challenge_resource(&state, authz, c);
        let url = self.authz_url(authz);
        drop(state);
        let mut response = self.json_response(StatusCode::OK, &body, None);
        response.headers.append("link", link(&url, "up"));
        Ok(response)
    }
}
