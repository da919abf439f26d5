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
use super::fsutil::{append_and_replace, temp_path};
use super::graph::{ann_error, ann_options, Ann, AnnStats};
use super::inserts::reserve;
use super::quant::Quantizer;
use super::Shared;
use crate::store::StoreError;

/// Written into the header: a cache file written with other parameters is rebuilt (v1: usearch's
/// own f32 → i8 cast; v2: our centred, scaled codes; v3: the trailer layout below).
const ANN_FORMAT: &str = "usearch-i8-l2sq-v3";
/// The file's last bytes, and the header's first.
const MAGIC: &[u8; 8] = b"IMGVHNSW";
/// Header layout version.
const HEADER_VERSION: u32 = 2;
/// The trailer's fixed end: the quantizer's and the header's lengths (u64 each), then MAGIC.
const TRAILER_END: u64 = 24;
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
    /// The header block; `payload_len` is the length of the usearch part it describes.
    fn encode(&self, payload_len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.params.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&HEADER_VERSION.to_le_bytes());
        out.extend_from_slice(&self.index_id.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.doc_count.to_le_bytes());
        out.extend_from_slice(&(self.params.len() as u32).to_le_bytes());
        out.extend_from_slice(self.params.as_bytes());
        out.extend_from_slice(&payload_len.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// The header and the usearch part's length, if `bytes` is exactly a whole header block.
    fn decode(bytes: &[u8]) -> Option<(Header, u64)> {
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
        let payload_len = u64_of(take(8)?)?;
        let checksum = u64_of(take(8)?)?;
        if at != bytes.len() {
            return None;
        }
        let header = Header {
            index_id,
            generation,
            doc_count,
            params,
            checksum,
        };
        Some((header, payload_len))
    }
}

/// The header, the quantizer and the usearch part's length from the trailer of the file at
/// `path`; `None` if there is no such file, or its trailer is not one of ours or is damaged.
fn read_trailer(path: &Path) -> Option<(Header, Quantizer, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut end = [0u8; TRAILER_END as usize];
    f.seek(SeekFrom::Start(len.checked_sub(TRAILER_END)?))
        .ok()?;
    f.read_exact(&mut end).ok()?;
    if &end[16..] != MAGIC {
        return None;
    }
    let quant_len = u64::from_le_bytes(end[..8].try_into().ok()?);
    let header_len = u64::from_le_bytes(end[8..16].try_into().ok()?);
    let trailer = quant_len
        .checked_add(header_len)?
        .checked_add(TRAILER_END)?;
    let payload_len = len.checked_sub(trailer)?;
    if quant_len > 1 << 20 || header_len > 1 << 16 {
        return None;
    }
    let mut block = vec![0u8; (quant_len + header_len) as usize];
    f.seek(SeekFrom::Start(payload_len)).ok()?;
    f.read_exact(&mut block).ok()?;
    let (quant, rest) = Quantizer::from_bytes(&block[..quant_len as usize])?;
    let (header, said_len) = Header::decode(&block[quant_len as usize..])?;
    (rest.is_empty() && said_len == payload_len).then_some((header, quant, payload_len))
}

/// The checksum of the first `len` bytes of the file at `path`, read a MiB at a time.
fn checksum_file(path: &Path, len: u64) -> Option<u64> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut sum = Checksum::new(len);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = (left.min(buf.len() as u64)) as usize;
        f.read_exact(&mut buf[..n]).ok()?;
        sum.update(&buf[..n]);
        left -= n as u64;
    }
    Some(sum.0)
}

/// FNV-1a over 8-byte words: tells an intact cache file from a damaged or foreign one.
#[cfg(test)]
fn checksum64(bytes: &[u8]) -> u64 {
    let mut sum = Checksum::new(bytes.len() as u64);
    sum.update(bytes);
    sum.0
}

/// `checksum64` fed a piece at a time.
struct Checksum(u64);

impl Checksum {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// For `len` bytes in all.
    fn new(len: u64) -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325 ^ len)
    }

    /// Feeds `bytes`: every piece but the last must be a whole number of 8-byte words.
    fn update(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.0 = (self.0 ^ u64::from_le_bytes(a)).wrapping_mul(Self::PRIME);
        }
        for &b in words.remainder() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }
}

