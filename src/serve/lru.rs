//! A small least-recently-used cache bounded by a byte budget, for thumbnails and query embeddings.
//!
//! What it is for: keeping recently made things (a JPEG thumbnail, an embedding of a text) in memory
//! so the next request for them is answered without decoding or running the model again. Each entry
//! states its own cost in bytes; the oldest entries are dropped when the total passes the budget.
//!
//! What it is not for: anything that must survive a restart, or very large numbers of entries
//! (eviction scans for the oldest entry: fine for the few thousand a server keeps).

use std::collections::HashMap;
use std::hash::Hash;

/// The cache; wrap it in a `Mutex` to share it.
pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    budget: usize,
    used: usize,
    tick: u64,
}

struct Entry<V> {
    value: V,
    cost: usize,
    last_used: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// An empty cache holding at most `budget` bytes of entries.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            budget,
            used: 0,
            tick: 0,
        }
    }

    /// The value for `key`, marking it as recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|e| {
            e.last_used = tick;
            e.value.clone()
        })
    }

    /// Stores `value` at a cost of `cost` bytes, dropping the least recently used entries while the
    /// total is over budget. A value that alone exceeds the budget is not stored, and an older value
    /// of the same key is dropped with it (it is out of date: the cache never answers with it).
    pub fn put(&mut self, key: K, value: V, cost: usize) {
        if cost > self.budget {
            if let Some(old) = self.entries.remove(&key) {
                self.used -= old.cost;
            }
            return;
        }
        self.tick += 1;
        let entry = Entry {
            value,
            cost,
            last_used: self.tick,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.used -= old.cost;
        }
        self.used += cost;
        while self.used > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.cost;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_least_recently_used_first() {
        let mut c = Lru::new(30);
        c.put("a", 1, 10);
        c.put("b", 2, 10);
        c.put("c", 3, 10);
        assert_eq!(c.get(&"a"), Some(1)); // a is now newer than b
        c.put("d", 4, 10);
        assert_eq!(c.get(&"b"), None);
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"c"), Some(3));
        assert_eq!(c.get(&"d"), Some(4));
        assert_eq!(c.used(), 30);
    }

    #[test]
    fn replacing_a_key_counts_its_cost_once() {
        let mut c = Lru::new(100);
        c.put("a", 1, 60);
        c.put("a", 2, 70);
        assert_eq!(c.used(), 70);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&"a"), Some(2));
    }

    #[test]
    fn a_value_over_budget_is_not_kept() {
        let mut c = Lru::new(10);
        c.put("small", 1, 5);
        c.put("big", 2, 11);
        assert_eq!(c.get(&"big"), None);
        assert_eq!(c.get(&"small"), Some(1));
    }

    #[test]
    fn a_new_value_over_budget_drops_the_old_one_of_its_key() {
        let mut c = Lru::new(10);
        c.put("k", 1, 5);
        c.put("other", 3, 4);
        c.put("k", 2, 11);
        assert_eq!(c.get(&"k"), None);
        assert_eq!(c.get(&"other"), Some(3));
        c.put("k", 4, 6);
        assert_eq!(c.get(&"k"), Some(4));
        assert_eq!(c.get(&"other"), Some(3));
    }
}
