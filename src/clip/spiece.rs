//! SigLIP (v1)'s tokenizer from its SentencePiece `spiece.model`, the only tokenizer file those
//! checkpoints ship (transformers has no fast SigLIP tokenizer).
//!
//! The model file is a protobuf `ModelProto`; [`read_model`] is a small reader for the fields
//! needed (each piece with its score and type, the normalizer's precompiled character map and
//! flags, byte fallback). [`tokenizer`] builds from them the `tokenizers` pipeline transformers'
//! `SpmConverter.build_tokenizer_from_spm_proto` builds, which encodes as
//! `SentencePieceProcessor.encode`: the precompiled normalizer, extra spaces removed, spaces as
//! `▁` with a dummy prefix, a Unigram model over the pieces, then `</s>` appended as
//! `SiglipTokenizer` does. [`canonicalize`] is `SiglipTokenizer.canonicalize_text`, applied to the
//! text first. Not for: padding or truncation (`tokenizer.rs`).

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{NormalizerWrapper, Tokenizer};

/// One vocabulary entry of a SentencePiece model.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub kind: u64,
}

/// The parts of a SentencePiece `ModelProto` the tokenizer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// `trainer_spec.model_type`: 1 unigram, 2 BPE, ...
    pub model_type: u64,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// A field's value as protobuf encodes it.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .data
                .get(self.pos)
                .ok_or("truncated (a number runs past the end)")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated (a field runs past the end)")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field's number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => {
                return Err(format!(
                    "field {} has wire type {t}, not protobuf",
                    key >> 3
                ))
            }
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Parses a SentencePiece `ModelProto` (the bytes of `spiece.model`).
pub fn read_model(bytes: &[u8]) -> Result<SpModel, String> {
    let mut model = SpModel {
        pieces: Vec::new(),
        model_type: 1,
        byte_fallback: false,
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
    };
    let mut top = Reader {
        data: bytes,
        pos: 0,
    };
    while let Some((field, value)) = top.field()? {
        let Value::Bytes(inner) = value else { continue };
        let mut r = Reader {
            data: inner,
            pos: 0,
        };
        match field {
            1 => {
                let mut piece = Piece {
                    piece: String::new(),
                    score: 0.0,
                    kind: 1,
                };
                while let Some((f, v)) = r.field()? {
                    match (f, v) {
                        (1, Value::Bytes(s)) => {
                            piece.piece = String::from_utf8(s.to_vec())
                                .map_err(|_| "a piece is not UTF-8".to_string())?
                        }
                        (2, Value::Fixed32(x)) => piece.score = f32::from_bits(x),
                        (3, Value::Varint(t)) => piece.kind = t,
                        _ => {}
                    }
                }
                model.pieces.push(piece);
            }
            2 => {
                while let Some((f, v)) = r.field()? {
                    match (f, v) {
                        (3, Value::Varint(t)) => model.model_type = t,
                        (35, Value::Varint(b)) => model.byte_fallback = b != 0,
                        _ => {}
                    }
                }
            }
            3 => {
                while let Some((f, v)) = r.field()? {
                    match (f, v) {
                        (2, Value::Bytes(m)) => model.precompiled_charsmap = m.to_vec(),
                        (3, Value::Varint(b)) => model.add_dummy_prefix = b != 0,
                        (4, Value::Varint(b)) => model.remove_extra_whitespaces = b != 0,
                        (5, Value::Varint(b)) => model.escape_whitespaces = b != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err("no pieces: not a SentencePiece model".into());
    }
    Ok(model)
}

/// The `tokenizers` pipeline that encodes as SentencePiece does with this model, `eos` appended
/// after every text (SigLIP's `</s>`).
pub fn tokenizer(model: &SpModel, eos: &str) -> Result<Tokenizer, String> {
    if model.model_type != 1 {
        return Err(format!(
            "model type {} is not unigram (1), the kind SigLIP's spiece.model is",
            model.model_type
        ));
    }
    let unk = model
        .pieces
        .iter()
        .position(|p| p.kind == 2)
        .ok_or("no unknown piece")?;
    let eos_id = model
        .pieces
        .iter()
        .position(|p| p.piece == eos)
        .ok_or(format!("no {eos} piece"))?;
    let vocab = model
        .pieces
        .iter()
        .map(|p| (p.piece.clone(), f64::from(p.score)))
        .collect();
    let unigram =
        Unigram::from(vocab, Some(unk), model.byte_fallback).map_err(|e| e.to_string())?;
    let mut tok = Tokenizer::new(unigram);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if !model.precompiled_charsmap.is_empty() {
        let map = Precompiled::from(&model.precompiled_charsmap)
            .map_err(|e| format!("its precompiled_charsmap: {e}"))?;
        normalizers.push(map.into());
    }
    let replace = |pattern: &str, regex: bool, with: &str| -> Result<NormalizerWrapper, String> {
        let r = if regex {
            Replace::new(
                tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into()),
                with,
            )
        } else {
            Replace::new(pattern, with)
        };
        r.map(Into::into).map_err(|e| e.to_string())
    };
    if model.remove_extra_whitespaces {
        normalizers.push(replace(r"\A +| +\z", true, "")?);
        normalizers.push(replace(" {2,}", true, " ")?);
    }
    if model.escape_whitespaces {
        normalizers.push(replace(" ", false, "▁")?);
    }
    tok.with_normalizer(Some(Sequence::new(normalizers)))
        .map_err(|e| e.to_string())?;
    if model.add_dummy_prefix {
        tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, false)));
    }
    let eos_id = u32::try_from(eos_id).map_err(|e| e.to_string())?;
    let post = TemplateProcessing::builder()
        .try_single(format!("$A {eos}"))
        .and_then(|b| {
            b.special_tokens(vec![(eos.to_string(), eos_id)])
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(|e| format!("its end-of-text token: {e}"))?;
    tok.with_post_processor(Some(post));
    Ok(tok)
}

/// `SiglipTokenizer.canonicalize_text`: lower-cased (when `lowercase`), ASCII punctuation
/// (Python's `string.punctuation`) removed, runs of whitespace made one space, ends stripped.
pub fn canonicalize(text: &str, lowercase: bool) -> String {
    let text = if lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    // Python's `\s` and `str.strip()`: Unicode whitespace and the separators \x1c-\x1f.
    let space = |c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars().filter(|c| !c.is_ascii_punctuation()) {
        if space(c) {
            pending_space = true;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_as_siglip_tokenizer_makes_it() {
        assert_eq!(canonicalize("A Photo, of a CAT!", true), "a photo of a cat");
        assert_eq!(canonicalize("  two \t\n spaces ", true), "two spaces");
        assert_eq!(canonicalize("Don't — stop.", false), "Dont — stop");
        assert_eq!(canonicalize("x\u{1f}y\u{3000}z", true), "x y z");
        assert_eq!(canonicalize("!!!", true), "");
    }

    #[test]
    fn a_truncated_or_foreign_file_is_an_error() {
        assert!(read_model(b"").is_err());
        assert!(read_model(&[0x0a, 0x05, 0x0a])
            .unwrap_err()
            .contains("truncated"));
        assert!(read_model(b"\x0fnot protobuf").is_err());
    }
}
