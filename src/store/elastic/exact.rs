//! Exact kNN and the label list on Elasticsearch: what `eval` needs besides the kNN search.
//!
//! - [`exact_knn_body`]: a brute-force `script_score` query over the stored float vectors of `IFV`
//!   (Elastic's documented exact kNN: `l2norm(params.query_vector, 'IFV')`), scored as the kNN
//!   search's `l2_norm` similarity, `1 / (1 + d²)`, so both rank and score alike. The label filter is
//!   the script's inner query.
//! - labels: a `terms` aggregation on `name` of up to [`MAX_LABELS`] buckets; more labels than that
//!   is an error (the answer's `sum_other_doc_count` says so), never a silently shortened list.
//!
//! What it is not for: the approximate search (`query`) or reading documents back (`scan`).

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::errors::Op;
use super::mapping::{LABEL_FIELD, PATH_FIELD, VECTOR_FIELD};
use super::query::parse_hits;
use super::ElasticStore;
use crate::store::{Hit, KnnQuery, LabelCount, StoreError};

/// The most labels read (well below Elasticsearch's default `search.max_buckets`, 65,536).
pub const MAX_LABELS: usize = 10_000;

/// The painless script: Elasticsearch's `l2_norm` kNN score from the exact L2 distance.
pub const EXACT_L2_NORM_SCRIPT: &str =
    "double d = l2norm(params.query_vector, 'IFV'); return 1.0 / (1.0 + d * d);";

impl ElasticStore {
    /// [`crate::store::VectorStore::exact_knn`]: one `_search` with [`exact_knn_body`].
    pub(super) async fn exact_search(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let body = exact_knn_body(query).to_string();
        let reply = self
            .send(Method::Post, "_search", None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Search, &reply));
        }
        parse_hits(&reply.body).map_err(|e| {
            StoreError::Other(format!(
                "unexpected exact search answer from {}: {e}",
                self.url()
            ))
        })
    }

    /// [`crate::store::VectorStore::labels`]: every label with its count, most first.
    pub(super) async fn label_counts(&self) -> Result<Vec<LabelCount>, StoreError> {
        let body = labels_body().to_string();
        let reply = self
            .send(Method::Post, "_search", None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Search, &reply));
        }
        let mut labels = parse_labels(&reply.body).map_err(|e| {
            StoreError::Other(format!(
                "unexpected aggregation answer from {}: {e}",
                self.url()
            ))
        })?;
        sort_labels(&mut labels);
        Ok(labels)
    }
}

/// The exact search body: `script_score` over every document (or those of `query.label`).
pub fn exact_knn_body(query: &KnnQuery) -> Value {
    let inner = match &query.label {
        Some(label) => json!({ "bool": { "filter": { "term": { LABEL_FIELD: label } } } }),
        None => json!({ "match_all": {} }),
    };
    debug_assert!(EXACT_L2_NORM_SCRIPT.contains(VECTOR_FIELD));
    json!({
        "size": query.k,
        "query": {
            "script_score": {
                "query": inner,
                "script": {
                    "source": EXACT_L2_NORM_SCRIPT,
                    "params": { "query_vector": query.vector },
                },
            },
        },
        "_source": [LABEL_FIELD, PATH_FIELD],
        "track_total_hits": false,
    })
}

/// The labels aggregation: a `terms` aggregation on the label field, most documents first.
pub fn labels_body() -> Value {
    json!({
        "size": 0,
        "track_total_hits": false,
        "aggs": { "labels": { "terms": {
            "field": LABEL_FIELD,
            "size": MAX_LABELS,
            "order": [ { "_count": "desc" }, { "_key": "asc" } ],
        } } },
    })
}

/// The labels of the aggregation's answer; an error when some were left out (more than
/// [`MAX_LABELS`]).
pub fn parse_labels(body: &Value) -> Result<Vec<LabelCount>, String> {
    let agg = body
        .pointer("/aggregations/labels")
        .ok_or_else(|| "no aggregations.labels in the answer".to_string())?;
    if agg
        .get("sum_other_doc_count")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0
    {
        return Err(format!(
            "the index has more than {MAX_LABELS} labels, more than imgvec reads"
        ));
    }
    let buckets = agg
        .get("buckets")
        .and_then(Value::as_array)
        .ok_or_else(|| "no buckets in aggregations.labels".to_string())?;
    buckets
        .iter()
        .map(|b| {
            let label = b
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a bucket without a key: {b}"))?;
            let count = b
                .get("doc_count")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a bucket without doc_count: {b}"))?;
            Ok(LabelCount {
                label: label.to_string(),
                count,
            })
        })
        .collect()
}

/// Most documents first, ties by label.
pub fn sort_labels(labels: &mut [LabelCount]) {
    labels.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)));
}

#[cfg(test)]
#[path = "exact_tests.rs"]
mod tests;
