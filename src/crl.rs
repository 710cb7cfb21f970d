//! Revocation by CRL (RFC 5280 §5): since Let's Encrypt ended OCSP (2025)
//! a certificate names its revocation list in its CRL Distribution Points,
//! and a revocation the CA's renewal information does not show (a third
//! party's key-compromise report, a revocation for a reason of the CA's
//! own) is seen only there.
//!
//! The model: [`distribution_points`] reads where a certificate's list is;
//! a [`CrlCache`] fetches each list once per check with a conditional GET
//! (`If-None-Match` / `If-Modified-Since`; a `304` keeps the copy held) and
//! keeps it parsed; [`RevocationList::parse`] accepts a list only when it
//! is signed by the certificate's issuer, names that issuer, and (when it
//! says which shard it is, its Issuing Distribution Point) is the shard
//! that was asked for, so a list for other certificates or a forged one
//! cannot make a certificate look valid or revoked. A list that fails any
//! of these is [`Error::InvalidCrl`], never
//! retried as a network blip. The renewer checks its certificates through
//! it on a slow cadence ([`RenewerPolicy::with_crl_check_every`](crate::renewer::RenewerPolicy::with_crl_check_every)).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::Error> {
//! use std::sync::Arc;
//! use sturdy_acme::crl::{CrlCache, distribution_points};
//! use sturdy_acme::solver::http01::Http01Solver;
//! use sturdy_acme::store::FileStore;
//! use sturdy_acme::{CertificateChain, EnsureOptions, Issuer};
//! use sturdy_acme_testca::TestCa;
//!
//! let ca = TestCa::start().await?;
//! let dir = std::env::temp_dir().join(format!("sturdy-doc-crl-{}", std::process::id()));
//! let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
//!     .solver(Arc::new(Http01Solver::unserved()))
//!     .build();
//! let cert = issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?.certificate;
//! let chain = CertificateChain::parse_pem(&cert.url, &cert.chain_pem)?;
//! let url = distribution_points(chain.leaf_der()).remove(0);
//!
//! let cache = CrlCache::new();
//! let list = cache.fetch(issuer.client(), &url, &chain.certificates_der()[1]).await?;
//! assert!(list.revoked(&cert.serial).is_none());
//!
//! ca.revoke_quietly(&cert.serial, 1); // keyCompromise, reported elsewhere
//! let list = cache.fetch(issuer.client(), &url, &chain.certificates_der()[1]).await?;
//! assert_eq!(list.revoked(&cert.serial), Some(Some(1)));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};
use crate::{Client, Endpoint};

/// The URLs (`http` or `https`) a DER certificate names in its CRL
/// Distribution Points, in its order; none when it names none or cannot be
/// read.
pub fn distribution_points(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    urls.extend(uris(names));
                }
            }
        }
    }
    urls
}

/// The `http`/`https` URIs among `names`.
fn uris(names: &[GeneralName<'_>]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some((*u).to_owned())
            }
            _ => None,
        })
        .collect()
}

/// A revocation list read and verified: which serials its issuer revoked
/// and for what reason.
///
/// Example: the [module documentation](self).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RevocationList {
    /// Where it was fetched from.
    pub url: String,
    /// Its CRL number (hex), when it carries one: it grows with each list
    /// the CA publishes.
    pub number: Option<String>,
    /// When the CA made it (`thisUpdate`).
    pub this_update: SystemTime,
    /// When the CA promises the next one at the latest (`nextUpdate`).
    pub next_update: Option<SystemTime>,
    /// Revoked serials (lowercase hex without leading zeros, as
    /// [`StoredCertificate::serial`](crate::store::StoredCertificate::serial))
    /// with their reason code, if the entry gives one.
    revoked: HashMap<String, Option<u8>>,
}

