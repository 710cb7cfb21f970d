//! ACME v1's `new-cert`: issued synchronously, with no order to read back,
//! so every attempt is recorded before it is sent, a lost answer sends the
//! [`CertificateFinder`] looking before anything is repeated, and repeats
//! are bounded by the duplicate-certificate budget.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

use super::requests::invalid;
use super::{PKIX_CERT, V1State};
use crate::client::{Account, CertificateChain, Client};
use crate::crypto::b64;
use crate::crypto::jws::KeyId;
use crate::error::{Error, ErrorClass, RateLimitScope, RequestInfo, Result};
use crate::protocol::{Identifier, IdentifierSet};
use crate::transport::{Endpoint, Response, links};

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
/// [`ClientBuilder::certificate_finder`](crate::ClientBuilder::certificate_finder),
/// a finder is asked before any `new-cert` for the same identifiers is
/// repeated; what it finds is used if its leaf names exactly these
/// identifiers and has this public key, and no second `new-cert` is sent.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use sturdy_acme::{CertificateFinder, FindFuture, Identifier};
///
/// /// Looks certificates up in the operator's own archive (or CT logs).
/// struct Archive;
///
/// impl CertificateFinder for Archive {
///     fn find<'a>(&'a self, ids: &'a [Identifier], _spki: &'a [u8], _after: SystemTime) -> FindFuture<'a> {
///         Box::pin(async move {
///             let _ = ids; // search by names, match the key, return the PEM
///             Ok(None)
///         })
///     }
/// }
/// let _finder: std::sync::Arc<dyn CertificateFinder> = std::sync::Arc::new(Archive);
/// // ClientBuilder::certificate_finder(finder)
/// ```
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
pub(crate) struct NewCertAttempts {
    max: u32,
    window: Duration,
    /// Repeats allowed after an answer was lost and no finder found the
    /// certificate (default 0: never repeat blind).
    blind_repeats: u32,
    next: AtomicU64,
    sets: Mutex<HashMap<IdentifierSet, Vec<Attempt>>>,
}

fn names(ids: &[Identifier]) -> String {
    ids.iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl NewCertAttempts {
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
        let attempts = sets.entry(IdentifierSet::new(ids)).or_default();
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
    Ok((IdentifierSet::new(&ids).into_vec(), spki))
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
    let wanted: Vec<String> = IdentifierSet::new(ids)
        .values()
        .into_iter()
        .map(str::to_owned)
        .collect();
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
async fn find(v1: &V1State, ids: &[Identifier], spki: &[u8], since: SystemTime) -> Option<Issued> {
    let finder = &v1.finder.as_ref()?.0;
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
    v1: &V1State,
    csr_der: &[u8],
    ids: &[Identifier],
    spki: &[u8],
) -> Result<Issued> {
    let client = account.client();
    let url = v1.directory.new_cert.clone();
    let payload = json!({ "csr": b64(csr_der) });
    let ledger = &v1.new_certs;
    let transport = client.transport();
    let mut retrying = transport.retrying(Endpoint::Finalize, &url);
    loop {
        // Before any (re)send: a new-cert whose answer was lost may have
        // issued the certificate already.
        if let Some(since) = ledger.unknown_since(ids) {
            if let Some(found) = find(v1, ids, spki, since).await {
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
                        if v1.finder.is_some() {
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
                &mut retrying,
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
                    if let Some(found) = find(v1, ids, spki, since).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_sent_and_lost_not_refused() {
        let ledger = NewCertAttempts::new(2, Duration::from_secs(3600), 0);
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
