//! Figures, not assertions (issue 27, defect 9): how long one certificate
//! takes through one fresh client against Pebble (real http-01, no VA
//! sleep), over the first 20 and over 200, with the adaptive first poll
//! and with the protocol's floor (polls back to back every millisecond).
//!
//! ```text
//! cargo test --test it poll_figures -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use crate::common;

use common::pebble::{Pebble, PebbleOptions};
use common::suite::{AcmeServer, Solvers, issue};
use sturdy_acme::{CertificateKey, ChallengeType, Endpoint, KeyAlgorithm, PollPolicy};

/// The p50 of `times`.
fn p50(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

async fn run(pebble: &Pebble, label: &str, polls: PollPolicy, n: usize) {
    let client = pebble
        .client_builder()
        .timeout(Duration::from_secs(20))
        .poll_policy(polls)
        .build()
        .await
        .unwrap();
    let account = common::suite::account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(pebble, &ChallengeType::Http01).await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    let before = client.request_stats();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{label}-{i}.example.com");
        let started = Instant::now();
        issue(&account, &[&name], &ChallengeType::Http01, &solvers, &key).await;
        times.push(started.elapsed());
    }
    let used = client.request_stats().since(&before);
    let polls = used.get(Endpoint::Order) + used.get(Endpoint::Authorization);
    println!(
        "{label:>9}: per certificate p50 {:>8.2?} over the first 20, {:>8.2?} over {n}, \
         {:>8.2?} over the last 100; order+authorization requests per certificate {:.2}",
        p50(&times[..20]),
        p50(&times),
        p50(&times[n.saturating_sub(100)..]),
        polls as f64 / n as f64,
    );
}

#[tokio::test]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn poll_figures() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let n = std::env::var("POLL_FIGURES_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    run(&pebble, "adaptive", PollPolicy::default(), n).await;
    let floor = PollPolicy::default()
        .with_adaptive(false)
        .with_first_delay(Duration::from_millis(1))
        .with_factor(1)
        .with_max_delay(Duration::from_millis(1))
        .with_max_polls(100_000);
    run(&pebble, "floor", floor, n).await;
}
