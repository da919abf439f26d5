//! The local store's SQLite database: schema, opening and checking it, the rows of `indexes`, and
//! how vectors are kept in `docs`.
//!
//! What it is for: everything that knows table and column names below the store's operations —
//! creating the schema in a new file, refusing foreign or newer files, reading and writing index
//! rows, encoding vectors as little-endian f32 BLOBs and reading them back checked, and wording
//! database errors so they name the file and say what to do.
//!
//! What it is not for: the transactions of the store's operations (`records`), the HNSW graph
//! (`graph`) or search (`search`).

use std::fs;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::{DEFAULT_HNSW_EF_CONSTRUCTION, DEFAULT_HNSW_M, SIMILARITY};
use crate::store::{ImageDoc, IndexSpec, ModelRecord, StoreError};

/// `PRAGMA application_id` of an imgvec store database ("imgv"): tells it from other SQLite files.
const APPLICATION_ID: i32 = 0x696d_6776;
/// `PRAGMA user_version` of the schema below. Version 2 added `tombstones` and
/// `indexes.tombstones_after` (deletions that readers' graphs must replay); a version-1 store is
/// upgraded in place when opened, and an older imgvec then refuses the store instead of deleting
/// documents without telling the readers. Version 3 added `doc_paths` (the other paths of a
/// content seen at several); an older imgvec would delete such a document with its first path.
const SCHEMA_VERSION: i32 = 3;

const SCHEMA: &str = "
CREATE TABLE indexes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dims INTEGER NOT NULL,
    similarity TEXT NOT NULL,
    hnsw_m INTEGER NOT NULL,
    hnsw_ef_construction INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    doc_count INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    tombstones_after INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    index_id INTEGER NOT NULL REFERENCES indexes(id),
    id TEXT NOT NULL,
    label TEXT NOT NULL,
    path TEXT NOT NULL,
    vector BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    model TEXT NOT NULL,
    indexed_at_ms INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    mtime_ms INTEGER,
    UNIQUE (index_id, id)
);
CREATE INDEX docs_by_label ON docs(index_id, label);
CREATE INDEX docs_by_generation ON docs(index_id, generation);
CREATE TABLE ann_cache (
    index_id INTEGER PRIMARY KEY REFERENCES indexes(id),
    generation INTEGER NOT NULL,
    doc_count INTEGER NOT NULL,
    file_len INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    params TEXT NOT NULL
);
";

/// The keys of deleted documents, by the generation that deleted them (schema 2).
const TOMBSTONES: &str = "
CREATE TABLE tombstones (
    index_id INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    key INTEGER NOT NULL,
    PRIMARY KEY (index_id, generation, key)
) WITHOUT ROWID;
";

/// The paths of a document besides `docs.path` (its first), each with its file's modification
/// time when known (schema 3).
const DOC_PATHS: &str = "
CREATE TABLE doc_paths (
    index_id INTEGER NOT NULL,
    key INTEGER NOT NULL,
    path TEXT NOT NULL,
    mtime_ms INTEGER,
    PRIMARY KEY (index_id, key, path)
) WITHOUT ROWID;
CREATE INDEX doc_paths_by_path ON doc_paths(index_id, path);
";

