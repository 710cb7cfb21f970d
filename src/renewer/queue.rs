//! The renewer's schedule: when each certificate is next looked at, which
//! of those whose time has come goes first, and what holds them back (a
//! rate limit's bucket, an identifier's backoff, the CA's pause).
//!
//! Pure bookkeeping on the calendar's `now`: no I/O, so it is tested on
//! its own.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::error::RateLimitScope;
use crate::issuer::registered_domain;

/// Which certificates go first when several may be started.
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// A renewal past halfway from its renewal time to its expiry (or
    /// expired): it would otherwise expire. Soonest expiry first.
    Expiring,
    /// A replacement the CA asked for early (its renewal window moved into
    /// the past: a mass revocation, an incident): an exempt ARI renewal,
    /// ahead of everything that has time, taking turns with new
    /// certificates (a drill of thousands does not hold back a new
    /// customer). Soonest expiry first.
    Requested,
    /// A certificate never issued: first added, first served.
    New,
    /// A renewal that has time: soonest expiry first.
    Renewal,
}

impl Urgency {
    /// Its name in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Expiring => "expiring",
            Self::Requested => "requested",
            Self::New => "new",
            Self::Renewal => "renewal",
        }
    }
}

/// What a rate-limit refusal blocks until it refills.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Block {
    /// The account's new-order budget: only orders that spend it.
    Account,
    /// A registered domain's certificate budget: only orders that spend it.
    Domain(String),
    /// One identifier (failed authorizations): every order naming it.
    Identifier(String),
    /// One exact set (duplicate certificates).
    Set(String),
}

impl Block {
    /// The block a refusal of `scope` for the set `id` means (`None`: one
    /// that says nothing about other sets, held on the certificate alone).
    pub(crate) fn of(scope: &RateLimitScope, id: &str) -> Option<Self> {
        match scope {
            RateLimitScope::Account => Some(Self::Account),
            RateLimitScope::RegisteredDomain(d) => Some(Self::Domain(d.clone())),
            RateLimitScope::Identifier(n) => Some(Self::Identifier(n.clone())),
            RateLimitScope::ExactSet => Some(Self::Set(id.to_owned())),
            _ => None,
        }
    }
}

/// What may still be spent now, as the ledger counts it less what is
/// running: new orders of the account, and certificates of each registered
/// domain that has spent from its bucket (one not listed has a full one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Budget {
    pub(crate) orders: usize,
    pub(crate) domains: HashMap<String, usize>,
}

impl Budget {
    /// No limit.
    pub(crate) fn unlimited() -> Self {
        Self {
            orders: usize::MAX,
            domains: HashMap::new(),
        }
    }

    /// Whether `e` fits, and if so, spends it.
    fn take(&mut self, e: &Entry) -> bool {
        if !e.spends_budget {
            return true;
        }
        if self.orders == 0 {
            return false;
        }
        let domains = e.domains();
        if domains
            .iter()
            .any(|d| self.domains.get(d).is_some_and(|n| *n == 0))
        {
            return false;
        }
        self.orders -= 1;
        for d in &domains {
            if let Some(n) = self.domains.get_mut(d) {
                *n -= 1;
            }
        }
        true
    }
}

/// What the queue knows of one certificate to order it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) names: Vec<String>,
    pub(crate) urgency: Urgency,
    /// The time that orders it within its urgency.
    pub(crate) key: SystemTime,
    /// Whether its order spends the account's new-order budget and its
    /// domains' certificate budgets (a new certificate; a renewal is
    /// exempt as Let's Encrypt counts them).
    pub(crate) spends_budget: bool,
}

impl Entry {
    /// The registered domains of its names, each once.
    pub(crate) fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self.names.iter().map(|n| registered_domain(n)).collect();
        d.sort();
        d.dedup();
        d
    }
}

/// The schedule.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Not running, waiting for their time: (time, id).
    timeline: BTreeSet<(SystemTime, String)>,
    /// The time each waiting id is in `timeline` at.
    at: HashMap<String, SystemTime>,
    /// Their time has come: (urgency, key, id), with the entry.
    ready: BTreeSet<(Urgency, SystemTime, String)>,
    /// How many of `ready` spend the new-order budget (so asking whether
    /// any does is not a walk over a backlog of thousands).
    ready_spending: usize,
    /// Whose turn it is between the CA's early replacements and new
    /// certificates: kept across wake-ups, since a busy renewer frees one
    /// slot at a time.
    fresh_next: bool,
    entries: HashMap<String, Entry>,
    /// Rate-limit blocks in force, until when.
    blocks: HashMap<Block, SystemTime>,
    /// Identifiers backing off after failures, until when.
    backoff: HashMap<String, SystemTime>,
}

