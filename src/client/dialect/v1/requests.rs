//! ACME v1 registration, key change, `new-authz` and the client-side
//! order's synthesized state.

use crate::wait::Wait;
use std::sync::Arc;

use serde_json::{Value, json};

use super::V1State;
use crate::client::{Account, AccountOptions, Client, NewOrder};
use crate::crypto::AccountKey;
use crate::crypto::jws::{self, JwsHeader, KeyId};
use crate::error::{Error, ProblemType, Result};
use crate::protocol::v1::{self as wire, OrderRef};
use crate::protocol::{AccountResource, AuthorizationResource, AuthorizationStatus, OrderResource};
use crate::transport::{Endpoint, Response, links};

// ---------------------------------------------------------------------------
// Accounts.

pub(super) fn invalid(response: &Response, reason: impl Into<String>) -> Error {
    Error::InvalidResponse {
        request: response.info(),
        reason: reason.into(),
    }
}

fn registration(response: &Response) -> Result<AccountResource> {
    let value: Value = response.json()?;
    wire::account(value).map_err(|e| invalid(response, format!("not a v1 registration: {e}")))
}

/// An idempotent POST to the registration URL (query, update, agreement),
/// signed with `key`'s JWK.
pub(super) async fn post_reg(
    client: &Client,
    key: &AccountKey,
    reg_url: &str,
    payload: &Value,
) -> Result<(AccountResource, Response)> {
    client
        .transport()
        .post_parsed(
            Endpoint::Account,
            reg_url,
            key,
            KeyId::Jwk,
            Some(payload),
            None,
            registration,
        )
        .await
}

/// new-reg: 201 with the registration (then the agreement, if asked for and
/// not yet given), or 409 with the `Location` of the key's registration.
pub(super) async fn create_account(
    client: Client,
    key: AccountKey,
    options: &AccountOptions,
) -> Result<Account> {
    if options.external_account.is_some() {
        return Err(Error::Unsupported(
            "ACME v1 has no external account binding (EAB)".into(),
        ));
    }
    let directory = client.directory();
    let dir_terms = directory.meta.terms_of_service.clone();
    let agreement = options
        .terms_of_service_agreed
        .then_some(dir_terms.as_deref())
        .flatten();
    let payload = serde_json::to_value(wire::NewRegistration {
        contact: &options.contact,
        agreement,
    })
    .expect("payload serializes");
    let url = directory.new_account.clone();
    let transport = client.transport();
    // new-reg is idempotent for a key (a repeat answers 409 with the
    // registration), so lost and broken answers are retried.
    let mut retrying = transport.retrying(Endpoint::NewAccount, &url);
    let (reg_url, created, terms_link) = loop {
        let result = transport
            .post_once_with(
                &mut retrying,
                &key,
                KeyId::Jwk,
                Some(&payload),
                None,
                &[409],
            )
            .await
            .and_then(|r| {
                let location = r.location()?;
                let terms = links(&r.headers, "terms-of-service").into_iter().next();
                if r.status == 409 {
                    Ok((location, None, terms))
                } else {
                    Ok((location, Some(registration(&r)?), terms))
                }
            });
        match result {
            Ok(answer) => break answer,
            Err(e) => retrying.pause_or_fail(e).await?,
        }
    };
    let mut resource = created.clone();
    if options.terms_of_service_agreed {
        let agreed = created
            .as_ref()
            .is_some_and(|r| r.terms_of_service_agreed == Some(true));
        let terms = terms_link.or(dir_terms);
        match (agreed, terms, &created) {
            (true, _, _) => {}
            (false, Some(terms), _) => {
                let (r, _) =
                    post_reg(&client, &key, &reg_url, &json!({ "agreement": terms })).await?;
                resource = Some(r);
            }
            // An existing registration and no terms known yet: its answer links them.
            (false, None, None) => {
                let (r, response) = post_reg(&client, &key, &reg_url, &json!({})).await?;
                let linked = links(&response.headers, "terms-of-service")
                    .into_iter()
                    .next();
                resource = Some(match linked {
                    Some(terms) if r.terms_of_service_agreed != Some(true) => {
                        post_reg(&client, &key, &reg_url, &json!({ "agreement": terms }))
                            .await?
                            .0
                    }
                    _ => r,
                });
            }
            // Created, and the CA has no terms to agree to.
            (false, None, Some(_)) => {}
        }
    }
    tracing::info!(account = %reg_url, created = created.is_some(), "ACME v1 registration");
    Ok(Account::from_parts(
        client,
        Arc::new(key),
        reg_url,
        resource,
    ))
}

/// v1 key-change (Boulder): the outer JWS, signed by the current key,
/// carries the inner JWS (signed by the new key, `{account, newKey}`) with
/// `resource` spliced in.
pub(super) fn key_change(account: &Account, new_key: &AccountKey) -> Result<(String, Value)> {
    let url = account.client().directory().key_change.clone();
    if url.is_empty() {
        return Err(Error::Unsupported(
            "this ACME v1 CA's directory has no key-change".into(),
        ));
    }
    let inner_payload = serde_json::to_value(wire::KeyChange {
        account: account.url(),
        new_key: new_key.jwk(),
    })
    .expect("payload serializes");
    let inner = jws::sign(
        new_key,
        KeyId::Jwk,
        None,
        &url,
        Some(&inner_payload),
        JwsHeader::JwkOnly,
    )?;
    Ok((url, inner))
}

