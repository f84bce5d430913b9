//! Matrix × matrix tiles for prompt processing: R weight rows × C activation columns at once,
//! on CPUs with AVX-512 VNNI (`vpdpbusd` on 256-bit vectors).
//!
//! ggml computes each (row, column) product of these formats alone (`ggml_vec_dot_q4_1_q8_1`,
//! or llamafile's tiles for Q5_0/Q8_0, whose arithmetic per product is the same), unpacking
//! the weight block and turning signed quants into the unsigned × signed form `vpdpbusd` takes
//! (`sign` tricks) for every product again. Here a weight block is unpacked once for C
//! columns, and the signed weights are offset into unsigned bytes once, the offset's
//! contribution (offset × the sum of each lane's four activation quants) starting the
//! integer accumulator. Every 32-bit lane then holds the very integer ggml's lane holds, and
//! the float steps are ggml's: d = d_w · d_x, acc = fma(d, float(lane sums), acc) per block,
//! `hsum_float_8` at the end (Q4_1: plus the running sum of m · s). So every result is ggml's
//! bit for bit, and the tests check it against `ggml_mul_mat`.

use std::arch::x86_64::*;

use super::x86::{
    bytes_from_bits_32, bytes_from_nibbles_32, hsum_float_8, F16Table, Q4_1_BYTES, Q5_0_BYTES,
    Q8_0_BYTES, Q8_1_BYTES,
};

/// Rows and columns per full tile.
pub const TILE_R: usize = 4;
pub const TILE_C: usize = 4;

/// R rows of Q4_1 (`rows[r]`, `nb` blocks each) × C columns of Q8_1 (`cols[c]`):
/// `out[c][r]`.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C, AVX-512 VNNI and VL; every pointer addresses `nb` whole blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn tile_q4_1<const R: usize, const C: usize>(
    f16: &F16Table,
    rows: &[*const u8; R],
    cols: &[*const u8; C],
    nb: usize,
    out: &mut [[f32; R]; C],
) {
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    // per row, the running Σ m·s of each column (lane c)
    let mut summs = [_mm_setzero_ps(); R];
    for b in 0..nb {
        let mut d1 = [_mm256_setzero_ps(); C];
        let mut qy = [_mm256_setzero_si256(); C];
        let mut s1 = [0.0f32; 4];
        for c in 0..C {
            let yb = cols[c].add(b * Q8_1_BYTES);
            d1[c] = _mm256_broadcast_ss(&*f16.at(yb));
            s1[c] = f16.get(yb.add(2));
            qy[c] = _mm256_loadu_si256(yb.add(4) as *const __m256i);
        }
        let s1 = _mm_loadu_ps(s1.as_ptr());
        for r in 0..R {
            let xb = rows[r].add(b * Q4_1_BYTES);
            let d0 = _mm256_broadcast_ss(&*f16.at(xb));
            // m · s is exact in f32 (two f16 significands), so adding the product is
            // ggml's `summs += m * s`, fused or not.
            let m = _mm_broadcast_ss(&*f16.at(xb.add(2)));
            summs[r] = _mm_add_ps(summs[r], _mm_mul_ps(m, s1));
            let qx = bytes_from_nibbles_32(xb.add(4));
            for c in 0..C {
                let d = _mm256_mul_ps(d0, d1[c]);
                let q = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), qx, qy[c]));
                acc[r][c] = _mm256_fmadd_ps(d, q, acc[r][c]);
            }
        }
    }
    for r in 0..R {
        let mut s = [0.0f32; 4];
        _mm_storeu_ps(s.as_mut_ptr(), summs[r]);
        for c in 0..C {
            out[c][r] = hsum_float_8(acc[r][c]) + s[c];
        }
    }
}

/// The weight formats whose signed quants are offset into unsigned bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signed {
    /// Q8_0: q + 128
    Q8_0,
    /// Q5_0: q + 16 (the 5-bit value itself)
    Q5_0,
}

