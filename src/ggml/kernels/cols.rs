//! The decode op over several columns (a step of several sequences, or a prompt on a CPU
//! without the tile kernels) for Q4_1, Q5_0 and Q8_0 weights: one weight row against up to
//! eight columns at once.
//!
//! Each (row, column) result is ggml's one-column `ggml_vec_dot_*` step for step, as the
//! one-column kernels in `x86.rs` compute it: per block one f32 product `d_w · d_x`, one
//! fused multiply-add of it with the 8 integer lane sums as floats into the pair's 8-lane
//! accumulator, and (Q4_1) `summs += m · s`; then ggml's horizontal sum. So every column gets
//! exactly what it gets alone, whatever else is in the batch.
//!
//! What is shared is what does not depend on the pair: a weight block is unpacked and its
//! scale looked up once for all the columns, and (Q4_1) the eight `m · s` terms are one vector
//! fused multiply-add (each product of two f16 values is exact in f32, so this is the scalar
//! sum's every step). For that the quantized columns are first laid out block by block
//! ([`pack`]): the eight column scales as f32 (and Q4_1's eight `s`), then each column's 32
//! quants. Per pair and block what remains is a broadcast load and one multiply for the pair's
//! scale product, the integer dot product (`vpmaddubsw` + `vpmaddwd`, or `vpdpbusd`), its
//! conversion and one fused multiply-add; and eight columns' accumulators fit the vector
//! registers.

use std::arch::x86_64::*;

use super::x86::{
    bytes_from_nibbles_32, hsum_float_8, mul_sum_us8_avx2, mul_sum_us8_vnni, signed_quants,
    F16Table, Q4_1_BYTES, Q5_0_BYTES, Q8_0_BYTES, Q8_1_BYTES,
};

/// Columns per kernel call.
pub const COLS: usize = 8;

/// How far ahead of the current block a row's data is prefetched, in bytes.
const PREFETCH: usize = 4096;

/// Bytes of one packed block of `c` columns: the 8 scales as f32 (and for Q4_1 the 8 `s`),
/// then 32 quants per column.
pub fn packed_block(q4_1: bool, c: usize) -> usize {
    if q4_1 {
        64 + 32 * c
    } else {
        32 + 32 * c
    }
}

/// Lays out the quantized columns at `ys` (1 to [`COLS`] of them, `nb` Q8_1 blocks each for
/// Q4_1 weights, Q8_0 blocks otherwise) block by block at `out`, as the kernels read them:
/// [`packed_block`]`(q4_1, ys.len())` bytes per block. Scale lanes past the last column are
/// zero.
///
/// # Safety
/// Each `ys[j]` points at `nb` activation blocks; `out` has room for `nb` packed blocks.
pub unsafe fn pack(f16: &F16Table, q4_1: bool, ys: &[*const u8], nb: usize, out: *mut u8) {
    let c = ys.len();
    debug_assert!((1..=COLS).contains(&c));
    let (act, quants) = if q4_1 {
        (Q8_1_BYTES, 4)
    } else {
        (Q8_0_BYTES, 2)
    };
    let head = packed_block(q4_1, 0);
    let stride = packed_block(q4_1, c);
    for b in 0..nb {
        let pb = out.add(b * stride);
        let mut d = [0.0f32; COLS];
        let mut s = [0.0f32; COLS];
        for (j, &y) in ys.iter().enumerate() {
            let yb = y.add(b * act);
            d[j] = f16.get(yb);
            if q4_1 {
                s[j] = f16.get(yb.add(2));
            }
            std::ptr::copy_nonoverlapping(yb.add(quants), pb.add(head + 32 * j), 32);
        }
        std::ptr::copy_nonoverlapping(d.as_ptr() as *const u8, pb, 32);
        if q4_1 {
            std::ptr::copy_nonoverlapping(s.as_ptr() as *const u8, pb.add(32), 32);
        }
    }
}

