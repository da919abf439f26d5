//! Reading ahead the rows a search is about to re-rank, so that their pages come from the disk
//! several at a time instead of one after another.
//!
//! What it is for: a search's exact re-rank reads its candidates' f32 rows (`num_candidates` of
//! them, 100 by default) one by one on the search's own connection, in its read snapshot. Rows
//! not in the system's page cache each wait for one read from the disk: at a million documents
//! (a 4 GB database, seldom all cached) that was most of a plain search's time (docs/performance.md).
//! Once the search's rows come slower than a cached row would ([`SLOW_ROW`] each, on average, so
//! far), a few threads of this store, each with a read-only connection of its own, look up the
//! rest of them ahead of it (from a shared cursor), which brings their pages into the page cache
//! with [`THREADS`] reads in flight. A search whose rows are cached never wakes them: they would
//! only take the cores from it.
//!
//! What it is not for: any result. The threads read nothing that is used, in whatever snapshot
//! their connection has: the search's own reads stay the only ones that count, and any error here
//! (a connection that cannot open, a row gone) only means that row is read the slow way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

/// Threads (and reads in flight) looking rows up ahead of a search: reads, not CPU work, so more
/// than the cores. Measured at a million documents (docs/performance.md).
const THREADS: usize = 8;

/// Fewer rows than this are not worth waking the threads for.
const MIN_ROWS: usize = 8;

/// A search's rows that came at least this slowly on average (judged once two are read) are not
/// all in the page cache: at a million documents (Zen 3 EPYC, a virtual disk) one read from the
/// disk took about 40 µs, a cached one 5–20 µs (the B-tree's pages above it in the page cache
/// too, but not always in the connection's own).
const SLOW_ROW: Duration = Duration::from_micros(30);

/// Rows a search reads before it judges how fast they come.
const JUDGED_FROM: usize = 2;

/// The rows of one search, and how far the threads have come.
struct Job {
    index_id: i64,
    keys: Vec<i64>,
    next: AtomicUsize,
}

/// The threads of one store (started on first use, gone with the store).
pub(super) struct ReadAhead {
    db_path: PathBuf,
    /// One sender per thread that is still there; `None` until first use (the threads start
    /// once: one that could not open the database is not started again).
    senders: Mutex<Option<Vec<Sender<Arc<Job>>>>>,
    /// Searches that woke the threads.
    woken: AtomicU64,
}

/// Stops the threads' reading for its search when dropped (the search has its rows).
pub(super) struct Ahead(Option<Arc<Job>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(job) = &self.0 {
            job.next.store(job.keys.len(), Relaxed);
        }
    }
}

/// A search reading its rows in order, the read-ahead started for the rest once they come slowly.
pub(super) struct Reading<'a> {
    read_ahead: &'a ReadAhead,
    index_id: i64,
    keys: &'a [u64],
    /// The rows are read in ascending key order, whatever the order of `keys`.
    in_key_order: bool,
    started: Instant,
    ahead: Option<Ahead>,
}

impl Reading<'_> {
    /// The search is about to read row `at` (its `at`-th, from 0).
    pub(super) fn at(&mut self, at: usize) {
        if self.ahead.is_none() {
            self.at_after(at, self.started.elapsed());
        }
    }

    /// [`Self::at`], `elapsed` since the search began reading.
    fn at_after(&mut self, at: usize, elapsed: Duration) {
        if self.ahead.is_some() || at < JUDGED_FROM || elapsed <= SLOW_ROW * at as u32 {
            return;
        }
        // The keys in the order the rows come, made only now that they are needed.
        let mut keys: Vec<i64> = self
            .keys
            .iter()
            .filter_map(|&k| i64::try_from(k).ok())
            .collect();
        if self.in_key_order {
            keys.sort_unstable();
        }
        // A scan may read more rows than it was given keys for.
        keys.drain(..at.min(keys.len()));
        self.ahead = Some(self.read_ahead.rows(self.index_id, keys));
    }
}

