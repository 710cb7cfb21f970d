//! Private keys sealed at rest: AES-256-GCM (ring) under a key-encryption
//! key, with the record's identity as associated data, so a sealed secret
//! moved to another record (or altered) fails to open.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::StoreError;

/// Format byte of a secret stored in the clear (no key-encryption key).
const PLAIN: u8 = 0;
/// Format byte of an AES-256-GCM sealed secret: nonce, then ciphertext
/// and tag.
const AES_256_GCM_V1: u8 = 1;

/// A key-encryption key: 32 secret bytes and the id stored next to every
/// record sealed with it, so keys can be rotated (records sealed with an
/// older key stay readable while it is configured as a previous key, and
/// are sealed with the current one on their next write).
///
/// # Example
///
/// ```
/// use sturdy_acme::store::KeyEncryptionKey;
///
/// let kek = KeyEncryptionKey::new("2026-12", [7u8; 32]).unwrap();
/// assert_eq!(kek.id(), "2026-12");
/// // From configuration: "ID:BASE64" (32 bytes once decoded).
/// let parsed = KeyEncryptionKey::parse("2026-12:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
/// assert_eq!(parsed.id(), "2026-12");
/// assert!(format!("{parsed:?}").contains("2026-12")); // the id, never the key
/// ```
#[derive(Clone)]
pub struct KeyEncryptionKey {
    id: String,
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from its id (1 to 64 printable ASCII characters, no `:`) and
    /// 32 secret bytes.
    pub fn new(id: impl Into<String>, secret: [u8; 32]) -> Result<Self, StoreError> {
        let id = id.into();
        if !usable_id(&id) {
            return Err(invalid(
                "the id must be 1 to 64 printable ASCII characters without ':'".into(),
            ));
        }
        Ok(Self {
            id,
            secret: Zeroizing::new(secret),
        })
    }

    /// A key written as `ID:BASE64` (standard or URL-safe base64 of 32
    /// bytes), as configuration and environment variables carry it.
    ///
    /// An error names the part that is wrong (and says so when the two
    /// parts look swapped), never the text given: written in the wrong
    /// order, the part taken for the id is the secret.
    ///
    /// ```
    /// use sturdy_acme::store::KeyEncryptionKey;
    ///
    /// let secret = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    /// let err = KeyEncryptionKey::parse(&format!("{secret}:2026-12")).unwrap_err();
    /// assert!(err.to_string().contains("ID:BASE64"));
    /// assert!(!err.to_string().contains(secret) && !format!("{err:?}").contains(secret));
    /// ```
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let Some((id, encoded)) = text.trim().split_once(':') else {
            return Err(invalid(
                "written ID:BASE64, and there is no ':' (the text is not repeated here)".into(),
            ));
        };
        let swapped = || decode(id).is_some_and(|b| b.len() == 32);
        let bytes = decode(encoded);
        if bytes.as_ref().is_none_or(|b| b.len() != 32) && swapped() {
            return Err(invalid(
                "the part before ':' is a 32-byte base64 key and the part after it is not: \
                 the two look swapped (write ID:BASE64)"
                    .into(),
            ));
        }
        let Some(bytes) = bytes else {
            return Err(invalid("the key (after ':') is not base64".into()));
        };
        let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "the key (after ':') is {} bytes once decoded, AES-256 needs 32",
                bytes.len()
            ))
        })?;
        if !usable_id(id) {
            return Err(invalid(
                "the id (before ':') must be 1 to 64 printable ASCII characters".into(),
            ));
        }
        Self::new(id, secret)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.secret[..]).expect("32-byte key"))
    }
}

/// Whether `id` can name a key: 1 to 64 printable ASCII characters, no `:`.
fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// `text` decoded as standard or URL-safe base64.
fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .ok()
        .map(Zeroizing::new)
}

fn invalid(reason: String) -> StoreError {
    StoreError::InvalidKeyEncryptionKey { reason }
}

/// The keys a store seals private keys with (the current one) and opens
/// them with (it and the previous ones): AES-256-GCM, the record's
/// identity bound as associated data, so a sealed key copied onto another
/// record does not open. A backend's building block (`PostgresStore` seals
/// with it).
///
/// ```
/// use sturdy_acme::store::{KeyEncryptionKey, Sealer};
///
/// let kek = KeyEncryptionKey::new("2026", [7u8; 32])?;
/// let sealer = Sealer::new(Some(kek), Vec::new());
/// let sealed = sealer.seal("cert/example.com", b"-----BEGIN PRIVATE KEY-----")?;
/// assert_eq!(sealed.kek_id(), Some("2026"));
/// let plain = sealer.open("cert/example.com", sealed.bytes(), sealed.kek_id())?;
/// assert_eq!(&plain[..], b"-----BEGIN PRIVATE KEY-----");
/// assert!(sealer.open("cert/other.example", sealed.bytes(), sealed.kek_id()).is_err());
/// # Ok::<(), sturdy_acme::StoreError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Sealer {
    current: Option<KeyEncryptionKey>,
    previous: Vec<KeyEncryptionKey>,
    /// Whether a record stored in the clear is accepted while a key is
    /// configured (records written before sealing was turned on).
    allow_plain: bool,
}

