//! Prints the fault matrix: for each fault of the embedded test CA's script
//! on each endpoint (hitting the first request to that endpoint), what one
//! issuance with the default retry classes does: its outcome, the requests
//! it made and the certificates the CA issued.
//!
//! `cargo bench --bench fault_matrix`
//!
//! Delays are shortened (transient backoff from 5 ms, CAA unused) so the
//! whole matrix runs in seconds; the decisions are the default policy's.

use std::time::{Duration, Instant};

use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, ChallengeType, Csr, Endpoint, KeyAlgorithm,
    NewOrder,
};
use sturdy_acme::{Jitter, RetryPolicy};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

async fn issue(ca: &TestCa) -> Result<(), sturdy_acme::Error> {
    let defaults = RetryPolicy::default();
    let policy = defaults.with_transient(
        defaults
            .transient()
            .with_base(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(50))
            .with_jitter(Jitter::None),
    );
    let client = ca
        .client_builder()
        .timeout(Duration::from_millis(300))
        .retry_policy(policy)
        .build()
        .await?;
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256)?,
            &AccountOptions::agreeing_to_terms(),
        )
        .await?;
    let mut order = account
        .new_order(&NewOrder::for_names(&["matrix.example"])?)
        .await?;
    for authz in order.authorizations().await? {
        if let Some(mut ch) = authz.challenge(&ChallengeType::Http01) {
            ch.respond().await?;
        }
    }
    order.wait_ready().await?;
    order
        .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
        .await?;
    order.certificate().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let faults = [
        ("empty 500", Fault::Empty500),
        ("empty 500 after commit", Fault::Empty500AfterCommit),
        (
            "503 Retry-After 1",
            Fault::Unavailable {
                retry_after: RetryAfterForm::Seconds(1),
            },
        ),
        ("badNonce", Fault::BadNonce),
        (
            "429 Retry-After 3600",
            Fault::RateLimited {
                retry_after_secs: 3600,
            },
        ),
        ("drop after commit", Fault::DropAfterCommit),
        (
            "slow after commit",
            Fault::SlowAfterCommit { delay_ms: 1000 },
        ),
        ("truncated after commit", Fault::TruncatedAfterCommit),
        ("invalid JSON after commit", Fault::InvalidJsonAfterCommit),
        ("endless body", Fault::EndlessBody),
        ("100 MB body", Fault::OversizedBody { bytes: 100_000_000 }),
    ];
    let endpoints = [
        Endpoint::NewAccount,
        Endpoint::NewOrder,
        Endpoint::Authorization,
        Endpoint::Challenge,
        Endpoint::Order,
        Endpoint::Finalize,
        Endpoint::Certificate,
    ];
    println!("| fault | endpoint | outcome | requests | certificates | time |");
    println!("|---|---|---|---|---|---|");
    for (name, fault) in &faults {
        for endpoint in endpoints {
            let ca = TestCa::builder()
                .faults(vec![FaultRule::new(
                    endpoint,
                    Trigger::Nth(1),
                    fault.clone(),
                )])
                .start()
                .await?;
            let started = Instant::now();
            let outcome = match issue(&ca).await {
                Ok(()) => "issued".to_owned(),
                Err(e) => format!("error: {}", e.class().name()),
            };
            let ledger = ca.ledger();
            let requests: u64 = ledger.requests.values().sum();
            println!(
                "| {name} | {endpoint} | {outcome} | {requests} | {} | {:.0?} |",
                ledger.certificates.len(),
                started.elapsed()
            );
        }
    }
    Ok(())
}
