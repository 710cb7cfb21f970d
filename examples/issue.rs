//! Issue a certificate by hand.
//!
//! ```text
//! cargo run --example issue -- --directory letsencrypt-staging \
//!     --domain example.com --domain www.example.com \
//!     --challenge http-01 --http-port 80 \
//!     --account-key account.pem --out certs/
//! ```
//!
//! `--directory embedded` starts the crate's embedded test CA in this
//! process (really validating http-01 against the built-in responder, or
//! dns-01 against records the tool publishes into the CA's resolver) and
//! also writes the CA's root as `ca-root.pem`: nothing but cargo is needed.
//! `--directory embedded-v1` does the same with the test CA speaking ACME
//! v1 (Boulder's legacy `acme-v01` dialect); the tool is the same, the
//! client detects the dialect from the directory.
//!
//! Prints one line per step on stderr; exits non-zero with a clear message
//! on any error. Writes `cert.pem` (leaf), `chain.pem` (issuers),
//! `fullchain.pem` and `key.pem` (0600) into `--out`.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use sturdy_acme::CertificateSource;
use sturdy_acme::Dialect;
use sturdy_acme::solver::http01::Http01Responder;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::solver::{ChallengeAnswer, Solver, SolverFuture};
use sturdy_acme::store::{FileMode, FileStore, write_file_atomic};
use sturdy_acme::testing::{StaticDns, TestCa};
use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, CertificateKeyType, ChallengeType, Client, Csr,
    ExternalAccountKey, KeyAlgorithm, NewOrder, OrderStatus,
};
use sturdy_acme::{EnsureOptions, Issuer};
use zeroize::Zeroizing;

/// The exit status per error class (also in `--help` and the README).
mod exit {
    /// The certificate is written.
    pub const SUCCESS: u8 = 0;
    /// A bug, a local crypto failure, or a CA breaking the protocol.
    pub const INTERNAL: u8 = 1;
    /// Bad arguments or input, or a request the CA refuses for good.
    pub const INVALID_INPUT: u8 = 2;
    /// A rate limit: the message says when it lifts.
    pub const RATE_LIMITED: u8 = 3;
    /// CAA: the domain's DNS forbids the CA or did not answer it.
    pub const CAA: u8 = 4;
    /// The CA could not validate an identifier.
    pub const VALIDATION: u8 = 5;
    /// The CA or the network kept failing after every retry.
    pub const TRANSIENT: u8 = 6;
    /// The store (`--store`, the output or key files) failed.
    pub const STORE: u8 = 7;
}

const EXIT_CODES: &str = "Exit status: 0 success; 1 internal error (a bug, or the CA broke the \
protocol); 2 invalid input (arguments, names, files, or a request the CA refuses for good); \
3 rate limited (the message says when it lifts); 4 CAA (the domain's DNS); 5 validation failed; \
6 the CA or network kept failing after every retry; 7 store error.";

#[derive(Parser, Debug)]
#[command(about = "Issue a certificate from an ACME CA", version, after_help = EXIT_CODES)]
struct Args {
    /// Directory URL (ACME v2 or v1), or `letsencrypt`,
    /// `letsencrypt-staging`, `embedded` (an in-process test CA) or
    /// `embedded-v1` (the same, speaking ACME v1).
    #[arg(long)]
    directory: String,
    /// A name (or IP address) to put in the certificate; repeat for more.
    #[arg(long = "domain", required = true)]
    domains: Vec<String>,
    /// Challenge type: http-01 (built-in responder) or dns-01 (manual TXT records).
    #[arg(long, default_value = "http-01")]
    challenge: String,
    /// Port of the built-in http-01 responder (default 80; with
    /// `--directory embedded`, any free port).
    #[arg(long)]
    http_port: Option<u16>,
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
    /// External account binding key id (the HMAC key comes from
    /// `--eab-hmac-key-file` or the `STURDY_ACME_EAB_HMAC_KEY` environment
    /// variable). With `--directory embedded` the test CA is made to
    /// require this binding.
    #[arg(long)]
    eab_kid: Option<String>,
    /// A file holding the external account binding HMAC key (base64url).
    #[arg(long, conflicts_with = "eab_hmac_key")]
    eab_hmac_key_file: Option<PathBuf>,
    /// Deprecated: the EAB HMAC key on the command line, where process
    /// listings and shell history show it. Use `--eab-hmac-key-file` or
    /// `STURDY_ACME_EAB_HMAC_KEY`.
    #[arg(long)]
    eab_hmac_key: Option<String>,
    /// Prefer the chain whose top certificate was issued by this common name.
    #[arg(long)]
    preferred_chain: Option<String>,
    /// How the steps and the library's events are written on stderr:
    /// `plain` (a line each, for people) or `json` (an object per line,
    /// for log systems).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    log_format: String,
    /// More detail: `-v` the library's INFO logs, `-vv` every HTTP exchange.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Keep the account, certificates and in-flight orders in this directory:
    /// a second run for the same names returns the stored certificate without
    /// ordering, an interrupted run resumes its order.
    #[arg(long, conflicts_with = "account_key")]
    store: Option<PathBuf>,
}

