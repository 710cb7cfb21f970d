//! RFC 8555 (ACME v2): the dialect every current CA speaks.

use crate::wait::Wait;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{BoxFuture, DialectImpl, OrderWire, Selected, sorted_keys};
use crate::client::order::{OrderCore, download, invalid_error};
use crate::client::{
    Account, AccountOptions, CertificateChain, Challenge, Client, NewOrder, Order,
};
use crate::crypto::jws::{self, JwsHeader, KeyId};
use crate::crypto::{AccountKey, Csr, b64};
use crate::error::{Error, ErrorClass, ProblemType, Result};
use crate::protocol::{
    AccountResource, AuthorizationResource, ChallengeResource, Dialect, OrderResource, OrderStatus,
    v2,
};
use crate::transport::{Endpoint, Response};

/// The v2 directory keys a client needs.
pub(crate) const DIRECTORY_KEYS: [&str; 3] = ["newNonce", "newAccount", "newOrder"];

/// RFC 8555.
#[derive(Debug)]
pub(crate) struct V2;

impl V2 {
    /// Parses a v2 directory.
    pub(crate) fn select(value: Value) -> std::result::Result<Selected, String> {
        let obj = value.as_object().expect("checked by the caller");
        for key in DIRECTORY_KEYS {
            if !obj.contains_key(key) {
                return Err(format!(
                    "not an ACME v2 directory: no {key:?}; found keys {:?}",
                    sorted_keys(obj)
                ));
            }
        }
        let directory: crate::protocol::Directory =
            serde_json::from_value(value).map_err(|e| format!("malformed directory: {e}"))?;
        Ok(Selected {
            dialect: Arc::new(V2),
            directory,
            shape: None,
        })
    }
}

impl DialectImpl for V2 {
    fn dialect(&self) -> Dialect {
        Dialect::V2
    }

    fn create_account<'a>(
        &'a self,
        client: Client,
        key: AccountKey,
        options: &'a AccountOptions,
    ) -> BoxFuture<'a, Result<Account>> {
        Box::pin(async move {
            let directory = client.directory();
            if directory.meta.external_account_required && options.external_account.is_none() {
                return Err(Error::InvalidInput(
                    "this CA requires an external account binding (EAB key id and HMAC key)".into(),
                ));
            }
            let payload = v2::NewAccount {
                contact: &options.contact,
                terms_of_service_agreed: options.terms_of_service_agreed,
                only_return_existing: false,
                external_account_binding: options
                    .external_account
                    .as_ref()
                    .map(|eab| eab.binding(&key, &directory.new_account)),
            };
            new_account_request(client, key, &payload).await
        })
    }

    fn find_account(&self, client: Client, key: AccountKey) -> BoxFuture<'_, Result<Account>> {
        Box::pin(async move {
            let payload = v2::NewAccount {
                only_return_existing: true,
                ..Default::default()
            };
            new_account_request(client, key, &payload).await
        })
    }

    fn post_account<'a>(
        &'a self,
        account: &'a Account,
        payload: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<AccountResource>> {
        Box::pin(async move {
            let resource: AccountResource = account
                .post_json(Endpoint::Account, account.url(), payload)
                .await?
                .0;
            account.remember(&resource);
            Ok(resource)
        })
    }

    fn key_change(&self, account: &Account, new_key: &AccountKey) -> Result<(String, Value)> {
        let url = account.client().directory().key_change.clone();
        let inner_payload = serde_json::to_value(v2::KeyChange {
            account: account.url(),
            old_key: account.key().jwk(),
        })
        .expect("payload serializes");
        let inner = jws::sign(
            new_key,
            KeyId::Jwk,
            None,
            &url,
            Some(&inner_payload),
            JwsHeader::Rfc8555,
        )?;
        Ok((url, inner))
    }

    /// onlyReturnExisting with `key` finds this account.
    fn key_owns_account<'a>(
        &'a self,
        account: &'a Account,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(key_owns_account(account, key))
    }

    fn new_order<'a>(
        &'a self,
        account: &'a Account,
        order: &'a NewOrder,
    ) -> BoxFuture<'a, Result<Order>> {
        Box::pin(new_order(account, order))
    }

    fn load_order<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Order>> {
        Box::pin(async move {
            let state: OrderResource = account.post_json(Endpoint::Order, url, None).await?.0;
            Ok(order(account.clone(), url.to_owned(), state))
        })
    }

    fn download_chain<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>> {
        Box::pin(download(account, url))
    }

    fn order_urls<'a>(
        &'a self,
        account: &'a Account,
        max_pages: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut next = match account.resource() {
                Some(r) => r.orders,
                None => account.refresh().await?.orders,
            };
            let mut urls = Vec::new();
            let mut pages = 0;
            while let Some(url) = next.take() {
                if pages >= max_pages {
                    break;
                }
                pages += 1;
                #[derive(serde::Deserialize)]
                struct OrdersList {
                    orders: Vec<String>,
                }
                let (list, response): (OrdersList, _) =
                    account.post_json(Endpoint::Orders, &url, None).await?;
                urls.extend(list.orders);
                next = crate::transport::links(&response.headers, "next")
                    .into_iter()
                    .next();
            }
            Ok(urls)
        })
    }

    fn read_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<(AuthorizationResource, Response)>> {
        Box::pin(account.post_json(Endpoint::Authorization, url, None))
    }

    fn deactivate_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationResource>> {
        Box::pin(async move {
            let payload = json!({"status": "deactivated"});
            Ok(account
                .post_json(Endpoint::Authorization, url, Some(&payload))
                .await?
                .0)
        })
    }

    fn challenge_answer(&self, _: &Challenge) -> Result<Value> {
        Ok(json!({}))
    }

    fn parse_challenge(&self, response: &Response) -> Result<ChallengeResource> {
        response.json()
    }

    fn read_challenge<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<ChallengeResource>> {
        Box::pin(async move { Ok(account.post_json(Endpoint::Challenge, url, None).await?.0) })
    }
}

