//! ACME v1 (Boulder's `acme-v01`, cargo feature `v1`) behind the same
//! [`Account`] / [`Order`] / [`Authorization`](crate::client::Authorization)
//! types: registration, the client-side order (one `new-authz` per
//! identifier), `new-cert` with its lost-response guard ([`new_cert`]), the
//! `Link: rel="up"` chain walk and key-change.
//!
//! The wire differs too, and [`V1Shape`] tells the transport how: the JWS
//! header is `{alg, jwk, nonce}`, every payload carries the endpoint's
//! `resource`, there is no POST-as-GET (v1 reads with plain GET), a fresh
//! nonce comes from `HEAD`ing the request's own URL (v1 has no newNonce),
//! and new-cert has its own, longer timeout.

mod new_cert;
mod requests;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

pub use new_cert::{CertificateFinder, FindFuture};
pub(crate) use new_cert::{Finder, NewCertAttempts};

use super::{BoxFuture, DialectImpl, OrderWire, Selected};
use crate::client::order::OrderCore;
use crate::client::{
    Account, AccountOptions, CertificateChain, Challenge, Client, NewOrder, Order,
};
use crate::crypto::jws::{JwsHeader, KeyId};
use crate::crypto::{AccountKey, Csr};
use crate::error::{Error, Result};
use crate::protocol::v1::{self as wire, OrderRef};
use crate::protocol::{
    AccountResource, AuthorizationResource, AuthorizationStatus, ChallengeResource, Dialect,
    OrderStatus,
};
use crate::transport::{Endpoint, Response, WireShape};

/// The media type of a DER certificate.
pub(crate) const PKIX_CERT: &str = "application/pkix-cert";

/// What the [`ClientBuilder`](crate::ClientBuilder) sets for ACME v1.
#[derive(Debug, Clone)]
pub(crate) struct V1Settings {
    /// The timeout of one new-cert (None: none).
    pub(crate) new_cert_timeout: Option<Duration>,
    /// new-cert requests per exact identifier set, and the window.
    pub(crate) new_cert_budget: (u32, Duration),
    /// Repeats of a new-cert whose answer was lost, with nothing found.
    pub(crate) new_cert_blind_repeats: u32,
    /// How to look up a certificate whose new-cert answer was lost.
    pub(crate) finder: Option<Finder>,
}

impl Default for V1Settings {
    fn default() -> Self {
        Self {
            new_cert_timeout: Some(Duration::from_secs(90)),
            new_cert_budget: (5, Duration::from_secs(7 * 24 * 3600)),
            new_cert_blind_repeats: 0,
            finder: None,
        }
    }
}

/// ACME v1.
#[derive(Debug)]
pub(crate) struct V1 {
    state: Arc<V1State>,
}

/// What one v1 client keeps, shared with its orders.
#[derive(Debug)]
pub(crate) struct V1State {
    /// The v1 endpoints, by their v1 names.
    pub(crate) directory: wire::V1Directory,
    /// Every new-cert sent, per exact identifier set.
    pub(crate) new_certs: NewCertAttempts,
    /// How to look up a certificate whose new-cert answer was lost.
    pub(crate) finder: Option<Finder>,
}

impl V1 {
    /// Parses a v1 directory.
    pub(crate) fn select(
        obj: &Map<String, Value>,
        settings: &V1Settings,
    ) -> std::result::Result<Selected, String> {
        let (directory, endpoints) = wire::directory(obj)?;
        let (max, window) = settings.new_cert_budget;
        Ok(Selected {
            dialect: Arc::new(V1 {
                state: Arc::new(V1State {
                    directory: endpoints,
                    new_certs: NewCertAttempts::new(max, window, settings.new_cert_blind_repeats),
                    finder: settings.finder.clone(),
                }),
            }),
            directory,
            shape: Some(Box::new(V1Shape {
                new_cert_timeout: settings.new_cert_timeout,
            })),
        })
    }

