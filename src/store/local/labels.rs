//! The label of each key of the graph, and each label's keys with their int8 codes side by side:
//! what a label-filtered search needs (its count, to plan; its codes, to scan; a key's label, for
//! the filtered graph walk).
//!
//! What it is for: keeping those right through every change the graph sees — a key added, its
//! vector replaced, its label changed (an upsert that relabels a path), the key removed. Each
//! label's keys and codes are two arrays in the same order; a key leaves its label by a swap with
//! the label's last key, so both stay dense and a scan reads one contiguous block.
//!
//! The codes are a second copy of what the graph holds (768 bytes a document at 768-d), so they
//! are bounded ([`Limits`]): a label keeps codes while it has at most `rows` documents, and all
//! labels' codes together take at most `bytes` (over it, the label with the most codes lets them
//! go). A label without codes is searched by the filtered graph walk; it gets codes again when the
//! graph is next loaded or built.
//!
//! A label without int8 codes (too large, or let go for the budget) can keep 4-bit codes instead
//! (`codes4`, 388 bytes a document at 768-d), under a budget of their own (`Limits::bytes4`).
//! They are made from the graph's codes on the label's first filtered search
//! ([`Labels::prepare_codes4`], about 1 µs a document, on every core), not at load: a process keeps them only
//! for the labels it searches. Labels compete for that budget by use: when one that fits is
//! searched, the labels searched least recently let theirs go until it fits; a label larger than
//! the whole budget gets none (and is walked). Once made, they follow every change as the int8
//! codes do, until the graph is next loaded or built.
//!
//! What it is not for: the truth (the rows are; `graph` builds and catches this up from them) or
//! the scans themselves (`codes`, `codes4`).

use std::collections::HashMap;

use rayon::prelude::*;

use super::{codes, codes4};

/// How many codes the labels keep (see the module's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// A label with more documents keeps no codes.
    pub(super) rows: usize,
    /// All labels' codes together, in bytes.
    pub(super) bytes: usize,
    /// All labels' 4-bit codes together, in bytes.
    pub(super) bytes4: usize,
}

impl Limits {
    /// The limits `cfg` sets.
    pub(super) fn of(cfg: &super::LocalConfig) -> Limits {
        Limits {
            rows: cfg.filtered_scan_rows,
            bytes: cfg.filtered_code_bytes,
            bytes4: cfg.filtered_code4_bytes,
        }
    }
}

/// The keys of one label and, unless it let them go, their codes (`dims` each, in the keys' order);
/// their 4-bit codes if made (`code4_size` bytes each, in the keys' order).
struct Members {
    keys: Vec<u64>,
    codes: Option<Vec<i8>>,
    codes4: Option<Vec<u8>>,
    /// When the label was last searched through its 4-bit codes (a tick of [`Labels::tick`]).
    used: u64,
}

/// The label of each key, as small numbers the filter predicate compares, and the keys and codes
/// of each label.
pub(super) struct Labels {
    dims: usize,
    limits: Limits,
    /// Bytes of all labels' codes.
    code_bytes: usize,
    /// Bytes of one 4-bit code, and of all labels' 4-bit codes.
    code4_size: usize,
    code4_bytes: usize,
    /// Counts searches through 4-bit codes (which label was searched least recently).
    tick: u64,
    /// Each key's label number and its place among that label's members.
    of_key: HashMap<u64, (u32, usize)>,
    numbers: HashMap<String, u32>,
    /// Indexed by label number.
    members: Vec<Members>,
}

