//! The certificates a renewer tracks, counted by state as they change: the
//! gauges of a fleet of a million read the counts, never the whole map.
//!
//! A [`Roster`] is a map whose mutable access goes through a guard
//! ([`Entry`]): the guard reads the value's class when taken and again when
//! dropped, and moves one count from the old class to the new. Every
//! change is counted, wherever it is made, so the counts cannot drift from
//! the map. Generic over the value so it stands on its own (and is tested
//! here without a renewer).

use std::collections::HashMap;
use std::collections::hash_map;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};

/// A value counted by its class.
pub(crate) trait Classed {
    /// What it is counted as.
    type Class: Copy + Eq + Hash;
    /// Its class now.
    fn class(&self) -> Self::Class;
}

/// A map from ids to values, with how many values are in each class.
#[derive(Debug)]
pub(crate) struct Roster<V: Classed> {
    items: HashMap<String, V>,
    counts: HashMap<V::Class, usize>,
}

impl<V: Classed> Default for Roster<V> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            counts: HashMap::new(),
        }
    }
}

impl<V: Classed> Roster<V> {
    /// How many values are in `class`.
    pub(crate) fn count(&self, class: V::Class) -> usize {
        self.counts.get(&class).copied().unwrap_or(0)
    }

    /// How many values there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    fn add(&mut self, class: V::Class) {
        *self.counts.entry(class).or_default() += 1;
    }

    fn sub(counts: &mut HashMap<V::Class, usize>, class: V::Class) {
        if let Some(n) = counts.get_mut(&class) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&class);
            }
        }
    }

    /// Inserts `value` at `id`, returning the value it replaces.
    pub(crate) fn insert(&mut self, id: String, value: V) -> Option<V> {
        self.add(value.class());
        let old = self.items.insert(id, value);
        if let Some(o) = &old {
            Self::sub(&mut self.counts, o.class());
        }
        old
    }

    /// Removes the value at `id`.
    pub(crate) fn remove(&mut self, id: &str) -> Option<V> {
        let old = self.items.remove(id)?;
        Self::sub(&mut self.counts, old.class());
        Some(old)
    }

    /// The value at `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&V> {
        self.items.get(id)
    }

    /// Whether `id` is held.
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        self.items.contains_key(id)
    }

    /// The value at `id`, to change: its count follows when the guard is
    /// dropped.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<Entry<'_, V>> {
        let value = self.items.get_mut(id)?;
        Some(Entry {
            before: value.class(),
            value,
            counts: &mut self.counts,
        })
    }

    /// Calls `f` on every (id, value), counting what it changes.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&str, &mut V)) {
        for (id, value) in self.items.iter_mut() {
            let before = value.class();
            f(id, value);
            let after = value.class();
            if after != before {
                Self::sub(&mut self.counts, before);
                *self.counts.entry(after).or_default() += 1;
            }
        }
    }

    /// Every (id, value).
    pub(crate) fn iter(&self) -> hash_map::Iter<'_, String, V> {
        self.items.iter()
    }

    /// Every value.
    pub(crate) fn values(&self) -> hash_map::Values<'_, String, V> {
        self.items.values()
    }

    /// Every id whose value matches `keep`.
    pub(crate) fn ids_where(&self, keep: impl Fn(&V) -> bool) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, v)| keep(v))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A value of a [`Roster`] being changed.
pub(crate) struct Entry<'a, V: Classed> {
    value: &'a mut V,
    before: V::Class,
    counts: &'a mut HashMap<V::Class, usize>,
}

impl<V: Classed> Deref for Entry<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        self.value
    }
}

impl<V: Classed> DerefMut for Entry<'_, V> {
    fn deref_mut(&mut self) -> &mut V {
        self.value
    }
}

impl<V: Classed> Drop for Entry<'_, V> {
    fn drop(&mut self) {
        let after = self.value.class();
        if after != self.before {
            Roster::<V>::sub(self.counts, self.before);
            *self.counts.entry(after).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Item(u8);
    impl Classed for Item {
        type Class = u8;
        fn class(&self) -> u8 {
            self.0
        }
    }

    fn recount(r: &Roster<Item>) -> HashMap<u8, usize> {
        let mut counts = HashMap::new();
        for v in r.values() {
            *counts.entry(v.0).or_default() += 1;
        }
        counts
    }

    #[test]
    fn counts_follow_every_insert_change_and_removal() {
        let mut r = Roster::default();
        r.insert("a".into(), Item(1));
        r.insert("b".into(), Item(1));
        r.insert("c".into(), Item(2));
        assert_eq!((r.count(1), r.count(2), r.len()), (2, 1, 3));
        // Replaced in place.
        r.insert("a".into(), Item(3));
        assert_eq!((r.count(1), r.count(3)), (1, 1));
        // Changed through the guard, several times while it is held.
        {
            let mut e = r.get_mut("b").unwrap();
            e.0 = 2;
            e.0 = 4;
        }
        assert_eq!((r.count(1), r.count(2), r.count(4)), (0, 1, 1));
        // Taken and left as it was.
        drop(r.get_mut("c"));
        assert_eq!(r.count(2), 1);
        assert!(r.remove("c").is_some());
        assert!(r.remove("c").is_none());
        assert_eq!(r.count(2), 0);
        assert_eq!(recount(&r), r.counts);
        assert_eq!(r.ids_where(|v| v.0 == 4), vec!["b".to_owned()]);
    }

    proptest::proptest! {
        #[test]
        fn counts_always_equal_a_recount(ops in proptest::collection::vec((0u8..4, 0u8..5, 0u8..3), 0..200)) {
            let mut r = Roster::default();
            for (op, id, class) in ops {
                let id = id.to_string();
                match op {
                    0 => { r.insert(id, Item(class)); }
                    1 => { r.remove(&id); }
                    2 if id == "0" => r.for_each_mut(|_, v| v.0 = class),
                    _ => if let Some(mut e) = r.get_mut(&id) { e.0 = class; },
                }
                proptest::prop_assert_eq!(recount(&r), r.counts.clone());
            }
        }
    }
}
