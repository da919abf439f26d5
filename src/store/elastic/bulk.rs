//! Writing documents with `_bulk`: each document's two NDJSON lines, requests bounded in count and
//! bytes, reading the response item by item, and sending again only the items refused for a passing
//! reason (429, 5xx).
//!
//! Every request passes the store's `throttle`, told of each 429 (whole request or items), so
//! concurrent upserts slow down together when the server is busy.
//!
//! What it is not for: retrying a whole request that got no answer or a 429/5xx (that is
//! `connection`'s job, below this one), or checking the index's mapping (see `mapping`).

use std::sync::atomic::Ordering;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::errors::{error_summary, truncate, unexpected, Op};
use super::fields::path_value;
use super::mapping::{LABEL_FIELD, MTIME_FIELD, PATH_FIELD, VECTOR_FIELD};
use super::{ElasticStore, MTIME_UNKNOWN, MTIME_UNMAPPED};
use std::collections::HashSet;

use crate::store::{DocPath, ImageDoc, StoreError, UpsertReport};

/// The `_source` stored for a document (`mtime` only when known).
pub fn doc_source(doc: &ImageDoc) -> Value {
    let mut source = json!({
        LABEL_FIELD: doc.label,
        PATH_FIELD: path_value(&doc.path, &doc.other_paths),
        VECTOR_FIELD: doc.vector,
        "sha256": doc.id,
        "bytes": doc.bytes,
        "width": doc.width,
        "height": doc.height,
        "model": doc.model,
        "indexed_at": doc.indexed_at_ms,
    });
    if let Some(mtime) = doc.mtime_ms {
        source[MTIME_FIELD] = json!(mtime);
    }
    source
}

/// [`doc_source`] as written: the vector's floats in their shortest f32 form ("0.1"), not widened
/// to f64 first ("0.10000000149011612"), which would nearly double the request size for the same
/// numbers (Elasticsearch parses either back to the same f32).
#[derive(serde::Serialize)]
struct Source<'a> {
    name: &'a str,
    path: Paths<'a>,
    #[serde(rename = "IFV")]
    vector: &'a [f32],
    sha256: &'a str,
    bytes: u64,
    width: u32,
    height: u32,
    model: &'a str,
    indexed_at: u64,
    /// Left out when unknown (and on indices whose mapping lacks it: see `takes_mtime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime: Option<u64>,
}

/// `path` as written: one string, or an array for a content seen at several paths (see
/// [`path_value`]).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Paths<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

impl<'a> Paths<'a> {
    fn of(doc: &'a ImageDoc) -> Self {
        if doc.other_paths.is_empty() {
            Paths::One(&doc.path)
        } else {
            Paths::Many(
                std::iter::once(doc.path.as_str())
                    .chain(doc.other_paths.iter().map(String::as_str))
                    .collect(),
            )
        }
    }
}

/// A document's two `_bulk` lines (action, source), each ending in a newline. `create` leaves an
/// existing document untouched (409); `index` overwrites it.
pub fn bulk_lines(doc: &ImageDoc, overwrite: bool) -> String {
    let op = if overwrite { "index" } else { "create" };
    let mut out = json!({ op: { "_id": doc.id } }).to_string();
    out.push('\n');
    let source = Source {
        name: &doc.label,
        path: Paths::of(doc),
        vector: &doc.vector,
        sha256: &doc.id,
        bytes: doc.bytes,
        width: doc.width,
        height: doc.height,
        model: &doc.model,
        indexed_at: doc.indexed_at_ms,
        mtime: doc.mtime_ms,
    };
    // Serializing plain strings and numbers cannot fail; fall back to the Value form regardless.
    match serde_json::to_string(&source) {
        Ok(line) => out.push_str(&line),
        Err(_) => out.push_str(&doc_source(doc).to_string()),
    }
    out.push('\n');
    out
}

/// What one `_bulk` response item means for the document it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkItemOutcome {
    Indexed,
    AlreadyPresent,
    /// 429 or 5xx: worth sending again.
    Transient(String),
    /// Refused for good, with the server's reason.
    Failed(String),
}

