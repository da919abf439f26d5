//! A map from the graph's keys to a pair of `u32`s (a key's label and its place among the label's
//! keys, `labels`), in about 8 bytes a key where a hash map took 36.
//!
//! What it is for: keys are the documents' SQLite row ids, handed out in order, so an index's keys
//! mostly come in runs. The map cuts the key space into pages of [`PAGE`] keys; a page holding
//! many keys is an array with a bit per key saying which are present (8 bytes a key, and 64 bytes
//! a page), one holding few a short sorted list (12 bytes an entry), so a page left with a few
//! keys, after deletions or among another index's runs, costs little. At a million documents:
//! 8.1 MB, where the `HashMap<u64, (u32, u32)>` it replaced took 36 MB (53 MB while it grew).
//!
//! What it is not for: iteration in key order, or anything but `u32` pairs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys a page spans.
const PAGE_BITS: u32 = 9;
const PAGE: usize = 1 << PAGE_BITS;
/// A sorted page becomes an array once it holds more entries than this (an array of [`PAGE`]
/// values costs as much as about 350 entries), and an array becomes sorted again below half of it.
const SORTED_MAX: usize = 64;

type Value = (u32, u32);

/// The keys of one page present, and their values.
enum Page {
    /// `(offset in the page, value)`, by offset.
    Sorted(Vec<(u16, Value)>),
    /// The value at each offset, valid where its bit is set (boxed whole, so that the map's table
    /// holds a pointer, not the bits).
    Array(Box<Array>),
}

struct Array {
    present: [u64; PAGE / 64],
    len: u16,
    values: [Value; PAGE],
}

impl Page {
    fn len(&self) -> usize {
        match self {
            Page::Sorted(entries) => entries.len(),
            Page::Array(array) => usize::from(array.len),
        }
    }

    fn get(&self, at: u16) -> Option<Value> {
        match self {
            Page::Sorted(entries) => entries
                .binary_search_by_key(&at, |&(offset, _)| offset)
                .ok()
                .map(|i| entries[i].1),
            Page::Array(array) => array.get(usize::from(at)),
        }
    }

    /// Sets the value at `at`; the value it had.
    fn insert(&mut self, at: u16, value: Value) -> Option<Value> {
        match self {
            Page::Sorted(entries) => {
                match entries.binary_search_by_key(&at, |&(offset, _)| offset) {
                    Ok(i) => return Some(std::mem::replace(&mut entries[i].1, value)),
                    Err(i) => entries.insert(i, (at, value)),
                }
                if entries.len() > SORTED_MAX {
                    let array = Page::array_of(entries);
                    *self = array;
                }
                None
            }
            Page::Array(array) => array.set(usize::from(at), value),
        }
    }

    /// Takes the value at `at` out.
    fn remove(&mut self, at: u16) -> Option<Value> {
        match self {
            Page::Sorted(entries) => {
                let i = entries
                    .binary_search_by_key(&at, |&(offset, _)| offset)
                    .ok()?;
                let (_, value) = entries.remove(i);
                if entries.capacity() > 4 * entries.len().max(4) {
                    entries.shrink_to_fit();
                }
                Some(value)
            }
            Page::Array(array) => {
                let value = array.take(usize::from(at))?;
                if usize::from(array.len) < SORTED_MAX / 2 {
                    *self = Page::Sorted(array.entries());
                }
                Some(value)
            }
        }
    }

    /// An array page holding `entries`.
    fn array_of(entries: &[(u16, Value)]) -> Page {
        let mut array = Box::new(Array {
            present: [0; PAGE / 64],
            len: 0,
            values: [(0, 0); PAGE],
        });
        for &(at, value) in entries {
            array.set(usize::from(at), value);
        }
        Page::Array(array)
    }
}

impl Array {
    fn get(&self, i: usize) -> Option<Value> {
        (self.present[i / 64] >> (i % 64) & 1 == 1).then(|| self.values[i])
    }

    /// Sets the value at `i`; the value it had.
    fn set(&mut self, i: usize, value: Value) -> Option<Value> {
        let old = self.get(i);
        self.values[i] = value;
        if old.is_none() {
            self.present[i / 64] |= 1 << (i % 64);
            self.len += 1;
        }
        old
    }

    /// The entries, by offset.
    fn entries(&self) -> Vec<(u16, Value)> {
        (0..PAGE)
            .filter_map(|i| Some((i as u16, self.get(i)?)))
            .collect()
    }

    /// Takes the value at `i` out.
    fn take(&mut self, i: usize) -> Option<Value> {
        let old = self.get(i)?;
        self.present[i / 64] &= !(1 << (i % 64));
        self.len -= 1;
        Some(old)
    }
}

