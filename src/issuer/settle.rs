//! A journal left beside a stored certificate is settled against it before
//! anything else: a stored certificate always wins over a journal for the
//! same certificate.
//!
//! The journal is deleted right after its certificate is stored; when that
//! delete never happens (a kill, a renewer's `shutdown()`, a store failing
//! past its budget) a `Downloaded` journal stays beside the certificate it
//! produced. Resumed, it would store the same certificate again, undoing
//! what happened to the stored record since (a revocation, renewal
//! information). So the issuer, `revoke` and `force_new` first ask
//! [`judge`] what the journal is: the stored certificate's leftover
//! (deleted), older than the stored certificate (archived: it may hold a
//! key), or an issuance still to finish (resumed).

use crate::client::CertificateChain;
use crate::store::{Journal, StoredCertificate};

/// What a journal found for a set is, against the set's stored
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leftover {
    /// An issuance still to finish: resumed.
    Resume,
    /// The stored certificate's own journal, left behind when it was
    /// stored: deleted (the stored record, revoked or not, wins).
    Stored,
    /// A certificate older than the stored one: archived (never resumed,
    /// never overwriting the newer stored certificate).
    Superseded,
}

/// Judges `journal` against `stored` (the set's stored certificate, if
/// any): by serial when the journal holds a chain, else by certificate
/// URL. A chain that does not parse is resumed (storing it reports the
/// error and keeps the journal).
pub(super) fn judge(journal: &Journal, stored: Option<&StoredCertificate>) -> Leftover {
    let Some(stored) = stored else {
        return Leftover::Resume;
    };
    if let Some(pem) = journal.chain_pem.as_deref() {
        let Ok(chain) = CertificateChain::parse_pem("", pem) else {
            return Leftover::Resume;
        };
        if chain.serial_hex().as_deref() == Some(stored.serial.as_str()) {
            return Leftover::Stored;
        }
        let stored_from = crate::protocol::timestamp::to_unix(stored.not_before);
        return match chain.validity() {
            Some((not_before, _)) if not_before < stored_from => Leftover::Superseded,
            _ => Leftover::Resume,
        };
    }
    match journal.certificate_url.as_deref() {
        Some(url) if !url.is_empty() && url == stored.url => Leftover::Stored,
        _ => Leftover::Resume,
    }
}
