//! Command-line definitions (clap): every flag, its environment variable and its help text.
//!
//! Only parsing lives here; each subcommand's behaviour is in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::device::DeviceChoice;

#[derive(Debug, Parser)]
#[command(
    name = "imgvec",
    version,
    about = "Image vector search: CLIP embeddings of your photos, searchable by image or text",
    long_about = "imgvec turns images into CLIP embeddings (candle, on CPU or GPU) and indexes them in \
an embedded store or in Elasticsearch, then finds similar images by example image or by text.",
    after_help = "Examples:\n  imgvec create-index\n  imgvec ingest ./train --label-from-dir\n  \
imgvec ingest ./train/dogs --label dog\n  imgvec search ./query.jpg -k 10\n  \
imgvec search --text \"a dog running on grass\"\n  imgvec embed photo.jpg --json\n\n\
Vectors go to an embedded store in ./imgvec-data (--store) unless --es-url / IMGVEC_ES_URL names an \
Elasticsearch."
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
    /// Show where the index is and how many images it holds.
    Info(InfoArgs),
    /// Download a CLIP checkpoint from the Hugging Face hub into --model-dir.
    FetchModel(FetchModelArgs),
}

/// Where the model is and what runs it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Hugging Face CLIP checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(
        long,
        env = "IMGVEC_MODEL_DIR",
        default_value = "models/clip-vit-large-patch14",
        value_name = "DIR"
    )]
    pub model_dir: PathBuf,
    /// Device for the model: auto picks a GPU when the build has one and it is present.
    #[arg(long, env = "IMGVEC_DEVICE", value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
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
    /// Embedded store directory, used when no Elasticsearch URL is given.
    #[arg(
        long,
        env = "IMGVEC_STORE",
        default_value = "imgvec-data",
        value_name = "DIR"
    )]
    pub store: PathBuf,
    /// Elasticsearch URL, e.g. https://localhost:9200 or an Elastic Cloud endpoint. Without it the
    /// embedded store is used.
    #[arg(long, env = "IMGVEC_ES_URL", value_name = "URL")]
    pub es_url: Option<String>,
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
    /// Do not verify the server's TLS certificate (insecure; prints a warning).
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
    /// Images per model call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,
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
    /// Images per model call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,
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

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Hugging Face repository of a CLIP checkpoint.
    #[arg(long, default_value = "openai/clip-vit-large-patch14")]
    pub repo: String,
    /// Where to put it (the directory the other commands read).
    #[arg(
        long,
        env = "IMGVEC_MODEL_DIR",
        default_value = "models/clip-vit-large-patch14",
        value_name = "DIR"
    )]
    pub model_dir: PathBuf,
    /// Hub address (a mirror, say).
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub endpoint: String,
    /// Download again files that are already there.
    #[arg(long)]
    pub force: bool,
}
