//! The label of each key of the graph, and each label's keys: what a label-filtered search needs
//! (its count, to plan; its keys, to scan their codes in the graph; a key's label, for the
//! filtered graph walk).
//!
//! What it is for: keeping those right through every change the graph sees — a key added, its
//! vector replaced, its label changed (an upsert that relabels a path), the key removed. Each
//! label's keys are one dense array; a key leaves its label by a swap with the label's last key.
//! The int8 codes stay in the graph alone: a scan reads them there by key
//! (`codes::nearest_gathered`), so a label costs 8 bytes a document here, not a second copy of its
//! codes (768 bytes at 768-d).
//!
//! A label can keep 2-bit codes (`codes2`, 196 bytes a document at 768-d,
//! in the order of its keys), under a budget ([`Labels::new`]'s `bytes2`). They are made from the
//! graph's codes on the label's first filtered search ([`Labels::prepare_codes2`], on every core),
//! not at load: a process keeps them only for the labels it searches. A label small enough for the
//! int8 scan takes what the budget has left (a 2-bit scan of 100,000 codes is about three times
//! faster, docs/performance.md);
//! larger labels compete for it by use: when one that fits is searched, the labels searched least
//! recently let theirs go until it fits; a label larger than the whole budget gets none (and is
//! walked). Once made, they
//! follow every change, until the graph is next loaded or built.
//!
//! What it is not for: the truth (the rows are; `graph` builds and catches this up from them) or
//! the scans themselves (`codes`, `codes2`).

use std::collections::HashMap;

use rayon::prelude::*;

use super::codes::GATHER;
use super::codes2;
use super::keymap::KeyMap;

/// The keys of one label; their 2-bit codes if made (`code2_size` bytes each, in the keys' order).
#[derive(Default)]
struct Members {
    keys: Vec<u64>,
    codes2: Option<Vec<u8>>,
    /// When the label was last searched through its 2-bit codes (a tick of [`Labels::tick`]).
    used: u64,
}

/// The label of each key, as small numbers the filter predicate compares, and the keys of each
/// label.
pub(super) struct Labels {
    dims: usize,
    /// Bytes of one 2-bit code; the most all labels' 2-bit codes may take, and what they take.
    code2_size: usize,
    bytes2: usize,
    code2_bytes: usize,
    /// Counts searches through 2-bit codes (which label was searched least recently).
    tick: u64,
    /// Each key's label number and its place among that label's keys (`keymap`: about 8 bytes a
    /// key).
    of_key: KeyMap,
    numbers: HashMap<String, u32>,
    /// Indexed by label number.
    members: Vec<Members>,
}

impl Labels {
    /// No keys yet, for codes of `dims` components; at most `bytes2` bytes of 2-bit codes.
    pub(super) fn new(dims: usize, bytes2: usize) -> Labels {
        Labels {
            dims,
            code2_size: codes2::bytes_for(dims),
            bytes2,
            code2_bytes: 0,
            tick: 0,
            of_key: KeyMap::default(),
            numbers: HashMap::new(),
            members: Vec::new(),
        }
    }

    /// Records that `key` has `label` and the int8 code `code` (it may have had another label or
    /// code before). The code is kept only as a 2-bit code, by a label that has them: a label
    /// loaded from the graph has none yet, and its keys may come with an empty code.
    pub(super) fn set(&mut self, key: u64, label: String, code: &[i8]) {
        let next = self.numbers.len() as u32;
        let number = *self.numbers.entry(label).or_insert(next);
        if number as usize == self.members.len() {
            self.members.push(Members::default());
        }
        let at = match self.of_key.get(key) {
            Some((old, at)) if old == number => at as usize,
            previous => {
                if let Some((old, at)) = previous {
                    self.take_out(old, at);
                }
                let members = &mut self.members[number as usize];
                let Ok(at) = u32::try_from(members.keys.len()) else {
                    // Four billion documents of one label: past what a graph holds.
                    return;
                };
                self.of_key.insert(key, (number, at));
                members.keys.push(key);
                if let Some(codes2) = members.codes2.as_mut() {
                    codes2.resize(codes2.len() + self.code2_size, 0);
                    self.code2_bytes += self.code2_size;
                }
                at as usize
            }
        };
        let size = self.code2_size;
        if let Some(codes2) = self.members[number as usize].codes2.as_mut() {
            if code.len() == self.dims {
                codes2::pack_to(code, &mut codes2[at * size..(at + 1) * size]);
            } else {
                // No code to pack: the label's 2-bit codes are no longer whole.
                self.let_go2(number as usize);
            }
        }
        self.free2(0);
    }

