//! Issue a certificate by hand: `acme issue` (see `examples/acme/main.rs`)
//! under its old name, with the same flags, for the scripts and people that
//! already call it.
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
//! v1. Writes `cert.pem` (leaf), `chain.pem` (issuers), `fullchain.pem` and
//! `key.pem` (0600) into `--out` as one set (links through `live/` to the
//! current set under `sets/`, swapped in one step: see
//! `acme/outputs.rs`); the exit status tells the error class.

#[path = "acme/main.rs"]
#[allow(dead_code)] // the `acme` binary's own `main`
mod acme;

fn main() -> std::process::ExitCode {
    acme::issue_compat()
}
