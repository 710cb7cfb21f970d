//! Unit tests of the core's state transitions, on a bare [`State`] (no
//! server, no wire format).

use std::time::Duration;

use ring::rand::SystemRandom;

use super::Config;
use super::orders::FinalizeRefusal;
use super::revocation::{RevocationPolicy, RevokeRefusal, Revoker};
use super::state::State;
use crate::CaaPolicy;
use crate::jws::PublicJwk;
use crate::pki::{self, Pki};
use sturdy_acme::{AccountKey, CertificateKey, CertificateKeyType, KeyAlgorithm};
use sturdy_acme::{AccountStatus, AuthorizationStatus, ChallengeStatus, Identifier, OrderStatus};
use sturdy_acme::{Problem, ProblemType};

/// The dialects' own policies.
const V2: RevocationPolicy = super::v2::REVOCATION;
const V1: RevocationPolicy = super::v1::REVOCATION;

/// Issues a certificate for `values` to account 0, outside any order;
/// returns its DER.
fn issue_to_account_0(state: &mut State, config: &Config, values: &[&str]) -> Vec<u8> {
    let pki = Pki::generate("unit", false).unwrap();
    let (_key, csr) = csr_for(values);
    let now = time::OffsetDateTime::now_utc();
    let cert = state
        .issue_certificate(&pki, 0, None, &csr, now, None, config)
        .unwrap();
    state.certs[cert].leaf_der.clone()
}

fn names(values: &[&str]) -> Vec<Identifier> {
    values.iter().map(|v| Identifier::dns(v).unwrap()).collect()
}

fn account_key() -> PublicJwk {
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    PublicJwk::parse(key.jwk()).unwrap()
}

/// A state with one account (id 0).
fn state_with_account(config: &Config) -> (State, PublicJwk) {
    let mut state = State::new(config);
    let key = account_key();
    assert_eq!(state.create_account(&key, Vec::new(), None), 0);
    (state, key)
}

fn order_for(state: &mut State, config: &Config, values: &[&str]) -> usize {
    state.create_order(0, names(values), None, None, config, &SystemRandom::new())
}

/// Validates challenge 0 of every authorization of order `id`.
fn validate_all(state: &mut State, config: &Config, id: usize, result: Result<(), Problem>) {
    for a in state.orders[id].authzs.clone() {
        let job = state.start_validation(a, 0).unwrap();
        assert!(job.is_some(), "the first answer starts a validation");
        state.record_validation(a, 0, result.clone(), config);
    }
}

fn csr_for(values: &[&str]) -> (CertificateKey, pki::CsrInfo) {
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let csr = pki::parse_csr(&key.csr_der(&names(values)).unwrap()).unwrap();
    (key, csr)
}

#[test]
fn order_turns_ready_when_every_authorization_is_valid() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example", "b.example"]);
    assert_eq!(state.orders[id].status, OrderStatus::Pending);
    let authzs = state.orders[id].authzs.clone();
    assert_eq!(authzs.len(), 2);

    state.start_validation(authzs[0], 0).unwrap();
    assert_eq!(
        state.authzs[authzs[0]].challenges[0].status,
        ChallengeStatus::Processing
    );
    state.record_validation(authzs[0], 0, Ok(()), &config);
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Pending, "one of two");

    state.start_validation(authzs[1], 0).unwrap();
    state.record_validation(authzs[1], 0, Ok(()), &config);
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Ready);
    assert!(state.ready_for_finalization(id).is_ok());
}

#[test]
fn an_invalid_authorization_invalidates_the_order() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    let problem = Problem::new(ProblemType::Unauthorized, "wrong answer");
    validate_all(&mut state, &config, id, Err(problem));
    let a = state.orders[id].authzs[0];
    assert_eq!(state.authzs[a].status, AuthorizationStatus::Invalid);
    assert_eq!(
        state.authzs[a].challenges[0].error.as_ref().unwrap().status,
        Some(400)
    );
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Invalid);
    assert_eq!(state.orders[id].error.as_ref().unwrap().status, Some(403));
    let refused = state.ready_for_finalization(id).unwrap_err();
    assert_eq!(refused.kind, ProblemType::OrderNotReady);
    // A later validation result changes nothing.
    state.record_validation(a, 0, Ok(()), &config);
    assert_eq!(state.authzs[a].status, AuthorizationStatus::Invalid);
}

#[test]
fn only_the_first_challenge_answered_starts_a_validation() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    let a = state.orders[id].authzs[0];
    let job = state.start_validation(a, 1).unwrap().expect("a job");
    assert!(job.key_authorization.starts_with(&job.token));
    assert!(state.start_validation(a, 1).unwrap().is_none(), "again");
    assert!(
        state.start_validation(a, 0).unwrap().is_none(),
        "another one"
    );
}

