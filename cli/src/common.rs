//! What every subcommand shares: the CA (`--directory`, `--root-ca`), the
//! store, the account's options (contact, external account binding), and
//! the challenge solvers.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use sturdy_acme::dns::{Dns, DnsConfig, TsigKey};
use sturdy_acme::solver::dns01::{Rfc2136Config, Rfc2136Solver};
use sturdy_acme::solver::http01::{Http01Responder, Http01Solver};
use sturdy_acme::solver::{ChallengeAnswer, Solver, SolverFuture};
use sturdy_acme::store::{DynStore, FileMode, FileStore, write_file_atomic};
use sturdy_acme::{AccountOptions, ChallengeType, Client, Dialect, ExternalAccountKey, Issuer};
use sturdy_acme_testca::{DnsResolver, ServerDns, StaticDns, TestCa};
use zeroize::Zeroizing;

use super::output::{WaitReporter, step};

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Options every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Directory URL (ACME v2 or v1), or `letsencrypt`,
    /// `letsencrypt-staging`, `embedded` (an in-process test CA) or
    /// `embedded-v1` (the same, speaking ACME v1). `issue` takes several,
    /// in order of preference: a CA set chooses among them (the customer's
    /// CAA, each CA's health) and fails over without issuing twice.
    #[arg(long = "directory", required = true)]
    pub directories: Vec<String>,
    /// Extra root certificate (PEM) to trust for the CAs' HTTPS (test
    /// CAs); repeat for more.
    #[arg(long)]
    pub root_ca: Vec<PathBuf>,
    /// The external account binding of a CA after the first, as
    /// `DIRECTORY=KID:FILE` (FILE holds the HMAC key); repeat per CA.
    #[arg(long = "eab-for")]
    pub eab_for: Vec<String>,
    /// Contact e-mail for the account.
    #[arg(long)]
    pub contact: Option<String>,
    /// External account binding key id (the HMAC key comes from
    /// `--eab-hmac-key-file` or the `STURDY_ACME_EAB_HMAC_KEY` environment
    /// variable). With `--directory embedded` the test CA is made to
    /// require this binding.
    #[arg(long)]
    pub eab_kid: Option<String>,
    /// A file holding the external account binding HMAC key (base64url).
    #[arg(long, conflicts_with = "eab_hmac_key")]
    pub eab_hmac_key_file: Option<PathBuf>,
    /// Deprecated: the EAB HMAC key on the command line, where process
    /// listings and shell history show it. Use `--eab-hmac-key-file` or
    /// `STURDY_ACME_EAB_HMAC_KEY`.
    #[arg(long)]
    pub eab_hmac_key: Option<SecretArg>,
    /// How the steps and the library's events are written on stderr:
    /// `plain` (a line each, for people) or `json` (an object per line,
    /// for log systems).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
    /// More detail: `-v` the library's INFO logs, `-vv` every HTTP exchange.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl CommonArgs {
    /// The first (preferred) CA's directory.
    pub fn directory(&self) -> &str {
        self.directories.first().map_or("", String::as_str)
    }

    /// Whether the CA is the in-process test CA.
    pub fn is_embedded(&self) -> bool {
        self.directories
            .iter()
            .any(|d| d == "embedded" || d == "embedded-v1")
    }

    /// Refuses flags that would be ignored.
    pub fn validate(&self) -> Result<(), AnyError> {
        if self.is_embedded() && !self.root_ca.is_empty() {
            return Err(
                "--root-ca is for a CA outside this process: --directory embedded trusts its own root"
                    .into(),
            );
        }
        if self.is_embedded() && self.directories.len() > 1 {
            return Err("--directory embedded is one CA: several --directory need URLs".into());
        }
        if self.directories.len() < 2 && !self.eab_for.is_empty() {
            return Err(
                "--eab-for is for the CAs after the first: the first takes --eab-kid".into(),
            );
        }
        Ok(())
    }

    /// Refuses several directories (every subcommand but `issue`).
    pub fn single(&self) -> Result<(), AnyError> {
        if self.directories.len() > 1 {
            return Err("only `issue` takes several --directory".into());
        }
        Ok(())
    }

    /// The binding given for `directory` with `--eab-for DIRECTORY=KID:FILE`.
    pub fn eab_for(
        &self,
        directory: &str,
    ) -> Result<Option<(String, Zeroizing<String>)>, AnyError> {
        for given in &self.eab_for {
            let (dir, rest) = given
                .split_once('=')
                .ok_or("--eab-for takes DIRECTORY=KID:FILE")?;
            if dir != directory {
                continue;
            }
            let (kid, file) = rest
                .split_once(':')
                .ok_or("--eab-for takes DIRECTORY=KID:FILE")?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("reading the --eab-for key file {file}: {e}"))?;
            return Ok(Some((
                kid.to_owned(),
                Zeroizing::new(text.trim().to_owned()),
            )));
        }
        Ok(None)
    }
}

