//! Removing documents from Elasticsearch (`_bulk` `delete` actions), and listing the documents
//! under some folders for `prune` (a `prefix` query on `path`, paged with `search_after`).
//!
//! What it is for: [`VectorStore::delete`](crate::store::VectorStore::delete) — ids in `_bulk`
//! requests, each item read (found and deleted, or not there), items refused for a passing reason
//! (429, 5xx) sent again — and [`VectorStore::files_under`](crate::store::VectorStore::files_under):
//! id, path, size and times, never vectors, sorted on `sha256` (unique, so `search_after` pages
//! neither skip nor repeat a document).
//!
//! What it is not for: deciding what to delete (the `prune` command), or refreshing (the caller
//! refreshes once at the end).

use std::collections::HashSet;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::bulk::classify_bulk_item;
use super::errors::{unexpected, Op};
use super::fields::source_paths;
use super::mapping::{MTIME_FIELD, PATH_FIELD};
use super::{BulkItemOutcome, ElasticStore};
use crate::store::{DocFile, StoreError};

/// Ids per `_bulk` delete request.
const DELETES_PER_REQUEST: usize = 1_000;
/// Documents per page when listing.
const LIST_PAGE: usize = 5_000;

/// The `_bulk` body deleting `ids`.
pub fn delete_lines(ids: &[&str]) -> String {
    let mut out = String::new();
    for id in ids {
        out.push_str(&json!({ "delete": { "_id": id } }).to_string());
        out.push('\n');
    }
    out
}

/// The search body of one page of [`VectorStore::files_under`](crate::store::VectorStore::files_under).
pub fn files_under_body(prefixes: &[String], size: usize, after: Option<&Value>) -> Value {
    let should: Vec<Value> = prefixes
        .iter()
        .map(|p| json!({ "prefix": { PATH_FIELD: { "value": p } } }))
        .collect();
    let mut body = json!({
        "size": size,
        "query": { "bool": { "should": should, "minimum_should_match": 1 } },
        "sort": [ { "sha256": "asc" } ],
        "_source": [PATH_FIELD, "bytes", MTIME_FIELD, "indexed_at"],
        "track_total_hits": false,
    });
    if let Some(after) = after {
        body["search_after"] = after.clone();
    }
    body
}

/// One hit of a listing page: a [`DocFile`] per path (the stored time is the first path's).
fn parse_file(hit: &Value) -> Option<Vec<DocFile>> {
    let src = hit.get("_source")?;
    let number = |name: &str| src.get(name).and_then(Value::as_u64);
    let id = hit.get("_id")?.as_str()?;
    let paths = source_paths(src);
    if paths.is_empty() {
        return None;
    }
    Some(
        paths
            .into_iter()
            .enumerate()
            .map(|(i, path)| DocFile {
                id: id.to_string(),
                path,
                bytes: number("bytes").unwrap_or(0),
                mtime_ms: if i == 0 { number(MTIME_FIELD) } else { None },
                indexed_at_ms: number("indexed_at").unwrap_or(0),
            })
            .collect(),
    )
}

