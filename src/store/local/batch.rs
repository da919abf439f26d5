//! Many kNN queries at once on the local store (`VectorStore::knn_batch`, what `dupes` asks):
//! one read snapshot and one reading of the graph's tail for all of them, the graph searches of the
//! unfiltered queries run on every core (usearch's index is searched from several threads once it
//! has room for them), then each query's candidates re-ranked with the float vectors as `knn`
//! does. Answers are what `knn` would give for each query in the same snapshot.
//!
//! What it is not for: single queries (`search`).

use rayon::prelude::*;

use super::inserts::reserve;
use super::search::{with_tail, Search};
use super::{Shared, State, MAX_NUM_CANDIDATES};
use crate::store::{Hit, KnnQuery, StoreError};

impl Shared {
    pub(super) fn knn_batch(
        &self,
        state: &mut State,
        queries: &[KnnQuery],
    ) -> Result<Vec<Vec<Hit>>, StoreError> {
        let parallel = {
            let State {
                conn, ann, stats, ..
            } = &mut *state;
            let (tx, row, ready) = self.snapshot(conn, ann, stats, true)?;
            for q in queries {
                self.check_query(&row, q)?;
            }
            let candidates =
                |q: &KnnQuery| q.num_candidates.clamp(q.k, MAX_NUM_CANDIDATES.max(q.k));
            if let Some(graph) = ann.as_mut().filter(|_| ready) {
                for q in queries {
                    if let Some(label) = q.label.as_deref() {
                        self.prepare_filter(graph, label, candidates(q));
                    }
                }
            }
            match ann.as_ref() {
                Some(graph) if ready && graph.rows() > self.cfg.exact_scan_rows => {
                    if graph.tail.rows() > 0 {
                        stats.tail_searches += queries.len() as u64;
                    }
                    if !graph.adding {
                        // Room for as many searches at once as rayon has threads (a graph
                        // being added to has it: `follow` made it).
                        reserve(&graph.index, graph.index.capacity())?;
                    }
                    let ef = queries
                        .iter()
                        .map(|q| candidates(q).max(self.cfg.min_ef_search))
                        .max()
                        .unwrap_or(self.cfg.min_ef_search);
                    graph.index.change_expansion_search(ef);
                    // The graph's candidates of each unfiltered query, on every core.
                    let found: Vec<Option<Vec<u64>>> = queries
                        .par_iter()
                        .map(|q| match q.label {
                            Some(_) => Ok(None),
                            None => graph.candidates(&q.vector, candidates(q), None).map(Some),
                        })
                        .collect::<Result<_, _>>()?;
                    let copies = self.has_copies(&tx, row.id)?;
                    let mut out = Vec::with_capacity(queries.len());
                    for (q, keys) in queries.iter().zip(found) {
                        let search = Search {
                            conn: &tx,
                            index_id: row.id,
                            vector: &q.vector,
                            k: q.k,
                            candidates: candidates(q),
                            ef,
                        };
                        let hits = match (keys, q.label.as_deref()) {
                            (Some(keys), _) => {
                                let keys = with_tail(graph, &search, keys, None);
                                self.reranked(graph, &search, &keys)?
                            }
                            (None, Some(label)) => self.filtered_knn(graph, &search, label)?,
                            (None, None) => Vec::new(),
                        };
                        out.push(if copies {
                            self.fill_other_paths(&tx, row.id, hits)?
                        } else {
                            hits
                        });
                    }
                    Some(out)
                }
                _ => None,
            }
        };
        match parallel {
            Some(out) => Ok(out),
            // No graph to share (a small index, or one being built aside): one by one.
            None => queries.iter().map(|q| self.knn(state, q)).collect(),
        }
    }
}
