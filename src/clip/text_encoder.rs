//! Text → embeddings: the text tower of the checkpoint's family with its tokenizer
//! ([`TextEncoder`]).
//!
//! What it is for: choosing and loading the tokenizer a checkpoint ships (CLIP's BPE, SigLIP's
//! Gemma or SentencePiece, Chinese-CLIP's WordPiece) and the text tower, and embedding one text.
//! What it is not for: the tokenizers themselves (`tokenizer`, `spiece`) or the towers' arithmetic
//! (`text`, `bert`, `dense`).

use std::path::Path;

use candle_core::Device;

use super::bert::BertTextTower;
use super::config::Family;
use super::text::TextTower;
use super::tokenizer::ClipTokenizer;
use super::{ClipError, ModelDir};

/// Chinese-CLIP's context length (`cn_clip`'s `context_length`, what its text tower was trained
/// on): longer texts are cut, as `truncation=True, max_length=52` does in transformers.
pub const CHINESE_CLIP_CONTEXT: usize = 52;

/// Text → embeddings: the text tower plus the tokenizer.
pub struct TextEncoder {
    tower: AnyTextTower,
    tokenizer: ClipTokenizer,
    /// Last: the tower's memory goes back to the system once it is dropped.
    _release: crate::ReleaseOnDrop,
}

/// The text tower of the checkpoint's family.
enum AnyTextTower {
    Clip(TextTower),
    Bert(BertTextTower),
}

/// A text embedding and how the text was tokenized.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    pub vector: Vec<f32>,
    pub input_ids: Vec<u32>,
    /// Whether the text was cut to the model's context length.
    pub truncated: bool,
}

impl TextEncoder {
    /// Loads `text_model.*`, `text_projection` and the tokenizer (`tokenizer.json`; for
    /// Chinese-CLIP, `vocab.txt` where there is no `tokenizer.json`).
    pub fn load(model: &ModelDir, device: &Device) -> Result<Self, ClipError> {
        let cfg = model.config();
        let dir = model.path();
        let tokenizer = match cfg.family {
            Family::Clip => ClipTokenizer::from_file(
                &dir.join("tokenizer.json"),
                cfg.text_config.max_position_embeddings,
            )?,
            Family::Siglip => {
                let max_len = cfg.text_config.max_position_embeddings;
                let json = dir.join("tokenizer.json");
                let config = dir.join("tokenizer_config.json");
                // SigLIP 2 ships a Gemma tokenizer.json, SigLIP (v1) only spiece.model.
                if json.is_file() || !dir.join("spiece.model").is_file() {
                    ClipTokenizer::from_file(&json, max_len)?.padded(&config, "GemmaTokenizer")?
                } else {
                    ClipTokenizer::from_spiece(
                        &dir.join("spiece.model"),
                        lower_cases(dir)?,
                        max_len,
                    )?
                    .padded(&config, "SiglipTokenizer")?
                }
            }
            Family::ChineseClip => {
                let max_len = CHINESE_CLIP_CONTEXT.min(cfg.text_config.max_position_embeddings);
                let json = dir.join("tokenizer.json");
                if json.is_file() {
                    ClipTokenizer::from_file(&json, max_len)?
                } else {
                    ClipTokenizer::from_wordpiece_vocab(
                        &dir.join("vocab.txt"),
                        lower_cases(dir)?,
                        max_len,
                    )?
                }
            }
        };
        let weights = model.weights(device, model.dtype())?;
        let tower = match cfg.family {
            Family::Clip => AnyTextTower::Clip(TextTower::load(
                &weights,
                &cfg.text_config,
                cfg.projection_dim,
            )?),
            Family::ChineseClip => AnyTextTower::Bert(BertTextTower::load(
                &weights,
                &cfg.text_config,
                cfg.projection_dim,
            )?),
            Family::Siglip => {
                AnyTextTower::Clip(TextTower::load_siglip(&weights, &cfg.text_config)?)
            }
        };
        crate::release_freed_memory();
        Ok(Self {
            tower,
            tokenizer,
            _release: crate::ReleaseOnDrop,
        })
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    pub fn embed(&self, text: &str) -> Result<TextEmbedding, ClipError> {
        let tokens = self.tokenizer.encode(text)?;
        let vector = match &self.tower {
            AnyTextTower::Clip(t) => t.forward(&tokens.ids)?,
            AnyTextTower::Bert(t) => t.forward(&tokens.ids)?,
        }
        .to_vec1::<f32>()?;
        Ok(TextEmbedding {
            vector,
            input_ids: tokens.ids,
            truncated: tokens.truncated,
        })
    }
}

/// `do_lower_case` of the directory's `tokenizer_config.json` (transformers' `BertTokenizer`
/// and `SiglipTokenizer` default, true, when the file or the key is absent).
fn lower_cases(dir: &Path) -> Result<bool, ClipError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ClipError::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ClipError::Tokenizer {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
    Ok(value
        .get("do_lower_case")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true))
}
