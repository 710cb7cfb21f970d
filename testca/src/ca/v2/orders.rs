//! v2 orders: newOrder, the order URL, finalize, certificate download and
//! revokeCert.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::REVOCATION;
use crate::ca::identifiers::{check_count, check_identifiers};
use crate::ca::issuance::default_not_after;
use crate::ca::link;
use crate::ca::orders::FinalizeRefusal;
use crate::ca::revocation::{RevokeRefusal, Revoker, reason_code};
use crate::ca::state::State;
use crate::ca::{Answer, Ca, Config, boulder_serial, header, to_second};
use crate::codec::b64_decode;
use crate::jws::{self, Rejection, Signer};
use crate::pki;
use sturdy_acme::ProblemType;
use sturdy_acme::{Identifier, OrderResource, OrderStatus};

/// The identifiers of a newOrder payload, checked.
fn requested_identifiers(payload: &Value, config: &Config) -> Result<Vec<Identifier>, Rejection> {
    let list = payload
        .get("identifiers")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Rejection::malformed("NewOrder request did not specify any identifiers"))?;
    check_count(list.len())?;
    let ids = list
        .iter()
        .map(|entry| {
            serde_json::from_value(entry.clone())
                .map_err(|_| Rejection::malformed("invalid identifier"))
        })
        .collect::<Result<Vec<Identifier>, Rejection>>()?;
    check_identifiers(ids, config)
}

