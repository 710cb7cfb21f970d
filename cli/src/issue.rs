//! `issue`: order a certificate (with `--store`, through the exactly-once
//! issuer) and write it out.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use sturdy_acme::store::{FileMode, write_file_atomic};
use sturdy_acme::{
    AccountKey, AuthorizationStatus, CertificateChain, CertificateKey, CertificateKeyType,
    CertificateOptions, CertificateSource, ChainPreference, ChallengeType, Csr, EnsureOptions,
    KeyAlgorithm, NewOrder, OrderStatus,
};

use super::common::{AnyError, ChallengeArgs, CommonArgs, Connection, StoreLocation, connect};
use super::output::step;
use super::outputs::{OutputError, OutputSet, write_set};

#[derive(Args, Debug)]
pub struct IssueArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub challenge: ChallengeArgs,
    /// A name (or IP address) to put in the certificate; repeat for more.
    #[arg(long = "domain", required = true)]
    pub domains: Vec<String>,
    /// Certificate key type: p256 (the default) or p384 (`--cert-key FILE`
    /// imports one instead, e.g. RSA).
    #[arg(long)]
    pub key_type: Option<String>,
    /// Ask for this certificate profile (`classic`, `tlsserver`,
    /// `shortlived` at Let's Encrypt; the CA's directory lists them).
    #[arg(long)]
    pub profile: Option<String>,
    /// Import the certificate key (PKCS#8 PEM) instead of generating one
    /// (not with `--store`, whose issuer makes and keeps each key).
    #[arg(long)]
    pub cert_key: Option<PathBuf>,
    /// Account key file (PKCS#8 PEM), created if missing.
    #[arg(long)]
    pub account_key: Option<PathBuf>,
    /// Algorithm for a new account key: es256 (the default), es384, eddsa.
    #[arg(long)]
    pub account_key_type: Option<String>,
    /// Output directory: `key.pem` (0600), `cert.pem`, `chain.pem` and
    /// `fullchain.pem`, links into `live/`, which names the current set
    /// under `sets/`; a new set replaces the old one in one step, so the
    /// key and the certificate read there always belong together.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Prefer the chain whose top certificate was issued by this common name.
    #[arg(long)]
    pub preferred_chain: Option<String>,
    /// Keep the account, certificates and in-flight orders in this directory,
    /// or in the PostgreSQL database `postgres://USER@HOST:PORT/DB` (shared
    /// by every machine naming it; private keys sealed with the key in
    /// STURDY_ACME_KEK, `ID:BASE64`): a second run for the same names returns
    /// the stored certificate without ordering, an interrupted run resumes
    /// its order, and runs racing for the same names issue once.
    #[arg(long, conflicts_with = "account_key")]
    pub store: Option<StoreLocation>,
    /// Check, order nothing: print each name's CAA verdict with every
    /// nameserver's answer time and, for dns-01, where `_acme-challenge`
    /// leads (a CNAME into another zone, and that zone's nameservers).
    /// Exits 4 (CAA) when a name cannot be issued.
    #[arg(long)]
    pub check: bool,
}

impl IssueArgs {
    /// Refuses flag combinations where a flag would be ignored.
    pub fn validate(&self) -> Result<(), AnyError> {
        let refuse = |flag: &str, with: &str, why: &str| -> Result<(), AnyError> {
            Err(format!("{flag} cannot be used with {with}: {why}").into())
        };
        if self.store.is_some() && self.cert_key.is_some() {
            return refuse(
                "--cert-key",
                "--store",
                "the store's issuer makes and keeps a new key for each certificate it \
                 orders (a renewal needs one too); choose its type with --key-type",
            );
        }
        if self.cert_key.is_some() && self.key_type.is_some() {
            return refuse(
                "--key-type",
                "--cert-key",
                "the imported key is used as it is",
            );
        }
        if self.check {
            for (given, flag) in [
                (self.store.is_some(), "--store"),
                (self.cert_key.is_some(), "--cert-key"),
                (self.key_type.is_some(), "--key-type"),
                (self.profile.is_some(), "--profile"),
                (self.preferred_chain.is_some(), "--preferred-chain"),
                (self.challenge.no_caa_preflight, "--no-caa-preflight"),
            ] {
                if given {
                    return refuse(flag, "--check", "--check orders nothing");
                }
            }
        } else if self.store.is_none() && self.challenge.no_caa_preflight {
            return refuse(
                "--no-caa-preflight",
                "an issue without --store",
                "only the store's issuer runs a CAA pre-flight",
            );
        }
        // --dns-server serves the store's CAA pre-flight, --check, the RFC
        // 2136 solver and the embedded CA's resolver: nothing else.
        if self.challenge.dns_server.is_some()
            && self.store.is_none()
            && !self.check
            && self.challenge.rfc2136.is_none()
            && !self.common.is_embedded()
        {
            return refuse(
                "--dns-server",
                "an issue without --store, --check or --rfc2136",
                "no DNS is asked then (the CAA pre-flight runs with --store)",
            );
        }
        if self.common.directories.len() > 1 && self.store.is_none() && !self.check {
            return refuse(
                "several --directory",
                "an issue without --store or --check",
                "choosing among CAs exactly once needs the store's journal (--store)",
            );
        }
        // Bad values too, before anything is sent.
        self.key_type()?;
        self.account_key_type()?;
        Ok(())
    }

