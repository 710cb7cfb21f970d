//! Issue 11: ACME Renewal Information (RFC 9773), `replaces` and
//! certificate profiles, in the client, against the embedded CA serving
//! them as Boulder does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sturdy_acme::{
    Account, AuthorizationStatus, CertId, CertificateChain, CertificateKey, ChallengeType, Csr,
    Endpoint, Error, Event, KeyAlgorithm, Limit, NewOrder, ProblemType, RateLimits, RetryPolicy,
};
use sturdy_acme_testca::{RenewalInfoAnswer, TestCa};

use crate::common;
use sturdy_acme::store::Store as _;

async fn account_at(ca: &TestCa, events: Option<Arc<Mutex<Vec<Event>>>>) -> Account {
    let mut builder = ca.client_builder().retry_policy(RetryPolicy::no_retries());
    if let Some(events) = events {
        builder = builder.on_event(move |e| events.lock().unwrap().push(e.clone()));
    }
    let client = builder.build().await.unwrap();
    common::suite::account(&client, KeyAlgorithm::Es256).await
}

/// Orders, answers, finalizes and downloads `order`.
async fn issue(
    account: &Account,
    order: &NewOrder,
) -> Result<(CertificateChain, serde_json::Value), Error> {
    let mut order = account.new_order(order).await?;
    let echoed = serde_json::to_value(&order.state().extra).unwrap();
    for authz in order.authorizations().await? {
        if authz.status() == AuthorizationStatus::Pending {
            authz
                .challenge(&ChallengeType::Http01)
                .or_else(|| authz.challenge(&ChallengeType::Dns01))
                .expect("a challenge")
                .respond()
                .await?;
        }
    }
    order.wait_ready().await?;
    order
        .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
        .await?;
    Ok((order.certificate().await?, echoed))
}

fn names(n: &[&str]) -> NewOrder {
    NewOrder::for_names(n).unwrap()
}

fn cert_id(chain: &CertificateChain) -> CertId {
    CertId::from_pem(chain.pem()).unwrap()
}

/// Boulder's window for a 90-day certificate: around day 60 (a third of
/// the lifetime before expiry, ± a hundredth), with Retry-After clamped.
#[tokio::test]
async fn renewal_info_gives_boulders_window_and_its_recheck_time() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let account = account_at(&ca, None).await;
    assert!(account.client().offers_renewal_info());
    let (chain, _) = issue(&account, &names(&["ari.example"])).await.unwrap();
    let id = cert_id(&chain);
    let before = SystemTime::now();
    let info = account.client().renewal_info(&id).await.unwrap();
    let day = Duration::from_secs(86400);
    let from_now = |t: SystemTime| t.duration_since(before).unwrap_or_default();
    assert!(
        from_now(info.window_start) > 58 * day && from_now(info.window_end) < 62 * day,
        "{info:?}"
    );
    assert!(info.window_end > info.window_start);
    // Retry-After 21600 s: check again in 6 hours.
    let recheck = from_now(info.check_again_at);
    assert!(
        recheck >= Duration::from_secs(21590) && recheck <= Duration::from_secs(21610),
        "{recheck:?}"
    );
    let renew_at = info.renewal_time(0.5, SystemTime::now());
    assert!(renew_at > info.window_start && renew_at < info.window_end);
    // An unknown CertID is the CA's 404, typed.
    let unknown = CertId::new(&[1, 2, 3], &[4]);
    let err = account.client().renewal_info(&unknown).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert_eq!(
        ca.ledger().requests.get(&Endpoint::RenewalInfo).copied(),
        Some(2)
    );
}

