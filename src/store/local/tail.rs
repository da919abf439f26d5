//! The rows written after the graph's generation, held as the graph's int8 codes until the graph
//! has them: what lets a write be done once its rows are committed, and a search see them at once.
//!
//! What it is for: an insert into the HNSW graph at a million documents costs about a millisecond
//! of CPU, a committed row far less. So the graph follows the rows instead of holding up each
//! write: a process brings its graph's [`Tail`] to each snapshot (the rows written since, read
//! from the database and coded with the graph's quantizer; the keys tombstoned since), a search
//! scans the tail's codes beside walking the graph and re-ranks both exactly, and the rows move
//! into the graph a chunk at a time (`follow`), oldest generation first. A graph file left behind
//! by a crash, however old, is used the same way: the last good graph plus the rows after it.
//!
//! The graph holds every row of generation up to `Ann::generation` (a row replaced since by a
//! later one is in the tail as that one; a key deleted since is in [`Tail::removed`]). Entries are
//! kept in the order they were read, so by generation; one replaced or deleted meanwhile is marked
//! dead in place and skipped.
//!
//! What it is not for: the graph itself (`graph`), or when its rows move (`follow`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use rusqlite::{params, Connection};

use super::codes;
use super::db::{db_error, vector_at, IndexRow};
use super::quant::Quantizer;
use crate::store::StoreError;

/// Rows moved into the graph together, at least (a generation is never split).
pub(super) struct Chunk {
    /// The graph holds every generation up to this one once the chunk is in.
    pub(super) through: i64,
    /// Keys deleted in the chunk's generations: taken out of the graph first.
    pub(super) removed: Vec<u64>,
    /// `(key, label, code)` of the rows of the chunk's generations.
    pub(super) rows: Vec<(u64, String, Vec<i8>)>,
}

/// The rows of generations after the graph's, up to [`Tail::generation`], as int8 codes.
pub(super) struct Tail {
    /// The generation whose rows (and tombstones) the tail has read up to.
    pub(super) generation: i64,
    dims: usize,
    /// Index of the first entry not yet in the graph (those before it are, or are dead).
    start: usize,
    keys: Vec<u64>,
    gens: Vec<i64>,
    labels: Vec<u32>,
    alive: Vec<bool>,
    codes: Vec<i8>,
    /// Each live key's entry.
    at: HashMap<u64, usize>,
    names: Vec<String>,
    numbers: HashMap<String, u32>,
    /// Live rows of each label, by number.
    label_rows: Vec<usize>,
    /// Keys tombstoned after the graph's generation, with the generation that deleted them.
    removed: VecDeque<(i64, u64)>,
}

impl Tail {
    /// Empty, for a graph that holds every row up to `generation`.
    pub(super) fn new(dims: usize, generation: i64) -> Tail {
        Tail {
            generation,
            dims,
            start: 0,
            keys: Vec::new(),
            gens: Vec::new(),
            labels: Vec::new(),
            alive: Vec::new(),
            codes: Vec::new(),
            at: HashMap::new(),
            names: Vec::new(),
            numbers: HashMap::new(),
            label_rows: Vec::new(),
            removed: VecDeque::new(),
        }
    }

    /// Rows held (live: not replaced or deleted since they were read).
    pub(super) fn rows(&self) -> usize {
        self.at.len()
    }

    /// Whether the graph has everything the tail read.
    pub(super) fn is_empty(&self) -> bool {
        self.at.is_empty() && self.removed.is_empty()
    }

    /// The live rows of `label`.
    pub(super) fn rows_of(&self, label: &str) -> usize {
        self.numbers
            .get(label)
            .map_or(0, |&n| self.label_rows[n as usize])
    }

