//! The records a [`Store`](super::Store) keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::protocol::{Identifier, IdentifierSet};

/// What a record is keyed by: the normalized identifier set (sorted,
/// deduplicated, lower case, so two requests for the same names in any
/// order and case have the same key) and, for everything the issuer
/// writes, the CA (directory URL) and account it belongs to
/// ([`IdentifierSetKey::for_account`]): a store shared by Let's Encrypt staging and
/// production, or by two accounts, never hands one's certificate or journal
/// to the other.
///
/// Records written before keys carried the CA ([`IdentifierSetKey::new`], the
/// legacy form) stay readable: a store returns one for a scoped key only
/// when it provably belongs to that CA (a journal naming the same directory
/// and account; a certificate whose URL is on the directory's origin).
///
/// # Example
///
/// ```
/// use sturdy_acme::store::IdentifierSetKey;
/// use sturdy_acme::Identifier;
///
/// let a = IdentifierSetKey::for_account("https://ca/dir", "https://ca/acct/1", &[
///     Identifier::dns("B.example.")?,
///     Identifier::dns("a.example")?,
/// ]);
/// let b = IdentifierSetKey::for_account("https://ca/dir", "https://ca/acct/1", &[
///     Identifier::dns("a.example")?,
///     Identifier::dns("b.example")?,
/// ]);
/// assert_eq!(a, b); // one set, whatever the order and case
/// assert_eq!(a.ca().unwrap().directory, "https://ca/dir");
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentifierSetKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<CaScope>,
    identifiers: IdentifierSet,
}

/// The CA and account a [`IdentifierSetKey`] belongs to.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaScope {
    /// The CA's directory URL.
    pub directory: String,
    /// The account URL at that CA.
    pub account: String,
}

impl IdentifierSetKey {
    /// The key of a set of identifiers, without a CA (the legacy form).
    pub fn new(identifiers: &[Identifier]) -> Self {
        Self {
            ca: None,
            identifiers: IdentifierSet::new(identifiers),
        }
    }

    /// The key of a set of identifiers at one CA, for one account.
    pub fn for_account(
        directory: impl Into<String>,
        account: impl Into<String>,
        identifiers: &[Identifier],
    ) -> Self {
        Self {
            ca: Some(CaScope {
                directory: directory.into(),
                account: account.into(),
            }),
            ..Self::new(identifiers)
        }
    }

    /// The identifiers, sorted.
    pub fn identifiers(&self) -> &[Identifier] {
        self.identifiers.as_slice()
    }

    /// The identifier set.
    pub fn set(&self) -> &IdentifierSet {
        &self.identifiers
    }

    /// The CA and account, unless this is a legacy key.
    pub fn ca(&self) -> Option<&CaScope> {
        self.ca.as_ref()
    }

    /// The same identifier set without the CA: where records written before
    /// keys carried the CA live.
    pub fn legacy(&self) -> IdentifierSetKey {
        Self {
            ca: None,
            identifiers: self.identifiers.clone(),
        }
    }

    /// A stable, file-name-safe name for the key: the first name (readable)
    /// plus a hash of the whole set and, when scoped, of the CA and account
    /// (unique).
    pub fn file_stem(&self) -> String {
        let mut joined: String = self
            .identifiers
            .as_slice()
            .iter()
            .map(|i| format!("{}:{}", i.kind, i.value))
            .collect::<Vec<_>>()
            .join(",");
        if let Some(ca) = &self.ca {
            joined = format!(
                "{joined}\ndirectory:{}\naccount:{}",
                ca.directory, ca.account
            );
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, joined.as_bytes());
        let hash: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let first: String = self
            .identifiers
            .as_slice()
            .first()
            .map(|i| i.value.as_str())
            .unwrap_or("empty")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        format!("{first}-{hash}")
    }
}

