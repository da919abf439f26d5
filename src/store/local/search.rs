//! kNN search of the local store: through the HNSW graph (optionally filtered by label) with an
//! exact f32 re-rank, or as an exact scan when the set searched is small.
//!
//! What it is for: answering a [`KnnQuery`] with exact `l2_norm` scores (`1 / (1 + d²)`), the
//! same as Elasticsearch's, and falling back to an exact scan whenever the graph cannot give `k`
//! hits of the asked label.
//!
//! What it is not for: keeping the graph current (`graph`) or writing anything.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use rusqlite::{params, Connection, OptionalExtension};

use super::codes;
use super::db::{db_error, split_paths, IndexRow};
use super::graph::{ann_error, Ann};
use super::{Shared, State, MAX_NUM_CANDIDATES};

use crate::store::{Hit, KnnQuery, StoreError};

/// What one graph search is over: the index, the query, how many hits and candidates.
pub(super) struct Search<'q> {
    pub(super) conn: &'q Connection,
    pub(super) index_id: i64,
    pub(super) vector: &'q [f32],
    pub(super) k: usize,
    pub(super) candidates: usize,
    pub(super) ef: usize,
}

impl Shared {
    /// The query answered from one read snapshot, the graph first brought up to it (so what
    /// another process committed before the snapshot is found, and what it deleted is not).
    pub(super) fn knn(&self, state: &mut State, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        let k = query.k;
        let candidates = query.num_candidates.clamp(k, MAX_NUM_CANDIDATES.max(k));
        let State {
            conn, ann, stats, ..
        } = state;
        let (tx, row, ready) = self.snapshot(conn, ann, stats, true)?;
        self.check_query(&row, query)?;
        if !ready {
            // No graph yet (being built aside): the exact answer, slower but at once.
            let hits = self.exact_scan(&tx, row.id, &query.vector, query.label.as_deref(), k)?;
            return self.with_other_paths(&tx, row.id, hits);
        }
        if let (Some(label), Some(graph)) = (query.label.as_deref(), ann.as_mut()) {
            self.prepare_filter(graph, label, candidates);
        }
        let Some(graph) = ann.as_ref() else {
            return Err(StoreError::Other(
                "the HNSW graph could not be set up".into(),
            ));
        };
        if graph.tail.rows() > 0 {
            stats.tail_searches += 1;
        }
        if graph.rows() == 0 {
            return Ok(Vec::new());
        }
        let search = Search {
            conn: &tx,
            index_id: row.id,
            vector: &query.vector,
            k,
            candidates,
            ef: candidates.max(self.cfg.min_ef_search),
        };
        graph.index.change_expansion_search(search.ef);
        let hits = match query.label.as_deref() {
            None => self.graph_knn(graph, &search)?,
            Some(label) => self.filtered_knn(graph, &search, label)?,
        };
        self.with_other_paths(&tx, row.id, hits)
    }

    /// `hits` with the other paths of each document, read in the search's snapshot.
    pub(super) fn with_other_paths(
        &self,
        conn: &Connection,
        index_id: i64,
        hits: Vec<Hit>,
    ) -> Result<Vec<Hit>, StoreError> {
        if hits.is_empty() || !self.has_copies(conn, index_id)? {
            return Ok(hits);
        }
        self.fill_other_paths(conn, index_id, hits)
    }

