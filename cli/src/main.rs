//! `acme`: issue and manage certificates by hand, in the style of lego's
//! CLI. Every subcommand shares the CA options (`--directory`, `--root-ca`,
//! the account's contact and external account binding) and the output
//! options (`--log-format plain|json`, `-v`/`-vv`).
//!
//! ```text
//! acme issue --directory letsencrypt-staging \
//!     --domain example.com --store state/ --out certs/
//! acme list   --directory letsencrypt-staging --store state/
//! acme renew  --directory letsencrypt-staging --store state/
//! acme revoke --directory letsencrypt-staging --store state/ \
//!     --domain example.com --reason superseded
//! acme account --directory letsencrypt-staging --store state/ show
//! ```
//!
//! - `issue`: order a certificate and write `cert.pem`, `chain.pem`,
//!   `fullchain.pem` and `key.pem` (0600) into `--out`, as one set that
//!   replaces the previous one in a single step (`outputs.rs`: a reader
//!   never pairs a key with another certificate). With `--store`, the
//!   exactly-once issuer does it: a second run returns the stored
//!   certificate, an interrupted run resumes its order. `--directory
//!   embedded` starts the crate's test CA in this process (really
//!   validating http-01 or dns-01) and writes its root as `ca-root.pem`.
//! - `list`: the store's certificates: names, CA, serial, expiry, when
//!   renewal is due, revoked or in flight, and the last error. When the
//!   issuer's time to ask the CA's renewal information (ARI) again has
//!   come, it is asked and judged as the issuer judges it (not stored).
//! - `renew`: renew what is due in the store (and finish interrupted
//!   orders); a certificate whose renewal information is due to be asked
//!   again goes through the issuer, which asks it and renews if the CA's
//!   window says so.
//! - `revoke`: revoke a stored certificate, signed by the account key or
//!   the certificate's own key, with a reason (a certificate already
//!   revoked is said so, and nothing is sent).
//! - `account`: show it, update its contacts, roll its key over, deactivate it.
//!
//! Install with `cargo install --path cli` (from the workspace root); in
//! the workspace, `cargo run -p sturdy-acme-cli -- issue …`.
//!
//! Every wait is a line on stderr before it starts (what the CA said, what
//! happens next and when), with a live countdown on a terminal; the exit
//! status tells the error class (see `--help`), and a refusal the person
//! can work around comes with a `hint:` line. A flag the command would
//! ignore is refused. No secret is printed: the arguments' `Debug` (shown
//! at `-vv`) redacts the EAB and TSIG keys and the database password.

pub(crate) mod common;
pub(crate) mod exit;
mod hints;
pub(crate) mod issue;
pub(crate) mod manage;
pub(crate) mod output;
pub(crate) mod outputs;
pub(crate) mod several;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line (its `Debug` shows no secret: every secret-carrying
/// argument has a type whose `Debug` redacts it).
#[derive(Parser, Debug)]
#[command(about = "Issue and manage certificates from an ACME CA", version, after_help = exit::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Order a certificate and write it out.
    #[command(after_help = exit::HELP)]
    Issue(issue::IssueArgs),
    /// List the store's certificates.
    #[command(after_help = exit::HELP)]
    List(manage::ListArgs),
    /// Renew what is due in the store.
    #[command(after_help = exit::HELP)]
    Renew(manage::RenewArgs),
    /// Revoke a stored certificate.
    #[command(after_help = exit::HELP)]
    Revoke(manage::RevokeArgs),
    /// Show or change the store's account.
    #[command(after_help = exit::HELP)]
    Account(manage::AccountArgs),
}

impl Command {
    fn common(&self) -> &common::CommonArgs {
        match self {
            Self::Issue(a) => &a.common,
            Self::List(a) => &a.common,
            Self::Renew(a) => &a.common,
            Self::Revoke(a) => &a.common,
            Self::Account(a) => &a.common,
        }
    }
}

fn main() -> ExitCode {
    run(Cli::parse().command)
}

fn run(command: Command) -> ExitCode {
    let common = command.common();
    output::init(common.log_format == "json", common.verbose);
    if common.verbose >= 2 {
        output::step(format!("arguments: {command:?}"));
    }
    let hint_context = hints::Context::of(&command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::step(format!("error: starting the runtime: {e}"));
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Issue(a) => issue::run(a).await,
            Command::List(a) => match a.common.single() {
                Ok(()) => manage::list(a).await,
                Err(e) => Err(e),
            },
            Command::Renew(a) => match a.common.single() {
                Ok(()) => manage::renew(a).await,
                Err(e) => Err(e),
            },
            Command::Revoke(a) => match a.common.single() {
                Ok(()) => manage::revoke(a).await,
                Err(e) => Err(e),
            },
            Command::Account(a) => match a.common.single() {
                Ok(()) => manage::account(a).await,
                Err(e) => Err(e),
            },
        }
    });
    output::summary();
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            output::step(format!("error: {e}"));
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(s) = source {
                output::step(format!("  caused by: {s}"));
                source = s.source();
            }
            let (code, what) = exit::status(e.as_ref());
            output::step(format!("exit {code}: {what}"));
            if let Some(hint) = hints::hint(&hint_context, e.as_ref()) {
                output::step(format!("hint: {hint}"));
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests;