    /// Reads what was written after [`Tail::generation`] up to `row`'s generation, in the
    /// snapshot `conn` is in: the keys tombstoned, then the rows written (which replace any entry
    /// of the same key). Returns the rows read.
    pub(super) fn extend(
        &mut self,
        conn: &Connection,
        db_path: &Path,
        row: &IndexRow,
        quant: &Quantizer,
    ) -> Result<usize, StoreError> {
        if row.generation <= self.generation {
            return Ok(0);
        }
        let db = |e| db_error(db_path, e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT generation, key FROM tombstones
                 WHERE index_id = ?1 AND generation > ?2 AND generation <= ?3
                 ORDER BY generation",
            )
            .map_err(db)?;
        let mut rows = stmt
            .query(params![row.id, self.generation, row.generation])
            .map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let generation: i64 = r.get(0).map_err(db)?;
            let key = r.get::<_, i64>(1).map_err(db)? as u64;
            self.kill(key);
            self.removed.push_back((generation, key));
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, label, vector, generation FROM docs
                 WHERE index_id = ?1 AND generation > ?2 AND generation <= ?3
                 ORDER BY generation",
            )
            .map_err(db)?;
        let mut rows = stmt
            .query(params![row.id, self.generation, row.generation])
            .map_err(db)?;
        let mut read = 0;
        while let Some(r) = rows.next().map_err(db)? {
            let key = r.get::<_, i64>(0).map_err(db)? as u64;
            let label: String = r.get(1).map_err(db)?;
            let vector = vector_at(db_path, r, 2, row.dims, &format!("row {key}"))?;
            let generation: i64 = r.get(3).map_err(db)?;
            self.put(key, generation, label, &quant.code(&vector));
            read += 1;
        }
        self.generation = row.generation;
        Ok(read)
    }

    /// Holds `key`'s row of `generation` (replacing any entry it had).
    fn put(&mut self, key: u64, generation: i64, label: String, code: &[i8]) {
        if code.len() != self.dims {
            return;
        }
        self.kill(key);
        let next = self.names.len() as u32;
        let number = *self.numbers.entry(label.clone()).or_insert_with(|| next);
        if number == next {
            self.names.push(label);
            self.label_rows.push(0);
        }
        self.label_rows[number as usize] += 1;
        self.at.insert(key, self.keys.len());
        self.keys.push(key);
        self.gens.push(generation);
        self.labels.push(number);
        self.alive.push(true);
        self.codes.extend_from_slice(code);
    }

    /// Marks `key`'s entry dead, if it has one.
    fn kill(&mut self, key: u64) {
        if let Some(i) = self.at.remove(&key) {
            self.alive[i] = false;
            self.label_rows[self.labels[i] as usize] -= 1;
        }
    }

    /// The oldest generations' rows, about `max_rows` of them (whole generations, at least one),
    /// with the keys deleted in those generations; `None` if the tail is empty. The entries stay
    /// (searches still find them) until [`Tail::done_through`].
    pub(super) fn chunk(&self, max_rows: usize) -> Option<Chunk> {
        if self.is_empty() {
            return None;
        }
        let mut through = self.generation;
        let mut rows = Vec::new();
        for i in self.start..self.keys.len() {
            if rows.len() >= max_rows.max(1) && self.gens[i] > through {
                break;
            }
            if !self.alive[i] {
                continue;
            }
            through = self.gens[i];
            let code = self.codes[i * self.dims..(i + 1) * self.dims].to_vec();
            rows.push((
                self.keys[i],
                self.names[self.labels[i] as usize].clone(),
                code,
            ));
        }
        if rows.len() < max_rows.max(1) {
            // Every live row taken: the chunk covers the whole tail, tombstone-only generations too.
            through = self.generation;
        }
        let removed = self
            .removed
            .iter()
            .take_while(|&&(g, _)| g <= through)
            .map(|&(_, key)| key)
            .collect();
        Some(Chunk {
            through,
            removed,
            rows,
        })
    }

    /// Lets go of what the graph now holds: the entries and tombstones of generations up to
    /// `through`.
    pub(super) fn done_through(&mut self, through: i64) {
        while self.removed.front().is_some_and(|&(g, _)| g <= through) {
            self.removed.pop_front();
        }
        while self.start < self.keys.len() && self.gens[self.start] <= through {
            if self.alive[self.start] {
                self.kill(self.keys[self.start]);
            }
            self.start += 1;
        }
        if self.start == self.keys.len() {
            self.clear_entries();
        } else if self.start > 4_096 && self.start * 2 > self.keys.len() {
            self.compact();
        }
    }

    fn clear_entries(&mut self) {
        self.start = 0;
        self.keys.clear();
        self.gens.clear();
        self.labels.clear();
        self.alive.clear();
        self.codes.clear();
        self.at.clear();
    }

    /// Drops the entries before `start` (memory is given back as the tail drains).
    fn compact(&mut self) {
        let from = self.start;
        self.keys.drain(..from);
        self.gens.drain(..from);
        self.labels.drain(..from);
        self.alive.drain(..from);
        self.codes.drain(..from * self.dims);
        self.codes.shrink_to(self.codes.len() * 2);
        for i in self.at.values_mut() {
            *i -= from;
        }
        self.start = 0;
    }

    /// The keys of the `count` live rows whose codes are nearest `code` (of `label` only, if
    /// given), nearest first: scanned on every core.
    pub(super) fn nearest(&self, code: &[i8], count: usize, label: Option<&str>) -> Vec<u64> {
        if self.at.is_empty() {
            return Vec::new();
        }
        let number = match label {
            None => None,
            Some(label) => match self.numbers.get(label) {
                Some(&n) => Some(n),
                None => return Vec::new(),
            },
        };
        let from = self.start;
        let codes = &self.codes[from * self.dims..];
        let found = codes::nearest_where(code, codes, count, |at| {
            let i = from + at;
            self.alive[i] && number.is_none_or(|n| self.labels[i] == n)
        });
        found.into_iter().map(|at| self.keys[from + at]).collect()
    }
}

#[cfg(test)]
mod tests;
