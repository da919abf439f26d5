//! The flags of the commands around imgvec itself: `fetch-model`, `completions`, `man`.

use std::path::PathBuf;

use clap::Args;

use crate::model_source::DEFAULT_REPO;

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