/// The model that filled each index (`ModelRecord` as JSON). Additive like `docs.mtime_ms`, so
/// the schema version stays: stores made before it get the table, empty, when opened.
const INDEX_MODELS: &str = "
CREATE TABLE IF NOT EXISTS index_models (
    index_id INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
";

/// What a version-1 store gets to become version 2 (see [`SCHEMA_VERSION`]), besides
/// [`TOMBSTONES`].
const UPGRADE_1_TO_2: &str =
    "ALTER TABLE indexes ADD COLUMN tombstones_after INTEGER NOT NULL DEFAULT 0;";

/// One row of `indexes`.
#[derive(Debug, Clone)]
pub(super) struct IndexRow {
    pub(super) id: i64,
    pub(super) dims: usize,
    pub(super) similarity: String,
    pub(super) hnsw_m: u32,
    pub(super) hnsw_ef_construction: u32,
    pub(super) generation: i64,
    pub(super) doc_count: i64,
    /// Deletions up to this generation have no tombstones left: a graph older than it cannot be
    /// caught up and is loaded anew.
    pub(super) tombstones_after: i64,
}

/// Opens the database, creating the schema in a new one and refusing anything not an imgvec store.
pub(super) fn open_db(path: &Path) -> Result<Connection, StoreError> {
    if let Ok(m) = fs::metadata(path) {
        if !m.is_file() {
            return Err(StoreError::Other(format!(
                "{} should be the store's database but is not a file: move it away or use another --store",
                path.display()
            )));
        }
    }
    let db = |e| db_error(path, e);
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    // Switching a new file to WAL needs it to itself for a moment, and SQLite answers "busy"
    // at once rather than through the busy timeout when another process is creating the same
    // store: wait for that here.
    let started = std::time::Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && started.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(db)?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(format!(
            "{}: cannot switch the database to WAL mode (it stays in {mode} mode)",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(db)?;
    create_or_check_schema(&conn, path)?;
    Ok(conn)
}

/// Creates the schema in an empty database; otherwise checks that it is an imgvec store of a
/// schema this build reads.
fn create_or_check_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let db = |e| db_error(path, e);
    // The three from one snapshot: read one at a time, they could straddle another process's
    // creation of the schema (its ids not yet set, its tables there) and look like another
    // program's database.
    conn.execute_batch("BEGIN").map_err(db)?;
    let read = (|| -> rusqlite::Result<(i32, i32, i64)> {
        Ok((
            conn.query_row("PRAGMA application_id", [], |r| r.get(0))?,
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?,
        ))
    })();
    let ended = conn.execute_batch("COMMIT");
    let (app, version, objects) = read.map_err(db)?;
    ended.map_err(db)?;
    match (app, version) {
        (0, 0) if objects == 0 => {
            if !create_schema(conn, path)? {
                // Another process made it meanwhile: check what it made.
                return create_or_check_schema(conn, path);
            }
        }
        (APPLICATION_ID, SCHEMA_VERSION) => {
            add_mtime_column(conn, path)?;
            add_models_table(conn, path)?;
        }
        (APPLICATION_ID, 1 | 2) => {
            add_mtime_column(conn, path)?;
            upgrade(conn, path)?;
            add_models_table(conn, path)?;
        }
        (APPLICATION_ID, v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Other(format!(
                "{} was written by a newer imgvec (schema {v}, this one reads {SCHEMA_VERSION}): upgrade imgvec",
                path.display()
            )))
        }
        (APPLICATION_ID, v) => {
            return Err(StoreError::Other(format!(
                "{} has an unknown imgvec schema version {v}",
                path.display()
            )))
        }
        _ => {
            return Err(StoreError::Other(format!(
                "{} is an SQLite database of another program, not an imgvec store: move it away or use another --store",
                path.display()
            )))
        }
    }
    Ok(())
}

/// Stores made before `docs.mtime_ms` existed get the column, empty (unknown: `prune` then hashes
/// those files). Additive, so the schema version stays: an older imgvec still reads the file.
fn add_mtime_column(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let db = |e| db_error(path, e);
    let has: bool = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('docs') WHERE name = 'mtime_ms'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(db)?
        > 0;
    if !has {
        conn.execute_batch("ALTER TABLE docs ADD COLUMN mtime_ms INTEGER")
            .map_err(db)?;
    }
    Ok(())
}

/// Stores made before `index_models` existed get the table (see [`INDEX_MODELS`]).
fn add_models_table(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let has: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'index_models'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| db_error(path, e))?
        > 0;
    if !has {
        conn.execute_batch(INDEX_MODELS)
            .map_err(|e| db_error(path, e))?;
    }
    Ok(())
}

/// Creates the schema in an empty database, under SQLite's write lock; `false` if the database
/// was no longer empty once the lock was had (another process opening a new store at the same
/// moment made it).
fn create_schema(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    let db = |e| db_error(path, e);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let objects: rusqlite::Result<i64> =
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0));
    let created = match objects {
        Ok(0) => conn
            .execute_batch(&format!(
                "{SCHEMA} {TOMBSTONES} {DOC_PATHS} {INDEX_MODELS} PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map(|()| true),
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    match created.and_then(|c| conn.execute_batch("COMMIT").map(|()| c)) {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(db(e))
        }
    }
}

/// Upgrades a version-1 or -2 store to the current version, once even if several processes open
/// it at once.
fn upgrade(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let db = |e| db_error(path, e);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let version: i32 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(db(e));
        }
    };
    let upgraded = match version {
        1 => conn.execute_batch(&format!(
            "{UPGRADE_1_TO_2} {TOMBSTONES} {DOC_PATHS} PRAGMA user_version = {SCHEMA_VERSION};"
        )),
        2 => conn.execute_batch(&format!(
            "{DOC_PATHS} PRAGMA user_version = {SCHEMA_VERSION};"
        )),
        _ => Ok(()),
    };
    match upgraded.and_then(|()| conn.execute_batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(db(e))
        }
    }
}