impl Ca {
    pub(super) fn new_order(&self, acct: usize, parsed: &jws::Parsed, config: &Config) -> Answer {
        let payload = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("newOrder needs a payload"))?;
        let ids = requested_identifiers(payload, config)?;
        let parse_time = |name: &str| -> Result<Option<OffsetDateTime>, Rejection> {
            match payload.get(name).and_then(Value::as_str) {
                None => Ok(None),
                // In UTC, as it goes into the certificate (a time near the
                // ends of the representable range may not have a UTC form).
                Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
                    .map(|t| Some(to_second(t)))
                    .ok_or_else(|| Rejection::malformed(format!("invalid {name}"))),
            }
        };
        let not_before = parse_time("notBefore")?;
        let not_after = parse_time("notAfter")?;
        if let (Some(nb), Some(na)) = (not_before, not_after)
            && na <= nb
        {
            return Err(Rejection::malformed("notAfter must be after notBefore"));
        }
        // The certificate must end somewhere: notBefore plus the lifetime
        // must still be a date (year 9999 at most).
        if let (Some(nb), None) = (not_before, not_after)
            && default_not_after(nb, config).is_none()
        {
            return Err(Rejection::malformed(
                "notBefore is too far in the future: the certificate would end after 9999",
            ));
        }
        let now = Instant::now();
        let mut state = self.state();
        let terms = state.order_terms(
            acct,
            &ids,
            payload,
            config,
            self.pki.issuer_key_id(),
            crate::ca::now(),
        )?;
        if let Err((rejection, wait)) =
            state.check_order_limits(acct, &ids, &config.rate_limits, now, terms.exemption)
        {
            drop(state);
            let mut response = self.problem_response(&rejection);
            response.headers.insert(
                "retry-after",
                header(&(wait.as_secs_f64().ceil() as u64).max(1).to_string()),
            );
            response.headers.append(
                "link",
                link("https://letsencrypt.org/docs/rate-limits", "help"),
            );
            return Ok(response);
        }
        // Boulder hands back an existing pending order for the same names
        // and profile (not to a request naming a certificate it replaces,
        // which the replacement checks above judged).
        let reused = if config.reuse_pending_orders && terms.replaces.is_none() {
            state.reusable_order(acct, &ids, terms.profile)
        } else {
            None
        };
        let id = match reused {
            Some(id) => id,
            _ => {
                let id = state.create_order(acct, ids, not_before, not_after, config, &self.rng);
                let order = &mut state.orders[id];
                order.exemption = terms.exemption;
                order.profile = terms.profile;
                if let (Some(cert), Some(text)) = (terms.replaces, terms.replaces_text) {
                    order.replaces = Some((cert, text));
                    state.ari.replaced_by.insert(cert, id);
                }
                id
            }
        };
        let body = self.order_resource(&state, id);
        drop(state);
        Ok(self.json_response(StatusCode::CREATED, &body, Some(&self.order_url(id))))
    }

    /// The order resource of order `id`.
    fn order_resource(&self, state: &State, id: usize) -> OrderResource {
        let o = &state.orders[id];
        OrderResource {
            status: o.status,
            expires: Some(o.expires),
            identifiers: o.identifiers.clone(),
            not_before: o.not_before,
            not_after: o.not_after,
            error: o.error.clone(),
            authorizations: o.authzs.iter().map(|a| self.authz_url(*a)).collect(),
            finalize: format!("{}/finalize", self.order_url(id)),
            certificate: match (o.status, o.cert) {
                (OrderStatus::Valid, Some(c)) => Some(self.cert_url(c)),
                _ => None,
            },
            extra: {
                let mut extra = serde_json::Map::new();
                if let Some((_, text)) = &o.replaces {
                    extra.insert("replaces".into(), Value::String(text.clone()));
                }
                if let Some(p) = &o.profile {
                    extra.insert("profile".into(), Value::String(p.name.into()));
                }
                extra
            },
        }
    }

    pub(super) fn order(&self, id: usize, acct: usize) -> Answer {
        let mut state = self.state();
        state.owned_order(id, acct)?;
        state.refresh_order(id);
        let body = self.order_resource(&state, id);
        let pending = matches!(body.status, OrderStatus::Pending | OrderStatus::Processing);
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.order_url(id))),
            pending,
        ))
    }

    /// The CAA check through the CA's DNS resolver for order `id`, before
    /// the state is locked: the refusal, if any.
    pub(super) async fn dns_caa(
        &self,
        id: usize,
        acct: usize,
        config: &Config,
    ) -> Option<Box<sturdy_acme::Problem>> {
        let (ids, used) = {
            let state = self.state();
            let order = state.orders.get(id)?;
            // The challenge type each authorization was validated with.
            let used: Vec<(String, String)> = order
                .authzs
                .iter()
                .filter_map(|a| state.authzs.get(*a))
                .filter_map(|authz| {
                    let kind = authz
                        .challenges
                        .iter()
                        .find(|c| c.status == sturdy_acme::ChallengeStatus::Valid)?
                        .kind
                        .to_string();
                    let name = if authz.wildcard {
                        format!("*.{}", authz.identifier.value)
                    } else {
                        authz.identifier.value.clone()
                    };
                    Some((name, kind))
                })
                .collect();
            (order.identifiers.clone(), used)
        };
        self.caa_through_dns(&ids, self.account_url(acct), &used, config)
            .await
    }

    pub(super) fn finalize(
        &self,
        id: usize,
        acct: usize,
        parsed: &jws::Parsed,
        config: &Config,
        dns_caa: Option<Box<sturdy_acme::Problem>>,
    ) -> Answer {
        let csr_b64 = parsed
            .payload
            .as_ref()
            .and_then(|p| p.get("csr"))
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection::malformed("finalize needs a csr"))?;
        let mut state = self.state();
        state.owned_order(id, acct)?;
        state.ready_for_finalization(id)?;
        let bad_csr = |d: String| Rejection::new(ProblemType::BadCsr, 400, d);
        let der = b64_decode(csr_b64).ok_or_else(|| bad_csr("CSR is not base64url".into()))?;
        let csr = pki::parse_csr(&der)
            .map_err(|e| bad_csr(format!("Error parsing certificate request: {e}")))?;
        match state.finalize_order(&self.pki, id, &csr, config, dns_caa) {
            Ok(()) => {}
            Err(FinalizeRefusal::Rejected(r)) => return Err(r),
            Err(FinalizeRefusal::Caa(problem)) => {
                drop(state);
                return Ok(self.problem_doc_response(403, &problem));
            }
        }
        let body = self.order_resource(&state, id);
        let processing = body.status == OrderStatus::Processing;
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.order_url(id))),
            processing,
        ))
    }

    pub(super) fn certificate(
        &self,
        id: usize,
        alt: bool,
        acct: usize,
        parsed: &jws::Parsed,
    ) -> Answer {
        if parsed.payload.is_some() {
            return Err(Rejection::malformed("certificate download is POST-as-GET"));
        }
        let state = self.state();
        let cert = state
            .certs
            .get(id)
            .ok_or_else(|| Rejection::new(ProblemType::Malformed, 404, "Certificate not found"))?;
        if cert.account != acct {
            return Err(Rejection::unauthorized(
                "Account does not own this certificate",
            ));
        }
        let body = match (alt, &cert.alternate_chain_pem) {
            (false, _) => cert.chain_pem.clone(),
            (true, Some(alt)) => alt.clone(),
            (true, None) => {
                return Err(Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "No alternate chain",
                ));
            }
        };
        let has_alt = cert.alternate_chain_pem.is_some();
        drop(state);
        let mut response = self.json_response(StatusCode::OK, &Value::Null, None);
        response.headers.insert(
            "content-type",
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        response.body = Bytes::from(body);
        if has_alt {
            let other = if alt {
                self.cert_url(id)
            } else {
                format!("{}/alt", self.cert_url(id))
            };
            response.headers.append("link", link(&other, "alternate"));
        }
        Ok(response)
    }

    pub(super) fn revoke(&self, parsed: &jws::Parsed, acct: Option<usize>) -> Answer {
        let payload = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("revokeCert needs a payload"))?;
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("revokeCert needs a base64url certificate"))?;
        let reason = match payload.get("reason") {
            None => Some(0),
            Some(r) => reason_code(r.as_u64()),
        }
        .ok_or_else(|| {
            Rejection::new(
                ProblemType::BadRevocationReason,
                400,
                "unsupported revocation reason code provided (0, 1, 3, 4, 5 are allowed)",
            )
        })?;
        let key = match &parsed.signer {
            Signer::Jwk(key) => Some(key),
            Signer::Kid(_) => None,
        };
        let by = Revoker { key, account: acct };
        self.state()
            .revoke(&der, reason, by, REVOCATION)
            .map_err(|refusal| match refusal {
                RevokeRefusal::NotFound => Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "Unable to find specified certificate",
                ),
                // Boulder's words, by how the request is signed.
                RevokeRefusal::NotAllowed { serial } => Rejection::unauthorized(match key {
                    Some(_) => "Unable to revoke :: JWK embedded in revocation request must be the same public key as the cert to be revoked".to_owned(),
                    None => format!(
                        "Unable to revoke :: requester does not control all identifiers in cert with serial {:?}",
                        boulder_serial(&serial)
                    ),
                }),
                RevokeRefusal::AlreadyRevoked => Rejection::new(
                    ProblemType::AlreadyRevoked,
                    400,
                    "Certificate already revoked",
                ),
            })?;
        let mut response = self.json_response(StatusCode::OK, &Value::Null, None);
        response.body = Bytes::new();
        response.headers.remove("content-type");
        Ok(response)
    }
}