/// Hashes a page number (a `u64`) by one multiplication: page numbers are small and mostly
/// consecutive, and `HashMap`'s default SipHash costs more than the lookup it serves.
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Keys (`u64`) to `(u32, u32)`.
#[derive(Default)]
pub(super) struct KeyMap {
    pages: HashMap<u64, Page, BuildHasherDefault<PageHasher>>,
    len: usize,
}

/// A key's page and its offset in it.
fn split(key: u64) -> (u64, u16) {
    (key >> PAGE_BITS, (key & (PAGE as u64 - 1)) as u16)
}

impl KeyMap {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, key: u64) -> Option<Value> {
        let (page, at) = split(key);
        self.pages.get(&page)?.get(at)
    }

    /// Sets `key`'s value; the value it had.
    pub(super) fn insert(&mut self, key: u64, value: Value) -> Option<Value> {
        let (page, at) = split(key);
        let old = self
            .pages
            .entry(page)
            .or_insert_with(|| Page::Sorted(Vec::new()))
            .insert(at, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Takes `key` out; the value it had.
    pub(super) fn remove(&mut self, key: u64) -> Option<Value> {
        let (number, at) = split(key);
        let page = self.pages.get_mut(&number)?;
        let old = page.remove(at)?;
        self.len -= 1;
        if page.len() == 0 {
            self.pages.remove(&number);
        }
        Some(old)
    }

    /// Bytes the map holds (its pages and its table), near enough: for tests and figures.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let table = self.pages.capacity() * (std::mem::size_of::<(u64, Page)>() + 1);
        let pages: usize = self
            .pages
            .values()
            .map(|p| match p {
                Page::Sorted(entries) => entries.capacity() * std::mem::size_of::<(u16, Value)>(),
                Page::Array(_) => std::mem::size_of::<Array>(),
            })
            .sum();
        table + pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Reference;

    /// A pseudo-random sequence (xorshift), the same every run.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Every key the reference holds reads the same, and no other; the counts agree.
    fn check(map: &KeyMap, reference: &Reference<u64, Value>, probe: impl Iterator<Item = u64>) {
        assert_eq!(map.len(), reference.len());
        for (&key, &value) in reference {
            assert_eq!(map.get(key), Some(value), "key {key}");
        }
        for key in probe {
            assert_eq!(map.get(key), reference.get(&key).copied(), "key {key}");
        }
        let pages: usize = map.pages.values().map(Page::len).sum();
        assert_eq!(pages, map.len());
    }

    #[test]
    fn matches_a_hash_map_through_inserts_replacements_and_removals() {
        let mut map = KeyMap::default();
        let mut reference = Reference::new();
        let mut state = 0x2545_F491_4F6C_DD1D;
        // Runs of keys (an ingest), keys far apart, the same keys again: pages of both kinds,
        // turning from one into the other and back.
        for round in 0..6u64 {
            for key in round * 700..round * 700 + 1_500 {
                let value = (round as u32, key as u32);
                assert_eq!(map.insert(key, value), reference.insert(key, value));
            }
            for _ in 0..300 {
                let key = next(&mut state) % 5_000;
                assert_eq!(map.remove(key), reference.remove(&key), "remove {key}");
            }
            for _ in 0..200 {
                let key = next(&mut state);
                let value = (7, round as u32);
                assert_eq!(map.insert(key, value), reference.insert(key, value));
            }
            check(&map, &reference, (0..6_000).chain([u64::MAX, 1 << 40]));
        }
        // Everything out: no page left behind.
        let keys: Vec<u64> = reference.keys().copied().collect();
        for key in keys {
            assert_eq!(map.remove(key), reference.remove(&key));
        }
        assert_eq!(map.len(), 0);
        assert!(map.pages.is_empty());
        assert_eq!(map.remove(3), None);
    }

    #[test]
    fn dense_keys_take_about_eight_bytes_each_and_scattered_ones_stay_small() {
        let mut dense = KeyMap::default();
        for key in 1..=100_000u64 {
            dense.insert(key, (1, key as u32));
        }
        let per_key = dense.bytes() as f64 / 100_000.0;
        assert!((8.0..9.0).contains(&per_key), "{per_key} bytes a key");
        // One key in a page: a short list, not an array of 512.
        let mut scattered = KeyMap::default();
        for i in 0..1_000u64 {
            scattered.insert(i * PAGE as u64 * 3, (0, 0));
        }
        let per_key = scattered.bytes() as f64 / 1_000.0;
        assert!(per_key < 200.0, "{per_key} bytes a key");
        // A full page emptied down to a few keys turns back into a list.
        for key in 1..PAGE as u64 - 10 {
            dense.remove(key);
        }
        assert!(matches!(dense.pages.get(&0), Some(Page::Sorted(_))));
        assert_eq!(dense.get(PAGE as u64 - 5), Some((1, PAGE as u32 - 5)));
    }
}