/// The HTTP status of one item of a `_bulk` response (`{"create": {"status": 201, ...}}`).
pub fn item_status(item: &Value) -> Option<u64> {
    item.as_object()?.values().next()?.get("status")?.as_u64()
}

/// Reads one item of a `_bulk` response (`{"create": {"_id", "status", "error"?, ...}}`).
pub fn classify_bulk_item(item: &Value, overwrite: bool) -> BulkItemOutcome {
    let inner = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let Some(status) = item_status(item) else {
        return BulkItemOutcome::Failed(format!(
            "no status in bulk item: {}",
            truncate(&item.to_string(), 300)
        ));
    };
    let reason = || match inner.get("error") {
        Some(error) => error_summary(&json!({ "error": error })),
        None => format!("HTTP {status}"),
    };
    match status {
        200..=299 => BulkItemOutcome::Indexed,
        409 if !overwrite => BulkItemOutcome::AlreadyPresent,
        s if super::connection::is_transient_status(s as u16) => {
            BulkItemOutcome::Transient(reason())
        }
        _ => BulkItemOutcome::Failed(reason()),
    }
}

impl ElasticStore {
    /// [`crate::store::VectorStore::upsert`]: `docs` in `_bulk` requests of at most
    /// `bulk_max_docs` documents and `bulk_max_bytes` bytes (a larger single document goes alone).
    pub(super) async fn bulk_write(
        &self,
        docs: &[ImageDoc],
        overwrite: bool,
    ) -> Result<UpsertReport, StoreError> {
        let mut report = UpsertReport::default();
        if docs.is_empty() {
            return Ok(report);
        }
        // `_bulk` would auto-create a missing index with a dynamic mapping: refuse instead. Asked
        // once per store, not per request: after `index_dims`, `ensure_index` or an earlier
        // upsert the index is known to be there, and a later `index_not_found_exception` in a
        // bulk response (an index deleted meanwhile) is reported as missing all the same.
        if !self.index_seen.load(Ordering::Relaxed) && !self.index_exists().await? {
            return Err(self.index_missing());
        }
        let stripped;
        let docs = if self.takes_mtime(docs).await? {
            docs
        } else {
            stripped = without_mtime(docs);
            &stripped[..]
        };
        // Overwriting replaces `path` whole: keep the paths the documents have.
        let merged;
        let docs = if overwrite {
            merged = self
                .with_stored_paths(docs)
                .await
                .map_err(|e| self.bulk_error(e))?;
            &merged[..]
        } else {
            docs
        };
        let mut start = 0;
        while start < docs.len() {
            // Serialize lazily, one request's worth at a time.
            let mut lines = Vec::new();
            let mut bytes = 0usize;
            let mut end = start;
            while end < docs.len() && lines.len() < self.bulk_max_docs {
                let line = bulk_lines(&docs[end], overwrite);
                if !lines.is_empty() && bytes + line.len() > self.bulk_max_bytes {
                    break;
                }
                bytes += line.len();
                lines.push(line);
                end += 1;
            }
            self.bulk_chunk(&docs[start..end], &lines, overwrite, &mut report)
                .await?;
            start = end;
        }
        // Documents already there keep their vector and label and gain these paths.
        let present: HashSet<&str> = report.already_present.iter().map(String::as_str).collect();
        let seen_at: Vec<DocPath> = docs
            .iter()
            .filter(|d| present.contains(d.id.as_str()))
            .flat_map(|d| {
                std::iter::once(&d.path)
                    .chain(&d.other_paths)
                    .map(|p| DocPath {
                        id: d.id.clone(),
                        path: p.clone(),
                        mtime_ms: None,
                    })
            })
            .collect();
        self.add_doc_paths(&seen_at).await?;
        Ok(report)
    }