    /// Whether any document of the index has other paths: most libraries have no copies, and
    /// then one look spares a query per hit.
    pub(super) fn has_copies(&self, conn: &Connection, index_id: i64) -> Result<bool, StoreError> {
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM doc_paths WHERE index_id = ?1)")
            .and_then(|mut s| s.query_row(params![index_id], |r| r.get(0)))
            .map_err(|e| self.db(e))
    }

    /// Each hit's other paths, one query per hit.
    pub(super) fn fill_other_paths(
        &self,
        conn: &Connection,
        index_id: i64,
        mut hits: Vec<Hit>,
    ) -> Result<Vec<Hit>, StoreError> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT group_concat(p.path, char(0)) FROM doc_paths p
                 JOIN docs d ON d.key = p.key WHERE d.index_id = ?1 AND d.id = ?2",
            )
            .map_err(|e| self.db(e))?;
        for hit in &mut hits {
            let joined: Option<String> = stmt
                .query_row(params![index_id, hit.id], |r| r.get(0))
                .map_err(|e| self.db(e))?;
            hit.other_paths = split_paths(joined);
        }
        Ok(hits)
    }

    /// Refuses a query vector of the wrong size or with a NaN or infinite value.
    pub(super) fn check_query(&self, row: &IndexRow, query: &KnnQuery) -> Result<(), StoreError> {
        if query.vector.len() != row.dims {
            return Err(StoreError::DimsMismatch {
                index: self.index_name().to_string(),
                index_dims: row.dims,
                model_dims: query.vector.len(),
            });
        }
        if query.vector.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Other(
                "the query vector has a NaN or infinite value".into(),
            ));
        }
        Ok(())
    }

    /// The best `k` of all vectors: an exact scan if there are few, else the graph's candidates
    /// re-ranked (and an exact scan should the graph find fewer than `k`).
    fn graph_knn(&self, graph: &Ann, s: &Search<'_>) -> Result<Vec<Hit>, StoreError> {
        if graph.rows() <= self.cfg.exact_scan_rows {
            return self.exact_scan(s.conn, s.index_id, s.vector, None, s.k);
        }
        let found = graph.candidates(s.vector, s.candidates, None)?;
        let found = with_tail(graph, s, found, None);
        self.reranked(graph, s, &found)
    }

    /// The graph's candidates `keys` re-ranked, or an exact scan should they give fewer than `k`.
    pub(super) fn reranked(
        &self,
        graph: &Ann,
        s: &Search<'_>,
        keys: &[u64],
    ) -> Result<Vec<Hit>, StoreError> {
        let hits = self.rerank(s.conn, s.index_id, s.vector, keys, s.k)?;
        if hits.len() < s.k.min(graph.rows()) {
            return self.exact_scan(s.conn, s.index_id, s.vector, None, s.k);
        }
        Ok(hits)
    }

    /// Readies what a search of `label` for `candidates` will scan: the label's 2-bit codes unless
    /// it is scanned exactly, or its int8 scan would read about as much (at most twice
    /// [`LocalConfig::filtered_code2_candidates`] documents) (`labels`: made on first use, within
    /// budget; a label small enough for the int8 scan only takes what the budget has left, a
    /// larger one makes room).
    ///
    /// [`LocalConfig::filtered_code2_candidates`]: super::LocalConfig::filtered_code2_candidates
    pub(super) fn prepare_filter(&self, graph: &mut Ann, label: &str, candidates: usize) {
        let Some((number, count)) = graph.labels.get(label) else {
            return;
        };
        if count <= self.cfg.exact_scan_rows || count <= candidates {
            return;
        }
        // Its int8 codes would be scanned near whole anyway (the 2-bit scan's best are re-scored
        // by them): no 2-bit codes.
        if count <= 2 * self.cfg.filtered_code2_candidates && count <= self.cfg.filtered_scan_rows {
            return;
        }
        let make_room = count > self.cfg.filtered_scan_rows;
        let Ann { labels, index, .. } = graph;
        labels.prepare_codes2(number, make_room, |keys, codes, found| {
            index.get_i8_many(keys, codes, found).is_ok()
        });
    }

    /// The candidates of a search of label `number` from its 2-bit codes (`None` if it has none):
    /// the scan's best [`LocalConfig::filtered_code2_candidates`] re-scored with their int8 codes
    /// from the graph, the best `candidates` of those.
    ///
    /// [`LocalConfig::filtered_code2_candidates`]: super::LocalConfig::filtered_code2_candidates
    fn code2_candidates(
        &self,
        graph: &Ann,
        number: u32,
        code: &[i8],
        candidates: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let wide = self.cfg.filtered_code2_candidates.max(candidates);
        let Some(found) = graph.labels.nearest2(number, code, wide) else {
            return Ok(None);
        };
        if wide == candidates {
            return Ok(Some(found));
        }
        let best = scan_in_graph(graph, code, &found, candidates)?;
        Ok(Some(best))
    }

    /// The best `k` of `label`'s vectors: an exact scan if there are few, else the candidates of
    /// its int8 codes, of its 2-bit codes or of a filtered graph walk, re-ranked (and an exact
    /// scan should they come back short or with another label).
    pub(super) fn filtered_knn(
        &self,
        graph: &Ann,
        s: &Search<'_>,
        label: &str,
    ) -> Result<Vec<Hit>, StoreError> {
        let in_graph = graph.labels.get(label);
        let count = in_graph.map_or(0, |(_, count)| count) + graph.tail.rows_of(label);
        if count == 0 {
            return Ok(Vec::new());
        }
        if count <= self.cfg.exact_scan_rows || count <= s.candidates {
            // Its rows may come from the disk: its keys, to read them ahead.
            let keys = in_graph.map_or(&[][..], |(number, _)| graph.labels.keys_of(number));
            return self.exact_scan_reading(s.conn, s.index_id, s.vector, Some(label), s.k, keys);
        }
        let code = graph.quant.code(s.vector);
        let found = if let Some((number, _)) = in_graph {
            self.label_candidates(graph, s, number, &code)?
        } else {
            Vec::new()
        };
        let found = with_tail(graph, s, found, Some(label));
        let hits = self.rerank(s.conn, s.index_id, s.vector, &found, s.k)?;
        if hits.len() < s.k.min(count) || hits.iter().any(|h| h.label != label) {
            // The graph search ran out of neighbours of that label: scan them all.
            return self.exact_scan(s.conn, s.index_id, s.vector, Some(label), s.k);
        }
        Ok(hits)
    }

    /// The graph's candidates of a search of label `number` (`code`: the query's): a scan of its
    /// 2-bit codes (re-scored by the int8 codes) if it has them; else of its int8 codes, read from
    /// the graph by key, if it has at most [`LocalConfig::filtered_scan_rows`] documents; else a
    /// filtered graph walk.
    ///
    /// [`LocalConfig::filtered_scan_rows`]: super::LocalConfig::filtered_scan_rows
    fn label_candidates(
        &self,
        graph: &Ann,
        s: &Search<'_>,
        number: u32,
        code: &[i8],
    ) -> Result<Vec<u64>, StoreError> {
        let labels = &graph.labels;
        if let Some(found) = self.code2_candidates(graph, number, code, s.candidates)? {
            return Ok(found);
        }
        let keys = labels.keys_of(number);
        if keys.len() <= self.cfg.filtered_scan_rows {
            return scan_in_graph(graph, code, keys, s.candidates);
        }
        // Most of the graph walked is of other labels: search wider.
        let ef = s.candidates.max(self.cfg.filtered_min_ef);
        graph.index.change_expansion_search(ef);
        let keep = |key| labels.has(key, number);
        graph.candidates(s.vector, s.candidates, Some(&keep))
    }

    /// Scores `keys` with their exact f32 vectors; the best `k`, best first.
    fn rerank(
        &self,
        conn: &Connection,
        index_id: i64,
        query: &[f32],
        keys: &[u64],
        k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE key = ?1 AND index_id = ?2",
            )
            .map_err(|e| self.db(e))?;
        let mut scored = Vec::with_capacity(keys.len());
        let mut seen = HashSet::with_capacity(keys.len());
        // Rows not in the page cache come from the disk several at a time (`ahead`).
        let mut reading = self.read_ahead.reading(index_id, keys);
        for (at, &key) in keys.iter().enumerate() {
            reading.at(at);
            let Ok(key_i64) = i64::try_from(key) else {
                continue;
            };
            if !seen.insert(key) {
                continue;
            }
            let found = stmt
                .query_row(params![key_i64, index_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .optional()
                .map_err(|e| self.db(e))?;
            if let Some((id, label, path, blob)) = found {
                let d2 = self.squared_distance(query, &blob, || id.clone())?;
                let hit = Hit {
                    id,
                    score: 0.0,
                    label,
                    path,
                    other_paths: Vec::new(),
                };
                scored.push((d2, hit));
            }
        }
        Ok(best_k(scored, k))
    }

    /// Exact search over every vector of the index (or of one label).
    pub(super) fn exact_scan(
        &self,
        conn: &Connection,
        index_id: i64,
        query: &[f32],
        label: Option<&str>,
        k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.exact_scan_reading(conn, index_id, query, label, k, &[])
    }

    /// [`Self::exact_scan`] of rows whose keys are `keys` (in any order: the scan reads them in key
    /// order), to be read ahead should they come slowly (`ahead`). Any other rows are scanned too.
    fn exact_scan_reading(
        &self,
        conn: &Connection,
        index_id: i64,
        query: &[f32],
        label: Option<&str>,
        k: usize,
        keys: &[u64],
    ) -> Result<Vec<Hit>, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = match label {
            Some(_) => conn.prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE index_id = ?1 AND label = ?2",
            ),
            None => conn.prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE index_id = ?1 AND ?2 IS NULL",
            ),
        }
        .map_err(db)?;
        let mut rows = stmt.query(params![index_id, label]).map_err(db)?;
        // A bounded max-heap on distance keeps the best k.
        let mut heap: BinaryHeap<Scored> = BinaryHeap::new();
        let mut reading = self.read_ahead.reading_in_key_order(index_id, keys);
        let mut at = 0;
        while let Some(r) = rows.next().map_err(db)? {
            at += 1;
            reading.at(at);
            // The id only for a row that is kept, or named in an error: most rows are neither.
            let id = || r.get::<_, String>(0).map_err(db);
            let blob = r.get_ref(3).map_err(db)?.as_blob().map_err(|e| {
                StoreError::Other(format!(
                    "local store database {}: document {} has no vector: {e}",
                    self.db_path.display(),
                    id().unwrap_or_default()
                ))
            })?;
            let d2 = self.squared_distance(query, blob, || id().unwrap_or_default())?;
            if heap.len() == k && heap.peek().is_some_and(|worst| d2 >= worst.0) {
                continue;
            }
            let hit = Hit {
                id: id()?,
                score: 0.0,
                label: r.get(1).map_err(db)?,
                path: r.get(2).map_err(db)?,
                other_paths: Vec::new(),
            };
            heap.push(Scored(d2, hit));
            if heap.len() > k {
                heap.pop();
            }
        }
        Ok(best_k(heap.into_iter().map(|s| (s.0, s.1)).collect(), k))
    }

    /// Squared L2 distance between `query` and the little-endian f32 vector `blob` of document
    /// `id` (asked for only to name the document in an error, if the sizes differ).
    fn squared_distance(
        &self,
        query: &[f32],
        blob: &[u8],
        id: impl FnOnce() -> String,
    ) -> Result<f32, StoreError> {
        if blob.len() != query.len() * 4 {
            return Err(StoreError::Other(format!(
                "local store database {}: the vector of document {} has {} bytes, expected {}",
                self.db_path.display(),
                id(),
                blob.len(),
                query.len() * 4
            )));
        }
        Ok(squared_l2_le(query, blob))
    }
}

