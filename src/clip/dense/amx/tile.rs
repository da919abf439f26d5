//! The tile unit itself: the tile configuration, releasing the tiles, and the tile-product kernels
//! (`tdpbf16ps` over a k range, 32 × 32 and 16 × 32 blocks) in inline assembly.

use std::arch::asm;

/// Tile configuration (palette 1): `rows` rows of 64 bytes for tiles 0–3 (accumulators and, in
/// the 16-row kernel, activations), 16 for tiles 4–7.
#[repr(C, align(64))]
pub(super) struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl Config {
    pub(super) fn new(rows: usize) -> Self {
        let mut c = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            c.colsb[t] = 64;
            c.rows[t] = if t < 4 { rows as u8 } else { 16 };
        }
        c
    }

    /// # Safety
    /// AMX is [`enabled`]; `self` was made by [`Config::new`] with 1 ≤ rows ≤ 16.
    pub(super) unsafe fn load(&self) {
        // SAFETY: AMX is enabled (the contract): the CPU has AMX-TILE and the OS lets this process
        // use the tile data. `self` is the 64-byte, 64-aligned block LDTILECFG reads
        // (repr(C, align(64))), a valid palette-1 configuration: reserved bytes and tiles 8–15
        // zero, tiles 0–7 64 bytes wide and 1–16 rows (the contract). It only reads that memory.
        unsafe { asm!("ldtilecfg [{}]", in(reg) self, options(nostack, readonly)) };
    }
}