impl ElasticStore {
    /// [`crate::store::VectorStore::delete`].
    pub(super) async fn delete_ids(&self, ids: &[String]) -> Result<u64, StoreError> {
        let mut asked = HashSet::new();
        let unique: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| asked.insert(*id))
            .collect();
        let mut deleted = 0;
        for chunk in unique.chunks(DELETES_PER_REQUEST) {
            deleted += self.delete_chunk(chunk).await?;
        }
        Ok(deleted)
    }

    /// One `_bulk` of deletes, with the items that failed for a passing reason sent again.
    async fn delete_chunk(&self, ids: &[&str]) -> Result<u64, StoreError> {
        let mut todo: Vec<&str> = ids.to_vec();
        let mut deleted = 0;
        let mut attempt = 0u32;
        while !todo.is_empty() {
            let body = delete_lines(&todo);
            let reply = self.send(Method::Post, "_bulk", None, Some(&body)).await?;
            if !reply.status.is_success() {
                return Err(self.error_for(Op::Delete, &reply));
            }
            let items = match reply.body.get("items").and_then(Value::as_array) {
                Some(items) if items.len() == todo.len() => items,
                _ => return Err(unexpected(self.url(), "_bulk", &reply.body)),
            };
            let mut again = Vec::new();
            for (&id, item) in todo.iter().zip(items) {
                // A document that is not there: 404 with `result: not_found` and no error.
                let not_found =
                    item.pointer("/delete/result").and_then(Value::as_str) == Some("not_found");
                match classify_bulk_item(item, true) {
                    _ if not_found => {}
                    BulkItemOutcome::Indexed => deleted += 1,
                    BulkItemOutcome::Transient(reason) => again.push((id, reason)),
                    BulkItemOutcome::Failed(reason)
                        if reason.starts_with("index_not_found_exception") =>
                    {
                        return Err(self.index_missing())
                    }
                    BulkItemOutcome::Failed(reason) => {
                        return Err(StoreError::Other(format!(
                            "{}: deleting document {id} failed: {reason}",
                            self.url()
                        )))
                    }
                    // Only `create` answers "already present"; a delete never does.
                    BulkItemOutcome::AlreadyPresent => {}
                }
            }
            attempt += 1;
            if !again.is_empty() && attempt > self.conn.max_retries() {
                let (id, reason) = &again[0];
                return Err(StoreError::Other(format!(
                    "{}: deleting document {id} still fails after {} retries: {reason}",
                    self.url(),
                    self.conn.max_retries()
                )));
            }
            if !again.is_empty() {
                self.conn.pause_before_retry(attempt).await;
            }
            todo = again.into_iter().map(|(id, _)| id).collect();
        }
        Ok(deleted)
    }

    /// [`crate::store::VectorStore::files_under`].
    pub(super) async fn list_files(&self, prefixes: &[String]) -> Result<Vec<DocFile>, StoreError> {
        let mut out = Vec::new();
        if prefixes.is_empty() {
            return Ok(out);
        }
        let mut after: Option<Value> = None;
        loop {
            let body = files_under_body(prefixes, LIST_PAGE, after.as_ref()).to_string();
            let reply = self
                .send(Method::Post, "_search", None, Some(&body))
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_for(Op::Search, &reply));
            }
            let Some(hits) = reply.body.pointer("/hits/hits").and_then(Value::as_array) else {
                return Err(unexpected(self.url(), "_search", &reply.body));
            };
            for hit in hits {
                out.extend(
                    parse_file(hit).ok_or_else(|| unexpected(self.url(), "_search hit", hit))?,
                );
            }
            after = hits.last().and_then(|h| h.get("sort")).cloned();
            if hits.len() < LIST_PAGE || after.is_none() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_lines_are_one_action_per_id_each_ending_in_a_newline() {
        let body = delete_lines(&["a", "b\"c"]);
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                json!({"delete": {"_id": "a"}}),
                json!({"delete": {"_id": "b\"c"}})
            ]
        );
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn the_listing_asks_for_no_vectors_and_pages_after_the_last_hit() {
        let body = files_under_body(&["/a/".into(), "/b.jpg".into()], 10, Some(&json!(["ff"])));
        assert_eq!(
            body["query"]["bool"]["should"][1]["prefix"]["path"]["value"],
            "/b.jpg"
        );
        assert_eq!(body["search_after"], json!(["ff"]));
        assert!(!body["_source"].as_array().unwrap().contains(&json!("IFV")));
        let file = parse_file(
            &json!({"_id": "x", "_source": {"path": "/a/1.jpg", "bytes": 5,
            "indexed_at": 7}}),
        )
        .unwrap();
        assert_eq!(
            (file[0].bytes, file[0].mtime_ms, file[0].indexed_at_ms),
            (5, None, 7)
        );
        let copies = parse_file(
            &json!({"_id": "x", "_source": {"path": ["/a/1.jpg", "/b/1.jpg"], "bytes": 5,
            "mtime": 3, "indexed_at": 7}}),
        )
        .unwrap();
        let listed: Vec<(&str, Option<u64>)> = copies
            .iter()
            .map(|f| (f.path.as_str(), f.mtime_ms))
            .collect();
        assert_eq!(listed, [("/a/1.jpg", Some(3)), ("/b/1.jpg", None)]);
    }
}
