//! The model's shape, read from a Hugging Face CLIP `config.json`.
//!
//! Any CLIP size works (ViT-B/32, B/16, L/14, L/14-336, ...): every dimension the towers use comes from
//! here, and the embedding dimension everywhere else in imgvec (index mapping included) is
//! [`ClipConfig::projection_dim`]. Not for: weights (see `weights.rs`) or preprocessing parameters.

use std::path::Path;

use serde::Deserialize;

use super::ClipError;

/// The activation between the two MLP layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's activation.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact (erf) GELU.
    #[serde(rename = "gelu", alias = "gelu_python")]
    Gelu,
    /// GELU's tanh approximation, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`: transformers'
    /// `gelu_new`, `gelu_pytorch_tanh` and `gelu_fast` (the same function).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
}

/// Vision tower shape (`vision_config` in `config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// SigLIP only: whether the attention-pooling head is there (what the image embedding is).
    #[serde(default = "default_true")]
    pub vision_use_head: bool,
}

/// Text tower shape (`text_config` in `config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// The real OpenAI checkpoints say 2 here, which makes transformers pool the token at
    /// `argmax(input_ids)` (the first end-of-text token) instead of searching for this id.
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    /// Chinese-CLIP (BERT) only: rows of `token_type_embeddings`.
    #[serde(default)]
    pub type_vocab_size: usize,
    /// Chinese-CLIP (BERT) only: the padding id.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// SigLIP only: the width of the text head's output (the embedding; `hidden_size` when unset).
    #[serde(default)]
    pub projection_size: Option<usize>,
}

/// The model families imgvec reads, told apart by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// `CLIPModel` (`model_type` "clip", or none): OpenAI, LAION, MetaCLIP, DFN checkpoints.
    #[default]
    Clip,
    /// `ChineseCLIPModel` (`model_type` "chinese_clip"): CLIP's vision tower with a Chinese
    /// RoBERTa (BERT-shaped) text tower and its WordPiece tokenizer.
    ChineseClip,
    /// `SiglipModel` (`model_type` "siglip"): SigLIP and the fixed-resolution SigLIP 2
    /// checkpoints; no class token, an attention-pooling head, a last-token text head, sigmoid
    /// zero-shot scores.
    Siglip,
}

impl Family {
    /// The `model_type` value, also what an index records.
    pub fn name(self) -> &'static str {
        match self {
            Family::Clip => "clip",
            Family::ChineseClip => "chinese_clip",
            Family::Siglip => "siglip",
        }
    }

    fn from_model_type(t: Option<&str>) -> Result<Self, String> {
        match t {
            None | Some("clip") => Ok(Family::Clip),
            Some("chinese_clip") => Ok(Family::ChineseClip),
            Some("siglip") => Ok(Family::Siglip),
            Some("siglip2") => Err("model_type is \"siglip2\": that is SigLIP 2's variable-resolution (NaFlex) Siglip2Model, which imgvec does not read; the fixed-resolution SigLIP 2 checkpoints (google/siglip2-base-patch16-224, ...) are \"siglip\" and work (see docs/model.md)".into()),
            Some(t) => Err(format!(
                "model_type is \"{t}\": imgvec reads \"clip\" (CLIPModel), \"chinese_clip\" (ChineseCLIPModel) and \"siglip\" (SiglipModel) checkpoints (see docs/model.md)"
            )),
        }
    }
}

/// A checkpoint's `config.json`, the parts imgvec needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    /// Which architecture (from `model_type`; set by [`ClipConfig::from_json`]).
    #[serde(skip)]
    pub family: Family,
    #[serde(default)]
    pub model_type: Option<String>,
    pub projection_dim: usize,
    pub vision_config: VisionConfig,
    pub text_config: TextConfig,
}

