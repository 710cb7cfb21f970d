//! The client-side rate-limit ledger: the CA's published limits counted
//! locally (token buckets on the wall clock, persisted in the store), plus
//! every server 429 until its Retry-After, so a request that would exceed a
//! limit is refused without being sent, across restarts.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::limits::{Headroom, Limit, RateLimits, registered_domain};
use crate::error::{Error, RateLimitScope};
use crate::protocol::timestamp;
use crate::protocol::{Identifier, IdentifierSet};
use crate::store::LedgerEntries;
use crate::store::ledger::block_key;
use crate::wait::Wait;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// A 429 the CA answered, remembered until `retry_at_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Block {
    account: String,
    /// "account", "set:<names>", "domain:<d>", "identifier:<n>".
    key: String,
    retry_at_ms: u64,
    reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    buckets: BTreeMap<String, Bucket>,
    #[serde(default)]
    blocks: Vec<Block>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// The ledger's name for an exact identifier set (kept as 0.1 wrote it).
fn set_key(ids: &[Identifier]) -> String {
    format!("set:{}", IdentifierSet::new(ids))
}

/// Which of Let's Encrypt's renewal exemptions an order has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Exemption {
    /// None: every limit applies.
    #[default]
    None,
    /// A renewal of the exact same identifier set within 120 days: exempt
    /// from new orders per account and certificates per registered domain
    /// (still counted against the exact set and failed authorizations).
    ExactSetRenewal,
    /// An ARI renewal (`replaces` naming a not-yet-replaced certificate,
    /// within its suggested window): exempt from every limit.
    Ari,
}

impl Exemption {
    /// The name a journal records it by ([`Journal::reserved_as`](crate::store::Journal::reserved_as)).
    pub(crate) fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::ExactSetRenewal => Some("exact_set"),
            Self::Ari => Some("ari"),
        }
    }

    /// The exemption a journal recorded (unknown names count as none:
    /// everything was spent).
    pub(crate) fn from_name(name: Option<&str>) -> Self {
        match name {
            Some("ari") => Self::Ari,
            Some("exact_set") => Self::ExactSetRenewal,
            _ => Self::None,
        }
    }
}

