//! Checked access to a memory-mapped `model.safetensors`.
//!
//! Every tensor is fetched by its Hugging Face name and its shape is checked against what the config
//! says; a missing or mis-shaped tensor is an error naming the file and the tensor. There is no
//! fallback that invents weights (unlike candle's `VarBuilder` with an initialiser), so a checkpoint
//! that does not match the architecture can never run silently. Not for: model arithmetic.

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::ClipError;

/// The tensors of one checkpoint file, memory-mapped (loading costs page-ins, not copies).
pub struct Weights {
    path: PathBuf,
    st: MmapedSafetensors,
    device: Device,
    dtype: DType,
}

impl Weights {
    /// Maps the file and parses its header. A missing, truncated or corrupt file is an error naming it.
    pub fn open(path: &Path, device: &Device, dtype: DType) -> Result<Self, ClipError> {
        let meta = std::fs::metadata(path).map_err(|e| ClipError::io(path, e))?;
        if !meta.is_file() {
            return Err(ClipError::Weights {
                path: path.to_path_buf(),
                reason: "not a regular file".into(),
            });
        }
        // SAFETY: the file is mapped read-only; imgvec never writes to a checkpoint while it runs. If
        // another process truncates it under us, reads fault — the same contract as every mmap-based
        // loader (candle, safetensors, PyTorch's mmap=True).
        let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| ClipError::Weights {
            path: path.to_path_buf(),
            reason: format!("not a readable safetensors file (truncated or corrupt?): {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            st,
            device: device.clone(),
            dtype,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tensor `name`, which must have exactly `shape`, converted to the model's dtype and device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ClipError> {
        let view = self.st.get(name).map_err(|_| ClipError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            expected: shape.to_vec(),
        })?;
        if view.shape() != shape {
            return Err(ClipError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let t = self
            .st
            .load(name, &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(|e| ClipError::Weights {
                path: self.path.clone(),
                reason: format!("tensor {name}: {e}"),
            })?;
        Ok(t)
    }

    /// Whether the file holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }
}
