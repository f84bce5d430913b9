//! x86-64 kernels: AVX2 + FMA + F16C, with AVX-512 VNNI's `vpdpbusd` where the CPU has it.
//!
//! Each kernel computes R rows of a matrix-vector product at once. Per row the arithmetic is
//! ggml's own AVX2 `ggml_vec_dot_*` step for step (the same integer lane sums, the same f32
//! multiplies, fused multiply-adds and horizontal sum, in the same order), so every result is
//! bit for bit the one ggml computes; what changes is that R independent accumulator chains run
//! side by side and one activation block serves R rows, where ggml's loop waits on a single
//! chain of fused multiply-adds. The activation quantizers mirror ggml's `quantize_row_q8_0`
//! and `quantize_row_q8_1` the same way.
//!
//! Every function here is `unsafe`: callers check the CPU features first (`route::Machine`) and
//! pass pointers to whole blocks (the caller's SAFETY comments say why they are).

use std::arch::x86_64::*;

/// Bytes of one block of 32 weights or activations.
pub const Q4_1_BYTES: usize = 20; // f16 d, f16 m, 16 bytes of nibbles
pub const Q5_0_BYTES: usize = 22; // f16 d, 4 bytes of high bits, 16 bytes of nibbles
pub const Q8_0_BYTES: usize = 34; // f16 d, 32 i8
pub const Q8_1_BYTES: usize = 36; // f16 d, f16 s (= d * sum of the quants), 32 i8

/// How far ahead of each row's current block its data is prefetched, in bytes. Past a row's
/// end this reaches into the next rows, which come next.
const PREFETCH: usize = 8192;

/// The integer dot product instruction set in use. Both give the same exact integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// `vpmaddubsw` + `vpmaddwd`
    Avx2,
    /// `vpdpbusd` (AVX-512 VNNI on 256-bit vectors), as ggml uses when built for such a CPU.
    Vnni,
}

/// Every f16 value as f32 (256 KiB, built once). The kernels look scales up here rather than
/// converting them with `vcvtph2ps`: a load and a broadcast from memory cost no shuffle-port
/// cycles, and the shuffle port is what limits these loops. The conversion is exact either way.
pub struct F16Table(Box<[f32]>);

impl F16Table {
    /// # Safety
    /// The CPU has F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn new() -> F16Table {
        let mut t = vec![0.0f32; 1 << 16];
        for (i, v) in t.chunks_exact_mut(8).enumerate() {
            let h = _mm_setr_epi16(
                (i * 8) as i16,
                (i * 8 + 1) as i16,
                (i * 8 + 2) as i16,
                (i * 8 + 3) as i16,
                (i * 8 + 4) as i16,
                (i * 8 + 5) as i16,
                (i * 8 + 6) as i16,
                (i * 8 + 7) as i16,
            );
            _mm256_storeu_ps(v.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
        F16Table(t.into_boxed_slice())
    }

    /// A pointer to the f32 value of the f16 at `p` (little-endian bytes).
    #[inline(always)]
    pub(super) unsafe fn at(&self, p: *const u8) -> *const f32 {
        let h = u16::from_le_bytes([*p, *p.add(1)]);
        self.0.as_ptr().add(h as usize)
    }

    #[inline(always)]
    pub(super) unsafe fn get(&self, p: *const u8) -> f32 {
        *self.at(p)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f32_to_f16(x: f32) -> [u8; 2] {
    // Round to nearest even, as ggml's `_cvtss_sh(x, 0)`.
    let h = _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x)));
    (h as u16).to_le_bytes()
}

/// ggml's `hsum_float_8`: high half + low half, then pairs, then the last two.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn hsum_float_8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// 16 bytes of nibbles as 32 bytes: the low nibbles, then the high ones (ggml's
/// `bytes_from_nibbles_32`, built from a broadcast load and a per-half shift instead of an
/// insert, again to stay off the shuffle port).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(_mm256_set1_epi8(0x0F), shifted)
}

