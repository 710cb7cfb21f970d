//! [`Client::renewal_info`]: the CA's suggested renewal window for a
//! certificate (ACME Renewal Information, RFC 9773).

use super::Client;
use crate::error::{Error, Result};
use crate::protocol::{CertId, Endpoint, RenewalInfo};

impl Client {
    /// A conditional GET through this client's transport (its governor,
    /// retries, clock and trust): for a revocation list ([`crate::crl`]).
    pub(crate) async fn get_conditional(
        &self,
        endpoint: Endpoint,
        url: &str,
        validators: &[(http::HeaderName, &str)],
    ) -> Result<crate::transport::Response> {
        self.inner
            .transport
            .get_conditional(endpoint, url, validators)
            .await
    }

    /// True when the CA offers renewal information (`renewalInfo` in its
    /// directory).
    pub fn offers_renewal_info(&self) -> bool {
        self.directory().renewal_info.is_some()
    }

    /// The CA's renewal information for a certificate: an unauthenticated
    /// GET of `{renewalInfo}/{certID}`. Its `Retry-After` says when to ask
    /// again ([`RenewalInfo::check_again_at`], clamped to a minute..a day);
    /// an `explanationURL` is logged.
    ///
    /// [`Error::Unsupported`] when the directory has no `renewalInfo` (Pebble
    /// 2.4, ACME v1); [`Error::InvalidResponse`] for an answer that is not
    /// renewal information (not retried: the caller falls back to the
    /// certificate's lifetime); the CA's problems as usual.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run(client: sturdy_acme::Client, chain_pem: &str) -> sturdy_acme::Result<()> {
    /// use sturdy_acme::CertId;
    ///
    /// let id = CertId::from_pem(chain_pem).map_err(sturdy_acme::Error::InvalidInput)?;
    /// let info = client.renewal_info(&id).await?;
    /// println!("renew between {:?} and {:?}", info.window_start, info.window_end);
    /// # Ok(()) }
    /// ```
    pub async fn renewal_info(&self, id: &CertId) -> Result<RenewalInfo> {
        let base = self.directory().renewal_info.as_deref().ok_or_else(|| {
            Error::Unsupported(
                "the CA offers no renewal information (no renewalInfo in its directory)".into(),
            )
        })?;
        let url = format!("{}/{}", base.trim_end_matches('/'), id);
        let now = self.clock().now();
        let response = self
            .inner
            .transport
            .get(Endpoint::RenewalInfo, &url)
            .await?;
        let retry_after = response.retry_after().map(|r| r.delay());
        let info = RenewalInfo::parse(&response.body, retry_after, now).map_err(|reason| {
            Error::InvalidResponse {
                request: response.info(),
                reason,
            }
        })?;
        self.emit(crate::Event::RenewalInfo {
            cert_id: id.to_string(),
            window_start: info.window_start,
            window_end: info.window_end,
            explanation_url: info.explanation_url.clone(),
            check_again_at: info.check_again_at,
        });
        tracing::info!(
            cert_id = %id,
            window_start = %crate::protocol::timestamp::DisplayTime(info.window_start),
            window_end = %crate::protocol::timestamp::DisplayTime(info.window_end),
            explanation = info.explanation_url.as_deref(),
            "renewal information"
        );
        Ok(info)
    }
}