/// A command-line value holding a secret: zeroized when dropped, and
/// `Debug` prints its length only.
#[derive(Clone)]
pub struct SecretArg(pub Zeroizing<String>);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Zeroizing::new(s.to_owned())))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} characters>", self.0.len())
    }
}

/// How challenges are answered: the built-in http-01 responder, or dns-01
/// records (published by hand, or into the embedded CA's DNS).
#[derive(Args, Debug, Clone)]
pub struct ChallengeArgs {
    /// Challenge type: http-01 (built-in responder) or dns-01 (manual TXT records).
    #[arg(long, default_value = "http-01")]
    pub challenge: String,
    /// Port of the built-in http-01 responder (default 80; with
    /// `--directory embedded`, any free port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Address the http-01 responder binds (default 0.0.0.0; with
    /// `--directory embedded`, 127.0.0.1).
    #[arg(long)]
    pub http_bind: Option<IpAddr>,
    /// dns-01 by RFC 2136 dynamic update: the primary nameserver that
    /// accepts UPDATEs, `HOST:PORT`. Without it, dns-01 asks you to create
    /// the TXT records by hand.
    #[arg(long, value_name = "HOST:PORT")]
    pub rfc2136: Option<String>,
    /// The TSIG key signing the UPDATEs, `NAME:ALGORITHM:BASE64SECRET`
    /// (hmac-sha256 or hmac-sha512). Better in the environment variable
    /// STURDY_ACME_TSIG_KEY, out of process listings.
    #[arg(long, value_name = "NAME:ALGORITHM:BASE64SECRET")]
    pub tsig_key: Option<SecretArg>,
    /// The DNS server to ask (`HOST:PORT`): zones, nameservers, CNAMEs, and
    /// for `--directory embedded` the test CA's own resolver. The
    /// authoritative nameservers are asked on the same port. Default: the
    /// system's resolvers (/etc/resolv.conf), nameservers on port 53.
    #[arg(long, value_name = "HOST:PORT")]
    pub dns_server: Option<String>,
    /// Do not read the names' CAA records before ordering (with `--store`
    /// the pre-flight runs whenever there is DNS to ask: `--dns-server`,
    /// or the system's resolvers for a CA that is not on loopback).
    #[arg(long)]
    pub no_caa_preflight: bool,
}

/// The environment variable holding the TSIG key.
const TSIG_ENV: &str = "STURDY_ACME_TSIG_KEY";

/// `HOST:PORT` to one socket address.
fn socket_addr(flag: &str, text: &str) -> Result<SocketAddr, AnyError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{flag} {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} {text:?}: no address").into())
}

impl ChallengeArgs {
    /// The DNS configuration: `--dns-server` (nameservers on its port), or
    /// the system's resolvers; `None` when neither is there.
    pub fn dns_config(&self) -> Result<Option<DnsConfig>, AnyError> {
        match &self.dns_server {
            Some(text) => {
                let addr = socket_addr("--dns-server", text)?;
                Ok(Some(
                    DnsConfig::new(vec![addr]).authoritative_port(addr.port()),
                ))
            }
            None => Ok(DnsConfig::system().ok()),
        }
    }

    /// The DNS the issuer's CAA pre-flight asks: `--dns-server`, or for a
    /// CA on the internet the system's resolvers. None with
    /// `--no-caa-preflight`, or for a test CA (embedded, or on a loopback
    /// address) without `--dns-server`: its names exist in no public DNS.
    pub fn preflight_dns(&self, conn: &Connection) -> Result<Option<DnsConfig>, AnyError> {
        if self.no_caa_preflight || (conn.is_test_ca() && self.dns_server.is_none()) {
            return Ok(None);
        }
        self.dns_config()
    }

