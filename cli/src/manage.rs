//! `list`, `renew`, `revoke` and `account`: what is in a store, and what
//! to do with it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use clap::{Args, Subcommand};
use sturdy_acme::store::{DynStore, RenewalSchedule};
use sturdy_acme::timestamp::DisplayTime;
use sturdy_acme::{
    AccountKey, CertificateKeyType, CertificateOptions, CertificateSource, CertificateStatus,
    ChainPreference, Endpoint, EnsureOptions, Issuer, KeyAlgorithm, RevocationReason, RevokeWith,
};

use super::common::{AnyError, ChallengeArgs, CommonArgs, StoreLocation, connect};
use super::output::{json_line, json_output, step};

/// The store every management subcommand works on.
#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// The store: a directory or a `postgres://` URL (as given to
    /// `issue --store`).
    #[arg(long)]
    pub store: StoreLocation,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct RenewArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub challenge: ChallengeArgs,
    /// Key type for the renewed certificates' new keys: p256 or p384.
    #[arg(long, default_value = "p256")]
    pub key_type: String,
    /// Prefer the chain whose top certificate was issued by this common name.
    #[arg(long)]
    pub preferred_chain: Option<String>,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArg,
    /// The names of the stored certificate to revoke (its whole set).
    #[arg(long = "domain", required = true)]
    pub domains: Vec<String>,
    /// The reason: unspecified, key-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, privilege-withdrawn.
    #[arg(long, default_value = "unspecified")]
    pub reason: String,
    /// Sign the request with the certificate's own key instead of the
    /// account's (proves control of the key, e.g. when it was compromised).
    #[arg(long)]
    pub with_cert_key: bool,
}

#[derive(Args, Debug)]
pub struct AccountArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(subcommand)]
    pub action: AccountAction,
}