impl RevocationList {
    /// Reads a DER revocation list fetched from `url`, for certificates
    /// issued by the DER certificate `issuer_der`. Refused
    /// ([`Error::InvalidCrl`]) unless it parses, names that issuer, is
    /// signed by its key, and, when it carries an Issuing Distribution
    /// Point with URIs, lists `url` among them (the shard asked for) and
    /// covers end-entity certificates.
    pub fn parse(der: &[u8], url: &str, issuer_der: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidCrl {
            url: url.to_owned(),
            reason,
        };
        let (_, issuer) = X509Certificate::from_der(issuer_der)
            .map_err(|e| invalid(format!("the issuer certificate does not parse: {e}")))?;
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| invalid(format!("not a DER revocation list: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the revocation list".into()));
        }
        if crl.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(invalid(format!(
                "issued by {}, not by the certificate's issuer {}",
                crl.issuer(),
                issuer.subject()
            )));
        }
        crl.verify_signature(issuer.public_key()).map_err(|e| {
            invalid(format!(
                "the signature does not verify under the issuer's key: {e}"
            ))
        })?;
        for ext in crl.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp) => {
                    if idp.only_contains_ca_certs || idp.only_contains_attribute_certs {
                        return Err(invalid("its scope excludes end-entity certificates".into()));
                    }
                    if let Some(DistributionPointName::FullName(names)) = &idp.distribution_point {
                        let named = uris(names);
                        if !named.is_empty() && !named.iter().any(|n| n == url) {
                            return Err(invalid(format!(
                                "it is the list of another shard ({})",
                                named.join(", ")
                            )));
                        }
                    }
                }
                ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                    return Err(invalid(format!(
                        "an unknown critical extension {}",
                        ext.oid
                    )));
                }
                _ => {}
            }
        }
        let revoked = crl
            .iter_revoked_certificates()
            .map(|entry| {
                let hex = entry.raw_serial_as_string().replace(':', "");
                let trimmed = hex.trim_start_matches('0');
                let serial = if trimmed.is_empty() { "0" } else { trimmed };
                (
                    serial.to_ascii_lowercase(),
                    entry.reason_code().map(|(_, r)| r.0),
                )
            })
            .collect();
        let time = |t: x509_parser::time::ASN1Time| {
            u64::try_from(t.timestamp())
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
                .unwrap_or(UNIX_EPOCH)
        };
        Ok(Self {
            url: url.to_owned(),
            number: crl.crl_number().map(|n| format!("{n:x}")),
            this_update: time(crl.last_update()),
            next_update: crl.next_update().map(time),
            revoked,
        })
    }

    /// Whether `serial` (hex, any case, leading zeros or not) is revoked:
    /// `Some(reason)` if it is, the reason code when the entry gives one.
    pub fn revoked(&self, serial: &str) -> Option<Option<u8>> {
        let lower = serial.to_ascii_lowercase();
        let trimmed = lower.trim_start_matches('0');
        let key = if trimmed.is_empty() { "0" } else { trimmed };
        self.revoked.get(key).copied()
    }

    /// How many certificates it lists.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

/// One list held, with what a conditional GET needs to ask whether it
/// changed.
#[derive(Debug)]
struct Held {
    list: Arc<RevocationList>,
    etag: Option<String>,
    last_modified: Option<String>,
    /// The issuer it was verified for (a different issuer asking for the
    /// same URL verifies again).
    issuer: Vec<u8>,
}

/// Revocation lists fetched and kept per URL, so each shard is fetched
/// once per check and only downloaded again when it changed (conditional
/// GET). Cheap to share (`&self` methods; clones share the lists).
///
/// Example: the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct CrlCache {
    held: Arc<Mutex<HashMap<String, Held>>>,
    stats: Arc<Mutex<CrlStats>>,
}

/// What a [`CrlCache`] did so far.
///
/// Example: the [module documentation](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrlStats {
    /// Lists downloaded (a `200` with a body).
    pub downloaded: u64,
    /// Conditional GETs answered `304 Not Modified`.
    pub not_modified: u64,
    /// Lists refused ([`Error::InvalidCrl`]).
    pub refused: u64,
}

