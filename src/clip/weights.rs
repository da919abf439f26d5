//! Checked access to a checkpoint's tensors: a memory-mapped `model.safetensors`, or a PyTorch
//! `pytorch_model.bin` (what some repositories, OFA-Sys' Chinese-CLIP among them, publish instead).
//!
//! Every tensor is fetched by its Hugging Face name and its shape is checked against what the config
//! says; a missing or mis-shaped tensor is an error naming the file and the tensor. There is no
//! fallback that invents weights (unlike candle's `VarBuilder` with an initialiser), so a checkpoint
//! that does not match the architecture can never run silently. Not for: model arithmetic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use memmap2::{Mmap, UncheckedAdvice};
use safetensors::tensor::{Dtype, TensorInfo, TensorView};

use super::ClipError;

/// The tensors of one checkpoint file, memory-mapped.
///
/// Each tensor is copied out of the map once, into the model's own memory, and its pages are then
/// released from this process (`MADV_DONTNEED`), so loading ViT-L/14's vision tower peaks near the
/// size of its weights (≈1.2 GB) instead of twice that, and the text tower's pages are never touched.
pub struct Weights {
    path: PathBuf,
    source: Source,
    device: Device,
    dtype: DType,
    /// How the linear layers are packed on the CPU.
    linear: super::dense::LinearPrecision,
}

/// Where the tensors come from.
enum Source {
    /// `model.safetensors`, memory-mapped.
    Safetensors {
        map: Mmap,
        /// Where the tensor data starts in the file (after the 8-byte length and the JSON header).
        data_start: usize,
        tensors: HashMap<String, TensorInfo>,
    },
    /// `pytorch_model.bin` (PyTorch's zip of pickles; what the OFA-Sys Chinese-CLIP repositories
    /// publish), read a tensor at a time by candle's reader (no code in the pickle is run).
    Pytorch(PthTensors),
}