/// Lanes of [`squared_l2_le`]'s sums: eight independent sums the compiler keeps in one vector
/// register, where one running sum would make each addition wait for the last.
const LANES: usize = 8;

/// The squared L2 distance of `query` and the little-endian f32 vector `blob` (as many components),
/// summed in [`LANES`] lanes, then the lanes and the rest in order.
fn squared_l2_le(query: &[f32], blob: &[u8]) -> f32 {
    let component = |b: &[u8], q: f32| {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) - q;
        d * d
    };
    let mut lanes = [0f32; LANES];
    let whole = query.len() / LANES * LANES;
    for (b, q) in blob[..whole * 4]
        .chunks_exact(4 * LANES)
        .zip(query[..whole].chunks_exact(LANES))
    {
        for (lane, (b, &q)) in lanes.iter_mut().zip(b.chunks_exact(4).zip(q)) {
            *lane += component(b, q);
        }
    }
    let rest: f32 = blob[whole * 4..]
        .chunks_exact(4)
        .zip(&query[whole..])
        .map(|(b, &q)| component(b, q))
        .sum();
    lanes.iter().sum::<f32>() + rest
}

/// A hit with its squared distance, ordered by distance (for the bounded heap of exact scans).
struct Scored(f32, Hit);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.id.cmp(&other.1.id))
    }
}