/// dns-01 for `--directory embedded`: publishes into the CA's resolver.
struct StaticDnsSolver(StaticDns);

impl Solver for StaticDnsSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }
    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        self.0.add_txt(&answer.dns_name, &answer.dns_value);
        step(format!(
            "published TXT {} in the embedded CA's DNS",
            answer.dns_name
        ));
        Box::pin(async { Ok(()) })
    }
    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        self.0.clear_txt(&answer.dns_name);
        Box::pin(async { Ok(()) })
    }
}

/// dns-01 by hand: prints the record and waits for Enter.
struct ManualDnsSolver;

impl Solver for ManualDnsSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }
    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        step(format!(
            "create TXT record {} with value \"{}\", then press Enter",
            answer.dns_name, answer.dns_value
        ));
        Box::pin(async {
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| ())
            })
            .await
            .map_err(|e| sturdy_acme::Error::InvalidInput(e.to_string()))??;
            Ok(())
        })
    }
    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        step(format!("you may delete the TXT record {}", answer.dns_name));
        Box::pin(async { Ok(()) })
    }
}

/// `--store`: the exactly-once issuer does the whole order.
async fn ensure_with_store(
    args: &Args,
    client: Client,
    store_dir: PathBuf,
    options: AccountOptions,
    solver: Arc<dyn Solver>,
    cert_key: CertificateKey,
    started: Instant,
) -> Result<(), AnyError> {
    let store = FileStore::open(&store_dir)?;
    let issuer = Issuer::builder(client.clone(), store)
        .account_options(options)
        .solver(solver)
        .build();
    let key_type = args.key_type.parse::<CertificateKeyType>()?;
    drop(cert_key);
    let ensured = issuer
        .ensure(
            &args.domains,
            &EnsureOptions {
                key_type,
                preferred_chain: args.preferred_chain.clone(),
                ..EnsureOptions::default()
            },
        )
        .await?;
    step(match ensured.source {
        CertificateSource::Stored => format!(
            "stored certificate {} is still good: no order sent",
            ensured.certificate.serial
        ),
        CertificateSource::Resumed => format!(
            "resumed an interrupted order: serial {}",
            ensured.certificate.serial
        ),
        _ => format!("issued serial {}", ensured.certificate.serial),
    });
    let cert = &ensured.certificate;
    let chain = sturdy_acme::CertificateChain::parse_pem(&cert.url, &cert.chain_pem)?;
    write_outputs(&args.out, cert.key_pem.as_bytes(), &chain)?;
    step(format!(
        "done in {:.2?} with {} requests ({})",
        started.elapsed(),
        client.request_stats().total(),
        client.request_stats()
    ));
    Ok(())
}

/// Writes key.pem (0600), cert.pem, chain.pem and fullchain.pem atomically.
fn write_outputs(
    out: &std::path::Path,
    key_pem: &[u8],
    chain: &sturdy_acme::CertificateChain,
) -> Result<(), AnyError> {
    for (name, data, mode) in [
        ("key.pem", key_pem, FileMode::Private),
        ("cert.pem", chain.leaf_pem().as_bytes(), FileMode::Public),
        (
            "chain.pem",
            chain.issuers_pem().as_bytes(),
            FileMode::Public,
        ),
        ("fullchain.pem", chain.pem().as_bytes(), FileMode::Public),
    ] {
        let path = out.join(name);
        write_file_atomic(&path, data, mode)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        step(format!("wrote {}", path.display()));
    }
    Ok(())
}

/// The event reporter of this run (its badNonce summary is printed at exit).
static REPORTER: std::sync::OnceLock<Arc<WaitReporter>> = std::sync::OnceLock::new();

/// `--log-format json`, once chosen.
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn json_output() -> bool {
    JSON.get().copied().unwrap_or(false)
}

fn now_rfc3339() -> String {
    sturdy_acme::timestamp::DisplayTime(std::time::SystemTime::now()).to_string()
}