/// True when `key` signs for the registration at `reg_url` (a query of it
/// succeeds; a key without a registration gets 403 `unauthorized`).
pub(super) async fn key_owns(client: &Client, key: &AccountKey, reg_url: &str) -> Result<bool> {
    match post_reg(client, key, reg_url, &json!({})).await {
        Ok(_) => Ok(true),
        Err(e) if e.problem_type() == Some(&ProblemType::Unauthorized) => Ok(false),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// Orders and authorizations.

/// Refuses what an ACME v1 order cannot have.
pub(super) fn check_order(order: &NewOrder) -> Result<()> {
    if order.has_validity_window() {
        return Err(Error::Unsupported(
            "ACME v1 has no notBefore/notAfter in orders".into(),
        ));
    }
    for id in order.identifiers() {
        if id.kind != "dns" {
            return Err(Error::Unsupported(format!(
                "ACME v1 has only DNS identifiers, not {id} (IP identifiers are RFC 8738, v2)"
            )));
        }
        if id.is_wildcard() {
            return Err(Error::Unsupported(format!(
                "ACME v1 has no wildcard certificates ({id}); they came with v2"
            )));
        }
    }
    Ok(())
}

/// An authorization as a v1 CA serves it (plain GET).
pub(super) async fn fetch_authorization(
    client: &Client,
    url: &str,
) -> Result<(AuthorizationResource, Response)> {
    client
        .transport()
        .get_parsed(Endpoint::Authorization, url, None, parse_authorization)
        .await
}

pub(super) fn parse_authorization(response: &Response) -> Result<AuthorizationResource> {
    let value: Value = response.json()?;
    wire::authorization(value)
        .map_err(|e| invalid(response, format!("not a v1 authorization: {e}")))
}

/// One new-authz per identifier. Not idempotent on the wire, but a repeat
/// after a lost answer gets the pending authorization the CA already made
/// (Boulder reuses it), like a v2 newOrder.
pub(super) async fn new_authorizations(
    account: &Account,
    v1: &V1State,
    order: &NewOrder,
) -> Result<(OrderRef, Vec<AuthorizationResource>)> {
    let client = account.client();
    let url = v1.directory.new_authz.clone();
    let mut reference = OrderRef {
        identifiers: order.identifiers().to_vec(),
        authorizations: Vec::new(),
        certificate: None,
    };
    let mut states = Vec::new();
    for identifier in order.identifiers() {
        let payload = serde_json::to_value(wire::NewAuthorization { identifier })
            .expect("payload serializes");
        let mut retrying = client.transport().retrying(Endpoint::NewOrder, &url);
        let (authz_url, state) = loop {
            let result = account
                .post_once(&mut retrying, Some(&payload))
                .await
                .and_then(|r| {
                    let state = parse_authorization(&r)?;
                    if state.identifier != *identifier {
                        return Err(invalid(
                            &r,
                            format!(
                                "new-authz for {identifier} answered an authorization for {}",
                                state.identifier
                            ),
                        ));
                    }
                    Ok((r.location()?, state))
                });
            match result {
                Ok(created) => break created,
                Err(e) => {
                    if let Some(wait) = Wait::of(&e, client.clock().now()) {
                        client
                            .transport()
                            .waits()
                            .hold(account.url(), order.identifiers(), &wait);
                    }
                    retrying.pause_or_fail(e).await?;
                }
            }
        };
        tracing::debug!(authz = %authz_url, identifier = %identifier, status = state.status.as_str(), "v1 authorization");
        reference.authorizations.push(authz_url);
        states.push(state);
    }
    Ok((reference, states))
}

/// The synthesized order object of a v1 order.
pub(super) fn order_resource(
    v1: &V1State,
    reference: &OrderRef,
    statuses: &[AuthorizationStatus],
    expires: Option<time::OffsetDateTime>,
) -> OrderResource {
    let mut extra = serde_json::Map::new();
    extra.insert("dialect".into(), json!("v1"));
    OrderResource {
        status: wire::order_status(statuses, reference.certificate.is_some()),
        expires,
        identifiers: reference.identifiers.clone(),
        not_before: None,
        not_after: None,
        error: None,
        authorizations: reference.authorizations.clone(),
        finalize: v1.directory.new_cert.clone(),
        certificate: reference.certificate.clone(),
        extra,
    }
}

/// Turns Boulder's v1 "already revoked" (409 `malformed`) into the
/// `alreadyRevoked` problem v2 (and this crate's callers) know.
pub(super) fn already_revoked(e: Error) -> Error {
    match e {
        Error::Problem {
            request,
            mut problem,
        } if request.status == Some(409) && problem.kind == ProblemType::Malformed => {
            problem.kind = ProblemType::AlreadyRevoked;
            Error::Problem { request, problem }
        }
        other => other,
    }
}
