//! The flags of the commands that write the index: `create-index`, `ingest`, `prune`, `watch`,
//! `copy`.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::Args;

use super::{FollowOptions, ModelArgs, StoreArgs};

#[derive(Debug, Args)]
pub struct CreateIndexArgs {
    /// Delete the index if it exists, then create it (asks first on a terminal unless --yes).
    #[arg(long)]
    pub recreate: bool,
    /// Do not ask before deleting with --recreate.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// HNSW graph degree `m` (Elasticsearch's default if not set).
    #[arg(long, value_name = "M")]
    pub hnsw_m: Option<u32>,
    /// HNSW `ef_construction` (Elasticsearch's default if not set).
    #[arg(long, value_name = "N")]
    pub hnsw_ef_construction: Option<u32>,
    /// Elasticsearch primary shards (default: the server's, 1). Fixed once the index exists; not
    /// accepted by Elastic Cloud Serverless. Sent only when given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: Option<u32>,
    /// Elasticsearch replicas per shard (default: the server's, 1). Sent only when given.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Image files or folders (recursed; hidden files skipped; non-images recognised by content).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The label stored with every image (the `name` field), e.g. cat.
    #[arg(
        long,
        required_unless_present = "label_from_dir",
        conflicts_with = "label_from_dir"
    )]
    pub label: Option<String>,
    /// Label each image with the name of the folder it is in (./train/cats/x.jpg → cats).
    #[arg(long)]
    pub label_from_dir: bool,
    /// Images per model call [default: 8 on the CPU, 64 on a GPU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: Option<u32>,
    /// Re-embed and overwrite images the index already has.
    #[arg(long)]
    pub force: bool,
    /// Index what decodes of a truncated file (the rest of the picture grey or black) and name
    /// it in the summary as a warning, instead of failing it as the reference pipeline (Pillow)
    /// does.
    #[arg(long)]
    pub allow_truncated: bool,

    /// Take only part I of N (e.g. 2/3), split by content hash: N machines over one shared folder,
    /// each with its own I, ingest disjoint parts whose union is everything.
    #[arg(long, value_name = "I/N", value_parser = crate::pipeline::Shard::parse)]
    pub shard: Option<crate::pipeline::Shard>,
    /// Elasticsearch `_bulk` requests in flight at once (halved while the server answers 429).
    #[arg(long, env = "IMGVEC_BULK_CONCURRENCY", default_value_t = crate::store::elastic::DEFAULT_BULK_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from), value_name = "N")]
    pub bulk_concurrency: usize,
    /// Elasticsearch bulk-load mode: no replicas and no refresh during the load, put back after it
    /// (also after Ctrl-C or an error). Automatic for a first load of 50,000 images or more.
    #[arg(long, conflicts_with = "no_bulk_load")]
    pub bulk_load: bool,
    /// Never use bulk-load mode, even for a large first load.
    #[arg(long)]
    pub no_bulk_load: bool,
    /// After a bulk load, force-merge the index to one segment per shard (faster searches).
    #[arg(long)]
    pub force_merge: bool,
    /// Print nothing but errors and the summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec prune ~/Photos --dry-run\n  imgvec prune ~/Photos/2019 ~/Photos/2020\n\n\
A document is checked by its file's size first, then its modification time; the file is hashed only \
when those cannot tell. Documents outside the given paths are never touched. A changed file's new \
content is indexed by `imgvec ingest`, not by prune."
)]
pub struct PruneArgs {
    /// Folders or files whose documents are checked; each must exist (an unmounted drive is an
    /// error, not a reason to remove everything under it).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Print what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// No progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object: counts and the paths gone, changed and not checkable.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec watch ~/Pictures/pets --label-from-dir\n  imgvec watch ~/Phone --label phone\n\n\
First indexes what is new under the folders and removes what is gone (as `ingest` then `prune`), then \
follows them until Ctrl-C: a new or changed image is indexed once its size stops changing, a deleted or \
moved-away one is removed, one line per change. A watched folder that disappears (an unmounted drive) \
is reported and its documents kept; it is synced again when it is back. On Linux each folder takes one \
inotify watch: past fs.inotify.max_user_watches the folder is polled every 30 s instead, with a \
message saying how to raise the limit."
)]
pub struct WatchArgs {
    /// Folders to follow (each must exist).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub follow: FollowOptions,
    /// Images per model call [default: 8 on the CPU, 64 on a GPU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: Option<u32>,
    /// No progress bar during the first sync.
    #[arg(long, short)]
    pub quiet: bool,
    /// One JSON object per change (`{"change": "indexed"|"removed"|"failed"|..., "path", ...}`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec copy --store ./imgvec-data --to-es-url https://es.example:9200\n  \
imgvec copy --es-url https://old:9200 --index photos --to-es-url https://new:9200 --to-index photos\n  \
imgvec copy --es-url https://es.example:9200 --to-store ./backup\n\n\
The source is the usual --store / --es-url and --index. Target credentials: IMGVEC_TO_ELASTIC_USERNAME \
with IMGVEC_TO_ELASTIC_PASSWORD, or IMGVEC_TO_ELASTIC_API_KEY; when neither is set, the target uses \
ELASTIC_USERNAME / ELASTIC_PASSWORD / ELASTIC_API_KEY like the source. Interrupted? Run the same \
command again: what the target has is not written twice."
)]
pub struct CopyArgs {
    /// Target: an embedded store directory.
    #[arg(
        long,
        env = "IMGVEC_TO_STORE",
        value_name = "DIR",
        required_unless_present = "to_es_url",
        conflicts_with = "to_es_url"
    )]
    pub to_store: Option<PathBuf>,
    /// Target: an Elasticsearch URL.
    #[arg(long, env = "IMGVEC_TO_ES_URL", value_name = "URL")]
    pub to_es_url: Option<String>,
    /// Target index name (default: the source's --index).
    #[arg(long, value_name = "NAME")]
    pub to_index: Option<String>,
    /// PEM CA certificate of the target Elasticsearch.
    #[arg(long, env = "IMGVEC_TO_CA_CERT", value_name = "FILE")]
    pub to_ca_cert: Option<PathBuf>,
    /// Do not verify the target server's TLS certificate (insecure; prints a warning).
    #[arg(long)]
    pub to_insecure: bool,
    /// Documents per page read and per write.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub batch_size: u32,
    /// Stop after writing N documents (run again to go on).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// No progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}
