//! Reacting to the CA's events (issue 29), against the embedded CA on
//! tokio's paused clock: a mass-revocation drill is noticed within the
//! recheck bound and replaced at once as exempt ARI renewals, and
//! `recheck_all` hears it at once; a chain change is reported once per
//! certificate; a profile that changes in the spec, or that the CA
//! withdraws, is handled without a failed renewal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::renewer::{CertificateSpec, Renewer, RenewerEvent};
use sturdy_acme::store::{AskedProfile, MemoryStore};
use sturdy_acme::{CertificateOptions, Limit, RateLimits};
use sturdy_acme_testca::TestCa;

use crate::renewer::{DAY, HOUR, MIN, all_valid, issuer_with, policy, specs, start, wait_until};

/// One certificate per exact set per week, at the CA and in the ledger: a
/// second certificate for a set within the week passes only as an exempt
/// ARI renewal (a non-ARI renewal would be held locally or refused).
fn one_per_set_per_week() -> RateLimits {
    RateLimits {
        duplicate_certificates: Some(Limit::new(1, Duration::from_secs(7 * DAY))),
        ..RateLimits::lets_encrypt()
    }
}

/// What a renewer reported, by kind.
#[derive(Default)]
struct Seen {
    requested: Vec<String>,
    deferred: usize,
    replaced_on_request: usize,
}

/// 40 certificates issued, then on day 3 (8 hours past a daily check) the CA moves the windows of a
/// quarter of them into the past. The CA's `Retry-After` on renewal
/// information is a day; the issuer's bound (6 hours by default) is what
/// makes the renewer hear it in time. Every moved certificate is replaced
/// within 7 hours of the drill, each once, as an exempt ARI renewal (its
/// set's weekly certificate is already spent), with no 429 and nothing
/// held by the ledger; the others are left alone.
#[tokio::test(start_paused = true)]
async fn a_mass_revocation_drill_is_replaced_within_the_recheck_bound_as_ari_renewals() {
    let ca = TestCa::builder()
        .renewal_info(None)
        .renewal_info_retry_after(DAY)
        .rate_limits(one_per_set_per_week())
        .start_in_process()
        .unwrap();
    let (issuer, statuses) =
        issuer_with(&ca, MemoryStore::new(), one_per_set_per_week(), |b| b).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = Arc::clone(&seen);
    let renewer = Renewer::builder(issuer)
        .policy(policy())
        .on_event(move |e| {
            let mut s = log.lock().unwrap();
            match e {
                RenewerEvent::ReplacementRequested { serial, .. } => {
                    s.requested.push(serial.clone())
                }
                RenewerEvent::Deferred { .. } => s.deferred += 1,
                RenewerEvent::Issued {
                    requested_by_ca: true,
                    ..
                } => s.replaced_on_request += 1,
                _ => {}
            }
        })
        .build();
    renewer
        .add_all(specs((0..40).map(|i| format!("c{i}.d{}.example", i % 8))))
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(40),
    )
    .await;
    // Eight hours past a daily check: the CA's own Retry-After would next
    // ask 16 hours after the drill.
    tokio::time::sleep(Duration::from_secs(3 * DAY + 8 * HOUR)).await;
    assert_eq!(ca.ledger().certificates.len(), 40, "nothing renewed early");

    let moved = ca.drill_renewal_windows(0.25, 11, Duration::from_secs(DAY), None);
    assert_eq!(moved.len(), 10);
    let status = wait_until(
        &renewer,
        Duration::from_secs(10 * MIN),
        Duration::from_secs(7 * HOUR),
        |s| {
            let ledger = ca.ledger();
            ledger.certificates.len() == 50 && s.replacements_requested == 0
        },
    )
    .await;
    assert_eq!(status.count(sturdy_acme::renewer::ManagedState::Valid), 40);
    // Each moved certificate was replaced once; the others were not touched.
    let ledger = ca.ledger();
    for serial in &moved {
        let old = ledger
            .certificates
            .iter()
            .find(|c| c.serial.eq_ignore_ascii_case(serial))
            .unwrap();
        let names: Vec<&str> = old.identifiers.iter().map(|i| i.value.as_str()).collect();
        assert_eq!(ledger.issued_for(&names), 2, "{names:?}");
    }
    let (mut requested, replaced_on_request, deferred) = {
        let s = seen.lock().unwrap();
        (s.requested.clone(), s.replaced_on_request, s.deferred)
    };
    requested.sort();
    let mut expected: Vec<String> = moved.iter().map(|m| m.to_ascii_lowercase()).collect();
    expected.sort();
    let requested: Vec<String> = requested.iter().map(|r| r.to_ascii_lowercase()).collect();
    assert_eq!(
        requested, expected,
        "one event per certificate the CA asked for"
    );
    assert_eq!(replaced_on_request, 10);
    assert_eq!(deferred, 0, "no ledger budget was needed");
    assert_eq!(statuses.get(429), 0);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// The CA's renewal information is checked only once a day here (its
