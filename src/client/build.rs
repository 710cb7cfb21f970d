//! Building a [`Client`]: the HTTP stack, then the directory, fetched
//! ([`ClientBuilder::build`]) or, while the CA is down, the one last
//! remembered in a store ([`ClientBuilder::build_remembered`]).

use std::time::SystemTime;

use super::*;
use crate::error::ErrorClass;
use crate::store::{DirectoryRecord, Store};

/// A builder's settings with its transport made, waiting for a directory.
struct Prepared {
    transport: Transport,
    directory_url: String,
    dialect: Option<Dialect>,
    dialect_settings: DialectSettings,
    poll: PollPolicy,
    clock: crate::Clock,
}

impl ClientBuilder {
    /// Fetches the directory and returns the client.
    pub async fn build(self) -> Result<Client> {
        let prepared = self.prepare()?;
        let response = prepared
            .transport
            .get(Endpoint::Directory, &prepared.directory_url)
            .await?;
        prepared.finish(&response.body, Some(response.status))
    }

    /// [`build`](Self::build), remembering the directory in `store`; while
    /// the CA cannot be reached (connection failures, timeouts, 5xx or 429
    /// past the retry budget) the client is built from the directory last
    /// remembered there, and its first requests find the CA down.
    ///
    /// A client, and so an [`Issuer`](crate::Issuer), then exists through
    /// an outage that began before the process started: what the store
    /// holds for that CA (journals of orders that may have been finalized,
    /// certificates) stays readable, and a
    /// [`CaSet`](crate::ca_set::CaSet) resolves it there before failing
    /// over, instead of being unable to start. With nothing remembered, the
    /// fetch's error is returned. A directory the CA answers but that is
    /// not one (bad JSON, a 404) is an error, never replaced by the
    /// remembered one. A failure to remember is logged, not returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use sturdy_acme::store::{MemoryStore, Store};
    /// use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};
    ///
    /// let ca = TestCa::start().await?;
    /// let store = MemoryStore::new();
    /// let up = ca.client_builder().build_remembered(&store).await?;
    /// assert!(store.load_directory(&ca.directory_url()).await?.is_some());
    ///
    /// // The CA goes down; a process starting now still gets its client.
    /// ca.set_faults(vec![FaultRule::everywhere(
    ///     Trigger::Always,
    ///     Fault::Unavailable { retry_after: RetryAfterForm::Seconds(1) },
    /// )]);
    /// let quick = sturdy_acme::RetryPolicy::default()
    ///     .with_transient(sturdy_acme::Backoff::new(1, std::time::Duration::from_millis(10)));
    /// assert!(ca.client_builder().retry_policy(quick.clone()).build().await.is_err());
    /// let down = ca.client_builder().retry_policy(quick).build_remembered(&store).await?;
    /// assert_eq!(down.directory().new_order, up.directory().new_order);
    /// # Ok(()) }
    /// ```
    pub async fn build_remembered<S: Store>(self, store: &S) -> Result<Client> {
        let prepared = self.prepare()?;
        let url = prepared.directory_url.clone();
        match prepared.transport.get(Endpoint::Directory, &url).await {
            Ok(response) => {
                let client = prepared.finish(&response.body, Some(response.status))?;
                remember(store, &url, &response.body).await;
                Ok(client)
            }
            Err(e)
                if matches!(
                    e.class(),
                    ErrorClass::Transient | ErrorClass::RateLimited { .. }
                ) =>
            {
                let record = match store.load_directory(&url).await {
                    Ok(Some(record)) => record,
                    Ok(None) => return Err(e),
                    // The CA's error is the one to act on.
                    Err(store) => {
                        tracing::warn!(directory = %url, error = %store, "the remembered directory cannot be read");
                        return Err(e);
                    }
                };
                tracing::warn!(
                    directory = %url,
                    error = %e,
                    fetched_at = crate::protocol::timestamp::to_unix(record.fetched_at),
                    "the CA's directory cannot be fetched: built from the one remembered"
                );
                prepared.finish(record.document.as_bytes(), None)
            }
            Err(e) => Err(e),
        }
    }