impl Queue {
    /// Schedules `entry` at `at` (replacing where it was).
    pub(crate) fn schedule(&mut self, entry: Entry, at: SystemTime) {
        self.forget(&entry.id);
        self.timeline.insert((at, entry.id.clone()));
        self.at.insert(entry.id.clone(), at);
        self.entries.insert(entry.id.clone(), entry);
    }

    /// Takes `id` out of the schedule (running, or removed).
    pub(crate) fn forget(&mut self, id: &str) {
        if let Some(at) = self.at.remove(id) {
            self.timeline.remove(&(at, id.to_owned()));
        }
        if let Some(e) = self.entries.remove(id)
            && self.ready.remove(&(e.urgency, e.key, e.id))
            && e.spends_budget
        {
            self.ready_spending -= 1;
        }
    }

    /// Waiting or ready.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Ready but not started.
    pub(crate) fn backlog(&self) -> usize {
        self.ready.len()
    }

    /// When `id` is next looked at (`None`: not scheduled, e.g. running).
    pub(crate) fn scheduled_at(&self, id: &str) -> Option<SystemTime> {
        self.at.get(id).copied()
    }

    /// Blocks what `block` covers until `until`.
    pub(crate) fn block(&mut self, block: Block, until: SystemTime) {
        let slot = self.blocks.entry(block).or_insert(until);
        *slot = (*slot).max(until);
    }

