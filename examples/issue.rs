//! Issue a certificate by hand.
//!
//! ```text
//! cargo run --example issue -- --directory letsencrypt-staging \
//!     --domain example.com --domain www.example.com \
//!     --challenge http-01 --http-port 80 \
//!     --account-key account.pem --out certs/
//! ```
//!
//! Prints one line per step on stderr; exits non-zero with a clear message
//! on any error. Writes `cert.pem` (leaf), `chain.pem` (issuers),
//! `fullchain.pem` and `key.pem` (0600) into `--out`.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use sturdy_acme::solver::http01::Http01Responder;
use sturdy_acme::store::{FileMode, write_file_atomic};
use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, CertificateKeyType, ChallengeType, Client, Csr,
    ExternalAccountKey, KeyAlgorithm, NewOrder, OrderStatus,
};

#[derive(Parser, Debug)]
#[command(about = "Issue a certificate from an ACME CA", version)]
struct Args {
    /// Directory URL, or `letsencrypt` / `letsencrypt-staging`.
    #[arg(long)]
    directory: String,
    /// A name (or IP address) to put in the certificate; repeat for more.
    #[arg(long = "domain", required = true)]
    domains: Vec<String>,
    /// Challenge type: http-01 (built-in responder) or dns-01 (manual TXT records).
    #[arg(long, default_value = "http-01")]
    challenge: String,
    /// Port of the built-in http-01 responder.
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    /// Address the http-01 responder binds.
    #[arg(long, default_value = "0.0.0.0")]
    http_bind: IpAddr,
    /// Certificate key type: p256 or p384 (`--cert-key FILE` imports one, e.g. RSA).
    #[arg(long, default_value = "p256")]
    key_type: String,
    /// Import the certificate key (PKCS#8 PEM) instead of generating one.
    #[arg(long)]
    cert_key: Option<PathBuf>,
    /// Account key file (PKCS#8 PEM), created if missing.
    #[arg(long)]
    account_key: Option<PathBuf>,
    /// Algorithm for a new account key: es256, es384, eddsa.
    #[arg(long, default_value = "es256")]
    account_key_type: String,
    /// Contact e-mail for the account.
    #[arg(long)]
    contact: Option<String>,
    /// Output directory.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Extra root certificate (PEM) to trust for the CA's HTTPS (test CAs).
    #[arg(long)]
    root_ca: Option<PathBuf>,
    /// External account binding key id.
    #[arg(long, requires = "eab_hmac_key")]
    eab_kid: Option<String>,
    /// External account binding HMAC key (base64url).
    #[arg(long, requires = "eab_kid")]
    eab_hmac_key: Option<String>,
    /// Prefer the chain whose top certificate was issued by this common name.
    #[arg(long)]
    preferred_chain: Option<String>,
}

fn step(msg: impl std::fmt::Display) {
    eprintln!("[sturdy-acme] {msg}");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[sturdy-acme] error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(s) = source {
                eprintln!("[sturdy-acme]   caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn load_or_create_account_key(
    path: Option<&Path>,
    alg: KeyAlgorithm,
) -> Result<AccountKey, AnyError> {
    let Some(path) = path else {
        step(format!(
            "generating a throwaway {} account key",
            alg.jws_name()
        ));
        return Ok(AccountKey::generate(alg)?);
    };
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("reading account key {}: {e}", path.display()))?;
        let key = AccountKey::from_pkcs8_pem(&pem)
            .map_err(|e| format!("account key {}: {e}", path.display()))?;
        step(format!(
            "loaded {} account key from {}",
            key.algorithm().jws_name(),
            path.display()
        ));
        Ok(key)
    } else {
        let key = AccountKey::generate(alg)?;
        write_file_atomic(path, key.to_pkcs8_pem().as_bytes(), FileMode::Private)
            .map_err(|e| format!("writing account key {}: {e}", path.display()))?;
        step(format!(
            "created {} account key {}",
            alg.jws_name(),
            path.display()
        ));
        Ok(key)
    }
}