    fn order(
        &self,
        account: Account,
        reference: OrderRef,
        statuses: Vec<AuthorizationStatus>,
        expires: Option<time::OffsetDateTime>,
    ) -> Order {
        let state = requests::order_resource(&self.state, &reference, &statuses, expires);
        Order::from_parts(
            OrderCore::new(account, reference.to_url(), state),
            Box::new(V1Order {
                state: self.state.clone(),
                reference,
                statuses,
                issued: None,
                chain: None,
            }),
        )
    }
}

impl DialectImpl for V1 {
    fn dialect(&self) -> Dialect {
        Dialect::V1
    }

    fn create_account<'a>(
        &'a self,
        client: Client,
        key: AccountKey,
        options: &'a AccountOptions,
    ) -> BoxFuture<'a, Result<Account>> {
        Box::pin(requests::create_account(client, key, options))
    }

    fn find_account(&self, _: Client, _: AccountKey) -> BoxFuture<'_, Result<Account>> {
        Box::pin(async {
            Err(Error::Unsupported(
                "ACME v1 has no account lookup without registering (onlyReturnExisting): \
                 create_account with the same key returns the existing registration"
                    .into(),
            ))
        })
    }

    fn post_account<'a>(
        &'a self,
        account: &'a Account,
        payload: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<AccountResource>> {
        Box::pin(async move {
            let empty = Value::Object(Map::new());
            let (resource, _) = requests::post_reg(
                account.client(),
                account.key(),
                account.url(),
                payload.unwrap_or(&empty),
            )
            .await?;
            account.remember(&resource);
            Ok(resource)
        })
    }

    fn key_change(&self, account: &Account, new_key: &AccountKey) -> Result<(String, Value)> {
        requests::key_change(account, new_key)
    }

    /// A query of the registration signed by `key` succeeds.
    fn key_owns_account<'a>(
        &'a self,
        account: &'a Account,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(requests::key_owns(account.client(), key, account.url()))
    }

    fn new_order<'a>(
        &'a self,
        account: &'a Account,
        order: &'a NewOrder,
    ) -> BoxFuture<'a, Result<Order>> {
        Box::pin(async move {
            requests::check_order(order)?;
            account
                .client()
                .transport()
                .waits()
                .check_new_order(account.url(), order.identifiers())?;
            let (reference, states) =
                requests::new_authorizations(account, &self.state, order).await?;
            let statuses = states.iter().map(|a| a.status).collect();
            let expires = states.iter().filter_map(|a| a.expires).min();
            let created = self.order(account.clone(), reference, statuses, expires);
            tracing::info!(order = %created.url(), status = created.status().as_str(), "v1 order created");
            Ok(created)
        })
    }

    fn load_order<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Order>> {
        Box::pin(async move {
            let reference = OrderRef::parse(url).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{url:?} is not an ACME v1 order reference (v1 has no order URLs; \
                     use the Order::url() of an order made through this crate)"
                ))
            })?;
            let issued = reference.certificate.is_some();
            let status = if issued {
                AuthorizationStatus::Valid
            } else {
                AuthorizationStatus::Pending
            };
            let statuses = vec![status; reference.authorizations.len()];
            let mut order = self.order(account.clone(), reference, statuses, None);
            if !issued {
                order.refresh().await?;
            }
            Ok(order)
        })
    }

    fn download_chain<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>> {
        Box::pin(new_cert::download_chain(account.client(), url))
    }

    fn order_urls<'a>(&'a self, _: &'a Account, _: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async {
            Err(Error::Unsupported(
                "ACME v1 has no orders list (orders are client-side)".into(),
            ))
        })
    }

    fn revocation_error(&self, error: Error) -> Error {
        requests::already_revoked(error)
    }

    fn read_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<(AuthorizationResource, Response)>> {
        Box::pin(requests::fetch_authorization(account.client(), url))
    }

    fn deactivate_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationResource>> {
        Box::pin(async move {
            let payload = serde_json::json!({"status": "deactivated"});
            Ok(account
                .client()
                .transport()
                .post_parsed(
                    Endpoint::Authorization,
                    url,
                    account.key(),
                    KeyId::Jwk,
                    Some(&payload),
                    None,
                    requests::parse_authorization,
                )
                .await?
                .0)
        })
    }

    fn challenge_answer(&self, challenge: &Challenge) -> Result<Value> {
        let key_authorization = challenge.key_authorization()?;
        Ok(serde_json::to_value(wire::ChallengeAnswer {
            kind: challenge.kind().as_str(),
            key_authorization: &key_authorization,
        })
        .expect("payload serializes"))
    }

    fn parse_challenge(&self, response: &Response) -> Result<ChallengeResource> {
        let value: Value = response.json()?;
        wire::challenge(value).map_err(|e| Error::InvalidResponse {
            request: response.info(),
            reason: format!("not a v1 challenge: {e}"),
        })
    }

    fn read_challenge<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<ChallengeResource>> {
        Box::pin(async move {
            Ok(account
                .client()
                .transport()
                .get_parsed(Endpoint::Challenge, url, None, |r| self.parse_challenge(r))
                .await?
                .0)
        })
    }
}