    pub(crate) fn key_type(&self) -> Result<CertificateKeyType, AnyError> {
        Ok(self.key_type.as_deref().unwrap_or("p256").parse()?)
    }

    fn account_key_type(&self) -> Result<Option<KeyAlgorithm>, AnyError> {
        Ok(self
            .account_key_type
            .as_deref()
            .map(str::parse)
            .transpose()?)
    }
}

pub async fn run(args: IssueArgs) -> Result<(), AnyError> {
    let started = Instant::now();
    args.validate()?;
    let challenge_type = args.challenge.challenge_type()?;
    // Check the names before anything else happens.
    let mut order_request = NewOrder::for_names(&args.domains)?;
    if let Some(profile) = &args.profile {
        order_request = order_request.with_profile(profile.clone());
    }
    let mut conn = connect(&args.common, Some(&args.challenge), &args.out).await?;
    if args.common.directories.len() > 1 {
        return super::several::run(&args, &mut conn, challenge_type, started).await;
    }
    if args.check {
        return check(&args, &conn, challenge_type).await;
    }
    let account_alg = args.account_key_type()?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating output directory {}: {e}", args.out.display()))?;
    let options = conn.account_options(&args.common)?;

    if let Some(location) = &args.store {
        let solver = conn.solver(&args.challenge).await?;
        let dns = args.challenge.preflight_dns(&conn)?;
        let issuer = conn
            .issuer(location, options, Some(solver), dns, account_alg)
            .await?;
        let ensured = issuer
            .ensure(
                &args.domains,
                &EnsureOptions::from(
                    CertificateOptions::default()
                        .with_key_type(args.key_type()?)
                        .with_preferred_chain(
                            args.preferred_chain.clone().map(ChainPreference::RootName),
                        )
                        .with_profile(args.profile.clone()),
                ),
            )
            .await?;
        if let Some(id) = &ensured.replaces {
            step(format!("renewal: the order replaces {id} (ARI)"));
        }
        step(match ensured.source {
            CertificateSource::Stored => format!(
                "stored certificate {} is still good: not due until {}: no order sent",
                ensured.certificate.serial,
                sturdy_acme::timestamp::DisplayTime(issuer.renewal_due_at(&ensured.certificate)),
            ),
            CertificateSource::Resumed => format!(
                "resumed an interrupted order: serial {}",
                ensured.certificate.serial
            ),
            _ => format!("issued serial {}", ensured.certificate.serial),
        });
        let cert = &ensured.certificate;
        let chain = CertificateChain::parse_pem(&cert.url, &cert.chain_pem)?;
        write_outputs(&args.out, cert.key_pem.as_bytes(), &chain)?;
        done(&conn, started);
        return Ok(());
    }

    let cert_key = match &args.cert_key {
        Some(path) => {
            let pem = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("reading certificate key {}: {e}", path.display()))?,
            );
            CertificateKey::from_pkcs8_pem(&pem)
                .map_err(|e| format!("certificate key {}: {e}", path.display()))?
        }
        None => CertificateKey::generate(args.key_type()?)?,
    };
    let account_key = load_or_create_account_key(args.account_key.as_deref(), account_alg)?;
    let account = conn.client.create_account(account_key, &options).await?;
    step(format!("account {}", account.url()));

    let mut order = account.new_order(&order_request).await?;
    step(format!(
        "order {} is {}",
        order.url(),
        order.status().as_str()
    ));
    if challenge_type == ChallengeType::Http01 && order.status() == OrderStatus::Pending {
        conn.bind_responder(&args.challenge).await?;
    }

    let rfc2136 = match challenge_type {
        ChallengeType::Dns01 => args.challenge.rfc2136_solver()?,
        _ => None,
    };
    // Every record added by RFC 2136 is deleted again, whatever happens
    // after its UPDATE was sent (a failed publish included).
    let mut published = Vec::new();
    let validated = answer_challenges(
        &mut order,
        &conn,
        challenge_type,
        rfc2136.as_ref(),
        &mut published,
    )
    .await;
    if let Some(solver) = &rfc2136 {
        for (name, value) in &published {
            match solver.unpublish(name, value).await {
                Ok(()) => step(format!("deleted TXT {name}")),
                Err(e) => step(format!("warning: could not delete TXT {name}: {e}")),
            }
        }
    }
    validated?;
    step("all identifiers validated");
    conn.responder = None;

    order.finalize(Csr::Key(&cert_key)).await?;
    step("order finalized");
    let chain = order
        .certificate_chain(
            args.preferred_chain
                .clone()
                .map(ChainPreference::RootName)
                .as_ref(),
        )
        .await?;
    step(format!(
        "certificate {} downloaded (serial {}, chain to {})",
        chain.url(),
        chain.serial_hex().unwrap_or_default(),
        chain.top_issuer_common_name().unwrap_or_default()
    ));
    write_outputs(&args.out, cert_key.to_pkcs8_pem().as_bytes(), &chain)?;
    done(&conn, started);
    Ok(())
}

