//! `issue` with several `--directory`: a CA set over them, in order of
//! preference. `--check` prints each name's CAA verdict for every CA from
//! one lookup; `--store` issues through the set (the customer's CAA, each
//! CA's health, failover exactly once) and says which CA issued and why.

use std::sync::Arc;
use std::time::Instant;

use sturdy_acme::ca_set::{CaMember, CaSet};
use sturdy_acme::store::{DynStore, MemoryStore};
use sturdy_acme::{
    AccountOptions, CertificateChain, CertificateOptions, CertificateSource, ChainPreference,
    ChallengeType, Client, EnsureOptions, ExternalAccountKey, Issuer,
};

use super::common::{AnyError, Connection, client_of};
use super::issue::{IssueArgs, done, print_queries, write_outputs};
use super::output::step;

/// A name for each CA of the set: its directory's host (with its position
/// when two share one).
fn names(clients: &[Client]) -> Vec<String> {
    let hosts: Vec<String> = clients
        .iter()
        .map(|c| {
            url::Url::parse(c.directory_url())
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| c.directory_url().to_owned())
        })
        .collect();
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if hosts.iter().filter(|o| *o == h).count() > 1 {
                format!("{h}#{}", i + 1)
            } else {
                h.clone()
            }
        })
        .collect()
}

/// Runs `issue` over every `--directory`, the first already connected.
pub async fn run(
    args: &IssueArgs,
    conn: &mut Connection,
    challenge_type: ChallengeType,
    started: Instant,
) -> Result<(), AnyError> {
    let common = &args.common;
    let mut clients = vec![conn.client.clone()];
    let mut bindings = vec![conn.eab.clone()];
    for given in &common.directories[1..] {
        let client = client_of(common, given).await?;
        bindings.push(
            common
                .eab_for(client.directory_url())?
                .or(common.eab_for(given)?),
        );
        clients.push(client);
    }
    let ca_names = names(&clients);
    let store: Arc<dyn DynStore> = match &args.store {
        Some(location) => location.open().await?,
        // --check: nothing is kept.
        None => Arc::new(MemoryStore::new()),
    };
    let solver = if args.check {
        None
    } else {
        Some(conn.solver(&args.challenge).await?)
    };
    let mut set = CaSet::builder();
    for ((client, binding), name) in clients.into_iter().zip(bindings).zip(&ca_names) {
        let mut options = AccountOptions::agreeing_to_terms();
        if let Some(contact) = &common.contact {
            options = options.with_contact(contact);
        }
        if let Some((kid, hmac)) = &binding {
            options = options.with_external_account(ExternalAccountKey::new(kid, hmac)?);
        }
        let mut issuer = Issuer::builder(client, Arc::clone(&store))
            .account_options(options)
            .renew_at_window_start(true)
            .caa_preflight(None);
        if let Some(solver) = &solver {
            issuer = issuer.solver(Arc::clone(solver));
        }
        set = set.ca(CaMember::new(name.clone(), issuer.build()));
    }
    // The set's CAA pre-flight: one lookup, judged for every CA.
    let dns = if args.check {
        Some(
            args.challenge
                .dns_config()?
                .ok_or("--check needs a DNS server: --dns-server HOST:PORT")?,
        )
    } else {
        args.challenge.preflight_dns(conn)?
    };
    if let Some(dns) = dns {
        set = set.dns(dns);
    }
    let set = set.build()?;
    if args.check {
        return check(args, &set, challenge_type).await;
    }
    let options = EnsureOptions::from(
        CertificateOptions::default()
            .with_key_type(args.key_type()?)
            .with_preferred_chain(args.preferred_chain.clone().map(ChainPreference::RootName))
            .with_profile(args.profile.clone()),
    );
    let got = set.ensure(&args.domains, &options).await?;
    if let Some(choice) = &got.choice {
        step(format!("CA: {choice}"));
    }
    let cert = &got.ensured.certificate;
    step(match got.ensured.source {
        CertificateSource::Stored => format!(
            "stored certificate {} from {} is still good: no order sent",
            cert.serial, got.ca
        ),
        CertificateSource::Resumed => format!(
            "resumed an interrupted order at {}: serial {}",
            got.ca, cert.serial
        ),
        _ => format!("issued serial {} at {}", cert.serial, got.ca),
    });
    let chain = CertificateChain::parse_pem(&cert.url, &cert.chain_pem)?;
    write_outputs(&args.out, cert.key_pem.as_bytes(), &chain)?;
    done(conn, started);
    Ok(())
}

/// `--check` over several CAs: each name's verdict for every CA, from one
/// lookup; fails (exit 4, CAA) when no CA may issue every name.
async fn check<S: sturdy_acme::store::Store>(
    args: &IssueArgs,
    set: &CaSet<S>,
    challenge_type: ChallengeType,
) -> Result<(), AnyError> {
    let names: Vec<&String> = args
        .domains
        .iter()
        .filter(|d| d.parse::<std::net::IpAddr>().is_err())
        .collect();
    let options = EnsureOptions::from(
        CertificateOptions::default().with_challenge_types(vec![challenge_type]),
    );
    let verdicts = set
        .caa_verdicts(&names, &options)
        .await
        .ok_or("--check needs a DNS server: --dns-server HOST:PORT")?;
    let mut allowed = Vec::new();
    for (ca, reports) in &verdicts {
        let may = reports.iter().all(|r| r.verdict.may_issue());
        println!(
            "CA {ca}: {}",
            if may {
                "may issue every name"
            } else {
                "forbidden for some name"
            }
        );
        for report in reports {
            println!("    CAA {}", report.summary());
        }
        if may {
            allowed.push(ca.clone());
        }
    }
    if let Some((_, reports)) = verdicts.first() {
        for report in reports {
            print_queries(report);
        }
    }
    if let Some(first) = allowed.first() {
        println!(
            "check passed: {} may issue; the set would choose {first} first; nothing ordered",
            allowed.join(", ")
        );
        Ok(())
    } else {
        Err(Box::new(sturdy_acme::Error::CaaPreflight {
            names: args.domains.clone(),
            cause: sturdy_acme::CaaCause::Forbidden,
            summary: "no CA of the set may issue every name; nothing ordered".into(),
        }))
    }
}