/// `Retry-After`, and the issuer's bound raised to a day). An operator who
/// read the CA's announcement calls `recheck_all`: the moved windows are
/// heard and replaced within minutes, not within the day.
#[tokio::test(start_paused = true)]
async fn recheck_all_hears_a_moved_window_at_once() {
    let ca = TestCa::builder()
        .renewal_info(None)
        .renewal_info_retry_after(DAY)
        .rate_limits(one_per_set_per_week())
        .start_in_process()
        .unwrap();
    let (issuer, statuses) = issuer_with(&ca, MemoryStore::new(), one_per_set_per_week(), |b| {
        b.ari_recheck_max(Duration::from_secs(DAY))
    })
    .await;
    let renewer = Renewer::builder(issuer).policy(policy()).build();
    renewer
        .add_all(specs((0..12).map(|i| format!("r{i}.example"))))
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(12),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2 * HOUR)).await;
    let moved = ca.drill_renewal_windows(1.0, 3, Duration::from_secs(DAY), None);
    assert_eq!(moved.len(), 12);
    // Unasked, nothing happens for hours (the next check is a day away).
    tokio::time::sleep(Duration::from_secs(HOUR)).await;
    assert_eq!(ca.ledger().certificates.len(), 12);
    assert_eq!(renewer.recheck_all(), 12);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(15 * MIN),
        |_| ca.ledger().certificates.len() == 24,
    )
    .await;
    assert_eq!(renewer.status().replacements_requested, 0);
    assert_eq!(statuses.get(429), 0);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// The CA changes the chain of new issuance (a new root, as Let's
/// Encrypt's Gen Y move). Each certificate's next renewal is reported once,
/// naming the chain it left and the one it came under; the renewal after
/// that (same chain) is not reported again.
#[tokio::test(start_paused = true)]
async fn a_chain_change_is_reported_once_per_certificate_on_its_next_renewal() {
    let ca = TestCa::builder()
        .alternate_chain(true)
        .renewal_info(Some(Duration::from_secs(2 * DAY)))
        .start_in_process()
        .unwrap();
    let (issuer, _) = issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| {
        b.renew_at_window_start(true)
    })
    .await;
    let changes = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&changes);
    let renewer = Renewer::builder(issuer)
        .policy(policy())
        .on_event(move |e| {
            if let RenewerEvent::ChainChanged {
                id,
                from_root,
                to_root,
                ..
            } = e
            {
                log.lock()
                    .unwrap()
                    .push((id.clone(), from_root.clone(), to_root.clone()));
            }
        })
        .build();
    renewer
        .add_all(specs((0..6).map(|i| format!("chain{i}.example"))))
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(6),
    )
    .await;
    ca.set_default_to_alternate_root(true);
    // Two renewal rounds: each window opens two days after issuance.
    tokio::time::sleep(Duration::from_secs(5 * DAY)).await;
    assert!(ca.ledger().certificates.len() >= 18, "two renewals each");
    let changes = changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 6, "{changes:?}");
    for (_, from, to) in &changes {
        assert_eq!(from.as_deref(), Some("sturdy-acme Test Root CA"));
        assert_eq!(to.as_deref(), Some("sturdy-acme Test Alternate Root CA"));
    }
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// The certificate's lifetime and the profile it was stored with.
async fn issued_as<S: sturdy_acme::store::Store>(
    issuer: &sturdy_acme::Issuer<S>,
    name: &str,
) -> (Duration, AskedProfile) {
    let cert = issuer.stored_certificate(&[name]).await.unwrap().unwrap();
    (
        cert.not_after.duration_since(cert.not_before).unwrap(),
        cert.profile,
    )
}

