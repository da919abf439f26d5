//! The HNSW graph's cache file (`hnsw-<index id>.usearch`): a header saying what the graph holds,
//! then the int8 codes' calibration (`quant`) and usearch's own serialization.
//!
//! What it is for: writing the graph atomically, with the index id, generation, document count,
//! parameters and checksum it was written for in its header, so any process — a reader that never
//! writes included — can load it on its own and catch up from its generation; and loading it back
//! only when all of those check out, so that a missing, damaged or foreign file reads as
//! "rebuild", and one newer than the reader's snapshot (a writer just replaced it) as "try again".
//! Saving also drops the tombstones the file has made unneeded, once there are many.
//!
//! What it is not for: building or catching up the graph (`graph`), or correctness of the store:
//! the file only makes opening faster, so failing to write it is recorded, not an error. Files of
//! imgvec before version 2 of the store (no header) are not read: the graph is rebuilt once.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use usearch::Index;

use super::db::{db_error, find_index_by_name, IndexRow};
use super::fsutil::write_atomically;
use super::graph::{ann_error, ann_options, reserve, Ann, AnnStats};
use super::quant::Quantizer;
use super::Shared;
use crate::store::StoreError;

/// Written into the header: a cache file written with other parameters is rebuilt (v1: usearch's
/// own f32 → i8 cast; v2: our centred, scaled codes, the `Quantizer` first in the payload).
const ANN_FORMAT: &str = "usearch-i8-l2sq-v2";
/// The file's first bytes.
const MAGIC: &[u8; 8] = b"IMGVHNSW";
/// Header layout version.
const HEADER_VERSION: u32 = 1;
/// Tombstones kept before a save drops those the saved file has applied: few enough to replay
/// cheaply, many enough that readers seldom have to load the file anew because of it.
const TOMBSTONES_KEPT: i64 = 100_000;

pub(super) fn ann_file(dir: &Path, index_id: i64) -> PathBuf {
    dir.join(format!("hnsw-{index_id}.usearch"))
}

pub(super) fn remove_ann_file(dir: &Path, index_id: i64) {
    let _ = fs::remove_file(ann_file(dir, index_id));
}

/// What a cache file must have been written with to be used.
fn ann_params(row: &IndexRow) -> String {
    format!(
        "{ANN_FORMAT} usearch={} dims={} m={} ef_construction={}",
        usearch::version(),
        row.dims,
        row.hnsw_m,
        row.hnsw_ef_construction
    )
}

/// What the header of a cache file says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    index_id: i64,
    generation: i64,
    doc_count: i64,
    params: String,
    checksum: u64,
}

impl Header {
    fn encode(&self, payload_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.params.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&HEADER_VERSION.to_le_bytes());
        out.extend_from_slice(&self.index_id.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.doc_count.to_le_bytes());
        out.extend_from_slice(&(self.params.len() as u32).to_le_bytes());
        out.extend_from_slice(self.params.as_bytes());
        out.extend_from_slice(&(payload_len as u64).to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// The header and the payload after it, if `bytes` is a whole, intact cache file.
    fn decode(bytes: &[u8]) -> Option<(Header, &[u8])> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(s)
        };
        if take(8)? != MAGIC {
            return None;
        }
        let u32_of = |b: &[u8]| b.try_into().ok().map(u32::from_le_bytes);
        let i64_of = |b: &[u8]| b.try_into().ok().map(i64::from_le_bytes);
        let u64_of = |b: &[u8]| b.try_into().ok().map(u64::from_le_bytes);
        if u32_of(take(4)?)? != HEADER_VERSION {
            return None;
        }
        let index_id = i64_of(take(8)?)?;
        let generation = i64_of(take(8)?)?;
        let doc_count = i64_of(take(8)?)?;
        let params_len = u32_of(take(4)?)? as usize;
        let params = String::from_utf8(take(params_len)?.to_vec()).ok()?;
        let payload_len = usize::try_from(u64_of(take(8)?)?).ok()?;
        let checksum = u64_of(take(8)?)?;
        let payload = take(payload_len)?;
        if at != bytes.len() || checksum64(payload) != checksum {
            return None;
        }
        let header = Header {
            index_id,
            generation,
            doc_count,
            params,
            checksum,
        };
        Some((header, payload))
    }
}

