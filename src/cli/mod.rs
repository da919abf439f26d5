//! Command-line definitions (clap): every flag, its environment variable and its help text.
//!
//! Only parsing lives here; each subcommand's behaviour is in `commands/`. This file holds the
//! top level (`Cli`, `Command`); the flags are in `shared` (groups several commands use), `write`
//! (commands that write the index), `read` (embed and search) and `tools`.

mod read;
mod shared;
mod tools;
mod write;

use clap::{Parser, Subcommand};

pub use read::{
    check_distance, check_score, distance_error, parse_distance, parse_score, score_error,
    ClassifyArgs, DupesArgs, EmbedArgs, EvalArgs, InfoArgs, SearchArgs, ServeArgs,
};
pub use shared::{ClassifyOptions, FollowOptions, ModelArgs, ModelLocation, StoreArgs};
pub use tools::{CompletionsArgs, FetchModelArgs, ManArgs};
pub use write::{CopyArgs, CreateIndexArgs, IngestArgs, PruneArgs, WatchArgs};
/// `--version`: the package version, the git revision it was built from and the enabled features,
/// e.g. `0.1.0 (rev abc1234, features: cpu)` (revision and features come from `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("IMGVEC_GIT_REV"),
    ", features: ",
    env!("IMGVEC_FEATURES"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "imgvec",
    version = VERSION,
    about = "Image vector search: CLIP embeddings of your photos, searchable by image or text",
    long_about = "imgvec turns images into CLIP embeddings (candle, on CPU or GPU) and indexes them in \
an embedded store or in Elasticsearch, then finds similar images by example image or by text.",
    after_help = "Examples:\n  imgvec ingest ~/Pictures/pets --label-from-dir\n  \
imgvec ingest ./train/dogs --label dog\n  imgvec search ./query.jpg -k 10\n  \
imgvec search --text \"a dog running on grass\"\n  imgvec embed photo.jpg --json\n\n\
The model is found in the Hugging Face cache (or --model-dir); vectors go to an embedded store in \
your data directory (--store) unless --es-url / IMGVEC_ES_URL names an Elasticsearch. `imgvec info` \
says which model and store are used."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print CLIP embeddings of images (files or folders) or of a text.
    Embed(EmbedArgs),
    /// Create the index (in the embedded store, or in Elasticsearch with imgvec's mapping).
    CreateIndex(CreateIndexArgs),
    /// Embed every image under the given paths and index it.
    Ingest(IngestArgs),
    /// Find the images most similar to an image or a text.
    Search(SearchArgs),
    /// Find exact copies and near-duplicate images, grouped, with a suggested keeper (never deletes).
    Dupes(DupesArgs),
    /// Label unlabelled images: by their nearest indexed images (kNN vote) or by CLIP's zero-shot classifier.
    Classify(ClassifyArgs),
    /// Measure how good it is: accuracy on labelled test images, or what the approximate index loses (--recall).
    Eval(EvalArgs),
    /// Remove the documents whose file under PATH is gone or has other content now.
    Prune(PruneArgs),
    /// Index what is new under the folders, then follow them: new and changed images indexed, deleted ones removed.
    Watch(WatchArgs),
    /// Copy every document, vectors included, to another store or index (no model needed).
    Copy(CopyArgs),
    /// Show where the index is, how many images it holds and the model that filled it.
    Info(InfoArgs),
    /// Download a checkpoint (CLIP, Chinese-CLIP, SigLIP) from the Hugging Face hub into the Hugging Face cache.
    FetchModel(FetchModelArgs),
    /// Serve a search page and a JSON API (text, example image, "more like this").
    Serve(ServeArgs),
    /// Print a shell completion script (e.g. `imgvec completions bash > ~/.local/share/bash-completion/completions/imgvec`).
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --out DIR.
    Man(ManArgs),
}
