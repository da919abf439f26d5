//! Which device the model runs on (`--device auto|cpu|cuda|metal`), in which precision
//! (`--precision f32|f16|bf16`), and how many images it takes per call by default.
//!
//! The default build is CPU-only; the `cuda` and `metal` cargo features pass through to candle. `auto`
//! takes a GPU when the build has one and it is present, else the CPU. Nothing here is specific to
//! one GPU backend: CUDA and Metal take the same path. Not for: thread settings.

use candle_core::{DType, Device};

use crate::clip::dense::LinearPrecision;

/// The dtype of the model's weights and activations (`--precision`). Embeddings always come out as
/// f32, converted before the L2 normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Bf16,
    /// The CPU's int8 linear layers (AMX-INT8, AVX-512 VNNI or AVX-VNNI), attention's products in
    /// bf16 where the CPU has AVX512_BF16; f32 elsewhere in the model.
    Int8,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
            // The towers' dtype: only the linear layers are in int8 (`model_precision`).
            Precision::Int8 => DType::F32,
        }
    }

    /// "f32", "f16", "bf16" or "int8", as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            p => p.dtype().as_str(),
        }
    }
}

/// The precision for `device`: the one asked for, else f32 on the CPU and f16 on a GPU.
///
/// f16 rather than bf16 on a GPU: three more mantissa bits (10 against 7) for the same tensor-core
/// speed, CLIP's range fits it (OpenAI's own CLIP runs in fp16 on CUDA, and LayerNorm, softmax and the
/// GEMMs accumulate in f32), and candle's bf16 kernels need compute capability 8.0 (Ampere) while f16
/// runs on every GPU candle supports. On the CPU: f32 (exact parity with transformers), or bf16 where
/// the CPU has AVX512_BF16, or int8 where it has AVX2 (fastest with VNNI or AMX) — imgvec's own
/// linear layers in that arithmetic (on AMX's tiles where the CPU has AMX), attention's products in
/// bf16 where the CPU has it, everything else in f32 (`clip::dense::bf16`, `clip::dense::int8`);
/// f16, and bf16 or int8 without the instruction, would run candle's slower kernels and are refused
/// with the reason.
pub fn precision(asked: Option<Precision>, device: &Device) -> Result<Precision, String> {
    match asked {
        Some(Precision::Bf16) if device.is_cpu() => {
            if crate::clip::dense::bf16::available() {
                Ok(Precision::Bf16)
            } else {
                Err(format!(
                    "--precision bf16 on the CPU: {}; leave --precision out (f32) or run on a GPU",
                    crate::clip::dense::bf16::unavailable_reason()
                ))
            }
        }
        Some(Precision::Int8) if device.is_cpu() => {
            if crate::clip::dense::int8::available() {
                Ok(Precision::Int8)
            } else {
                Err(format!(
                    "--precision int8 on the CPU: {}; leave --precision out (f32)",
                    crate::clip::dense::int8::unavailable_reason()
                ))
            }
        }
        Some(Precision::Int8) => Err(
            "--precision int8 is for the CPU (its integer kernels); on a GPU give f16 or bf16, or leave --precision out"
                .to_string(),
        ),
        Some(p) if p != Precision::F32 && device.is_cpu() => Err(format!(
            "--precision {} needs a GPU (--device cuda or metal), and the model runs on the CPU here: \
on the CPU imgvec computes in f32, bf16 (AVX512_BF16) or int8 (AVX-512 VNNI or AVX-VNNI); leave --precision out or give --precision f32",
            p.name()
        )),
        Some(p) => Ok(p),
        None if device.is_cpu() => Ok(Precision::F32),
        None => Ok(Precision::F16),
    }
}

/// How a model runs in `precision` on `device`: the towers' dtype, and the arithmetic of the CPU's
/// linear layers (bf16 on the CPU is f32 towers with bf16 linear layers).
pub fn model_precision(precision: Precision, device: &Device) -> (DType, LinearPrecision) {
    match precision {
        Precision::Bf16 if device.is_cpu() => (DType::F32, LinearPrecision::Bf16),
        Precision::Int8 => (DType::F32, LinearPrecision::Int8),
        p => (p.dtype(), LinearPrecision::F32),
    }
}