fn spec_with(name: &str, options: CertificateOptions) -> CertificateSpec {
    CertificateSpec::new([name]).unwrap().with_options(options)
}

/// A spec whose profile changes (classic to tlsserver) is renewed at once
/// under the new profile, once: not at its renewal time, and not again.
#[tokio::test(start_paused = true)]
async fn a_spec_whose_profile_changes_is_renewed_at_once_under_the_new_one() {
    let ca = TestCa::builder()
        .profiles(true)
        .renewal_info(None)
        .start_in_process()
        .unwrap();
    let (issuer, _) = issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| b).await;
    let renewer = Renewer::builder(issuer.clone()).policy(policy()).build();
    let classic = CertificateOptions::default().with_profile(Some("classic".into()));
    renewer.add(spec_with("p.example", classic)).await.unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(1),
    )
    .await;
    assert_eq!(
        issued_as(&issuer, "p.example").await,
        (
            Duration::from_secs(90 * DAY),
            AskedProfile::Named("classic".into())
        )
    );
    tokio::time::sleep(Duration::from_secs(DAY)).await;
    let tls = CertificateOptions::default().with_profile(Some("tlsserver".into()));
    renewer.add(spec_with("p.example", tls)).await.unwrap();
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        |_| ca.ledger().certificates.len() == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2 * DAY)).await;
    assert_eq!(ca.ledger().certificates.len(), 2, "renewed once");
    assert_eq!(
        issued_as(&issuer, "p.example").await,
        (
            Duration::from_secs(45 * DAY),
            AskedProfile::Named("tlsserver".into())
        )
    );
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// The CA withdraws the profile certificates were ordered with, after the
/// client read its directory: the renewals are refused (`invalidProfile`)
/// once, then ordered with the configured fallback, reported, and no
/// renewal fails; the fallback's certificate is not renewed again for the
/// profile it could not have.
#[tokio::test(start_paused = true)]
async fn a_withdrawn_profile_falls_back_instead_of_failing_every_renewal() {
    let ca = TestCa::builder()
        .profiles(true)
        .renewal_info(Some(Duration::from_secs(2 * DAY)))
        .start_in_process()
        .unwrap();
    let (issuer, statuses) =
        issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| {
            b.renew_at_window_start(true)
        })
        .await;
    let failed = Arc::new(Mutex::new(0usize));
    let seen = Arc::clone(&failed);
    let renewer = Renewer::builder(issuer.clone())
        .policy(policy())
        .on_event(move |e| {
            if let RenewerEvent::Failed { .. } = e {
                *seen.lock().unwrap() += 1;
            }
        })
        .build();
    let options = CertificateOptions::default()
        .with_profile(Some("tlsserver".into()))
        .with_profile_fallback(Some("classic".into()));
    renewer
        .add_all(
            (0..3)
                .map(|i| spec_with(&format!("w{i}.example"), options.clone()))
                .collect(),
        )
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(3),
    )
    .await;
    assert_eq!(
        issued_as(&issuer, "w0.example").await.0,
        Duration::from_secs(45 * DAY)
    );
    ca.withdraw_profile("tlsserver");
    // The windows open two days after issuance; then a few days more.
    tokio::time::sleep(Duration::from_secs(3 * DAY)).await;
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 6, "each renewed once");
    for i in 0..3 {
        assert_eq!(
            issued_as(&issuer, &format!("w{i}.example")).await,
            (
                Duration::from_secs(90 * DAY),
                AskedProfile::Named("classic".into())
            )
        );
    }
    assert_eq!(*failed.lock().unwrap(), 0, "no renewal failed");
    let fallbacks = statuses.fallbacks();
    assert!(!fallbacks.is_empty());
    assert!(
        fallbacks
            .iter()
            .all(|f| *f == ("tlsserver".to_owned(), Some("classic".to_owned()))),
        "{fallbacks:?}"
    );
    // One refusal by the CA, then the client knows.
    assert_eq!(statuses.get(400), 1);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// 8 certificates over 4 CRL shards; on day 2 the CA revokes 2 of them
