//! [`CertificateResolver`]: SNI to certificate, read without a lock (see
//! the [module docs](super)).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::crypto::challenge::ACME_TLS_ALPN_PROTOCOL;
use crate::store::{IdentifierSetKey, StoredCertificate, ValidationCertificate};

/// A name and the certificate that now serves it (`None`: none).
type Winner = (String, Option<Arc<CertifiedKey>>);

/// How many shards the table is split into.
const SHARDS: usize = 256;

/// Why a stored certificate cannot be served.
///
/// Example: [`CertificateResolver::apply`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The chain or the key does not parse, or rustls refuses the key.
    /// Names the part, never its contents.
    #[error("the certificate for {key} cannot be served: {reason}")]
    Unusable {
        /// The certificate's key in the store (a validation certificate's name).
        key: String,
        /// What is wrong (which part).
        reason: String,
    },
}

/// One shard: names (and `*.` wildcards) to the certificate serving them.
#[derive(Default)]
struct Shard {
    names: HashMap<String, Arc<CertifiedKey>>,
}

/// A certificate the resolver holds.
struct Held {
    names: Vec<String>,
    certified: Arc<CertifiedKey>,
    not_before: SystemTime,
}

/// Called with a handshake's name that no certificate serves (see
/// [`CertificateResolver::on_unknown_name`]).
type UnknownName = Box<dyn Fn(&str) + Send + Sync>;

/// What only writers touch (under a mutex, never on the handshake path).
#[derive(Default)]
struct Writer {
    by_key: HashMap<IdentifierSetKey, Held>,
    /// Every certificate that covers a name.
    by_name: HashMap<String, Vec<IdentifierSetKey>>,
}

/// A rustls server certificate resolver over the certificates an edge
/// serves.
///
/// Example: [the module docs](super).
pub struct CertificateResolver {
    shards: Box<[ArcSwap<Shard>]>,
    default: ArcSwapOption<CertifiedKey>,
    unknown: ArcSwapOption<UnknownName>,
    /// Whether a first batch was applied: before it, every name would look
    /// unknown (an edge starting up), so none is reported.
    loaded: std::sync::atomic::AtomicBool,
    /// tls-alpn-01 validation certificates by SNI name (few, short-lived:
    /// the map is copied on each change).
    validations: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    writer: Mutex<Writer>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for CertificateResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateResolver")
            .field("certificates", &self.certificates())
            .field("has_default", &self.default.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for CertificateResolver {
    fn default() -> Self {
        Self::new()
    }
}

/// One change for [`CertificateResolver::apply`]: the certificate now
/// stored for a key (`None`: none, or one not to serve).
pub type Update = (IdentifierSetKey, Option<StoredCertificate>);

impl CertificateResolver {
    /// An empty resolver (no default: an unknown name fails the handshake).
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| ArcSwap::from_pointee(Shard::default()))
                .collect(),
            default: ArcSwapOption::empty(),
            unknown: ArcSwapOption::empty(),
            loaded: std::sync::atomic::AtomicBool::new(false),
            validations: ArcSwap::from_pointee(HashMap::new()),
            writer: Mutex::new(Writer::default()),
            hasher: Default::default(),
        }
    }

    /// Serves `certificate` to a handshake whose name nothing else serves
    /// (or with no SNI).
    pub fn set_default(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> Result<(), ServeError> {
        self.default.store(Some(certified(key, certificate)?));
        Ok(())
    }

    /// Calls `f` (on the handshake's thread: it must not block) with each
    /// handshake name that no certificate serves, before the default
    /// answers it: what [`OnDemand`](super::OnDemand) listens to. Only once
    /// a first batch was applied ([`apply`](Self::apply); the
    /// [`FeedFollower`](super::FeedFollower)'s snapshot): an edge starting
    /// up does not take every name it is about to load for unknown.
    pub fn on_unknown_name(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.unknown.store(Some(Arc::new(Box::new(f))));
    }

    /// The certificate a handshake for `name` gets: exact, then wildcard,
    /// then the default (after telling [`on_unknown_name`](Self::on_unknown_name)).
    pub fn resolve_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = normalize(name);
        if let Some(found) = self.find(&name) {
            return Some(found);
        }
        if self.loaded.load(std::sync::atomic::Ordering::Acquire)
            && let Some(unknown) = &*self.unknown.load()
        {
            unknown(&name);
        }
        self.default.load_full()
    }

    /// Whether a certificate (not the default) serves `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.find(&normalize(name)).is_some()
    }

    /// Exact, then wildcard.
    fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(found) = self.lookup(name) {
            return Some(found);
        }
        let (_, parent) = name.split_once('.')?;
        if !parent.contains('.') {
            return None;
        }
        self.lookup(&format!("*.{parent}"))
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.shards[self.shard_of(name)]
            .load()
            .names
            .get(name)
            .cloned()
    }

    fn shard_of(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % SHARDS
    }

    /// Answers the CA's `acme-tls/1` handshakes for `name` with
    /// `validation` (`None`: stops answering them). A handshake offering
    /// `acme-tls/1` only ever gets a validation certificate (none: it
    /// fails), and no other handshake ever gets one. The server's
    /// `alpn_protocols` must include `acme-tls/1`.
    pub fn set_validation(
        &self,
        name: &str,
        validation: Option<&ValidationCertificate>,
    ) -> Result<(), ServeError> {
        let name = normalize(name);
        let certified = validation
            .map(|v| certified_from(&name, &v.certificate_pem, &v.key_pem, false))
            .transpose()?;
        let _one = self.lock();
        let mut map = HashMap::clone(&self.validations.load());
        match certified {
            Some(c) => map.insert(name, c),
            None => map.remove(&name),
        };
        self.validations.store(Arc::new(map));
        Ok(())
    }

    /// The names it answers `acme-tls/1` handshakes for.
    pub fn validations(&self) -> Vec<String> {
        let mut names: Vec<String> = self.validations.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// How many certificates it holds (the default not counted).
    pub fn certificates(&self) -> usize {
        self.lock().by_key.len()
    }

    /// How many names it serves.
    pub fn names(&self) -> usize {
        self.lock().by_name.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys of the certificates it holds.
    pub(super) fn keys(&self) -> Vec<IdentifierSetKey> {
        self.lock().by_key.keys().cloned().collect()
    }

    /// Applies a batch of changes: each key's certificate installed,
    /// replaced, or (`None`, or revoked) removed; every touched shard is
    /// swapped once. A certificate that cannot be served is left out and
    /// returned with why (its key's older certificate is removed too: it
    /// was replaced).
    pub fn apply(&self, updates: impl IntoIterator<Item = Update>) -> Vec<ServeError> {
        let mut refused = Vec::new();
        let mut writer = self.lock();
        let mut touched: Vec<String> = Vec::new();
        for (key, certificate) in updates {
            let held = match certificate.filter(|c| c.revoked.is_none()) {
                Some(c) => match certified(&key, &c) {
                    Ok(certified) => Some(Held {
                        names: names_of(&c),
                        certified,
                        not_before: c.not_before,
                    }),
                    Err(e) => {
                        refused.push(e);
                        None
                    }
                },
                None => None,
            };
            if let Some(old) = writer.by_key.remove(&key) {
                for name in &old.names {
                    if let Some(keys) = writer.by_name.get_mut(name) {
                        keys.retain(|k| k != &key);
                        if keys.is_empty() {
                            writer.by_name.remove(name);
                        }
                    }
                }
                touched.extend(old.names);
            }
            if let Some(held) = held {
                for name in &held.names {
                    writer
                        .by_name
                        .entry(name.clone())
                        .or_default()
                        .push(key.clone());
                }
                touched.extend(held.names.iter().cloned());
                writer.by_key.insert(key, held);
            }
        }
        touched.sort();
        touched.dedup();
        let mut per_shard: HashMap<usize, Vec<Winner>> = HashMap::new();
        for name in touched {
            // The certificate issued last serves the name.
            let winner = writer.by_name.get(&name).and_then(|keys| {
                keys.iter()
                    .filter_map(|k| writer.by_key.get(k))
                    .max_by_key(|h| h.not_before)
                    .map(|h| Arc::clone(&h.certified))
            });
            per_shard
                .entry(self.shard_of(&name))
                .or_default()
                .push((name, winner));
        }
        for (shard, changes) in per_shard {
            let mut names = self.shards[shard].load().names.clone();
            for (name, winner) in changes {
                match winner {
                    Some(c) => names.insert(name, c),
                    None => names.remove(&name),
                };
            }
            self.shards[shard].store(Arc::new(Shard { names }));
        }
        drop(writer);
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        refused
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = client_hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN_PROTOCOL));
        if acme {
            let name = normalize(client_hello.server_name()?);
            return self.validations.load().get(&name).cloned();
        }
        match client_hello.server_name() {
            Some(name) => self.resolve_name(name),
            None => self.default.load_full(),
        }
    }
}