/// Frees this thread's tile state (so context switches don't save it).
///
/// # Safety
/// AMX is [`enabled`].
pub(super) unsafe fn release() {
    // SAFETY: AMX is enabled (the contract), so the CPU has TILERELEASE; it touches no memory,
    // only the tile registers and configuration, which no Rust code relies on.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Accumulators 0–3 (rows g, g + 1 × column groups j, j + 1) = C (or 0 when `!load`) + Σ over
/// `steps` k tiles of A·W: the hi·hi, lo·hi and hi·lo products. C: four tiles, rows 64 bytes
/// apart (no two of a tile's rows in one L1 set), (g, j) at `c`, (g, j + 1) 1 KiB on, (g + 1, ·)
/// `gs` bytes on. `a0`, `a1`: the two row groups' hi tiles at the first k tile (the lo tile
/// follows each, the next k tile 2 KiB on); `w0`, `w1`: the two column groups' likewise.
///
/// # Safety
/// AMX is [`enabled`] and the full configuration (`Config::new(16)`) is loaded on this thread;
/// `steps` ≥ 1 (the loop tests at its end); `a0`, `a1`, `w0`, `w1` are valid for reads of `steps`
/// k tiles each (2 KiB apart, the lo tile 1 KiB after the hi); C's four tiles (1 KiB each, at `c`,
/// `c` + 1 KiB, `c` + `gs`, `c` + `gs` + 1 KiB, one allocation) for writes, and for reads when
/// `load`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn k32x32(
    a0: *const u8,
    a1: *const u8,
    w0: *const u8,
    w1: *const u8,
    steps: usize,
    c: *mut u8,
    gs: usize,
    load: bool,
) {
    // SAFETY: the full configuration is loaded (the contract): eight tiles of 16 rows × 64 bytes,
    // so each TILELOADD/TILESTORED (stride 64) touches the 1 KiB from its address. Those are C's
    // four tiles at c, c + 1 KiB, c + gs (`c.add(gs)`: inside C's allocation) and c + gs + 1 KiB,
    // read only when `load`, and `a0`, `a1`, `w0`, `w1` (+ 1 KiB) advanced 2 KiB a step for
    // `steps` ≥ 1 steps: all inside what the contract makes valid. The pointer and count
    // registers it advances are inout and discarded; it uses no stack.
    unsafe {
        asm!(
            "test {load:e}, {load:e}",
            "jz 2f",
            "tileloadd tmm0, [{c0} + {s}*1]",
            "tileloadd tmm1, [{c0} + {s}*1 + 1024]",
            "tileloadd tmm2, [{c1} + {s}*1]",
            "tileloadd tmm3, [{c1} + {s}*1 + 1024]",
            "jmp 3f",
            "2:",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "3:",
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tileloadd tmm6, [{w0} + {s}*1]",
            "tileloadd tmm7, [{w1} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm4, [{a0} + {s}*1 + 1024]",
            "tileloadd tmm5, [{a1} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tileloadd tmm6, [{w0} + {s}*1 + 1024]",
            "tileloadd tmm7, [{w1} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 2048",
            "add {a1}, 2048",
            "add {w0}, 2048",
            "add {w1}, 2048",
            "dec {steps}",
            "jnz 3b",
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c0} + {s}*1 + 1024], tmm1",
            "tilestored [{c1} + {s}*1], tmm2",
            "tilestored [{c1} + {s}*1 + 1024], tmm3",
            load = in(reg) u32::from(load),
            c0 = in(reg) c,
            c1 = in(reg) c.add(gs),
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            w0 = inout(reg) w0 => _,
            w1 = inout(reg) w1 => _,
            steps = inout(reg) steps => _,
            s = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// As [`k32x32`] for one row group (the configured rows of it): accumulators 0 and 1.
///
/// # Safety
/// AMX is [`enabled`] and a configuration made by [`Config::new`] is loaded on this thread (its
/// rows: those of tiles 0–3); `steps` ≥ 1; `a`, `w0`, `w1` valid for reads of `steps` k tiles (as
/// [`k32x32`]); C's two tiles (at `c` and `c` + 1 KiB, the configured rows of 64 bytes each) for
/// writes, and for reads when `load`.
#[inline(always)]
pub(super) unsafe fn k16x32(
    a: *const u8,
    w0: *const u8,
    w1: *const u8,
    steps: usize,
    c: *mut u8,
    load: bool,
) {
    // SAFETY: a configuration is loaded (the contract): tiles 0–3 (C, and A in tmm2–3) the
    // configured rows, 4–7 16 rows, of 64 bytes, so each TILELOADD/TILESTORED (stride 64) touches
    // at most the 1 KiB from its address: C's two tiles at c and c + 1 KiB, read only when `load`,
    // and `a`, `w0`, `w1` (+ 1 KiB) advanced 2 KiB a step for `steps` ≥ 1 steps, all inside what
    // the contract makes valid. The registers it advances are inout and discarded; no stack.
    unsafe {
        asm!(
            "test {load:e}, {load:e}",
            "jz 2f",
            "tileloadd tmm0, [{c0} + {s}*1]",
            "tileloadd tmm1, [{c0} + {s}*1 + 1024]",
            "jmp 3f",
            "2:",
            "tilezero tmm0",
            "tilezero tmm1",
            "3:",
            "tileloadd tmm2, [{a} + {s}*1]",
            "tileloadd tmm3, [{a} + {s}*1 + 1024]",
            "tileloadd tmm4, [{w0} + {s}*1]",
            "tileloadd tmm5, [{w1} + {s}*1]",
            "tileloadd tmm6, [{w0} + {s}*1 + 1024]",
            "tileloadd tmm7, [{w1} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm2, tmm4",
            "tdpbf16ps tmm1, tmm2, tmm5",
            "tdpbf16ps tmm0, tmm3, tmm4",
            "tdpbf16ps tmm1, tmm3, tmm5",
            "tdpbf16ps tmm0, tmm2, tmm6",
            "tdpbf16ps tmm1, tmm2, tmm7",
            "add {a}, 2048",
            "add {w0}, 2048",
            "add {w1}, 2048",
            "dec {steps}",
            "jnz 3b",
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c0} + {s}*1 + 1024], tmm1",
            load = in(reg) u32::from(load),
            c0 = in(reg) c,
            a = inout(reg) a => _,
            w0 = inout(reg) w0 => _,
            w1 = inout(reg) w1 => _,
            steps = inout(reg) steps => _,
            s = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// The kernels of tiles holding one term a k tile (`--precision bf16`: `tdpbf16ps`; int8:
/// `tdpbssd`, signed bytes into i32 sums): as [`k32x32`] and [`k16x32`], one product a pair of
/// tiles, the next k tile 1 KiB on.
macro_rules! one_term_kernels {
    ($k32:ident, $k16:ident, $op:literal) => {
        /// As [`k32x32`] with one tile a k tile, the product
        #[doc = concat!("`", $op, "`.")]
        ///
        /// # Safety
        /// As [`k32x32`], with `a0`, `a1`, `w0`, `w1` valid for reads of `steps` k tiles 1 KiB
        /// apart.
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        pub(super) unsafe fn $k32(
            a0: *const u8,
            a1: *const u8,
            w0: *const u8,
            w1: *const u8,
            steps: usize,
            c: *mut u8,
            gs: usize,
            load: bool,
        ) {
            // SAFETY: as in k32x32: the full configuration is loaded (the contract), so each
            // TILELOADD/TILESTORED (stride 64) touches the 1 KiB from its address: C's four tiles,
            // read only when `load`, and a0, a1, w0, w1 advanced 1 KiB a step for `steps` ≥ 1
            // steps, all inside what the contract makes valid; inout registers discarded; no
            // stack.
            unsafe {
                asm!(
                    "test {load:e}, {load:e}",
                    "jz 2f",
                    "tileloadd tmm0, [{c0} + {s}*1]",
                    "tileloadd tmm1, [{c0} + {s}*1 + 1024]",
                    "tileloadd tmm2, [{c1} + {s}*1]",
                    "tileloadd tmm3, [{c1} + {s}*1 + 1024]",
                    "jmp 3f",
                    "2:",
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    "3:",
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    "tileloadd tmm6, [{w0} + {s}*1]",
                    "tileloadd tmm7, [{w1} + {s}*1]",
                    concat!($op, " tmm0, tmm4, tmm6"),
                    concat!($op, " tmm1, tmm4, tmm7"),
                    concat!($op, " tmm2, tmm5, tmm6"),
                    concat!($op, " tmm3, tmm5, tmm7"),
                    "add {a0}, 1024",
                    "add {a1}, 1024",
                    "add {w0}, 1024",
                    "add {w1}, 1024",
                    "dec {steps}",
                    "jnz 3b",
                    "tilestored [{c0} + {s}*1], tmm0",
                    "tilestored [{c0} + {s}*1 + 1024], tmm1",
                    "tilestored [{c1} + {s}*1], tmm2",
                    "tilestored [{c1} + {s}*1 + 1024], tmm3",
                    load = in(reg) u32::from(load),
                    c0 = in(reg) c,
                    c1 = in(reg) c.add(gs),
                    a0 = inout(reg) a0 => _,
                    a1 = inout(reg) a1 => _,
                    w0 = inout(reg) w0 => _,
                    w1 = inout(reg) w1 => _,
                    steps = inout(reg) steps => _,
                    s = in(reg) 64usize,
                    options(nostack),
                )
            };
        }

        /// As [`k16x32`] with one tile a k tile, the product
        #[doc = concat!("`", $op, "`.")]
        ///
        /// # Safety
        /// As [`k16x32`], with `a`, `w0`, `w1` valid for reads of `steps` k tiles 1 KiB apart.
        #[inline(always)]
        pub(super) unsafe fn $k16(
            a: *const u8,
            w0: *const u8,
            w1: *const u8,
            steps: usize,
            c: *mut u8,
            load: bool,
        ) {
            // SAFETY: as in k16x32: a configuration is loaded (the contract), each
            // TILELOADD/TILESTORED touches at most the 1 KiB from its address: C's two tiles, read
            // only when `load`, and a, w0, w1 advanced 1 KiB a step for `steps` ≥ 1 steps; inout
            // registers discarded; no stack.
            unsafe {
                asm!(
                    "test {load:e}, {load:e}",
                    "jz 2f",
                    "tileloadd tmm0, [{c0} + {s}*1]",
                    "tileloadd tmm1, [{c0} + {s}*1 + 1024]",
                    "jmp 3f",
                    "2:",
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "3:",
                    "tileloadd tmm2, [{a} + {s}*1]",
                    "tileloadd tmm4, [{w0} + {s}*1]",
                    "tileloadd tmm5, [{w1} + {s}*1]",
                    concat!($op, " tmm0, tmm2, tmm4"),
                    concat!($op, " tmm1, tmm2, tmm5"),
                    "add {a}, 1024",
                    "add {w0}, 1024",
                    "add {w1}, 1024",
                    "dec {steps}",
                    "jnz 3b",
                    "tilestored [{c0} + {s}*1], tmm0",
                    "tilestored [{c0} + {s}*1 + 1024], tmm1",
                    load = in(reg) u32::from(load),
                    c0 = in(reg) c,
                    a = inout(reg) a => _,
                    w0 = inout(reg) w0 => _,
                    w1 = inout(reg) w1 => _,
                    steps = inout(reg) steps => _,
                    s = in(reg) 64usize,
                    options(nostack),
                )
            };
        }
    };
}

one_term_kernels!(k32x32_bf16, k16x32_bf16, "tdpbf16ps");
one_term_kernels!(k32x32_int8, k16x32_int8, "tdpbssd");

/// The two-row-group kernel for tiles of `kind`.
///
/// # Safety
/// As [`k32x32`] (split) or the one-term kernels say for `kind`'s tiles.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn k32x32_of(
    kind: super::Kind,
    (a0, a1): (*const u8, *const u8),
    w0: *const u8,
    w1: *const u8,
    steps: usize,
    c: *mut u8,
    gs: usize,
    load: bool,
) {
    // SAFETY: the contract, passed on.
    unsafe {
        match kind {
            super::Kind::Split => k32x32(a0, a1, w0, w1, steps, c, gs, load),
            super::Kind::Bf16 => k32x32_bf16(a0, a1, w0, w1, steps, c, gs, load),
            super::Kind::Int8 => k32x32_int8(a0, a1, w0, w1, steps, c, gs, load),
        }
    }
}

/// The one-row-group kernel for tiles of `kind`.
///
/// # Safety
/// As [`k16x32`] (split) or the one-term kernels say for `kind`'s tiles.
#[inline(always)]
pub(super) unsafe fn k16x32_of(
    kind: super::Kind,
    a: *const u8,
    w0: *const u8,
    w1: *const u8,
    steps: usize,
    c: *mut u8,
    load: bool,
) {
    // SAFETY: the contract, passed on.
    unsafe {
        match kind {
            super::Kind::Split => k16x32(a, w0, w1, steps, c, load),
            super::Kind::Bf16 => k16x32_bf16(a, w0, w1, steps, c, load),
            super::Kind::Int8 => k16x32_int8(a, w0, w1, steps, c, load),
        }
    }
}