/// A sealed secret and the id of the key that sealed it (`None`: stored
/// in the clear).
///
/// Example: [`Sealer`].
pub struct Sealed {
    bytes: Zeroizing<Vec<u8>>,
    kek_id: Option<String>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("len", &self.bytes.len())
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

impl Sealed {
    /// What to store: a version byte, then the nonce and the ciphertext
    /// (or the plaintext, when no key is configured).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The id of the key that sealed it, to store beside it (`None`: in
    /// the clear).
    pub fn kek_id(&self) -> Option<&str> {
        self.kek_id.as_deref()
    }
}

impl Sealer {
    /// Seals with `current` (none: secrets are stored in the clear), opens
    /// with it and `previous` (keys being rotated out).
    pub fn new(current: Option<KeyEncryptionKey>, previous: Vec<KeyEncryptionKey>) -> Self {
        Self {
            current,
            previous,
            allow_plain: false,
        }
    }

    /// Accepts records stored in the clear even with a key configured (to
    /// read, and reseal on their next write, what was stored before).
    pub fn allowing_plain(mut self, allow: bool) -> Self {
        self.allow_plain = allow;
        self
    }

    /// True when secrets are encrypted.
    pub fn encrypts(&self) -> bool {
        self.current.is_some()
    }

    /// Seals `plain` for the record `identity`.
    pub fn seal(&self, identity: &str, plain: &[u8]) -> Result<Sealed, StoreError> {
        let Some(kek) = &self.current else {
            let mut bytes = Zeroizing::new(Vec::with_capacity(plain.len() + 1));
            bytes.push(PLAIN);
            bytes.extend_from_slice(plain);
            return Ok(Sealed {
                bytes,
                kek_id: None,
            });
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Other("no randomness for a nonce".into()))?;
        // Room for the tag up front, so sealing never reallocates and
        // leaves a copy of the plaintext behind.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plain.len() + AES_256_GCM.tag_len()));
        buffer.extend_from_slice(plain);
        kek.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(identity, AES_256_GCM_V1, &kek.id)),
                &mut *buffer,
            )
            .map_err(|_| StoreError::Other("AES-256-GCM sealing failed".into()))?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(1 + NONCE_LEN + buffer.len()));
        bytes.push(AES_256_GCM_V1);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&buffer);
        Ok(Sealed {
            bytes,
            kek_id: Some(kek.id.clone()),
        })
    }

    /// Opens a secret sealed for `identity` with the key `kek_id`.
    pub fn open(
        &self,
        identity: &str,
        bytes: &[u8],
        kek_id: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let fail = |reason: String| StoreError::KeyEncryption {
            record: identity.to_owned(),
            reason,
        };
        match (bytes.split_first(), kek_id) {
            (Some((&PLAIN, _)), None) if self.current.is_some() && !self.allow_plain => Err(fail(
                "stored in the clear while a key-encryption key is configured (refused: it \
                 could have been planted; open the store with unsealed records allowed to \
                 read and reseal records written before sealing was turned on)"
                    .into(),
            )),
            (Some((&PLAIN, plain)), None) => Ok(Zeroizing::new(plain.to_vec())),
            (Some((&AES_256_GCM_V1, rest)), Some(id)) => {
                let kek = self
                    .current
                    .iter()
                    .chain(&self.previous)
                    .find(|k| k.id == id)
                    .ok_or_else(|| {
                        fail(format!(
                            "sealed with key-encryption key {id:?}, which is not configured"
                        ))
                    })?;
                if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
                    return Err(fail("truncated".into()));
                }
                let (nonce, sealed) = rest.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| fail("bad nonce".into()))?;
                let mut buffer = Zeroizing::new(sealed.to_vec());
                let plain = kek
                    .aead()
                    .open_in_place(
                        nonce,
                        Aad::from(associated_data(identity, AES_256_GCM_V1, id)),
                        &mut buffer,
                    )
                    .map_err(|_| {
                        fail(format!(
                            "does not authenticate under key-encryption key {id:?} \
                             (altered, or sealed for another record)"
                        ))
                    })?;
                Ok(Zeroizing::new(plain.to_vec()))
            }
            (Some((&PLAIN, _)), Some(id)) => Err(fail(format!(
                "stored in the clear but labelled with key-encryption key {id:?}"
            ))),
            (Some((&AES_256_GCM_V1, _)), None) => Err(fail(
                "sealed, but no key-encryption key id is stored".into(),
            )),
            (Some((format, _)), _) => Err(fail(format!("unknown sealing format {format}"))),
            (None, _) => Err(fail("empty".into())),
        }
    }
}