impl fmt::Display for IdentifierSetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .identifiers
            .as_slice()
            .iter()
            .map(|i| i.value.as_str())
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// An account at one CA: its URL and key.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredAccount {
    /// The account URL (`kid`).
    pub url: String,
    /// The account key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// A key rollover in progress: the new key, saved before the key-change
    /// request is sent, so a crash between the CA accepting it and the
    /// store recording it cannot lose the key that then owns the account.
    /// The issuer resolves it on the next load (whichever key the CA says
    /// owns the account is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_pem: Option<Zeroizing<String>>,
}

impl fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccount")
            .field("url", &self.url)
            .field("rollover_pending", &self.next_key_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// That a stored certificate was revoked, and when (revoked through this
/// client, or found revoked in the CA's list).
///
/// Example: [`Issuer::revoke`](crate::Issuer::revoke).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// When the CA accepted the revocation (or said it was already revoked).
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
    /// The reason code sent (RFC 5280 §5.3.1), if one was; for a
    /// revocation found in the CA's list, the reason the list gives.
    pub reason: Option<u8>,
    /// Found in the CA's revocation list ([`crate::crl`]): revoked behind
    /// this client's back (a third party's key-compromise report, the
    /// CA's own finding), not through [`Issuer::revoke`](crate::Issuer::revoke).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub found_in_crl: bool,
}

/// An issued certificate with its key.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCertificate {
    /// The identifiers it is for.
    pub identifiers: Vec<Identifier>,
    /// The full chain, PEM, leaf first.
    pub chain_pem: String,
    /// The certificate's private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// The certificate URL at the CA.
    pub url: String,
    /// Validity start (stored as seconds since the Unix epoch).
    #[serde(with = "unix_seconds")]
    pub not_before: SystemTime,
    /// Validity end (stored as seconds since the Unix epoch).
    #[serde(with = "unix_seconds")]
    pub not_after: SystemTime,
    /// The serial number, hex.
    pub serial: String,
    /// Set once the certificate is revoked: the issuer then treats it as
    /// absent and issues a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revoked>,
    /// What the CA's renewal information (RFC 9773) last said, when it
    /// offers it: the issuer renews at its chosen time and asks again at
    /// `check_again_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<RenewalSchedule>,
    /// The profile it was ordered with: a spec that now wants another is
    /// renewed at once.
    #[serde(default, skip_serializing_if = "AskedProfile::is_unknown")]
    pub profile: AskedProfile,
}

/// The certificate profile an order asked for, as the issuer recorded it.
///
/// ```
/// use sturdy_acme::store::AskedProfile;
///
/// assert_eq!(AskedProfile::from(Some("tlsserver".to_owned())), AskedProfile::Named("tlsserver".into()));
/// assert_eq!(AskedProfile::from(None), AskedProfile::CaDefault);
/// assert!(AskedProfile::default().is_unknown());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AskedProfile {
    /// Not recorded (stored before 0.3.0, or by another tool): never a
    /// reason to renew.
    #[default]
    Unknown,
    /// No profile asked: the CA's default.
    CaDefault,
    /// This profile.
    Named(String),
}

impl AskedProfile {
    /// Whether it was not recorded.
    pub fn is_unknown(&self) -> bool {
        *self == Self::Unknown
    }
}

impl From<Option<String>> for AskedProfile {
    fn from(profile: Option<String>) -> Self {
        profile.map_or(Self::CaDefault, Self::Named)
    }
}

/// A certificate's renewal schedule from the CA's renewal information.
///
/// Example: [`Issuer::renewal_due_at`](crate::Issuer::renewal_due_at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalSchedule {
    /// The suggested window's start, when the CA's last answer was usable
    /// (`None`: it was not; the lifetime rule decides until the next check).
    #[serde(default, with = "opt_unix_seconds")]
    pub window_start: Option<SystemTime>,
    /// The window's end.
    #[serde(default, with = "opt_unix_seconds")]
    pub window_end: Option<SystemTime>,
    /// The time chosen in the window (uniformly at random, once per
    /// window).
    #[serde(default, with = "opt_unix_seconds")]
    pub renew_at: Option<SystemTime>,
    /// When to fetch the renewal information again (its `Retry-After`).
    #[serde(with = "unix_seconds")]
    pub check_again_at: SystemTime,
    /// The CA's `explanationURL`, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
    /// The CA asked for this certificate's replacement well before its
    /// lifetime rule would have renewed it: the window moved into the past
    /// (a mass revocation, an incident). It is renewed at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested_early: bool,
}

