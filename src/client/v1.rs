//! ACME v1 (Boulder's `acme-v01`) behind the same [`Account`] / [`Order`] /
//! [`Authorization`](super::Authorization) types: registration, the
//! client-side order (one `new-authz` per identifier), `new-cert` with its
//! lost-response guard, the `Link: rel="up"` chain walk and key-change.
//!
//! The transport signs v1 requests (`{alg, jwk, nonce}`, `resource` added
//! to every payload); this module only decides what to send and reads
//! what comes back.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

use super::{Account, AccountOptions, CertificateChain, Client, NewOrder};
use crate::crypto::jws::{self, KeyId};
use crate::crypto::{AccountKey, b64};
use crate::error::{Error, ErrorClass, ProblemType, RateLimitScope, RequestInfo, Result};
use crate::protocol::v1::{self as wire, OrderRef};
use crate::protocol::{
    AccountResource, AuthorizationResource, AuthorizationStatus, Dialect, Identifier, OrderResource,
};
use crate::transport::{Endpoint, PKIX_CERT, Response, links};

/// What [`CertificateFinder::find`] returns.
pub type FindFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<String>>> + Send + 'a>>;

/// Finds a certificate an ACME v1 CA issued although the client never got
/// the answer (e.g. by searching Certificate Transparency logs).
///
/// v1's `new-cert` issues synchronously and has no order to read back: when
/// its answer is lost (timeout, reset, 5xx after the fact), the certificate
/// may exist, and repeating the request issues another one, each counting
/// against the CA's duplicate-certificate limit (Let's Encrypt: 5 per exact
/// set per week). Plugged in with
/// [`ClientBuilder::certificate_finder`](super::ClientBuilder::certificate_finder),
/// a finder is asked before any `new-cert` for the same identifiers is
/// repeated; what it finds is used if its leaf names exactly these
/// identifiers and has this public key, and no second `new-cert` is sent.
pub trait CertificateFinder: Send + Sync {
    /// Looks for a certificate for exactly `identifiers` (DNS names, sorted)
    /// whose SubjectPublicKeyInfo is `public_key_spki_der`, issued after
    /// `issued_after` (when the first unanswered `new-cert` was sent, less
    /// 10 minutes for clock skew; CAs backdate notBefore, Let's Encrypt by an
    /// hour, so compare with a log entry's timestamp, not with notBefore).
    ///
    /// Returns the PEM chain (leaf first) or the leaf alone, `None` when
    /// nothing was found. An error is logged and treated as `None`.
    fn find<'a>(
        &'a self,
        identifiers: &'a [Identifier],
        public_key_spki_der: &'a [u8],
        issued_after: SystemTime,
    ) -> FindFuture<'a>;
}

/// A finder that `Debug`s.
#[derive(Clone)]
pub(crate) struct Finder(pub(crate) Arc<dyn CertificateFinder>);

impl std::fmt::Debug for Finder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateFinder")
    }
}

/// The skew allowed between the client's clock and the CA's (or a log's).
const CLOCK_SKEW: Duration = Duration::from_secs(600);
/// The longest `Link: rel="up"` chain followed.
const MAX_CHAIN: usize = 10;

// ---------------------------------------------------------------------------
// The new-cert budget.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent, no answer yet.
    InFlight,
    /// The answer was lost: the certificate may exist.
    Unknown,
    /// Issued.
    Issued,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    id: u64,
    sent: SystemTime,
    outcome: Outcome,
}

/// Every ACME v1 new-cert a client sent, per exact identifier set, with
/// its outcome: the duplicate-certificate budget and the record of answers
/// that were lost.
#[derive(Debug)]
pub(crate) struct NewCertLedger {
    max: u32,
    window: Duration,
    /// Repeats allowed after an answer was lost and no finder found the
    /// certificate (default 0: never repeat blind).
    blind_repeats: u32,
    next: AtomicU64,
    sets: Mutex<HashMap<Vec<Identifier>, Vec<Attempt>>>,
}

fn set_key(ids: &[Identifier]) -> Vec<Identifier> {
    let mut v = ids.to_vec();
    v.sort();
    v.dedup();
    v
}

