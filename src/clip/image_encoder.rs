//! Images → embeddings: the vision tower of the checkpoint's family with its preprocessing
//! parameters ([`ImageEncoder`]).
//!
//! What it is for: loading only the vision side of a checkpoint and embedding preprocessed pixels
//! in batches. What it is not for: decoding or preprocessing images (`crate::image`,
//! `preprocess`), or the towers' arithmetic (`vision`, `siglip`, `dense`).

use candle_core::{DType, Device, Tensor};

use super::config::{self, Family};
use super::preprocess::PreprocessConfig;
use super::siglip::SiglipVisionTower;
use super::vision::VisionTower;
use super::{ClipError, ModelDir};

/// Images → embeddings: the vision tower plus the checkpoint's preprocessing parameters.
pub struct ImageEncoder {
    tower: AnyVisionTower,
    preprocess: PreprocessConfig,
    device: Device,
    dtype: DType,
    dims: usize,
    /// Last: the tower's memory goes back to the system once it is dropped.
    _release: crate::ReleaseOnDrop,
}

impl ImageEncoder {
    /// Loads `vision_model.*` and `visual_projection` only, in the model's dtype.
    pub fn load(model: &ModelDir, device: &Device) -> Result<Self, ClipError> {
        let cfg = model.config();
        let weights = model.weights(device, model.dtype())?;
        let tower = match cfg.family {
            Family::Clip | Family::ChineseClip => AnyVisionTower::Clip(Box::new(
                VisionTower::load(&weights, &cfg.vision_config, cfg.projection_dim)?,
            )),
            Family::Siglip => AnyVisionTower::Siglip(Box::new(SiglipVisionTower::load(
                &weights,
                &cfg.vision_config,
            )?)),
        };
        let preprocess = model.preprocess_config()?;
        crate::release_freed_memory();
        Ok(Self {
            tower,
            preprocess,
            device: device.clone(),
            dtype: model.dtype(),
            dims: cfg.projection_dim,
            _release: crate::ReleaseOnDrop,
        })
    }

    /// The dtype the tower computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn dims(&self) -> usize {
        self.dims
    }
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }
    /// Floats in one preprocessed image: channels × size × size.
    pub fn pixels_len(&self) -> usize {
        let c = self.tower.config();
        c.num_channels * c.image_size * c.image_size
    }

    /// Embeds a batch of preprocessed images (each `[3, size, size]`, channel-major).
    pub fn embed_pixels(&self, images: &[&[f32]]) -> Result<Vec<Vec<f32>>, ClipError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.tower.config();
        let (ch, s) = (c.num_channels, c.image_size);
        let n = self.pixels_len();
        let mut flat = Vec::with_capacity(images.len() * n);
        for img in images {
            if img.len() != n {
                return Err(ClipError::Compute(candle_core::Error::Msg(format!(
                    "preprocessed image has {} floats, expected {n}",
                    img.len()
                ))));
            }
            flat.extend_from_slice(img);
        }
        // Uploaded as f32 and converted on the device (one kernel; no host-side pass).
        let pixels =
            Tensor::from_vec(flat, (images.len(), ch, s, s), &self.device)?.to_dtype(self.dtype)?;
        // The tower's output is f32 already (converted before the normalisation): the one copy back.
        let embeddings = match &self.tower {
            AnyVisionTower::Clip(t) => t.forward(&pixels)?,
            AnyVisionTower::Siglip(t) => t.forward(&pixels)?,
        };
        Ok(embeddings.to_vec2::<f32>()?)
    }
}

/// The vision tower of the checkpoint's family (boxed: one is made per encoder, and the two
/// differ in size).
enum AnyVisionTower {
    Clip(Box<VisionTower>),
    Siglip(Box<SiglipVisionTower>),
}

impl AnyVisionTower {
    fn config(&self) -> &config::VisionConfig {
        match self {
            AnyVisionTower::Clip(t) => t.config(),
            AnyVisionTower::Siglip(t) => t.config(),
        }
    }
}
