//! Reading documents back: the kNN search body (label filter inside the `knn` clause, candidates
//! re-ranked with the float vectors so scores are exact) and its hits, and asking which ids exist
//! (`_mget`).
//!
//! What it is not for: writing documents (see `bulk`), or sending and retrying requests (see
//! `connection`). It never reads the vectors back: ES 9.2+ leaves them out of `_source`.

use std::collections::HashSet;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::errors::{error_summary, error_type, truncate, unexpected, Op};
use super::mapping::{LABEL_FIELD, PATH_FIELD, VECTOR_FIELD};
use super::ElasticStore;
use crate::store::{Hit, KnnQuery, StoreError};

/// Queries per `_msearch` request in [`crate::store::VectorStore::knn_batch`].
pub const MSEARCH_CHUNK: usize = 100;

/// Ids asked per `_mget` request in [`crate::store::VectorStore::existing_ids`].
pub const IDS_PER_REQUEST: usize = 1_000;
/// Elasticsearch's upper bound for `num_candidates`.
pub use crate::store::MAX_NUM_CANDIDATES;
/// How many times `k` candidates are re-ranked with the float vectors (Elasticsearch's own default
/// for `bbq_hnsw`; int8 ranks well already, so 3·k is ample for it).
pub const OVERSAMPLE: usize = 3;
/// The `script_score` of the fallback re-rank: Elasticsearch's `l2_norm` score, `1 / (1 + d²)`,
/// computed from the float vector.
pub const L2_SCORE_SCRIPT: &str =
    "double d = l2norm(params.query_vector, 'IFV'); return 1.0 / (1.0 + d * d);";

/// How a kNN search gets exact scores: a top-level `knn` on a quantized index (`int8_hnsw`,
/// `bbq_hnsw`, ...) ranks and scores with the quantized vectors, so its candidates are re-ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactScores {
    /// `knn.rescore_vector` (8.18+, 9.x, Serverless): the server re-ranks `OVERSAMPLE·k`
    /// candidates with the float vectors (and ignores it on a float `hnsw`/`flat` index, whose
    /// scores are exact anyway).
    RescoreVector,
    /// A `rescore` with a `script_score` on `l2norm` (8.12+) over the kNN's `OVERSAMPLE·k` hits,
    /// the rescore's score replacing the kNN's (`query_weight` 0).
    Script,
}

impl ElasticStore {
    /// [`crate::store::VectorStore::knn`]: one `_search` with [`knn_body`].
    pub(super) async fn search(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let exact = self.exact_scores().await?;
        let body = knn_body(query, exact).to_string();
        let reply = self
            .send(Method::Post, "_search", None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Search, &reply));
        }
        self.hits_of(&reply.body)
    }

    /// How this server gives exact scores (its version is read once).
    async fn exact_scores(&self) -> Result<ExactScores, StoreError> {
        Ok(if self.server_info().await?.has_rescore_vector() {
            ExactScores::RescoreVector
        } else {
            ExactScores::Script
        })
    }

    /// The hits of one search answer.
    fn hits_of(&self, body: &Value) -> Result<Vec<Hit>, StoreError> {
        parse_hits(body).map_err(|e| {
            StoreError::Other(format!("unexpected search answer from {}: {e}", self.url()))
        })
    }

    /// The error an item of an `_mget` or `_msearch` answer carries, as the call's error (a
    /// missing index as [`StoreError::IndexMissing`]); `None` for an item without one.
    fn item_error(&self, api: &str, item: &Value, status: u16) -> Option<StoreError> {
        let error = json!({ "error": item.get("error")? });
        if error_type(&error) == Some("index_not_found_exception") {
            return Some(self.index_missing());
        }
        Some(StoreError::Server {
            status,
            body: format!("{api}: {}", error_summary(&error)),
        })
    }

    /// [`crate::store::VectorStore::knn_batch`]: the same bodies as [`Self::search`], in one
    /// `_msearch` request per [`MSEARCH_CHUNK`] queries (the server runs them side by side).
    pub(super) async fn msearch(&self, queries: &[KnnQuery]) -> Result<Vec<Vec<Hit>>, StoreError> {
        let mut out = Vec::with_capacity(queries.len());
        if queries.iter().any(|q| q.k == 0) {
            // Nothing to ask the server for those: one at a time.
            for q in queries {
                out.push(self.search(q).await?);
            }
            return Ok(out);
        }
        if queries.is_empty() {
            return Ok(out);
        }
        let exact = self.exact_scores().await?;
        for chunk in queries.chunks(MSEARCH_CHUNK) {
            let mut body = String::new();
            for q in chunk {
                body.push_str("{}\n");
                body.push_str(&knn_body(q, exact).to_string());
                body.push('\n');
            }
            let reply = self
                .send(Method::Post, "_msearch", None, Some(&body))
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_for(Op::Search, &reply));
            }
            let answers = match reply.body.get("responses").and_then(Value::as_array) {
                Some(a) if a.len() == chunk.len() => a,
                _ => return Err(unexpected(self.url(), "_msearch", &reply.body)),
            };
            for answer in answers {
                let status = answer.get("status").and_then(Value::as_u64).unwrap_or(500);
                if let Some(e) = self.item_error("_msearch", answer, status as u16) {
                    return Err(e);
                }
                out.push(self.hits_of(answer)?);
            }
        }
        Ok(out)
    }

    /// [`crate::store::VectorStore::existing_ids`]: `_mget` with `_source=false`, in batches of
    /// [`IDS_PER_REQUEST`]. It is real-time (sees documents written but not yet refreshed, so a
    /// re-run right after a crash skips them), returns exactly one answer per id with `found`, and
    /// is not bounded by `index.max_result_window` as a search would be.
    pub(super) async fn found_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let docs = self.mget(ids, &[("_source", "false")]).await?;
        Ok(docs
            .iter()
            .filter(|doc| doc.get("found").and_then(Value::as_bool) == Some(true))
            .filter_map(|doc| doc.get("_id").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// `_mget` of `ids` (each once, in batches of [`IDS_PER_REQUEST`]) with the query parameters
    /// `query`: every answered doc in order. A per-doc error fails the call (a missing index as
    /// [`StoreError::IndexMissing`]).
    pub(super) async fn mget(
        &self,
        ids: &[String],
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, StoreError> {
        let mut asked = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| asked.insert(*id)).collect();
        let mut out = Vec::new();
        for batch in unique.chunks(IDS_PER_REQUEST) {
            let body = json!({ "ids": batch }).to_string();
            let reply = self
                .send(Method::Post, "_mget", Some(query), Some(&body))
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_for(Op::Mget, &reply));
            }
            let Some(docs) = reply.body.get("docs").and_then(Value::as_array) else {
                return Err(unexpected(self.url(), "_mget", &reply.body));
            };
            for doc in docs {
                if let Some(e) = self.item_error("_mget", doc, 200) {
                    return Err(e);
                }
                out.push(doc.clone());
            }
        }
        Ok(out)
    }
}

