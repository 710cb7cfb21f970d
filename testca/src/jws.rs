//! Server-side JWS checks, as strict as Boulder and Pebble.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::codec::b64_decode;
use sturdy_acme::ProblemType;
use sturdy_acme::thumbprint_of_jwk;

/// A rejection: problem type, HTTP status and detail.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub(crate) kind: ProblemType,
    pub(crate) status: u16,
    pub(crate) detail: String,
}

impl Rejection {
    pub(crate) fn new(kind: ProblemType, status: u16, detail: impl Into<String>) -> Self {
        Self {
            kind,
            status,
            detail: detail.into(),
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Malformed, 400, detail)
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Unauthorized, 403, detail)
    }
}

#[derive(Deserialize)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

/// A public key from a JWK, ready to verify signatures.
#[derive(Debug, Clone)]
pub(crate) struct PublicJwk {
    pub(crate) jwk: Value,
    pub(crate) thumbprint: String,
    kind: KeyKind,
}

#[derive(Debug, Clone)]
enum KeyKind {
    Ec { alg: &'static str, point: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519(Vec<u8>),
}

impl PublicJwk {
    /// Parses a public JWK (EC P-256/P-384/P-521, RSA, OKP Ed25519).
    pub(crate) fn parse(jwk: &Value) -> Result<Self, Rejection> {
        let bad = |d: &str| Rejection::new(ProblemType::BadPublicKey, 400, d.to_owned());
        let field = |name: &str| -> Result<Vec<u8>, Rejection> {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(b64_decode)
                .ok_or_else(|| bad(&format!("JWK has no valid {name:?}")))
        };
        let kind = match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                let (alg, len) = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => ("ES256", 32),
                    Some("P-384") => ("ES384", 48),
                    other => return Err(bad(&format!("unsupported EC curve {other:?}"))),
                };
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != len || y.len() != len {
                    return Err(bad("EC coordinates of the wrong length"));
                }
                let mut point = vec![4u8];
                point.extend(x);
                point.extend(y);
                KeyKind::Ec { alg, point }
            }
            Some("RSA") => {
                let n = field("n")?;
                if n.len() < 256 {
                    return Err(bad("RSA keys must be at least 2048 bits"));
                }
                KeyKind::Rsa { n, e: field("e")? }
            }
            Some("OKP") if jwk.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                KeyKind::Ed25519(field("x")?)
            }
            other => return Err(bad(&format!("unsupported key type {other:?}"))),
        };
        let thumbprint = thumbprint_of_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            jwk: jwk.clone(),
            thumbprint,
            kind,
        })
    }

    fn expected_alg(&self) -> &'static str {
        match &self.kind {
            KeyKind::Ec { alg, .. } => alg,
            KeyKind::Rsa { .. } => "RS256",
            KeyKind::Ed25519(_) => "EdDSA",
        }
    }

    pub(crate) fn is_eddsa(&self) -> bool {
        matches!(self.kind, KeyKind::Ed25519(_))
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.kind {
            KeyKind::Ec { alg, point } => {
                let algorithm: &dyn signature::VerificationAlgorithm = if *alg == "ES256" {
                    &signature::ECDSA_P256_SHA256_FIXED
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyKind::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            KeyKind::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
        }
    }

    /// True when this JWK is the key of a certificate / CSR whose
    /// SubjectPublicKeyInfo is `spki`.
    pub(crate) fn matches_spki(&self, spki: &[u8]) -> bool {
        use x509_parser::prelude::FromDer;
        let Ok((_, info)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
            return false;
        };
        let raw = info.subject_public_key.data.as_ref();
        match &self.kind {
            KeyKind::Ec { point, .. } => raw == point.as_slice(),
            KeyKind::Ed25519(x) => raw == x.as_slice(),
            KeyKind::Rsa { n, e } => match info.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                    strip(rsa.modulus) == strip(n) && strip(rsa.exponent) == strip(e)
                }
                _ => false,
            },
        }
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

/// How the JWS named its key.
#[derive(Debug, Clone)]
pub(crate) enum Signer {
    Jwk(PublicJwk),
    Kid(String),
}

/// A parsed JWS whose header checks passed; the signature is checked by
/// [`Parsed::verify_with`] once the key is known.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) signer: Signer,
    pub(crate) nonce: Option<String>,
    /// Empty when a v1 JWS has none.
    pub(crate) url: String,
    /// `None` for POST-as-GET (empty payload).
    pub(crate) payload: Option<Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    alg: String,
}

