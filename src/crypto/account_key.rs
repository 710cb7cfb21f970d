//! Account keys: generation, PKCS#8 import/export, signing, JWK.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::b64;
use super::jwk;
use crate::error::{Error, Result};

/// The JWS algorithm of an account key.
///
/// Example: [`AccountKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 (the default; accepted by every CA).
    #[default]
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519 (`EdDSA`), for CAs that accept it (Pebble 2.4 and Boulder do not).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, from an imported key (ring cannot generate RSA keys).
    Rs256,
}

impl KeyAlgorithm {
    /// The JWS `alg` value.
    pub fn jws_name(&self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "es256" | "p256" | "p-256" | "ecdsa" => Ok(Self::Es256),
            "es384" | "p384" | "p-384" => Ok(Self::Es384),
            "eddsa" | "ed25519" => Ok(Self::EdDsa),
            "rs256" | "rsa" => Ok(Self::Rs256),
            other => Err(Error::InvalidInput(format!(
                "unknown key algorithm {other:?} (es256, es384, eddsa, rs256)"
            ))),
        }
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A key that signs ACME requests: an account key, or a certificate's key
/// when it signs its own revocation.
///
/// `Debug` shows only the algorithm and thumbprint; the private key leaves
/// only through [`AccountKey::to_pkcs8_pem`] / [`AccountKey::pkcs8_der`].
///
/// # Example
///
/// ```
/// use sturdy_acme::{AccountKey, KeyAlgorithm};
///
/// let key = AccountKey::generate(KeyAlgorithm::Es256)?;
/// let pem = key.to_pkcs8_pem(); // zeroized when dropped; store it 0600
/// let again = AccountKey::from_pkcs8_pem(&pem)?;
/// assert_eq!(again.thumbprint(), key.thumbprint());
/// assert_eq!(key.jwk()["crv"], "P-256");
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
pub struct AccountKey {
    alg: KeyAlgorithm,
    signer: Signer,
    pkcs8: Zeroizing<Vec<u8>>,
    jwk: Value,
    thumbprint: String,
    rng: SystemRandom,
}

impl AccountKey {
    /// Generates a new key. [`KeyAlgorithm::Rs256`] cannot be generated (ring
    /// has no RSA key generation): import one with [`AccountKey::from_pkcs8_pem`].
    pub fn generate(alg: KeyAlgorithm) -> Result<Self> {
        let rng = SystemRandom::new();
        let doc = match alg {
            KeyAlgorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            KeyAlgorithm::Es384 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            }
            KeyAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
            KeyAlgorithm::Rs256 => {
                return Err(Error::Unsupported(
                    "RSA keys cannot be generated here; import a PKCS#8 RSA key".into(),
                ));
            }
        }
        .map_err(|_| Error::Crypto("key generation failed".into()))?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Imports a PKCS#8 DER private key (P-256, P-384, Ed25519 or RSA ≥ 2048 bits).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let (alg, signer) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            (KeyAlgorithm::Es256, Signer::Ecdsa(k))
        } else if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
        {
            (KeyAlgorithm::Es384, Signer::Ecdsa(k))
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            (KeyAlgorithm::EdDsa, Signer::Ed25519(k))
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            (KeyAlgorithm::Rs256, Signer::Rsa(k))
        } else {
            return Err(Error::Crypto(
                "not a PKCS#8 P-256, P-384, Ed25519 or RSA (2048-8192 bit) private key".into(),
            ));
        };
        let jwk = match &signer {
            Signer::Ecdsa(k) => {
                let point = k.public_key().as_ref();
                // Uncompressed point: 0x04 || X || Y.
                let n = (point.len() - 1) / 2;
                let crv = if alg == KeyAlgorithm::Es256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"crv": crv, "kty": "EC", "x": b64(&point[1..1 + n]), "y": b64(&point[1 + n..])})
            }
            Signer::Ed25519(k) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": b64(k.public_key().as_ref())})
            }
            Signer::Rsa(k) => {
                let public: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"e": b64(&public.e), "kty": "RSA", "n": b64(&public.n)})
            }
        };
        let thumbprint = jwk::thumbprint_of_jwk(&jwk)?;
        Ok(Self {
            alg,
            signer,
            pkcs8: Zeroizing::new(der.to_vec()),
            jwk,
            thumbprint,
            rng,
        })
    }

    /// Imports a PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let der = pem_private_key(pem)?;
        Self::from_pkcs8_der(&der)
    }

    /// The private key as a PEM `PRIVATE KEY` block (zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.pkcs8.as_slice(),
        )))
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The public key as a JWK (RFC 7517), members in canonical order.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Signs `message` with the JWS algorithm of this key.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::Crypto("signing failed".into());
        Ok(match &self.signer {
            Signer::Ecdsa(k) => k
                .sign(&self.rng, message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(failed)?;
                sig
            }
        })
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// Extracts the DER of the first `PRIVATE KEY` block of a PEM text.
pub(crate) fn pem_private_key(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let blocks = pem::parse_many(text).map_err(|e| Error::Crypto(format!("invalid PEM: {e}")))?;
    for block in blocks {
        if block.tag() == "PRIVATE KEY" {
            return Ok(Zeroizing::new(block.into_contents()));
        }
        if block.tag().ends_with("PRIVATE KEY") {
            return Err(Error::Crypto(format!(
                "found a {:?} block; convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`)",
                block.tag()
            )));
        }
    }
    Err(Error::Crypto("no PEM PRIVATE KEY block found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_roundtrip_through_pem() {
        for alg in [
            KeyAlgorithm::Es256,
            KeyAlgorithm::Es384,
            KeyAlgorithm::EdDsa,
        ] {
            let key = AccountKey::generate(alg).unwrap();
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = AccountKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.jwk(), key.jwk());
            assert_eq!(back.thumbprint(), key.thumbprint());
            // Debug never shows key material.
            let dbg = format!("{key:?}");
            assert!(!dbg.contains(&b64(key.pkcs8_der())), "{dbg}");
        }
    }

    #[test]
    fn signatures_verify() {
        use ring::signature::UnparsedPublicKey;
        for (alg, verify_alg) in [
            (
                KeyAlgorithm::Es256,
                &signature::ECDSA_P256_SHA256_FIXED as &dyn signature::VerificationAlgorithm,
            ),
            (KeyAlgorithm::Es384, &signature::ECDSA_P384_SHA384_FIXED),
            (KeyAlgorithm::EdDsa, &signature::ED25519),
        ] {
            let key = AccountKey::generate(alg).unwrap();
            let sig = key.sign(b"hello").unwrap();
            let public = match &key.signer {
                Signer::Ecdsa(k) => k.public_key().as_ref().to_vec(),
                Signer::Ed25519(k) => k.public_key().as_ref().to_vec(),
                Signer::Rsa(_) => unreachable!(),
            };
            UnparsedPublicKey::new(verify_alg, &public)
                .verify(b"hello", &sig)
                .unwrap();
        }
    }

    #[test]
    fn rsa_cannot_be_generated_and_garbage_is_rejected() {
        assert!(matches!(
            AccountKey::generate(KeyAlgorithm::Rs256),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            AccountKey::from_pkcs8_der(b"garbage"),
            Err(Error::Crypto(_))
        ));
        assert!(matches!(
            AccountKey::from_pkcs8_pem("not pem"),
            Err(Error::Crypto(_))
        ));
        let rsa_pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = AccountKey::from_pkcs8_pem(rsa_pem).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
    }
}
