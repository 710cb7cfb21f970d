//! FileStore's record envelope:
//! `{"format":"sturdy-acme/1","kind":…,"sha256":…,"data":…}`, written
//! byte-exact and checked (format, kind, checksum) before the data is read.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The envelope format this store writes and accepts.
pub(super) const FORMAT: &str = "sturdy-acme/1";

/// The parts of an envelope checked before its data is located.
#[derive(Deserialize)]
struct Header {
    format: String,
    kind: String,
    sha256: String,
    #[allow(dead_code)]
    data: IgnoredAny,
}

pub(super) fn envelope_prefix(kind: &str, sha256: &str) -> String {
    format!(r#"{{"format":"{FORMAT}","kind":"{kind}","sha256":"{sha256}","data":"#)
}

/// `{"format":…,"kind":…,"sha256":…,"data":<data>}` and a newline.
pub(super) fn envelope<T: Serialize>(
    kind: &str,
    data: &T,
) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let data = Zeroizing::new(serde_json::to_vec(data)?);
    let prefix = envelope_prefix(kind, &sha256_hex(&data));
    let mut out = Zeroizing::new(Vec::with_capacity(prefix.len() + data.len() + 2));
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Verifies an envelope and decodes its data; the error is the reason the
/// file cannot be trusted.
pub(super) fn open_envelope<T: DeserializeOwned>(bytes: &[u8], kind: &str) -> Result<T, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a complete {FORMAT} envelope (truncated?): {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "format is {:?}, this store reads {FORMAT:?}",
            header.format
        ));
    }
    if header.kind != kind {
        return Err(format!(
            "holds a {:?} record where a {kind:?} record belongs",
            header.kind
        ));
    }
    let prefix = envelope_prefix(kind, &header.sha256);
    let data = bytes
        .trim_ascii_end()
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| rest.strip_suffix(b"}"))
        .ok_or("the envelope is not laid out as this store writes it (edited by hand?)")?;
    let actual = sha256_hex(data);
    if actual != header.sha256 {
        return Err(format!(
            "checksum mismatch: the envelope records sha256 {}, the data hashes to {actual}",
            header.sha256
        ));
    }
    serde_json::from_slice(data).map_err(|e| format!("the data is not a valid {kind} record: {e}"))
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