/// A v1 order: the client's own, made of its authorizations.
#[derive(Debug, Clone)]
struct V1Order {
    state: Arc<V1State>,
    reference: OrderRef,
    /// The last seen status of each authorization (same order as the URLs).
    statuses: Vec<AuthorizationStatus>,
    /// What new-cert answered (or the finder found).
    issued: Option<new_cert::Issued>,
    /// The assembled chain, once built.
    chain: Option<CertificateChain>,
}

impl OrderWire for V1Order {
    fn clone_box(&self) -> Box<dyn OrderWire> {
        Box::new(self.clone())
    }

    /// Fetches the authorizations that are still pending (plain GET) and
    /// recomputes the state; nothing once the certificate is issued.
    fn refresh<'a>(&'a mut self, order: &'a mut OrderCore) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.reference.certificate.is_some() {
                return Ok(());
            }
            let client = order.account.client().clone();
            let mut expires = order.state.expires;
            let mut retry_after = None;
            for (url, status) in self.reference.authorizations.iter().zip(&mut self.statuses) {
                if *status != AuthorizationStatus::Pending {
                    continue;
                }
                let (authz, response) = requests::fetch_authorization(&client, url).await?;
                *status = authz.status;
                expires = match (expires, authz.expires) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                retry_after = response.retry_after().or(retry_after);
            }
            order.last_retry_after = retry_after;
            order.state =
                requests::order_resource(&self.state, &self.reference, &self.statuses, expires);
            Ok(())
        })
    }

    fn finalize<'a>(
        &'a mut self,
        order: &'a mut OrderCore,
        csr: Csr<'a>,
        der: Vec<u8>,
    ) -> BoxFuture<'a, Result<OrderStatus>> {
        Box::pin(async move {
            let (ids, spki) = match csr {
                Csr::Key(key) => (order.state.identifiers.clone(), key.public_key_der()),
                Csr::Der(der) => new_cert::csr_contents(der)?,
            };
            let issued = new_cert::new_cert(&order.account, &self.state, &der, &ids, &spki).await?;
            self.reference.certificate = Some(issued.url.clone());
            self.chain = issued.chain.clone();
            self.issued = Some(issued);
            order.url = self.reference.to_url();
            order.state = requests::order_resource(
                &self.state,
                &self.reference,
                &self.statuses,
                order.state.expires,
            );
            tracing::info!(order = %order.url, "v1 order issued");
            Ok(order.state.status)
        })
    }

    /// The chain: cached, else assembled from new-cert's answer, else
    /// downloaded from the certificate URL (following `Link: rel="up"`).
    fn download<'a>(
        &'a mut self,
        order: &'a OrderCore,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>> {
        Box::pin(async move {
            if let Some(chain) = &self.chain {
                return Ok(chain.clone());
            }
            let client = order.account.client();
            let chain = match self.issued.as_ref() {
                Some(new_cert::Issued {
                    leaf_der: Some(leaf),
                    up,
                    ..
                }) => new_cert::assemble_chain(client, url, leaf.clone(), up.clone()).await?,
                _ => new_cert::download_chain(client, url).await?,
            };
            self.chain = Some(chain.clone());
            Ok(chain)
        })
    }

    /// Once new-cert may have been sent, the synthesized status (from
    /// authorizations that may have expired since) says nothing about the
    /// certificate: the order is ready again, and the earlier attempts go
    /// to the new-cert guard, which asks the certificate finder and counts
    /// the budget before anything is repeated.
    fn resume_after_finalize(&mut self, order: &mut OrderCore, sent: Option<(SystemTime, u32)>) {
        if order.state.status != OrderStatus::Valid {
            order.state.status = OrderStatus::Ready;
        }
        if let Some((at, attempts)) = sent {
            for _ in 0..attempts.clamp(1, 64) {
                self.state
                    .new_certs
                    .note_unanswered(&order.state.identifiers, at);
            }
        }
    }

    /// The CA's own word (a problem document with a 4xx, not a proxy's
    /// page), or a refusal before sending, and no earlier new-cert for the
    /// set whose answer was lost.
    fn refusal_issued_nothing(&self, order: &OrderCore, error: &Error) -> bool {
        let refused = matches!(error, Error::RateLimitedLocally { .. })
            || matches!(error, Error::Problem { request, .. }
                if request.status.is_some_and(|s| (400..500).contains(&s) && s != 408));
        refused && !self.state.new_certs.has_unknown(&order.state.identifiers)
    }

    fn chain_in_hand(&self) -> Option<&CertificateChain> {
        self.chain.as_ref()
    }

    /// Every refresh reads the pending authorizations: an invalid one makes
    /// the order invalid.
    fn status_from_authorizations(&self) -> bool {
        true
    }
}

