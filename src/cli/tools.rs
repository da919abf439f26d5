//! The flags of the commands around imgvec itself: `fetch-model`, `completions`, `man`.

use std::path::PathBuf;

use clap::Args;

use crate::model_source::DEFAULT_REPO;

#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Hugging Face repository of a checkpoint. Families read (docs/model.md): CLIP (`CLIPModel`:
    /// openai/clip-vit-base-patch32 512-d ≈0.6 GB, openai/clip-vit-large-patch14 768-d ≈1.7 GB,
    /// -336 768-d, laion/CLIP-ViT-H-14-laion2B-s32B-b79K 1024-d ≈3.9 GB, facebook/metaclip-*) and
    /// Chinese-CLIP (`ChineseCLIPModel`: OFA-Sys/chinese-clip-vit-base-patch16 512-d ≈0.75 GB,
    /// -large-patch14 768-d ≈1.6 GB, -large-patch14-336px 768-d, -huge-patch14 1024-d ≈3.8 GB;
    /// their pytorch_model.bin is fetched where there is no model.safetensors) and SigLIP
    /// (`SiglipModel`: google/siglip2-base-patch16-224 768-d ≈1.5 GB, google/siglip2-so400m-patch14-384
    /// 1152-d ≈4.5 GB; google/siglip-base-patch16-224 768-d ≈0.8 GB, google/siglip-so400m-patch14-384
    /// 1152-d ≈3.5 GB, whose tokenizer is spiece.model).
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