#[derive(Subcommand, Debug)]
pub enum AccountAction {
    /// The account's URL, status, contacts and key.
    Show,
    /// Replace the account's contacts.
    UpdateContact {
        /// A contact e-mail; repeat for more, none to remove them all.
        #[arg(long = "email")]
        emails: Vec<String>,
    },
    /// Roll the account key over to a new one (the store keeps whichever
    /// key owns the account, even across a crash).
    RotateKey {
        /// Algorithm of the new key: es256, es384, eddsa.
        #[arg(long, default_value = "es256")]
        key_type: String,
    },
    /// Deactivate the account at the CA (permanent: it cannot order again).
    Deactivate {
        /// Required: deactivation cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

fn reason(name: &str) -> Result<Option<RevocationReason>, AnyError> {
    Ok(Some(match name {
        "unspecified" => return Ok(None),
        "key-compromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" => RevocationReason::CessationOfOperation,
        "privilege-withdrawn" => RevocationReason::PrivilegeWithdrawn,
        other => return Err(format!("unknown --reason {other:?}").into()),
    }))
}

/// The state of a status line: valid, due, revoked, in flight.
fn state(s: &CertificateStatus, now: SystemTime) -> String {
    if let Some(r) = &s.revoked {
        return format!("revoked at {}", DisplayTime(r.at));
    }
    if let Some(step) = s.in_flight {
        return format!("order in flight ({step:?})");
    }
    match s.renewal_due {
        Some(due) if due <= now => "due for renewal".into(),
        Some(_) => "valid".into(),
        None => "unreadable".into(),
    }
}

/// The names of a status line's set, as the issuer takes them.
fn names_of(s: &CertificateStatus) -> Vec<String> {
    s.identifiers.iter().map(|i| i.value.clone()).collect()
}

/// What `list` learnt of the CA's renewal information for a certificate.
enum RenewalInfoSeen {
    /// Not asked: the issuer's recheck time has not come (or nothing to ask).
    NotAsked,
    /// Asked now: the window it gave.
    Asked {
        window_start: SystemTime,
        window_end: SystemTime,
    },
    /// Asked now, and it failed: decided on what was known.
    Failed(String),
}

/// The renewal time `list` shows, decided as the issuer decides: when the
/// issuer's recheck time for the certificate has come
/// ([`Issuer::next_check_at`]), [`Issuer::checked_certificate`] asks the
/// CA's renewal information (what an `ensure` would ask first) and records
/// it under the set's lease, and [`Issuer::renewal_due_at`] judges the
/// certificate with it.
async fn recheck_for_list(
    issuer: &Issuer<Arc<dyn DynStore>>,
    s: &mut CertificateStatus,
) -> Result<RenewalInfoSeen, AnyError> {
    if s.serial.is_none() || s.revoked.is_some() {
        return Ok(RenewalInfoSeen::NotAsked);
    }
    let names = names_of(s);
    let Some(before) = issuer.stored_certificate(&names).await? else {
        return Ok(RenewalInfoSeen::NotAsked);
    };
    if before.revoked.is_some()
        || !issuer.client().offers_renewal_info()
        // Read after the call: with no schedule yet it answers "now".
        || issuer.next_check_at(&before) > SystemTime::now()
    {
        return Ok(RenewalInfoSeen::NotAsked);
    }
    let Some(cert) = issuer.checked_certificate(&names).await? else {
        return Ok(RenewalInfoSeen::NotAsked);
    };
    s.renewal_due = Some(issuer.renewal_due_at(&cert));
    let asked = cert.renewal != before.renewal;
    Ok(match &cert.renewal {
        // Another process holds the set's lease: judged on what is known.
        _ if !asked => RenewalInfoSeen::NotAsked,
        Some(RenewalSchedule {
            window_start: Some(start),
            window_end: Some(end),
            ..
        }) => RenewalInfoSeen::Asked {
            window_start: *start,
            window_end: *end,
        },
        _ => RenewalInfoSeen::Failed(
            "no usable answer; renewing by the certificate's lifetime until the next check".into(),
        ),
    })
}

pub async fn list(args: ListArgs) -> Result<(), AnyError> {
    let conn = connect(&args.common, None, &std::env::temp_dir()).await?;
    let issuer = conn
        .issuer(
            &args.store.store,
            conn.account_options(&args.common)?,
            None,
            None,
            None,
        )
        .await?;
    let mut all = issuer.certificates().await?;
    let time = |t: Option<SystemTime>| t.map(|t| DisplayTime(t).to_string());
    for s in &mut all {
        let seen = recheck_for_list(&issuer, s).await?;
        // Judged after the recheck (a window that opens now is due).
        let now = SystemTime::now();
        let names: Vec<&str> = s.identifiers.iter().map(|i| i.value.as_str()).collect();
        let ca = s.key.ca().map(|c| c.directory.as_str()).unwrap_or("?");
        let last_error = s
            .last_error
            .as_ref()
            .map(|e| format!("{} at {}: {}", e.class, e.at, e.message));
        let renewal_info = match &seen {
            RenewalInfoSeen::NotAsked => None,
            RenewalInfoSeen::Asked {
                window_start,
                window_end,
            } => Some(format!(
                "asked now: window {} to {}",
                DisplayTime(*window_start),
                DisplayTime(*window_end)
            )),
            RenewalInfoSeen::Failed(e) => Some(format!("asked now, failed ({e})")),
        };
        if json_output() {
            let line = serde_json::json!({
                "names": names,
                "ca": ca,
                "serial": s.serial,
                "not_after": time(s.not_after),
                "renewal_due": time(s.renewal_due),
                "state": state(s, now),
                "revoked": s.revoked.is_some(),
                "order_url": s.order_url,
                "last_error": last_error,
                "unreadable": s.unreadable,
                "renewal_info": renewal_info,
            });
            println!("{line}");
        } else {
            println!(
                "{}\n  ca {ca}\n  serial {}  not after {}  renewal due {}\n  state: {}{}{}{}",
                names.join(", "),
                s.serial.as_deref().unwrap_or("-"),
                time(s.not_after).as_deref().unwrap_or("-"),
                time(s.renewal_due).as_deref().unwrap_or("-"),
                state(s, now),
                renewal_info
                    .map(|e| format!("\n  renewal information: {e}"))
                    .unwrap_or_default(),
                last_error
                    .map(|e| format!("\n  last error: {e}"))
                    .unwrap_or_default(),
                s.unreadable
                    .as_ref()
                    .map(|e| format!("\n  unreadable: {e}"))
                    .unwrap_or_default(),
            );
        }
    }
    step(format!(
        "{} certificate(s) in {}",
        all.len(),
        args.store.store
    ));
    Ok(())
}

/// Why `renew` takes up a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Due (or revoked, or an order in flight): renewed.
    Due,
    /// Not due on what is known, but the issuer's time to ask the CA's
    /// renewal information again has come: the issuer asks it, and renews
    /// if it says so.
    Recheck,
}

pub async fn renew(args: RenewArgs) -> Result<(), AnyError> {
    let started = Instant::now();
    let mut conn = connect(&args.common, Some(&args.challenge), &std::env::temp_dir()).await?;
    let solver = conn.solver(&args.challenge).await?;
    let issuer = conn
        .issuer(
            &args.store.store,
            conn.account_options(&args.common)?,
            Some(solver),
            args.challenge.preflight_dns(&conn)?,
            None,
        )
        .await?;
    let now = SystemTime::now();
    let all = issuer.certificates().await?;
    // The issuer's own judgement: due now, or its renewal information to
    // ask again (an ensure asks it first, then renews if it says so).
    let mut work = Vec::new();
    let mut next_check: Option<SystemTime> = None;
    for s in &all {
        if s.needs_work(now) {
            work.push((s, Work::Due));
            continue;
        }
        if s.serial.is_none() {
            continue;
        }
        let Some(cert) = issuer.stored_certificate(&names_of(s)).await? else {
            continue;
        };
        let check = issuer.next_check_at(&cert);
        // Read after the call: with no schedule yet it answers "now".
        if check <= SystemTime::now() {
            work.push((s, Work::Recheck));
        } else {
            next_check = Some(next_check.map_or(check, |n| n.min(check)));
        }
    }
    if work.is_empty() {
        let next = all.iter().filter_map(|s| s.renewal_due).min();
        step(format!(
            "nothing due among {} certificate(s){}{}",
            all.len(),
            next.map(|t| format!("; the next renewal is due at {}", DisplayTime(t)))
                .unwrap_or_default(),
            next_check
                .filter(|c| next.is_none_or(|n| *c < n))
                .map(|t| format!(
                    "; the CA's renewal information is asked again at {}",
                    DisplayTime(t)
                ))
                .unwrap_or_default()
        ));
        return Ok(());
    }
    let options = EnsureOptions::from(
        CertificateOptions::default()
            .with_key_type(args.key_type.parse::<CertificateKeyType>()?)
            .with_preferred_chain(args.preferred_chain.clone().map(ChainPreference::RootName)),
    );
    let mut first_error: Option<AnyError> = None;
    for (s, why) in work {
        let names = names_of(s);
        step(match why {
            Work::Due => format!("renewing {} ({})", names.join(", "), state(s, now)),
            Work::Recheck => format!(
                "{}: asking the CA's renewal information (its time to be asked again has come)",
                names.join(", ")
            ),
        });
        match issuer.ensure(&names, &options).await {
            Ok(ensured) => {
                if let Some(id) = &ensured.replaces {
                    step(format!("renewal: the order replaces {id} (ARI)"));
                }
                let line = match (ensured.source, why) {
                    (CertificateSource::Stored, Work::Recheck) => format!(
                        "{}: not due, serial {}: the renewal is due at {}",
                        names.join(", "),
                        ensured.certificate.serial,
                        DisplayTime(issuer.renewal_due_at(&ensured.certificate))
                    ),
                    (CertificateSource::Stored, Work::Due) => format!(
                        "{}: already renewed by another process, serial {}",
                        names.join(", "),
                        ensured.certificate.serial
                    ),
                    (CertificateSource::Resumed, _) => format!(
                        "{}: finished the interrupted order, serial {}",
                        names.join(", "),
                        ensured.certificate.serial
                    ),
                    _ => format!(
                        "{}: renewed, serial {}",
                        names.join(", "),
                        ensured.certificate.serial
                    ),
                };
                step(line);
                // Not for a certificate the recheck found not due.
                let renewed =
                    !(ensured.source == CertificateSource::Stored && why == Work::Recheck);
                if json_output() && renewed {
                    json_line(serde_json::json!({
                        "event": "renewed",
                        "names": names,
                        "serial": ensured.certificate.serial,
                        "replaces": ensured.replaces.as_ref().map(ToString::to_string),
                    }));
                }
            }
            Err(e) => {
                step(format!("{}: {e}", names.join(", ")));
                first_error.get_or_insert(Box::new(e));
            }
        }
    }
    super::issue::done(&conn, started);
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The name of a revocation reason code (RFC 5280 §5.3.1), as `--reason`
/// spells it.
fn reason_name(code: Option<u8>) -> String {
    match code {
        None | Some(0) => "unspecified".into(),
        Some(1) => "key-compromise".into(),
        Some(3) => "affiliation-changed".into(),
        Some(4) => "superseded".into(),
        Some(5) => "cessation-of-operation".into(),
        Some(9) => "privilege-withdrawn".into(),
        Some(other) => format!("code {other}"),
    }
}

pub async fn revoke(args: RevokeArgs) -> Result<(), AnyError> {
    let reason = reason(&args.reason)?;
    let conn = connect(&args.common, None, &std::env::temp_dir()).await?;
    let issuer = conn
        .issuer(
            &args.store.store,
            conn.account_options(&args.common)?,
            None,
            None,
            None,
        )
        .await?;
    let with = if args.with_cert_key {
        RevokeWith::CertificateKey
    } else {
        RevokeWith::AccountKey
    };
    let before = conn.client.request_stats();
    let cert = issuer.revoke(&args.domains, reason, with).await?;
    let sent = conn
        .client
        .request_stats()
        .since(&before)
        .get(Endpoint::Revoke);
    let revoked = cert.revoked.as_ref();
    if sent == 0 {
        // The store had it revoked already: nothing was sent.
        step(format!(
            "serial {} was already revoked{}{}: nothing sent to the CA",
            cert.serial,
            revoked
                .map(|r| format!(" (recorded at {})", DisplayTime(r.at)))
                .unwrap_or_default(),
            revoked
                .map(|r| format!(", reason {}", reason_name(r.reason)))
                .unwrap_or_default(),
        ));
        return Ok(());
    }
    step(format!(
        "revoked serial {} ({}, signed with the {} key); the next issue or renew orders a new one",
        cert.serial,
        args.reason,
        if args.with_cert_key {
            "certificate's"
        } else {
            "account"
        }
    ));
    Ok(())
}

pub async fn account(args: AccountArgs) -> Result<(), AnyError> {
    let conn = connect(&args.common, None, &std::env::temp_dir()).await?;
    let issuer = conn
        .issuer(
            &args.store.store,
            conn.account_options(&args.common)?,
            None,
            None,
            None,
        )
        .await?;
    let account = issuer.account().await?;
    let show = |url: &str, resource: &sturdy_acme::AccountResource, key: &AccountKey| {
        let status = serde_json::to_value(resource.status).unwrap_or_default();
        if json_output() {
            println!(
                "{}",
                serde_json::json!({
                    "url": url,
                    "status": status,
                    "contact": resource.contact,
                    "orders": resource.orders,
                    "key_algorithm": key.algorithm().jws_name(),
                    "key_thumbprint": key.thumbprint(),
                })
            );
        } else {
            println!(
                "account {url}\n  status {}\n  contact {}\n  key {} (thumbprint {})",
                status.as_str().unwrap_or("?"),
                if resource.contact.is_empty() {
                    "-".to_owned()
                } else {
                    resource.contact.join(", ")
                },
                key.algorithm().jws_name(),
                key.thumbprint()
            );
        }
    };
    match args.action {
        AccountAction::Show => {
            let resource = account.refresh().await?;
            show(account.url(), &resource, account.key());
        }
        AccountAction::UpdateContact { emails } => {
            let contacts: Vec<String> = emails
                .iter()
                .map(|e| {
                    if e.starts_with("mailto:") {
                        e.clone()
                    } else {
                        format!("mailto:{e}")
                    }
                })
                .collect();
            let resource = account.update_contacts(&contacts).await?;
            step("contacts updated");
            show(account.url(), &resource, account.key());
        }
        AccountAction::RotateKey { key_type } => {
            let alg: KeyAlgorithm = key_type.parse()?;
            let old = account.key().thumbprint().to_owned();
            let rotated = issuer
                .rotate_account_key(AccountKey::generate(alg)?)
                .await?;
            step(format!(
                "account key rolled over: thumbprint {old} -> {} ({}), stored in {}",
                rotated.key().thumbprint(),
                alg.jws_name(),
                args.store.store
            ));
            let resource = rotated.refresh().await?;
            show(rotated.url(), &resource, rotated.key());
        }
        AccountAction::Deactivate { yes } => {
            if !yes {
                return Err(
                    "deactivation cannot be undone: add --yes to deactivate the account".into(),
                );
            }
            let resource = account.deactivate().await?;
            step("account deactivated; the CA refuses its requests from now on");
            show(account.url(), &resource, account.key());
        }
    }
    Ok(())
}