/// ACME v1 on the wire (see the module docs).
#[derive(Debug)]
pub(crate) struct V1Shape {
    new_cert_timeout: Option<Duration>,
}

/// The `resource` a v1 payload sent to `endpoint` carries (Boulder refused
/// a payload whose `resource` did not match the endpoint).
fn resource(endpoint: Endpoint) -> Option<&'static str> {
    Some(match endpoint {
        Endpoint::NewAccount => "new-reg",
        Endpoint::Account => "reg",
        Endpoint::NewOrder => "new-authz",
        Endpoint::Authorization => "authz",
        Endpoint::Challenge => "challenge",
        Endpoint::Finalize => "new-cert",
        Endpoint::Revoke => "revoke-cert",
        Endpoint::KeyChange => "key-change",
        _ => return None,
    })
}

impl WireShape for V1Shape {
    fn header(&self) -> JwsHeader {
        JwsHeader::JwkOnly
    }

    /// The caller's JSON object plus the endpoint's `resource`.
    fn payload<'a>(
        &self,
        endpoint: Endpoint,
        url: &str,
        payload: Option<&'a Value>,
    ) -> Result<Option<Cow<'a, Value>>> {
        let unsupported = |why: &str| {
            Error::Unsupported(format!(
                "ACME v1 {why} ({} {url}); v1 reads resources with a plain GET",
                endpoint.as_str()
            ))
        };
        let resource = resource(endpoint)
            .ok_or_else(|| unsupported("has no signed requests to this endpoint"))?;
        let mut object = match payload {
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(Error::InvalidInput(
                    "a v1 payload must be a JSON object".into(),
                ));
            }
            None => return Err(unsupported("has no POST-as-GET")),
        };
        object.insert("resource".into(), Value::from(resource));
        Ok(Some(Cow::Owned(Value::Object(object))))
    }

    fn nonce_from_request_url(&self) -> bool {
        true
    }

    fn post_timeout(&self, endpoint: Endpoint) -> Option<Duration> {
        (endpoint == Endpoint::Finalize)
            .then_some(self.new_cert_timeout)
            .flatten()
    }
}
