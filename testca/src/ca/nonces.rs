//! Anti-replay nonces: each one issued is good for one request; the oldest
//! are forgotten beyond [`MAX_NONCES`].

use std::collections::{HashSet, VecDeque};

use ring::rand::SecureRandom;

use crate::codec::b64;

/// How many unused nonces the CA remembers.
pub(super) const MAX_NONCES: usize = 10_000;

/// The nonces issued and not used yet.
#[derive(Debug, Default)]
pub(super) struct Nonces {
    live: HashSet<String>,
    /// Issue order, for forgetting the oldest.
    order: VecDeque<String>,
}

impl Nonces {
    /// A fresh 16-byte nonce, remembered until used (or forgotten as one of
    /// the oldest).
    pub(super) fn issue(&mut self, rng: &dyn SecureRandom) -> String {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes).expect("system RNG");
        let nonce = b64(bytes);
        if self.order.len() >= MAX_NONCES
            && let Some(old) = self.order.pop_front()
        {
            self.live.remove(&old);
        }
        self.live.insert(nonce.clone());
        self.order.push_back(nonce.clone());
        nonce
    }

    /// Uses `nonce` up: true if it was issued and not used before.
    pub(super) fn consume(&mut self, nonce: &str) -> bool {
        self.live.remove(nonce)
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn a_nonce_is_good_for_one_request() {
        let mut nonces = Nonces::default();
        let rng = SystemRandom::new();
        let a = nonces.issue(&rng);
        let b = nonces.issue(&rng);
        assert_ne!(a, b);
        assert!(nonces.consume(&a));
        assert!(!nonces.consume(&a), "a nonce is single use");
        assert!(!nonces.consume("never-issued"));
        assert!(nonces.consume(&b));
    }

    #[test]
    fn the_oldest_nonces_are_forgotten() {
        let mut nonces = Nonces::default();
        let rng = SystemRandom::new();
        let first = nonces.issue(&rng);
        let second = nonces.issue(&rng);
        for _ in 0..MAX_NONCES - 1 {
            nonces.issue(&rng);
        }
        assert!(!nonces.consume(&first), "the oldest went past the cap");
        assert!(nonces.consume(&second));
    }
}