    /// Refuses flags this challenge type would ignore, and checks the
    /// TSIG key, before anything is sent to the CA.
    pub fn validate(&self) -> Result<(), AnyError> {
        let challenge_type = self.challenge_type()?;
        if challenge_type != ChallengeType::Dns01 {
            for (given, flag) in [
                (self.rfc2136.is_some(), "--rfc2136"),
                (self.tsig_key.is_some(), "--tsig-key"),
            ] {
                if given {
                    return Err(format!(
                        "{flag} applies only to --challenge dns-01 (it would be ignored with {challenge_type})"
                    )
                    .into());
                }
            }
        }
        if challenge_type != ChallengeType::Http01 {
            for (given, flag) in [
                (self.http_port.is_some(), "--http-port"),
                (self.http_bind.is_some(), "--http-bind"),
            ] {
                if given {
                    return Err(format!(
                        "{flag} applies only to --challenge http-01 (it would be ignored with {challenge_type})"
                    )
                    .into());
                }
            }
        }
        if self.rfc2136.is_none() && self.tsig_key.is_some() {
            return Err("--tsig-key needs --rfc2136 HOST:PORT".into());
        }
        if self.rfc2136.is_some() {
            self.tsig_key()?;
        }
        Ok(())
    }

    /// The TSIG key of `--tsig-key` or STURDY_ACME_TSIG_KEY, parsed; an
    /// error names where it came from, never its text.
    fn tsig_key(&self) -> Result<Option<TsigKey>, AnyError> {
        let (text, source) = match &self.tsig_key {
            Some(k) => (Zeroizing::new(k.0.to_string()), "--tsig-key"),
            None => match std::env::var(TSIG_ENV) {
                Ok(text) => (Zeroizing::new(text), TSIG_ENV),
                Err(_) => return Ok(None),
            },
        };
        text.parse::<TsigKey>()
            .map(Some)
            .map_err(|e| format!("{source}: {e}").into())
    }

    /// The RFC 2136 solver of `--rfc2136` / `--tsig-key`, if asked for.
    pub fn rfc2136_solver(&self) -> Result<Option<Rfc2136Solver>, AnyError> {
        let Some(server) = &self.rfc2136 else {
            if self.tsig_key.is_some() {
                return Err("--tsig-key needs --rfc2136 HOST:PORT".into());
            }
            return Ok(None);
        };
        let server = socket_addr("--rfc2136", server)?;
        if self.tsig_key.is_some() {
            step(
                "warning: --tsig-key puts the secret in process listings; use STURDY_ACME_TSIG_KEY",
            );
        }
        let key = self.tsig_key()?;
        if key.is_none() {
            step("warning: --rfc2136 without a TSIG key: the UPDATEs are unsigned");
        }
        let dns = self
            .dns_config()?
            .ok_or("--rfc2136 needs a DNS server to find zones: --dns-server HOST:PORT")?;
        Ok(Some(Rfc2136Solver::new(
            Dns::new(dns),
            Rfc2136Config::new(server, key),
        )))
    }

    pub fn challenge_type(&self) -> Result<ChallengeType, AnyError> {
        match self.challenge.as_str() {
            "http-01" => Ok(ChallengeType::Http01),
            "dns-01" => Ok(ChallengeType::Dns01),
            other => Err(format!("unsupported --challenge {other:?} (http-01, dns-01)").into()),
        }
    }
}

/// The in-process CA of `--directory embedded`, with what answers its checks.
pub struct Embedded {
    pub ca: TestCa,
    pub dns: StaticDns,
}

/// The CA this run talks to.
pub struct Connection {
    pub client: Client,
    pub embedded: Option<Embedded>,
    /// The http-01 responder, bound before the embedded CA starts so the
    /// CA knows where to connect.
    pub responder: Option<Http01Responder>,
    pub eab: Option<(String, Zeroizing<String>)>,
}

/// The environment variable holding the EAB HMAC key.
const EAB_ENV: &str = "STURDY_ACME_EAB_HMAC_KEY";