/// The `count` of `keys` whose int8 codes in the graph are nearest `code`, nearest first: the
/// codes read a block at a time (`Index::get_i8_many`), on every core.
fn scan_in_graph(
    graph: &Ann,
    code: &[i8],
    keys: &[u64],
    count: usize,
) -> Result<Vec<u64>, StoreError> {
    let found = codes::nearest_gathered(code, keys.len(), count, |from, out, found| {
        let keys = &keys[from..from + found.len()];
        graph
            .index
            .get_i8_many(keys, out, found)
            .map(drop)
            .map_err(|e| ann_error("get", e))
    })?;
    Ok(found.into_iter().map(|at| keys[at]).collect())
}

/// The `k` smallest squared distances, best first, with their `l2_norm` scores filled in.
/// `found` (the graph's candidates) and the `s.candidates` rows of the graph's tail nearest the
/// query (of `label` only, if given): the rows written since the graph's generation, which the
/// graph does not hold yet (`tail`).
pub(super) fn with_tail(
    graph: &Ann,
    s: &Search<'_>,
    mut found: Vec<u64>,
    label: Option<&str>,
) -> Vec<u64> {
    if graph.tail.rows() > 0 {
        let code = graph.quant.code(s.vector);
        found.extend(graph.tail.nearest(&code, s.candidates, label));
    }
    found
}