impl Shared {
    /// The graph from the cache file, if the file is there, intact, written for this index with
    /// these parameters, and can be caught up to `row` (or to a later snapshot: see
    /// [`Shared::load_may_succeed_later`]). Read outside any snapshot; its labels are read as of
    /// now, which catching up from the file's generation makes right.
    pub(super) fn load_ann(&self, conn: &Connection, row: &IndexRow) -> Option<Ann> {
        let path = ann_file(&self.dir, row.id);
        let (header, quant, payload_len) = read_trailer(&path)?;
        if header.index_id != row.id
            || header.params != ann_params(row)
            || header.generation > row.generation
            || header.generation < row.tombstones_after
            || checksum_file(&path, payload_len)? != header.checksum
        {
            return None;
        }
        // usearch reads its part of the file straight into the graph (the trailer after it is
        // not read). A writer may replace the file meanwhile: the trailer must be the same after.
        let index = Index::new(&ann_options(row, self.cfg.min_ef_search)).ok()?;
        index.load(path.to_str()?).ok()?;
        if read_trailer(&path).map(|t| t.0).as_ref() != Some(&header)
            || index.dimensions() != row.dims
            || quant.dims() != row.dims
            || i64::try_from(index.size()).ok() != Some(header.doc_count)
        {
            return None;
        }
        let labels = self.read_labels(conn, row.id, &index).ok()?;
        reserve(&index, index.size() + 1).ok()?;
        Some(Ann::new(row.id, index, header.generation, labels, quant, 0))
    }

    /// The generation the cache file of index `index_id` holds, from its header alone (not the
    /// whole file); `None` if there is no such file or it is not one of ours.
    pub(super) fn file_generation(&self, index_id: i64) -> Option<i64> {
        let (header, _, _) = read_trailer(&ann_file(&self.dir, index_id))?;
        (header.index_id == index_id).then_some(header.generation)
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
        if row.id != graph.index_id || graph.generation > row.generation || graph.adding {
            return Ok(());
        }
        // usearch writes its part straight from the graph (no copy of it in memory), then the
        // trailer; the finished file replaces the old one at once.
        let path = ann_file(&self.dir, row.id);
        let tmp = temp_path(&path);
        let io = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Other(format!("cannot {what} {}: {e}", tmp.display()))
        };
        let tmp_str = tmp.to_str().ok_or_else(|| io("name", &"not UTF-8"))?;
        graph
            .index
            .save(tmp_str)
            .map_err(|e| ann_error("save", e))?;
        let payload_len = fs::metadata(&tmp).map_err(|e| io("read", &e))?.len();
        let checksum = checksum_file(&tmp, payload_len).ok_or_else(|| io("read", &"short"))?;
        let header = Header {
            index_id: row.id,
            generation: graph.generation,
            doc_count: graph.index.size() as i64,
            params: ann_params(&row),
            checksum,
        };
        let quant = graph.quant.to_bytes();
        let head = header.encode(payload_len);
        let mut trailer = quant.clone();
        trailer.extend_from_slice(&head);
        trailer.extend_from_slice(&(quant.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&(head.len() as u64).to_le_bytes());
        trailer.extend_from_slice(MAGIC);
        append_and_replace(&tmp, &trailer, &path)?;
        graph.unsaved = 0;
        stats.saved += 1;
        self.drop_applied_tombstones(conn, &row, graph.generation)
    }

    /// Once more than [`TOMBSTONES_KEPT`] tombstones have gathered, drops those up to the saved
    /// file's generation `saved` (which has applied them) and records that no graph older than it
    /// can be caught up any more.
    fn drop_applied_tombstones(
        &self,
        conn: &Connection,
        row: &IndexRow,
        saved: i64,
    ) -> Result<(), StoreError> {
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
            params![row.id, saved],
        )
        .map_err(db)?;
        tx.execute(
            "UPDATE indexes SET tombstones_after = max(tombstones_after, ?1) WHERE id = ?2",
            params![saved, row.id],
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
            params: "usearch-i8-l2sq-v3 dims=8".into(),
            checksum: checksum64(b"payload!"),
        };
        let bytes = header.encode(8);
        assert_eq!(Header::decode(&bytes), Some((header, 8)));
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Header::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Header::decode(&longer).is_none());
        let mut other_version = bytes.clone();
        other_version[8] ^= 1;
        assert!(Header::decode(&other_version).is_none());
    }

    #[test]
    fn the_checksum_fed_in_pieces_is_the_checksum_of_the_whole() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(3 * 1_024 + 5).collect();
        let mut sum = Checksum::new(bytes.len() as u64);
        for piece in bytes.chunks(1_024) {
            sum.update(piece);
        }
        assert_eq!(sum.0, checksum64(&bytes));
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