/// One step: a line, or a JSON object with `--log-format json`.
fn step(msg: impl std::fmt::Display) {
    if json_output() {
        let line = serde_json::json!({"ts": now_rfc3339(), "step": msg.to_string()});
        eprintln!("{line}");
    } else {
        eprintln!("[sturdy-acme] {msg}");
    }
}

/// Turns the library's events into what the person (or the log system)
/// needs to see: every wait gets a line before it starts, saying what the
/// CA said and what happens next; badNonce re-sends are counted and
/// summarised instead.
#[derive(Default)]
struct WaitReporter {
    bad_nonces: std::sync::atomic::AtomicU64,
    caa_retries: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    caa_attempts: u32,
}

impl WaitReporter {
    fn new(policy: &sturdy_acme::RetryPolicy) -> Self {
        Self {
            caa_attempts: policy.caa().max_attempts(),
            ..Self::default()
        }
    }

    fn on_event(&self, event: &sturdy_acme::Event) {
        use sturdy_acme::{ErrorClass, Event};
        match event {
            Event::Retry {
                endpoint,
                url,
                class,
                attempt,
                delay,
                error,
                ..
            } => {
                if *class == ErrorClass::BadNonce {
                    self.bad_nonces
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let at = sturdy_acme::timestamp::DisplayTime(std::time::SystemTime::now() + *delay);
                if json_output() {
                    let line = serde_json::json!({
                        "ts": now_rfc3339(),
                        "event": "retry",
                        "endpoint": endpoint.as_str(),
                        "url": url,
                        "class": class.name(),
                        "attempt": attempt,
                        "delay_ms": delay.as_millis() as u64,
                        "retry_at": at.to_string(),
                        "error": error,
                    });
                    eprintln!("{line}");
                    return;
                }
                if *class == ErrorClass::BadNonce {
                    return; // summarised at the end
                }
                let said: String = error.chars().take(160).collect();
                let next = format!("retrying at {at} (in {})", human(*delay));
                let line = match class {
                    ErrorClass::Caa { names, .. } => {
                        let mut seen = self.caa_retries.lock().unwrap();
                        let n = seen.entry(url.clone()).or_insert(1);
                        *n += 1;
                        format!(
                            "CAA recheck failed at the CA for {}: the domain's DNS, not this tool; \
                             {next}, attempt {} of {} ({said})",
                            names.join(", "),
                            n,
                            self.caa_attempts
                        )
                    }
                    ErrorClass::RateLimited { scope, .. } => {
                        format!("rate limited ({scope}) at {endpoint}: {next} ({said})")
                    }
                    other => format!("{endpoint}: {} ({said}); {next}", other.name()),
                };
                step(line);
            }
            Event::GaveUp {
                endpoint,
                class,
                attempts,
                elapsed,
                ..
            } => {
                if json_output() {
                    let line = serde_json::json!({
                        "ts": now_rfc3339(),
                        "event": "gave_up",
                        "endpoint": endpoint.as_str(),
                        "class": class.name(),
                        "attempts": attempts,
                        "elapsed_ms": elapsed.as_millis() as u64,
                    });
                    eprintln!("{line}");
                } else {
                    step(format!(
                        "{endpoint}: giving up after {attempts} attempts in {} ({})",
                        human(*elapsed),
                        class.name()
                    ));
                }
            }
            _ => {}
        }
    }

    /// The badNonce summary, if there were any.
    fn summary(&self) {
        let n = self.bad_nonces.load(std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            step(format!(
                "{n} request(s) re-sent after badNonce (normal under load)"
            ));
        }
    }
}

/// `2 min`, `30 s`, `250 ms`.
fn human(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms >= 120_000 {
        format!("{} min", ms / 60_000)
    } else if ms >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _ = JSON.set(args.log_format == "json");
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "info,sturdy_acme::http=debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    if json_output() {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let result = run(args).await;
    if let Some(reporter) = REPORTER.get() {
        reporter.summary();
    }
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            step(format!("error: {e}"));
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(s) = source {
                step(format!("  caused by: {s}"));
                source = s.source();
            }
            let (code, what) = exit_status(e.as_ref());
            step(format!("exit {code}: {what}"));
            ExitCode::from(code)
        }
    }
}

