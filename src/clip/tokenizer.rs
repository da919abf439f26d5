//! CLIP's BPE tokenizer, from the checkpoint's `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Adds `<|startoftext|>`/`<|endoftext|>` as transformers' `CLIPTokenizer` does, and truncates like
//! `truncation=True` at the model's context length (77), reporting that it did. Not for: embeddings.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::ClipError;

pub struct ClipTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
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
        let mut inner = Tokenizer::from_file(path).map_err(|e| ClipError::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("not a readable tokenizer.json: {e}"),
        })?;
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
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn encode(&self, text: &str) -> Result<Tokens, ClipError> {
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