impl Signed {
    /// The offset that makes the quants unsigned, and the bytes of a weight block.
    fn offset_and_bytes(self) -> (u8, usize) {
        match self {
            Signed::Q8_0 => (128, Q8_0_BYTES),
            Signed::Q5_0 => (16, Q5_0_BYTES),
        }
    }
}

/// A weight block's 32 quants plus the format's offset, as unsigned bytes.
///
/// # Safety
/// As [`tile_q4_1`]; `xb` addresses one whole block of `fmt`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unsigned_quants(fmt: Signed, xb: *const u8) -> __m256i {
    match fmt {
        Signed::Q8_0 => _mm256_xor_si256(
            _mm256_loadu_si256(xb.add(2) as *const __m256i),
            _mm256_set1_epi8(0x80u8 as i8),
        ),
        Signed::Q5_0 => _mm256_or_si256(
            bytes_from_nibbles_32(xb.add(6)),
            _mm256_and_si256(bytes_from_bits_32(xb.add(2)), _mm256_set1_epi8(0x10)),
        ),
    }
}

/// R rows of Q8_0 or Q5_0 (`fmt`) × C columns of Q8_0: `out[c][r]`.
///
/// # Safety
/// As [`tile_q4_1`].
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn tile_signed<const R: usize, const C: usize>(
    fmt: Signed,
    f16: &F16Table,
    rows: &[*const u8; R],
    cols: &[*const u8; C],
    nb: usize,
    out: &mut [[f32; R]; C],
) {
    let (offset, wbytes) = fmt.offset_and_bytes();
    let off = _mm256_set1_epi8(offset as i8);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for b in 0..nb {
        let mut d1 = [_mm256_setzero_ps(); C];
        let mut qy = [_mm256_setzero_si256(); C];
        let mut bias = [_mm256_setzero_si256(); C];
        for c in 0..C {
            let yb = cols[c].add(b * Q8_0_BYTES);
            d1[c] = _mm256_broadcast_ss(&*f16.at(yb));
            qy[c] = _mm256_loadu_si256(yb.add(2) as *const __m256i);
            // -offset · (sum of each lane's four activation quants)
            let sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, qy[c]);
            bias[c] = _mm256_sub_epi32(_mm256_setzero_si256(), sum);
        }
        for r in 0..R {
            let xb = rows[r].add(b * wbytes);
            let d0 = _mm256_broadcast_ss(&*f16.at(xb));
            let qx = unsigned_quants(fmt, xb);
            for c in 0..C {
                let d = _mm256_mul_ps(d0, d1[c]);
                let q = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(bias[c], qx, qy[c]));
                acc[r][c] = _mm256_fmadd_ps(d, q, acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[c][r] = hsum_float_8(acc[r][c]);
        }
    }
}

/// Two 8-lane halves as one 512-bit vector: `lo` in lanes 0-7, `hi` in 8-15.
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn pair_si(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn pair_ps(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(
        _mm512_castps_pd(_mm512_castps256_ps512(lo)),
        _mm256_castps_pd(hi),
    ))
}

/// `hsum_float_8` of each half.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
#[inline]
unsafe fn hsum_halves(x: __m512) -> (f32, f32) {
    let lo = _mm512_castps512_ps256(x);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
    (hsum_float_8(lo), hsum_float_8(hi))
}

/// Columns per pass of the 512-bit kernels (as four pairs, one pair per vector).
pub const WIDE_C: usize = 8;