/// What a sealed secret is bound to: the record's identity, the format and
/// the key id (so neither can be swapped without the tag failing).
fn associated_data(identity: &str, format: u8, kek_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(identity.len() + kek_id.len() + 2);
    aad.extend_from_slice(identity.as_bytes());
    aad.push(0);
    aad.push(format);
    aad.extend_from_slice(kek_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(id: &str, byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::new(id, [byte; 32]).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_for_their_record_and_with_their_key() {
        let sealer = Sealer::new(Some(kek("k1", 1)), vec![]);
        let sealed = sealer
            .seal("certificate:a", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert_eq!(sealed.kek_id.as_deref(), Some("k1"));
        assert!(
            !sealed.bytes.windows(11).any(|w| w == b"BEGIN PRIVA"),
            "the key is not in the clear"
        );
        let open = sealer
            .open("certificate:a", &sealed.bytes, Some("k1"))
            .unwrap();
        assert_eq!(&open[..], b"-----BEGIN PRIVATE KEY-----");
        // Another record's identity: refused.
        assert!(matches!(
            sealer.open("certificate:b", &sealed.bytes, Some("k1")),
            Err(StoreError::KeyEncryption { .. })
        ));
        // One flipped bit: refused.
        let mut altered = sealed.bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealer.open("certificate:a", &altered, Some("k1")).is_err());
        // Rotation: the old key as a previous one still opens it.
        let rotated = Sealer::new(Some(kek("k2", 2)), vec![kek("k1", 1)]);
        assert!(
            rotated
                .open("certificate:a", &sealed.bytes, Some("k1"))
                .is_ok()
        );
        let err = Sealer::new(Some(kek("k2", 2)), vec![])
            .open("certificate:a", &sealed.bytes, Some("k1"))
            .unwrap_err();
        assert!(err.to_string().contains("not configured"), "{err}");
    }

    #[test]
    fn without_a_key_secrets_are_stored_in_the_clear_and_say_so() {
        let sealer = Sealer::default();
        assert!(!sealer.encrypts());
        let sealed = sealer.seal("account:x", b"pem").unwrap();
        assert_eq!(sealed.kek_id, None);
        assert_eq!(
            &sealer.open("account:x", &sealed.bytes, None).unwrap()[..],
            b"pem"
        );
        assert!(sealer.open("account:x", &[], None).is_err());
        assert!(sealer.open("account:x", &[9, 1, 2], None).is_err());
    }

    /// Issue 27, defect 3: a key given in the wrong order (`BASE64:ID`),
    /// or malformed, is refused with an error that names the part, and
    /// neither its Display nor its Debug holds any of the text given.
    #[test]
    fn a_bad_key_is_refused_without_repeating_it() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";
        assert_eq!(decode(secret).unwrap().len(), 32);
        let short = "c2VjcmV0LXNlY3JldA==";
        let cases = [
            (format!("{secret}:2026-12"), "swapped"),
            (format!("{secret}:k1"), "swapped"),
            (format!("  {secret}:prod-key  "), "swapped"),
            (secret.to_owned(), "no ':'"),
            (format!("k1:{short}"), "bytes"),
            (format!("k1:{secret}!!"), "not base64"),
            (format!("{short}:{secret}xyz"), "not base64"),
            (format!(" :{secret}"), "id"),
            (format!("{}:{secret}", "i".repeat(65)), "id"),
        ];
        for (text, says) in cases {
            let err = KeyEncryptionKey::parse(&text).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidKeyEncryptionKey { .. }),
                "{err:?}"
            );
            let (display, debug) = (err.to_string(), format!("{err:?}"));
            assert!(display.contains(says), "{text}: {display}");
            for part in text.trim().split(':').filter(|p| p.len() >= 4) {
                assert!(
                    !display.contains(part) && !debug.contains(part),
                    "{text}: the error repeats {part:?}: {display} / {debug}"
                );
            }
        }
        // A good key's Debug shows its id only.
        let good = KeyEncryptionKey::parse(&format!("k1:{secret}")).unwrap();
        assert!(!format!("{good:?}").contains(secret));
        assert!(!format!("{good:?}").contains("secret-secret"));
    }

    #[test]
    fn keys_parse_from_configuration_text() {
        assert!(KeyEncryptionKey::parse("id:AAAA").is_err(), "3 bytes");
        assert!(KeyEncryptionKey::parse("no-colon").is_err());
        assert!(KeyEncryptionKey::new("", [0; 32]).is_err());
        assert!(KeyEncryptionKey::new("a:b", [0; 32]).is_err());
    }
}
