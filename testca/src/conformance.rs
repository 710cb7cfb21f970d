//! What a failed check of the store contract says ([`ConformanceFailure`]),
//! and the small helpers the checks share.

use sturdy_acme::StoreError;

/// A check of the store contract that failed: which one, and what was seen.
///
/// Example: [`check_store`](crate::check_store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store contract, {check}: {detail}")]
pub struct ConformanceFailure {
    /// The check, e.g. `"a certificate reads back as written"`.
    pub check: &'static str,
    /// What the store did instead.
    pub detail: String,
}

pub(crate) fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceFailure {
    ConformanceFailure {
        check,
        detail: detail.into(),
    }
}

/// Unwraps a store result, naming the check when the store failed.
pub(crate) fn ok<T>(
    check: &'static str,
    r: Result<T, StoreError>,
) -> Result<T, ConformanceFailure> {
    r.map_err(|e| fail(check, format!("the store failed: {e}")))
}

pub(crate) fn expect(
    check: &'static str,
    holds: bool,
    detail: impl FnOnce() -> String,
) -> Result<(), ConformanceFailure> {
    if holds {
        Ok(())
    } else {
        Err(fail(check, detail()))
    }
}