impl Labels {
    /// No keys yet, for codes of `dims` components.
    pub(super) fn new(dims: usize, limits: Limits) -> Labels {
        Labels {
            dims,
            limits,
            code_bytes: 0,
            code4_size: codes4::bytes_for(dims),
            code4_bytes: 0,
            tick: 0,
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
            self.members.push(Members {
                keys: Vec::new(),
                codes: Some(Vec::new()),
                codes4: None,
                used: 0,
            });
        }
        let dims = self.dims;
        if code.len() != dims {
            // Not a code of this index's size: nothing a search could compare it with.
            self.remove(key);
            return;
        }
        match self.of_key.get(&key).copied() {
            Some((old, at)) if old == number => {
                let members = &mut self.members[number as usize];
                if let Some(codes) = members.codes.as_mut() {
                    codes[at * dims..(at + 1) * dims].copy_from_slice(code);
                }
                if let Some(codes4) = members.codes4.as_mut() {
                    let size = self.code4_size;
                    codes4::pack_to(code, &mut codes4[at * size..(at + 1) * size]);
                }
                return;
            }
            Some((old, at)) => self.take_out(old, at),
            None => {}
        }
        let members = &mut self.members[number as usize];
        self.of_key.insert(key, (number, members.keys.len()));
        members.keys.push(key);
        if let Some(codes4) = members.codes4.as_mut() {
            codes4::pack_into(code, codes4);
            self.code4_bytes += self.code4_size;
            self.keep4_to_budget();
        }
        let members = &mut self.members[number as usize];
        if members.keys.len() > self.limits.rows {
            self.let_go(number);
        } else if let Some(codes) = members.codes.as_mut() {
            codes.extend_from_slice(code);
            self.code_bytes += dims;
            self.keep_to_budget();
        }
    }

    /// Whether a new key of `label` would keep its code: false for a label that has let its codes
    /// go or that one more key takes past the size limit (then [`Self::set`] ignores the code, and
    /// a caller need not fetch it).
    pub(super) fn keeps_code(&self, label: &str) -> bool {
        match self.numbers.get(label) {
            Some(&n) => {
                let members = &self.members[n as usize];
                members.codes.is_some() && members.keys.len() < self.limits.rows
            }
            None => self.limits.rows > 0,
        }
    }

    /// Forgets `key` (its document was deleted).
    pub(super) fn remove(&mut self, key: u64) {
        if let Some((old, at)) = self.of_key.remove(&key) {
            self.take_out(old, at);
        }
    }

    /// Takes the member at `at` out of label `number`: the label's last member takes its place.
    fn take_out(&mut self, number: u32, at: usize) {
        let dims = self.dims;
        let Some(members) = self.members.get_mut(number as usize) else {
            return;
        };
        let last = members.keys.len() - 1;
        members.keys.swap_remove(at);
        if let Some(codes) = members.codes.as_mut() {
            if at != last {
                codes.copy_within(last * dims..(last + 1) * dims, at * dims);
            }
            codes.truncate(last * dims);
            self.code_bytes -= dims;
        }
        if let Some(codes4) = members.codes4.as_mut() {
            let size = self.code4_size;
            if at != last {
                codes4.copy_within(last * size..(last + 1) * size, at * size);
            }
            codes4.truncate(last * size);
            self.code4_bytes -= size;
        }
        if at != last {
            let moved = members.keys[at];
            self.of_key.insert(moved, (number, at));
        }
    }

    /// Label `number` keeps no codes from now on.
    fn let_go(&mut self, number: u32) {
        if let Some(codes) = self.members[number as usize].codes.take() {
            self.code_bytes -= codes.len();
        }
    }

    /// While the codes take more than the budget, the label with the most lets them go.
    fn keep_to_budget(&mut self) {
        while self.code_bytes > self.limits.bytes {
            let largest = (0..self.members.len())
                .filter_map(|n| Some((self.members[n].codes.as_ref()?.len(), n)))
                .max();
            let Some((_, number)) = largest else {
                return;
            };
            self.let_go(number as u32);
        }
    }

    /// Label `number` keeps no 4-bit codes from now on.
    fn let_go4(&mut self, number: usize) {
        if let Some(codes4) = self.members[number].codes4.take() {
            self.code4_bytes -= codes4.len();
        }
    }

    /// While the 4-bit codes take more than their budget, the label searched least recently lets
    /// them go.
    fn keep4_to_budget(&mut self) {
        self.free4(0);
    }

