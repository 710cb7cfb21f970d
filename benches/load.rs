//! Load: N single-name certificates with C in flight through one client
//! and one account, and what it cost.
//!
//! ```text
//! # the embedded CA in a separate process (always-valid challenges)
//! cargo run --release -p sturdy-acme-testca --bin sturdy-test-ca -- --port 14000 --root-out /tmp/root.pem &
//! cargo bench --bench load -- --directory https://127.0.0.1:14000/dir \
//!     --root-ca /tmp/root.pem -n 10000 -c 100,10000 --ca-pid $!
//! # in-process, or through the exactly-once issuer on a FileStore
//! cargo bench --bench load -- --directory embedded -n 2000 -c 1,100
//! cargo bench --bench load -- --directory embedded -n 2000 -c 100 --issuer /tmp/store
//! # the protocol floor: polls back to back, nothing learned
//! cargo bench --bench load -- --directory embedded -n 200 -c 1 --poll-floor
//! ```
//!
//! Prints, per concurrency: certificates per second, p50/p99 latency per
//! certificate, requests by endpoint and per certificate, newNonce
//! requests, the governor's peak in flight and queueing, this process's
//! peak RSS (and the CA's, with `--ca-pid`), and with `--issuer` the
//! fsyncs per issuance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateKey, ChallengeType, Client, Csr, Endpoint,
    EnsureOptions, GovernorPolicy, Issuer, KeyAlgorithm, NewOrder, PollPolicy,
};
use sturdy_acme_testca::TestCa;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "Issue many certificates at once and report the cost")]
struct Args {
    /// A directory URL, or `embedded` (an in-process test CA, always valid).
    #[arg(long, default_value = "embedded")]
    directory: String,
    /// Root certificate (PEM) of the CA's HTTPS listener.
    #[arg(long)]
    root_ca: Option<std::path::PathBuf>,
    /// Certificates per run.
    #[arg(short, default_value_t = 1000)]
    n: usize,
    /// Orders in flight, one run per value (comma-separated).
    #[arg(short, value_delimiter = ',', default_value = "100")]
    c: Vec<usize>,
    /// The governor's cap on requests in flight.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Run through `Issuer::ensure` on a FileStore in this directory.
    #[arg(long)]
    issuer: Option<std::path::PathBuf>,
    /// Poll back to back with nothing learned (the protocol's floor).
    #[arg(long)]
    poll_floor: bool,
    /// With `embedded`: delay every answer this long.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The CA's process, to report its memory.
    #[arg(long)]
    ca_pid: Option<u32>,
}

/// `VmHWM` (peak) and `VmRSS` of a process, in MB (Linux).
fn memory(pid: Option<u32>) -> Option<(f64, f64)> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

async fn one_certificate(account: &Account, name: String) -> Result<(), sturdy_acme::Error> {
    let mut order = account.new_order(&NewOrder::for_names(&[name])?).await?;
    for authz in order.authorizations().await? {
        if let Some(mut challenge) = authz.challenge(&ChallengeType::Http01) {
            challenge.respond().await?;
        }
    }
    order.wait_ready().await?;
    let key = CertificateKey::generate(Default::default())?;
    order.finalize(Csr::Key(&key)).await?;
    order.certificate().await?;
    Ok(())
}

/// The size of an `Issuer::ensure` future (not run).
fn ensure_future_size(client: &Client) -> usize {
    let dir = std::env::temp_dir().join(format!("sturdy-load-probe-{}", std::process::id()));
    let Ok(store) = FileStore::open(&dir) else {
        return 0;
    };
    let issuer = Issuer::builder(client.clone(), store).build();
    let names = ["probe.example"];
    let options = EnsureOptions::default();
    let size = std::mem::size_of_val(&issuer.ensure(&names, &options));
    let _ = std::fs::remove_dir_all(&dir);
    size
}

/// What issues one certificate: a bare order, or `Issuer::ensure`.
enum Worker {
    Bare(Account),
    Ensure(Issuer<FileStore>),
}