/// behind the client's back (keyCompromise, listed in its CRL only: their
/// renewal information does not move). The renewer's CRL check (every 6
/// hours) finds both, records them revoked and replaces them with fresh
/// keys; the others are left alone. Each shard is fetched once per check
/// and, unchanged, answered 304.
#[tokio::test(start_paused = true)]
async fn a_certificate_revoked_behind_the_clients_back_is_found_in_the_crl_and_replaced() {
    let ca = TestCa::builder()
        .renewal_info(None)
        .crl_shards(4)
        .start_in_process()
        .unwrap();
    let (issuer, _) = issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| b).await;
    let found = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&found);
    let renewer = Renewer::builder(issuer.clone())
        .policy(policy().with_crl_check_every(Some(Duration::from_secs(6 * HOUR))))
        .on_event(move |e| {
            if let RenewerEvent::RevokedFound {
                serial,
                reason,
                crl,
                ..
            } = e
            {
                log.lock()
                    .unwrap()
                    .push((serial.clone(), *reason, crl.clone()));
            }
        })
        .build();
    let names: Vec<String> = (0..8).map(|i| format!("crl{i}.example")).collect();
    renewer.add_all(specs(names.clone())).await.unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(8),
    )
    .await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for n in &names {
            v.push(issuer.stored_certificate(&[n]).await.unwrap().unwrap());
        }
        v
    };
    tokio::time::sleep(Duration::from_secs(2 * DAY)).await;
    let (full_before, not_modified_before) = ca.crl_served();
    assert_eq!(full_before % 4, 0, "each shard in full once per change");
    assert!(not_modified_before > 0, "unchanged lists answered 304");
    assert!(found.lock().unwrap().is_empty(), "nothing revoked yet");

    assert!(ca.revoke_quietly(&before[1].serial, 1));
    assert!(ca.revoke_quietly(&before[6].serial, 1));
    // Within one CRL cadence (and the replacement's minutes).
    tokio::time::sleep(Duration::from_secs(6 * HOUR + 30 * MIN)).await;
    let found = found.lock().unwrap().clone();
    let mut serials: Vec<&str> = found.iter().map(|(s, _, _)| s.as_str()).collect();
    serials.sort();
    let mut expected = vec![before[1].serial.as_str(), before[6].serial.as_str()];
    expected.sort();
    assert_eq!(serials, expected, "{found:?}");
    assert!(
        found
            .iter()
            .all(|(_, reason, crl)| *reason == Some(1) && crl.contains("/crl/"))
    );
    for (i, (name, old)) in names.iter().zip(&before).enumerate() {
        let now = issuer.stored_certificate(&[name]).await.unwrap().unwrap();
        if i == 1 || i == 6 {
            assert_ne!(now.serial, old.serial, "{name} replaced");
            assert_ne!(*now.key_pem, *old.key_pem, "{name} under a fresh key");
            assert!(now.revoked.is_none());
        } else {
            assert_eq!(now.serial, old.serial, "{name} left alone");
        }
    }
    // The CA's ARI never moved: only the CRL told.
    assert_eq!(ca.ledger().certificates.len(), 10);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// The simulation with every drill, small: on day 5 the CA changes the
