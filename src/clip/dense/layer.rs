//! The candle-facing linear layer: [`Dense`] runs a packed layer (`mod.rs`) as candle custom ops
//! where the weights are f32 on the CPU, and is candle's `Linear` everywhere else. Not for: the
//! packing or the products themselves (`mod.rs`, `tiles.rs`, `amx/`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::Linear;

use super::{mlp, Epilogue, HostNorm, PackedWeight, Simd};

/// The arithmetic of the packed linear layers on the CPU (`--precision`): f32 (exact to within
/// f32's rounding, the default), bf16 operands with f32 sums (`bf16.rs`), or int8 operands with
/// integer sums (`int8.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearPrecision {
    #[default]
    F32,
    Bf16,
    Int8,
}

/// A linear layer: packed on CPU when the CPU has a kernel, candle's `Linear` otherwise.
pub enum Dense {
    Packed(PackedWeight),
    Candle(Linear),
}

impl Dense {
    /// `weight`: `[out, inp]`; packs it (and drops the tensor) when it lives on the CPU in f32.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Self::with_precision(weight, bias, LinearPrecision::F32)
    }

    /// As [`Self::new`], packed for `precision`'s kernels. bf16 where the CPU has no bf16 kernel
    /// is an error (the caller checks [`super::bf16::available`] first, to refuse with the reason).
    pub fn with_precision(
        weight: Tensor,
        bias: Option<Tensor>,
        precision: LinearPrecision,
    ) -> Result<Self> {
        if weight.device().is_cpu() && weight.dtype() == DType::F32 && Simd::get() != Simd::None {
            let (n, k) = weight.dims2()?;
            // Packed from the tensor's own storage, not a copy of it.
            let weight = weight.contiguous()?;
            let (storage, layout) = weight.storage_and_layout();
            let (candle_core::Storage::Cpu(CpuStorage::F32(all)), Some((start, end))) =
                (&*storage, layout.contiguous_offsets())
            else {
                candle_core::bail!("a {n}×{k} weight not contiguous in f32 on the CPU");
            };
            let w = all.get(start..end).ok_or_else(|| {
                candle_core::Error::Msg(format!("a {n}×{k} weight outside its storage"))
            })?;
            if let Some(packed) = Self::from_floats(w, n, k, bias.as_ref(), precision)? {
                return Ok(packed);
            }
        }
        if precision != LinearPrecision::F32 {
            candle_core::bail!("{precision:?} linear layers run on the CPU's own kernels only");
        }
        Ok(Dense::Candle(Linear::new(weight, bias)))
    }

    /// The layer packed from `w` (`[n, k]`, row-major f32, e.g. still in a checkpoint's map) for
    /// `precision`'s kernels; `None` where the CPU has no kernel for f32 (then only candle's
    /// `Linear`, from a tensor, runs it).
    pub fn from_floats(
        w: &[f32],
        n: usize,
        k: usize,
        bias: Option<&Tensor>,
        precision: LinearPrecision,
    ) -> Result<Option<Self>> {
        if Simd::get() == Simd::None || w.len() != n * k {
            return Ok(None);
        }
        let b = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        let packed = match precision {
            LinearPrecision::F32 => PackedWeight::new(w, n, k, b.as_deref()),
            LinearPrecision::Bf16 => Some(
                PackedWeight::new_bf16(w, n, k, b.as_deref())
                    .ok_or_else(|| candle_core::Error::Msg(super::bf16::unavailable_reason()))?,
            ),
            LinearPrecision::Int8 => Some(
                PackedWeight::new_int8(w, n, k, b.as_deref())
                    .ok_or_else(|| candle_core::Error::Msg(super::int8::unavailable_reason()))?,
            ),
        };
        Ok(packed.map(Dense::Packed))
    }

    /// The arithmetic of its products (f32 for candle's layer).
    pub fn precision(&self) -> LinearPrecision {
        match self {
            Dense::Packed(p) => p.precision(),
            Dense::Candle(_) => LinearPrecision::F32,
        }
    }

    /// `x · Wᵀ + b`, over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) => x.contiguous()?.apply_op1_no_bwd(&Op::new(p)),
            Dense::Packed(_) => mismatch(x),
            Dense::Candle(l) => l.forward(x),
        }
    }

    /// `epilogue(x · Wᵀ + b)`: on a packed layer the epilogue is applied to each output tile while
    /// it is in cache, otherwise as a separate pass.
    pub fn forward_with(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        match (self, epilogue) {
            (_, Epilogue::None) => self.forward(x),
            (Dense::Packed(p), _) if packable(x) => x.contiguous()?.apply_op1_no_bwd(&Op {
                epilogue,
                ..Op::new(p)
            }),
            (_, Epilogue::QuickGelu | Epilogue::QuickGeluFma) => {
                crate::clip::kernels::quick_gelu(&self.forward(x)?)
            }
            (_, Epilogue::GeluTanh) => self.forward(x)?.gelu(),
            (_, Epilogue::GeluErf) => self.forward(x)?.gelu_erf(),
        }
    }

    /// `epilogue(layer_norm(x) · Wᵀ + b)` with each row normalized while it is packed (one pass
    /// over x instead of three); `None` where this layer is not packed for `x` (the caller
    /// normalizes first).
    pub fn forward_normed(
        &self,
        x: &Tensor,
        norm: HostNorm<'_>,
        epilogue: Epilogue,
    ) -> Result<Option<Tensor>> {
        match self {
            Dense::Packed(p) if packable(x) => Ok(Some(x.contiguous()?.apply_op1_no_bwd(&Op {
                norm: Some(norm),
                epilogue,
                ..Op::new(p)
            })?)),
            _ => Ok(None),
        }
    }

    /// `x + fc2(epilogue(fc1(layer_norm(x))))` in one op where both layers are packed and chain
    /// (see [`mlp`]); `None` otherwise (the caller runs them one by one).
    pub fn mlp(
        fc1: &Dense,
        fc2: &Dense,
        x: &Tensor,
        norm: HostNorm<'_>,
        epilogue: Epilogue,
    ) -> Result<Option<Tensor>> {
        match (fc1, fc2) {
            (Dense::Packed(f1), Dense::Packed(f2))
                if packable(x)
                    && f1.simd == f2.simd
                    && f1.precision() == f2.precision()
                    && f1.n == f2.k
                    && f2.n == f1.k =>
            {
                Ok(Some(x.contiguous()?.apply_op1_no_bwd(&MlpOp {
                    fc1: f1,
                    fc2: f2,
                    norm,
                    epilogue,
                })?))
            }
            _ => Ok(None),
        }
    }

    /// `residual + x · Wᵀ + b`, the residual added in the same pass.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) && packable(residual) => x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &Op::new(p)),
            _ => residual + self.forward(x)?,
        }
    }
}

