//! Where the embedded store lives when `--store` / `IMGVEC_STORE` do not say: the platform's data
//! directory for imgvec (`$XDG_DATA_HOME/imgvec`, else `~/.local/share/imgvec` on Linux;
//! `~/Library/Application Support/imgvec` on macOS; `%APPDATA%\imgvec\data` on Windows), so that every
//! command finds the same store from any directory.
//!
//! Not for: opening or creating the store (that is `store::local`), nor the model's location (that is
//! `model_source`).

use std::path::{Path, PathBuf};

/// The store directory: the one given, else the platform's data directory for imgvec.
pub fn store_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => default_store_dir(),
    }
}

/// The platform's data directory for imgvec; an error when the platform has none (no home directory).
pub fn default_store_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "imgvec")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell where to keep the embedded store: no home directory (HOME is unset). \
Choose a directory with --store DIR or IMGVEC_STORE"
            )
        })
}
