//! The MLP's two layers in one call ([`mlp`]): fc1's output handed to fc2 without being laid out
//! row by row where the kernels allow (f32 and bf16: straight into fc2's packed rows; int8 on AMX:
//! as f32 rows with each row's largest |value| noted as they are written). Not for: the products
//! themselves (`mod.rs`, `tiles.rs`, `amx/`).

use super::pack::{lines_as_floats_mut, Line};
use super::tiles::{Out, SendPtr};
use super::{amx, pool, Epilogue, HostNorm, LinearPrecision, PackedWeight};

/// `residual + fc2(epilogue(fc1(norm(x))))` for `m` rows of `x`: fc1's tiles are written, as they
/// are finished, straight into the packed rows fc2 reads (so its output, 4 × wider than x, is
/// never laid out row by row, nor packed again, nor allocated: at 8 images that was 33 MB each
/// time, mapped fresh and zeroed page by page).
pub fn mlp(
    fc1: &PackedWeight,
    fc2: &PackedWeight,
    x: &[f32],
    m: usize,
    norm: Option<HostNorm<'_>>,
    epilogue: Epilogue,
    residual: &[f32],
) -> Vec<f32> {
    assert!(
        fc1.simd == fc2.simd && fc1.n == fc2.k,
        "mlp: fc1 and fc2 do not chain"
    );
    fc1.check(x, m, norm, None);
    assert_eq!(residual.len(), m * fc2.n, "mlp: residual size");
    if fc1.amx.is_some() != fc2.amx.is_some()
        || fc1.precision != fc2.precision
        || (fc1.precision == LinearPrecision::Int8 && fc1.amx.is_none())
        || (fc1.precision == LinearPrecision::Bf16 && !fc1.n.is_multiple_of(2))
    {
        // One on AMX, one not (a width that is not a multiple of 32), two precisions, an odd width
        // in bf16 (a pair would straddle two tiles), or int8 (a row's scale needs the whole row):
        // fc1's output cannot go straight into the rows fc2 reads; one by one.
        let h = fc1.matmul_vec(x, m, norm, None, epilogue);
        return fc2.matmul_vec(&h, m, None, Some(residual), Epilogue::None);
    }
    let mut a = pool::take();
    fc1.pack_input(x, m, norm, &mut a);
    if fc1.precision == LinearPrecision::Int8 {
        // SAFETY: sizes checked above; both layers on AMX (the test above), `a` just packed.
        return unsafe { mlp_int8_amx((fc1, fc2), a, m, epilogue, residual) };
    }
    // Every line of the rows fc2 reads is written by fc1's tiles below, but those past the last
    // row (never read either): keep the buffer's old contents rather than zero 33 MB each time.
    let mut h = pool::take();
    let lines = fc2.input_lines(m);
    if h.len() < lines {
        h.resize(lines, Line([0.0; 16]));
    }
    // SAFETY: sizes checked above; a holds m rows packed for fc1, h room for m rows packed for
    // fc2 (fc1.n = fc2.k, the same kernels), the residual m × fc2.n.
    unsafe {
        let to_h = Out {
            epilogue: epilogue.at(fc1.precision),
            packed: Some(SendPtr(lines_as_floats_mut(&mut h).as_mut_ptr())),
            ..Out::rows(std::ptr::null_mut(), 0)
        };
        fc1.run(&a, m, &to_h);
        let y = fc2.rows_plus(&h, m, residual);
        pool::give(a);
        pool::give(h);
        y
    }
}

/// [`mlp`] with both layers int8 on AMX, from `a` (x packed for fc1; given back to the pool):
/// fc1's rows written as f32 (a row's scale needs the whole row, which no one task computes), each
/// task noting the largest |value| of its part of each row (`Out::row_max`), so that fc2's packing
/// reads each row once, not twice (one pass to find its scale). Bit for bit the layers one by one.
///
/// # Safety
/// Both layers are on AMX and chain (fc1.n = fc2.k); `a` holds m rows packed for fc1; the residual
/// m × fc2.n floats.
unsafe fn mlp_int8_amx(
    (fc1, fc2): (&PackedWeight, &PackedWeight),
    mut a: Vec<Line>,
    m: usize,
    epilogue: Epilogue,
    residual: &[f32],
) -> Vec<f32> {
    let mut h = Vec::with_capacity(m * fc1.n);
    // Every slot that is not written stays zero (below every |value|).
    let mut maxima = vec![0f32; m * (fc1.n / 32)];
    // SAFETY: AMX layers have n a multiple of 32; h (capacity) m × fc1.n floats, each written once
    // by fc1's tasks; maxima m × fc1.n / 32 slots; the rest the contract.
    unsafe {
        let to_h = Out {
            epilogue: epilogue.at(fc1.precision),
            row_max: Some(SendPtr(maxima.as_mut_ptr())),
            ..Out::rows(h.as_mut_ptr(), fc1.n)
        };
        fc1.run(&a, m, &to_h);
        h.set_len(m * fc1.n);
        amx::pack_rows_int8_with(&h, m, fc2.k, None, Some(&maxima), &mut a);
        let y = fc2.rows_plus(&a, m, residual);
        pool::give(a);
        y
    }
}