/// [`unix_seconds`] for an optional time.
mod opt_unix_seconds {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::protocol::timestamp;

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&timestamp::to_unix(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(timestamp::from_unix))
    }
}

/// A time as whole seconds since the Unix epoch, saturating at both ends
/// (a hostile or corrupted record cannot make it fail or panic).
mod unix_seconds {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::protocol::timestamp;

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(timestamp::to_unix(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(timestamp::from_unix(i64::deserialize(d)?))
    }
}

impl fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("identifiers", &self.identifiers)
            .field("url", &self.url)
            .field("serial", &self.serial)
            .field("revoked", &self.revoked)
            .field(
                "not_after",
                &crate::protocol::timestamp::DisplayTime(self.not_after),
            )
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// How far an in-flight order got; each step is written before the request
/// that depends on it.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStep {
    /// newOrder may have been sent; `order_url` may be unknown.
    Ordering,
    /// The order exists (`order_url` known).
    OrderCreated,
    /// Challenges were answered.
    ChallengesAnswered,
    /// The certificate key is saved; finalize may have been sent.
    Finalizing,
    /// The certificate URL is known.
    CertificateUrlKnown,
    /// The certificate was downloaded (`chain_pem` set), not yet stored.
    Downloaded,
}

/// The journal of one in-flight order.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Clone, Serialize, Deserialize)]
pub struct Journal {
    /// The directory URL of the CA.
    pub directory: String,
    /// The account URL the order belongs to.
    pub account_url: String,
    /// The identifiers.
    pub identifiers: Vec<Identifier>,
    /// The last step reached.
    pub step: JournalStep,
    /// The order URL, once known.
    pub order_url: Option<String>,
    /// The certificate key (PKCS#8 PEM), saved before finalize.
    pub key_pem: Option<Zeroizing<String>>,
    /// The certificate URL, once known.
    pub certificate_url: Option<String>,
    /// The downloaded chain, before it is stored as a certificate.
    pub chain_pem: Option<String>,
    /// When the journal was started (seconds since the Unix epoch).
    pub started_at: i64,
    /// newOrder attempts made for this journal.
    #[serde(default)]
    pub order_attempts: u32,
    /// When finalize (v1: new-cert) was about to be sent (seconds since the
    /// Unix epoch), once the `Finalizing` step is reached.
    #[serde(default)]
    pub finalize_sent_at: Option<i64>,
    /// How many times finalize (v1: new-cert) was about to be sent for this
    /// journal, counted durably before each send, so a crash loop cannot
    /// reset the count of requests whose outcome may be unknown.
    #[serde(default)]
    pub finalize_attempts: u32,
    /// The last error an attempt to finish this order stopped with, for
    /// status listings (the journal is kept, so the next attempt resumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<JournalError>,
    /// The certificate this journal's order will finalize was counted in
    /// the rate-limit ledger when its newOrder was reserved (in the same
    /// atomic ledger update as the order), so nodes sharing a store never
    /// order more than the limit between them; finalize then spends nothing
    /// more. False in journals written before reservations existed, which
    /// count the certificate at finalize.
    #[serde(default)]
    pub certificate_reserved: bool,
    /// The CertID of the certificate this order renews (RFC 9773
    /// `replaces`), sent with its newOrder when the CA offers renewal
    /// information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The renewal exemption the certificate reservation was made under
    /// (`"ari"`: nothing was spent; `"exact_set"`: the exact-set bucket
    /// only; absent: every certificate bucket), so a refund gives back
    /// only what was spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_as: Option<String>,
    /// The validation methods the CAA pre-flight left each identifier
    /// (RFC 8657 `validationmethods`), by identifier as the order names it
    /// (`*.` kept); an identifier absent here is not restricted. The
    /// challenge of each authorization is picked among these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caa_methods: BTreeMap<String, Vec<String>>,
    /// The profile the order asks for (recorded before newOrder, so the
    /// certificate it yields is stored with it).
    #[serde(default, skip_serializing_if = "AskedProfile::is_unknown")]
    pub profile: AskedProfile,
    /// Why the CA refused this journal's `replaces`
    /// ([`ReplacesRefusal::name`](crate::ReplacesRefusal::name)), once it
    /// did: its orders are sent without `replaces` from then on, so a
    /// refusal is never met twice for one issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_refused: Option<String>,
    /// The CA of a [`CaSet`](crate::ca_set::CaSet) this issuance went to
    /// and why (absent for an issuer used on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<super::CaChoice>,
}

