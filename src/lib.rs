//! imgvec: image vector search with CLIP.
//!
//! ```text
//! files ─walk─▶ paths ─read+decode─▶ RGB ─preprocess─▶ [3,H,W] ─batch─▶ vision tower ─▶ unit vectors ─▶ store
//! query image/text ─same encoder─▶ vector ─▶ store.knn ─▶ hits
//! ```
//! `walk` finds files, `image` decodes them into RGB pixels as Pillow does, `clip` turns pixels and
//! text into vectors, `pipeline` runs the stages in parallel, `store` keeps and searches vectors,
//! `commands` are the subcommands, `cli` their flags.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod clip;
pub mod commands;
pub mod data_dir;
pub mod device;
pub mod dupes;
pub mod eval;
pub mod guard;
pub mod image;
pub mod model_source;
pub mod pipeline;
pub mod prepare;
pub mod progress;
pub mod serve;
pub mod store;
pub mod walk;
pub mod watch;

/// Hands the heap's free memory back to the system (glibc only; a no-op elsewhere).
///
/// [`tune_allocator`] keeps freed blocks for reuse, so what loading a model's weights frees (the
/// copies each layer is packed from) would stay resident for the life of the process: call this
/// once the weights are loaded, before anything large (a store's graph) is.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands the heap's free memory back when it is dropped ([`release_freed_memory`]): the last field
/// of what holds a model's weights, so that it drops after them (a struct's fields drop in the
/// order they are declared) and dropping the model gives its memory back.
#[derive(Debug, Default)]
pub(crate) struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_freed_memory();
    }
}

/// Keeps large freed blocks in the heap for reuse (glibc only).
///
/// The encoder's activations are 30-40 MB each at batch 8: just over glibc's largest automatic mmap
/// threshold (32 MB), so by default every one is a fresh mmap whose pages fault in and are zeroed, and
/// that showed up as a large part of the element-wise time. Call once at start-up; a no-op elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