    /// Forgets `key` (its document was deleted).
    pub(super) fn remove(&mut self, key: u64) {
        if let Some((old, at)) = self.of_key.remove(key) {
            self.take_out(old, at);
        }
    }

    /// Takes the member at `at` out of label `number`: the label's last member takes its place.
    fn take_out(&mut self, number: u32, at: u32) {
        let Some(members) = self.members.get_mut(number as usize) else {
            return;
        };
        let at = at as usize;
        let last = members.keys.len() - 1;
        members.keys.swap_remove(at);
        if let Some(codes2) = members.codes2.as_mut() {
            let size = self.code2_size;
            if at != last {
                codes2.copy_within(last * size..(last + 1) * size, at * size);
            }
            codes2.truncate(last * size);
            self.code2_bytes -= size;
        }
        if let Some(&moved) = members.keys.get(at) {
            self.of_key.insert(moved, (number, at as u32));
        }
    }

    /// Label `number` keeps no 2-bit codes from now on.
    fn let_go2(&mut self, number: usize) {
        if let Some(codes2) = self.members[number].codes2.take() {
            self.code2_bytes -= codes2.len();
        }
    }

    /// Lets the 2-bit codes of the labels searched least recently go until `more` bytes fit the
    /// budget; whether they do.
    fn free2(&mut self, more: usize) -> bool {
        while self.code2_bytes + more > self.bytes2 {
            let oldest = (0..self.members.len())
                .filter(|&n| self.members[n].codes2.is_some())
                .min_by_key(|&n| self.members[n].used);
            let Some(number) = oldest else {
                return false;
            };
            self.let_go2(number);
        }
        true
    }

    /// Readies label `number` for a search through its 2-bit codes: whether it has them now. One
    /// that lacks them and fits the budget has them made from its keys' int8 codes, which `gather`
    /// reads from the graph as [`codes::nearest_gathered`]'s does (false if it lacks one: then none
    /// are made); if `make_room`, the labels searched least recently let theirs go to make room,
    /// else only what the budget has left is used.
    ///
    /// [`codes::nearest_gathered`]: super::codes::nearest_gathered
    pub(super) fn prepare_codes2(
        &mut self,
        number: u32,
        make_room: bool,
        gather: impl Fn(&[u64], &mut [i8], &mut [u8]) -> bool + Sync,
    ) -> bool {
        let number = number as usize;
        let Some(members) = self.members.get(number) else {
            return false;
        };
        if self.dims == 0 {
            return false;
        }
        self.tick += 1;
        let tick = self.tick;
        if members.codes2.is_some() {
            self.members[number].used = tick;
            return true;
        }
        let need = members.keys.len() * self.code2_size;
        if need > self.bytes2 || (!make_room && self.code2_bytes + need > self.bytes2) {
            return false;
        }
        self.members[number].used = tick;
        // Room first, so that the budget holds throughout.
        if !self.free2(need) {
            return false;
        }
        // On every core, a block of keys a call, as the int8 scan reads them.
        let (dims, size) = (self.dims, self.code2_size);
        let mut codes2 = vec![0u8; need];
        let made = codes2
            .par_chunks_mut(GATHER * size)
            .zip(self.members[number].keys.par_chunks(GATHER))
            .all(|(out, keys)| {
                let mut codes = vec![0i8; keys.len() * dims];
                let mut found = vec![0u8; keys.len()];
                if !gather(keys, &mut codes, &mut found) || found.contains(&0) {
                    return false;
                }
                for (code, out) in codes.chunks_exact(dims).zip(out.chunks_exact_mut(size)) {
                    codes2::pack_to(code, out);
                }
                true
            });
        if !made {
            return false;
        }
        self.members[number].codes2 = Some(codes2);
        self.code2_bytes += need;
        true
    }