/// The search body for `query`: Elasticsearch's top-level `knn` option, the label filter inside it
/// (so it selects before the nearest are picked, not after), and the re-rank `exact` asks for.
pub fn knn_body(query: &KnnQuery, exact: ExactScores) -> Value {
    let k = query.k.max(1);
    let num_candidates = query.num_candidates.clamp(k, MAX_NUM_CANDIDATES.max(k));
    // The hits re-ranked by the script: k·OVERSAMPLE, within num_candidates, at least k.
    let window = k.saturating_mul(OVERSAMPLE).min(num_candidates).max(k);
    let mut knn = json!({
        "field": VECTOR_FIELD,
        "query_vector": query.vector,
        "k": if exact == ExactScores::Script { window } else { k },
        "num_candidates": num_candidates,
    });
    if let Some(label) = &query.label {
        knn["filter"] = json!({ "term": { LABEL_FIELD: label } });
    }
    let mut body = json!({ "size": k, "_source": [LABEL_FIELD, PATH_FIELD] });
    match exact {
        ExactScores::RescoreVector => {
            knn["rescore_vector"] = json!({ "oversample": OVERSAMPLE as f64 });
        }
        ExactScores::Script => {
            body["rescore"] = json!({
                "window_size": window,
                "query": {
                    "rescore_query": { "script_score": {
                        "query": { "match_all": {} },
                        "script": {
                            "source": L2_SCORE_SCRIPT,
                            "params": { "query_vector": query.vector },
                        },
                    } },
                    "query_weight": 0.0,
                    "rescore_query_weight": 1.0,
                },
            });
        }
    }
    body["knn"] = knn;
    body
}

/// Reads `hits.hits` of a search response into [`Hit`]s, in the server's order (best first).
pub fn parse_hits(body: &Value) -> Result<Vec<Hit>, String> {
    let hits = body
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no hits.hits in {}", truncate(&body.to_string(), 300)))?;
    hits.iter().map(parse_hit).collect()
}

fn parse_hit(h: &Value) -> Result<Hit, String> {
    let id = h
        .get("_id")
        .and_then(Value::as_str)
        .ok_or_else(|| "a hit without _id".to_string())?;
    let score = h
        .get("_score")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("hit {id} has no _score"))?;
    let field = |name: &str| {
        h.get("_source")
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut paths = h
        .get("_source")
        .map(super::fields::source_paths)
        .unwrap_or_default();
    let path = if paths.is_empty() {
        String::new()
    } else {
        paths.remove(0)
    };
    Ok(Hit {
        id: id.to_string(),
        score: score as f32,
        label: field(LABEL_FIELD),
        path,
        other_paths: paths,
    })
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
