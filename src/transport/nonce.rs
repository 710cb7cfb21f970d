//! The nonce pool: every `Replay-Nonce` a response carries is kept for the
//! next request, so `newNonce` is only asked when the pool runs dry.

use std::collections::VecDeque;
use std::sync::Mutex;

/// A bounded, concurrency-safe store of unused nonces.
///
/// Newest first: a fresh nonce is the least likely to have expired.
#[derive(Debug)]
pub(crate) struct NoncePool {
    nonces: Mutex<VecDeque<String>>,
    capacity: usize,
}

/// The longest nonce accepted from a server (Boulder's are ~40 characters).
const MAX_NONCE_LEN: usize = 512;

impl NoncePool {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            nonces: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    /// Keeps `nonce` if it is a well-formed base64url token (RFC 8555 §6.5.1);
    /// the oldest is dropped when full.
    pub(crate) fn put(&self, nonce: String) {
        if !is_valid_nonce(&nonce) {
            return;
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() >= self.capacity {
            nonces.pop_back();
        }
        nonces.push_front(nonce);
    }

    /// Takes the newest nonce, if any.
    pub(crate) fn take(&self) -> Option<String> {
        self.nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// How many nonces are waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nonces.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// RFC 8555 §6.5.1: a nonce is a base64url string.
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_newest_first_and_validated() {
        let pool = NoncePool::new(2);
        pool.put("a".into());
        pool.put("b".into());
        pool.put("c".into());
        pool.put("bad nonce!".into());
        pool.put(String::new());
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take().as_deref(), Some("c"));
        assert_eq!(pool.take().as_deref(), Some("b"));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn concurrent_use() {
        let pool = std::sync::Arc::new(NoncePool::new(1000));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        pool.put(format!("n{t}x{i}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = pool.take() {
            assert!(seen.insert(n));
        }
        assert_eq!(seen.len(), 800);
    }
}