impl Journal {
    /// A journal at its first step ([`JournalStep::Ordering`]) for an
    /// order of `identifiers` by `account_url` at `directory`, started at
    /// `started_at` (seconds since the Unix epoch); every other field
    /// empty.
    pub fn new(
        directory: impl Into<String>,
        account_url: impl Into<String>,
        identifiers: Vec<Identifier>,
        started_at: i64,
    ) -> Self {
        Self {
            directory: directory.into(),
            account_url: account_url.into(),
            identifiers,
            step: JournalStep::Ordering,
            order_url: None,
            key_pem: None,
            certificate_url: None,
            chain_pem: None,
            started_at,
            order_attempts: 0,
            finalize_sent_at: None,
            finalize_attempts: 0,
            last_error: None,
            certificate_reserved: false,
            replaces: None,
            reserved_as: None,
            caa_methods: BTreeMap::new(),
            profile: AskedProfile::Unknown,
            replaces_refused: None,
            chosen: None,
        }
    }
}

/// An error recorded in a [`Journal`].
///
/// Example: [`Issuer::certificates`](crate::Issuer::certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalError {
    /// When it happened (seconds since the Unix epoch).
    pub at: i64,
    /// Its class ([`ErrorClass::name`](crate::ErrorClass::name)).
    pub class: String,
    /// The error's message (never key material).
    pub message: String,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("directory", &self.directory)
            .field("identifiers", &self.identifiers)
            .field("step", &self.step)
            .field("order_url", &self.order_url)
            .field("certificate_url", &self.certificate_url)
            .field("has_key", &self.key_pem.is_some())
            .field("has_chain", &self.chain_pem.is_some())
            .field("last_error", &self.last_error)
            .field("chosen", &self.chosen)
            .finish_non_exhaustive()
    }
}

/// The last directory document a CA served, as
/// [`ClientBuilder::build_remembered`](crate::ClientBuilder::build_remembered)
/// keeps it: a client built while the CA is down starts from it (and
/// finds the CA down at its first request) instead of failing to exist,
/// so the journals and certificates of that CA stay readable.
///
/// Example: [`ClientBuilder::build_remembered`](crate::ClientBuilder::build_remembered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    /// The directory's body, as the CA served it (JSON).
    pub document: String,
    /// When it was fetched, by the clock of the machine that fetched it
    /// (for people reading it; never compared with another clock).
    #[serde(with = "unix_seconds")]
    pub fetched_at: SystemTime,
}

/// The client-side rate-limit ledger, as the issuer persists it: an opaque
/// JSON document the issuer's ledger reads and writes.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitRecord {
    /// The ledger's state.
    pub state: serde_json::Value,
}

/// One certificate a [`Renewer`](crate::renewer::Renewer) keeps valid, as
/// the store holds it: an id and the renewer's opaque JSON record.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedRecord {
    /// Its identifier set, canonical (sorted, lower-case names joined by
    /// commas): unique per directory URL.
    pub id: String,
    /// The renewer's record.
    pub value: serde_json::Value,
}

