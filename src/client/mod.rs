//! The typed protocol API: [`Client`] (one CA), [`Account`], [`Order`],
//! [`Authorization`], [`Challenge`], [`CertificateChain`].

mod account;
mod authorization;
mod certificate;
mod order;
mod poll;
mod rate_gate;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use account::{Account, AccountOptions, RevocationReason};
pub use authorization::{Authorization, Challenge};
pub use certificate::CertificateChain;
pub use order::{NewOrder, Order};
pub use poll::PollPolicy;

use crate::crypto::jws::KeyId;
use crate::crypto::{AccountKey, CertificateKey};
use crate::error::{Error, Result};
use crate::protocol::Directory;
use crate::retry::{Event, Events, RetryPolicy};
use crate::transport::{Endpoint, RequestStats, Transport, TransportConfig};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The user agent every request carries (RFC 8555 §6.1).
pub const USER_AGENT: &str = concat!("sturdy-acme/", env!("CARGO_PKG_VERSION"));

/// A connection to one ACME CA, built from its directory URL.
///
/// Cheap to clone; clones share the HTTP connection pool, the nonce pool and
/// the request counters.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    transport: Transport,
    rate_gate: rate_gate::RateGate,
    directory: Directory,
    directory_url: String,
    poll: PollPolicy,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    directory_url: String,
    extra_roots_pem: Vec<Vec<u8>>,
    built_in_roots: bool,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent_suffix: Option<String>,
    transport: TransportConfig,
    poll: PollPolicy,
    timeouts: bool,
}

impl ClientBuilder {
    /// Also trusts the certificates in this PEM text (e.g. a test CA's root).
    pub fn root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Whether to trust the Mozilla root store (default true). Turn off to
    /// trust only the roots given with [`ClientBuilder::root_certificates_pem`].
    pub fn built_in_roots(mut self, enabled: bool) -> Self {
        self.built_in_roots = enabled;
        self
    }

    /// The overall timeout of one HTTP exchange (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The TCP + TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Text appended to the `sturdy-acme/<version>` user agent.
    pub fn user_agent(mut self, suffix: impl Into<String>) -> Self {
        self.user_agent_suffix = Some(suffix.into());
        self
    }