#[tokio::test(start_paused = true)]
async fn finalize_goes_ready_processing_valid() {
    let config = Config {
        finalize_processing: Duration::from_secs(5),
        ..Config::default()
    };
    let pki = Pki::generate("unit", false).unwrap();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    validate_all(&mut state, &config, id, Ok(()));
    state.ready_for_finalization(id).unwrap();

    let (_other_key, wrong) = csr_for(&["b.example"]);
    match state.finalize_order(&pki, id, &wrong, &config, None) {
        Err(FinalizeRefusal::Rejected(r)) => assert_eq!(r.kind, ProblemType::BadCsr),
        other => panic!("a CSR for other names: {other:?}"),
    }
    assert!(state.certs.is_empty());

    let (_key, csr) = csr_for(&["a.example"]);
    state.finalize_order(&pki, id, &csr, &config, None).unwrap();
    assert_eq!(state.orders[id].status, OrderStatus::Processing);
    assert_eq!(state.orders[id].cert, Some(0));
    assert_eq!(state.certs.len(), 1);
    assert_eq!(state.certs[0].identifiers, names(&["a.example"]));
    assert_eq!(state.certs[0].order, Some(id));
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Processing, "not yet");

    tokio::time::advance(Duration::from_secs(6)).await;
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Valid);
    assert!(state.ready_for_finalization(id).is_err(), "finalized once");
}

#[test]
fn caa_forbidding_issuance_refuses_finalization() {
    let mut config = Config::default();
    config.caa.insert("example".into(), CaaPolicy::Forbid);
    let pki = Pki::generate("unit", false).unwrap();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["www.a.example"]);
    validate_all(&mut state, &config, id, Ok(()));
    let (_key, csr) = csr_for(&["www.a.example"]);
    match state.finalize_order(&pki, id, &csr, &config, None) {
        Err(FinalizeRefusal::Caa(p)) => {
            assert_eq!(p.kind, ProblemType::Caa);
            assert_eq!(p.subproblems.len(), 1);
        }
        other => panic!("CAA forbids it: {other:?}"),
    }
    assert!(state.certs.is_empty());
    // As Boulder (CAARechecksFailOrder): the whole order fails, with the
    // caa problem as its error; finalize is not tried again.
    assert_eq!(state.orders[id].status, OrderStatus::Invalid);
    let error = state.orders[id].error.clone().expect("the order's error");
    assert_eq!(error.kind, ProblemType::Caa);
    assert!(
        error.detail.as_deref().unwrap_or_default().starts_with(
            "Error finalizing order :: rechecking caa: While processing CAA for www.a.example"
        ),
        "{error:?}"
    );
    assert!(state.ready_for_finalization(id).is_err());

    // The older Boulder: the order stays ready for another finalize.
    config.caa_recheck_fails_order = false;
    // (Its authorization is the valid one reused.)
    let id = order_for(&mut state, &config, &["www.a.example"]);
    assert_eq!(state.orders[id].status, OrderStatus::Ready);
    assert!(matches!(
        state.finalize_order(&pki, id, &csr, &config, None),
        Err(FinalizeRefusal::Caa(_))
    ));
    assert_eq!(state.orders[id].status, OrderStatus::Ready);
    assert!(state.orders[id].error.is_none());
}

/// Asynchronous finalization: the request is answered `processing`; the
/// order then turns `invalid` with the caa problem, never `valid`.
#[tokio::test(start_paused = true)]
async fn caa_failing_under_async_finalization_turns_the_order_invalid() {
    let mut config = Config {
        finalize_processing: Duration::from_secs(5),
        ..Config::default()
    };
    config.caa.insert("a.example".into(), CaaPolicy::Timeout);
    let pki = Pki::generate("unit", false).unwrap();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    validate_all(&mut state, &config, id, Ok(()));
    let (_key, csr) = csr_for(&["a.example"]);
    state.finalize_order(&pki, id, &csr, &config, None).unwrap();
    assert_eq!(state.orders[id].status, OrderStatus::Processing);
    assert!(state.orders[id].error.is_none(), "not before it is over");
    tokio::time::advance(Duration::from_secs(6)).await;
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Invalid);
    assert_eq!(
        state.orders[id].error.as_ref().map(|e| e.kind.clone()),
        Some(ProblemType::Caa)
    );
    assert!(state.certs.is_empty());
}