fn names(ids: &[Identifier]) -> String {
    ids.iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl NewCertLedger {
    pub(crate) fn new(max: u32, window: Duration, blind_repeats: u32) -> Self {
        Self {
            max,
            window,
            blind_repeats,
            next: AtomicU64::new(0),
            sets: Mutex::default(),
        }
    }

    fn with<T>(&self, ids: &[Identifier], f: impl FnOnce(&mut Vec<Attempt>) -> T) -> T {
        let now = SystemTime::now();
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let attempts = sets.entry(set_key(ids)).or_default();
        attempts.retain(|a| {
            now.duration_since(a.sent)
                .map_or(true, |age| age < self.window)
        });
        f(attempts)
    }

    /// Records a new-cert about to be sent, or refuses it when the set's
    /// budget is spent.
    fn begin(&self, ids: &[Identifier]) -> Result<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (max, window) = (self.max, self.window);
        self.with(ids, |attempts| {
            if attempts.len() as u64 >= u64::from(max) {
                let oldest = attempts
                    .iter()
                    .map(|a| a.sent)
                    .min()
                    .unwrap_or_else(SystemTime::now);
                let unknown = attempts
                    .iter()
                    .filter(|a| a.outcome == Outcome::Unknown)
                    .count();
                return Err(Error::RateLimitedLocally {
                    retry_at: oldest + window,
                    limit: "v1 new-cert budget (duplicate certificates per exact set)".into(),
                    scope: RateLimitScope::ExactSet,
                    reason: format!(
                        "{} new-cert requests for this set ({}) were sent in the window of {}h \
                         ({unknown} of them unanswered); a lost answer may mean the certificate \
                         exists; refusing to repeat into the CA's duplicate-certificate limit",
                        attempts.len(),
                        names(ids),
                        window.as_secs() / 3600,
                    ),
                });
            }
            attempts.push(Attempt {
                id,
                sent: SystemTime::now(),
                outcome: Outcome::InFlight,
            });
            Ok(id)
        })
    }

    /// Records a new-cert an earlier process sent at `sent` whose answer it
    /// never journalled (it crashed): the certificate may exist, so the
    /// finder is asked and the budget counts it before any repeat.
    pub(crate) fn note_unanswered(&self, ids: &[Identifier], sent: SystemTime) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.with(ids, |attempts| {
            attempts.push(Attempt {
                id,
                sent,
                outcome: Outcome::Unknown,
            })
        });
    }

    /// Settles attempt `id`: `None` when the CA refused it (nothing issued).
    fn settle(&self, ids: &[Identifier], id: u64, outcome: Option<Outcome>) {
        self.with(ids, |attempts| match outcome {
            None => attempts.retain(|a| a.id != id),
            Some(o) => {
                if let Some(a) = attempts.iter_mut().find(|a| a.id == id) {
                    a.outcome = o;
                }
            }
        });
    }

    /// When the earliest new-cert for this set whose answer was lost was sent.
    fn unknown_since(&self, ids: &[Identifier]) -> Option<SystemTime> {
        self.with(ids, |attempts| {
            attempts
                .iter()
                .filter(|a| a.outcome == Outcome::Unknown)
                .map(|a| a.sent)
                .min()
        })
    }

    /// True when a new-cert for this set may have issued a certificate the
    /// client never saw.
    pub(crate) fn has_unknown(&self, ids: &[Identifier]) -> bool {
        self.unknown_since(ids).is_some()
    }

    /// How many new-cert answers for this set were lost.
    fn unknown_count(&self, ids: &[Identifier]) -> usize {
        self.with(ids, |attempts| {
            attempts
                .iter()
                .filter(|a| a.outcome == Outcome::Unknown)
                .count()
        })
    }

    /// The certificate of a lost answer was found: the attempts are issued.
    fn resolve_unknown(&self, ids: &[Identifier]) {
        self.with(ids, |attempts| {
            for a in attempts
                .iter_mut()
                .filter(|a| a.outcome == Outcome::Unknown)
            {
                a.outcome = Outcome::Issued;
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Accounts.

fn invalid(response: &Response, reason: impl Into<String>) -> Error {
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
                Endpoint::NewAccount,
                &url,
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
pub(super) async fn change_key(account: &Account, new_key: &AccountKey) -> Result<()> {
    let client = account.client();
    let url = client.directory().key_change.clone();
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
        Dialect::V1,
    )?;
    let mut retrying = client.transport().retrying(Endpoint::KeyChange, &url);
    loop {
        match account
            .post_once(Endpoint::KeyChange, &url, Some(&inner))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                let unknown = e.class() == ErrorClass::Transient;
                retrying.pause_or_fail(e).await?;
                // Not idempotent: ask whether the new key owns the
                // registration already before sending it again.
                if unknown && key_owns(client, new_key, account.url()).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// True when `key` signs for the registration at `reg_url` (a query of it
/// succeeds; a key without a registration gets 403 `unauthorized`).
async fn key_owns(client: &Client, key: &AccountKey, reg_url: &str) -> Result<bool> {
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
    order: &NewOrder,
) -> Result<(OrderRef, Vec<AuthorizationResource>)> {
    let client = account.client();
    let url = client.directory().new_order.clone();
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
                .post_once(Endpoint::NewOrder, &url, Some(&payload))
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
                    client
                        .rate_gate()
                        .record(account.url(), order.identifiers(), &e);
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
    client: &Client,
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
        finalize: new_cert_url(client),
        certificate: reference.certificate.clone(),
        extra,
    }
}

pub(super) fn new_cert_url(client: &Client) -> String {
    client
        .directory()
        .extra
        .get("new-cert")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------
// new-cert.

/// What new-cert produced: the certificate URL, the DER leaf (None if the
/// CA answered without it) and the issuer link; or, found by the
/// [`CertificateFinder`], the whole chain.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub(super) url: String,
    pub(super) leaf_der: Option<Vec<u8>>,
    pub(super) up: Option<String>,
    pub(super) chain: Option<CertificateChain>,
}

/// The identifiers and public key (SPKI DER) a CSR asks for.
pub(super) fn csr_contents(der: &[u8]) -> Result<(Vec<Identifier>, Vec<u8>)> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::InvalidInput(format!("CSR is not valid DER: {e}")))?;
    let info = &csr.certification_request_info;
    let spki = info.subject_pki.raw.to_vec();
    let mut ids = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => ids.push(Identifier::dns(n)?),
                    other => {
                        return Err(Error::Unsupported(format!(
                            "ACME v1 has only DNS identifiers; the CSR asks for {other:?}"
                        )));
                    }
                }
            }
        }
    }
    if ids.is_empty()
        && let Some(cn) = info.subject.iter_common_name().next()
        && let Ok(cn) = cn.as_str()
    {
        ids.push(Identifier::dns(cn)?);
    }
    if ids.is_empty() {
        return Err(Error::InvalidInput("the CSR names no DNS name".into()));
    }
    Ok((set_key(&ids), spki))
}