/// Presents and answers every pending authorization's challenge of
/// `challenge_type`, then waits for the order to be ready. Each RFC 2136
/// record is pushed onto `published` before its UPDATE is sent, so the
/// caller deletes it whatever happens.
async fn answer_challenges(
    order: &mut sturdy_acme::Order,
    conn: &Connection,
    challenge_type: ChallengeType,
    rfc2136: Option<&sturdy_acme::solver::dns01::Rfc2136Solver>,
    published: &mut Vec<(String, String)>,
) -> Result<(), AnyError> {
    let mut to_answer = Vec::new();
    for authz in order.authorizations().await? {
        if authz.status() != AuthorizationStatus::Pending {
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
        match (&conn.responder, &conn.embedded) {
            _ if rfc2136.is_some() => {
                let name = challenge.dns01_record_name();
                let value = challenge.dns01_txt_value()?;
                let solver = rfc2136.expect("checked");
                published.push((name.clone(), value.clone()));
                let zone = solver.publish(&name, &value).await?;
                step(format!(
                    "added TXT {name} in zone {} by RFC 2136; all {} nameservers serve it",
                    zone.apex,
                    zone.nameservers.len()
                ));
            }
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
        to_answer.push((authz.identifier().value, challenge));
    }
    if challenge_type == ChallengeType::Dns01
        && !to_answer.is_empty()
        && conn.embedded.is_none()
        && rfc2136.is_none()
    {
        step("press Enter once the TXT records are visible in DNS");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    for (ordered, challenge) in &mut to_answer {
        challenge.respond().await?;
        // The identifier as ordered (`*.` kept for a wildcard).
        step(format!("answered {} for {ordered}", challenge.kind()));
    }
    order.wait_ready().await?;
    Ok(())
}

/// The closing line: time and requests by endpoint.
pub fn done(conn: &Connection, started: Instant) {
    step(format!(
        "done in {:.2?} with {} requests ({})",
        started.elapsed(),
        conn.client.request_stats().total(),
        conn.client.request_stats()
    ));
}

/// Writes key.pem (0600), cert.pem, chain.pem and fullchain.pem as one
/// set (see `outputs.rs`: a reader never pairs the key with another
/// certificate).
pub fn write_outputs(out: &Path, key_pem: &[u8], chain: &CertificateChain) -> Result<(), AnyError> {
    let serial = chain.serial_hex().unwrap_or_default();
    let (leaf, issuers) = (chain.leaf_pem(), chain.issuers_pem());
    let set = OutputSet {
        key_pem,
        cert_pem: leaf.as_bytes(),
        chain_pem: issuers.as_bytes(),
        fullchain_pem: chain.pem().as_bytes(),
        label: &serial,
    };
    let dir = write_set(out, &set).map_err(|source| OutputError {
        dir: out.to_path_buf(),
        source,
    })?;
    step(format!(
        "wrote key.pem, cert.pem, chain.pem and fullchain.pem in {} (the set {})",
        out.display(),
        dir.display()
    ));
    Ok(())
}

fn load_or_create_account_key(
    path: Option<&Path>,
    wanted: Option<KeyAlgorithm>,
) -> Result<AccountKey, AnyError> {
    let alg = wanted.unwrap_or(KeyAlgorithm::Es256);
    let Some(path) = path else {
        step(format!(
            "generating a throwaway {} account key",
            alg.jws_name()
        ));
        return Ok(AccountKey::generate(alg)?);
    };
    if path.exists() {
        let pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading account key {}: {e}", path.display()))?,
        );
        let key = AccountKey::from_pkcs8_pem(&pem)
            .map_err(|e| format!("account key {}: {e}", path.display()))?;
        if let Some(wanted) = wanted
            && wanted != key.algorithm()
        {
            return Err(format!(
                "--account-key-type {} cannot be used with the existing {} key in {}",
                wanted.jws_name(),
                key.algorithm().jws_name(),
                path.display()
            )
            .into());
        }
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

/// `--check`: the CAA verdict of every name, each nameserver's answer and
/// time, and for dns-01 where `_acme-challenge` leads. Orders nothing.
/// One line per nameserver a CAA report asked: server, name, latency,
/// outcome (the slow nameserver stands out).
pub fn print_queries(report: &sturdy_acme::caa::CaaReport) {
    for q in &report.queries {
        println!(
            "    {:<40} {:<28} {:>7.1} ms  {}",
            q.nameserver.to_string(),
            q.name,
            q.latency.as_secs_f64() * 1000.0,
            q.outcome
        );
    }
}

async fn check(
    args: &IssueArgs,
    conn: &Connection,
    challenge_type: ChallengeType,
) -> Result<(), AnyError> {
    use sturdy_acme::caa::{CaaChecker, CaaContext};
    use sturdy_acme::dns::Dns;
    let dns = args
        .challenge
        .dns_config()?
        .ok_or("--check needs a DNS server: --dns-server HOST:PORT")?;
    let identities = conn.client.directory().meta.caa_identities.clone();
    // RFC 8657 accounturi is judged against the account of --account-key,
    // when the CA knows it (looked up, never created).
    let account_uri = match args.account_key.as_deref().filter(|p| p.exists()) {
        Some(path) => {
            let key = load_or_create_account_key(Some(path), args.account_key_type()?)?;
            match conn.client.find_account(key).await {
                Ok(account) => {
                    println!("Account: {}", account.url());
                    Some(account.url().to_owned())
                }
                Err(e) => {
                    println!(
                        "Account: none at this CA for {} ({e}): an accounturi record cannot match",
                        path.display()
                    );
                    None
                }
            }
        }
        None => {
            println!(
                "Account: none given (--account-key FILE of an existing account): an accounturi record cannot match a new account"
            );
            None
        }
    };
    let ctx = CaaContext {
        ca_identities: identities.clone(),
        account_uri,
        validation_methods: vec![challenge_type.to_string()],
    };
    println!(
        "CA identities: {}",
        if identities.is_empty() {
            "none announced (issuer records cannot be judged)".to_owned()
        } else {
            identities.join(", ")
        }
    );
    let names: Vec<&String> = args
        .domains
        .iter()
        .filter(|d| d.parse::<std::net::IpAddr>().is_err())
        .collect();
    let reports = CaaChecker::new(Dns::new(dns.clone()))
        .check(&names, &ctx)
        .await;
    let mut blocked = Vec::new();
    for report in &reports {
        println!("CAA {}", report.summary());
        print_queries(report);
        if !report.verdict.may_issue() {
            blocked.push(report.name.clone());
        }
    }
    if challenge_type == ChallengeType::Dns01 {
        let dns = Dns::new(dns);
        for name in &names {
            let record = format!("_acme-challenge.{}", name.trim_start_matches("*."));
            match dns.follow_cname(&record).await {
                Ok(target) => {
                    let zone = dns.zone_of(&target).await;
                    let zone = match &zone {
                        Ok(z) => format!(
                            "zone {}, nameservers {}",
                            z.apex,
                            z.nameservers
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Err(e) => format!("zone not found: {e}"),
                    };
                    if target == record {
                        println!("dns-01 {record}: not delegated ({zone})");
                    } else {
                        println!("dns-01 {record}: delegated by CNAME to {target} ({zone})");
                    }
                }
                Err(e) => println!("dns-01 {record}: {e}"),
            }
        }
    }
    if blocked.is_empty() {
        println!("check passed: the CA's CAA check should allow every name; nothing ordered");
        Ok(())
    } else {
        let forbidden = reports
            .iter()
            .any(|r| matches!(r.verdict, sturdy_acme::caa::CaaVerdict::Forbidden { .. }));
        Err(Box::new(sturdy_acme::Error::CaaPreflight {
            names: blocked.clone(),
            cause: if forbidden {
                sturdy_acme::CaaCause::Forbidden
            } else {
                sturdy_acme::CaaCause::LookupFailed
            },
            summary: format!(
                "{} cannot be issued now; nothing ordered",
                blocked.join(", ")
            ),
        }))
    }
}
