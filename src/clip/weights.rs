//! Checked access to a checkpoint's tensors: a memory-mapped `model.safetensors`, or a PyTorch
//! `pytorch_model.bin` (what some repositories, OFA-Sys' Chinese-CLIP among them, publish instead).
//!
//! Every tensor is fetched by its Hugging Face name and its shape is checked against what the config
//! says; a missing or mis-shaped tensor is an error naming the file and the tensor. There is no
//! fallback that invents weights (unlike candle's `VarBuilder` with an initialiser), so a checkpoint
//! that does not match the architecture can never run silently. Not for: model arithmetic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        map: Arc<Mmap>,
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
                map: Arc::new(map),
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

    /// Names this file and `what` (a tensor, a layer) in an error of candle's while making it.
    pub fn error_in<'a>(
        &'a self,
        what: &'a str,
    ) -> impl Fn(candle_core::Error) -> ClipError + Copy + 'a {
        move |e| ClipError::Weights {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        }
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
        let span = span_of(data_start, info);
        let bytes = &map[span.clone()]; // in bounds: read_metadata checked the offsets
        let what = format!("tensor {name}");
        let wrap = self.error_in(&what);
        let tensor = match info.dtype {
            // One copy, straight into the tensor's storage.
            Dtype::F32 => f32_tensor(bytes, shape, &self.device).map_err(wrap)?,
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
        release(map, span); // copied above
        tensor.to_dtype(self.dtype).map_err(wrap)
    }

    /// `f` run on the f32 values of tensor `name` (of exactly `shape`) read where they lie: a
    /// safetensors file's own f32 data, aligned, for a model in f32 on the CPU; their pages are
    /// then released as [`Self::get`] releases them. `None` where that cannot be (another dtype, a
    /// PyTorch file, a GPU, misaligned data, and a missing or mis-shaped tensor, whose error
    /// [`Self::get`] gives): then take the tensor from [`Self::get`].
    pub fn with_floats<R>(
        &self,
        name: &str,
        shape: &[usize],
        f: impl FnOnce(&[f32]) -> R,
    ) -> Option<R> {
        let Source::Safetensors {
            map,
            data_start,
            tensors,
        } = &self.source
        else {
            return None;
        };
        let info = tensors.get(name)?;
        if !self.device.is_cpu()
            || self.dtype != DType::F32
            || info.dtype != Dtype::F32
            || info.shape != shape
            || cfg!(target_endian = "big")
        {
            return None;
        }
        let span = span_of(*data_start, info);
        // SAFETY: every bit pattern is an f32; the prefix and suffix check the alignment.
        let (before, floats, after) = unsafe { map[span.clone()].align_to::<f32>() };
        if !before.is_empty() || !after.is_empty() {
            return None;
        }
        let out = f(floats);
        release(map, span);
        Some(out)
    }

    /// The rows of the 2-D tensor `name` (which must have exactly `shape`), for a lookup table
    /// (the text tower's token embeddings: 49,408 rows, 152 MB in f32, of which a query reads a
    /// few dozen): on the CPU from a safetensors file, left in the map and read row by row when
    /// looked up ([`Rows::select`]), so they are never all in this process's memory; otherwise
    /// loaded whole, as [`Self::get`] does. The same values either way. The file stays mapped as
    /// long as the table lives (the same contract as while loading: it must not be truncated in
    /// place meanwhile; replacing it by a rename is fine).
    pub fn rows(&self, name: &str, shape: [usize; 2]) -> Result<Rows, ClipError> {
        if let (
            Source::Safetensors {
                map,
                data_start,
                tensors,
            },
            true,
        ) = (&self.source, self.device.is_cpu())
        {
            if let Some(info) = tensors.get(name).filter(|i| {
                i.shape == shape && matches!(i.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
            }) {
                return Ok(Rows::Mapped(MappedRows {
                    map: Arc::clone(map),
                    start: span_of(*data_start, info).start,
                    shape,
                    file_dtype: info.dtype,
                    dtype: self.dtype,
                    name: name.to_string(),
                }));
            }
        }
        // Anything else (missing, another shape or dtype: get's errors; a GPU; PyTorch files).
        Ok(Rows::Loaded(self.get(name, &shape)?))
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
        let what = format!("tensor {name}");
        let wrap = self.error_in(&what);
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

/// Where the data of tensor `info` lies in the file, its header `data_start` bytes long.
fn span_of(data_start: usize, info: &TensorInfo) -> std::ops::Range<usize> {
    data_start + info.data_offsets.0..data_start + info.data_offsets.1
}

/// Lets this process's pages of `span` of the map go (`MADV_DONTNEED`) once its data is copied or
/// packed, so that loading a tower does not keep the file's pages besides its own copy.
fn release(map: &Mmap, span: std::ops::Range<usize>) {
    // SAFETY: the mapping is private and read-only, so its pages are only ever the file's: a later
    // read of `span` faults the same bytes back in from the file.
    unsafe {
        let _ = map.unchecked_advise_range(UncheckedAdvice::DontNeed, span.start, span.len());
    }
}

/// Little-endian f32 bytes as a tensor of `shape`, in one copy.
fn f32_tensor(bytes: &[u8], shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(v, shape, device)
}

/// A lookup table's rows ([`Weights::rows`]): in the checkpoint's map, or loaded.
pub enum Rows {
    Mapped(MappedRows),
    Loaded(Tensor),
}

/// A 2-D tensor left in a safetensors file's map.
pub struct MappedRows {
    map: Arc<Mmap>,
    /// Where its data starts in the file.
    start: usize,
    shape: [usize; 2],
    file_dtype: Dtype,
    /// The model's dtype, which rows are converted to.
    dtype: DType,
    name: String,
}

impl Rows {
    /// Rows `ids` as a `[ids.len(), columns]` tensor in the model's dtype, on the CPU (or the
    /// loaded tensor's device): `index_select` of the whole table, to the bit. An id past the
    /// last row is an error naming the table.
    pub fn select(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let m = match self {
            Rows::Loaded(t) => {
                let ids = Tensor::new(ids, t.device())?;
                return t.index_select(&ids, 0);
            }
            Rows::Mapped(m) => m,
        };
        let [count, cols] = m.shape;
        let width = cols * m.file_dtype.bitsize() / 8;
        let mut bytes = Vec::with_capacity(ids.len() * width);
        for &id in ids {
            let id = id as usize;
            if id >= count {
                candle_core::bail!("{}: row {id} of {count}", m.name);
            }
            // In bounds: read_metadata checked the tensor's offsets, and id < count rows.
            bytes.extend_from_slice(&m.map[m.start + id * width..][..width]);
        }
        let shape = [ids.len(), cols];
        let rows = match m.file_dtype {
            // As `Weights::get` converts, so the values are the same.
            Dtype::F32 => f32_tensor(&bytes, &shape, &Device::Cpu)?,
            dtype => TensorView::new(dtype, shape.to_vec(), &bytes)
                .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", m.name)))?
                .load(&Device::Cpu)?,
        };
        rows.to_dtype(m.dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table left in the map gives, for any ids, what loading it whole and `index_select` give,
    /// to the bit, whatever the file's float type and the model's dtype; an id past its last row
    /// is an error naming it; a table of another shape is get's error.
    #[test]
    fn mapped_rows_are_the_loaded_rows() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("model.safetensors");
        let table = Tensor::randn(0f32, 1.0, (37, 24), &Device::Cpu)?;
        let tensors: HashMap<String, Tensor> = [
            ("f32".to_string(), table.clone()),
            ("f16".to_string(), table.to_dtype(DType::F16)?),
            ("bf16".to_string(), table.to_dtype(DType::BF16)?),
        ]
        .into();
        candle_core::safetensors::save(&tensors, &path)?;
        let ids = [0u32, 36, 5, 5, 17];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let w = Weights::open(&path, &Device::Cpu, dtype)?;
            for name in ["f32", "f16", "bf16"] {
                let rows = w.rows(name, [37, 24])?;
                assert!(
                    matches!(rows, Rows::Mapped(_)),
                    "{name} should stay in the map"
                );
                let got = rows.select(&ids)?;
                let want = w
                    .get(name, &[37, 24])?
                    .index_select(&Tensor::new(&ids[..], &Device::Cpu)?, 0)?;
                assert_eq!(got.dtype(), dtype);
                let bits = |t: &Tensor| -> candle_core::Result<Vec<u32>> {
                    Ok(t.to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?
                        .iter()
                        .map(|v| v.to_bits())
                        .collect())
                };
                assert_eq!(bits(&got)?, bits(&want)?, "{name} read as {dtype:?}");
                let err = rows.select(&[3, 37]).unwrap_err().to_string();
                assert!(err.contains(name) && err.contains("37"), "{err}");
            }
        }
        let w = Weights::open(&path, &Device::Cpu, DType::F32)?;
        assert!(w.rows("f32", [24, 37]).is_err());
        assert!(w.rows("missing", [37, 24]).is_err());
        Ok(())
    }

    /// Floats read in place are the values `get` loads, to the bit; where they cannot be read in
    /// place (another dtype, a model in another dtype, another shape, a missing tensor, data not
    /// aligned to 4 bytes) there are none, and `f` is not run.
    #[test]
    fn floats_in_place_are_the_loaded_ones() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("model.safetensors");
        let table = Tensor::randn(0f32, 1.0, (5, 3), &Device::Cpu)?;
        let tensors: HashMap<String, Tensor> = [
            ("a".to_string(), table.clone()),
            ("b16".to_string(), table.to_dtype(DType::BF16)?),
        ]
        .into();
        candle_core::safetensors::save(&tensors, &path)?;
        let w = Weights::open(&path, &Device::Cpu, DType::F32)?;
        let want = w.get("a", &[5, 3])?.flatten_all()?.to_vec1::<f32>()?;
        let got = w.with_floats("a", &[5, 3], <[f32]>::to_vec);
        assert_eq!(got.as_ref(), Some(&want));
        let never = |_: &[f32]| -> () { panic!("run where the floats are not in place") };
        assert!(w.with_floats("b16", &[5, 3], never).is_none());
        assert!(w.with_floats("a", &[3, 5], never).is_none());
        assert!(w.with_floats("missing", &[5, 3], never).is_none());
        let bf16 = Weights::open(&path, &Device::Cpu, DType::BF16)?;
        assert!(bf16.with_floats("a", &[5, 3], never).is_none());

        // An f32 tensor after a 2-byte one (written by hand: safetensors' writer puts the wider
        // types first): its data starts 2 bytes off alignment.
        let odd = dir.path().join("odd.safetensors");
        let mut header = r#"{"0":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"1":{"dtype":"F32","shape":[5,3],"data_offsets":[2,62]}}"#.to_string();
        while !(8 + header.len()).is_multiple_of(8) {
            header.push(' ');
        }
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&[0, 0]);
        for v in table.flatten_all()?.to_vec1::<f32>()? {
            file.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&odd, file)?;
        let w = Weights::open(&odd, &Device::Cpu, DType::F32)?;
        let offset = match &w.source {
            Source::Safetensors {
                data_start,
                tensors,
                ..
            } => data_start + tensors["1"].data_offsets.0,
            Source::Pytorch(_) => unreachable!("a safetensors file"),
        };
        let misaligned = |w: &Weights| match &w.source {
            Source::Safetensors { map, .. } => !(map[offset..].as_ptr() as usize).is_multiple_of(4),
            Source::Pytorch(_) => false,
        };
        assert!(
            misaligned(&w),
            "the test file should put the f32 data off alignment"
        );
        assert!(w.with_floats("1", &[5, 3], never).is_none());
        // ... and `get` still reads it.
        assert_eq!(w.get("1", &[5, 3])?.flatten_all()?.to_vec1::<f32>()?, want);
        Ok(())
    }
}
