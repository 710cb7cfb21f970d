//! The request governor against the embedded CA (issue 15): a 503 with
//! Retry-After pauses every order in the process, the cap on requests in
//! flight holds at the CA, and nonces come from the pool, not one
//! newNonce per waiting order.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{Endpoint, EnsureOptions, Event, GovernorPolicy, Issuer, NewOrder};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_on_new_order_pauses_every_order_until_retry_after() {
    let ca = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Nth(1),
            Fault::Unavailable {
                retry_after: RetryAfterForm::Seconds(2),
            },
        )])
        .start()
        .await
        .unwrap();
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&pauses);
    let client = ca
        .client_builder()
        .on_event(move |e| {
            if let Event::Paused {
                endpoint, delay, ..
            } = e
            {
                seen.lock().unwrap().push((*endpoint, *delay));
            }
        })
        .build()
        .await
        .unwrap();
    let account = common::suite::account(&client, sturdy_acme::KeyAlgorithm::Es256).await;

    // The first order meets the 503 ...
    let first = {
        let account = account.clone();
        tokio::spawn(async move {
            account
                .new_order(&NewOrder::for_names(&["first.example"]).unwrap())
                .await
        })
    };
    while pauses.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... and every other order started during the pause waits for it.
    let others: Vec<_> = (0..20)
        .map(|i| {
            let account = account.clone();
            tokio::spawn(async move {
                account
                    .new_order(&NewOrder::for_names(&[format!("o{i}.example")]).unwrap())
                    .await
            })
        })
        .collect();
    // Other endpoints are not paused.
    let asked = std::time::Instant::now();
    account.refresh().await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(1));
    first.await.unwrap().unwrap();
    for o in others {
        o.await.unwrap().unwrap();
    }

    let ledger = ca.ledger();
    let new_orders: Vec<SystemTime> = ledger
        .arrivals
        .iter()
        .filter(|(e, _)| *e == Endpoint::NewOrder)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(new_orders.len(), 22, "the 503, its retry and 20 others");
    let refused_at = new_orders[0];
    for t in &new_orders[1..] {
        let after = t.duration_since(refused_at).unwrap_or_default();
        assert!(
            after >= Duration::from_millis(1900),
            "a newOrder was sent {after:?} into a 2 s pause"
        );
    }
    let pauses = pauses.lock().unwrap();
    assert_eq!(
        *pauses,
        [(Some(Endpoint::NewOrder), Duration::from_secs(2))],
        "one pause event, not one per waiting order"
    );
}

async fn fifty_certificates(max_in_flight: usize) -> (sturdy_acme_testca::Ledger, u64) {
    // 20 ms per answer, as from a CA across the internet: requests overlap.
    let ca = TestCa::builder()
        .latency(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "sturdy-governor-{max_in_flight}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let fetched = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&fetched);
    let client = ca
        .client_builder()
        .governor(GovernorPolicy::default().with_max_in_flight(max_in_flight))
        .on_event(move |e| {
            if let Event::Exchange {
                endpoint: Endpoint::NewNonce,
                ..
            } = e
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .await
        .unwrap();
    let issuer = Issuer::builder(client.clone(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let sets: Vec<Vec<String>> = (0..50).map(|i| vec![format!("c{i}.example")]).collect();
    let results = issuer.ensure_all(sets, &EnsureOptions::default(), 50).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let stats = client.governor_stats();
    assert!(stats.peak_in_flight <= max_in_flight as u64, "{stats:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    (ca.ledger(), u64::from(fetched.load(Ordering::Relaxed)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_cap_holds_at_the_ca_and_nonces_come_from_the_pool() {
    let (capped, nonces) = fifty_certificates(4).await;
    assert_eq!(capped.certificates.len(), 50);
    assert!(
        capped.peak_in_flight <= 4,
        "the CA saw {} at once",
        capped.peak_in_flight
    );
    assert!(nonces <= 4, "{nonces} newNonce requests for 4 in flight");
    assert_eq!(
        capped
            .requests
            .get(&Endpoint::NewNonce)
            .copied()
            .unwrap_or(0),
        nonces
    );

    // The control: with a generous cap the same burst does pile up at the
    // CA (so the assertion above can fail).
    let (open, _) = fifty_certificates(64).await;
    assert!(
        open.peak_in_flight > 4,
        "the control never exceeded 4 at once ({})",
        open.peak_in_flight
    );
}