impl Worker {
    async fn issue(&self, name: String) -> Result<(), sturdy_acme::Error> {
        match self {
            Self::Bare(account) => one_certificate(account, name).await,
            Self::Ensure(issuer) => issuer
                .ensure(&[name], &EnsureOptions::default())
                .await
                .map(|_| ()),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` adds `--bench`: not one of ours.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let embedded = if args.directory == "embedded" {
        Some(
            TestCa::builder()
                .latency(Duration::from_millis(args.latency_ms))
                .start()
                .await?,
        )
    } else {
        None
    };
    let mut poll = PollPolicy::default();
    if args.poll_floor {
        poll = poll
            .with_adaptive(false)
            .with_first_delay(Duration::ZERO)
            .with_factor(1)
            .with_max_polls(1_000_000);
    }
    println!(
        "{} certificates per run against {}{}{}",
        args.n,
        embedded
            .as_ref()
            .map_or(args.directory.clone(), |_| "the embedded CA (in-process)"
                .into()),
        if args.issuer.is_some() {
            ", through Issuer::ensure on a FileStore"
        } else {
            ""
        },
        if args.poll_floor {
            ", polls back to back"
        } else {
            ""
        }
    );
    for (run, &c) in args.c.iter().enumerate() {
        let mut builder = match &embedded {
            Some(ca) => ca.client_builder(),
            None => Client::builder(&args.directory),
        };
        if let Some(root) = &args.root_ca {
            builder = builder.root_certificates_pem(std::fs::read(root)?);
        }
        let client = builder
            .governor(GovernorPolicy::default().with_max_in_flight(args.max_in_flight))
            .poll_policy(poll)
            .timeout(Duration::from_secs(600))
            .build()
            .await?;
        let prefix = format!("r{run}-c{c}-{}", std::process::id());
        let limit = Arc::new(Semaphore::new(c.max(1)));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.n)));
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let mut fsyncs = None;
        let before = client.request_stats();
        let mut store = None;
        let worker = if let Some(dir) = &args.issuer {
            let dir = dir.join(&prefix);
            let file_store = FileStore::open(&dir)?;
            let issuer = Issuer::builder(client.clone(), file_store.clone())
                .solver(Arc::new(Http01Solver::unserved()))
                .build();
            issuer.account().await?;
            store = Some((dir, file_store.fsync_count(), file_store));
            Worker::Ensure(issuer)
        } else {
            let account = client
                .create_account(
                    AccountKey::generate(KeyAlgorithm::Es256)?,
                    &AccountOptions::agreeing_to_terms(),
                )
                .await?;
            if run == 0 {
                let probe = one_certificate(&account, String::new());
                println!(
                    "one order's future: {} bytes (an Issuer::ensure call's: {} bytes)",
                    std::mem::size_of_val(&probe),
                    ensure_future_size(&client)
                );
            }
            Worker::Bare(account)
        };
        let worker = Arc::new(worker);
        let started = Instant::now();
        for i in 0..args.n {
            let (worker, limit, latencies, failures) = (
                worker.clone(),
                limit.clone(),
                latencies.clone(),
                failures.clone(),
            );
            let name = format!("{prefix}-{i}.example");
            tasks.spawn(async move {
                let _slot = limit.acquire().await.expect("never closed");
                let t = Instant::now();
                match worker.issue(name).await {
                    Ok(()) => latencies.lock().unwrap().push(t.elapsed()),
                    Err(e) => {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        eprintln!("failed: {e}");
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        if let Some((dir, fsyncs_before, file_store)) = store {
            fsyncs = Some((file_store.fsync_count() - fsyncs_before) as f64 / args.n as f64);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let wall = started.elapsed();
        let stats = client.request_stats();
        let governor = client.governor_stats();
        let mut lat = latencies.lock().unwrap().clone();
        lat.sort();
        let issued = lat.len();
        let requests = stats.total() - before.total();
        let nonces = stats.get(Endpoint::NewNonce) - before.get(Endpoint::NewNonce);
        println!("\nC = {c} in flight (governor cap {}):", args.max_in_flight);
        println!(
            "  issued {issued}, failed {}",
            failures.load(std::sync::atomic::Ordering::Relaxed)
        );
        println!(
            "  wall {wall:.2?}, {:.1} certificates/s",
            issued as f64 / wall.as_secs_f64()
        );
        println!(
            "  latency p50 {:.2?}, p99 {:.2?}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        println!(
            "  requests {requests} ({:.2} per certificate), newNonce {nonces}",
            requests as f64 / issued.max(1) as f64
        );
        println!("  by endpoint: {stats}");
        println!(
            "  governor: peak {} in flight, {} admitted, mean queued {:.2?}",
            governor.peak_in_flight,
            governor.admitted,
            governor.queued / governor.admitted.max(1) as u32
        );
        if let Some(f) = fsyncs {
            println!("  fsyncs per issuance {f:.1}");
        }
        if let Some((peak, now)) = memory(None) {
            println!("  this process: peak RSS {peak:.0} MB (now {now:.0} MB)");
        }
        if let Some((peak, now)) = args.ca_pid.and_then(|pid| memory(Some(pid))) {
            println!("  the CA process: peak RSS {peak:.0} MB (now {now:.0} MB)");
        }
    }
    Ok(())
}
