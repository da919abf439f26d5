//! The paths of documents in Elasticsearch: `path` holds one string, or an array when the same
//! bytes were seen at several paths (a keyword field takes any number of values, so the mapping
//! of an existing index stays as it is, and a document seen once keeps the plain string the
//! original pipeline wrote).
//!
//! What it is for: [`VectorStore::add_paths`](crate::store::VectorStore::add_paths) and
//! [`VectorStore::remove_paths`](crate::store::VectorStore::remove_paths), and the paths an
//! overwrite keeps. Each is a read of the documents' paths (`_mget`, real-time) and a `_bulk` of
//! `update` (or, for a document whose last path goes, `delete`) actions guarded by
//! `if_seq_no`/`if_primary_term`: a document changed meanwhile by another writer answers 409 and
//! is read and written again, so two processes adding paths at once lose neither.
//!
//! What it is not for: writing documents (`bulk`).

use std::collections::BTreeMap;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::bulk::{classify_bulk_item, item_status, BulkItemOutcome};
use super::errors::{unexpected, Op};
use super::fields::{path_value, source_paths, PATH_FIELD};
use super::ElasticStore;
use crate::store::{DocPath, ImageDoc, PathsRemoved, StoreError};

/// Rounds of read-and-write for documents another writer changed in between.
const CONFLICT_ROUNDS: u32 = 5;

/// A document's paths as read, with what guards a write of them.
struct Stored {
    id: String,
    paths: Vec<String>,
    seq_no: u64,
    primary_term: u64,
}

/// What to do to one document.
enum Change {
    SetPaths(Vec<String>),
    Delete,
}

impl ElasticStore {
    /// [`crate::store::VectorStore::add_paths`]: the ids not in the index.
    pub(super) async fn add_doc_paths(&self, paths: &[DocPath]) -> Result<Vec<String>, StoreError> {
        let wanted = by_id(paths);
        let mut missing = Vec::new();
        self.change_paths(&wanted, &mut missing, |stored, add| {
            let mut all = stored.paths.clone();
            for p in add {
                if !all.contains(p) {
                    all.push(p.clone());
                }
            }
            (all != stored.paths).then_some(Change::SetPaths(all))
        })
        .await?;
        Ok(missing)
    }

    /// [`crate::store::VectorStore::remove_paths`].
    pub(super) async fn remove_doc_paths(
        &self,
        paths: &[DocPath],
    ) -> Result<PathsRemoved, StoreError> {
        let wanted = by_id(paths);
        let mut missing = Vec::new();
        let mut removed = PathsRemoved::default();
        let done = self
            .change_paths(&wanted, &mut missing, |stored, gone| {
                let left: Vec<String> = stored
                    .paths
                    .iter()
                    .filter(|p| !gone.contains(p))
                    .cloned()
                    .collect();
                if left.len() == stored.paths.len() {
                    None
                } else if left.is_empty() {
                    Some(Change::Delete)
                } else {
                    Some(Change::SetPaths(left))
                }
            })
            .await?;
        for (before, change) in done {
            match change {
                Change::Delete => {
                    removed.paths += before as u64;
                    removed.documents += 1;
                }
                Change::SetPaths(left) => removed.paths += (before - left.len()) as u64,
            }
        }
        Ok(removed)
    }