/// 32 bits as 32 bytes: 0xFF where the bit is set.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn bytes_from_bits_32(p: *const u8) -> __m256i {
    // An unaligned read the compiler turns into a broadcast load.
    let x32 = _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32));
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(x32, shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// The 32 signed quants of a Q5_0 block (`Q5`: the low nibbles, and 16 subtracted where the
/// high bit is clear) or of a Q8_0 block, at `xb` (the block, its scale first).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn signed_quants<const Q5: bool>(xb: *const u8) -> __m256i {
    if Q5 {
        let high = _mm256_set1_epi8(0xF0u8 as i8);
        let hi = _mm256_andnot_si256(bytes_from_bits_32(xb.add(2)), high);
        _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), hi)
    } else {
        _mm256_loadu_si256(xb.add(2) as *const __m256i)
    }
}

/// Sums of 4 products u8 × i8 per 32-bit lane, as floats (`vpmaddubsw` cannot saturate on the
/// inputs of these kernels: |q| <= 16 on one side for Q4_1/Q5_0, and Q8_0 quants lie in ±127).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn mul_sum_us8_avx2(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
pub(super) unsafe fn mul_sum_us8_vnni(ax: __m256i, sy: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
}

/// The kernels, once per instruction set (`$mul_sum` is the u8 × i8 lane sum).
macro_rules! kernels {
    ($name:ident, $features:literal, $mul_sum:ident) => {
        pub mod $name {
            use super::*;

            /// R rows of Q4_1 (blocks at `rows[r]`) · C Q8_1 activations (`nb` blocks at each
            /// `ys[c]`): `out[c][r]`. Each weight block is unpacked once for the C columns; every
            /// (row, column) pair keeps its own accumulator and ggml's steps, so each column gets
            /// what it gets alone (C = 1: decoding).
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q4_1<const R: usize, const C: usize>(
                f16: &F16Table,
                rows: &[*const u8; R],
                ys: &[*const u8; C],
                nb: usize,
                out: &mut [[f32; R]; C],
            ) {
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                let mut summs = [[0.0f32; C]; R];
                for b in 0..nb {
                    for r in 0..R {
                        let xb = rows[r].add(b * Q4_1_BYTES);
                        _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
                        let d0 = _mm256_broadcast_ss(&*f16.at(xb));
                        let m = f16.get(xb.add(2));
                        let qx = bytes_from_nibbles_32(xb.add(4));
                        for c in 0..C {
                            let yb = ys[c].add(b * Q8_1_BYTES);
                            // ggml's `summs += m * s` (a product of two f16 values is exact in
                            // f32, so it makes no difference whether the compiler fuses it).
                            summs[r][c] += m * f16.get(yb.add(2));
                            let d0d1 = _mm256_mul_ps(d0, _mm256_broadcast_ss(&*f16.at(yb)));
                            let qy = _mm256_loadu_si256(yb.add(4) as *const __m256i);
                            acc[r][c] = _mm256_fmadd_ps(d0d1, $mul_sum(qx, qy), acc[r][c]);
                        }
                    }
                }
                for c in 0..C {
                    for r in 0..R {
                        out[c][r] = hsum_float_8(acc[r][c]) + summs[r][c];
                    }
                }
            }

            /// R rows of Q8_0 · C Q8_0 activations, as [`dot_q4_1`].
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8_0<const R: usize, const C: usize>(
                f16: &F16Table,
                rows: &[*const u8; R],
                ys: &[*const u8; C],
                nb: usize,
                out: &mut [[f32; R]; C],
            ) {
                dot_signed::<R, C, false>(f16, rows, ys, nb, out)
            }

            /// R rows of Q5_0 · C Q8_0 activations, as [`dot_q4_1`].
            #[target_feature(enable = $features)]
            pub unsafe fn dot_q5_0<const R: usize, const C: usize>(
                f16: &F16Table,
                rows: &[*const u8; R],
                ys: &[*const u8; C],
                nb: usize,
                out: &mut [[f32; R]; C],
            ) {
                dot_signed::<R, C, true>(f16, rows, ys, nb, out)
            }

            /// The signed formats against Q8_0 activations: Q5_0 weights (`Q5`) or Q8_0.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot_signed<const R: usize, const C: usize, const Q5: bool>(
                f16: &F16Table,
                rows: &[*const u8; R],
                ys: &[*const u8; C],
                nb: usize,
                out: &mut [[f32; R]; C],
            ) {
                let block = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                for b in 0..nb {
                    for r in 0..R {
                        let xb = rows[r].add(b * block);
                        _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
                        let d0 = _mm256_broadcast_ss(&*f16.at(xb));
                        let qx = signed_quants::<Q5>(xb);
                        let ax = _mm256_sign_epi8(qx, qx);
                        for c in 0..C {
                            let yb = ys[c].add(b * Q8_0_BYTES);
                            let d = _mm256_mul_ps(d0, _mm256_broadcast_ss(&*f16.at(yb)));
                            let qy = _mm256_loadu_si256(yb.add(2) as *const __m256i);
                            let p = $mul_sum(ax, _mm256_sign_epi8(qy, qx));
                            acc[r][c] = _mm256_fmadd_ps(d, p, acc[r][c]);
                        }
                    }
                }
                for c in 0..C {
                    for r in 0..R {
                        out[c][r] = hsum_float_8(acc[r][c]);
                    }
                }
            }
        }
    };
}