/// The external account binding, from the key id and the HMAC key's file,
/// environment variable or (deprecated, with a warning) flag.
pub fn external_account(
    args: &CommonArgs,
) -> Result<Option<(String, Zeroizing<String>)>, AnyError> {
    let hmac = if let Some(path) = &args.eab_hmac_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading --eab-hmac-key-file {}: {e}", path.display()))?;
        Some(Zeroizing::new(text.trim().to_owned()))
    } else if let Some(key) = args.eab_hmac_key.as_ref() {
        step(
            "warning: --eab-hmac-key puts the secret in process listings and shell history; \
             use --eab-hmac-key-file or STURDY_ACME_EAB_HMAC_KEY",
        );
        Some(Zeroizing::new(key.0.trim().to_owned()))
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

/// Connects to the CA (starting the embedded one first for `embedded`,
/// writing its root into `out`), with the wait reporter on its events.
pub async fn connect(
    args: &CommonArgs,
    challenge: Option<&ChallengeArgs>,
    out: &std::path::Path,
) -> Result<Connection, AnyError> {
    args.validate()?;
    if let Some(c) = challenge {
        c.validate()?;
    }
    let eab = external_account(args)?;
    let challenge_type = challenge.map(|c| c.challenge_type()).transpose()?;
    let mut responder = None;
    let embedded = if args.is_embedded() {
        let dns = StaticDns::new();
        let http_port = match (challenge, &challenge_type) {
            (Some(c), Some(ChallengeType::Http01)) => {
                let r = Http01Responder::bind(SocketAddr::new(
                    c.http_bind.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                    c.http_port.unwrap_or(0),
                ))
                .await
                .map_err(|e| format!("http-01 responder: {e}"))?;
                let port = r.local_addr().port();
                responder = Some(r);
                port
            }
            _ => 0,
        };
        let dialect = if args.directory() == "embedded-v1" {
            Dialect::V1
        } else {
            Dialect::V2
        };
        // With --dns-server the CA validates dns-01 and checks CAA against
        // that real server; else against the in-process records.
        let resolver: Arc<dyn DnsResolver> = match challenge.map(|c| &c.dns_server) {
            Some(Some(_)) => Arc::new(ServerDns::new(
                challenge
                    .expect("checked")
                    .dns_config()?
                    .expect("--dns-server given"),
            )),
            _ => Arc::new(dns.clone()),
        };
        let mut builder = TestCa::builder()
            .dialect(dialect)
            .real_validation(http_port, 0, resolver);
        if let Some((kid, hmac)) = &eab {
            builder = builder.eab_key(kid, hmac)?.eab_required(true);
        }
        let ca = builder.start().await?;
        std::fs::create_dir_all(out)
            .map_err(|e| format!("creating output directory {}: {e}", out.display()))?;
        let root = out.join("ca-root.pem");
        write_file_atomic(&root, ca.root_pem().as_bytes(), FileMode::Public)?;
        step(format!(
            "embedded test CA started at {} (root in {})",
            ca.directory_url(),
            root.display()
        ));
        Some(Embedded { ca, dns })
    } else {
        None
    };
    let client = match &embedded {
        Some(e) => client_for(args, e.ca.client_builder(), &e.ca.directory_url(), false).await?,
        None => client_of(args, args.directory()).await?,
    };
    Ok(Connection {
        client,
        embedded,
        responder,
        eab,
    })
}

/// The directory URL a `--directory` value names.
pub fn directory_url(given: &str) -> String {
    match given {
        "letsencrypt" => sturdy_acme::LETS_ENCRYPT_PRODUCTION.to_owned(),
        "letsencrypt-staging" => sturdy_acme::LETS_ENCRYPT_STAGING.to_owned(),
        url => url.to_owned(),
    }
}

/// A client of the CA at `given` (a `--directory` value), trusting the
/// `--root-ca` roots.
pub async fn client_of(args: &CommonArgs, given: &str) -> Result<Client, AnyError> {
    let directory = directory_url(given);
    client_for(args, Client::builder(&directory), &directory, true).await
}

async fn client_for(
    args: &CommonArgs,
    mut builder: sturdy_acme::ClientBuilder,
    directory: &str,
    roots: bool,
) -> Result<Client, AnyError> {
    if roots {
        for root in &args.root_ca {
            let pem =
                std::fs::read(root).map_err(|e| format!("reading {}: {e}", root.display()))?;
            builder = builder.root_certificates_pem(pem);
        }
    }
    let reporter = WaitReporter::new(&sturdy_acme::RetryPolicy::default());
    let events = reporter.clone();
    let client = builder
        .on_event(move |e| events.on_event(e))
        .build()
        .await?;
    step(format!(
        "directory {directory} loaded ({})",
        client.dialect()
    ));
    Ok(client)
}

impl Connection {
    /// Whether the CA is a test CA: the embedded one, or one on loopback.
    pub fn is_test_ca(&self) -> bool {
        if self.embedded.is_some() {
            return true;
        }
        match url::Url::parse(self.client.directory_url()) {
            Ok(u) => match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            },
            Err(_) => false,
        }
    }

    /// The account's options: terms agreed, the contact, the binding.
    pub fn account_options(&self, args: &CommonArgs) -> Result<AccountOptions, AnyError> {
        let mut options = AccountOptions::agreeing_to_terms();
        if let Some(contact) = &args.contact {
            options = options.with_contact(contact);
        }
        if let Some((kid, hmac)) = &self.eab {
            options = options.with_external_account(ExternalAccountKey::new(kid, hmac)?);
        }
        Ok(options)
    }

    /// The solver for the chosen challenge: the responder (bound now if it
    /// is not yet), the embedded CA's DNS, or a person adding TXT records.
    pub async fn solver(&mut self, c: &ChallengeArgs) -> Result<Arc<dyn Solver>, AnyError> {
        let challenge_type = c.challenge_type()?;
        if challenge_type == ChallengeType::Dns01
            && let Some(solver) = c.rfc2136_solver()?
        {
            return Ok(Arc::new(solver));
        }
        Ok(match (&self.responder, &self.embedded, challenge_type) {
            (Some(r), _, _) => Arc::new(Http01Solver::for_responder(r)),
            (None, Some(e), ChallengeType::Dns01) => Arc::new(StaticDnsSolver(e.dns.clone())),
            (None, None, ChallengeType::Dns01) => Arc::new(ManualDnsSolver),
            _ => {
                let r = self.bind_responder(c).await?;
                Arc::new(Http01Solver::for_responder(r))
            }
        })
    }

    /// Binds the http-01 responder on `--http-bind`:`--http-port`.
    pub async fn bind_responder(
        &mut self,
        c: &ChallengeArgs,
    ) -> Result<&Http01Responder, AnyError> {
        if self.responder.is_none() {
            let bind = c.http_bind.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let addr = SocketAddr::new(bind, c.http_port.unwrap_or(80));
            let r = Http01Responder::bind(addr)
                .await
                .map_err(|e| format!("http-01 responder on {addr}: {e}"))?;
            step(format!("http-01 responder listening on {}", r.local_addr()));
            self.responder = Some(r);
        }
        Ok(self.responder.as_ref().expect("bound above"))
    }

    /// The exactly-once issuer on the store at `location`.
    pub async fn issuer(
        &self,
        location: &StoreLocation,
        options: AccountOptions,
        solver: Option<Arc<dyn Solver>>,
        dns: Option<DnsConfig>,
        account_key_algorithm: Option<sturdy_acme::KeyAlgorithm>,
    ) -> Result<Issuer<Arc<dyn DynStore>>, AnyError> {
        let store = location.open().await?;
        // By hand, a renewal is made as soon as the CA's window opens.
        let mut builder = Issuer::builder(self.client.clone(), store)
            .account_options(options)
            .renew_at_window_start(true);
        if let Some(alg) = account_key_algorithm {
            builder = builder.account_key_algorithm(alg);
        }
        // The CAA pre-flight, whenever there is DNS to ask.
        if let Some(dns) = dns {
            builder = builder.dns(dns);
        }
        if let Some(solver) = solver {
            builder = builder.solver(solver);
        }
        Ok(builder.build())
    }
}

