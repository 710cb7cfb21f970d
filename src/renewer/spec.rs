//! What a renewer keeps: one certificate's names and options, and the
//! record the store holds for it (the spec, and the failures that decide
//! its next attempt, so a restarted node backs off where it left off).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::client::ChainPreference;
use crate::crypto::CertificateKeyType;
use crate::error::{Error, Result};
use crate::issuer::{CertificateOptions, EnsureOptions};
use crate::protocol::{ChallengeType, Identifier, IdentifierSet};
use crate::store::ManagedRecord;

/// One certificate to keep valid: its names and how to order it.
///
/// ```
/// use sturdy_acme::{CertificateKeyType, CertificateOptions};
/// use sturdy_acme::renewer::CertificateSpec;
///
/// let spec = CertificateSpec::new(["WWW.Shop.example", "shop.example"])?.with_options(
///     CertificateOptions::default()
///         .with_key_type(CertificateKeyType::P384)
///         .with_profile(Some("tlsserver".into())),
/// );
/// assert_eq!(spec.options().profile(), Some("tlsserver"));
/// // One id per set of names, whatever their order and case.
/// assert_eq!(spec.id(), "shop.example,www.shop.example");
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSpec {
    names: Vec<String>,
    options: CertificateOptions,
}

impl CertificateSpec {
    /// A certificate for `names` (checked; at least one), P-256, the CA's
    /// default profile and chain, the solvers' challenge order.
    pub fn new<I, N>(names: I) -> Result<Self>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let ids = names
            .into_iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "a certificate spec needs at least one name".into(),
            ));
        }
        let set = IdentifierSet::new(&ids);
        Ok(Self {
            names: set.values().into_iter().map(str::to_owned).collect(),
            options: CertificateOptions::default(),
        })
    }

    /// How it is ordered.
    pub fn options(&self) -> &CertificateOptions {
        &self.options
    }

    /// Sets [`CertificateSpec::options`].
    pub fn with_options(mut self, options: CertificateOptions) -> Self {
        self.options = options;
        self
    }

    /// Its names, canonical (lower case, sorted, each once).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Its id: the canonical names joined by commas (one per set).
    pub fn id(&self) -> String {
        self.names.join(",")
    }

    /// The options of its `ensure`.
    pub(crate) fn ensure_options(&self) -> EnsureOptions {
        // Another node holding the set's lease is doing the work: try once,
        // come back later.
        EnsureOptions::from(self.options.clone()).with_lease_wait(Some(Duration::ZERO))
    }
}

/// The failures that decide a certificate's next attempt, kept in the
/// store with its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failures {
    /// Consecutive failed attempts.
    pub(crate) consecutive: u32,
    /// Not before this (ms since the Unix epoch; 0: no hold).
    pub(crate) retry_at_ms: u64,
    /// The last error's class name and message.
    pub(crate) last_class: Option<String>,
    pub(crate) last_error: Option<String>,
}

/// The stored form (the store's [`ManagedRecord::value`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    names: Vec<String>,
    key_type: String,
    #[serde(default)]
    profile: Option<String>,
    /// The preferred root by name.
    #[serde(default)]
    preferred_chain: Option<String>,
    /// The preferred root by key (SubjectPublicKeyInfo DER, base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preferred_root_key: Option<String>,
    #[serde(default)]
    challenge_types: Vec<ChallengeType>,
    /// When it was added (ms since the Unix epoch): new certificates are
    /// served first come, first served.
    added_at_ms: u64,
    #[serde(default)]
    failures: Failures,
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A spec with what the store keeps beside it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) spec: CertificateSpec,
    pub(crate) added_at: SystemTime,
    pub(crate) failures: Failures,
}

impl Stored {
    pub(crate) fn to_record(&self) -> ManagedRecord {
        let record = Record {
            names: self.spec.names.clone(),
            key_type: self.spec.options.key_type.as_str().to_owned(),
            profile: self.spec.options.profile.clone(),
            preferred_chain: match &self.spec.options.preferred_chain {
                Some(ChainPreference::RootName(name)) => Some(name.clone()),
                _ => None,
            },
            preferred_root_key: match &self.spec.options.preferred_chain {
                Some(ChainPreference::RootKey(spki)) => Some(crate::crypto::b64(spki)),
                _ => None,
            },
            challenge_types: self.spec.options.challenge_types.clone(),
            added_at_ms: to_ms(self.added_at),
            failures: self.failures.clone(),
        };
        ManagedRecord {
            id: self.spec.id(),
            value: serde_json::to_value(record).unwrap_or_default(),
        }
    }

    /// Reads a stored record back; a record that does not parse, or whose
    /// names do not give its id, is refused with the reason.
    pub(crate) fn from_record(record: &ManagedRecord) -> std::result::Result<Self, String> {
        let r: Record = serde_json::from_value(record.value.clone())
            .map_err(|e| format!("renewer record {:?}: {e}", record.id))?;
        let key_type = r
            .key_type
            .parse::<CertificateKeyType>()
            .map_err(|e| format!("renewer record {:?}: {e}", record.id))?;
        let preferred = match (r.preferred_chain, r.preferred_root_key) {
            (_, Some(key)) => Some(ChainPreference::RootKey(
                crate::crypto::b64_decode(&key).ok_or_else(|| {
                    format!(
                        "renewer record {:?}: the preferred root key is not base64url",
                        record.id
                    )
                })?,
            )),
            (Some(name), None) => Some(ChainPreference::RootName(name)),
            (None, None) => None,
        };
        let spec = CertificateSpec::new(&r.names)
            .map_err(|e| format!("renewer record {:?}: {e}", record.id))?
            .with_options(
                CertificateOptions::default()
                    .with_key_type(key_type)
                    .with_challenge_types(r.challenge_types)
                    .with_profile(r.profile)
                    .with_preferred_chain(preferred),
            );
        if spec.id() != record.id {
            return Err(format!(
                "renewer record {:?} holds the names of {:?}",
                record.id,
                spec.id()
            ));
        }
        Ok(Self {
            spec,
            added_at: from_ms(r.added_at_ms),
            failures: r.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_tampered_one_is_refused() {
        let stored = Stored {
            spec: CertificateSpec::new(["b.example", "A.example"])
                .unwrap()
                .with_options(
                    CertificateOptions::default()
                        .with_key_type(CertificateKeyType::P384)
                        .with_profile(Some("tlsserver".into())),
                ),
            added_at: from_ms(1_800_000_000_000),
            failures: Failures {
                consecutive: 2,
                retry_at_ms: 1_800_000_600_000,
                last_class: Some("caa".into()),
                last_error: Some("query timed out".into()),
            },
        };
        let record = stored.to_record();
        assert_eq!(record.id, "a.example,b.example");
        let back = Stored::from_record(&record).unwrap();
        assert_eq!(back.spec, stored.spec);
        assert_eq!(back.failures, stored.failures);
        assert_eq!(back.added_at, stored.added_at);

        let mut wrong = record.clone();
        wrong.id = "other.example".into();
        assert!(
            Stored::from_record(&wrong)
                .unwrap_err()
                .contains("holds the names")
        );
        let garbage = ManagedRecord {
            id: "x".into(),
            value: serde_json::json!({"names": "nope"}),
        };
        assert!(Stored::from_record(&garbage).is_err());
        assert!(CertificateSpec::new(Vec::<String>::new()).is_err());
        assert!(CertificateSpec::new(["not a name!"]).is_err());
    }
}
