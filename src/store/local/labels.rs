//! The label of each key of the graph, and each label's keys with their sign codes side by side:
//! what a label-filtered search needs (its count, to plan; its codes, to scan; a key's label, for
//! the filtered graph walk).
//!
//! What it is for: keeping those right through every change the graph sees — a key added, its
//! vector replaced, its label changed (an upsert that relabels a path), the key removed. Each
//! label's keys and codes are two arrays in the same order; a key leaves its label by a swap with
//! the label's last key, so both stay dense and a scan reads one contiguous block.
//!
//! What it is not for: the truth (the rows are; `graph` builds and catches this up from them) or
//! the scan itself (`signs`).

use std::collections::HashMap;

use super::signs;

/// The keys of one label and their sign codes (`words` words each, in the keys' order).
#[derive(Default)]
struct Members {
    keys: Vec<u64>,
    codes: Vec<u64>,
}

/// The label of each key, as small numbers the filter predicate compares, and the keys and sign
/// codes of each label.
pub(super) struct Labels {
    /// Words of a sign code.
    words: usize,
    /// Each key's label number and its place among that label's members.
    of_key: HashMap<u64, (u32, usize)>,
    numbers: HashMap<String, u32>,
    /// Indexed by label number.
    members: Vec<Members>,
}

impl Labels {
    /// No keys yet, for codes of `dims` components.
    pub(super) fn new(dims: usize) -> Labels {
        Labels {
            words: signs::words(dims),
            of_key: HashMap::new(),
            numbers: HashMap::new(),
            members: Vec::new(),
        }
    }

    /// Records that `key` has `label` and the int8 code `code` (it may have had another label or
    /// code before).
    pub(super) fn set(&mut self, key: u64, label: String, code: &[i8]) {
        let next = self.numbers.len() as u32;
        let number = *self.numbers.entry(label).or_insert(next);
        if number as usize == self.members.len() {
            self.members.push(Members::default());
        }
        let signs = signs::of(code);
        let words = self.words;
        if signs.len() != words {
            // Not a code of this index's size: nothing a search could compare it with.
            self.remove(key);
            return;
        }
        match self.of_key.get(&key).copied() {
            Some((old, at)) if old == number => {
                self.members[number as usize].codes[at * words..(at + 1) * words]
                    .copy_from_slice(&signs);
                return;
            }
            Some((old, at)) => self.take_out(old, at),
            None => {}
        }
        let members = &mut self.members[number as usize];
        self.of_key.insert(key, (number, members.keys.len()));
        members.keys.push(key);
        members.codes.extend_from_slice(&signs);
    }

    /// Forgets `key` (its document was deleted).
    pub(super) fn remove(&mut self, key: u64) {
        if let Some((old, at)) = self.of_key.remove(&key) {
            self.take_out(old, at);
        }
    }

    /// Takes the member at `at` out of label `number`: the label's last member takes its place.
    fn take_out(&mut self, number: u32, at: usize) {
        let words = self.words;
        let Some(members) = self.members.get_mut(number as usize) else {
            return;
        };
        let last = members.keys.len() - 1;
        members.keys.swap_remove(at);
        if at != last {
            members
                .codes
                .copy_within(last * words..(last + 1) * words, at * words);
            let moved = members.keys[at];
            self.of_key.insert(moved, (number, at));
        }
        members.codes.truncate(last * words);
    }

    /// The keys of label `number`.
    pub(super) fn keys_of(&self, number: u32) -> &[u64] {
        self.members
            .get(number as usize)
            .map_or(&[], |m| m.keys.as_slice())
    }

    /// The `count` keys of label `number` whose sign codes are nearest the int8 code `query`'s.
    pub(super) fn nearest(&self, number: u32, query: &[i8], count: usize) -> Vec<u64> {
        let Some(members) = self.members.get(number as usize) else {
            return Vec::new();
        };
        let query = signs::of(query);
        if query.len() != self.words {
            return Vec::new();
        }
        signs::nearest(&query, &members.codes, count)
            .into_iter()
            .map(|at| members.keys[at])
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.of_key.len()
    }