    /// The largest response body accepted (default 1 MiB).
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.transport.max_body = bytes;
        self
    }

    /// How many times one request is re-sent after `badNonce` (default 9,
    /// i.e. 10 attempts; same as `RetryPolicy::bad_nonce_attempts - 1`).
    pub fn bad_nonce_retries(mut self, retries: u32) -> Self {
        self.transport.retry.bad_nonce_attempts = retries.saturating_add(1);
        self
    }

    /// The retry policy per error class (see [`RetryPolicy`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.transport.retry = policy;
        self
    }

    /// Calls `f` for every exchange and every retry decision (for metrics).
    /// Keep it fast: it runs inline.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.transport.events.subscribe(Arc::new(f));
        self
    }

    /// Disables the request and connect timeouts and the connection pool's
    /// idle timer: no timer runs while a request waits for the CA. Meant for
    /// tests on tokio's paused clock (where any armed timer fires at once
    /// while waiting for I/O); never for production.
    pub fn no_timeouts(mut self) -> Self {
        self.timeouts = false;
        self
    }

    /// How many unused nonces are kept (default 32).
    pub fn nonce_pool_size(mut self, size: usize) -> Self {
        self.transport.nonce_pool_size = size;
        self
    }

    /// How orders and authorizations are polled.
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Fetches the directory and returns the client.
    pub async fn build(self) -> Result<Client> {
        let url = url::Url::parse(&self.directory_url)
            .map_err(|e| Error::InvalidInput(format!("directory URL: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(Error::InvalidInput(format!(
                "directory URL must be https: {}",
                self.directory_url
            )));
        }
        let mut transport_config = self.transport.clone();
        transport_config.allow_http = url.scheme() == "http";

        let mut roots = rustls::RootCertStore::empty();
        if self.built_in_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for pem in &self.extra_roots_pem {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::InvalidInput(format!("root PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::InvalidInput(format!("root certificate: {e}")))?;
                found += 1;
            }
            if found == 0 {
                return Err(Error::InvalidInput(
                    "root PEM holds no CERTIFICATE block".into(),
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Crypto(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let user_agent = match &self.user_agent_suffix {
            Some(s) => format!("{USER_AGENT} {s}"),
            None => USER_AGENT.to_owned(),
        };
        let mut http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(user_agent)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        http = if self.timeouts {
            http.timeout(self.timeout)
                .connect_timeout(self.connect_timeout)
        } else {
            http.pool_idle_timeout(None)
        };
        let http = http
            .build()
            .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))?;

        let transport = Transport::new(http, transport_config);
        let response = transport
            .get(Endpoint::Directory, &self.directory_url)
            .await?;
        let directory =
            parse_directory(&response.body).map_err(|reason| Error::InvalidResponse {
                request: Box::new(crate::error::RequestInfo {
                    method: "GET",
                    url: self.directory_url.clone(),
                    status: Some(response.status),
                    retry_after: None,
                }),
                reason,
            })?;
        transport.set_new_nonce_url(directory.new_nonce.clone());
        tracing::info!(
            directory = %self.directory_url,
            terms = directory.meta.terms_of_service.as_deref(),
            eab_required = directory.meta.external_account_required,
            "ACME directory loaded"
        );
        Ok(Client {
            inner: Arc::new(ClientInner {
                transport,
                rate_gate: Default::default(),
                directory,
                directory_url: self.directory_url,
                poll: self.poll,
            }),
        })
    }
}

/// Parses a v2 directory, naming what was found when it is not one.
fn parse_directory(body: &[u8]) -> std::result::Result<Directory, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("directory is not JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("directory is not a JSON object".into());
    };
    for key in ["newNonce", "newAccount", "newOrder"] {
        if !obj.contains_key(key) {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            return Err(format!(
                "not an ACME v2 directory: no {key:?}; found keys {keys:?}"
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("malformed directory: {e}"))
}

impl Client {
    /// Starts building a client for the CA whose directory is at `directory_url`.
    pub fn builder(directory_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            directory_url: directory_url.into(),
            extra_roots_pem: Vec::new(),
            built_in_roots: true,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent_suffix: None,
            transport: TransportConfig {
                max_body: 1 << 20,
                nonce_pool_size: 32,
                allow_http: false,
                retry: RetryPolicy::default(),
                events: Events::default(),
            },
            poll: PollPolicy::default(),
            timeouts: true,
        }
    }

    /// A client with default settings.
    pub async fn new(directory_url: impl Into<String>) -> Result<Self> {
        Self::builder(directory_url).build().await
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The directory URL this client was built from.
    pub fn directory_url(&self) -> &str {
        &self.inner.directory_url
    }

    /// How many requests were sent so far, per endpoint.
    pub fn request_stats(&self) -> RequestStats {
        self.inner.transport.stats()
    }

    /// Registers an account for `key` (or returns the existing one for that
    /// key: RFC 8555 §7.3 answers 200 instead of 201).
    pub async fn create_account(
        &self,
        key: AccountKey,
        options: &AccountOptions,
    ) -> Result<Account> {
        Account::create(self.clone(), key, options).await
    }

    /// Looks up the account of `key` without creating one
    /// (`onlyReturnExisting`); `accountDoesNotExist` if there is none.
    pub async fn find_account(&self, key: AccountKey) -> Result<Account> {
        Account::find(self.clone(), key).await
    }

    /// An account already known by its URL, without a request.
    pub fn account_from_url(&self, key: AccountKey, url: impl Into<String>) -> Account {
        Account::from_parts(self.clone(), Arc::new(key), url.into(), None)
    }

    /// Revokes a certificate with a JWS signed by the certificate's own key
    /// (RFC 8555 §7.6), no account needed.
    pub async fn revoke_with_certificate_key(
        &self,
        certificate_der: &[u8],
        key: &CertificateKey,
        reason: Option<RevocationReason>,
    ) -> Result<()> {
        let signer = key.to_signing_key()?;
        account::revoke(self, &signer, KeyId::Jwk, certificate_der, reason).await
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub(crate) fn rate_gate(&self) -> &rate_gate::RateGate {
        &self.inner.rate_gate
    }

    pub(crate) fn poll_policy(&self) -> &PollPolicy {
        &self.inner.poll
    }
}