/// FNV-1a over 8-byte words: tells an intact cache file from a damaged or foreign one.
fn checksum64(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

impl Shared {
    /// The graph from the cache file, if the file is there, intact, written for this index with
    /// these parameters, and can be caught up to `row` (or to a later snapshot: see
    /// [`Shared::load_may_succeed_later`]). Read outside any snapshot; its labels are read as of
    /// now, which catching up from the file's generation makes right.
    pub(super) fn load_ann(&self, conn: &Connection, row: &IndexRow) -> Option<Ann> {
        let bytes = fs::read(ann_file(&self.dir, row.id)).ok()?;
        let (header, payload) = Header::decode(&bytes)?;
        if header.index_id != row.id
            || header.params != ann_params(row)
            || header.generation > row.generation
            || header.generation < row.tombstones_after
        {
            return None;
        }
        let (quant, payload) = Quantizer::from_bytes(payload)?;
        let index = Index::new(&ann_options(row, self.cfg.min_ef_search)).ok()?;
        index.load_from_buffer(payload).ok()?;
        if index.dimensions() != row.dims
            || quant.dims() != row.dims
            || i64::try_from(index.size()).ok() != Some(header.doc_count)
        {
            return None;
        }
        let labels = self.read_labels(conn, row.id).ok()?;
        reserve(&index, index.size() + 1, 1).ok()?;
        Some(Ann {
            index_id: row.id,
            index,
            generation: header.generation,
            labels,
            quant,
            unsaved: 0,
        })
    }

    /// The generation the cache file of index `index_id` holds, from its header alone (not the
    /// whole file); `None` if there is no such file or it is not one of ours.
    pub(super) fn file_generation(&self, index_id: i64) -> Option<i64> {
        use std::io::Read;
        let mut head = [0u8; 28];
        fs::File::open(ann_file(&self.dir, index_id))
            .ok()?
            .read_exact(&mut head)
            .ok()?;
        if &head[..8] != MAGIC
            || head[8..12] != HEADER_VERSION.to_le_bytes()
            || i64::from_le_bytes(head[12..20].try_into().ok()?) != index_id
        {
            return None;
        }
        Some(i64::from_le_bytes(head[20..28].try_into().ok()?))
    }

    /// Whether a cache file that could not be used for `row` may be usable from a later snapshot:
    /// its header says it is newer than `row` (a writer saved it after the snapshot began), or older
    /// than the tombstones kept (a writer is replacing it right now).
    pub(super) fn load_may_succeed_later(&self, row: &IndexRow) -> bool {
        // From the header alone: the whole file was just read and found unusable.
        self.file_generation(row.id)
            .is_some_and(|g| g > row.generation || g < row.tombstones_after)
    }

    /// Writes the cache file; a failure is recorded, not returned (the file is only a cache).
    pub(super) fn save_ann(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        stats: &mut AnnStats,
        save_error: &mut Option<String>,
    ) {
        match self.save_graph(conn, graph, stats) {
            Ok(()) => *save_error = None,
            Err(e) => {
                stats.save_failures += 1;
                *save_error = Some(e.to_string());
            }
        }
    }

    /// Writes `graph` to its cache file atomically, with its header, then drops the tombstones it
    /// has applied if many have gathered. The caller holds the write lock; does nothing if the
    /// graph is not that of the index's current generation.
    pub(super) fn save_graph(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        stats: &mut AnnStats,
    ) -> Result<(), StoreError> {
        let Some(row) = find_index_by_name(conn, &self.db_path, &self.cfg.index)? else {
            return Ok(());
        };
        if row.id != graph.index_id || row.generation != graph.generation {
            return Ok(());
        }
        let mut payload = graph.quant.to_bytes();
        let quant_len = payload.len();
        payload.resize(quant_len + graph.index.serialized_length(), 0);
        graph
            .index
            .save_to_buffer(&mut payload[quant_len..])
            .map_err(|e| ann_error("serialize", e))?;
        let header = Header {
            index_id: row.id,
            generation: graph.generation,
            doc_count: graph.index.size() as i64,
            params: ann_params(&row),
            checksum: checksum64(&payload),
        };
        let mut bytes = header.encode(payload.len());
        bytes.extend_from_slice(&payload);
        drop(payload);
        write_atomically(&ann_file(&self.dir, row.id), &bytes)?;
        graph.unsaved = 0;
        stats.saved += 1;
        self.drop_applied_tombstones(conn, &row)
    }

    /// Once more than [`TOMBSTONES_KEPT`] tombstones have gathered, drops those up to the saved
    /// file's generation (which has applied them) and records that no graph older than it can be
    /// caught up any more.
    fn drop_applied_tombstones(&self, conn: &Connection, row: &IndexRow) -> Result<(), StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let kept: i64 = conn
            .query_row(
                "SELECT count(*) FROM tombstones WHERE index_id = ?1",
                params![row.id],
                |r| r.get(0),
            )
            .map_err(db)?;
        if kept <= TOMBSTONES_KEPT {
            return Ok(());
        }
        let tx = conn.unchecked_transaction().map_err(db)?;
        tx.execute(
            "DELETE FROM tombstones WHERE index_id = ?1 AND generation <= ?2",
            params![row.id, row.generation],
        )
        .map_err(db)?;
        tx.execute(
            "UPDATE indexes SET tombstones_after = max(tombstones_after, ?1) WHERE id = ?2",
            params![row.generation, row.id],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_any_damage_is_refused() {
        let header = Header {
            index_id: 3,
            generation: 41,
            doc_count: 1_000,
            params: "usearch-i8-l2sq-v1 dims=8".into(),
            checksum: checksum64(b"payload!"),
        };
        let mut bytes = header.encode(8);
        bytes.extend_from_slice(b"payload!");
        let (back, payload) = Header::decode(&bytes).unwrap();
        assert_eq!((back, payload), (header, &b"payload!"[..]));
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Header::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(Header::decode(&flipped).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Header::decode(&longer).is_none());
    }

    #[test]
    fn the_checksum_sees_one_changed_or_missing_byte() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1_003).collect();
        let sum = checksum64(&bytes);
        assert_eq!(sum, checksum64(&bytes.clone()));
        let mut flipped = bytes.clone();
        flipped[1_001] ^= 1;
        assert_ne!(sum, checksum64(&flipped));
        assert_ne!(sum, checksum64(&bytes[..1_002]));
        let zeros = [0u8; 16];
        assert_ne!(checksum64(&zeros[..8]), checksum64(&zeros));
    }
}