fn best_k(mut scored: Vec<(f32, Hit)>, k: usize) -> Vec<Hit> {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    scored.truncate(k);
    scored
        .into_iter()
        .map(|(d2, mut hit)| {
            hit.score = 1.0 / (1.0 + d2.max(0.0));
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squared_l2_le_is_the_sum_of_the_squared_differences() {
        for dims in [0usize, 1, 7, 8, 9, 768, 770] {
            let query: Vec<f32> = (0..dims).map(|i| (i as f32 * 0.37).sin()).collect();
            let vector: Vec<f32> = (0..dims).map(|i| (i as f32 * 0.11).cos() * 0.5).collect();
            let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            let want: f64 = query
                .iter()
                .zip(&vector)
                .map(|(&q, &v)| (f64::from(v) - f64::from(q)).powi(2))
                .sum();
            let got = squared_l2_le(&query, &blob);
            assert!(
                (f64::from(got) - want).abs() <= 1e-5 * want.max(1.0),
                "{dims}-d: {got} against {want}"
            );
        }
    }

    fn hit(id: &str) -> Hit {
        Hit {
            id: id.into(),
            score: 0.0,
            label: "cat".into(),
            path: format!("/p/{id}"),
            other_paths: Vec::new(),
        }
    }

    #[test]
    fn best_k_orders_by_distance_then_id_and_scores_as_l2_norm() {
        let scored = vec![
            (4.0, hit("d")),
            (1.0, hit("b")),
            (0.0, hit("z")),
            (1.0, hit("a")),
        ];
        let best = best_k(scored, 3);
        let ids: Vec<&str> = best.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["z", "a", "b"]);
        assert_eq!(best[0].score, 1.0);
        assert_eq!(best[1].score, 0.5);
    }

    #[test]
    fn the_heap_of_an_exact_scan_drops_the_worst_first() {
        let mut heap: BinaryHeap<Scored> = BinaryHeap::new();
        for (d2, id) in [(2.0, "a"), (9.0, "b"), (2.0, "c"), (0.5, "d")] {
            heap.push(Scored(d2, hit(id)));
        }
        assert_eq!(heap.pop().unwrap().1.id, "b");
        assert_eq!(heap.pop().unwrap().1.id, "c");
    }
}