/// The exit status for an error, by its class, and a line saying what it
/// means for the person at the terminal.
fn exit_status(e: &(dyn std::error::Error + 'static)) -> (u8, String) {
    use sturdy_acme::{ErrorClass, timestamp::DisplayTime};
    let Some(e) = e.downcast_ref::<sturdy_acme::Error>() else {
        if e.downcast_ref::<sturdy_acme::StoreError>().is_some() {
            return (exit::STORE, "the store failed".into());
        }
        return (exit::INVALID_INPUT, "invalid input".into());
    };
    match e.class() {
        ErrorClass::RateLimited {
            retry_at, scope, ..
        } => (
            exit::RATE_LIMITED,
            match retry_at {
                Some(t) => format!("rate limited ({scope}) until {}", DisplayTime(t)),
                None => format!("rate limited ({scope}); the CA gave no time"),
            },
        ),
        ErrorClass::Caa { names, .. } => (
            exit::CAA,
            format!(
                "CAA for {}: the domain's DNS, not this tool",
                names.join(", ")
            ),
        ),
        ErrorClass::Validation { .. } => (exit::VALIDATION, "validation failed".into()),
        ErrorClass::Transient | ErrorClass::BadNonce => (
            exit::TRANSIENT,
            "the CA or the network kept failing; try again later".into(),
        ),
        ErrorClass::Store => (exit::STORE, "the store failed".into()),
        ErrorClass::InvalidInput | ErrorClass::Permanent => (
            exit::INVALID_INPUT,
            "the request cannot succeed as it is".into(),
        ),
        _ => (exit::INTERNAL, "internal error".into()),
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

/// The environment variable holding the EAB HMAC key.
const EAB_ENV: &str = "STURDY_ACME_EAB_HMAC_KEY";

/// The external account binding, from the key id and the HMAC key's file,
/// environment variable or (deprecated, with a warning) flag.
fn external_account(args: &Args) -> Result<Option<(String, Zeroizing<String>)>, AnyError> {
    let hmac = if let Some(path) = &args.eab_hmac_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading --eab-hmac-key-file {}: {e}", path.display()))?;
        Some(Zeroizing::new(text.trim().to_owned()))
    } else if let Some(key) = args.eab_hmac_key.as_ref() {
        step(
            "warning: --eab-hmac-key puts the secret in process listings and shell history; \
             use --eab-hmac-key-file or STURDY_ACME_EAB_HMAC_KEY",
        );
        Some(Zeroizing::new(key.clone()))
    } else {
        std::env::var(EAB_ENV)
            .ok()
            .map(|k| Zeroizing::new(k.trim().to_owned()))
    };
    match (&args.eab_kid, hmac) {
        (Some(kid), Some(hmac)) if !hmac.is_empty() => Ok(Some((kid.clone(), hmac))),
        (Some(_), _) => Err(format!(
            "--eab-kid needs the HMAC key: --eab-hmac-key-file FILE or {EAB_ENV}"
        )
        .into()),
        (None, Some(_)) if args.eab_hmac_key_file.is_some() || args.eab_hmac_key.is_some() => {
            Err("an EAB HMAC key was given without --eab-kid".into())
        }
        (None, _) => Ok(None),
    }
}

/// The in-process CA of `--directory embedded`, with what answers its checks.
struct Embedded {
    ca: TestCa,
    dns: StaticDns,
}

async fn run(mut args: Args) -> Result<(), AnyError> {
    let started = Instant::now();
    let challenge_type = match args.challenge.as_str() {
        "http-01" => ChallengeType::Http01,
        "dns-01" => ChallengeType::Dns01,
        other => return Err(format!("unsupported --challenge {other:?} (http-01, dns-01)").into()),
    };
    // Check the names and the binding before anything else happens.
    let order_request = NewOrder::for_names(&args.domains)?;
    let eab = external_account(&args)?;
    // The embedded CA validates http-01 against our responder on a free
    // loopback port: bind it first so the CA knows where to connect.
    let mut early_responder = None;
    let embedded = if args.directory == "embedded" || args.directory == "embedded-v1" {
        let dns = StaticDns::new();
        let http_port = if challenge_type == ChallengeType::Http01 {
            let r = Http01Responder::bind(SocketAddr::from((
                [127, 0, 0, 1],
                args.http_port.unwrap_or(0),
            )))
            .await
            .map_err(|e| format!("http-01 responder: {e}"))?;
            let port = r.local_addr().port();
            early_responder = Some(r);
            port
        } else {
            0
        };
        let dialect = if args.directory == "embedded-v1" {
            Dialect::V1
        } else {
            Dialect::V2
        };
        let mut builder = TestCa::builder().dialect(dialect).real_validation(
            http_port,
            0,
            std::sync::Arc::new(dns.clone()),
        );
        if let Some((kid, hmac)) = &eab {
            builder = builder.eab_key(kid, hmac)?.eab_required(true);
        }
        let ca = builder.start().await?;
        std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("creating output directory {}: {e}", args.out.display()))?;
        write_file_atomic(
            &args.out.join("ca-root.pem"),
            ca.root_pem().as_bytes(),
            FileMode::Public,
        )?;
        step(format!(
            "embedded test CA started at {} (root in {})",
            ca.directory_url(),
            args.out.join("ca-root.pem").display()
        ));
        Some(Embedded { ca, dns })
    } else {
        None
    };
    let directory = match (&embedded, args.directory.as_str()) {
        (Some(e), _) => e.ca.directory_url(),
        (None, "letsencrypt") => sturdy_acme::LETS_ENCRYPT_PRODUCTION.to_owned(),
        (None, "letsencrypt-staging") => sturdy_acme::LETS_ENCRYPT_STAGING.to_owned(),
        (None, url) => url.to_owned(),
    };
    if embedded.is_some() {
        args.root_ca = None;
    }
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

    let mut builder = match &embedded {
        Some(e) => e.ca.client_builder(),
        None => Client::builder(&directory),
    };
    if let Some(root) = &args.root_ca {
        let pem = std::fs::read(root).map_err(|e| format!("reading {}: {e}", root.display()))?;
        builder = builder.root_certificates_pem(pem);
    }
    let reporter =
        REPORTER.get_or_init(|| Arc::new(WaitReporter::new(&sturdy_acme::RetryPolicy::default())));
    let events = reporter.clone();
    let client = builder
        .on_event(move |e| events.on_event(e))
        .build()
        .await?;
    step(format!(
        "directory {directory} loaded ({})",
        client.dialect()
    ));

    let mut options = AccountOptions::agreeing_to_terms();
    if let Some(contact) = &args.contact {
        options = options.contact(contact);
    }
    if let Some((kid, hmac)) = &eab {
        options = options.external_account(ExternalAccountKey::new(kid, hmac)?);
    }
    if let Some(store_dir) = args.store.clone() {
        let solver: Arc<dyn Solver> = match (&early_responder, &embedded, &challenge_type) {
            (Some(r), _, _) => Arc::new(Http01Solver::for_responder(r)),
            (None, Some(e), ChallengeType::Dns01) => Arc::new(StaticDnsSolver(e.dns.clone())),
            (None, None, ChallengeType::Dns01) => Arc::new(ManualDnsSolver),
            _ => {
                let addr = SocketAddr::new(args.http_bind, args.http_port.unwrap_or(80));
                let r = Http01Responder::bind(addr)
                    .await
                    .map_err(|e| format!("http-01 responder on {addr}: {e}"))?;
                step(format!("http-01 responder listening on {}", r.local_addr()));
                let solver = Arc::new(Http01Solver::for_responder(&r));
                early_responder = Some(r);
                solver
            }
        };
        let _responder = early_responder.take();
        return ensure_with_store(&args, client, store_dir, options, solver, cert_key, started)
            .await;
    }
    let account_key = load_or_create_account_key(args.account_key.as_deref(), account_alg)?;
    let account = client.create_account(account_key, &options).await?;
    step(format!("account {}", account.url()));

    let mut order = account.new_order(&order_request).await?;
    step(format!(
        "order {} is {}",
        order.url(),
        order.status().as_str()
    ));

    let responder = if early_responder.is_some() {
        early_responder
    } else if challenge_type == ChallengeType::Http01 && order.status() == OrderStatus::Pending {
        let addr = SocketAddr::new(args.http_bind, args.http_port.unwrap_or(80));
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
        if authz.status() != sturdy_acme::AuthorizationStatus::Pending {
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
        match (&responder, &embedded) {
            (Some(r), _) => r
                .tokens()
                .insert(challenge.token()?, challenge.key_authorization()?),
            (None, Some(e)) => {
                let name = challenge.dns01_record_name();
                e.dns.add_txt(&name, &challenge.dns01_txt_value()?);
                step(format!("published TXT {name} in the embedded CA's DNS"));
            }
            (None, None) => step(format!(
                "create TXT record {} with value \"{}\"",
                challenge.dns01_record_name(),
                challenge.dns01_txt_value()?
            )),
        }
        to_answer.push(challenge);
    }
    if challenge_type == ChallengeType::Dns01 && !to_answer.is_empty() && embedded.is_none() {
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

    write_outputs(&args.out, cert_key.to_pkcs8_pem().as_bytes(), &chain)?;
    step(format!(
        "done in {:.2?} with {} requests ({})",
        started.elapsed(),
        client.request_stats().total(),
        client.request_stats()
    ));
    Ok(())
}