/// A held lease.
///
/// Its expiry is judged by two clocks that never meet: the store judges
/// `until` by its own clock (a database's `now()`), and the holder judges
/// [`Lease::validity`] on its own monotonic clock. The holder never
/// compares `until` with its time of day, so a node whose clock is off
/// from the database's neither loses its leases nor keeps one too long.
///
/// Example: [`FileStore`](super::FileStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease name.
    pub name: String,
    /// The holder.
    pub holder: String,
    /// Expiry by the store's own clock, seconds since the Unix epoch: for
    /// the store's own judgement and for display. A holder never compares
    /// it with its clock; it reads [`Lease::validity`].
    pub until: u64,
    /// The fencing token: strictly greater every time the lease is
    /// acquired (by anyone), the same while it is renewed. A holder whose
    /// token is no longer the current one has lost the lease.
    pub token: u64,
    /// The host of the process holding it (a store may use it to free the
    /// lease of a crashed process on the same host before it expires).
    #[serde(default)]
    pub host: String,
    /// The process id of the holder (0: unknown).
    #[serde(default)]
    pub pid: u32,
    /// The holder process's start time (clock ticks since boot; 0:
    /// unknown), so a reused PID is not taken for the holder.
    #[serde(default)]
    pub start_time: u64,
    /// The holder's PID namespace (empty: unknown); a PID is only looked up
    /// in the namespace it belongs to.
    #[serde(default)]
    pub pid_ns: String,
    /// How long the lease is still valid, as the store that returned it
    /// said: the time left by the store's own clock, counted on this
    /// process's monotonic clock from when the request was sent. Set by
    /// [`Store::acquire_lease`](super::Store::acquire_lease) and
    /// [`Store::renew_lease`](super::Store::renew_lease) (with
    /// [`Lease::valid_for`]); never stored (`None` in a lease read from a
    /// record).
    #[serde(skip)]
    pub validity: Option<LeaseValidity>,
}

/// How long a [`Lease`] is valid, on the holder's monotonic clock: the
/// time the store said was left (computed by the store's own clock, e.g.
/// `until - now()` in SQL), counted from when the request that got the
/// answer was sent. The answer was true at some moment between sending
/// and receiving, so counting from the send is the conservative start: the
/// lease never looks valid to its holder after the store deems it expired,
/// whatever the two machines' clocks say.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sturdy_acme::store::LeaseValidity;
///
/// let sent = Instant::now();
/// let v = LeaseValidity::new(Duration::from_secs(30), sent);
/// assert!(!v.expired_at(sent + Duration::from_secs(29)));
/// assert!(v.expired_at(sent + Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseValidity {
    remaining: Duration,
    sent: Instant,
}

impl LeaseValidity {
    /// `remaining` (by the store's clock) counted from `sent`, the instant
    /// the request that got it was sent.
    pub fn new(remaining: Duration, sent: Instant) -> Self {
        Self { remaining, sent }
    }

    /// The time left that the store reported.
    pub fn remaining(&self) -> Duration {
        self.remaining
    }

    /// The instant after which the holder must take the lease as expired.
    pub fn deadline(&self) -> Instant {
        self.sent
            .checked_add(self.remaining)
            .unwrap_or(self.sent + Duration::from_secs(365 * 24 * 3600))
    }

    /// Whether the lease is expired at `now` (monotonic).
    pub fn expired_at(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// Whether the lease is expired now.
    pub fn expired(&self) -> bool {
        self.expired_at(Instant::now())
    }
}

impl Lease {
    /// This lease with its validity: `remaining` by the store's own clock,
    /// counted from `sent` (when the request was sent). For stores.
    pub fn valid_for(mut self, remaining: Duration, sent: Instant) -> Self {
        self.validity = Some(LeaseValidity::new(remaining, sent));
        self
    }
}
