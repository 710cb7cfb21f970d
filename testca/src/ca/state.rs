//! The CA's records and the state that holds them behind [`Ca`](super::Ca)'s
//! mutex: accounts, orders, authorizations with their challenges,
//! certificates, nonces, rate-limit buckets and the logs. Indices into
//! these vectors are the resources' ids in both dialects' URLs.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::time::SystemTime;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::Config;
use super::nonces::Nonces;
use super::v1::state::V1State;
use crate::RecordedJws;
use crate::jws::PublicJwk;
use crate::limits::Buckets;
use crate::recorded::Ring;
use sturdy_acme::Endpoint;
use sturdy_acme::Problem;
use sturdy_acme::{
    AccountStatus, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, OrderStatus,
};

/// How many request arrival times the CA keeps (the latest).
pub(crate) const MAX_ARRIVALS: usize = 100_000;

/// An account (v1: a registration).
#[derive(Debug)]
pub(super) struct AccountRec {
    pub(super) key: PublicJwk,
    pub(super) status: AccountStatus,
    pub(super) contact: Vec<String>,
    pub(super) eab_kid: Option<String>,
}

/// An order (v2 only).
#[derive(Debug)]
pub(super) struct OrderRec {
    pub(super) account: usize,
    pub(super) status: OrderStatus,
    pub(super) identifiers: Vec<Identifier>,
    pub(super) authzs: Vec<usize>,
    pub(super) not_before: Option<OffsetDateTime>,
    pub(super) not_after: Option<OffsetDateTime>,
    pub(super) expires: OffsetDateTime,
    pub(super) error: Option<Problem>,
    pub(super) cert: Option<usize>,
    /// When a `processing` order turns `valid` (or `invalid`, with
    /// `failure`).
    pub(super) ready_at: Option<Instant>,
    /// Why a `processing` order turns `invalid` at `ready_at` (a failed
    /// CAA recheck under asynchronous finalization).
    pub(super) failure: Option<Box<Problem>>,
    /// The certificate it replaces (ARI `replaces`), and the CertID sent.
    pub(super) replaces: Option<(usize, String)>,
    /// Which rate limits it is exempt from.
    pub(super) exemption: super::records::Exemption,
    /// Its profile (when the CA offers profiles).
    pub(super) profile: Option<super::records::Profile>,
}

/// A challenge of an authorization.
#[derive(Debug)]
pub(super) struct ChallRec {
    pub(super) kind: ChallengeType,
    pub(super) token: String,
    pub(super) status: ChallengeStatus,
    pub(super) validated: Option<OffsetDateTime>,
    pub(super) error: Option<Problem>,
}

/// An authorization; `identifier` is the base name, `wildcard` says
/// whether it was asked for as `*.` + that.
#[derive(Debug)]
pub(super) struct AuthzRec {
    pub(super) account: usize,
    pub(super) identifier: Identifier,
    pub(super) wildcard: bool,
    pub(super) status: AuthorizationStatus,
    pub(super) expires: OffsetDateTime,
    pub(super) challenges: Vec<ChallRec>,
}

/// A certificate issued.
#[derive(Debug)]
pub(super) struct CertRec {
    pub(super) account: usize,
    /// `None` for a certificate issued through v1's new-cert (no order).
    pub(super) order: Option<usize>,
    pub(super) identifiers: Vec<Identifier>,
    pub(super) serial: String,
    pub(super) leaf_der: Vec<u8>,
    pub(super) spki: Vec<u8>,
    pub(super) chain_pem: String,
    pub(super) alternate_chain_pem: Option<String>,
    pub(super) issued_at: SystemTime,
    pub(super) revoked: Option<u8>,
    /// When it was revoked (its CRL entry's revocation date).
    pub(super) revoked_at: Option<SystemTime>,
    /// Revoked behind its subscriber's back: shown in the revocation list
    /// only, not in the renewal information (a third party's report the
    /// ARI does not reflect).
    pub(super) crl_only: bool,
    /// The revocation-list shard it names, if any.
    pub(super) crl_shard: Option<u8>,
    /// Its validity.
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
}