/// Parses a flattened JWS body and checks its protected header's shape.
pub(crate) fn parse(body: &[u8], accept_eddsa: bool) -> Result<Parsed, Rejection> {
    parse_with(body, accept_eddsa, false)
}

/// Parses a flattened JWS body as Boulder's ACME v1 API did: `alg`, `jwk`
/// and `nonce` in the protected header, no `kid` (the account is the key),
/// `url` not required (and ignored: [`Parsed::url`] is then empty),
/// unsupported algorithms are `malformed`, and a payload that is not JSON
/// gives [`Parsed::payload`] `None` (the v1 checks report it after the
/// signature and the nonce, as Boulder did).
pub(crate) fn parse_v1(body: &[u8]) -> Result<Parsed, Rejection> {
    parse_with(body, false, true)
}

fn parse_with(body: &[u8], accept_eddsa: bool, v1: bool) -> Result<Parsed, Rejection> {
    if v1
        && let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(signatures) = map.get("signatures")
    {
        return Err(Rejection::malformed(
            if signatures.as_array().is_some_and(|s| s.len() > 1) {
                "Too many signatures in POST body"
            } else {
                "Parse error reading JWS: only the flattened JSON serialization is supported"
            },
        ));
    }
    let jws: Flattened = serde_json::from_slice(body)
        .map_err(|e| Rejection::malformed(format!("Parse error reading JWS: {e}")))?;
    let header_bytes = b64_decode(&jws.protected)
        .ok_or_else(|| Rejection::malformed("JWS protected header is not base64url"))?;
    let header: Value = serde_json::from_slice(&header_bytes)
        .map_err(|_| Rejection::malformed("JWS protected header is not JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::malformed("JWS header has no alg"))?
        .to_owned();
    const ALGS: [&str; 4] = ["RS256", "ES256", "ES384", "EdDSA"];
    if v1 && !["RS256", "ES256", "ES384"].contains(&alg.as_str()) {
        return Err(Rejection::malformed(format!(
            "JWS signature header contains unsupported algorithm {alg:?}, expected one of RS256, ES256, ES384 or ES512"
        )));
    }
    if !ALGS.contains(&alg.as_str()) || (alg == "EdDSA" && !accept_eddsa) {
        return Err(Rejection::new(
            ProblemType::BadSignatureAlgorithm,
            400,
            format!("JWS signature algorithm {alg:?} is not supported (RS256, ES256, ES384)"),
        ));
    }
    let signer = match (header.get("jwk"), header.get("kid")) {
        (_, Some(_)) if v1 => {
            return Err(Rejection::malformed(
                "JWS header contains a \"kid\": ACME v1 does not support \"kid\", the account is identified by its \"jwk\"",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Rejection::malformed(
                "jwk and kid header fields are mutually exclusive",
            ));
        }
        (Some(jwk), None) => {
            let key = PublicJwk::parse(jwk)?;
            if key.is_eddsa() && !accept_eddsa {
                return Err(Rejection::new(
                    ProblemType::BadPublicKey,
                    400,
                    "no signature algorithms suitable for given key type: Ed25519",
                ));
            }
            if v1 && key.expected_alg() != alg {
                return Err(Rejection::malformed(format!(
                    "JWS signature header algorithm {alg:?} does not match expected algorithm {:?} for JWK",
                    key.expected_alg()
                )));
            }
            if key.expected_alg() != alg {
                return Err(Rejection::new(
                    ProblemType::BadSignatureAlgorithm,
                    400,
                    format!("JWS alg {alg:?} does not match the key"),
                ));
            }
            Signer::Jwk(key)
        }
        (None, None) if v1 => return Err(Rejection::malformed("No JWK in JWS header")),
        (None, Some(kid)) => Signer::Kid(
            kid.as_str()
                .ok_or_else(|| Rejection::malformed("kid is not a string"))?
                .to_owned(),
        ),
        (None, None) => return Err(Rejection::malformed("JWS has neither jwk nor kid")),
    };
    let url = match header.get("url").and_then(Value::as_str) {
        Some(url) => url.to_owned(),
        None if v1 => String::new(),
        None => return Err(Rejection::malformed("JWS header has no url")),
    };
    let nonce = header
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let payload = if jws.payload.is_empty() {
        None
    } else {
        let bytes = b64_decode(&jws.payload)
            .ok_or_else(|| Rejection::malformed("JWS payload is not base64url"))?;
        match serde_json::from_slice(&bytes) {
            Ok(payload) => Some(payload),
            Err(_) if v1 => None,
            Err(_) => return Err(Rejection::malformed("JWS payload is not JSON")),
        }
    };
    let signature = b64_decode(&jws.signature)
        .ok_or_else(|| Rejection::malformed("JWS signature is not base64url"))?;
    Ok(Parsed {
        signer,
        nonce,
        url,
        payload,
        signing_input: format!("{}.{}", jws.protected, jws.payload).into_bytes(),
        signature,
        alg,
    })
}

/// The protected header and payload of a flattened JWS, decoded without
/// any check (for the request log); `None` if it is not one.
pub(crate) fn decode_unverified(body: &[u8]) -> Option<(Value, Option<Value>)> {
    let jws: Flattened = serde_json::from_slice(body).ok()?;
    let protected = serde_json::from_slice(&b64_decode(&jws.protected)?).ok()?;
    let payload = b64_decode(&jws.payload).and_then(|p| serde_json::from_slice(&p).ok());
    Some((protected, payload))
}

impl Parsed {
    /// Checks the signature with `key` (and that alg matches it).
    pub(crate) fn verify_with(&self, key: &PublicJwk) -> Result<(), Rejection> {
        if key.expected_alg() != self.alg {
            return Err(Rejection::new(
                ProblemType::BadSignatureAlgorithm,
                400,
                format!("JWS alg {:?} does not match the account key", self.alg),
            ));
        }
        if key.verify(&self.signing_input, &self.signature) {
            Ok(())
        } else {
            Err(Rejection::malformed("JWS verification error"))
        }
    }
}

/// Verifies an external account binding (RFC 8555 §7.3.4) against `keys`
/// (kid → HMAC key), MAC'd with HS256, HS384 or HS512 (as Pebble accepts
/// them); returns the kid.
pub(crate) fn verify_eab(
    eab: &Value,
    outer_jwk: &Value,
    new_account_url: &str,
    keys: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<String, Rejection> {
    let jws: Flattened = serde_json::from_value(eab.clone())
        .map_err(|_| Rejection::malformed("externalAccountBinding is not a flattened JWS"))?;
    let header: Value = b64_decode(&jws.protected)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Rejection::malformed("EAB protected header is invalid"))?;
    // RFC 8555 §7.3.4: a MAC algorithm the CA supports; Pebble's three.
    let algorithm = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => ring::hmac::HMAC_SHA256,
        Some("HS384") => ring::hmac::HMAC_SHA384,
        Some("HS512") => ring::hmac::HMAC_SHA512,
        _ => {
            return Err(Rejection::malformed(
                "EAB alg must be HS256, HS384 or HS512",
            ));
        }
    };
    if header.get("nonce").is_some() {
        return Err(Rejection::malformed("EAB must not carry a nonce"));
    }
    if header.get("url").and_then(Value::as_str) != Some(new_account_url) {
        return Err(Rejection::malformed("EAB url must be the newAccount URL"));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::malformed("EAB has no kid"))?;
    let key = keys
        .get(kid)
        .ok_or_else(|| Rejection::unauthorized(format!("unknown EAB key id {kid:?}")))?;
    let payload: Value = b64_decode(&jws.payload)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Rejection::malformed("EAB payload is not a JWK"))?;
    if thumbprint_of_jwk(&payload).ok() != thumbprint_of_jwk(outer_jwk).ok() {
        return Err(Rejection::malformed("EAB payload is not the account key"));
    }
    let sig = b64_decode(&jws.signature).unwrap_or_default();
    let input = format!("{}.{}", jws.protected, jws.payload);
    ring::hmac::verify(
        &ring::hmac::Key::new(algorithm, key),
        input.as_bytes(),
        &sig,
    )
    .map_err(|_| {
        Rejection::unauthorized("EAB signature does not verify with the key of this kid")
    })?;
    Ok(kid.to_owned())
}
