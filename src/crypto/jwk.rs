//! JWK thumbprints (RFC 7638).

use ring::digest::{SHA256, digest};
use serde_json::Value;

use super::b64;
use crate::error::{Error, Result};

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url-encoded.
///
/// Only the required members of the key type take part (`crv`, `kty`, `x`,
/// `y` for EC; `crv`, `kty`, `x` for OKP; `e`, `kty`, `n` for RSA), in
/// lexicographic order with no whitespace, whatever else the JWK holds.
pub fn thumbprint_of_jwk(jwk: &Value) -> Result<String> {
    let member = |name: &str| -> Result<String> {
        let value = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Crypto(format!("JWK lacks the {name:?} member")))?;
        // serde_json quotes and escapes exactly as JSON requires.
        Ok(serde_json::to_string(value).expect("a string always serializes"))
    };
    let canonical = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        Some("OKP") => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            member("crv")?,
            member("x")?
        ),
        Some("RSA") => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            member("e")?,
            member("n")?
        ),
        other => return Err(Error::Crypto(format!("unsupported JWK kty {other:?}"))),
    };
    Ok(b64(digest(&SHA256, canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1, the RFC's own example.
    #[test]
    fn rfc7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint_of_jwk(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn incomplete_jwk_is_an_error() {
        assert!(thumbprint_of_jwk(&json!({"kty": "EC", "crv": "P-256", "x": "a"})).is_err());
        assert!(thumbprint_of_jwk(&json!({"kty": "oct", "k": "a"})).is_err());
    }
}