/// [`tile_signed`] with two columns per 512-bit vector: lanes 0-7 compute column 2p, lanes 8-15
/// column 2p + 1, each lane exactly as in the 256-bit kernel. `P` column pairs; `cols` holds
/// 2·P pointers (repeat the last column to fill an odd count, and ignore its result).
///
/// # Safety
/// As [`tile_q4_1`], and the CPU has AVX-512 F.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn wide_signed<const R: usize, const P: usize>(
    fmt: Signed,
    f16: &F16Table,
    rows: &[*const u8; R],
    cols: &[*const u8],
    nb: usize,
    out: &mut [[f32; R]],
) {
    let (offset, wbytes) = fmt.offset_and_bytes();
    let off = _mm512_set1_epi8(offset as i8);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for b in 0..nb {
        let mut d1 = [_mm512_setzero_ps(); P];
        let mut qy = [_mm512_setzero_si512(); P];
        let mut bias = [_mm512_setzero_si512(); P];
        for p in 0..P {
            let (y0, y1) = (
                cols[2 * p].add(b * Q8_0_BYTES),
                cols[2 * p + 1].add(b * Q8_0_BYTES),
            );
            d1[p] = pair_ps(
                _mm256_broadcast_ss(&*f16.at(y0)),
                _mm256_broadcast_ss(&*f16.at(y1)),
            );
            qy[p] = pair_si(
                _mm256_loadu_si256(y0.add(2) as *const __m256i),
                _mm256_loadu_si256(y1.add(2) as *const __m256i),
            );
            let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, qy[p]);
            bias[p] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
        }
        for r in 0..R {
            let xb = rows[r].add(b * wbytes);
            let d0 = _mm512_set1_ps(f16.get(xb));
            let qx = _mm512_broadcast_i64x4(unsigned_quants(fmt, xb));
            for p in 0..P {
                let d = _mm512_mul_ps(d0, d1[p]);
                let q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias[p], qx, qy[p]));
                acc[r][p] = _mm512_fmadd_ps(d, q, acc[r][p]);
            }
        }
    }
    for r in 0..R {
        for p in 0..P {
            let (a, b) = hsum_halves(acc[r][p]);
            out[2 * p][r] = a;
            out[2 * p + 1][r] = b;
        }
    }
}

/// [`tile_q4_1`] with two columns per 512-bit vector (see [`wide_signed`]).
///
/// # Safety
/// As [`wide_signed`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn wide_q4_1<const R: usize, const P: usize>(
    f16: &F16Table,
    rows: &[*const u8; R],
    cols: &[*const u8],
    nb: usize,
    out: &mut [[f32; R]],
) {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    // per row, the running Σ m·s of each column (lane c of 8)
    let mut summs = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let mut d1 = [_mm512_setzero_ps(); P];
        let mut qy = [_mm512_setzero_si512(); P];
        let mut s1 = [0.0f32; 8];
        for p in 0..P {
            let (y0, y1) = (
                cols[2 * p].add(b * Q8_1_BYTES),
                cols[2 * p + 1].add(b * Q8_1_BYTES),
            );
            d1[p] = pair_ps(
                _mm256_broadcast_ss(&*f16.at(y0)),
                _mm256_broadcast_ss(&*f16.at(y1)),
            );
            s1[2 * p] = f16.get(y0.add(2));
            s1[2 * p + 1] = f16.get(y1.add(2));
            qy[p] = pair_si(
                _mm256_loadu_si256(y0.add(4) as *const __m256i),
                _mm256_loadu_si256(y1.add(4) as *const __m256i),
            );
        }
        let s1 = _mm256_loadu_ps(s1.as_ptr());
        for r in 0..R {
            let xb = rows[r].add(b * Q4_1_BYTES);
            let d0 = _mm512_set1_ps(f16.get(xb));
            // m · s is exact in f32: adding the product is ggml's `summs += m * s`
            let m = _mm256_broadcast_ss(&*f16.at(xb.add(2)));
            summs[r] = _mm256_add_ps(summs[r], _mm256_mul_ps(m, s1));
            let qx = _mm512_broadcast_i64x4(bytes_from_nibbles_32(xb.add(4)));
            for p in 0..P {
                let d = _mm512_mul_ps(d0, d1[p]);
                let q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, qy[p]));
                acc[r][p] = _mm512_fmadd_ps(d, q, acc[r][p]);
            }
        }
    }
    for r in 0..R {
        let mut s = [0.0f32; 8];
        _mm256_storeu_ps(s.as_mut_ptr(), summs[r]);
        for p in 0..P {
            let (a, b) = hsum_halves(acc[r][p]);
            out[2 * p][r] = a + s[2 * p];
            out[2 * p + 1][r] = b + s[2 * p + 1];
        }
    }
}