/// An RFC 8555 order made from the CA's order object.
pub(crate) fn order(account: Account, url: String, state: OrderResource) -> Order {
    Order::from_parts(OrderCore::new(account, url, state), Box::new(V2Order))
}

async fn new_account_request(
    client: Client,
    key: AccountKey,
    payload: &v2::NewAccount<'_>,
) -> Result<Account> {
    let payload = serde_json::to_value(payload).expect("payload serializes");
    let url = client.directory().new_account.clone();
    // newAccount is idempotent for a key (a repeat finds the account),
    // so broken answers are retried like lost ones.
    let ((account_url, resource), response) = client
        .transport()
        .post_parsed(
            Endpoint::NewAccount,
            &url,
            &key,
            KeyId::Jwk,
            Some(&payload),
            None,
            |r| Ok((r.location()?, account_body(r)?)),
        )
        .await?;
    tracing::info!(account = %account_url, created = response.status == 201, "ACME account");
    let account = Account::from_parts(client, Arc::new(key), account_url, resource);
    if account.resource().is_none() {
        // The account is at `Location` (the CA's word on whose it is); its
        // object is read from there.
        tracing::info!(
            account = %account.url(),
            status = response.status,
            "the CA's newAccount answer is not the account object; reading the account"
        );
        account.refresh().await?;
    }
    Ok(account)
}

/// The account object in a newAccount answer: `None` when the body is
/// not one (empty, as some CAs answer a known key, or a JSON object
/// without the `status` every account has, as acme2certifier's `{}`);
/// anything else that does not parse is refused (a protocol error).
fn account_body(response: &Response) -> Result<Option<AccountResource>> {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(fields)) if !fields.contains_key("status") => Ok(None),
        _ => response.json().map(Some),
    }
}

/// True when `key` already finds this account (onlyReturnExisting).
async fn key_owns_account(account: &Account, key: &AccountKey) -> Result<bool> {
    let payload = serde_json::to_value(v2::NewAccount {
        only_return_existing: true,
        ..Default::default()
    })
    .expect("payload serializes");
    let client = account.client();
    let url = client.directory().new_account.clone();
    match client
        .transport()
        .post(
            Endpoint::NewAccount,
            &url,
            key,
            KeyId::Jwk,
            Some(&payload),
            None,
        )
        .await
    {
        Ok(r) => Ok(r.location().ok().as_deref() == Some(account.url())),
        Err(e) if e.problem_type() == Some(&ProblemType::AccountDoesNotExist) => Ok(false),
        Err(e) => Err(e),
    }
}

/// newOrder. Not idempotent: after an answer that was lost (or broken: no
/// Location, not an order) the order may exist, so before repeating it is
/// looked for in the account's orders list.
async fn new_order(account: &Account, order: &NewOrder) -> Result<Order> {
    let client = account.client();
    // An ARI renewal is exempt from the CA's limits (Let's Encrypt), so an
    // earlier 429 does not stop it; the CA decides whether it is one.
    if order.replaces().is_none() {
        client
            .transport()
            .waits()
            .check_new_order(account.url(), order.identifiers())?;
    }
    let payload = order.payload()?;
    let url = client.directory().new_order.clone();
    let mut retrying = client.transport().retrying(Endpoint::NewOrder, &url);
    let mut sent = 0u32;
    let (order_url, state) = loop {
        let result = account.post_once(&mut retrying, Some(&payload)).await;
        let unknown = match &result {
            Err(e) => !e.is_not_sent() && e.class() == ErrorClass::Transient,
            Ok(_) => true,
        };
        if !result.as_ref().is_err_and(Error::is_not_sent) {
            sent += 1;
        }
        let result = result.and_then(|r| Ok((r.location()?, r.json::<OrderResource>()?)));
        match result {
            Ok(created) => break created,
            Err(e) => {
                if let Some(wait) = Wait::of(&e, client.clock().now()) {
                    client
                        .transport()
                        .waits()
                        .hold(account.url(), order.identifiers(), &wait);
                }
                if unknown
                    && let Some(mut found) = account
                        .find_pending_order(order, crate::client::account::LOST_ANSWER_PAGES)
                        .await
                {
                    tracing::info!(order = %found.url(), "the lost newOrder answer's order was found in the account's orders list; not sending newOrder again");
                    found.new_order_requests = sent;
                    return Ok(found);
                }
                retrying.pause_or_fail(e).await.map_err(|e| match e {
                    Error::GaveUp {
                        elapsed, source, ..
                    } => Error::GaveUp {
                        attempts: sent,
                        elapsed,
                        source,
                    },
                    other => other,
                })?;
                // Sent once more only if the issuer's ledger allows one
                // more newOrder now (the CA counts each one it receives;
                // the first was reserved before it was sent).
                if sent > 0 {
                    order.allow_repeat().await?;
                }
            }
        }
    };
    tracing::info!(order = %order_url, status = state.status.as_str(), "order created");
    let mut created = self::order(account.clone(), order_url, state);
    created.new_order_requests = sent;
    Ok(created)
}