/// Images per model call when `--batch-size` is not given: 8 on the CPU (larger batches gain
/// nothing there and delay the first results), 64 on a GPU, which needs big batches to be busy.
/// By arithmetic, not measured: ViT-L/14's vision weights are 1.2 GB in f32 (0.6 GB in f16) and its
/// largest activations at 64 images (the MLP's 64×257×4096 and the attention scores' 64×16×257²)
/// about 270 MB each in f32, a few GB in all: that fits any GPU candle runs on.
pub fn default_batch_size(device: &Device) -> usize {
    if device.is_cpu() {
        8
    } else {
        64
    }
}

/// `--batch-size` as given, else [`default_batch_size`].
pub fn batch_size(given: Option<u32>, device: &Device) -> usize {
    given
        .map(|b| b.max(1) as usize)
        .unwrap_or_else(|| default_batch_size(device))
}

/// The user's choice of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// Opens the chosen device and returns it with a description for the user ("cpu", "cuda:0", ...).
pub fn open(choice: DeviceChoice) -> Result<(Device, String), String> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, cpu_name())),
        DeviceChoice::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err("this imgvec was built without CUDA: rebuild with `cargo build --release --features cuda`".into());
            }
            Device::new_cuda(0)
                .map(|d| (d, "cuda:0".to_string()))
                .map_err(|e| format!("cannot open CUDA device 0: {}", first_line(&e)))
        }
        DeviceChoice::Metal => {
            if !cfg!(feature = "metal") {
                return Err("this imgvec was built without Metal: rebuild on macOS with `cargo build --release --features metal`".into());
            }
            Device::new_metal(0)
                .map(|d| (d, "metal:0".to_string()))
                .map_err(|e| format!("cannot open Metal device 0: {}", first_line(&e)))
        }
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok((d, "cuda:0 (auto)".to_string()));
                }
            }
            if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok((d, "metal:0 (auto)".to_string()));
                }
            }
            Ok((Device::Cpu, format!("{} (auto)", cpu_name())))
        }
    }
}

/// candle's errors can carry a backtrace after the message: the message alone, for the user.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn cpu_name() -> String {
    format!("cpu, {} threads", candle_core::utils::get_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_precision_is_f32_or_bf16_where_the_cpu_has_it() {
        let cpu = Device::Cpu;
        assert_eq!(precision(None, &cpu), Ok(Precision::F32));
        assert_eq!(precision(Some(Precision::F32), &cpu), Ok(Precision::F32));
        let err = precision(Some(Precision::F16), &cpu).unwrap_err();
        assert!(err.starts_with("--precision f16 needs a GPU"), "{err}");
        match precision(Some(Precision::Bf16), &cpu) {
            Ok(p) => {
                assert!(crate::clip::dense::bf16::available());
                assert_eq!(p, Precision::Bf16);
                assert_eq!(
                    model_precision(p, &cpu),
                    (DType::F32, LinearPrecision::Bf16)
                );
            }
            Err(err) => {
                assert!(!crate::clip::dense::bf16::available());
                assert!(err.starts_with("--precision bf16 on the CPU: "), "{err}");
            }
        }
        assert_eq!(
            model_precision(Precision::F32, &cpu),
            (DType::F32, LinearPrecision::F32)
        );
        match precision(Some(Precision::Int8), &cpu) {
            Ok(p) => {
                assert!(crate::clip::dense::int8::available());
                assert_eq!(
                    model_precision(p, &cpu),
                    (DType::F32, LinearPrecision::Int8)
                );
            }
            Err(err) => {
                assert!(!crate::clip::dense::int8::available());
                assert!(err.starts_with("--precision int8 on the CPU: "), "{err}");
            }
        }
    }

    #[test]
    fn batch_size_default_follows_the_device() {
        assert_eq!(batch_size(None, &Device::Cpu), 8);
        assert_eq!(batch_size(Some(3), &Device::Cpu), 3);
        assert_eq!(default_batch_size(&Device::Cpu), 8);
    }

    #[test]
    fn precision_dtypes() {
        assert_eq!(Precision::F32.dtype(), DType::F32);
        assert_eq!(Precision::F16.dtype(), DType::F16);
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
    }
}