/// Checks that `leaf_der` names exactly `ids` and has the key `spki`.
fn leaf_matches(
    leaf_der: &[u8],
    ids: &[Identifier],
    spki: &[u8],
) -> std::result::Result<(), String> {
    let (_, cert) = X509Certificate::from_der(leaf_der).map_err(|e| format!("not X.509: {e}"))?;
    if cert.public_key().raw != spki {
        return Err("its public key is not the CSR's".into());
    }
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    let wanted: Vec<String> = set_key(ids).into_iter().map(|i| i.value).collect();
    if names != wanted {
        return Err(format!("it names {names:?}, not {wanted:?}"));
    }
    Ok(())
}

/// A certificate body: DER (`application/pkix-cert`), or PEM from a CA
/// that sends that instead.
fn certificate_der(response: &Response) -> Result<Vec<u8>> {
    let der = if response.body.starts_with(b"-----BEGIN") {
        pem::parse(&response.body)
            .map(pem::Pem::into_contents)
            .map_err(|e| invalid(response, format!("certificate PEM: {e}")))?
    } else {
        response.body.to_vec()
    };
    X509Certificate::from_der(&der)
        .map_err(|e| invalid(response, format!("certificate is not X.509 DER: {e}")))?;
    Ok(der)
}

/// Asks the finder for the certificate of a lost new-cert answer.
async fn find(
    client: &Client,
    ids: &[Identifier],
    spki: &[u8],
    since: SystemTime,
) -> Option<Issued> {
    let finder = client.certificate_finder()?;
    let after = since.checked_sub(CLOCK_SKEW).unwrap_or(since);
    let pem = match finder.find(ids, spki, after).await {
        Ok(Some(pem)) => pem,
        Ok(None) => {
            tracing::info!(set = %names(ids), "certificate finder found nothing");
            return None;
        }
        Err(e) => {
            tracing::warn!(set = %names(ids), error = %e, "certificate finder failed");
            return None;
        }
    };
    let chain = match CertificateChain::from_pem("", &pem, Vec::new()) {
        Ok(chain) => chain,
        Err(e) => {
            tracing::warn!(set = %names(ids), error = %e, "certificate finder returned no usable PEM");
            return None;
        }
    };
    if let Err(why) = leaf_matches(chain.leaf_der(), ids, spki) {
        tracing::warn!(set = %names(ids), %why, "certificate finder's certificate does not match the CSR");
        return None;
    }
    let serial = chain.serial_hex().unwrap_or_default();
    let url = format!("{FOUND_URN_PREFIX}{serial}");
    tracing::info!(set = %names(ids), %serial, "the lost new-cert answer's certificate was found: not repeating new-cert");
    Some(Issued {
        chain: Some(chain.with_url(&url)),
        url,
        leaf_der: None,
        up: None,
    })
}

