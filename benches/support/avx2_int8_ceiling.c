/* The ceiling of int8 products on an AVX2 CPU without VNNI (docs/performance.md, "int8 on AVX2
 * without VNNI"): imgvec's 6 x 16 tile loops with everything in L1 (k block of 256 steps, one
 * weight panel, one row panel), as multiply-adds per nanosecond, min over rounds:
 *   f32      the f32 tile: 12 vfmadd231ps a step (96 MACs)
 *   int8     imgvec's int8 tile without VNNI (microkernel_int8.rs, dpbusd_madd): per row and
 *            column vector vpmaddubsw (the row's unsigned bytes by 7-bit signed weights read from
 *            memory), vpmaddwd by ones, vpaddd (32 MACs)
 *   sign     8-bit weights instead: |w| the unsigned operand and x carrying w's sign (vpsignb),
 *            one instruction more (what imgvec ran first)
 *   int16    the bytes as 16-bit pairs into vpmaddwd directly (16 MACs an instruction)
 * Build and run on one core, quiet:
 *   gcc -O3 -mavx2 -mfma benches/support/avx2_int8_ceiling.c -o target/avx2_int8_ceiling &&
 *   taskset -c 1 target/avx2_int8_ceiling
 * Not a test: it asserts nothing. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define KC 256
#define REPS 200000
#define ROUNDS 5

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((aligned(64))) static int8_t b8[KC * 64];
__attribute__((aligned(64))) static int32_t a8[KC * 6];
__attribute__((aligned(64))) static float bf[KC * 16];
__attribute__((aligned(64))) static float af[KC * 6];

__attribute__((noinline)) static void tile_f32(__m256 *out) {
    __m256 acc[6][2];
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int s = 0; s < KC; s++) {
        __m256 b0 = _mm256_load_ps(bf + s * 16), b1 = _mm256_load_ps(bf + s * 16 + 8);
        for (int r = 0; r < 6; r++) {
            __m256 x = _mm256_broadcast_ss(af + s * 6 + r);
            acc[r][0] = _mm256_fmadd_ps(b0, x, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(b1, x, acc[r][1]);
        }
    }
    for (int r = 0; r < 6; r++) out[2 * r] = acc[r][0], out[2 * r + 1] = acc[r][1];
}

__attribute__((noinline)) static void tile_sign(__m256i *out) {
    __m256i acc[6][2];
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const __m256i c80 = _mm256_set1_epi8(-128), ones = _mm256_set1_epi16(1);
    for (int s = 0; s < KC; s++) {
        __m256i u0 = _mm256_load_si256((const __m256i *)(b8 + s * 64));
        __m256i u1 = _mm256_load_si256((const __m256i *)(b8 + s * 64 + 32));
        __m256i w0 = _mm256_abs_epi8(_mm256_xor_si256(u0, c80));
        __m256i w1 = _mm256_abs_epi8(_mm256_xor_si256(u1, c80));
        for (int r = 0; r < 6; r++) {
            __m256i x = _mm256_set1_epi32(a8[s * 6 + r]);
            __m256i p0 = _mm256_maddubs_epi16(w0, _mm256_sign_epi8(x, u0));
            __m256i p1 = _mm256_maddubs_epi16(w1, _mm256_sign_epi8(x, u1));
            acc[r][0] = _mm256_sub_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
            acc[r][1] = _mm256_sub_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
    for (int r = 0; r < 6; r++) out[2 * r] = acc[r][0], out[2 * r + 1] = acc[r][1];
}

__attribute__((noinline)) static void tile_int8(__m256i *out) {
    __m256i acc[6][2];
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int s = 0; s < KC; s++) {
        const __m256i *w = (const __m256i *)(b8 + s * 64);
        for (int r = 0; r < 6; r++) {
            __m256i x = _mm256_set1_epi32(a8[s * 6 + r]);
            __m256i p0 = _mm256_maddubs_epi16(x, _mm256_load_si256(w));
            __m256i p1 = _mm256_maddubs_epi16(x, _mm256_load_si256(w + 1));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
    for (int r = 0; r < 6; r++) out[2 * r] = acc[r][0], out[2 * r + 1] = acc[r][1];
}

__attribute__((noinline)) static void tile_int16(__m256i *out) {
    __m256i acc[6][2];
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int s = 0; s < KC; s++) {
        __m256i u0 = _mm256_load_si256((const __m256i *)(b8 + s * 64));
        __m256i u1 = _mm256_load_si256((const __m256i *)(b8 + s * 64 + 32));
        for (int r = 0; r < 6; r++) {
            __m256i x = _mm256_set1_epi32(a8[s * 6 + r]);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(u0, x));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(u1, x));
        }
    }
    for (int r = 0; r < 6; r++) out[2 * r] = acc[r][0], out[2 * r + 1] = acc[r][1];
}

int main(void) {
    for (int i = 0; i < KC * 64; i++) b8[i] = (int8_t)(i * 7);
    for (int i = 0; i < KC * 6; i++) a8[i] = i * 13, af[i] = (float)i;
    for (int i = 0; i < KC * 16; i++) bf[i] = (float)i;
    __m256i o[12];
    __m256 of[12];
    double best[4] = {0, 0, 0, 0};
/* The best rate, in multiply-adds a nanosecond, of REPS calls of `call`, each doing KC * macs. */
#define BEST(slot, call, macs)                                                   \
    do {                                                                         \
        double t = now();                                                        \
        for (int i = 0; i < REPS; i++) call;                                     \
        double rate = (double)REPS * KC * (macs) / (now() - t) * 1e-9;           \
        if (rate > best[slot]) best[slot] = rate;                                \
    } while (0)
    for (int round = 0; round < ROUNDS; round++) {
        BEST(0, tile_f32(of), 96);
        BEST(1, tile_int8(o), 384);
        BEST(2, tile_int16(o), 192);
        BEST(3, tile_sign(o), 384);
    }
    printf("f32 tile   %.1f MAC/ns\n", best[0]);
    printf("int8 tile  %.1f MAC/ns (%.2fx f32)\n", best[1], best[1] / best[0]);
    printf("sign tile  %.1f MAC/ns (%.2fx f32)\n", best[3], best[3] / best[0]);
    printf("int16 tile %.1f MAC/ns (%.2fx f32)\n", best[2], best[2] / best[0]);
    /* Keep the results alive. */
    return _mm256_extract_epi32(o[0], 0) == 12345 && of[0][0] == 0.5f;
}