/// chain, on day 8 it withdraws `tlsserver`, on day 10 (3 hours past the
/// renewers' 6-hourly checks) it moves every window into the past, on day
/// 12 (2 hours past) it revokes 5% behind the client's back (CRL only).
/// Every moved certificate is replaced within the 6-hour recheck bound as
/// an exempt ARI renewal, every revoked one within the CRL cadence, each
/// chain change reported once, no renewal fails for the withdrawn profile
/// (tlsserver falls back to classic), no 429, nothing expired, no
/// duplicate. Run twice with one seed, the figures are identical.
#[tokio::test(start_paused = true)]
async fn the_simulation_plays_every_drill_and_replays_identically() {
    use sturdy_acme_testca::simulation::{Drills, SimulationConfig, simulate};
    let config = SimulationConfig {
        certificates: 240,
        domains: 12,
        accounts: 2,
        days: 30,
        caa_share: 0.0,
        outage: Duration::ZERO,
        drills: Drills {
            ari: Some((Duration::from_secs(10 * DAY + 3 * HOUR), 1.0)),
            new_customers_at_ari: 6,
            crl: Some((Duration::from_secs(12 * DAY + 2 * HOUR), 0.05)),
            chain_change_at: Some(Duration::from_secs(5 * DAY)),
            withdraw_tlsserver_at: Some(Duration::from_secs(8 * DAY)),
        },
        seed: 5,
        ..SimulationConfig::default()
    };
    let first = simulate(config.clone()).await.unwrap();
    let second = simulate(config).await.unwrap();
    eprintln!("{}", serde_json::to_string(&first).unwrap());
    assert_eq!(first.figures(), second.figures(), "one seed, one run");
    assert_eq!(first.rate_limited_429, 0);
    assert_eq!(first.ever_expired, 0);
    assert_eq!(first.duplicates, 0);
    let d = &first.drills;
    assert_eq!(d.ari_moved, 240, "every live certificate");
    assert_eq!(d.ari_replaced, d.ari_moved, "{d:?}");
    assert_eq!(d.ari_replaced_exempt, d.ari_moved, "{d:?}");
    // Noticed within the 6-hour recheck bound, then issued.
    assert!(d.ari_slowest_replacement_s <= (6 * HOUR) as f64, "{d:?}");
    // New customers arriving with the drill are not held back by it.
    assert_eq!(d.new_customers, 6);
    assert_eq!(d.new_customers_issued, 6, "{d:?}");
    assert!(d.new_customers_slowest_issue_s <= HOUR as f64, "{d:?}");
    assert_eq!(d.crl_revoked, 12);
    assert_eq!(d.crl_replaced, d.crl_revoked, "{d:?}");
    assert!(d.crl_slowest_replacement_s <= (6 * HOUR) as f64, "{d:?}");
    assert!(d.renewed_after_chain_change > 0);
    assert_eq!(
        d.chain_changes_reported, d.renewed_after_chain_change as u64,
        "{d:?}"
    );
    assert_eq!(d.chain_changes_reported_twice, 0);
    assert!(
        d.profile_fallbacks > 0,
        "tlsserver renewals fell back: {d:?}"
    );
    assert_eq!(d.failures_after_withdrawal, 0, "{d:?}");
}