/// The names a certificate serves: its DNS identifiers, normalized.
fn names_of(certificate: &StoredCertificate) -> Vec<String> {
    let mut names: Vec<String> = certificate
        .identifiers
        .iter()
        .filter(|id| id.kind == "dns")
        .map(|id| normalize(&id.value))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The chain and key, parsed once into what rustls signs with.
fn certified(
    key: &IdentifierSetKey,
    certificate: &StoredCertificate,
) -> Result<Arc<CertifiedKey>, ServeError> {
    certified_from(
        &key.to_string(),
        &certificate.chain_pem,
        &certificate.key_pem,
        true,
    )
}

/// [`certified`] from the PEM texts; `label` names them in an error.
/// `strict`: a leaf whose key cannot be compared with the private key is
/// refused too (a served certificate webpki cannot parse would fail every
/// handshake); a tls-alpn-01 certificate's critical `acmeIdentifier`
/// extension makes webpki refuse it, so only a proven mismatch refuses one.
fn certified_from(
    label: &str,
    chain_pem: &str,
    key_pem: &str,
    strict: bool,
) -> Result<Arc<CertifiedKey>, ServeError> {
    let unusable = |reason: &str| ServeError::Unusable {
        key: label.to_owned(),
        reason: reason.to_owned(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| unusable("its chain is not PEM certificates"))?;
    if chain.is_empty() {
        return Err(unusable("its chain holds no certificate"));
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| unusable("its private key is not a PEM private key"))?;
    let signing = crate::crypto::tls_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|_| unusable("rustls refuses its private key"))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(unusable("its private key does not match its certificate"));
        }
        Err(_) if strict => {
            return Err(unusable(
                "its leaf cannot be parsed to compare with its private key",
            ));
        }
        Err(_) => {}
    }
    Ok(Arc::new(certified))
}
