//! The decode op's 512-bit kernels over several columns (Q4_1, Q5_0, Q8_0 weights on
//! AVX-512 VNNI): two columns per vector. Each pair's arithmetic is that of the 256-bit
//! [`vnni`](super::cols::vnni) kernels lane for lane (the same `vpdpbusd` sums, the same
//! conversion and fused multiply-add of the same scale product into the column's own eight
//! lanes, ggml's horizontal sum of each half at the end), so every column still gets what
//! ggml's one-column `ggml_vec_dot_*` gives it alone.
//!
//! What changes is the count of instructions: the weight block is unpacked once and copied
//! to both halves, and per pair of columns there is one load of their quants (64 bytes, on
//! one cache line: [`Packing::Q8_1Wide`], [`Packing::OffsetWide`]), one of their corrections,
//! one `vpdpbusd`, one conversion, one permute for the two scale products and one
//! multiply-add. Where a CPU runs 512-bit operations at full clock as two 256-bit halves (AMD
//! Zen 4) that halves the instructions the front end must issue, which is what limits the
//! 256-bit loop there (`cols_kernel_timing`, one thread: Q8_0 0.48 → 0.45 ns per row, column
//! and block, Q5_0 0.54 → 0.51, Q4_1 0.53 → 0.47). Where 512-bit operations lower the clock
//! (Intel Ice Lake) it measured within a few percent of the 256-bit kernels, so
//! [`choice`](super::cols_choice) times them once per process and the op takes these only
//! where they are faster.

use std::arch::x86_64::*;

use super::cols::{vnni::q5_0_unsigned, Packing, PREFETCH, WIDE_COLS};
use super::x86::{
    bytes_from_nibbles_32, hsum_float_8, signed_quants, F16Table, Q4_1_BYTES, Q5_0_BYTES,
    Q8_0_BYTES,
};

/// Pairs of columns per kernel call.
const PAIRS: usize = WIDE_COLS / 2;

/// `v[idx[i]]` in each lane i, by one `vpermps` on 512-bit vectors (register operands, as
/// the 256-bit kernels' `lane`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn permute(v: __m512, idx: __m512i) -> __m512 {
    let out: __m512;
    // SAFETY: register operands only.
    unsafe {
        std::arch::asm!(
            "vpermps {out}, {idx}, {v}",
            out = lateout(zmm_reg) out,
            idx = in(zmm_reg) idx,
            v = in(zmm_reg) v,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// For each pair p, the indices that put the scale product of column 2p in the low half and
/// that of column 2p + 1 in the high half.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pair_indices() -> [__m512i; PAIRS] {
    std::array::from_fn(|p| {
        let (lo, hi) = (2 * p as i32, 2 * p as i32 + 1);
        _mm512_setr_epi32(
            lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi,
        )
    })
}

/// The weight block's scale d (an f16 at `xb`) in every lane, the row's data ahead prefetched.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_scale(f16: &F16Table, xb: *const u8) -> __m512 {
    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
    _mm512_set1_ps(*f16.at(xb))
}

/// Each column's result: ggml's horizontal sum of its half of its pair's accumulator.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
#[inline]
unsafe fn finish<const C: usize>(acc: &[__m512; PAIRS], out: &mut [f32; C]) {
    for (c, o) in out.iter_mut().enumerate() {
        let a = acc[c / 2];
        let half = if c % 2 == 0 {
            _mm512_castps512_ps256(a)
        } else {
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)))
        };
        *o = hsum_float_8(half);
    }
}

/// As [`vnni::q4_1`](super::cols::vnni::q4_1), on up to 16 [`Packing::Q8_1Wide`] columns.
///
/// # Safety
/// `row` holds nb Q4_1 blocks, `packed` nb packed blocks of C ≤ 16 columns; the CPU has
/// AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn q4_1<const C: usize>(
    f16: &F16Table,
    row: *const u8,
    packed: *const u8,
    nb: usize,
    out: &mut [f32; C],
) {
    let pairs = C.div_ceil(2);
    let stride = Packing::Q8_1Wide.block(C);
    let idx = pair_indices();
    let mut acc = [_mm512_setzero_ps(); PAIRS];
    let mut summs = _mm512_setzero_ps();
    for b in 0..nb {
        let (xb, pb) = (row.add(b * Q4_1_BYTES), packed.add(b * stride));
        let d0 = block_scale(f16, xb);
        let m = _mm512_set1_ps(*f16.at(xb.add(2)));
        // each column's `m · s` (the scalar sum's step: a product of two f16 values is exact)
        let sy = _mm512_load_ps(pb.add(4 * WIDE_COLS) as *const f32);
        summs = _mm512_fmadd_ps(m, sy, summs);
        let ds = _mm512_mul_ps(d0, _mm512_load_ps(pb as *const f32));
        let qx = _mm512_broadcast_i64x4(bytes_from_nibbles_32(xb.add(4)));
        for p in 0..pairs {
            let q = pb.add(Packing::Q8_1Wide.quants(2 * p));
            let qy = _mm512_load_si512(q as *const __m512i);
            let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, qy);
            acc[p] = _mm512_fmadd_ps(permute(ds, idx[p]), _mm512_cvtepi32_ps(s), acc[p]);
        }
    }
    finish(&acc, out);
    let mut sm = [0.0f32; WIDE_COLS];
    _mm512_storeu_ps(sm.as_mut_ptr(), summs);
    for (o, m) in out.iter_mut().zip(sm) {
        *o += m;
    }
}

/// As [`vnni::signed`](super::cols::vnni::signed), on up to 16 [`Packing::OffsetWide`]
/// columns.
///
/// # Safety
/// `row` holds nb blocks of Q5_0 (`Q5`) or Q8_0, `packed` nb packed blocks of C ≤ 16 columns;
/// the CPU has AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn signed<const C: usize, const Q5: bool>(
    f16: &F16Table,
    row: *const u8,
    packed: *const u8,
    nb: usize,
    out: &mut [f32; C],
) {
    let block = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
    let pairs = C.div_ceil(2);
    let stride = Packing::OffsetWide.block(C);
    let idx = pair_indices();
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    let mut acc = [_mm512_setzero_ps(); PAIRS];
    for b in 0..nb {
        let (xb, pb) = (row.add(b * block), packed.add(b * stride));
        let ds = _mm512_mul_ps(block_scale(f16, xb), _mm512_load_ps(pb as *const f32));
        let ux = if Q5 {
            q5_0_unsigned(xb)
        } else {
            _mm256_xor_si256(signed_quants::<false>(xb), flip)
        };
        let ux = _mm512_broadcast_i64x4(ux);
        for p in 0..pairs {
            let q = pb.add(Packing::OffsetWide.quants(2 * p));
            let corr = pb.add(Packing::OffsetWide.corrections(2 * p));
            let qy = _mm512_load_si512(q as *const __m512i);
            let start = _mm512_load_si512(corr as *const __m512i);
            let s = _mm512_dpbusd_epi32(start, ux, qy);
            acc[p] = _mm512_fmadd_ps(permute(ds, idx[p]), _mm512_cvtepi32_ps(s), acc[p]);
        }
    }
    finish(&acc, out)
}