    /// Lets the 4-bit codes of the labels searched least recently go until `more` bytes fit the
    /// budget; whether they do.
    fn free4(&mut self, more: usize) -> bool {
        while self.code4_bytes + more > self.limits.bytes4 {
            let oldest = (0..self.members.len())
                .filter(|&n| self.members[n].codes4.is_some())
                .min_by_key(|&n| self.members[n].used);
            let Some(number) = oldest else {
                return false;
            };
            self.let_go4(number);
        }
        true
    }

    /// Readies label `number` for a search through its 4-bit codes: whether it has them now.
    /// A label keeping int8 codes needs none; one that lacks them and fits the budget has them
    /// made from each key's int8 code (`get` fills it, false if the key has none: then none are
    /// made), the labels searched least recently letting theirs go to make room.
    pub(super) fn prepare_codes4(
        &mut self,
        number: u32,
        get: impl Fn(u64, &mut [i8]) -> bool + Sync,
    ) -> bool {
        let number = number as usize;
        let Some(members) = self.members.get(number) else {
            return false;
        };
        if members.codes.is_some() || self.dims == 0 {
            return false;
        }
        self.tick += 1;
        let tick = self.tick;
        if members.codes4.is_some() {
            self.members[number].used = tick;
            return true;
        }
        let need = members.keys.len() * self.code4_size;
        if need > self.limits.bytes4 {
            return false;
        }
        self.members[number].used = tick;
        // Room first, so that the budget holds throughout.
        if !self.free4(need) {
            return false;
        }
        // On every core: half a second a core for 500,000 documents, in the first search's time.
        let (dims, size) = (self.dims, self.code4_size);
        let mut codes4 = vec![0u8; need];
        let made = codes4
            .par_chunks_mut(codes::TASK_ROWS * size)
            .zip(self.members[number].keys.par_chunks(codes::TASK_ROWS))
            .all(|(out, keys)| {
                let mut code = vec![0i8; dims];
                for (&key, out) in keys.iter().zip(out.chunks_exact_mut(size)) {
                    if !get(key, &mut code) {
                        return false;
                    }
                    codes4::pack_to(&code, out);
                }
                true
            });
        if !made {
            return false;
        }
        self.members[number].codes4 = Some(codes4);
        self.code4_bytes += need;
        true
    }

    /// The `count` keys of label `number` whose 4-bit codes are nearest the int8 code `query`,
    /// nearest first; `None` if the label has no 4-bit codes.
    pub(super) fn nearest4(&self, number: u32, query: &[i8], count: usize) -> Option<Vec<u64>> {
        let members = self.members.get(number as usize)?;
        let codes4 = members.codes4.as_ref()?;
        if query.len() != self.dims {
            return None;
        }
        let found = codes4::nearest(query, codes4, count);
        Some(found.into_iter().map(|at| members.keys[at]).collect())
    }

    /// The keys of label `number`.
    pub(super) fn keys_of(&self, number: u32) -> &[u64] {
        self.members
            .get(number as usize)
            .map_or(&[], |m| m.keys.as_slice())
    }

