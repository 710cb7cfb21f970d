//! base64url (JOSE's form) and a seedable generator: the two small helpers
//! every part of the test CA shares.

use std::sync::Mutex;

use base64::Engine as _;

/// base64url without padding, as JOSE and ACME use it.
pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url, tolerating trailing `=` padding.
pub(crate) fn b64_decode(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data.trim_end_matches('='))
        .ok()
}

/// One step of splitmix64: a fast, seedable generator for the CA's
/// scripted randomness (fault probabilities, simulated fleets).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded generator shared across tasks (splitmix64 behind a lock).
#[derive(Debug)]
pub(crate) struct Rng(Mutex<u64>);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&self) -> f64 {
        let x = splitmix64(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