/// An RFC 8555 order: everything is in the CA's order object.
#[derive(Debug, Clone)]
struct V2Order;

impl OrderWire for V2Order {
    fn clone_box(&self) -> Box<dyn OrderWire> {
        Box::new(self.clone())
    }

    fn refresh<'a>(&'a mut self, order: &'a mut OrderCore) -> BoxFuture<'a, Result<()>> {
        Box::pin(refresh(order))
    }

    fn finalize<'a>(
        &'a mut self,
        order: &'a mut OrderCore,
        _csr: Csr<'a>,
        der: Vec<u8>,
    ) -> BoxFuture<'a, Result<OrderStatus>> {
        Box::pin(finalize(order, der))
    }

    fn download<'a>(
        &'a mut self,
        order: &'a OrderCore,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>> {
        Box::pin(download(&order.account, url))
    }
}

/// Fetches the order (POST-as-GET).
async fn refresh(order: &mut OrderCore) -> Result<()> {
    let (state, response) = order
        .account
        .post_json(Endpoint::Order, &order.url, None)
        .await?;
    order.state = state;
    order.last_retry_after = response.retry_after();
    Ok(())
}

/// Finalize is not idempotent (a second one answers orderNotReady): when
/// the outcome is unknown, the order is read and the CA's word decides.
async fn finalize(order: &mut OrderCore, der: Vec<u8>) -> Result<OrderStatus> {
    let payload = serde_json::to_value(v2::Finalize { csr: b64(&der) }).expect("serializes");
    let url = order.state.finalize.clone();
    let client = order.account.client().clone();
    let mut retrying = client.transport().retrying(Endpoint::Finalize, &url);
    loop {
        let result = order
            .account
            .post_once(&mut retrying, Some(&payload))
            .await
            .and_then(|r| Ok((r.json::<OrderResource>()?, r.retry_after())));
        match result {
            Ok((state, retry_after)) => {
                order.state = state;
                order.last_retry_after = retry_after;
                if matches!(
                    order.state.status,
                    OrderStatus::Ready | OrderStatus::Pending
                ) {
                    // Sending finalize again would loop for as long as
                    // the CA keeps answering so.
                    return Err(Error::ProtocolViolation {
                        url: url.clone(),
                        reason: format!(
                            "finalize of {} answered with status {} (expected processing or valid)",
                            order.url,
                            order.state.status.as_str()
                        ),
                    });
                }
                tracing::info!(order = %order.url, status = order.state.status.as_str(), "order finalized");
                return Ok(order.state.status);
            }
            Err(e) => {
                // A CAA recheck that failed at finalize fails the order at
                // Let's Encrypt (since 2026): sending finalize again after
                // the CAA wait would only be refused. Read the order first;
                // an invalid one ends here with the CA's caa problem (the
                // issuer supersedes it on its next attempt).
                if matches!(e.class(), ErrorClass::Caa { .. }) {
                    refresh(order).await?;
                    if order.state.status == OrderStatus::Invalid {
                        tracing::warn!(order = %order.url, error = %e, "the CAA recheck at finalize failed the order");
                        return Err(e);
                    }
                }
                // A success answer that is not an order: the CA took the
                // request, its order says what came of it (never a repeat).
                let unusable = if e.is_unusable_answer() {
                    Some(e)
                } else {
                    let unknown = e.class() == ErrorClass::Transient;
                    retrying.pause_or_fail(e).await?;
                    if !unknown {
                        continue;
                    }
                    None
                };
                {
                    refresh(order).await?;
                    match order.state.status {
                        OrderStatus::Ready => {
                            if let Some(e) = unusable {
                                // It said yes and its order says no.
                                return Err(e);
                            }
                            tracing::info!(order = %order.url, "finalize did not take effect; sending it again");
                        }
                        OrderStatus::Processing | OrderStatus::Valid => {
                            tracing::info!(
                                order = %order.url,
                                status = order.state.status.as_str(),
                                "finalize had taken effect although its response was lost"
                            );
                            return Ok(order.state.status);
                        }
                        OrderStatus::Invalid => return Err(invalid_error(order).await),
                        OrderStatus::Pending => {
                            return Err(Error::InvalidInput(format!(
                                "order {} went back to pending during finalize",
                                order.url
                            )));
                        }
                    }
                }
            }
        }
    }
}