impl ReadAhead {
    pub(super) fn new(db_path: PathBuf) -> ReadAhead {
        ReadAhead {
            db_path,
            senders: Mutex::new(None),
            woken: AtomicU64::new(0),
        }
    }

    /// Searches that woke the threads (their rows came slowly) since the store was opened.
    pub(super) fn woken(&self) -> u64 {
        self.woken.load(Relaxed)
    }

    /// A search about to read the rows of `keys` in this order: tell it each row as it comes to it
    /// ([`Reading::at`]).
    pub(super) fn reading<'a>(&'a self, index_id: i64, keys: &'a [u64]) -> Reading<'a> {
        Reading {
            read_ahead: self,
            index_id,
            keys,
            in_key_order: false,
            started: Instant::now(),
            ahead: None,
        }
    }

    /// [`Self::reading`] for a scan that reads the rows of `keys` in ascending key order (a
    /// label's, through its index), `keys` in any order (sorted only if it comes to reading ahead).
    pub(super) fn reading_in_key_order<'a>(
        &'a self,
        index_id: i64,
        keys: &'a [u64],
    ) -> Reading<'a> {
        Reading {
            in_key_order: true,
            ..self.reading(index_id, keys)
        }
    }

    /// Has the rows of `keys` (after the first, which the search reads at once itself) looked up
    /// ahead of a search that reads them in this order, until the returned guard is dropped.
    fn rows(&self, index_id: i64, keys: Vec<i64>) -> Ahead {
        if keys.len() < MIN_ROWS {
            return Ahead(None);
        }
        let job = Arc::new(Job {
            index_id,
            keys,
            next: AtomicUsize::new(1),
        });
        self.woken.fetch_add(1, Relaxed);
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        // A thread that is gone (it could not open its connection) drops out.
        senders
            .get_or_insert_with(|| self.start())
            .retain(|tx| tx.send(Arc::clone(&job)).is_ok());
        Ahead(Some(job))
    }

    fn start(&self) -> Vec<Sender<Arc<Job>>> {
        (0..THREADS)
            .filter_map(|i| {
                let (tx, rx) = channel();
                let path = self.db_path.clone();
                std::thread::Builder::new()
                    .name(format!("imgvec-read-ahead-{i}"))
                    .spawn(move || read_ahead(&path, &rx))
                    .ok()
                    .map(|_| tx)
            })
            .collect()
    }
}