kernels!(avx2, "avx2,fma,f16c", mul_sum_us8_avx2);
kernels!(vnni, "avx2,fma,f16c,avx512vnni,avx512vl", mul_sum_us8_vnni);

/// Max |x| over 32 floats, in ggml's order; and the 32 values scaled by 127 / max, rounded to
/// nearest even and converted: (max, four vectors of i32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scale_block(x: *const f32) -> (f32, [__m256i; 4]) {
    let v = [
        _mm256_loadu_ps(x),
        _mm256_loadu_ps(x.add(8)),
        _mm256_loadu_ps(x.add(16)),
        _mm256_loadu_ps(x.add(24)),
    ];
    let sign = _mm256_set1_ps(-0.0);
    let mut max_abs = _mm256_andnot_ps(sign, v[0]);
    for vi in &v[1..] {
        max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign, *vi));
    }
    let mut max4 = _mm_max_ps(
        _mm256_extractf128_ps::<1>(max_abs),
        _mm256_castps256_ps128(max_abs),
    );
    max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
    let max = _mm_cvtss_f32(max4);
    let id = if max != 0.0 { 127.0 / max } else { 0.0 };
    let mul = _mm256_set1_ps(id);
    let q = v.map(|vi| {
        let r = _mm256_round_ps::<_MM_FROUND_TO_NEAREST_INT>(_mm256_mul_ps(vi, mul));
        _mm256_cvtps_epi32(r)
    });
    (max, q)
}

/// Four vectors of i32 packed (with saturation) into 32 i8, in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pack_i8(q: [__m256i; 4], out: *mut u8) {
    let a = _mm256_packs_epi32(q[0], q[1]);
    let b = _mm256_packs_epi32(q[2], q[3]);
    let p = _mm256_packs_epi16(a, b);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(out as *mut __m256i, p);
}

/// ggml's `quantize_row_q8_0`: `nb` blocks of 32 floats at `x` into Q8_0 blocks at `y`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_0(x: *const f32, y: *mut u8, nb: usize) {
    for b in 0..nb {
        let (max, q) = scale_block(x.add(b * 32));
        let yb = y.add(b * Q8_0_BYTES);
        let d = f32_to_f16(max / 127.0);
        *yb = d[0];
        *yb.add(1) = d[1];
        pack_i8(q, yb.add(2));
    }
}

/// ggml's `quantize_row_q8_1`: as Q8_0, plus s = d × the sum of the quants.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_1(x: *const f32, y: *mut u8, nb: usize) {
    for b in 0..nb {
        let (max, q) = scale_block(x.add(b * 32));
        let yb = y.add(b * Q8_1_BYTES);
        let d = max / 127.0;
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s128 = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let s64 = _mm_add_epi32(s128, _mm_unpackhi_epi64(s128, s128));
        let s32 = _mm_add_epi32(s64, _mm_shuffle_epi32::<0b01>(s64));
        let isum = _mm_cvtsi128_si32(s32);
        let dh = f32_to_f16(d);
        let sh = f32_to_f16(d * isum as f32);
        *yb = dh[0];
        *yb.add(1) = dh[1];
        *yb.add(2) = sh[0];
        *yb.add(3) = sh[1];
        pack_i8(q, yb.add(4));
    }
}

