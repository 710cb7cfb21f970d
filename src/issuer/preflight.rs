//! The CAA pre-flight before newOrder, and the validation methods the
//! verdicts leave each name (RFC 8657).

use super::*;

impl<S: Store> Issuer<S> {
    /// The CAA pre-flight of a set before its newOrder: forbidden (or a
    /// lookup that cannot succeed soon) fails at once; unreachable and
    /// inconsistent are asked again on the checker's schedule, then fail.
    /// Returns the validation methods CAA leaves each name (RFC 8657
    /// `validationmethods`; wildcards only dns-01), for [`Self::pick`]. IP
    /// identifiers have no CAA (RFC 8738 §7 leaves it undefined).
    pub(super) async fn caa_preflight(
        &self,
        checker: &CaaChecker,
        key: &IdentifierSetKey,
        account: &Account,
        options: &EnsureOptions,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let names: Vec<String> = key
            .identifiers()
            .iter()
            .filter(|i| i.kind == "dns")
            .map(|i| i.value.clone())
            .collect();
        if names.is_empty() {
            return Ok(Default::default());
        }
        let ctx = self
            .caa_context(checker.identities_override(), options)
            .await;
        let ctx = CaaContext {
            account_uri: Some(account.url().to_owned()),
            ..ctx
        };
        let mut each = checker
            .check_settled(&names, std::slice::from_ref(&ctx), key)
            .await?;
        let reports = each.pop().unwrap_or_default();
        forbidden(&reports)?;
        caa_methods(&reports)
    }
}

/// The error when a verdict of `reports` forbids issuance (their
/// lookups all answered).
pub(crate) fn forbidden(reports: &[crate::caa::CaaReport]) -> Result<()> {
    let failed: Vec<&crate::caa::CaaReport> =
        reports.iter().filter(|r| !r.verdict.may_issue()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::CaaPreflight {
        names: failed.iter().map(|r| r.name.clone()).collect(),
        cause: if failed
            .iter()
            .any(|r| matches!(r.verdict, CaaVerdict::Forbidden { .. }))
        {
            CaaCause::Forbidden
        } else {
            CaaCause::LookupFailed
        },
        summary: failed
            .iter()
            .map(|r| r.summary())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The validation methods each name's CAA verdict leaves (wildcards: only
/// dns-01, the one method a CA validates them with), or the error when
/// one is left none.
pub(crate) fn caa_methods(
    reports: &[crate::caa::CaaReport],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut methods = std::collections::BTreeMap::new();
    let mut none_left = Vec::new();
    for report in reports {
        let mut left = report.methods.clone();
        if report.name.starts_with("*.") {
            left.retain(|m| m == ChallengeType::Dns01.as_str());
        }
        if left.is_empty() {
            none_left.push(report);
        }
        methods.insert(report.name.clone(), left);
    }
    if none_left.is_empty() {
        return Ok(methods);
    }
    Err(Error::CaaPreflight {
        names: none_left.iter().map(|r| r.name.clone()).collect(),
        cause: CaaCause::Forbidden,
        summary: none_left
            .iter()
            .map(|r| {
                format!(
                    "{}; CAA validationmethods leaves none of the challenge types we would use{}",
                    r.summary(),
                    if r.name.starts_with("*.") {
                        " (a wildcard is validated by dns-01 only)"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}