    /// The `count` keys of label `number` whose 2-bit codes are nearest the int8 code `query`,
    /// nearest first; `None` if the label has no 2-bit codes.
    pub(super) fn nearest2(&self, number: u32, query: &[i8], count: usize) -> Option<Vec<u64>> {
        let members = self.members.get(number as usize)?;
        let codes2 = members.codes2.as_ref()?;
        if query.len() != self.dims {
            return None;
        }
        let found = codes2::nearest(query, codes2, count);
        Some(found.into_iter().map(|at| members.keys[at]).collect())
    }

    /// The keys of label `number`.
    pub(super) fn keys_of(&self, number: u32) -> &[u64] {
        self.members
            .get(number as usize)
            .map_or(&[], |m| m.keys.as_slice())
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
        self.of_key.get(key).map(|(n, _)| n) == Some(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: usize = 4;

    /// A code whose first two components tell its key (mod 16) apart, in 2 bits too (one level
    /// of 4 each).
    fn code(key: u64) -> Vec<i8> {
        let level = |u: u64| (u % 4) as i8 * 16 - 24;
        vec![level(key), level(key / 4), 2, 3]
    }

    /// The key (mod 16) of the nearest 2-bit code of label `number` to `key`'s code.
    fn nearest2_of(labels: &Labels, number: u32, key: u64) -> Option<u64> {
        Some(labels.nearest2(number, &code(key), 1)?.first()? % 16)
    }

    /// Each key is where its place says, in its label; each 2-bit code is its key's; the counts
    /// are right.
    fn check_aligned(labels: &Labels) {
        let mut bytes2 = 0;
        for members in &labels.members {
            for (at, &key) in members.keys.iter().enumerate() {
                let (number, place) = labels.of_key.get(key).expect("every member has an entry");
                assert_eq!(place as usize, at);
                assert_eq!(labels.keys_of(number)[at], key);
            }
            if let Some(codes2) = &members.codes2 {
                let size = labels.code2_size;
                assert_eq!(codes2.len(), members.keys.len() * size);
                bytes2 += codes2.len();
                for (at, &key) in members.keys.iter().enumerate() {
                    let mut want = vec![0u8; size];
                    codes2::pack_to(&code(key), &mut want);
                    assert_eq!(&codes2[at * size..(at + 1) * size], &want[..], "key {key}");
                }
            }
        }
        assert_eq!(bytes2, labels.code2_bytes);
        assert!(labels.code2_bytes <= labels.bytes2);
        let members: usize = labels.members.iter().map(|m| m.keys.len()).sum();
        assert_eq!(members, labels.len());
    }

    /// What the graph would give: each key's code.
    fn gather(keys: &[u64], codes: &mut [i8], found: &mut [u8]) -> bool {
        for ((&key, out), f) in keys.iter().zip(codes.chunks_exact_mut(DIMS)).zip(found) {
            out.copy_from_slice(&code(key));
            *f = 1;
        }
        true
    }

    #[test]
    fn relabelling_a_key_moves_it_to_the_new_label() {
        let mut labels = Labels::new(DIMS, usize::MAX);
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

    /// Keys and 2-bit codes stay together through adds, removals, relabels and replaced codes.
    #[test]
    fn keys_and_2bit_codes_follow_every_change() {
        let mut labels = Labels::new(DIMS, usize::MAX);
        for key in 1..=50u64 {
            labels.set(key, if key % 3 == 0 { "a" } else { "b" }.into(), &code(key));
        }
        let (a, _) = labels.get("a").unwrap();
        assert!(labels.prepare_codes2(a, true, gather));
        check_aligned(&labels);
        for key in (1..=50u64).filter(|k| k % 4 == 0) {
            labels.remove(key);
            check_aligned(&labels);
        }
        for key in (1..=50u64).filter(|k| k % 5 == 0) {
            labels.set(key, "a".into(), &code(key));
            check_aligned(&labels);
        }
        // 3, 6, 9, 15, ... of `a`, 20 and 40 back (set again after their removal), 10, 25, ...
        // moved in; 12, 24, 36, 48 removed.
        let mut keys = labels.keys_of(a).to_vec();
        keys.sort_unstable();
        let want: Vec<u64> = (1..=50u64)
            .filter(|k| (k % 3 == 0 && k % 4 != 0) || k % 5 == 0)
            .collect();
        assert_eq!(keys, want);
        // The nearest 2-bit code to key 10's code is that of a key like it.
        assert_eq!(nearest2_of(&labels, a, 10), Some(10));
        // A key set without a code (as when read with the graph) takes the label's 2-bit codes
        // with it: the label is walked until they are made again.
        labels.set(11, "a".into(), &[]);
        assert_eq!(labels.nearest2(a, &code(10), 1), None);
        check_aligned(&labels);
        assert_eq!(labels.code2_bytes, 0);
    }

    /// The 2-bit codes stay within their budget: the label searched least recently lets its go;
    /// a label larger than the whole budget gets none.
    #[test]
    fn two_bit_codes_keep_to_their_budget_by_use() {
        let size = codes2::bytes_for(DIMS);
        let mut labels = Labels::new(DIMS, 20 * size);
        for key in 0..10u64 {
            labels.set(key, "a".into(), &code(key));
            labels.set(100 + key, "b".into(), &code(100 + key));
        }
        for key in 0..21u64 {
            labels.set(200 + key, "big".into(), &code(200 + key));
        }
        let number = |l: &str| labels.get(l).unwrap().0;
        let (a, b, big) = (number("a"), number("b"), number("big"));
        assert!(
            !labels.prepare_codes2(big, true, gather),
            "over the whole budget"
        );
        assert!(labels.prepare_codes2(a, true, gather));
        assert!(labels.prepare_codes2(b, true, gather));
        check_aligned(&labels);
        // Full: one more key of `b` makes the least recently searched (`a`) let go.
        labels.set(110, "b".into(), &code(110));
        check_aligned(&labels);
        assert!(labels.nearest2(a, &code(1), 1).is_none());
        assert_eq!(
            labels.nearest2(b, &code(110), 1),
            Some(vec![110]),
            "alone of its kind"
        );
        // Searched again, `a` makes room by letting `b`'s go.
        assert!(labels.prepare_codes2(a, true, gather));
        assert!(labels.nearest2(b, &code(1), 1).is_none());
        check_aligned(&labels);
        // Without making room: only where the budget has some left.
        assert!(
            !labels.prepare_codes2(b, false, gather),
            "the budget is full"
        );
        assert!(labels.nearest2(a, &code(1), 1).is_some(), "kept");
        labels.remove(0);
        labels.remove(1);
        assert!(
            labels.prepare_codes2(b, false, gather),
            "room once `a` has two fewer"
        );
        assert!(labels.nearest2(a, &code(2), 1).is_some(), "kept beside");
        check_aligned(&labels);
        // A graph that lacks a key's code: none made.
        labels.let_go2(a as usize);
        let lacking = |keys: &[u64], codes: &mut [i8], found: &mut [u8]| {
            gather(keys, codes, found) && {
                found[0] = 0;
                true
            }
        };
        assert!(!labels.prepare_codes2(a, true, lacking));
        assert!(labels.nearest2(a, &code(1), 1).is_none());
        check_aligned(&labels);
    }
}