/// A fingerprint of a safetensors file without reading all of it: hex SHA-256 over the file's
/// length, its header (names, shapes, offsets) and 16 samples of 4 KiB spread evenly over the
/// tensor data. Two checkpoints with different weights differ in every sample in practice
/// (random or trained, even fine-tunes), whatever their directories are called; reading ≈64 KiB
/// keeps it instant for a 1.7 GB file.
pub fn fingerprint(path: &Path) -> Result<String, ClipError> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    const SAMPLES: u64 = 16;
    const SAMPLE: u64 = 4096;
    let io = |e| ClipError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut hash = Sha256::new();
    hash.update(len.to_le_bytes());
    // A PyTorch zip has no header of ours to read: its samples alone.
    let pytorch = path.extension().is_some_and(|e| e == "bin");
    let mut n = [0u8; 8];
    if !pytorch {
        file.read_exact(&mut n).map_err(io)?;
    }
    let header_len = u64::from_le_bytes(n);
    if !pytorch && (header_len > len.saturating_sub(8) || header_len > 100 << 20) {
        return Err(ClipError::Weights {
            path: path.to_path_buf(),
            reason: "not a readable safetensors file (truncated or corrupt?): bad header length"
                .into(),
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    hash.update(&header);
    let start = if pytorch { 0 } else { 8 + header_len };
    let data = len - start;
    let mut buf = vec![0u8; SAMPLE as usize];
    for i in 0..SAMPLES {
        let at = start + data.saturating_sub(SAMPLE) * i / (SAMPLES - 1);
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        let take = SAMPLE.min(len - at) as usize;
        file.read_exact(&mut buf[..take]).map_err(io)?;
        hash.update(&buf[..take]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Weights {
    /// Maps the file and parses its header. A missing, truncated or corrupt file is an error naming it.
    pub fn open(path: &Path, device: &Device, dtype: DType) -> Result<Self, ClipError> {
        let bad = |reason: String| ClipError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| ClipError::io(path, e))?;
        let meta = file.metadata().map_err(|e| ClipError::io(path, e))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        // SAFETY: the file is mapped read-only; imgvec never writes to a checkpoint while it runs. If
        // another process truncates it under us, reads fault — the same contract as every mmap-based
        // loader (candle, safetensors, PyTorch's mmap=True).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ClipError::io(path, e))?;
        let (header_len, metadata) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
                bad(format!(
                    "not a readable safetensors file (truncated or corrupt?): {e}"
                ))
            })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            source: Source::Safetensors {
                map,
                data_start: 8 + header_len,
                tensors,
            },
            device: device.clone(),
            dtype,
            linear: super::dense::LinearPrecision::F32,
        })
    }

    /// Reads the tensor index of a PyTorch `pytorch_model.bin`; a file that is not one is an error
    /// naming it.
    pub fn open_pytorch(path: &Path, device: &Device, dtype: DType) -> Result<Self, ClipError> {
        let pth = PthTensors::new(path, None).map_err(|e| ClipError::Weights {
            path: path.to_path_buf(),
            reason: format!("not a readable PyTorch checkpoint (zip of pickles): {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            source: Source::Pytorch(pth),
            device: device.clone(),
            dtype,
            linear: super::dense::LinearPrecision::F32,
        })
    }

    /// The same tensors, their linear layers packed for `linear` (see [`super::ModelDir::with_linear`]).
    pub fn with_linear(mut self, linear: super::dense::LinearPrecision) -> Self {
        self.linear = linear;
        self
    }

    /// How the linear layers are packed on the CPU.
    pub fn linear(&self) -> super::dense::LinearPrecision {
        self.linear
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tensor `name`, which must have exactly `shape`, converted to the model's dtype and device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ClipError> {
        let (map, data_start, tensors) = match &self.source {
            Source::Safetensors {
                map,
                data_start,
                tensors,
            } => (map, *data_start, tensors),
            Source::Pytorch(pth) => return self.get_pytorch(pth, name, shape),
        };
        let info = tensors.get(name).ok_or_else(|| ClipError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            expected: shape.to_vec(),
        })?;
        if info.shape != shape {
            return Err(ClipError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (start, end) = (
            data_start + info.data_offsets.0,
            data_start + info.data_offsets.1,
        );
        let bytes = &map[start..end]; // in bounds: read_metadata checked the offsets
        let wrap = |e: candle_core::Error| ClipError::Weights {
            path: self.path.clone(),
            reason: format!("tensor {name}: {e}"),
        };
        let tensor = match info.dtype {
            // One copy, straight into the tensor's storage.
            Dtype::F32 => {
                let v: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_vec(v, shape, &self.device).map_err(wrap)?
            }
            Dtype::F16 | Dtype::BF16 | Dtype::F64 => {
                let view = TensorView::new(info.dtype, info.shape.clone(), bytes).map_err(|e| {
                    ClipError::Weights {
                        path: self.path.clone(),
                        reason: format!("tensor {name}: {e}"),
                    }
                })?;
                view.load(&self.device).map_err(wrap)?
            }
            other => {
                return Err(ClipError::Weights {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor {name} has dtype {other:?}; floating-point weights expected"
                    ),
                })
            }
        };
        // SAFETY: the mapping is private and read-only and nothing borrows these pages any more (the
        // data was copied above); after MADV_DONTNEED a later read would fault the file's pages back in.
        unsafe {
            let _ = map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start);
        }
        tensor.to_dtype(self.dtype).map_err(wrap)
    }

    /// [`Self::get`] from a PyTorch checkpoint: the same checks of name, shape and dtype.
    fn get_pytorch(
        &self,
        pth: &PthTensors,
        name: &str,
        shape: &[usize],
    ) -> Result<Tensor, ClipError> {
        let missing = || ClipError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            expected: shape.to_vec(),
        };
        let info = pth.tensor_infos().get(name).ok_or_else(missing)?;
        let found = info.layout.shape().dims().to_vec();
        if found != shape {
            return Err(ClipError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        if !matches!(
            info.dtype,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(ClipError::Weights {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name} has dtype {:?}; floating-point weights expected",
                    info.dtype
                ),
            });
        }
        let wrap = |e: candle_core::Error| ClipError::Weights {
            path: self.path.clone(),
            reason: format!("tensor {name}: {e}"),
        };
        let tensor = pth.get(name).map_err(wrap)?.ok_or_else(missing)?;
        tensor
            .contiguous()
            .and_then(|t| t.to_device(&self.device))
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(wrap)
    }

    /// Whether the file holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Safetensors { tensors, .. } => tensors.contains_key(name),
            Source::Pytorch(pth) => pth.tensor_infos().contains_key(name),
        }
    }
}
