//! The standalone server's command line (`sturdy-test-ca`), as a library
//! type: the binary parses it, and a test suite that wants exactly what the
//! server would run (in its own process, or on a thread of the test's) can
//! build the same [`TestCaBuilder`] from the same flags.
//!
//! ```
//! use clap::Parser;
//! use sturdy_acme_testca::command::ServerArgs;
//!
//! let args = ServerArgs::try_parse_from(["sturdy-test-ca", "--port", "0", "--ari-renew-after", "0"])?;
//! let builder = args.builder()?; // start it with `builder.start().await?`
//! # let _ = builder;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sturdy_acme::RateLimits;

use crate::{FaultRule, StaticDns, TestCa, TestCaBuilder};

/// The flags of `sturdy-test-ca` (`--help` lists them with their defaults).
///
/// Example: the [module](self) documentation.
#[derive(Parser)]
#[command(
    name = "sturdy-test-ca",
    about = "Run sturdy-acme's embedded ACME test CA as a server",
    version
)]
pub struct ServerArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 14000)]
    port: u16,
    /// Where to write the root certificate (PEM).
    #[arg(long, default_value = "test-ca-root.pem")]
    root_out: PathBuf,
    /// `always-valid` or `real` (http-01, tls-alpn-01 on 127.0.0.1; dns-01 from --txt).
    #[arg(long, default_value = "always-valid")]
    validation: String,
    /// http-01 port for real validation.
    #[arg(long, default_value_t = 5002)]
    http_port: u16,
    /// tls-alpn-01 port for real validation.
    #[arg(long, default_value_t = 5001)]
    tls_port: u16,
    /// A TXT record for dns-01, `NAME=VALUE` (repeatable).
    #[arg(long)]
    txt: Vec<String>,
    /// `none`, `lets-encrypt`, or a JSON file.
    #[arg(long, default_value = "none")]
    rate_limits: String,
    /// A JSON fault script file.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// CAA for a domain: `DOMAIN=allow|forbid|timeout|timeout:N` (repeatable).
    #[arg(long)]
    caa: Vec<String>,
    /// Answer finalize with `processing` for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    finalize_processing_ms: u64,
    /// Send `Retry-After` with this many seconds on pending resources.
    #[arg(long)]
    poll_retry_after: Option<u64>,
    /// Offer an alternate chain to a second root.
    #[arg(long)]
    alternate_chain: bool,
    /// Delay every answer this many milliseconds (a CA far away).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Serve renewal information (RFC 9773) with Boulder's windows.
    #[arg(long)]
    ari: bool,
    /// Serve renewal information whose suggested window opens SECS after
    /// each certificate's issuance and lasts exactly an hour. 0: "renew
    /// now": the window Boulder serves for a revoked certificate (from an
    /// hour ago to half an hour ago, whenever asked), so a client picking
    /// a random moment in it (RFC 9773 §4.2, certbot) renews at once; a
    /// `replaces` naming such a certificate stays exempt from the rate
    /// limits until it expires.
    #[arg(long, value_name = "SECS")]
    ari_renew_after: Option<u64>,
    /// Offer the profiles classic (90 days), tlsserver (45 days) and
    /// shortlived (160 hours, IP addresses).
    #[arg(long)]
    profiles: bool,
    /// Serve the management interface (GET /ledger, GET /rate-limits,
    /// PUT /faults, PUT /caa/DOMAIN, GET /root) on this port of 127.0.0.1
    /// (0: any free port); its URL is the second line on stdout.
    #[arg(long, value_name = "PORT")]
    management_port: Option<u16>,
    /// Require external account binding with `KID=HMAC_KEY_BASE64URL`
    /// (repeatable); HS256, HS384 and HS512 bindings are accepted.
    #[arg(long)]
    eab: Vec<String>,
    /// The CAA identity announced in the directory (`caaIdentities`) and
    /// checked against CAA records (default `sturdy-acme.test`): two test
    /// CAs a customer's CAA records tell apart.
    #[arg(long)]
    caa_identity: Option<String>,
}

/// Shows the listening flags only: `--eab` carries HMAC keys.
impl std::fmt::Debug for ServerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerArgs")
            .field("port", &self.port)
            .field("management_port", &self.management_port)
            .field("root_out", &self.root_out)
            .field("eab_keys", &self.eab.len())
            .finish_non_exhaustive()
    }
}

impl ServerArgs {
    /// Where the root certificate is to be written (`--root-out`).
    pub fn root_out(&self) -> &Path {
        &self.root_out
    }

    /// The management interface's address, if `--management-port` asks
    /// for one.
    pub fn management_addr(&self) -> Option<std::net::SocketAddr> {
        self.management_port
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A builder configured as these flags say (not started).
    pub fn builder(&self) -> Result<TestCaBuilder, Box<dyn std::error::Error + Send + Sync>> {
        let args = self;
        let mut builder = TestCa::builder()
            .bind(([127, 0, 0, 1], args.port).into())
            .alternate_chain(args.alternate_chain)
            .finalize_processing(Duration::from_millis(args.finalize_processing_ms))
            .latency(Duration::from_millis(args.latency_ms))
            .profiles(args.profiles);
        if let Some(secs) = args.ari_renew_after {
            builder = builder.renewal_info(Some(Duration::from_secs(secs)));
        } else if args.ari {
            builder = builder.renewal_info(None);
        }
        match args.validation.as_str() {
            "always-valid" => {}
            "real" => {
                let dns = StaticDns::new();
                for record in &args.txt {
                    let (name, value) = record
                        .split_once('=')
                        .ok_or_else(|| format!("--txt {record:?}: expected NAME=VALUE"))?;
                    dns.add_txt(name, value);
                }
                builder = builder.real_validation(args.http_port, args.tls_port, Arc::new(dns));
            }
            other => return Err(format!("--validation {other:?}: always-valid or real").into()),
        }
        let limits = match args.rate_limits.as_str() {
            "none" => RateLimits::default(),
            "lets-encrypt" => RateLimits::lets_encrypt(),
            file => serde_json::from_slice(&std::fs::read(file)?)
                .map_err(|e| format!("rate limits file {file}: {e}"))?,
        };
        builder = builder.rate_limits(limits);
        if let Some(file) = &args.faults {
            let rules: Vec<FaultRule> = serde_json::from_slice(&std::fs::read(file)?)
                .map_err(|e| format!("fault script {}: {e}", file.display()))?;
            builder = builder.faults(rules);
        }
        for entry in &args.caa {
            let (domain, policy) = entry
                .split_once('=')
                .ok_or_else(|| format!("--caa {entry:?}: expected DOMAIN=POLICY"))?;
            let policy = crate::management::parse_caa_policy(policy)
                .map_err(|e| format!("--caa {entry:?}: {e}"))?;
            builder = builder.caa(domain, policy);
        }
        if let Some(secs) = args.poll_retry_after {
            builder = builder.poll_retry_after(secs);
        }
        if let Some(identity) = &args.caa_identity {
            builder = builder.caa_identity(identity.clone());
        }
        for entry in &args.eab {
            let (kid, key) = entry
                .split_once('=')
                .ok_or("--eab: expected KID=KEY (the value is not shown: it may be the key)")?;
            builder = builder.eab_key(kid, key)?.eab_required(true);
        }
        Ok(builder)
    }
}