/// The f32 at `p` in every lane, by a broadcast load: a load port only. (Written as an
/// intrinsic, the compiler loads the scalar, multiplies it and broadcasts the product with a
/// shuffle, which competes with the arithmetic for the vector ports.)
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn bcast(p: *const f32) -> __m256 {
    let v: __m256;
    // SAFETY: reads the f32 at `p` (the caller's), writes only `v`.
    unsafe {
        std::arch::asm!(
            "vbroadcastss {v}, dword ptr [{p}]",
            v = out(ymm_reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    v
}

/// The kernels, once per instruction set (`$mul_sum` is the u8 × i8 lane sum).
macro_rules! kernels {
    ($name:ident, $features:literal, $mul_sum:ident) => {
        pub mod $name {
            use super::*;

            /// One row of Q4_1 (`nb` blocks at `row`) · C packed columns: `out[c]`, each what
            /// ggml's `ggml_vec_dot_q4_1_q8_1` gives for that column alone.
            #[target_feature(enable = $features)]
            pub unsafe fn q4_1<const C: usize>(
                f16: &F16Table,
                row: *const u8,
                packed: *const u8,
                nb: usize,
                out: &mut [f32; C],
            ) {
                let stride = packed_block(true, C);
                let mut acc = [_mm256_setzero_ps(); C];
                let mut summs = _mm256_setzero_ps();
                for b in 0..nb {
                    let xb = row.add(b * Q4_1_BYTES);
                    let pb = packed.add(b * stride);
                    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
                    let d0 = _mm256_broadcast_ss(&*f16.at(xb));
                    let m = _mm256_broadcast_ss(&*f16.at(xb.add(2)));
                    let s = _mm256_loadu_ps(pb.add(32) as *const f32);
                    summs = _mm256_fmadd_ps(m, s, summs);
                    let qx = bytes_from_nibbles_32(xb.add(4));
                    for c in 0..C {
                        let qy = _mm256_loadu_si256(pb.add(64 + 32 * c) as *const __m256i);
                        let d = _mm256_mul_ps(d0, bcast((pb as *const f32).add(c)));
                        acc[c] = _mm256_fmadd_ps(d, $mul_sum(qx, qy), acc[c]);
                    }
                }
                let mut sm = [0.0f32; COLS];
                _mm256_storeu_ps(sm.as_mut_ptr(), summs);
                for c in 0..C {
                    out[c] = hsum_float_8(acc[c]) + sm[c];
                }
            }

            /// One row of Q5_0 (`Q5`) or Q8_0 · C packed Q8_0 columns: `out[c]`, each what
            /// ggml's `ggml_vec_dot_q5_0_q8_0` / `ggml_vec_dot_q8_0_q8_0` gives alone.
            #[target_feature(enable = $features)]
            pub unsafe fn signed<const C: usize, const Q5: bool>(
                f16: &F16Table,
                row: *const u8,
                packed: *const u8,
                nb: usize,
                out: &mut [f32; C],
            ) {
                let block = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
                let stride = packed_block(false, C);
                let mut acc = [_mm256_setzero_ps(); C];
                for b in 0..nb {
                    let xb = row.add(b * block);
                    let pb = packed.add(b * stride);
                    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
                    let d0 = _mm256_broadcast_ss(&*f16.at(xb));
                    let qx = signed_quants::<Q5>(xb);
                    let ax = _mm256_sign_epi8(qx, qx);
                    for c in 0..C {
                        let qy = _mm256_loadu_si256(pb.add(32 + 32 * c) as *const __m256i);
                        let p = $mul_sum(ax, _mm256_sign_epi8(qy, qx));
                        let d = _mm256_mul_ps(d0, bcast((pb as *const f32).add(c)));
                        acc[c] = _mm256_fmadd_ps(d, p, acc[c]);
                    }
                }
                for c in 0..C {
                    out[c] = hsum_float_8(acc[c]);
                }
            }
        }
    };
}

kernels!(avx2, "avx2,fma,f16c", mul_sum_us8_avx2);
kernels!(vnni, "avx2,fma,f16c,avx512vnni,avx512vl", mul_sum_us8_vnni);
