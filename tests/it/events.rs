//! Issue 14: the events a service builds its metrics on agree with what
//! the CA saw, under a fault script of badNonce and 503 answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, Csr, Endpoint, ErrorClass, Event, Jitter,
    KeyAlgorithm, RetryPolicy,
};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

use crate::common::suite::ready_order;

/// What the test keeps of one event, in the order they came.
#[derive(Debug, Clone)]
enum Seen {
    Exchange {
        endpoint: Endpoint,
        url: String,
        problem: Option<String>,
        status: Option<u16>,
        attempt: u32,
    },
    Retry {
        url: String,
        class: ErrorClass,
        attempt: u32,
    },
    GaveUp,
}

#[tokio::test]
async fn exchange_and_retry_events_agree_with_the_ca_ledger() {
    let ca = TestCa::builder()
        .faults(vec![
            FaultRule::everywhere(
                Trigger::Probability {
                    p: 0.25,
                    seed: 1414,
                },
                Fault::BadNonce,
            ),
            FaultRule::new(
                Endpoint::Order,
                Trigger::Probability { p: 0.3, seed: 14 },
                Fault::Unavailable {
                    retry_after: RetryAfterForm::Seconds(0),
                },
            ),
            FaultRule::new(
                Endpoint::Authorization,
                Trigger::Probability { p: 0.2, seed: 41 },
                Fault::Unavailable {
                    retry_after: RetryAfterForm::Seconds(0),
                },
            ),
        ])
        .start()
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = seen.clone();
    let defaults = RetryPolicy::default();
    let policy = defaults.with_transient(
        defaults
            .transient()
            .with_max_attempts(12)
            .with_base(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5))
            .with_jitter(Jitter::None),
    );
    let client = ca
        .client_builder()
        .retry_policy(policy)
        .on_event(move |e| {
            let s = match e {
                Event::Exchange {
                    endpoint,
                    url,
                    problem,
                    status,
                    attempt,
                    ..
                } => Seen::Exchange {
                    endpoint: *endpoint,
                    url: url.clone(),
                    problem: problem.clone(),
                    status: *status,
                    attempt: *attempt,
                },
                Event::Retry {
                    url,
                    class,
                    attempt,
                    ..
                } => Seen::Retry {
                    url: url.clone(),
                    class: class.clone(),
                    attempt: *attempt,
                },
                Event::GaveUp { .. } => Seen::GaveUp,
                _ => return,
            };
            sink.lock().unwrap().push(s);
        })
        .build()
        .await
        .unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    for i in 0..8 {
        let mut order = ready_order(&account, &format!("events{i}.example")).await;
        order
            .finalize(Csr::Key(
                &CertificateKey::generate(Default::default()).unwrap(),
            ))
            .await
            .unwrap();
        order.certificate().await.unwrap();
    }

    let seen = seen.lock().unwrap().clone();
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 8);

    // Every request the CA received was reported once, per endpoint.
    let mut exchanges: BTreeMap<Endpoint, u64> = BTreeMap::new();
    for s in &seen {
        if let Seen::Exchange { endpoint, .. } = s {
            *exchanges.entry(*endpoint).or_default() += 1;
        }
    }
    assert_eq!(
        exchanges, ledger.requests,
        "Exchange events vs the CA's ledger"
    );

    // Every badNonce and every 503 was re-sent, and each re-send was
    // announced by one Retry of the right class; nothing gave up.
    let count = |f: &dyn Fn(&Seen) -> bool| seen.iter().filter(|s| f(s)).count();
    let bad_nonces =
        count(&|s| matches!(s, Seen::Exchange { problem: Some(p), .. } if p == "badNonce"));
    let unavailable = count(&|s| {
        matches!(
            s,
            Seen::Exchange {
                status: Some(503),
                ..
            }
        )
    });
    assert!(
        bad_nonces > 10 && unavailable > 5,
        "the faults fired: {bad_nonces} badNonce, {unavailable} 503"
    );
    assert_eq!(
        count(&|s| matches!(
            s,
            Seen::Retry {
                class: ErrorClass::BadNonce,
                ..
            }
        )),
        bad_nonces
    );
    assert_eq!(
        count(&|s| matches!(
            s,
            Seen::Retry {
                class: ErrorClass::Transient,
                ..
            }
        )),
        unavailable
    );
    assert_eq!(count(&|s| matches!(s, Seen::GaveUp)), 0);

    // Attempts count per logical request across both kinds of re-send:
    // the exchange after a Retry for a URL is that Retry's attempt number.
    let mut checked = 0;
    for (i, s) in seen.iter().enumerate() {
        let Seen::Retry { url, attempt, .. } = s else {
            continue;
        };
        let next = seen[i + 1..].iter().find_map(|n| match n {
            Seen::Exchange {
                url: u, attempt, ..
            } if u == url => Some(*attempt),
            _ => None,
        });
        assert_eq!(next, Some(*attempt), "the re-send after retry {i} of {url}");
        checked += 1;
    }
    assert_eq!(checked, bad_nonces + unavailable);
    // Some logical request needed a third attempt: the count did not reset.
    let most = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Exchange { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(most >= 2, "no request needed three attempts");
    eprintln!(
        "events: {} exchanges, {bad_nonces} badNonce and {unavailable} 503 re-sent, \
         at most {} attempts for one request",
        exchanges.values().sum::<u64>(),
        most + 1
    );
}
