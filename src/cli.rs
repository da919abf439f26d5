//! Command-line definitions (clap): every flag, its environment variable and its help text.
//!
//! Only parsing lives here; each subcommand's behaviour is in `commands/`.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::device::{DeviceChoice, Precision};
use crate::model_source::DEFAULT_REPO;

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
    /// Show where the index is and how many images it holds.
    Info(InfoArgs),
    /// Download a CLIP checkpoint from the Hugging Face hub into the Hugging Face cache.
    FetchModel(FetchModelArgs),
    /// Serve a search page and a JSON API (text, example image, "more like this").
    Serve(ServeArgs),
    /// Print a shell completion script (e.g. `imgvec completions bash > ~/.local/share/bash-completion/completions/imgvec`).
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --out DIR.
    Man(ManArgs),
}

/// Which model: a checkpoint directory, or a hub repository found in the Hugging Face cache or in
/// ./models (see `model_source`).
#[derive(Debug, Clone, Args)]
pub struct ModelLocation {
    /// CLIP checkpoint directory (config.json, model.safetensors, tokenizer.json); when given, used
    /// as is, and --model is not looked up.
    #[arg(long, env = "IMGVEC_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Hugging Face repository of the model, looked up in the Hugging Face cache (HF_HUB_CACHE,
    /// HF_HOME, ~/.cache/huggingface/hub), then in ./models/NAME.
    #[arg(
        long = "model",
        env = "IMGVEC_MODEL",
        default_value = DEFAULT_REPO,
        value_name = "REPO"
    )]
    pub repo: String,
}

/// Where the model is and what runs it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    #[command(flatten)]
    pub location: ModelLocation,
    /// Device for the model: auto picks a GPU when the build has one and it is present.
    #[arg(long, env = "IMGVEC_DEVICE", value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's weights and activations in this precision (embeddings always come out as f32).
    /// f16 and bf16 need a GPU [default: f32 on the CPU, f16 on a GPU].
    #[arg(long, env = "IMGVEC_PRECISION", value_enum)]
    pub precision: Option<Precision>,
    /// Apply no EXIF orientation (by default photos are turned upright as a viewer shows them;
    /// Hugging Face's processor ignores the tag).
    #[arg(long)]
    pub ignore_exif_orientation: bool,
}

impl ModelArgs {
    /// How images are decoded for this model run (`allow_truncated` from the command's flag).
    pub fn decode_options(&self, allow_truncated: bool) -> crate::image::DecodeOptions {
        crate::image::DecodeOptions {
            apply_exif_orientation: !self.ignore_exif_orientation,
            allow_truncated,
        }
    }
}

/// Where the vectors are kept: the embedded store in a local directory (default), or Elasticsearch
/// when a URL is given. Elasticsearch credentials come from the environment only (never a flag, so
/// they do not show in `ps`): ELASTIC_USERNAME (default `elastic`) with ELASTIC_PASSWORD, or
/// ELASTIC_API_KEY.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Embedded store directory, used when no Elasticsearch URL is given [default: imgvec's data
    /// directory, ~/.local/share/imgvec on Linux, ~/Library/Application Support/imgvec on macOS].
    #[arg(long, env = "IMGVEC_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Elasticsearch URL, e.g. https://localhost:9200 or an Elastic Cloud endpoint. Without it the
    /// embedded store is used.
    #[arg(long, env = "IMGVEC_ES_URL", value_name = "URL")]
    pub es_url: Option<String>,
    /// Elastic Cloud ID of a deployment (its page in the Cloud console shows it), instead of
    /// --es-url; an --es-url given too wins.
    #[arg(long, env = "ELASTIC_CLOUD_ID", value_name = "ID")]
    pub cloud_id: Option<String>,
    /// Index name.
    #[arg(
        long,
        env = "IMGVEC_INDEX",
        default_value = "imgvec",
        value_name = "NAME"
    )]
    pub index: String,
    /// PEM CA certificate to trust (the http_ca.crt Elasticsearch 8 generates).
    #[arg(long, env = "IMGVEC_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate: any certificate, for any host name, is accepted
    /// (insecure, for diagnosis; prints a warning). Refused together with --ca-cert.
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for each request.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Times a request that failed for a passing reason (connection, 429, 5xx) is retried, with
    /// exponential backoff and jitter.
    #[arg(
        long,
        env = "IMGVEC_ES_MAX_RETRIES",
        default_value_t = crate::store::elastic::DEFAULT_MAX_RETRIES,
        value_name = "N"
    )]
    pub max_retries: u32,
}

