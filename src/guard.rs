//! Containing panics: [`guarded`] runs one file's work and turns a panic into that file's
//! one-line failure reason, and a process-wide panic hook keeps such caught panics off the
//! terminal (no message, no backtrace, whatever `RUST_BACKTRACE` says). Panics anywhere else
//! still print as usual.
//!
//! Also the test-only fault point ([`fault_point`]): with `IMGVEC_TEST_PANIC_ON=<file name>` a
//! debug build panics while preparing that file, so tests can prove no file is lost silently.
//!
//! Not for: errors that are not panics (they are `Result`s all the way).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

thread_local! {
    /// Set while this thread runs inside [`guarded`]: its panics are caught and reported.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Installs (once) a panic hook that is silent for panics [`guarded`] will catch and passes
/// every other panic to the hook that was there before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into an error message (a bug in a decoder must fail one file, not the
/// worker thread and every file after it). The panic prints nothing.
pub fn guarded<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    install_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            let what = what.lines().next().unwrap_or_default().to_string();
            Err(format!("internal error while decoding ({what})"))
        }
    }
}

/// Debug builds only: panics when `IMGVEC_TEST_PANIC_ON` names this file (its file name), so the
/// tests can check a panic fails exactly that file. Release builds compile this to nothing.
#[inline]
pub fn fault_point(path: &Path) {
    #[cfg(debug_assertions)]
    if let Some(target) = std::env::var_os("IMGVEC_TEST_PANIC_ON") {
        if path.file_name() == Some(target.as_os_str()) {
            panic!("test fault injected by IMGVEC_TEST_PANIC_ON");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_fails_one_item_with_a_reason() {
        let r: Result<(), String> = guarded(|| panic!("boom\nsecond line"));
        assert_eq!(r, Err("internal error while decoding (boom)".to_string()));
        assert_eq!(guarded(|| Ok(3)), Ok(3));
        // Nested guards restore the outer state.
        let r = guarded(|| {
            let inner: Result<(), String> = guarded(|| panic!("inner"));
            assert!(inner.is_err());
            assert!(GUARDED.with(Cell::get));
            Ok(())
        });
        assert_eq!(r, Ok(()));
        assert!(!GUARDED.with(Cell::get));
    }
}