/// A database error, naming the file and saying what to do where that is clear.
pub(super) fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            " (the file is not an SQLite database: move it away or use another --store)"
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            " (the database is damaged: restore it from a backup, or re-ingest into another --store)"
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            " (another program is using the database)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            " (no permission to write there)"
        }
        Some(ErrorCode::CannotOpen) => " (cannot open the file: check the path and permissions)",
        _ => "",
    };
    StoreError::Other(format!("store database {}: {e}{hint}", path.display()))
}

/// The `indexes` row of index `name`, if there is one.
pub(super) fn find_index_by_name(
    conn: &Connection,
    db_path: &Path,
    name: &str,
) -> Result<Option<IndexRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, dims, similarity, hnsw_m, hnsw_ef_construction, generation, doc_count,
                 tombstones_after
             FROM indexes WHERE name = ?1",
        )
        .map_err(|e| db_error(db_path, e))?;
    stmt.query_row(params![name], |r| {
        Ok(IndexRow {
            id: r.get(0)?,
            dims: r.get::<_, i64>(1)?.max(0) as usize,
            similarity: r.get(2)?,
            hnsw_m: r.get::<_, i64>(3)?.clamp(2, 1_024) as u32,
            hnsw_ef_construction: r.get::<_, i64>(4)?.clamp(1, 100_000) as u32,
            generation: r.get(5)?,
            doc_count: r.get(6)?,
            tombstones_after: r.get(7)?,
        })
    })
    .optional()
    .map_err(|e| db_error(db_path, e))
}

pub(super) fn insert_index(
    conn: &Connection,
    name: &str,
    spec: &IndexSpec,
) -> rusqlite::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    conn.execute(
        "INSERT INTO indexes (name, dims, similarity, hnsw_m, hnsw_ef_construction, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            name,
            spec.dims as i64,
            SIMILARITY,
            spec.hnsw_m.unwrap_or(DEFAULT_HNSW_M).max(2),
            spec.hnsw_ef_construction
                .unwrap_or(DEFAULT_HNSW_EF_CONSTRUCTION)
                .max(1),
            now
        ],
    )?;
    if let Some(model) = &spec.model {
        let index_id = conn.last_insert_rowid();
        insert_model(conn, index_id, model)?;
    }
    Ok(())
}

/// Records `model` for the index `index_id` unless one is recorded already.
pub(super) fn insert_model(
    conn: &Connection,
    index_id: i64,
    model: &ModelRecord,
) -> rusqlite::Result<()> {
    write_model(conn, index_id, model, "DO NOTHING")
}

/// Records `model` for the index `index_id`, in place of any record there.
pub(super) fn replace_model(
    conn: &Connection,
    index_id: i64,
    model: &ModelRecord,
) -> rusqlite::Result<()> {
    write_model(
        conn,
        index_id,
        model,
        "DO UPDATE SET record = excluded.record",
    )
}

fn write_model(
    conn: &Connection,
    index_id: i64,
    model: &ModelRecord,
    on_conflict: &str,
) -> rusqlite::Result<()> {
    let record = serde_json::to_string(model)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        &format!(
            "INSERT INTO index_models (index_id, record) VALUES (?1, ?2)
             ON CONFLICT (index_id) {on_conflict}"
        ),
        params![index_id, record],
    )?;
    Ok(())
}

/// The model recorded for the index `index_id`, if any; a record that does not parse is an error
/// naming the database.
pub(super) fn find_model(
    conn: &Connection,
    db_path: &Path,
    index_id: i64,
) -> Result<Option<ModelRecord>, StoreError> {
    let record: Option<String> = conn
        .query_row(
            "SELECT record FROM index_models WHERE index_id = ?1",
            params![index_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_error(db_path, e))?;
    record
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                StoreError::Other(format!(
                    "store database {}: the model recorded for index {index_id} is unreadable ({e}): recreate the index",
                    db_path.display()
                ))
            })
        })
        .transpose()
}