/// The "URL" of a certificate found by a [`CertificateFinder`]: the CA
/// never told its real one.
pub(super) const FOUND_URN_PREFIX: &str = "urn:sturdy-acme:v1-found-certificate:";

/// new-cert for a CSR naming `ids` with public key `spki`, guarded against
/// the lost-response trap: an earlier unanswered new-cert for the same set
/// sends the [`CertificateFinder`] looking first; every attempt is recorded
/// before it is sent; attempts past the budget are refused.
pub(super) async fn new_cert(
    account: &Account,
    csr_der: &[u8],
    ids: &[Identifier],
    spki: &[u8],
) -> Result<Issued> {
    let client = account.client();
    let url = new_cert_url(client);
    let payload = json!({ "csr": b64(csr_der) });
    let ledger = client.new_certs();
    let transport = client.transport();
    let mut retrying = transport.retrying(Endpoint::Finalize, &url);
    loop {
        // Before any (re)send: a new-cert whose answer was lost may have
        // issued the certificate already.
        if let Some(since) = ledger.unknown_since(ids) {
            if let Some(found) = find(client, ids, spki, since).await {
                ledger.resolve_unknown(ids);
                return Ok(found);
            }
            let lost = ledger.unknown_count(ids);
            if lost > ledger.blind_repeats as usize {
                return Err(Error::OutcomeUnknown {
                    url: url.clone(),
                    reason: format!(
                        "{lost} new-cert request(s) for {} got no answer, so the CA may have issued \
                         the certificate; {}, and repeating blind could issue a \
                         duplicate: not sent again (ClientBuilder::certificate_finder can look \
                         the certificate up; ClientBuilder::new_cert_blind_repeats allows \
                         repeats, {} now)",
                        names(ids),
                        if client.certificate_finder().is_some() {
                            "the certificate finder found nothing"
                        } else {
                            "no certificate finder is configured"
                        },
                        ledger.blind_repeats,
                    ),
                });
            }
        }
        let attempt = ledger.begin(ids)?;
        let result = transport
            .post_once(
                Endpoint::Finalize,
                &url,
                account.key(),
                KeyId::Jwk,
                Some(&payload),
                Some(PKIX_CERT),
            )
            .await;
        match result {
            // Answered with success: the certificate was issued, whatever
            // the body looks like. It is never requested again.
            Ok(response) => {
                ledger.settle(ids, attempt, Some(Outcome::Issued));
                let issued = issued_from_answer(&response)?;
                tracing::info!(certificate = %issued.url, set = %names(ids), "v1 certificate issued");
                return Ok(issued);
            }
            // A success status was seen but the body broke off: issued.
            Err(e) if e.status().is_some_and(|s| (200..300).contains(&s)) => {
                ledger.settle(ids, attempt, Some(Outcome::Issued));
                return Err(Error::ProtocolViolation {
                    url: url.clone(),
                    reason: format!(
                        "new-cert for {} was answered with success (the certificate was issued), \
                         but the answer broke off ({e}); it is not requested again: find it in \
                         the CA's logs or CT",
                        names(ids)
                    ),
                });
            }
            // Never sent (the connection was not made): safe to repeat.
            Err(e) if e.is_not_sent() => {
                ledger.settle(ids, attempt, None);
                retrying.pause_or_fail(e).await?;
            }
            Err(e) if e.class() == ErrorClass::Transient && e.status().is_none_or(|s| s >= 500) => {
                // Sent, and the answer was lost (timeout, reset) or the CA
                // failed after the fact: the outcome is unknown. The top of
                // the loop decides (finder, or the blind-repeat allowance).
                ledger.settle(ids, attempt, Some(Outcome::Unknown));
                tracing::warn!(
                    set = %names(ids),
                    error = %e,
                    "the answer to new-cert was lost: the certificate may have been issued"
                );
                if let Err(e) = retrying.pause_or_fail(e).await {
                    let since = ledger.unknown_since(ids).unwrap_or_else(SystemTime::now);
                    if let Some(found) = find(client, ids, spki, since).await {
                        ledger.resolve_unknown(ids);
                        return Ok(found);
                    }
                    return Err(e);
                }
            }
            Err(e) => {
                // The CA answered with an error: nothing was issued.
                ledger.settle(ids, attempt, None);
                retrying.pause_or_fail(e).await?;
            }
        }
    }
}

