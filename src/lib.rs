//! imgvec: image vector search with CLIP.
//!
//! ```text
//! files ─walk─▶ paths ─read+decode─▶ RGB ─preprocess─▶ [3,H,W] ─batch─▶ vision tower ─▶ unit vectors ─▶ store
//! query image/text ─same encoder─▶ vector ─▶ store.knn ─▶ hits
//! ```
//! `walk` finds files, `clip` turns pixels and text into vectors, `pipeline` runs the stages in
//! parallel, `store` keeps and searches vectors, `commands` are the subcommands, `cli` their flags.

pub mod cli;
pub mod clip;
pub mod commands;
pub mod device;
pub mod pipeline;
pub mod store;
pub mod walk;