/// Scripted answers: a window in the past (renew now), a malformed body
/// (a typed InvalidResponse, not retried), an error, a Retry-After that is
/// clamped to a minute at least.
#[tokio::test]
async fn scripted_renewal_info_answers_are_each_typed() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let account = account_at(&ca, Some(Arc::clone(&events))).await;
    let (chain, _) = issue(&account, &names(&["scripted.example"]))
        .await
        .unwrap();
    let id = cert_id(&chain);
    let serial = chain.serial_hex().unwrap();
    let now = SystemTime::now();
    ca.set_renewal_info(
        &serial,
        RenewalInfoAnswer::Window {
            start: now - Duration::from_secs(7200),
            end: now - Duration::from_secs(3600),
            explanation_url: Some("https://ca.example/incident".into()),
        },
        Some(5),
    );
    let info = account.client().renewal_info(&id).await.unwrap();
    assert_eq!(
        info.explanation_url.as_deref(),
        Some("https://ca.example/incident")
    );
    let surfaced = events.lock().unwrap().iter().any(|e| {
        matches!(e, Event::RenewalInfo { explanation_url: Some(u), cert_id, .. }
            if u == "https://ca.example/incident" && cert_id == id.as_str())
    });
    assert!(surfaced, "the explanation is in the events");
    let later = SystemTime::now();
    assert_eq!(
        info.renewal_time(0.7, later),
        later,
        "a window in the past: renew now"
    );
    let recheck = info.check_again_at.duration_since(now).unwrap();
    assert!(
        recheck >= Duration::from_secs(60),
        "Retry-After 5 clamped up: {recheck:?}"
    );

    ca.set_renewal_info(
        &serial,
        RenewalInfoAnswer::Body("<html>oops</html>".into()),
        None,
    );
    let before = ca
        .ledger()
        .requests
        .get(&Endpoint::RenewalInfo)
        .copied()
        .unwrap_or(0);
    let err = account.client().renewal_info(&id).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(
        ca.ledger().requests.get(&Endpoint::RenewalInfo).copied(),
        Some(before + 1),
        "a malformed answer is not retried"
    );
    ca.set_renewal_info(&serial, RenewalInfoAnswer::Error(500), None);
    let err = account.client().renewal_info(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
}

/// The ARI exemption at the CA: with a per-domain limit of 2, a third new
/// certificate under the domain is refused, but an ARI renewal (replaces,
/// inside its window) is issued; the order echoes `replaces`.
#[tokio::test]
async fn an_ari_renewal_is_exempt_from_the_cas_limits() {
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .rate_limits(RateLimits {
            certificates_per_domain: Some(Limit::new(2, Duration::from_secs(7 * 86400))),
            ..RateLimits::none()
        })
        .start()
        .await
        .unwrap();
    let account = account_at(&ca, None).await;
    let (first, _) = issue(&account, &names(&["a.limited.test"])).await.unwrap();
    issue(&account, &names(&["b.limited.test"])).await.unwrap();
    let err = issue(&account, &names(&["c.limited.test"]))
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    let renewal = names(&["a.limited.test"]).with_replaces(cert_id(&first));
    let (_, echoed) = issue(&account, &renewal).await.unwrap();
    assert_eq!(echoed["replaces"], cert_id(&first).as_str());
    assert_eq!(ca.ledger().certificates.len(), 3);
}

/// `alreadyReplaced`: a second order replacing the same certificate is
/// refused by the CA (409); the client sends it once more without
/// `replaces`, and the event says so. Another account's certificate is
/// refused (403): a typed cause, dropped the same way.
#[tokio::test]
async fn an_already_replaced_certificate_is_ordered_again_without_replaces() {
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .start()
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let account = account_at(&ca, Some(Arc::clone(&events))).await;
    let (first, _) = issue(&account, &names(&["replaced.example"]))
        .await
        .unwrap();
    let id = cert_id(&first);
    let renewal = names(&["replaced.example"]).with_replaces(id.clone());
    let (_, echoed) = issue(&account, &renewal).await.unwrap();
    assert_eq!(echoed["replaces"], id.as_str());
    // The same replaces again: alreadyReplaced, then without it.
    let (latest, echoed) = issue(&account, &renewal).await.unwrap();
    assert!(echoed.get("replaces").is_none(), "{echoed}");
    let dropped: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ReplacesDropped {
                cert_id, problem, ..
            } => Some(format!("{cert_id} {problem}")),
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0].contains(id.as_str()) && dropped[0].contains("alreadyReplaced"),
        "{dropped:?}"
    );
    // Another account may not replace a certificate (one not yet
    // replaced: the CA checks that first, as Boulder does): a typed
    // refusal, and the order is sent without replaces.
    let other_events = Arc::new(Mutex::new(Vec::new()));
    let other = account_at(&ca, Some(Arc::clone(&other_events))).await;
    let (_, echoed) = issue(
        &other,
        &names(&["replaced.example"]).with_replaces(cert_id(&latest)),
    )
    .await
    .unwrap();
    assert!(echoed.get("replaces").is_none(), "{echoed}");
    let causes: Vec<sturdy_acme::ReplacesRefusal> = other_events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ReplacesDropped { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect();
    assert_eq!(causes, [sturdy_acme::ReplacesRefusal::NotOurCertificate]);
}