/// Where `--store` keeps the account, certificates and journals: a
/// directory (FileStore, one machine) or a PostgreSQL URL (PostgresStore,
/// shared by every machine that names it).
#[derive(Clone)]
pub enum StoreLocation {
    /// A FileStore directory.
    Dir(PathBuf),
    /// `postgres://USER@HOST:PORT/DB`.
    Postgres(String),
}

impl std::str::FromStr for StoreLocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_owned()))
        } else if s.is_empty() {
            Err("an empty --store".into())
        } else {
            Ok(Self::Dir(PathBuf::from(s)))
        }
    }
}

/// The URL's password never shows: `Debug` is the `Display` form.
impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            Self::Postgres(_) => f
                .debug_tuple("Postgres")
                .field(&format_args!("{self}"))
                .finish(),
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            // The URL without a password (and nothing of a URL that does
            // not parse: it may hold one where the parser cannot see it).
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://…"),
            },
        }
    }
}

/// The environment variable holding the key-encryption key (`ID:BASE64`,
/// 32 bytes) a PostgreSQL store seals private keys with.
pub const KEK_ENV: &str = "STURDY_ACME_KEK";

impl StoreLocation {
    /// Opens the store.
    pub async fn open(&self) -> Result<Arc<dyn DynStore>, AnyError> {
        match self {
            Self::Dir(dir) => Ok(Arc::new(FileStore::open(dir)?)),
            Self::Postgres(url) => {
                let mut builder = sturdy_acme_postgres::PostgresStore::builder(url.clone());
                if let Ok(text) = std::env::var(KEK_ENV) {
                    builder = builder.key_encryption_key(
                        sturdy_acme::store::KeyEncryptionKey::parse(&text)
                            .map_err(|e| format!("{KEK_ENV}: {e}"))?,
                    );
                }
                Ok(Arc::new(builder.open().await?))
            }
        }
    }
}

/// dns-01 for `--directory embedded`: publishes into the CA's resolver.
pub struct StaticDnsSolver(pub StaticDns);

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
pub struct ManualDnsSolver;

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
