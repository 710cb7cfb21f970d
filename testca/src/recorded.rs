//! Bounded logs of what the test CA received (the signed requests behind
//! [`TestCa::recorded_jws`](super::TestCa::recorded_jws), the finalize
//! requests in [`Ledger::finalizations`](super::Ledger::finalizations)): a
//! CA that runs for long, or faces a hostile client, keeps the latest
//! entries only.

use std::collections::VecDeque;
use std::mem::size_of;

use serde_json::Value;

use super::RecordedJws;

/// Default for the number of signed requests kept.
pub(crate) const DEFAULT_JWS_ENTRIES: usize = 4096;

/// Default for the memory the kept signed requests may take (estimated).
pub(crate) const DEFAULT_JWS_BYTES: usize = 16 << 20;

/// Default for the number of finalize requests kept.
pub(crate) const DEFAULT_FINALIZATIONS: usize = 10_000;

/// The latest entries that fit in `max_entries` and `max_bytes` (each
/// entry's cost given by the caller); older ones are dropped first.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    /// Oldest first, each with its cost.
    entries: VecDeque<(T, usize)>,
    /// The sum of the costs in `entries`.
    bytes: usize,
    /// At most this many entries (0: nothing is kept).
    max_entries: usize,
    /// At most this much cost in total.
    max_bytes: usize,
}

impl<T> Ring<T> {
    /// An empty log keeping at most `max_entries` entries of at most
    /// `max_bytes` in total.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Appends `item`, dropping the oldest entries as needed to make room.
    /// Returns false (and keeps nothing, drops nothing) when `item` alone
    /// is over the byte budget or the log is off.
    pub(crate) fn push(&mut self, item: T, cost: usize) -> bool {
        if self.max_entries == 0 || cost > self.max_bytes {
            return false;
        }
        while self.entries.len() >= self.max_entries || self.max_bytes - self.bytes < cost {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old,
                None => break,
            }
        }
        self.bytes += cost;
        self.entries.push_back((item, cost));
        true
    }

    /// The entries, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(item, _)| item)
    }
}

/// An estimate of the memory a recorded request takes: the struct, its
/// path and the decoded JSON trees (which are larger than their text: a
/// `[0,0,...]` payload takes 16 times its size).
pub(crate) fn jws_cost(jws: &RecordedJws) -> usize {
    size_of::<RecordedJws>()
        + jws.path.capacity()
        + json_cost(&jws.protected)
        + jws.payload.as_ref().map_or(0, json_cost)
}

/// An estimate of the memory a JSON tree takes (the root included);
/// iterative, so any depth is fine.
fn json_cost(value: &Value) -> usize {
    // A map entry: its key and a share of the tree node it lives in.
    const MAP_ENTRY: usize = size_of::<String>() + 2 * size_of::<usize>();
    let mut total = size_of::<Value>();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
            Value::String(s) => total += s.capacity(),
            Value::Array(items) => {
                total += items.capacity() * size_of::<Value>();
                stack.extend(items);
            }
            Value::Object(map) => {
                for (key, item) in map {
                    total += MAP_ENTRY + key.capacity() + size_of::<Value>();
                    stack.push(item);
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_latest_within_both_budgets() {
        let mut ring = Ring::new(3, 100);
        for i in 0..5 {
            assert!(ring.push(i, 10));
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
        // A big entry pushes out as many old ones as needed.
        assert!(ring.push(5, 85));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [4, 5]);
        assert!(ring.push(6, 100));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [6]);
        // One over the whole budget is not kept and evicts nothing.
        assert!(!ring.push(7, 101));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [6]);
        // Off.
        let mut off = Ring::new(0, 100);
        assert!(!off.push(1, 1));
        assert_eq!(off.iter().count(), 0);
    }

    #[test]
    fn json_cost_counts_the_tree_not_the_text() {
        let text = format!("[{}0]", "0,".repeat(9999));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(json_cost(&value) >= 10_000 * size_of::<Value>());
        let value = serde_json::json!({"key": "x".repeat(1000)});
        assert!(json_cost(&value) > 1000);
    }
}
