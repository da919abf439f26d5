//! The flags of the commands that embed and search: `embed`, `search`, `dupes`, `classify`,
//! `eval`, `info`, `serve`.

use std::path::PathBuf;

use clap::Args;

use super::{ClassifyOptions, FollowOptions, ModelArgs, ModelLocation, StoreArgs};

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
    /// Only results at most this L2 distance from the query (0 = identical, √2 = opposite; see
    /// `imgvec dupes` for what distances mean). Fewer than k results may come back.
    #[arg(long, value_name = "D", conflicts_with = "min_score", value_parser = parse_distance)]
    pub max_distance: Option<f32>,
    /// Only results with at least this score (1 / (1 + d²), Elasticsearch's l2_norm score).
    #[arg(long, value_name = "S", value_parser = parse_score)]
    pub min_score: Option<f32>,
    /// One JSON object per hit per line: rank, score, distance, id, label, path, other_paths.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// How long `serve` keeps an idle model tower: `None` for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive(pub Option<std::time::Duration>);

/// `never`, or a whole number of seconds with an optional unit: `s`, `m` or `h`.
pub fn parse_keep_alive(s: &str) -> Result<KeepAlive, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("never") {
        return Ok(KeepAlive(None));
    }
    let (number, unit) = match t.char_indices().last() {
        Some((at, 's')) => (&t[..at], 1),
        Some((at, 'm')) => (&t[..at], 60),
        Some((at, 'h')) => (&t[..at], 3600),
        _ => (t, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(|secs| KeepAlive(Some(std::time::Duration::from_secs(secs))))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a duration: a whole number with s, m or h (e.g. 90s, 5m), or never"
            )
        })
}

/// A distance between unit vectors: 0 to 2.
pub fn parse_distance(s: &str) -> Result<f32, String> {
    s.parse::<f32>()
        .map_err(|_| distance_error(s))
        .and_then(|d| check_distance(d).ok_or_else(|| distance_error(s)))
}

/// An l2_norm score: above 0, at most 1.
pub fn parse_score(s: &str) -> Result<f32, String> {
    s.parse::<f32>()
        .map_err(|_| score_error(s))
        .and_then(|v| check_score(v).ok_or_else(|| score_error(s)))
}

/// `d` if it is a distance between unit vectors (0 to 2).
pub fn check_distance(d: f32) -> Option<f32> {
    (0.0..=2.0).contains(&d).then_some(d)
}

/// `v` if it is an l2_norm score (above 0, at most 1).
pub fn check_score(v: f32) -> Option<f32> {
    (v > 0.0 && v <= 1.0).then_some(v)
}

pub fn distance_error(s: &str) -> String {
    format!("{s:?} is not a distance between unit vectors (0 to 2, e.g. 0.2)")
}