    /// The `count` keys of label `number` whose codes are nearest the code `query`, nearest
    /// first; `None` if the label keeps no codes.
    pub(super) fn nearest(&self, number: u32, query: &[i8], count: usize) -> Option<Vec<u64>> {
        let members = self.members.get(number as usize)?;
        let codes = members.codes.as_ref()?;
        if query.len() != self.dims {
            return None;
        }
        let found = codes::nearest(query, codes, count);
        Some(found.into_iter().map(|at| members.keys[at]).collect())
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

    const DIMS: usize = 4;
    const ROOMY: Limits = Limits {
        rows: usize::MAX,
        bytes: usize::MAX,
        bytes4: usize::MAX,
    };

    /// A code whose first component tells its key (mod 128) apart.
    fn code(key: u64) -> Vec<i8> {
        vec![(key % 128) as i8, 1, 2, 3]
    }

    /// `keeps_code` says beforehand what `set` does with a key's code: kept up to the row limit,
    /// not for the key that takes a label past it, nor after.
    #[test]
    fn keeps_code_says_whether_set_keeps_the_code() {
        let mut labels = Labels::new(
            DIMS,
            Limits {
                rows: 2,
                bytes: usize::MAX,
                bytes4: 0,
            },
        );
        for key in 1..=4 {
            let keeps = labels.keeps_code("cat");
            labels.set(key, "cat".into(), &code(key));
            let number = labels.get("cat").map(|(n, _)| n).unwrap();
            assert_eq!(
                keeps,
                labels.nearest(number, &code(key), 1).is_some(),
                "key {key}"
            );
            check_aligned(&labels);
        }
        assert!(!labels.keeps_code("cat"));
        assert!(labels.keeps_code("dog"), "a new label keeps codes");
        assert!(!Labels::new(
            DIMS,
            Limits {
                rows: 0,
                bytes: usize::MAX,
                bytes4: 0,
            }
        )
        .keeps_code("dog"));
    }

    /// Each key's code is where its key is, in every label keeping codes; the byte count is right.
    fn check_aligned(labels: &Labels) {
        let mut bytes = 0;
        for members in &labels.members {
            for (at, &key) in members.keys.iter().enumerate() {
                let (number, place) = labels.of_key[&key];
                assert_eq!(place, at);
                assert_eq!(labels.keys_of(number)[at], key);
            }
            if let Some(codes) = &members.codes {
                assert_eq!(codes.len(), members.keys.len() * DIMS);
                bytes += codes.len();
                for (at, &key) in members.keys.iter().enumerate() {
                    assert_eq!(codes[at * DIMS], (key % 128) as i8, "code of {key}");
                }
            }
        }
        assert_eq!(bytes, labels.code_bytes);
        let members: usize = labels.members.iter().map(|m| m.keys.len()).sum();
        assert_eq!(members, labels.len());
    }

    #[test]
    fn relabelling_a_key_moves_its_count_and_code_to_the_new_label() {
        let mut labels = Labels::new(DIMS, ROOMY);
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
        let mut labels = Labels::new(DIMS, ROOMY);
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
        assert_eq!(labels.nearest(c, &code(10), 1), Some(vec![10]));
        // A code of another size is not kept.
        labels.set(99, "c".into(), &[1, 2, 3]);
        assert!(!labels.has(99, c));
        check_aligned(&labels);
        // A replaced vector: the new code, in place.
        labels.set(7, "b".into(), &[100, 0, 0, 0]);
        let (b, _) = labels.get("b").unwrap();
        assert_eq!(labels.nearest(b, &[100, 0, 0, 0], 1), Some(vec![7]));
    }

    #[test]
    fn labels_over_the_limits_let_their_codes_go_and_keep_their_keys() {
        // At most 10 codes a label, 15 in all.
        let limits = Limits {
            rows: 10,
            bytes: 15 * DIMS,
            bytes4: 0,
        };
        let mut labels = Labels::new(DIMS, limits);
        for key in 0..11u64 {
            labels.set(key, "big".into(), &code(key));
        }
        let (big, count) = labels.get("big").unwrap();
        assert_eq!(count, 11);
        assert_eq!(labels.nearest(big, &code(3), 1), None);
        check_aligned(&labels);
        // Two labels of 8: 16 codes is over the budget, the larger (first of equals) lets go.
        for key in 100..108u64 {
            labels.set(key, "a".into(), &code(key));
        }
        for key in 200..208u64 {
            labels.set(key, "b".into(), &code(key));
        }
        check_aligned(&labels);
        assert!(labels.code_bytes <= limits.bytes);
        let (a, _) = labels.get("a").unwrap();
        let (b, _) = labels.get("b").unwrap();
        let kept = [a, b].map(|n| labels.nearest(n, &code(0), 1).is_some());
        assert_eq!(kept.iter().filter(|&&k| k).count(), 1, "{kept:?}");
        // Without codes, a label still moves and removes its keys right.
        labels.remove(3);
        labels.set(4, "a".into(), &code(4));
        check_aligned(&labels);
        assert_eq!(labels.get("big").unwrap().1, 9);
    }
}
