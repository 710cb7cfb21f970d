//! One node of an issuing fleet: `Issuer::ensure` for many single-name
//! sets, a bounded number in flight, on a store that every node shares
//! (PostgreSQL, or a FileStore directory for one machine), and what it
//! cost. Run several at once for the same names: each set is issued once.
//!
//! ```text
//! cargo run --release -p sturdy-acme-testca --bin sturdy-test-ca -- --port 14000 --root-out /tmp/root.pem &
//! for i in 1 2 3 4; do
//!   cargo run --release --example fleet -- \
//!     --directory https://127.0.0.1:14000/dir --root-ca /tmp/root.pem \
//!     --store postgres://acme@127.0.0.1:5432/acme --sets 1000 --concurrency 50 --seed $i &
//! done; wait
//! ```
//!
//! Names are `{prefix}{i}.{domain}` for `i` in `0..sets`, ensured in an
//! order shuffled by `--seed`. A set whose `ensure` fails with a
//! retryable error (transient, a lease held or lost, the store) is tried
//! again after a pause, up to `--attempts`; a set refused by the local
//! rate-limit ledger is counted as refused, not retried. The last line on
//! stdout is a JSON summary: sets ensured, by source, refused, failed,
//! retries by error class, seconds, ensures per second, and the store's
//! round trips and writes per issuance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, KeyEncryptionKey, Store};
use sturdy_acme::{
    CertificateSource, Client, EnsureOptions, Error, ErrorClass, Issuer, IssuerStep, RateLimits,
    StoreError,
};
use sturdy_acme_postgres::PostgresStore;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "One node of an issuing fleet on a shared store")]
struct Args {
    /// The CA's directory URL.
    #[arg(long)]
    directory: String,
    /// Root certificate (PEM) of the CA's HTTPS listener.
    #[arg(long)]
    root_ca: Option<std::path::PathBuf>,
    /// `postgres://USER@HOST:PORT/DB`, or a FileStore directory. A
    /// PostgreSQL store seals keys with STURDY_ACME_KEK (`ID:BASE64`) if set.
    #[arg(long)]
    store: String,
    /// How many sets.
    #[arg(long, default_value_t = 1000)]
    sets: usize,
    /// Name prefix.
    #[arg(long, default_value = "s")]
    prefix: String,
    /// The registered domain the names are under.
    #[arg(long, default_value = "fleet.test")]
    domain: String,
    /// Sets in flight.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Shuffles the order the sets are ensured in (0: in order).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attempts per set for retryable errors.
    #[arg(long, default_value_t = 50)]
    attempts: u32,
    /// The issuer's lease TTL, seconds.
    #[arg(long, default_value_t = 60)]
    lease_ttl: u64,
    /// The issuer's local rate limits: a JSON file in the form of
    /// `sturdy_acme::RateLimits` (default: the CA's published ones).
    #[arg(long)]
    rate_limits: Option<std::path::PathBuf>,
    /// PostgreSQL: one attempt's timeout, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    db_timeout_ms: u64,
    /// Fault drill: once the first set's challenges are answered (just
    /// before finalize), print `stopping before finalize` and stop this
    /// process with SIGSTOP; it goes on when sent SIGCONT.
    #[arg(long)]
    stop_before_finalize: bool,
}

#[derive(Default, Debug)]
struct Tally {
    stored: u64,
    issued: u64,
    resumed: u64,
    refused: u64,
    failed: u64,
    retries: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sturdy_acme=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut client = Client::builder(&args.directory);
    if let Some(path) = &args.root_ca {
        client = client.root_certificates_pem(std::fs::read(path)?);
    }
    let client = client.build().await?;
    if args.store.starts_with("postgres://") || args.store.starts_with("postgresql://") {
        let mut builder = PostgresStore::builder(args.store.clone())
            .operation_timeout(Duration::from_millis(args.db_timeout_ms))
            .max_connections(args.concurrency.clamp(4, 64));
        if let Ok(text) = std::env::var("STURDY_ACME_KEK") {
            builder = builder.key_encryption_key(KeyEncryptionKey::parse(&text)?);
        }
        let store = builder.open().await?;
        let stats = store.clone();
        run(&args, client, store, move || {
            let s = stats.stats();
            (s.round_trips, s.writes)
        })
        .await
    } else {
        let store = FileStore::open(&args.store)?;
        let stats = store.clone();
        run(&args, client, store, move || (0, stats.fsync_count())).await
    }
}

