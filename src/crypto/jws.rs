//! Flattened JWS (RFC 7515 §7.2.2) as ACME uses it (RFC 8555 §6.2), and
//! external account binding (RFC 8555 §7.3.4).

use std::fmt;

use ring::hmac;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{AccountKey, b64, b64_decode};
use crate::error::{Error, Result};

/// How a JWS names its key: the JWK itself (before an account exists, and
/// for revocation by certificate key) or the account URL (`kid`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyId<'a> {
    Jwk,
    Kid(&'a str),
}

/// The shape of a JWS protected header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum JwsHeader {
    /// RFC 8555 §6.2: `alg`, `jwk` or `kid`, `nonce`, `url`.
    #[default]
    Rfc8555,
    /// Exactly `{alg, jwk, nonce}`: the account is named by its key, never
    /// by `kid`, and there is no `url` (the pre-RFC ACME v1 header).
    #[cfg_attr(not(feature = "v1"), allow(dead_code))]
    JwkOnly,
}

/// Signs `payload` (`None` = POST-as-GET, an empty payload) for `url`.
/// `nonce` is `None` only for the inner JWS of a key change. With
/// [`JwsHeader::JwkOnly`], `key_id` and `url` are ignored.
pub(crate) fn sign(
    key: &AccountKey,
    key_id: KeyId<'_>,
    nonce: Option<&str>,
    url: &str,
    payload: Option<&Value>,
    header: JwsHeader,
) -> Result<Value> {
    let mut protected = json!({"alg": key.algorithm().jws_name()});
    match (header, key_id) {
        (JwsHeader::JwkOnly, _) | (JwsHeader::Rfc8555, KeyId::Jwk) => {
            protected["jwk"] = key.jwk().clone()
        }
        (JwsHeader::Rfc8555, KeyId::Kid(kid)) => protected["kid"] = Value::from(kid),
    }
    if header == JwsHeader::Rfc8555 {
        protected["url"] = Value::from(url);
    }
    if let Some(nonce) = nonce {
        protected["nonce"] = Value::from(nonce);
    }
    let protected = b64(protected.to_string());
    let payload = match payload {
        Some(p) => b64(p.to_string()),
        None => String::new(),
    };
    let signature = key.sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(json!({"protected": protected, "payload": payload, "signature": b64(signature)}))
}

/// An external account binding key (RFC 8555 §7.3.4): the key identifier
/// and HMAC key the CA handed out.
///
/// # Example
///
/// ```
/// use sturdy_acme::{AccountOptions, ExternalAccountKey};
///
/// // The key id and base64url HMAC key the CA's portal shows.
/// let eab = ExternalAccountKey::new("kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")?;
/// assert_eq!(eab.kid(), "kid-1");
/// let _options = AccountOptions::agreeing_to_terms().with_external_account(eab);
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Clone)]
pub struct ExternalAccountKey {
    kid: String,
    key: Zeroizing<Vec<u8>>,
}

impl ExternalAccountKey {
    /// From the key identifier and the base64url-encoded HMAC key, as CAs
    /// publish them.
    pub fn new(kid: impl Into<String>, hmac_key_b64url: &str) -> Result<Self> {
        let key = b64_decode(hmac_key_b64url.trim())
            .ok_or_else(|| Error::InvalidInput("EAB HMAC key is not valid base64url".into()))?;
        if key.is_empty() {
            return Err(Error::InvalidInput("EAB HMAC key is empty".into()));
        }
        Ok(Self {
            kid: kid.into(),
            key: Zeroizing::new(key),
        })
    }

    /// The key identifier.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `externalAccountBinding` JWS binding `account_key` for `new_account_url` (HS256).
    pub(crate) fn binding(&self, account_key: &AccountKey, new_account_url: &str) -> Value {
        let protected =
            b64(json!({"alg": "HS256", "kid": self.kid, "url": new_account_url}).to_string());
        let payload = b64(account_key.jwk().to_string());
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.key),
            format!("{protected}.{payload}").as_bytes(),
        );
        json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
    }
}

impl fmt::Debug for ExternalAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyAlgorithm;
    use ring::signature::{self, UnparsedPublicKey};

    fn decode_json(part: &Value) -> Value {
        serde_json::from_slice(&b64_decode(part.as_str().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn jws_with_jwk_then_kid_verifies() {
        let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
        let payload = json!({"termsOfServiceAgreed": true});
        let jws = sign(
            &key,
            KeyId::Jwk,
            Some("n0nce"),
            "https://ca/new-acct",
            Some(&payload),
            JwsHeader::Rfc8555,
        )
        .unwrap();
        let header = decode_json(&jws["protected"]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["nonce"], "n0nce");
        assert_eq!(header["url"], "https://ca/new-acct");
        assert_eq!(&header["jwk"], key.jwk());
        assert!(header.get("kid").is_none());
        assert_eq!(decode_json(&jws["payload"]), payload);

        // Verify the signature with the public key from the JWK.
        let jwk = key.jwk();
        let mut point = vec![4u8];
        point.extend(b64_decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(b64_decode(jwk["y"].as_str().unwrap()).unwrap());
        let input = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let sig = b64_decode(jws["signature"].as_str().unwrap()).unwrap();
        assert_eq!(sig.len(), 64);
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &sig)
            .unwrap();

        // POST-as-GET with kid: empty payload, no jwk.
        let jws = sign(
            &key,
            KeyId::Kid("https://ca/acct/1"),
            Some("n2"),
            "https://ca/o/1",
            None,
            JwsHeader::Rfc8555,
        )
        .unwrap();
        let header = decode_json(&jws["protected"]);
        assert_eq!(header["kid"], "https://ca/acct/1");
        assert!(header.get("jwk").is_none());
        assert_eq!(jws["payload"], "");
    }

    #[test]
    fn v1_header_is_alg_jwk_nonce_only() {
        let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
        let payload = json!({"resource": "new-authz"});
        for key_id in [KeyId::Jwk, KeyId::Kid("https://ca/reg/1")] {
            let jws = sign(
                &key,
                key_id,
                Some("n1"),
                "https://ca/new-authz",
                Some(&payload),
                JwsHeader::JwkOnly,
            )
            .unwrap();
            let header = decode_json(&jws["protected"]);
            assert_eq!(
                header,
                json!({"alg": "ES256", "jwk": key.jwk(), "nonce": "n1"})
            );
            assert_eq!(decode_json(&jws["payload"]), payload);
        }
    }

    /// RFC 7515 Appendix A.1's HS256 example, through the EAB code path's HMAC.
    #[test]
    fn eab_hmac_known_vector() {
        let key = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
        let eab = ExternalAccountKey::new("kid-1", key).unwrap();
        let signing_input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &eab.key),
            signing_input.as_bytes(),
        );
        assert_eq!(
            b64(tag.as_ref()),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );

        let account = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
        let binding = eab.binding(&account, "https://ca/new-acct");
        let header = decode_json(&binding["protected"]);
        assert_eq!(
            header,
            json!({"alg": "HS256", "kid": "kid-1", "url": "https://ca/new-acct"})
        );
        assert_eq!(&decode_json(&binding["payload"]), account.jwk());
        assert!(format!("{eab:?}").contains("kid-1"));
        assert!(!format!("{eab:?}").contains(key));
        assert!(ExternalAccountKey::new("k", "!!!").is_err());
    }
}