pub(super) fn delete_index_rows(conn: &Connection, index_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM docs WHERE index_id = ?1", params![index_id])?;
    conn.execute(
        "DELETE FROM doc_paths WHERE index_id = ?1",
        params![index_id],
    )?;
    conn.execute(
        "DELETE FROM tombstones WHERE index_id = ?1",
        params![index_id],
    )?;
    conn.execute(
        "DELETE FROM ann_cache WHERE index_id = ?1",
        params![index_id],
    )?;
    conn.execute(
        "DELETE FROM index_models WHERE index_id = ?1",
        params![index_id],
    )?;
    conn.execute("DELETE FROM indexes WHERE id = ?1", params![index_id])?;
    Ok(())
}

pub(super) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

pub(super) fn blob_to_vector(blob: &[u8], dims: usize) -> Option<Vec<f32>> {
    if blob.len() != dims * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// The vector in column `col` of a row, checked: a BLOB of `dims` little-endian f32s. `what` names
/// the row in errors ("row 12", "document ab…").
pub(super) fn vector_at(
    db_path: &Path,
    r: &rusqlite::Row<'_>,
    col: usize,
    dims: usize,
    what: &str,
) -> Result<Vec<f32>, StoreError> {
    let blob = r
        .get_ref(col)
        .map_err(|e| db_error(db_path, e))?
        .as_blob()
        .map_err(|e| {
            StoreError::Other(format!(
                "local store database {}: {what} has no vector: {e}",
                db_path.display()
            ))
        })?;
    blob_to_vector(blob, dims).ok_or_else(|| {
        StoreError::Other(format!(
            "local store database {}: the vector of {what} has {} bytes, expected {}",
            db_path.display(),
            blob.len(),
            dims * 4
        ))
    })
}

/// One `(key, label, vector)` row of a `SELECT key, label, vector` query, checked.
pub(super) fn vector_row(
    db_path: &Path,
    r: &rusqlite::Row<'_>,
    dims: usize,
) -> Result<(u64, String, Vec<f32>), StoreError> {
    let db = |e| db_error(db_path, e);
    let key: i64 = r.get(0).map_err(db)?;
    let label: String = r.get(1).map_err(db)?;
    let vector = vector_at(db_path, r, 2, dims, &format!("row {key}"))?;
    Ok((key as u64, label, vector))
}

/// The columns [`doc_row`] reads, in its order.
pub(super) const DOC_COLUMNS: &str =
    "id, label, path, vector, bytes, width, height, model, indexed_at_ms, mtime_ms,
     (SELECT group_concat(p.path, char(0)) FROM doc_paths p
      WHERE p.index_id = docs.index_id AND p.key = docs.key)";

/// A document's other paths from the `group_concat` of [`DOC_COLUMNS`] (NUL cannot be in a
/// path), sorted.
pub(super) fn split_paths(joined: Option<String>) -> Vec<String> {
    let mut paths: Vec<String> = joined
        .map(|j| j.split('\0').map(str::to_string).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// One whole document from a `SELECT` of [`DOC_COLUMNS`], vector checked.
pub(super) fn doc_row(
    db_path: &Path,
    r: &rusqlite::Row<'_>,
    dims: usize,
) -> Result<ImageDoc, StoreError> {
    let db = |e| db_error(db_path, e);
    let id: String = r.get(0).map_err(db)?;
    let vector = vector_at(db_path, r, 3, dims, &format!("document {id}"))?;
    Ok(ImageDoc {
        label: r.get(1).map_err(db)?,
        path: r.get(2).map_err(db)?,
        vector,
        bytes: u64::try_from(r.get::<_, i64>(4).map_err(db)?).unwrap_or(0),
        width: u32::try_from(r.get::<_, i64>(5).map_err(db)?).unwrap_or(0),
        height: u32::try_from(r.get::<_, i64>(6).map_err(db)?).unwrap_or(0),
        model: r.get(7).map_err(db)?,
        indexed_at_ms: u64::try_from(r.get::<_, i64>(8).map_err(db)?).unwrap_or(0),
        mtime_ms: r
            .get::<_, Option<i64>>(9)
            .map_err(db)?
            .and_then(|m| u64::try_from(m).ok()),
        other_paths: split_paths(r.get(10).map_err(db)?),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_blobs_and_a_wrong_length_is_refused() {
        let v = [0.5f32, -1.25, 3.0e-7, f32::MAX];
        let blob = vector_to_blob(&v);
        assert_eq!(blob.len(), 16);
        assert_eq!(blob_to_vector(&blob, 4).unwrap(), v);
        assert!(blob_to_vector(&blob, 3).is_none());
        assert!(blob_to_vector(&blob[..15], 4).is_none());
    }
}