impl StoreArgs {
    /// The Elasticsearch URL: --es-url, else the one --cloud-id stands for; `None`: the embedded
    /// store.
    pub fn elastic_url(&self) -> Result<Option<String>, crate::store::StoreError> {
        match (&self.es_url, &self.cloud_id) {
            (Some(url), _) if !url.trim().is_empty() => Ok(Some(url.clone())),
            (_, Some(id)) if !id.trim().is_empty() => {
                crate::store::elastic::cloud_id_url(id).map(Some)
            }
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files or folders (recursed). Not with --text.
    #[arg(
        value_name = "PATH",
        required_unless_present = "text",
        conflicts_with = "text"
    )]
    pub paths: Vec<PathBuf>,
    /// Embed this text instead of images.
    #[arg(long)]
    pub text: Option<String>,
    /// One JSON object per line: {"path": ..., "embedding": [...]} (or {"text": ...}).
    #[arg(long)]
    pub json: bool,
    /// Images per model call [default: 8 on the CPU, 64 on a GPU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: Option<u32>,
    /// Index what decodes of a truncated file (the rest of the picture grey or black) and name
    /// it in the summary as a warning, instead of failing it as the reference pipeline (Pillow)
    /// does.
    #[arg(long)]
    pub allow_truncated: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

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
pub struct SearchArgs {
    /// Query image. Optional with --text (then image and text are combined).
    #[arg(value_name = "IMAGE", required_unless_present = "text")]
    pub image: Option<PathBuf>,
    /// Query text, e.g. "a dog running on grass". Repeat to combine several.
    #[arg(long)]
    pub text: Vec<String>,
    /// Text to steer away from (subtracted), e.g. --text cat --minus indoors.
    #[arg(long)]
    pub minus: Vec<String>,
    /// Number of results.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub k: u32,
    /// Candidates examined per shard (default max(100, 10·k), at most 10000).
    #[arg(long, value_name = "N")]
    pub num_candidates: Option<u32>,
    /// Only results with this label (applied inside the kNN search).
    #[arg(long)]
    pub label: Option<String>,
    /// One JSON object per hit per line: rank, score, distance, id, label, path.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// How images are classified (shared by `classify` and `eval`).
#[derive(Debug, Clone, Args)]
pub struct ClassifyOptions {
    /// Neighbours that vote (kNN).
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub k: u32,
    /// Zero-shot prompt, one per label in the index; {label} is replaced by the label.
    #[arg(long, default_value = crate::eval::zero_shot::DEFAULT_TEMPLATE, value_name = "TEXT")]
    pub template: String,
    /// Images per model call [default: 8 on the CPU, 64 on a GPU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: Option<u32>,
    /// No progress bar or messages, only results and errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec classify ./unsorted\n  imgvec classify photo.jpg -k 20 --json\n  \
imgvec classify ./unsorted --zero-shot --template \"a photo of my {label}\"\n\n\
kNN: the k nearest indexed images vote, each with weight 1/(1+d²); the largest total wins (a tie goes \
to the nearest neighbour's label); confidence = winning weight / total weight. Zero-shot: softmax over \
exp(logit_scale)·cos(image, prompt) for one prompt per label in the index, logit_scale from the checkpoint."
)]
pub struct ClassifyArgs {
    /// Image files or folders (recursed).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// CLIP's zero-shot classifier instead of the nearest neighbours' vote.
    #[arg(long)]
    pub zero_shot: bool,
    /// Candidates examined per shard in the kNN search (default max(100, 10·k), at most 10000).
    #[arg(long, value_name = "N")]
    pub num_candidates: Option<u32>,
    /// One JSON object per image: path, label, confidence, scores (label → weight or probability).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: ClassifyOptions,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec eval ./test --label-from-dir\n  imgvec eval ./test/cats --label cats --json\n  \
imgvec eval --recall\n  imgvec eval --recall --queries 500 -k 10 --num-candidates 10,50,100\n\n\
Accuracy: every labelled test image is classified both ways (kNN vote and zero-shot); an image whose \
exact bytes are in the index is left out of its own neighbours. Recall: for sampled indexed documents \
(or the given images), the approximate kNN top-k is compared with the exact top-k over the stored \
float vectors, for each num_candidates; a sampled document is left out of its own results."
)]
pub struct EvalArgs {
    /// Labelled test images (files or folders); with --recall, optional query images.
    #[arg(value_name = "DIR", required_unless_present = "recall")]
    pub paths: Vec<PathBuf>,
    /// The true label of every test image.
    #[arg(long, conflicts_with = "label_from_dir")]
    pub label: Option<String>,
    /// The true label of each test image is the name of its folder (./test/cats/x.jpg → cats).
    #[arg(long)]
    pub label_from_dir: bool,
    /// Measure the approximate index's recall@k and latency instead of accuracy.
    #[arg(long)]
    pub recall: bool,
    /// With --recall: how many indexed documents to sample as queries (ignored when images are given).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub queries: u32,
    /// Candidates examined per shard in the kNN search. Accuracy: one value (default max(100, 10·k));
    /// --recall: the settings to compare (default 10,20,50,100,200,500).
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub num_candidates: Vec<u32>,
    /// With --recall: seed for sampling the query documents.
    #[arg(long, default_value_t = crate::eval::recall::DEFAULT_SEED)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: ClassifyOptions,
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

/// What a folder watch indexes and how (shared by `watch` and `serve --watch`).
#[derive(Debug, Clone, Args)]
pub struct FollowOptions {
    /// The label stored with every image (the `name` field), e.g. cat.
    #[arg(long, conflicts_with = "label_from_dir")]
    pub label: Option<String>,
    /// Label each image with the name of the folder it is in (./train/cats/x.jpg → cats).
    #[arg(long)]
    pub label_from_dir: bool,
    /// Quiet time after the last event on a path before it is looked at; a file is taken once two
    /// looks this far apart find the same size and time (so a file being copied is taken whole).
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub debounce_ms: u64,
    /// Index what decodes of a truncated file and name it as a warning (see `ingest`).
    #[arg(long)]
    pub allow_truncated: bool,
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

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelLocation,
}

#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Hugging Face repository of a CLIP checkpoint.
    #[arg(value_name = "REPO", env = "IMGVEC_MODEL", default_value = DEFAULT_REPO)]
    pub repo: String,
    /// Hub address (a mirror, say).
    #[arg(
        long,
        env = "HF_ENDPOINT",
        default_value = "https://huggingface.co",
        value_name = "URL"
    )]
    pub endpoint: String,
    /// Download again files the cache already has.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors and the final line (no progress bars).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write imgvec.1 and one imgvec-COMMAND.1 per subcommand into this directory instead of
    /// printing imgvec.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec serve                      # http://127.0.0.1:8080/\n  \
imgvec serve --addr 127.0.0.1:9000\n  imgvec serve --es-url http://localhost:9200 --index photos\n\n\
The page and the API are described in docs/serve.md."
)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (the URL is printed).
    #[arg(
        long,
        env = "IMGVEC_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub addr: std::net::SocketAddr,
    /// Allow an address other than loopback: anyone who can reach it can search the index and see
    /// the indexed images (prints a warning).
    #[arg(long)]
    pub public: bool,
    /// Largest accepted upload (a query image), in MiB; bigger ones get 413.
    #[arg(long, default_value_t = 20, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_upload_mib: u64,
    /// Memory for cached thumbnails, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub thumb_cache_mib: u64,
    /// Print nothing but the URL and errors (no line per request).
    #[arg(long, short)]
    pub quiet: bool,
    /// Also follow these folders, as `imgvec watch` does: new images are indexed and show up in
    /// the page at once, deleted ones go (needs --label or --label-from-dir).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub watch: Vec<PathBuf>,
    #[command(flatten)]
    pub follow: FollowOptions,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}