/// An identifier's name as its failed-authorization bucket and 429
/// scope know it: without `*.` or a trailing dot, lower case.
fn authz_name(value: &str) -> String {
    value
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The registered domains of `ids`, sorted, each once.
fn domains_of(ids: &[Identifier]) -> Vec<String> {
    let mut domains: Vec<String> = ids.iter().map(|i| registered_domain(&i.value)).collect();
    domains.sort();
    domains.dedup();
    domains
}

/// A refusal: which limit, until when, and what it applies to.
struct Refusal {
    limit: String,
    scope: RateLimitScope,
    retry_at: SystemTime,
    reason: String,
}

/// How long after newOrder the CA may count the certificate (at
/// issuance): the refill the ledger keeps in hand on certificate buckets.
const SPEND_LAG: Duration = Duration::from_secs(60);

/// The ledger of one account at one CA, over the entries an update read
/// (see [`store::ledger`](crate::store::ledger)): each bucket an entry
/// under its key, the 429s remembered for one account and scope one entry
/// ([`block_key`]).
#[derive(Debug)]
pub(crate) struct RateLedger {
    limits: RateLimits,
    state: State,
    /// The entries as read, to write back only what changed.
    read: LedgerEntries,
    /// The keys read (`None`: every entry): only these are written, and
    /// in tests a bucket outside them is a bug in the caller's keys.
    scope: Option<Vec<String>>,
}

impl RateLedger {
    /// The entries an update for `ids` under `account` may read or write:
    /// the account's new orders, the exact set, each registered domain,
    /// each identifier's failed authorizations, and the 429s remembered
    /// for each of these scopes.
    pub(crate) fn keys_for(account: &str, ids: &[Identifier]) -> Vec<String> {
        let set = set_key(ids);
        let mut keys = vec![
            format!("orders:{account}"),
            block_key(account, "account"),
            block_key(account, &set),
            set,
        ];
        for d in domains_of(ids) {
            let domain = format!("domain:{d}");
            keys.push(block_key(account, &domain));
            keys.push(domain);
        }
        for id in ids {
            let name = authz_name(&id.value);
            keys.push(format!("authzfail:{account}:{name}"));
            keys.push(block_key(account, &format!("identifier:{name}")));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// A ledger from the entries read for `scope` (`None`: every entry).
    ///
    /// A remembered 429 is clamped to the horizon here too, so a ledger
    /// written before dates were clamped (or by a hostile CA's answer)
    /// never blocks longer than the horizon, nor panics when printed. An
    /// entry that does not parse is read as absent (and rewritten).
    pub(crate) fn from_entries(
        limits: RateLimits,
        entries: LedgerEntries,
        scope: Option<&[String]>,
        now: SystemTime,
    ) -> Self {
        let mut state = State::default();
        for (key, value) in &entries {
            if key.starts_with("block:") {
                if let Ok(blocks) = Vec::<Block>::deserialize(value) {
                    state.blocks.extend(blocks);
                }
            } else if let Ok(bucket) = Bucket::deserialize(value) {
                state.buckets.insert(key.clone(), bucket);
            }
        }
        let horizon = limits.block_horizon();
        // Expired blocks are dropped (clamping them to "now" would extend
        // them past a check made just before this load).
        state.blocks.retain(|b| b.retry_at_ms > ms(now));
        for block in &mut state.blocks {
            block.retry_at_ms = ms(timestamp::clamp(from_ms(block.retry_at_ms), now, horizon));
        }
        Self {
            limits,
            state,
            read: entries,
            scope: scope.map(<[String]>::to_vec),
        }
    }

    /// A ledger from a whole document (either form), for tests.
    #[cfg(test)]
    pub(crate) fn load(
        limits: RateLimits,
        persisted: Option<&serde_json::Value>,
        now: SystemTime,
    ) -> Self {
        let entries = persisted
            .map(crate::store::ledger::entries_from_document)
            .unwrap_or_default();
        Self::from_entries(limits, entries, None, now)
    }

    /// Every entry as the ledger stands, for tests.
    #[cfg(test)]
    pub(crate) fn to_value(&self, now: SystemTime) -> serde_json::Value {
        let mut all = self.read.clone();
        crate::store::ledger::apply(&mut all, self.changed_entries(now));
        serde_json::json!({ "entries": all })
    }

    /// The entries to write: those in scope whose value changed. A bucket
    /// refilled to its burst is deleted (a missing bucket starts full),
    /// so the ledger holds only what was spent within the limits' windows;
    /// so is a scope whose 429s all expired.
    pub(crate) fn changed_entries(&self, now: SystemTime) -> LedgerEntries {
        let mut now_held = LedgerEntries::new();
        for (key, bucket) in &self.state.buckets {
            let spent = self.limit_of(key).is_none_or(|limit| {
                let elapsed = Duration::from_millis(ms(now).saturating_sub(bucket.at_ms));
                limit.refilled(bucket.tokens, elapsed) < f64::from(limit.burst)
            });
            if spent {
                now_held.insert(
                    key.clone(),
                    serde_json::to_value(bucket).expect("a bucket serializes"),
                );
            }
        }
        let mut blocks: BTreeMap<String, Vec<&Block>> = BTreeMap::new();
        for block in &self.state.blocks {
            blocks
                .entry(block_key(&block.account, &block.key))
                .or_default()
                .push(block);
        }
        for (key, list) in blocks {
            now_held.insert(key, serde_json::to_value(list).expect("blocks serialize"));
        }
        let in_scope = |key: &str| {
            self.scope
                .as_ref()
                .is_none_or(|scope| scope.iter().any(|k| k == key))
        };
        let mut changed = LedgerEntries::new();
        for key in self.read.keys().chain(now_held.keys()) {
            if changed.contains_key(key) {
                continue;
            }
            if !in_scope(key) {
                // `touch` makes this a failed test; never a silent loss.
                tracing::warn!(target: "sturdy_acme::ledger", %key, "a ledger entry outside the keys read is not written");
                continue;
            }
            let new = now_held
                .get(key)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let old = self
                .read
                .get(key)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            if new != old {
                changed.insert(key.clone(), new);
            }
        }
        changed
    }

    /// Checks (in tests) that `key` was read: a bucket the update did not
    /// read would be taken as full and never written.
    fn touch(&self, key: &str) {
        debug_assert!(
            self.scope
                .as_ref()
                .is_none_or(|scope| scope.iter().any(|k| k == key)),
            "ledger key {key:?} outside the keys read: {:?}",
            self.scope
        );
    }

    /// The limit a bucket key counts against.
    fn limit_of(&self, key: &str) -> Option<Limit> {
        let kind = key.split(':').next().unwrap_or_default();
        match kind {
            "orders" => self.limits.new_orders_per_account,
            "set" => self.limits.duplicate_certificates,
            "domain" => self.limits.certificates_per_domain,
            "authzfail" => self.limits.failed_authorizations,
            _ => None,
        }
    }

    fn tokens(&mut self, key: &str, limit: &Limit, now: SystemTime) -> f64 {
        self.touch(key);
        let b = self.state.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            at_ms: ms(now),
        });
        // A refill that starts later (see `spend`) has not started yet.
        if b.at_ms > ms(now) {
            return b.tokens;
        }
        let elapsed = Duration::from_millis(ms(now).saturating_sub(b.at_ms));
        b.tokens = limit.refilled(b.tokens, elapsed);
        b.at_ms = ms(now);
        b.tokens
    }

    fn check_bucket(
        &mut self,
        key: &str,
        limit: Option<Limit>,
        name: &str,
        scope: RateLimitScope,
        now: SystemTime,
        worst: &mut Option<Refusal>,
    ) {
        let Some(limit) = limit else { return };
        let tokens = self.tokens(key, &limit, now);
        if let Some(wait) = limit.wait_for_token(tokens) {
            // A refill that has not started yet (see `spend`) starts later.
            let not_yet = self
                .state
                .buckets
                .get(key)
                .map_or(0, |b| b.at_ms.saturating_sub(ms(now)));
            let retry_at = now + Duration::from_millis(not_yet) + wait;
            if worst.as_ref().is_none_or(|w| retry_at > w.retry_at) {
                *worst = Some(Refusal {
                    limit: name.to_owned(),
                    scope,
                    retry_at,
                    reason: format!(
                        "{name}: {} per {:?} already used (counted locally)",
                        limit.burst, limit.period
                    ),
                });
            }
        }
    }

    /// The level of every bucket that has been spent from, and of the
    /// account's new-order bucket (full when never spent).
    pub(crate) fn headroom(&mut self, account: &str, now: SystemTime) -> Vec<Headroom> {
        let mut keys: Vec<String> = self.state.buckets.keys().cloned().collect();
        let orders = format!("orders:{account}");
        if !keys.contains(&orders) {
            keys.push(orders);
        }
        keys.sort();
        keys.into_iter()
            .filter_map(|key| {
                let limit = self.limit_of(&key)?;
                let tokens = self.tokens(&key, &limit, now);
                Some(Headroom {
                    bucket: key,
                    limit,
                    tokens,
                })
            })
            .collect()
    }

    /// Refuses a newOrder for `ids` that would exceed a limit, or that a
    /// remembered 429 still covers.
    #[cfg(test)]
    pub(crate) fn check_new_order(
        &mut self,
        account: &str,
        ids: &[Identifier],
        now: SystemTime,
    ) -> Result<(), Error> {
        self.check(account, ids, now, true)
    }

    /// Reserves a newOrder for `ids`: refused as [`Self::check_new_order`]
    /// refuses, else the order is counted and, with `certificate`, so is
    /// the certificate it is for (both buckets it spends), in one step, so
    /// that a ledger updated atomically in a shared store is never
    /// overspent by concurrent issuers. Without `certificate` (the journal
    /// already holds a reservation) the certificate buckets are neither
    /// checked nor spent.
    pub(crate) fn reserve_new_order(
        &mut self,
        account: &str,
        ids: &[Identifier],
        now: SystemTime,
        certificate: bool,
        exemption: Exemption,
    ) -> Result<(), Error> {
        match exemption {
            Exemption::Ari => Ok(()),
            Exemption::ExactSetRenewal => {
                let saved = self.limits.clone();
                self.limits.new_orders_per_account = None;
                self.limits.certificates_per_domain = None;
                let result =
                    self.reserve_new_order(account, ids, now, certificate, Exemption::None);
                self.limits = saved;
                result
            }
            Exemption::None => {
                self.check(account, ids, now, certificate)?;
                self.spend_order(account, now);
                if certificate {
                    self.spend_certificate(ids, now);
                }
                Ok(())
            }
        }
    }

    /// Gives back a reserved certificate that was never finalized (its
    /// order failed validation): one token to each bucket it spent under
    /// `exemption`, never above the burst.
    pub(crate) fn refund_certificate(
        &mut self,
        ids: &[Identifier],
        now: SystemTime,
        exemption: Exemption,
    ) {
        let (dup, per_domain) = (
            self.limits.duplicate_certificates,
            self.limits.certificates_per_domain,
        );
        if exemption == Exemption::Ari {
            return;
        }
        self.refund(&set_key(ids), dup, now);
        if exemption == Exemption::ExactSetRenewal {
            return;
        }
        for d in domains_of(ids) {
            self.refund(&format!("domain:{d}"), per_domain, now);
        }
    }

    /// Counts a certificate (and, with `order`, its order) under
    /// `exemption`, without checking: what an order the CA did not treat
    /// as the renewal it was reserved as spends after all.
    pub(crate) fn spend_as(
        &mut self,
        account: &str,
        ids: &[Identifier],
        now: SystemTime,
        exemption: Exemption,
        order: bool,
    ) {
        match exemption {
            Exemption::Ari => {}
            Exemption::ExactSetRenewal => {
                let dup = self.limits.duplicate_certificates;
                self.spend(&set_key(ids), dup, now);
            }
            Exemption::None => {
                if order {
                    self.spend_order(account, now);
                }
                self.spend_certificate(ids, now);
            }
        }
    }

    fn refund(&mut self, key: &str, limit: Option<Limit>, now: SystemTime) {
        if let Some(limit) = limit {
            let tokens = self.tokens(key, &limit, now);
            if let Some(b) = self.state.buckets.get_mut(key) {
                b.tokens = (tokens + 1.0).min(f64::from(limit.burst));
            }
        }
    }

    fn check(
        &mut self,
        account: &str,
        ids: &[Identifier],
        now: SystemTime,
        certificate: bool,
    ) -> Result<(), Error> {
        let mut worst: Option<Refusal> = None;
        let limits = self.limits.clone();
        self.check_bucket(
            &format!("orders:{account}"),
            limits.new_orders_per_account,
            "new orders per account",
            RateLimitScope::Account,
            now,
            &mut worst,
        );
        let domains = domains_of(ids);
        if certificate {
            self.check_bucket(
                &set_key(ids),
                limits.duplicate_certificates,
                "duplicate certificates (exact set of identifiers)",
                RateLimitScope::ExactSet,
                now,
                &mut worst,
            );
            for d in &domains {
                self.check_bucket(
                    &format!("domain:{d}"),
                    limits.certificates_per_domain,
                    "certificates per registered domain",
                    RateLimitScope::RegisteredDomain(d.clone()),
                    now,
                    &mut worst,
                );
            }
        }
        for id in ids {
            let name = authz_name(&id.value);
            self.check_bucket(
                &format!("authzfail:{account}:{name}"),
                limits.failed_authorizations,
                "failed authorizations per identifier",
                RateLimitScope::Identifier(name),
                now,
                &mut worst,
            );
        }
        // Server 429s still in force.
        let now_ms = ms(now);
        self.state.blocks.retain(|b| b.retry_at_ms > now_ms);
        let set = set_key(ids);
        for b in &self.state.blocks {
            if b.account != account {
                continue;
            }
            let applies = b.key == "account"
                || b.key == set
                || b.key
                    .strip_prefix("domain:")
                    .is_some_and(|d| domains.iter().any(|x| x == d))
                || b.key
                    .strip_prefix("identifier:")
                    .is_some_and(|n| ids.iter().any(|i| authz_name(&i.value) == authz_name(n)));
            let retry_at = from_ms(b.retry_at_ms);
            if applies && worst.as_ref().is_none_or(|w| retry_at > w.retry_at) {
                worst = Some(Refusal {
                    limit: "the CA's 429".into(),
                    scope: RateLimitScope::Unknown,
                    retry_at,
                    reason: b.reason.clone(),
                });
            }
        }
        match worst {
            None => Ok(()),
            Some(r) => Err(Error::RateLimitedLocally {
                retry_at: r.retry_at,
                limit: r.limit,
                scope: r.scope,
                reason: r.reason,
            }),
        }
    }

    fn spend(&mut self, key: &str, limit: Option<Limit>, now: SystemTime) {
        if let Some(limit) = limit {
            let full = self.tokens(key, &limit, now) >= f64::from(limit.burst) - 1e-9;
            // A certificate bucket is spent here at newOrder but by the CA
            // at issuance; a full bucket starts refilling there only then.
            // Its refill starts SPEND_LAG later here, so our count is
            // never ahead of the CA's.
            let lagged = full && (key.starts_with("domain:") || key.starts_with("set:"));
            if let Some(b) = self.state.buckets.get_mut(key) {
                b.tokens = (b.tokens - 1.0).max(0.0);
                if lagged {
                    b.at_ms = ms(now + SPEND_LAG);
                }
            }
        }
    }

    /// Counts a newOrder request.
    pub(crate) fn spend_order(&mut self, account: &str, now: SystemTime) {
        let limit = self.limits.new_orders_per_account;
        self.spend(&format!("orders:{account}"), limit, now);
    }

    /// Counts a certificate (at finalize: counted even if the answer is lost).
    pub(crate) fn spend_certificate(&mut self, ids: &[Identifier], now: SystemTime) {
        let (dup, per_domain) = (
            self.limits.duplicate_certificates,
            self.limits.certificates_per_domain,
        );
        self.spend(&set_key(ids), dup, now);
        for d in domains_of(ids) {
            self.spend(&format!("domain:{d}"), per_domain, now);
        }
    }

    /// Counts a failed authorization.
    pub(crate) fn spend_failed_authorization(
        &mut self,
        account: &str,
        identifier: &str,
        now: SystemTime,
    ) {
        let limit = self.limits.failed_authorizations;
        let name = authz_name(identifier);
        self.spend(&format!("authzfail:{account}:{name}"), limit, now);
    }

    /// Remembers the CA's 429 for a request about `ids` (its [`Wait`]),
    /// for every node of the fleet, until its time is up on the ledger's
    /// calendar (`now`, the clock the wait was read on).
    pub(crate) fn record_server_limit(
        &mut self,
        account: &str,
        ids: &[Identifier],
        wait: &Wait,
        now: SystemTime,
    ) {
        let Some(scope) = &wait.limit else {
            return;
        };
        // The scope as this set's keys name it (`keys_for`): the CA's
        // words may name a domain its public-suffix list cuts elsewhere,
        // or end with a dot. A scope none of the set's names matches is
        // remembered for the exact set, never dropped.
        let key = match scope {
            RateLimitScope::Account => "account".to_owned(),
            RateLimitScope::RegisteredDomain(d) => {
                let d = authz_name(d);
                domains_of(ids)
                    .into_iter()
                    .find(|ours| {
                        *ours == d
                            || ours.ends_with(&format!(".{d}"))
                            || d.ends_with(&format!(".{ours}"))
                    })
                    .map_or_else(|| set_key(ids), |ours| format!("domain:{ours}"))
            }
            RateLimitScope::Identifier(n) => {
                let n = authz_name(n);
                if ids.iter().any(|i| authz_name(&i.value) == n) {
                    format!("identifier:{n}")
                } else {
                    set_key(ids)
                }
            }
            _ => set_key(ids),
        };
        let retry_at = timestamp::clamp(now + wait.delay, now, self.limits.block_horizon());
        self.touch(&block_key(account, &key));
        self.state.blocks.push(Block {
            account: account.to_owned(),
            key,
            retry_at_ms: ms(retry_at),
            reason: wait.reason.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
    }

    #[test]
    fn sixth_duplicate_is_refused_until_one_token_refills() {
        let mut ledger = RateLedger::load(RateLimits::lets_encrypt(), None, SystemTime::now());
        let now = SystemTime::now();
        let set = ids(&["a.example.com", "b.example.com"]);
        for _ in 0..5 {
            ledger.check_new_order("acct", &set, now).unwrap();
            ledger.spend_order("acct", now);
            ledger.spend_certificate(&set, now);
        }
        let err = ledger.check_new_order("acct", &set, now).unwrap_err();
        let retry_at = err.retry_at().unwrap();
        // One token's refill, which starts SPEND_LAG after the spend (the
        // CA counts the certificate at issuance).
        let refill = Duration::from_secs(7 * 24 * 3600 / 5) + SPEND_LAG;
        let diff = retry_at.duration_since(now).unwrap();
        assert!(diff.abs_diff(refill) < Duration::from_secs(1), "{diff:?}");
        assert!(matches!(
            err.class(),
            ErrorClass::RateLimited { local: true, .. }
        ));
        // Another set is fine; the persisted ledger keeps the refusal.
        ledger
            .check_new_order("acct", &ids(&["c.example.com"]), now)
            .unwrap();
        let mut reloaded = RateLedger::load(
            RateLimits::lets_encrypt(),
            Some(&ledger.to_value(SystemTime::now())),
            SystemTime::now(),
        );
        assert!(reloaded.check_new_order("acct", &set, now).is_err());
        // After the refill, one more is allowed.
        assert!(reloaded.check_new_order("acct", &set, now + refill).is_ok());
    }

    /// A 429 whose words name the scope differently from this set's keys
    /// (a trailing dot, a domain the CA's public-suffix list cuts
    /// elsewhere, another identifier) is remembered under a key the set
    /// reads, never dropped: a ledger loaded from just the set's entries
    /// refuses again.
    #[test]
    fn a_429_is_remembered_under_a_key_the_set_reads() {
        use crate::error::RateLimitScope as Scope;
        let now = SystemTime::now();
        let set = ids(&["www.shop.example.co.uk"]);
        let keys = RateLedger::keys_for("acct", &set);
        for scope in [
            Scope::RegisteredDomain("shop.example.co.uk.".into()),
            Scope::RegisteredDomain("example.co.uk".into()),
            Scope::RegisteredDomain("unrelated.example".into()),
            Scope::Identifier("WWW.shop.example.co.uk.".into()),
            Scope::Identifier("other.example".into()),
            Scope::Account,
        ] {
            let mut ledger = RateLedger::from_entries(
                RateLimits::lets_encrypt(),
                LedgerEntries::new(),
                Some(&keys),
                now,
            );
            let wait = Wait::limited(Duration::from_secs(3600), now, scope.clone(), "too many");
            ledger.record_server_limit("acct", &set, &wait, now);
            let written = ledger.changed_entries(now);
            assert!(!written.is_empty(), "{scope:?} dropped");
            let mut again =
                RateLedger::from_entries(RateLimits::lets_encrypt(), written, Some(&keys), now);
            assert!(
                again.check_new_order("acct", &set, now).is_err(),
                "{scope:?}"
            );
        }
    }

    /// Issue 16, defect 1: a persisted 429 dated past year 9999 (as an
    /// earlier version stored it) is clamped on load: it blocks at most the
    /// horizon, and the refusal prints without panicking.
    #[test]
    fn a_persisted_far_future_block_is_clamped_on_load() {
        let set = ids(&["a.example.com"]);
        let state = serde_json::json!({
            "blocks": [{
                "account": "acct",
                "key": set_key(&set),
                "retry_at_ms": 253_402_300_799_000u64 + 3_600_000,
                "reason": "retry after 9999-12-31T23:59:59-01:00",
            }]
        });
        let horizon = Duration::from_secs(3600);
        let limits = RateLimits {
            server_block_horizon: Some(horizon),
            ..RateLimits::none()
        };
        let mut ledger = RateLedger::load(limits, Some(&state), SystemTime::now());
        let now = SystemTime::now();
        let err = ledger.check_new_order("acct", &set, now).unwrap_err();
        assert!(err.retry_at().unwrap() <= now + horizon + Duration::from_secs(1));
        assert!(!err.to_string().is_empty());
        // Its scope: another set of the same account is not blocked.
        assert!(
            ledger
                .check_new_order("acct", &ids(&["b.example.com"]), now)
                .is_ok()
        );
        // After the horizon it no longer blocks.
        assert!(
            ledger
                .check_new_order("acct", &set, now + horizon + Duration::from_secs(2))
                .is_ok()
        );
    }

    /// Issue 11: 60 ARI renewals under one registered domain pass the
    /// local ledger (Let's Encrypt's limits) while 51 new certificates do
    /// not; exact-set renewals skip the per-domain limit but not the
    /// duplicate one.
    #[test]
    fn ari_renewals_spend_nothing_and_exact_set_renewals_skip_per_domain() {
        let now = SystemTime::now();
        let mut ledger = RateLedger::load(RateLimits::lets_encrypt(), None, SystemTime::now());
        for i in 0..60 {
            let set = ids(&[&format!("r{i}.renewed.example")]);
            ledger
                .reserve_new_order("acct", &set, now, true, Exemption::Ari)
                .unwrap();
        }
        let mut refused = 0;
        for i in 0..51 {
            let set = ids(&[&format!("n{i}.renewed.example")]);
            if ledger
                .reserve_new_order("acct", &set, now, true, Exemption::None)
                .is_err()
            {
                refused += 1;
            }
        }
        assert_eq!(
            refused, 1,
            "the 51st new certificate is refused (50 per 7 days)"
        );
        // Exact-set renewals: past the per-domain limit, but 5 per set.
        let set = ids(&["n0.renewed.example"]);
        let mut ok = 0;
        while ledger
            .reserve_new_order("acct", &set, now, true, Exemption::ExactSetRenewal)
            .is_ok()
        {
            ok += 1;
        }
        assert_eq!(ok, 4, "5 per exact set, one spent already");
        // A refund gives back only what the reservation spent: nothing for
        // an ARI renewal (the 51st new certificate is still refused).
        let ari = ids(&["r0.renewed.example"]);
        ledger.refund_certificate(&ari, now, Exemption::Ari);
        assert!(
            ledger
                .reserve_new_order(
                    "acct",
                    &ids(&["x.renewed.example"]),
                    now,
                    true,
                    Exemption::None
                )
                .is_err()
        );
        ledger.refund_certificate(&ari, now, Exemption::None);
        assert!(
            ledger
                .reserve_new_order(
                    "acct",
                    &ids(&["x.renewed.example"]),
                    now,
                    true,
                    Exemption::None
                )
                .is_ok(),
            "a full refund frees a per-domain token"
        );
    }

    #[test]
    fn per_domain_uses_the_public_suffix_list() {
        let limits = RateLimits {
            certificates_per_domain: Some(Limit::new(2, Duration::from_secs(3600))),
            ..RateLimits::none()
        };
        let mut ledger = RateLedger::load(limits, None, SystemTime::now());
        let now = SystemTime::now();
        ledger.spend_certificate(&ids(&["a.example.co.uk"]), now);
        ledger.spend_certificate(&ids(&["b.example.co.uk"]), now);
        assert!(
            ledger
                .check_new_order("x", &ids(&["c.example.co.uk"]), now)
                .is_err()
        );
        assert!(
            ledger
                .check_new_order("x", &ids(&["c.other.co.uk"]), now)
                .is_ok()
        );
    }
}