async fn run<S: Store + Clone>(
    args: &Args,
    client: Client,
    store: S,
    stats: impl Fn() -> (u64, u64),
) -> Result<(), Box<dyn std::error::Error>> {
    let limits = match &args.rate_limits {
        Some(path) => serde_json::from_str::<RateLimits>(&std::fs::read_to_string(path)?)?,
        None => RateLimits::for_directory(&args.directory),
    };
    let stop_once = Arc::new(AtomicBool::new(args.stop_before_finalize));
    let issuer = Issuer::builder(client, store)
        .solver(Arc::new(Http01Solver::unserved()))
        .rate_limits(limits)
        .lease_ttl(Duration::from_secs(args.lease_ttl))
        .holder("fleet")
        .on_step(move |set, step| {
            if step == IssuerStep::ChallengesAnswered && stop_once.swap(false, Ordering::SeqCst) {
                println!("stopping before finalize: {set}");
                let _ = std::process::Command::new("kill")
                    .args(["-STOP", &std::process::id().to_string()])
                    .status();
            }
        })
        .build();
    let mut order: Vec<usize> = (0..args.sets).collect();
    shuffle(&mut order, args.seed);
    let (round_trips0, writes0) = stats();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in order {
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let issuer = issuer.clone();
        let tally = Arc::clone(&tally);
        let name = format!("{}{i}.{}", args.prefix, args.domain);
        let attempts = args.attempts;
        tasks.spawn(async move {
            let _permit = permit;
            ensure_one(&issuer, &name, attempts, &tally).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let (round_trips, writes) = stats();
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let issued = (t.issued + t.resumed).max(1) as f64;
    let summary = serde_json::json!({
        "sets": args.sets,
        "ensured": t.stored + t.issued + t.resumed,
        "issued": t.issued,
        "resumed": t.resumed,
        "stored": t.stored,
        "refused": t.refused,
        "failed": t.failed,
        "retries": t.retries,
        "failures": t.failures,
        "seconds": elapsed,
        "ensures_per_second": (t.stored + t.issued + t.resumed) as f64 / elapsed.max(1e-9),
        "store_round_trips_per_issuance": (round_trips - round_trips0) as f64 / issued,
        "store_writes_per_issuance": (writes - writes0) as f64 / issued,
    });
    println!("{summary}");
    Ok(())
}

async fn ensure_one<S: Store>(
    issuer: &Issuer<S>,
    name: &str,
    attempts: u32,
    tally: &std::sync::Mutex<Tally>,
) {
    let count = |f: &dyn Fn(&mut Tally)| f(&mut tally.lock().unwrap_or_else(|p| p.into_inner()));
    for attempt in 1..=attempts {
        match issuer.ensure(&[name], &EnsureOptions::default()).await {
            Ok(ensured) => {
                count(&|t| match ensured.source {
                    CertificateSource::Stored => t.stored += 1,
                    CertificateSource::Resumed => t.resumed += 1,
                    _ => t.issued += 1,
                });
                return;
            }
            Err(e) if matches!(e.class(), ErrorClass::RateLimited { local: true, .. }) => {
                count(&|t| t.refused += 1);
                return;
            }
            Err(e) if retryable(&e) && attempt < attempts => {
                let class = label(&e);
                eprintln!("{name}: attempt {attempt} failed ({class}): {e}");
                count(&|t| *t.retries.entry(class.clone()).or_default() += 1);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                let class = label(&e);
                eprintln!("{name}: failed ({class}): {e}");
                count(&|t| {
                    t.failed += 1;
                    *t.failures.entry(class.clone()).or_default() += 1;
                });
                return;
            }
        }
    }
}

/// Worth another attempt: the CA or the database failed transiently, or
/// another node holds (or took) the set's lease.
fn retryable(e: &Error) -> bool {
    matches!(e.class(), ErrorClass::Transient)
        || matches!(e, Error::Store(StoreError::LeaseHeld { .. }))
}

/// The error's class, with the store's failures told apart.
fn label(e: &Error) -> String {
    match e {
        Error::Store(StoreError::Database { kind, .. }) => {
            format!("database_{kind:?}").to_lowercase()
        }
        Error::Store(StoreError::LeaseHeld { .. }) => "lease_held".into(),
        Error::LeaseLost { .. } => "lease_lost".into(),
        other => other.class().name().to_owned(),
    }
}

/// A Fisher-Yates shuffle driven by a small xorshift generator.
fn shuffle(items: &mut [usize], seed: u64) {
    if seed == 0 {
        return;
    }
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}