    /// Everything but the directory: the HTTP stack and the transport.
    fn prepare(self) -> Result<Prepared> {
        let url = url::Url::parse(&self.directory_url)
            .map_err(|e| Error::InvalidInput(format!("directory URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.danger.accept_plain_http => {
                tracing::warn!(directory = %self.directory_url, "plain HTTP accepted for this CA (Danger::accept_plain_http)");
            }
            "http" => {
                return Err(Error::InvalidInput(format!(
                    "directory URL {} is plain http: refused (ClientBuilder::danger with \
                     Danger::accept_plain_http accepts it, e.g. for a test server on loopback)",
                    self.directory_url
                )));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "directory URL must be https: {}",
                    self.directory_url
                )));
            }
        }
        let mut transport_config = self.transport_config();
        transport_config.allow_http = url.scheme() == "http";
        #[cfg_attr(not(feature = "v1"), allow(unused_mut))]
        let mut dialect_settings = self.dialect_settings.clone();
        #[cfg(feature = "v1")]
        if self.danger.no_timeouts {
            dialect_settings.v1.new_cert_timeout = None;
        }

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
        let provider = crate::crypto::tls_provider();
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Crypto(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let user_agent = match &self.user_agent_suffix {
            Some(s) => format!("{USER_AGENT} {s}"),
            None => USER_AGENT.to_owned(),
        };
        let mut headers = http::HeaderMap::new();
        if !self.accept_language.is_empty() {
            let value = http::HeaderValue::from_str(&self.accept_language)
                .ok()
                .filter(|_| {
                    self.accept_language
                        .bytes()
                        .all(|b| b.is_ascii_graphic() || b == b' ')
                })
                .ok_or_else(|| {
                    Error::InvalidInput(
                        "accept_language: not a valid Accept-Language header value".into(),
                    )
                })?;
            headers.insert(http::header::ACCEPT_LANGUAGE, value);
        }
        let mut hook_headers = headers.clone();
        if let Ok(agent) = http::HeaderValue::from_str(&user_agent) {
            hook_headers.insert(http::header::USER_AGENT, agent);
        }
        let mut http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(user_agent)
            .default_headers(headers)
            .tcp_nodelay(true)
            // No more connections kept than requests may be in flight.
            .pool_max_idle_per_host(self.transport.governor.max_in_flight())
            .redirect(reqwest::redirect::Policy::none());
        http = if !self.danger.no_timeouts {
            http.timeout(self.timeout)
                .connect_timeout(self.connect_timeout)
        } else {
            http.pool_idle_timeout(None)
        };
        let http = http
            .build()
            .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))?;
        let http = match self.http_client {
            Some(client) => Http::Hook {
                client,
                headers: hook_headers,
                timeout: self.timeout,
            },
            None => Http::Network(http),
        };

        let transport = Transport::new(http, transport_config, &self.directory_url);
        Ok(Prepared {
            transport,
            directory_url: self.directory_url,
            dialect: self.dialect,
            dialect_settings,
            poll: self.poll,
            clock: self.clock,
        })
    }
}

/// Keeps `body` as the directory of `url` unless it is already the one
/// remembered (a failure is logged: the client works without it).
async fn remember<S: Store>(store: &S, url: &str, body: &[u8]) {
    let Ok(document) = std::str::from_utf8(body) else {
        return;
    };
    match store.load_directory(url).await {
        Ok(Some(known)) if known.document == document => return,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(directory = %url, error = %e, "could not read the remembered directory");
            return;
        }
    }
    let record = DirectoryRecord {
        document: document.to_owned(),
        fetched_at: SystemTime::now(),
    };
    if let Err(e) = store.save_directory(url, &record).await {
        tracing::warn!(directory = %url, error = %e, "could not remember the directory");
    }
}

impl Prepared {
    /// The client, from a directory document.
    fn finish(self, body: &[u8], status: Option<u16>) -> Result<Client> {
        let selected =
            dialect::select(body, self.dialect, &self.dialect_settings).map_err(|reason| {
                Error::InvalidResponse {
                    request: Box::new(crate::error::RequestInfo {
                        method: "GET",
                        url: self.directory_url.clone(),
                        status,
                        retry_after: None,
                    }),
                    reason,
                }
            })?;
        let directory = selected.directory;
        if let Some(shape) = selected.shape {
            self.transport.set_shape(shape);
        }
        if !directory.new_nonce.is_empty() {
            self.transport
                .set_new_nonce_url(directory.new_nonce.clone());
        }
        let dialect = selected.dialect;
        tracing::info!(
            directory = %self.directory_url,
            dialect = dialect.dialect().as_str(),
            terms = directory.meta.terms_of_service.as_deref(),
            eab_required = directory.meta.external_account_required,
            "ACME directory loaded"
        );
        Ok(Client {
            inner: Arc::new(ClientInner {
                transport: self.transport,
                directory,
                directory_url: self.directory_url,
                poll: self.poll,
                poll_learner: Default::default(),
                withdrawn_profiles: Default::default(),
                dialect,
                clock: self.clock,
            }),
        })
    }
}
