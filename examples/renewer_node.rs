//! One renewer node: keeps the certificates in its store valid, with the
//! names given added to them, next to any other node on the same store
//! (the work is shared through the store's leases). Runs until every
//! certificate is valid (`--until-valid`) or for `--run-secs`, then prints
//! a JSON line: the status snapshot's counts and the serials this node
//! issued.
//!
//! ```text
//! cargo run -p sturdy-acme-testca --bin sturdy-test-ca -- --port 14000 --root-out /tmp/root.pem &
//! cargo run --example renewer_node -- --directory https://127.0.0.1:14000/dir \
//!     --root-ca /tmp/root.pem --store /tmp/fleet --add shop.example --add blog.example --until-valid
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sturdy_acme::renewer::{CertificateSpec, ManagedState, Renewer, RenewerEvent, RenewerPolicy};
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{Client, Issuer};

#[derive(Parser, Debug)]
#[command(about = "One renewer node on a shared store")]
struct Args {
    /// The CA's directory URL.
    #[arg(long)]
    directory: String,
    /// Root certificate (PEM) of the CA's HTTPS listener.
    #[arg(long)]
    root_ca: Option<std::path::PathBuf>,
    /// The FileStore directory (shared by the nodes of one machine).
    #[arg(long)]
    store: std::path::PathBuf,
    /// A certificate to keep (one name; repeatable).
    #[arg(long)]
    add: Vec<String>,
    /// Return once every certificate in the store is valid.
    #[arg(long)]
    until_valid: bool,
    /// Return after this many seconds at most.
    #[arg(long, default_value_t = 120)]
    run_secs: u64,
    /// Attempts in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// This node's name (its lease holder label).
    #[arg(long, default_value = "node")]
    node: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut client = Client::builder(&args.directory);
    if let Some(root) = &args.root_ca {
        client = client
            .root_certificates_pem(std::fs::read(root)?)
            .built_in_roots(false);
    }
    let issuer = Issuer::builder(client.build().await?, FileStore::open(&args.store)?)
        .solver(Arc::new(Http01Solver::unserved()))
        .holder(args.node.clone())
        .build();
    let issued = Arc::new(Mutex::new(Vec::new()));
    let mine = Arc::clone(&issued);
    let renewer = Renewer::builder(issuer)
        .policy(
            RenewerPolicy::default()
                .with_concurrency(args.concurrency)
                .with_elsewhere_retry(Duration::from_millis(500))
                .with_refresh(Duration::from_secs(1)),
        )
        .on_event(move |e| {
            if let RenewerEvent::Issued { serial, .. } = e {
                mine.lock().unwrap().push(serial.clone());
            }
        })
        .build();
    let specs = args
        .add
        .iter()
        .map(|n| CertificateSpec::new([n]))
        .collect::<Result<Vec<_>, _>>()?;
    renewer.add_all(specs).await?;
    let running = tokio::spawn({
        let renewer = renewer.clone();
        async move { renewer.run().await }
    });
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = renewer.status();
        let done = args.until_valid
            && !status.certificates.is_empty()
            && status.count(ManagedState::Valid) == status.certificates.len();
        if done || started.elapsed() >= Duration::from_secs(args.run_secs) {
            break;
        }
    }
    renewer.shutdown();
    running.await??;
    let status = renewer.status();
    let summary = serde_json::json!({
        "node": args.node,
        "certificates": status.certificates.len(),
        "valid": status.count(ManagedState::Valid),
        "issued": *issued.lock().unwrap(),
    });
    println!("{summary}");
    Ok(())
}
