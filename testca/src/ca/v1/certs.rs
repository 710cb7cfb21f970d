//! v1 certificates: new-cert (issuance on valid authorizations), the
//! certificate URLs and revoke-cert.

use http::StatusCode;
use serde_json::Value;

use super::{MUST_AGREE, PKIX_CERT, REVOCATION};
use crate::ca::identifiers::MAX_IDENTIFIERS;
use crate::ca::issuance::check_csr_key;
use crate::ca::revocation::{RevokeRefusal, Revoker, reason_code};
use crate::ca::{Answer, Ca, Config, header, now_utc};
use crate::codec::b64_decode;
use crate::jws::{PublicJwk, Rejection};
use crate::pki;
use sturdy_acme::AuthorizationStatus;
use sturdy_acme::{Problem, ProblemType};

impl Ca {
    /// `{"resource":"new-cert","csr":...}`: synchronous issuance, 201 with
    /// the DER leaf.
    pub(super) fn v1_new_cert(
        &self,
        acct: usize,
        payload: &Value,
        config: &Config,
        dns_caa: Option<Box<Problem>>,
    ) -> Answer {
        self.v1_require_agreement(acct, MUST_AGREE)?;
        const PREFIX: &str = "Error creating new cert :: ";
        let der = payload
            .get("csr")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("Error unmarshaling certificate request"))?;
        let csr = pki::parse_csr(&der)
            .map_err(|e| Rejection::malformed(format!("Error parsing certificate request: {e}")))?;
        check_csr_key(&csr.key).map_err(|e| {
            Rejection::malformed(format!("Invalid key in certificate request :: {e}"))
        })?;
        if csr.identifiers.iter().any(|i| i.kind != "dns") {
            return Err(Rejection::new(
                ProblemType::BadCsr,
                400,
                format!("{PREFIX}CSR contains one or more IP address fields"),
            ));
        }
        if csr.identifiers.len() > MAX_IDENTIFIERS {
            return Err(Rejection::malformed(format!(
                "{PREFIX}CSR contains more than {MAX_IDENTIFIERS} DNS names"
            )));
        }
        let mut state = self.state();
        if state.accounts[acct].key.matches_spki(&csr.public_key_der) {
            return Err(Rejection::malformed(format!(
                "{PREFIX}certificate public key must be different than account key"
            )));
        }
        let utc = now_utc();
        let missing: Vec<&str> = csr
            .identifiers
            .iter()
            .filter(|id| {
                state
                    .find_authz(acct, id, false, AuthorizationStatus::Valid, utc)
                    .is_none()
            })
            .map(|id| id.value.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::unauthorized(format!(
                "{PREFIX}authorizations for these names not found or expired: {}",
                missing.join(", ")
            )));
        }
        state.check_certificate_limits(&csr.identifiers, &config.rate_limits)?;
        if let Err(mut problem) =
            dns_caa.map_or_else(|| state.recheck_caa(&csr.identifiers, config), Err)
        {
            drop(state);
            problem.detail = problem
                .detail
                .map(|d| d.replacen("Error finalizing order :: ", PREFIX, 1));
            return Ok(self.v1_problem_doc(403, &problem));
        }
        let not_before = crate::ca::issuance::backdated_not_before();
        let cert =
            state.issue_certificate(&self.pki, acct, None, &csr, not_before, None, config)?;
        let leaf = state.certs[cert].leaf_der.clone();
        let url = self.v1_cert_url(&state.certs[cert].serial);
        drop(state);
        let mut response = self.v1_response(StatusCode::CREATED, Some(PKIX_CERT), leaf);
        response.headers.insert("location", header(&url));
        Ok(Self::v1_with_link(
            response,
            &self.url("/acme/issuer-cert"),
            "up",
        ))
    }

    /// The CAA check through the CA's DNS resolver for the names of the
    /// new-cert CSR in `payload`, before the state is locked: the refusal,
    /// if any. An unreadable CSR is left to [`Ca::v1_new_cert`] to refuse.
    pub(super) async fn v1_dns_caa(
        &self,
        acct: usize,
        payload: &Value,
        config: &Config,
    ) -> Option<Box<Problem>> {
        let der = payload
            .get("csr")
            .and_then(Value::as_str)
            .and_then(b64_decode)?;
        let csr = pki::parse_csr(&der).ok()?;
        // (v1 predates RFC 8657: validation methods are not judged.)
        self.caa_through_dns(&csr.identifiers, self.v1_reg_url(acct), &[], config)
            .await
    }

    /// `GET /acme/cert/<serial>`: the DER leaf, `Link` up to the issuer.
    pub(super) fn v1_certificate(&self, serial: &str) -> Answer {
        let not_found = || Rejection::new(ProblemType::Malformed, 404, "Certificate not found");
        if !matches!(serial.len(), 32 | 36) || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let wanted = serial.to_ascii_lowercase();
        let wanted = wanted.trim_start_matches('0');
        let leaf = {
            let state = self.state();
            state
                .certs
                .iter()
                .find(|c| c.serial.trim_start_matches('0') == wanted)
                .map(|c| c.leaf_der.clone())
                .ok_or_else(not_found)?
        };
        Ok(Self::v1_with_link(
            self.v1_response(StatusCode::OK, Some(PKIX_CERT), leaf),
            &self.url("/acme/issuer-cert"),
            "up",
        ))
    }

    /// `{"resource":"revoke-cert","certificate":...,"reason":n}`, signed by
    /// the certificate's key, the account that got it, or an account with
    /// valid authorizations for all its names. 200 with an empty body.
    pub(super) fn v1_revoke(
        &self,
        key: &PublicJwk,
        acct: Option<usize>,
        payload: &Value,
    ) -> Answer {
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("Unable to decode certificate"))?;
        let reason = match payload.get("reason") {
            None | Some(Value::Null) => Some(0),
            Some(r) => reason_code(r.as_u64()),
        }
        .ok_or_else(|| {
            Rejection::new(
                ProblemType::BadRevocationReason,
                400,
                "unsupported revocation reason code provided",
            )
        })?;
        let by = Revoker {
            key: Some(key),
            account: acct,
        };
        self.state()
            .revoke(&der, reason, by, REVOCATION)
            .map_err(|refusal| match refusal {
                RevokeRefusal::NotFound => {
                    Rejection::new(ProblemType::Malformed, 404, "No such certificate")
                }
                RevokeRefusal::AlreadyRevoked => Rejection::new(
                    ProblemType::Malformed,
                    409,
                    "Certificate already revoked",
                ),
                RevokeRefusal::NotAllowed { .. } => Rejection::unauthorized(
                    "Revocation request must be signed by private key of cert to be revoked, by the account key of the account that issued it, or by the account key of an account that holds valid authorizations for all names in the certificate.",
                ),
            })?;
        Ok(self.v1_response(StatusCode::OK, None, Vec::new()))
    }
}