async fn run(args: Args) -> Result<(), AnyError> {
    let started = Instant::now();
    let directory = match args.directory.as_str() {
        "letsencrypt" => sturdy_acme::client::LETS_ENCRYPT_PRODUCTION.to_owned(),
        "letsencrypt-staging" => sturdy_acme::client::LETS_ENCRYPT_STAGING.to_owned(),
        url => url.to_owned(),
    };
    let challenge_type = match args.challenge.as_str() {
        "http-01" => ChallengeType::Http01,
        "dns-01" => ChallengeType::Dns01,
        other => return Err(format!("unsupported --challenge {other:?} (http-01, dns-01)").into()),
    };
    let order_request = NewOrder::for_names(&args.domains)?;
    let account_alg: KeyAlgorithm = args.account_key_type.parse()?;
    let cert_key = match &args.cert_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("reading certificate key {}: {e}", path.display()))?;
            CertificateKey::from_pkcs8_pem(&pem)?
        }
        None => CertificateKey::generate(args.key_type.parse::<CertificateKeyType>()?)?,
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating output directory {}: {e}", args.out.display()))?;

    let mut builder = Client::builder(&directory);
    if let Some(root) = &args.root_ca {
        let pem = std::fs::read(root).map_err(|e| format!("reading {}: {e}", root.display()))?;
        builder = builder.root_certificates_pem(pem);
    }
    let client = builder.build().await?;
    step(format!("directory {directory} loaded"));

    let account_key = load_or_create_account_key(args.account_key.as_deref(), account_alg)?;
    let mut options = AccountOptions::agreeing_to_terms();
    if let Some(contact) = &args.contact {
        options = options.contact(contact);
    }
    if let (Some(kid), Some(hmac)) = (&args.eab_kid, &args.eab_hmac_key) {
        options = options.external_account(ExternalAccountKey::new(kid, hmac)?);
    }
    let account = client.create_account(account_key, &options).await?;
    step(format!("account {}", account.url()));

    let mut order = account.new_order(&order_request).await?;
    step(format!(
        "order {} is {}",
        order.url(),
        order.status().as_str()
    ));

    let responder =
        if challenge_type == ChallengeType::Http01 && order.status() == OrderStatus::Pending {
            let addr = SocketAddr::new(args.http_bind, args.http_port);
            let r = Http01Responder::bind(addr)
                .await
                .map_err(|e| format!("http-01 responder on {addr}: {e}"))?;
            step(format!("http-01 responder listening on {}", r.local_addr()));
            Some(r)
        } else {
            None
        };

    let mut to_answer = Vec::new();
    for authz in order.authorizations().await? {
        if authz.status() != sturdy_acme::protocol::AuthorizationStatus::Pending {
            step(format!(
                "{} already {}",
                authz.identifier().value,
                authz.status().as_str()
            ));
            continue;
        }
        let challenge = authz.challenge(&challenge_type).ok_or_else(|| {
            format!(
                "the CA offers no {challenge_type} challenge for {}",
                authz.identifier().value
            )
        })?;
        match &responder {
            Some(r) => r
                .tokens()
                .insert(challenge.token()?, challenge.key_authorization()?),
            None => step(format!(
                "create TXT record {} with value \"{}\"",
                challenge.dns01_record_name(),
                challenge.dns01_txt_value()?
            )),
        }
        to_answer.push(challenge);
    }
    if challenge_type == ChallengeType::Dns01 && !to_answer.is_empty() {
        step("press Enter once the TXT records are visible in DNS");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    for challenge in &mut to_answer {
        challenge.respond().await?;
        step(format!(
            "answered {} for {}",
            challenge.kind(),
            challenge.identifier().value
        ));
    }
    order.wait_ready().await?;
    step("all identifiers validated");
    drop(responder);

    let csr = Csr::Key(&cert_key);
    order.finalize(csr).await?;
    step("order finalized");
    let chain = order
        .certificate_chain(args.preferred_chain.as_deref())
        .await?;
    step(format!(
        "certificate {} downloaded (serial {}, chain to {})",
        chain.url(),
        chain.serial_hex().unwrap_or_default(),
        chain.top_issuer_common_name().unwrap_or_default()
    ));

    let write = |name: &str, data: &[u8], mode| -> Result<(), AnyError> {
        let path = args.out.join(name);
        write_file_atomic(&path, data, mode)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        step(format!("wrote {}", path.display()));
        Ok(())
    };
    write(
        "key.pem",
        cert_key.to_pkcs8_pem().as_bytes(),
        FileMode::Private,
    )?;
    write("cert.pem", chain.leaf_pem().as_bytes(), FileMode::Public)?;
    write(
        "chain.pem",
        chain.issuers_pem().as_bytes(),
        FileMode::Public,
    )?;
    write("fullchain.pem", chain.pem().as_bytes(), FileMode::Public)?;
    step(format!(
        "done in {:.2?} with {} requests ({})",
        started.elapsed(),
        client.request_stats().total(),
        client.request_stats()
    ));
    Ok(())
}