    /// Sends one `_bulk` request for `docs`' serialized `lines` and retries the items that failed
    /// transiently; records every item's outcome in `report`.
    async fn bulk_chunk(
        &self,
        docs: &[ImageDoc],
        lines: &[String],
        overwrite: bool,
        report: &mut UpsertReport,
    ) -> Result<(), StoreError> {
        // Positions (into `docs`/`lines`) still to send.
        let mut todo: Vec<usize> = (0..docs.len()).collect();
        let mut attempt = 0u32;
        loop {
            let body: String = todo.iter().map(|&i| lines[i].as_str()).collect();
            let reply = {
                let _permit = self.throttle.acquire().await;
                self.send(Method::Post, "_bulk", None, Some(&body)).await?
            };
            let items_busy = reply
                .body
                .get("items")
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|i| item_status(i) == Some(429)));
            if reply.busy_retries > 0 || reply.status.as_u16() == 429 || items_busy {
                self.throttle.busy();
            } else {
                self.throttle.ok();
            }
            if !reply.status.is_success() {
                return Err(self.bulk_error(self.error_for(Op::Bulk { overwrite }, &reply)));
            }
            let items = match reply.body.get("items").and_then(Value::as_array) {
                Some(items) if items.len() == todo.len() => items,
                _ => return Err(unexpected(self.url(), "_bulk", &reply.body)),
            };
            let again = self.record_items(docs, &todo, items, overwrite, report)?;
            if again.is_empty() {
                return Ok(());
            }
            attempt += 1;
            let max_retries = self.conn.max_retries();
            if attempt > max_retries {
                for (i, reason) in again {
                    let reason = format!("{reason} (still failing after {max_retries} retries)");
                    report.failed.push((docs[i].id.clone(), reason));
                }
                return Ok(());
            }
            self.conn.pause_before_retry(attempt).await;
            todo = again.into_iter().map(|(i, _)| i).collect();
        }
    }

    /// Records the outcome of each of `items` (answering `docs[todo[..]]`) in `report`; returns
    /// the positions to send again, with why. A missing index fails the whole call.
    fn record_items(
        &self,
        docs: &[ImageDoc],
        todo: &[usize],
        items: &[Value],
        overwrite: bool,
        report: &mut UpsertReport,
    ) -> Result<Vec<(usize, String)>, StoreError> {
        let mut again = Vec::new();
        for (&i, item) in todo.iter().zip(items) {
            let id = docs[i].id.clone();
            match classify_bulk_item(item, overwrite) {
                BulkItemOutcome::Indexed => report.indexed.push(id),
                BulkItemOutcome::AlreadyPresent => report.already_present.push(id),
                BulkItemOutcome::Failed(reason)
                    if reason.starts_with("index_not_found_exception") =>
                {
                    return Err(self.bulk_error(self.index_missing()));
                }
                BulkItemOutcome::Failed(reason) => report.failed.push((id, reason)),
                BulkItemOutcome::Transient(reason) => again.push((i, reason)),
            }
        }
        Ok(again)
    }

    /// Whether `docs`' mtimes can be written: asks for the mapping once, and only when a document
    /// has one (an index made before imgvec wrote `mtime` has no such field).
    async fn takes_mtime(&self, docs: &[ImageDoc]) -> Result<bool, StoreError> {
        if docs.iter().all(|d| d.mtime_ms.is_none()) {
            return Ok(true);
        }
        if self.mtime_mapping.load(Ordering::Relaxed) == MTIME_UNKNOWN {
            self.mappings().await?;
        }
        Ok(self.mtime_mapping.load(Ordering::Relaxed) != MTIME_UNMAPPED)
    }

    /// A bulk request failed as a whole: a missing index is no longer known to be there.
    fn bulk_error(&self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::IndexMissing { .. }) {
            self.index_seen.store(false, Ordering::Relaxed);
        }
        e
    }
}

fn without_mtime(docs: &[ImageDoc]) -> Vec<ImageDoc> {
    docs.iter()
        .map(|d| ImageDoc {
            mtime_ms: None,
            ..d.clone()
        })
        .collect()
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