    /// Holds `names` back until `until` (a failure's backoff).
    pub(crate) fn back_off(&mut self, names: &[String], until: SystemTime) {
        for n in names {
            let slot = self.backoff.entry(n.clone()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }

    /// Up to `free` ready entries to start now, most urgent first, within
    /// `budget`; skipping those a block holds (they stay ready); entries
    /// held by an identifier's backoff go back to the timeline until it
    /// ends.
    pub(crate) fn take(&mut self, now: SystemTime, free: usize, budget: &mut Budget) -> Vec<Entry> {
        self.promote(now);
        // Chosen on a read-only walk that stops once `free` are found (a
        // backlog of thousands is not copied at every wake-up), then
        // applied.
        let mut chosen = Vec::new();
        let mut held = Vec::new();
        let account_blocked = self.blocks.contains_key(&Block::Account);
        let of = |urgency: Urgency| {
            let lo = (urgency, SystemTime::UNIX_EPOCH, String::new());
            self.ready
                .range(lo..)
                .take_while(move |(u, ..)| *u == urgency)
        };
        // The next entry of `items` that can start now (`None`: none left,
        // or none can while the account's budget is spent).
        let next = |items: &mut dyn Iterator<Item = &(Urgency, SystemTime, String)>,
                    budget: &mut Budget,
                    held: &mut Vec<_>| {
            for item in items {
                // Every ready item has its entry (`forget` removes both).
                let Some(e) = self.entries.get(&item.2) else {
                    continue;
                };
                // The account's budget is shared by every order that
                // spends it: none of them can go (new certificates all
                // spend it, so the walk stops).
                if (account_blocked || budget.orders == 0) && e.spends_budget {
                    if item.0 == Urgency::New {
                        return None;
                    }
                    continue;
                }
                if let Some(until) = self.backoff_of(e) {
                    held.push((until, item.clone()));
                    continue;
                }
                if self.blocked(e) || !budget.take(e) {
                    continue;
                }
                return Some(item.clone());
            }
            None
        };
        // Certificates that would expire first.
        let mut expiring = of(Urgency::Expiring);
        while chosen.len() < free {
            let Some(item) = next(&mut expiring, budget, &mut held) else {
                break;
            };
            chosen.push(item);
        }
        // Then the CA's early replacements and new certificates, taking
        // turns: a mass revocation of thousands jumps ahead of every other
        // renewal but does not hold back a new customer's first
        // certificate for hours.
        let (mut requested, mut fresh) = (of(Urgency::Requested), of(Urgency::New));
        let (mut requested_left, mut fresh_left) = (true, true);
        let mut fresh_next = self.fresh_next;
        while chosen.len() < free && (requested_left || fresh_left) {
            let from_fresh = (fresh_next && fresh_left) || !requested_left;
            let item = if from_fresh {
                next(&mut fresh, budget, &mut held)
            } else {
                next(&mut requested, budget, &mut held)
            };
            match item {
                Some(item) => {
                    chosen.push(item);
                    fresh_next = !from_fresh;
                }
                None if from_fresh => fresh_left = false,
                None => requested_left = false,
            }
        }
        // Then the renewals that have time.
        let mut renewals = of(Urgency::Renewal);
        while chosen.len() < free {
            let Some(item) = next(&mut renewals, budget, &mut held) else {
                break;
            };
            chosen.push(item);
        }
        self.fresh_next = fresh_next;
        let mut started = Vec::with_capacity(chosen.len());
        for item in chosen {
            self.ready.remove(&item);
            if let Some(e) = self.entries.remove(&item.2) {
                if e.spends_budget {
                    self.ready_spending -= 1;
                }
                started.push(e);
            }
        }
        for (until, item) in held {
            if self.ready.remove(&item)
                && self.entries.get(&item.2).is_some_and(|e| e.spends_budget)
            {
                self.ready_spending -= 1;
            }
            self.timeline.insert((until, item.2.clone()));
            self.at.insert(item.2, until);
        }
        started
    }

    fn backoff_of(&self, e: &Entry) -> Option<SystemTime> {
        e.names
            .iter()
            .filter_map(|n| {
                self.backoff
                    .get(n.trim_start_matches("*."))
                    .or(self.backoff.get(n))
            })
            .max()
            .copied()
    }

    fn blocked(&self, e: &Entry) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        if self.blocks.contains_key(&Block::Set(e.id.clone())) {
            return true;
        }
        e.names.iter().any(|n| {
            let bare = n.trim_start_matches("*.");
            self.blocks
                .contains_key(&Block::Identifier(bare.to_owned()))
                || (e.spends_budget
                    && self
                        .blocks
                        .contains_key(&Block::Domain(registered_domain(bare))))
        })
    }

    /// Moves what has come due to the ready set, and forgets blocks and
    /// backoffs that have ended.
    pub(crate) fn promote(&mut self, now: SystemTime) {
        self.blocks.retain(|_, until| *until > now);
        self.backoff.retain(|_, until| *until > now);
        while let Some((at, id)) = self.timeline.first().cloned() {
            if at > now {
                break;
            }
            self.timeline.pop_first();
            self.at.remove(&id);
            if let Some(e) = self.entries.get(&id)
                && self.ready.insert((e.urgency, e.key, id))
                && e.spends_budget
            {
                self.ready_spending += 1;
            }
        }
    }

    /// Whether a ready entry spends the new-order budget (after
    /// [`Queue::promote`]).
    pub(crate) fn budget_wanted(&self) -> bool {
        self.ready_spending > 0
    }

    /// When something may change: the next scheduled time or the end of a
    /// block holding a ready entry (`None`: nothing is waiting).
    pub(crate) fn next_wake(&self) -> Option<SystemTime> {
        let timeline = self.timeline.first().map(|(t, _)| *t);
        let block = if self.ready.is_empty() {
            None
        } else {
            self.blocks.values().min().copied()
        };
        match (timeline, block) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest time anything is scheduled at.
    pub(crate) fn next_scheduled(&self) -> Option<SystemTime> {
        self.timeline.first().map(|(t, _)| *t)
    }
}

/// The delay before attempt `retry + 1` of a schedule from `base`
/// doubling up to `max`, with ±25% jitter from `unit` (0..1).
pub(crate) fn backoff_delay(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let nominal = base
        .saturating_mul(2u32.saturating_pow(retry.min(30)))
        .min(max);
    nominal.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn entry(id: &str, urgency: Urgency, key: u64) -> Entry {
        Entry {
            id: id.into(),
            names: vec![id.into()],
            urgency,
            key: t(key),
            spends_budget: urgency == Urgency::New,
        }
    }

    #[test]
    fn expiring_renewals_go_before_new_certificates_before_other_renewals() {
        let mut q = Queue::default();
        q.schedule(entry("renew.b.example", Urgency::Renewal, 50), t(0));
        q.schedule(entry("new2.a.example", Urgency::New, 20), t(0));
        q.schedule(entry("new1.a.example", Urgency::New, 10), t(0));
        q.schedule(entry("expiring.c.example", Urgency::Expiring, 90), t(0));
        q.schedule(entry("later.d.example", Urgency::New, 0), t(100));
        let ids: Vec<String> = q
            .take(t(1), 10, &mut Budget::unlimited())
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            ids,
            [
                "expiring.c.example",
                "new1.a.example",
                "new2.a.example",
                "renew.b.example"
            ]
        );
        assert_eq!(q.next_wake(), Some(t(100)));
        assert_eq!(q.take(t(99), 10, &mut Budget::unlimited()).len(), 0);
        assert_eq!(q.take(t(100), 10, &mut Budget::unlimited()).len(), 1);
    }

    #[test]
    fn a_spent_account_budget_holds_new_certificates_but_not_exempt_renewals() {
        let mut q = Queue::default();
        q.schedule(entry("new.a.example", Urgency::New, 1), t(0));
        q.schedule(entry("renew.a.example", Urgency::Renewal, 2), t(0));
        q.block(Block::Account, t(36));
        let ids: Vec<String> = q
            .take(t(1), 10, &mut Budget::unlimited())
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["renew.a.example"]);
        assert_eq!(q.backlog(), 1);
        // It wakes when the bucket refills, and the new one goes.
        assert_eq!(q.next_wake(), Some(t(36)));
        let ids: Vec<String> = q
            .take(t(36), 10, &mut Budget::unlimited())
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["new.a.example"]);
    }

    #[test]
    fn a_domain_block_holds_only_that_domain_and_backoff_moves_to_the_timeline() {
        let mut q = Queue::default();
        q.schedule(entry("x.slow.example", Urgency::New, 1), t(0));
        q.schedule(entry("y.fine.example", Urgency::New, 2), t(0));
        q.schedule(entry("z.broken.example", Urgency::New, 3), t(0));
        q.block(Block::Domain("slow.example".into()), t(600));
        q.back_off(&["z.broken.example".into()], t(3600));
        let ids: Vec<String> = q
            .take(t(1), 10, &mut Budget::unlimited())
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["y.fine.example"]);
        assert_eq!(q.scheduled_at("z.broken.example"), Some(t(3600)));
        assert_eq!(q.next_wake(), Some(t(600)));
        assert_eq!(
            q.take(t(600), 10, &mut Budget::unlimited())[0].id,
            "x.slow.example"
        );
        assert_eq!(
            q.take(t(3600), 10, &mut Budget::unlimited())[0].id,
            "z.broken.example"
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn no_more_new_certificates_start_than_the_budget_allows() {
        let mut q = Queue::default();
        for i in 0..5 {
            q.schedule(entry(&format!("n{i}.example"), Urgency::New, i), t(0));
        }
        q.schedule(entry("r.example", Urgency::Renewal, 9), t(0));
        q.promote(t(0));
        assert!(q.budget_wanted());
        let ids: Vec<String> = q
            .take(
                t(0),
                10,
                &mut Budget {
                    orders: 2,
                    ..Budget::unlimited()
                },
            )
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["n0.example", "n1.example", "r.example"]);
        assert_eq!(
            q.take(
                t(0),
                10,
                &mut Budget {
                    orders: 0,
                    ..Budget::unlimited()
                }
            )
            .len(),
            0
        );
        assert_eq!(
            q.take(
                t(0),
                10,
                &mut Budget {
                    orders: 3,
                    ..Budget::unlimited()
                }
            )
            .len(),
            3
        );
        assert!(!q.budget_wanted());
    }

    #[test]
    fn a_domain_with_no_certificates_left_waits_and_others_go() {
        let mut q = Queue::default();
        q.schedule(entry("a.full.example", Urgency::New, 1), t(0));
        q.schedule(entry("b.full.example", Urgency::New, 2), t(0));
        q.schedule(entry("c.other.example", Urgency::New, 3), t(0));
        let mut budget = Budget {
            domains: [("full.example".to_owned(), 1)].into(),
            ..Budget::unlimited()
        };
        let ids: Vec<String> = q
            .take(t(0), 10, &mut budget)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["a.full.example", "c.other.example"]);
        assert_eq!(budget.domains["full.example"], 0);
    }

    #[test]
    fn a_mass_revocation_takes_turns_with_new_certificates() {
        let mut q = Queue::default();
        for i in 0..10 {
            q.schedule(entry(&format!("r{i}.example"), Urgency::Requested, i), t(0));
        }
        for i in 0..2 {
            q.schedule(entry(&format!("n{i}.example"), Urgency::New, i), t(0));
        }
        q.schedule(entry("x.example", Urgency::Expiring, 0), t(0));
        let ids = |v: Vec<Entry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(q.take(t(1), 4, &mut Budget::unlimited())),
            ["x.example", "r0.example", "n0.example", "r1.example"]
        );
        // The turn is kept across wake-ups; when new certificates run
        // out, the replacements take every slot.
        assert_eq!(
            ids(q.take(t(1), 4, &mut Budget::unlimited())),
            ["n1.example", "r2.example", "r3.example", "r4.example"]
        );
        // With no budget for new orders, only the exempt go.
        q.schedule(entry("n2.example", Urgency::New, 5), t(0));
        let mut spent = Budget {
            orders: 0,
            domains: HashMap::new(),
        };
        assert_eq!(
            ids(q.take(t(1), 2, &mut spent)),
            ["r5.example", "r6.example"]
        );
    }

    /// A busy renewer frees one slot at a time: the turns still alternate.
    #[test]
    fn one_slot_at_a_time_still_takes_turns() {
        let mut q = Queue::default();
        for i in 0..6 {
            q.schedule(entry(&format!("r{i}.example"), Urgency::Requested, i), t(0));
        }
        for i in 0..2 {
            q.schedule(entry(&format!("n{i}.example"), Urgency::New, i), t(0));
        }
        let order: Vec<String> = (0..6)
            .flat_map(|_| q.take(t(1), 1, &mut Budget::unlimited()))
            .map(|e| e.id)
            .collect();
        assert_eq!(
            order,
            [
                "r0.example",
                "n0.example",
                "r1.example",
                "n1.example",
                "r2.example",
                "r3.example"
            ]
        );
    }

    #[test]
    fn free_slots_bound_what_starts() {
        let mut q = Queue::default();
        for i in 0..10 {
            q.schedule(entry(&format!("n{i}.example"), Urgency::New, i), t(0));
        }
        assert_eq!(q.take(t(0), 3, &mut Budget::unlimited()).len(), 3);
        assert_eq!(q.backlog(), 7);
        q.forget("n5.example");
        assert_eq!(q.take(t(0), 100, &mut Budget::unlimited()).len(), 6);
    }

    proptest::proptest! {
        /// Whether a ready entry spends the budget is counted, not walked
        /// for: the count always equals a walk, whatever is scheduled,
        /// taken, forgotten or backed off.
        #[test]
        fn budget_wanted_always_equals_a_walk(
            ops in proptest::collection::vec((0u8..4, 0u8..6, 0u64..20, proptest::bool::ANY), 0..120)
        ) {
            let mut q = Queue::default();
            let mut now = 0;
            for (op, id, at, new) in ops {
                let id = format!("c{id}.example");
                let urgency = if new { Urgency::New } else { Urgency::Renewal };
                match op {
                    0 => q.schedule(entry(&id, urgency, at), t(now + at % 5)),
                    1 => q.forget(&id),
                    2 => q.back_off(&[id], t(now + at)),
                    _ => {
                        now += at % 4;
                        let mut budget = Budget { orders: (at % 3) as usize, domains: HashMap::new() };
                        q.take(t(now), (at % 4) as usize, &mut budget);
                    }
                }
                q.promote(t(now));
                let walked = q.ready.iter().any(|(_, _, id)| q.entries.get(id).is_some_and(|e| e.spends_budget));
                proptest::prop_assert_eq!(q.budget_wanted(), walked);
            }
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let (base, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(backoff_delay(base, max, 0, 0.5), base);
        assert_eq!(backoff_delay(base, max, 3, 0.5), Duration::from_secs(480));
        assert_eq!(backoff_delay(base, max, 30, 0.5), max);
        assert_eq!(backoff_delay(base, max, 0, 0.0), Duration::from_secs(45));
        assert_eq!(backoff_delay(base, max, 0, 1.0), Duration::from_secs(75));
    }
}