/// The MLP's two layers in one op ([`mlp`]).
struct MlpOp<'a> {
    fc1: &'a PackedWeight,
    fc2: &'a PackedWeight,
    norm: HostNorm<'a>,
    epilogue: Epilogue,
}

impl CustomOp1 for MlpOp<'_> {
    fn name(&self) -> &'static str {
        "imgvec-mlp"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (k, n) = (self.fc1.k, self.fc2.n);
        if l.shape().dims().last() != Some(&k) || k != n {
            candle_core::bail!(
                "mlp: input {:?} for layers {k} → {} → {n}",
                l.shape(),
                self.fc1.n
            );
        }
        check_norm(Some(self.norm), k)?;
        let m = x.len() / k.max(1);
        // The residual is the input itself: x + mlp(ln(x)).
        let y = mlp(self.fc1, self.fc2, x, m, Some(self.norm), self.epilogue, x);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// A LayerNorm fused into a layer's packing must be as wide as the layer's input.
fn check_norm(norm: Option<HostNorm<'_>>, k: usize) -> Result<()> {
    match norm {
        Some(n) if n.weight.len() != k || n.bias.len() != k => {
            candle_core::bail!("dense: a norm of {} for inputs of {k}", n.weight.len())
        }
        _ => Ok(()),
    }
}

fn packable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// A packed layer only exists for f32 weights on the CPU, where its inputs live too.
fn mismatch(x: &Tensor) -> Result<Tensor> {
    candle_core::bail!(
        "dense: a packed f32 CPU layer was given {:?} on {:?}",
        x.dtype(),
        x.device().location()
    )
}

struct Op<'a> {
    weight: &'a PackedWeight,
    norm: Option<HostNorm<'a>>,
    epilogue: Epilogue,
}

impl<'a> Op<'a> {
    fn new(weight: &'a PackedWeight) -> Self {
        Self {
            weight,
            norm: None,
            epilogue: Epilogue::None,
        }
    }

    fn run(&self, x: &[f32], l: &Layout, residual: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let p = self.weight;
        let dims = l.shape().dims();
        if dims.last() != Some(&p.k) {
            candle_core::bail!("dense: input {:?}, weight takes {}", l.shape(), p.k);
        }
        let m = l.shape().elem_count() / p.k.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = p.n;
        }
        if residual.is_some_and(|r| r.len() != m * p.n) {
            candle_core::bail!("dense: residual does not match the output {out_dims:?}");
        }
        check_norm(self.norm, p.k)?;
        let y = p.matmul_vec(x, m, self.norm, residual, self.epilogue);
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }
}

pub(super) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    crate::clip::kernels::contiguous_f32(s, l)
        .ok_or_else(|| candle_core::Error::Msg("dense: contiguous f32 expected".into()))
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "imgvec-dense"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s, l)?, l, None)
    }
}

impl CustomOp2 for Op<'_> {
    fn name(&self) -> &'static str {
        "imgvec-dense-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s1, l1)?, l1, Some(contiguous_f32(s2, l2)?))
    }
}
