//! Bulk-load mode for `ingest`: when to use it, and a guard that puts the index's settings back on
//! every way out — the normal end, an error (`?`), a panic (unwinding drops the guard), and a second
//! Ctrl-C (the signal task takes the saved settings from the shared [`Slot`] and restores them
//! before exiting). Only a SIGKILL or a crash of the machine leaves the load settings in place; then
//! `imgvec ingest --bulk-load` again and let it finish, or set them back by hand (docs/elasticsearch.md, "Production cluster").
//!
//! Not for: what the settings are (see `store::elastic::load`).

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Mutex;

use crate::store::{SavedSettings, VectorStore};

/// At least this many images found, and an index holding fewer than half as many documents (a
/// first load, not a top-up): bulk-load mode without being asked.
pub const AUTO_BULK_LOAD_IMAGES: usize = 50_000;

/// What to put back, shared between the guard and the Ctrl-C task; empty when nothing is to be
/// put back (never changed, or already restored).
pub type Slot = Arc<Mutex<Option<(Arc<dyn VectorStore>, SavedSettings)>>>;

/// Longest the second Ctrl-C waits for the settings to be put back before exiting anyway.
pub const RESTORE_ON_EXIT_LIMIT: Duration = Duration::from_secs(15);

/// Whether to load in bulk-load mode: asked for, or a first load of many images.
pub fn wanted(asked: bool, found: usize, documents_in_index: Option<u64>) -> bool {
    asked
        || (found >= AUTO_BULK_LOAD_IMAGES
            && documents_in_index.is_some_and(|n| n < (found / 2) as u64))
}

/// Puts the settings back when dropped (or when [`BulkLoad::finish`] is called).
pub struct BulkLoad {
    slot: Slot,
    handle: Handle,
    force_merge: bool,
    quiet: bool,
}

impl BulkLoad {
    /// Switches the store to bulk-load mode and fills `slot`; `None` (with a warning) where the
    /// store has no such mode or refused it (Serverless, or no `manage` privilege): the load then
    /// goes on with the index as it is.
    pub fn begin(
        handle: &Handle,
        store: &Arc<dyn VectorStore>,
        slot: &Slot,
        force_merge: bool,
        quiet: bool,
    ) -> Option<BulkLoad> {
        match handle.block_on(store.begin_bulk_load()) {
            Ok(Some(saved)) => {
                if !quiet {
                    eprintln!("imgvec: bulk-load mode: no replicas and no refresh until the load is done (put back after it, also after Ctrl-C or an error)");
                }
                *slot.blocking_lock() = Some((Arc::clone(store), saved));
                Some(BulkLoad {
                    slot: Arc::clone(slot),
                    handle: handle.clone(),
                    force_merge,
                    quiet,
                })
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("imgvec: warning: bulk-load mode not available ({e}); loading with the index's settings as they are");
                None
            }
        }
    }

    /// Puts the settings back now (and force-merges if asked); errors are reported, not returned.
    pub fn finish(self) {
        self.restore(self.force_merge);
    }

    fn restore(&self, force_merge: bool) {
        let slot = Arc::clone(&self.slot);
        let quiet = self.quiet;
        self.handle.block_on(async move {
            let mut slot = slot.lock().await;
            if let Some((store, saved)) = slot.take() {
                report(
                    store.end_bulk_load(&saved, force_merge).await,
                    force_merge,
                    quiet,
                );
            }
        });
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        // After finish() the slot is empty and this does nothing; on an early exit it restores.
        self.restore(false);
    }
}

/// For the second Ctrl-C: put the settings back (within a limit), then the caller exits.
pub async fn restore_before_exit(slot: &Slot) {
    let mut slot = slot.lock().await;
    if let Some((store, saved)) = slot.take() {
        eprintln!("imgvec: putting the index's settings back before quitting");
        let done = tokio::time::timeout(RESTORE_ON_EXIT_LIMIT, store.end_bulk_load(&saved, false));
        match done.await {
            Ok(result) => report(result, false, true),
            Err(_) => eprintln!(
                "imgvec: warning: the index's settings could not be put back in time: {}",
                saved.0
            ),
        }
    }
}

fn report(result: Result<(), crate::store::StoreError>, force_merge: bool, quiet: bool) {
    match result {
        Ok(()) if !quiet && force_merge => {
            eprintln!("imgvec: index settings put back; force-merge to one segment started")
        }
        Ok(()) if !quiet => eprintln!("imgvec: index settings put back"),
        Ok(()) => {}
        Err(e @ crate::store::StoreError::AfterSettingsRestored { .. }) => {
            eprintln!("imgvec: warning: {e}")
        }
        Err(e) => eprintln!(
            "imgvec: warning: could not put the index's settings back ({e}); set number_of_replicas and refresh_interval again by hand"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_only_for_a_first_load_of_many() {
        assert!(wanted(true, 1, Some(0)));
        assert!(!wanted(false, 1_000, Some(0)));
        assert!(wanted(false, AUTO_BULK_LOAD_IMAGES, Some(0)));
        assert!(
            !wanted(false, AUTO_BULK_LOAD_IMAGES, Some(40_000)),
            "a top-up"
        );
        assert!(!wanted(false, AUTO_BULK_LOAD_IMAGES, None));
    }
}