    /// The number and document count of `label`.
    pub(super) fn get(&self, label: &str) -> Option<(u32, usize)> {
        let number = *self.numbers.get(label)?;
        Some((number, self.keys_of(number).len()))
    }

    pub(super) fn has(&self, key: u64, number: u32) -> bool {
        self.of_key.get(&key).map(|&(n, _)| n) == Some(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An int8 code of 70 components whose sign code is `key` in the first word.
    fn code(key: u64) -> Vec<i8> {
        (0..70)
            .map(|i| if i < 64 && (key >> i) & 1 == 1 { 5 } else { -5 })
            .collect()
    }

    /// Each key's sign code is where its key is, in every label.
    fn check_aligned(labels: &Labels) {
        for members in &labels.members {
            assert_eq!(members.codes.len(), members.keys.len() * labels.words);
            for (at, &key) in members.keys.iter().enumerate() {
                let (number, place) = labels.of_key[&key];
                assert_eq!(place, at);
                assert_eq!(labels.keys_of(number)[at], key);
                assert_eq!(members.codes[at * labels.words], key, "code of {key}");
            }
        }
        let members: usize = labels.members.iter().map(|m| m.keys.len()).sum();
        assert_eq!(members, labels.len());
    }

    #[test]
    fn relabelling_a_key_moves_its_count_and_code_to_the_new_label() {
        let mut labels = Labels::new(70);
        labels.set(1, "cat".into(), &code(1));
        labels.set(2, "cat".into(), &code(2));
        labels.set(3, "dog".into(), &code(3));
        check_aligned(&labels);
        let (cat, _) = labels.get("cat").unwrap();
        let (dog, _) = labels.get("dog").unwrap();
        assert_eq!(labels.get("cat").unwrap().1, 2);
        labels.set(2, "dog".into(), &code(2));
        check_aligned(&labels);
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.get("cat").unwrap().1, 1);
        assert_eq!(labels.get("dog").unwrap().1, 2);
        assert!(labels.has(1, cat) && !labels.has(2, cat) && labels.has(2, dog));
        assert!(labels.get("owl").is_none());
        // Set again with the same label, removed: the keys of each label follow.
        labels.set(1, "cat".into(), &code(1));
        labels.remove(3);
        check_aligned(&labels);
        let keys = |n| {
            let mut k: Vec<u64> = labels.keys_of(n).to_vec();
            k.sort_unstable();
            k
        };
        assert_eq!((keys(cat), keys(dog)), (vec![1], vec![2]));
        assert_eq!(labels.get("dog").unwrap().1, 1);
    }

    #[test]
    fn codes_follow_their_keys_through_removals_and_replacements() {
        let mut labels = Labels::new(70);
        for key in 1..=50u64 {
            labels.set(key, if key % 3 == 0 { "a" } else { "b" }.into(), &code(key));
        }
        for key in (1..=50u64).filter(|k| k % 4 == 0) {
            labels.remove(key);
            check_aligned(&labels);
        }
        for key in (1..=50u64).filter(|k| k % 5 == 0) {
            labels.set(key, "c".into(), &code(key));
            check_aligned(&labels);
        }
        // The nearest of label `c` to key 10's code is key 10 itself.
        let (c, _) = labels.get("c").unwrap();
        assert_eq!(labels.nearest(c, &code(10), 1), vec![10]);
        // A code of another size is not kept.
        labels.set(99, "c".into(), &[1, 2, 3]);
        assert!(!labels.has(99, c));
        check_aligned(&labels);
        // A replaced vector: the new code, in place.
        labels.set(7, "b".into(), &code(7 | 1 << 40));
        let (b, _) = labels.get("b").unwrap();
        let at = labels.of_key[&7].1;
        assert_eq!(labels.members[b as usize].codes[at * 2], 7 | 1 << 40);
        assert_eq!(labels.nearest(b, &code(7 | 1 << 40), 1), vec![7]);
    }
}