/// One thread: for each search sent, looks up its rows from the shared cursor until none are
/// left; ends when the store is gone (or if it cannot open the database).
fn read_ahead(path: &std::path::Path, jobs: &Receiver<Arc<Job>>) {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = Connection::open_with_flags(path, flags) else {
        return;
    };
    // Its own page cache holds nothing worth keeping: the pages are for the search's connection,
    // by way of the system's cache.
    if conn.execute_batch("PRAGMA cache_size = -64").is_err() {
        return;
    }
    // The vector itself: at more than about 1,000 dimensions its end is on an overflow page.
    let Ok(mut stmt) = conn.prepare("SELECT vector FROM docs WHERE key = ?1 AND index_id = ?2")
    else {
        return;
    };
    while let Ok(job) = jobs.recv() {
        loop {
            let at = job.next.fetch_add(1, Relaxed);
            let Some(&key) = job.keys.get(at) else {
                break;
            };
            let _ = stmt.query_row(params![key, job.index_id], |_| Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with `n` rows of index 1 (keys 1..=n), as the store's `docs` has them.
    fn database(n: i64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE docs (key INTEGER PRIMARY KEY, index_id INTEGER, vector BLOB)",
        )
        .unwrap();
        for key in 1..=n {
            conn.execute(
                "INSERT INTO docs VALUES (?1, 1, ?2)",
                params![key, vec![7u8; 3072]],
            )
            .unwrap();
        }
        (dir, path)
    }

    /// Waits until the threads have taken every row of `ahead`'s search (not the guard: it is
    /// still held).
    fn all_taken(ahead: &Ahead) -> bool {
        let job = ahead.0.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while job.next.load(Relaxed) < job.keys.len() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    #[test]
    fn the_threads_look_up_every_row_of_each_search() {
        let (_dir, path) = database(300);
        let read_ahead = ReadAhead::new(path);
        assert!(
            read_ahead.rows(1, vec![1, 2, 3]).0.is_none(),
            "too few to wake them"
        );
        for round in 0..3i64 {
            let keys: Vec<i64> = (1..=100).map(|k| (k * 3 + round) % 300 + 1).collect();
            let ahead = read_ahead.rows(1, keys);
            assert!(all_taken(&ahead), "round {round}");
        }
        let senders = read_ahead.senders.lock().unwrap();
        assert_eq!(
            senders.as_ref().map(Vec::len),
            Some(THREADS),
            "all threads still there"
        );
    }

    #[test]
    fn only_a_search_whose_rows_come_slowly_wakes_them() {
        let (_dir, path) = database(300);
        let read_ahead = ReadAhead::new(path);
        let keys: Vec<u64> = (1..=100).collect();
        let mut fast = read_ahead.reading(1, &keys);
        for at in 0..keys.len() {
            fast.at_after(at, Duration::from_micros(3) * at as u32);
        }
        assert!(fast.ahead.is_none());
        assert!(
            read_ahead.senders.lock().unwrap().is_none(),
            "no thread started"
        );
        let mut slow = read_ahead.reading(1, &keys);
        slow.at(0);
        std::thread::sleep(SLOW_ROW * 3);
        slow.at(1);
        assert!(slow.ahead.is_none(), "judged from the third row");
        slow.at(2);
        slow.at(3);
        let ahead = slow.ahead.as_ref().expect("started at the third row");
        assert_eq!(
            ahead.0.as_ref().unwrap().keys,
            (3..=100).collect::<Vec<i64>>()
        );
        assert!(all_taken(ahead));
    }

    #[test]
    fn a_scan_in_key_order_reads_ahead_in_key_order() {
        let (_dir, path) = database(300);
        let read_ahead = ReadAhead::new(path);
        let keys: Vec<u64> = (1..=100).rev().collect();
        let mut scan = read_ahead.reading_in_key_order(1, &keys);
        scan.at_after(2, SLOW_ROW * 10);
        let ahead = scan.ahead.as_ref().expect("started at the third row");
        assert_eq!(
            ahead.0.as_ref().unwrap().keys,
            (3..=100).collect::<Vec<i64>>()
        );
        assert!(all_taken(ahead));
    }

    #[test]
    fn a_scan_past_its_keys_reads_nothing_ahead() {
        let (_dir, path) = database(10);
        let read_ahead = ReadAhead::new(path);
        let keys: Vec<u64> = (1..=3).collect();
        let mut scan = read_ahead.reading(1, &keys);
        scan.at_after(5, SLOW_ROW * 10);
        assert!(scan.ahead.as_ref().is_some_and(|a| a.0.is_none()));
        assert_eq!(read_ahead.woken(), 0);
    }

    #[test]
    fn threads_that_cannot_open_the_database_drop_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let read_ahead = ReadAhead::new(dir.path().join("missing.sqlite3"));
        let keys: Vec<i64> = (1..=20).collect();
        // The threads end at once: the searches' guards only stop what nobody does.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            drop(read_ahead.rows(1, keys.clone()));
            let left = read_ahead.senders.lock().unwrap().as_ref().map(Vec::len);
            if left == Some(0) {
                break;
            }
            assert!(Instant::now() < deadline, "{left:?} threads left");
            std::thread::sleep(Duration::from_millis(5));
        }
        // And they are not started again.
        drop(read_ahead.rows(1, keys.clone()));
        assert_eq!(
            read_ahead.senders.lock().unwrap().as_ref().map(Vec::len),
            Some(0)
        );
    }
}