impl CrlCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it did so far.
    pub fn stats(&self) -> CrlStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The list at `url` for certificates issued by `issuer_der`: asked
    /// with the validators of the copy held (a `304` keeps it), else
    /// downloaded and verified ([`RevocationList::parse`]). Requests go
    /// through `client`'s transport (its governor, retries and clock).
    pub async fn fetch(
        &self,
        client: &Client,
        url: &str,
        issuer_der: &[u8],
    ) -> Result<Arc<RevocationList>> {
        let (cached, validators) = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match held.get(url).filter(|h| h.issuer == issuer_der) {
                Some(h) => {
                    let mut v = Vec::new();
                    if let Some(e) = &h.etag {
                        v.push((http::header::IF_NONE_MATCH, e.clone()));
                    }
                    if let Some(m) = &h.last_modified {
                        v.push((http::header::IF_MODIFIED_SINCE, m.clone()));
                    }
                    (Some(Arc::clone(&h.list)), v)
                }
                None => (None, Vec::new()),
            }
        };
        let validators: Vec<(http::HeaderName, &str)> = validators
            .iter()
            .map(|(n, v)| (n.clone(), v.as_str()))
            .collect();
        let response = client
            .get_conditional(Endpoint::Crl, url, &validators)
            .await?;
        if response.status == 304 {
            let Some(list) = cached else {
                self.count(|s| s.refused += 1);
                return Err(Error::InvalidCrl {
                    url: url.to_owned(),
                    reason: "304 Not Modified to a request that held no copy".into(),
                });
            };
            self.count(|s| s.not_modified += 1);
            return Ok(list);
        }
        let list = match RevocationList::parse(&response.body, url, issuer_der) {
            Ok(list) => Arc::new(list),
            Err(e) => {
                self.count(|s| s.refused += 1);
                return Err(e);
            }
        };
        self.count(|s| s.downloaded += 1);
        tracing::debug!(target: "sturdy_acme::crl", url, entries = list.len(), number = ?list.number, "revocation list downloaded");
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(
            url.to_owned(),
            Held {
                list: Arc::clone(&list),
                etag: response.header("etag"),
                last_modified: response.header("last-modified"),
                issuer: issuer_der.to_vec(),
            },
        );
        Ok(list)
    }

    fn count(&self, f: impl FnOnce(&mut CrlStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
        CrlIssuingDistributionPoint, CrlScope, IsCa, Issuer, KeyIdMethod, KeyPair,
        RevocationReason, RevokedCertParams, SerialNumber,
    };

    struct Ca {
        der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn crl(by: &Ca, shard: Option<&str>, serials: &[(u8, Option<RevocationReason>)]) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(vec![1, 2]),
            issuing_distribution_point: shard.map(|u| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![u.to_owned()],
                },
                scope: Some(CrlScope::UserCertsOnly),
            }),
            revoked_certs: serials
                .iter()
                .map(|(s, reason)| RevokedCertParams {
                    serial_number: SerialNumber::from(vec![0, *s, 0xab]),
                    revocation_time: now,
                    reason_code: *reason,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&by.issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    const URL: &str = "http://crl.test/3.crl";

    #[test]
    fn reads_serials_and_reasons_of_a_list_signed_by_the_issuer() {
        let ca = ca("Issuing CA");
        let der = crl(
            &ca,
            Some(URL),
            &[(7, Some(RevocationReason::KeyCompromise)), (9, None)],
        );
        let list = RevocationList::parse(&der, URL, &ca.der).unwrap();
        assert_eq!(list.len(), 2);
        // Leading zeros and case do not matter.
        assert_eq!(list.revoked("7AB"), Some(Some(1)));
        assert_eq!(list.revoked("0007ab"), Some(Some(1)));
        assert_eq!(list.revoked("9ab"), Some(None));
        assert_eq!(list.revoked("8ab"), None);
        assert_eq!(list.number.as_deref(), Some("102"));
        assert!(list.next_update.unwrap() > list.this_update);
    }

    #[test]
    fn refuses_a_list_of_another_issuer_or_signer() {
        let ca1 = ca("Issuing CA");
        let other = ca("Other CA");
        // Another issuer's list.
        let der = crl(&other, Some(URL), &[(7, None)]);
        let e = RevocationList::parse(&der, URL, &ca1.der).unwrap_err();
        assert!(
            e.to_string().contains("not by the certificate's issuer"),
            "{e}"
        );
        // Same name, another key: a forgery.
        let forger = ca("Issuing CA");
        let der = crl(&forger, Some(URL), &[(7, None)]);
        let e = RevocationList::parse(&der, URL, &ca1.der).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
        assert_eq!(e.class(), crate::ErrorClass::Protocol);
    }

    #[test]
    fn refuses_another_shard_and_garbage() {
        let ca = ca("Issuing CA");
        let der = crl(&ca, Some("http://crl.test/4.crl"), &[]);
        let e = RevocationList::parse(&der, URL, &ca.der).unwrap_err();
        assert!(e.to_string().contains("another shard"), "{e}");
        // No IDP: a whole-CA list, accepted for any URL.
        let der = crl(&ca, None, &[]);
        assert!(
            RevocationList::parse(&der, URL, &ca.der)
                .unwrap()
                .is_empty()
        );
        for garbage in [&b""[..], b"\x30\x03\x02\x01", b"<html>busy</html>"] {
            let e = RevocationList::parse(garbage, URL, &ca.der).unwrap_err();
            assert!(matches!(e, Error::InvalidCrl { .. }), "{e}");
        }
        let mut der = crl(&ca, Some(URL), &[(1, None)]);
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(RevocationList::parse(&der, URL, &ca.der).is_err());
    }

    #[test]
    fn distribution_points_of_a_certificate() {
        let ca = ca("Issuing CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![URL.into(), "ldap://no.example".into()],
        }];
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        assert_eq!(distribution_points(cert.der()), vec![URL.to_owned()]);
        assert!(distribution_points(&ca.der).is_empty());
        assert!(distribution_points(b"garbage").is_empty());
    }
}