/// A CA without renewal information (Pebble 2.4, or the embedded CA by
/// default): `replaces` is not sent at all.
#[tokio::test]
async fn without_renewal_info_replaces_is_not_sent() {
    let ca = TestCa::start().await.unwrap();
    let account = account_at(&ca, None).await;
    assert!(!account.client().offers_renewal_info());
    let (first, _) = issue(&account, &names(&["plain.example"])).await.unwrap();
    let (_, echoed) = issue(
        &account,
        &names(&["plain.example"]).with_replaces(cert_id(&first)),
    )
    .await
    .unwrap();
    assert!(echoed.get("replaces").is_none());
    let err = account
        .client()
        .renewal_info(&cert_id(&first))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
}

/// Profiles: listed from the directory; an unknown one refused locally
/// (no newOrder sent); `tlsserver` issues 45-day certificates,
/// `shortlived` 160-hour ones and is the only one allowing IP
/// addresses; `classic` with an IP is the CA's typed `rejectedIdentifier`
/// (as Boulder answers);
/// too many names for `tlsserver` is refused.
#[tokio::test]
async fn profiles_are_offered_checked_and_honoured() {
    let ca = TestCa::builder().profiles(true).start().await.unwrap();
    let account = account_at(&ca, None).await;
    let offered: Vec<String> = account
        .client()
        .profiles()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(offered, ["classic", "shortlived", "tlsserver"]);
    let err = account
        .new_order(&names(&["p.example"]).with_profile("bogus"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(
        ca.ledger().requests.get(&Endpoint::NewOrder).copied(),
        None,
        "refused locally"
    );
    let lifetime = |chain: &CertificateChain| {
        let (nb, na) = chain.validity().unwrap();
        Duration::from_secs((na - nb) as u64)
    };
    let (tls, echoed) = issue(&account, &names(&["t.example"]).with_profile("tlsserver"))
        .await
        .unwrap();
    assert_eq!(echoed["profile"], "tlsserver");
    assert_eq!(lifetime(&tls), Duration::from_secs(45 * 86400));
    let der = common::pem_certs(tls.pem()).remove(0);
    assert_eq!(
        common::verify::subject_cn(&der),
        "",
        "tlsserver: no common name"
    );
    let (short, _) = issue(
        &account,
        &names(&["s.example", "192.0.2.7"]).with_profile("shortlived"),
    )
    .await
    .unwrap();
    assert_eq!(lifetime(&short), Duration::from_secs(160 * 3600));
    let (classic, echoed) = issue(&account, &names(&["c.example"])).await.unwrap();
    assert_eq!(echoed["profile"], "classic", "the default");
    assert_eq!(lifetime(&classic), Duration::from_secs(90 * 86400));
    let err = issue(&account, &names(&["192.0.2.8"]).with_profile("classic"))
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::RejectedIdentifier),
        "{err}"
    );
    let many: Vec<String> = (0..26).map(|i| format!("n{i}.many.example")).collect();
    let err = issue(
        &account,
        &NewOrder::for_names(&many)
            .unwrap()
            .with_profile("tlsserver"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

/// The store key of `name`'s certificate at `ca` for `issuer`'s account.
async fn stored_key(
    ca: &TestCa,
    issuer: &sturdy_acme::Issuer<sturdy_acme::store::FileStore>,
    name: &str,
) -> sturdy_acme::store::IdentifierSetKey {
    sturdy_acme::store::IdentifierSetKey::for_account(
        ca.directory_url(),
        issuer.account().await.unwrap().url(),
        &[sturdy_acme::Identifier::dns(name).unwrap()],
    )
}

/// An issuer on a FileStore against `ca`, renewing at the window's start.
async fn ari_issuer(
    ca: &TestCa,
    dir: &std::path::Path,
) -> sturdy_acme::Issuer<sturdy_acme::store::FileStore> {
    sturdy_acme::Issuer::builder(
        ca.client_builder()
            .retry_policy(RetryPolicy::no_retries())
            .build()
            .await
            .unwrap(),
        sturdy_acme::store::FileStore::open(dir).unwrap(),
    )
    .solver(Arc::new(
        sturdy_acme::solver::http01::Http01Solver::unserved(),
    ))
    .renew_at_window_start(true)
    .build()
}

/// The issuer renews when ARI says so, sends `replaces`, and the CA
/// treats it as an ARI renewal: with the per-domain limit at 2 a third
/// certificate is still issued. The schedule is stored with the
/// certificate; within its Retry-After the renewal information is not
/// fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_renews_by_ari_with_replaces_and_the_ca_exempts_it() {
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .rate_limits(RateLimits {
            certificates_per_domain: Some(Limit::new(2, Duration::from_secs(7 * 86400))),
            ..RateLimits::none()
        })
        .start()
        .await
        .unwrap();
    let dir = crate::issuer::temp_store("ari-renewal");
    let issuer = ari_issuer(&ca, &dir).await;
    let options = sturdy_acme::EnsureOptions::default();
    let first = issuer.ensure(&["a.ari.test"], &options).await.unwrap();
    issuer.ensure(&["b.ari.test"], &options).await.unwrap();
    assert_eq!(ca.ledger().certificates.len(), 2);
    // The window opened at issuance: due, renewed with replaces.
    let renewed = issuer.ensure(&["a.ari.test"], &options).await.unwrap();
    assert_eq!(renewed.source, sturdy_acme::CertificateSource::New);
    let id = CertId::from_pem(&first.certificate.chain_pem).unwrap();
    assert_eq!(renewed.replaces.as_deref(), Some(id.as_str()));
    assert_eq!(
        ca.ledger().certificates.len(),
        3,
        "exempt from the per-domain limit at the CA"
    );
    // Its schedule: fetched once, kept until its Retry-After (6 hours).
    let fetched = ca
        .ledger()
        .requests
        .get(&Endpoint::RenewalInfo)
        .copied()
        .unwrap_or(0);
    let again = issuer.ensure(&["b.ari.test"], &options).await.unwrap();
    // b's window also opened at issuance: it is renewed too (an ARI
    // renewal, so the per-domain limit of 2 does not stop it).
    assert!(again.replaces.is_some());
    let after = ca
        .ledger()
        .requests
        .get(&Endpoint::RenewalInfo)
        .copied()
        .unwrap_or(0);
    assert_eq!(after, fetched + 1, "one fetch for b");
    let stored = issuer
        .store()
        .load_certificate(&stored_key(&ca, &issuer, "a.ari.test").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.serial, renewed.certificate.serial);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A window in the past means renew now; a malformed answer falls back to
/// the lifetime (a fresh 90-day certificate is then not due) and is
/// checked again only after 6 hours; Retry-After on the answer sets when
/// it is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_follows_past_windows_and_falls_back_on_bad_answers() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let dir = crate::issuer::temp_store("ari-fallback");
    let issuer = ari_issuer(&ca, &dir).await;
    let options = sturdy_acme::EnsureOptions::default();
    let first = issuer.ensure(&["past.ari.test"], &options).await.unwrap();
    // Boulder's window is ~day 60: not due, and the schedule is stored.
    let again = issuer.ensure(&["past.ari.test"], &options).await.unwrap();
    assert_eq!(again.source, sturdy_acme::CertificateSource::Stored);
    let schedule = again.certificate.renewal.clone().expect("a schedule");
    let recheck = schedule
        .check_again_at
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        recheck > Duration::from_secs(21000),
        "Retry-After 21600 honoured: {recheck:?}"
    );
    assert!(
        issuer.renewal_due_at(&again.certificate)
            > SystemTime::now() + Duration::from_secs(50 * 86400)
    );
    let fetched = ca
        .ledger()
        .requests
        .get(&Endpoint::RenewalInfo)
        .copied()
        .unwrap_or(0);
    issuer.ensure(&["past.ari.test"], &options).await.unwrap();
    assert_eq!(
        ca.ledger()
            .requests
            .get(&Endpoint::RenewalInfo)
            .copied()
            .unwrap_or(0),
        fetched,
        "not fetched again before its Retry-After"
    );
    // A window in the past (an incident): renewed now. Forcing a recheck
    // by giving the stored schedule a passed check time.
    let serial = first.certificate.serial.clone();
    let now = SystemTime::now();
    ca.set_renewal_info(
        &serial,
        RenewalInfoAnswer::Window {
            start: now - Duration::from_secs(7200),
            end: now - Duration::from_secs(3600),
            explanation_url: Some("https://ca.example/incident".into()),
        },
        None,
    );
    let key = stored_key(&ca, &issuer, "past.ari.test").await;
    let mut cert = issuer
        .store()
        .load_certificate(&key)
        .await
        .unwrap()
        .unwrap();
    cert.renewal.as_mut().unwrap().check_again_at = now - Duration::from_secs(1);
    issuer.store().save_certificate(&key, &cert).await.unwrap();
    let renewed = issuer.ensure(&["past.ari.test"], &options).await.unwrap();
    assert_eq!(
        renewed.source,
        sturdy_acme::CertificateSource::New,
        "a past window: renew now"
    );
    // A malformed answer for the new one: the lifetime rule, no renewal.
    ca.set_renewal_info(
        &renewed.certificate.serial,
        RenewalInfoAnswer::Body("{}".into()),
        None,
    );
    let kept = issuer.ensure(&["past.ari.test"], &options).await.unwrap();
    assert_eq!(kept.source, sturdy_acme::CertificateSource::Stored);
    let schedule = kept.certificate.renewal.clone().unwrap();
    assert!(schedule.window_start.is_none(), "{schedule:?}");
    assert!(schedule.check_again_at > SystemTime::now() + Duration::from_secs(5 * 3600));
    assert_eq!(ca.ledger().certificates.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A profile per certificate: `shortlived` certificates are renewed at
/// half of their 160 hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_orders_the_profile_asked_for_and_times_shortlived_at_half() {
    let ca = TestCa::builder().profiles(true).start().await.unwrap();
    let dir = crate::issuer::temp_store("profiles");
    let issuer = ari_issuer(&ca, &dir).await;
    let options = sturdy_acme::EnsureOptions::from(
        sturdy_acme::CertificateOptions::default().with_profile(Some("shortlived".into())),
    );
    let short = issuer.ensure(&["s.profile.test"], &options).await.unwrap();
    let cert = &short.certificate;
    assert_eq!(
        cert.not_after.duration_since(cert.not_before).unwrap(),
        Duration::from_secs(160 * 3600)
    );
    assert_eq!(
        issuer.renewal_due_at(cert),
        cert.not_before + Duration::from_secs(80 * 3600)
    );
    let classic = issuer
        .ensure(&["c.profile.test"], &Default::default())
        .await
        .unwrap();
    let cert = &classic.certificate;
    assert_eq!(
        issuer.renewal_due_at(cert),
        cert.not_before + Duration::from_secs(60 * 86400)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hostile window (far past the expiry) never lets a certificate
/// expire: the renewal is at 90% of its lifetime at the latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_past_the_expiry_is_capped_at_ninety_percent_of_the_lifetime() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let dir = crate::issuer::temp_store("ari-hostile");
    let issuer = ari_issuer(&ca, &dir).await;
    let options = sturdy_acme::EnsureOptions::default();
    // Issued without a schedule yet: the renewal information of the first
    // ensure after it is scripted before it is fetched.
    let first = issuer.ensure(&["far.ari.test"], &options).await.unwrap();
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(250_000_000_000);
    ca.set_renewal_info(
        &first.certificate.serial,
        RenewalInfoAnswer::Window {
            start: far,
            end: far + Duration::from_secs(86400),
            explanation_url: None,
        },
        None,
    );
    let key = stored_key(&ca, &issuer, "far.ari.test").await;
    let mut cert = issuer
        .store()
        .load_certificate(&key)
        .await
        .unwrap()
        .unwrap();
    cert.renewal = None;
    issuer.store().save_certificate(&key, &cert).await.unwrap();
    let kept = issuer.ensure(&["far.ari.test"], &options).await.unwrap();
    let c = &kept.certificate;
    let lifetime = c.not_after.duration_since(c.not_before).unwrap();
    assert!(
        issuer.renewal_due_at(c) <= c.not_after - lifetime / 10,
        "{:?}",
        c.renewal
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A recheck due on a certificate that is not: while another node holds
/// the set's lease, `ensure` returns the stored certificate at once
/// instead of waiting for the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_does_not_wait_for_another_nodes_lease() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let dir = crate::issuer::temp_store("ari-busy-lease");
    let issuer = ari_issuer(&ca, &dir).await;
    let options = sturdy_acme::EnsureOptions::default();
    let first = issuer.ensure(&["busy.ari.test"], &options).await.unwrap();
    let key = stored_key(&ca, &issuer, "busy.ari.test").await;
    // Another node holds the set's lease.
    let other = issuer
        .store()
        .acquire_lease(
            &format!("cert-{}", key.file_stem()),
            "another-node",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let again = issuer.ensure(&["busy.ari.test"], &options).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(again.source, sturdy_acme::CertificateSource::Stored);
    assert_eq!(again.certificate.serial, first.certificate.serial);
    issuer.store().release_lease(&other).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
