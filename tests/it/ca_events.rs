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
