//! What the exactly-once issuer costs over a bare order: durable writes
//! (fsyncs) per issuance and added wall time per certificate, against the
//! embedded test CA (always-valid challenges, so the CA is not the
//! bottleneck).
//!
//! `cargo bench --bench issuer_bench -- [N]` (default 40)

use std::sync::Arc;
use std::time::Instant;

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, ChallengeType, Csr, EnsureOptions, Issuer,
    KeyAlgorithm, NewOrder,
};
use sturdy_acme_testca::TestCa;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` adds `--bench`: not one of ours.
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(40);
    let ca = TestCa::builder()
        .reuse_valid_authorizations(false)
        .start()
        .await?;

    // Bare orders through the client.
    let client = ca.client().await?;
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256)?,
            &AccountOptions::agreeing_to_terms(),
        )
        .await?;
    let started = Instant::now();
    for i in 0..n {
        let mut order = account
            .new_order(&NewOrder::for_names(&[format!("bare{i}.example")])?)
            .await?;
        for authz in order.authorizations().await? {
            authz
                .challenge(&ChallengeType::Http01)
                .unwrap()
                .respond()
                .await?;
        }
        order.wait_ready().await?;
        order
            .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
            .await?;
        order.certificate().await?;
    }
    let bare = started.elapsed() / n as u32;

    // The same through the issuer, journalling every step in a FileStore.
    let dir = std::env::temp_dir().join(format!("sturdy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = FileStore::open(&dir)?;
    let issuer = Issuer::builder(ca.client().await?, store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    issuer
        .ensure(&["warmup.example"], &EnsureOptions::default())
        .await?; // the account
    let fsyncs_before = store.fsync_count();
    let started = Instant::now();
    for i in 0..n {
        issuer
            .ensure(&[format!("ensured{i}.example")], &EnsureOptions::default())
            .await?;
    }
    let ensured = started.elapsed() / n as u32;
    let fsyncs = (store.fsync_count() - fsyncs_before) as f64 / n as f64;
    let _ = std::fs::remove_dir_all(&dir);

    println!("issuances per run:            {n}");
    println!("bare order per certificate:   {bare:.2?}");
    println!("issuer.ensure per certificate: {ensured:.2?}");
    println!(
        "added by the journal/store:   {:.2?} per certificate",
        ensured.saturating_sub(bare)
    );
    println!("fsyncs per issuance:          {fsyncs:.1}");
    Ok(())
}
