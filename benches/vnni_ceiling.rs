//! The ceiling of this CPU's dot-product instructions, for docs/performance.md ("Reduced precision
//! on the CPU"): sustained instructions a cycle of `vpdpbusd` (register operand, embedded
//! `{1to16}` broadcast, and `vpbroadcastd` + two `vpdpbusd` as the old int8 tile issued them),
//! `vdpbf16ps` and `vfmadd231ps` on zmm, each as 24 independent accumulators in registers (no
//! memory traffic beyond one L1 line), min of 7 runs. The core clock is taken from a chain of
//! dependent `add`s (one a cycle). Run on one core, quiet: `taskset -c 1 cargo bench --bench
//! vnni_ceiling`. Not a test: it asserts nothing, and prints nothing on a CPU without AVX-512
//! VNNI and BF16.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    /// One instruction per accumulator zmm0..zmm23: `$pre N $post` each.
    macro_rules! per_acc {
        ($pre:literal, $post:literal) => {
            concat!(
                $pre, "0", $post, "\n", $pre, "1", $post, "\n", $pre, "2", $post, "\n", $pre, "3",
                $post, "\n", $pre, "4", $post, "\n", $pre, "5", $post, "\n", $pre, "6", $post,
                "\n", $pre, "7", $post, "\n", $pre, "8", $post, "\n", $pre, "9", $post, "\n", $pre,
                "10", $post, "\n", $pre, "11", $post, "\n", $pre, "12", $post, "\n", $pre, "13",
                $post, "\n", $pre, "14", $post, "\n", $pre, "15", $post, "\n", $pre, "16", $post,
                "\n", $pre, "17", $post, "\n", $pre, "18", $post, "\n", $pre, "19", $post, "\n",
                $pre, "20", $post, "\n", $pre, "21", $post, "\n", $pre, "22", $post, "\n", $pre,
                "23", $post, "\n",
            )
        };
    }

    /// `iters` loop iterations of 4 × the 24-instruction block `$block`; `p` points to 96 readable
    /// bytes (the broadcast operands).
    macro_rules! kernel {
        ($name:ident, $block:expr) => {
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512bf16")]
            unsafe fn $name(iters: u64, p: *const u8) {
                // SAFETY: the caller checked the features; the block reads at most 96 bytes from
                // p (the contract) and writes only the registers named.
                unsafe {
                    asm!(
                        "2:",
                        $block, $block, $block, $block,
                        "/* {p} */",
                        "dec {n}",
                        "jnz 2b",
                        n = inout(reg) iters => _,
                        p = in(reg) p,
                        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                        out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                        out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                        out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                        out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
                        out("zmm24") _, out("zmm25") _, out("zmm30") _,
                        options(nostack, readonly),
                    );
                }
            }
        };
    }

    kernel!(dpbusd_reg, per_acc!("vpdpbusd zmm", ", zmm24, zmm25"));
    kernel!(
        dpbusd_bcst,
        per_acc!("vpdpbusd zmm", ", zmm24, dword ptr [{p}]{{1to16}}")
    );
    // One vpbroadcastd per two vpdpbusd, as the old tile (x = set1(a[r]); two columns).
    kernel!(
        dpbusd_pbroadcast,
        concat!(
            "vpbroadcastd zmm30, dword ptr [{p}]\n",
            "vpdpbusd zmm0, zmm30, zmm24\nvpdpbusd zmm1, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 4]\n",
            "vpdpbusd zmm2, zmm30, zmm24\nvpdpbusd zmm3, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 8]\n",
            "vpdpbusd zmm4, zmm30, zmm24\nvpdpbusd zmm5, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 12]\n",
            "vpdpbusd zmm6, zmm30, zmm24\nvpdpbusd zmm7, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 16]\n",
            "vpdpbusd zmm8, zmm30, zmm24\nvpdpbusd zmm9, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 20]\n",
            "vpdpbusd zmm10, zmm30, zmm24\nvpdpbusd zmm11, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 24]\n",
            "vpdpbusd zmm12, zmm30, zmm24\nvpdpbusd zmm13, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 28]\n",
            "vpdpbusd zmm14, zmm30, zmm24\nvpdpbusd zmm15, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 32]\n",
            "vpdpbusd zmm16, zmm30, zmm24\nvpdpbusd zmm17, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 36]\n",
            "vpdpbusd zmm18, zmm30, zmm24\nvpdpbusd zmm19, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 40]\n",
            "vpdpbusd zmm20, zmm30, zmm24\nvpdpbusd zmm21, zmm30, zmm25\n",
            "vpbroadcastd zmm30, dword ptr [{p} + 44]\n",
            "vpdpbusd zmm22, zmm30, zmm24\nvpdpbusd zmm23, zmm30, zmm25\n",
        )
    );
    kernel!(dpbf16_reg, per_acc!("vdpbf16ps zmm", ", zmm24, zmm25"));
    kernel!(
        dpbf16_bcst,
        per_acc!("vdpbf16ps zmm", ", zmm24, dword ptr [{p}]{{1to16}}")
    );
    kernel!(fma_reg, per_acc!("vfmadd231ps zmm", ", zmm24, zmm25"));
    kernel!(
        fma_bcst,
        per_acc!("vfmadd231ps zmm", ", zmm24, dword ptr [{p}]{{1to16}}")
    );

    /// 96 dependent adds an iteration: one a cycle, whatever the clock.
    fn clock(iters: u64) -> u64 {
        let mut x = 0u64;
        // SAFETY: register arithmetic only.
        unsafe {
            asm!(
                "2:",
                per_acc!("add {x}, 1", " /* {x} */"), per_acc!("add {x}, 1", ""),
                per_acc!("add {x}, 1", ""), per_acc!("add {x}, 1", ""),
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                x = inout(reg) x,
                options(nostack, nomem),
            );
        }
        x
    }

    fn best(f: impl Fn()) -> f64 {
        (0..7)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    }

    pub fn main() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bf16"))
        {
            println!("vnni_ceiling: needs AVX-512 F, BW, VNNI and BF16");
            return;
        }
        let buf = [1u8; 128];
        let p = buf.as_ptr();
        let iters = 2_000_000u64;
        let per_run = (iters * 96) as f64;
        let ghz = per_run
            / best(|| {
                std::hint::black_box(clock(std::hint::black_box(iters)));
            })
            / 1e9;
        println!("core clock (dependent adds): {ghz:.2} GHz");
        type Kernel = unsafe fn(u64, *const u8);
        let cases: [(&str, Kernel, f64); 7] = [
            ("vpdpbusd zmm, zmm, zmm", dpbusd_reg, 64.0),
            ("vpdpbusd zmm, zmm, m32{1to16}", dpbusd_bcst, 64.0),
            (
                "vpbroadcastd zmm, m32 + 2 vpdpbusd",
                dpbusd_pbroadcast,
                64.0,
            ),
            ("vdpbf16ps zmm, zmm, zmm", dpbf16_reg, 32.0),
            ("vdpbf16ps zmm, zmm, m32{1to16}", dpbf16_bcst, 32.0),
            ("vfmadd231ps zmm, zmm, zmm", fma_reg, 16.0),
            ("vfmadd231ps zmm, zmm, m32{1to16}", fma_bcst, 16.0),
        ];
        for (name, f, macs) in cases {
            // SAFETY: the features were checked above; p points to 128 bytes.
            let s = best(|| unsafe { f(iters, p) });
            let per_cycle = per_run / (s * ghz * 1e9);
            println!(
                "{name:36} {per_cycle:.2} a cycle, {:5.1} multiply-adds a cycle, {:6.1} G a second",
                per_cycle * macs,
                per_run * macs / s / 1e9
            );
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
}
