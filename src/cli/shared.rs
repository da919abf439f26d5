//! The flag groups several commands share: which model and what runs it, which store and index,
//! how images are classified, and what a folder watch indexes.

use std::path::PathBuf;

use clap::Args;

use crate::device::{DeviceChoice, Precision};
use crate::model_source::DEFAULT_REPO;

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
    /// On the CPU: f32 (exact), bf16 (AVX512_BF16 or AMX) or int8 (AMX-INT8, AVX-512 VNNI,
    /// AVX-VNNI, or AVX2 alone at a smaller gain) linear layers, with attention's products in bf16 where the CPU has AVX512_BF16,
    /// the rest f32 (`imgvec info` says which this CPU runs); on a GPU f16 or bf16 [default: f32
    /// on the CPU, f16 on a GPU].
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