pub fn score_error(s: &str) -> String {
    format!("{s:?} is not a score (above 0, at most 1, e.g. 0.9)")
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec dupes\n  imgvec dupes ~/Photos/2024 --max-distance 0.15\n  \
imgvec dupes --json > groups.jsonl\n\n\
Finds exact copies (the same bytes at several paths) and near duplicates (re-encoded, resized, slightly \
cropped, shots of one burst): images whose vectors are at most --max-distance apart, grouped with \
whatever they are near. Each group lists its files with pixel size, file size, date and distance to \
the suggested keeper (most pixels, then largest file, then oldest), marked `keep`. imgvec never deletes \
or moves a file: use --json or --csv to act on the groups. A smaller distance finds fewer, closer \
duplicates; a larger one also finds similar photos of one scene."
)]
pub struct DupesArgs {
    /// Only files under these folders or files (default: the whole index).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Images at most this L2 distance apart are duplicates (unit vectors: 0 = identical).
    #[arg(long, value_name = "D", default_value_t = crate::dupes::DEFAULT_MAX_DISTANCE, value_parser = parse_distance)]
    pub max_distance: f32,
    /// Only images with this label.
    #[arg(long)]
    pub label: Option<String>,
    /// One JSON object per group per line: exact, spread, members (path, id, label, width,
    /// height, bytes, mtime_ms, on_disk, distance, keep).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header: one row per file, its group's number first.
    #[arg(long)]
    pub csv: bool,
    /// No progress.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  imgvec classify ./unsorted\n  imgvec classify photo.jpg -k 20 --json\n  \
imgvec classify ./unsorted --zero-shot --template \"a photo of my {label}\"\n\n\
kNN: the k nearest indexed images vote, each with weight 1/(1+d²); the largest total wins (a tie goes \
to the nearest neighbour's label); confidence = winning weight / total weight. Zero-shot: softmax over \
exp(logit_scale)·cos(image, prompt) for one prompt per label in the index, logit_scale from the checkpoint; \
SigLIP: each label's own sigmoid(exp(logit_scale)·cos + logit_bias), with the checkpoint's logit_bias."
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
imgvec eval --recall\n  imgvec eval --recall --queries 500 -k 10 --num-candidates 10,50,100\n  \
imgvec eval --recall --label cats\n\n\
Accuracy: every labelled test image is classified both ways (kNN vote and zero-shot); an image whose \
exact bytes are in the index is left out of its own neighbours. Recall: for sampled indexed documents \
(or the given images), the approximate kNN top-k is compared with the exact top-k over the stored \
float vectors, for each num_candidates; a sampled document is left out of its own results."
)]
pub struct EvalArgs {
    /// Labelled test images (files or folders); with --recall, optional query images.
    #[arg(value_name = "DIR", required_unless_present = "recall")]
    pub paths: Vec<PathBuf>,
    /// The true label of every test image. With --recall: search only documents of this label
    /// (both the approximate and the exact search), to measure what a filter costs.
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
    /// Allow an address other than loopback. Every request then needs an access key: the one from
    /// --token-file or IMGVEC_TOKEN, else a random one, printed once on stderr in the URL to open
    /// (`http://HOST:PORT/?token=KEY`).
    #[arg(long)]
    pub public: bool,
    /// Require the access key in FILE (surrounding whitespace removed; at least 16 of the
    /// characters A-Z a-z 0-9 - . _ ~, e.g. from `openssl rand -hex 32`), on loopback too. The
    /// environment variable IMGVEC_TOKEN can give the key itself instead; the file wins. Clients send
    /// it as `?token=KEY` (the page then keeps it in a cookie) or `Authorization: Bearer KEY`.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted upload (a query image), in MiB; bigger ones get 413.
    #[arg(long, default_value_t = 20, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_upload_mib: u64,
    /// Memory for cached thumbnails, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub thumb_cache_mib: u64,
    /// Model calls that may wait their turn, for image uploads and for texts each (a few run at
    /// once); one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = crate::serve::state::MODEL_QUEUE, value_name = "N")]
    pub model_queue: usize,
    /// Searches by uploaded image one client address may have in flight; one more is answered 429
    /// with Retry-After, before its upload is read.
    #[arg(long, default_value_t = crate::serve::state::UPLOADS_PER_CLIENT, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub uploads_per_client: usize,
    /// Print nothing but the URL and errors (no line per request).
    #[arg(long, short)]
    pub quiet: bool,
    /// Let go of a model tower after this long without a query that needs it (e.g. 90s, 5m, 2h;
    /// 0: as soon as it is idle; "never": keep it), handing its memory back: about 1.2 GB for the
    /// ViT-L/14 vision tower in f32, 0.34 GB for its text tower. The next query that needs it
    /// waits for it to load again (a few seconds). With --watch the vision tower stays.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_keep_alive)]
    pub keep_alive: KeepAlive,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keep_alive_takes_seconds_minutes_hours_or_never() {
        let secs = |n| KeepAlive(Some(Duration::from_secs(n)));
        assert_eq!(parse_keep_alive("90s"), Ok(secs(90)));
        assert_eq!(parse_keep_alive("5m"), Ok(secs(300)));
        assert_eq!(parse_keep_alive("2h"), Ok(secs(7200)));
        assert_eq!(parse_keep_alive("0"), Ok(secs(0)));
        assert_eq!(parse_keep_alive("45"), Ok(secs(45)));
        assert_eq!(parse_keep_alive("never"), Ok(KeepAlive(None)));
        for bad in [
            "",
            "m",
            "5 minutes",
            "-1m",
            "1.5h",
            "5d",
            "99999999999999999999h",
        ] {
            let err = parse_keep_alive(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad:?}: {err}");
        }
    }
}
