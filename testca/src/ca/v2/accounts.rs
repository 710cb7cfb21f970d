//! v2 accounts: newAccount, the account URL (update, deactivate), its
//! orders list and keyChange.

use http::StatusCode;
use serde_json::{Value, json};

use crate::ca::accounts::check_contacts;
use crate::ca::link;
use crate::ca::state::AccountRec;
use crate::ca::{Answer, Ca, Config, header};
use crate::jws::{self, Rejection, Signer};
use crate::wire::WireRequest;
use sturdy_acme::AccountResource;
use sturdy_acme::ProblemType;

impl Ca {
    fn account_resource(&self, id: usize, rec: &AccountRec) -> AccountResource {
        let mut extra = serde_json::Map::new();
        extra.insert("key".into(), rec.key.jwk.clone());
        if let Some(kid) = &rec.eab_kid {
            extra.insert("externalAccountBinding".into(), json!({"kid": kid}));
        }
        AccountResource {
            status: rec.status,
            contact: rec.contact.clone(),
            terms_of_service_agreed: Some(true),
            orders: Some(format!("{}/orders", self.account_url(id))),
            extra,
        }
    }

    pub(super) fn new_account(&self, parsed: &jws::Parsed, config: &Config) -> Answer {
        let Signer::Jwk(key) = &parsed.signer else {
            return Err(Rejection::malformed("newAccount requires a jwk"));
        };
        let payload = parsed.payload.clone().unwrap_or(Value::Null);
        let existing = self.state().account_by_key(&key.thumbprint);
        if let Some(id) = existing {
            let state = self.state();
            let body = self.account_resource(id, &state.accounts[id]);
            drop(state);
            return Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(id))));
        }
        if payload.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
            return Err(Rejection::new(
                ProblemType::AccountDoesNotExist,
                400,
                "unable to find existing account for only-return-existing request",
            ));
        }
        if payload.get("termsOfServiceAgreed").and_then(Value::as_bool) != Some(true) {
            return Err(Rejection::malformed(
                "Provided account did not agree to the terms of service",
            ));
        }
        let contact = match payload.get("contact") {
            Some(c) => check_contacts(c)?,
            None => Vec::new(),
        };
        let eab_kid = match payload.get("externalAccountBinding") {
            Some(eab) => Some(jws::verify_eab(
                eab,
                &key.jwk,
                &self.url("/acme/new-account"),
                &config.eab_keys.0,
            )?),
            None if config.eab_required => {
                return Err(Rejection::new(
                    ProblemType::ExternalAccountRequired,
                    403,
                    "no externalAccountBinding was present",
                ));
            }
            None => None,
        };
        let mut state = self.state();
        let id = state.create_account(key, contact, eab_kid);
        let body = self.account_resource(id, &state.accounts[id]);
        drop(state);
        Ok(self.json_response(StatusCode::CREATED, &body, Some(&self.account_url(id))))
    }

    pub(super) fn account(&self, id: usize, acct: usize, parsed: &jws::Parsed) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized(
                "Request signing key did not match update key",
            ));
        }
        let mut state = self.state();
        if let Some(payload) = &parsed.payload {
            if let Some(contact) = payload.get("contact") {
                state.accounts[id].contact = check_contacts(contact)?;
            }
            match payload.get("status").and_then(Value::as_str) {
                None => {}
                Some("deactivated") => state.deactivate_account(id),
                Some(other) => {
                    return Err(Rejection::malformed(format!(
                        "invalid account status {other:?}"
                    )));
                }
            }
        }
        let body = self.account_resource(id, &state.accounts[id]);
        drop(state);
        Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(id))))
    }

    /// The account's orders, `orders_per_page` a page (`?cursor=N`).
    pub(super) fn orders_list(&self, id: usize, acct: usize, req: &WireRequest) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized("not your orders list"));
        }
        let page: usize = req
            .path
            .split_once("?cursor=")
            .and_then(|(_, c)| c.parse().ok())
            .unwrap_or(0);
        let per_page = self.config().orders_per_page.max(1);
        let state = self.state();
        let ids: Vec<usize> = (0..state.orders.len())
            .filter(|o| state.orders[*o].account == id)
            .collect();
        drop(state);
        // The cursor is the client's: saturate instead of overflowing.
        let start = page.saturating_mul(per_page);
        let urls: Vec<String> = ids
            .iter()
            .skip(start)
            .take(per_page)
            .map(|o| self.order_url(*o))
            .collect();
        let mut response = self.json_response(StatusCode::OK, &json!({"orders": urls}), None);
        if ids.len() > start.saturating_add(per_page) {
            let next = format!(
                "{}/orders?cursor={}",
                self.account_url(id),
                page.saturating_add(1)
            );
            response.headers.append("link", link(&next, "next"));
        }
        Ok(response)
    }

    pub(super) fn key_change(&self, acct: usize, parsed: &jws::Parsed, config: &Config) -> Answer {
        let inner_body = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("keyChange needs an inner JWS"))?;
        let inner = jws::parse(
            &serde_json::to_vec(inner_body).unwrap_or_default(),
            config.accept_eddsa,
        )?;
        let Signer::Jwk(new_key) = &inner.signer else {
            return Err(Rejection::malformed(
                "inner JWS must carry the new key as jwk",
            ));
        };
        inner.verify_with(new_key)?;
        if inner.url != parsed.url {
            return Err(Rejection::malformed(
                "inner JWS url must equal the outer url",
            ));
        }
        let payload = inner
            .payload
            .ok_or_else(|| Rejection::malformed("inner JWS has no payload"))?;
        let mut state = self.state();
        if payload.get("account").and_then(Value::as_str) != Some(&self.account_url(acct)) {
            return Err(Rejection::malformed(
                "inner payload account does not match the kid",
            ));
        }
        let old = payload
            .get("oldKey")
            .map(sturdy_acme::thumbprint_of_jwk)
            .and_then(Result::ok);
        if old.as_deref() != Some(state.accounts[acct].key.thumbprint.as_str()) {
            return Err(Rejection::malformed(
                "inner payload oldKey is not the account key",
            ));
        }
        if let Err(other) = state.change_account_key(acct, new_key) {
            // The problem takes a nonce, from the state: unlock first.
            drop(state);
            let mut response = self.problem_response(&Rejection::new(
                ProblemType::Conflict,
                409,
                "New key is already in use for a different account",
            ));
            response
                .headers
                .insert("location", header(&self.account_url(other)));
            return Ok(response);
        }
        let body = self.account_resource(acct, &state.accounts[acct]);
        drop(state);
        Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(acct))))
    }
}