#[test]
fn a_pending_order_is_reused_and_valid_authorizations_too() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let first = order_for(&mut state, &config, &["a.example"]);
    let ids = state.orders[first].identifiers.clone();
    assert_eq!(state.reusable_order(0, &ids, None), Some(first));
    assert_eq!(
        state.reusable_order(1, &ids, None),
        None,
        "another account's"
    );

    validate_all(&mut state, &config, first, Ok(()));
    let second = order_for(&mut state, &config, &["a.example", "b.example"]);
    let authzs = &state.orders[second].authzs;
    assert!(
        authzs.contains(&state.orders[first].authzs[0]),
        "the valid one"
    );
    assert_eq!(state.authzs.len(), 2, "one new authorization, for b");
}

#[test]
fn a_deactivated_account_loses_its_authorizations() {
    let config = Config::default();
    let (mut state, key) = state_with_account(&config);
    let valid = order_for(&mut state, &config, &["a.example"]);
    validate_all(&mut state, &config, valid, Ok(()));
    let pending = order_for(&mut state, &config, &["b.example"]);
    state.deactivate_account(0);
    assert_eq!(state.accounts[0].status, AccountStatus::Deactivated);
    for order in [valid, pending] {
        let a = state.orders[order].authzs[0];
        assert_eq!(state.authzs[a].status, AuthorizationStatus::Deactivated);
    }
    // The key still finds the account (for the "not valid" refusal).
    assert_eq!(state.account_by_key(&key.thumbprint), Some(0));
    // ... and a deactivated account may not revoke.
    let der = issue_to_account_0(&mut state, &config, &["c.example"]);
    let by = Revoker {
        key: None,
        account: Some(0),
    };
    assert_eq!(
        state.revoke(&der, 0, by, V2),
        Err(RevokeRefusal::NotAllowed {
            serial: state.certs[0].serial.clone()
        })
    );
}

#[test]
fn deactivating_an_authorization_twice_is_refused() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    let a = state.orders[id].authzs[0];
    state.deactivate_authz(a).unwrap();
    assert_eq!(
        state.deactivate_authz(a),
        Err(AuthorizationStatus::Deactivated)
    );
    state.refresh_order(id);
    assert_eq!(state.orders[id].status, OrderStatus::Invalid);
}

#[test]
fn key_rollover_moves_the_account_and_refuses_a_taken_key() {
    let config = Config::default();
    let (mut state, old) = state_with_account(&config);
    let other = account_key();
    assert_eq!(state.create_account(&other, Vec::new(), None), 1);
    assert_eq!(state.change_account_key(0, &other), Err(1));
    let new = account_key();
    state.change_account_key(0, &new).unwrap();
    assert_eq!(state.account_by_key(&new.thumbprint), Some(0));
    assert_eq!(state.account_by_key(&old.thumbprint), None);
}

#[test]
fn revocation_twice_is_already_revoked() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let stranger = account_key();
    state.create_account(&stranger, Vec::new(), None);
    let der = issue_to_account_0(&mut state, &config, &["a.example"]);
    let owner = Revoker {
        key: None,
        account: Some(0),
    };
    let other = Revoker {
        key: Some(&stranger),
        account: Some(1),
    };
    assert_eq!(
        state.revoke(b"not a certificate", 0, owner, V2),
        Err(RevokeRefusal::NotFound)
    );
    assert_eq!(
        state.revoke(&der, 1, other, V2),
        Err(RevokeRefusal::NotAllowed {
            serial: state.certs[0].serial.clone()
        })
    );
    assert_eq!(state.certs[0].revoked, None);
    state.revoke(&der, 4, owner, V2).unwrap();
    assert_eq!(state.certs[0].revoked, Some(4));
    assert_eq!(
        state.revoke(&der, 1, owner, V2),
        Err(RevokeRefusal::AlreadyRevoked)
    );
    assert_eq!(state.certs[0].revoked, Some(4), "the first reason stays");
    // The policies differ on who learns "already revoked".
    assert_eq!(
        state.revoke(&der, 1, other, V2),
        Err(RevokeRefusal::NotAllowed {
            serial: state.certs[0].serial.clone()
        })
    );
    assert_eq!(
        state.revoke(&der, 1, other, V1),
        Err(RevokeRefusal::AlreadyRevoked)
    );
}