    /// Each document of `docs` with the paths stored for it (if it is stored) added after its own:
    /// what an overwrite writes, so that it keeps them.
    pub(super) async fn with_stored_paths(
        &self,
        docs: &[ImageDoc],
    ) -> Result<Vec<ImageDoc>, StoreError> {
        let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
        let stored: BTreeMap<String, Vec<String>> = self
            .read_paths(&ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s.paths))
            .collect();
        Ok(docs
            .iter()
            .map(|d| {
                let mut doc = d.clone();
                for p in stored.get(&d.id).into_iter().flatten() {
                    if *p != doc.path && !doc.other_paths.contains(p) {
                        doc.other_paths.push(p.clone());
                    }
                }
                doc
            })
            .collect())
    }

    /// Reads the documents of `wanted`, asks `decide` what becomes of each (given its stored paths
    /// and the paths asked for it), writes that guarded by its sequence number, and goes round
    /// again for those another writer changed meanwhile. Ids not stored go to `missing`. Returns
    /// each change made, with how many paths the document had before it.
    async fn change_paths<F>(
        &self,
        wanted: &BTreeMap<String, Vec<String>>,
        missing: &mut Vec<String>,
        decide: F,
    ) -> Result<Vec<(usize, Change)>, StoreError>
    where
        F: Fn(&Stored, &[String]) -> Option<Change>,
    {
        let mut done = Vec::new();
        let mut todo: Vec<String> = wanted.keys().cloned().collect();
        for _ in 0..CONFLICT_ROUNDS {
            if todo.is_empty() {
                return Ok(done);
            }
            let stored = self.read_paths(&todo).await?;
            let found: std::collections::HashSet<&str> =
                stored.iter().map(|s| s.id.as_str()).collect();
            missing.extend(
                todo.iter()
                    .filter(|id| !found.contains(id.as_str()))
                    .cloned(),
            );
            let mut body = String::new();
            let mut sent = Vec::new();
            for s in &stored {
                let asked = wanted.get(&s.id).map(Vec::as_slice).unwrap_or_default();
                if let Some(change) = decide(s, asked) {
                    body.push_str(&change_lines(s, &change));
                    sent.push((s.id.clone(), s.paths.len(), change));
                }
            }
            if sent.is_empty() {
                return Ok(done);
            }
            let conflicts = self.send_changes(&body, &sent).await?;
            todo = Vec::new();
            for (id, before, change) in sent {
                if conflicts.contains(&id) {
                    todo.push(id);
                } else {
                    done.push((before, change));
                }
            }
        }
        if todo.is_empty() {
            return Ok(done);
        }
        Err(StoreError::Other(format!(
            "{}: the paths of document {} kept changing under another writer ({CONFLICT_ROUNDS} tries)",
            self.url(),
            todo[0]
        )))
    }

    /// The stored paths of `ids` (real-time), with their sequence numbers; ids not stored left out.
    async fn read_paths(&self, ids: &[String]) -> Result<Vec<Stored>, StoreError> {
        let docs = self.mget(ids, &[("_source_includes", PATH_FIELD)]).await?;
        let mut out = Vec::new();
        for doc in docs {
            if doc.get("found").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let number = |k: &str| doc.get(k).and_then(Value::as_u64);
            let (Some(id), Some(seq_no), Some(primary_term)) = (
                doc.get("_id").and_then(Value::as_str),
                number("_seq_no"),
                number("_primary_term"),
            ) else {
                return Err(unexpected(self.url(), "_mget doc", &doc));
            };
            out.push(Stored {
                id: id.to_string(),
                paths: doc.get("_source").map(source_paths).unwrap_or_default(),
                seq_no,
                primary_term,
            });
        }
        Ok(out)
    }

    /// One `_bulk` of path changes; the ids that answered 409 (changed meanwhile) or 404 (deleted
    /// meanwhile: read again, then missing).
    async fn send_changes(
        &self,
        body: &str,
        sent: &[(String, usize, Change)],
    ) -> Result<Vec<String>, StoreError> {
        let reply = self.send(Method::Post, "_bulk", None, Some(body)).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Paths, &reply));
        }
        let items = match reply.body.get("items").and_then(Value::as_array) {
            Some(items) if items.len() == sent.len() => items,
            _ => return Err(unexpected(self.url(), "_bulk", &reply.body)),
        };
        let mut again = Vec::new();
        for ((id, _, _), item) in sent.iter().zip(items) {
            if matches!(item_status(item), Some(409 | 404)) {
                again.push(id.clone());
                continue;
            }
            match classify_bulk_item(item, true) {
                BulkItemOutcome::Indexed | BulkItemOutcome::AlreadyPresent => {}
                BulkItemOutcome::Transient(reason) | BulkItemOutcome::Failed(reason) => {
                    return Err(StoreError::Other(format!(
                        "{}: updating the paths of document {id} failed: {reason}",
                        self.url()
                    )))
                }
            }
        }
        Ok(again)
    }
}

/// The paths asked for each id, each once, ids in order.
fn by_id(paths: &[DocPath]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in paths {
        let list = out.entry(p.id.clone()).or_default();
        if !list.contains(&p.path) {
            list.push(p.path.clone());
        }
    }
    out
}

/// The `_bulk` lines of one change, guarded by the sequence number read.
fn change_lines(s: &Stored, change: &Change) -> String {
    let guard = json!({
        "_id": s.id,
        "if_seq_no": s.seq_no,
        "if_primary_term": s.primary_term,
    });
    match change {
        Change::Delete => format!("{}\n", json!({ "delete": guard })),
        Change::SetPaths(paths) => {
            let (first, others) = paths.split_first().map_or(("", &[][..]), |(f, o)| (f, o));
            format!(
                "{}\n{}\n",
                json!({ "update": guard }),
                json!({ "doc": { PATH_FIELD: path_value(first, others) } })
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_guarded_and_one_path_stays_a_string() {
        let s = Stored {
            id: "a".into(),
            paths: vec!["/x".into(), "/y".into()],
            seq_no: 4,
            primary_term: 2,
        };
        let lines = change_lines(&s, &Change::SetPaths(vec!["/y".into()]));
        let parsed: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            parsed,
            [
                json!({"update": {"_id": "a", "if_seq_no": 4, "if_primary_term": 2}}),
                json!({"doc": {"path": "/y"}})
            ]
        );
        let two = change_lines(&s, &Change::SetPaths(vec!["/y".into(), "/z".into()]));
        assert!(
            two.ends_with("{\"doc\":{\"path\":[\"/y\",\"/z\"]}}\n"),
            "{two}"
        );
        let delete = change_lines(&s, &Change::Delete);
        assert_eq!(
            serde_json::from_str::<Value>(delete.trim_end()).unwrap(),
            json!({"delete": {"_id": "a", "if_seq_no": 4, "if_primary_term": 2}})
        );
        assert_eq!(delete.lines().count(), 1);
    }
}