/// What a successful new-cert answer yields. The certificate exists: a body
/// that is not a certificate is fetched again from `Location`; without a
/// `Location` either, the error says it was issued.
fn issued_from_answer(response: &Response) -> Result<Issued> {
    let url = response.location().map_err(|e| Error::ProtocolViolation {
        url: response.url.clone(),
        reason: format!(
            "new-cert answered {} (the certificate was issued) without a usable Location ({e}); \
             it is not requested again: find it in the CA's logs or CT",
            response.status
        ),
    })?;
    let leaf_der = if response.body.is_empty() {
        None
    } else {
        match certificate_der(response) {
            Ok(der) => Some(der),
            Err(e) => {
                tracing::warn!(certificate = %url, error = %e, "new-cert answered with a broken certificate body; downloading it from its URL");
                None
            }
        }
    };
    Ok(Issued {
        url,
        leaf_der,
        up: links(&response.headers, "up").into_iter().next(),
        chain: None,
    })
}

/// Follows `Link: rel="up"` from `leaf` (bounded) and builds the chain.
pub(super) async fn assemble_chain(
    client: &Client,
    url: &str,
    leaf: Vec<u8>,
    mut up: Option<String>,
) -> Result<CertificateChain> {
    let mut der = vec![leaf];
    let mut seen = vec![url.to_owned()];
    while let Some(next) = up.take() {
        if der.len() > MAX_CHAIN || seen.contains(&next) {
            tracing::warn!(url = %next, "certificate chain too long or looping; stopping");
            break;
        }
        let (issuer, response) = client
            .transport()
            .get_parsed(
                Endpoint::Certificate,
                &next,
                Some(PKIX_CERT),
                certificate_der,
            )
            .await?;
        der.push(issuer);
        up = links(&response.headers, "up").into_iter().next();
        seen.push(next);
    }
    CertificateChain::from_der(url, der).map_err(|reason| Error::InvalidResponse {
        request: Box::new(RequestInfo {
            method: "GET",
            url: url.to_owned(),
            status: None,
            retry_after: None,
        }),
        reason,
    })
}

/// GETs a v1 certificate URL (DER leaf) and its issuers.
pub(super) async fn download_chain(client: &Client, url: &str) -> Result<CertificateChain> {
    if url.starts_with(FOUND_URN_PREFIX) {
        return Err(Error::Unsupported(format!(
            "{url} was found by the CertificateFinder after a lost new-cert answer; \
             the CA never told its URL, so it cannot be downloaded again"
        )));
    }
    let (leaf, response) = client
        .transport()
        .get_parsed(Endpoint::Certificate, url, Some(PKIX_CERT), certificate_der)
        .await?;
    let up = links(&response.headers, "up").into_iter().next();
    assemble_chain(client, url, leaf, up).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_sent_and_lost_not_refused() {
        let ledger = NewCertLedger::new(2, Duration::from_secs(3600), 0);
        let ids = vec![Identifier::dns("a.example").unwrap()];
        let a = ledger.begin(&ids).unwrap();
        ledger.settle(&ids, a, None);
        let b = ledger.begin(&ids).unwrap();
        ledger.settle(&ids, b, Some(Outcome::Unknown));
        assert!(ledger.unknown_since(&ids).is_some());
        let c = ledger.begin(&ids).unwrap();
        ledger.settle(&ids, c, Some(Outcome::Issued));
        let err = ledger.begin(&ids).unwrap_err();
        match &err {
            Error::RateLimitedLocally { scope, reason, .. } => {
                assert_eq!(*scope, RateLimitScope::ExactSet);
                assert!(reason.contains("2 new-cert requests"), "{reason}");
                assert!(reason.contains("a.example"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Another set has its own budget.
        let other = vec![Identifier::dns("b.example").unwrap()];
        ledger.begin(&other).unwrap();
        ledger.resolve_unknown(&ids);
        assert!(ledger.unknown_since(&ids).is_none());
    }
}
