//! Reading every document back from Elasticsearch, vectors included, a page at a time in id order:
//! a point-in-time (`POST /index/_pit`) searched with `search_after`, sorted on `sha256` (the
//! document id as a keyword field; sorting on `_id` is not allowed by default), then closed
//! (`DELETE /_pit`).
//!
//! Vectors: Elasticsearch 9.2+ (and Serverless) leave `dense_vector` values out of `_source` unless
//! the search asks with `"_source": {"exclude_vectors": false}`, an option older servers reject. So
//! the server's version is read from `GET /` and the option is sent only where it exists. A hit
//! still without its vector is an error, never a silently empty vector.
//!
//! What it is not for: search (`query`, `exact`) or writing.

use async_trait::async_trait;
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::connection::{Connection, Reply};
use super::errors::{error_for, unexpected, Op};
use super::mapping::{LABEL_FIELD, MTIME_FIELD, PATH_FIELD, VECTOR_FIELD};
use super::ElasticStore;
use crate::store::{DocScan, ImageDoc, StoreError};

/// How long the point-in-time is kept between two pages.
const KEEP_ALIVE: &str = "5m";

/// The `_source` fields a scan reads.
const SOURCE_FIELDS: [&str; 9] = [
    LABEL_FIELD,
    PATH_FIELD,
    VECTOR_FIELD,
    "bytes",
    "width",
    "height",
    "model",
    "indexed_at",
    MTIME_FIELD,
];

impl ElasticStore {
    /// [`crate::store::VectorStore::scan`]: opens a point-in-time and returns the scan over it.
    pub(super) async fn open_scan(
        &self,
        page_size: usize,
        after: Option<String>,
    ) -> Result<ElasticScan, StoreError> {
        let ask_vectors = self.server_info().await?.excludes_vectors();
        let reply = self
            .send(
                Method::Post,
                "_pit",
                Some(&[("keep_alive", KEEP_ALIVE)]),
                None,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Search, &reply));
        }
        let pit = reply
            .body
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected(self.url(), "_pit", &reply.body))?
            .to_string();
        Ok(ElasticScan {
            conn: self.conn.clone(),
            index: self.index.clone(),
            pit: Some(pit),
            page_size: page_size.clamp(1, 10_000),
            after_id: after,
            search_after: None,
            ask_vectors,
            done: false,
        })
    }
}

/// Whether a server that answered `GET /` with `root` leaves vectors out of `_source` by default
/// (Elasticsearch 9.2 and later, and Serverless), so a scan must ask for them.
pub fn source_excludes_vectors(root: &Value) -> bool {
    super::ServerInfo::from_root(root).excludes_vectors()
}

/// The search body of one page.
pub fn scan_body(
    pit: &str,
    size: usize,
    after_id: Option<&str>,
    search_after: Option<&Value>,
    ask_vectors: bool,
) -> Value {
    let source = if ask_vectors {
        json!({ "includes": SOURCE_FIELDS, "exclude_vectors": false })
    } else {
        json!(SOURCE_FIELDS)
    };
    let mut body = json!({
        "size": size,
        "pit": { "id": pit, "keep_alive": KEEP_ALIVE },
        "sort": [ { "sha256": "asc" } ],
        "_source": source,
        "track_total_hits": false,
    });
    if let Some(id) = after_id {
        body["query"] = json!({ "range": { "sha256": { "gt": id } } });
    }
    if let Some(values) = search_after {
        body["search_after"] = values.clone();
    }
    body
}

/// The documents of one page, and the last hit's sort values (for `search_after`).
pub fn parse_scan_page(body: &Value) -> Result<(Vec<ImageDoc>, Option<Value>), String> {
    let hits = body
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| "no hits.hits in the answer".to_string())?;
    let docs = hits
        .iter()
        .map(super::browse::doc_from_hit)
        .collect::<Result<Vec<_>, _>>()?;
    let last = hits.last().and_then(|h| h.get("sort")).cloned();
    Ok((docs, last))
}

/// A scan over a point-in-time; [`DocScan::close`] releases it on the server.
pub(super) struct ElasticScan {
    conn: Connection,
    index: String,
    /// The current point-in-time id (each answer may hand out a newer one); `None` once closed.
    pit: Option<String>,
    page_size: usize,
    after_id: Option<String>,
    search_after: Option<Value>,
    ask_vectors: bool,
    done: bool,
}

impl ElasticScan {
    fn error(&self, reply: &Reply) -> StoreError {
        error_for(&self.conn, &self.index, Op::Search, reply)
    }
}

#[async_trait]
impl DocScan for ElasticScan {
    async fn next_page(&mut self) -> Result<Vec<ImageDoc>, StoreError> {
        let Some(pit) = self.pit.clone().filter(|_| !self.done) else {
            return Ok(Vec::new());
        };
        let body = scan_body(
            &pit,
            self.page_size,
            self.after_id.as_deref(),
            self.search_after.as_ref(),
            self.ask_vectors,
        )
        .to_string();
        // A point-in-time search names no index in its path.
        let reply = self
            .conn
            .request(Method::Post, "/_search", None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error(&reply));
        }
        if let Some(newer) = reply.body.get("pit_id").and_then(Value::as_str) {
            self.pit = Some(newer.to_string());
        }
        let (docs, last) = parse_scan_page(&reply.body).map_err(|e| {
            StoreError::Other(format!(
                "scanning {} at {}: {e}",
                self.index,
                self.conn.url()
            ))
        })?;
        if docs.len() < self.page_size || last.is_none() {
            self.done = true;
        }
        self.search_after = last;
        Ok(docs)
    }

    async fn close(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(pit) = self.pit.take() else {
            return Ok(());
        };
        let body = json!({ "id": pit }).to_string();
        let reply = self
            .conn
            .request(Method::Delete, "/_pit", None, Some(&body))
            .await?;
        // 404: already gone (expired), which is what closing wanted.
        if reply.status.is_success() || reply.status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.error(&reply))
        }
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