#[test]
fn holders_of_valid_authorizations_may_revoke_where_the_policy_says() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let holder = account_key();
    state.create_account(&holder, Vec::new(), None);
    let der = issue_to_account_0(&mut state, &config, &["a.example"]);
    let now = time::OffsetDateTime::now_utc();
    // Account 1 validates a.example.
    let authz = state.create_authz(
        1,
        Identifier::dns("a.example").unwrap(),
        false,
        now + time::Duration::days(7),
        super::authorizations::fresh_challenges(
            &SystemRandom::new(),
            &[sturdy_acme::ChallengeType::Http01],
        ),
    );
    state.start_validation(authz, 0).unwrap();
    state.record_validation(authz, 0, Ok(()), &config);
    let by = Revoker {
        key: None,
        account: Some(1),
    };
    // An account with no authorizations for it may not (account 2).
    state.create_account(&account_key(), Vec::new(), None);
    let stranger = Revoker {
        key: None,
        account: Some(2),
    };
    let serial = state.certs[0].serial.clone();
    assert_eq!(
        state.revoke(&der, 0, stranger, V2),
        Err(RevokeRefusal::NotAllowed {
            serial: serial.clone()
        })
    );
    assert_eq!(
        state.revoke(&der, 0, stranger, V1),
        Err(RevokeRefusal::NotAllowed { serial })
    );
    // RFC 8555 §7.6 (a MUST), as Boulder's v2: the holder may, and the
    // reason becomes cessationOfOperation whatever it asked.
    state.revoke(&der, 1, by, V2).unwrap();
    assert_eq!(state.certs[0].revoked, Some(5));
    // v1 keeps the reason asked for.
    let der = issue_to_account_0(&mut state, &config, &["a.example"]);
    state.revoke(&der, 4, by, V1).unwrap();
    assert_eq!(state.certs[1].revoked, Some(4));
}

#[test]
fn revocation_reasons() {
    use super::revocation::reason_code;
    assert_eq!(reason_code(Some(0)), Some(0));
    assert_eq!(reason_code(Some(5)), Some(5));
    assert_eq!(reason_code(Some(2)), None, "2 is not taken");
    assert_eq!(reason_code(Some(6)), None);
    assert_eq!(reason_code(Some(u64::MAX)), None);
    assert_eq!(reason_code(None), None);
}

#[test]
fn finalize_requests_are_recorded_with_the_status_they_found() {
    let config = Config::default();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["a.example"]);
    state.record_finalization(id);
    state.record_finalization(99); // no such order: not recorded
    validate_all(&mut state, &config, id, Ok(()));
    state.record_finalization(id);
    let seen: Vec<_> = state.finalizations.iter().copied().collect();
    assert_eq!(
        seen,
        vec![(id, OrderStatus::Pending), (id, OrderStatus::Ready)]
    );
}

/// Boulder's `ReplacementOrderExists`: a pending or ready replacement order
/// holds `replaces` until it expires; then a new one may name the
/// certificate again. A CertID naming another issuer is 404.
#[test]
fn an_expired_replacement_order_frees_replaces() {
    let config = Config {
        renewal_info: Some(super::AriPolicy {
            renew_after: None,
            retry_after_secs: 21600,
        }),
        ..Config::default()
    };
    let pki = Pki::generate("unit", false).unwrap();
    let (mut state, _) = state_with_account(&config);
    let id = order_for(&mut state, &config, &["r.example"]);
    validate_all(&mut state, &config, id, Ok(()));
    let (_key, csr) = csr_for(&["r.example"]);
    state.finalize_order(&pki, id, &csr, &config, None).unwrap();
    let cert_id = sturdy_acme::CertId::from_der(&state.certs[0].leaf_der).unwrap();
    let payload = serde_json::json!({"replaces": cert_id.as_str()});
    let ids = names(&["r.example"]);
    let now = std::time::SystemTime::now();
    let key_id = pki.issuer_key_id().to_vec();
    let terms = state
        .order_terms(0, &ids, &payload, &config, &key_id, now)
        .unwrap();
    assert_eq!(terms.replaces, Some(0));
    let replacement = order_for(&mut state, &config, &["r.example"]);
    state.ari.replaced_by.insert(0, replacement);
    assert_eq!(state.orders[replacement].status, OrderStatus::Ready);
    let refused = state
        .order_terms(0, &ids, &payload, &config, &key_id, now)
        .unwrap_err();
    assert_eq!(
        (refused.kind, refused.status),
        (ProblemType::AlreadyReplaced, 409)
    );
    // The replacement order expires, still ready: replaces is free again.
    state.orders[replacement].expires = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(
        state
            .order_terms(0, &ids, &payload, &config, &key_id, now)
            .is_ok()
    );
    // Another issuer's key identifier.
    let refused = state
        .order_terms(0, &ids, &payload, &config, &[9u8; 20], now)
        .unwrap_err();
    assert_eq!(
        (refused.kind, refused.status),
        (ProblemType::Malformed, 404)
    );
    assert!(
        refused.detail.ends_with("did not match a known issuer"),
        "{}",
        refused.detail
    );
}