fn default_channels() -> usize {
    3
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> Activation {
    Activation::QuickGelu
}
fn default_vocab() -> usize {
    49408
}
fn default_max_pos() -> usize {
    77
}
fn default_eos() -> i64 {
    2
}
fn default_true() -> bool {
    true
}

impl VisionConfig {
    /// Patches per side of the image grid (the convolution's: pixels past the last whole patch
    /// are left out).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Tokens the encoder sees: one per patch plus CLIP's class token.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
    /// Patches in the image grid (SigLIP's tokens: it has no class token).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

/// `config.json` with what it leaves out filled in from the family's config classes in
/// transformers (`CLIPTextConfig`, `CLIPVisionConfig`, `ChineseCLIPTextConfig`, ...), as
/// transformers reads it: a key absent from the file takes the class's default.
fn with_defaults(mut value: serde_json::Value, family: Family) -> serde_json::Value {
    use serde_json::json;
    let vision = match family {
        Family::Siglip => json!({"hidden_size": 768, "intermediate_size": 3072,
            "num_attention_heads": 12, "num_hidden_layers": 12, "image_size": 224, "patch_size": 16,
            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}),
        _ => json!({"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
            "num_hidden_layers": 12, "image_size": 224, "patch_size": 32,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}),
    };
    let (top, text) = match family {
        Family::Clip => (
            json!({"projection_dim": 512}),
            json!({"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                "num_hidden_layers": 12, "vocab_size": 49408, "max_position_embeddings": 77,
                "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}),
        ),
        Family::ChineseClip => (
            json!({"projection_dim": 512}),
            json!({"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                "num_hidden_layers": 12, "vocab_size": 30522, "max_position_embeddings": 512,
                "hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2,
                "pad_token_id": 0}),
        ),
        // SiglipConfig has no projection_dim: the embedding is the vision tower's width (set below).
        Family::Siglip => (
            json!({}),
            json!({"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                "num_hidden_layers": 12, "vocab_size": 32000, "max_position_embeddings": 64,
                "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "pad_token_id": 1}),
        ),
    };
    let fill = |into: Option<&mut serde_json::Value>, defaults: &serde_json::Value| {
        if let (Some(serde_json::Value::Object(into)), serde_json::Value::Object(d)) =
            (into, defaults)
        {
            // `null` is "not set" (transformers writes `"eos_token_id": null`).
            into.retain(|_, v| !v.is_null());
            for (k, v) in d {
                if !into.contains_key(k) {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    };
    fill(Some(&mut value), &top);
    fill(value.get_mut("vision_config"), &vision);
    fill(value.get_mut("text_config"), &text);
    if family == Family::Siglip {
        let width = value.pointer("/vision_config/hidden_size").cloned();
        if let (Some(serde_json::Value::Object(top)), Some(width)) = (Some(&mut value), width) {
            top.insert("projection_dim".into(), width);
        }
    }
    value
}

impl ClipConfig {
    /// Reads and checks `config.json`; the error names the file and what is wrong with it.
    pub fn from_file(path: &Path) -> Result<Self, ClipError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClipError::io(path, e))?;
        Self::from_json(&text).map_err(|reason| ClipError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and checks a `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let family = Family::from_model_type(value.get("model_type").and_then(|v| v.as_str()))?;
        if value.get("vision_config").is_none() || value.get("text_config").is_none() {
            return Err("no vision_config/text_config: this is not a CLIP model config".into());
        }
        let value = with_defaults(value, family);
        let mut cfg: ClipConfig =
            serde_json::from_value(value).map_err(|e| format!("not a CLIP config: {e}"))?;
        cfg.family = family;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        let v = &self.vision_config;
        let t = &self.text_config;
        let positive = [
            ("projection_dim", self.projection_dim),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.image_size", v.image_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err("vision hidden_size is not a multiple of num_attention_heads".into());
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err("text hidden_size is not a multiple of num_attention_heads".into());
        }
        // A size that is not a multiple of the patch (SigLIP so400m: 384 px, 14-px patches) leaves
        // the last rows and columns out, as the "valid" convolution does (27×27 patches there).
        if v.image_size < v.patch_size {
            return Err("vision image_size is smaller than patch_size".into());
        }
        if self.family == Family::Siglip {
            if !v.vision_use_head {
                return Err("vision_config.vision_use_head is false: without its attention-pooling head a SigLIP vision tower has no image embedding".into());
            }
            let text = t.projection_size.unwrap_or(t.hidden_size);
            if text != v.hidden_size {
                return Err(format!("text_config.projection_size is {text} but vision_config.hidden_size is {}: image and text embeddings must have the same size", v.hidden_size));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 32,
      "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_hidden_layers": 2, "image_size": 224, "patch_size": 14, "hidden_act": "quick_gelu"},
      "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
        "num_hidden_layers": 2, "eos_token_id": 2}}"#;

    #[test]
    fn reads_a_clip_config() {
        let c = ClipConfig::from_json(TINY).unwrap();
        assert_eq!(c.projection_dim, 32);
        assert_eq!(c.vision_config.grid(), 16);
        assert_eq!(c.vision_config.num_positions(), 257);
        assert_eq!(c.text_config.max_position_embeddings, 77);
        assert_eq!(c.vision_config.hidden_act, Activation::QuickGelu);
    }

    #[test]
    fn refuses_other_models() {
        let bert = r#"{"model_type": "bert", "hidden_size": 768}"#;
        let err = ClipConfig::from_json(bert).unwrap_err();
        assert!(err.contains("bert"), "{err}");
        let no_towers = r#"{"projection_dim": 4}"#;
        assert!(ClipConfig::from_json(no_towers)
            .unwrap_err()
            .contains("not a CLIP"));
        assert!(ClipConfig::from_json("{").unwrap_err().contains("JSON"));
        let bad_heads = TINY.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
        assert!(ClipConfig::from_json(&bad_heads)
            .unwrap_err()
            .contains("multiple"));
    }

    #[test]
    fn keys_left_out_take_transformers_defaults() {
        // A LAION-style config that states only what differs from CLIPTextConfig/CLIPVisionConfig.
        let sparse = r#"{"model_type": "clip", "projection_dim": 1024,
          "vision_config": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
            "intermediate_size": 5120, "patch_size": 14, "hidden_act": "gelu"},
          "text_config": {"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24,
            "intermediate_size": 4096, "hidden_act": "gelu", "eos_token_id": null}}"#;
        let c = ClipConfig::from_json(sparse).unwrap();
        assert_eq!(c.family, Family::Clip);
        assert_eq!(c.vision_config.image_size, 224);
        assert_eq!(c.vision_config.hidden_act, Activation::Gelu);
        assert_eq!(c.text_config.vocab_size, 49408);
        assert_eq!(c.text_config.max_position_embeddings, 77);
        assert_eq!(c.text_config.eos_token_id, 2, "null is not set");
        let bare = r#"{"vision_config": {}, "text_config": {}}"#;
        let c = ClipConfig::from_json(bare).unwrap();
        assert_eq!((c.projection_dim, c.vision_config.patch_size), (512, 32));
        assert_eq!(c.text_config.hidden_size, 512);
    }

    #[test]
    fn activations_by_their_transformers_names() {
        for (name, act) in [
            ("quick_gelu", Activation::QuickGelu),
            ("gelu", Activation::Gelu),
            ("gelu_python", Activation::Gelu),
            ("gelu_new", Activation::GeluTanh),
            ("gelu_pytorch_tanh", Activation::GeluTanh),
            ("gelu_fast", Activation::GeluTanh),
        ] {
            let cfg = TINY.replace(
                "\"hidden_act\": \"quick_gelu\"",
                &format!("\"hidden_act\": \"{name}\""),
            );
            assert_eq!(
                ClipConfig::from_json(&cfg)
                    .unwrap()
                    .vision_config
                    .hidden_act,
                act
            );
        }
        let relu = TINY.replace("quick_gelu", "relu");
        assert!(ClipConfig::from_json(&relu).unwrap_err().contains("relu"));
    }

    #[test]
    fn chinese_clip_takes_bert_defaults() {
        let cfg = r#"{"model_type": "chinese_clip", "projection_dim": 512,
          "vision_config": {"hidden_size": 768, "patch_size": 16},
          "text_config": {"vocab_size": 21128, "hidden_size": 768, "eos_token_id": null}}"#;
        let c = ClipConfig::from_json(cfg).unwrap();
        assert_eq!(c.family, Family::ChineseClip);
        assert_eq!(c.family.name(), "chinese_clip");
        assert_eq!(c.text_config.hidden_act, Activation::Gelu);
        assert_eq!(c.text_config.layer_norm_eps, 1e-12);
        assert_eq!(c.text_config.type_vocab_size, 2);
        assert_eq!(c.text_config.max_position_embeddings, 512);
        assert_eq!(c.vision_config.hidden_act, Activation::QuickGelu);
        let naflex = r#"{"model_type": "siglip2", "vision_config": {}, "text_config": {}}"#;
        let err = ClipConfig::from_json(naflex).unwrap_err();
        assert!(
            err.contains("NaFlex") && err.contains("\"siglip\""),
            "{err}"
        );
    }

    #[test]
    fn siglip_takes_siglip_defaults_and_its_embedding_is_the_vision_width() {
        // google/siglip-so400m-patch14-384's config states only what differs.
        let cfg = r#"{"model_type": "siglip",
          "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
            "num_hidden_layers": 27, "image_size": 384, "patch_size": 14},
          "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
            "num_hidden_layers": 27}}"#;
        let c = ClipConfig::from_json(cfg).unwrap();
        assert_eq!(c.family, Family::Siglip);
        assert_eq!(c.projection_dim, 1152);
        assert_eq!(c.vision_config.num_patches(), 27 * 27);
        assert_eq!(c.vision_config.hidden_act, Activation::GeluTanh);
        assert_eq!(c.vision_config.layer_norm_eps, 1e-6);
        assert_eq!(c.text_config.max_position_embeddings, 64);
        assert_eq!(c.text_config.vocab_size, 32000);
        let bare = ClipConfig::from_json(
            r#"{"model_type": "siglip", "vision_config": {}, "text_config": {}}"#,
        )
        .unwrap();
        assert_eq!(
            (bare.projection_dim, bare.vision_config.patch_size),
            (768, 16)
        );
        let odd = cfg.replace(
            "\"num_hidden_layers\": 27}}",
            "\"num_hidden_layers\": 27, \"projection_size\": 768}}",
        );
        assert!(ClipConfig::from_json(&odd)
            .unwrap_err()
            .contains("projection_size"));
        let headless = cfg.replace(
            "\"patch_size\": 14}",
            "\"patch_size\": 14, \"vision_use_head\": false}",
        );
        assert!(ClipConfig::from_json(&headless)
            .unwrap_err()
            .contains("vision_use_head"));
    }
}