/// Everything the CA remembers.
#[derive(Debug)]
pub(super) struct State {
    pub(super) accounts: Vec<AccountRec>,
    pub(super) by_thumbprint: HashMap<String, usize>,
    pub(super) orders: Vec<OrderRec>,
    /// Order ids per account and identifier set (for reusing a pending one).
    pub(super) orders_by_set: HashMap<(usize, Vec<Identifier>), Vec<usize>>,
    pub(super) authzs: Vec<AuthzRec>,
    /// Authorization ids per account, identifier and wildcard flag.
    pub(super) authzs_by_key: HashMap<(usize, Identifier, bool), Vec<usize>>,
    pub(super) certs: Vec<CertRec>,
    pub(super) nonces: Nonces,
    pub(super) buckets: Buckets,
    pub(super) requests: BTreeMap<Endpoint, u64>,
    /// When each request arrived: the latest [`MAX_ARRIVALS`].
    pub(super) arrivals: Ring<(Endpoint, SystemTime)>,
    /// Finalize requests: the order and its status when the request came.
    pub(super) finalizations: Ring<(usize, OrderStatus)>,
    pub(super) caa_timeouts_seen: HashMap<String, u32>,
    pub(super) v1: V1State,
    pub(super) jws_log: Ring<RecordedJws>,
    pub(super) ari: super::records::AriState,
    /// Each shard's last signed revocation list, by its number.
    pub(super) crl_cache: HashMap<u8, (u64, bytes::Bytes)>,
    /// Revocation lists sent in full ...
    pub(super) crl_downloads: u64,
    /// ... and conditional GETs answered `304 Not Modified`.
    pub(super) crl_not_modified: u64,
}

impl State {
    /// An empty state whose logs keep what `config` says.
    pub(super) fn new(config: &Config) -> Self {
        Self {
            accounts: Vec::new(),
            by_thumbprint: HashMap::new(),
            orders: Vec::new(),
            orders_by_set: HashMap::new(),
            authzs: Vec::new(),
            authzs_by_key: HashMap::new(),
            certs: Vec::new(),
            nonces: Nonces::default(),
            buckets: Buckets::default(),
            requests: BTreeMap::new(),
            arrivals: Ring::new(MAX_ARRIVALS, usize::MAX),
            finalizations: Ring::new(config.recorded_finalizations, usize::MAX),
            caa_timeouts_seen: HashMap::new(),
            v1: V1State::default(),
            jws_log: Ring::new(config.recorded_jws_entries, config.recorded_jws_bytes),
            ari: Default::default(),
            crl_cache: HashMap::new(),
            crl_downloads: 0,
            crl_not_modified: 0,
        }
    }

    /// A seeded share of the live certificates (the newest of each exact
    /// identifier set, neither revoked nor expired): `share` of them, at
    /// least one when `share > 0`, chosen by a seeded partial
    /// Fisher-Yates shuffle so one seed picks the same ones every run.
    /// Their indexes, ascending.
    pub(super) fn live_share(&self, share: f64, seed: u64, now: SystemTime) -> Vec<usize> {
        let mut newest: BTreeMap<Vec<Identifier>, usize> = BTreeMap::new();
        for (i, c) in self.certs.iter().enumerate() {
            if c.revoked.is_some() || c.not_after <= now {
                continue;
            }
            let mut set = c.identifiers.clone();
            set.sort();
            newest.insert(set, i);
        }
        let live: Vec<usize> = newest.into_values().collect();
        let share = share.clamp(0.0, 1.0);
        let want = ((live.len() as f64 * share).round() as usize)
            .max(usize::from(share > 0.0 && !live.is_empty()))
            .min(live.len());
        let mut order = live;
        let mut rng = seed;
        for i in 0..want {
            let j = i + (crate::codec::splitmix64(&mut rng) % (order.len() - i) as u64) as usize;
            order.swap(i, j);
        }
        order.truncate(want);
        order.sort_unstable();
        order
    }

    /// Counts a request to `endpoint` and records its decoded JWS, if any.
    pub(super) fn count_request(&mut self, endpoint: Endpoint, jws: Option<(RecordedJws, usize)>) {
        let count = self.requests.entry(endpoint).or_default();
        *count = count.saturating_add(1);
        self.arrivals.push((endpoint, SystemTime::now()), 1);
        if let Some((jws, cost)) = jws
            && !self.jws_log.push(jws, cost)
        {
            tracing::debug!(?endpoint, cost, "test CA: request too large to record");
        }
    }

    /// Records a finalize request for order `id` (if it exists) with the
    /// order's status as it arrives.
    pub(super) fn record_finalization(&mut self, id: usize) {
        if id < self.orders.len() {
            self.refresh_order(id);
            let status = self.orders[id].status;
            self.finalizations
                .push((id, status), size_of::<(usize, OrderStatus)>());
        }
    }
}
