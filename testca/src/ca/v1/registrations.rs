//! v1 registrations: new-reg, the registration URL (agreement, contact,
//! deactivation) and key-change.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{account_status, prefixed, rfc3339};
use crate::ca::accounts::check_contacts;
use crate::ca::state::State;
use crate::ca::{Answer, Ca, header, now_utc};
use crate::jws::{self, PublicJwk, Rejection, Signer};
use crate::wire::WireResponse;
use sturdy_acme::ProblemType;
use sturdy_acme::thumbprint_of_jwk;

impl Ca {
    fn v1_registration(&self, state: &State, id: usize) -> Value {
        let rec = &state.accounts[id];
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("key".into(), rec.key.jwk.clone());
        if !rec.contact.is_empty() {
            m.insert("contact".into(), json!(rec.contact));
        }
        if let Some(agreement) = state.v1.agreements.get(&id) {
            m.insert("agreement".into(), json!(agreement));
        }
        m.insert("initialIp".into(), json!("127.0.0.1"));
        if let Some(created) = state.v1.created.get(&id) {
            m.insert("createdAt".into(), json!(rfc3339(*created)));
        }
        m.insert("status".into(), json!(account_status(rec.status)));
        Value::Object(m)
    }

    /// The links a registration response carries: next (new-authz) and the terms.
    fn v1_registration_links(&self, response: WireResponse) -> WireResponse {
        let response = Self::v1_with_link(response, &self.url("/acme/new-authz"), "next");
        Self::v1_with_link(response, &self.v1_terms_url(), "terms-of-service")
    }

    /// `agreement`, if the payload has one: it must be the current terms.
    fn v1_agreement(&self, payload: &Value) -> Result<Option<String>, Rejection> {
        let terms = self.v1_terms_url();
        match payload.get("agreement") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(a)) if *a == terms => Ok(Some(terms)),
            Some(other) => Err(Rejection::malformed(format!(
                "Provided agreement URL [{}] does not match current agreement URL [{terms}]",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned)
            ))),
        }
    }

    fn v1_contacts(payload: &Value) -> Result<Option<Vec<String>>, Rejection> {
        match payload.get("contact") {
            None | Some(Value::Null) => Ok(None),
            Some(contact) => check_contacts(contact).map(Some),
        }
    }

    pub(super) fn v1_require_agreement(&self, acct: usize, detail: &str) -> Result<(), Rejection> {
        if self.state().v1.agreements.contains_key(&acct) {
            Ok(())
        } else {
            Err(Rejection::unauthorized(detail))
        }
    }

    pub(super) fn v1_new_reg(&self, key: &PublicJwk, payload: &Value) -> Answer {
        let agreement = self.v1_agreement(payload)?;
        let contact = Self::v1_contacts(payload)?.unwrap_or_default();
        let mut state = self.state();
        if let Some(id) = state.account_by_key(&key.thumbprint) {
            drop(state);
            let mut response = self.v1_problem(&Rejection::new(
                ProblemType::Malformed,
                409,
                "Registration key is already in use",
            ));
            response
                .headers
                .insert("location", header(&self.v1_reg_url(id)));
            return Ok(response);
        }
        let id = state.create_account(key, contact, None);
        state.v1.created.insert(id, now_utc());
        if let Some(agreement) = agreement {
            state.v1.agreements.insert(id, agreement);
        }
        let body = self.v1_registration(&state, id);
        drop(state);
        let mut response = self.v1_json(StatusCode::CREATED, &body);
        response
            .headers
            .insert("location", header(&self.v1_reg_url(id)));
        Ok(self.v1_registration_links(response))
    }

    /// Query, update (contact, agreement) or deactivate a registration.
    pub(super) fn v1_reg(&self, id: usize, acct: usize, payload: &Value) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized(
                "Request signing key did not match registration key",
            ));
        }
        let agreement = self
            .v1_agreement(payload)
            .map_err(|r| prefixed("Unable to update registration :: ", r))?;
        let contact = Self::v1_contacts(payload)?;
        let mut state = self.state();
        let current = account_status(state.accounts[id].status);
        match payload.get("status").and_then(Value::as_str) {
            None => {}
            Some(same) if same == current => {}
            Some("deactivated") => {
                state.deactivate_account(id);
                let body = self.v1_registration(&state, id);
                drop(state);
                return Ok(self.v1_json(StatusCode::OK, &body));
            }
            Some(_) => {
                return Err(Rejection::malformed(
                    "Invalid value provided for status field",
                ));
            }
        }
        if let Some(contact) = contact {
            state.accounts[id].contact = contact;
        }
        if let Some(agreement) = agreement {
            state.v1.agreements.insert(id, agreement);
        }
        let body = self.v1_registration(&state, id);
        drop(state);
        Ok(self.v1_registration_links(self.v1_json(StatusCode::ACCEPTED, &body)))
    }

    /// Key rollover: the outer payload is the inner JWS (signed by the new
    /// key, `{"account": <reg URL>, "newKey": <new JWK>}`) with
    /// `"resource":"key-change"` spliced in. 200 with the registration.
    pub(super) fn v1_key_change(&self, acct: usize, payload: &Value) -> Answer {
        let mut inner = payload.as_object().cloned().unwrap_or_default();
        inner.remove("resource");
        let inner = jws::parse_v1(&serde_json::to_vec(&Value::Object(inner)).unwrap_or_default())
            .map_err(|r| prefixed("Unable to change key :: inner JWS: ", r))?;
        let Signer::Jwk(new_key) = &inner.signer else {
            return Err(Rejection::malformed("No JWK in inner JWS header"));
        };
        inner.verify_with(new_key)?;
        let inner_payload = inner
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("Inner JWS payload did not parse as JSON"))?;
        if inner_payload.get("account").and_then(Value::as_str) != Some(&self.v1_reg_url(acct)) {
            return Err(Rejection::malformed(
                "Incorrect account URL provided in payload",
            ));
        }
        let new_thumbprint = inner_payload
            .get("newKey")
            .map(thumbprint_of_jwk)
            .and_then(Result::ok);
        if new_thumbprint.as_deref() != Some(new_key.thumbprint.as_str()) {
            return Err(Rejection::malformed(
                "New JWK in inner payload doesn't match key used to sign inner JWS",
            ));
        }
        let mut state = self.state();
        if let Err(other) = state.change_account_key(acct, new_key) {
            drop(state);
            let mut response = self.v1_problem(&Rejection::new(
                ProblemType::Malformed,
                409,
                "New key is already in use for a different account",
            ));
            response
                .headers
                .insert("location", header(&self.v1_reg_url(other)));
            return Ok(response);
        }
        let body = self.v1_registration(&state, acct);
        drop(state);
        Ok(self.v1_json(StatusCode::OK, &body))
    }
}