/// Bytes of one super-block of 256 Q6_K weights: 128 low-nibble bytes, 64 bytes of high bit
/// pairs, 16 i8 scales, f16 d.
pub const Q6_K_BYTES: usize = 210;
/// Bytes of one Q8_K activation super-block: f32 d, 256 i8, 16 i16 sums of 16.
pub const Q8_K_BYTES: usize = 292;

/// ggml's `quantize_row_q8_K` (its reference code, which the CPU backend uses): per 256 values,
/// iscale = -127 / amax of the largest magnitude, quants round-to-nearest-even of iscale · x,
/// d = 1 / iscale, and the quants summed by 16. ggml takes the sign of the largest value, not
/// its magnitude; where that value is negative its quants, sums and d are these negated, which
/// changes no product of the K-quant kernels (d · Σq·w, d · Σsums·m: both factors negated) and
/// so no result.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` holds 256·nb floats and `y` room for nb blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_k(x: *const f32, y: *mut u8, nb: usize) {
    let sign = _mm256_set1_ps(-0.0);
    for b in 0..nb {
        let xb = x.add(b * 256);
        let yb = y.add(b * Q8_K_BYTES);
        let v: [__m256; 32] = std::array::from_fn(|i| _mm256_loadu_ps(xb.add(8 * i)));
        // (a NaN, whose comparisons are false, is passed over as the reference passes it)
        let amax = v.iter().fold(_mm256_setzero_ps(), |m, &vi| {
            _mm256_max_ps(_mm256_andnot_ps(sign, vi), m)
        });
        let m = _mm_max_ps(
            _mm256_castps256_ps128(amax),
            _mm256_extractf128_ps::<1>(amax),
        );
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        let amax = _mm_cvtss_f32(m);
        if amax == 0.0 {
            std::ptr::write_bytes(yb, 0, Q8_K_BYTES);
            continue;
        }
        let iscale = -127.0 / amax;
        let s = _mm256_set1_ps(iscale);
        std::ptr::copy_nonoverlapping((1.0 / iscale).to_le_bytes().as_ptr(), yb, 4);
        for g in 0..8 {
            // |iscale · x| <= 127 (rounding cannot pass 127.5): no cap needed; a NaN product
            // (a NaN value, or infinities) becomes 0, as the reference's cast makes it
            let q: [__m256i; 4] = std::array::from_fn(|i| {
                let p = _mm256_mul_ps(v[4 * g + i], s);
                _mm256_cvtps_epi32(_mm256_and_ps(p, _mm256_cmp_ps::<_CMP_ORD_Q>(p, p)))
            });
            pack_i8(q, yb.add(4 + 32 * g));
            for h in 0..2 {
                let t = _mm256_add_epi32(q[2 * h], q[2 * h + 1]);
                let t = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t));
                let t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
                let t = _mm_add_epi32(t, _mm_shuffle_epi32::<1>(t));
                let sum = _mm_cvtsi128_si32(t) as i16;
                let at = yb.add(260 + 2 * (2 * g + h));
                std::ptr::copy_nonoverlapping(sum.to_le_bytes().as_ptr(), at, 2);
            }
        }
    }
}

/// ggml's table of byte shuffles picking scale `i` of a Q6_K/Q3_K super-block.
static SCALE_SHUFFLE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = (i / 8) as u8;
        i += 1;
    }
    t
};