/// Authorization reuse is never assumed: with Let's Encrypt's 2028 reuse
/// of 7 hours, an order an hour later reuses the valid authorization (no
/// challenge answered), and one 8 hours later gets it `pending` again and
/// validates it again, both issued.
#[tokio::test(start_paused = true)]
async fn authorizations_that_come_back_pending_are_validated_again() {
    let ca = TestCa::builder()
        .authorization_reuse(Duration::from_secs(7 * HOUR))
        .start_in_process()
        .unwrap();
    let (issuer, _) = issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| b).await;
    let challenges = || {
        ca.ledger()
            .requests
            .get(&sturdy_acme::Endpoint::Challenge)
            .copied()
            .unwrap_or(0)
    };
    let again = sturdy_acme::EnsureOptions::default().with_force_new(true);
    issuer
        .ensure(&["reuse.example"], &sturdy_acme::EnsureOptions::default())
        .await
        .unwrap();
    let first = challenges();
    assert!(first > 0);
    tokio::time::sleep(Duration::from_secs(HOUR)).await;
    issuer.ensure(&["reuse.example"], &again).await.unwrap();
    assert_eq!(challenges(), first, "reused within 7 hours");
    tokio::time::sleep(Duration::from_secs(8 * HOUR)).await;
    issuer.ensure(&["reuse.example"], &again).await.unwrap();
    assert!(challenges() > first, "validated again after 7 hours");
    assert_eq!(ca.ledger().certificates.len(), 3);
}

/// One seed, one run, where renewals fall at drawn times: 45-day
/// certificates renewed at a time drawn inside each ARI window (around day
/// 30), with 5% transient failures. The draw comes from the seed and the
/// certificate (its names and start), never from the CA's random serial,
/// so two runs renew at the same times and give the same figures.
#[tokio::test(start_paused = true)]
async fn renewals_at_drawn_times_replay_identically() {
    use sturdy_acme_testca::simulation::{SimulationConfig, simulate};
    let config = SimulationConfig {
        certificates: 160,
        domains: 8,
        accounts: 2,
        days: 32,
        tlsserver_share: 1.0,
        caa_share: 0.0,
        outage: Duration::ZERO,
        seed: 5,
        ..SimulationConfig::default()
    };
    let first = simulate(config.clone()).await.unwrap();
    let second = simulate(config).await.unwrap();
    assert!(first.renewals > 100, "{first:?}");
    assert_eq!(first.figures(), second.figures(), "one seed, one run");
}

/// A profile the CA withdraws does not make every certificate ordered with
/// it due at once: they are still valid, and each renews under the
/// fallback at its own time (before, the first refusal made the fallback
/// "the profile asked now", and every other certificate of the withdrawn
/// profile was renewed at once: 5,410 early renewals in a 90-day run).
#[tokio::test(start_paused = true)]
async fn a_withdrawn_profile_renews_each_certificate_at_its_own_time() {
    let ca = TestCa::builder()
        .profiles(true)
        .renewal_info(Some(Duration::from_secs(2 * DAY)))
        .start_in_process()
        .unwrap();
    let (issuer, _) = issuer_with(&ca, MemoryStore::new(), RateLimits::lets_encrypt(), |b| {
        b.renew_at_window_start(true)
    })
    .await;
    let renewer = Renewer::builder(issuer.clone()).policy(policy()).build();
    let options = CertificateOptions::default()
        .with_profile(Some("tlsserver".into()))
        .with_profile_fallback(Some("classic".into()));
    renewer
        .add(spec_with("early.example", options.clone()))
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(1),
    )
    .await;
    // A day and a half later another certificate of the same profile.
    tokio::time::sleep(Duration::from_secs(DAY + 12 * HOUR)).await;
    renewer
        .add(spec_with("late.example", options.clone()))
        .await
        .unwrap();
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(2),
    )
    .await;
    ca.withdraw_profile("tlsserver");
    // The early one's window opens on day 2: renewed under the fallback.
    // The late one's opens on day 3.5: on day 3 it has not been renewed.
    tokio::time::sleep(Duration::from_secs(DAY + 6 * HOUR)).await;
    assert_eq!(
        issued_as(&issuer, "early.example").await.1,
        AskedProfile::Named("classic".into())
    );
    assert_eq!(
        issued_as(&issuer, "late.example").await.1,
        AskedProfile::Named("tlsserver".into()),
        "still valid: not renewed before its time"
    );
    assert_eq!(ca.ledger().certificates.len(), 3);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}
