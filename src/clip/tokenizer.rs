//! The text towers' tokenizers, over Hugging Face `tokenizers`: CLIP's BPE from the checkpoint's
//! `tokenizer.json`, and Chinese-CLIP's BERT WordPiece from `tokenizer.json` or, as the real
//! checkpoints ship it, from `vocab.txt` alone (built as transformers' `BertTokenizer` builds it).
//!
//! Adds the special tokens as transformers does (`<|startoftext|>`/`<|endoftext|>`, `[CLS]`/`[SEP]`),
//! and truncates like `truncation=True` at the model's context length (CLIP 77, Chinese-CLIP 52),
//! reporting that it did. SigLIP's (a SigLIP 2 Gemma `tokenizer.json`) is padded to the context
//! length as its processor is called (`padding="max_length"`), on the side and with the token
//! `tokenizer_config.json` names ([`ClipTokenizer::padded`]). Not for: embeddings.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use super::ClipError;

pub struct ClipTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
    /// SigLIP (v1): texts go through `SiglipTokenizer.canonicalize_text` first (lower-cased when
    /// set, `Some(true)`).
    canonicalize: Option<bool>,
}

/// Token ids of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// The text had more than `max_len` tokens and was cut (keeping the end-of-text token).
    pub truncated: bool,
}

impl ClipTokenizer {
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self, ClipError> {
        if !path.is_file() {
            return Err(ClipError::Tokenizer {
                path: path.to_path_buf(),
                reason: "missing: text search needs the checkpoint's tokenizer.json".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| ClipError::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("not a readable tokenizer.json: {e}"),
        })?;
        Self::with_limit(inner, path, max_len)
    }

    /// BERT's WordPiece tokenizer from a `vocab.txt` (one token a line, its id the line number), as
    /// transformers' `BertTokenizer` builds it: clean text, CJK characters split apart, lower-cased
    /// with accents stripped when `lowercase`, `[UNK]` for unknown words, `[CLS] … [SEP]`.
    pub fn from_wordpiece_vocab(
        path: &Path,
        lowercase: bool,
        max_len: usize,
    ) -> Result<Self, ClipError> {
        let bad = |reason: String| ClipError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(bad(
                "missing: text search needs the checkpoint's tokenizer.json or vocab.txt".into(),
            ));
        }
        let vocab = WordPiece::read_file(&path.to_string_lossy())
            .map_err(|e| bad(format!("not a readable vocab.txt: {e}")))?;
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| bad(format!("has no {token} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| bad(format!("not a usable vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(|e| bad(e.to_string()))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Self::with_limit(inner, path, max_len)
    }

    /// Truncation at `max_len` tokens (special tokens included), no padding.
    fn with_limit(mut inner: Tokenizer, path: &Path, max_len: usize) -> Result<Self, ClipError> {
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ClipError::Tokenizer {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            max_len,
            canonicalize: None,
        })
    }

    /// SigLIP (v1)'s tokenizer from its SentencePiece `spiece.model` (see `spiece.rs`): the text
    /// canonicalized (lower-cased when `lowercase`, `tokenizer_config.json`'s `do_lower_case`,
    /// punctuation removed), SentencePiece's pieces, `</s>` appended; cut at `max_len`.
    pub fn from_spiece(path: &Path, lowercase: bool, max_len: usize) -> Result<Self, ClipError> {
        let bad = |reason: String| ClipError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(bad(
                "missing: text search needs the checkpoint's tokenizer.json or spiece.model".into(),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
        let model = super::spiece::read_model(&bytes)
            .map_err(|e| bad(format!("not a readable SentencePiece model: {e}")))?;
        let inner = super::spiece::tokenizer(&model, "</s>").map_err(bad)?;
        let mut tok = Self::with_limit(inner, path, max_len)?;
        tok.canonicalize = Some(lowercase);
        Ok(tok)
    }

    /// Every text padded to `max_len` tokens, as SigLIP's processor is called
    /// (`padding="max_length"`), reading from `config` (`tokenizer_config.json`) what transformers
    /// reads: `pad_token` (default `<pad>`; `SiglipTokenizer`: `</s>`), `padding_side` (default the
    /// tokenizer class's, `default_class` where the file names none:
    /// `left` for `GemmaTokenizer` and `Siglip2Tokenizer`, `right` otherwise), and
    /// `tokenizer_class` (`Siglip2Tokenizer` lower-cases the text before Gemma's normalizer).
    pub fn padded(mut self, config: &Path, default_class: &str) -> Result<Self, ClipError> {
        let bad = |reason: String| ClipError::Tokenizer {
            path: config.to_path_buf(),
            reason,
        };
        let value: serde_json::Value = if config.is_file() {
            let text = std::fs::read_to_string(config).map_err(|e| ClipError::io(config, e))?;
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?
        } else {
            serde_json::Value::Null
        };
        let class = value
            .get("tokenizer_class")
            .and_then(|v| v.as_str())
            .unwrap_or(default_class);
        let pad_token = match value.get("pad_token") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v
                .get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("pad_token is {v}, not a token")))?,
            // SiglipTokenizer pads with its end-of-text token.
            None if class == "SiglipTokenizer" => "</s>".to_string(),
            None => "<pad>".to_string(),
        };
        let left = match value.get("padding_side").and_then(|v| v.as_str()) {
            Some("left") => true,
            Some("right") => false,
            Some(other) => {
                return Err(bad(format!("padding_side is {other:?}, not left or right")))
            }
            None => matches!(
                class,
                "GemmaTokenizer" | "GemmaTokenizerFast" | "Siglip2Tokenizer"
            ),
        };
        let pad_id = self
            .inner
            .token_to_id(&pad_token)
            .ok_or_else(|| ClipError::Tokenizer {
                path: self.path.clone(),
                reason: format!(
                    "has no {pad_token} token (the pad_token of {})",
                    config.display()
                ),
            })?;
        if class == "Siglip2Tokenizer" {
            let lower = NormalizerWrapper::from(Lowercase);
            let normalizer = match self.inner.get_normalizer().cloned() {
                Some(n) => NormalizerWrapper::from(Sequence::new(vec![lower, n])),
                None => lower,
            };
            self.inner
                .with_normalizer(Some(normalizer))
                .map_err(|e| bad(e.to_string()))?;
        }
        self.inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(self.max_len),
            direction: if left {
                PaddingDirection::Left
            } else {
                PaddingDirection::Right
            },
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(self)
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn encode(&self, text: &str) -> Result<Tokens, ClipError> {
        let canonical;
        let text = match self.canonicalize {
            Some(lowercase) => {
                canonical = super::spiece::canonicalize(text, lowercase);
                canonical.as_str()
            }
            None => text,
        };
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ClipError::Tokenizer {
                path: self.path.clone(),
                reason: format!("cannot tokenize {text:?}: {e}"),
            })?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }
}