/// The Q6_K decode kernel, once per instruction set (`$vnni`: the scaled pair sums
/// accumulated by `vpdpwssd`).
macro_rules! q6k_kernel {
    ($name:ident, $features:literal, $vnni:expr) => {
        /// R rows of Q6_K · C Q8_K activations: ggml's AVX2 `ggml_vec_dot_q6_K_q8_K` per row and
        /// column (each column exactly as it is alone); each row's super-block is unpacked once
        /// (quants and scale shuffles) for all C columns.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and F16C; `rows` point at `nb` super-blocks each, every `ys[c]` at
        /// `nb`.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const R: usize, const C: usize>(
            f16: &F16Table,
            rows: &[*const u8; R],
            ys: &[*const u8; C],
            nb: usize,
            out: &mut [[f32; R]; C],
        ) {
            let m3 = _mm256_set1_epi8(3);
            let m15 = _mm256_set1_epi8(15);
            let mut acc = [[_mm256_setzero_ps(); R]; C];
            for b in 0..nb {
                let yb: [*const u8; C] = std::array::from_fn(|c| ys[c].add(b * Q8_K_BYTES));
                for r in 0..R {
                    let xb = rows[r].add(b * Q6_K_BYTES);
                    for line in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(
                            xb.wrapping_add(PREFETCH + 64 * line) as *const i8
                        );
                    }
                    let xd = f16.get(xb.add(208));
                    let scales = _mm_loadu_si128(xb.add(192) as *const __m128i);
                    let scales_16 = _mm256_cvtepi8_epi16(scales);
                    let mut sumi = [_mm256_setzero_si256(); C];
                    for half in 0..2 {
                        let q4 = xb.add(64 * half);
                        let q4bits1 = _mm256_loadu_si256(q4 as *const __m256i);
                        let q4bits2 = _mm256_loadu_si256(q4.add(32) as *const __m256i);
                        let q4bits_h =
                            _mm256_loadu_si256(xb.add(128 + 32 * half) as *const __m256i);
                        let q4h_0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3));
                        let q4h_1 = _mm256_slli_epi16::<2>(_mm256_and_si256(
                            q4bits_h,
                            _mm256_set1_epi8(12),
                        ));
                        let q4h_2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
                        let q4h_3 = _mm256_srli_epi16::<2>(_mm256_and_si256(
                            q4bits_h,
                            _mm256_set1_epi8(-64),
                        ));
                        let q = [
                            _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0),
                            _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m15),
                                q4h_2,
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m15),
                                q4h_3,
                            ),
                        ];
                        let sc: [__m256i; 4] = std::array::from_fn(|i| {
                            let at = SCALE_SHUFFLE.as_ptr().add(16 * (4 * half + i));
                            let s = _mm_loadu_si128(at as *const __m128i);
                            _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, s))
                        });
                        for c in 0..C {
                            let q8 = yb[c].add(4 + 128 * half);
                            let p16: [__m256i; 4] = std::array::from_fn(|i| {
                                let y = _mm256_loadu_si256(q8.add(32 * i) as *const __m256i);
                                _mm256_maddubs_epi16(q[i], y)
                            });
                            if $vnni {
                                // the same integer sums (int32 addition is exact in any order),
                                // `vpmaddwd` and the add as one `vpdpwssd`
                                for i in 0..4 {
                                    sumi[c] = _mm256_dpwssd_epi32(sumi[c], sc[i], p16[i]);
                                }
                            } else {
                                let p: [__m256i; 4] =
                                    std::array::from_fn(|i| _mm256_madd_epi16(sc[i], p16[i]));
                                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(p[0], p[1]));
                                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(p[2], p[3]));
                            }
                        }
                    }
                    for c in 0..C {
                        let yd = std::ptr::read_unaligned(yb[c] as *const f32);
                        let q8sums = _mm256_loadu_si256(yb[c].add(260) as *const __m256i);
                        let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));
                        let s = _mm256_sub_epi32(sumi[c], q8sclsub);
                        acc[c][r] = _mm256_fmadd_ps(
                            _mm256_set1_ps(yd * xd),
                            _mm256_cvtepi32_ps(s),
                            acc[c][r],
                        );
                    }
                }
            }
            for c in 0..C {
                for r in 0..R {
                    out[c][r] = hsum_float_8(acc[c][r]);
                }
            }
        }
    };
}

q6k_kernel!(dot_q6_k, "avx2,fma,f16c", false);
q6k_kernel!(dot_q6_k_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", true);

/// `iters` rounds of eight independent 512-bit VNNI dot products (u8 × i8 → i32, 64 multiply-
/// adds each): the int8 peak the prompt and tile kernels are built from, for `ember bench`'s
/// compute roof. Returns the accumulated lanes' sum (so the work is not optimised away).
///
/// # Safety
/// The CPU has AVX-512 F and VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn vnni_spin(iters: usize) -> i64 {
    let a = _mm512_set1_epi8(3);
    let b = _mm512_set1_epi8(-2);
    let mut acc = [_mm512_setzero_si512(); 8];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_epi32(x) as i64).sum()
}
