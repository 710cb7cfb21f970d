//! The embedded ACME test CA as a standalone server, for clients in other
//! processes and other languages (as people use Pebble).
//!
//! ```text
//! cargo run -p sturdy-acme-testca --bin sturdy-test-ca -- --port 14000 --root-out test-ca-root.pem \
//!     --validation real --http-port 5002 --tls-port 5001 \
//!     --rate-limits lets-encrypt --faults faults.json
//! ```
//!
//! Prints the directory URL on stdout, writes the root (trust it for the
//! HTTPS listener and for issued certificates) to `--root-out`, and serves
//! until Ctrl-C. Everything listens on 127.0.0.1.
//!
//! A fault script file is a JSON list of rules, e.g.
//! `[{"endpoint": "finalize", "trigger": {"nth": 1}, "fault": "drop_after_commit"}]`
//! (see `sturdy_acme_testca::FaultRule`); a rate-limits file is the JSON
//! form of `sturdy_acme::RateLimits` (limits in seconds).
//!
//! Renewal information (`--ari`, `--ari-renew-after SECS`): with `--ari`
//! Boulder's window (around two thirds of the lifetime, ± a hundredth);
//! with `--ari-renew-after SECS` a window that opens SECS after issuance
//! and lasts one hour; with `--ari-renew-after 0` a window already past
//! ("renew now", as Boulder answers for a revoked certificate). `HEAD` is
//! answered like `GET`, without a body.

use std::process::ExitCode;

use clap::Parser;
use sturdy_acme_testca::command::ServerArgs;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sturdy_acme=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(ServerArgs::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sturdy-test-ca: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServerArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let builder = args.builder()?;
    let ca = builder.start().await?;
    sturdy_acme::store::write_file_atomic(
        args.root_out(),
        ca.root_pem().as_bytes(),
        sturdy_acme::store::FileMode::Public,
    )?;
    println!("{}", ca.directory_url());
    let management = match args.management_addr() {
        Some(addr) => {
            let management = ca.serve_management(addr).await?;
            println!("{}", management.url());
            Some(management)
        }
        None => None,
    };
    eprintln!(
        "sturdy-test-ca: serving {} (root written to {}); Ctrl-C to stop",
        ca.directory_url(),
        args.root_out().display()
    );
    tokio::signal::ctrl_c().await?;
    drop(management);
    let ledger = ca.ledger();
    eprintln!(
        "sturdy-test-ca: issued {} certificates; requests: {:?}",
        ledger.certificates.len(),
        ledger.requests
    );
    Ok(())
}
